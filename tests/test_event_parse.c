/*
 * Tests of engine/event_parse.c against the event contract of DESIGN.md:
 * score, ts, dimensions, type, id/value/comment, escapes, unknown fields,
 * malformed and oversized messages, and that no state carries over from
 * one message to the next.
 *
 * Each message is parsed from a heap copy of exactly its length, so that
 * AddressSanitizer catches a read past its end.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_gen.h"
#include "event_parse.h"

/* 2025-11-22T08:26:40.123Z, as `date -u -d @1763800000` confirms. */
#define EXAMPLE_TS_MS INT64_C(1763800000123)

static nps_views views;
static nps_event_parser *parser;
static char *message; /* the heap copy the last event points into */
static char detail[256];

static void setup(void)
{
    nps_error err = {{0}};
    nps_views_init(&views);
    cr_assert_eq(nps_views_add(&views, "by_channel=channel", &err), NPS_OK, "%s", err.msg);
    cr_assert_eq(nps_views_add(&views, "by_survey_age=survey,age_band", &err), NPS_OK, "%s",
                 err.msg);
    cr_assert_eq(nps_views_add(&views, "by_region=region", &err), NPS_OK, "%s", err.msg);
    parser = nps_event_parser_new(&views, 65536, &err);
    cr_assert_not_null(parser, "%s", err.msg);
}

static void teardown(void)
{
    nps_event_parser_destroy(parser);
    free(message);
    message = NULL;
}

TestSuite(event_parse, .init = setup, .fini = teardown);

static nps_invalid_reason parse_with(nps_event_parser *p, const char *msg, size_t len,
                                     nps_event *ev)
{
    free(message);
    message = malloc(len ? len : 1);
    cr_assert_not_null(message);
    memcpy(message, msg, len);
    memset(detail, 0, sizeof(detail));
    return nps_event_parse(p, message, len, ev, detail, sizeof(detail));
}

static nps_invalid_reason parse(const char *msg, nps_event *ev)
{
    return parse_with(parser, msg, strlen(msg), ev);
}

static void expect_valid(const char *msg, nps_event *ev)
{
    nps_invalid_reason r = parse(msg, ev);
    cr_assert_eq(r, NPS_VALID, "%s: %s (%s)", msg, nps_invalid_reason_name(r), detail);
}

static void expect_invalid(const char *msg, nps_invalid_reason want)
{
    nps_event ev;
    nps_invalid_reason r = parse(msg, &ev);
    cr_expect_eq(r, want, "%s: got %s, want %s (%s)", msg, nps_invalid_reason_name(r),
                 nps_invalid_reason_name(want), detail);
    cr_expect_gt(strlen(detail), 0, "%s: no detail message", msg);
}

static nps_str dim_of(const nps_event *ev, const char *name)
{
    for (int d = 0; d < views.ndims; d++)
        if (strcmp(views.dim_names[d], name) == 0)
            return ev->dims[d];
    cr_assert_fail("no dimension %s", name);
    return (nps_str){0};
}

static bool str_eq(nps_str s, const char *want, size_t want_len)
{
    return s.len == want_len && (want_len == 0 || memcmp(s.ptr, want, want_len) == 0);
}

#define expect_str(s, want)                                                                        \
    cr_expect(str_eq((s), (want), sizeof(want) - 1), "got '%.*s', want '%s'", (int)(s).len,        \
              (s).ptr ? (s).ptr : "", (want))
#define expect_dim(ev, name, want) expect_str(dim_of((ev), (name)), want)

Test(event_parse, scores_zero_to_ten)
{
    for (int s = 0; s <= 10; s++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "{\"score\":%d}", s);
        nps_event ev;
        expect_valid(msg, &ev);
        cr_expect_eq(ev.score, s);
        cr_expect_not(ev.sent);
        cr_expect_not(ev.has_ts);
        cr_expect_not(ev.has_value);
    }
}

Test(event_parse, integral_score_forms)
{
    static const struct {
        const char *literal;
        int score;
    } cases[] = {{"9.0", 9},     {"-0", 0},    {"-0.0", 0},    {"1e1", 10},
                 {"100e-1", 10}, {"0.9e1", 9}, {"10.000", 10}, {"7E0", 7}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "{\"score\":%s}", cases[i].literal);
        nps_event ev;
        expect_valid(msg, &ev);
        cr_expect_eq(ev.score, cases[i].score, "%s", cases[i].literal);
    }
}

Test(event_parse, bad_scores)
{
    static const char *const bad[] = {"9.5",
                                      "\"9\"",
                                      "11",
                                      "-1",
                                      "null",
                                      "true",
                                      "false",
                                      "1e400",
                                      "10.5",
                                      "[9]",
                                      "{}",
                                      "-1e400",
                                      "9223372036854775808",
                                      "1e19",
                                      "0.5",
                                      "\"\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "{\"channel\":\"email\",\"score\":%s}", bad[i]);
        expect_invalid(msg, NPS_INVALID_SCORE);
    }
}

