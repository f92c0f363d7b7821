/*
 * Tests of engine/timestamp.c: RFC 3339 date-times against epoch values
 * computed here independently (a naive year/month/day count), the civil
 * day count against a day-by-day walk, and duration strings.
 *
 * Each RFC 3339 text is parsed from a heap copy of exactly its length, so
 * that AddressSanitizer catches a read past its end.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timestamp.h"

static bool leap(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int month_length(int64_t year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[month - 1] + (month == 2 && leap(year));
}

/* Days since 1970-01-01 by counting whole years and months: slow, plain. */
static int64_t naive_days(int64_t year, int month, int day)
{
    int64_t days = 0;
    for (int64_t y = 1970; y < year; y++)
        days += leap(y) ? 366 : 365;
    for (int64_t y = year; y < 1970; y++)
        days -= leap(y) ? 366 : 365;
    for (int m = 1; m < month; m++)
        days += month_length(year, m);
    return days + day - 1;
}

static int64_t naive_ms(int64_t year, int month, int day, int hour, int minute, int second,
                        int millis)
{
    return ((naive_days(year, month, day) * 24 + hour) * 60 + minute) * 60000 + second * 1000 +
           millis;
}

static bool parse(const char *text, int64_t *ts_ms)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, text, len);
    *ts_ms = INT64_MIN; /* a sentinel no valid text gives */
    bool ok = nps_rfc3339_parse(copy, len, ts_ms);
    free(copy);
    return ok;
}

static void expect_ts(const char *text, int64_t want)
{
    int64_t got;
    cr_expect(parse(text, &got), "%s rejected", text);
    cr_expect_eq(got, want, "%s: got %" PRId64 ", want %" PRId64, text, got, want);
}

static void expect_bad(const char *text)
{
    int64_t got;
    cr_expect_not(parse(text, &got), "%s accepted as %" PRId64, text, got);
}

Test(timestamp, naive_reference_agrees_with_known_epochs)
{
    /* values every Unix tool agrees on: the reference itself is checked */
    cr_assert_eq(naive_ms(1970, 1, 1, 0, 0, 0, 0), 0);
    cr_assert_eq(naive_ms(2025, 11, 22, 8, 26, 40, 123), INT64_C(1763800000123));
    cr_assert_eq(naive_ms(2000, 1, 1, 0, 0, 0, 0), INT64_C(946684800000));
    cr_assert_eq(naive_ms(1, 1, 1, 0, 0, 0, 0), INT64_C(-62135596800000));
    cr_assert_eq(naive_ms(9999, 12, 31, 23, 59, 59, 999), INT64_C(253402300799999));
}

Test(timestamp, rfc3339_known_values)
{
    expect_ts("1970-01-01T00:00:00Z", 0);
    expect_ts("1970-01-01T00:00:00.001Z", 1);
    expect_ts("1969-12-31T23:59:59Z", -1000);
    expect_ts("2025-11-22T08:26:40.123Z", INT64_C(1763800000123));
    expect_ts("2000-02-29T00:00:00Z", naive_ms(2000, 2, 29, 0, 0, 0, 0));
    expect_ts("2000-03-01T00:00:00Z", naive_ms(2000, 3, 1, 0, 0, 0, 0));
    expect_ts("2024-02-29T12:00:00Z", naive_ms(2024, 2, 29, 12, 0, 0, 0));
    expect_ts("1900-02-28T23:59:59Z", naive_ms(1900, 2, 28, 23, 59, 59, 0));
    expect_ts("1900-03-01T00:00:00Z", naive_ms(1900, 3, 1, 0, 0, 0, 0));
    expect_ts("2100-02-28T00:00:00Z", naive_ms(2100, 2, 28, 0, 0, 0, 0));
    expect_ts("2038-01-19T03:14:08Z", INT64_C(2147483648000));
    expect_ts("0001-01-01T00:00:00Z", INT64_C(-62135596800000));
    expect_ts("9999-12-31T23:59:59.999Z", INT64_C(253402300799999));
    expect_ts("0000-03-01T00:00:00Z", naive_ms(0, 3, 1, 0, 0, 0, 0));
}

Test(timestamp, rfc3339_every_day_of_some_years)
{
    static const int64_t years[] = {1,    4,    100,  400,  1600, 1899, 1900, 1969, 1970,
                                    1972, 1999, 2000, 2023, 2024, 2100, 2400, 9999};
    for (size_t i = 0; i < sizeof(years) / sizeof(years[0]); i++) {
        for (int month = 1; month <= 12; month++) {
            for (int day = 1; day <= month_length(years[i], month); day++) {
                char text[64];
                int hour = (day * 7) % 24, minute = (day * 13) % 60, second = (month * 5) % 60;
                snprintf(text, sizeof(text), "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%03dZ",
                         years[i], month, day, hour, minute, second, day * 31 % 1000);
                expect_ts(text,
                          naive_ms(years[i], month, day, hour, minute, second, day * 31 % 1000));
            }
        }
    }
}

