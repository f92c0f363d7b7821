/*
 * The engine against a plain reference model: many thousands of random
 * events (valid, invalid, late, future, sent; dimension values with
 * escapes, integers, nulls and absences) go through shard -> hand-off ->
 * merged state while the clock moves; every (view, segment, window) must
 * equal what the model computes from the list of events it generated.
 * The model knows nothing of panes tables or deltas: per window it keeps
 * an event iff the event's pane is not older than the window's 60th pane
 * at query time, exactly as DESIGN.md defines a window.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "shard.h"
#include "state.h"

#define NOW0 1763800000000LL
#define DAY (86400000LL)

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A dimension value as the model knows it (decoded) and as JSON text. */
typedef struct dim_choice {
    const char *decoded; /* NULL: absent or null -> empty */
    const char *json;    /* NULL: field absent */
} dim_choice;

static const dim_choice channels[] = {
    {"email", "\"email\""},
    {"sms", "\"sms\""},
    {"web", "\"w\\u0065b\""},
    {"in app", "\"in app\""},
    {NULL, "null"},
    {NULL, NULL},
    {"5", "5"},
    {"5", "5.0"},
    {"caf\xc3\xa9", "\"caf\\u00e9\""},
};
static const dim_choice regions[] = {
    {"IN", "\"IN\""}, {"US", "\"US\""}, {"a,b=c", "\"a,b=c\""}, {"q\"t", "\"q\\\"t\""},
    {NULL, NULL},     {"", "\"\""},     {"-7", "-7"},
};
static const dim_choice surveys[] = {
    {"checkout", "\"checkout\""},
    {"app", "\"app\""},
    {"support", "\"support\""},
};

typedef struct model_event {
    int64_t ts;
    int score;           /* -1: sent */
    int64_t value_cents; /* -1: no value */
    bool late;           /* judged at processing time */
    int channel, region, survey;
} model_event;

static void percent(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out = '\0';
}

/* The model's segment string of an event in view v (views as set up in
 * make_config: all, by_channel, by_survey_region, by_region). */
static void model_segment(const model_event *e, int v, char *out)
{
    char a[64], b[64];
    switch (v) {
    case 0:
        strcpy(out, "*");
        break;
    case 1:
        percent(channels[e->channel].decoded, a);
        sprintf(out, "channel=%s", a);
        break;
    case 2:
        percent(surveys[e->survey].decoded, a);
        percent(regions[e->region].decoded, b);
        sprintf(out, "survey=%s,region=%s", a, b);
        break;
    default:
        percent(regions[e->region].decoded, a);
        sprintf(out, "region=%s", a);
        break;
    }
}

static void make_config(nps_config *config, uint32_t max_segments)
{
    nps_error err;
    cr_assert_eq(nps_config_init(config, &err), NPS_OK);
    cr_assert_eq(nps_views_add(&config->views, "by_channel=channel", &err), NPS_OK, "%s", err.msg);
    cr_assert_eq(nps_views_add(&config->views, "by_survey_region=survey,region", &err), NPS_OK);
    cr_assert_eq(nps_views_add(&config->views, "by_region=region", &err), NPS_OK);
    config->max_segments = max_segments;
    /* trends are windows the pipeline publishes per bucket: the state
     * keeps them like any window */
    cr_assert_eq(nps_windows_add_trends(&config->windows, "1h:7d,1d:90d", &err), NPS_OK, "%s",
                 err.msg);
}

