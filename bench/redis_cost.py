#!/usr/bin/python3
"""Redis time per (segment, window) of one flush unit (engine/flush.lua).

Starts its own redis-server on a free loopback port, then for S segments
(default 1k, 10k, 100k) sends units exactly as the engine encodes them:
every segment touched in the five finite default windows (one pane each)
and `total`. It reads the script's own time from INFO commandstats
(cmdstat_evalsha usec), so client and network time are not counted.

Rounds: "new" writes segments that do not exist yet; "update" touches the
same segments again (the steady state: HMGET finds counts); "expire"
moves now by 31 days with no new events, so every pane leaves every
finite window. Usage: bench/redis_cost.py [S ...]

--flush: whole flushes, as the engine sends them every second (its default
--flush-ms):
one view split into --buckets units (64, the engine's default), each unit
carrying the fences of --partitions partitions (16) and its share of the
S segments touched, all units pipelined. Per S (0, 1k, 10k; --full adds
100k) it sends one flush of new keys, then --flushes steady flushes (the
same segments 1 s later each time), then one flush 31 days later in which
every pane leaves every finite window. It reports Redis time per flush
(the scripts' own time from INFO commandstats, and the main thread's CPU
from INFO cpu, which adds reading the arguments and replying) against the
(segment, window) pairs touched. From the main thread's CPU (the scripts'
times are wall-clock, longer when another process takes Redis's core):
the fixed cost is the 0-segment flush (units and fences), the rest is
divided by the pairs, and from that cost it derives the largest flush that
keeps Redis under --budget-ms (100) per second. In a steady state where each segment is touched every second,
1/5 + 1/60 + 1/1440 + 1/10080 + 1/43200 = 0.217 of its panes leave a
window per second; the expire flush prices them.

--themes (with --flush): what comment themes cost. The windows 24h and 7d
get kind `h`, and each segment touched carries, after its count records,
one theme record per (window, class) for those two windows (the pane of
its count record, the three classes), each a sketch of --terms terms (8)
with counts 1-2, as engine/pipeline.c put_themes() encodes them. The terms
come from a vocabulary of 48 comment words: class c of segment i takes the
N - 1 words from (16 c + i) on, the same at every flush, and one more that
moves on by one word per flush, so successive flushes mostly hit the same
terms; a pane's stored sketch gains one term per flush (with N = 8 it is
full, 16 terms, from the 9th flush on, and then drops one). Per S, the
whole series (new, steady, expire) runs with themes off and on, in turn,
--repeats times (3), each on an empty Redis; it reports the medians over
the repeats (with an even count, the upper of the two middle ones), the
ratio on/off, and the expire flush, in which the panes leaving 24h and 7d
subtract their sketches from the theme sets.
Usage: bench/redis_cost.py --flush [--full] [--segments S,S,...]
       [--buckets B] [--partitions P] [--flushes F] [--budget-ms MS]
       [--themes [--terms N] [--repeats R]]

--floor: what the write alone costs, whoever computes it. For S segments
(--segments, default 10k) it first runs flush.lua's new and steady rounds
(the workload above), then measures, by Redis's main-thread CPU (INFO cpu)
over --repeats (3) rounds each, medians:
  script: flush.lua's steady round (reads, arithmetic, panes, writes);
  hset:   one HSET per (segment, window) of exactly the fields that round
          changes (updated_ms, two histogram bins, responses, promoters,
          the bin's class, score_sum, nps, moe95, avg), values precomputed,
          pipelined from the client: no read, no Lua, no pane;
  lua:    the same HSETs from a script that only passes its arguments on;
  packed: the same counts and derived fields laid out as one hash per
          segment, one field per window holding them all, one HSET per
          segment: what a contract with fewer keys and fields would cost.
Usage: bench/redis_cost.py --floor [--segments S,...] [--repeats R]
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = open(os.path.join(HERE, "..", "engine", "flush.lua")).read()
WINDOWS = [("5m", 300000), ("1h", 3600000), ("24h", 86400000), ("7d", 604800000),
           ("30d", 2592000000), ("total", 0)]
THEME_WINDOWS = ("24h", "7d")


def windows_arg(themes):
    """ARGV[9]: kind h for the theme windows when `themes`, w otherwise."""
    return ";".join(f"{n}:{s}:{s // 60}:{60 if s else 0}:"
                    f"{'h' if themes and n in THEME_WINDOWS else 'w'}" for n, s in WINDOWS)


WINDOWS_ARG = windows_arg(False)
NF = 15  # h0..h10, sent, value cents of promoters, passives, detractors
ENTRY = struct.Struct("<Bq" + "q" * NF)
THEME_HEAD = struct.Struct("<BBqBBB")  # 255, window, pane, class, capacity, n
THEME_TERM = struct.Struct("<IB")  # count, length; the term's bytes follow
THEME_CAPACITY = 16  # NPS_THEME_CAPACITY
VOCABULARY = [w.encode() for w in """
    price expensive cheap support helpful friendly staff fast slow delivery late
    shipping app crash update login password easy simple quality reliable
    refund return waiting hours phone email chat agent manager website checkout
    payment card discount subscription cancel billing invoice account order
    tracking package broken missing damaged great love""".split()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def segment_entries(i, now):
    """One segment's entries: one pane in each finite window, and total."""
    data = b""
    for wi, (_, size) in enumerate(WINDOWS):
        pane = now // (size // 60) if size else 0
        h = [0] * NF
        h[i % 11] = 3
        h[10] += 1
        data += ENTRY.pack(wi, pane, *h)
    return data


