#!/usr/bin/env bash
# Sets up (idempotent) and runs Weir in local mode on the quickstart platform, with a real
# Envoy gateway in front (started and supervised by `weir up`, one per Gateway) and demo
# backends behind it. Ctrl-C stops everything.
# Extra arguments go to `weir up` (e.g. --log-format json).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

admin="${WEIR_ADMIN_ADDR:-127.0.0.1:18090}"
xds="${WEIR_XDS_ADDR:-127.0.0.1:18000}"
run=.cache/up
mkdir -p "$run"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The quickstart's EndpointSlices point at these ports on 127.0.0.1.
for backend in storefront:9101 catalog-v1:9102 catalog-v2:9103 checkout:9104; do
  python3 scripts/demo_backend.py "${backend%%:*}" "${backend##*:}" &
  pids+=($!)
done

cat >&2 <<MSG
==> weir up on examples/quickstart, Envoy gateway on 127.0.0.1:8080 (run by weir up; its
    admin port is in proxy-status), demo backends on 9101-9104.
    Edit examples/quickstart/*.yaml and watch it apply. Try:
      curl -H 'Host: shop.example.local' http://127.0.0.1:8080/
      curl -H 'Host: shop.example.local' http://127.0.0.1:8080/api/checkout/cart   # rewritten to /v1/checkout/cart
      target/release/weir proxy-status --admin-addr $admin
      curl http://$admin/metrics
      curl http://$admin/debug/problems
    Envoy's log: $run/gateways/ingress.public.log. Ctrl-C stops everything.
MSG
target/release/weir up --config examples/quickstart --admin-addr "$admin" --xds-addr "$xds" \
  --envoy-bin "$PWD/.venv/bin/envoy" --gateway-run-dir "$run/gateways" "$@" &
weir_pid=$!
pids+=($weir_pid)
wait "$weir_pid"
