/*
 * json_scan: a strict, single-pass, allocation-free JSON scanner for one
 * top-level object, yielding its fields in order.
 *
 * Why not a library: bench/README.md ("JSON parser") measures jsmn, yajl
 * and simdjson on the same extraction from the same corpus. The event
 * parser (this scanner, and its fast path over nps_json_index_quotes)
 * takes 120-122 ns per event there; jsmn 3.4x, yajl 4.3-5.1x, simdjson
 * on-demand 1.95x and simdjson DOM 1.32-1.38x that. What the scanner also
 * keeps that a DOM does not: the raw text of numbers, so the score and ts
 * checks are exact decimal arithmetic (9.0000000000000001 is not the
 * integer 9; a DOM hands over the double 9.0), spans into the message
 * instead of copies, and no C++ or padded copy in the core.
 *
 * It validates the whole text against RFC 8259 (grammar, string escapes,
 * UTF-8, numbers, nesting up to NPS_JSON_MAX_DEPTH) and hands back spans
 * into the input: top-level scalars cost one pass, nested values are
 * validated and skipped. tests/test_json_scan.c checks its verdicts against
 * yajl on mutated inputs.
 *
 * Thread-safety: an nps_json_iter belongs to one thread; the functions keep
 * no global state.
 */
#ifndef NPS_JSON_SCAN_H
#define NPS_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NPS_JSON_MAX_DEPTH 64

typedef enum nps_json_type {
    NPS_JSON_STRING,
    NPS_JSON_NUMBER,
    NPS_JSON_TRUE,
    NPS_JSON_FALSE,
    NPS_JSON_NULL,
    NPS_JSON_OBJECT,
    NPS_JSON_ARRAY,
} nps_json_type;

typedef enum nps_json_err {
    NPS_JSON_OK = 0,
    NPS_JSON_EMPTY,      /* nothing but whitespace */
    NPS_JSON_NOT_OBJECT, /* valid start of another type at the top */
    NPS_JSON_SYNTAX,     /* grammar: a missing comma, quote, bracket... */
    NPS_JSON_BAD_STRING, /* control character, bad escape, lone surrogate */
    NPS_JSON_BAD_UTF8,   /* invalid UTF-8 inside a string */
    NPS_JSON_BAD_NUMBER, /* a number outside the JSON grammar */
    NPS_JSON_TOO_DEEP,   /* nesting beyond NPS_JSON_MAX_DEPTH */
    NPS_JSON_TRAILING,   /* text after the closing brace */
} nps_json_err;

/* A value or key as found in the input. For strings, ptr/len cover the raw
 * contents between the quotes and `escaped` says whether it holds
 * backslash escapes (nps_json_unescape decodes them). For numbers, the
 * literal; for objects and arrays, the whole text including brackets. */
typedef struct nps_json_value {
    nps_json_type type;
    bool escaped;
    const char *ptr;
    size_t len;
} nps_json_value;

typedef struct nps_json_iter {
    const char *p;
    const char *end;
    const char *start;
    int state;
    nps_json_err err;
} nps_json_iter;

/* Start scanning `json` (need not be NUL-terminated). Returns NPS_JSON_OK
 * when the text opens an object. */
nps_json_err nps_json_object_open(nps_json_iter *it, const char *json, size_t len);

/* Next field of the object: 1 and key/value filled; 0 at the end, after
 * the closing brace and trailing whitespace were checked; -1 on error with
 * it->err set. Once it returns 0 or -1 it keeps returning the same. */
int nps_json_object_next(nps_json_iter *it, nps_json_value *key, nps_json_value *value);

/* Offset in the input where scanning stopped (for error messages). */
size_t nps_json_offset(const nps_json_iter *it);

const char *nps_json_strerror(nps_json_err err);

/* Decode the escapes of a string the scanner has validated into `out`,
 * which must hold at least `len` bytes (decoding never grows a string).
 * Returns the decoded length. */
size_t nps_json_unescape(const char *raw, size_t len, char *out);

/* True when the number literal (validated by the scanner) is exactly an
 * integer that fits int64: "9", "9.0", "90e-1" and "-0" are; "9.5",
 * "9.0000000000000001" and "1e400" are not. Exact decimal arithmetic, no
 * floating point. */
