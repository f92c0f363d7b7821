/*
 * event_gen: realistic synthetic survey events, deterministic for a seed.
 *
 * Used by the benchmarks, the tests and (next) `npstream gen`. The mix:
 * surveys, channels, regions and age bands of uneven popularity, a score
 * distribution that differs by segment, timestamps spread back from `now`
 * and out of order, optional comments and values, and, when asked, a share
 * of invalid messages. One generator belongs to one thread.
 */
#ifndef NPS_EVENT_GEN_H
#define NPS_EVENT_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "npstream/nps.h"

typedef struct nps_gen_options {
    uint64_t seed;
    int64_t now_ms;         /* events fall in [now - spread_ms, now] */
    int64_t spread_ms;      /* default 20 minutes */
    double invalid_share;   /* 0..1 share of invalid messages, default 0 */
    int regions;            /* distinct regions, default 40 */
    double sent_share;      /* share of invitations (type sent); 0 means the default 1/8 */
    double duplicate_share; /* share of messages that re-send a recent response as is */
    /* "dim=value": that segment's events of the last 5 minutes lean to
     * detractors who all complain of one thing, so its recent NPS drops
     * (alerts) with a theme; empty: none */
    char drop[96];
} nps_gen_options;

typedef struct nps_gen nps_gen;

nps_gen *nps_gen_new(const nps_gen_options *options, nps_error *err);
void nps_gen_destroy(nps_gen *gen);

/* Write the next message (JSON, no newline) into out and its key (the
 * response id) into key. Returns the message length, or 0 if out_size is
 * too small (512 bytes always suffice). */
size_t nps_gen_next(nps_gen *gen, char *out, size_t out_size, char *key, size_t key_size);

/* A uniform random 64-bit value from the generator's stream. */
uint64_t nps_gen_random(nps_gen *gen);

#endif
