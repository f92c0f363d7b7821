/*
 * json_scan: strict single-pass scanner of one top-level JSON object.
 *
 * Invariants: the scanner never reads past `end`, never writes, and accepts
 * exactly RFC 8259 texts whose top-level value is an object (with nesting
 * at most NPS_JSON_MAX_DEPTH). Every scan_* helper takes the position of
 * the first byte of its token and returns the position just past it, or
 * NULL with *err set.
 */
#include "json_scan.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { ST_FIRST, ST_NEXT, ST_DONE, ST_ERROR };

/* Byte classes for the string fast path: 0 = plain, 1 = needs a look. */
static const unsigned char string_special[256] = {
    /* control characters */
    [0x00] = 1,
    [0x01] = 1,
    [0x02] = 1,
    [0x03] = 1,
    [0x04] = 1,
    [0x05] = 1,
    [0x06] = 1,
    [0x07] = 1,
    [0x08] = 1,
    [0x09] = 1,
    [0x0a] = 1,
    [0x0b] = 1,
    [0x0c] = 1,
    [0x0d] = 1,
    [0x0e] = 1,
    [0x0f] = 1,
    [0x10] = 1,
    [0x11] = 1,
    [0x12] = 1,
    [0x13] = 1,
    [0x14] = 1,
    [0x15] = 1,
    [0x16] = 1,
    [0x17] = 1,
    [0x18] = 1,
    [0x19] = 1,
    [0x1a] = 1,
    [0x1b] = 1,
    [0x1c] = 1,
    [0x1d] = 1,
    [0x1e] = 1,
    [0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    /* every byte >= 0x80 starts or continues a UTF-8 sequence */
    [0x80 ... 0xff] = 1,
};

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static inline int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Four hex digits at p (p + 4 <= end checked by the caller). */
static inline long read_hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* One UTF-8 sequence starting at p (first byte >= 0x80). Rejects overlong
 * forms, surrogates and code points past U+10FFFF (RFC 3629). */
static const char *scan_utf8(const char *p, const char *end, nps_json_err *err)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t avail = (size_t)(end - p);
    unsigned char c = u[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        *err = NPS_JSON_BAD_UTF8;
        return NULL;
    }
    if (avail < n || u[1] < lo || u[1] > hi) {
        *err = NPS_JSON_BAD_UTF8;
        return NULL;
    }
    for (size_t i = 2; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80) {
            *err = NPS_JSON_BAD_UTF8;
            return NULL;
        }
    }
    return p + n;
}

/* p points at the opening quote. */
static const char *scan_string(const char *p, const char *end, bool *escaped, nps_json_err *err)
{
    p++;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time while they fit: a quote, a backslash, a
         * control byte or a non-ASCII byte stops the run (signed compare:
         * bytes >= 0x80 are negative, so "< 0x20" catches both). */
        while (end - p >= 16) {
            __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')),
                                                     _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\\'))),
                                        _mm_cmplt_epi8(bytes, _mm_set1_epi8(0x20)));
            unsigned mask = (unsigned)_mm_movemask_epi8(stop);
            if (mask) {
                p += __builtin_ctz(mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && !string_special[(unsigned char)*p])
            p++;
        if (p >= end) {
            *err = NPS_JSON_SYNTAX;
            return NULL;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c >= 0x80) {
            p = scan_utf8(p, end, err);
            if (!p)
                return NULL;
            continue;
        }
        if (c != '\\') { /* unescaped control character */
            *err = NPS_JSON_BAD_STRING;
            return NULL;
        }
        *escaped = true;
        if (end - p < 2) {
            *err = NPS_JSON_SYNTAX;
            return NULL;
        }
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            continue;
        case 'u':
            break;
        default:
            *err = NPS_JSON_BAD_STRING;
            return NULL;
        }
        if (end - p < 6) {
            *err = NPS_JSON_SYNTAX;
            return NULL;
        }
        long cp = read_hex4(p + 2);
        if (cp < 0) {
            *err = NPS_JSON_BAD_STRING;
            return NULL;
        }
        p += 6;
        if (cp >= 0xdc00 && cp <= 0xdfff) { /* lone low surrogate */
            *err = NPS_JSON_BAD_STRING;
            return NULL;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) { /* must pair with a low one */
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u') {
                *err = NPS_JSON_BAD_STRING;
                return NULL;
            }
            long low = read_hex4(p + 2);
            if (low < 0xdc00 || low > 0xdfff) {
                *err = NPS_JSON_BAD_STRING;
                return NULL;
            }
            p += 6;
        }
    }
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *scan_number(const char *p, const char *end, nps_json_err *err)
{
    const char *q = nps_json_scan_number(p, end);
    if (!q)
        *err = NPS_JSON_BAD_NUMBER;
    return q;
}

