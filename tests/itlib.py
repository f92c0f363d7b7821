"""Helpers for the integration tests (tests/it_*.py): child processes that
are always cleaned up, a private redis-server, the embedded broker, kcat as
the outside producer and reader, an independent reference of the Redis
contract, and a TCP proxy that can lose one flush reply.

The reference reuses check_report.py (the event contract and the pane rule
of DESIGN.md, written in Python); the engine is never asked to compute it.
"""
import atexit
import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_report  # noqa: E402  (the shared reference of the contract)

try:
    import redis  # Debian's python3-redis
except ImportError:  # a python3 that is not Debian's (pyenv, venv) on PATH
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import redis  # noqa: E402
    except ImportError:
        sys.exit("the integration tests need python3-redis (apt-get install python3-redis)")

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process dies, even
    by SIGKILL (ctest's timeout), so no broker, engine or Redis lingers."""
    if _prctl:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


WINDOWS = check_report.WINDOWS + [("total", 0)]
WINDOW_NAMES = [name for name, _ in WINDOWS]
COUNT_FIELDS = (["h%d" % i for i in range(11)] +
                ["sent", "responses", "promoters", "passives", "detractors", "score_sum"])
DERIVED = ("nps", "moe95", "avg")
VALUE_FIELDS = ("value_promoters", "value_passives", "value_detractors")
TRENDS = [("1h", 3600000, 7 * 86400000), ("1d", 86400000, 90 * 86400000)]
THEME_WINDOWS = ("24h", "7d")  # --themes' default
CLASS_NAMES = {12: "promoters", 13: "passives", 14: "detractors"}


def _stop_words():
    with open(os.path.join(HERE, "..", "engine", "stopwords.txt"), "rb") as f:
        return {line.strip() for line in f if line.strip() and not line.startswith(b"#")}


STOP_WORDS = _stop_words()


def comment_terms(comment):
    """The distinct terms of a comment, as docs/redis-schema.md ("Comment
    themes") defines them: runs of ASCII letters, digits, ' and non-ASCII
    bytes (U+2019 read as '), ASCII lower-cased, quotes at the ends
    dropped; 3 to 32 bytes, not all digits, not a stop word; at most 32."""
    raw = comment.encode("utf-8", "surrogatepass").replace(b"\xe2\x80\x99", b"'")
    out = []
    for word in re.findall(rb"[A-Za-z0-9'\x80-\xff]+", raw):
        if len(out) == 32:
            break
        if len(word) > 32:
            continue
        word = word.lower().strip(b"'")
        if len(word) < 3 or word.isdigit() or word in STOP_WORDS or word in out:
            continue
        out.append(word)
    return [w.decode("utf-8", "surrogateescape") for w in out]


class Failure(Exception):
    """A check failed; the message says what was expected and seen."""


def now_ms():
    return int(time.time() * 1000)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout_s, interval_s=0.05):
    """Poll predicate() until it returns a true value (returned) or the
    deadline passes (Failure naming `what` and the last value seen)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        last = predicate()
        if last and not isinstance(last, Pending):
            return last
        if time.monotonic() > deadline:
            detail = (": " + last.why) if isinstance(last, Pending) else ""
            raise Failure("timed out after %.0f s waiting for %s%s" % (timeout_s, what, detail))
        time.sleep(interval_s)


class Pending:
    """A false answer to wait_for() that says why, for the timeout message."""

    def __init__(self, why):
        self.why = why

    def __bool__(self):
        return False


# ------------------------------------------------------------- processes

class Children:
    """Every child process the test starts, killed on exit whatever happens
    (normal exit, exception, SIGTERM from ctest's timeout)."""

    def __init__(self):
        self.procs = []
        atexit.register(self.kill_all)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signo, frame):
        self.kill_all()
        sys.stderr.write("interrupted by signal %d; children stopped\n" % signo)
        os._exit(128 + signo)

    def spawn(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)  # no stray ^C, its own group
        kw.setdefault("preexec_fn", _die_with_parent)
        proc = subprocess.Popen(argv, **kw)
        self.procs.append(proc)
        return proc

    def kill_all(self, keep=()):
        for proc in self.procs:
            if proc.poll() is None and proc not in keep:
                try:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                except OSError:
                    pass
        for proc in self.procs:
            if proc in keep:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = [p for p in self.procs if p.poll() is None]


