#!/usr/bin/env bash
# `npstream broker` and `npstream gen --brokers` as a user runs them: the
# embedded broker speaks real Kafka (kcat produces and consumes against
# it), gen delivers every event exactly once, keyed by response id and
# spread over the partitions, paces to --rate, and both fail clearly.
set -euo pipefail
NPSTREAM=$1
WORK=$(mktemp -d)
BROKER_PID=
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "cli_broker_gen: FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }

# The broker prints its address on stdout once it listens. (The files exist
# before it starts: the shell creates them asynchronously for a background
# job, and reading a missing one would end the test under set -e.)
: > "$WORK/broker.out"
: > "$WORK/broker.err"
"$NPSTREAM" broker --partitions 8 --topic t1 > "$WORK/broker.out" 2> "$WORK/broker.err" &
BROKER_PID=$!
B=
for _ in $(seq 100); do
    B=$(sed -n 's/^bootstrap=//p' "$WORK/broker.out")
    [ -n "$B" ] && break
    kill -0 "$BROKER_PID" 2>/dev/null || fail "broker exited: $(cat "$WORK/broker.err")"
    sleep 0.1
done
[ -n "$B" ] || fail "no bootstrap line from the broker within 10 s"
[[ $B =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "bootstrap '$B' is not 127.0.0.1:PORT"
if command -v ss > /dev/null; then
    ss -ltn | grep -q " 127.0.0.1:${B#*:} " || fail "broker does not listen on 127.0.0.1:${B#*:}"
fi

# 20000 events, 5% invalid, all delivered.
"$NPSTREAM" gen --brokers "$B" --topic t1 --count 20000 --seed 7 --invalid-share 0.05 \
    2> "$WORK/gen.err" || fail "gen exited $?: $(cat "$WORK/gen.err")"
grep -q "20000 delivered to t1" "$WORK/gen.err" || fail "no summary: $(cat "$WORK/gen.err")"
timeout 60 kcat -C -b "$B" -t t1 -e -q -f '%k\t%p\t%s\n' > "$WORK/t1.tsv" ||
    fail "kcat could not consume t1"
[ "$(wc -l < "$WORK/t1.tsv")" -eq 20000 ] || fail "consumed $(wc -l < "$WORK/t1.tsv") messages, not 20000"
[ "$(cut -f2 "$WORK/t1.tsv" | sort -u | wc -l)" -eq 8 ] || fail "not all 8 partitions got messages"
# Every message, invalid ones included, is keyed by its generator serial
# (r-SEED-SERIAL): the keys are exactly r-7-0 .. r-7-19999, once each.
cut -f1 "$WORK/t1.tsv" | sort > "$WORK/keys"
seq 0 19999 | sed 's/^/r-7-/' | sort > "$WORK/expected_keys"
cmp -s "$WORK/keys" "$WORK/expected_keys" || fail "keys are not r-7-0 .. r-7-19999, each once"
# A valid event's id is its key; the ~5% invalid ones carry no such id.
awk -F'\t' 'index($3, "\"id\":\"" $1 "\"") { valid++ } END { print valid + 0 }' "$WORK/t1.tsv" \
    > "$WORK/valid"
invalid=$((20000 - $(cat "$WORK/valid")))
[ "$invalid" -ge 700 ] && [ "$invalid" -le 1300 ] || fail "$invalid invalid messages, expected ~1000"

# --rate paces: 2000 events at 1000/s take about 2 s.
start=$(now_ms)
"$NPSTREAM" gen --brokers "$B" --topic rated --count 2000 --rate 1000 2> "$WORK/rate.err" ||
    fail "rate-limited gen failed: $(cat "$WORK/rate.err")"
elapsed=$(($(now_ms) - start))
[ "$elapsed" -ge 1500 ] || fail "--count 2000 --rate 1000 took $elapsed ms, expected ~2000"
[ "$elapsed" -le 15000 ] || fail "--count 2000 --rate 1000 took $elapsed ms, far over 2000"

# A plain Kafka client round trip (the topic is auto-created).
printf 'k1:v1\nk2:v2\nk3:v3\n' | timeout 30 kcat -P -b "$B" -t outside -K: ||
    fail "kcat could not produce"
got=$(timeout 30 kcat -C -b "$B" -t outside -e -q -f '%k=%s\n' | sort | tr '\n' ' ')
[ "$got" = "k1=v1 k2=v2 k3=v3 " ] || fail "kcat round trip gave '$got'"

# Errors are clear. An unreachable broker fails after the producer's
# message.timeout.ms (10 s in kafka_gen.c), not librdkafka's default 5 min.
set +e
out=$("$NPSTREAM" broker --partitions 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "partitions" <<<"$out" || fail "broker --partitions 0: rc=$rc $out"
start=$(now_ms)
out=$(timeout 60 "$NPSTREAM" gen --brokers 127.0.0.1:1 --count 10 2>&1); rc=$?
elapsed=$(($(now_ms) - start))
[ $rc -eq 1 ] || fail "gen to an unreachable broker: rc=$rc $out"
grep -q "10 failed" <<<"$out" && grep -q "Connection refused" <<<"$out" ||
    fail "gen to an unreachable broker, unclear message: $out"
[ "$elapsed" -le 30000 ] || fail "gen to an unreachable broker took $elapsed ms"
out=$("$NPSTREAM" gen --brokers "$B" --topic 'bad topic' --count 10 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "invalid topic name" <<<"$out" || fail "bad topic: rc=$rc $out"
set -e

# SIGINT stops the broker cleanly.
kill -INT "$BROKER_PID"
rc=0
wait "$BROKER_PID" || rc=$?
BROKER_PID=
[ $rc -eq 0 ] || fail "broker exited $rc on SIGINT: $(cat "$WORK/broker.err")"
echo "cli_broker_gen: passed"
