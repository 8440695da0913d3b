"""Where a replay's under-provisioned minutes fall, per policy, from `weir simulate --out`'s
timeline.csv (docs/simulate.md, "Real web-server and Twitter-stream traces"):

- short minutes by hour of the day (times taken from the trace's start);
- short spans by length in syncs (a span of 4 syncs is one minute at 15 s syncs);
- with CAPACITY (the run's --capacity-per-pod) and TARGET_SHARE (the target's share of it,
  0.7 in the sweep): percentiles of running pods over the pods the load needs at target.

    python3 examples/simulate/short_spans.py TIMELINE.csv [CAPACITY [TARGET_SHARE]]
"""
import collections
import csv
import statistics
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1])))
    capacity = float(sys.argv[2]) if len(sys.argv) > 2 else None
    share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.7
    policies = [c[: -len("_capacity")] for c in rows[0] if c.endswith("_capacity")]
    sync = int(rows[1]["time_seconds"]) - int(rows[0]["time_seconds"])
    for p in policies:
        by_hour, spans, run = collections.Counter(), collections.Counter(), 0
        for r in rows:
            if float(r["offered_load"]) > float(r[p + "_capacity"]):
                by_hour[int(r["time_seconds"]) // 3600 % 24] += sync / 60
                run += 1
            elif run:
                spans[run] += 1
                run = 0
        if run:
            spans[run] += 1
        print(f"{p}: {sum(by_hour.values()):.2f} short minutes, {sum(spans.values())} spans")
        print("  minutes by hour:", " ".join(f"{h}:{by_hour[h]:.1f}" for h in range(24)))
        print("  spans by syncs:", " ".join(f"{k}:{v}" for k, v in sorted(spans.items())))
        if capacity:
            ratios = [int(r[p + "_running"]) / (float(r["offered_load"]) / (share * capacity))
                      for r in rows if float(r["offered_load"]) > 0]
            q = statistics.quantiles(ratios, n=100)
            print("  running / needed at target, p25 p50 p75 p90:",
                  " ".join(f"{q[i - 1]:.2f}" for i in (25, 50, 75, 90)))


if __name__ == "__main__":
    main()