/* A scalar at p, or NULL with *err; v filled. */
static const char *scan_scalar(const char *p, const char *end, nps_json_value *v, nps_json_err *err)
{
    const char *q;
    switch (*p) {
    case '"':
        v->type = NPS_JSON_STRING;
        v->escaped = false;
        q = scan_string(p, end, &v->escaped, err);
        if (q) {
            v->ptr = p + 1;
            v->len = (size_t)(q - p - 2);
        }
        return q;
    case 't':
    case 'f':
    case 'n':
        q = nps_json_scan_literal(p, end, v);
        if (!q)
            *err = NPS_JSON_SYNTAX;
        return q;
    default:
        v->type = NPS_JSON_NUMBER;
        q = scan_number(p, end, err);
        break;
    }
    if (q) {
        v->ptr = p;
        v->len = (size_t)(q - p);
    }
    return q;
}

/*
 * Validate and skip a nested object or array starting at p ('{' or '['),
 * iteratively: the kind of each open level is one bit of `kinds`, so depth
 * costs no recursion and no allocation. `depth` is the nesting of p.
 */
static const char *skip_nested(const char *p, const char *end, int depth, nps_json_err *err)
{
    uint64_t kinds = 0; /* bit i set: level i is an object */
    int level = -1;
    nps_json_value scratch;
    for (;;) {
        /* p is at the start of a value */
        if (*p == '{' || *p == '[') {
            if (depth + level + 1 >= NPS_JSON_MAX_DEPTH) {
                *err = NPS_JSON_TOO_DEEP;
                return NULL;
            }
            level++;
            bool is_object = *p == '{';
            if (is_object)
                kinds |= (uint64_t)1 << level;
            else
                kinds &= ~((uint64_t)1 << level);
            p = skip_ws(p + 1, end);
            if (p >= end)
                goto syntax;
            if (*p == (is_object ? '}' : ']')) { /* empty: a complete value */
                p++;
                level--;
                goto closed;
            }
            if (is_object)
                goto key;
            continue;
        }
        p = scan_scalar(p, end, &scratch, err);
        if (!p)
            return NULL;
    closed:
        /* after a complete value at nesting `level` */
        for (;;) {
            if (level < 0)
                return p;
            p = skip_ws(p, end);
            if (p >= end)
                goto syntax;
            bool in_object = (kinds >> level) & 1;
            if (*p == ',') {
                p = skip_ws(p + 1, end);
                if (p >= end)
                    goto syntax;
                if (in_object)
                    goto key;
                break;
            }
            if (*p != (in_object ? '}' : ']'))
                goto syntax;
            p++;
            level--;
        }
        continue;
    key:
        if (*p != '"')
            goto syntax;
        p = scan_string(p, end, &scratch.escaped, err);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            goto syntax;
        p = skip_ws(p + 1, end);
        if (p >= end)
            goto syntax;
    }
syntax:
    *err = NPS_JSON_SYNTAX;
    return NULL;
}

nps_json_err nps_json_object_open(nps_json_iter *it, const char *json, size_t len)
{
    it->start = json;
    it->end = json + len;
    it->p = skip_ws(json, it->end);
    it->err = NPS_JSON_OK;
    it->state = ST_ERROR;
    if (it->p >= it->end)
        return it->err = NPS_JSON_EMPTY;
    char c = *it->p;
    if (c != '{') {
        bool other_value =
            c == '[' || c == '"' || c == '-' || is_digit(c) || c == 't' || c == 'f' || c == 'n';
        return it->err = other_value ? NPS_JSON_NOT_OBJECT : NPS_JSON_SYNTAX;
    }
    it->p++;
    it->state = ST_FIRST;
    return NPS_JSON_OK;
}

