#!/usr/bin/env python3
"""The pipeline end to end: kcat -> npstream broker -> npstream run ->
redis-server, checked against an independent reference (itlib.Reference,
built on check_report.py) after clean stops, crashes, a rebalance, a Redis
restart, a lost flush reply, detractor entries trimmed while Redis is down,
and with windows shrinking while no event arrives. Usage: it_pipeline.py NPSTREAM_BINARY [SCENARIO...] (all by
default: exact crash rebalance redis_restart windows). NPS_IT_KEEP=1 keeps
the work directory (engine and broker logs, Redis AOF).

Each scenario has its own broker (one topic), consumer group and key
prefix; they share one private redis-server. Conditions are awaited by
polling Redis (or the engine's log) against deadlines.
"""
import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import traceback
from datetime import datetime, timedelta, timezone

import itlib
from itlib import Failure

VIEWS = {"by_channel": ["channel"], "by_region": ["region"],
         "by_survey_age": ["survey", "age_band"]}
UNITS = itlib.unit_names(["all"] + list(VIEWS))
SESSION_TIMEOUT_MS = 6000
MINUTE = 60000
DAY = 24 * 60 * MINUTE
HOUR = 60 * MINUTE


def rfc3339(ts_ms, offset_minutes=0):
    """ts_ms as RFC 3339 with milliseconds, in a zone offset_minutes east."""
    zone = timezone(timedelta(minutes=offset_minutes))
    dt = datetime.fromtimestamp(ts_ms // 1000, zone).replace(microsecond=(ts_ms % 1000) * 1000)
    text = dt.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset_minutes == 0 else text


def tricky_messages(T):
    """Hand-written messages around the edges of the event contract, with
    timestamps relative to the pinned engine time T. (key, payload) pairs."""
    iso_z = rfc3339(T - 61234)
    iso_offset = rfc3339(T - 3 * MINUTE - 5, offset_minutes=330)
    for text, want in ((iso_z, T - 61234), (iso_offset, T - 3 * MINUTE - 5)):
        # The reference must read them as meant, or the data proves nothing.
        if itlib.check_report.parse_ts(text) != want:
            raise Failure("test data: %s does not parse to %d" % (text, want))
    valid = [
        # escapes in dimension values; a space, a comma and '=' (percent-encoded)
        r'{"id":"tv1","ts":%d,"score":9.0,"survey":"caf\u00e9","channel":"e\"mail",'
        r'"region":"R 1,a=b","age_band":"25-34"}' % (T - 1000),
        # raw UTF-8, a surrogate pair, \/ and reserved URL bytes
        '{"id":"tv2","ts":%d,"score":10,"survey":"café","channel":"w\\/eb\\u0041",'
        '"region":"R/1%%+?&:*","age_band":"\\ud83d\\ude00"}' % (T - 2000),
        # integer dimension values
        '{"id":"tv3","ts":%d,"score":0,"survey":"s","channel":42,"region":-7,"age_band":"18-24"}'
        % (T - 3000),
        # RFC 3339 strings, UTC and +05:30
        '{"id":"tv4","ts":"%s","score":8,"channel":"rfc","region":"R01"}' % iso_z,
        '{"id":"tv5","ts":"%s","score":6,"channel":"rfc","region":"R02"}' % iso_offset,
        # no ts: the Kafka message timestamp (kcat's produce time, T - 10 min)
        '{"id":"tv6","score":7,"channel":"kafka-ts"}',
        '{"id":"tv7","type":"sent","channel":"kafka-ts","survey":"checkout"}',
        # null and empty dimensions are the same empty value
        '{"id":"tv8","ts":%d,"score":5,"channel":null,"region":"","survey":"x"}' % (T - 4000),
        # unknown fields, nested objects and arrays holding brackets in strings
        r'{"meta":{"a":[1,2,{"b":"}\"]"}],"c":{}},"id":"tv9","score":4,"ts":%d,'
        r'"extra":[{"x":"]"},null,true,false,1.5e3],"channel":"sms","flag":true,"n":null}'
        % (T - 5000),
        # invitations (response rate)
        '{"id":"tv10","ts":%d,"type":"sent","channel":"email","region":"R01","survey":"checkout",'
        '"age_band":"25-34"}' % (T - 6000),
        '{"id":"tv10b","ts":%d,"type":"sent","channel":"only-sent"}' % (T - 6500),
        # field order, whitespace, explicit type
        '{ "age_band" : "35-44" , "score" : 3 , "ts" : %d , "id" : "tv11" , "type" : "response" }'
        % (T - 7000),
        # late (40 days: total only), 2 and 29 days old, 4 minutes ahead (within the skew)
        '{"id":"tv12","ts":%d,"score":10,"channel":"late"}' % (T - 40 * DAY),
        '{"id":"tv13","ts":%d,"score":2,"channel":"old"}' % (T - 2 * DAY),
        '{"id":"tv14","ts":%d,"score":1,"channel":"old"}' % (T - 29 * DAY),
        '{"id":"tv15","ts":%d,"score":9,"channel":"ahead"}' % (T + 4 * MINUTE),
        # control characters escaped in a value; a numeric id; value and comment
        r'{"id":"tv16","ts":%d,"score":1,"channel":"tab\there\nnl"}' % (T - 8000),
        '{"id":12345,"ts":%d,"score":9,"channel":"numid"}' % (T - 9000),
        r'{"id":"tv18","ts":%d,"score":3,"channel":"val","value":12.5,"comment":"ok \"q\""}'
        % (T - 10000),
        # comment themes: case, repeats, stop words, numbers, quotes, U+2019,
        # escapes, non-ASCII words, words over 32 bytes (few new terms: the
        # `all` segment's classes stay within the sketch's 16)
        r'{"id":"tv20","ts":%d,"score":7,"channel":"themes","comment":"Refund REFUND refund! '
        r'The 2024 order\u2019s \"tracking\" didn\u2019t; caf\u00e9 xx '
        r'supercalifragilisticexpialidocious-and-more abcdefghijklmnopqrstuvwxyzabcdefgh"}'
        % (T - 12000),
        r'{"id":"tv21","ts":%d,"score":10,"channel":"themes","comment":"\u0027Great\u0027 '
        r'tracking, great refund \u00e9t\u00e9"}' % (T - 13000),
        # escaped keys name the same fields
        r'{"id":"tv19","ts":%d,"sc\u006fre":7,"ch\u0061nnel":"keyesc"}' % (T - 11000),
    ]
    invalid = [
        '{"id":"ti1","ts":%d,"score":9.5,"channel":"bad"}' % T,
        '{"id":"ti2","ts":%d,"score":"9","channel":"bad"}' % T,
        '{"id":"ti3","ts":%d,"score":11,"channel":"bad"}' % T,
        '{"id":"ti4","ts":%d,"score":-1,"channel":"bad"}' % T,
        '{"id":"ti5","ts":%d,"score":null,"channel":"bad"}' % T,
        '{"id":"ti6","ts":%d,"channel":"bad"}' % T,
        '{"id":"ti7","ts":%d,"score":true,"channel":"bad"}' % T,
        '{"id":"ti8","ts":"yesterday","score":5,"channel":"bad"}',
        '{"id":"ti9","ts":%d,"score":5,"channel":"future"}' % (T + 6 * MINUTE),
        '{"id":"ti10","score":7,',
        'not json at all',
        '[1,2,3]',
        '"just a string"',
        '{"id":"ti11","score":5}}',
        r'{"id":"ti12","score":5,"channel":"a\x"}',
        '{"id":"ti13" "score":5}',
        "{'score':5}",
        '{"score":05,"channel":"bad"}',
        '{"score":5,"channel":"bad",}',
    ]
    out = []
    for i, text in enumerate(valid + invalid):
        out.append((b"tricky-%d" % i, text.encode("utf-8")))
    return out


class Scenario:
    """One scenario's broker, group, prefix and processes."""

    def __init__(self, h, name, partitions=8, broker_extra=()):
        self.h = h
        self.name = name
        self.topic = "it-%s" % name
        self.group = "g-%s" % name
        self.prefix = "it%s" % name
        self.broker = itlib.Broker(h.children, h.npstream, h.work, self.topic, partitions,
                                   broker_extra)
        self.engines = []
        self.produced = 0

    def engine(self, workers=2, flush_ms=200, extra=(), redis_address=None):
        args = itlib.engine_args(self.broker, self.topic, self.group,
                                 redis_address or self.h.redis.address, self.prefix, VIEWS,
                                 workers, flush_ms,
                                 ["--session-timeout-ms", SESSION_TIMEOUT_MS] + list(extra))
        e = itlib.Engine(self.h.children, self.h.npstream, self.h.work, args, name=self.name)
        self.engines.append(e)
        return e

    def produce(self, messages):
        itlib.kcat_produce(self.broker.bootstrap, self.topic, messages)
        self.produced += len(messages)

    def read_back(self, now, **reference_args):
        records, ends = itlib.kcat_read_all(self.broker.bootstrap, self.topic, self.produced)
        return itlib.Reference(VIEWS, now, **reference_args).add_all(records), ends

    def wait_fences(self, ends, timeout_s, engines=None):
        itlib.wait_fences(self.h.r, self.prefix, self.group, self.topic, UNITS, ends, timeout_s,
                          self.engines_alive() if engines is None else engines)

    def engines_alive(self):
        return [e for e in self.engines if e.proc.returncode is None and e.proc.poll() is None]

    def visible(self):
        return itlib.visible_responses(self.h.r, self.prefix)

    def close(self):
        for e in self.engines:
            if e.proc.poll() is None:
                e.proc.send_signal(signal.SIGCONT)
                e.proc.kill()
                e.proc.wait(10)
        self.broker.stop()


def scenario_exact(h):
    s = Scenario(h, "exact")
    # The engine's pinned now is 10 minutes ahead of the wall clock, so that
    # messages without ts, stamped by Kafka with the wall clock, fall out of
    # the 5m window but stay in 1h: an engine that used its now for them
    # instead would show them in 5m.
    T = itlib.now_ms() + 10 * MINUTE
    messages = itlib.gen_events(h.npstream, h.work, 30000, 11, T, 0.03) + tricky_messages(T)
    s.produce(messages)
    ref, ends = s.read_back(T)
    if not (ref.future and ref.late and ref.invalid > 800):
        raise Failure("test data: expected future, late and invalid messages: " + ref.summary())
    kafka_ts = [ref.total("by_channel", "channel=kafka-ts", w) for w in ("5m", "1h")]
    if kafka_ts != [0, 1]:
        raise Failure("test data: the message without ts should count in 1h only, got 5m/1h %s"
                      % kafka_ts)
    dlq = s.topic + "-dead"
    e = s.engine(workers=2, extra=["--now", T, "--dead-letter-topic", dlq,
                                   "--benchmarks", "survey=checkout:40,age_band=18-24:-12.5"])
    s.wait_fences(ends, 90)
    checked = check_metrics(e, ref)
    e.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    dead = check_dead_letters(s, dlq, ref, messages)
    insights = check_insights(h, s, ref)
    bench = check_benchmarks(h, s, {("survey", "checkout"): 40.0, ("age_band", "18-24"): -12.5})
    s.close()
    return ("exact: %s, %d (view,segment,window) hashes (value fields too) and 4 segment sets "
            "equal the reference; %s; %s; %s; %s"
            % (ref.summary(), n, checked, dead, insights, bench))


def check_insights(h, s, ref):
    """The detractor stream holds each detractor once, and every trend
    bucket equals the reference."""
    dims = sorted({d for dims in VIEWS.values() for d in dims})
    d = itlib.compare_detractors(h.r, s.prefix, ref, dims)
    t = itlib.compare_trends(h.r, s.prefix, ref)
    th = itlib.compare_themes(h.r, s.prefix, ref)
    if not d or not t or not th:
        raise Failure("test data: no detractors (%d), trend buckets (%d) or themes (%d)"
                      % (d, t, th))
    return ("%d detractors in the stream, each once; %d trend buckets and %d theme sets equal"
            % (d, t, th))


def check_benchmarks(h, s, refs):
    """`benchmark` and `benchmark_gap` on exactly the hashes of segments
    with a configured (dimension, value), and gap = nps - benchmark."""
    checked = 0
    for (view, segment, window), f in itlib.read_windows(h.r, s.prefix).items():
        parts = dict(p.split("=", 1) for p in segment.split(",") if "=" in p)
        want = next((v for (dim, value), v in refs.items() if parts.get(dim) == value), None)
        if want is None or "nps" not in f:
            if "benchmark" in f or "benchmark_gap" in f:
                raise Failure("%s %s %s: a benchmark where none applies: %s"
                              % (view, segment, window, f))
            continue
        gap = float(f["nps"]) - want
        if float(f.get("benchmark", "nan")) != want or \
                abs(float(f.get("benchmark_gap", "nan")) - gap) > 1e-3:
            raise Failure("%s %s %s: benchmark %s gap %s, want %s and %.4f"
                          % (view, segment, window, f.get("benchmark"), f.get("benchmark_gap"),
                             want, gap))
        checked += 1
    if not checked:
        raise Failure("test data: no segment with a benchmark")
    return "%d hashes carry the right benchmark and gap" % checked


def check_dead_letters(s, topic, ref, messages):
    """Every invalid message (future ones too) once in the dead-letter
    topic, unchanged, with its reason and source in headers."""
    proc = subprocess.run(["kcat", "-C", "-b", s.broker.bootstrap, "-t", topic, "-o", "beginning",
                           "-e", "-q", "-f", "%h\x1f%s\x1e"], capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise Failure("kcat could not read %s: %s" % (topic, proc.stderr.decode()[-500:]))
    records = [r for r in proc.stdout.split(b"\x1e") if r]
    sent = {value for _, value in messages}
    reasons = {}
    sources = set()
    for rec in records:
        headers, value = rec.split(b"\x1f", 1)
        fields = dict(h.split(b"=", 1) for h in headers.split(b",") if b"=" in h)
        reason = fields.get(b"npstream-reason", b"?").decode()
        reasons[reason] = reasons.get(reason, 0) + 1
        sources.add(fields.get(b"npstream-source"))
        if value not in sent:
            raise Failure("dead letter %r is not a message that was produced" % value[:80])
    want = ref.invalid + ref.future
    if len(records) != want or len(sources) != want or reasons.get("future", 0) != ref.future:
        raise Failure("dead-letter topic: %d records (%d distinct sources), reasons %s; the "
                      "reference has %d invalid and %d future"
                      % (len(records), len(sources), reasons, ref.invalid, ref.future))
    return "%d dead letters, each once, unchanged, reasons %s" % (len(records), reasons)


def check_metrics(e, ref):
    """/metrics agrees with the reference and passes promtool; /healthz and
    /readyz answer 200 once the engine has published everything."""
    m, text = e.metrics()
    want = {("npstream_events_consumed_total", ""): ref.messages,
            ("npstream_events_counted_total", ""): ref.valid,
            ("npstream_events_late_total", ""): ref.late,
            ("npstream_events_duplicate_total", ""): len(ref.duplicates),
            ("npstream_events_invalid_total", 'reason="future"'): ref.future}
    for key, value in want.items():
        if m.get(key) != value:
            raise Failure("/metrics %s = %s, the reference says %s" % (key, m.get(key), value))
    invalid = sum(v for (name, labels), v in m.items()
                  if name == "npstream_events_invalid_total" and labels != 'reason="future"')
    if invalid != ref.invalid:
        raise Failure("/metrics invalid (not future) = %s, the reference says %d"
                      % (invalid, ref.invalid))
    if m.get(("npstream_flushes_total", ""), 0) < 1 or m.get(("npstream_redis_up", "")) != 1:
        raise Failure("/metrics: no flush or Redis down:\n" + text[:2000])
    check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True)
    if check.returncode != 0:
        raise Failure("promtool check metrics: %s" % (check.stdout + check.stderr).decode())
    for path in ("/healthz", "/readyz"):
        status, body = e.http_get(path)
        if status != 200:
            raise Failure("%s answered %d: %s" % (path, status, body))
    return "/metrics equals the reference's counts and passes promtool, healthz and readyz 200"



def scenario_crash(h):
    """Part A is produced up front, part B trickles in while the first two
    runs are SIGKILLed mid-stream, part C only after the second kill, so
    neither kill can come after everything was published. The first kill
    comes at any moment; the second between the units of one flush (the
    proxy holds the reply of the first unit applied and the test kills the
    engine before it can send the next), so the units' fences differ and
    the restart must skip, unit by unit, what each has applied."""
    s = Scenario(h, "crash")
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 30000, 22, T, 0.03)
    part_a, part_b, part_c = messages[:8000], messages[8000:20000], messages[20000:]
    s.produce(part_a)
    trickle = itlib.Trickle(s.broker.bootstrap, s.topic, part_b, batch=300, pause_s=0.1)
    proxy = itlib.LostReplyProxy(h.redis.port)
    kills = []
    try:
        e1 = s.engine(workers=2, flush_ms=300, extra=["--now", T])
        itlib.wait_for("the first run to publish", lambda: e1.alive() and s.visible() > 0, 60)
        trickle.start()
        mark = trickle.produced  # kill while the engine counts what still arrives
        itlib.wait_for("more messages to be produced",
                       lambda: trickle.error or trickle.produced >= mark + 900, 60)
        e1.kill()
        kills.append(s.visible())

        # The proxy kills the second run at its first flush that carries counts.
        proxy.arm(on_fire=lambda: os.kill(e2.pid, signal.SIGKILL))
        e2 = s.engine(workers=2, flush_ms=300, extra=["--now", T], redis_address=proxy.address)

        def killed_between_units():
            if proxy.fired.is_set():
                return True
            if e2.proc.poll() is not None and not proxy.fired.wait(5):
                e2.alive()  # died on its own: a Failure with its log
            return proxy.fired.is_set()
        itlib.wait_for("a flush unit applied and the engine killed before the next",
                       killed_between_units, 60)
        e2.proc.wait(10)
        kills.append(s.visible())
    finally:
        proxy.close()
    if kills[1] <= kills[0]:
        raise Failure("the second run published nothing new before its kill (%d then %d "
                      "responses)" % tuple(kills))
    uneven = uneven_fences(h, s)
    trickle.finish()
    s.produced += trickle.produced
    s.produce(part_c)
    e3 = s.engine(workers=2, flush_ms=300, extra=["--now", T])
    ref, ends = s.read_back(T)
    s.wait_fences(ends, 120)
    e3.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    insights = check_insights(h, s, ref)
    s.close()
    return ("crash: %s; SIGKILL at %d and (between the units of a flush, partitions %s left "
            "with unequal fences) %d of %d responses published, 3 runs; %d "
            "(view,segment,window) hashes and 4 segment sets equal the reference; %s"
            % (ref.summary(), kills[0], ",".join(uneven), kills[1], ref.total(), n, insights))


