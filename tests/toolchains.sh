#!/usr/bin/env sh
# Installs what the tests need beyond cargo, from the registries only: the
# wasm32-wasip2 target, nats-server, Chromium + chromedriver, and the C, Python and JavaScript
# toolchains for the polyglot examples (a missing toolchain fails those tests loudly; set
# DYNHOST_SKIP_POLYGLOT=1 to skip them instead). Safe to run again.
set -eu
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
if ! command -v clang >/dev/null 2>&1 || [ ! -d /usr/lib/wasm32-wasi ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null
fi
# NATS JetStream for the scale-out tests (tests/e2e/nats.rs): Debian's
# nats-server 2.9 has work-queue streams, pull consumers and the object store.
if ! command -v nats-server >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq nats-server >/dev/null
fi
# Headless Chromium and its WebDriver for the viewer's browser tests
# (tests/e2e/ui.rs); DYNHOST_SKIP_BROWSER=1 skips those tests instead.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
command -v componentize-py >/dev/null 2>&1 || python3 -m pip install --quiet componentize-py==0.25.1
(cd guest-examples/js && npm ci --no-audit --no-fund --silent)