Test(event_parse, missing_score)
{
    expect_invalid("{}", NPS_INVALID_MISSING_SCORE);
    expect_invalid("{\"channel\":\"email\",\"ts\":5}", NPS_INVALID_MISSING_SCORE);
    expect_invalid("{\"type\":\"response\"}", NPS_INVALID_MISSING_SCORE);
    expect_invalid("{\"Score\":9}", NPS_INVALID_MISSING_SCORE);
    expect_invalid("{\"x\":{\"score\":9}}", NPS_INVALID_MISSING_SCORE);
    expect_invalid("{\"score \":9}", NPS_INVALID_MISSING_SCORE);
    expect_invalid("{\"sc\\u006fre\\u0000\":9}", NPS_INVALID_MISSING_SCORE);
}

Test(event_parse, ts_epoch_ms)
{
    nps_event ev;
    expect_valid("{\"score\":1,\"ts\":1763800000123}", &ev);
    cr_expect(ev.has_ts);
    cr_expect_eq(ev.ts_ms, EXAMPLE_TS_MS);
    expect_valid("{\"ts\":0,\"score\":1}", &ev);
    cr_expect(ev.has_ts);
    cr_expect_eq(ev.ts_ms, 0);
    expect_valid("{\"ts\":1763800000123.0,\"score\":1}", &ev);
    cr_expect_eq(ev.ts_ms, EXAMPLE_TS_MS);
    expect_valid("{\"ts\":1.763800000123e12,\"score\":1}", &ev);
    cr_expect_eq(ev.ts_ms, EXAMPLE_TS_MS);
    expect_invalid("{\"ts\":1.5,\"score\":1}", NPS_INVALID_TS);
    expect_invalid("{\"ts\":1e400,\"score\":1}", NPS_INVALID_TS);
    expect_invalid("{\"ts\":true,\"score\":1}", NPS_INVALID_TS);
    expect_invalid("{\"ts\":{},\"score\":1}", NPS_INVALID_TS);
    expect_invalid("{\"ts\":[1],\"score\":1}", NPS_INVALID_TS);
}

Test(event_parse, ts_rfc3339)
{
    static const char *const same_instant[] = {
        "2025-11-22T08:26:40.123Z",      "2025-11-22t08:26:40.123z",
        "2025-11-22T13:56:40.123+05:30", "2025-11-22T00:26:40.123-08:00",
        "2025-11-22T08:26:40.123+00:00", "2025-11-22 08:26:40.123Z",
        "2025-11-22T08:26:40.123999Z",   "2025-11-22T08:26:40\\u002e123Z",
        "\\u0032025-11-22T08:26:40.123Z"};
    for (size_t i = 0; i < sizeof(same_instant) / sizeof(same_instant[0]); i++) {
        char msg[128];
        snprintf(msg, sizeof(msg), "{\"score\":3,\"ts\":\"%s\"}", same_instant[i]);
        nps_event ev;
        expect_valid(msg, &ev);
        cr_expect(ev.has_ts, "%s", same_instant[i]);
        cr_expect_eq(ev.ts_ms, EXAMPLE_TS_MS, "%s: %" PRId64, same_instant[i], ev.ts_ms);
    }
    nps_event ev;
    expect_valid("{\"score\":3}", &ev);
    cr_expect_not(ev.has_ts);
    expect_valid("{\"score\":3,\"ts\":null}", &ev);
    cr_expect_not(ev.has_ts);
    static const char *const bad[] = {"yesterday",
                                      "",
                                      "2025-11-22",
                                      "2025-13-01T00:00:00Z",
                                      "1763800000123",
                                      "2025-11-22T08:26:40",
                                      "2025-11-22T08:26:40.123Z ",
                                      "2023-02-29T00:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[128];
        snprintf(msg, sizeof(msg), "{\"score\":3,\"ts\":\"%s\"}", bad[i]);
        expect_invalid(msg, NPS_INVALID_TS);
    }
}

Test(event_parse, dimensions)
{
    nps_event ev;
    expect_valid("{\"score\":9,\"channel\":\"email\",\"survey\":\"checkout\","
                 "\"age_band\":\"25-34\",\"region\":\"IN\"}",
                 &ev);
    expect_dim(&ev, "channel", "email");
    expect_dim(&ev, "survey", "checkout");
    expect_dim(&ev, "age_band", "25-34");
    expect_dim(&ev, "region", "IN");
    expect_valid("{\"score\":9,\"channel\":5,\"survey\":5.0,\"age_band\":-0,\"region\":1e2}", &ev);
    expect_dim(&ev, "channel", "5");
    expect_dim(&ev, "survey", "5");
    expect_dim(&ev, "age_band", "0");
    expect_dim(&ev, "region", "100");
    expect_valid("{\"score\":9,\"channel\":-9223372036854775808,\"region\":9223372036854775807}",
                 &ev);
    expect_dim(&ev, "channel", "-9223372036854775808");
    expect_dim(&ev, "region", "9223372036854775807");
    expect_valid("{\"score\":9,\"channel\":null,\"survey\":\"\"}", &ev);
    expect_dim(&ev, "channel", "");
    expect_dim(&ev, "survey", "");
    expect_dim(&ev, "age_band", "");
    expect_dim(&ev, "region", "");
    static const char *const bad[] = {
        "5.5",     "true",      "false", "{}",   "[]",
        "[\"a\"]", "{\"a\":1}", "1e400", "-0.5", "9223372036854775808"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[96];
        snprintf(msg, sizeof(msg), "{\"score\":9,\"region\":%s}", bad[i]);
        expect_invalid(msg, NPS_INVALID_DIMENSION);
    }
}

