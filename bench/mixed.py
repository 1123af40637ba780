#!/usr/bin/env python3
"""Mixed-vendor benchmark: CPU per probe of apitoken_exporter with Jira tokens only, and
with the same number of tokens split evenly over Jira, GitHub and GitLab.

The goal: a GitHub or GitLab probe (which also reads the expiry, scopes, creation and last
use the vendor reports, and exports them) costs no more than a Jira one; the mixed run's
CPU per probe stays within 10 % of the Jira-only run's. Both runs use the same loopback
stand-in (`bench/fast_myself.py`, which answers all three vendors' probe paths), the same
probe rate and the same measurement as bench.py (see bench/README.md); the two
configurations alternate within each round, so drifting machine load hits both alike.

Run through bench/run.sh (`BENCH_MIXED=1` after the main benchmark, `BENCH_MIXED=only`
instead of it). Knobs: BENCH_MIXED_SIZES (default "1000"), BENCH_RUNS, BENCH_WINDOW,
BENCH_INTERVAL, BENCH_EXPORTER (default target/release/apitoken_exporter). Standard
library only; only processes started here are stopped.
"""

import os
import shutil
import sys
import tempfile
import time

import bench

SIZES = [int(s) for s in os.environ.get("BENCH_MIXED_SIZES", "1000").split()]
JIRA = ("jira",)
MIXED = ("jira", "github", "gitlab")
TOLERANCE = 0.10


def main():
    if not os.access(bench.EXPORTER, os.X_OK):
        sys.exit(f"mixed: apitoken_exporter not found ({bench.EXPORTER}); run bench/run.sh")
    if not shutil.which("taskset"):
        sys.exit("mixed: taskset is needed; run bench/run.sh")
    workdir = tempfile.mkdtemp(prefix="apitoken-bench-mixed-")
    os.makedirs(bench.RESULTS, exist_ok=True)
    bench.log(f"mixed: sizes {SIZES}, {bench.RUNS} round(s), interval {bench.INTERVAL} s, "
              f"window {bench.WINDOW:g} s, exporter {bench.EXPORTER}")
    fast = bench.FastServer(workdir)
    cpu = {(n, v): [] for n in SIZES for v in (JIRA, MIXED)}
    valid = {(n, v): [] for n in SIZES for v in (JIRA, MIXED)}
    try:
        for run in range(1, bench.RUNS + 1):
            for n in SIZES:
                # Alternate which configuration goes first, so neither always runs warm.
                order = (JIRA, MIXED) if run % 2 else (MIXED, JIRA)
                for vendors in order:
                    bench.log(f"round {run}/{bench.RUNS}, N={n}: {'+'.join(vendors)}")
                    r = bench.bench_ours(workdir, n, fast, run, vendors, scrapes=False)
                    cpu[(n, vendors)].append(r["cpu_us_per_probe"])
                    valid[(n, vendors)].append(r["valid_share"])
                    bench.log(f"  CPU {bench.fmt(r['cpu_us_per_probe'])} µs/probe at "
                              f"{r['probes_per_s']:.1f}/s ({r['cpu_source']}), "
                              f"valid {100 * (r['valid_share'] or 0):.0f} %")
    finally:
        fast.stop()

    lines = [
        "# Mixed-vendor benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}, exporter `{bench.EXPORTER}`, "
        f"{bench.RUNS} round(s), interval {bench.INTERVAL} s, window {bench.WINDOW:g} s, "
        f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}",
        "",
        "| N | Jira only: CPU-µs/probe | Jira+GitHub+GitLab: CPU-µs/probe | mixed ÷ Jira | goal (≤ 1.10) |",
        "|---|---|---|---|---|",
    ]
    failed = False
    for n in SIZES:
        j, m = bench.median(cpu[(n, JIRA)]), bench.median(cpu[(n, MIXED)])
        ratio = m / j if j and m else None
        ok = ratio is not None and ratio <= 1 + TOLERANCE
        failed |= not ok
        lines.append(f"| {n} | {bench.fmt(j)} | {bench.fmt(m)} | {bench.fmt(ratio, 3)} | "
                     f"{'PASS' if ok else 'FAIL'} |")
    lines += ["", "Every run (CPU-µs/probe): " + "; ".join(
        f"N={n} {'+'.join(v)}: {', '.join(bench.fmt(c) for c in cpu[(n, v)])}"
        for n in SIZES for v in (JIRA, MIXED))]
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    with open(os.path.join(bench.RESULTS, "mixed-latest.md"), "w") as f:
        f.write(report)
    bench.log(f"wrote {os.path.join(bench.RESULTS, 'mixed-latest.md')}"
              f"{' (goal missed)' if failed else ''}")
    if bench.KEEP:
        bench.log(f"kept work dir {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
