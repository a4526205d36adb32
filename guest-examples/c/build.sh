#!/usr/bin/env sh
# Builds the C example ops into components. Toolchain (Debian, one command):
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
# Bindings and the component wrapper come from `dynhost componentize`
# (`dynhost build` / `run --build` set $DYNHOST to the dynhost that runs them).
set -eu
cd "$(dirname "$0")"
for tool in clang wasm-ld; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool not found; install the C toolchain with: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2
    exit 127
  fi
done
if [ ! -d /usr/share/wasi-sysroot ] && [ ! -d /usr/lib/wasm32-wasi ]; then
  echo "wasi-libc not found; install it with: apt-get install wasi-libc libclang-rt-dev-wasm32" >&2
  exit 127
fi
root=$(cd ../.. && pwd)
dynhost=${DYNHOST:-dynhost}
gen=$root/target/guests/c-bindings
"$dynhost" componentize bindings "$root/wit" "$gen"
out=$root/target/guests/polyglot
mkdir -p "$out"
for op in */; do
  op=${op%/}
  [ -f "$op/op.c" ] || continue
  name=$(echo "$op" | tr - _)
  clang --target=wasm32-wasi -mexec-model=reactor -O2 -I "$gen" \
    -o "$out/${name}_c.core.wasm" "$op/op.c" "$gen/dynamic_op.c" "$gen/dynamic_op_component_type.o"
  # Written beside the target, then renamed: a run loading the component
  # meanwhile reads the old file or the new one, never half of one.
  "$dynhost" componentize new "$out/${name}_c.core.wasm" "$out/${name}_c.wasm.$$.tmp"
  mv -f "$out/${name}_c.wasm.$$.tmp" "$out/${name}_c.wasm"
done
