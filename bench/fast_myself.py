#!/usr/bin/env python3
"""A small, fast loopback stand-in for Atlassian's Jira `/myself`, for benchmarks only.

It also answers GitHub's `<anything>/user` and GitLab's
`<anything>/api/v4/personal_access_tokens/self` (fixed valid answers carrying everything
those vendors report: expiry, scopes, and for GitLab creation and last use), for the
mixed-vendor run (`bench/mixed.py`); they count as probe requests too.

Answers `GET <anything>/rest/api/3/myself` with a fixed 200 JSON body (the `emailAddress`
echoes the basic-auth user, so the exporter classifies every probe as `valid`) and an
`X-AAccountId` header, over HTTP/1.1 keep-alive. It counts the TCP connections it
accepted (and how many of them only asked for `/__stats`), the connections that carried at
least one probe request, and the probe requests served; `GET /__stats` returns those
counters as JSON. A client may open a connection and never use it (hyper's pool races a
new connect against a connection coming back), so "opened" and "carried a probe" differ.

asyncio Protocol callbacks (no streams, no per-request task) keep the cost per request to
a few tens of microseconds, so the server is never the bottleneck at the probe rates the
benchmark uses. Standard library only.
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import sys

MYSELF_SUFFIX = b"/rest/api/3/myself"
GITHUB_SUFFIX = b"/user"
GITLAB_SUFFIX = b"/api/v4/personal_access_tokens/self"
ACCOUNT_ID = "5b10ac8d82e05b22cc7d4ef5"
MAX_HEADER_BYTES = 64 * 1024


class Stats:
    def __init__(self):
        self.connections = 0  # every accepted TCP connection
        self.stats_connections = 0  # connections whose first request was /__stats
        self.probe_connections = 0  # connections that carried >= 1 /myself request
        self.requests = 0  # /myself requests answered
        self.other = 0  # requests to any other path (404)
        self.open = 0

    def as_json(self):
        return json.dumps(
            {
                "connections": self.connections,
                "stats_connections": self.stats_connections,
                "probe_connections": self.probe_connections,
                "requests": self.requests,
                "other_requests": self.other,
                "open_connections": self.open,
                "pid": os.getpid(),
            }
        ).encode()


STATS = Stats()
# Authorization header value -> ready-made response. Bounded so a misuse cannot grow it
# without limit; the benchmark uses at most a few tens of thousands of credentials.
RESPONSE_CACHE = {}
RESPONSE_CACHE_MAX = 100_000


def _response(status, body, content_type, extra=b""):
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n"
    )
    return head + body


NOT_FOUND = _response(b"404 Not Found", b"not found\n", b"text/plain")
BAD_REQUEST = _response(b"400 Bad Request", b"bad request\n", b"text/plain",
                        b"Connection: close\r\n")


def myself_response(auth):
    cached = RESPONSE_CACHE.get(auth)
    if cached is not None:
        return cached
    email = "bench@example.com"
    if auth and auth[:6].lower() == b"basic ":
        try:
            user = base64.b64decode(auth[6:].strip()).split(b":", 1)[0].decode()
            if user:
                email = user
        except (ValueError, UnicodeDecodeError):
            pass
    body = json.dumps(
        {
            "accountId": ACCOUNT_ID,
            "accountType": "atlassian",
            "emailAddress": email,
            "displayName": "Bench User",
            "active": True,
        }
    ).encode()
    resp = _response(b"200 OK", body, b"application/json;charset=UTF-8",
                     b"X-AAccountId: " + ACCOUNT_ID.encode() + b"\r\n")
    if len(RESPONSE_CACHE) < RESPONSE_CACHE_MAX:
        RESPONSE_CACHE[auth] = resp
    return resp


# Valid GitHub and GitLab answers with every fact those vendors report about a token.
GITHUB_USER = _response(
    b"200 OK", json.dumps({"login": "bench", "id": 583231, "type": "User"}).encode(),
    b"application/json; charset=utf-8",
    b"GitHub-Authentication-Token-Expiration: 2027-06-30 12:00:00 UTC\r\n"
    b"X-OAuth-Scopes: repo, read:org\r\nX-RateLimit-Remaining: 4999\r\n")
GITLAB_SELF = _response(
    b"200 OK", json.dumps({
        "id": 1, "name": "bench", "revoked": False, "created_at": "2026-01-10T08:30:00.000Z",
        "scopes": ["read_api", "read_user"], "user_id": 1234,
        "last_used_at": "2026-02-01T12:00:00.000Z", "active": True, "expires_at": "2027-06-30",
    }).encode(), b"application/json")


def probe_response(path, auth):
    """The answer to a probe request, or None for any other path."""
    if path.endswith(MYSELF_SUFFIX):
        return myself_response(auth)
    if path.endswith(GITLAB_SUFFIX):
        return GITLAB_SELF
    if path.endswith(GITHUB_SUFFIX):
        return GITHUB_USER
    return None


class Http11(asyncio.Protocol):
    """Minimal HTTP/1.1 server side: GET/HEAD only, pipelining tolerated, keep-alive."""

    def connection_made(self, transport):
        STATS.connections += 1
        STATS.open += 1
        self.transport = transport
        self.buf = b""
        self.carried_probe = False
        self.served = 0

    def connection_lost(self, exc):
        STATS.open -= 1

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    self.transport.write(BAD_REQUEST)
                    self.transport.close()
                return
            head = self.buf[:end]
            self.buf = self.buf[end + 4:]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self.transport.write(BAD_REQUEST)
                self.transport.close()
                return
            path = parts[1].split(b"?", 1)[0]
            auth = b""
            close = parts[2] == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"authorization":
                    auth = value.strip()
                elif lname == b"connection":
                    v = value.strip().lower()
                    close = v == b"close" or (close and v != b"keep-alive")
                elif lname == b"content-length" and value.strip() not in (b"", b"0"):
                    # The probes never send bodies; refuse rather than mis-frame.
                    self.transport.write(BAD_REQUEST)
                    self.transport.close()
                    return
            probe = probe_response(path, auth)
            if probe is not None:
                STATS.requests += 1
                if not self.carried_probe:
                    self.carried_probe = True
                    STATS.probe_connections += 1
                self.transport.write(probe)
            elif path == b"/__stats":
                if self.served == 0:
                    STATS.stats_connections += 1
                self.transport.write(_response(b"200 OK", STATS.as_json(), b"application/json"))
            else:
                STATS.other += 1
                self.transport.write(NOT_FOUND)
            self.served += 1
            if close:
                self.transport.close()
                return


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0 = any free)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--max-seconds", type=float, default=3600.0,
                    help="exit by itself after this long (benchmarks must stop on their own)")
    args = ap.parse_args()

    host, port = args.listen.rsplit(":", 1)
    if host != "127.0.0.1":
        sys.exit("fast_myself: only 127.0.0.1 is allowed")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http11, host, int(port), backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(bound))
        os.replace(tmp, args.port_file)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