bool nps_json_number_integral(const char *lit, size_t len, int64_t *out);

/* True when the whole of `text` is one JSON number literal ("-15.1268",
 * "0", "1e3"; not "01", "inf", "1 " or ""). */
bool nps_json_is_number(const char *text, size_t len);

/* The length of the well-formed UTF-8 sequence (RFC 3629: no overlong
 * forms, surrogates or code points past U+10FFFF) at the start of the
 * `avail` bytes at p, whose first byte is >= 0x80; 0 when there is none. */
size_t nps_json_utf8_sequence(const char *p, size_t avail);

/* The end of the JSON number literal at p, or NULL when the text there is
 * not one: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, ended by
 * the end of the text or a delimiter (",", "}", "]", whitespace), so "1x"
 * and "01" are not numbers. Inline: the event parser's fast path calls it
 * once per number. */
static inline const char *nps_json_scan_number(const char *p, const char *end)
{
#define NPS_JSON_DIGIT(c) ((c) >= '0' && (c) <= '9')
    if (p < end && *p == '-')
        p++;
    if (p >= end || !NPS_JSON_DIGIT(*p))
        return NULL;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && NPS_JSON_DIGIT(*p))
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !NPS_JSON_DIGIT(*p))
            return NULL;
        while (p < end && NPS_JSON_DIGIT(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !NPS_JSON_DIGIT(*p))
            return NULL;
        while (p < end && NPS_JSON_DIGIT(*p))
            p++;
    }
#undef NPS_JSON_DIGIT
    if (p < end && !(*p == ',' || *p == '}' || *p == ']' || *p == ' ' || *p == '\n' || *p == '\r' ||
                     *p == '\t'))
        return NULL;
    return p;
}

/* The literal `true`, `false` or `null` at p: its end, with v's type, ptr
 * and len set; NULL when none starts there. */
static inline const char *nps_json_scan_literal(const char *p, const char *end, nps_json_value *v)
{
    static const struct {
        const char *word;
        size_t len;
        nps_json_type type;
    } literals[] = {
        {"true", 4, NPS_JSON_TRUE}, {"false", 5, NPS_JSON_FALSE}, {"null", 4, NPS_JSON_NULL}};
    for (size_t i = 0; i < sizeof(literals) / sizeof(literals[0]); i++)
        if ((size_t)(end - p) >= literals[i].len &&
            memcmp(p, literals[i].word, literals[i].len) == 0) {
            v->type = literals[i].type;
            v->ptr = p;
            v->len = literals[i].len;
            return p + literals[i].len;
        }
    return NULL;
}

/*
 * A quote index, for parsers that take the common message fast: one
 * without escapes or control bytes, whose quotes are then exactly its
 * string delimiters, so a string ends at the next quote and is valid as
 * it stands.
 *
 * nps_json_index_quotes sets bit i % 64 of quotes[i / 64] when byte i is
 * a quote, for the NPS_JSON_INDEX_WORDS(len) words the caller provides
 * (the last is a sentinel, all ones, so nps_json_next_quote always stops:
 * at len or past it when no quote is left). It returns false, and the
 * index must not be used, when the message holds a backslash, a byte below
 * 0x20 (whitespace other than spaces included), or bytes >= 0x80 that are
 * not well-formed UTF-8 (RFC 3629): such a message needs the scanner above.
 * Non-ASCII text passes when it is well-formed, wherever it stands: outside
 * strings the caller's grammar checks reject it as the scanner would.
 */
#define NPS_JSON_INDEX_WORDS(len) ((len) / 64 + 2)
bool nps_json_index_quotes(const char *json, size_t len, uint64_t *quotes);

/* The position of the first quote at or after `from` (<= len), or a
 * position >= len when there is none. */
static inline size_t nps_json_next_quote(const uint64_t *quotes, size_t from)
{
    size_t word = from / 64;
    uint64_t bits = quotes[word] & (~(uint64_t)0 << (from % 64));
    while (!bits)
        bits = quotes[++word];
    return word * 64 + (size_t)__builtin_ctzll(bits);
}

#endif