def scenario_rebalance(h):
    """Two engines in one group; the one with two workers talks to Redis
    through the proxy, which has it SIGKILLed between the units of a flush
    once both have published. The survivor must take over its partitions,
    whose units' fences then differ, and the result must be exact."""
    s = Scenario(h, "rebalance")
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 24000, 33, T, 0.02)
    # Small chunks until the kill, the rest after it.
    warm = [messages[i:i + 250] for i in range(0, 10000, 250)]
    chunks = [messages[i:i + 2000] for i in range(10000, len(messages), 2000)]
    proxy = itlib.LostReplyProxy(h.redis.port)
    try:
        e1 = s.engine(workers=1, extra=["--now", T])
        e2 = s.engine(workers=2, extra=["--now", T], redis_address=proxy.address)
        started = time.monotonic()

        def both_published():
            e1.alive(), e2.alive()
            pids = {int(p.rsplit("-", 1)[1]) for p in itlib.publishers(h.r, s.prefix)}
            if pids >= {e1.pid, e2.pid}:
                return True
            if warm:
                s.produce(warm.pop(0))  # keep events coming until both publish
            return itlib.Pending("publishers so far: pids %s" % sorted(pids))
        itlib.wait_for("both engines to publish (nps:updates flush ids with each pid)",
                       both_published, 90, interval_s=0.5)
        both_s = time.monotonic() - started
        proxy.arm(on_fire=lambda: os.kill(e2.pid, signal.SIGKILL))

        def killed_between_units():
            if proxy.fired.is_set():
                return True
            if e2.proc.poll() is not None and not proxy.fired.wait(5):
                e2.alive()
            e1.alive()
            if warm:
                s.produce(warm.pop(0))
            return False
        itlib.wait_for("pid %d to be killed between the units of a flush" % e2.pid,
                       killed_between_units, 60, interval_s=0.3)
        killed_at = time.monotonic()
        e2.proc.wait(10)
    finally:
        proxy.close()
    uneven = uneven_fences(h, s)
    for chunk in warm:
        s.produce(chunk)
    s.produce(chunks.pop(0))  # every partition gets messages after the kill
    _, ends = s.read_back(T)
    limit = SESSION_TIMEOUT_MS / 1000 + 14
    s.wait_fences(ends, limit, [e1])
    takeover_s = time.monotonic() - killed_at
    for chunk in chunks:
        s.produce(chunk)
    ref, ends = s.read_back(T)
    s.wait_fences(ends, 60, [e1])
    e1.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    themes = itlib.compare_themes(h.r, s.prefix, ref)
    s.close()
    return ("rebalance: %s; 2 engines in one group both published after %.1f s; pid %d "
            "SIGKILLed between the units of a flush (partitions %s left with unequal fences); "
            "the survivor fenced every partition %.1f s later (limit %.0f s); %d "
            "(view,segment,window) hashes, 4 segment sets and %d theme sets equal the reference"
            % (ref.summary(), both_s, e2.pid, ",".join(uneven), takeover_s, limit, n, themes))


