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
Usage: bench/redis_cost.py --flush [--full] [--segments S,S,...]
       [--buckets B] [--partitions P] [--flushes F] [--budget-ms MS]
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
WINDOWS_ARG = ";".join(f"{n}:{s}:{s // 60}:{60 if s else 0}:w" for n, s in WINDOWS)
NF = 15  # h0..h10, sent, value cents of promoters, passives, detractors
ENTRY = struct.Struct("<Bq" + "q" * NF)


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

    def __init__(self, r, sha, buckets, partitions):
        self.r, self.sha, self.buckets, self.partitions = r, sha, buckets, partitions
        self.fence = -1
        self.seq = 0

    def send(self, segments, now):
        """One flush of `segments` at `now`; returns (script usec, main-thread CPU s, wall s)."""
        self.seq += 1
        end = self.fence + 1000 if self.fence >= 0 else 1000
        fences = ";".join(f"{p}:{self.fence}:{end}" for p in range(self.partitions))
        units = [["nps", "bench", "t", f"by_seg#{b}", "by_seg", "seg", str(now),
                  f"bench:{self.seq}", WINDOWS_ARG, fences, "", "", "0", "0"]
                 for b in range(self.buckets)]
        for i in range(segments):
            units[i % self.buckets] += [f"seg=s{i}", segment_entries(i, now)]
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


def flush_rounds(r, sha, opts):
    sizes = [int(x) for x in opts.segments.split(",")] if opts.segments else (
        [0, 1000, 10000, 100000] if opts.full else [0, 1000, 10000])
    print(f"one view, {opts.buckets} units per flush, fences of {opts.partitions} partitions "
          f"per unit, {len(WINDOWS)} windows; Redis time per flush")
    print(f"{'segments':>9} {'flush':>7} {'pairs':>8} {'script ms':>10} {'cpu ms':>8} "
          f"{'us/pair':>8} {'wall ms':>8}")
    per_size = {}  # segments -> (steady script ms, steady CPU ms, expire CPU ms)
    for s in sizes:
        r.flushall()
        flusher = Flusher(r, sha, opts.buckets, opts.partitions)
        now = 1_800_000_000_000
        pairs = s * len(WINDOWS)
        rows = [("new", *flusher.send(s, now))]
        for f in range(opts.flushes):
            rows.append(("steady", *flusher.send(s, now + 1000 * (f + 1))))
        later = now + 31 * 86400000
        rows.append(("expire", *flusher.send(0, later)))
        for name, usec, cpu, wall in rows:
            n = pairs if name != "expire" else s * (len(WINDOWS) - 1)
            per = f"{usec / n:>8.2f}" if n else f"{'-':>8}"
            print(f"{s:>9} {name:>7} {n:>8} {usec / 1000:>10.1f} {cpu * 1000:>8.1f} {per} "
                  f"{wall * 1000:>8.1f}")
        per_size[s] = (median([u / 1000 for name, u, _, _ in rows if name == "steady"]),
                       median([c * 1000 for name, _, c, _ in rows if name == "steady"]),
                       rows[-1][2] * 1000)
        sys.stdout.flush()
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, help="segments per unit (unit rounds)")
    parser.add_argument("--flush", action="store_true", help="whole flushes of bucket units")
    parser.add_argument("--full", action="store_true", help="with --flush: add 100k segments")
    parser.add_argument("--segments", help="with --flush: comma-separated segment counts")
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--flushes", type=int, default=3, help="steady flushes per size")
    parser.add_argument("--budget-ms", type=float, default=100.0)
    opts = parser.parse_args()
    server, r = start_server()
    try:
        sha = r.script_load(SCRIPT)
        version = r.info("server")["redis_version"]
        print(f"redis {version}, loopback; Redis time from INFO commandstats and INFO cpu")
        if opts.flush:
            flush_rounds(r, sha, opts)
        else:
            unit_rounds(r, sha, opts.sizes or [1000, 10000, 100000])
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
