#!/usr/bin/python3
"""peer.py: the NPS aggregator a team would write instead of npstream.

bench/e2e runs it beside `npstream run` on the same topic (bench/README.md,
"End to end"). It is what a competent team writes in an afternoon with
confluent-kafka and redis-py, one process, kept reasonably efficient:

- one group consumer, `consume(num_messages=1000)` batches, `json.loads`;
- the event contract's essentials: `score` an integer 0..10 (an integral
  float accepted), `type` response or sent, `ts` epoch ms or RFC 3339
  (absent: the Kafka timestamp), dimensions top-level strings or integers
  (absent or null: the empty value); anything else is counted invalid;
  events more than 5 minutes ahead are invalid, older than the largest
  window count in `total` only;
- per event one dictionary increment, keyed by (dimension values, 5 s
  pane, score class): the events of a second collapse into a few thousand
  keys before any per-view work;
- every 1 s a flush expands those keys into the views (`all` plus the
  `--view`s), the windows (`5m 1h 24h 7d 30d`, panes of window/60, as
  npstream) and `total`, expires the panes that left each window (kept in
  memory) and writes, in one MULTI/EXEC pipeline, the same window hash
  fields as npstream (`h0..h10 sent responses promoters passives
  detractors score_sum` by HINCRBY, `nps moe95 avg response_rate
  updated_ms` by HSET from its own running totals), the segment sets and
  per-view, per-partition offset fences `<prefix>:offsets:<group>:<topic>`
  (`<view>:<partition>` = next offset), so bench/e2e measures it exactly as
  it measures npstream.

With --count N it stops after the flush that covers N messages (read from
offset 0 of every partition) and prints its figures on standard error.
"""
import argparse
import json
import math
import signal
import sys
import time
from urllib.parse import quote

import redis
from confluent_kafka import Consumer, KafkaError

WINDOWS = [("5m", 300_000), ("1h", 3_600_000), ("24h", 86_400_000),
           ("7d", 604_800_000), ("30d", 2_592_000_000)]
FINE_MS = 5_000  # gcd of the pane sizes (window / 60)
MAX_SKEW_MS = 300_000
NF = 12  # h0..h10, sent
HFIELDS = ["h%d" % i for i in range(11)] + ["sent"]


def log(msg):
    print("peer: " + msg, file=sys.stderr, flush=True)


def parse_view(text):
    name, _, dims = text.partition("=")
    if not name or not dims:
        raise argparse.ArgumentTypeError("--view NAME=DIM[,DIM...]: got %r" % text)
    return name, dims.split(",")