Test(event_parse, unknown_and_nested_fields_ignored)
{
    nps_event ev;
    expect_valid("{\"extra\":{\"score\":11,\"channel\":[1]},\"list\":[{\"score\":\"x\"}],"
                 "\"score\":7,\"channel\":\"web\",\"zzz\":true,\"n\":1.5,\"q\":null,"
                 "\"deep\":[[[[{\"ts\":\"bad\"}]]]]}",
                 &ev);
    cr_expect_eq(ev.score, 7);
    expect_dim(&ev, "channel", "web");
    cr_expect_not(ev.has_ts);
}

Test(event_parse, escaped_keys_and_values)
{
    nps_event ev;
    expect_valid("{\"sc\\u006fre\":8,\"\\u0063hannel\":\"e\\u006dail\\n\","
                 "\"surv\\u0065y\":\"\\ud83d\\ude00 \\\"q\\\"\",\"id\":\"r-\\u0031\","
                 "\"comment\":\"caf\\u00e9\\t\\/\",\"region\":\"plain\","
                 "\"age_band\":\"\\u0032\\u0035-34\",\"typ\\u0065\":\"r\\u0065sponse\"}",
                 &ev);
    cr_expect_eq(ev.score, 8);
    expect_dim(&ev, "channel", "email\n");
    expect_dim(&ev, "survey", "\xf0\x9f\x98\x80 \"q\"");
    expect_dim(&ev, "age_band", "25-34");
    expect_dim(&ev, "region", "plain");
    expect_str(ev.id, "r-1");
    expect_str(ev.comment, "caf\xc3\xa9\t/");
    cr_expect_not(ev.sent);
    /* an escaped key too long to be any known field is skipped */
    char msg[2048];
    size_t at = (size_t)sprintf(msg, "{\"");
    for (int i = 0; i < 300; i++)
        at += (size_t)sprintf(msg + at, "\\u0061");
    sprintf(msg + at, "\":1,\"score\":2}");
    expect_valid(msg, &ev);
    cr_expect_eq(ev.score, 2);
}

/* Every order of the same fields parses to the same event. */
static const char *const order_fields[] = {
    "\"score\":6",         "\"ts\":\"2025-11-22T08:26:40.123Z\"",
    "\"channel\":\"sms\"", "\"survey\":\"nps\\u0031\"",
    "\"value\":2.5",       "\"id\":\"x\""};
#define NFIELDS (int)(sizeof(order_fields) / sizeof(order_fields[0]))

static void check_order(const int *order)
{
    char msg[256];
    size_t at = (size_t)sprintf(msg, "{");
    for (int i = 0; i < NFIELDS; i++)
        at += (size_t)sprintf(msg + at, "%s%s", i ? "," : "", order_fields[order[i]]);
    sprintf(msg + at, "}");
    nps_event ev;
    expect_valid(msg, &ev);
    cr_expect_eq(ev.score, 6, "%s", msg);
    cr_expect_eq(ev.ts_ms, EXAMPLE_TS_MS, "%s", msg);
    cr_expect(ev.has_value && ev.value_cents == 250, "%s", msg);
    expect_dim(&ev, "channel", "sms");
    expect_dim(&ev, "survey", "nps1");
    expect_str(ev.id, "x");
}

static void permute(int *order, int k)
{
    if (k == 1) {
        check_order(order);
        return;
    }
    for (int i = 0; i < k; i++) {
        permute(order, k - 1);
        int j = k % 2 ? 0 : i; /* Heap's algorithm */
        int swap = order[j];
        order[j] = order[k - 1];
        order[k - 1] = swap;
    }
}