def uneven_fences(h, s):
    """Partitions whose units' fences differ (a flush cut between units);
    Failure when there is none, since the kill then tested less."""
    fence = itlib.fences(h.r, s.prefix, s.group, s.topic)
    parts = sorted({k.split(":")[1] for k in fence}, key=int)
    uneven = [p for p in parts if len({fence.get("%s:%s" % (u, p)) for u in UNITS}) > 1]
    if not uneven:
        raise Failure("after the kill between units every partition's fences are equal "
                      "across units: %s" % sorted(fence.items()))
    return uneven


OUTAGE = r"(?im)^.*redis.*(unavailable|retry|retrying|down|lost|refused|closed).*$"
RECOVERY = r"(?im)^.*redis.*\b(back|recovered|reconnected)\b.*$"


def scenario_redis_restart(h):
    s = Scenario(h, "redis_restart")
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 20000, 44, T, 0.02)
    chunks = [messages[i:i + 5000] for i in range(0, len(messages), 5000)]
    proxy = itlib.LostReplyProxy(h.redis.port)
    try:
        e = s.engine(workers=2, extra=["--now", T], redis_address=proxy.address)
        s.produce(chunks[0])
        itlib.wait_for("the first chunk to be visible", lambda: e.alive() and s.visible() > 0, 60)
        h.redis.kill()
        s.produce(chunks[1])
        outage = itlib.wait_for("the engine to log the Redis outage",
                                lambda: e.alive() and re.search(OUTAGE, e.log()), 30)
        status, body = e.http_get("/readyz")
        if status != 503 or "redis" not in body:
            raise Failure("/readyz with Redis down answered %d %r, expected 503 naming redis"
                          % (status, body))
        # Not a check: Redis stays down a while, through several retries.
        time.sleep(2)
        e.alive()
        h.redis.start()
        itlib.wait_for("the engine to log Redis's recovery",
                       lambda: e.alive() and re.search(RECOVERY, e.log()), 30)
        _, ends = s.read_back(T)
        s.wait_fences(ends, 60)
        # A flush whose reply is lost: Redis applies it, the engine retries.
        proxy.arm()
        s.produce(chunks[2])
        itlib.wait_for("the proxy to swallow the reply of an applied flush",
                       lambda: e.alive() and proxy.fired.is_set(), 30)
        s.produce(chunks[3])
        ref, ends = s.read_back(T)
        s.wait_fences(ends, 60)
        recoveries = len(re.findall(RECOVERY, e.log()))
        if recoveries < 2:
            raise Failure("expected a second recovery line after the lost reply, log:\n"
                          + e.log_tail())
        e.terminate()
    finally:
        proxy.close()
    n = itlib.compare(h.r, s.prefix, ref)
    themes = itlib.compare_themes(h.r, s.prefix, ref)
    s.close()
    swallowed = " ".join(x.decode() if isinstance(x, bytes) else str(x) for x in proxy.swallowed)
    resyncs = re.findall(r"(\d+) resyncs", e.log())
    return ("redis_restart: %s; redis-server SIGKILLed and restarted mid-stream "
            "(log: \"%s\"), then the reply of an applied flush unit (%s) lost and the "
            "connection closed (%d recovery lines, %s resyncs); %d (view,segment,window) hashes, "
            "4 segment sets and %d theme sets equal the reference"
            % (ref.summary(), re.sub(r"^\[[ \d.]+\] ", "", outage.group(0).strip())[:100],
               swallowed, recoveries,
               resyncs[-1] if resyncs else "?", n, themes))


