#!/usr/bin/env python3
"""Drives blackbox_exporter the way Prometheus would with one `http` module per credential.

Request k (k = 0, 1, 2, ...) is due at start + k/rate and asks
`/probe?module=mod_{k mod N}&target=<target>`, so every credential is probed once every
N/rate seconds: the same schedule the apitoken exporter runs on its own. A fixed number of
worker threads, each with one keep-alive connection to blackbox_exporter, share the
schedule (worker w takes k = w, w+C, w+2C, ...), which bounds the requests in flight like
Prometheus' own scrape concurrency would. The run is bounded in time and in count.

Writes a JSON file with one `[done_monotonic, ok]` pair per finished probe; `ok` is true
when the answer was HTTP 200 with `probe_success 1`. CLOCK_MONOTONIC is system-wide, so the
harness can count the probes that finished inside its own measurement window.
Standard library only.
"""

import argparse
import http.client
import json
import threading
import time
from urllib.parse import quote


def worker(w, args, start, deadline, results, lock):
    conn = None
    k = w
    done = []
    target = quote(args.target, safe="")
    while k < args.max_requests:
        due = start + k / args.rate
        now = time.monotonic()
        if due >= deadline or now >= deadline:
            break
        if due > now:
            time.sleep(due - now)
        path = f"/probe?module=mod_{k % args.n}&target={target}"
        ok = False
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            ok = resp.status == 200 and b"\nprobe_success 1" in body
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        done.append((time.monotonic(), ok))
        k += args.concurrency
    if conn is not None:
        conn.close()
    with lock:
        results.extend(done)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True, help="blackbox_exporter port on 127.0.0.1")
    ap.add_argument("--target", required=True, help="URL blackbox_exporter probes")
    ap.add_argument("--n", type=int, required=True, help="number of modules mod_0..mod_{n-1}")
    ap.add_argument("--rate", type=float, required=True, help="probes per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds to run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.max_requests = int(args.rate * args.duration) + 1

    start = time.monotonic()
    deadline = start + args.duration
    results, lock = [], threading.Lock()
    threads = [
        threading.Thread(target=worker, args=(w, args, start, deadline, results, lock), daemon=True)
        for w in range(args.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        # Each request has a 30 s socket timeout; the join bound keeps the whole run bounded.
        t.join(timeout=args.duration + 60)
    results.sort()
    with open(args.out, "w") as f:
        json.dump({"start": start, "deadline": deadline, "done": results}, f)


if __name__ == "__main__":
    main()
