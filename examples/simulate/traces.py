"""Synthetic demand traces for judging `weir simulate`'s forecast beyond the two real
traces in ../shared/traces (docs/simulate.md, "Figures"). Shapes of the public traces the
forecast is meant for, none of them fitted to it:

- synth.csv, synth5.csv: daily and weekly cycle, 10 % noise, 5-30-minute bursts of 1.5-3x
  (14 days at 60 s, 21 days at 300 s);
- web.csv: a web server's requests per minute (Poisson counts, a working-day shape, quiet
  weekends, crawler bursts, a day-long outage), 28 days;
- events.csv: an event site (a growing daily audience; one to three matches a day that
  ramp up in 15 minutes to 2-7x for two hours), 20 days at 60 s;
- social.csv: a social-media volume (5-minute counts, a mild daily wave, heavy-tailed
  spikes that halve every 5 minutes), 16 days.

    python3 examples/simulate/traces.py OUT_DIR
"""
import math
import random
import sys

def write(path, rows):
    open(path, "w").write("timestamp_seconds,value\n" + "\n".join(f"{t},{max(0,int(v))}" for t, v in rows) + "\n")
def poisson(lam):
    if lam > 50: return max(0, random.gauss(lam, math.sqrt(lam)))
    L, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= random.random()
        if p < L: return k
        k += 1
# the docs' generator
def gen(path, days, step, seed, noise=0.1):
    random.seed(seed)
    rows, burst_left, burst = [], 0, 1.0
    for i in range(days * 86400 // step):
        t = i * step
        day = math.sin(2 * math.pi * (t % 86400) / 86400 - math.pi / 2)
        week = 0.75 if (t // 86400) % 7 in (5, 6) else 1.0
        v = (600 + 450 * day) * week * (1 + noise * random.gauss(0, 1))
        if burst_left <= 0 and random.random() < 0.0005 * step / 60:
            burst_left, burst = random.randint(5, 30) * 60, random.uniform(1.5, 3)
        if burst_left > 0:
            v *= burst; burst_left -= step
        rows.append((t, v * step / 60))
    write(path, rows)
# web server, 1-min counts, Poisson, diurnal+weekly, crawler bursts, a 1-day outage
def web(path, seed):
    random.seed(seed); rows = []; burst_left = 0
    for i in range(28 * 1440):
        t = i * 60; h = (t % 86400) / 3600
        day = 0.25 + 0.75 * max(0, math.sin(math.pi * (h - 6) / 16)) if 6 <= h <= 22 else 0.25
        week = 0.55 if (t // 86400) % 7 in (5, 6) else 1.0
        lam = 220 * day * week
        if burst_left <= 0 and random.random() < 0.002:
            burst_left, extra = random.randint(2, 20), random.uniform(50, 300)
        if burst_left > 0: lam += extra; burst_left -= 1
        if 12 * 86400 <= t < 13 * 86400 + 6 * 3600: lam = 0
        rows.append((t, poisson(lam)))
    write(path, rows)
# event site: daily pattern, level growing, matches = surges of 2-7x for ~2 h
def events(path, seed):
    random.seed(seed); rows = []
    matches = []
    for d in range(20):
        for hh in random.sample([14, 17.5, 21], random.randint(1, 3)):
            matches.append((d * 86400 + hh * 3600, random.uniform(2, 7)))
    for i in range(20 * 1440):
        t = i * 60; h = (t % 86400) / 3600
        base = (300 + 15 * (t / 86400) * 20) * (0.3 + 0.7 * max(0, math.sin(math.pi * (h - 5) / 19)) if 5 <= h else 0.3)
        m = 1.0
        for s, k in matches:
            if s - 600 <= t < s + 7200:
                ramp = min(1, (t - s + 600) / 900)
                m = max(m, 1 + (k - 1) * ramp * (1 if t < s + 6300 else (s + 7200 - t) / 900))
        rows.append((t, poisson(base * m * random.lognormvariate(0, 0.05))))
    write(path, rows)
# social media volume: 5-min counts, modest daily, heavy-tailed spikes
def social(path, seed):
    random.seed(seed); rows = []; spike = 0.0
    for i in range(16 * 288):
        t = i * 300; h = (t % 86400) / 3600
        base = 60 * (0.6 + 0.4 * math.sin(2 * math.pi * (h - 9) / 24))
        if random.random() < 0.01: spike = base * random.paretovariate(1.3)
        else: spike *= 0.5
        rows.append((t, poisson(base * random.lognormvariate(0, 0.15) + spike)))
    write(path, rows)

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    gen(f"{out}/synth.csv", 14, 60, 7)
    gen(f"{out}/synth5.csv", 21, 300, 11)
    web(f"{out}/web.csv", 3)
    events(f"{out}/events.csv", 5)
    social(f"{out}/social.csv", 9)