Test(event_parse, field_order_free)
{
    int order[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        order[i] = i;
    permute(order, NFIELDS);
}

Test(event_parse, type_response_and_sent)
{
    nps_event ev;
    expect_valid("{\"type\":\"response\",\"score\":4}", &ev);
    cr_expect_not(ev.sent);
    cr_expect_eq(ev.score, 4);
    expect_valid("{\"type\":\"sent\",\"channel\":\"email\"}", &ev);
    cr_expect(ev.sent);
    expect_dim(&ev, "channel", "email");
    expect_valid("{\"score\":9,\"type\":\"sent\"}", &ev);
    cr_expect(ev.sent);
    cr_expect_eq(ev.score, -1, "an invitation has no score to count");
    expect_valid("{\"type\":\"s\\u0065nt\"}", &ev);
    cr_expect(ev.sent);
    expect_valid("{\"type\":null,\"score\":2}", &ev);
    cr_expect_not(ev.sent);
    expect_invalid("{\"type\":null}", NPS_INVALID_MISSING_SCORE);
    static const char *const bad[] = {"\"Sent\"", "\"\"",       "\"invite\"", "1",
                                      "true",     "[\"sent\"]", "\"sent \"",  "\"responses\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[96];
        snprintf(msg, sizeof(msg), "{\"score\":1,\"type\":%s}", bad[i]);
        expect_invalid(msg, NPS_INVALID_TYPE);
    }
}

Test(event_parse, malformed_json)
{
    static const char *const bad[] = {"",
                                      "   ",
                                      "{",
                                      "not json",
                                      "[1]",
                                      "\"s\"",
                                      "9",
                                      "{\"score\":9",
                                      "{\"score\":9,}",
                                      "{\"score\":09}",
                                      "{\"score\":9}x",
                                      "{\"score\":11,",
                                      "{\"score\":11,\"a\":tru}",
                                      "{\"channel\":\"\xc0\x80\",\"score\":1}",
                                      "{\"score\":1,\"c\":\"\\ud800\"}",
                                      "{score:1}",
                                      "{\"score\":1}{}",
                                      "{\"score\":1,\"a\":[}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(bad[i], NPS_INVALID_JSON);
    nps_event ev;
    const char nul_inside[] = "{\"score\":1}\0";
    cr_expect_eq(parse_with(parser, nul_inside, sizeof(nul_inside) - 1, &ev), NPS_INVALID_JSON);
}

Test(event_parse, too_large)
{
    nps_error err = {{0}};
    nps_event_parser *small = nps_event_parser_new(&views, 64, &err);
    cr_assert_not_null(small, "%s", err.msg);
    char msg[128];
    for (size_t len = 40; len <= 70; len++) {
        /* {"score":9,"channel":"\u0061...aaa"} padded to exactly len bytes */
        size_t at = (size_t)sprintf(msg, "{\"score\":9,\"channel\":\"\\u0061");
        while (at < len - 2)
            msg[at++] = 'a';
        sprintf(msg + at, "\"}");
        nps_event ev;
        nps_invalid_reason r = parse_with(small, msg, len, &ev);
        cr_expect_eq(r, len <= 64 ? NPS_VALID : NPS_INVALID_TOO_LARGE, "%zu bytes: %s", len,
                     nps_invalid_reason_name(r));
        if (r == NPS_VALID)
            cr_expect_eq(dim_of(&ev, "channel").len, len - 29);
        else
            cr_expect_gt(strlen(detail), 0);
    }
    nps_event_parser_destroy(small);
    cr_expect_null(nps_event_parser_new(&views, 0, &err));
    cr_expect_gt(strlen(err.msg), 0);
}

Test(event_parse, value_id_comment)
{
    nps_event ev;
    expect_valid("{\"score\":1,\"value\":1240.5,\"id\":\"r-81f3\",\"comment\":\"fast\"}", &ev);
    cr_expect(ev.has_value);
    cr_expect_eq(ev.value_cents, 124050);
    expect_str(ev.id, "r-81f3");
    expect_str(ev.comment, "fast");
    expect_valid("{\"score\":1,\"value\":3e2,\"id\":123}", &ev);
    cr_expect_eq(ev.value_cents, 30000);
    expect_str(ev.id, "123");
    expect_valid("{\"score\":1,\"value\":null,\"id\":null,\"comment\":null}", &ev);
    cr_expect_not(ev.has_value);
    cr_expect_eq(ev.value_cents, 0);
    cr_expect_eq(ev.id.len, 0);
    cr_expect_eq(ev.comment.len, 0);
}

/* value is exact in cents: the decimal digits as written, half up past
 * the cents, whatever the spelling; negative or past 1e12 is invalid. */
Test(event_parse, value_exact_cents)
{
    static const struct {
        const char *lit;
        int64_t cents;
    } good[] = {
        {"0", 0},
        {"-0", 0},
        {"-0.0", 0},
        {"0.004", 0},
        {"0.005", 1},
        {"1.005", 101},
        {"1.015", 102},
        {"2.675", 268},
        {"0.1", 10},
        {"0.29", 29},
        {"19.99", 1999},
        {"1240.5", 124050},
        {"1e-2", 1},
        {"5e-3", 1},
        {"4.9e-3", 0},
        {"1E2", 10000},
        {"1.5e+1", 1500},
        {"1e12", 100000000000000},
        {"999999999999.99", 99999999999999},
        {"999999999999.994", 99999999999999},
        {"0e999999999999", 0},
        {"1e-999999999999", 0},
        {"12.3456", 1235},
    };
    char msg[1400];
    nps_event ev;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(msg, sizeof(msg), "{\"score\":1,\"value\":%s}", good[i].lit);
        expect_valid(msg, &ev);
        cr_expect(ev.has_value, "%s", good[i].lit);
        cr_expect_eq(ev.value_cents, good[i].cents, "%s gave %lld cents", good[i].lit,
                     (long long)ev.value_cents);
    }
    /* literals of any length */
    snprintf(msg, sizeof(msg), "{\"score\":1,\"value\":1.%0100d1}", 0);
    expect_valid(msg, &ev);
    cr_expect_eq(ev.value_cents, 100);
    snprintf(msg, sizeof(msg), "{\"score\":1,\"value\":2%0600de-600}", 0);
    expect_valid(msg, &ev);
    cr_expect_eq(ev.value_cents, 200);
    snprintf(msg, sizeof(msg), "{\"value\":0.%0600d25e601,\"score\":1}", 0);
    expect_valid(msg, &ev);
    cr_expect_eq(ev.value_cents, 250);
    snprintf(msg, sizeof(msg), "{\"value\":%01000d7.5,\"score\":1}", 0);
    expect_invalid(msg, NPS_INVALID_JSON); /* leading zeros are not JSON */
    static const char *const bad_values[] = {
        "-1",   "-0.01",  "-0.005", "1e400", "-1e400", "1000000000000.01",
        "1e13", "\"12\"", "true",   "{}",    "[1]",
    };
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        snprintf(msg, sizeof(msg), "{\"score\":1,\"value\":1,\"value\":%s}", bad_values[i]);
        expect_invalid(msg, NPS_INVALID_VALUE);
    }
    snprintf(msg, sizeof(msg), "{\"score\":1,\"value\":1%0400d}", 0);
    expect_invalid(msg, NPS_INVALID_VALUE);
    expect_invalid("{\"score\":1,\"id\":true}", NPS_INVALID_FIELD);
    expect_invalid("{\"score\":1,\"id\":{}}", NPS_INVALID_FIELD);
    expect_invalid("{\"score\":1,\"comment\":5}", NPS_INVALID_FIELD);
    expect_invalid("{\"score\":1,\"comment\":[\"a\"]}", NPS_INVALID_FIELD);
}