def rfc3339_ms(text):
    from datetime import datetime
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class Peer:
    def __init__(self, args):
        self.args = args
        self.views = [("all", [])] + args.view
        dims = []
        for _, ds in self.views:
            for d in ds:
                if d not in dims:
                    dims.append(d)
        self.dims = dims
        # for each view: positions of its dimensions in the event key
        self.view_pos = [[dims.index(d) for d in ds] for _, ds in self.views]
        self.view_pick = [(lambda key, pos=tuple(pos): tuple([key[p] for p in pos]))
                          for pos in self.view_pos]
        self.segcache = {}
        self.good_values = set()  # dimension value tuples already checked
        self.agg = {}  # (dim values..., fine pane, class) -> count
        self.next_offset = {}  # partition -> next offset to read
        self.written_offset = {}
        self.invalid = 0
        self.messages = 0
        # window state, kept in memory: the pane counts each window total
        # is the sum of, and the totals (for the derived fields)
        self.panes = [dict() for _ in WINDOWS]  # wi -> pane idx -> {(vi, seg): counts}
        self.totals = {}  # (vi, seg, wi) -> counts; wi == len(WINDOWS) is total
        self.low = [None] * len(WINDOWS)
        self.r = redis.Redis(host=args.redis_host, port=args.redis_port)
        self.okey = "%s:offsets:%s:%s" % (args.prefix, args.group, args.topic)
        self.flushes = 0
        self.flush_s = 0.0

    # ------------------------------------------------------------ hot path
    def count(self, msgs):
        agg = self.agg
        loads = json.loads
        dims = self.dims
        nxt = self.next_offset
        invalid = 0
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log("consumer error: %s" % m.error())
                continue
            nxt[m.partition()] = m.offset() + 1
            try:
                e = loads(m.value())
                t = e.get("type", "response")
                if t == "sent":
                    cls = 11
                elif t == "response" or t is None:
                    s = e.get("score")
                    if type(s) is int and 0 <= s <= 10:
                        cls = s
                    elif type(s) is float and s.is_integer() and 0 <= s <= 10:
                        cls = int(s)
                    else:
                        invalid += 1
                        continue
                else:
                    invalid += 1
                    continue
                ts = e.get("ts")
                if type(ts) is not int:
                    if ts is None:
                        ts = m.timestamp()[1]
                    elif type(ts) is str:
                        ts = rfc3339_ms(ts)
                    else:
                        invalid += 1
                        continue
                key = tuple([e.get(d) for d in dims]) + (ts // FINE_MS, cls)
                agg[key] = agg.get(key, 0) + 1
            except (ValueError, AttributeError, TypeError):
                invalid += 1
        self.invalid += invalid
        self.messages += len(msgs)

    # --------------------------------------------------------------- flush
    def segment(self, vi, values):
        ck = (vi, values)
        seg = self.segcache.get(ck)
        if seg is None:
            names = self.views[vi][1]
            if not names:
                seg = "*"
            else:
                parts = []
                for name, v in zip(names, values):
                    if v is None:
                        v = ""
                    elif type(v) is int:
                        v = str(v)
                    elif type(v) is float and v.is_integer():
                        v = str(int(v))
                    parts.append("%s=%s" % (name, quote(v, safe="-._~")))
                seg = ",".join(parts)
            self.segcache[ck] = seg
        return seg

    def flush(self):
        t_start = time.monotonic()
        now = int(time.time() * 1000)
        deltas = {}  # (vi, seg, wi) -> counts

        def add(k, cls, n):
            d = deltas.get(k)
            if d is None:
                d = deltas[k] = [0] * NF
            d[cls] += n

        # 1. panes that left their window come off the totals
        lows = []
        for wi, (_, size) in enumerate(WINDOWS):
            pane = size // 60
            low = now // pane - 59
            lows.append(low)
            panes = self.panes[wi]
            for idx in [i for i in panes if i < low]:
                for (vi, seg), counts in panes.pop(idx).items():
                    k = (vi, seg, wi)
                    d = deltas.get(k)
                    if d is None:
                        d = deltas[k] = [0] * NF
                    for f in range(NF):
                        d[f] -= counts[f]
        # 2. this second's events: rolled up per view first (fewer keys),
        # then into every window and total
        agg, self.agg = self.agg, {}
        total_wi = len(WINDOWS)
        nd = len(self.dims)
        rolls = [dict() for _ in self.views]  # vi -> (values, fine, cls) -> count
        good = self.good_values
        for key, n in agg.items():
            if key[nd] * FINE_MS > now + MAX_SKEW_MS:
                self.invalid += n
                continue
            values = key[:nd]
            if values not in good:
                if not all(v is None or type(v) is str or type(v) is int
                           or (type(v) is float and v.is_integer()) for v in values):
                    self.invalid += n
                    continue
                good.add(values)
            tail = key[nd:]
            for vi, pick in enumerate(self.view_pick):
                k2 = (pick(key),) + tail
                rolls[vi][k2] = rolls[vi].get(k2, 0) + n
        panes_ms = [size // 60 for _, size in WINDOWS]
        nw = len(WINDOWS)
        for vi, roll in enumerate(rolls):
            # per window: (values, pane, class) -> count, so that the pane and
            # delta tables are touched once per pane, not once per 5 s
            wrolls = [dict() for _ in WINDOWS]
            troll = {}
            for (values, fine, cls), n in roll.items():
                ts = fine * FINE_MS
                for wi in range(nw):
                    idx = ts // panes_ms[wi]
                    if idx >= lows[wi]:  # else: larger windows and total only
                        wr = wrolls[wi]
                        k = (values, idx, cls)
                        wr[k] = wr.get(k, 0) + n
                k = (values, cls)
                troll[k] = troll.get(k, 0) + n
            for wi, wr in enumerate(wrolls):
                pw = self.panes[wi]
                for (values, idx, cls), n in wr.items():
                    seg = self.segment(vi, values)
                    panes = pw.get(idx)
                    if panes is None:
                        panes = pw[idx] = {}
                    c = panes.get((vi, seg))
                    if c is None:
                        c = panes[(vi, seg)] = [0] * NF
                    c[cls] += n
                    add((vi, seg, wi), cls, n)
            for (values, cls), n in troll.items():
                add((vi, self.segment(vi, values), total_wi), cls, n)
        # 3. one MULTI/EXEC: counts, derived fields, segment sets, fences
        pipe = self.r.pipeline(transaction=True)
        prefix = self.args.prefix
        wnames = [w for w, _ in WINDOWS] + ["total"]
        stamp = str(now)
        new_segs = {}
        for (vi, seg, wi), d in deltas.items():
            if not any(d):
                continue
            tk = (vi, seg, wi)
            tot = self.totals.get(tk)
            if tot is None:
                tot = self.totals[tk] = [0] * NF
                new_segs.setdefault(vi, set()).add(seg)
            key = "%s:win:%s:%s:%s" % (prefix, self.views[vi][0], seg, wnames[wi])
            for f in range(NF):
                if d[f]:
                    tot[f] += d[f]
                    pipe.hincrby(key, HFIELDS[f], d[f])
            dn = sum(d[:11])
            dpro = d[9] + d[10]
            ddet = sum(d[:7])
            dsum = sum(i * d[i] for i in range(11))
            if dn:
                pipe.hincrby(key, "responses", dn)
            if dpro:
                pipe.hincrby(key, "promoters", dpro)
            if dn - dpro - ddet:
                pipe.hincrby(key, "passives", dn - dpro - ddet)
            if ddet:
                pipe.hincrby(key, "detractors", ddet)
            if dsum:
                pipe.hincrby(key, "score_sum", dsum)
            n = sum(tot[:11])
            fields = {"updated_ms": stamp}
            gone = []
            if n > 0:
                pro, det = (tot[9] + tot[10]) / n, sum(tot[:7]) / n
                var = max(pro + det - (pro - det) ** 2, 0.0)
                fields["nps"] = "%.4f" % (100 * (pro - det))
                fields["moe95"] = "%.4f" % (196 * math.sqrt(var / n))
                fields["avg"] = "%.4f" % (sum(i * tot[i] for i in range(11)) / n)
            else:
                gone += ["nps", "moe95", "avg"]
            if tot[11] > 0:
                fields["response_rate"] = "%.6f" % (n / tot[11])
            else:
                gone.append("response_rate")
            pipe.hset(key, mapping=fields)
            if gone:
                pipe.hdel(key, *gone)
        for vi, segs in new_segs.items():
            pipe.sadd("%s:segments:%s" % (prefix, self.views[vi][0]), *segs)
        fences = {}
        for p, off in self.next_offset.items():
            if self.written_offset.get(p) != off:
                for name, _ in self.views:
                    fences["%s:%d" % (name, p)] = off
        if fences:
            pipe.hset(self.okey, mapping=fences)
        pipe.execute()
        self.written_offset.update(self.next_offset)
        for wi, low in enumerate(lows):
            self.low[wi] = low
        self.flushes += 1
        self.flush_s += time.monotonic() - t_start

    def catalogue(self):
        self.r.hset("%s:views" % self.args.prefix,
                    mapping={name: ",".join(ds) for name, ds in self.views})
        self.r.hset("%s:windows" % self.args.prefix,
                    mapping=dict(WINDOWS + [("total", 0)]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", default="e2e")
    ap.add_argument("--group", required=True)
    ap.add_argument("--redis", default="127.0.0.1:6379")
    ap.add_argument("--prefix", default="peer")
    ap.add_argument("--view", type=parse_view, action="append", default=[])
    ap.add_argument("--flush-ms", type=int, default=1000)
    ap.add_argument("--count", type=int, default=0,
                    help="stop after the flush that covers this many messages")
    args = ap.parse_args()
    host, _, port = args.redis.rpartition(":")
    args.redis_host, args.redis_port = host or "127.0.0.1", int(port)

    peer = Peer(args)
    peer.catalogue()
    done = False
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 100,
    })

    def on_assign(c, parts):
        log("assigned %d partition(s)" % len(parts))

    def on_revoke(c, parts):
        if not done:
            log("revoked %d partition(s)" % len(parts))

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    start = time.monotonic()
    next_flush = start + args.flush_ms / 1000
    consume_s = count_s = 0.0
    try:
        while True:
            if not done:
                t = time.monotonic()
                msgs = consumer.consume(num_messages=1000, timeout=0.1)
                t2 = time.monotonic()
                if msgs:
                    peer.count(msgs)
                consume_s += t2 - t
                count_s += time.monotonic() - t2
                if args.count and sum(peer.next_offset.values()) >= args.count:
                    done = True  # nothing more to read: wait for the next flush
            now = time.monotonic()
            if now >= next_flush:
                peer.flush()
                if peer.next_offset:
                    consumer.commit(asynchronous=True)  # advisory, like npstream's
                next_flush += args.flush_ms / 1000
                if next_flush < now:
                    next_flush = now + args.flush_ms / 1000
                if done:
                    break
            elif done:
                time.sleep(next_flush - now)
    except KeyboardInterrupt:
        pass
    elapsed = time.monotonic() - start
    log("%d messages, %d invalid, %d flushes in %.2f s: %.2f s in consume(), %.2f s parsing "
        "and counting, %.2f s in flushes (%.1f ms each on average)"
        % (peer.messages, peer.invalid, peer.flushes, elapsed, consume_s, count_s, peer.flush_s,
           1000 * peer.flush_s / max(peer.flushes, 1)))
    consumer.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
