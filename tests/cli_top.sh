#!/usr/bin/env bash
# `npstream top` against its own redis-server holding hand-written rollups
# (DESIGN.md "Redis contract"): figures, order, decoding, --view, --window,
# and the errors a user meets (nothing published, Redis down, odd keys).
set -euo pipefail
NPSTREAM=$1
WORK=$(mktemp -d)
REDIS_PID=
cleanup() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "cli_top: FAIL: $*"; exit 1; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
    [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] || fail "redis-server did not start"
REDIS=127.0.0.1:$PORT

# Fixture: segment window promoters passives detractors sent, written as the
# engine writes it (nps and moe95 from the counts, absent when n = 0).
# Sorted by total: in app (500), email (300), sms (200); by 5m and 1h,
# email comes first, so the order shows which window sorts.
python3 - "$(($(date +%s) * 1000 - 800))" > "$WORK/fixture.redis" <<'PY'
import math, sys
updated_ms = sys.argv[1]
rows = [
    ("all", "*", "5m", 25, 10, 15, 0), ("all", "*", "1h", 95, 50, 55, 0),
    ("all", "*", "total", 400, 300, 300, 0),
    ("by_channel", "channel=email", "5m", 20, 5, 5, 0),
    ("by_channel", "channel=email", "1h", 50, 25, 15, 180),
    ("by_channel", "channel=email", "total", 150, 90, 60, 0),
    ("by_channel", "channel=in%20app", "5m", 5, 5, 10, 0),
    ("by_channel", "channel=in%20app", "1h", 30, 20, 20, 0),
    ("by_channel", "channel=in%20app", "total", 200, 150, 150, 0),
    ("by_channel", "channel=sms", "5m", 0, 0, 0, 0),
    ("by_channel", "channel=sms", "1h", 15, 5, 20, 0),
    ("by_channel", "channel=sms", "total", 50, 60, 90, 0),
]
print('HSET nps:views all "" by_channel channel')
print("HSET nps:windows total 0 1h 3600000 5m 300000")
for view, segment, window, p, pa, d, sent in rows:
    n = p + pa + d
    fields = {"responses": n, "promoters": p, "passives": pa, "detractors": d,
              "score_sum": 9 * p + 7 * pa + 3 * d, "h9": p, "h7": pa, "h3": d,
              "sent": sent, "updated_ms": updated_ms}
    if n:
        ps, ds = p / n, d / n
        fields["nps"] = repr(100 * (p - d) / n)
        fields["moe95"] = repr(1.96 * 100 * math.sqrt((ps + ds - (ps - ds) ** 2) / n))
    print("SADD nps:segments:%s %s" % (view, segment))
    print("HSET nps:win:%s:%s:%s %s" % (view, segment, window,
          " ".join("%s %s" % kv for kv in fields.items())))
PY
redis-cli -p "$PORT" < "$WORK/fixture.redis" > /dev/null

top() { "$NPSTREAM" top --redis "$REDIS" --interval-ms 0 "$@"; }
# The lines of one view's table, from its title to the blank line after.
section() { awk -v title="view $1 " 'index($0, title) == 1 {on = 1} on && /^$/ {exit} on'; }
# The data rows of a section: after the title and the two header lines.
segments() { tail -n +4 | sed -E 's/ {3}.*//'; }

out=$(top) || fail "top exited $?: $out"
all=$(section all <<<"$out")
by_channel=$(section by_channel <<<"$out")
grep -q "^view all (no dimensions): 1 segment$" <<<"$all" || fail "all title: $all"
grep -q "^view by_channel (channel): 3 segments$" <<<"$by_channel" || fail "title: $by_channel"
grep -Eq "^ +5m +1h +total" <<<"$by_channel" || fail "window order: $by_channel"
# NPS and moe95 by hand, e.g. email total: p .5, d .2, n 300: NPS 30.0,
# 1.96 * 100 * sqrt((.7 - .09) / 300) = 8.838.
row() { grep -E "^$1 " <<<"$by_channel" || fail "no row '$1': $by_channel"; }
grep -Eq '^\* +\+20\.0 ±24\.2 +50 +25/10/15 +\+20\.0 ±11\.7 +200 +95/50/55 +\+10\.0 ±5\.1 +1000 +400/300/300$' \
    <<<"$all" || fail "all row: $all"
grep -Eq '^channel=email +\+50\.0 ±27\.3 +30 +20/5/5 +\+38\.9 ±15\.6 +90 +50/25/15 +\+30\.0 ±8\.8 +300 +150/90/60$' \
    <<<"$(row channel=email)" || fail "email row: $(row channel=email)"
grep -Eq '^channel=in app +-25\.0 ±36\.3 +20 +5/5/10 +\+14\.3 ±19\.5 +70 +30/20/20 +\+10\.0 ±7\.3 +500 ' \
    <<<"$(row 'channel=in app')" || fail "in app row (decoded): $(row 'channel=in app')"
