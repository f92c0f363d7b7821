/*
 * window: parsing of the window list, and the delta panes of a batch.
 */
#include "window.h"

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
        if (strcmp(ws->w[i].name, name) == 0)
            return i;
    return -1;
}

void nps_pane_plan_init(nps_pane_plan *plan, const nps_windows *ws, int64_t now_ms)
{
    int order[NPS_MAX_WINDOWS];
    plan->n = 0;
    for (int i = 0; i < ws->n; i++) {
        if (ws->w[i].size_ms == 0)
            continue;
        int64_t low_ts = nps_window_low_pane(&ws->w[i], now_ms) * ws->w[i].pane_ms;
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