Test(event_parse, reason_names)
{
    for (int a = 0; a < NPS_INVALID_REASONS; a++) {
        const char *name = nps_invalid_reason_name((nps_invalid_reason)a);
        cr_assert_not_null(name);
        size_t len = strlen(name);
        cr_expect_gt(len, 0, "reason %d", a);
        for (size_t i = 0; i < len; i++) {
            bool lower = name[i] >= 'a' && name[i] <= 'z';
            bool inner_underscore = name[i] == '_' && i > 0 && i + 1 < len && name[i - 1] != '_';
            cr_expect(lower || inner_underscore, "reason %d: '%s' is not snake_case", a, name);
        }
        for (int b = 0; b < a; b++)
            cr_expect_str_neq(name, nps_invalid_reason_name((nps_invalid_reason)b),
                              "reasons %d and %d share a name", a, b);
    }
    cr_expect_not_null(nps_invalid_reason_name(NPS_INVALID_REASONS));
    cr_expect_not_null(nps_invalid_reason_name((nps_invalid_reason)-1));
}

Test(event_parse, no_state_carried_over)
{
    nps_event ev;
    expect_valid("{\"score\":10,\"ts\":5,\"type\":\"sent\",\"value\":7,\"id\":\"i\","
                 "\"comment\":\"c\",\"channel\":\"ch\",\"survey\":12,\"age_band\":\"\\u0061\","
                 "\"region\":\"r\"}",
                 &ev);
    cr_expect(ev.sent && ev.has_ts && ev.has_value);
    expect_valid("{\"score\":3}", &ev);
    cr_expect_eq(ev.score, 3);
    cr_expect_not(ev.sent);
    cr_expect_not(ev.has_ts);
    cr_expect_not(ev.has_value);
    cr_expect_eq(ev.id.len, 0);
    cr_expect_eq(ev.comment.len, 0);
    for (int d = 0; d < views.ndims; d++)
        cr_expect_eq(ev.dims[d].len, 0, "dimension %s", views.dim_names[d]);
    /* an invalid message that set fields before failing leaves nothing */
    expect_invalid("{\"ts\":9,\"value\":1,\"channel\":\"x\",\"type\":\"sent\",\"score\":99}",
                   NPS_INVALID_SCORE);
    expect_invalid("{\"channel\":\"x\",\"value\":1}", NPS_INVALID_MISSING_SCORE);
    expect_valid("{\"score\":0}", &ev);
    cr_expect_eq(ev.score, 0);
    cr_expect_not(ev.sent || ev.has_ts || ev.has_value);
    expect_dim(&ev, "channel", "");
    expect_dim(&ev, "survey", "");
}

