#!/usr/bin/env python3
"""Benchmark harness: apitoken_exporter vs blackbox_exporter (one http module per token).

Run through bench/run.sh, which installs the tools and builds the exporter first. All the
knobs are environment variables (see bench/README.md). Everything listens on 127.0.0.1;
every wait is bounded; only processes started here are stopped (by their PID).
Standard library only.
"""

import atexit
import datetime
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_float(name, default):
    return float(os.environ.get(name, default))


RUNS = env_int("BENCH_RUNS", 3)
WINDOW = env_float("BENCH_WINDOW", 30)  # seconds of steady-state CPU measurement
INTERVAL = env_int("BENCH_INTERVAL", 30)  # every token probed once per INTERVAL seconds
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "100 1000 10000").split()]
WRK_SECS = env_int("BENCH_WRK_SECS", 15)
WRK_CONNS = env_int("BENCH_WRK_CONNS", 50)
BB_WARMUP = env_float("BENCH_BB_WARMUP", 5)
CONCURRENCY = env_int("BENCH_CONCURRENCY", 16)  # max_concurrency / blackbox client workers
CORE_SUT = os.environ.get("BENCH_CORE_SUT", "0")  # system under test
CORE_LOAD = os.environ.get("BENCH_CORE_LOAD", "1")  # fast server, load clients, wrk
EXPORTER = os.environ.get("BENCH_EXPORTER", os.path.join(REPO, "target/release/apitoken_exporter"))
# Before/after: a second exporter binary (an older build) measured in the same run, right
# before or after EXPORTER at every size (alternating), and reported in its own table.
BASELINE = os.environ.get("BENCH_BASELINE") or None
# With a baseline, BENCH_SKIP_BLACKBOX=1 leaves out blackbox_exporter and the replay floor.
SKIP_BLACKBOX = os.environ.get("BENCH_SKIP_BLACKBOX") == "1"
BLACKBOX = os.environ.get("BENCH_BLACKBOX") or shutil.which("prometheus-blackbox-exporter") \
    or shutil.which("blackbox_exporter")
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results"))
KEEP = os.environ.get("BENCH_KEEP") == "1"
PY = sys.executable or "python3"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ----------------------------------------------------------------------------- processes

STARTED = []  # Popen objects started by this harness, and only those


def start(cmd, log_path, core):
    log = open(log_path, "ab")
    p = subprocess.Popen(["taskset", "-c", core] + cmd, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    log.close()
    STARTED.append(p)
    return p


def stop(p, grace=5.0):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=grace)
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in list(STARTED):
        try:
            stop(p, grace=3.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGHUP, on_signal)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, headers=None, timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def scrape_text(port):
    """A scrape as Prometheus makes it (gzip accepted), decoded."""
    _, hdrs, body = http_get(port, "/metrics", {"Accept-Encoding": "gzip"})
    if hdrs.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return body.decode()


def wait_until(what, check, deadline_s, step=0.002):
    """Polls `check` until it returns a truthy value or `deadline_s` seconds pass."""
    end = time.monotonic() + deadline_s
    last_err = None
    while time.monotonic() < end:
        try:
            v = check()
            if v:
                return v
        except (OSError, http.client.HTTPException) as e:
            last_err = e
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what} ({last_err})")


# ----------------------------------------------------------------------------- /proc