def theme_records(i, now, flush, terms):
    """Segment i's sketches in the theme windows, one per class, at flush number `flush`."""
    data = b""
    for wi, (name, size) in enumerate(WINDOWS):
        if name not in THEME_WINDOWS:
            continue
        for cls in range(3):
            first = 16 * cls + i
            words = [VOCABULARY[(first + k) % len(VOCABULARY)] for k in range(terms - 1)]
            words.append(VOCABULARY[(first + terms - 1 + flush) % len(VOCABULARY)])
            data += THEME_HEAD.pack(255, wi, now // (size // 60), cls, THEME_CAPACITY, terms)
            for k, word in enumerate(words):
                data += THEME_TERM.pack(1 + k % 2, len(word)) + word
    return data


def unit_args(segments, now, fence_begin, fence_end):
    args = ["nps", "bench", "t", "by_seg", "by_seg", "seg", str(now), "bench:1", WINDOWS_ARG,
            f"0:{fence_begin}:{fence_end}", "", "", "0", "0"]  # no alerts, benchmarks, detractors
    for i in range(segments):
        args += [f"seg=s{i}", segment_entries(i, now)]
    return args


def evalsha_usec(r):
    stats = r.info("commandstats").get("cmdstat_evalsha", {})
    return stats.get("usec", 0), stats.get("calls", 0)


def run_round(r, sha, args, pairs):
    r.config_resetstat()
    t0 = time.perf_counter()
    reply = r.evalsha(sha, 0, *args)
    wall = time.perf_counter() - t0
    usec, calls = evalsha_usec(r)
    assert calls == 1 and reply[0] == b"ok", reply
    return usec, wall, pairs


def start_server():
    port = free_port()
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", tmp],
                              stdout=subprocess.DEVNULL)
    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return server, r


def unit_rounds(r, sha, sizes):
    print(f"{'segments':>9} {'round':>7} {'pairs':>8} {'redis ms':>9} {'us/pair':>8} {'wall ms':>8}")
    for s in sizes:
        r.flushall()
        now = 1_800_000_000_000
        pairs = s * len(WINDOWS)
        for name, begin, end, t in (("new", -1, 1000, now), ("update", 1000, 2000, now + 1000)):
            usec, wall, _ = run_round(r, sha, unit_args(s, t, begin, end), pairs)
            print(f"{s:>9} {name:>7} {pairs:>8} {usec / 1000:>9.1f} {usec / pairs:>8.2f} "
                  f"{wall * 1000:>8.1f}")
        later = now + 31 * 86400000
        args = ["nps", "bench", "t", "by_seg", "by_seg", "seg", str(later), "bench:2",
                WINDOWS_ARG, "", "", "", "0", "0"]
        usec, wall, _ = run_round(r, sha, args, s * 5)
        print(f"{s:>9} {'expire':>7} {s * 5:>8} {usec / 1000:>9.1f} {usec / (s * 5):>8.2f} "
              f"{wall * 1000:>8.1f}")


