#!/usr/bin/env bash
# Rebuilds the web view's vendored files (crates/kante-http/ui/vendor/:
# xterm.js, its CSS and its fit addon) from the npm registry, pinned by
# crates/kante-http/ui/package-lock.json, and strips their source-map
# comments (the maps are not shipped). The page's own files
# (crates/kante-http/ui/static/) need no build step; build.rs gzips all of
# them into kanted. `scripts/ui.sh --check` rebuilds into a scratch copy
# and fails if the checked-in vendor/ differs (a CI check); to upgrade
# xterm.js, change package.json, run `npm install` there, then this.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../crates/kante-http/ui"
npm ci --no-audit --no-fund --loglevel=error
out=vendor
if [ "${1:-}" = --check ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
copy() {
  sed -e '/^\/\/# sourceMappingURL=/d' "$1" >"$out/$2"
}
copy node_modules/@xterm/xterm/lib/xterm.js xterm.js
copy node_modules/@xterm/xterm/css/xterm.css xterm.css
copy node_modules/@xterm/addon-fit/lib/addon-fit.js addon-fit.js
# Their MIT licences travel with them (and are served beside them).
cp node_modules/@xterm/xterm/LICENSE "$out/xterm-LICENSE.txt"
cp node_modules/@xterm/addon-fit/LICENSE "$out/addon-fit-LICENSE.txt"
if [ "${1:-}" = --check ]; then
  diff -r "$out" vendor && echo "vendor/ matches package-lock.json"
else
  echo "vendor/ rebuilt: $(ls vendor | tr '\n' ' ')"
fi
