/*
 * state: merged counts per (view, segment, window pane) and window totals.
 *
 * Invariant: for every segment and finite window, `total` equals the sum
 * of `panes`, and `panes` holds exactly the non-empty panes with index >=
 * the window's low pane at the last advance. `total` of the window `total`
 * is every event ever applied to the segment, late ones included.
 *
 * Every pane of finite window w has index >= floor_pane[w]. An advance
 * whose low panes are all at or below their floors has nothing to drop
 * and returns without walking the segments: with 1 M segments the walk is
 * 6 M series visits, and `run --input` advances on every hand-off, while
 * a low pane moves at most once per pane of the finest window (5 s).
 */
#include "state.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define OVERFLOWED 0x80000000u

typedef nps_state_pane pane;

typedef struct series {
    pane *panes; /* ascending index */
    uint32_t npanes, cap;
    nps_counts total;
} series;

typedef struct segment_state {
    char *name;
    uint64_t hash;
    uint32_t bucket; /* the segment's flush unit within its view */
    nps_state_theme *themes;
    uint32_t nthemes, themes_cap;
    series windows[]; /* config->windows.n: sized to the windows configured */
} segment_state;

typedef struct view_state {
    segment_state **segments; /* in order of appearance */
    size_t nsegments, cap;
    uint32_t *slots; /* index + 1; open addressing on name hash */
    size_t slots_mask;
    /* `~overflow` per bucket (index or NPS_SEGMENT_NONE); with one bucket
     * it is also found by name, with more it is not (several share it). */
    uint32_t *overflow;
    size_t noverflow;
} view_state;

struct nps_state {
    const nps_config *config;
    uint32_t buckets;
    view_state views[NPS_MAX_VIEWS];
    nps_state_stats stats;
    uint32_t *map; /* delta segment -> state segment, reused */
    size_t map_cap;
    char *name_buf;
    size_t name_cap;
    nps_term_dict terms;                 /* the text of the terms in the segments' themes */
    int64_t floor_pane[NPS_MAX_WINDOWS]; /* see the invariant at the top */
};

nps_state *nps_state_new(const nps_config *config, nps_error *err)
{
    return nps_state_new_bucketed(config, 1, err);
}

nps_state *nps_state_new_bucketed(const nps_config *config, uint32_t buckets, nps_error *err)
{
    nps_state *state = calloc(1, sizeof(*state));
    if (!state)
        goto out_nomem;
    state->config = config;
    state->buckets = buckets ? buckets : 1;
    for (int w = 0; w < NPS_MAX_WINDOWS; w++)
        state->floor_pane[w] = INT64_MIN;
    for (int v = 0; v < config->views.nviews; v++) {
        view_state *vs = &state->views[v];
        vs->slots_mask = 255;
        vs->slots = calloc(vs->slots_mask + 1, sizeof(uint32_t));
        vs->overflow = malloc(state->buckets * sizeof(uint32_t));
        if (!vs->slots || !vs->overflow)
            goto out_free_state;
        for (uint32_t b = 0; b < state->buckets; b++)
            vs->overflow[b] = NPS_SEGMENT_NONE;
    }
    return state;

out_free_state:
    nps_state_destroy(state);
out_nomem:
    nps_error_set(err, "out of memory for the merged state");
    return NULL;
}

void nps_state_destroy(nps_state *state)
{
    if (!state)
        return;
    for (int v = 0; v < state->config->views.nviews; v++) {
        view_state *vs = &state->views[v];
        for (size_t i = 0; i < vs->nsegments; i++) {
            for (int w = 0; w < state->config->windows.n; w++)
                free(vs->segments[i]->windows[w].panes);
            free(vs->segments[i]->themes);
            free(vs->segments[i]->name);
            free(vs->segments[i]);
        }
        free(vs->segments);
        free(vs->slots);
        free(vs->overflow);
    }
    free(state->map);
    free(state->name_buf);
    nps_term_dict_free(&state->terms);
    free(state);
}