# Panes of one segment that leave a window per second when the segment is
# touched every second: 1 / (pane size in s) summed over the finite windows.
EXPIRED_PER_SECOND = sum(1000 / (size // 60) for _, size in WINDOWS if size)


def main_thread_cpu_s(r):
    cpu = r.info("cpu")
    return cpu["used_cpu_sys_main_thread"] + cpu["used_cpu_user_main_thread"]


class Flusher:
    """Sends flushes of one view cut into bucket units, as the engine does."""

    def __init__(self, r, sha, buckets, partitions, terms=0):
        """terms: the terms per theme sketch; 0 sends no themes."""
        self.r, self.sha, self.buckets, self.partitions = r, sha, buckets, partitions
        self.terms = terms
        self.windows = windows_arg(terms > 0)
        self.fence = -1
        self.seq = 0

    def send(self, segments, now):
        """One flush of `segments` at `now`; returns (script usec, main-thread CPU s, wall s)."""
        self.seq += 1
        end = self.fence + 1000 if self.fence >= 0 else 1000
        fences = ";".join(f"{p}:{self.fence}:{end}" for p in range(self.partitions))
        units = [["nps", "bench", "t", f"by_seg#{b}", "by_seg", "seg", str(now),
                  f"bench:{self.seq}", self.windows, fences, "", "", "0", "0"]
                 for b in range(self.buckets)]
        for i in range(segments):
            entries = segment_entries(i, now)
            if self.terms:
                entries += theme_records(i, now, self.seq, self.terms)
            units[i % self.buckets] += [f"seg=s{i}", entries]
        self.r.config_resetstat()
        cpu0 = main_thread_cpu_s(self.r)
        t0 = time.perf_counter()
        pipe = self.r.pipeline(transaction=False)
        for args in units:
            pipe.evalsha(self.sha, 0, *args)
        replies = pipe.execute()
        wall = time.perf_counter() - t0
        cpu = main_thread_cpu_s(self.r) - cpu0
        usec, calls = evalsha_usec(self.r)
        assert calls == self.buckets and all(x[0] == b"ok" for x in replies), replies[:2]
        self.fence = end
        return usec, cpu, wall


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def flush_sizes(opts, default=None):
    """--segments, else `default`, else the --flush sizes (--full adds 100k)."""
    if opts.segments:
        return [int(x) for x in opts.segments.split(",")]
    if default:
        return default
    return [0, 1000, 10000, 100000] if opts.full else [0, 1000, 10000]


def flush_series(r, sha, opts, s, terms=0):
    """On an empty Redis: one flush of S new segments, --flushes steady ones
    1 s apart, and one 31 days later. Rows (round, script usec, CPU s, wall s)."""
    r.flushall()
    flusher = Flusher(r, sha, opts.buckets, opts.partitions, terms)
    now = 1_800_000_000_000
    rows = [("new", *flusher.send(s, now))]
    for f in range(opts.flushes):
        rows.append(("steady", *flusher.send(s, now + 1000 * (f + 1))))
    rows.append(("expire", *flusher.send(0, now + 31 * 86400000)))
    return rows


def print_series(s, rows, label=""):
    for name, usec, cpu, wall in rows:
        n = s * len(WINDOWS) if name != "expire" else s * (len(WINDOWS) - 1)
        per = f"{usec / n:>8.2f}" if n else f"{'-':>8}"
        print(f"{s:>9} {label}{name:>7} {n:>8} {usec / 1000:>10.1f} {cpu * 1000:>8.1f} {per} "
              f"{wall * 1000:>8.1f}")
    sys.stdout.flush()


def series_summary(rows):
    """(steady script ms, steady CPU ms: medians; expire CPU ms)."""
    return (median([u / 1000 for name, u, _, _ in rows if name == "steady"]),
            median([c * 1000 for name, _, c, _ in rows if name == "steady"]),
            rows[-1][2] * 1000)


def flush_rounds(r, sha, opts):
    sizes = flush_sizes(opts)
    print(f"one view, {opts.buckets} units per flush, fences of {opts.partitions} partitions "
          f"per unit, {len(WINDOWS)} windows; Redis time per flush")
    print(f"{'segments':>9} {'flush':>7} {'pairs':>8} {'script ms':>10} {'cpu ms':>8} "
          f"{'us/pair':>8} {'wall ms':>8}")
    per_size = {}  # segments -> (steady script ms, steady CPU ms, expire CPU ms)
    for s in sizes:
        rows = flush_series(r, sha, opts, s)
        print_series(s, rows)
        per_size[s] = series_summary(rows)
    # The fixed cost of a flush (units and fences, no segment) is the
    # 0-segment flush; the rest is divided by the pairs touched. The
    # derived figures use the main thread's CPU: the scripts' own times are
    # wall-clock and grow when another process takes Redis's core.
    fixed = per_size.get(0, (0.0, 0.0, 0.0))
    print(f"\nfixed cost of a flush with no segment: script {fixed[0]:.1f} ms, CPU {fixed[1]:.1f} "
          f"ms ({opts.buckets} units)")
    print(f"{'segments':>9} {'pairs':>8} {'us/pair':>8} {'cpu us/pair':>12} "
          f"{'cpu us/expired':>15} {'cpu us/segment/s':>17} {'max segments':>13}")
    budget = opts.budget_ms
    for s, (steady_ms, cpu_ms, expire_ms) in sorted(per_size.items()):
        if s == 0:
            continue
        pairs = s * len(WINDOWS)
        per_pair = (steady_ms - fixed[0]) * 1000 / pairs
        cpu_pair = (cpu_ms - fixed[1]) * 1000 / pairs
        per_expired = (expire_ms - fixed[1]) * 1000 / (s * (len(WINDOWS) - 1))
        # Redis CPU per segment per second: its 6 pairs and its expiry.
        per_segment = len(WINDOWS) * cpu_pair + EXPIRED_PER_SECOND * per_expired
        seg_max = (budget - fixed[1]) * 1000 / per_segment
        print(f"{s:>9} {pairs:>8} {per_pair:>8.2f} {cpu_pair:>12.2f} {per_expired:>15.2f} "
              f"{per_segment:>17.1f} {seg_max:>13,.0f}")
    print(f"max segments: touched per 1 s flush with Redis's main thread under {budget:.0f} ms "
          f"of CPU per second, at that size's cost per segment; "
          f"{EXPIRED_PER_SECOND:.3f} panes per segment leave a window per second")


# Panes of one segment that leave a theme window per second (touched every
# second): 1/1440 + 1/10080.
THEME_EXPIRED_PER_SECOND = sum(1000 / (size // 60) for n, size in WINDOWS if n in THEME_WINDOWS)


def span(values, fmt):
    lo, hi = min(values), max(values)
    return format(lo, fmt) if lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"


def themes_rounds(r, sha, opts):
    """Themes off and on, in turn, on the same segment counts: the cost of themes."""
    sizes = flush_sizes(opts)
    print(f"one view, {opts.buckets} units per flush, fences of {opts.partitions} partitions "
          f"per unit, {len(WINDOWS)} windows; themes on: {' and '.join(THEME_WINDOWS)} of kind h, "
          f"3 classes x {opts.terms} terms per (segment, window); off and on in turn, "
          f"{opts.repeats} times per size; Redis time per flush")
    print(f"{'segments':>9} {'themes':>6} {'flush':>7} {'pairs':>8} {'script ms':>10} "
          f"{'cpu ms':>8} {'us/pair':>8} {'wall ms':>8}")
    runs = {}  # (segments, terms) -> [(steady script ms, steady CPU ms, expire CPU ms), ...]
    for s in sizes:
        for _ in range(opts.repeats):
            for terms in (0, opts.terms):
                rows = flush_series(r, sha, opts, s, terms)
                print_series(s, rows, f"{'on' if terms else 'off':>6} ")
                runs.setdefault((s, terms), []).append(series_summary(rows))

    def med(s, terms, k):
        return median([x[k] for x in runs[(s, terms)]])

    fixed = {t: med(0, t, 1) if 0 in sizes else 0.0 for t in (0, opts.terms)}
    print(f"\nfixed cost of a flush with no segment: CPU {fixed[0]:.1f} ms off, "
          f"{fixed[opts.terms]:.1f} ms on ({opts.buckets} units)")
    print(f"medians over the {opts.repeats} repeats of the main thread's CPU; ratio on/off of "
          "those medians, [range of the ratios of each off run and the on run after it]")
    print(f"{'segments':>9} {'pairs':>8} {'steady ms off':>14} {'on':>8} {'ratio':>16} "
          f"{'us/pair off':>12} {'on':>8} {'ratio':>6} {'expire ms off':>14} {'on':>8} "
          f"{'ratio':>16} {'us/theme pane':>14} {'max seg off':>12} {'on':>8}")
    budget = opts.budget_ms
    for s in sizes:
        if s == 0:
            continue
        pairs = s * len(WINDOWS)
        off, on = runs[(s, 0)], runs[(s, opts.terms)]
        steady = [med(s, t, 1) for t in (0, opts.terms)]
        expire = [med(s, t, 2) for t in (0, opts.terms)]
        cpu_pair = [(steady[k] - fixed[t]) * 1000 / pairs for k, t in enumerate((0, opts.terms))]
        per_expired = (expire[0] - fixed[0]) * 1000 / (s * (len(WINDOWS) - 1))
        # What the sketches add to the expiry of one (segment, pane) of a
        # theme window: the expire flush's difference over those panes.
        theme_pane = (expire[1] - expire[0]) * 1000 / (s * len(THEME_WINDOWS))
        seg_max = []
        for k, t in enumerate((0, opts.terms)):
            per_segment = (len(WINDOWS) * cpu_pair[k] + EXPIRED_PER_SECOND * per_expired
                           + (THEME_EXPIRED_PER_SECOND * theme_pane if t else 0))
            seg_max.append((budget - fixed[t]) * 1000 / per_segment)
        steady_ratios = span([b[1] / a[1] for a, b in zip(off, on)], ".2f")
        expire_ratios = span([b[2] / a[2] for a, b in zip(off, on)], ".2f")
        print(f"{s:>9} {pairs:>8} {steady[0]:>14.1f} {steady[1]:>8.1f} "
              f"{f'{steady[1] / steady[0]:.2f} [{steady_ratios}]':>16} {cpu_pair[0]:>12.2f} "
              f"{cpu_pair[1]:>8.2f} {cpu_pair[1] / cpu_pair[0]:>6.2f} {expire[0]:>14.1f} "
              f"{expire[1]:>8.1f} {f'{expire[1] / expire[0]:.2f} [{expire_ratios}]':>16} "
              f"{theme_pane:>14.2f} {seg_max[0]:>12,.0f} {seg_max[1]:>8,.0f}")
    print(f"us/pair: net of the fixed cost, per (segment, window) pair, {len(WINDOWS)} a segment; "
          f"us/theme pane: what the sketches add to the expiry of one (segment, pane) of "
          f"{' or '.join(THEME_WINDOWS)} (3 classes); max seg: touched per 1 s flush with Redis's "
          f"main thread under {budget:.0f} ms of CPU per second")


# --floor: the write of the window hashes alone.
PASS_ON_LUA = """
local i, n = 1, #ARGV
while i <= n do
    local k = tonumber(ARGV[i + 1])
    redis.call('HSET', ARGV[i], unpack(ARGV, i + 2, i + 1 + 2 * k))
    i = i + 2 + 2 * k
end
return 1
"""


def changed_fields(i, stamp):
    """The fields flush.lua's steady round rewrites for segment i's window
    hashes (one event in bin i % 11 x 3, one in h10), with plausible values."""
    b = i % 11
    fields = {"updated_ms": str(stamp), f"h{b}": "6", "h10": "2", "responses": "8",
              "promoters": "2" if b < 9 else "8", "score_sum": str(6 * b + 20),
              "nps": "-50.0000", "moe95": "49.4975", "avg": "5.5000"}
    if b < 9:
        fields["passives" if b >= 7 else "detractors"] = "6"
    return fields


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def send_raw(port, payload, replies):
    """Send pre-encoded commands and wait for `replies` replies (each
    reply of these commands is one line)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)
        got, buf = 0, b""
        while got < replies:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("redis closed the connection")
            if b"-ERR" in chunk or b"-NOSCRIPT" in chunk:
                raise RuntimeError(chunk[:200].decode(errors="replace"))
            got += chunk.count(b"\r\n")
    return got


def cpu_of(r, action):
    c0 = main_thread_cpu_s(r)
    action()
    return main_thread_cpu_s(r) - c0


def floor_rounds(r, sha, opts):
    port = r.connection_pool.connection_kwargs["port"]
    lua_sha = r.script_load(PASS_ON_LUA)
    sizes = flush_sizes(opts, default=[10000])
    print(f"{'segments':>9} {'pairs':>8} {'script':>8} {'hset':>8} {'lua':>8} {'packed':>8}"
          "   (us of Redis main-thread CPU per (segment, window), medians)")
    for s in sizes:
        r.flushall()
        now = 1_800_000_000_000
        pairs = s * len(WINDOWS)
        r.evalsha(sha, 0, *unit_args(s, now, -1, 1000))
        script, hset, lua, packed = [], [], [], []
        for k in range(opts.repeats):
            t = now + 1000 * (k + 1)
            args = unit_args(s, t, 1000 * (k + 1), 1000 * (k + 2))
            script.append(cpu_of(r, lambda: r.evalsha(sha, 0, *args)))
            cmds, per_pair, pcmds = [], [], []
            for i in range(s):
                f = changed_fields(i, t)
                flat = [x for kv in f.items() for x in kv]
                for name, _ in WINDOWS:
                    key = f"nps:win:by_seg:seg=s{i}:{name}"
                    cmds.append(resp("HSET", key, *flat))
                    per_pair.append([key, len(f)] + flat)
                # packed: the same fields as one JSON object per window
                text = "{" + ",".join(f'"{n}":{v}' for n, v in f.items()) + "}"
                pcmds.append(resp("HSET", f"nps:seg:by_seg:seg=s{i}",
                                  *[x for name, _ in WINDOWS for x in (name, text)]))
            payload = b"".join(cmds)
            hset.append(cpu_of(r, lambda: send_raw(port, payload, pairs)))
            chunks = []  # scripts of 2,000 pairs, as a bucket unit holds a few thousand
            for first in range(0, len(per_pair), 2000):
                chunk = [a for pair in per_pair[first:first + 2000] for a in pair]
                chunks.append(resp("EVALSHA", lua_sha, 0, *chunk))
            lua_payload = b"".join(chunks)
            lua.append(cpu_of(r, lambda: send_raw(port, lua_payload, len(chunks))))
            ppayload = b"".join(pcmds)
            packed.append(cpu_of(r, lambda: send_raw(port, ppayload, s)))
        row = [median(x) * 1e6 / pairs for x in (script, hset, lua, packed)]
        print(f"{s:>9} {pairs:>8} " + " ".join(f"{v:>8.2f}" for v in row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, help="segments per unit (unit rounds)")
    parser.add_argument("--flush", action="store_true", help="whole flushes of bucket units")
    parser.add_argument("--floor", action="store_true",
                        help="the window hashes' write alone: script, HSET, packed")
    parser.add_argument("--full", action="store_true", help="with --flush: add 100k segments")
    parser.add_argument("--segments", help="with --flush: comma-separated segment counts")
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--flushes", type=int, default=3, help="steady flushes per size")
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--themes", action="store_true",
                        help="with --flush: themes off and on, in turn, on 24h and 7d")
    parser.add_argument("--terms", type=int, default=8, help="with --themes: terms per sketch")
    parser.add_argument("--repeats", type=int, default=3,
                        help="with --themes: off/on series per size; with --floor: rounds per size")
    opts = parser.parse_args()
    if opts.themes and not opts.flush:
        parser.error("--themes needs --flush")
    if not 1 <= opts.terms <= THEME_CAPACITY:
        parser.error(f"--terms must be 1 to {THEME_CAPACITY}")
    server, r = start_server()
    try:
        sha = r.script_load(SCRIPT)
        version = r.info("server")["redis_version"]
        print(f"redis {version}, loopback; Redis time from INFO commandstats and INFO cpu")
        if opts.floor:
            floor_rounds(r, sha, opts)
        elif opts.themes:
            themes_rounds(r, sha, opts)
        elif opts.flush:
            flush_rounds(r, sha, opts)
        else:
            unit_rounds(r, sha, opts.sizes or [1000, 10000, 100000])
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
