/*
 * event_parse: the event contract on top of json_scan.
 *
 * Hot path: no allocation, no lock. A flat message without escapes takes
 * the fast path (plain_parse: a quote index, one compare per expected
 * key); any other goes to json_scan's iterator, a short table look-up per
 * key. Strings without escapes are used in place; escaped
 * ones are decoded into the parser's scratch buffer, which is as large as
 * the largest accepted message, so decoding (which never grows a string)
 * always fits.
 */
#include "event_parse.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"
#include "timestamp.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum field_role {
    ROLE_NONE = 0,
    ROLE_SCORE = 1 << 0,
    ROLE_TS = 1 << 1,
    ROLE_TYPE = 1 << 2,
    ROLE_ID = 1 << 3,
    ROLE_VALUE = 1 << 4,
    ROLE_COMMENT = 1 << 5,
};

#define MAX_FIELDS (NPS_MAX_DIMS + 6)

typedef struct field {
    const char *name;
    size_t len;
    uint64_t prefix; /* the first min(len, 8) bytes, zero-padded */
    unsigned roles;
    int dim;      /* -1 when not a dimension */
    uint8_t next; /* next field index + 1 in the same bucket */
    /* The key as it stands in a compact message, `"name":`, for the fast
     * path's guess; pattern_mask has a bit per byte of it, 0 when it is
     * longer than 16 bytes. */
    unsigned pattern_mask;
    char pattern[16];
} field;

/* Positions of a message's fields that the fast path remembers. */
#define SHAPE_MAX 32

struct nps_event_parser {
    size_t max_event_bytes;
    int ndims;
    int nfields;
    field fields[MAX_FIELDS];
    uint8_t buckets[256];                       /* key_bucket -> first field index + 1 */
    char dim_names[NPS_MAX_DIMS][NPS_NAME_MAX]; /* what fields[].name points at */
    char int_text[NPS_MAX_DIMS][24];            /* decimal form of integer dimensions */
    char *scratch;                              /* max_event_bytes: decoded strings */
    size_t scratch_used;
    uint64_t *quotes; /* the quote index of the fast path (plain_parse) */
    bool fast;        /* plain_parse on: tests turn it off to compare */
    /* The fields of the last message on the fast path, by position (index
     * + 1; 0: a key of no field): producers send their fields in one
     * order, so the next message's key at a position is checked against
     * this guess first, in one compare. */
    uint8_t shape[SHAPE_MAX];
};

/* Messages up to this size are tried on the fast path first; larger ones
 * (rare: a long comment) go to the scanner, so the index stays small. */
#define FAST_MAX_BYTES 65536

static const char *const reason_names[NPS_INVALID_REASONS] = {
    [NPS_VALID] = "valid",
    [NPS_INVALID_TOO_LARGE] = "too_large",
    [NPS_INVALID_JSON] = "malformed_json",
    [NPS_INVALID_MISSING_SCORE] = "missing_score",
    [NPS_INVALID_SCORE] = "bad_score",
    [NPS_INVALID_TS] = "bad_ts",
    [NPS_INVALID_TYPE] = "bad_type",
    [NPS_INVALID_DIMENSION] = "bad_dimension",
    [NPS_INVALID_FIELD] = "bad_field",
    [NPS_INVALID_VALUE] = "bad_value",
    [NPS_INVALID_FUTURE] = "future",
};

const char *nps_invalid_reason_name(nps_invalid_reason reason)
{
    if ((unsigned)reason >= NPS_INVALID_REASONS)
        return "unknown";
    return reason_names[reason];
}

/* The first min(len, 8) bytes of a name as a little-endian word, zero
 * padded. When 8 bytes are readable (up to `readable_end`) one load and a
 * mask do it: copying fewer bytes and then reading the word would stall
 * on store forwarding, which perf showed as the parser's hottest spot. */
static inline uint64_t key_prefix(const char *name, size_t len, const char *readable_end)
{
    uint64_t prefix = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (readable_end - name >= 8) {
        memcpy(&prefix, name, 8);
        return len >= 8 ? prefix : prefix & (((uint64_t)1 << (len * 8)) - 1);
    }
#else
    (void)readable_end;
#endif
    memcpy(&prefix, name, len < 8 ? len : 8);
    return prefix;
}