class RedisServer:
    """A private redis-server on a loopback port: AOF on, fsync always, in
    its own directory, so a SIGKILL loses nothing it acknowledged."""

    def __init__(self, children, workdir, port=None):
        self.children = children
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = self.children.spawn(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise Failure("redis-server exited with %s (see %s/redis.log)"
                              % (self.proc.returncode, self.dir))
            try:
                return self.client.ping()
            except redis.exceptions.RedisError:
                return False
        wait_for("redis-server on %s" % self.address, up, 20)
        # Loaded from the AOF before it answers PING with PONG.
        wait_for("redis-server to load its data", lambda: self.client.info("persistence")
                 .get("loading", 0) == 0, 20)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class Broker:
    """`npstream broker`: one topic of `partitions` partitions."""

    def __init__(self, children, npstream, workdir, topic, partitions=8, extra=()):
        self.topic = topic
        self.log_path = os.path.join(workdir, "broker-%s.log" % topic)
        self.proc = children.spawn([npstream, "broker", "--partitions", str(partitions),
                                    "--topic", topic] + [str(a) for a in extra],
                                   stdout=subprocess.PIPE,
                                   stderr=open(self.log_path, "wb"))
        self.partitions = partitions
        found = {}

        def read():
            for raw in self.proc.stdout:
                m = re.match(rb"bootstrap=(\S+)\s*$", raw)
                if m:
                    found["bootstrap"] = m.group(1).decode()
                    return
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(20)
        if "bootstrap" not in found:
            raise Failure("npstream broker printed no bootstrap= line in 20 s (log %s: %s)"
                          % (self.log_path, open(self.log_path, "rb").read()[-2000:]))
        self.bootstrap = found["bootstrap"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


STARTED = time.monotonic()


class Engine:
    """One `npstream run --brokers` process; its stderr goes to a log file,
    each line stamped with the seconds since the test started."""

    serial = 0

    def __init__(self, children, npstream, workdir, args, name="engine"):
        Engine.serial += 1
        self.log_path = os.path.join(workdir, "%s-%d.log" % (name, Engine.serial))
        self.args = [npstream, "run"] + [str(a) for a in args]
        log = open(self.log_path, "wb", buffering=0)
        log.write(b"[%7.2f] %s\n" % (time.monotonic() - STARTED, " ".join(self.args).encode()))
        self.proc = children.spawn(self.args, stdout=open(self.log_path + ".out", "wb"),
                                   stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.stamper = threading.Thread(target=self._stamp, args=(log,), daemon=True)
        self.stamper.start()

    def _stamp(self, log):
        with log:
            for line in self.proc.stderr:
                log.write(b"[%7.2f] %s" % (time.monotonic() - STARTED, line))

    def log(self):
        """The log so far; complete once the process has exited."""
        if self.proc.poll() is not None:
            self.stamper.join(5)
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def http_get(self, path, timeout_s=20):
        """(status, body) of GET path on the engine's --http port (read from
        its log line `http: ... on HOST:PORT`)."""
        import urllib.error
        import urllib.request
        found = wait_for("the engine's http line", lambda: self.alive() and re.search(
            r"http: .* on (127\.0\.0\.1:\d+)", self.log()), timeout_s)
        url = "http://%s%s" % (found.group(1), path)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def metrics(self):
        """/metrics parsed: {(name, labels-string): value}."""
        status, text = self.http_get("/metrics")
        if status != 200:
            raise Failure("/metrics answered %d: %s" % (status, text[:200]))
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                name, _, labels = key.partition("{")
                out[(name, labels.rstrip("}"))] = float(value)
        return out, text

    def log_tail(self, lines=30):
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self):
        if self.proc.poll() is not None:
            raise Failure("engine pid %d exited with %s; log tail:\n%s"
                          % (self.pid, self.proc.returncode, self.log_tail()))
        return True

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s=40):
        """SIGTERM: the engine flushes and must exit 0."""
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure("engine pid %d did not exit within %d s of SIGTERM; log tail:\n%s"
                          % (self.pid, timeout_s, self.log_tail()))
        if rc != 0:
            raise Failure("engine pid %d exited %d after SIGTERM, expected 0; log tail:\n%s"
                          % (self.pid, rc, self.log_tail()))


# Flush units per view the tests run with: more than one, so every scenario
# also checks that segments split by hash into units with their own fences
# (`<view>#<bucket>:<partition>`) still add up exactly.
BUCKETS = 4


def unit_names(views):
    """The engine's flush units for these view names, BUCKETS each."""
    return ["%s#%d" % (v, b) for v in views for b in range(BUCKETS)]


def engine_args(broker, topic, group, redis_address, prefix, views, workers=2, flush_ms=200,
                extra=()):
    args = ["--brokers", broker.bootstrap, "--topic", topic, "--group", group,
            "--redis", redis_address, "--prefix", prefix, "--workers", workers,
            "--flush-ms", flush_ms, "--buckets", BUCKETS, "--http", "127.0.0.1:0"]
    for name, dims in views.items():
        if dims:
            args += ["--view", "%s=%s" % (name, ",".join(dims))]
    return args + list(extra)


# ------------------------------------------------------------------ kcat

def kcat_produce(bootstrap, topic, messages):
    """messages: (key, payload) pairs of bytes, produced by kcat with the
    key delimited by a tab (the default partitioner spreads the keys)."""
    lines = []
    for key, payload in messages:
        if b"\t" in key or b"\n" in key or b"\n" in payload or not payload:
            raise ValueError("kcat lines cannot carry %r / %r" % (key, payload))
        lines.append(key + b"\t" + payload + b"\n")
    proc = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t"],
                          input=b"".join(lines), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        raise Failure("kcat -P failed (%d): %s" % (proc.returncode, proc.stderr.decode()[-2000:]))


def kcat_read_all(bootstrap, topic, expect_count):
    """Every message of the topic as (partition, offset, kafka_ts_ms,
    payload), read back with kcat, and the end offset of each partition."""
    proc = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e",
                           "-q", "-f", "%p %o %T %s\n"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    if proc.returncode != 0:
        raise Failure("kcat -C failed (%d): %s" % (proc.returncode, proc.stderr.decode()[-2000:]))
    out = []
    ends = {}
    for line in proc.stdout.split(b"\n"):
        if not line:
            continue
        p, o, ts, payload = line.split(b" ", 3)
        p, o = int(p), int(o)
        out.append((p, o, int(ts), payload))
        ends[p] = max(ends.get(p, 0), o + 1)
    if len(out) != expect_count:
        raise Failure("kcat read %d messages back from %s, %d were produced"
                      % (len(out), topic, expect_count))
    return out, ends


def gen_events(npstream, workdir, count, seed, now, invalid_share):
    """`npstream gen` JSON lines as (key, payload) pairs: key = event id,
    or a unique `bad-N` for lines without a usable id."""
    path = os.path.join(workdir, "gen-%d-%d.jsonl" % (seed, count))
    subprocess.run([npstream, "gen", "--output", path, "--count", str(count), "--seed", str(seed),
                    "--invalid-share", str(invalid_share), "--now", str(now)], check=True,
                   timeout=60)
    messages = []
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            line = line.rstrip(b"\n")
            key = None
            try:
                ev = json.loads(line)
                if isinstance(ev, dict) and isinstance(ev.get("id"), str) and ev["id"] != "bad":
                    key = ev["id"].encode()
            except ValueError:
                pass
            messages.append((key or b"bad-%d-%d" % (seed, i), line))
    if len(messages) != count:
        raise Failure("npstream gen wrote %d lines, asked for %d" % (len(messages), count))
    return messages


class Trickle(threading.Thread):
    """Produce messages in small batches from a thread, so an engine can be
    caught (and killed) mid-stream. `produced` counts what kcat took."""

    def __init__(self, bootstrap, topic, messages, batch=400, pause_s=0.05):
        super().__init__(daemon=True)
        self.args = (bootstrap, topic)
        self.messages, self.batch, self.pause_s = messages, batch, pause_s
        self.produced = 0
        self.error = None

    def run(self):
        try:
            for i in range(0, len(self.messages), self.batch):
                chunk = self.messages[i:i + self.batch]
                kcat_produce(*self.args, chunk)
                self.produced += len(chunk)
                time.sleep(self.pause_s)
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self, timeout_s=120):
        self.join(timeout_s)
        if self.is_alive():
            raise Failure("the producer thread did not finish in %d s" % timeout_s)
        if self.error:
            raise self.error


