#!/usr/bin/env python3
"""How much standing capacity buys how few short starts, on a 5-minute trace.

On traces whose steps jump without warning (social-media volumes), almost all of the
time a policy is short of pods falls in the first minute of a step that rose past the
slack: nothing can react before a pod starts, so only the capacity already standing when
the step begins counts. This compares rules for that standing capacity, each from the
trace's past only, by (steps it is short at, the mean of max(capacity, 1.43 x load))
relative to HPA's (1.43 x the larger of the last two steps: a 70 % target held for its
five-minute stabilization). Not the replay; a quick way to see which shapes of headroom
are worth building. Usage: standing_capacity.py TRACE.csv (timestamp[_seconds],value)
[TIMELINE.csv]: with a replay's timeline.csv (`weir simulate --compare hpa`), also where
each policy's under-provisioned minutes fall: in steps that rose more than 43 % or not,
by the minute within the step.
"""
import csv
import sys

v = [float(r["value"]) for r in csv.DictReader(open(sys.argv[1], encoding="utf-8-sig"))]
n, warm = len(v), 288


def score(capacity):
    short = sum(1 for i in range(warm, n) if v[i] > capacity[i])
    cost = sum(max(capacity[i], 1.43 * v[i]) for i in range(warm, n))
    return short, cost


def last_two(a):
    return [0.0, 0.0] + [a * max(v[i - 1], v[i - 2]) for i in range(2, n)]


def plus_volatility(a, z, rate=0.05):
    """a x the last two steps' larger, plus z x a slow average of |step-to-step change|."""
    c, vol = [0.0] * n, 0.0
    for i in range(2, n):
        c[i] = a * max(v[i - 1], v[i - 2]) + z * vol
        vol += rate * (abs(v[i] - v[i - 1]) - vol)
    return c


rises = [i for i in range(1, n) if v[i] > 1.43 * v[i - 1] and v[i] > 0]
after = sum(1 for i in range(2, n) if v[i] > 1.43 * v[i - 1] and v[i] > 0 and v[i - 1] > 1.43 * v[i - 2] and v[i - 1] > 0)
print(f"steps that rose more than 43 %: {len(rises) / (n - 1):.3f} of all, "
      f"{after / max(len(rises), 1):.3f} of those right after one")

if len(sys.argv) > 2:
    timeline = list(csv.DictReader(open(sys.argv[2])))
    step = int(timeline[1]["time_seconds"]) - int(timeline[0]["time_seconds"])
    row = 300  # the trace's step: 5 minutes
    loads = {int(r["time_seconds"]) // row: float(r["offered_load"]) for r in timeline}
    for who in ("policy", "hpa"):
        minutes = {}
        for r in timeline:
            if float(r["offered_load"]) <= float(r[f"{who}_capacity"]):
                continue
            t = int(r["time_seconds"])
            k = t // row
            rose = loads[k] > 1.43 * loads.get(k - 1, loads[k])
            key = ("rose" if rose else "other", min(t % row // 60, 2))
            minutes[key] = minutes.get(key, 0) + step / 60
        total = sum(minutes.values())
        parts = ", ".join(f"{kind} minute {m + 1}{'+' if m == 2 else ''}: {x:g}"
                          for (kind, m), x in sorted(minutes.items()))
        print(f"{who}: {total:g} under-provisioned minutes ({parts})")

hpa_short, hpa_cost = score(last_two(1.43))
print(f"HPA-like: short at {hpa_short} steps")
rules = [(f"{a} x last two", last_two(a)) for a in (1.3, 1.6)]
rules.append(("1.43 x last three", [0.0] * 3 + [1.43 * max(v[i - 3:i]) for i in range(3, n)]))
rules += [(f"{a} x last two + {z} x volatility", plus_volatility(a, z))
          for a in (1.0, 1.15, 1.3) for z in (0.5, 1.0, 1.5)]
for name, capacity in rules:
    short, cost = score(capacity)
    print(f"{name:34s} short {short / hpa_short:.2f}  capacity {cost / hpa_cost:.3f}")