def scenario_detractors_trim(h):
    """While Redis is down the engine keeps at most twice
    --detractors-maxlen pending detractor entries, dropping the oldest and
    counting them in npstream_detractors_trimmed_total (and a flush
    appends at most the cap). Part A (under the cap) is published first;
    part B (far more than twice the cap of detractors) is counted with
    Redis killed. Once Redis is back, every detractor response was
    either appended or trimmed, never both; B's entries that reached the
    stream are between the cap and twice it, each once, and in each
    partition they are its newest detractors (the trimmed ones its oldest):
    Redis's own MAXLEN ~ only ever trims the oldest too, and keeps at least
    the cap."""
    maxlen = 100
    s = Scenario(h, "detractors_trim", partitions=4)
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 3000, 66, T, 0.0)
    part_a, part_b = messages[:200], messages[200:]
    e = s.engine(workers=2, extra=["--now", T, "--detractors-maxlen", maxlen])
    s.produce(part_a)
    _, ends_a = s.read_back(T)
    s.wait_fences(ends_a, 60)

    def metric(m, name):
        return int(m.get(("npstream_detractors_%s_total" % name, ""), -1))

    m, _ = e.metrics()
    appended_a = metric(m, "appended")
    if metric(m, "trimmed") != 0:
        raise Failure("%d detractor entries trimmed before Redis went down"
                      % metric(m, "trimmed"))
    h.redis.kill()
    # Once the flusher knows, its failed flush holds none of part B: B's
    # entries all wait in the pending list that trimming bounds.
    itlib.wait_for("the engine to log the Redis outage",
                   lambda: e.alive() and re.search(OUTAGE, e.log()), 30)
    s.produce(part_b)
    ref, ends = s.read_back(T)

    def merged_and_trimmed():
        m, _ = e.metrics()  # counted: merged by the flusher
        counted = m.get(("npstream_events_counted_total", ""))
        if counted != ref.valid or metric(m, "trimmed") <= 0:
            return itlib.Pending("counted %s of %d, %d trimmed"
                                 % (counted, ref.valid, metric(m, "trimmed")))
        return m
    m = itlib.wait_for("the engine to count part B and trim detractor entries with Redis down",
                       lambda: e.alive() and merged_and_trimmed(), 60)
    if metric(m, "appended") != appended_a:
        raise Failure("detractor entries appended while Redis was down: %d, then %d"
                      % (appended_a, metric(m, "appended")))
    h.redis.start()
    s.wait_fences(ends, 60)
    m, _ = e.metrics()
    appended, trimmed = metric(m, "appended"), metric(m, "trimmed")
    e.terminate()
    want = dict(ref.detractors)  # (partition, offset) -> event
    in_b = {p: sorted(o for (q, o) in want if q == p and o >= ends_a.get(p, 0))
            for p in ends}
    if sum(len(v) for v in in_b.values()) <= 3 * maxlen or appended_a >= maxlen:
        raise Failure("test data: part B has %d detractors, part A %d (A must fit the cap, which "
                      "a flush never exceeds)" % (sum(len(v) for v in in_b.values()), appended_a))
    if appended + trimmed != len(want):
        raise Failure("%d detractor entries appended + %d trimmed, the reference has %d detractor "
                      "responses" % (appended, trimmed, len(want)))
    if not maxlen <= appended - appended_a <= 2 * maxlen:
        raise Failure("%d of part B's detractor entries appended, expected %d..%d (the cap, "
                      "twice it)" % (appended - appended_a, maxlen, 2 * maxlen))
    seen = {}
    for entry_id, fields in h.r.xrange(s.prefix + ":detractors", "-", "+"):
        key = (int(fields[b"partition"]), int(fields[b"offset"]))
        if key in seen or key not in want:
            raise Failure("stream entry %s for %s: %s" % (
                entry_id, key, "appended twice" if key in seen else "not a detractor response"))
        seen[key] = entry_id
    kept = 0
    for p, offsets in in_b.items():
        present = [o for o in offsets if (p, o) in seen]
        kept += len(present)
        if present != offsets[len(offsets) - len(present):]:
            raise Failure("partition %d: the stream holds %d of its %d detractors of part B, not "
                          "the newest: first kept offset %s, newest %s"
                          % (p, len(present), len(offsets), present[:1], offsets[-1:]))
    if kept < maxlen:
        raise Failure("the stream holds %d of part B's detractor entries, fewer than the cap %d"
                      % (kept, maxlen))
    s.close()
    return ("detractors_trim: %s; Redis down while %d detractor responses arrived: %d trimmed "
            "(the oldest), %d appended of them (cap %d); the stream holds %d of them, each once, "
            "the newest of each partition; %d appended + %d trimmed = every detractor response"
            % (ref.summary(), sum(len(v) for v in in_b.values()), trimmed,
               appended - appended_a, maxlen, kept, appended, trimmed))


def scenario_security(h):
    """Redis ACL credentials from a file, refused credentials, and the
    kafka.* pass-through: a real property works, a bad one fails clearly;
    no secret appears in any log."""
    s = Scenario(h, "security", partitions=4)
    T = itlib.now_ms()
    secret, wrong, kafka_secret = "s3cret-acl-pw", "not-the-pw-42", "hunter2-kafka-pw"
    h.r.execute_command("ACL", "SETUSER", "npsapp", "on", ">" + secret, "~*", "&*", "+@all")
    pw_file = os.path.join(h.work, "redis-password")
    with open(pw_file, "w") as f:
        f.write(secret + "\n")
    s.produce(itlib.gen_events(h.npstream, h.work, 4000, 66, T, 0.0))
    ref, ends = s.read_back(T)
    e = s.engine(extra=["--now", T, "--redis-user", "npsapp", "--redis-password", "@" + pw_file,
                        "--kafka.client.rack", "rack-1"])
    s.wait_fences(ends, 60)
    e.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    bad = s.engine(extra=["--now", T, "--redis-user", "npsapp", "--redis-password", wrong])
    if bad.proc.wait(30) != 1 or "AUTH as npsapp refused" not in bad.log():
        raise Failure("wrong Redis password: expected exit 1 naming the refused AUTH, got %s:\n%s"
                      % (bad.proc.returncode, bad.log_tail()))
    prop = s.engine(extra=["--kafka.no.such.property", "1"])
    if prop.proc.wait(30) == 0 or "kafka.no.such.property" not in prop.log():
        raise Failure("an unknown kafka.* property should fail naming it:\n" + prop.log_tail())
    env = dict(os.environ, NPSTREAM_KAFKA_SASL_PASSWORD=kafka_secret)
    leak = subprocess.run([h.npstream, "run", "--brokers", s.broker.bootstrap, "--topic", s.topic,
                           "--redis", h.redis.address, "--kafka.security.protocol", "NOPE",
                           "--http", ""], env=env, capture_output=True, timeout=60)
    if leak.returncode == 0 or b"security.protocol" not in leak.stderr:
        raise Failure("a bad kafka.security.protocol should fail naming it: %r" % leak.stderr[-500:])
    # (each log's first line is the harness's own record of the command line)
    logs = "".join(x.log().split("\n", 1)[1] for x in (e, bad, prop)) + leak.stderr.decode()
    for word in (secret, wrong, kafka_secret):
        if word in logs:
            raise Failure("a secret appears in the engine's output: %r" % word)
    s.close()
    return ("security: ACL user with the password from a file published %d hashes equal to the "
            "reference; a wrong password exits 1 naming the refused AUTH; bad kafka.* "
            "properties fail naming the property; no secret in any output" % n)


def scenario_logs(h):
    """--log-format json to --log-file: every line is a JSON object with
    ts, level, component and msg; SIGHUP reopens the file after logrotate
    moved it; --log-level warn drops info lines."""
    s = Scenario(h, "logs", partitions=2)
    T = itlib.now_ms()
    s.produce(itlib.gen_events(h.npstream, h.work, 2000, 77, T, 0.0))
    _, ends = s.read_back(T)
    path = os.path.join(h.work, "engine.jsonl")
    e = s.engine(extra=["--now", T, "--log-format", "json", "--log-file", path])
    s.wait_fences(ends, 60)
    os.rename(path, path + ".1")
    e.proc.send_signal(signal.SIGHUP)
    itlib.wait_for("the log file reopened after SIGHUP", lambda: os.path.exists(path), 20)
    e.terminate()
    lines = open(path + ".1").read().splitlines() + open(path).read().splitlines()
    for line in lines:
        rec = json.loads(line)
        if set(rec) != {"ts", "level", "component", "msg"} or rec["level"] not in (
                "debug", "info", "warn", "error"):
            raise Failure("not a log record: %r" % line)
    if not any("assigned" in json.loads(l)["msg"] for l in lines):
        raise Failure("no assignment line in the JSON log")
    if not any("stopping" in json.loads(l)["msg"] for l in open(path).read().splitlines()):
        raise Failure("after SIGHUP the reopened file did not get the later lines")
    quiet_path = os.path.join(h.work, "quiet.log")
    q = s.engine(extra=["--now", T, "--log-level", "warn", "--log-file", quiet_path,
                        "--group", "g-logs-quiet"])
    itlib.wait_for("the quiet engine to publish", lambda: q.alive() and itlib.fences(
        h.r, s.prefix, "g-logs-quiet", s.topic), 30)
    q.terminate()
    quiet = open(quiet_path).read().splitlines()
    if any(" level=info " in l or " level=debug " in l for l in quiet):
        raise Failure("--log-level warn wrote info lines: %r" % quiet[:3])
    s.close()
    return ("logs: %d JSON records (ts, level, component, msg) across a logrotate move and "
            "SIGHUP; --log-level warn wrote %d lines, none info" % (len(lines), len(quiet)))