static int iter_fail(nps_json_iter *it, nps_json_err err, const char *at)
{
    it->err = err;
    it->state = ST_ERROR;
    if (at)
        it->p = at;
    return -1;
}

int nps_json_object_next(nps_json_iter *it, nps_json_value *key, nps_json_value *value)
{
    const char *p = it->p, *end = it->end;
    nps_json_err err = NPS_JSON_SYNTAX;
    switch (it->state) {
    case ST_DONE:
        return 0;
    case ST_ERROR:
        return -1;
    case ST_FIRST:
        p = skip_ws(p, end);
        if (p < end && *p == '}') {
            p++;
            goto close;
        }
        break;
    default: /* ST_NEXT: after a value */
        p = skip_ws(p, end);
        if (p >= end)
            return iter_fail(it, NPS_JSON_SYNTAX, p);
        if (*p == '}') {
            p++;
            goto close;
        }
        if (*p != ',')
            return iter_fail(it, NPS_JSON_SYNTAX, p);
        p = skip_ws(p + 1, end);
        break;
    }
    if (p >= end || *p != '"')
        return iter_fail(it, NPS_JSON_SYNTAX, p);
    key->type = NPS_JSON_STRING;
    key->escaped = false;
    const char *q = scan_string(p, end, &key->escaped, &err);
    if (!q)
        return iter_fail(it, err, p);
    key->ptr = p + 1;
    key->len = (size_t)(q - p - 2);
    p = skip_ws(q, end);
    if (p >= end || *p != ':')
        return iter_fail(it, NPS_JSON_SYNTAX, p);
    p = skip_ws(p + 1, end);
    if (p >= end)
        return iter_fail(it, NPS_JSON_SYNTAX, p);
    if (*p == '{' || *p == '[') {
        value->type = *p == '{' ? NPS_JSON_OBJECT : NPS_JSON_ARRAY;
        value->escaped = false;
        q = skip_nested(p, end, 1, &err);
        if (!q)
            return iter_fail(it, err, p);
        value->ptr = p;
        value->len = (size_t)(q - p);
    } else {
        q = scan_scalar(p, end, value, &err);
        if (!q)
            return iter_fail(it, err, p);
    }
    it->p = q;
    it->state = ST_NEXT;
    return 1;
close:
    p = skip_ws(p, end);
    if (p != end)
        return iter_fail(it, NPS_JSON_TRAILING, p);
    it->p = p;
    it->state = ST_DONE;
    return 0;
}

size_t nps_json_offset(const nps_json_iter *it)
{
    return (size_t)(it->p - it->start);
}

const char *nps_json_strerror(nps_json_err err)
{
    switch (err) {
    case NPS_JSON_OK:
        return "ok";
    case NPS_JSON_EMPTY:
        return "empty message";
    case NPS_JSON_NOT_OBJECT:
        return "top-level value is not an object";
    case NPS_JSON_SYNTAX:
        return "JSON syntax error";
    case NPS_JSON_BAD_STRING:
        return "invalid string (control character, escape or surrogate)";
    case NPS_JSON_BAD_UTF8:
        return "invalid UTF-8 in a string";
    case NPS_JSON_BAD_NUMBER:
        return "invalid number";
    case NPS_JSON_TOO_DEEP:
        return "nesting too deep";
    case NPS_JSON_TRAILING:
        return "text after the closing brace";
    }
    return "unknown JSON error";
}

static size_t put_utf8(char *out, long cp)
{
    unsigned char *u = (unsigned char *)out;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    u[0] = (unsigned char)(0xf0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t nps_json_unescape(const char *raw, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (raw[i] != '\\') {
            out[o++] = raw[i++];
            continue;
        }
        char c = raw[i + 1];
        i += 2;
        switch (c) {
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            long cp = read_hex4(raw + i);
            i += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long low = read_hex4(raw + i + 2);
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            }
            /* \uXXXX is 6 bytes, its UTF-8 at most 3; a pair is 12 and 4. */
            o += put_utf8(out + o, cp);
            break;
        }
        default:
            out[o++] = c;
            break; /* " \ / */
        }
    }
    return o;
}

bool nps_json_is_number(const char *text, size_t len)
{
    nps_json_err err;
    return scan_number(text, text + len, &err) == text + len;
}

