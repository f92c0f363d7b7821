#!/usr/bin/python3
"""bench/detractor_xadd.py: Redis time per detractor entry, by how a script gets it.

    bench/detractor_xadd.py [--entries N] [--calls K] [--rounds R]

Starts its own redis-server (loopback, free port, no persistence) and
appends N entries of 11 fields (id, score, ts, four dimensions, value,
comment, partition, offset: the shape bench/e2e's detractors have) to a
stream with XADD MAXLEN ~, K calls of N entries each, in four ways:

  pairs     one script, every field name and value its own argument (the
            flush.lua of commit f77858b);
  blob      engine/flush.lua, a unit with only detractor arguments: the
            field names once and the entries in one binary argument, each
            value "<I4c0", decoded with struct.unpack (section 6);
  constant  one script, XADD with constant arguments: the floor of one
            redis.call per entry;
  client    XADD sent by the client, pipelined, no script (no fence could
            guard it; for scale).

For each: Redis's main-thread CPU (INFO cpu, before and after) and the
script's own time (INFO commandstats, EVALSHA usec) per entry. R rounds,
alternating. Needs Debian's /usr/bin/python3 with python3-redis.
"""
import argparse
import os
import random
import struct

from redis_cost import start_server  # the same loopback redis-server (python3-redis)

NAMES = ["id", "score", "ts", "survey", "channel", "region", "age_band", "value", "comment",
         "partition", "offset"]

PAIRS = """
local i, n = 2, 0
while i <= #ARGV do
    local nf = tonumber(ARGV[i])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 1, i + 2 * nf))
    i = i + 1 + 2 * nf
    n = n + 1
end
return n
"""

# The blob way is engine/flush.lua itself: a unit with no fence and no
# segment, only section 6's detractor arguments, so this measures what the
# engine runs. Its stream is PREFIX:detractors.
FLUSH_LUA = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine",
                              "flush.lua")).read()
UNIT_HEAD = [b"b", b"g", b"t", b"all#0", b"all", b"", b"1763800000000", b"bench:1",
             b"total:0:0:0:w", b"", b"", b""]  # ARGV[1..12]; then MAXLEN, D, ...

CONSTANT = """
for i = 1, tonumber(ARGV[2]) do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'id', 'r-1', 'score', '3', 'ts',
               '1763800000000', 'survey', 'checkout', 'channel', 'email', 'region', 'R01',
               'age_band', '25-34', 'value', '12.30', 'comment', 'slow delivery and rude courier',
               'partition', '7', 'offset', tostring(i))
end
return 0
"""


def entries(n, seed=1):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append([b"r-%08x" % rnd.getrandbits(32), b"%d" % rnd.randint(0, 6),
                    b"%d" % (1763800000000 + i), b"checkout", b"email",
                    b"R%02d" % rnd.randint(0, 20), b"25-34",
                    b"%d.%02d" % (rnd.randint(0, 5000), rnd.randint(0, 99)),
                    b"slow delivery and rude courier", b"%d" % rnd.randint(0, 63), b"%d" % (i * 7)])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=20000, help="entries per call (20,000)")
    ap.add_argument("--calls", type=int, default=5, help="calls per measurement (5)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements of each way (3)")
    args = ap.parse_args()
    server, r = start_server()
    try:
        data = entries(args.entries)
        names = ",".join(n + "?" if n in ("value", "comment") else n for n in NAMES).encode()
        pairs_args = [a for e in data for a in
                      [b"11"] + [x for name, v in zip(NAMES, e) for x in (name.encode(), v)]]
        blob_args = [names, b"".join(struct.pack("<I", len(v)) + v for e in data for v in e)]
        ways = {"pairs": (PAIRS, pairs_args), "blob": (FLUSH_LUA, blob_args),
                "constant": (CONSTANT, [str(args.entries).encode()]), "client": (None, None)}
        n = args.entries * args.calls
        print("redis %s; %d entries of %d fields per call, %d calls per measurement"
              % (r.info("server")["redis_version"], args.entries, len(NAMES), args.calls))
        print("%-9s %10s %22s %22s %16s" % ("way", "arguments", "main thread us/entry",
                                            "EVALSHA us/entry", "XADD us/call"))
        for _ in range(args.rounds):
            for way, (script, argv) in ways.items():
                r.delete("d", "b:detractors")
                r.config_resetstat()
                cpu = r.info("cpu")
                before = cpu["used_cpu_sys_main_thread"] + cpu["used_cpu_user_main_thread"]
                if script:
                    sha = r.script_load(script)
                    for _ in range(args.calls):
                        if script is FLUSH_LUA:
                            r.evalsha(sha, 0, *UNIT_HEAD, b"100000", b"%d" % len(argv), *argv)
                        else:
                            r.evalsha(sha, 1, "d", "100000", *argv)
                else:
                    for _ in range(args.calls):
                        pipe = r.pipeline(transaction=False)
                        for e in data:
                            pipe.execute_command("XADD", "d", "MAXLEN", "~", "100000", "*", *[
                                x for name, v in zip(NAMES, e) for x in (name, v)])
                        pipe.execute()
                cpu = r.info("cpu")
                used = cpu["used_cpu_sys_main_thread"] + cpu["used_cpu_user_main_thread"] - before
                stats = r.info("commandstats")
                evalsha = stats.get("cmdstat_evalsha", {}).get("usec")
                xadd = stats.get("cmdstat_xadd", {})
                print("%-9s %10s %22.2f %22s %16.2f"
                      % (way, "-" if not argv else len(UNIT_HEAD) + 2 + len(argv)
                         if script is FLUSH_LUA else len(argv) + 5, used * 1e6 / n,
                         "%.2f" % (evalsha / n) if evalsha else "-",
                         xadd.get("usec", 0) / max(xadd.get("calls", 1), 1)))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
