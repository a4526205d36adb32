#!/usr/bin/env sh
# Builds {{name}}.wasm from op.c. Toolchain:
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
#   cargo install --path <dynhost checkout>/guest-examples/c/componentize
set -eu
cd "$(dirname "$0")"
tool=${COMPONENTIZE_C:-componentize-c}
if ! command -v "$tool" >/dev/null 2>&1; then
  echo "componentize-c not found; install it with: cargo install --path <dynhost checkout>/guest-examples/c/componentize" >&2
  exit 127
fi
if ! command -v clang >/dev/null 2>&1; then
  echo "clang not found; install: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2
  exit 127
fi
"$tool" bindings wit gen
clang --target=wasm32-wasi -mexec-model=reactor -O2 -I gen -o gen/{{name}}.core.wasm op.c gen/dynamic_op.c gen/dynamic_op_component_type.o
"$tool" new gen/{{name}}.core.wasm {{artifact}}.wasm