size_t nps_json_utf8_sequence(const char *p, size_t avail)
{
    nps_json_err err;
    const char *next = avail ? scan_utf8(p, p + avail, &err) : NULL;
    return next ? (size_t)(next - p) : 0;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The value of eight ASCII digits (the first, most significant, in the low
 * byte), combined pairwise: 8 x 1 digit, 4 x 2, 2 x 4, 1 x 8. False when a
 * byte is not a digit. */
static inline bool eight_digits(uint64_t chunk, uint64_t *value)
{
    uint64_t d = chunk - 0x3030303030303030ULL;
    /* a byte below '0' sets its high bit in d, one above '9' in the sum */
    if (((chunk + 0x4646464646464646ULL) | d) & 0x8080808080808080ULL)
        return false;
    d = (d * 10 + (d >> 8)) & 0x00ff00ff00ff00ffULL;          /* 2-digit lanes */
    d = (d * 100 + (d >> 16)) & 0x0000ffff0000ffffULL;        /* 4-digit lanes */
    *value = (d * 10000 + (d >> 32)) & 0x00000000ffffffffULL; /* 8 digits */
    return true;
}

/* 8 to 15 plain digits without a loop's chain of multiplies: the first
 * eight, then the eight ending at len with those already read turned into
 * leading zeros. */
static bool plain_digits(const char *lit, size_t len, int64_t *out)
{
    static const uint64_t pow10[9] = {1,      10,      100,      1000,     10000,
                                      100000, 1000000, 10000000, 100000000};
    uint64_t head, tail, chunk;
    memcpy(&chunk, lit, 8);
    if (!eight_digits(chunk, &head))
        return false;
    size_t rest = len - 8;
    if (rest == 0) {
        *out = (int64_t)head;
        return true;
    }
    memcpy(&chunk, lit + len - 8, 8);
    uint64_t seen = ((uint64_t)1 << (8 * (8 - rest))) - 1; /* rest < 8 */
    chunk = (chunk & ~seen) | (0x3030303030303030ULL & seen);
    if (!eight_digits(chunk, &tail))
        return false;
    *out = (int64_t)(head * pow10[rest] + tail);
    return true;
}
#endif

bool nps_json_number_integral(const char *lit, size_t len, int64_t *out)
{
    const char *p = lit, *end = lit + len;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (len >= 8 && len < 16 && plain_digits(lit, len, out))
        return true; /* millisecond timestamps */
#endif
    /* Fast path: plain digits that cannot overflow (scores, timestamps). */
    if (len && len <= 18 && is_digit(lit[0])) {
        int64_t v = 0;
        size_t i = 0;
        while (i < len && is_digit(lit[i]))
            v = v * 10 + (lit[i++] - '0');
        if (i == len) {
            *out = v;
            return true;
        }
    }
    bool negative = false;
    if (p < end && *p == '-') {
        negative = true;
        p++;
    }
    /* Significant digits, and the position of the decimal point counted in
     * digits from the first significant one. */
    char digits[20];
    int ndigits = 0;
    long point = 0;
    bool nonzero_past_int64 = false; /* a nonzero digit we could not keep */
    long zeros_pending = 0;          /* zeros after the kept digits */
    bool seen_significant = false;
    for (; p < end && is_digit(*p); p++) {
        if (!seen_significant && *p == '0')
            continue;
        seen_significant = true;
        point++;
        if (*p == '0') {
            zeros_pending++;
            continue;
        }
        while (zeros_pending && ndigits < 20) {
            digits[ndigits++] = '0';
            zeros_pending--;
        }
        if (zeros_pending || ndigits >= 20)
            nonzero_past_int64 = true;
        else
            digits[ndigits++] = *p;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit(*p); p++) {
            if (!seen_significant) {
                if (*p == '0') {
                    point--;
                    continue;
                }
                seen_significant = true;
            }
            if (*p == '0') {
                zeros_pending++;
                continue;
            }
            while (zeros_pending && ndigits < 20) {
                digits[ndigits++] = '0';
                zeros_pending--;
            }
            if (zeros_pending || ndigits >= 20)
                nonzero_past_int64 = true;
            else
                digits[ndigits++] = *p;
        }
    }
    long exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool exp_negative = false;
        if (p < end && (*p == '+' || *p == '-'))
            exp_negative = *p++ == '-';
        /* |point| <= len, so every exponent past len + 20 gives the same
         * answer: stop growing there (a fixed cap would make a literal
         * longer than the cap wrong). */
        long exponent_cap = (long)len + 20;
        for (; p < end && is_digit(*p); p++)
            if (exponent < exponent_cap)
                exponent = exponent * 10 + (*p - '0');
        if (exp_negative)
            exponent = -exponent;
    }
    if (p != end)
        return false;
    if (ndigits == 0 && !nonzero_past_int64) { /* the value is zero */
        *out = 0;
        return true;
    }
    if (nonzero_past_int64)
        return false; /* more than 20 significant digits: too large or fractional */
    point += exponent;
    if (point < ndigits) /* a nonzero digit after the decimal point */
        return false;
    if (point > 19)
        return false;
    uint64_t magnitude = 0;
    for (long i = 0; i < point; i++)
        magnitude = magnitude * 10 + (uint64_t)(i < ndigits ? digits[i] - '0' : 0);
    if (negative) {
        if (magnitude > (uint64_t)INT64_MAX + 1)
            return false;
        *out = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    } else {
        if (magnitude > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)magnitude;
    }
    return true;
}

