/*
 * event_parse: one Kafka message (a JSON object) to an nps_event, per the
 * event contract of DESIGN.md, or an invalid reason with a detail message.
 *
 * An nps_event_parser belongs to one worker thread. nps_event_parse is on
 * the hot path: it allocates nothing, and the strings of the event it fills
 * point into the message or into the parser's scratch buffer, valid until
 * the next call.
 */
#ifndef NPS_EVENT_PARSE_H
#define NPS_EVENT_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "view.h"

typedef enum nps_invalid_reason {
    NPS_VALID = 0,
    NPS_INVALID_TOO_LARGE,     /* larger than max_event_bytes */
    NPS_INVALID_JSON,          /* not JSON, or JSON whose top level is not an object */
    NPS_INVALID_MISSING_SCORE, /* a response without a score */
    NPS_INVALID_SCORE,         /* score not an integral number 0..10 */
    NPS_INVALID_TS,            /* ts neither epoch ms nor RFC 3339 */
    NPS_INVALID_TYPE,          /* type neither "response" nor "sent" */
    NPS_INVALID_DIMENSION,     /* a dimension neither string, integer nor null */
    NPS_INVALID_FIELD,         /* id or comment of the wrong type */
    NPS_INVALID_VALUE,         /* value not a number from 0 to NPS_VALUE_MAX_CENTS / 100 */
    NPS_INVALID_FUTURE,        /* ts beyond now + the allowed clock skew */
    NPS_INVALID_REASONS
} nps_invalid_reason;

/* Stable snake_case name of a reason, used in metrics and dead letters. */
const char *nps_invalid_reason_name(nps_invalid_reason reason);

/* `value` (a customer's lifetime value or revenue) is kept exactly in
 * cents, up to 1e12. */
#define NPS_VALUE_MAX_CENTS 100000000000000ULL

typedef struct nps_event {
    int64_t ts_ms;
    bool has_ts; /* false: the caller supplies the message timestamp */
    bool sent;   /* type "sent": an invitation, no score */
    int score;   /* 0..10 for a response */
    bool has_value;
    int64_t value_cents;        /* value in hundredths, rounded half up */
    nps_str id;                 /* empty when absent */
    nps_str comment;            /* empty when absent */
    nps_str dims[NPS_MAX_DIMS]; /* by nps_views.dim_names; empty when absent or null */
} nps_event;

typedef struct nps_event_parser nps_event_parser;

/* A parser for the dimensions of `views`; messages larger than
 * max_event_bytes are invalid (too_large). */
nps_event_parser *nps_event_parser_new(const nps_views *views, size_t max_event_bytes,
                                       nps_error *err);
void nps_event_parser_destroy(nps_event_parser *parser);

/* Whether the parser tries its fast path (on by default) before the
 * general scanner; both give the same result on every message, which the
 * tests check by turning it off. */
void nps_event_parser_set_fast(nps_event_parser *parser, bool fast);

/* Parse one message. On NPS_VALID, *event is filled. Otherwise, when
 * detail is not NULL, it receives a one-line explanation. */
nps_invalid_reason nps_event_parse(nps_event_parser *parser, const char *msg, size_t len,
                                   nps_event *event, char *detail, size_t detail_size);

#endif
