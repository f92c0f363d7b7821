/*
 * window: parsing of the window list, and the delta panes of a batch.
 */
#include "window.h"

#include <stdio.h>
#include <string.h>

#include "timestamp.h"

static int64_t gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

nps_status nps_windows_parse(nps_windows *ws, const char *spec, nps_error *err)
{
    memset(ws, 0, sizeof(*ws));
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char token[16];
        if (len == 0 || len >= sizeof(token)) {
            nps_error_set(err, "windows '%s': expected a list such as %s", spec,
                          NPS_DEFAULT_WINDOWS);
            return NPS_ERR_INVALID;
        }
        memcpy(token, p, len);
        token[len] = '\0';
        int64_t size_ms;
        if (!nps_duration_parse(token, &size_ms)) {
            nps_error_set(err, "window '%s': expected a duration such as 5m, 1h, 24h, 7d", token);
            return NPS_ERR_INVALID;
        }
        if (size_ms % NPS_PANES_PER_WINDOW != 0) {
            nps_error_set(err, "window '%s': must split into %d panes of whole milliseconds", token,
                          NPS_PANES_PER_WINDOW);
            return NPS_ERR_INVALID;
        }
        for (int i = 0; i < ws->n; i++) {
            if (ws->w[i].size_ms == size_ms) {
                nps_error_set(err, "window '%s' repeats window '%s'", token, ws->w[i].name);
                return NPS_ERR_INVALID;
            }
        }
        if (ws->n == NPS_MAX_WINDOWS - 1) {
            nps_error_set(err, "windows '%s': at most %d windows", spec, NPS_MAX_WINDOWS - 1);
            return NPS_ERR_INVALID;
        }
        nps_window *w = &ws->w[ws->n];
        strcpy(w->name, token);
        w->size_ms = size_ms;
        w->pane_ms = size_ms / NPS_PANES_PER_WINDOW;
        w->npanes = NPS_PANES_PER_WINDOW;
        ws->n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (ws->n == 0) {
        nps_error_set(err, "windows: at least one finite window is needed (e.g. %s)",
                      NPS_DEFAULT_WINDOWS);
        return NPS_ERR_INVALID;
    }
    strcpy(ws->w[ws->n].name, NPS_WINDOW_TOTAL);
    ws->n++;
    return NPS_OK;
}

int nps_windows_find(const nps_windows *ws, const char *name)
{
    for (int i = 0; i < ws->n; i++)
        if (!ws->w[i].trend && strcmp(ws->w[i].name, name) == 0)
            return i;
    return -1;
}

nps_status nps_windows_add_trends(nps_windows *ws, const char *spec, nps_error *err)
{
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char token[40], *colon;
        int64_t bucket_ms, span_ms;
        if (len == 0 || len >= sizeof(token)) {
            nps_error_set(err, "trends '%s': expected a list such as 1h:7d,1d:90d", spec);
            return NPS_ERR_INVALID;
        }
        memcpy(token, p, len);
        token[len] = '\0';
        colon = strchr(token, ':');
        if (!colon) {
            nps_error_set(err, "trend '%s': expected BUCKET:SPAN such as 1h:7d", token);
            return NPS_ERR_INVALID;
        }
        *colon = '\0';
        if (strlen(token) >= sizeof(ws->w[0].name) || !nps_duration_parse(token, &bucket_ms) ||
            !nps_duration_parse(colon + 1, &span_ms)) {
            nps_error_set(err, "trend '%s:%s': expected durations such as 1h:7d", token, colon + 1);
            return NPS_ERR_INVALID;
        }
        if (span_ms % bucket_ms != 0 || span_ms / bucket_ms > NPS_MAX_TREND_BUCKETS) {
            nps_error_set(err,
                          "trend '%s:%s': the span must be a whole number of at most %d buckets",
                          token, colon + 1, NPS_MAX_TREND_BUCKETS);
            return NPS_ERR_INVALID;
        }
        for (int i = 0; i < ws->n; i++) {
            if (ws->w[i].trend && ws->w[i].pane_ms == bucket_ms) {
                nps_error_set(err, "trend '%s' repeats trend '%s'", token, ws->w[i].name);
                return NPS_ERR_INVALID;
            }
        }
        if (ws->n == NPS_MAX_WINDOWS) {
            nps_error_set(err, "trends '%s': at most %d windows and trends", spec,
                          NPS_MAX_WINDOWS - 1);
            return NPS_ERR_INVALID;
        }
        /* before `total`, which stays last */
        ws->w[ws->n] = ws->w[ws->n - 1];
        nps_window *w = &ws->w[ws->n - 1];
        memset(w, 0, sizeof(*w));
        strcpy(w->name, token);
        w->size_ms = span_ms;
        w->pane_ms = bucket_ms;
        w->npanes = span_ms / bucket_ms;
        w->trend = true;
        ws->n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return NPS_OK;
}

nps_status nps_windows_set_themes(nps_windows *ws, const char *spec, bool only_present,
                                  nps_error *err)
{
    char list[256];
    if (strlen(spec) >= sizeof(list)) {
        nps_error_set(err, "themes '%.40s...': too long", spec);
        return NPS_ERR_INVALID;
    }
    snprintf(list, sizeof(list), "%s", spec);
    ws->theme_grain_ms = 0;
    for (int i = 0; i < ws->n; i++)
        ws->w[i].themes = false;
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int i = nps_windows_find(ws, name);
        if (i < 0 || ws->w[i].trend || ws->w[i].size_ms == 0) {
            if (only_present)
                continue;
            nps_error_set(err, "themes: '%s' is not one of the windows", name);
            return NPS_ERR_INVALID;
        }
        ws->w[i].themes = true;
        ws->theme_grain_ms =
            ws->theme_grain_ms ? gcd(ws->theme_grain_ms, ws->w[i].pane_ms) : ws->w[i].pane_ms;
    }
    return NPS_OK;
}

int64_t nps_windows_theme_low_ts(const nps_windows *ws, int64_t now_ms)
{
    int64_t low_ts = INT64_MAX;
    for (int i = 0; i < ws->n; i++) {
        if (!ws->w[i].themes)
            continue;
        int64_t ts = nps_window_low_pane(&ws->w[i], now_ms) * ws->w[i].pane_ms;
        if (ts < low_ts)
            low_ts = ts;
    }
    return low_ts;
}

void nps_pane_plan_init(nps_pane_plan *plan, const nps_windows *ws, int64_t now_ms)
{
    int order[NPS_MAX_WINDOWS];
    plan->n = 0;
    plan->late_before_ts = INT64_MAX;
    for (int i = 0; i < ws->n; i++) {
        if (ws->w[i].size_ms == 0)
            continue;
        int64_t low_ts = nps_window_low_pane(&ws->w[i], now_ms) * ws->w[i].pane_ms;
        if (!ws->w[i].trend && low_ts < plan->late_before_ts)
            plan->late_before_ts = low_ts;
        int k = plan->n++;
        while (k > 0 && plan->low_ts[k - 1] > low_ts) { /* insertion sort */
            plan->low_ts[k] = plan->low_ts[k - 1];
            order[k] = order[k - 1];
            k--;
        }
        plan->low_ts[k] = low_ts;
        order[k] = i;
    }
    for (int k = 0; k < plan->n; k++) {
        int64_t pane_ms = ws->w[order[k]].pane_ms;
        plan->grain_ms[k] = k ? gcd(plan->grain_ms[k - 1], pane_ms) : pane_ms;
    }
    /* grain_ms[k] covers windows 0..k in low_ts order: the windows holding
     * ts are 0..k for the largest k with low_ts[k] <= ts. */
}