# ------------------------------------------------------------- reference

class Reference:
    """Expected Redis content for a list of Kafka messages at engine time
    `now`: counts per (view, segment, window) and the segment sets.

    Validation, segment strings and the pane rule are check_report.py's;
    the one thing a Kafka source adds is that an event without `ts` takes
    the message's Kafka timestamp (check_report reads files, where it is
    `now`)."""

    def __init__(self, views, now, dedup_horizon_ms=7 * 24 * 3600 * 1000,
                 theme_windows=THEME_WINDOWS):
        self.views = {"all": []}
        self.views.update(views)
        self.now = now
        self.counts = {}  # (view, segment, window) -> [h0..h10, sent, value cents x3]
        self.trends = {}  # (view, segment, bucket name, bucket start ms) -> [h0..h10]
        self.themes = {}  # (view, segment, window, class name) -> {term: comments}
        self.theme_windows = theme_windows
        self.detractors = []  # (id, score, ts, value, comment, event) of each detractor
        self.segments = {v: set() for v in self.views}
        self.messages = self.valid = self.invalid = self.future = self.late = 0
        # dedup (--dedup-horizon, default 7d; 0: off): per partition, id ->
        # [first offset, first ts]; a response whose id is held with an
        # earlier first offset and a ts within the horizon counts nowhere
        self.dedup_horizon_ms = dedup_horizon_ms
        self.first_seen = {}
        self.duplicates = []  # (partition, offset) of each duplicate

    def add(self, payload, kafka_ts, source=None):
        self.messages += 1
        try:
            line = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid += 1
            return
        ev, verdict = check_report.valid_event(line, self.now)
        if verdict == "ok" and ev.get("ts") is None:
            if kafka_ts < 0:
                raise Failure("a message without ts has no Kafka timestamp: %r" % payload)
            ev["_ts"] = kafka_ts
            if kafka_ts > self.now + check_report.SKEW_MS:
                verdict = "future"
        if verdict == "invalid":
            self.invalid += 1
            return
        if verdict == "future":
            self.future += 1
            return
        ts = ev["_ts"]
        if self.is_duplicate(ev, ts, source):
            return
        self.valid += 1
        late = self.in_window(ts, WINDOWS[-2][1]) is False
        self.late += late
        bucket = 11 if ev["_sent"] else int(ev["score"])
        klass = None if ev["_sent"] else 12 if bucket >= 9 else 13 if bucket >= 7 else 14
        if klass == 14:
            self.detractors.append((source, ev))
        for view, dims in self.views.items():
            seg = check_report.segment(ev, dims)
            self.segments[view].add(seg)
            for wname, size in WINDOWS:
                if size and (late or not self.in_window(ts, size)):
                    continue
                c = self.counts.setdefault((view, seg, wname), [0] * 15)
                c[bucket] += 1
                if klass and ev["_value"]:
                    c[klass] += ev["_value"]
                if klass and wname in self.theme_windows and ev.get("comment"):
                    t = self.themes.setdefault((view, seg, wname, CLASS_NAMES[klass]), {})
                    for term in comment_terms(ev["comment"]):
                        t[term] = t.get(term, 0) + 1
            for tname, tbucket, tspan in TRENDS:
                if klass and ts // tbucket >= self.now // tbucket - (tspan // tbucket - 1):
                    start = ts // tbucket * tbucket
                    self.trends.setdefault((view, seg, tname, start), [0] * 11)[bucket] += 1

    def is_duplicate(self, ev, ts, source):
        ident = ev.get("id")  # a number is its JSON text, as the engine reads it
        ident = ident if isinstance(ident, str) or ident is None else str(ident)
        if not self.dedup_horizon_ms or ev["_sent"] or not ident:
            return False
        if source is None:
            raise Failure("dedup needs each message's partition and offset")
        partition, offset = source
        first = self.first_seen.get((partition, ident))
        if first is None:
            self.first_seen[(partition, ident)] = [offset, ts]
            return False
        if first[0] < offset and abs(ts - first[1]) <= self.dedup_horizon_ms:
            self.duplicates.append(source)
            return True
        if first[0] < offset:
            first[:] = [offset, ts]  # beyond the horizon: a new first occurrence
        return False

    def in_window(self, ts, size):
        """The pane rule: the window of `size` at now holds panes of index
        >= floor(now / pane) - 59, pane = size / 60."""
        pane = size // 60
        return ts // pane >= self.now // pane - 59

    def add_all(self, records):
        for partition, offset, kafka_ts, payload in records:
            self.add(payload, kafka_ts, (partition, offset))
        return self

    def total(self, view="all", segment="*", window="total"):
        h = self.counts.get((view, segment, window), [0] * 15)
        return sum(h[:11])

    def summary(self):
        return ("%d messages (%d valid, %d invalid, %d future, %d late, %d duplicates)"
                % (self.messages, self.valid, self.invalid, self.future, self.late,
                   len(self.duplicates)))