/* Bucket of a key in the field table: length and last byte spread the
 * contract's and typical dimension names over distinct buckets. */
static inline unsigned key_bucket(const char *name, size_t len)
{
    return len ? ((unsigned)len * 37u + (unsigned char)name[len - 1] * 11u +
                  (unsigned char)name[0]) &
                     255u
               : 0;
}

/* The field a key names, or NULL: a bucket, then one 8-byte compare. */
static inline const field *lookup_field(const nps_event_parser *parser, const char *name,
                                        size_t len, const char *readable_end)
{
    uint64_t prefix = key_prefix(name, len, readable_end);
    for (unsigned i = parser->buckets[key_bucket(name, len)]; i; i = parser->fields[i - 1].next) {
        const field *f = &parser->fields[i - 1];
        if (f->prefix == prefix && f->len == len &&
            (len <= 8 || memcmp(f->name + 8, name + 8, len - 8) == 0))
            return f;
    }
    return NULL;
}

static field *field_for(nps_event_parser *parser, const char *name, size_t len)
{
    for (int i = 0; i < parser->nfields; i++)
        if (parser->fields[i].len == len && memcmp(parser->fields[i].name, name, len) == 0)
            return &parser->fields[i];
    field *f = &parser->fields[parser->nfields++];
    unsigned bucket = key_bucket(name, len);
    *f = (field){.name = name,
                 .len = len,
                 .prefix = key_prefix(name, len, name + len),
                 .dim = -1,
                 .next = parser->buckets[bucket]};
    parser->buckets[bucket] = (uint8_t)parser->nfields;
    if (len + 3 <= sizeof(f->pattern)) {
        f->pattern[0] = '"';
        memcpy(f->pattern + 1, name, len);
        f->pattern[len + 1] = '"';
        f->pattern[len + 2] = ':';
        f->pattern_mask = (1u << (len + 3)) - 1;
    }
    return f;
}

nps_event_parser *nps_event_parser_new(const nps_views *views, size_t max_event_bytes,
                                       nps_error *err)
{
    static const struct {
        const char *name;
        unsigned role;
    } contract_fields[] = {
        {"score", ROLE_SCORE}, {"ts", ROLE_TS},       {"type", ROLE_TYPE},
        {"id", ROLE_ID},       {"value", ROLE_VALUE}, {"comment", ROLE_COMMENT},
    };
    if (max_event_bytes == 0) {
        nps_error_set(err, "max event size must be positive");
        return NULL;
    }
    nps_event_parser *parser = calloc(1, sizeof(*parser));
    if (!parser)
        goto out_nomem;
    parser->scratch = malloc(max_event_bytes);
    if (!parser->scratch)
        goto out_free_parser;
    parser->max_event_bytes = max_event_bytes;
    parser->quotes = malloc(NPS_JSON_INDEX_WORDS(FAST_MAX_BYTES) * sizeof(uint64_t));
    if (!parser->quotes)
        goto out_free_scratch;
    parser->fast = true;
    /* Most frequent keys first: the look-up is a short linear scan. */
    for (size_t i = 0; i < sizeof(contract_fields) / sizeof(contract_fields[0]); i++)
        field_for(parser, contract_fields[i].name, strlen(contract_fields[i].name))->roles |=
            contract_fields[i].role;
    parser->ndims = views->ndims;
    for (int d = 0; d < views->ndims; d++) {
        /* fields point at the parser's own copy: `views` may go away */
        memcpy(parser->dim_names[d], views->dim_names[d], sizeof(parser->dim_names[d]));
        field_for(parser, parser->dim_names[d], strlen(parser->dim_names[d]))->dim = d;
    }
    return parser;

out_free_scratch:
    free(parser->scratch);
out_free_parser:
    free(parser);
out_nomem:
    nps_error_set(err, "out of memory for an event parser of %zu bytes", max_event_bytes);
    return NULL;
}

