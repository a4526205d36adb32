#!/usr/bin/env sh
# Builds {{artifact}}.wasm from op.c. Toolchain (Debian, one command):
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
# The C bindings and the component wrapper come from dynhost itself
# (`dynhost componentize`); `dynhost build` sets $DYNHOST to its own path.
set -eu
cd "$(dirname "$0")"
dynhost=${DYNHOST:-dynhost}
if ! command -v clang >/dev/null 2>&1; then
  echo "clang not found; install: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2
  exit 127
fi
"$dynhost" componentize bindings wit gen
clang --target=wasm32-wasi -mexec-model=reactor -O2 -I gen -o gen/{{name}}.core.wasm op.c gen/dynamic_op.c gen/dynamic_op_component_type.o
"$dynhost" componentize new gen/{{name}}.core.wasm {{artifact}}.wasm
