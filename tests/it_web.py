#!/usr/bin/env python3
"""The web view end to end: kcat -> npstream broker -> npstream run ->
redis-server, then the engine's /api/ endpoints compared with what Redis
holds, and the page loaded in headless Chromium (its rendered DOM and a
screenshot). Usage: it_web.py NPSTREAM_BINARY. NPS_IT_KEEP=1 keeps the
work directory (logs, the DOM and the screenshot).

The window hashes come from the real engine; the trend hashes and the
detractor and alert streams are seeded directly in the formats of their
contract (docs/redis-schema.md, docs/web.md). Redis runs with the default
user switched off, so every API call proves it authenticates with
--redis-user/--redis-password as the pipeline does.
"""
import collections
import html.parser
import http.server
import threading
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import itlib
from itlib import Failure

try:
    from PIL import Image  # Debian's python3-pil
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from PIL import Image  # noqa: E402
    except ImportError:
        sys.exit("it_web needs python3-pil (apt-get install python3-pil)")

VIEWS = {"by_channel": ["channel"], "by_survey_region": ["survey", "region"]}
PREFIX = "itweb"
USER, PASSWORD = "webview", "s3cret pass"
HOUR, DAY = 3600000, 86400000
WIDTH, HEIGHT = 1280, 900
# Channel values that must come through the segment string, the JSON and
# the page unharmed: quotes, markup, UTF-8, a tab, the separators.
TRICKY_CHANNELS = ['a"b\\c', '<i id="pwned">x</i>', "café ☕", "tab\there", "R 1,a=b", "x:y"]


class Web:
    """GET requests against the engine's HTTP port."""

    def __init__(self, engine):
        status, _ = engine.http_get("/healthz")  # waits for the `http: ... on` line
        if status != 200:
            raise Failure("/healthz answered %d" % status)
        self.base = "http://" + re.search(r"http: .* on (127\.0\.0\.1:\d+)",
                                          engine.log()).group(1)

    def get(self, path, params=None):
        """(status, content type, body bytes, seconds)."""
        url = self.base + path
        if params:
            url += "?" + "&".join("%s=%s" % (k, urllib.parse.quote(str(v), safe=""))
                                  for k, v in params.items())
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return (resp.status, resp.headers.get("Content-Type"), resp.read(),
                        time.monotonic() - t0)
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type"), err.read(), time.monotonic() - t0

    def json(self, path, params=None, want=200):
        status, ctype, body, _ = self.get(path, params)
        if ctype != "application/json":
            raise Failure("%s %s: Content-Type %s" % (path, params, ctype))
        try:
            doc = json.loads(body.decode("utf-8"))  # strict: valid UTF-8 and JSON
        except ValueError as e:
            raise Failure("%s %s: not valid UTF-8 JSON (%s): %r" % (path, params, e, body[:300]))
        if status != want:
            raise Failure("%s %s answered %d, expected %d: %s" % (path, params, status, want,
                                                                 body[:300]))
        if want != 200 and not (isinstance(doc, dict) and isinstance(doc.get("error"), str)):
            raise Failure("%s %s: an error reply without {\"error\": ...}: %r"
                          % (path, params, doc))
        return doc


def same(api_value, text):
    """An API value equals the Redis text: numbers as numbers, the rest as
    strings."""
    if isinstance(api_value, str):
        return api_value == text
    if isinstance(api_value, bool) or not isinstance(api_value, (int, float)):
        return False
    try:
        return float(text) == api_value
    except ValueError:
        return False


def text_of(b):
    return b.decode("utf-8", "replace")


# ---------------------------------------------------------------- the data

def tricky_messages(T):
    out = []
    for i, channel in enumerate(TRICKY_CHANNELS):
        ev = {"id": "web-%d" % i, "ts": T - 1000 * (i + 1), "score": i % 11, "channel": channel,
              "survey": "web", "region": "R%d" % i}
        out.append((b"web-%d" % i, json.dumps(ev, ensure_ascii=False).encode()))
    # Half an hour old: in 1h and wider, no responses (so no nps) in 5m.
    out.append((b"web-old", json.dumps({"id": "web-old", "ts": T - 30 * 60000, "score": 9,
                                        "channel": "older"}).encode()))
    return out