Test(timestamp, rfc3339_invalid_dates_and_times)
{
    static const char *const bad[] = {
        "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
        "2025-13-01T00:00:00Z", "2025-00-10T00:00:00Z", "2025-01-00T00:00:00Z",
        "2025-01-32T00:00:00Z", "2025-04-31T00:00:00Z", "2025-06-31T00:00:00Z",
        "2025-09-31T00:00:00Z", "2025-11-31T00:00:00Z", "2025-01-01T24:00:00Z",
        "2025-01-01T23:60:00Z", "2025-01-01T23:59:61Z", "2025-01-01T99:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i]);
    /* a leap second is RFC 3339; it reads as the next second */
    expect_ts("2016-12-31T23:59:60Z", naive_ms(2017, 1, 1, 0, 0, 0, 0));
}

Test(timestamp, rfc3339_offsets)
{
    int64_t utc = naive_ms(2025, 11, 22, 8, 26, 40, 0);
    expect_ts("2025-11-22T08:26:40+00:00", utc);
    expect_ts("2025-11-22T08:26:40-00:00", utc);
    expect_ts("2025-11-22T13:56:40+05:30", utc);
    expect_ts("2025-11-22T00:26:40-08:00", utc);
    expect_ts("2025-11-22T08:26:40+23:59", utc - (23 * 60 + 59) * 60000);
    expect_ts("2025-11-22T08:26:40-23:59", utc + (23 * 60 + 59) * 60000);
    expect_ts("2025-11-23T02:26:40+18:00", utc);
    expect_ts("2025-11-21T22:26:40-10:00", utc);
    expect_ts("1970-01-01T05:30:00.5+05:30", 500);
    expect_ts("0001-01-01T00:00:00+01:00", INT64_C(-62135596800000) - 3600000);
    static const char *const bad[] = {
        "2025-11-22T08:26:40+0530",   "2025-11-22T08:26:40+5:30",   "2025-11-22T08:26:40+05:3",
        "2025-11-22T08:26:40+24:00",  "2025-11-22T08:26:40+05:60",  "2025-11-22T08:26:40+05",
        "2025-11-22T08:26:40 +05:30", "2025-11-22T08:26:40+05:30Z", "2025-11-22T08:26:40+05-30",
        "2025-11-22T08:26:40*05:30",  "2025-11-22T08:26:40UTC",     "2025-11-22T08:26:40+"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i]);
}

Test(timestamp, rfc3339_fractions_and_forms)
{
    int64_t base = naive_ms(2025, 11, 22, 8, 26, 40, 0);
    expect_ts("2025-11-22T08:26:40.1Z", base + 100);
    expect_ts("2025-11-22T08:26:40.12Z", base + 120);
    expect_ts("2025-11-22T08:26:40.123Z", base + 123);
    expect_ts("2025-11-22T08:26:40.1239Z", base + 123);
    expect_ts("2025-11-22T08:26:40.999999999999Z", base + 999);
    expect_ts("2025-11-22T08:26:40.000Z", base);
    expect_ts("1969-12-31T23:59:59.9999Z", -1); /* truncated to ms, then placed */
    expect_ts("2025-11-22t08:26:40z", base);
    expect_ts("2025-11-22 08:26:40Z", base);
    expect_ts("2025-11-22T08:26:40.5+01:00", base - 3600000 + 500);
    static const char *const bad[] = {"",
                                      "2025",
                                      "2025-11-22",
                                      "2025-11-22T08:26:40",
                                      "2025-11-22T08:26:40.",
                                      "2025-11-22T08:26:40.Z",
                                      "2025-11-22T08:26:40.123",
                                      "2025-11-22T08:26Z",
                                      "2025-11-22T08:26:40ZZ",
                                      "2025-11-22T08:26:40Z ",
                                      " 2025-11-22T08:26:40Z",
                                      "2025/11/22T08:26:40Z",
                                      "2025-11-22_08:26:40Z",
                                      "2025-11-22T08-26-40Z",
                                      "25-11-22T08:26:40Z",
                                      "2025-1-22T08:26:40Z",
                                      "2025-11-2T08:26:40Z",
                                      "2025-11-22T8:26:40Z",
                                      "2025-1a-22T08:26:40Z",
                                      "+2025-11-22T08:26:40Z",
                                      "2025-11-22T08:26:40,123Z",
                                      "2025-11-22T08:26:40.12a3Z",
                                      "-001-01-01T00:00:00Z",
                                      "12025-11-22T08:26:40Z",
                                      "1763800000123"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i]);
}

