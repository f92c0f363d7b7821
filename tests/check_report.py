#!/usr/bin/env python3
"""Independent reference for `npstream run --format json`.

Reads the JSON lines the engine was fed, applies the event contract and the
window definition of DESIGN.md with Python's own json module, and compares
every (view, segment, window) count and the derived NPS fields with the
engine's report. Usage: check_report.py EVENTS REPORT NOW_MS VIEW_SPEC...
"""
import json
import math
import sys
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

WINDOWS = [("5m", 300000), ("1h", 3600000), ("24h", 86400000), ("7d", 604800000),
           ("30d", 2592000000)]
SKEW_MS = 300000


VALUE_MAX = Decimal(10) ** 12


def integral(value):
    """int for a JSON integer or an integral decimal (9.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def value_cents(value):
    """`value` in cents, exactly (half up past the cents); None: absent;
    ValueError: invalid (not a number, negative, past 1e12)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError
    v = Decimal(value)
    if not v.is_finite() or v > VALUE_MAX or (v < 0 and v != 0):
        raise ValueError
    cents = int((v * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if cents > 10 ** 14:
        raise ValueError
    return cents


def money(cents):
    return "%d.%02d" % (cents // 100, cents % 100)


def parse_ts(value):
    if isinstance(value, bool):
        raise ValueError
    if integral(value) is not None:
        return integral(value)
    if isinstance(value, str):
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    raise ValueError


def valid_event(line, now):
    try:
        ev = json.loads(line, parse_float=Decimal)
    except ValueError:
        return None, "invalid"
    if not isinstance(ev, dict):
        return None, "invalid"
    sent = ev.get("type") == "sent"
    score = integral(ev.get("score"))
    if not sent:
        if score is None or not 0 <= score <= 10:
            return None, "invalid"
        ev["score"] = score
    try:
        ts = parse_ts(ev["ts"]) if "ts" in ev and ev["ts"] is not None else now
        ev["_value"] = value_cents(ev.get("value"))
    except ValueError:
        return None, "invalid"
    if not isinstance(ev.get("id"), (str, int, Decimal, type(None))) or \
            isinstance(ev.get("id"), bool) or not isinstance(ev.get("comment"), (str, type(None))):
        return None, "invalid"
    if ts > now + SKEW_MS:
        return None, "future"
    ev["_ts"], ev["_sent"] = ts, sent
    return ev, "ok"


def segment(ev, dims):
    if not dims:
        return "*"
    parts = []
    for d in dims:
        v = ev.get(d)
        v = "" if v is None else str(int(v)) if isinstance(v, (int, Decimal)) else v
        parts.append("%s=%s" % (d, quote(v.encode(), safe="-._~")))
    return ",".join(parts)


def main():
    events_path, report_path, now = sys.argv[1], sys.argv[2], int(sys.argv[3])
    views = {"all": []}
    for spec in sys.argv[4:]:
        name, dims = spec.split("=", 1)
        views[name] = dims.split(",")
    report = json.load(open(report_path), parse_float=Decimal)
    expect = {}
    invalid = future = late_count = 0
    pane_30d = 2592000000 // 60
    for line in open(events_path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line:
            continue
        ev, verdict = valid_event(line, now)
        if verdict == "invalid":
            invalid += 1
            continue
        if verdict == "future":
            future += 1
            continue
        late = ev["_ts"] // pane_30d < now // pane_30d - 59
        late_count += late
        for view, dims in views.items():
            seg = segment(ev, dims)
            for wname, size in WINDOWS + [("total", 0)]:
                if size:
                    pane = size // 60
                    if late or ev["_ts"] // pane < now // pane - 59:
                        continue
                key = (view, seg, wname)
                counts = expect.setdefault(key, [0] * 15)
                counts[11 if ev["_sent"] else int(ev["score"])] += 1
                if not ev["_sent"] and ev["_value"]:
                    score = int(ev["score"])
                    counts[12 if score >= 9 else 13 if score >= 7 else 14] += ev["_value"]
    failures = 0
    seen = set()
    for view, segs in report["views"].items():
        for seg, windows in segs.items():
            for wname, got in windows.items():
                key = (view, seg, wname)
                seen.add(key)
                want = expect.get(key, [0] * 15)
                got_h = [got["h%d" % i] for i in range(11)] + [got["sent"]]
                got_v = [got.get(f) for f in ("value_promoters", "value_passives",
                                               "value_detractors")]
                want_v = [money(c) for c in want[12:]] if any(want[12:]) else [None] * 3
                got_v = [None if g is None else money(int(g * 100)) for g in got_v]
                if got_h != want[:12] or got_v != want_v:
                    failures += 1
                    print("MISMATCH %s: engine %s %s reference %s %s"
                          % (key, got_h, got_v, want[:12], want_v))
                    continue
                n = sum(want[:11])
                if n == 0:
                    if "nps" in got:
                        failures += 1
                        print("NPS present for an empty segment: %s" % (key,))
                    continue
                p = (want[9] + want[10]) / n
                d = sum(want[:7]) / n
                nps = 100 * (p - d)
                moe = 1.96 * 100 * math.sqrt(max(p + d - (p - d) ** 2, 0) / n)
                if abs(float(got["nps"]) - nps) > 1e-3 or abs(float(got["moe95"]) - moe) > 1e-3:
                    failures += 1
                    print("NPS/moe mismatch %s: engine %s/%s reference %s/%s"
                          % (key, got["nps"], got["moe95"], nps, moe))
    for key, want in expect.items():
        if key not in seen:
            failures += 1
            print("MISSING in the report: %s %s" % (key, want))
    stats = report["stats"]
    bad = sum(v for k, v in stats["invalid"].items() if k != "future")
    if bad != invalid or stats["invalid"]["future"] != future or stats["late"] != late_count:
        failures += 1
        print("counters: engine invalid=%d future=%d late=%d, reference %d %d %d"
              % (bad, stats["invalid"]["future"], stats["late"], invalid, future, late_count))
    print("check_report: %d (view, segment, window) entries compared, %d failures"
          % (len(seen), failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
