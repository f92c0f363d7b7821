/*
 * window: sliding windows by event time, made of panes.
 *
 * A window of size W has panes of W / NPS_PANES_PER_WINDOW, aligned on the
 * epoch. At time `now` it holds the panes with index in
 * [pane(now) - NPS_PANES_PER_WINDOW + 1, +inf): the current, partial pane
 * and the 59 before it, plus panes a little ahead (events within the
 * allowed clock skew). So a window is exact to one pane and shrinks as
 * `now` moves even when no event arrives.
 *
 * The worker keys its deltas on the finest pane, the greatest common
 * divisor of all pane sizes, so that each finite window's pane is a whole
 * number of fine panes: one counter update per event and view, and the
 * merger rolls fine panes up into every window.
 *
 * The window set is built once at start and then only read.
 */
#ifndef NPS_WINDOW_H
#define NPS_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "npstream/nps.h"

#define NPS_MAX_WINDOWS 16
#define NPS_PANES_PER_WINDOW 60
#define NPS_DEFAULT_WINDOWS "5m,1h,24h,7d,30d"
#define NPS_WINDOW_TOTAL "total"

/* The pane key of events counted in `total` only (late events). */
#define NPS_PANE_LATE INT64_MIN

typedef struct nps_window {
    char name[16];
    int64_t size_ms; /* 0 for `total` */
    int64_t pane_ms; /* 0 for `total` */
} nps_window;

typedef struct nps_windows {
    int n;                  /* finite windows, then `total` last */
    nps_window w[NPS_MAX_WINDOWS];
    int64_t fine_pane_ms;   /* gcd of the finite windows' pane sizes */
    int largest;            /* index of the largest finite window */
} nps_windows;

/* Parse "5m,1h,24h,7d,30d" (each a duration whose size divides into
 * NPS_PANES_PER_WINDOW whole milliseconds, no repeats); `total` is added. */
nps_status nps_windows_parse(nps_windows *windows, const char *spec, nps_error *err);

/* floor(ts / pane_ms), also for negative ts. */
static inline int64_t nps_pane_index(int64_t ts_ms, int64_t pane_ms)
{
    int64_t q = ts_ms / pane_ms;
    return (ts_ms % pane_ms < 0) ? q - 1 : q;
}

/* Lowest pane index window `w` holds at `now_ms`. */
static inline int64_t nps_window_low_pane(const nps_window *w, int64_t now_ms)
{
    return nps_pane_index(now_ms, w->pane_ms) - (NPS_PANES_PER_WINDOW - 1);
}

/* Late: in no finite window at now_ms (counts in `total` only). */
static inline bool nps_windows_is_late(const nps_windows *ws, int64_t ts_ms, int64_t now_ms)
{
    const nps_window *w = &ws->w[ws->largest];
    return nps_pane_index(ts_ms, w->pane_ms) < nps_window_low_pane(w, now_ms);
}

int nps_windows_find(const nps_windows *windows, const char *name);

#endif
