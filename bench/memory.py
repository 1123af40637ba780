#!/usr/bin/env python3
"""Memory of apitoken_exporter at N tokens with env-var secrets and one label per token.

Run through bench/memory.sh (see bench/README.md, "Memory: bench/memory.sh"). For every
binary in MEM_BINS (side by side, interleaved run by run so they see the same machine load)
it starts the exporter on a generated config of N `jira` tokens, each with `token_env: TOK_i` (set in the
exporter's environment) and `labels: {team: team-<i mod 50>}`, against bench/fast_myself.py
on 127.0.0.1, and reports:

  steady   VmRSS once the first probe interval is over (every token probed once), before
           any scrape after the start-up check;
  scraped  VmRSS after MEM_SCRAPES gzip /metrics scrapes, 1.2 s apart (each one renders);
  settled  VmRSS one more interval later (probing continues, no scrapes; CPU per probe is
           measured over this stretch, roughly: run.sh is the CPU benchmark);
  peak     VmHWM at the end;

and where the resident memory of the settled process is, from /proc/PID/smaps: the binary's
own mappings, shared libraries, the brk heap (glibc's main arena), other anonymous mappings
(glibc's thread arenas and large allocations, or all of a mmap-based allocator's memory),
thread stacks (an anonymous mapping right above a PROT_NONE guard page) and the main stack
(which holds the N environment variables). With MEM_HEAP=massif every binary is also run
once under valgrind's massif, which reports the heap the program actually has allocated
(live bytes) at steady state and at its peak, next to what the allocator keeps resident
(glibc-malloc builds only: massif does not see a statically linked allocator).

Everything listens on 127.0.0.1; every wait is bounded; only processes started here are
stopped (by their PID). Standard library only.
"""

import atexit
import gzip
import http.client
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

N = int(os.environ.get("MEM_TOKENS", "10000"))
RUNS = int(os.environ.get("MEM_RUNS", "1"))
INTERVAL = int(os.environ.get("MEM_INTERVAL", "30"))
SCRAPES = int(os.environ.get("MEM_SCRAPES", "5"))
HEAP = os.environ.get("MEM_HEAP", "")  # "" or "massif"
CORE_SUT = os.environ.get("MEM_CORE_SUT", "0")
CORE_LOAD = os.environ.get("MEM_CORE_LOAD", "1")
KEEP = os.environ.get("MEM_KEEP") == "1"
EXTRA_ENV = os.environ.get("MEM_ENV", "")  # e.g. "MALLOC_ARENA_MAX=1", for diagnosis
# Each entry: a binary, optionally prefixed with environment settings for it alone,
# "KEY=VALUE[@KEY=VALUE...]@path" (a diagnostic: e.g. an allocator option for one binary).
SPECS = os.environ.get("MEM_BINS", os.path.join(REPO, "target/release/apitoken_exporter")).split()
PY = sys.executable or "python3"

STARTED = []  # Popen objects started here, and only those


def log(msg):
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start(cmd, log_path, core, env=None):
    with open(log_path, "ab") as out:
        p = subprocess.Popen(["taskset", "-c", core] + cmd, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
    STARTED.append(p)
    return p


def stop(p, grace=10.0):
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
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, on_signal)


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


def scrape_text(port, timeout=30.0):
    _, hdrs, body = http_get(port, "/metrics", {"Accept-Encoding": "gzip"}, timeout)
    if hdrs.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return body.decode()


def wait_until(what, check, deadline_s, step=0.05):
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

def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    return out


MAP_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$")


def smaps_breakdown(pid, exe):
    """Resident kB per kind of mapping (see the module docstring)."""
    maps = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = MAP_HEADER.match(line)
            if m:
                maps.append({"start": int(m.group(1), 16), "end": int(m.group(2), 16),
                             "perms": m.group(3), "path": m.group(4).strip(), "rss": 0})
            elif line.startswith("Rss:") and maps:
                maps[-1]["rss"] = int(line.split()[1])
    exe = os.path.realpath(exe)
    kinds = {"binary": 0, "libs": 0, "brk heap": 0, "anon mmap": 0, "thread stacks": 0,
             "main stack": 0, "other": 0}
    stacks = 0
    for i, m in enumerate(maps):
        path = m["path"]
        if path == exe or (path.endswith(" (deleted)") and path[:-10] == exe):
            kind = "binary"
        elif path.startswith("/"):
            kind = "libs"
        elif path == "[heap]":
            kind = "brk heap"
        elif path == "[stack]":
            kind = "main stack"
        elif path == "":
            prev = maps[i - 1] if i else None
            guarded = prev is not None and prev["end"] == m["start"] and prev["perms"].startswith("---") \
                and prev["end"] - prev["start"] <= 64 * 1024
            if guarded and m["perms"].startswith("rw"):
                kind = "thread stacks"
                stacks += 1
            else:
                kind = "anon mmap"
        else:
            kind = "other"
        kinds[kind] += m["rss"]
    kinds["stack count"] = stacks
    return kinds


