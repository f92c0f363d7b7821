/*
 * fuzz_event_parse: libFuzzer target for the event parser and the shard's
 * hot path (DESIGN.md "Event contract").
 *
 * Each input is one Kafka message for the parsers, and its lines are the
 * messages of one batch for a shard (as `run --input` reads a file). The
 * batch is drained at the end of the input, so every input starts from an
 * empty delta and a failure reproduces from its file alone; the deltas
 * keep their table capacity across inputs, as a worker's do across
 * batches. max_segments is small (50) so one input can reach `~overflow`.
 *
 * Invariants; a violation aborts, which libFuzzer reports as a crash:
 *  - the verdict is a reason the parser may give (never `future`); an
 *    invalid one comes with a one-line, NUL-terminated detail inside its
 *    buffer;
 *  - a valid response has a score 0..10, a valid invitation (sent) -1; a
 *    value is finite; dimensions, id and comment are valid UTF-8 and no
 *    longer than the message (or than an int64 in decimal);
 *  - parsing is a function of the bytes: the same parser twice and a
 *    parser whose limit (so its scratch) is exactly the message's size
 *    and that takes no fast path give the same event (or, when invalid,
 *    the same detail); a parser with other dimensions agrees on score,
 *    type, ts and value; a parser whose limit is below the size says
 *    too_large;
 *  - the shard gives the parser's verdict, or `future` exactly when the
 *    event's time is past now + max skew, and counts each message once
 *    (messages = counted + invalid by reason);
 *  - per view: at most max_segments segments, plus `~overflow` only once
 *    that many exist; the cells hold `counted` events, the late pane
 *    `late` of them, `~overflow` `overflowed` of them (over all views);
 *    segment strings are distinct and decode back to the segment's values.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "delta.h"
#include "event_parse.h"
#include "fuzz_require.h"
#include "shard.h"
#include "view.h"

#define FUZZ_MAX_EVENT_BYTES 65536
#define FUZZ_MAX_SEGMENTS 50
#define FUZZ_SMALL_LIMIT 32           /* bytes: the parser that says too_large */
#define FUZZ_NOW_MS 1763800000123LL   /* 2025-11-22, as in the contract's example */
#define FUZZ_OLD_TRANSPORT_MS 5400000 /* a transport timestamp 90 minutes old */
#define FUZZ_INT64_DIGITS 20          /* "-9223372036854775808" */
#define FUZZ_DETAIL 256

static struct {
    nps_config config;        /* the shard's; its views are the parsers' too */
    nps_event_parser *parser; /* limit FUZZ_MAX_EVENT_BYTES */
    nps_event_parser *small;  /* limit FUZZ_SMALL_LIMIT */
    nps_views meta_views;     /* dimensions named like contract fields */
    nps_event_parser *meta;   /* over meta_views */
    nps_shard *shard;         /* max_segments FUZZ_MAX_SEGMENTS */
} fuzz;

static void add_views(nps_views *views, const char *const *specs)
{
    nps_error err;
    for (; *specs; specs++)
        if (nps_views_add(views, *specs, &err) != NPS_OK) {
            fprintf(stderr, "fuzz_event_parse: view %s: %s\n", *specs, err.msg);
            abort();
        }
}

