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
    uint64_t duplicates;                        /* responses whose id was counted before (dedup) */
    uint64_t overflowed;                        /* (event, view) pairs counted in `~overflow` */
    uint64_t overflowed_by_view[NPS_MAX_VIEWS]; /* by the merger's bound */
    uint64_t deltas;                            /* deltas applied */
    uint64_t panes; /* non-empty (segment, window pane) pairs held now */
} nps_state_stats;

nps_state *nps_state_new(const nps_config *config, nps_error *err);

/* A state whose segments each belong to one of `buckets` flush units per
 * view (the delta segment hash modulo buckets); past max_segments, each
 * bucket has its own `~overflow` segment (all named `~overflow`; with more
 * than one bucket they are not found by nps_state_get). */
nps_state *nps_state_new_bucketed(const nps_config *config, uint32_t buckets, nps_error *err);

/* The bucket of segment `index` of `view`. */
uint32_t nps_state_segment_bucket(const nps_state *state, int view, size_t index);
void nps_state_destroy(nps_state *state);

/* One non-empty pane of a window. */
typedef struct nps_state_pane {
    int64_t index; /* pane start / pane size */
    nps_counts counts;
} nps_state_pane;

/* The comment terms of one (window pane, class) of a segment, for a
 * window that keeps themes (themes.h). */
typedef struct nps_state_theme {
    int64_t index; /* pane start / pane size */
    int window;
    nps_class klass;
    nps_theme_sketch sketch;
} nps_state_theme;

/* Drop the panes that left their window at now_ms. */
void nps_state_advance(nps_state *state, int64_t now_ms);

/* Advance to now_ms, then add a delta. Past max_segments segments per
 * view, further segments count in `~overflow`. */
nps_status nps_state_apply(nps_state *state, const nps_delta *delta, int64_t now_ms,
                           nps_error *err);

/* Add a delta without advancing: the pipeline's pending flush, where
 * Redis, not the state, drops panes that leave a window. Panes already
 * outside their window at now_ms are skipped as in nps_state_apply. */
nps_status nps_state_merge(nps_state *state, const nps_delta *delta, int64_t now_ms,
                           nps_error *err);

/* The panes of segment `index` of `view` in `window` (ascending index),
 * their count in *npanes, and the window total in *total. */
const nps_state_pane *nps_state_panes(const nps_state *state, int view, size_t index, int window,
                                      uint32_t *npanes, nps_counts *total);

/* The theme sketches merged for segment `index` of `view` since the last
 * nps_state_clear_counts, their count in *n; nps_state_terms has the text
 * of their terms. */
const nps_state_theme *nps_state_themes(const nps_state *state, int view, size_t index,
                                        uint32_t *n);
const nps_term_dict *nps_state_terms(const nps_state *state);

/* Zero every count and drop every pane and theme, keeping the segments (and so the
 * cardinality bound): after a flush has published them. */
void nps_state_clear_counts(nps_state *state);

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
