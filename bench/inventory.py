#!/usr/bin/env python3
"""Organization inventory at scale: the release exporter listing the simulator's
250,000-token organization (2,500 pages of 100), with per_token_series on and off.

Started by bench/inventory.sh (which builds the binaries); standard library only.
For each mode it starts `apitoken-sim` and `apitoken_exporter` on 127.0.0.1, waits until
the API tokens list is complete, and reports: pages/s of the listing (from the exporter's
own log line: pages and took_ms), the exporter's RSS (VmRSS after the listing, VmHWM =
peak), the /metrics body (plain and gzip bytes) and the latency of gzip scrapes (p50, p99,
max over a bounded sequential loop). Every wait is bounded; only the PIDs this script
started are stopped.
"""

import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.environ.get("INV_EXPORTER", os.path.join(REPO, "target/release/apitoken_exporter"))
SIM = os.environ.get("INV_SIM", os.path.join(REPO, "target/release/apitoken-sim"))
TOKENS = int(os.environ.get("INV_TOKENS", "250000"))
SCRAPES = int(os.environ.get("INV_SCRAPES", "200"))
SCRAPE_SECS = float(os.environ.get("INV_SCRAPE_SECS", "30"))
LIST_TIMEOUT = float(os.environ.get("INV_LIST_TIMEOUT", "600"))
MODES = os.environ.get("INV_MODES", "false true").split()
ORG_ID = "bench-org"

started = []  # Popen objects this script started


def log(msg):
    print(f"[inventory.py {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def stop_all():
    for p in started:
        stop(p)


def read_line_matching(stream, pattern, timeout, what):
    """Reads lines of `stream` until one matches `pattern` (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"{what}: stream closed")
        m = rx.search(line)
        if m:
            return m
    raise RuntimeError(f"{what}: no line matching {pattern!r} within {timeout}s")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def get(port, path, gzip=False, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def percentile(values, p):
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def run_mode(per_token_series, workdir):
    key = "ATATT3xBENCH" + secrets.token_hex(12)
    env = dict(os.environ, APITOKEN_SIM_ADMIN_KEY=key, BENCH_ADMIN_KEY=key)
    sim = subprocess.Popen(
        [SIM, "--listen", "127.0.0.1:0", "--org-id", ORG_ID, "--tokens", str(TOKENS),
         "--exit-after", str(int(LIST_TIMEOUT + SCRAPE_SECS + 120))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    started.append(sim)
    base = read_line_matching(sim.stdout, r"listening (http://127\.0\.0\.1:\d+)", 20, "sim").group(1)
    config = os.path.join(workdir, f"config-{per_token_series}.yaml")
    with open(config, "w") as f:
        f.write(
            "global:\n  allow_insecure_http: true\n  probe_interval: 1h\n"
            "organizations:\n"
            f"  - name: bench\n    org_id: {ORG_ID}\n    api_key_env: BENCH_ADMIN_KEY\n"
            f"    base_url: \"{base}\"\n    probe_interval: 1h\n"
            f"    per_token_series: {per_token_series}\n")
    t0 = time.monotonic()
    exporter = subprocess.Popen(
        [EXPORTER, f"--config.file={config}", "--web.listen-address=127.0.0.1:0",
         "--log.level=info"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    started.append(exporter)
    port = int(read_line_matching(exporter.stderr, r"listen=\"?127\.0\.0\.1:(\d+)", 20, "exporter").group(1))
    done = read_line_matching(
        exporter.stderr, r"organization inventory list complete.*list=api_tokens.*", LIST_TIMEOUT,
        "api_tokens list")
    wall = time.monotonic() - t0
    # Keep draining the log so that a full pipe never blocks the exporter.
    threading.Thread(target=lambda: [None for _ in exporter.stderr], daemon=True).start()
    line = done.group(0)
    pages = int(re.search(r"pages=(\d+)", line).group(1))
    took_ms = int(re.search(r"took_ms=(\d+)", line).group(1))
    entries = int(re.search(r"entries=(\d+)", line).group(1))
    # Let the run finish the API keys list and the state settle.
    time.sleep(2)
    rss = status_kib(exporter.pid, "VmRSS")
    _, plain = get(port, "/metrics")
    _, gz = get(port, "/metrics", gzip=True)
    # Bounded loop of sequential gzip scrapes (as Prometheus sends them).
    lat = []
    end = time.monotonic() + SCRAPE_SECS
    while len(lat) < SCRAPES and time.monotonic() < end:
        s = time.monotonic()
        status, _ = get(port, "/metrics", gzip=True)
        lat.append(time.monotonic() - s)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
    hwm = status_kib(exporter.pid, "VmHWM")
    rss_after = status_kib(exporter.pid, "VmRSS")
    stop(exporter)
    stop(sim)
    return {
        "per_token_series": per_token_series,
        "entries": entries,
        "pages": pages,
        "list_seconds": took_ms / 1000.0,
        "pages_per_second": pages / (took_ms / 1000.0) if took_ms else float("nan"),
        "start_to_listed_seconds": wall,
        "rss_mib_after_listing": rss / 1024.0,
        "rss_mib_after_scrapes": rss_after / 1024.0,
        "peak_rss_mib": hwm / 1024.0,
        "body_plain_bytes": len(plain),
        "body_gzip_bytes": len(gz),
        "scrapes": len(lat),
        "gzip_p50_ms": percentile(lat, 50) * 1000,
        "gzip_p99_ms": percentile(lat, 99) * 1000,
        "gzip_max_ms": max(lat) * 1000 if lat else float("nan"),
    }


def main():
    for path in (EXPORTER, SIM):
        if not os.access(path, os.X_OK):
            sys.exit(f"inventory.py: {path} missing (bench/inventory.sh builds it)")
    results = []
    with tempfile.TemporaryDirectory(prefix="inv-bench-") as workdir:
        try:
            for mode in MODES:
                log(f"per_token_series: {mode}, {TOKENS} tokens")
                r = run_mode(mode, workdir)
                log(json.dumps(r))
                results.append(r)
        finally:
            stop_all()
    print()
    print(f"| per_token_series | entries | pages | pages/s | list s | RSS MiB (after list / peak) "
          f"| /metrics plain | gzip | gzip scrape p50 / p99 / max ms ({results[0]['scrapes'] if results else 0} scrapes) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['per_token_series']} | {r['entries']:,} | {r['pages']:,} | {r['pages_per_second']:.0f} "
              f"| {r['list_seconds']:.1f} | {r['rss_mib_after_listing']:.0f} / {r['peak_rss_mib']:.0f} "
              f"| {r['body_plain_bytes']:,} B | {r['body_gzip_bytes']:,} B "
              f"| {r['gzip_p50_ms']:.1f} / {r['gzip_p99_ms']:.1f} / {r['gzip_max_ms']:.1f} |")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