grep -Eq '^channel=sms +- +0 +0/0/0 +-12\.5 ±28\.7 +40 +15/5/20 +-20\.0 ±11\.3 +200 ' \
    <<<"$(row channel=sms)" || fail "sms row (no 5m responses): $(row channel=sms)"
grep -q "in%20app" <<<"$out" && fail "segment not decoded: $out"
order=$(segments <<<"$by_channel" | tr '\n' '|')
[ "$order" = "channel=in app|channel=email|channel=sms|" ] || fail "order by total responses: $order"
grep -q "^npstream top   Redis $REDIS   prefix nps   .*updated [0-9.]* s ago" <<<"$out" ||
    fail "status line: $out"

# --view restricts to one view, also when given as a run-style NAME=DIMS.
for view in by_channel by_channel=channel; do
    out=$(top --view "$view") || fail "--view $view exited $?"
    grep -q "^view all" <<<"$out" && fail "--view $view shows all: $out"
    grep -q "^view by_channel" <<<"$out" || fail "--view $view: $out"
done

# --window 1h: only that window, in detail, sorted by its responses.
out=$(top --view by_channel --window 1h) || fail "--window 1h exited $?"
grep -Eq "5m|total" <<<"$out" && fail "--window 1h shows other windows: $out"
grep -Eq "^ +1h$" <<<"$out" || fail "--window 1h header: $out"
grep -Eq "NPS +±moe95 +n +promoters +passives +detractors +%P +%D +avg +sent +resp rate" \
    <<<"$out" || fail "--window 1h columns: $out"
grep -Eq '^channel=email +\+38\.9 +±15\.6 +90 +50 +25 +15 +55\.6% +16\.7% +7\.44 +180 +50\.0%$' \
    <<<"$out" || fail "--window 1h email: $out"
order=$(section by_channel <<<"$out" | segments | tr '\n' '|')
[ "$order" = "channel=email|channel=in app|channel=sms|" ] || fail "order by 1h responses: $order"

# Errors: clear, exit 1 (Redis side) or 2 (usage).
set +e
out=$(top --prefix nope 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "nothing published yet in Redis $REDIS under prefix 'nope' (no key nope:views)" \
    <<<"$out" || fail "missing prefix: rc=$rc $out"
out=$("$NPSTREAM" top --redis 127.0.0.1:1 --interval-ms 0 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "Redis 127.0.0.1:1 unreachable: " <<<"$out" ||
    fail "unreachable Redis: rc=$rc $out"
out=$(top --view nosuch 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "view 'nosuch' is not published (nps:views has " <<<"$out" ||
    fail "unknown view: rc=$rc $out"
out=$(top --window 2h 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "window '2h' is not published" <<<"$out" || fail "unknown window: rc=$rc $out"
out=$("$NPSTREAM" top --redis nocolon:x --interval-ms 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "expected HOST:PORT" <<<"$out" || fail "bad --redis: rc=$rc $out"
set -e

# Keys that break the contract neither crash top nor reach the terminal raw.
redis-cli -p "$PORT" > /dev/null <<'REDIS'
SET broken:views oops
HSET odd:views all ""
HSET odd:windows total 0
SADD odd:segments:all * x=%1B%5B31m
SET odd:win:all:*:total oops
HSET odd:win:all:x=%1B%5B31m:total responses many
REDIS
set +e
out=$(top --prefix broken 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "reading broken:views: WRONGTYPE" <<<"$out" || fail "wrong type: rc=$rc $out"
set -e
out=$(top --prefix odd) || fail "odd keys: exit $?: $out"
grep -Eq '^\* +\? ' <<<"$out" || fail "wrong-type window hash not shown as '?': $out"
grep -Eq '^x=%1B\[31m +\? ' <<<"$out" || fail "control byte decoded: $out"
grep -q $'\x1b' <<<"$out" && fail "an escape byte reached the output: $out"

# Live mode redraws until SIGTERM, and waits through a Redis that is down.
"$NPSTREAM" top --redis "$REDIS" --interval-ms 100 > "$WORK/live.out" 2>&1 &
live=$!
"$NPSTREAM" top --redis 127.0.0.1:1 --interval-ms 100 > "$WORK/down.out" 2>&1 &
down=$!
sleep 1
kill -0 "$down" 2>/dev/null || fail "live top exited while Redis was down: $(cat "$WORK/down.out")"
kill -TERM "$live" "$down"
wait "$live" || fail "live top exited $? on SIGTERM"
wait "$down" || fail "live top (Redis down) exited $? on SIGTERM"
[ "$(grep -c "view by_channel" "$WORK/live.out")" -ge 2 ] || fail "live top did not redraw"
grep -q $'\x1b\\[H' "$WORK/live.out" || fail "live top does not home the cursor"
grep -q "Redis 127.0.0.1:1 unreachable: .*; retrying every 100 ms" "$WORK/down.out" ||
    fail "live top (Redis down): $(cat "$WORK/down.out")"
echo "cli_top: passed"