def produce_raw(s, messages):
    """(key, payload) pairs of any bytes but 0x1e/0x1f, by kcat with those
    as delimiters (so NUL bytes and newlines travel unchanged)."""
    data = b"".join(k + b"\x1f" + v + b"\x1e" for k, v in messages)
    proc = subprocess.run(["kcat", "-P", "-b", s.broker.bootstrap, "-t", s.topic, "-K", "\x1f",
                           "-D", "\x1e", "-X", "queue.buffering.max.messages=1000000"],
                          input=data, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise Failure("kcat -P failed: %s" % proc.stderr.decode()[-500:])
    s.produced += len(messages)


def scenario_hostile(h):
    """Hostile input never stops the engine nor grows its memory without
    bound: oversized, deeply nested, invalid UTF-8, raw NUL, 1e400 and -0
    scores, timestamps at the epoch and in year 9999, then a million
    distinct dimension values against a bound of 2000 segments."""
    s = Scenario(h, "hostile", partitions=16)
    T = itlib.now_ms()
    hostile = [
        (b"big", b'{"score":5,"region":"' + b"x" * 50000 + b'"}'),
        (b"deep", b'{"score":5,"a":' + b"[" * 3000 + b"]" * 3000 + b"}"),
        (b"utf8", b'{"score":5,"region":"\xff\xfe"}'),
        (b"nul", b'{"score":5,"region":"a\x00b"}'),
        (b"nulesc", b'{"score":5,"region":"a\\u0000b"}'),
        (b"huge", b'{"score":1e400,"region":"r"}'),
        (b"minus0", b'{"score":-0,"region":"zero"}'),
        (b"epoch", b'{"score":9,"ts":0,"region":"old"}'),
        (b"y9999", b'{"score":9,"ts":"9999-12-31T23:59:59Z","region":"far"}'),
    ]
    produce_raw(s, hostile)
    # The detractor stream is off: its buffers grow with events per flush
    # (bounded by --detractors-maxlen, see docs/redis-schema.md), which is
    # not what this attack on cardinality measures.
    e = s.engine(workers=2, extra=["--now", T, "--max-segments", 2000, "--max-event-bytes", 10000,
                                   "--detractors-maxlen", 0])
    itlib.wait_for("the hostile messages counted", lambda: e.alive() and e.metrics()[0].get(
        ("npstream_events_consumed_total", "")) == len(hostile), 60)
    m, _ = e.metrics()
    want = {"too_large": 1, "malformed_json": 3, "bad_score": 1, "future": 1}
    got = {r: m.get(("npstream_events_invalid_total", 'reason="%s"' % r)) for r in want}
    if got != want or m.get(("npstream_events_counted_total", "")) != 3 or \
            m.get(("npstream_events_late_total", "")) != 1:
        raise Failure("hostile messages: invalid %s (want %s), counted %s (want 3), late %s "
                      "(want 1)" % (got, want, m.get(("npstream_events_counted_total", "")),
                                    m.get(("npstream_events_late_total", ""))))
    itlib.wait_for("the escaped NUL value published as the segment region=a%00b",
                   lambda: e.alive() and h.r.hget("%s:win:by_region:region=a%%00b:total"
                                                  % s.prefix, "responses") == b"1", 30)
    memory = []
    n = 0
    for chunk in (200000, 800000):
        produce_raw(s, [(b"k%d" % i, b'{"score":%d,"region":"v%d"}' % (i % 11, i))
                        for i in range(n, n + chunk)])
        n += chunk
        itlib.wait_for("%d distinct values counted" % n, lambda: e.alive() and e.metrics()[0].get(
            ("npstream_events_consumed_total", "")) == len(hostile) + n, 180)
        memory.append(e.metrics()[0][("npstream_memory_allocated_bytes", "")])
    segments = e.metrics()[0][("npstream_active_segments", 'view="by_region"')]
    e.terminate()
    stored = h.r.scard("%s:segments:by_region" % s.prefix)
    overflow = int(h.r.hget("%s:win:by_region:~overflow:total" % s.prefix, "responses"))
    total = int(h.r.hget("%s:win:all:*:total" % s.prefix, "responses"))
    if stored > 2001 or segments > 2000 + itlib.BUCKETS:
        raise Failure("the bound of 2000 segments did not hold: %d in Redis, %d in the engine"
                      % (stored, segments))
    named = total - overflow
    if total != n + 3 or named != stored - 1:
        raise Failure("~overflow %d of %d responses, %d named segments: they should add up"
                      % (overflow, total, stored - 1))
    if memory[1] > 1.5 * memory[0] + (8 << 20):
        raise Failure("memory grew with distinct values: %d then %d bytes" % tuple(memory))
    s.close()
    return ("hostile: 9 hostile messages classified (too_large, 3 malformed, 1e400, -0, epoch "
            "late, year 9999 future, escaped NUL kept); %d distinct values: %d segments, %d "
            "responses in ~overflow, allocated %.1f MB after 200k and %.1f MB after 1M"
            % (n, stored, overflow, memory[0] / 1e6, memory[1] / 1e6))


def scenario_flaky_broker(h):
    """The broker drops every connection for 6.7 s out of 20 while the engine
    consumes: librdkafka reconnects, nothing is lost or counted twice."""
    s = Scenario(h, "flaky", partitions=8)
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 20000, 88, T, 0.01)
    s.produce(messages)
    ref, ends = s.read_back(T)
    s.broker.stop()
    s.broker = itlib.Broker(h.children, h.npstream, h.work, s.topic, 8, ["--flap-ms", 20000])
    # The new broker starts empty: the same messages again (same keys, same
    # partitions and offsets), a chunk right after each outage ends (kcat
    # gives up while every broker is down; the engine must not).
    e = s.engine(workers=2, flush_ms=300, extra=["--now", T])

    def ups():
        return open(s.broker.log_path, "rb").read().count(b"flap: broker up")
    for i in range(0, len(messages), 10000):
        seen = ups()
        itlib.wait_for("the broker back up", lambda: e.alive() and ups() > seen, 30)
        s.produce(messages[i:i + 10000])
    s.wait_fences(ends, 150)
    flaps = open(s.broker.log_path, "rb").read().count(b"flap: broker down")
    if flaps < 1:
        raise Failure("the broker never went down during the run")
    e.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    s.close()
    return ("flaky_broker: %s through %d broker outages; %d hashes equal the reference"
            % (ref.summary(), flaps, n))


def scenario_signals(h):
    """SIGTERM while Redis is down: the engine keeps trying to flush (it
    does not exit at once); a second SIGTERM ends it at once (exit 130).
    Nothing is lost: a restart re-reads what was never published."""
    s = Scenario(h, "signals", partitions=4)
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 8000, 99, T, 0.0)
    e = s.engine(extra=["--now", T])
    s.produce(messages[:4000])
    _, ends = s.read_back(T)
    s.wait_fences(ends, 60)
    h.redis.kill()
    try:
        s.produce(messages[4000:])
        itlib.wait_for("the engine to log the Redis outage",
                       lambda: e.alive() and re.search(OUTAGE, e.log()), 30)
        e.proc.terminate()
        time.sleep(1.5)
        if e.proc.poll() is not None:
            raise Failure("one SIGTERM with Redis down ended the engine at once (%s); it "
                          "should keep trying to flush" % e.proc.returncode)
        e.proc.terminate()
        started = time.monotonic()
        rc = e.proc.wait(10)
        took = time.monotonic() - started
        if rc != 130 or took > 3:
            raise Failure("second SIGTERM: exit %s after %.1f s, expected 130 at once" % (rc, took))
    finally:
        h.redis.start()
    ref, ends = s.read_back(T)
    again = s.engine(extra=["--now", T])
    s.wait_fences(ends, 60)
    again.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    s.close()
    return ("signals: with Redis down one SIGTERM keeps flushing, a second exits 130 in %.1f s; "
            "the restart publishes what was pending: %d hashes equal the reference" % (took, n))


