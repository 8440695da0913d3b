#!/usr/bin/env bash
# Runs setup, then Weir's whole test suite: unit, property, golden and end-to-end tests
# across the workspace. Tests marked `needs cluster` run only with
# `cargo test --workspace -- --ignored` where KUBECONFIG points at a cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# Real components the tests start come from here.
export PATH="$PWD/.venv/bin:$PATH"
# The end-to-end tests run the release binary that setup just built.
export WEIR_BIN="$PWD/target/release/weir"

cargo test --workspace --locked
