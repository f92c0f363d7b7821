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
"""
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


def unit_args(segments, now, fence_begin, fence_end):
    args = ["nps", "bench", "t", "by_seg", "by_seg", "seg", str(now), "bench:1", WINDOWS_ARG,
            f"0:{fence_begin}:{fence_end}", "", "", "0", "0"]  # no alerts, benchmarks, detractors
    for i in range(segments):
        data = b""
        for wi, (_, size) in enumerate(WINDOWS):
            pane = now // (size // 60) if size else 0
            h = [0] * NF
            h[i % 11] = 3
            h[10] += 1
            data += ENTRY.pack(wi, pane, *h)
        args += [f"seg=s{i}", data]
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


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 100000]
    port = free_port()
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", tmp],
                              stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        sha = r.script_load(SCRIPT)
        version = r.info("server")["redis_version"]
        print(f"redis {version}, loopback; Redis time of one unit (INFO commandstats)")
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
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