static nps_event_parser *new_parser(const nps_views *views, size_t max_event_bytes)
{
    nps_error err;
    nps_event_parser *parser = nps_event_parser_new(views, max_event_bytes, &err);
    require(parser != NULL);
    return parser;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* The contract's dimensions, a dimension name longer than the
     * parser's 8-byte key prefix, and views that share dimensions. */
    static const char *const views[] = {"by_channel=channel",
                                        "by_survey_region=survey,region",
                                        "by_age=age_band",
                                        "by_all=channel,region,survey,age_band",
                                        "by_long=customer_segment_name,channel",
                                        NULL};
    /* A dimension may be named like a contract field (event_parse.c). */
    static const char *const meta_views[] = {"by_meta=comment,id,type,value", NULL};
    nps_error err;
    (void)argc;
    (void)argv;
    require(nps_config_init(&fuzz.config, &err) == NPS_OK);
    add_views(&fuzz.config.views, views);
    fuzz.config.max_segments = FUZZ_MAX_SEGMENTS;
    fuzz.config.max_event_bytes = FUZZ_MAX_EVENT_BYTES;
    /* comment themes on, as `run --brokers` has them: comments reach the
     * term splitter and the sketches */
    require(nps_windows_set_themes(&fuzz.config.windows, "24h,7d", false, &err) == NPS_OK);
    nps_views_init(&fuzz.meta_views);
    add_views(&fuzz.meta_views, meta_views);
    fuzz.parser = new_parser(&fuzz.config.views, FUZZ_MAX_EVENT_BYTES);
    fuzz.small = new_parser(&fuzz.config.views, FUZZ_SMALL_LIMIT);
    fuzz.meta = new_parser(&fuzz.meta_views, FUZZ_MAX_EVENT_BYTES);
    fuzz.shard = nps_shard_new(&fuzz.config, &err);
    require(fuzz.shard != NULL);
    return 0;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned lead = s[i];
        size_t more;
        uint32_t cp, min;
        if (lead < 0x80) {
            i++;
            continue;
        }
        if (lead >= 0xC2 && lead <= 0xDF) {
            more = 1, cp = lead & 0x1F, min = 0x80;
        } else if ((lead & 0xF0) == 0xE0) {
            more = 2, cp = lead & 0x0F, min = 0x800;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            more = 3, cp = lead & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

static void check_str(nps_str s, size_t msg_len)
{
    require(s.len == 0 || s.ptr != NULL);
    /* Decoding never grows a string; an integer dimension is re-printed. */
    require(s.len <= msg_len || s.len <= FUZZ_INT64_DIGITS);
    require(utf8_valid((const unsigned char *)s.ptr, s.len));
}

static void check_verdict(nps_invalid_reason reason, const char *detail, size_t detail_size)
{
    require((unsigned)reason < NPS_INVALID_REASONS && reason != NPS_INVALID_FUTURE);
    if (reason == NPS_VALID || !detail || !detail_size)
        return;
    require(memchr(detail, '\0', detail_size) != NULL);
    require(detail_size == 1 || detail[0] != '\0');
    /* One line (event_parse.h): it becomes a dead-letter header. */
    require(strpbrk(detail, "\r\n") == NULL);
}

static void check_event(const nps_event *ev, int ndims, size_t msg_len)
{
    if (ev->sent)
        require(ev->score == -1);
    else
        require(ev->score >= 0 && ev->score <= NPS_SCORE_MAX);
    require(ev->value_cents >= 0 && (uint64_t)ev->value_cents <= NPS_VALUE_MAX_CENTS);
    require(ev->has_value || ev->value_cents == 0);
    check_str(ev->id, msg_len);
    check_str(ev->comment, msg_len);
    for (int d = 0; d < ndims; d++)
        check_str(ev->dims[d], msg_len);
}

static bool str_equal(nps_str a, nps_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* What every parser must agree on, whatever its dimensions. */
static bool core_equal(const nps_event *a, const nps_event *b)
{
    return a->has_ts == b->has_ts && (!a->has_ts || a->ts_ms == b->ts_ms) && a->sent == b->sent &&
           a->score == b->score && a->has_value == b->has_value && a->value_cents == b->value_cents;
}

static bool events_equal(const nps_event *a, const nps_event *b, int ndims)
{
    if (!core_equal(a, b) || !str_equal(a->id, b->id) || !str_equal(a->comment, b->comment))
        return false;
    for (int d = 0; d < ndims; d++)
        if (!str_equal(a->dims[d], b->dims[d]))
            return false;
    return true;
}

/* The same bytes again, through a parser whose scratch is exactly the
 * message's size and that takes no fast path (the same verdict, detail
 * and event as the fast path's), and through the first parser with a
 * short detail buffer whose bytes past detail_size must stay untouched. */
static void check_repeatable(const char *msg, size_t len, nps_invalid_reason reason)
{
    int ndims = fuzz.config.views.ndims;
    nps_event exact_ev, again_ev;
    nps_event_parser *exact = new_parser(&fuzz.config.views, len ? len : 1);
    nps_event_parser_set_fast(exact, false);
    char exact_detail[FUZZ_DETAIL], fast_detail[FUZZ_DETAIL];
    require(nps_event_parse(exact, msg, len, &exact_ev, exact_detail, sizeof(exact_detail)) ==
            reason);
    require(nps_event_parse(fuzz.parser, msg, len, &again_ev, fast_detail, sizeof(fast_detail)) ==
            reason);
    if (reason == NPS_VALID)
        require(events_equal(&exact_ev, &again_ev, ndims));
    else
        require(strcmp(exact_detail, fast_detail) == 0);

    char detail[16];
    size_t detail_size = len % 8;
    memset(detail, 0x5a, sizeof(detail));
    require(nps_event_parse(fuzz.parser, msg, len, &again_ev, detail, detail_size) == reason);
    check_verdict(reason, detail, detail_size);
    for (size_t i = detail_size; i < sizeof(detail); i++)
        require(detail[i] == 0x5a);
    if (reason == NPS_VALID)
        require(events_equal(&exact_ev, &again_ev, ndims));
    nps_event_parser_destroy(exact);
}

static void check_other_parsers(const char *msg, size_t len, nps_invalid_reason reason,
                                const nps_event *ev)
{
    nps_event other;
    nps_invalid_reason small = nps_event_parse(fuzz.small, msg, len, &other, NULL, 0);
    require(len > FUZZ_SMALL_LIMIT ? small == NPS_INVALID_TOO_LARGE : small == reason);

    char detail[FUZZ_DETAIL];
    nps_invalid_reason meta = nps_event_parse(fuzz.meta, msg, len, &other, detail, sizeof(detail));
    check_verdict(meta, detail, sizeof(detail));
    if (meta != NPS_VALID)
        return;
    check_event(&other, fuzz.meta_views.ndims, len);
    if (reason == NPS_VALID)
        require(core_equal(ev, &other));
}

/* The whole input as one message. The event must be compared before the
 * next parse with fuzz.parser reuses its scratch. */
static void check_parse(const char *msg, size_t len)
{
    nps_event ev;
    char detail[FUZZ_DETAIL];
    nps_invalid_reason reason = nps_event_parse(fuzz.parser, msg, len, &ev, detail, sizeof(detail));
    check_verdict(reason, detail, sizeof(detail));
    if (reason == NPS_VALID)
        check_event(&ev, fuzz.config.views.ndims, len);
    check_other_parsers(msg, len, reason, &ev);
    check_repeatable(msg, len, reason);
}

typedef struct batch_tally {
    uint64_t messages;
    uint64_t counted;
    uint64_t invalid[NPS_INVALID_REASONS];
} batch_tally;

/* One line through the shard, in a buffer of its exact size so that
 * AddressSanitizer sees any read past the message. */
static void add_line(const char *line, size_t len, int64_t now_ms, int64_t fallback_ts_ms,
                     batch_tally *tally)
{
    char *msg = malloc(len ? len : 1);
    require(msg != NULL);
    memcpy(msg, line, len);
    nps_event ev;
    nps_invalid_reason expect = nps_event_parse(fuzz.parser, msg, len, &ev, NULL, 0);
    if (expect == NPS_VALID) {
        int64_t ts = ev.has_ts ? ev.ts_ms : fallback_ts_ms >= 0 ? fallback_ts_ms : now_ms;
        if (ts > now_ms + fuzz.config.max_skew_ms)
            expect = NPS_INVALID_FUTURE;
    }

    nps_invalid_reason got;
    char detail[FUZZ_DETAIL];
    require(nps_shard_add(fuzz.shard, msg, len, fallback_ts_ms, &got, detail, sizeof(detail)) ==
            NPS_OK);
    require(got == expect);
    if (got != NPS_VALID)
        require(memchr(detail, '\0', sizeof(detail)) != NULL);
    tally->messages++;
    if (got == NPS_VALID)
        tally->counted++;
    else
        tally->invalid[got]++;
    free(msg);
}

/* The bytes nps_percent_encode leaves as they are (RFC 3986 unreserved). */
static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* An upper-case hex digit's value, or -1 (the encoder writes %XX). */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* True when `text` is the canonical percent-encoding of `value`: only
 * unreserved bytes as they are, every other byte as %XX. An independent
 * decoder, so an encoder bug cannot hide behind itself. */
static bool decodes_to(const char *text, size_t len, nps_str value)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_digit(text[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(text[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = (unsigned char)(hi << 4 | lo);
            if (unreserved(c))
                return false;
            i += 2;
        } else if (!unreserved(c)) {
            return false;
        }
        if (o >= value.len || (unsigned char)value.ptr[o++] != c)
            return false;
    }
    return o == value.len;
}

/* "d1=v1,d2=v2" of `view` decodes back to `values`; `all` is "*". */
static bool segment_decodes_to(int view, const char *text, size_t len, const nps_str *values)
{
    const nps_views *views = &fuzz.config.views;
    const nps_view *v = &views->views[view];
    if (v->ndims == 0)
        return len == 1 && text[0] == '*';
    const char *p = text, *end = text + len;
    for (int i = 0; i < v->ndims; i++) {
        const char *name = views->dim_names[v->dim[i]];
        size_t name_len = strlen(name);
        if ((size_t)(end - p) <= name_len || memcmp(p, name, name_len) != 0 || p[name_len] != '=')
            return false;
        p += name_len + 1;
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (!decodes_to(p, (size_t)(stop - p), values[v->dim[i]]))
            return false;
        if ((i + 1 < v->ndims) != (comma != NULL))
            return false;
        p = comma ? comma + 1 : end;
    }
    return p == end;
}

/* The segment string, formatted into a buffer of exactly its size; a
 * short buffer gets its prefix and nothing past it. */
static char *segment_string(const nps_delta *delta, int view, uint32_t segment, size_t *len)
{
    const nps_views *views = &fuzz.config.views;
    nps_str values[NPS_MAX_DIMS] = {{0}};
    nps_delta_segment_values(delta, views, view, segment, values);
    *len = nps_segment_format(views, view, values, NULL, 0);
    char *text = malloc(*len ? *len : 1);
    require(text != NULL);
    require(nps_segment_format(views, view, values, text, *len) == *len);
    char prefix[8 + 8];
    memset(prefix, 0x5a, sizeof(prefix));
    require(nps_segment_format(views, view, values, prefix, 8) == *len);
    require(memcmp(prefix, text, *len < 8 ? *len : 8) == 0);
    for (size_t i = 8; i < sizeof(prefix); i++)
        require(prefix[i] == 0x5a);
    require(segment_decodes_to(view, text, *len, values));
    return text;
}

static void check_segment_strings(const nps_delta *delta, int view)
{
    const nps_delta_view *dv = &delta->views[view];
    char *texts[FUZZ_MAX_SEGMENTS + 1];
    size_t lens[FUZZ_MAX_SEGMENTS + 1];
    uint32_t n = 0;
    for (uint32_t s = 0; s < dv->nsegments; s++) {
        if (dv->segments[s].overflow)
            continue;
        texts[n] = segment_string(delta, view, s, &lens[n]);
        for (uint32_t k = 0; k < n; k++)
            require(lens[k] != lens[n] || memcmp(texts[k], texts[n], lens[n]) != 0);
        n++;
    }
    for (uint32_t k = 0; k < n; k++)
        free(texts[k]);
}

/* Sums a view's cells: all events, the late pane's, `~overflow`'s. */
static void check_view(const nps_delta *delta, int view, uint64_t *overflowed)
{
    const nps_delta_view *dv = &delta->views[view];
    if (dv->overflow_segment == NPS_SEGMENT_NONE) {
        require(dv->nsegments <= FUZZ_MAX_SEGMENTS);
    } else {
        require(dv->nsegments == FUZZ_MAX_SEGMENTS + 1);
        require(dv->segments[dv->overflow_segment].overflow);
    }
    uint64_t events = 0, late = 0;
    for (uint32_t c = 0; c < dv->ncells; c++) {
        const nps_cell *cell = &dv->cells[c];
        require(cell->key.segment < dv->nsegments);
        uint64_t n = cell->sent;
        for (int b = 0; b < NPS_BUCKETS; b++)
            n += cell->h[b];
        events += n;
        late += cell->key.pane == NPS_PANE_LATE ? n : 0;
        *overflowed += cell->key.segment == dv->overflow_segment ? n : 0;
    }
    require(events == delta->counted);
    require(late == delta->late);
    check_segment_strings(delta, view);
}

static void check_delta(const nps_delta *delta, const batch_tally *tally)
{
    require(delta->messages == tally->messages);
    require(delta->counted == tally->counted);
    for (int r = 0; r < NPS_INVALID_REASONS; r++)
        require(delta->invalid[r] == tally->invalid[r]);
    require(delta->nviews == fuzz.config.views.nviews);
    uint64_t overflowed = 0;
    for (int v = 0; v < delta->nviews; v++)
        check_view(delta, v, &overflowed);
    require(overflowed == delta->overflowed);
}

/* The worker publishes, the merger takes, checks and gives back: the
 * hand-off cycle of a batch, on one thread. */
static void drain_batch(const batch_tally *tally)
{
    nps_shard_drain(fuzz.shard);
    nps_delta *delta = nps_shard_take(fuzz.shard);
    if (tally->messages == 0) {
        require(delta == NULL);
        return;
    }
    require(delta != NULL);
    check_delta(delta, tally);
    nps_shard_give_back(fuzz.shard, delta);
}

/* The input's lines as one batch. now moves with the input's size so
 * pane boundaries vary; every other line has an old transport timestamp
 * for events without a ts. */
static void check_batch(const char *data, size_t size)
{
    int64_t now_ms = FUZZ_NOW_MS + (int64_t)size * 61001;
    batch_tally tally = {0};
    nps_shard_set_now(fuzz.shard, now_ms);
    const char *p = data, *end = data + size;
    for (int line = 0; p < end; line++) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        size_t len = newline ? (size_t)(newline - p) : (size_t)(end - p);
        int64_t fallback_ts_ms = line % 2 ? now_ms - FUZZ_OLD_TRANSPORT_MS : -1;
        add_line(p, len, now_ms, fallback_ts_ms, &tally);
        p += len + 1;
    }
    drain_batch(&tally);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse((const char *)data, size);
    check_batch((const char *)data, size);
    return 0;
}