def expected_hash(h):
    """The window hash fields the contract gives for counts h0..h10, sent
    and the value cents of promoters, passives and detractors."""
    n = sum(h[:11])
    pro, pas, det = h[9] + h[10], h[7] + h[8], sum(h[:7])
    out = {"h%d" % i: h[i] for i in range(11)}
    out.update(sent=h[11], responses=n, promoters=pro, passives=pas, detractors=det,
               score_sum=sum(i * h[i] for i in range(11)))
    if n:
        p, d = pro / n, det / n
        out["nps"] = 100 * (p - d)
        out["moe95"] = 1.96 * 100 * math.sqrt(max(p + d - (p - d) ** 2, 0) / n)
        out["avg"] = out["score_sum"] / n
    if h[11]:
        out["response_rate"] = n / h[11]
    value = sum(h[12:15])
    if value:
        for f, cents in zip(VALUE_FIELDS, h[12:15]):
            out[f] = check_report.money(cents)
        out["revenue_at_risk"] = check_report.money(h[14])
        out["value_nps"] = 100 * (h[12] - h[14]) / value
    return out


def _num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def diff_hash(want, got):
    """Differences between an expected hash (expected_hash) and a Redis
    hash (str -> str; {} when absent), as short strings."""
    diffs = []
    for f in COUNT_FIELDS:
        g = got.get(f)
        g = 0 if g is None and not got else g  # an absent hash is all zero
        if g is None or _num(g) != want[f]:
            diffs.append("%s=%s want %s" % (f, g, want[f]))
    for f in VALUE_FIELDS + ("revenue_at_risk",):
        if want.get(f) != got.get(f):
            diffs.append("%s=%s want %s" % (f, got.get(f), want.get(f)))
    for f in DERIVED + ("response_rate", "value_nps"):
        tol = 1e-5 if f == "response_rate" else 1e-3
        if f in want:
            g = _num(got.get(f))
            if g is None or abs(g - want[f]) > tol:
                diffs.append("%s=%s want %.6f" % (f, got.get(f), want[f]))
        elif f in got:
            diffs.append("%s=%s present, want absent" % (f, got[f]))
    return diffs