def scenario_windows(h):
    s = Scenario(h, "windows")
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 12000, 55, T, 0.0)
    s.produce(messages)
    ref, ends = s.read_back(T, theme_windows=("5m", "24h"))
    in_5m, in_1h, total = ref.total(window="5m"), ref.total(window="1h"), ref.total()
    if not (0 < in_5m < in_1h == total):
        raise Failure("test data: want 0 < 5m < 1h = total responses, got %d %d %d"
                      % (in_5m, in_1h, total))
    themes = ["--themes", "5m,24h"]
    e = s.engine(workers=2, extra=["--now", T] + themes)
    s.wait_fences(ends, 60)
    e.terminate()
    n_at_t = itlib.compare(h.r, s.prefix, ref)
    themes_at_t = itlib.compare_themes(h.r, s.prefix, ref)

    # Same group, no new events, a clock 200 times as fast from T.
    e2 = s.engine(workers=2, extra=["--now", T, "--time-scale", 200] + themes)
    had_5m = [k for k, c in ref.counts.items() if k[2] == "5m" and any(c)]

    def five_minutes_empty():
        e2.alive()
        got = itlib.read_windows(h.r, s.prefix)
        left = [k for k in had_5m if got.get(k, {}).get("responses") != "0" or "nps" in got[k]]
        return True if not left else itlib.Pending("%d of %d 5m hashes not yet empty, e.g. %s"
                                                   % (len(left), len(had_5m), left[0]))
    itlib.wait_for("every 5m hash to empty with no new events", five_minutes_empty, 30)
    e2.proc.send_signal(signal.SIGSTOP)  # hold the clock for a consistent read
    try:
        empty = itlib.Reference(VIEWS, T)
        empty.segments = ref.segments
        n_5m = itlib.compare(h.r, s.prefix, empty, windows=["5m"])
        try:
            n_rest = itlib.compare(h.r, s.prefix, ref, windows=["1h", "24h", "7d", "30d", "total"])
            # the 5m theme sets empty out (and leave), those of 24h stay
            themes_5m = itlib.compare_themes(h.r, s.prefix, empty, windows=["5m"])
            themes_24h = itlib.compare_themes(h.r, s.prefix, ref, windows=["24h"])
        except Failure as f:
            raise Failure("%s\n(engine clock at T+%.1f min)"
                          % (f, (engine_now(h, s) - T) / MINUTE))
        now_shown = engine_now(h, s)
    finally:
        e2.proc.send_signal(signal.SIGCONT)
    expired = sum(int(f.get(b"expired_panes", b"0")) for _, f in h.r.xrange(s.prefix + ":updates")
                  if f.get(b"flush", b"").decode().rsplit(":", 1)[0].endswith("-%d" % e2.pid))
    if not expired:
        raise Failure("no nps:updates entry of the second run reports expired panes")
    e2.terminate()
    s.close()
    return ("windows: %s over 20 min; at T 5m holds %d and 1h all %d responses (%d hashes equal); "
            "with no new events at T+%.1f min (clock x200) all %d 5m hashes are empty and the %d "
            "hashes of 1h..total still equal the reference (%d panes expired); themes: %d sets "
            "equal at T, then the 5m ones are gone (%d left) and the %d of 24h still equal"
            % (ref.summary(), in_5m, in_1h, n_at_t, (now_shown - T) / MINUTE, n_5m, n_rest,
               expired, themes_at_t, themes_5m, themes_24h))


def alert_z(ref, view, segment, window, baseline, min_n):
    """The reference's z of a segment's NPS in `window` against `baseline`
    (two-proportion test), or None when either has fewer than min_n."""
    stats = []
    for w in (window, baseline):
        h = ref.counts.get((view, segment, w), [0] * 15)
        n = sum(h[:11])
        if n < min_n:
            return None
        p, d = (h[9] + h[10]) / n, sum(h[:7]) / n
        stats.append((p - d, (p + d - (p - d) ** 2) / n))
    var = stats[0][1] + stats[1][1]
    return (stats[0][0] - stats[1][0]) / math.sqrt(var) if var > 0 else None


def drop_messages(T):
    """channel=sms: promoters 10-50 minutes before T, detractors in the last 4."""
    drop = []
    for i in range(400):
        recent = i % 4 == 0
        ts = T - (i * 997) % (4 * MINUTE) if recent else T - 10 * MINUTE - (i * 7919) % (40 * MINUTE)
        ev = {"id": "drop-%d" % i, "ts": ts, "score": (i % 4) if recent else 9 + i % 2,
              "channel": "sms", "region": "R01", "survey": "checkout", "age_band": "25-34"}
        drop.append((ev["id"].encode(), json.dumps(ev).encode()))
    return drop


def alerts_wanted(ref, views=None):
    """(view, segment) of every segment whose 5m NPS the reference's z puts
    past 3 against 1h (30 responses each at least), in `views` (all)."""
    want = set()
    for (view, segment, window) in ref.counts:
        if window == "5m" and (views is None or view in views):
            z = alert_z(ref, view, segment, "5m", "1h", 30)
            if z is not None and abs(z) > 3:
                want.add((view, segment))
    return want


def alert_entries(h, s, state):
    out = []
    for _, f in h.r.xrange(s.prefix + ":alerts"):
        f = {k.decode(): v.decode() for k, v in f.items()}
        if f["state"] == state:
            out.append(f)
    return out


def scenario_alerts(h):
    """A segment whose NPS collapses in the last minutes: one `firing`
    entry in PREFIX:alerts for it (and for every segment the reference's
    z puts past the threshold, no other), however many flushes follow; a
    `resolved` entry once the 5m window has emptied."""
    s = Scenario(h, "alerts")
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 3000, 66, T, 0.0)
    s.produce(messages + drop_messages(T))
    ref, ends = s.read_back(T)
    args = ["--alerts", "5m:1h", "--alert-z", "3", "--alert-min-responses", "30"]
    # The first flush, 6 s after start, holds every event (consumed within
    # a few seconds of the assignment), so each segment's first published
    # state is its final one, as in the reference.
    e = s.engine(workers=2, flush_ms=6000, extra=["--now", T] + args)
    s.wait_fences(ends, 60)
    time.sleep(7)  # another flush (nothing new) must not add entries
    e.terminate()
    want = alerts_wanted(ref)
    if ("by_channel", "channel=sms") not in want:
        raise Failure("test data: the reference sees no drop for channel=sms")

    def entries(state):
        return alert_entries(h, s, state)
    firing = entries("firing")
    got = [(f["view"], f["segment"]) for f in firing]
    if sorted(got) != sorted(want):
        raise Failure("firing alerts for %s, the reference wants each of %s once"
                      % (sorted(got), sorted(want)))
    sms = next(f for f in firing if f["segment"] == "channel=sms")
    z = alert_z(ref, "by_channel", "channel=sms", "5m", "1h", 30)
    if abs(float(sms["z"]) - z) > 1e-3 or sms["direction"] != "down" or \
            int(sms["n"]) != ref.total("by_channel", "channel=sms", "5m"):
        raise Failure("alert entry %s, the reference has z %.4f, n %d"
                      % (sms, z, ref.total("by_channel", "channel=sms", "5m")))
    flag = h.r.hget(s.prefix + ":win:by_channel:channel=sms:5m", "alert_1h")
    if flag != b"down":
        raise Failure("the 5m hash of channel=sms has alert_1h=%r, want down" % flag)

    # Ten minutes later the 5m window is empty: every alert resolves, once.
    e2 = s.engine(workers=2, extra=["--now", T + 10 * MINUTE] + args)
    itlib.wait_for("every alert to resolve", lambda: e2.alive() and
                   len(entries("resolved")) >= len(want), 30)
    time.sleep(1)
    e2.terminate()
    resolved = sorted((f["view"], f["segment"]) for f in entries("resolved"))
    if resolved != sorted(want) or len(entries("firing")) != len(want):
        raise Failure("after the 5m window emptied: resolved %s, firing entries %d; want each of "
                      "%s once" % (resolved, len(entries("firing")), sorted(want)))
    if h.r.hexists(s.prefix + ":win:by_channel:channel=sms:5m", "alert_1h"):
        raise Failure("alert_1h still set on channel=sms after it resolved")
    s.close()
    return ("alerts: %s; %d segments fire once (channel=sms z %.2f, as the reference), stay "
            "quiet over later flushes and resolve once when the 5m window empties"
            % (ref.summary(), len(want), z))


