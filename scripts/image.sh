#!/usr/bin/env bash
# Builds the install's OCI image (infra/k8s/Dockerfile) with buildah, which needs no daemon, and prints
# its name. BASE names the base image (the Dockerfile's default is python:3.11-slim); unset, a Debian
# bookworm base with python3-venv is made here with debootstrap, since no registry can be pulled from
# on these machines, and kept (as the image localhost/stagegate-base:bookworm, its root file system
# cached in $STAGEGATE_CACHE). Needs root (apt-get, debootstrap, buildah's chroot isolation). All
# progress goes to stderr; stdout carries only the image's name.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'image: %s\n' "$*" >&2; }

need=()
command -v buildah >/dev/null || need+=(buildah)
[[ -n "${BASE:-}" ]] || command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
export BUILDAH_ISOLATION=chroot  # no runtime daemon or user namespaces needed

version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
image="${IMAGE:-localhost/stagegate:$version}"

if [[ -z "${BASE:-}" ]]; then
  BASE=localhost/stagegate-base:bookworm
  if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    cache="${STAGEGATE_CACHE:-$HOME/.cache/stagegate}/base-bookworm.tar"
    mkdir -p "$(dirname "$cache")"
    if [[ ! -f "$cache" ]]; then
      root="$(mktemp -d)"
      trap 'rm -rf "$root"' EXIT
      log "making a Debian bookworm base with debootstrap (about 30 s)"
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" http://deb.debian.org/debian >&2
      tar -C "$root" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
    fi
    container="$(buildah from scratch)"
    buildah add "$container" "$cache" / >&2  # a local tar archive is extracted
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$container"
    buildah commit --rm "$container" "$BASE" >&2
    log "base image $BASE"
  fi
fi

trust=()  # the CA bundle the host's pip trusts (an egress proxy's), a build secret: not in the image
if [[ -n "${PIP_CERT:-}" && -f "$PIP_CERT" ]]; then
  trust=(--secret "id=build-ca,src=$PIP_CERT")
fi
log "building $image from $BASE"
buildah bud "${trust[@]}" --build-arg BASE="$BASE" --build-arg VERSION="$version" \
  -f infra/k8s/Dockerfile -t "$image" . >&2
buildah rmi --prune >/dev/null 2>&1 || true  # the image this one replaced, now untagged
echo "$image"
