#!/usr/bin/env bash
# Runs setup, then Weir's whole test suite: unit, property, golden and end-to-end tests
# across the workspace. Tests marked `needs cluster` run only with
# `cargo test --workspace -- --ignored` where KUBECONFIG points at a cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --no-build

# The layout rules: no import cycles between files, crate dependencies one way, file sizes
# bounded (python3 comes with setup).
python3 scripts/check-layout.py

# Real components the tests start come from here.
export PATH="$PWD/.venv/bin:$PATH"
# The end-to-end tests run the binary built here, in one build with the tests: the same
# dependencies, compiled once. A release build would compile the whole tree a second time
# (10-18 minutes cold on two cores) to save about 15 s of tests: the test binaries' times
# summed to 132-137 s with the release one and 150-151 s with this one, two runs each of
# `WEIR_BIN=target/<profile>/weir cargo test --workspace`. WEIR_BIN names another binary.
cargo build --workspace --locked --bins --tests --examples
export WEIR_BIN="${WEIR_BIN:-$PWD/target/debug/weir}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One closing line over every test binary (cargo's own last line is often a doc-test run
# with nothing in it).
awk '/^test result:/ {
       for (i = 2; i <= NF; i++) {
         if ($i == "passed;") passed += $(i - 1)
         if ($i == "failed;") failed += $(i - 1)
         if ($i == "ignored;") ignored += $(i - 1)
       }
     }
     END { printf "weir: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
exit "$status"