def cpu_sample(pid):
    """Process CPU in two resolutions: utime+stime from /proc/PID/stat (clock ticks, counts
    exited threads too) and per-thread run time from schedstat (nanoseconds)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads[tid] = int(f.read().split()[0])
        except OSError:
            pass
    return {"t": time.monotonic(), "ticks_s": ticks / CLK_TCK, "threads": threads}


def cpu_delta(a, b):
    """CPU seconds between two samples. Nanosecond schedstat when no thread exited in between
    (a thread born in between counts in full, which is right); else clock ticks."""
    if set(a["threads"]) <= set(b["threads"]):
        ns = sum(b["threads"].values()) - sum(a["threads"].values())
        return ns / 1e9, "schedstat"
    return b["ticks_s"] - a["ticks_s"], "ticks"


def cpu_over(pid, seconds, step=0.5):
    """Samples the process every `step` seconds for `seconds`; returns (first sample, last
    sample, CPU seconds, source). Threads that exit mid-window (tokio's idle blocking threads
    do, after 10 s of idleness) keep their last-seen run time, so nanosecond schedstat
    stays usable; only the last < `step` of an exiting thread's life could be missed."""
    first = cpu_sample(pid)
    last_seen = dict(first["threads"])
    end = first["t"] + seconds
    sample = first
    while True:
        time.sleep(max(0.0, min(step, end - time.monotonic())))
        sample = cpu_sample(pid)
        for tid, ns in sample["threads"].items():
            last_seen[tid] = max(ns, last_seen.get(tid, 0))
        if sample["t"] >= end:
            break
    ns = sum(v - first["threads"].get(tid, 0) for tid, v in last_seen.items())
    exact, _ = cpu_delta(first, sample)
    ticks = sample["ticks_s"] - first["ticks_s"]
    source = "schedstat" if set(first["threads"]) <= set(sample["threads"]) else "schedstat+exited"
    # Sanity: the tick counter (which includes exited threads) must agree within its
    # resolution; if not, trust the ticks.
    if abs(ns / 1e9 - ticks) > 0.02 + 0.1 * ticks:
        return first, sample, ticks, "ticks"
    return first, sample, ns / 1e9 if source != "schedstat" else exact, source


def mem_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


# ----------------------------------------------------------------------------- servers

def wait_port(proc, port_file, what):
    def port():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see its log")
        try:
            with open(port_file) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None
    return int(wait_until(f"{what} port", port, 10, step=0.01))


def build_floor(workdir):
    """Compiles bench/replay_floor.rs (std only) with rustc."""
    out = os.path.join(workdir, "replay_floor")
    subprocess.run([os.environ.get("RUSTC", "rustc"), "-O", "--edition", "2021", "-o", out,
                    os.path.join(HERE, "replay_floor.rs")], check=True, timeout=300)
    return out

class FastServer:
    def __init__(self, workdir, max_seconds=7200):
        port_file = os.path.join(workdir, "myself.port")
        if os.path.exists(port_file):
            os.remove(port_file)  # a stale port would be read before the new one is written
        cmd = [PY, os.path.join(HERE, "fast_myself.py"), "--listen", "127.0.0.1:0",
               "--port-file", port_file, "--max-seconds", str(max_seconds)]
        self.proc = start(cmd, os.path.join(workdir, "myself.log"), CORE_LOAD)
        self.port = wait_port(self.proc, port_file, "fast_myself.py")

    def stats(self):
        status, _, body = http_get(self.port, "/__stats", timeout=10)
        assert status == 200
        s = json.loads(body)
        s["t"] = time.monotonic()
        return s

    def stop(self):
        stop(self.proc)


def opened_connections(s0, s1):
    """TCP connections the client opened between two stats samples (the harness' own
    /__stats connections left out)."""
    return (s1["connections"] - s1["stats_connections"]) - (s0["connections"] - s0["stats_connections"])


# ----------------------------------------------------------------------------- configs

def token_files(workdir, n):
    d = os.path.join(workdir, "tokens")
    os.makedirs(d, exist_ok=True)
    paths = []
    for i in range(n):
        p = os.path.join(d, f"tok-{i}")
        if not os.path.exists(p):
            with open(p, "w") as f:
                f.write(f"ATATT3xFfGF0bench{i:06d}token\n")
        paths.append(p)
    return paths


