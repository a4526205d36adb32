#!/usr/bin/env sh
# Builds the Python example ops into components with componentize-py.
# Toolchain (one command): pip install componentize-py==0.25.1
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-py >/dev/null 2>&1; then
  echo "componentize-py not found; install it with: pip install componentize-py==0.25.1" >&2
  exit 127
fi
out=../../target/guests/polyglot
mkdir -p "$out"
for op in */; do
  op=${op%/}
  [ -f "$op/app.py" ] || continue
  target="$out/$(echo "$op" | tr - _)_py.wasm"
  # Written beside the target, then renamed: a run loading the component
  # meanwhile reads the old file or the new one, never half of one.
  (cd "$op" && componentize-py -d ../../../wit -w dynamic-op componentize app -o "../$target.$$.tmp")
  mv -f "$target.$$.tmp" "$target"
done
