#!/usr/bin/env bash
# The forecast against HPA's replay on every development trace (docs/simulate.md,
# "Figures"): the two real traces in ../shared/traces and the synthetic ones of
# examples/simulate/traces.py, each at two capacities (the mean load needs ~15 and ~60
# pods), the same policy for both: a Pods metric at 70 % of capacity, forecast on.
#
#   scripts/simulate-sweep.sh [FORECAST_FIELDS]    e.g. "headroomPercentile: 75"
#
# Prints one line per case: OK when the forecast is short of pods for at most 70 % of
# HPA's minutes at no more replica-hours (the issue's goal), the two ratios, then
# under-provisioned minutes, replica-hours and scale events for the forecast and for HPA.
# WEIR (default target/release/weir, built if missing), TRACES (the real traces' folder),
# JOBS (parallel replays, default 2), NAB (optional: the `data` folder of a checkout of
# github.com/numenta/NAB; adds its ten Twitter-volume traces and two EC2 network traces,
# replayed as they are, date-times and all, at a capacity where the mean needs ~15 pods),
# WEB_DATASETS (optional: a checkout of github.com/reconfigurable-ml-pipeline/web-service-datasets;
# adds the NASA web server's July and August 1995 and a Twitter stream, each at 1-minute
# and 5-minute steps, built by examples/simulate/web_service_traces.py, at capacities where
# the mean needs ~15 and ~60 pods).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
weir=${WEIR:-$root/target/release/weir}
traces=${TRACES:-$root/../shared/traces}
extra=${1:-}
[ -x "$weir" ] || (cd "$root" && cargo build --release --bin weir)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$root/examples/simulate/traces.py" "$work"

one() {
  local trace=$1 cap=$2 name
  name=$(basename "$trace" .csv)-$cap
  # The target, 0.7 × capacity, in nano-units (the finest a quantity is written in).
  local nano
  nano=$(python3 -c "print(int(round(0.7 * $cap * 1e9)))")
  sed "s/averageValue: 700m/averageValue: ${nano}n/" "$root/examples/simulate/policy.yaml" > "$work/$name.yaml"
  if [ -n "$extra" ]; then
    sed -i "s/forecast: {enabled: true}/forecast: {enabled: true, $extra}/" "$work/$name.yaml"
  fi
  "$weir" simulate --policy "$work/$name.yaml" --trace "$trace" --capacity-per-pod "$cap" \
    --compare hpa --out "$work/out-$name" >/dev/null 2>"$work/$name.err" || {
    # A case that fails says so in the table, not only on stderr.
    local status=$?
    echo "FAIL $(basename "$trace" .csv) $cap: weir simulate exited $status: $(tr '\n' ' ' < "$work/$name.err")"
    return 1
  }
  python3 - "$work/out-$name/summary.json" "$(basename "$trace" .csv) $cap" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["policies"]
f, h = s["policy"], s["hpa"]
u = f["under_provisioned_minutes"] / max(h["under_provisioned_minutes"], 1e-9)
r = f["replica_hours"] / h["replica_hours"]
ok = "OK " if u <= 0.7 and r <= 1.0 else "no "
print(f"{ok} {sys.argv[2]:28s} under {u:5.2f} rh {r:5.3f} | forecast {f['under_provisioned_minutes']:8.1f} min {f['replica_hours']:10.1f} rh {f['scale_events']:6d} ev | hpa {h['under_provisioned_minutes']:8.1f} min {h['replica_hours']:10.1f} rh {h['scale_events']:6d} ev")
PY
}
export -f one

# capacities "PODS..." TRACE...: one line per trace and pod count, the capacity per pod at
# which the trace's mean load needs that many pods at the 70 % target. Reads seconds
# (`timestamp_seconds`) or date-times (`timestamp`, as NAB writes them).
capacities() {
  python3 - "$@" <<'PY'
import csv, datetime, sys
pods = [int(p) for p in sys.argv[1].split()]
for path in sys.argv[2:]:
    rows = list(csv.DictReader(open(path)))
    if "timestamp_seconds" in rows[0]:
        t = [int(r["timestamp_seconds"]) for r in rows]
    else:
        t = [datetime.datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows]
    mean = sum(float(r["value"]) for r in rows[:-1]) / (t[-1] - t[0])
    for n in pods:
        print(path, f"{mean / (0.7 * n):.6g}")
PY
}
export root weir work extra
{
  echo "$traces/aws_elb_requests_5min.csv 0.02"; echo "$traces/aws_elb_requests_5min.csv 0.005"
  echo "$traces/nyc_taxi_30min.csv 0.8"; echo "$traces/nyc_taxi_30min.csv 0.2"
  echo "$work/synth.csv 1"; echo "$work/synth.csv 0.25"
  echo "$work/synth5.csv 1"; echo "$work/synth5.csv 0.25"
  echo "$work/web.csv 0.12"; echo "$work/web.csv 0.03"
  echo "$work/events.csv 3.6"; echo "$work/events.csv 0.9"
  echo "$work/social.csv 0.0084"; echo "$work/social.csv 0.0021"
  if [ -n "${WEB_DATASETS:-}" ]; then
    python3 "$root/examples/simulate/web_service_traces.py" "$WEB_DATASETS" "$work/web-service"
    capacities "15 60" "$work"/web-service/*.csv
  fi
  if [ -n "${NAB:-}" ]; then
    capacities 15 "$NAB"/realTweets/Twitter_volume_*.csv "$NAB"/realAWSCloudwatch/ec2_network_in_257a54.csv \
      "$NAB/realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
  fi
} | xargs -P "${JOBS:-2}" -L1 bash -c 'one "$0" "$1"' | sort -k2,2 -k3,3gr
