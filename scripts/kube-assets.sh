#!/usr/bin/env bash
# Provides a real kube-apiserver, kube-controller-manager (for the garbage collector: owner references
# behave as on a cluster) and etcd for the test stack and prints the directory holding them.
#
# Order of preference:
#   1. $KUBEBUILDER_ASSETS (the controller-runtime envtest convention), when it has all three binaries;
#   2. a cached build in $STAGEGATE_CACHE (default ~/.cache/stagegate), made once from Debian's own
#      `kubernetes` source package (1.20.2, ships vendor/), with etcd from Debian's `etcd-server`.
# The build needs root for apt-get; it takes about 5 minutes per binary on 2 cores and is never redone
# while the cached binaries exist. All progress goes to stderr; stdout carries only the directory.
set -euo pipefail

log() { printf 'kube-assets: %s\n' "$*" >&2; }

binaries=(kube-apiserver kube-controller-manager etcd)
has_all() { local b; for b in "${binaries[@]}"; do [[ -x "$1/$b" ]] || return 1; done; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache="${STAGEGATE_CACHE:-$HOME/.cache/stagegate}/kube-1.20.2"
mkdir -p "$cache"

if has_all "$cache"; then
  echo "$cache"
  exit 0
fi

apt_ready=""
apt_install() {
  if [[ -z "$apt_ready" ]]; then
    apt-get update -q >&2
    apt_ready=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

if [[ ! -x "$cache/etcd" ]]; then
  command -v etcd >/dev/null || apt_install etcd-server
  ln -sf "$(command -v etcd)" "$cache/etcd"
fi

missing=()
for b in kube-apiserver kube-controller-manager; do [[ -x "$cache/$b" ]] || missing+=("$b"); done
if ((${#missing[@]})); then
  src_list=/etc/apt/sources.list.d/stagegate-debian-src.sources
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding a deb-src entry for bookworm ($src_list)"
    cat >"$src_list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_ready=""
  fi
  apt_install golang-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev ca-certificates
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "fetching Debian's kubernetes source package into $work"
  (cd "$work" && apt-get source -q kubernetes >&2)
  srcdir="$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)"
  # The vendored reflect2 v1.0.1 crashes (SIGSEGV in mapiterinit) when built with Go >= 1.18;
  # Debian's packaged 1.0.2 is the fix.
  rm -rf "$srcdir/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$srcdir/vendor/github.com/modern-go/reflect2"
  mkdir -p "$srcdir/.go/src/k8s.io"
  ln -sfn ../../.. "$srcdir/.go/src/k8s.io/kubernetes"
  for b in "${missing[@]}"; do
    log "building $b (about 5 minutes)"
    (cd "$srcdir" && env GOPATH="$srcdir/.go" CGO_ENABLED=0 PATH="/usr/lib/go/bin:$PATH" \
        HOME="$work" GOFLAGS=-mod=vendor make WHAT="cmd/$b" >&2)
    install -m 0755 "$srcdir/_output/bin/$b" "$cache/$b.tmp"
    mv "$cache/$b.tmp" "$cache/$b"
    log "cached $cache/$b"
  done
fi

echo "$cache"