void nps_event_parser_destroy(nps_event_parser *parser)
{
    if (!parser)
        return;
    free(parser->quotes);
    free(parser->scratch);
    free(parser);
}

void nps_event_parser_set_fast(nps_event_parser *parser, bool fast)
{
    parser->fast = fast;
}

/* The string's bytes, decoded when it holds escapes. */
static nps_str string_of(nps_event_parser *parser, const nps_json_value *v)
{
    if (!v->escaped)
        return (nps_str){v->ptr, v->len};
    char *out = parser->scratch + parser->scratch_used;
    size_t len = nps_json_unescape(v->ptr, v->len, out);
    parser->scratch_used += len;
    return (nps_str){out, len};
}

static nps_invalid_reason invalid(char *detail, size_t detail_size, nps_invalid_reason reason,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Make a detail one printable line of valid UTF-8 (it ends up in logs and
 * Kafka headers): control bytes, and bytes of a UTF-8 sequence that is
 * invalid or was cut by the excerpt, become '?'. */
static void clean_detail(char *detail)
{
    unsigned char *p = (unsigned char *)detail;
    while (*p) {
        int need = *p < 0x80             ? 0
                   : (*p & 0xe0) == 0xc0 ? 1
                   : (*p & 0xf0) == 0xe0 ? 2
                   : (*p & 0xf8) == 0xf0 ? 3
                                         : -1;
        int have = 0;
        while (need > 0 && have < need && (p[have + 1] & 0xc0) == 0x80)
            have++;
        if (need < 0 || have < need || *p < 0x20 || *p == 0x7f) {
            *p++ = '?';
            continue;
        }
        p += need + 1;
    }
}

static nps_invalid_reason invalid(char *detail, size_t detail_size, nps_invalid_reason reason,
                                  const char *fmt, ...)
{
    if (detail && detail_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, detail_size, fmt, ap);
        va_end(ap);
        clean_detail(detail);
    }
    return reason;
}

/* A printable excerpt of a value for error details. */
#define EXCERPT(v) (int)((v)->len > 40 ? 40 : (v)->len), (v)->ptr

/*
 * A validated JSON number as a whole number of cents, exactly: the decimal
 * digits are read as written (no binary floating point), digits past the
 * cents are rounded half up, and the result must lie in
 * [0, NPS_VALUE_MAX_CENTS]. A literal of any length or exponent works.
 */
static bool number_to_cents(const char *lit, size_t len, int64_t *out)
{
    const char *p = lit, *end = lit + len;
    bool negative = p < end && *p == '-';
    p += negative;
    const char *digits = p;
    size_t ndigits = 0, nfraction = 0;
    bool in_fraction = false;
    for (; p < end && ((*p >= '0' && *p <= '9') || *p == '.'); p++) {
        if (*p == '.') {
            in_fraction = true;
            continue;
        }
        ndigits++;
        nfraction += in_fraction;
    }
    const char *digits_end = p;
    int64_t exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool exp_negative = p < end && *p == '-';
        p += p < end && (*p == '-' || *p == '+');
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (exponent < 1000000000)
                exponent = exponent * 10 + (*p - '0');
        exponent = exp_negative ? -exponent : exponent;
    }
    /* value = D * 10^(exponent - nfraction); cents keep the first `kept`
     * digits of D (and zeros past its end). */
    int64_t kept = (int64_t)ndigits + exponent - (int64_t)nfraction + 2;
    uint64_t cents = 0;
    int64_t taken = 0;
    int round_digit = 0;
    for (const char *d = digits; d < digits_end; d++) {
        if (*d == '.')
            continue;
        if (taken < kept) {
            cents = cents * 10 + (uint64_t)(*d - '0');
            if (cents > NPS_VALUE_MAX_CENTS)
                return false;
        } else if (taken == kept) {
            round_digit = *d - '0';
        }
        taken++;
    }
    for (; taken < kept && cents; taken++) {
        cents *= 10;
        if (cents > NPS_VALUE_MAX_CENTS)
            return false;
    }
    cents += round_digit >= 5;
    if (cents > NPS_VALUE_MAX_CENTS || (negative && cents))
        return false;
    *out = (int64_t)cents;
    return true;
}