def ours_config(workdir, n, fast_port, vendors=("jira",)):
    """N tokens; token i is of provider vendors[i % len(vendors)] (bench/mixed.py)."""
    path = os.path.join(workdir, f"ours-{n}-{'-'.join(vendors)}.yaml")
    files = token_files(workdir, n)
    lines = [
        "global:",
        "  allow_insecure_http: true",
        f"  probe_interval: {INTERVAL}s",
        "  probe_timeout: 10s",
        f"  max_concurrency: {CONCURRENCY}",
        "tokens:",
    ]
    for i in range(n):
        provider = vendors[i % len(vendors)]
        lines += [
            f"  - name: bench-{i}",
            f"    provider: {provider}",
            f"    site: http://127.0.0.1:{fast_port}",
            f"    token_file: {files[i]}",
            "    expires_at: 2027-06-30",
        ]
        if provider == "jira":
            lines.append(f"    email: bench-{i}@example.com")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def blackbox_config(workdir, n):
    path = os.path.join(workdir, f"blackbox-{n}.yaml")
    lines = ["modules:"]
    for i in range(n):
        lines += [
            f"  mod_{i}:",
            "    prober: http",
            "    timeout: 10s",
            "    http:",
            "      valid_status_codes: [200]",
            "      preferred_ip_protocol: ip4",
            "      basic_auth:",
            f"        username: bench-{i}@example.com",
            f"        password: ATATT3xFfGF0bench{i:06d}token",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- parsing

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)