def dedup_messages(T, seed):
    """Responses keyed by their id (so every copy lands in one partition):
    part A first occurrences (some 8 days old), part B fresh ids and copies
    of A, part C copies of A and B only. Copies within 7 days are
    duplicates; copies of the 8-day-old ids at now are not."""
    rng = random.Random(seed)

    def event(ident, ts):
        return (ident.encode(), json.dumps(
            {"id": ident, "ts": ts, "score": rng.randint(0, 10),
             "channel": rng.choice(["email", "sms", "web"]),
             "survey": rng.choice(["checkout", "support"])}).encode())

    old = T - 8 * DAY
    part_a = [event("a-%d" % i, old if i % 10 == 0 else T - rng.randint(0, 6 * DAY))
              for i in range(3000)]
    part_b = [event("b-%d" % i, T - rng.randint(0, HOUR)) for i in range(3000)]
    def recent_a():  # an id of A first seen within the horizon
        return "a-%d" % (rng.randrange(300) * 10 + rng.randint(1, 9))
    part_b += [event(recent_a(), T - rng.randint(0, HOUR)) for _ in range(1500)]
    rng.shuffle(part_b)
    part_c = [event(recent_a(), T) for _ in range(1500)]
    part_c += [event("b-%d" % rng.randrange(3000), T) for _ in range(1000)]
    part_c += [event("a-%d" % i, T) for i in range(0, 3000, 10)]  # 8 days after: counted
    rng.shuffle(part_c)
    return part_a, part_b, part_c


def all_unit(h, s):
    """The unit of the `all` view's one segment (its panes name it)."""
    for key in h.r.scan_iter(match=s.prefix + ":panes:all#*"):
        return key.decode().split(":")[2]
    raise Failure("no pane key of the all view")


