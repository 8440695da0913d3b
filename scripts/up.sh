#!/usr/bin/env bash
# Sets up (idempotent) and runs Weir in local mode on the quickstart platform.
# Extra arguments go to `weir up` (e.g. --admin-addr 127.0.0.1:28090, --log-format json).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

admin="${WEIR_ADMIN_ADDR:-127.0.0.1:18090}"
cat >&2 <<MSG
==> weir up on examples/quickstart — edit the YAML there and watch it apply. Try:
      curl http://$admin/healthz
      curl http://$admin/metrics
      curl http://$admin/debug/problems
      curl http://$admin/debug/objects
    Ctrl-C stops it.
MSG
exec target/release/weir up --config examples/quickstart --admin-addr "$admin" "$@"
