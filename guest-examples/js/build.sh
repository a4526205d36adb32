#!/usr/bin/env sh
# Builds the JavaScript example ops into components with componentize-js
# (StarlingMonkey). Toolchain: Node.js 20 and `npm ci` here (pinned in package.json).
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found; install Node.js 20 (Debian: apt-get install nodejs npm)" >&2
  exit 127
fi
[ -x node_modules/.bin/componentize-js ] || npm ci --no-audit --no-fund >&2
out=../../target/guests/polyglot
mkdir -p "$out"
for op in */; do
  op=${op%/}
  [ -f "$op/app.js" ] || continue
  target="$out/$(echo "$op" | tr - _)_js.wasm"
  # Written beside the target, then renamed: a run loading the component
  # meanwhile reads the old file or the new one, never half of one.
  # Without `-d http fetch-event` the component would import wasi:http.
  node_modules/.bin/componentize-js "$op/app.js" --wit ../../wit -n dynamic-op -d http fetch-event \
    -o "$target.$$.tmp"
  mv -f "$target.$$.tmp" "$target"
done