/* Every byte >= 0x80 of the text starts a well-formed UTF-8 sequence or
 * continues one. */
static bool utf8_well_formed(const char *p, const char *end)
{
    while (p < end) {
#ifdef __SSE2__
        while (end - p >= 16) {
            __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)p);
            unsigned high = (unsigned)_mm_movemask_epi8(bytes);
            if (high) {
                p += __builtin_ctz(high);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && (unsigned char)*p < 0x80)
            p++;
        if (p >= end)
            return true;
        nps_json_err err;
        p = scan_utf8(p, end, &err);
        if (!p)
            return false;
    }
    return true;
}

#ifdef __SSE2__
/* Quotes of the 16 bytes at p as a mask; `stop` collects backslashes and
 * bytes 0x00..0x1f, `top` the bytes' high bits (>= 0x80). */
static inline unsigned index_chunk(const char *p, __m128i *stop, __m128i *top)
{
    __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)p);
    /* signed compares: "< 0x20" but not "< 0" */
    __m128i control = _mm_andnot_si128(_mm_cmplt_epi8(bytes, _mm_setzero_si128()),
                                       _mm_cmplt_epi8(bytes, _mm_set1_epi8(0x20)));
    *stop = _mm_or_si128(*stop, _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('\\')), control));
    *top = _mm_or_si128(*top, bytes);
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')));
}
#endif

bool nps_json_index_quotes(const char *json, size_t len, uint64_t *quotes)
{
    size_t words = 0; /* written so far */
#ifdef __SSE2__
    if (len >= 16) {
        __m128i stop = _mm_setzero_si128(), top = _mm_setzero_si128();
        uint64_t word = 0;
        size_t at = 0;
        for (; at + 16 <= len; at += 16) {
            word |= (uint64_t)index_chunk(json + at, &stop, &top) << (at % 64);
            if (at % 64 == 48) {
                quotes[words++] = word;
                word = 0;
            }
        }
        if (at < len) {
            /* the last bytes, read as the 16 ending at len: those before
             * `at` were looked at already and are shifted out */
            unsigned mask = index_chunk(json + len - 16, &stop, &top) >> (16 - (len - at));
            word |= (uint64_t)mask << (at % 64);
        }
        if (words * 64 < len) /* the word of the last bytes */
            quotes[words++] = word;
        if (_mm_movemask_epi8(stop))
            return false;
        bool high = _mm_movemask_epi8(top) != 0;
        while (words <= len / 64)
            quotes[words++] = 0;
        quotes[words] = ~(uint64_t)0;
        return !high || utf8_well_formed(json, json + len);
    }
#endif
    bool high = false;
    for (size_t w = 0; w <= len / 64 + 1; w++)
        quotes[w] = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)json[i];
        if (c == '\\' || c < 0x20)
            return false;
        high |= c >= 0x80;
        quotes[i / 64] |= (uint64_t)(c == '"') << (i % 64);
    }
    quotes[len / 64 + 1] = ~(uint64_t)0;
    return !high || utf8_well_formed(json, json + len);
}