static inline __attribute__((always_inline)) nps_invalid_reason
apply_field(nps_event_parser *parser, const field *f, const nps_json_value *v, nps_event *ev,
            bool *has_score, char *detail, size_t detail_size)
{
    int64_t integer;
    /* Decoded once, whatever roles the field has (a dimension may also be
     * named type, id or comment): the scratch then never holds more than
     * the message's strings, so it cannot overflow. */
    nps_str text = v->type == NPS_JSON_STRING ? string_of(parser, v) : (nps_str){0};
    if (f->roles & ROLE_SCORE) {
        if (v->type != NPS_JSON_NUMBER || !nps_json_number_integral(v->ptr, v->len, &integer) ||
            integer < 0 || integer > NPS_SCORE_MAX)
            return invalid(detail, detail_size, NPS_INVALID_SCORE,
                           "score must be an integer 0..10, got %.*s", EXCERPT(v));
        ev->score = (int)integer;
        *has_score = true;
    }
    if (f->roles & ROLE_TS) {
        if (v->type == NPS_JSON_NUMBER && nps_json_number_integral(v->ptr, v->len, &integer)) {
            ev->ts_ms = integer;
            ev->has_ts = true;
        } else if (v->type == NPS_JSON_STRING &&
                   nps_rfc3339_parse(text.ptr, text.len, &ev->ts_ms)) {
            ev->has_ts = true;
        } else if (v->type == NPS_JSON_NULL) {
            ev->has_ts = false;
        } else {
            return invalid(detail, detail_size, NPS_INVALID_TS,
                           "ts must be epoch milliseconds or RFC 3339, got %.*s", EXCERPT(v));
        }
    }
    /* null means absent, and a key given twice counts as given last: each
     * role below sets or clears everything it owns */
    if (f->roles & ROLE_TYPE) {
        if (v->type == NPS_JSON_NULL ||
            (v->type == NPS_JSON_STRING && text.len == 8 && memcmp(text.ptr, "response", 8) == 0))
            ev->sent = false;
        else if (v->type == NPS_JSON_STRING && text.len == 4 && memcmp(text.ptr, "sent", 4) == 0)
            ev->sent = true;
        else
            return invalid(detail, detail_size, NPS_INVALID_TYPE,
                           "type must be \"response\" or \"sent\", got %.*s", EXCERPT(v));
    }
    if (f->roles & ROLE_ID) {
        if (v->type == NPS_JSON_STRING || v->type == NPS_JSON_NUMBER)
            ev->id = v->type == NPS_JSON_STRING ? text : (nps_str){v->ptr, v->len};
        else if (v->type == NPS_JSON_NULL)
            ev->id = (nps_str){0};
        else
            return invalid(detail, detail_size, NPS_INVALID_FIELD,
                           "id must be a string or a number, got %.*s", EXCERPT(v));
    }
    if (f->roles & ROLE_COMMENT) {
        if (v->type == NPS_JSON_STRING)
            ev->comment = text;
        else if (v->type == NPS_JSON_NULL)
            ev->comment = (nps_str){0};
        else
            return invalid(detail, detail_size, NPS_INVALID_FIELD,
                           "comment must be a string, got %.*s", EXCERPT(v));
    }
    if (f->roles & ROLE_VALUE) {
        if (v->type == NPS_JSON_NUMBER)
            ev->has_value = number_to_cents(v->ptr, v->len, &ev->value_cents);
        if (v->type == NPS_JSON_NULL) {
            ev->has_value = false;
            ev->value_cents = 0;
        } else if (v->type != NPS_JSON_NUMBER || !ev->has_value)
            return invalid(detail, detail_size, NPS_INVALID_VALUE,
                           "value must be a number from 0 to 1e12, got %.*s", EXCERPT(v));
    }
    if (f->dim >= 0) {
        nps_str *dim = &ev->dims[f->dim];
        if (v->type == NPS_JSON_STRING) {
            *dim = text;
        } else if (v->type == NPS_JSON_NULL) {
            *dim = (nps_str){0};
        } else if (v->type == NPS_JSON_NUMBER &&
                   nps_json_number_integral(v->ptr, v->len, &integer)) {
            char *decimal = parser->int_text[f->dim];
            int n = snprintf(decimal, sizeof(parser->int_text[0]), "%" PRId64, integer);
            *dim = (nps_str){decimal, (size_t)n};
        } else {
            return invalid(detail, detail_size, NPS_INVALID_DIMENSION,
                           "dimension %s must be a string, an integer or null, got %.*s", f->name,
                           EXCERPT(v));
        }
    }
    return NPS_VALID;
}

