"""Real public web-server and social-media traces for judging `weir simulate`'s forecast
(docs/simulate.md, "Real web-server and social-media traces"), from a checkout of
github.com/reconfigurable-ml-pipeline/web-service-datasets: its `dataset/*/workload.tbz2`
hold requests per second, one number each, space-separated.

- nasa: every HTTP request to NASA Kennedy Space Center's web server (the NASA-HTTP logs
  of the Internet Traffic Archive), 1 July to 31 August 1995; July's log ends on 28 July at
  13:32, and August's starts on 1 August, so they are written as two traces:
  nasa_jul (27.6 days) and nasa_aug (31 days, with the server's outage of 1-3 August as
  zeros, as the log has it);
- twitter_trace: tweets per second from the Archive Team's Twitter stream grab (22 days).

Each is written at 60 s and at 300 s steps (requests per step), the two resolutions the
goal is judged at:

    python3 examples/simulate/web_service_traces.py CHECKOUT OUT_DIR

writes OUT_DIR/{nasa_jul,nasa_aug,twitter}_{1min,5min}.csv in `weir simulate`'s CSV format.
From a bare mirror, `git --git-dir=MIRROR archive HEAD dataset | tar -x -C CHECKOUT` first.
"""
import os
import sys
import tarfile

# Seconds in the August log: the per-second series is July's log followed by August's,
# with nothing marking the seam. Set so that the server's outage (no request from 1 August
# 14:52:01 to 3 August 04:36:13, as the archive's description gives it) falls at those
# times of the August trace, within a few seconds.
AUGUST_SECONDS = 2_678_405


def per_second(checkout, name):
    path = os.path.join(checkout, "dataset", name, "workload.tbz2")
    with tarfile.open(path, "r:bz2") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("workload.txt"))
        text = archive.extractfile(member).read().decode()
    return [int(v) for v in text.split()]


def write(path, counts, step):
    with open(path, "w") as out:
        out.write("timestamp_seconds,value\n")
        for i in range(len(counts) // step):
            out.write(f"{i * step},{sum(counts[i * step:(i + 1) * step])}\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    checkout, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    nasa = per_second(checkout, "nasa")
    if len(nasa) <= AUGUST_SECONDS:
        sys.exit(f"{checkout}: dataset/nasa/workload.tbz2 holds {len(nasa)} seconds, "
                 f"fewer than August's {AUGUST_SECONDS}: not the NASA-HTTP workload")
    traces = {
        "nasa_jul": nasa[:-AUGUST_SECONDS],
        "nasa_aug": nasa[-AUGUST_SECONDS:],
        "twitter": per_second(checkout, "twitter_trace"),
    }
    for name, counts in traces.items():
        for step, label in ((60, "1min"), (300, "5min")):
            write(os.path.join(out, f"{name}_{label}.csv"), counts, step)


if __name__ == "__main__":
    main()