def metric_sum(text, name, label_filter=None):
    total = 0.0
    for m in SAMPLE.finditer(text):
        if m.group(1) == name and (label_filter is None or label_filter in (m.group(2) or "")):
            total += float(m.group(3))
    return total


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out):
    def lat(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50_ms": lat(50),
        "p99_ms": lat(99),
        "rps": float(rps.group(1)) if rps else None,
        "errors": (sum(int(x) for x in errs.groups()) if errs else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    }


def run_wrk(port, path):
    cmd = ["taskset", "-c", CORE_LOAD, "wrk", f"-c{WRK_CONNS}", "-t2", f"-d{WRK_SECS}s",
           "--timeout", "10s", "-H", "Accept-Encoding: gzip", "--latency",
           f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=WRK_SECS + 60).stdout
    r = parse_wrk(out)
    if r["p99_ms"] is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    if r["errors"]:
        log(f"WARNING: wrk saw {r['errors']} socket errors or non-2xx answers")
    return r


# ----------------------------------------------------------------------------- systems

def window_figures(probes, window_s, cpu_s, cpu_src, s0, s1, steady, peak):
    """What both systems report for the measurement window: probe rate and CPU per probe,
    connections from the loopback server's counters, steady and peak RSS."""
    reqs = s1["requests"] - s0["requests"]
    new_conns = s1["probe_connections"] - s0["probe_connections"]
    return {
        "probes_per_s": probes / window_s,
        "cpu_us_per_probe": cpu_s / probes * 1e6 if probes else None,
        "cpu_source": cpu_src,
        "cpu_s": cpu_s,
        "probes_in_window": probes,
        "new_conns": new_conns,
        "opened_conns": opened_connections(s0, s1),
        "requests": reqs,
        "reuse_pct": 100.0 * (1 - new_conns / reqs) if reqs else None,
        "rss_mb": steady["VmRSS"] / 1024,
        "peak_rss_mb": peak["VmHWM"] / 1024,
    }


def bench_ours(workdir, n, fast, run, vendors=("jira",), scrapes=True, exporter=None):
    """`scrapes=False` (bench/mixed.py) measures the probe window only: no body sizes, cold
    scrapes or wrk. `exporter` is the binary (default EXPORTER; BASELINE for before/after)."""
    exporter = exporter or EXPORTER
    tag = "base" if exporter == BASELINE else "ours"
    cfg = ours_config(workdir, n, fast.port, vendors)
    port = free_port()
    t0 = time.monotonic()
    p = start([exporter, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
              os.path.join(workdir, f"{tag}-{n}-run{run}.log"), CORE_SUT)
    try:
        wait_until("/-/ready", lambda: http_get(port, "/-/ready", timeout=5)[0] == 200, 30)
        t_ready = time.monotonic() - t0

        def serving_all():
            text = scrape_text(port)
            return metric_sum(text, "apitoken_exporter_tokens") == n \
                and text.count("\napitoken_info{") == n

        wait_until(f"/metrics with {n} tokens", serving_all, 30)
        t_serving = time.monotonic() - t0
        log(f"ours N={n}: ready {t_ready * 1000:.0f} ms, /metrics with all tokens "
            f"{t_serving * 1000:.0f} ms; waiting out the first interval ({INTERVAL} s)")

        time.sleep(max(0.0, t0 + INTERVAL + 2 - time.monotonic()))
        if p.poll() is not None:
            raise RuntimeError("exporter exited; see its log")
        # Every token probed at least once, and no scrape since the start-up check: what the
        # exporter holds for its tokens, before any full /metrics body has been rendered.
        before_scrapes = mem_kb(p.pid)
        text0 = scrape_text(port)
        tp0 = time.monotonic()
        s0 = fast.stats()
        c0, c1, cpu_s, cpu_src = cpu_over(p.pid, WINDOW)
        s1 = fast.stats()
        text1 = scrape_text(port)
        tp1 = time.monotonic()
        steady = mem_kb(p.pid)

        cpu_window = c1["t"] - c0["t"]
        probes_counter = metric_sum(text1, "apitoken_probes_total") \
            - metric_sum(text0, "apitoken_probes_total")
        valid = metric_sum(text1, "apitoken_probes_total", 'result="valid"') \
            - metric_sum(text0, "apitoken_probes_total", 'result="valid"')
        # The counter delta spans the two scrapes; scale it to the CPU window.
        probes = probes_counter * cpu_window / (tp1 - tp0)
        reqs = s1["requests"] - s0["requests"]
        if reqs and abs(probes_counter - reqs) > 0.05 * reqs + 2:
            log(f"WARNING ours N={n}: exporter counted {probes_counter:.0f} probes, the loopback "
                f"server {reqs} requests")
        window = window_figures(probes, cpu_window, cpu_s, cpu_src, s0, s1, steady, steady)
        window["valid_share"] = valid / probes_counter if probes_counter else None
        if not scrapes:
            return window

        _, _, plain = http_get(port, "/metrics")
        status, hdrs, gz = http_get(port, "/metrics", {"Accept-Encoding": "gzip"})
        if hdrs.get("content-encoding") != "gzip":
            raise RuntimeError("exporter did not gzip /metrics")
        gzip.decompress(gz)  # must be valid gzip
        gz_path = os.path.join(workdir, f"metrics-{n}.gz")
        with open(gz_path, "wb") as f:
            f.write(gz)

        # What one Prometheus scrape sees: nothing scraped for over a second, so no cached
        # body is current. Median of 3.
        cold = []
        for _ in range(3):
            time.sleep(1.2)
            t = time.monotonic()
            http_get(port, "/metrics", {"Accept-Encoding": "gzip"})
            cold.append((time.monotonic() - t) * 1000)

        log(f"ours N={n}: wrk -c{WRK_CONNS} on gzip /metrics for {WRK_SECS} s")
        wrk = run_wrk(port, "/metrics")
        peak = mem_kb(p.pid)
        if p.poll() is not None:
            raise RuntimeError("exporter exited during the run; see its log")
        return {
            **window_figures(probes, cpu_window, cpu_s, cpu_src, s0, s1, steady, peak),
            "startup_ready_ms": t_ready * 1000,
            "startup_ms": t_serving * 1000,
            "probes_counter": probes_counter,
            "valid_share": valid / probes_counter if probes_counter else None,
            "rss_before_scrapes_mb": before_scrapes["VmRSS"] / 1024,
            "body_plain_kb": len(plain) / 1024,
            "body_gzip_kb": len(gz) / 1024,
            "wrk": wrk,
            "cold_scrape_ms": statistics.median(cold),
            "gz_path": gz_path,
        }
    finally:
        stop(p)


def bench_replay(workdir, floor_bin, gz_path):
    port_file = os.path.join(workdir, f"floor-{time.monotonic_ns()}.port")
    p = start([floor_bin, gz_path, port_file, str(WRK_SECS + 120)],
              os.path.join(workdir, "floor.log"), CORE_SUT)
    try:
        port = wait_port(p, port_file, "replay_floor")
        status, hdrs, body = http_get(port, "/metrics", {"Accept-Encoding": "gzip"})
        assert status == 200 and hdrs.get("content-encoding") == "gzip"
        with open(gz_path, "rb") as f:
            assert body == f.read()
        return run_wrk(port, "/metrics")
    finally:
        stop(p)


def bench_blackbox(workdir, n, fast, run):
    cfg = blackbox_config(workdir, n)
    port = free_port()
    target = f"http://127.0.0.1:{fast.port}/rest/api/3/myself"
    t0 = time.monotonic()
    p = start([BLACKBOX, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
              os.path.join(workdir, f"blackbox-{n}-run{run}.log"), CORE_SUT)
    client = None
    try:
        probe_path = f"/probe?module=mod_{n - 1}&target={target}"
        wait_until("blackbox_exporter probing",
                   lambda: b"\nprobe_success 1" in http_get(port, probe_path, timeout=5)[2], 60)
        t_ready = time.monotonic() - t0
        rate = n / INTERVAL
        out = os.path.join(workdir, f"client-{n}-run{run}.json")
        duration = BB_WARMUP + WINDOW + 2
        log(f"blackbox N={n}: ready {t_ready * 1000:.0f} ms; probing at {rate:.1f}/s "
            f"for {duration:.0f} s")
        client = start([PY, os.path.join(HERE, "probe_client.py"), "--port", str(port),
                        "--target", target, "--n", str(n), "--rate", str(rate),
                        "--duration", str(duration), "--concurrency", str(CONCURRENCY),
                        "--out", out], os.path.join(workdir, "client.log"), CORE_LOAD)
        time.sleep(BB_WARMUP)
        s0 = fast.stats()
        c0, c1, cpu_s, cpu_src = cpu_over(p.pid, WINDOW)
        s1 = fast.stats()
        steady = mem_kb(p.pid)
        client.wait(timeout=duration + 120)
        STARTED.remove(client)
        client = None
        peak = mem_kb(p.pid)
        with open(out) as f:
            done = json.load(f)["done"]
        in_window = [ok for t, ok in done if c0["t"] <= t < c1["t"]]
        probes = len(in_window)
        return {
            **window_figures(probes, c1["t"] - c0["t"], cpu_s, cpu_src, s0, s1, steady, peak),
            "startup_ms": t_ready * 1000,
            "valid_share": sum(in_window) / probes if probes else None,
        }
    finally:
        if client is not None:
            stop(client)
        stop(p)


# ----------------------------------------------------------------------------- report

def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def med(runs, *keys):
    def get(r):
        for k in keys:
            r = r.get(k) if isinstance(r, dict) else None
        return r
    return median([get(r) for r in runs])


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b, digits=2):
    return f"{a / b:.{digits}f}×" if a is not None and b else "n/a"


def build_baseline_report(results):
    """Before (BENCH_BASELINE) vs after (BENCH_EXPORTER), measured in the same run."""
    rows, goals = [], []
    for n in SIZES:
        a, b = results[n]["ours"], results[n]["baseline"]
        o = lambda *k: med(a, *k)  # noqa: E731
        w = lambda *k: med(b, *k)  # noqa: E731
        nn = f"{n:,}"
        for label, keys in (("CPU per probe, µs", ("cpu_us_per_probe",)),
                            ("RSS after first interval, MB", ("rss_before_scrapes_mb",)),
                            ("RSS steady, MB", ("rss_mb",)),
                            ("RSS peak (VmHWM), MB", ("peak_rss_mb",)),
                            ("start-up to serving all tokens, ms", ("startup_ms",)),
                            ("one cold gzip scrape, ms", ("cold_scrape_ms",)),
                            (f"gzip /metrics p99 ms, {WRK_CONNS} clients", ("wrk", "p99_ms")),
                            ("probes on a reused connection, %", ("reuse_pct",))):
            rows.append((nn, label, fmt(w(*keys), 2 if "scrape" in label or "p99" in label else 1),
                         fmt(o(*keys), 2 if "scrape" in label or "p99" in label else 1),
                         ratio(o(*keys), w(*keys), 3)))
        for label, key in (("CPU per probe", "cpu_us_per_probe"), ("RSS steady", "rss_mb"),
                           ("RSS peak", "peak_rss_mb")):
            before, after = w(key), o(key)
            goals.append(_goal(f"N={nn}: {label} after ≤ 1.05× before",
                               before and after is not None and after <= 1.05 * before,
                               f"{fmt(before)} → {fmt(after)} = {ratio(after, before, 3)}"))
    md = ["| tokens | metric | before (`BENCH_BASELINE`) | after (`BENCH_EXPORTER`) | after ÷ before |",
          "|---:|---|---:|---:|---:|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(["## Before and after, same run", "", f"- before: `{BASELINE}`",
                       f"- after: `{EXPORTER}`", f"- Each figure is the median of {RUNS} run(s); "
                       "the two binaries alternate which goes first", ""] + md
                      + ["", "Goals:", ""] + [f"    {g}" for g in goals]) + "\n"


def build_report(results, meta):
    rows = []
    goals = []
    if SKIP_BLACKBOX:
        return "", goals
    for n in SIZES:
        ours, bb, rp = results[n]["ours"], results[n]["blackbox"], results[n]["replay"]
        o = lambda *k: med(ours, *k)  # noqa: E731
        b = lambda *k: med(bb, *k)  # noqa: E731
        f = lambda *k: med(rp, *k)  # noqa: E731
        nn = f"{n:,}"
        rows += [
            (nn, "probes/s (same schedule for both)", fmt(o("probes_per_s")), fmt(b("probes_per_s")), ""),
            (nn, "CPU per probe, µs", fmt(o("cpu_us_per_probe")), fmt(b("cpu_us_per_probe")),
             ratio(o("cpu_us_per_probe"), b("cpu_us_per_probe"))),
            (nn, "probes in window: exporter counter / loopback server",
             f"{fmt(o('probes_in_window'), 0)} / {fmt(o('requests'), 0)}",
             f"{fmt(b('probes_in_window'), 0)} / {fmt(b('requests'), 0)}", ""),
            (nn, "RSS after first interval, before steady scrapes, MB",
             fmt(o("rss_before_scrapes_mb")), "", ""),
            (nn, "RSS steady (probing + 2 gzip scrapes), MB", fmt(o("rss_mb")), fmt(b("rss_mb")),
             ratio(o("rss_mb"), b("rss_mb"))),
            (nn, "RSS peak (VmHWM), MB", fmt(o("peak_rss_mb")), fmt(b("peak_rss_mb")),
             ratio(o("peak_rss_mb"), b("peak_rss_mb"))),
            (nn, "probes on a reused connection, %", fmt(o("reuse_pct"), 2), fmt(b("reuse_pct"), 2), ""),
            (nn, "TCP connections opened / first used by a probe / probe requests (window)",
             f"{fmt(o('opened_conns'), 0)} / {fmt(o('new_conns'), 0)} / {fmt(o('requests'), 0)}",
             f"{fmt(b('opened_conns'), 0)} / {fmt(b('new_conns'), 0)} / {fmt(b('requests'), 0)}", ""),
            (nn, "probes classified valid / successful, %", fmt(_pct(o("valid_share")), 1),
             fmt(_pct(b("valid_share")), 1), ""),
            (nn, "start-up to serving all tokens, ms", fmt(o("startup_ms")), fmt(b("startup_ms")),
             ratio(o("startup_ms"), b("startup_ms"))),
            (nn, "/metrics body plain / gzip, KiB",
             f"{fmt(o('body_plain_kb'))} / {fmt(o('body_gzip_kb'))}", "", ""),
            (nn, "one gzip scrape after 1 s without scrapes (Prometheus' view), ms",
             fmt(o("cold_scrape_ms"), 2), "", ""),
            (nn, f"gzip /metrics p50 ms, {WRK_CONNS} clients (vs replay floor)",
             fmt(o("wrk", "p50_ms"), 2), fmt(f("p50_ms"), 2), ratio(o("wrk", "p50_ms"), f("p50_ms"))),
            (nn, f"gzip /metrics p99 ms, {WRK_CONNS} clients (vs replay floor)",
             fmt(o("wrk", "p99_ms"), 2), fmt(f("p99_ms"), 2), ratio(o("wrk", "p99_ms"), f("p99_ms"))),
            (nn, "gzip /metrics requests/s (vs replay floor)", fmt(o("wrk", "rps")), fmt(f("rps")),
             ratio(o("wrk", "rps"), f("rps"))),
        ]
        cpu_o, cpu_b = o("cpu_us_per_probe"), b("cpu_us_per_probe")
        goals.append(_goal(f"N={nn}: CPU per probe ≤ 0.15× blackbox_exporter",
                           cpu_o is not None and cpu_b and cpu_o <= 0.15 * cpu_b,
                           f"{fmt(cpu_o)} µs vs {fmt(cpu_b)} µs = {ratio(cpu_o, cpu_b)}"))
        reuse = o("reuse_pct")
        goals.append(_goal(f"N={nn}: ≥ 99 % of probes on reused connections",
                           reuse is not None and reuse >= 99.0,
                           f"{fmt(reuse, 2)} % ({fmt(o('new_conns'), 0)} new connections for "
                           f"{fmt(o('requests'), 0)} probe requests)"))
        p99, floor99 = o("wrk", "p99_ms"), f("p99_ms")
        limit = {1000: 10.0, 10000: 50.0}.get(n)
        if limit is not None:
            goals.append(_goal(f"N={nn}: gzip /metrics p99 < {limit:g} ms with {WRK_CONNS} clients",
                               p99 is not None and p99 < limit, f"p99 {fmt(p99, 2)} ms"))
        goals.append(_goal(f"N={nn}: gzip /metrics p99 within 2× of the replay floor",
                           p99 is not None and floor99 and p99 <= 2 * floor99,
                           f"{fmt(p99, 2)} ms vs floor {fmt(floor99, 2)} ms = {ratio(p99, floor99)}"))
        if n == 10000:
            peak, steady = o("peak_rss_mb"), o("rss_mb")
            goals.append(_goal("N=10,000: RSS ≤ 50 MB (judged on peak VmHWM)",
                               peak is not None and peak <= 50,
                               f"steady {fmt(steady)} MB, peak {fmt(peak)} MB"))
            st = o("startup_ms")
            goals.append(_goal("N=10,000: start-up < 1 s (process start → /-/ready and all "
                               "tokens on /metrics)", st is not None and st < 1000,
                               f"{fmt(st)} ms"))
    if 10000 not in SIZES:
        goals.append("SKIP  RSS ≤ 50 MB and start-up < 1 s at 10,000 tokens (size not run)")

    md = []
    md.append("| tokens | metric | apitoken_exporter | blackbox_exporter (or replay floor) | ratio |")
    md.append("|---:|---|---:|---:|---:|")
    for r in rows:
        md.append("| " + " | ".join(r) + " |")
    header = [
        "## Benchmark: apitoken_exporter vs blackbox_exporter",
        "",
        f"- Date: {meta['date']}; exporter revision `{meta['revision']}`; "
        f"blackbox_exporter {meta['blackbox_version']}; wrk {meta['wrk_version']}",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores; system under test pinned to core "
        f"{CORE_SUT}, loopback `/myself` server, load clients and wrk on core {CORE_LOAD}; "
        f"load average {meta['loadavg_start']} at start, {meta['loadavg_end']} at end",
        f"- Schedule: every token probed once every {INTERVAL} s (N/{INTERVAL} probes/s) by both "
        f"systems, {CONCURRENCY} probes in flight at most; CPU measured over {WINDOW:g} s of "
        f"steady state (ours: after the first interval); /metrics: "
        f"`wrk -c{WRK_CONNS} -t2 -d{WRK_SECS}s -H 'Accept-Encoding: gzip'` while probing "
        f"continues; replay floor: the same gzip bytes from a minimal native server "
        f"(bench/replay_floor.rs) on core {CORE_SUT}",
        f"- Each figure is the median of {RUNS} run(s)",
        "",
    ]
    return "\n".join(header + md + ["", "Goals:", ""] + [f"    {g}" for g in goals]) + "\n", goals


def _pct(x):
    return None if x is None else 100.0 * x


def _goal(text, ok, detail):
    return f"{'PASS' if ok else 'FAIL'}  {text}: {detail}"


def cmd_out(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _first(pattern, text):
    m = re.search(pattern, text)
    return m.group(1) if m else "unknown"


def machine_meta():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    bb = cmd_out([BLACKBOX, "--version"]) if BLACKBOX and not SKIP_BLACKBOX else ""
    wrk = cmd_out(["wrk", "-v"])
    rev = cmd_out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = cmd_out(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "revision": rev + ("+uncommitted src changes" if dirty else ""),
        "blackbox_version": _first(r"version (\S+)", bb),
        "wrk_version": _first(r"wrk (?:debian/)?(\S+)", wrk),
        "loadavg_start": " ".join(open("/proc/loadavg").read().split()[:3]),
    }


def main():
    tools = [("apitoken_exporter", EXPORTER)]
    if BASELINE:
        tools.append(("BENCH_BASELINE", BASELINE))
    if not SKIP_BLACKBOX:
        tools.append(("blackbox_exporter", BLACKBOX))
    elif not BASELINE:
        sys.exit("bench: BENCH_SKIP_BLACKBOX=1 only with BENCH_BASELINE (nothing to compare)")
    for tool, path in tools:
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"bench: {tool} not found ({path}); run bench/run.sh")
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("bench: wrk and taskset are needed; run bench/run.sh")
    meta = machine_meta()
    workdir = tempfile.mkdtemp(prefix="apitoken-bench-")
    os.makedirs(RESULTS, exist_ok=True)
    est = RUNS * len(SIZES) * (INTERVAL + 2 * WINDOW + 3 * WRK_SECS + BB_WARMUP + 10)
    log(f"sizes {SIZES}, {RUNS} run(s), interval {INTERVAL} s, window {WINDOW:g} s, "
        f"wrk {WRK_SECS} s; about {est / 60:.0f} min; work dir {workdir}")
    floor_bin = None if SKIP_BLACKBOX else build_floor(workdir)
    fast = FastServer(workdir)
    results = {n: {"ours": [], "blackbox": [], "replay": [], "baseline": []} for n in SIZES}
    try:
        for run in range(1, RUNS + 1):
            for n in SIZES:
                binaries = [("apitoken_exporter", EXPORTER, "ours")]
                if BASELINE:
                    binaries.append(("baseline", BASELINE, "baseline"))
                    if run % 2 == 0:
                        binaries.reverse()
                for name, binary, key in binaries:
                    log(f"run {run}/{RUNS}, N={n}: {name}")
                    r = bench_ours(workdir, n, fast, run, exporter=binary)
                    results[n][key].append(r)
                    log(f"  CPU {fmt(r['cpu_us_per_probe'])} µs/probe at {r['probes_per_s']:.1f}/s "
                        f"({r['cpu_source']}), RSS {r['rss_mb']:.1f}/{r['peak_rss_mb']:.1f} MB, "
                        f"reuse {fmt(r['reuse_pct'], 2)} %, p99 {r['wrk']['p99_ms']:.2f} ms")
                ours = results[n]["ours"][-1]
                if SKIP_BLACKBOX:
                    continue
                log(f"run {run}/{RUNS}, N={n}: replay floor")
                rp = bench_replay(workdir, floor_bin, ours["gz_path"])
                results[n]["replay"].append(rp)
                log(f"  floor p99 {rp['p99_ms']:.2f} ms, {rp['rps']:.0f} req/s")
                log(f"run {run}/{RUNS}, N={n}: blackbox_exporter")
                bb = bench_blackbox(workdir, n, fast, run)
                results[n]["blackbox"].append(bb)
                log(f"  CPU {fmt(bb['cpu_us_per_probe'])} µs/probe at {bb['probes_per_s']:.1f}/s "
                    f"({bb['cpu_source']}), RSS {bb['rss_mb']:.1f}/{bb['peak_rss_mb']:.1f} MB, "
                    f"reuse {fmt(bb['reuse_pct'], 2)} %")
    finally:
        fast.stop()
    meta["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    report, _ = build_report(results, meta)
    if BASELINE:
        report += ("\n" if report else "") + build_baseline_report(results)
    print()
    print(report)
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(report)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(RESULTS, f"raw-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "settings": {"runs": RUNS, "window": WINDOW, "interval": INTERVAL,
                                              "sizes": SIZES, "wrk_secs": WRK_SECS,
                                              "wrk_conns": WRK_CONNS, "concurrency": CONCURRENCY},
                   "results": {str(k): v for k, v in results.items()}}, f, indent=1)
    log(f"wrote {os.path.join(RESULTS, 'latest.md')} and raw-{stamp}.json")
    if KEEP:
        log(f"kept work dir {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