/* An event with nothing set, before its fields are applied. */
static void event_reset(nps_event_parser *parser, nps_event *ev)
{
    ev->has_ts = false;
    ev->sent = false;
    ev->score = -1;
    ev->has_value = false;
    ev->value_cents = 0;
    ev->id = (nps_str){0};
    ev->comment = (nps_str){0};
    memset(ev->dims, 0, sizeof(ev->dims[0]) * (size_t)parser->ndims);
    parser->scratch_used = 0;
}

/* The fast path's answer when the message needs the scanner. */
#define PLAIN_BAIL NPS_INVALID_REASONS

/*
 * The fast path, for the message producers send: one flat object without
 * escapes or control bytes (nps_json_index_quotes), fields separated by
 * nothing or spaces. Its fields go through apply_field as the scanner's
 * do. It returns NPS_VALID with *ev filled, or PLAIN_BAIL for anything
 * else: a nested value, whitespace other than spaces, an invalid field, a
 * grammar error. The scanner then judges the message from the start and
 * words the detail, so the two paths cannot disagree on a verdict; they
 * must agree on the event, which tests/test_event_parse.c and the fuzz
 * target check.
 */
static nps_invalid_reason plain_parse(nps_event_parser *parser, const char *msg, size_t len,
                                      nps_event *ev)
{
    if (len > FAST_MAX_BYTES || !nps_json_index_quotes(msg, len, parser->quotes))
        return PLAIN_BAIL;
    const uint64_t *quotes = parser->quotes;
    const char *end = msg + len;
    size_t p = 0;
#define SKIP_SPACES()                                                                              \
    while (p < len && msg[p] == ' ')                                                               \
    p++
    SKIP_SPACES();
    if (p >= len || msg[p] != '{')
        return PLAIN_BAIL;
    p++;
    SKIP_SPACES();
    bool has_score = false;
    for (size_t position = 0;; position++) {
        const field *f = NULL;
        unsigned guess = position < SHAPE_MAX ? parser->shape[position] : 0;
#ifdef __SSE2__
        if (guess && len - p >= 16) {
            /* `"name":` in one compare; the key then ends at its second
             * quote, as there are no escapes */
            const field *g = &parser->fields[guess - 1];
            __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)(msg + p));
            __m128i pattern = _mm_loadu_si128((const __m128i *)(const void *)g->pattern);
            unsigned equal = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, pattern));
            if ((equal & g->pattern_mask) == g->pattern_mask && g->pattern_mask) {
                f = g;
                p += g->len + 3;
            }
        }
