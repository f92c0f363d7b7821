/*
 * state: the merger's view of every (view, segment, window): per-pane
 * counts and running window totals, in memory.
 *
 * It is what the Redis sink keeps in Redis (the next step) and what
 * `npstream run --input` reports; the tests compare it with a reference
 * model. Memory is proportional to the non-empty (segment, pane) pairs:
 * a segment's panes per window are a sorted array holding only panes that
 * received events, dropped as they leave the window.
 *
 * Thread contract: one thread (the merger) calls every function.
 */
#ifndef NPS_STATE_H
#define NPS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "delta.h"

typedef struct nps_state nps_state;

typedef struct nps_state_stats {
    uint64_t messages;
    uint64_t counted;
    uint64_t invalid[NPS_INVALID_REASONS];
    uint64_t late;
    uint64_t overflowed; /* (event, view) pairs counted in `~overflow` */
    uint64_t deltas;     /* deltas applied */
    uint64_t panes;      /* non-empty (segment, window pane) pairs held now */
} nps_state_stats;

nps_state *nps_state_new(const nps_config *config, nps_error *err);
void nps_state_destroy(nps_state *state);

/* Drop the panes that left their window at now_ms. */
void nps_state_advance(nps_state *state, int64_t now_ms);

/* Advance to now_ms, then add a delta. Past max_segments segments per
 * view, further segments count in `~overflow`. */
nps_status nps_state_apply(nps_state *state, const nps_delta *delta, int64_t now_ms,
                           nps_error *err);

/* Counts of one segment in one window (index into config->windows).
 * False when the view has no such segment. */
bool nps_state_get(const nps_state *state, int view, const char *segment, int window,
                   nps_counts *out);

/* Segments of a view, in the order they appeared; `name` is valid while
 * the state lives. Returns the count; index < count gives the name. */
size_t nps_state_segment_count(const nps_state *state, int view);
const char *nps_state_segment_name(const nps_state *state, int view, size_t index);

void nps_state_get_stats(const nps_state *state, nps_state_stats *out);

#endif