Test(timestamp, rfc3339_is_length_delimited)
{
    const char text[] = "2025-11-22T08:26:40Z and more";
    int64_t ts = 0;
    cr_expect(nps_rfc3339_parse(text, 20, &ts));
    cr_expect_eq(ts, naive_ms(2025, 11, 22, 8, 26, 40, 0));
    cr_expect_not(nps_rfc3339_parse(text, 21, &ts));
    cr_expect_not(nps_rfc3339_parse(text, 19, &ts));
    const char nul[] = "2025-11-22T08:26:40\0Z";
    cr_expect_not(nps_rfc3339_parse(nul, sizeof(nul) - 1, &ts));
    /* every prefix of a valid text is rejected without reading past it */
    const char *full = "2025-11-22T08:26:40.123+05:30";
    for (size_t len = 0; len < strlen(full); len++) {
        char *copy = malloc(len ? len : 1);
        memcpy(copy, full, len);
        bool ok = nps_rfc3339_parse(copy, len, &ts);
        free(copy);
        cr_expect_not(ok, "prefix of %zu bytes accepted", len);
    }
}

Test(timestamp, days_from_civil_walk)
{
    int64_t year = -800;
    int month = 1, day = 1;
    int64_t expected = naive_days(year, month, day);
    cr_assert_eq(nps_days_from_civil(year, 1, 1), expected);
    for (; year <= 2800; expected++) {
        int64_t got = nps_days_from_civil(year, (unsigned)month, (unsigned)day);
        if (got != expected)
            cr_assert_fail("%04" PRId64 "-%02d-%02d: %" PRId64 ", walking gives %" PRId64, year,
                           month, day, got, expected);
        if (++day > month_length(year, month)) {
            day = 1;
            if (++month > 12) {
                month = 1;
                year++;
            }
        }
    }
    cr_expect_eq(nps_days_from_civil(1970, 1, 1), 0);
    cr_expect_eq(nps_days_from_civil(1969, 12, 31), -1);
    cr_expect_eq(nps_days_from_civil(2000, 3, 1), 11017);
}

Test(timestamp, duration_parse_units)
{
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {{"5m", 300000},     {"250ms", 250},    {"1ms", 1},        {"30s", 30000},
                {"1h", 3600000},    {"24h", 86400000}, {"7d", 604800000}, {"30d", 2592000000},
                {"2w", 1209600000}, {"90s", 90000},    {"05m", 300000},   {"1000ms", 1000}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = -1;
        cr_expect(nps_duration_parse(good[i].text, &ms), "%s rejected", good[i].text);
        cr_expect_eq(ms, good[i].ms, "%s: %" PRId64, good[i].text, ms);
    }
    static const char *const bad[] = {"",    "5",   "m",     "0m",   "-5m",  "5x",   "5 m", " 5m",
                                      "5m ", "5M",  "+5m",   "5.5m", "5mm",  "5min", "ms",  "0ms",
                                      "00d", "5sm", "1e3ms", "5d5",  "0x5m", "5\tm"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = -1;
        cr_expect_not(nps_duration_parse(bad[i], &ms), "'%s' accepted as %" PRId64, bad[i], ms);
    }
}

Test(timestamp, duration_parse_overflow_edges)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        int64_t largest = INT64_MAX / units[u].ms;
        char text[64];
        int64_t ms = -1;
        snprintf(text, sizeof(text), "%" PRId64 "%s", largest, units[u].unit);
        cr_expect(nps_duration_parse(text, &ms), "%s rejected", text);
        cr_expect_eq(ms, largest * units[u].ms, "%s", text);
        snprintf(text, sizeof(text), "%" PRIu64 "%s", (uint64_t)largest + 1, units[u].unit);
        cr_expect_not(nps_duration_parse(text, &ms), "%s accepted", text);
    }
    static const char *const overflow[] = {"9223372036854775808ms", "9223372036854775810ms",
                                           "99999999999999999999ms", "18446744073709551616ms",
                                           "100000000000000000000000000000s"};
    for (size_t i = 0; i < sizeof(overflow) / sizeof(overflow[0]); i++) {
        int64_t ms = -1;
        cr_expect_not(nps_duration_parse(overflow[i], &ms), "%s accepted as %" PRId64, overflow[i],
                      ms);
    }
}

Test(timestamp, duration_format_round_trips)
{
    static const struct {
        int64_t ms;
        const char *text;
    } shortest[] = {{300000, "5m"},      {250, "250ms"},    {90000, "90s"},     {3600000, "1h"},
                    {86400000, "1d"},    {604800000, "1w"}, {1209600000, "2w"}, {1001, "1001ms"},
                    {2592000000, "30d"}, {5400000, "90m"}};
    for (size_t i = 0; i < sizeof(shortest) / sizeof(shortest[0]); i++) {
        char out[32];
        nps_duration_format(shortest[i].ms, out, sizeof(out));
        cr_expect_str_eq(out, shortest[i].text, "%" PRId64 " ms", shortest[i].ms);
    }
    for (int64_t ms = 1; ms < INT64_MAX / 3; ms = ms * 3 + (ms & 1)) {
        char out[32];
        int64_t back = -1;
        nps_duration_format(ms, out, sizeof(out));
        cr_expect(nps_duration_parse(out, &back), "%" PRId64 " formats as unparsable %s", ms, out);
        cr_expect_eq(back, ms, "%" PRId64 " -> %s -> %" PRId64, ms, out, back);
    }
}
