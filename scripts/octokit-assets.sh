#!/usr/bin/env bash
# Provides GitHub's published API descriptions for the fake GitHub and prints the node_modules
# directory holding them.
#
# The packages, pinned exactly so a re-run never drifts under the tests:
#   @octokit/openapi           GitHub's REST OpenAPI description (generated/api.github.com.json)
#   @octokit/openapi-webhooks  GitHub's webhook OpenAPI description: payload schemas and headers
#   @octokit/webhooks-schemas  the community JSON schema of every webhook payload (schema.json)
#   @octokit/graphql-schema    GitHub's public GraphQL schema (schema.graphql)
#   @octokit/webhooks-examples captured example deliveries (api.github.com/index.json)
# They are installed once into $STAGEGATE_CACHE (default ~/.cache/stagegate)/npm, outside the
# repository (@octokit/openapi alone unpacks to ~385 MB). All progress goes to stderr; stdout carries
# only the directory.
set -euo pipefail

log() { printf 'octokit-assets: %s\n' "$*" >&2; }

packages=(
  "@octokit/openapi@23.0.2"
  "@octokit/openapi-webhooks@12.1.0"
  "@octokit/webhooks-schemas@7.6.1"
  "@octokit/graphql-schema@15.26.1"
  "@octokit/webhooks-examples@7.6.1"
)

cache="${STAGEGATE_CACHE:-$HOME/.cache/stagegate}/npm"
modules="$cache/node_modules"
# The stamp names every pinned version: changing a pin above installs again.
stamp="$cache/.installed-$(printf '%s\n' "${packages[@]}" | cksum | cut -d' ' -f1)"

files=(
  "@octokit/openapi/generated/api.github.com.json"
  "@octokit/openapi-webhooks/generated/api.github.com.json"
  "@octokit/webhooks-schemas/schema.json"
  "@octokit/graphql-schema/schema.graphql"
  "@octokit/webhooks-examples/api.github.com/index.json"
)
complete() {
  local file
  for file in "${files[@]}"; do [[ -s "$modules/$file" ]] || return 1; done
}

if [[ -f "$stamp" ]] && complete; then
  echo "$modules"
  exit 0
fi

command -v npm >/dev/null || { log "npm is required (Node.js 18 or newer)"; exit 1; }
mkdir -p "$cache"
log "installing ${packages[*]} into $cache"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$cache" "${packages[@]}" >&2
complete || { log "incomplete install in $modules"; exit 1; }
rm -f "$cache"/.installed-*
touch "$stamp"
echo "$modules"
