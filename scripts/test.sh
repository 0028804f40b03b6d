#!/usr/bin/env bash
# Runs every check and test: formatting, clippy (host and wasm32), native unit tests,
# the wasm release build (with its size check), and the system tests that drive the
# real worker under `wrangler dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check" >&2
cargo fmt --check
echo "== clippy (host)" >&2
cargo clippy --all-targets --quiet -- -D warnings
echo "== clippy (host, with the native benchmarks)" >&2
cargo clippy --all-targets --features native-sqlite --quiet -- -D warnings
echo "== clippy (wasm32)" >&2
cargo clippy --lib --target wasm32-unknown-unknown --quiet -- -D warnings
echo "== unit tests" >&2
cargo test --lib --quiet
echo "== wasm build" >&2
scripts/build.sh
echo "== system tests (real worker under wrangler dev)" >&2
cargo test --test system -- --test-threads 8