static uint32_t find_segment(const view_state *vs, const char *name, size_t len, uint64_t hash,
                             size_t *slot_at)
{
    size_t at = hash & vs->slots_mask;
    for (uint32_t slot; (slot = vs->slots[at]) != 0; at = (at + 1) & vs->slots_mask) {
        const segment_state *seg = vs->segments[slot - 1];
        if (seg->hash == hash && strlen(seg->name) == len && memcmp(seg->name, name, len) == 0)
            return slot - 1;
    }
    if (slot_at)
        *slot_at = at;
    return NPS_SEGMENT_NONE;
}

static bool grow_slots(view_state *vs)
{
    size_t mask = vs->slots_mask * 2 + 1;
    uint32_t *slots = calloc(mask + 1, sizeof(uint32_t));
    if (!slots)
        return false;
    for (size_t i = 0; i < vs->nsegments; i++) {
        size_t at = vs->segments[i]->hash & mask;
        while (slots[at])
            at = (at + 1) & mask;
        slots[at] = (uint32_t)i + 1;
    }
    free(vs->slots);
    vs->slots = slots;
    vs->slots_mask = mask;
    return true;
}

/* Add a segment; slot_at SIZE_MAX: not findable by name. */
static uint32_t add_segment(const nps_state *state, view_state *vs, const char *name, size_t len,
                            uint64_t hash, size_t slot_at)
{
    if (vs->nsegments == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 64;
        segment_state **bigger = realloc(vs->segments, cap * sizeof(segment_state *));
        if (!bigger)
            return NPS_SEGMENT_NONE;
        vs->segments = bigger;
        vs->cap = cap;
    }
    segment_state *seg =
        calloc(1, sizeof(*seg) + (size_t)state->config->windows.n * sizeof(seg->windows[0]));
    char *copy = malloc(len + 1);
    if (!seg || !copy) {
        free(seg);
        free(copy);
        return NPS_SEGMENT_NONE;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    seg->name = copy;
    seg->hash = hash;
    uint32_t index = (uint32_t)vs->nsegments++;
    vs->segments[index] = seg;
    if (slot_at == SIZE_MAX)
        return index;
    vs->slots[slot_at] = index + 1;
    if (vs->nsegments * 2 > vs->slots_mask && !grow_slots(vs))
        return NPS_SEGMENT_NONE;
    return index;
}

/* The state segment for a name in bucket `bucket`; past the bound, that
 * bucket's `~overflow`. */
static uint32_t segment_index(nps_state *state, view_state *vs, const char *name, size_t len,
                              uint32_t bucket, bool *overflowed)
{
    uint64_t hash = XXH3_64bits(name, len);
    size_t slot_at;
    uint32_t index = find_segment(vs, name, len, hash, &slot_at);
    *overflowed = false;
    if (index != NPS_SEGMENT_NONE)
        return index;
    bool is_overflow =
        len == strlen(NPS_SEGMENT_OVERFLOW) && memcmp(name, NPS_SEGMENT_OVERFLOW, len) == 0;
    size_t regular = vs->nsegments - vs->noverflow;
    if (!is_overflow && regular < state->config->max_segments) {
        index = add_segment(state, vs, name, len, hash, slot_at);
        if (index != NPS_SEGMENT_NONE)
            vs->segments[index]->bucket = bucket;
        return index;
    }
    *overflowed = !is_overflow;
    if (vs->overflow[bucket] != NPS_SEGMENT_NONE)
        return vs->overflow[bucket];
    name = NPS_SEGMENT_OVERFLOW;
    len = strlen(name);
    hash = XXH3_64bits(name, len);
    find_segment(vs, name, len, hash, &slot_at);
    index = add_segment(state, vs, name, len, hash, state->buckets == 1 ? slot_at : SIZE_MAX);
    if (index == NPS_SEGMENT_NONE)
        return index;
    vs->segments[index]->bucket = bucket;
    vs->overflow[bucket] = index;
    vs->noverflow++;
    return index;
}

/* Add counts into the pane `index` of a series, keeping panes sorted. */
static bool series_add(series *s, int64_t index, const nps_counts *counts, uint64_t *npanes)
{
    nps_counts_add(&s->total, counts);
    uint32_t lo = 0, hi = s->npanes;
    if (hi && s->panes[hi - 1].index < index) {
        lo = hi; /* the common case: the newest pane */
    } else {
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (s->panes[mid].index < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < s->npanes && s->panes[lo].index == index) {
            nps_counts_add(&s->panes[lo].counts, counts);
            return true;
        }
    }
    if (s->npanes == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 4;
        pane *bigger = realloc(s->panes, cap * sizeof(pane));
        if (!bigger)
            return false;
        s->panes = bigger;
        s->cap = cap;
    }
    memmove(&s->panes[lo + 1], &s->panes[lo], (s->npanes - lo) * sizeof(pane));
    s->panes[lo] = (pane){.index = index, .counts = *counts};
    s->npanes++;
    (*npanes)++;
    return true;
}

/* Each window's low pane at now_ms: older panes have left it (0 for
 * `total`, which drops none). */
static void window_lows(const nps_windows *windows, int64_t now_ms, int64_t *lows)
{
    for (int w = 0; w < windows->n; w++)
        lows[w] = windows->w[w].size_ms ? nps_window_low_pane(&windows->w[w], now_ms) : 0;
}

void nps_state_advance(nps_state *state, int64_t now_ms)
{
    const nps_windows *windows = &state->config->windows;
    int64_t lows[NPS_MAX_WINDOWS];
    bool moved = false;
    window_lows(windows, now_ms, lows);
    for (int w = 0; w < windows->n; w++)
        moved |= windows->w[w].size_ms && lows[w] > state->floor_pane[w];
    if (!moved)
        return;
    for (int v = 0; v < state->config->views.nviews; v++) {
        view_state *vs = &state->views[v];
        for (size_t i = 0; i < vs->nsegments; i++) {
            for (int w = 0; w < windows->n; w++) {
                if (windows->w[w].size_ms == 0)
                    continue;
                series *s = &vs->segments[i]->windows[w];
                int64_t low = lows[w];
                uint32_t gone = 0;
                while (gone < s->npanes && s->panes[gone].index < low)
                    nps_counts_sub(&s->total, &s->panes[gone++].counts);
                if (gone) {
                    memmove(s->panes, s->panes + gone, (s->npanes - gone) * sizeof(pane));
                    s->npanes -= gone;
                    state->stats.panes -= gone;
                }
            }
        }
    }
    for (int w = 0; w < windows->n; w++)
        if (lows[w] > state->floor_pane[w])
            state->floor_pane[w] = lows[w];
}

static bool ensure_buffers(nps_state *state, size_t segments, size_t name_len)
{
    if (segments > state->map_cap) {
        uint32_t *map = realloc(state->map, segments * sizeof(uint32_t));
        if (!map)
            return false;
        state->map = map;
        state->map_cap = segments;
    }
    if (name_len > state->name_cap) {
        char *buf = realloc(state->name_buf, name_len);
        if (!buf)
            return false;
        state->name_buf = buf;
        state->name_cap = name_len;
    }
    return true;
}

nps_status nps_state_apply(nps_state *state, const nps_delta *delta, int64_t now_ms, nps_error *err)
{
    nps_state_advance(state, now_ms);
    return nps_state_merge(state, delta, now_ms, err);
}

const nps_state_pane *nps_state_panes(const nps_state *state, int view, size_t index, int window,
                                      uint32_t *npanes, nps_counts *total)
{
    const series *s = &state->views[view].segments[index]->windows[window];
    *npanes = s->npanes;
    *total = s->total;
    return s->panes;
}

void nps_state_clear_counts(nps_state *state)
{
    for (int v = 0; v < state->config->views.nviews; v++) {
        view_state *vs = &state->views[v];
        for (size_t i = 0; i < vs->nsegments; i++) {
            for (int w = 0; w < state->config->windows.n; w++) {
                series *s = &vs->segments[i]->windows[w];
                state->stats.panes -= s->npanes;
                s->npanes = 0;
                memset(&s->total, 0, sizeof(s->total));
            }
            vs->segments[i]->nthemes = 0;
        }
    }
    nps_term_dict_clear(&state->terms);
}

const nps_state_theme *nps_state_themes(const nps_state *state, int view, size_t index, uint32_t *n)
{
    const segment_state *seg = state->views[view].segments[index];
    *n = seg->nthemes;
    return seg->themes;
}

const nps_term_dict *nps_state_terms(const nps_state *state)
{
    return &state->terms;
}

/* Add a worker's sketch into the segment's (window, pane, class). */
static bool theme_add(segment_state *seg, int window, int64_t index, nps_class klass,
                      const nps_theme_sketch *sketch)
{
    for (uint32_t i = 0; i < seg->nthemes; i++) {
        nps_state_theme *t = &seg->themes[i];
        if (t->index == index && t->window == window && t->klass == klass) {
            nps_theme_sketch_merge(&t->sketch, sketch);
            return true;
        }
    }
    if (seg->nthemes == seg->themes_cap) {
        uint32_t cap = seg->themes_cap ? seg->themes_cap * 2 : 4;
        nps_state_theme *bigger = realloc(seg->themes, cap * sizeof(*bigger));
        if (!bigger)
            return false;
        seg->themes = bigger;
        seg->themes_cap = cap;
    }
    seg->themes[seg->nthemes++] =
        (nps_state_theme){.index = index, .window = window, .klass = klass, .sketch = *sketch};
    return true;
}

/* A delta's theme cells of one view into the segments' theme panes. */
static bool merge_themes(nps_state *state, const nps_delta_view *dv, view_state *vs,
                         const int64_t *low)
{
    const nps_windows *windows = &state->config->windows;
    for (uint32_t c = 0; c < dv->ntheme_cells; c++) {
        const nps_theme_cell *cell = &dv->theme_cells[c];
        segment_state *seg = vs->segments[state->map[cell->key.segment] & ~OVERFLOWED];
        for (int w = 0; w < windows->n; w++) {
            if (!windows->w[w].themes)
                continue;
            int64_t index = nps_pane_index(cell->key.pane, windows->w[w].pane_ms);
            if (index < low[w])
                continue; /* already outside this window */
            for (int k = 0; k < NPS_CLASSES; k++)
                if (cell->by_class[k].n &&
                    !theme_add(seg, w, index, (nps_class)k, &cell->by_class[k]))
                    return false;
        }
    }
    return true;
}

nps_status nps_state_merge(nps_state *state, const nps_delta *delta, int64_t now_ms, nps_error *err)
{
    const nps_config *config = state->config;
    const nps_windows *windows = &config->windows;
    nps_state_stats *st = &state->stats;
    st->messages += delta->messages;
    st->counted += delta->counted;
    st->late += delta->late;
    st->duplicates += delta->duplicates;
    st->overflowed += delta->overflowed;
    for (int r = 0; r < NPS_INVALID_REASONS; r++)
        st->invalid[r] += delta->invalid[r];
    st->deltas++;
    int64_t low[NPS_MAX_WINDOWS];
    window_lows(windows, now_ms, low);
    for (int w = 0; w < windows->n; w++)
        if (low[w] < state->floor_pane[w]) /* a now behind the last advance */
            state->floor_pane[w] = low[w];
    nps_str values[NPS_MAX_DIMS];
    for (int v = 0; v < config->views.nviews; v++) {
        const nps_delta_view *dv = &delta->views[v];
        view_state *vs = &state->views[v];
        bool with_trends = nps_view_keeps(config->trends_off, v);
        if (!ensure_buffers(state, dv->nsegments, 64))
            goto out_nomem;
        /* Segment strings once per segment per delta, not per event. The
         * map's top bit marks a segment the merger's bound sent to
         * `~overflow` (max-segments stays below 2^30). */
        for (uint32_t s = 0; s < dv->nsegments; s++) {
            const char *name = NPS_SEGMENT_OVERFLOW;
            size_t len = strlen(name);
            if (!dv->segments[s].overflow) {
                nps_delta_segment_values(delta, &config->views, v, s, values);
                len =
                    nps_segment_format(&config->views, v, values, state->name_buf, state->name_cap);
                if (len > state->name_cap) {
                    if (!ensure_buffers(state, 0, len))
                        goto out_nomem;
                    nps_segment_format(&config->views, v, values, state->name_buf, len);
                }
                name = state->name_buf;
            }
            bool overflowed;
            uint32_t bucket = (uint32_t)(dv->segments[s].hash % state->buckets);
            state->map[s] = segment_index(state, vs, name, len, bucket, &overflowed);
            if (state->map[s] == NPS_SEGMENT_NONE)
                goto out_nomem;
            if (overflowed)
                state->map[s] |= OVERFLOWED;
        }
        for (uint32_t c = 0; c < dv->ncells; c++) {
            const nps_cell *cell = &dv->cells[c];
            uint32_t mapped = state->map[cell->key.segment];
            if (mapped & OVERFLOWED) {
                uint64_t events = cell->sent;
                for (int b = 0; b < NPS_BUCKETS; b++)
                    events += cell->h[b];
                st->overflowed += events;
                st->overflowed_by_view[v] += events;
                mapped &= ~OVERFLOWED;
            }
            segment_state *seg = vs->segments[mapped];
            nps_counts counts = {.sent = cell->sent};
            for (int b = 0; b < NPS_BUCKETS; b++)
                counts.h[b] = cell->h[b];
            for (int k = 0; k < NPS_CLASSES; k++)
                counts.value[k] = cell->value[k];
            for (int w = 0; w < windows->n; w++) {
                series *s = &seg->windows[w];
                if (windows->w[w].trend && !with_trends)
                    continue;
                if (windows->w[w].size_ms == 0) {
                    nps_counts_add(&s->total, &counts);
                    continue;
                }
                if (cell->key.pane == NPS_PANE_LATE)
                    continue;
                int64_t index = nps_pane_index(cell->key.pane, windows->w[w].pane_ms);
                if (index < low[w])
                    continue; /* already outside this window */
                if (!series_add(s, index, &counts, &st->panes))
                    goto out_nomem;
            }
        }
        if (dv->ntheme_cells && !merge_themes(state, dv, vs, low))
            goto out_nomem;
    }
    if (delta->terms.n && !nps_term_dict_merge(&state->terms, &delta->terms))
        goto out_nomem;
    return NPS_OK;

out_nomem:
    nps_error_set(err, "out of memory while merging a delta");
    return NPS_ERR_NOMEM;
}

bool nps_state_get(const nps_state *state, int view, const char *segment, int window,
                   nps_counts *out)
{
    const view_state *vs = &state->views[view];
    size_t len = strlen(segment);
    uint32_t index = find_segment(vs, segment, len, XXH3_64bits(segment, len), NULL);
    if (index == NPS_SEGMENT_NONE)
        return false;
    *out = vs->segments[index]->windows[window].total;
    return true;
}

uint32_t nps_state_segment_bucket(const nps_state *state, int view, size_t index)
{
    return state->views[view].segments[index]->bucket;
}

size_t nps_state_segment_count(const nps_state *state, int view)
{
    return state->views[view].nsegments;
}

const char *nps_state_segment_name(const nps_state *state, int view, size_t index)
{
    return state->views[view].segments[index]->name;
}

void nps_state_get_stats(const nps_state *state, nps_state_stats *out)
{
    *out = state->stats;
}