Test(event_parse, parser_owns_its_field_names)
{
    nps_views own;
    nps_error err = {{0}};
    nps_views_init(&own);
    cr_assert_eq(nps_views_add(&own, "by_team=team,tier", &err), NPS_OK, "%s", err.msg);
    nps_event_parser *p = nps_event_parser_new(&own, 1024, &err);
    cr_assert_not_null(p, "%s", err.msg);
    /* the views a parser was made from may go away (a config reloaded) */
    memset(&own, 0x55, sizeof(own));
    nps_event ev;
    const char msg[] = "{\"score\":5,\"tier\":\"gold\",\"team\":\"a\"}";
    cr_assert_eq(parse_with(p, msg, sizeof(msg) - 1, &ev), NPS_VALID, "%s", detail);
    expect_str(ev.dims[0], "a");
    expect_str(ev.dims[1], "gold");
    const char bad[] = "{\"score\":5,\"tier\":true}";
    cr_assert_eq(parse_with(p, bad, sizeof(bad) - 1, &ev), NPS_INVALID_DIMENSION);
    cr_expect(strstr(detail, "tier") != NULL, "detail names the dimension: %s", detail);
    nps_event_parser_destroy(p);
}

/* A dimension may share its name with a contract field (type, id, comment,
 * value): both roles apply, and an escaped string is decoded within the
 * scratch of a message at the size limit (AddressSanitizer checks). */
Test(event_parse, dimension_named_like_a_contract_field)
{
    nps_views meta;
    nps_error err = {{0}};
    nps_views_init(&meta);
    cr_assert_eq(nps_views_add(&meta, "by_meta=comment,id,type,value", &err), NPS_OK, "%s",
                 err.msg);
    nps_event_parser *p = nps_event_parser_new(&meta, 64, &err);
    cr_assert_not_null(p, "%s", err.msg);
    char msg[65];
    size_t at = (size_t)sprintf(msg, "{\"type\":\"sent\",\"comment\":\"");
    while (at < 64 - 4)
        msg[at++] = 'a';
    memcpy(msg + at, "\\n\"}", 4);
    size_t comment_len = at - 26 + 1;
    nps_event ev;
    cr_assert_eq(parse_with(p, msg, 64, &ev), NPS_VALID, "%s", detail);
    cr_expect(ev.sent);
    cr_expect_eq(ev.comment.len, comment_len);
    cr_expect_eq(ev.dims[0].len, comment_len);
    cr_expect(ev.comment.len && ev.comment.ptr[comment_len - 1] == '\n');
    cr_expect(ev.dims[0].len && ev.dims[0].ptr[comment_len - 1] == '\n');
    expect_str(ev.dims[2], "sent");
    const char numbers[] = "{\"score\":4,\"value\":5,\"id\":7}";
    cr_assert_eq(parse_with(p, numbers, sizeof(numbers) - 1, &ev), NPS_VALID, "%s", detail);
    cr_expect(ev.has_value && ev.value_cents == 500);
    expect_str(ev.dims[3], "5");
    expect_str(ev.id, "7");
    expect_str(ev.dims[1], "7");
    nps_event_parser_destroy(p);
}

Test(event_parse, detail_optional_and_bounded)
{
    nps_event ev;
    const char msg[] = "{\"score\":12}";
    cr_expect_eq(nps_event_parse(parser, msg, sizeof(msg) - 1, &ev, NULL, 0), NPS_INVALID_SCORE);
    char tiny[4] = "xxx";
    cr_expect_eq(nps_event_parse(parser, msg, sizeof(msg) - 1, &ev, tiny, sizeof(tiny)),
                 NPS_INVALID_SCORE);
    cr_expect_eq(strlen(tiny), 3);
    cr_expect_neq(memcmp(tiny, "xxx", 3), 0);
}

/* True when s is valid UTF-8 with no control bytes. */
static bool printable_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int need = *p < 0x80             ? 0
                   : (*p & 0xe0) == 0xc0 ? 1
                   : (*p & 0xf0) == 0xe0 ? 2
                   : (*p & 0xf8) == 0xf0 ? 3
                                         : -1;
        if (need < 0 || *p < 0x20 || *p == 0x7f)
            return false;
        for (int i = 1; i <= need; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += need + 1;
    }
    return true;
}

/* Details go to logs and dead-letter headers: one line of valid UTF-8,
 * even when the excerpt of the value holds a newline or is cut inside a
 * multi-byte character (both found by tests/fuzz). */
Test(event_parse, detail_is_one_printable_line)
{
    nps_event ev;
    cr_expect_eq(parse("{\"type\":{\r\n}}", &ev), NPS_INVALID_TYPE);
    cr_expect(printable_utf8(detail), "detail: %s", detail);
    cr_expect_null(strchr(detail, '\n'));
    char msg[128] = "{\"score\":\"a";
    for (int i = 0; i < 20; i++)
        strcat(msg, "\xc3\xa9"); /* é: the 40-byte excerpt ends inside one */
    strcat(msg, "\"}");
    cr_expect_eq(parse(msg, &ev), NPS_INVALID_SCORE);
    cr_expect(printable_utf8(detail), "detail: %s", detail);
}

/* The fast path (flat, escape-free messages) and the general scanner must
 * give the same verdict, the same detail and the same event on every
 * message: generated events, valid and invalid, and mutations of them
 * that move a message across the fast path's edges (spaces, escapes,
 * control bytes, UTF-8, nesting, truncation). */