def read_windows(r, prefix):
    """Every window hash under prefix: (view, segment, window) -> dict."""
    keys = sorted(r.scan_iter(match=prefix + ":win:*", count=1000))
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.hgetall(k)
    out = {}
    head = len(prefix) + len(":win:")
    for k, h in zip(keys, pipe.execute()):
        name = k.decode("utf-8", "replace")[head:]
        view, rest = name.split(":", 1)
        segment, window = rest.rsplit(":", 1)
        out[(view, segment, window)] = {a.decode(): b.decode() for a, b in h.items()}
    return out


def read_segments(r, prefix, views):
    return {v: {s.decode("utf-8", "replace") for s in r.smembers("%s:segments:%s" % (prefix, v))}
            for v in views}


def compare(r, prefix, ref, windows=None, limit=12):
    """Every (view, segment, window) hash under prefix against the
    reference, and every view's segment set; Failure listing the first
    mismatches. `windows` restricts the check to those window names.
    Returns the number of (view, segment, window) entries compared."""
    got = read_windows(r, prefix)
    wanted_windows = set(windows or WINDOW_NAMES)
    keys = {k for k in got if k[2] in wanted_windows}
    keys |= {k for k, h in ref.counts.items() if k[2] in wanted_windows and any(h)}
    problems = []
    for key in sorted(keys):
        if key[0] not in ref.views:
            problems.append("%s: a view the test did not configure" % (key,))
            continue
        if key[2] not in WINDOW_NAMES:
            problems.append("%s: an unexpected window" % (key,))
            continue
        want = expected_hash(ref.counts.get(key, [0] * 15))
        d = diff_hash(want, got.get(key, {}))
        if d:
            problems.append("%s%s: %s" % (key, "" if key in got else " (no hash)", "; ".join(d)))
    if windows is None:
        segs = read_segments(r, prefix, ref.views)
        for v in ref.views:
            extra, missing = segs[v] - ref.segments[v], ref.segments[v] - segs[v]
            if extra or missing:
                problems.append("%s:segments:%s: extra %s, missing %s"
                                % (prefix, v, sorted(extra)[:5], sorted(missing)[:5]))
    if problems:
        raise Failure("%d of %d (view, segment, window) entries differ from the reference "
                      "(%s); first ones:\n  %s" % (len(problems), len(keys), ref.summary(),
                                                   "\n  ".join(problems[:limit])))
    return len(keys)


