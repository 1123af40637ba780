#!/usr/bin/env python3
"""Helper for tests/e2e/status_page.sh and scripts/screenshot-status-page.sh (stdlib only).

Subcommands:
  free-port                                   print a free 127.0.0.1 TCP port
  wait-probes METRICS_URL COUNT TIMEOUT PID   wait until COUNT tokens have a finished probe
  browser dump-dom|screenshot URL OUT LOG     run headless Chromium once, bounded
  check-demo DOM_FILE                         checks on the demo's rendered status page
  check-escaping DOM_FILE ERROR_TEXT SITE_TEXT  hostile text must render as text
  check-png PNG_FILE                          a real, non-trivial PNG

The check-* subcommands print one line per check ("ok   - ..." or "FAIL - ...: why"); the
calling script counts them. Every other subcommand exits non-zero with a reason on stderr.
"""

import html.parser
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

# The demo's tokens and what a person must read in their row (README "Quick start": the `demo` subcommand).
# state: exact text of the State cell, or a regex over the row; "error": regex over Last error.
DEMO_TOKENS = {
    "jira-valid": {"state": "valid"},
    "jira-expiring": {"state_re": r"^valid, expires in [0-7]\.\d days$", "days": (0.0, 7.0)},
    "jira-expired": {"state_re": r"\bexpired\b", "days": (-3650.0, 0.0)},
    "jira-revoked": {"state_re": r"revoked but still accepted"},
    "jira-anonymous": {"state_re": r"anonymous fallback"},
    "jira-service-account": {"state": "valid"},
    "confluence-valid": {"state": "valid"},
    "confluence-mismatch": {"state_re": r"identity mismatch"},
    "bitbucket-valid": {"state": "valid"},
    "bitbucket-ratelimited": {"state_or_error_re": r"probe failing|\brate_limited\b"},
    "admin-valid": {"state": "valid"},
    "admin-unreachable": {"error_re": r"\bconnect\b"},
    # the implicit token watching the demo organization's admin key
    "demo-org-admin-key": {"state": "valid"},
    "github-valid": {"state": "valid"},
    "gitlab-valid": {"state": "valid"},
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 10 * 1024
BROWSER_TIMEOUT = 60
WINDOW = "1280,900"


# ---------------------------------------------------------------- processes and HTTP


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of the calling shell still answers kill -0; /proc tells
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


PROBE_LINE = re.compile(
    r'^apitoken_last_probe_timestamp_seconds\{[^}]*token="([^"]+)"[^}]*\}\s+(\S+)', re.M
)


def probed_tokens(metrics_text):
    return {m.group(1) for m in PROBE_LINE.finditer(metrics_text) if float(m.group(2)) > 0}


def wait_probes(url, count, timeout, pid):
    deadline = time.monotonic() + timeout
    seen = set()
    last_err = "no answer yet"
    while time.monotonic() < deadline:
        if not alive(pid):
            sys.exit(f"wait-probes: process {pid} exited before {count} tokens were probed")
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                url, timeout=2
            ) as r:
                seen = probed_tokens(r.read().decode())
            if len(seen) >= count:
                return
            last_err = f"{len(seen)} of {count} tokens probed: {sorted(seen)}"
        except (OSError, ValueError) as e:
            last_err = str(e)
        time.sleep(0.5)
    sys.exit(f"wait-probes: not all {count} tokens probed within {timeout}s ({last_err})")


def chromium_binary():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("browser: chromium is not on PATH (scripts/install-test-deps.sh installs it)")


def browser(mode, url, out, log):
    """Runs headless Chromium once; kills its whole process group (it forks helpers) on
    every exit path, so nothing outlives the call."""
    profile = tempfile.mkdtemp(prefix="status-page-chromium-")
    args = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW}",
        "--hide-scrollbars",
    ]
    if mode == "dump-dom":
        args.append("--dump-dom")
    elif mode == "screenshot":
        args.append(f"--screenshot={os.path.abspath(out)}")
    else:
        sys.exit(f"browser: unknown mode {mode!r}")
    args.append(url)
    # Chromium writes caches and its NSS db under HOME/XDG dirs: keep them in the profile.
    env = dict(os.environ, HOME=profile, XDG_CONFIG_HOME=profile, XDG_CACHE_HOME=profile)
    proc = None
    try:
        with open(log, "ab") as log_f, open(
            out if mode == "dump-dom" else os.devnull, "wb"
        ) as out_f:
            proc = subprocess.Popen(
                args,
                stdout=out_f,
                stderr=log_f,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=BROWSER_TIMEOUT)
            except subprocess.TimeoutExpired:
                sys.exit(f"browser: chromium did not finish within {BROWSER_TIMEOUT}s")
        if code != 0:
            sys.exit(f"browser: chromium exited with {code} (log: {log})")
        if not os.path.exists(out) or os.path.getsize(out) == 0:
            sys.exit(f"browser: chromium wrote nothing to {out} (log: {log})")
    finally:
        if proc is not None:
            stop_group(proc)
        shutil.rmtree(profile, ignore_errors=True)