def cpu_ns(pid, seen):
    """CPU time of the process in ns: the sum of its threads' schedstat run times, each
    thread's last-seen value kept in `seen` (a thread that exits keeps its time)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                seen[tid] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return sum(seen.values())


def cpu_over(pid, until):
    """CPU ns of `pid` from now until the monotonic time `until`, sampled every 0.5 s."""
    seen = {}
    start = cpu_ns(pid, seen)
    while time.monotonic() < until:
        time.sleep(min(0.5, max(0.0, until - time.monotonic())))
        cpu_ns(pid, seen)
    return sum(seen.values()) - start


# ----------------------------------------------------------------------------- setup

def secret(i):
    return f"ATATT3xFfGF0bench{i:06d}token"


def write_config(workdir, fast_port):
    path = os.path.join(workdir, f"mem-{N}.yaml")
    lines = [
        "global:",
        "  allow_insecure_http: true",
        f"  probe_interval: {INTERVAL}s",
        "  probe_timeout: 10s",
        "  max_concurrency: 16",
        "tokens:",
    ]
    for i in range(N):
        lines += [
            f"  - name: bench-{i}",
            "    provider: jira",
            f"    site: http://127.0.0.1:{fast_port}",
            f"    email: bench-{i}@example.com",
            f"    token_env: TOK_{i}",
            "    expires_at: 2027-06-30",
            f"    labels: {{team: team-{i % 50}}}",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def parse_spec(spec):
    *env, path = spec.split("@")
    extra = dict(kv.partition("=")[::2] for kv in env if kv)
    return os.path.abspath(path), extra


def exporter_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOK_", "MEM_"))}
    env.pop("RUST_LOG", None)
    for i in range(N):
        env[f"TOK_{i}"] = secret(i)
    for kv in EXTRA_ENV.split():
        k, _, v = kv.partition("=")
        env[k] = v
    return env


class FastServer:
    def __init__(self, workdir, max_seconds):
        port_file = os.path.join(workdir, "myself.port")
        cmd = [PY, os.path.join(HERE, "fast_myself.py"), "--listen", "127.0.0.1:0",
               "--port-file", port_file, "--max-seconds", str(max_seconds)]
        self.proc = start(cmd, os.path.join(workdir, "myself.log"), CORE_LOAD)

        def port():
            if self.proc.poll() is not None:
                raise RuntimeError("fast_myself.py exited; see its log")
            try:
                with open(port_file) as f:
                    return int(f.read().strip() or 0)
            except FileNotFoundError:
                return None
        self.port = wait_until("fast_myself.py port", port, 10)

    def requests(self):
        _, _, body = http_get(self.port, "/__stats", timeout=10)
        return int(re.search(rb'"requests": (\d+)', body).group(1))


# ----------------------------------------------------------------------------- one run

def measure(binary, cfg, env, fast, workdir, tag):
    port = free_port()
    t0 = time.monotonic()
    p = start([binary, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
              os.path.join(workdir, f"{tag}.log"), CORE_SUT, env)
    try:
        wait_until("/-/ready", lambda: http_get(port, "/-/ready", timeout=5)[0] == 200, 60)
        wait_until(f"/metrics with {N} tokens",
                   lambda: scrape_text(port).count("\napitoken_info{") == N, 60, step=0.5)
        started = status_kb(p.pid)
        r0 = fast.requests()
        # First probes are jittered over the interval: after it, every token was probed.
        time.sleep(max(0.0, t0 + INTERVAL + 2 - time.monotonic()))
        if p.poll() is not None:
            raise RuntimeError(f"{binary} exited; see {tag}.log")
        steady = status_kb(p.pid)
        probed = fast.requests() - r0
        for k in range(SCRAPES):
            if k:
                time.sleep(1.2)  # more than the cache's staleness: every scrape renders
            st, hdrs, _ = http_get(port, "/metrics", {"Accept-Encoding": "gzip"})
            if st != 200 or hdrs.get("content-encoding") != "gzip":
                raise RuntimeError(f"/metrics answered {st} without gzip")
        scraped = status_kb(p.pid)
        # CPU per probe over the rest of the second interval (no scrapes in it).
        r1, w0 = fast.requests(), time.monotonic()
        cpu = cpu_over(p.pid, t0 + 2 * INTERVAL + 2)
        r2, w1 = fast.requests(), time.monotonic()
        settled = status_kb(p.pid)
        smaps = smaps_breakdown(p.pid, binary)
        if p.poll() is not None:
            raise RuntimeError(f"{binary} exited during the run; see {tag}.log")
        return {"started": started["VmRSS"], "steady": steady["VmRSS"],
                "scraped": scraped["VmRSS"], "settled": settled["VmRSS"],
                "peak": settled["VmHWM"], "anon": settled["RssAnon"], "file": settled["RssFile"],
                "threads": settled["Threads"], "probed": probed,
                "cpu_us_per_probe": cpu / 1000 / max(1, r2 - r1), "window_s": w1 - w0,
                "smaps": smaps}
    finally:
        stop(p)


def parse_massif(path):
    """Snapshots of a massif.out file: (time ms, heap bytes, allocator extra bytes)."""
    snaps, cur = [], {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            if k in ("time", "mem_heap_B", "mem_heap_extra_B"):
                cur[k] = int(v)
                if k == "mem_heap_extra_B":
                    snaps.append((cur["time"], cur["mem_heap_B"], cur["mem_heap_extra_B"]))
                    cur = {}
    return snaps


def measure_massif(binary, cfg, env, fast, workdir, tag):
    """Heap in use (live bytes) under massif: at steady state and at the peak."""
    out = os.path.join(workdir, f"{tag}.massif")
    port = free_port()
    t0 = time.monotonic()
    p = start(["valgrind", "--tool=massif", "--time-unit=ms", "--detailed-freq=1000000",
               "--max-snapshots=1000", f"--massif-out-file={out}", binary,
               f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
              os.path.join(workdir, f"{tag}.log"), CORE_SUT, env)
    try:
        # valgrind is 20-50x slower: generous, still bounded, waits.
        wait_until("/-/ready (massif)", lambda: http_get(port, "/-/ready", timeout=10)[0] == 200,
                   600, step=0.5)
        t_ready = time.monotonic() - t0
        time.sleep(max(0.0, t0 + t_ready + INTERVAL + 5 - time.monotonic()))
        t_steady = (time.monotonic() - t0) * 1000
        for k in range(SCRAPES):
            if k:
                time.sleep(1.2)
            http_get(port, "/metrics", {"Accept-Encoding": "gzip"}, timeout=120)
        t_scraped = (time.monotonic() - t0) * 1000
        time.sleep(3)
    finally:
        stop(p, grace=120)
    snaps = parse_massif(out)
    if not snaps:
        raise RuntimeError(f"no massif snapshots in {out}")

    def at(t_ms):
        before = [s for s in snaps if s[0] <= t_ms]
        return before[-1] if before else snaps[0]
    peak = max(snaps, key=lambda s: s[1] + s[2])
    return {"steady_heap": at(t_steady)[1], "steady_extra": at(t_steady)[2],
            "scraped_heap": at(t_scraped)[1], "peak_heap": peak[1], "peak_extra": peak[2],
            "peak_at_s": peak[0] / 1000, "ready_s": t_ready, "file": out}


# ----------------------------------------------------------------------------- report

def mb(kb):
    return f"{kb / 1024:.1f}"


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows])


def main():
    bins = [parse_spec(spec) for spec in SPECS]
    for b, _ in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"memory: {b} is not an executable")
    if HEAP == "massif" and not shutil.which("valgrind"):
        sys.exit("memory: MEM_HEAP=massif needs valgrind")
    workdir = tempfile.mkdtemp(prefix="apitoken-mem-")
    per_run = 2 * INTERVAL + SCRAPES * 1.2 + 15
    est = RUNS * len(bins) * per_run + (len(bins) * (INTERVAL + 120) if HEAP else 0)
    log(f"{N} tokens (token_env + 1 label each), {len(bins)} binar{'y' if len(bins) == 1 else 'ies'}"
        f", {RUNS} run(s), interval {INTERVAL} s; about {est / 60:.0f} min; work dir {workdir}")
    fast = FastServer(workdir, max_seconds=est * 3 + 600)
    cfg = write_config(workdir, fast.port)
    env = exporter_env()
    results = {j: [] for j in range(len(bins))}
    heap = {}
    try:
        for run in range(1, RUNS + 1):
            for j, (b, extra) in enumerate(bins):
                r = measure(b, cfg, {**env, **extra}, fast, workdir, f"bin{j}-run{run}")
                results[j].append(r)
                log(f"run {run}/{RUNS} {b}: steady {mb(r['steady'])} MB, after scrapes "
                    f"{mb(r['scraped'])} MB, settled {mb(r['settled'])} MB, peak {mb(r['peak'])} MB, "
                    f"{r['threads']} threads, {r['probed']} probes in the first interval, "
                    f"{r['cpu_us_per_probe']:.1f} CPU-µs per probe over {r['window_s']:.0f} s")
        if HEAP == "massif":
            for j, (b, extra) in enumerate(bins):
                log(f"massif: {b} (slow)")
                heap[j] = measure_massif(b, cfg, {**env, **extra}, fast, workdir, f"bin{j}-massif")
    finally:
        fast_proc = fast.proc
        stop(fast_proc)

    def med(b, key, sub=None):
        vals = [(r[key][sub] if sub else r[key]) for r in results[b]]
        return statistics.median(vals)

    names = [os.path.relpath(b, REPO) if b.startswith(REPO + os.sep) else b for b, _ in bins]
    names = [" ".join([*(f"{k}={v}" for k, v in extra.items()), name])
             for name, (_, extra) in zip(names, bins)]
    cols = range(len(bins))
    print(f"\nMemory at {N} tokens (token_env, 1 label each), interval {INTERVAL} s, "
          f"median of {RUNS} run(s), MB (VmRSS unless noted)\n")
    rows = [
        ("start-up (all tokens in /metrics)", "started", None),
        ("steady: first interval over, before scrapes", "steady", None),
        (f"after {SCRAPES} gzip scrapes", "scraped", None),
        ("settled: one more interval later", "settled", None),
        ("peak (VmHWM)", "peak", None),
        ("  of settled: anonymous (RssAnon)", "anon", None),
        ("  of settled: file-backed (RssFile)", "file", None),
        ("  smaps: binary", "smaps", "binary"),
        ("  smaps: shared libraries", "smaps", "libs"),
        ("  smaps: brk heap (glibc main arena)", "smaps", "brk heap"),
        ("  smaps: other anonymous (arenas, mmap)", "smaps", "anon mmap"),
        ("  smaps: thread stacks", "smaps", "thread stacks"),
        ("  smaps: main stack (+ environment)", "smaps", "main stack"),
    ]
    out = [[label] + [mb(med(j, k, sub)) for j in cols] for label, k, sub in rows]
    out.append(["threads"] + [f"{med(j, 'threads'):.0f}" for j in cols])
    out.append(["CPU per probe, µs (settling window)"]
               + [f"{med(j, 'cpu_us_per_probe'):.1f}" for j in cols])
    if heap:
        for label, key in (("massif: live heap at steady state", "steady_heap"),
                           ("massif: allocator overhead at steady", "steady_extra"),
                           ("massif: live heap after scrapes", "scraped_heap")):
            out.append([label] + [mb(heap[j][key] / 1024) for j in cols])
        out.append(["massif: peak live heap"] + [
            f"{mb(heap[j]['peak_heap'] / 1024)} (at {heap[j]['peak_at_s']:.0f} s)" for j in cols])
    print(table(["", *names], out))
    if len(bins) == 2:
        print()
        for key in ("settled", "peak"):
            d = med(1, key) - med(0, key)
            print(f"{key}: {names[1]} {'+' if d >= 0 else ''}{mb(d)} MB vs {names[0]}")
    if RUNS > 1:
        print("\nevery run (steady / scraped / settled / peak MB, CPU µs per probe):")
        for j, name in zip(cols, names):
            print(f"  {name}: " + "; ".join(
                f"{mb(r['steady'])} / {mb(r['scraped'])} / {mb(r['settled'])} / {mb(r['peak'])}, "
                f"{r['cpu_us_per_probe']:.1f}" for r in results[j]))
    if KEEP:
        log(f"kept work dir {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