#endif
        if (!f) {
            if (p >= len || msg[p] != '"')
                return PLAIN_BAIL; /* an empty object, too: it has no score */
            size_t key_end = nps_json_next_quote(quotes, p + 1);
            if (key_end >= len)
                return PLAIN_BAIL;
            f = lookup_field(parser, msg + p + 1, key_end - p - 1, end);
            if (position < SHAPE_MAX)
                parser->shape[position] = f ? (uint8_t)(f - parser->fields + 1) : 0;
            p = key_end + 1;
            SKIP_SPACES();
            if (p >= len || msg[p] != ':')
                return PLAIN_BAIL;
            p++;
        }
        SKIP_SPACES();
        if (p >= len)
            return PLAIN_BAIL;
        nps_json_value value = {.ptr = msg + p, .escaped = false};
        char c = msg[p];
        if (c == '"') {
            size_t value_end = nps_json_next_quote(quotes, p + 1);
            if (value_end >= len)
                return PLAIN_BAIL;
            value.type = NPS_JSON_STRING;
            value.ptr++;
            value.len = value_end - p - 1;
            p = value_end + 1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char *number_end = nps_json_scan_number(msg + p, end);
            if (!number_end)
                return PLAIN_BAIL;
            value.type = NPS_JSON_NUMBER;
            value.len = (size_t)(number_end - value.ptr);
            p += value.len;
        } else if (nps_json_scan_literal(msg + p, end, &value)) {
            p += value.len;
        } else {
            return PLAIN_BAIL;
        }
        if (f && apply_field(parser, f, &value, ev, &has_score, NULL, 0) != NPS_VALID)
            return PLAIN_BAIL;
        SKIP_SPACES();
        if (p >= len)
            return PLAIN_BAIL;
        if (msg[p] == '}')
            break;
        if (msg[p] != ',')
            return PLAIN_BAIL;
        p++;
        SKIP_SPACES();
    }
    p++;
    SKIP_SPACES();
#undef SKIP_SPACES
    if (p != len)
        return PLAIN_BAIL;
    if (ev->sent) {
        ev->score = -1; /* an invitation carries no score to count */
        return NPS_VALID;
    }
    return has_score ? NPS_VALID : PLAIN_BAIL;
}

nps_invalid_reason nps_event_parse(nps_event_parser *parser, const char *msg, size_t len,
                                   nps_event *ev, char *detail, size_t detail_size)
{
    if (len > parser->max_event_bytes)
        return invalid(detail, detail_size, NPS_INVALID_TOO_LARGE,
                       "message of %zu bytes exceeds the limit of %zu", len,
                       parser->max_event_bytes);
    event_reset(parser, ev);
    if (parser->fast) {
        nps_invalid_reason fast = plain_parse(parser, msg, len, ev);
        if (fast != PLAIN_BAIL)
            return fast;
        event_reset(parser, ev);
    }
    nps_json_iter it;
    nps_json_err jerr = nps_json_object_open(&it, msg, len);
    if (jerr != NPS_JSON_OK)
        return invalid(detail, detail_size, NPS_INVALID_JSON, "%s at byte %zu",
                       nps_json_strerror(jerr), nps_json_offset(&it));
    bool has_score = false;
    nps_invalid_reason reason = NPS_VALID;
    nps_json_value key, value;
    int more;
    while ((more = nps_json_object_next(&it, &key, &value)) > 0) {
        const char *name = key.ptr;
        size_t name_len = key.len;
        const char *readable_end = msg + len;
        char decoded[NPS_NAME_MAX];
        if (key.escaped) {
            if (key.len >= (size_t)6 * NPS_NAME_MAX)
                continue; /* too long to be any field we know */
            char wide[6 * NPS_NAME_MAX];
            name_len = nps_json_unescape(key.ptr, key.len, wide);
            if (name_len >= sizeof(decoded))
                continue;
            memcpy(decoded, wide, name_len);
            name = decoded;
            readable_end = decoded + name_len; /* only what was written */
        }
        const field *f = lookup_field(parser, name, name_len, readable_end);
        /* Keep scanning after a bad field: malformed JSON later in the
         * message is the more basic reason and must win. */
        if (f && reason == NPS_VALID)
            reason = apply_field(parser, f, &value, ev, &has_score, detail, detail_size);
    }
    if (more < 0)
        return invalid(detail, detail_size, NPS_INVALID_JSON, "%s at byte %zu",
                       nps_json_strerror(it.err), nps_json_offset(&it));
    if (reason != NPS_VALID)
        return reason;
    if (ev->sent) {
        ev->score = -1; /* an invitation carries no score to count */
        return NPS_VALID;
    }
    if (!has_score)
        return invalid(detail, detail_size, NPS_INVALID_MISSING_SCORE,
                       "a response needs a score 0..10");
    return NPS_VALID;
}