static bool same_str(nps_str a, nps_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void expect_same_parse(nps_event_parser *slow, const char *msg, size_t len)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, msg, len);
    nps_event fast_ev, slow_ev;
    char fast_detail[256] = "", slow_detail[256] = "";
    nps_invalid_reason fast =
        nps_event_parse(parser, copy, len, &fast_ev, fast_detail, sizeof(fast_detail));
    nps_invalid_reason general =
        nps_event_parse(slow, copy, len, &slow_ev, slow_detail, sizeof(slow_detail));
    cr_assert_eq(fast, general, "verdicts %s and %s on %.*s", nps_invalid_reason_name(fast),
                 nps_invalid_reason_name(general), (int)len, msg);
    if (fast != NPS_VALID) {
        cr_assert_str_eq(fast_detail, slow_detail, "on %.*s", (int)len, msg);
    } else {
        cr_assert_eq(fast_ev.score, slow_ev.score, "on %.*s", (int)len, msg);
        cr_assert_eq(fast_ev.sent, slow_ev.sent);
        cr_assert_eq(fast_ev.has_ts, slow_ev.has_ts, "on %.*s", (int)len, msg);
        if (fast_ev.has_ts)
            cr_assert_eq(fast_ev.ts_ms, slow_ev.ts_ms, "on %.*s", (int)len, msg);
        cr_assert_eq(fast_ev.has_value, slow_ev.has_value);
        cr_assert_eq(fast_ev.value_cents, slow_ev.value_cents, "on %.*s", (int)len, msg);
        cr_assert(same_str(fast_ev.id, slow_ev.id), "on %.*s", (int)len, msg);
        cr_assert(same_str(fast_ev.comment, slow_ev.comment), "on %.*s", (int)len, msg);
        for (int d = 0; d < views.ndims; d++)
            cr_assert(same_str(fast_ev.dims[d], slow_ev.dims[d]), "dimension %d on %.*s", d,
                      (int)len, msg);
    }
    free(copy);
}

Test(event_parse, fast_path_agrees_with_scanner, .timeout = 120)
{
    static const char *const inserts[] = {
        " ",
        "  ",
        "\"",
        "\\",
        "\\n",
        "\n",
        "\t",
        ",",
        ":",
        "{",
        "}",
        "[1]",
        "0",
        "-",
        ".5",
        "e9",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\x80",
        "\xff",
        "\xed\xa0\x80",
        "\x01",
        "null",
        "true",
        "{\"a\":1}",
        "9.0",
        "\"ts\":",
        "\"score\":7,",
    };
    const size_t ninserts = sizeof(inserts) / sizeof(inserts[0]);
    nps_error err = {{0}};
    nps_event_parser *slow = nps_event_parser_new(&views, 65536, &err);
    cr_assert_not_null(slow, "%s", err.msg);
    nps_event_parser_set_fast(slow, false);
    nps_gen_options options = {
        .seed = 7, .now_ms = EXAMPLE_TS_MS, .invalid_share = 0.3, .duplicate_share = 0.05};
    nps_gen *gen = nps_gen_new(&options, &err);
    cr_assert_not_null(gen, "%s", err.msg);
    char msg[1024], key[128], mutated[1200];
    for (int i = 0; i < 40000; i++) {
        size_t len = nps_gen_next(gen, msg, sizeof(msg) - 1, key, sizeof(key));
        cr_assert_gt(len, 0);
        expect_same_parse(slow, msg, len);
        /* one edit: insert, replace or delete at a random place, or cut */
        uint64_t r = nps_gen_random(gen);
        size_t at = (size_t)(r % (len + 1));
        const char *ins = inserts[(r >> 16) % ninserts];
        size_t ins_len = strlen(ins);
        size_t n = 0;
        switch ((r >> 32) % 4) {
        case 0: /* insert */
            memcpy(mutated, msg, at);
            memcpy(mutated + at, ins, ins_len);
            memcpy(mutated + at + ins_len, msg + at, len - at);
            n = len + ins_len;
            break;
        case 1: /* replace one byte with the insert's */
            memcpy(mutated, msg, len);
            if (at < len)
                mutated[at] = ins[0];
            n = len;
            break;
        case 2: /* delete one byte */
            memcpy(mutated, msg, len);
            if (at < len) {
                memmove(mutated + at, mutated + at + 1, len - at - 1);
                n = len - 1;
            } else {
                n = len;
            }
            break;
        default: /* cut */
            memcpy(mutated, msg, at);
            n = at;
            break;
        }
        expect_same_parse(slow, mutated, n);
    }
    /* messages composed of random fields and values, each kind of value
     * under each key the parser knows */
    static const char *const keys[] = {"score",    "ts",      "type",    "id",
                                       "value",    "comment", "channel", "survey",
                                       "age_band", "region",  "other"};
    static const char *const values[] = {"9",
                                         "0",
                                         "10",
                                         "11",
                                         "-1",
                                         "9.0",
                                         "9.5",
                                         "90e-1",
                                         "1e1",
                                         "-0",
                                         "1763800000123",
                                         "176380000012",
                                         "17638000001234",
                                         "1763800000123.0",
                                         "123456789012345678",
                                         "12345678",
                                         "1234567x",
                                         "1522.4",
                                         "0.005",
                                         "1e12",
                                         "1e13",
                                         "\"9\"",
                                         "\"response\"",
                                         "\"sent\"",
                                         "\"2025-11-22T08:26:40.123Z\"",
                                         "\"2025-11-22T08:26:40+01:00\"",
                                         "\"\"",
                                         "\"web\"",
                                         "\"caf\xc3\xa9\"",
                                         "\"a\\\"b\"",
                                         "null",
                                         "true",
                                         "false",
                                         "[]",
                                         "{}",
                                         "[1,{\"a\":[2]}]",
                                         "01",
                                         "1.",
                                         "-",
                                         "\"\x01\"",
                                         "\"\xc3\""};
    const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
    const size_t nvalues = sizeof(values) / sizeof(values[0]);
    for (int i = 0; i < 40000; i++) {
        uint64_t r = nps_gen_random(gen);
        int nfields = (int)(r % 6);
        size_t n = 0;
        mutated[n++] = '{';
        for (int f = 0; f < nfields; f++) {
            uint64_t q = nps_gen_random(gen);
            const char *space = (q >> 40) % 5 == 0 ? " " : "";
            n += (size_t)snprintf(mutated + n, sizeof(mutated) - n, "%s%s\"%s\"%s:%s%s",
                                  f ? "," : "", space, keys[q % nkeys], space,
                                  values[(q >> 8) % nvalues], space);
        }
        /* usually a valid score, so that the other fields decide */
        if ((r >> 8) % 4)
            n += (size_t)snprintf(mutated + n, sizeof(mutated) - n, "%s\"score\":%d",
                                  nfields ? "," : "", (int)((r >> 16) % 11));
        mutated[n++] = '}';
        expect_same_parse(slow, mutated, n);
    }
    /* spaces everywhere JSON allows them, which the fast path takes */
    const char *spaced = " { \"score\" : 9 , \"ts\" : 1763800000123 , \"channel\" : \"web\" ,"
                         " \"extra\" : [ 1 , 2 ] , \"x\" : null , \"y\" : true } ";
    expect_same_parse(slow, spaced, strlen(spaced));
    const char *flat_spaced =
        " { \"score\" : 9 , \"ts\" : 1763800000123 , \"channel\" : \"w\xc3\xa9\" ,"
        " \"x\" : null , \"y\" : false , \"z\" : -0.5e-3 } ";
    expect_same_parse(slow, flat_spaced, strlen(flat_spaced));
    nps_gen_destroy(gen);
    nps_event_parser_destroy(slow);
}