def stop_group(proc):
    """TERM, bounded wait, KILL: the group is the one Popen created for this Chromium."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.poll()
                return
            proc.poll()
            time.sleep(0.1)


# ---------------------------------------------------------------- a tiny DOM


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "param", "source", "track", "wbr"}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag):
        return [n for n in self.iter() if n.tag == tag]

    def text(self):
        # <br> separates words on screen (the token name from its site)
        if self.tag == "br":
            return "\n"
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class TreeBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_dom(path):
    with open(path, encoding="utf-8") as f:
        b = TreeBuilder()
        b.feed(f.read())
        b.close()
    return b.root


def norm(s):
    return " ".join(s.split())


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, ok, name, detail=""):
        if ok:
            print(f"ok   - {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL - {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


class StatusTable:
    """The token table: header names -> column index, rows keyed by token name (the first
    word of the first cell; the site follows it)."""

    def __init__(self, dom):
        self.headers = [norm(th.text()).lower() for th in dom.find_all("th")]
        self.rows = []
        for tr in dom.find_all("tr"):
            cells = [c for c in tr.children if isinstance(c, Node) and c.tag == "td"]
            if cells:
                self.rows.append(cells)

    def column(self, name):
        for i, h in enumerate(self.headers):
            if name in h:
                return i
        return None

    def row(self, token):
        for cells in self.rows:
            words = norm(cells[0].text()).split()
            if words and words[0] == token:
                return cells
        return None

    def names(self):
        return [norm(cells[0].text()).split()[0] for cells in self.rows if norm(cells[0].text())]


def cell(cells, index):
    if index is None or index >= len(cells):
        return ""
    return norm(cells[index].text())


def external_refs(dom):
    """Attributes that would make the browser fetch or navigate off the page's own origin,
    plus url()/@import in inline CSS."""
    refs = []
    remote = re.compile(r"^\s*(https?:)?//", re.I)
    for n in dom.iter():
        for k, v in n.attrs:
            if v is None:
                continue
            if k in ("src", "href", "action", "formaction", "poster", "data", "background") and remote.match(v):
                refs.append(f"<{n.tag} {k}={v!r}>")
            if k == "srcset" and re.search(r"(https?:)?//", v):
                refs.append(f"<{n.tag} srcset={v!r}>")
            if k == "style" and re.search(r"url\(|@import", v, re.I):
                refs.append(f"<{n.tag} style={v!r}>")
    for style in dom.find_all("style"):
        for m in re.finditer(r"(url\([^)]*\)|@import[^;]*)", style.text(), re.I):
            refs.append(f"<style> {m.group(1)}")
    return refs


def common_page_checks(c, dom, label):
    scripts = dom.find_all("script")
    c.check(not scripts, f"{label}: no <script> element in the DOM", f"{len(scripts)} found")
    refs = external_refs(dom)
    c.check(not refs, f"{label}: no external asset (no http(s):// in src/href, no CSS url())",
            "; ".join(refs[:5]))


def check_demo(path):
    c = Checks()
    dom = parse_dom(path)
    table = StatusTable(dom)
    names = table.names()
    c.check(len(table.rows) == len(DEMO_TOKENS),
            f"one table row per demo token ({len(DEMO_TOKENS)})",
            f"found {len(table.rows)} rows: {names}")
    missing = sorted(set(DEMO_TOKENS) - set(names))
    c.check(not missing, "every demo token has a row", f"missing {missing}")

    columns = {}
    for name in ("token", "provider", "state", "days to expiry", "last probe", "last error"):
        columns[name] = table.column(name)
        c.check(columns[name] is not None, f"table has a '{name}' column",
                f"headers are {table.headers}")

    for token, want in DEMO_TOKENS.items():
        cells = table.row(token)
        if cells is None:
            c.check(False, f"{token}: row shown", "no row")
            continue
        state = cell(cells, columns["state"])
        error = cell(cells, columns["last error"])
        if "state" in want:
            c.check(state.lower() == want["state"], f"{token}: state is '{want['state']}'",
                    f"state cell is {state!r}")
        if "state_re" in want:
            c.check(re.search(want["state_re"], state, re.I) is not None,
                    f"{token}: state shows /{want['state_re']}/", f"state cell is {state!r}")
        if "error_re" in want:
            c.check(re.search(want["error_re"], error) is not None,
                    f"{token}: last error shows /{want['error_re']}/",
                    f"last error cell is {error!r} (state {state!r})")
        if "state_or_error_re" in want:
            rx = want["state_or_error_re"]
            c.check(re.search(rx, f"{state} | {error}") is not None,
                    f"{token}: state or last error shows /{rx}/",
                    f"state {state!r}, last error {error!r}")
        if "days" in want:
            lo, hi = want["days"]
            days = cell(cells, columns["days to expiry"])
            try:
                ok = lo <= float(days) <= hi
            except ValueError:
                ok = False
            c.check(ok, f"{token}: days to expiry in [{lo:g}, {hi:g}]", f"cell is {days!r}")

    links = [v for a in dom.find_all("a") for k, v in a.attrs if k == "href" and v]
    c.check(any(re.fullmatch(r"(\./|/)?metrics", v) for v in links),
            "page links to /metrics", f"links are {links}")
    common_page_checks(c, dom, "demo page")
    return 1 if c.failed else 0


def check_escaping(path, error_text, site_text):
    c = Checks()
    dom = parse_dom(path)
    table = StatusTable(dom)
    whole = norm(dom.text())
    c.check(error_text in whole, "hostile token_file path shows as literal text",
            f"{error_text!r} not in the page text")
    c.check(site_text in whole, "hostile site URL shows as literal text (entities not decoded)",
            f"{site_text!r} not in the page text")
    injected = [n.tag for n in dom.iter() if n.tag in ("script", "img", "iframe", "svg", "b")]
    c.check(not injected, "no element injected by config text", f"found {injected}")
    c.check(len(table.rows) == 2, "one row per configured token (2)",
            f"found {len(table.rows)}: {table.names()}")
    common_page_checks(c, dom, "escaping page")
    return 1 if c.failed else 0


def check_png(path):
    c = Checks()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        c.check(False, "screenshot exists", str(e))
        return 1
    c.check(data.startswith(PNG_MAGIC), "screenshot has the PNG signature", repr(data[:8]))
    c.check(len(data) > MIN_PNG_BYTES, f"screenshot is larger than {MIN_PNG_BYTES} bytes",
            f"{len(data)} bytes")
    ok, detail = png_decodes(data)
    c.check(ok, "screenshot decodes (IHDR, complete zlib image data, not one flat colour)", detail)
    return 1 if c.failed else 0


def png_decodes(data):
    """Walks the chunks, inflates IDAT and checks its size matches IHDR; a blank page
    inflates to rows of one repeated byte, so also require some variety."""
    if not data.startswith(PNG_MAGIC):
        return False, "no PNG signature"
    pos, width, height, bpp, idat = 8, 0, 0, 0, b""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            bpp = max(1, depth * channels.get(colour, 4) // 8)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not (width and height):
        return False, "no IHDR"
    try:
        raw = zlib.decompress(idat)
    except zlib.error as e:
        return False, f"image data does not inflate: {e}"
    expected = height * (1 + width * bpp)
    if len(raw) != expected:
        return False, f"{len(raw)} bytes of image data, IHDR {width}x{height} needs {expected}"
    counts = {}
    for b in raw[:: max(1, len(raw) // 200_000)]:
        counts[b] = counts.get(b, 0) + 1
    top = max(counts.values()) / sum(counts.values())
    if top > 0.995:
        return False, f"{width}x{height}, image data is {top:.1%} one byte value (blank page?)"
    return True, f"{width}x{height}"


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "free-port":
        print(free_port())
    elif cmd == "wait-probes" and len(args) == 4:
        wait_probes(args[0], int(args[1]), float(args[2]), int(args[3]))
    elif cmd == "browser" and len(args) == 4:
        browser(*args)
    elif cmd == "check-demo" and len(args) == 1:
        return check_demo(args[0])
    elif cmd == "check-escaping" and len(args) == 3:
        return check_escaping(*args)
    elif cmd == "check-png" and len(args) == 1:
        return check_png(args[0])
    else:
        sys.exit(f"usage error: {argv[1:]}\n{__doc__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
