#!/usr/bin/env bash
# `npstream gen | npstream run` as a user runs it, checked against an
# independent Python reference (tests/check_report.py), plus the CLI's
# errors and help.
set -euo pipefail
NPSTREAM=$1
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
NOW=1763800000000
VIEWS=(by_survey=survey by_channel=channel by_region=region by_survey_age=survey,age_band)
fail() { echo "cli_run: FAIL: $*"; exit 1; }

"$NPSTREAM" gen --count 30000 --seed 7 --now $NOW --invalid-share 0.03 --output "$WORK/events.jsonl"
[ "$(wc -l < "$WORK/events.jsonl")" -eq 30000 ] || fail "gen did not write 30000 lines"
# Tricky valid events: escapes, integer and null dimensions, RFC 3339, 9.0,
# unknown nested fields, late (40 days old) and future (beyond the skew).
cat >> "$WORK/events.jsonl" <<'JSON'
{"score":9.0,"survey":"check\u006fut","channel":"e\"mail","region":7,"age_band":null,"ts":"2025-11-22T08:20:00.500Z"}
{"extra":{"a":[1,2,{"b":null}]},"ts":1763799990000,"channel":"sms","score":0,"survey":"app"}
{"score":10,"survey":"app","ts":1760344000000}
{"score":10,"survey":"app","ts":1763800900000}
{"score":10,"survey":"app","ts":1763800000000,"type":"sent"}
{"score":3,"survey":"app","channel":"sms","value":1.005,"ts":1763799990000}
{"score":9,"survey":"app","channel":"sms","value":2e3,"ts":1763799990000}
{"score":9,"survey":"app","channel":"sms","value":-1,"ts":1763799990000}
{"score":9,"survey":"app","channel":"sms","value":"12","ts":1763799990000}

{"score":9.5}
JSON
INPUT="$WORK/events.jsonl"
view_flags=(); for v in "${VIEWS[@]}"; do view_flags+=(--view "$v"); done
"$NPSTREAM" run --input "$INPUT" --now $NOW --format json "${view_flags[@]}" > "$WORK/report.json"
python3 "$HERE/check_report.py" "$INPUT" "$WORK/report.json" $NOW "${VIEWS[@]}"

# gen's options for the insight features: re-sent duplicates (same line,
# same id), a segment whose last 5 minutes are detractors, comments that
# match the score class, and the share of invitations.
"$NPSTREAM" gen --count 20000 --seed 9 --now $NOW --duplicate-share 0.1 --drop channel=sms \
    --sent-share 0.5 --output "$WORK/insights.jsonl"
python3 - "$WORK/insights.jsonl" $NOW <<'PY' || fail "gen insight options: see above"
import collections, json, sys
now = int(sys.argv[2])
lines = open(sys.argv[1]).read().splitlines()
events = [json.loads(l) for l in lines]
ids = collections.Counter(e["id"] for e in events)
dup_lines = len(lines) - len(set(lines))
assert 1500 < dup_lines < 2500 and len(lines) - len(ids) == dup_lines, (dup_lines, len(ids))
responses = [e for e in events if e["type"] == "response"]
sent = len(events) - len(responses)
assert 0.4 < sent / len(events) < 0.6, sent
recent_sms = [e for e in responses if e["channel"] == "sms" and e["ts"] > now - 300000]
older_sms = [e for e in responses if e["channel"] == "sms" and e["ts"] <= now - 300000]
assert recent_sms and all(e["score"] <= 6 for e in recent_sms), recent_sms[:3]
assert sum(e["score"] >= 9 for e in older_sms) > 0
by_class = collections.defaultdict(set)
for e in responses:
    by_class[0 if e["score"] >= 9 else 1 if e["score"] >= 7 else 2].add(e["comment"])
assert not (by_class[0] & by_class[2]), by_class
print("gen: %d duplicate lines, %d invitations, %d recent sms all detractors"
      % (dup_lines, sent, len(recent_sms)))
PY
out=$("$NPSTREAM" gen --drop nodim --count 1 2>&1) && fail "gen --drop nodim succeeded"
grep -q "DIM=VALUE" <<<"$out" || fail "gen --drop nodim: unclear message: $out"

# The same through stdin, settings from the environment and a config file.
printf 'view = by_channel=channel\nformat = json\n' > "$WORK/npstream.ini"
NPSTREAM_NOW=$NOW "$NPSTREAM" run --config "$WORK/npstream.ini" < "$INPUT" > "$WORK/report2.json"
python3 "$HERE/check_report.py" "$INPUT" "$WORK/report2.json" $NOW by_channel=channel

# Errors are clear and exit 2.
set +e
out=$("$NPSTREAM" run --view nodims 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "expected NAME=DIM" <<<"$out" || fail "bad --view: rc=$rc $out"
out=$("$NPSTREAM" run --windows 5m,7x 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "window '7x'" <<<"$out" || fail "bad --windows: rc=$rc $out"
out=$("$NPSTREAM" run --max-segments 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "max-segments" <<<"$out" || fail "bad --max-segments: rc=$rc $out"
out=$("$NPSTREAM" run --fetch-wait-ms 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "fetch-wait-ms (from --fetch-wait-ms): expected an integer in 1..60000" \
    <<<"$out" || fail "bad --fetch-wait-ms: rc=$rc $out"
out=$(NPSTREAM_MAX_SKEW=soon "$NPSTREAM" run 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "NPSTREAM_MAX_SKEW" <<<"$out" || fail "bad env: rc=$rc $out"
out=$("$NPSTREAM" run --bogus 1 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "unknown option '--bogus'" <<<"$out" || fail "unknown flag: rc=$rc $out"
out=$("$NPSTREAM" run --view by_channel=channel --themes-views by_chanel 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "themes-views: 'by_chanel' is not a view (the views: all,by_channel" \
    <<<"$out" || fail "unknown view in --themes-views: rc=$rc $out"
out=$(NPSTREAM_TRENDS_VIEWS=all,nope "$NPSTREAM" run 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "trends-views: 'nope'" <<<"$out" || fail "bad NPSTREAM_TRENDS_VIEWS: rc=$rc $out"
out=$("$NPSTREAM" demo --alerts-views by_region,x 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "alerts-views: 'x' is not a view (the views: all,by_channel,by_region" \
    <<<"$out" || fail "demo: unknown view in --alerts-views: rc=$rc $out"
out=$("$NPSTREAM" run --input /nonexistent 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "/nonexistent" <<<"$out" || fail "missing input: rc=$rc $out"
set -e

# Every option in --help is documented in README.md.
README="$HERE/../README.md"
for flag in $("$NPSTREAM" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    [ "$flag" = --help ] && continue
    grep -q -- "$flag" "$README" || fail "README.md does not document $flag"
done
echo "cli_run: passed"
