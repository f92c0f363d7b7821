#!/usr/bin/python3
"""engine/flush.lua's theme sketches past their capacity, against a real
redis-server, with units built by hand as engine/pipeline.c encodes them.

The pipeline tests keep gen's vocabulary within the sketch, so there the
theme sets are exact; here every (segment, class, pane) sees far more
distinct terms than the 16 a sketch holds, flush after flush, and the
test checks what must hold then:
  - each stored pane sketch (PREFIX:tpane:*) holds at most 16 terms, and
    they are the largest of (what it held + what arrived), ties to the
    smaller term: computed here independently for every flush;
  - every theme set equals the sum of its panes' sketches, also after
    panes leave the window;
  - a heavy term (in every comment) is never evicted from a pane, so the
    set counts it exactly;
  - the fence check answers `applied` to a unit sent again and `mismatch`
    to a stale one, writing nothing.
Usage: it_flush_themes.py [NPSTREAM_BINARY] (the binary is not used)."""
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import itlib  # noqa: E402
from itlib import Failure  # noqa: E402

SCRIPT = open(os.path.join(HERE, "..", "engine", "flush.lua")).read()
WINDOWS = [("5m", 300000, "w"), ("24h", 86400000, "h"), ("total", 0, "w")]
WINDOWS_ARG = ";".join("%s:%d:%d:%d:%s" % (n, s, s // 60, 60 if s else 0, k)
                       for n, s, k in WINDOWS)
ENTRY = struct.Struct("<Bq" + "q" * 15)
CAPACITY = 16
CLASSES = ["promoters", "passives", "detractors"]
PANE_MS = 86400000 // 60


def unit(now, fence, segments):
    """flush.lua's arguments for one unit moving partition 0's fence from
    `fence` (-1: none yet) to fence + 1; segments is {seg: {(pane, class):
    {term: count}}}."""
    args = ["it", "g", "t", "v#0", "v", "d", str(now), "it:%d" % fence, WINDOWS_ARG,
            "0:%d:%d" % (fence, fence + 1), "", "", "0", "0"]
    for seg, sketches in segments.items():
        data = b""
        for wi, (_, size, _) in enumerate(WINDOWS):
            h = [0] * 15
            h[5] = 1
            data += ENTRY.pack(wi, now // (size // 60) if size else 0, *h)
        for (pane, klass), terms in sketches.items():
            data += struct.pack("<BBqBBB", 255, 1, pane, klass, CAPACITY, len(terms))
            for term, count in terms.items():
                data += struct.pack("<IB", count, len(term)) + term.encode()
        args += ["s=%s" % seg, data]
    return args


def keep_largest(terms):
    ranked = sorted(terms.items(), key=lambda tc: (-tc[1], tc[0]))
    return dict(ranked[:CAPACITY])


def check(r, model, now):
    low = now // PANE_MS - 59
    for (seg, klass), panes in model.items():
        want = {}
        for pane, terms in panes.items():
            if pane < low:
                continue
            raw = r.hget("it:tpane:v#0:24h:%d" % pane, "s=%s\t%d" % (seg, klass))
            got = {}
            if raw:
                words = raw.decode().split(" ")
                got = {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}
            if got != terms:
                raise Failure("pane %d of %s/%s: %s, want %s" % (pane, seg, klass, got, terms))
            if "heavy" not in got:
                raise Failure("pane %d of %s/%s lost the term in every comment" % (pane, seg, klass))
            for term, count in terms.items():
                want[term] = want.get(term, 0) + count
        key = "it:themes:v:s=%s:24h:%s" % (seg, CLASSES[klass])
        have = {m.decode(): int(s) for m, s in r.zrange(key, 0, -1, withscores=True)}
        if have != want:
            raise Failure("%s: %d terms, want %d; first differences %s" % (
                key, len(have), len(want),
                sorted((t, have.get(t), want.get(t)) for t in set(have) | set(want)
                       if have.get(t) != want.get(t))[:5]))


def check_fences(r, sha, now):
    """The fence check: a unit sent again after it was applied (its reply
    lost) answers `applied`, one whose begin is not the stored fence
    answers `mismatch` with the stored fences, and neither writes."""
    stored = r.hget("it:offsets:g:t", "v#0:0")
    retry = r.evalsha(sha, 0, *unit(now, int(stored) - 1, {"a": {}}))
    stale = r.evalsha(sha, 0, *unit(now, 10, {"a": {}}))
    # the same check for quiet units, several in one call (ARGV[4] empty)
    at_end = "0:%d:%s" % (int(stored) - 1, stored.decode())
    quiet = r.evalsha(sha, 0, "it", "g", "t", "", "v#0", at_end, "v#0", "0:10:11")
    after = r.hget("it:offsets:g:t", "v#0:0")
    if quiet != [2, b"0:" + stored]:
        raise Failure("fences of quiet units: %s, want [2, 0:%s]" % (quiet, stored.decode()))
    if retry != [b"applied"] or stale != [b"mismatch", b"0:" + stored] or after != stored:
        raise Failure("fences: a retried unit gave %s (want applied), a stale one %s (want "
                      "mismatch 0:%s); the fence is now %s" % (retry, stale, stored.decode(), after))
    return ("a retried unit is `applied`, a stale one a `mismatch` naming fence %s, alone and "
            "among quiet units" % stored.decode())


def main():
    children = itlib.Children()
    work = itlib.Workdir()
    server = itlib.RedisServer(children, work.path)
    try:
        server.start()
        r = server.client
        sha = r.script_load(SCRIPT)
        rng = random.Random(7)
        vocabulary = ["term%03d" % i for i in range(300)]
        model = {}  # (segment, class) -> {pane: {term: count}} as stored
        now = 1763800000000
        flushes = 0
        for flush in range(40):
            now += 5 * 60 * 1000  # 5 minutes a flush: panes of 24 min fill and leave
            segments = {}
            for seg in ("a", "b"):
                for klass in range(3):
                    pane = now // PANE_MS
                    comments = rng.randint(5, 40)
                    delta = {"heavy": comments}
                    for _ in range(comments):
                        for term in rng.sample(vocabulary, 3):
                            delta[term] = delta.get(term, 0) + 1
                    delta = keep_largest(delta)  # the engine's sketch, within capacity
                    segments.setdefault(seg, {})[(pane, klass)] = delta
                    stored = model.setdefault((seg, klass), {}).setdefault(pane, {})
                    for term, count in delta.items():
                        stored[term] = stored.get(term, 0) + count
                    model[(seg, klass)][pane] = keep_largest(stored)
            reply = r.evalsha(sha, 0, *unit(now, flush - 1, segments))
            if reply[0] != b"ok":
                raise Failure("flush %d: %s" % (flush, reply))
            check(r, model, now)
            flushes += 1
        # then time passes with no comments until every pane has left
        expired = 0
        for k in range(1, 4):
            later = now + k * 12 * 3600 * 1000
            reply = r.evalsha(sha, 0, *unit(later, 39 + k - 1, {}))
            expired += reply[2]
            check(r, model, later)
        left = list(r.scan_iter(match="it:themes:*")) + list(r.scan_iter(match="it:tpane:*"))
        if left:
            raise Failure("after every pane left the window, keys remain: %s" % left[:5])
        fences = check_fences(r, sha, later)
        sizes = sorted(len(t) for panes in model.values() for t in panes.values())
        print("it_flush_themes: %d flushes of 2 segments x 3 classes with 300-term "
              "vocabularies: every stored pane sketch holds its %d largest terms (sizes %d-%d), "
              "every theme set equals the sum of its panes after each flush, and all %d panes "
              "left with nothing behind; %s" % (flushes, CAPACITY, sizes[0], sizes[-1], expired, fences))
    except Failure as f:
        print("FAIL it_flush_themes: %s" % f)
        sys.exit(1)
    finally:
        children.kill_all()
        work.remove()


if __name__ == "__main__":
    main()