def scenario_dedup(h):
    """A response id repeated within the 7-day horizon counts once, across
    a SIGKILL and a restart: part A is published first, part B trickles in
    while the first run is killed mid-stream, part C (copies only) arrives
    after the restart, which must have loaded A's and B's ids from Redis.
    Every hash equals the reference applying the same rule, and the
    restarted run's duplicate counter equals the reference's duplicates at
    or past the `all` unit's fences it started from."""
    s = Scenario(h, "dedup")
    T = itlib.now_ms()
    part_a, part_b, part_c = dedup_messages(T, 7)
    s.produce(part_a)
    _, ends_a = s.read_back(T)
    e1 = s.engine(workers=2, flush_ms=300, extra=["--now", T])
    s.wait_fences(ends_a, 90)
    trickle = itlib.Trickle(s.broker.bootstrap, s.topic, part_b, batch=300, pause_s=0.1)
    trickle.start()
    seen = s.visible()
    itlib.wait_for("the first run to publish part of B",
                   lambda: trickle.error or (trickle.produced >= 1500 and s.visible() > seen), 60)
    e1.kill()
    trickle.finish()
    s.produced += trickle.produced
    unit = all_unit(h, s)
    fence_at_restart = {int(k.rsplit(":", 1)[1]): v
                        for k, v in itlib.fences(h.r, s.prefix, s.group, s.topic).items()
                        if k.startswith(unit + ":")}
    keys = list(h.r.scan_iter(match="%s:ids:%s:%s:*" % (s.prefix, s.group, s.topic)))
    ttls = [t for t in (h.r.pttl(k) for k in keys) if t != -2]  # -2: expired since
    if not ttls or min(ttls) <= 0 or max(ttls) > 8 * DAY:
        raise Failure("dedup keys: %d, time to live %s..%s ms" % (len(keys), min(ttls, default=None),
                                                               max(ttls, default=None)))
    for k in keys:  # each key holds its partition's ids first seen on its day, and only those
        raw, day = h.r.get(k), int(k.rsplit(b":", 1)[1])
        days = {ts // DAY for _, _, ts in struct.iter_unpack("<Qqq", raw or b"")}
        if len(raw or b"") % 24 or days - {day}:
            raise Failure("dedup key %s: %d bytes, records of days %s" % (k, len(raw or b""),
                                                                        sorted(days)))
    s.produce(part_c)
    e2 = s.engine(workers=2, flush_ms=300, extra=["--now", T])
    ref, ends = s.read_back(T)
    s.wait_fences(ends, 120)
    after = sum(1 for p, o in ref.duplicates if o >= fence_at_restart.get(p, 0))
    m, _ = e2.metrics()
    got = m.get(("npstream_events_duplicate_total", ""))
    e2.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    in_c = len(part_c) - len(range(0, 3000, 10))
    if len(ref.duplicates) < in_c or ref.valid != len(part_a) + 3000 + len(range(0, 3000, 10)):
        raise Failure("test data: %s; expected every copy in C to be a duplicate" % ref.summary())
    if got != after:
        raise Failure("/metrics npstream_events_duplicate_total = %s after the restart, the "
                      "reference has %d duplicates past the fences it started from" % (got, after))
    s.close()
    return ("dedup: %s; SIGKILL mid-stream, restart loaded the ids of %d Redis keys; %d "
            "(view,segment,window) hashes equal the reference; the restarted run counted %d "
            "duplicates, as the reference past its fences"
            % (ref.summary(), len(keys), n, after))


def scenario_per_view(h):
    """Trends, themes and alerts kept by some views only
    (--trends-views, --themes-views, --alerts-views): the views named
    have exactly the reference's trend buckets, theme sets and alerts, the
    others none, and every window hash is as without the options."""
    s = Scenario(h, "per_view")
    T = itlib.now_ms()
    messages = itlib.gen_events(h.npstream, h.work, 6000, 88, T, 0.0)
    s.produce(messages + drop_messages(T))
    ref, ends = s.read_back(T)
    trends, themes, alerts = {"all", "by_region"}, {"by_channel", "by_survey_age"}, {"by_channel"}
    args = ["--alerts", "5m:1h", "--alert-z", "3", "--alert-min-responses", "30",
            "--trends-views", ",".join(sorted(trends)), "--themes-views", ",".join(sorted(themes)),
            "--alerts-views", ",".join(sorted(alerts))]
    e = s.engine(workers=2, flush_ms=6000, extra=["--now", T] + args)  # see scenario_alerts
    s.wait_fences(ends, 60)
    e.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    left_out = (sum(1 for k in ref.trends if k[0] not in trends),
                sum(1 for k in ref.themes if k[0] not in themes),
                len(alerts_wanted(ref) - alerts_wanted(ref, alerts)))
    if not all(left_out):
        raise Failure("test data: the views left out would have no trends, themes or alerts: %s"
                      % (left_out,))
    ref.trends = {k: v for k, v in ref.trends.items() if k[0] in trends}
    ref.themes = {k: v for k, v in ref.themes.items() if k[0] in themes}
    nt = itlib.compare_trends(h.r, s.prefix, ref)
    nth = itlib.compare_themes(h.r, s.prefix, ref)
    want = alerts_wanted(ref, alerts)
    got = sorted((f["view"], f["segment"]) for f in alert_entries(h, s, "firing"))
    if got != sorted(want) or not want:
        raise Failure("firing alerts for %s, want each of %s once" % (got, sorted(want)))
    s.close()
    return ("per_view: %s; %d hashes equal the reference; trends of %s (%d buckets), themes "
            "of %s (%d sets) and alerts of %s (%d) as the reference, none of the other views "
            "(which would have had %d trend buckets, %d theme sets, %d alerts)"
            % (ref.summary(), n, ",".join(sorted(trends)), nt, ",".join(sorted(themes)), nth,
               ",".join(sorted(alerts)), len(want), left_out[0], left_out[1], left_out[2]))


def scenario_demo(h):
    """`npstream demo` hands the options `run` takes too to the engine it
    starts: with --trends 1h:7d --trends-views all --themes-views
    by_channel --detractors-maxlen 0 --max-segments=3, Redis gets the
    hourly trend of `all` only, themes of by_channel only, no detractor
    stream and 3 regions plus ~overflow."""
    prefix = "demo-%d" % os.getpid()
    args = [h.npstream, "demo", "--redis", h.redis.address, "--prefix", prefix, "--count", "3000",
            "--interval-ms", "0", "--trends", "1h:7d", "--trends-views", "all",
            "--themes-views", "by_channel", "--detractors-maxlen", "0", "--max-segments=3"]
    out = subprocess.run(args, cwd=h.work, capture_output=True, timeout=120)
    if out.returncode != 0:
        raise Failure("npstream demo exited %d: %s" % (out.returncode, out.stderr.decode()[-800:]))
    trend_keys = {k.decode().split(":")[2] + ":" + k.decode().rsplit(":", 1)[1]
                  for k in h.r.scan_iter(match=prefix + ":trend:*")}
    theme_views = {k.decode().split(":")[2] for k in h.r.scan_iter(match=prefix + ":themes:*")}
    regions = {m.decode() for m in h.r.smembers(prefix + ":segments:by_region")}
    if len(regions) != 4 or "~overflow" not in regions:
        raise Failure("demo --max-segments=3: by_region segments %s, want 3 and ~overflow"
                      % sorted(regions))
    if trend_keys != {"all:1h"} or theme_views != {"by_channel"} or \
            h.r.exists(prefix + ":detractors"):
        raise Failure("demo published trends %s (want all:1h), themes of %s (want by_channel), "
                      "detractor stream %s (want none)"
                      % (sorted(trend_keys), sorted(theme_views), h.r.exists(prefix + ":detractors")))
    return ("demo: its --trends, --trends-views, --themes-views, --detractors-maxlen and "
            "--max-segments reach the engine")


def scenario_dedup_short(h):
    """A horizon under a day (--dedup-horizon 1h): an id first seen at
    09:00 and again at 11:00 (beyond the horizon: counted, the new first
    occurrence), both in one day's key, then, after a restart that loads
    the ids, at 11:15: a duplicate of the 11:00 one, as the first run would
    have judged it. The reference applies the same rule."""
    s = Scenario(h, "dedup_short")
    day_start = itlib.now_ms() // DAY * DAY - DAY  # yesterday, so all of it is past
    T = day_start + 12 * HOUR
    rng = random.Random(5)

    def event(ident, ts):
        return (ident.encode(), json.dumps({"id": ident, "ts": ts, "score": rng.randint(0, 10),
                                            "channel": rng.choice(["email", "sms"])}).encode())
    ids = ["s-%d" % i for i in range(400)]
    part_a = [event(i, T - 3 * HOUR) for i in ids] + [event(i, T - HOUR) for i in ids]
    part_b = [event(i, T - 45 * MINUTE) for i in ids[:300]]  # within 1h of T-1h only
    args = ["--now", T, "--dedup-horizon", "1h"]
    s.produce(part_a)
    _, ends = s.read_back(T)
    e1 = s.engine(workers=2, extra=args)
    s.wait_fences(ends, 60)
    e1.terminate()
    s.produce(part_b)
    ref, ends = s.read_back(T, dedup_horizon_ms=HOUR)
    e2 = s.engine(workers=2, extra=args)
    s.wait_fences(ends, 60)
    m, _ = e2.metrics()
    got = m.get(("npstream_events_duplicate_total", ""))
    e2.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    if len(ref.duplicates) != len(part_b) or ref.valid != len(part_a):
        raise Failure("test data: %s; want every message of part B a duplicate" % ref.summary())
    if got != len(part_b):
        raise Failure("/metrics npstream_events_duplicate_total = %s after the restart, want %d"
                      % (got, len(part_b)))
    s.close()
    return ("dedup_short: %s; horizon 1h, two first occurrences of each id on one day, then "
            "after a restart %d copies within 1h of the second: all duplicates, %d hashes equal "
            "the reference" % (ref.summary(), got, n))


def scenario_quiet_fences(h):
    """The fences of units with nothing to write move in one script with
    the same check as a unit's: a quiet unit's fence changed behind the
    engine's back is a mismatch (counted, logged, resync), and after the
    resync every hash still equals the reference."""
    s = Scenario(h, "quiet_fences")
    T = itlib.now_ms()
    s.produce(itlib.gen_events(h.npstream, h.work, 3000, 21, T, 0.0))
    _, ends = s.read_back(T)
    e = s.engine(workers=2, extra=["--now", T])
    s.wait_fences(ends, 60)
    with_panes = {k.decode().split(":")[2] for k in h.r.scan_iter(match=s.prefix + ":panes:*")}
    quiet = sorted(u for u in UNITS if u.startswith("by_channel#") and u not in with_panes)
    if not quiet:
        raise Failure("test data: every by_channel unit holds panes")
    okey = "%s:offsets:%s:%s" % (s.prefix, s.group, s.topic)
    field = "%s:0" % quiet[0]
    h.r.hset(okey, field, 1)  # neither where the engine's next move begins nor ends
    s.produce(itlib.gen_events(h.npstream, h.work, 2000, 22, T, 0.0))
    ref, ends = s.read_back(T)

    def mismatched():
        m, _ = e.metrics()
        return m.get(("npstream_fence_mismatches_total", ""), 0) >= 1
    itlib.wait_for("the tampered fence of %s to be a mismatch" % field, mismatched, 30)
    if "fence moved by someone else" not in e.log():
        raise Failure("no log line names the mismatch:\n%s" % e.log_tail())
    s.wait_fences(ends, 60)
    e.terminate()
    n = itlib.compare(h.r, s.prefix, ref)
    s.close()
    return ("quiet_fences: %s; %d of the %d by_channel units quiet; the fence %s set behind the "
            "engine's back was a mismatch (counted, logged, resynced) and %d hashes equal the "
            "reference" % (ref.summary(), len(quiet),
                           sum(1 for u in UNITS if u.startswith("by_channel#")), field, n))


def scenario_catch_up(h):
    """A backlog reaches Redis once the workers have read it, not at the
    next tick: with --flush-ms 10000 every fence is at its end before the
    first tick can come, by a flush /metrics counts as a backlog's end,
    and every hash equals the reference."""
    s = Scenario(h, "catch_up")
    T = itlib.now_ms()
    s.produce(itlib.gen_events(h.npstream, h.work, 40000, 31, T, 0.0))
    ref, ends = s.read_back(T)
    started = time.monotonic()
    e = s.engine(workers=2, flush_ms=10000, extra=["--now", T])
    s.wait_fences(ends, 9.5)  # the first tick is 10 s after the engine's start, or later
    took = time.monotonic() - started
    m, _ = e.metrics()
    early = m.get(("npstream_catch_up_flushes_total", ""), 0)
    flushes = m.get(("npstream_flushes_total", ""), 0)
    e.terminate()
    if early < 1:
        raise Failure("npstream_catch_up_flushes_total = %s after the backlog was published"
                      % early)
    n = itlib.compare(h.r, s.prefix, ref)
    s.close()
    return ("catch_up: %s; with --flush-ms 10000 the backlog was in Redis %.1f s after the "
            "engine's start, by %d of its %d flushes; %d hashes equal the reference"
            % (ref.summary(), took, early, flushes, n))


def engine_now(h, s):
    entries = h.r.xrevrange(s.prefix + ":updates", count=1)
    return int(entries[0][1][b"now_ms"]) if entries else 0


class Harness:
    def __init__(self, npstream):
        self.npstream = os.path.abspath(npstream)
        self.children = itlib.Children()
        self.workdir = itlib.Workdir()
        self.work = self.workdir.path
        self.redis = itlib.RedisServer(self.children, self.work)
        self.redis.start()
        self.r = self.redis.client


SCENARIOS = [scenario_exact, scenario_crash, scenario_rebalance, scenario_redis_restart,
             scenario_detractors_trim, scenario_windows, scenario_alerts, scenario_security,
             scenario_logs, scenario_hostile, scenario_flaky_broker, scenario_signals,
             scenario_dedup, scenario_dedup_short, scenario_per_view, scenario_demo,
             scenario_quiet_fences, scenario_catch_up]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: it_pipeline.py NPSTREAM_BINARY [SCENARIO...]")
    only = set(sys.argv[2:])
    started = time.monotonic()
    h = Harness(sys.argv[1])
    failed = []
    try:
        for scenario in SCENARIOS:
            name = scenario.__name__[len("scenario_"):]
            if only and name not in only:
                continue
            t0 = time.monotonic()
            try:
                line = scenario(h)
                print("%s [%.1f s]" % (line, time.monotonic() - t0), flush=True)
            except Exception as e:  # report, clean up, go on with the next
                failed.append(name)
                detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
                print("FAIL %s: %s" % (name, detail), flush=True)
                logs = sorted(f for f in os.listdir(h.work) if f.startswith(name) and
                              f.endswith(".log"))
                for log in logs:
                    with open(os.path.join(h.work, log), "rb") as f:
                        tail = f.read().decode("utf-8", "replace").splitlines()[-15:]
                    print("  --- %s (tail)\n  %s" % (log, "\n  ".join(tail)), flush=True)
            finally:
                h.children.kill_all(keep=[h.redis.proc])
                if h.redis.proc.poll() is not None:  # a failure left it down
                    h.redis.start()
    finally:
        h.children.kill_all()
        if os.environ.get("NPS_IT_KEEP"):
            print("kept %s" % h.work)
        else:
            h.workdir.remove()
    print("it_pipeline: %s in %.0f s" % ("FAILED: " + ", ".join(failed) if failed else "passed",
                                         time.monotonic() - started))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