def seed_trends(r, view, segments, now):
    """Trend hashes for `segments` (contract: field = bucket start ms,
    value "responses,promoters,passives,detractors,nps"); returns what was
    written, (segment, res) -> {field: value}, plus a few malformed fields."""
    seeded = {}
    for k, seg in enumerate(segments):
        for res, step, n in (("1h", HOUR, 60), ("1d", DAY, 20)):
            fields = {}
            for i in range(n):
                t = (now // step - i) * step
                resp = (7 * i + 3 * k) % 50
                pro, det = resp // 2, resp // 5
                nps = "%.4f" % (100.0 * (pro - det) / resp) if resp else ""
                fields[str(t)] = "%d,%d,%d,%d,%s" % (resp, pro, resp - pro - det, det, nps)
            if k == 0:  # readers skip what breaks the format, and count it
                base = now // step * step
                fields.update({"yesterday": "1,1,0,0,100.0000", str(base + 7): "1,2,3",
                               str(base + 9): "01,1,0,0,100"})
            r.hset("%s:trend:%s:%s:%s" % (PREFIX, view, seg, res), mapping=fields)
            seeded[(seg, res)] = fields
    return seeded


def seed_streams(r, now):
    """Detractor and alert entries as the engine writes them. A long comment
    (bounded by the API), control characters, markup and bytes that are
    not UTF-8."""
    for i in range(30):
        fields = {"id": "d-%d" % i, "score": str(i % 7), "ts": str(now - (30 - i) * 60000),
                  "survey": "checkout", "channel": ["email", "sms", "web"][i % 3],
                  "region": "IN", "partition": str(i % 4), "offset": str(100 + i)}
        if i % 2:
            fields["value"] = "%d.5" % (10 * i)
        if i % 3 == 0:
            fields["comment"] = "late again \"%d\" <i id=\"pwned\">x</i>\x01\t é" % i
        if i == 29:
            fields["comment"] = b"bad bytes \xff and \x80 here " + b"y" * 3000
        r.xadd(PREFIX + ":detractors", fields)
    for i in range(3):
        r.xadd(PREFIX + ":alerts", {
            "view": "by_channel", "segment": "channel=email", "window": "1h", "baseline": "7d",
            "state": "firing" if i != 1 else "resolved", "nps": "%.4f" % (-20.5 + i),
            "baseline_nps": "10.0000", "n": str(300 + i), "baseline_n": "5000",
            "z": "%.4f" % (-3.1 + i), "now_ms": str(now - (3 - i) * 1000)})


# ----------------------------------------------------------------- the API

def check_views(web, r):
    doc = web.json("/api/views")
    views = {text_of(k): text_of(v) for k, v in r.hgetall(PREFIX + ":views").items()}
    windows = {text_of(k): int(v) for k, v in r.hgetall(PREFIX + ":windows").items()}
    got_views = {v["name"]: ",".join(v["dimensions"]) for v in doc["views"]}
    if got_views != views or doc["views"][0]["name"] != "all" or doc["prefix"] != PREFIX:
        raise Failure("/api/views views %r, Redis has %r" % (doc["views"], views))
    if set(VIEWS) | {"all"} != set(views):
        raise Failure("test data: the engine published views %r" % views)
    got_windows = [(w["name"], w["size_ms"]) for w in doc["windows"]]
    want = sorted(windows.items(), key=lambda nw: (nw[1] == 0, nw[1]))
    if got_windows != want:
        raise Failure("/api/views windows %r, Redis has %r (narrowest first, total last)"
                      % (got_windows, want))
    return windows


def expected_rows(r, view, window):
    """Every segment of the view with its window hash, in the API's order."""
    segs = sorted(r.smembers("%s:segments:%s" % (PREFIX, view)))
    pipe = r.pipeline(transaction=False)
    for s in segs:
        pipe.hgetall(b"%s:win:%s:%s:%s" % (PREFIX.encode(), view.encode(), s, window.encode()))
    rows = []
    for s, h in zip(segs, pipe.execute()):
        h = {text_of(k): text_of(v) for k, v in h.items()}
        rows.append((text_of(s), h))
    rows.sort(key=lambda sh: (-int(sh[1].get("responses", 0)), sh[0].encode()))
    return rows


def compare_rows(where, got, want):
    if [g["segment"] for g in got] != [s for s, _ in want]:
        raise Failure("%s: segments in order %r, expected %r"
                      % (where, [g["segment"] for g in got][:8], [s for s, _ in want][:8]))
    for g, (seg, h) in zip(got, want):
        f = g["fields"]
        if set(f) != set(h) or not all(same(f[k], h[k]) for k in h):
            raise Failure("%s: segment %r fields %r, Redis has %r" % (where, seg, f, h))


def check_segments(web, r, windows):
    checked = 0
    for view in ["all"] + list(VIEWS):
        for window in windows:
            doc = web.json("/api/segments", {"view": view, "window": window})
            want = expected_rows(r, view, window)
            compare_rows("/api/segments %s %s" % (view, window), doc["rows"], want)
            card = r.scard("%s:segments:%s" % (PREFIX, view))
            if (doc["segments"], doc["read"], doc["complete"], doc["truncated"]) != \
                    (card, card, True, False) or doc["view"] != view or doc["window"] != window:
                raise Failure("/api/segments %s %s: header %r, SCARD %d"
                              % (view, window, {k: v for k, v in doc.items() if k != "rows"},
                                 card))
            checked += len(want)
    doc = web.json("/api/segments", {"view": "by_survey_region", "window": "total", "limit": 3})
    want = expected_rows(r, "by_survey_region", "total")
    compare_rows("/api/segments limit=3", doc["rows"], want[:3])
    if len(want) <= 3:
        raise Failure("test data: by_survey_region has only %d segments" % len(want))
    with_nps = [f for _, f in want if "nps" in f]
    without = [f for s, f in expected_rows(r, "by_channel", "5m") if "nps" not in f]
    if not with_nps or not without:
        raise Failure("test data: want segments with and without nps in their windows")
    return checked


def expected_trend(fields, points):
    good = []
    for t, v in fields.items():
        parts = v.split(",")
        if not t.isdigit() or len(parts) != 5 or not all(p.isdigit() and
                                                          (p == "0" or p[0] != "0")
                                                          for p in parts[:4]):
            continue
        good.append((int(t), [int(p) for p in parts[:4]] + [float(parts[4]) if parts[4] else None]))
    good.sort()
    return good[-points:], len(fields) - len(good)


def check_trend(web, seeded):
    names = ["responses", "promoters", "passives", "detractors", "nps"]
    for (seg, res), fields in seeded.items():
        for points in (None, 5, 1000):
            params = {"view": "by_channel", "segment": seg, "res": res}
            if points:
                params["points"] = points
            doc = web.json("/api/trend", params)
            want, malformed = expected_trend(fields, points or 48)
            got = [(p["t"], [p[n] for n in names]) for p in doc["points"]]
            if got != want or doc["malformed"] != malformed or doc["segment"] != seg \
                    or doc["res"] != res or not doc["complete"]:
                raise Failure("/api/trend %r: %d points (malformed %s), expected %d (%d); "
                              "first %r want %r" % (params, len(got), doc["malformed"], len(want),
                                                    malformed, got[:2], want[:2]))
    doc = web.json("/api/trend", {"view": "by_channel", "segment": "channel=nobody"})
    if doc["points"] != []:
        raise Failure("/api/trend of a segment without a trend: %r" % doc)
    return len(seeded)


def check_stream(web, r, name, count):
    params = {"count": count} if count else {}
    doc = web.json("/api/" + name, params)
    entries = r.xrevrange("%s:%s" % (PREFIX, name), count=count or 20)
    if [e["id"] for e in doc["entries"]] != [text_of(i) for i, _ in entries]:
        raise Failure("/api/%s %r: ids %r, Redis has %r" % (name, params,
                                                            [e["id"] for e in doc["entries"]],
                                                            [i for i, _ in entries]))
    bounded = 0
    for e, (_, fields) in zip(doc["entries"], entries):
        want = {}
        for k, v in fields.items():
            if len(v) > 1024:  # cut on a character boundary, marked with an ellipsis
                cut = 1024
                while cut and v[cut] & 0xC0 == 0x80:
                    cut -= 1
                v = v[:cut] + "\u2026".encode()
                bounded += 1
            want[text_of(k)] = text_of(v)  # a byte that is not UTF-8 reads as U+FFFD
        if e["fields"] != want:
            raise Failure("/api/%s entry %s: %r, Redis has %r" % (name, e["id"], e["fields"], want))
    return len(entries), bounded


def check_errors(web):
    bad = [("/api/segments", {"window": "total"}),
           ("/api/segments", {"view": "by_channel"}),
           ("/api/segments", {"view": "b@d", "window": "total"}),
           ("/api/segments", {"view": "", "window": "total"}),
           ("/api/segments", {"view": "by_channel", "window": "1h", "limit": 0}),
           ("/api/segments", {"view": "by_channel", "window": "1h", "limit": "ten"}),
           ("/api/segments", {"view": "by_channel", "window": "1h", "limit": 1001}),
           ("/api/segments", {"view": "by_channel", "window": "1h", "limit": -1}),
           ("/api/trend", {"view": "by_channel"}),
           ("/api/trend", {"view": "by_channel", "segment": "channel=a:b"}),
           ("/api/trend", {"view": "by_channel", "segment": "channel=\x01"}),
           ("/api/trend", {"view": "by_channel", "segment": "channel=email", "res": "2h"}),
           ("/api/trend", {"view": "by_channel", "segment": "channel=email", "points": 0}),
           ("/api/detractors", {"count": 0}),
           ("/api/detractors", {"count": 201}),
           ("/api/alerts", {"count": "1e2"})]
    for path, params in bad:
        web.json(path, params, want=400)
    missing = [("/api/segments", {"view": "no_such_view", "window": "total"}),
               ("/api/segments", {"view": "by_channel", "window": "2h"}),
               ("/api/trend", {"view": "no_such_view", "segment": "*"}),
               ("/api/nothing", None)]
    for path, params in missing:
        web.json(path, params, want=404)
    return len(bad) + len(missing)


# ---------------------------------------------------------------- the page

def check_page_source(web):
    status, ctype, body, _ = web.get("/")
    text = body.decode("utf-8")
    if status != 200 or not ctype.startswith("text/html") or "<script>" not in text:
        raise Failure("GET / answered %d %s: %r" % (status, ctype, body[:200]))
    remote = re.findall(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", text)
    if remote:
        raise Failure("the page loads something from the network: %r" % remote)
    return len(body)


class Dom(html.parser.HTMLParser):
    """The parts of the rendered page the test checks."""

    def __init__(self):
        super().__init__()
        self.rows = {}  # data-segment -> {"nps": ..., "text": ...}
        self.row = None
        self.ids = set()
        self.detractors = []
        self.alerts = []
        self.polylines = 0
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "tr" and "data-segment" in a:
            self.row = {"nps": a.get("data-nps"), "text": []}
            self.rows[a["data-segment"]] = self.row
        if tag == "li" and "data-id" in a:
            self.detractors.append(a["data-id"])
        if tag == "li" and "data-alert" in a:
            self.alerts.append(a["data-alert"])
        if tag == "polyline":
            self.polylines += 1

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None

    def handle_data(self, data):
        self.text.append(data)
        if self.row is not None:
            self.row["text"].append(data)


class CountingProxy:
    """An HTTP proxy in front of the engine that counts the GETs by path, to
    see the page poll the API (and never reload itself)."""

    def __init__(self, upstream):
        counts = self.counts = collections.Counter()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                counts[self.path.split("?")[0]] += 1
                try:
                    with urllib.request.urlopen(upstream + self.path, timeout=10) as resp:
                        status, ctype, body = resp.status, resp.headers["Content-Type"], resp.read()
                except urllib.error.HTTPError as err:
                    status, ctype, body = err.code, err.headers["Content-Type"], err.read()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def chromium(work, url, *args):
    profile = os.path.join(work, "chromium-profile")
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--user-data-dir=" + profile, "--window-size=%d,%d" % (WIDTH, HEIGHT),
           "--virtual-time-budget=5000"] + list(args) + [url]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise Failure("chromium exited %d: %s" % (proc.returncode, proc.stderr[-1500:]))
    return proc.stdout


def check_page(web, r, work):
    url = web.base + "/#view=by_channel&window=total&rows=50"
    proxy = CountingProxy(web.base)
    try:
        dom_text = chromium(work, url.replace(web.base, proxy.base), "--dump-dom").decode("utf-8")
    finally:
        proxy.close()
    # 5 s of the page's (virtual) time: a poll at 0, 2 and 4 s
    polls = proxy.counts["/api/segments"]
    if proxy.counts["/"] != 1 or polls < 2 or proxy.counts["/api/alerts"] != polls:
        raise Failure("the page should load once and poll the API every 2 s; requests: %r"
                      % dict(proxy.counts))
    with open(os.path.join(work, "page.html"), "w") as f:
        f.write(dom_text)
    dom = Dom()
    dom.feed(dom_text)
    want = expected_rows(r, "by_channel", "total")
    if list(dom.rows) != [s for s, _ in want]:
        raise Failure("the page shows segments %r, Redis has %r" % (list(dom.rows),
                                                                   [s for s, _ in want]))
    for seg, h in want:
        shown = dom.rows[seg]
        if "nps" in h and (shown["nps"] is None or float(shown["nps"]) != float(h["nps"])):
            raise Failure("the page shows NPS %s for %s, Redis has %s" % (shown["nps"], seg,
                                                                          h["nps"]))
        text = "".join(shown["text"])
        numbers = [float(x) for x in re.findall(r"-?\d+\.\d", text)]
        if "nps" in h and not any(abs(x - float(h["nps"])) <= 0.05 + 1e-9 for x in numbers):
            raise Failure("row %s reads %r, without NPS %s to one decimal" % (seg, text, h["nps"]))
    labels = " ".join("".join(v["text"]) for v in dom.rows.values())
    for channel in TRICKY_CHANNELS:
        if channel.replace("\t", "\ufffd") not in labels:
            raise Failure("the page does not show the channel %r as text: %r" % (channel, labels))
    if "pwned" in dom.ids:
        raise Failure("a value from Redis became markup in the page")
    detractor_ids = [text_of(f[b"id"]) for _, f in r.xrevrange(PREFIX + ":detractors", count=12)]
    alert_ids = [text_of(i) for i, _ in r.xrevrange(PREFIX + ":alerts", count=12)]
    if dom.detractors != detractor_ids or dom.alerts != alert_ids:
        raise Failure("the page lists detractors %r and alerts %r; Redis has %r and %r"
                      % (dom.detractors, dom.alerts, detractor_ids, alert_ids))
    if dom.polylines < 2:
        raise Failure("the page drew %d sparklines, expected one per seeded trend"
                      % dom.polylines)
    if "live" not in "".join(dom.text):
        raise Failure("the page's status does not say live")

    shot = os.path.join(work, "page.png")
    chromium(work, url, "--screenshot=" + shot, "--hide-scrollbars")
    with Image.open(shot) as img:
        if img.format != "PNG" or img.size != (WIDTH, HEIGHT):
            raise Failure("screenshot: %s %s, expected a %dx%d PNG" % (img.format, img.size,
                                                                       WIDTH, HEIGHT))
        colours = img.convert("RGB").getcolors(maxcolors=WIDTH * HEIGHT)
    # A blank or unstyled page has a handful of colours; this one has the
    # header, badges, bars and anti-aliased text and lines.
    if len(colours) < 200:
        raise Failure("screenshot %s has only %d colours: blank or unstyled" % (shot, len(colours)))
    dominant = max(colours)[0] / (WIDTH * HEIGHT)
    if dominant > 0.9:
        raise Failure("screenshot %s is %.0f%% one colour" % (shot, 100 * dominant))
    return len(want), len(colours), polls


def check_redis_down(web, redis, engine, work):
    redis.kill()
    for path, params in (("/api/views", None),
                         ("/api/segments", {"view": "by_channel", "window": "total"}),
                         ("/api/detractors", None)):
        doc = web.json(path, params, want=503)
        if "redis" not in doc["error"]:
            raise Failure("%s with Redis down: %r" % (path, doc))
    status, _, _, seconds = web.get("/api/trend", {"view": "by_channel", "segment": "*"})
    if status != 503 or seconds > 3:
        raise Failure("/api/trend with Redis down: %d after %.1f s" % (status, seconds))
    status, _, _, _ = web.get("/metrics")
    if status != 200:
        raise Failure("/metrics answered %d while Redis is down" % status)
    dom = Dom()
    dom.feed(chromium(work, web.base + "/", "--dump-dom").decode("utf-8"))
    text = "".join(dom.text)
    if "Cannot read the rollups: redis" not in text:
        raise Failure("the page does not say that Redis is unavailable: %r" % text[:500])
    engine.alive()


def lock_down(redis):
    """Only USER may use Redis (ACLs are not in the AOF: again after a restart)."""
    redis.client.execute_command("ACL", "SETUSER", USER, "on", ">" + PASSWORD, "~*", "&*",
                                 "+@all")
    redis.client.execute_command("ACL", "SETUSER", "default", "off")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: it_web.py NPSTREAM_BINARY")
    npstream = os.path.abspath(sys.argv[1])
    started = time.monotonic()
    children = itlib.Children()
    workdir = itlib.Workdir()
    work = workdir.path
    ok = False
    try:
        redis = itlib.RedisServer(children, work)
        redis.start()
        lock_down(redis)
        r = itlib.redis.Redis(host="127.0.0.1", port=redis.port, username=USER,
                              password=PASSWORD, socket_timeout=10)
        topic = "it-web"
        broker = itlib.Broker(children, npstream, work, topic, partitions=4)
        T = itlib.now_ms()
        itlib.kcat_produce(broker.bootstrap, topic,
                           itlib.gen_events(npstream, work, 4000, 5, T, 0.0) + tricky_messages(T))
        records, ends = itlib.kcat_read_all(broker.bootstrap, topic, 4001 + len(TRICKY_CHANNELS))
        ref = itlib.Reference(VIEWS, T).add_all(records)
        args = itlib.engine_args(broker, topic, "g-web", redis.address, PREFIX, VIEWS, 2, 200,
                                 ["--now", T, "--redis-user", USER, "--redis-password", PASSWORD])
        engine = itlib.Engine(children, npstream, work, args, name="web")
        itlib.wait_fences(r, PREFIX, "g-web", topic, itlib.unit_names(["all"] + list(VIEWS)),
                          ends, 60, [engine])
        hashes = itlib.compare(r, PREFIX, ref)
        print("engine: %s; %d window hashes equal the reference" % (ref.summary(), hashes))

        web = Web(engine)
        channels = [s for s, _ in expected_rows(r, "by_channel", "total")]
        seeded = seed_trends(r, "by_channel", channels[:3] + ["channel=R%201%2Ca%3Db"], T)
        seed_streams(r, T)

        windows = check_views(web, r)
        print("/api/views: %d views and %d windows as in Redis" % (len(VIEWS) + 1, len(windows)))
        print("/api/segments: %d (view, window, segment) rows equal their hashes, in order"
              % check_segments(web, r, windows))
        print("/api/trend: %d seeded trends read back, malformed fields skipped and counted"
              % check_trend(web, seeded))
        for name, count in (("detractors", 25), ("detractors", None), ("alerts", None)):
            n, bounded = check_stream(web, r, name, count)
            print("/api/%s count=%s: %d entries equal XREVRANGE (%d long values bounded)"
                  % (name, count, n, bounded))
        print("errors: %d bad requests answered 400 or 404 with a JSON error" % check_errors(web))
        print("page: %d bytes, nothing from the network" % check_page_source(web))
        rows, colours, polls = check_page(web, r, work)
        print("chromium: %d segments with their NPS, detractors, alerts and sparklines in the "
              "DOM, %d polls in 5 s and no reload; screenshot %dx%d with %d colours"
              % (rows, polls, WIDTH, HEIGHT, colours))
        check_redis_down(web, redis, engine, work)
        print("redis down: the API answers 503 at once, /metrics 200, the page says so")
        redis.start()
        lock_down(redis)
        web.json("/api/views")
        engine.terminate()  # flushes and exits 0 (under ASan: without leaks)
        print("redis back: the API answers again; SIGTERM: the engine exits 0")
        ok = True
    except Failure as e:
        print("FAIL: %s" % e)
        for log in sorted(f for f in os.listdir(work) if f.endswith(".log")):
            with open(os.path.join(work, log), "rb") as f:
                tail = f.read().decode("utf-8", "replace").splitlines()[-15:]
            print("  --- %s (tail)\n  %s" % (log, "\n  ".join(tail)))
    finally:
        children.kill_all()
        if os.environ.get("NPS_IT_KEEP"):
            print("kept %s" % work)
        else:
            workdir.remove()
    print("it_web: %s in %.0f s" % ("passed" if ok else "FAILED", time.monotonic() - started))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
