#!/usr/bin/env bash
# Builds the worker (wasm + JS shim) into build/ with worker-build, using the pinned
# wasm-bindgen from cargo and wasm-opt/esbuild from node_modules. Skips the work when
# nothing that goes into the build has changed. Prints the wasm size and fails if the
# gzipped size is over the Workers free-plan limit (3 MB).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp_file=build/.stamp
stamp=$( (cat Cargo.toml Cargo.lock; find src -type f -name '*.rs' | sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [ "${NEURITE_FORCE_BUILD:-}" != 1 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && [ -f build/index.js ]; then
  echo "[build] up to date" >&2
else
  export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
  export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
  export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
  worker-build --release
  echo "$stamp" > "$stamp_file"
fi

wasm=$(ls build/*.wasm build/worker/*.wasm 2>/dev/null | head -n1 || true)
if [ -z "$wasm" ]; then
  echo "[build] no wasm found under build/" >&2
  exit 1
fi
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf '[build] wasm %s: %d bytes raw, %d bytes gzipped (%.0f KB)\n' "$wasm" "$raw" "$gz" "$(echo "$gz/1024" | bc -l)" >&2
limit=$((3 * 1024 * 1024))
if [ "$gz" -gt "$limit" ]; then
  echo "[build] gzipped wasm exceeds the 3 MB Workers free-plan limit" >&2
  exit 1
fi
