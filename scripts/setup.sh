#!/usr/bin/env bash
# Installs everything Neurite needs to build and run locally. Idempotent: each step
# checks first and skips what is already there, so a warm machine is fast.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
# Must match the wasm-bindgen version in Cargo.lock (checked below).
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)

log() { printf '[setup] %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

have_version() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"; }

if ! have_version worker-build "$WORKER_BUILD_VERSION"; then
  log "installing worker-build $WORKER_BUILD_VERSION (takes a few minutes once)"
  cargo install --locked --quiet worker-build --version "=$WORKER_BUILD_VERSION"
fi
if ! have_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (takes a few minutes once)"
  cargo install --quiet wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi

# npm dependencies: wrangler, Node 22 (wrangler 4 needs it), binaryen (wasm-opt), esbuild.
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/wasm-opt ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
