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
 * The worker counts an event once per view, in a cell keyed by the start
 * of a *delta pane*: the greatest common divisor of the pane sizes of the
 * windows that hold the event at the worker's now (an nps_pane_plan), so
 * each of those windows' panes is a whole number of delta panes and the
 * merger rolls the cell up into every window. Recent events get the
 * finest grain (5 s by default), older ones coarser grains (1 m past the
 * 5m window...), so out-of-order traffic touches few cells. Windows that
 * did not hold the event at the worker's now cannot hold it later: the
 * merger skips them because the delta pane starts no later than the event.
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

/* A window, or a trend: a series of `npanes` buckets of pane_ms (an
 * hourly trend over 7 days is 168 panes of 1h) that the pipeline
 * publishes per bucket instead of as one total. */
typedef struct nps_window {
    char name[16];
    int64_t size_ms; /* 0 for `total` */
    int64_t pane_ms; /* 0 for `total` */
    int64_t npanes;  /* NPS_PANES_PER_WINDOW for a window */
    bool trend;
    bool themes; /* the pipeline keeps comment themes (themes.h) for this window */
} nps_window;

typedef struct nps_windows {
    int n; /* finite windows, then trends, then `total` last */
    nps_window w[NPS_MAX_WINDOWS];
    /* Themes: the gcd of the theme windows' pane sizes (a worker keys an
     * event's terms by this grain); 0 when no window keeps themes. */
    int64_t theme_grain_ms;
} nps_windows;

/* Which delta pane an event falls in, for one batch's now. The windows
 * that hold a timestamp ts are those whose first millisecond low_ts <= ts:
 * sorted by low_ts, a prefix; grain[k] is the gcd of the pane sizes of
 * the first k + 1 of them. */
typedef struct nps_pane_plan {
    int n;
    int64_t late_before_ts;          /* older events are late: no window (a trend may) holds them */
    int64_t low_ts[NPS_MAX_WINDOWS]; /* ascending */
    int64_t grain_ms[NPS_MAX_WINDOWS];
} nps_pane_plan;

void nps_pane_plan_init(nps_pane_plan *plan, const nps_windows *windows, int64_t now_ms);

/* Parse "5m,1h,24h,7d,30d" (each a duration whose size divides into
 * NPS_PANES_PER_WINDOW whole milliseconds, no repeats); `total` is added. */
nps_status nps_windows_parse(nps_windows *windows, const char *spec, nps_error *err);

/* Add trends "1h:7d,1d:90d" (BUCKET:SPAN, SPAN a whole number of at most
 * NPS_MAX_TREND_BUCKETS buckets) before `total`; "" adds none. */
#define NPS_MAX_TREND_BUCKETS 1000
nps_status nps_windows_add_trends(nps_windows *windows, const char *spec, nps_error *err);

/* Keep comment themes for the windows named in "24h,7d" (finite windows
 * of the set); "" keeps none. With `only_present`, names the set lacks are
 * skipped instead of refused (the default list with other --windows). */
nps_status nps_windows_set_themes(nps_windows *windows, const char *spec, bool only_present,
                                  nps_error *err);

/* The oldest event time a theme window holds at now_ms (INT64_MAX: none). */
int64_t nps_windows_theme_low_ts(const nps_windows *windows, int64_t now_ms);

/* floor(ts / pane_ms), also for negative ts. */
static inline int64_t nps_pane_index(int64_t ts_ms, int64_t pane_ms)
{
    int64_t q = ts_ms / pane_ms;
    return (ts_ms % pane_ms < 0) ? q - 1 : q;
}

/* Lowest pane index window `w` holds at `now_ms`. */
static inline int64_t nps_window_low_pane(const nps_window *w, int64_t now_ms)
{
    return nps_pane_index(now_ms, w->pane_ms) - (w->npanes - 1);
}

/* Start of the delta pane of ts, or NPS_PANE_LATE when no finite window
 * holds ts (a late event: counted in `total` only); *index is the pane's
 * index at its grain (0 for a late event), so consecutive panes of one
 * grain have consecutive indexes. Hot path: recent events stop at the
 * first comparison. */
static inline int64_t nps_pane_plan_key(const nps_pane_plan *plan, int64_t ts_ms, int64_t *index)
{
    for (int k = plan->n - 1; k >= 0; k--)
        if (ts_ms >= plan->low_ts[k]) {
            *index = nps_pane_index(ts_ms, plan->grain_ms[k]);
            return *index * plan->grain_ms[k];
        }
    *index = 0;
    return NPS_PANE_LATE;
}

/* The index of the window (not trend) named `name`, or -1. */
int nps_windows_find(const nps_windows *windows, const char *name);

#endif