static size_t format_event(const model_event *e, char *out, size_t out_size)
{
    /* Fields in a random order, with unknown and nested fields. */
    char parts[8][160];
    int n = 0;
    if (rnd() % 2)
        sprintf(parts[n++], "\"ts\":%" PRId64, e->ts);
    else {
        /* RFC 3339 in UTC with milliseconds */
        time_t secs = (time_t)(e->ts / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        sprintf(parts[n++], "\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(e->ts % 1000));
    }
    if (e->score >= 0)
        sprintf(parts[n++], rnd() % 4 ? "\"score\":%d" : "\"score\":%d.0", e->score);
    else
        sprintf(parts[n++], "\"type\":\"sent\"");
    if (e->value_cents >= 0) {
        long long c = e->value_cents;
        switch (rnd() % 4) {
        case 0:
            sprintf(parts[n++], "\"value\":%lld.%02lld", c / 100, c % 100);
            break;
        case 1: /* the same amount in cents with an exponent */
            sprintf(parts[n++], "\"value\":%llde-2", c);
            break;
        case 2: /* a third decimal, rounded half up */
            sprintf(parts[n++], "\"value\":%lld.%02lld%d", c / 100, c % 100, (int)(rnd() % 5));
            break;
        default: /* a cent less and a half: rounds up to the amount */
            if (c > 0)
                sprintf(parts[n++], "\"value\":%lld.%02lld5", (c - 1) / 100, (c - 1) % 100);
            else
                sprintf(parts[n++], "\"value\":0");
            break;
        }
    }
    if (channels[e->channel].json)
        sprintf(parts[n++], "\"channel\":%s", channels[e->channel].json);
    if (regions[e->region].json)
        sprintf(parts[n++], "\"region\":%s", regions[e->region].json);
    sprintf(parts[n++], "\"survey\":%s", surveys[e->survey].json);
    sprintf(parts[n++], "\"extra\":{\"nested\":[1,{\"score\":99}],\"channel\":\"x\"}");
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        if (i == j)
            continue;
        char tmp[160];
        strcpy(tmp, parts[i]);
        strcpy(parts[i], parts[j]);
        strcpy(parts[j], tmp);
    }
    size_t len = (size_t)snprintf(out, out_size, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, out_size - len, "%s%s", i ? "," : "", parts[i]);
    len += (size_t)snprintf(out + len, out_size - len, "}");
    return len;
}

static const char *invalid_messages[] = {
    "{\"score\":11,\"channel\":\"email\"}",
    "{\"score\":\"9\"}",
    "{\"score\":9.5}",
    "{\"score\":-1}",
    "{\"score\":null}",
    "{\"channel\":\"email\"}",
    "{\"score\":7,",
    "{\"score\":7,\"ts\":\"soon\"}",
    "[1,2]",
    "{\"score\":7,\"channel\":1.5}",
};

typedef struct run {
    nps_config config;
    nps_shard *shard;
    nps_state *state;
    model_event *events;
    size_t nevents;
    uint64_t invalid, future;
} run;

static void run_init(run *r, uint32_t max_segments, size_t capacity)
{
    nps_error err;
    make_config(&r->config, max_segments);
    r->shard = nps_shard_new(&r->config, &err);
    cr_assert_not_null(r->shard, "%s", err.msg);
    r->state = nps_state_new(&r->config, &err);
    cr_assert_not_null(r->state, "%s", err.msg);
    r->events = calloc(capacity, sizeof(model_event));
    r->nevents = 0;
    r->invalid = r->future = 0;
}

static void run_destroy(run *r)
{
    nps_state_destroy(r->state);
    nps_shard_destroy(r->shard);
    free(r->events);
}

/* One batch at clock `now`: n random messages, then hand-off and merge. */
static void run_batch(run *r, int64_t now, int n)
{
    nps_shard_set_now(r->shard, now);
    char msg[1024];
    for (int i = 0; i < n; i++) {
        nps_invalid_reason reason;
        if (rnd() % 20 == 0) {
            const char *bad = invalid_messages[rnd() % (sizeof(invalid_messages) / sizeof(char *))];
            cr_assert_eq(nps_shard_add(r->shard, bad, strlen(bad), -1, &reason, NULL, 0), NPS_OK);
            cr_assert_neq(reason, NPS_VALID, "accepted invalid %s", bad);
            r->invalid++;
            continue;
        }
        model_event e = {
            .channel = (int)(rnd() % (sizeof(channels) / sizeof(channels[0]))),
            .region = (int)(rnd() % (sizeof(regions) / sizeof(regions[0]))),
            .survey = (int)(rnd() % (sizeof(surveys) / sizeof(surveys[0]))),
            .score = rnd() % 10 == 0 ? -1 : (int)(rnd() % 11),
            .value_cents = rnd() % 3 == 0 ? -1 : (int64_t)(rnd() % 100000000),
        };
        /* Mostly recent, some days old, some beyond 30 days (late), some
         * ahead of now within and beyond the 5 minute skew. */
        uint64_t kind = rnd() % 100;
        if (kind < 60)
            e.ts = now - (int64_t)(rnd() % (2 * 3600000ULL));
        else if (kind < 85)
            e.ts = now - (int64_t)(rnd() % (uint64_t)(100 * DAY));
        else if (kind < 93)
            e.ts = now + (int64_t)(rnd() % 300001ULL);
        else
            e.ts = now + 300001 + (int64_t)(rnd() % 3600000ULL);
        size_t len = format_event(&e, msg, sizeof(msg));
        cr_assert_eq(nps_shard_add(r->shard, msg, len, -1, &reason, NULL, 0), NPS_OK);
        if (e.ts > now + 300000) {
            cr_assert_eq(reason, NPS_INVALID_FUTURE, "%s", msg);
            r->future++;
            continue;
        }
        cr_assert_eq(reason, NPS_VALID, "rejected %s as %s", msg, nps_invalid_reason_name(reason));
        /* Late: the 30d window's pane of ts is older than its 60th pane. */
        int64_t pane_30d = 30 * DAY / 60;
        int64_t low = now / pane_30d - 59;
        e.late = (e.ts >= 0 ? e.ts / pane_30d : -1) < low;
        r->events[r->nevents++] = e;
    }
    cr_assert(nps_shard_publish(r->shard) || n == 0);
    nps_delta *delta = nps_shard_take(r->shard);
    cr_assert_not_null(delta);
    nps_error err;
    cr_assert_eq(nps_state_apply(r->state, delta, now, &err), NPS_OK, "%s", err.msg);
    nps_shard_give_back(r->shard, delta);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* Compare every segment of every view and window with the model at q. */
static void check_against_model(run *r, int64_t q)
{
    nps_state_advance(r->state, q);
    const nps_windows *ws = &r->config.windows;
    char name[256];
    size_t checked = 0;
    for (int v = 0; v < r->config.views.nviews; v++) {
        size_t nseg = nps_state_segment_count(r->state, v);
        for (size_t s = 0; s < nseg; s++) {
            const char *segment = nps_state_segment_name(r->state, v, s);
            for (int w = 0; w < ws->n; w++) {
                nps_counts expect = {0}, got;
                for (size_t i = 0; i < r->nevents; i++) {
                    const model_event *e = &r->events[i];
                    model_segment(e, v, name);
                    if (strcmp(name, segment) != 0)
                        continue;
                    if (ws->w[w].size_ms) {
                        int64_t pane_ms = ws->w[w].pane_ms;
                        if ((e->late && !ws->w[w].trend) ||
                            floor_div(e->ts, pane_ms) <
                                floor_div(q, pane_ms) - (ws->w[w].npanes - 1))
                            continue;
                    }
                    if (e->score < 0) {
                        expect.sent++;
                    } else {
                        expect.h[e->score]++;
                        if (e->value_cents > 0)
                            expect.value[nps_score_class(e->score)] += (uint64_t)e->value_cents;
                    }
                }
                cr_assert(nps_state_get(r->state, v, segment, w, &got));
                for (int b = 0; b < NPS_BUCKETS; b++)
                    cr_assert_eq(got.h[b], expect.h[b],
                                 "view %s segment %s window %s h%d: %" PRIu64 " != model %" PRIu64,
                                 r->config.views.views[v].name, segment, ws->w[w].name, b, got.h[b],
                                 expect.h[b]);
                cr_assert_eq(got.sent, expect.sent, "sent of %s %s", segment, ws->w[w].name);
                for (int k = 0; k < NPS_CLASSES; k++)
                    cr_assert_eq(got.value[k], expect.value[k],
                                 "view %s segment %s window %s value[%d]: %" PRIu64
                                 " != model %" PRIu64,
                                 r->config.views.views[v].name, segment, ws->w[w].name, k,
                                 got.value[k], expect.value[k]);
                checked++;
            }
        }
        /* Every segment the model has exists in the state. */
        for (size_t i = 0; i < r->nevents; i++) {
            nps_counts got;
            model_segment(&r->events[i], v, name);
            cr_assert(nps_state_get(r->state, v, name, ws->n - 1, &got), "missing %s", name);
        }
    }
    cr_assert_gt(checked, 100);
}

Test(engine_model, random_events_match_reference_in_every_view_and_window)
{
    run r;
    rng_state = 20251122;
    run_init(&r, 100000, 40000);
    int64_t now = NOW0;
    for (int batch = 0; batch < 40; batch++) {
        run_batch(&r, now, 900 + (int)(rnd() % 200));
        now += (int64_t)(rnd() % 120000); /* the clock moves 0-2 minutes */
    }
    nps_state_stats st;
    nps_state_get_stats(r.state, &st);
    cr_assert_eq(st.counted, r.nevents);
    cr_assert_eq(st.invalid[NPS_INVALID_FUTURE], r.future);
    uint64_t invalid = 0, late = 0;
    for (int i = 1; i < NPS_INVALID_REASONS; i++)
        invalid += st.invalid[i];
    for (size_t i = 0; i < r.nevents; i++)
        late += r.events[i].late;
    cr_assert_eq(invalid, r.invalid + r.future);
    cr_assert_eq(st.late, late);
    cr_assert_gt(late, 0, "the run must include late events");
    check_against_model(&r, now);
    /* Time passes with no events: windows shrink, exactly as the model. */
    check_against_model(&r, now + 4 * 60000);
    check_against_model(&r, now + 3 * 3600000);
    check_against_model(&r, now + 8 * DAY);
    check_against_model(&r, now + 60 * DAY); /* only the daily trend and total hold events */
    run_destroy(&r);
}

Test(engine_model, the_5m_window_empties_and_total_stays)
{
    run r;
    rng_state = 7;
    run_init(&r, 100000, 5000);
    run_batch(&r, NOW0, 2000);
    nps_counts c5, total;
    int w5 = nps_windows_find(&r.config.windows, "5m");
    int wt = nps_windows_find(&r.config.windows, "total");
    nps_state_advance(r.state, NOW0 + 6 * 60000 + 1);
    cr_assert(nps_state_get(r.state, 0, "*", w5, &c5));
    cr_assert(nps_state_get(r.state, 0, "*", wt, &total));
    /* only events from the future (within skew) can still be in 5m */
    nps_counts expect = {0};
    for (size_t i = 0; i < r.nevents; i++)
        if (!r.events[i].late &&
            r.events[i].ts >= (NOW0 + 6 * 60000 + 1) / 5000 * 5000 - 59 * 5000) {
            if (r.events[i].score < 0) {
                expect.sent++;
            } else {
                expect.h[r.events[i].score]++;
                if (r.events[i].value_cents > 0)
                    expect.value[nps_score_class(r.events[i].score)] +=
                        (uint64_t)r.events[i].value_cents;
            }
        }
    cr_assert_eq(memcmp(&c5, &expect, sizeof(c5)), 0);
    nps_state_advance(r.state, NOW0 + 3600000);
    cr_assert(nps_state_get(r.state, 0, "*", w5, &c5));
    cr_assert(nps_counts_is_zero(&c5), "5m window not empty an hour later");
    nps_counts total_after;
    cr_assert(nps_state_get(r.state, 0, "*", wt, &total_after));
    cr_assert_eq(memcmp(&total, &total_after, sizeof(total)), 0);
    uint64_t n = total.sent;
    for (int b = 0; b < NPS_BUCKETS; b++)
        n += total.h[b];
    cr_assert_eq(n, r.nevents);
    run_destroy(&r);
}

/* An advance whose low panes have not moved skips the walk of the
 * segments (state.c); a batch merged at a clock behind the last advance
 * adds panes below those low panes, and the next advance must still drop
 * them, though its low panes equal the last ones. */
Test(engine_model, a_batch_behind_the_last_advance_still_expires)
{
    run r;
    rng_state = 11;
    run_init(&r, 100000, 4000);
    run_batch(&r, NOW0 + 10 * 60000, 1500);
    check_against_model(&r, NOW0 + 10 * 60000);
    run_batch(&r, NOW0, 1500); /* the clock stepped back ten minutes */
    check_against_model(&r, NOW0 + 10 * 60000);
    check_against_model(&r, NOW0 + 10 * 60000 + 1);
    check_against_model(&r, NOW0 + 3 * 3600000);
    run_destroy(&r);
}

/* Sum over a view's segments (with `~overflow`) equals `all`, per window. */
static void check_views_sum_to_all(run *r)
{
    for (int w = 0; w < r->config.windows.n; w++) {
        nps_counts all;
        cr_assert(nps_state_get(r->state, 0, "*", w, &all));
        for (int v = 1; v < r->config.views.nviews; v++) {
            nps_counts sum = {0}, c;
            size_t nseg = nps_state_segment_count(r->state, v);
            for (size_t s = 0; s < nseg; s++) {
                cr_assert(
                    nps_state_get(r->state, v, nps_state_segment_name(r->state, v, s), w, &c));
                nps_counts_add(&sum, &c);
            }
            cr_assert_eq(memcmp(&sum, &all, sizeof(sum)), 0,
                         "view %s window %s does not sum to all", r->config.views.views[v].name,
                         r->config.windows.w[w].name);
        }
    }
}

Test(engine_model, cardinality_bound_sends_new_segments_to_overflow)
{
    run r;
    rng_state = 99;
    run_init(&r, 4, 20000);
    int64_t now = NOW0;
    for (int batch = 0; batch < 10; batch++, now += 30000)
        run_batch(&r, now, 1000);
    for (int v = 1; v < r.config.views.nviews; v++) {
        size_t nseg = nps_state_segment_count(r.state, v);
        size_t regular = 0;
        bool has_overflow = false;
        for (size_t s = 0; s < nseg; s++) {
            if (strcmp(nps_state_segment_name(r.state, v, s), NPS_SEGMENT_OVERFLOW) == 0)
                has_overflow = true;
            else
                regular++;
        }
        cr_assert_leq(regular, 4, "view %s holds %zu segments", r.config.views.views[v].name,
                      regular);
        cr_assert(has_overflow, "view %s has no ~overflow", r.config.views.views[v].name);
    }
    nps_state_stats st;
    nps_state_get_stats(r.state, &st);
    cr_assert_gt(st.overflowed, 0);
    check_views_sum_to_all(&r);
    run_destroy(&r);
}

Test(engine_model, overflow_is_exact_for_a_known_sequence)
{
    nps_config config;
    nps_error err;
    make_config(&config, 2);
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_state *state = nps_state_new(&config, &err);
    const char *msgs[] = {
        "{\"score\":10,\"channel\":\"a\"}", "{\"score\":0,\"channel\":\"b\"}",
        "{\"score\":5,\"channel\":\"c\"}",  "{\"score\":9,\"channel\":\"a\"}",
        "{\"score\":8,\"channel\":\"d\"}",  "{\"score\":3,\"channel\":\"d\"}",
        "{\"score\":4,\"channel\":\"e\"}",
    };
    nps_shard_set_now(shard, NOW0);
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        nps_invalid_reason reason;
        cr_assert_eq(nps_shard_add(shard, msgs[i], strlen(msgs[i]), NOW0, &reason, NULL, 0),
                     NPS_OK);
        cr_assert_eq(reason, NPS_VALID);
    }
    cr_assert(nps_shard_publish(shard));
    nps_delta *delta = nps_shard_take(shard);
    cr_assert_eq(nps_state_apply(state, delta, NOW0, &err), NPS_OK);
    nps_shard_give_back(shard, delta);
    int total = config.windows.n - 1;
    nps_counts c;
    cr_assert(nps_state_get(state, 1, "channel=a", total, &c));
    cr_assert(c.h[10] == 1 && c.h[9] == 1);
    cr_assert(nps_state_get(state, 1, "channel=b", total, &c));
    cr_assert(c.h[0] == 1);
    cr_assert_not(nps_state_get(state, 1, "channel=c", total, &c));
    cr_assert(nps_state_get(state, 1, NPS_SEGMENT_OVERFLOW, total, &c));
    cr_assert(c.h[5] == 1 && c.h[8] == 1 && c.h[3] == 1 && c.h[4] == 1,
              "overflow holds c, d twice and e");
    nps_state_stats st;
    nps_state_get_stats(state, &st);
    /* once per event sent there: new values and a value seen before */
    cr_assert_eq(st.overflowed, 4);
    nps_state_destroy(state);
    nps_shard_destroy(shard);
}