def _field_text(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return str(int(v)) if v == v.to_integral_value() else str(v)
    return str(v)


def compare_detractors(r, prefix, ref, dims):
    """The stream PREFIX:detractors holds each detractor response of the
    reference exactly once (by partition and offset) with its fields.
    Returns the number of entries."""
    entries = r.xrange(prefix + ":detractors", "-", "+")
    got, problems = {}, []
    for entry_id, fields in entries:
        f = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
        key = (int(f.get("partition", -1)), int(f.get("offset", -1)))
        if key in got:
            problems.append("%s appended twice (%s and %s)" % (key, got[key][0], entry_id))
        got[key] = (entry_id, f)
    want = dict(ref.detractors)
    for key in sorted(set(want) - set(got))[:5]:
        problems.append("missing %s: %s" % (key, json.dumps(want[key], default=str)[:200]))
    if len(set(want) - set(got)) > 5:
        problems.append("... %d missing in all" % len(set(want) - set(got)))
    for key in sorted(set(got) - set(want))[:5]:
        problems.append("unexpected %s" % (key,))
    for key in sorted(set(got) & set(want)):
        ev, f = want[key], got[key][1]
        expect = {"id": _field_text(ev.get("id")), "score": str(ev["score"]),
                  "ts": str(ev["_ts"])}
        for d in dims:
            v = ev.get(d)
            expect[d] = _field_text(v)
        if ev["_value"] is not None:
            expect["value"] = check_report.money(ev["_value"])
        if ev.get("comment"):
            expect["comment"] = ev["comment"]
        for k, v in expect.items():
            if f.get(k) != v:
                problems.append("%s field %s=%r want %r" % (key, k, f.get(k), v))
                break
        extra = set(f) - set(expect) - {"partition", "offset"}
        if extra:
            problems.append("%s unexpected fields %s" % (key, sorted(extra)))
        if len(problems) > 12:
            break
    if problems:
        raise Failure("%s:detractors differs from the %d detractor responses:\n  %s"
                      % (prefix, len(want), "\n  ".join(problems[:12])))
    return len(entries)


def compare_trends(r, prefix, ref):
    """Every PREFIX:trend:VIEW:SEGMENT:BUCKET hash against the reference's
    buckets (responses, promoters, passives, detractors, nps). Returns
    the number of buckets."""
    got = {}
    head = len(prefix) + len(":trend:")
    for k in r.scan_iter(match=prefix + ":trend:*", count=1000):
        name = k.decode("utf-8", "replace")[head:]
        view, rest = name.split(":", 1)
        segment, tname = rest.rsplit(":", 1)
        for start, v in r.hgetall(k).items():
            got[(view, segment, tname, int(start))] = v.decode()
    problems = []
    for key in sorted(set(got) | set(ref.trends)):
        h = ref.trends.get(key)
        if h is None:
            problems.append("%s: unexpected bucket %s" % (key, got[key]))
            continue
        n, pro, pas, det = sum(h), h[9] + h[10], h[7] + h[8], sum(h[:7])
        text = got.get(key)
        if text is None:
            problems.append("%s: missing (want %d responses)" % (key, n))
            continue
        parts = text.split(",")
        if [int(x) for x in parts[:4]] != [n, pro, pas, det] or \
                abs(float(parts[4]) - 100 * (pro - det) / n) > 1e-3:
            problems.append("%s: %s want %d,%d,%d,%d,%.4f"
                            % (key, text, n, pro, pas, det, 100 * (pro - det) / n))
    if problems:
        raise Failure("%d of %d trend buckets differ from the reference; first ones:\n  %s"
                      % (len(problems), len(ref.trends), "\n  ".join(problems[:12])))
    return len(got)


def compare_themes(r, prefix, ref, windows=None):
    """Every PREFIX:themes:VIEW:SEGMENT:WINDOW:CLASS sorted set (of
    `windows`, default all) against the reference's term counts (exact
    while no (segment, class, pane) sees more distinct terms than the
    sketch holds). Returns the number of sets."""
    got = {}
    head = len(prefix) + len(":themes:")
    for k in r.scan_iter(match=prefix + ":themes:*", count=1000):
        name = k.decode("utf-8", "surrogateescape")[head:]
        view, rest = name.split(":", 1)
        segment, window, klass = rest.rsplit(":", 2)
        got[(view, segment, window, klass)] = {
            m.decode("utf-8", "surrogateescape"): int(sc)
            for m, sc in r.zrange(k, 0, -1, withscores=True)}
    problems = []
    keys = set(got) | set(ref.themes)
    for key in sorted(k for k in keys if windows is None or k[2] in windows):
        want, have = ref.themes.get(key, {}), got.get(key, {})
        if want != have:
            diff = sorted("%s %s/%s" % (t, have.get(t), want.get(t))
                          for t in set(want) | set(have) if want.get(t) != have.get(t))
            problems.append("%s: got/want %s" % (":".join(key), ", ".join(diff[:6])))
    if problems:
        raise Failure("%d of %d theme sets differ from the reference; first ones:\n  %s"
                      % (len(problems), len(ref.themes), "\n  ".join(problems[:12])))
    return sum(1 for k in got if windows is None or k[2] in windows)


def fences(r, prefix, group, topic):
    raw = r.hgetall("%s:offsets:%s:%s" % (prefix, group, topic))
    return {k.decode(): int(v) for k, v in raw.items()}


def fence_progress(r, prefix, group, topic, views, ends):
    """(applied, total): messages below each unit's fence, summed over
    views and partitions, against the end offsets. Failure if a fence is
    past its partition's end."""
    f = fences(r, prefix, group, topic)
    applied = total = 0
    for v in views:
        for p, end in ends.items():
            got = f.get("%s:%d" % (v, p), 0)
            if got > end:
                raise Failure("fence %s:%d = %d is past the end offset %d" % (v, p, got, end))
            applied += got
            total += end
    return applied, total


def wait_fences(r, prefix, group, topic, views, ends, timeout_s, engines=()):
    """Wait until every unit's fence of every partition equals its end."""
    def done():
        for e in engines:
            e.alive()
        applied, total = fence_progress(r, prefix, group, topic, views, ends)
        return True if applied == total else Pending("%d of %d (unit, message) fenced"
                                                     % (applied, total))
    return wait_for("every fence at its partition's end offset", done, timeout_s)


def visible_responses(r, prefix):
    v = r.hget("%s:win:all:*:total" % prefix, "responses")
    return int(v) if v else 0


def publishers(r, prefix):
    """The flush ids' process part (host-pid) seen in PREFIX:updates."""
    seen = set()
    for _, fields in r.xrange(prefix + ":updates"):
        flush = fields.get(b"flush", b"").decode()
        seen.add(flush.rsplit(":", 1)[0])
    return seen


# ------------------------------------------------------------------ proxy

def _resp_line(buf, pos):
    end = buf.find(b"\r\n", pos)
    return (None, pos) if end < 0 else (bytes(buf[pos:end]), end + 2)


def resp_parse(buf, pos=0):
    """One RESP value from buf at pos: (value, next_pos), or None when the
    buffer does not hold all of it yet."""
    if pos >= len(buf):
        return None
    kind = buf[pos:pos + 1]
    line, nxt = _resp_line(buf, pos + 1)
    if line is None:
        return None
    if kind in (b"+", b"-"):
        return (kind + line, nxt)
    if kind == b":":
        return (int(line), nxt)
    if kind == b"$":
        n = int(line)
        if n < 0:
            return (None, nxt)
        if len(buf) < nxt + n + 2:
            return None
        return (bytes(buf[nxt:nxt + n]), nxt + n + 2)
    if kind == b"*":
        n = int(line)
        items = []
        for _ in range(max(n, 0)):
            got = resp_parse(buf, nxt)
            if got is None:
                return None
            items.append(got[0])
            nxt = got[1]
        return (items, nxt)
    raise ValueError("not RESP at byte %d: %r" % (pos, bytes(buf[pos:pos + 20])))


class LostReplyProxy:
    """A TCP proxy in front of Redis. Once armed, it forwards one EVALSHA
    whose reply is a successful flush unit that wrote segments ("ok",
    n > 0), waits for that reply from Redis, and closes the client's
    connection instead of forwarding it: Redis applied the unit, the engine
    never learns it. Other replies pass through and the proxy stays armed.
    The engine connects to `address` instead of Redis's."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.armed = False
        self.claimed = False
        self.on_fire = None
        self.fired = threading.Event()
        self.swallowed = None
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def arm(self, on_fire=None):
        """on_fire(): called when the reply is held, before the connection
        closes (to SIGKILL the engine between the units of a flush)."""
        with self.lock:
            self.armed, self.claimed = True, False
            self.on_fire = on_fire
            self.fired.clear()

    def close(self):
        self.closed = True
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()  # Redis is down: so is the proxy's answer
                continue
            conn = {"client": client, "upstream": upstream, "swallow": False, "sent": 0, "held": bytearray(),
                    "claim_index": -1}
            threading.Thread(target=self._client_to_redis, args=(conn,), daemon=True).start()
            threading.Thread(target=self._redis_to_client, args=(conn,), daemon=True).start()

    @staticmethod
    def _close(conn):
        for s in (conn["client"], conn["upstream"]):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _client_to_redis(self, conn):
        """Forwards whole commands. The engine pipelines a flush's units,
        so once an EVALSHA carrying segments is claimed, the commands after
        it are held back: Redis runs that one unit only, as if the engine
        had died right after sending it."""
        buf = bytearray()

        try:
            while True:
                data = conn["client"].recv(1 << 16)
                if not data:
                    break
                buf += data
                while True:
                    got = resp_parse(buf)
                    if got is None:
                        break
                    command, used = got
                    raw = bytes(buf[:used])
                    del buf[:used]
                    with self.lock:
                        if conn["swallow"]:
                            conn["held"] += raw
                            continue
                        name = command[0].upper() if isinstance(command, list) and command else b""
                        # EVALSHA sha 0 + 14 fixed arguments: more means segments
                        if (name == b"EVALSHA" and len(command) > 17 and self.armed
                                and not self.claimed):
                            self.claimed = True
                            conn["swallow"] = True
                            conn["claim_index"] = conn["sent"]
                        conn["sent"] += 1
                    conn["upstream"].sendall(raw)
        except OSError:
            pass
        self._close(conn)

    def _redis_to_client(self, conn):
        """Forwards replies one by one; the reply of the claimed command
        (counted in order: the engine pipelines) is held and, if it is a
        unit that wrote segments, never forwarded."""
        buf = bytearray()
        replied = 0
        try:
            while True:
                data = conn["upstream"].recv(1 << 16)
                if not data:
                    break
                buf += data
                while True:
                    got = resp_parse(buf)
                    if got is None:
                        break
                    reply, used = got
                    raw = bytes(buf[:used])
                    del buf[:used]
                    with self.lock:
                        mine = conn["swallow"] and replied == conn["claim_index"]
                    replied += 1
                    if not mine:
                        conn["client"].sendall(raw)
                        continue
                    if (isinstance(reply, list) and len(reply) >= 2 and reply[0] == b"ok"
                            and isinstance(reply[1], int) and reply[1] > 0):
                        with self.lock:
                            self.armed = False
                            self.swallowed = reply
                        if self.on_fire:
                            self.on_fire()
                        self.fired.set()
                        raise OSError("close without forwarding the reply")
                    with self.lock:  # not a unit that wrote: let everything through
                        self.claimed = False
                        conn["swallow"] = False
                        pending, conn["held"] = bytes(conn["held"]), bytearray()
                    conn["client"].sendall(raw)
                    if pending:
                        conn["upstream"].sendall(pending)
        except OSError:
            pass
        self._close(conn)


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="npstream-it-")

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)