/* A key given twice counts as given last, and null means absent, for every
 * field: a null after a value clears what the value set, on the fast path
 * and on the scanner alike. */
Test(event_parse, a_repeated_key_counts_as_given_last)
{
    nps_error err = {{0}};
    nps_event_parser *slow = nps_event_parser_new(&views, 65536, &err);
    cr_assert_not_null(slow, "%s", err.msg);
    nps_event_parser_set_fast(slow, false);
    nps_event_parser *parsers[] = {parser, slow};
    for (int i = 0; i < 2; i++) {
        nps_event ev;
        const char *msg = "{\"score\":9,\"value\":40.05,\"id\":\"r-1\",\"comment\":\"slow\","
                          "\"channel\":\"sms\",\"ts\":1763800000123,\"type\":\"sent\","
                          "\"value\":null,\"id\":null,\"comment\":null,\"channel\":null,"
                          "\"ts\":null,\"type\":null}";
        nps_invalid_reason r = parse_with(parsers[i], msg, strlen(msg), &ev);
        cr_assert_eq(r, NPS_VALID, "parser %d: %s", i, detail);
        cr_expect_not(ev.has_value, "parser %d", i);
        cr_expect_eq(ev.value_cents, 0, "parser %d: value %lld cents left", i,
                     (long long)ev.value_cents);
        cr_expect_eq(ev.id.len, 0, "parser %d: id left", i);
        cr_expect_eq(ev.comment.len, 0, "parser %d: comment left", i);
        cr_expect_eq(dim_of(&ev, "channel").len, 0, "parser %d: channel left", i);
        cr_expect_not(ev.has_ts, "parser %d", i);
        cr_expect_not(ev.sent, "parser %d: still an invitation", i);
        cr_expect_eq(ev.score, 9, "parser %d", i);

        msg = "{\"score\":9,\"value\":null,\"value\":12.5,\"type\":null,\"type\":\"sent\"}";
        r = parse_with(parsers[i], msg, strlen(msg), &ev);
        cr_assert_eq(r, NPS_VALID, "parser %d: %s", i, detail);
        cr_expect(ev.has_value && ev.value_cents == 1250, "parser %d", i);
        cr_expect(ev.sent && ev.score == -1, "parser %d", i);
    }
    nps_event_parser_destroy(slow);
}
