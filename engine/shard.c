/*
 * shard: parse -> classify (valid, late, future) -> one counter update
 * per view in the worker's delta, keyed by (segment, delta pane).
 */
#include "shard.h"

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "handoff.h"
#include "window.h"

/* A message parsed before its turn (nps_shard_next): its event, and its
 * id's dedup key with the table slot already being loaded. Each slot has
 * its own parser, whose scratch buffer the event's strings may point
 * into. */
typedef struct parsed {
    nps_event_parser *parser;
    const char *msg; /* NULL: nothing here */
    size_t len;
    nps_invalid_reason reason;
    uint64_t dedup_hash; /* 0: not judged, or no table given */
    nps_event event;
    char detail[256];
} parsed;

struct nps_shard {
    const nps_config *config;
    parsed slots[2]; /* the message being counted, and the next one */
    int ahead;       /* the slot holding the next message; -1: none */
    const char *next_msg;
    size_t next_len;
    nps_dedup *next_dedup;
    nps_delta *deltas[2];
    nps_delta *current; /* the worker's; the other is with the merger or spare */
    nps_handoff handoff;
    int64_t now_ms;
    int64_t future_limit_ms;           /* now + max skew */
    nps_pane_plan plan;                /* delta panes at now */
    nps_dedup *dedup;                  /* the current partition's ids; NULL: off */
    uint32_t dim_ids[NPS_MAX_DIMS];    /* the event's values, interned in the delta */
    uint64_t dim_hashes[NPS_MAX_DIMS]; /* their XXH3 hashes, where a path needs them */
    nps_stop_words *stop;
    int64_t theme_low_ts; /* older events add no themes; INT64_MAX: themes off */
    int detractor_view;   /* nps_views_detractor_view */
    nps_term terms[NPS_TERMS_PER_COMMENT];
};

nps_shard *nps_shard_new(const nps_config *config, nps_error *err)
{
    nps_shard *shard = calloc(1, sizeof(*shard));
    if (!shard) {
        nps_error_set(err, "out of memory for a shard");
        return NULL;
    }
    shard->config = config;
    shard->detractor_view = nps_views_detractor_view(&config->views);
    shard->ahead = -1;
    for (int i = 0; i < 2; i++) {
        shard->slots[i].parser = nps_event_parser_new(&config->views, config->max_event_bytes, err);
        if (!shard->slots[i].parser)
            goto out_free_parsers;
    }
    shard->stop = nps_stop_words_new(err);
    if (!shard->stop)
        goto out_free_deltas;
    for (int i = 0; i < 2; i++) {
        shard->deltas[i] = nps_delta_new(config->views.nviews, err);
        if (!shard->deltas[i])
            goto out_free_deltas;
    }
    shard->current = shard->deltas[0];
    nps_handoff_init(&shard->handoff, shard->deltas[1]);
    nps_shard_set_now(shard, 0);
    return shard;

out_free_deltas:
    nps_delta_destroy(shard->deltas[0]);
    nps_delta_destroy(shard->deltas[1]);
    nps_stop_words_destroy(shard->stop);
out_free_parsers:
    nps_event_parser_destroy(shard->slots[0].parser);
    nps_event_parser_destroy(shard->slots[1].parser);
    free(shard);
    return NULL;
}

void nps_shard_destroy(nps_shard *shard)
{
    if (!shard)
        return;
    nps_delta_destroy(shard->deltas[0]);
    nps_delta_destroy(shard->deltas[1]);
    nps_stop_words_destroy(shard->stop);
    nps_event_parser_destroy(shard->slots[0].parser);
    nps_event_parser_destroy(shard->slots[1].parser);
    free(shard);
}

void nps_shard_set_now(nps_shard *shard, int64_t now_ms)
{
    shard->now_ms = now_ms;
    /* Saturating: a huge max-skew means "no future limit", not a wrap. */
    int64_t skew = shard->config->max_skew_ms;
    shard->future_limit_ms = now_ms > INT64_MAX - skew ? INT64_MAX : now_ms + skew;
    nps_pane_plan_init(&shard->plan, &shard->config->windows, now_ms);
    shard->theme_low_ts = nps_windows_theme_low_ts(&shard->config->windows, now_ms);
}

/* Count a comment's terms in a sketch; a term new to the sketch has its
 * text kept in the delta (once per delta: later puts find it). False when
 * memory runs out. */
static bool count_terms(nps_shard *shard, nps_theme_sketch *sketch, int nterms)
{
    for (int k = 0; k < nterms; k++) {
        const nps_term *t = &shard->terms[k];
        if (nps_theme_sketch_add(sketch, t->hash) &&
            !nps_term_dict_put(&shard->current->terms, t->hash, t->text, t->len))
            return false;
    }
    return true;
}

nps_status nps_shard_add(nps_shard *shard, const char *msg, size_t len, int64_t fallback_ts_ms,
                         nps_invalid_reason *reason, char *detail, size_t detail_size)
{
    return nps_shard_add_fenced(shard, msg, len, fallback_ts_ms, NULL, 1, -1, 0, reason, detail,
                                detail_size);
}

void nps_shard_set_dedup(nps_shard *shard, nps_dedup *table)
{
    shard->dedup = table;
}

/* The dedup key of the event's id, its slot in `table` prefetched; 0
 * when the event is not judged (no table, a `sent` event, no id). */
static uint64_t dedup_key(nps_dedup *table, const nps_event *ev)
{
    if (!table || ev->sent || ev->id.len == 0)
        return 0;
    uint64_t hash = nps_dedup_hash(ev->id.ptr, ev->id.len);
    nps_dedup_prefetch(table, hash);
    return hash;
}

void nps_shard_next(nps_shard *shard, const char *msg, size_t len, nps_dedup *table)
{
    shard->next_msg = msg;
    shard->next_len = len;
    shard->next_dedup = table;
    if (!msg)
        shard->ahead = -1;
}

/* The parse of `msg` in a slot: the one read ahead when it is this
 * message, else parsed now. Then the next message announced, if any, is
 * parsed into the other slot and its dedup slot starts loading: that
 * cache miss overlaps the counting of this message. */
static parsed *parse_in_turn(nps_shard *shard, const char *msg, size_t len, char *detail,
                             size_t detail_size)
{
    parsed *cur;
    if (shard->ahead >= 0 && shard->slots[shard->ahead].msg == msg &&
        shard->slots[shard->ahead].len == len) {
        cur = &shard->slots[shard->ahead];
        if (cur->reason != NPS_VALID && detail && detail_size)
            snprintf(detail, detail_size, "%s", cur->detail);
    } else {
        cur = &shard->slots[0];
        cur->reason = nps_event_parse(cur->parser, msg, len, &cur->event, detail, detail_size);
        cur->dedup_hash = 0;
    }
    cur->msg = NULL; /* counted now: never matched again */
    shard->ahead = -1;
    if (shard->next_msg) {
        parsed *next = cur == &shard->slots[0] ? &shard->slots[1] : &shard->slots[0];
        next->msg = shard->next_msg;
        next->len = shard->next_len;
        next->reason = nps_event_parse(next->parser, next->msg, next->len, &next->event,
                                       next->detail, sizeof(next->detail));
        next->dedup_hash =
            next->reason == NPS_VALID ? dedup_key(shard->next_dedup, &next->event) : 0;
        shard->ahead = (int)(next - shard->slots);
        shard->next_msg = NULL;
    }
    return cur;
}

/* Judge a valid response's id; false only when memory runs out. `hash`:
 * dedup_key's, computed early so that the table's cache miss overlaps the
 * interning of the dimension values. */
static bool dedup_response(nps_shard *shard, uint64_t hash, int64_t ts, int32_t partition,
                           int64_t offset, nps_dedup_verdict *verdict)
{
    *verdict = NPS_DEDUP_COUNTED;
    if (!hash)
        return true;
    if (!nps_dedup_check(shard->dedup, hash, offset, ts, verdict))
        return false;
    if (*verdict != NPS_DEDUP_FIRST)
        return true;
    nps_dedup_record record = {partition, hash, offset, ts};
    return nps_delta_add_dedup_record(shard->current, &record);
}

nps_delta *nps_shard_current(nps_shard *shard)
{
    return shard->current;
}

bool nps_shard_segments_at(const nps_shard *shard, uint32_t limit)
{
    const nps_delta *delta = shard->current;
    for (int v = 0; v < delta->nviews; v++)
        if (delta->views[v].nsegments >= limit)
            return true;
    return false;
}

nps_status nps_shard_add_fenced(nps_shard *shard, const char *msg, size_t len,
                                int64_t fallback_ts_ms, const int64_t *unit_fences,
                                uint32_t buckets, int32_t partition, int64_t offset,
                                nps_invalid_reason *reason, char *detail, size_t detail_size)
{
    nps_delta *delta = shard->current;
    const nps_config *config = shard->config;
    parsed *in = parse_in_turn(shard, msg, len, detail, detail_size);
    const nps_event *ev = &in->event;
    delta->messages++;
    *reason = in->reason;
    if (*reason != NPS_VALID) {
        delta->invalid[*reason]++;
        return NPS_OK;
    }
    int64_t ts = ev->has_ts ? ev->ts_ms : fallback_ts_ms >= 0 ? fallback_ts_ms : shard->now_ms;
    if (ts > shard->future_limit_ms) {
        *reason = NPS_INVALID_FUTURE;
        delta->invalid[NPS_INVALID_FUTURE]++;
        if (detail && detail_size)
            snprintf(detail, detail_size, "ts %lld is more than %lld ms ahead of now %lld",
                     (long long)ts, (long long)config->max_skew_ms, (long long)shard->now_ms);
        return NPS_OK;
    }
    uint64_t dedup_hash = 0; /* from the read-ahead (nps_shard_next), or now */
    if (shard->dedup && partition >= 0)
        dedup_hash = in->dedup_hash ? in->dedup_hash : dedup_key(shard->dedup, ev);
    int64_t pane_index;
    int64_t pane = nps_pane_plan_key(&shard->plan, ts, &pane_index);
    bool late = ts < shard->plan.late_before_ts;
    const nps_views *views = &config->views;
    if (!nps_delta_intern(delta, views->ndims, ev->dims, shard->dim_ids))
        return NPS_ERR_NOMEM;
    if (unit_fences)
        nps_delta_value_hashes(delta, views->ndims, shard->dim_ids, shard->dim_hashes);
    nps_dedup_verdict verdict;
    if (!dedup_response(shard, dedup_hash, ts, partition, offset, &verdict))
        return NPS_ERR_NOMEM;
    if (verdict == NPS_DEDUP_DUPLICATE) {
        /* counted once across replays: where the `all` view counts */
        uint64_t all_hash = nps_delta_segment_hash(views, 0, shard->dim_hashes);
        if (!unit_fences || offset >= unit_fences[all_hash % buckets])
            delta->duplicates++;
        return NPS_OK;
    }
    int nterms = 0;
    int64_t theme_pane = 0;
    if (!ev->sent && ev->comment.len && ts >= shard->theme_low_ts) {
        nterms = (int)nps_comment_terms(shard->stop, ev->comment.ptr, ev->comment.len, shard->terms,
                                        NPS_TERMS_PER_COMMENT);
        int64_t grain = config->windows.theme_grain_ms;
        theme_pane = nps_pane_index(ts, grain) * grain;
    }
    /* in locals: the cell stores below may alias the event for the compiler */
    const bool sent = ev->sent;
    const int score = ev->score;
    const uint64_t value_cents = (uint64_t)ev->value_cents;
    const nps_class klass = nps_score_class(score);
    for (int v = 0; v < views->nviews; v++) {
        if (unit_fences) { /* catching up after a restart: cold */
            uint64_t hash = nps_delta_segment_hash(views, v, shard->dim_hashes);
            if (offset < unit_fences[(size_t)v * buckets + hash % buckets])
                continue;
        }
        uint32_t segment;
        nps_cell *cell = nps_delta_event_cell(delta, views, v, ev->dims, shard->dim_ids, pane,
                                              pane_index, config->max_segments, &segment);
        if (!cell)
            return NPS_ERR_NOMEM;
        if (sent) {
            cell->sent++;
            continue;
        }
        cell->h[score]++;
        cell->value[klass] += value_cents;
        if (nterms && nps_view_keeps(config->themes_off, v)) {
            nps_theme_cell *tc = nps_delta_theme_cell_for(delta, v, segment, theme_pane);
            if (!tc || !count_terms(shard, &tc->by_class[klass], nterms))
                return NPS_ERR_NOMEM;
        }
    }
    /* the detractor view's unit of nps_detractor_unit_bucket appends the
     * detractor, once: unless its fence is past it (a restart's catch-up,
     * the only path that needs the bucket here; the flusher derives it) */
    if (!sent && klass == NPS_DETRACTOR && partition >= 0 && config->detractors_maxlen > 0) {
        bool applied = unit_fences &&
                       offset < unit_fences[(size_t)shard->detractor_view * buckets +
                                            nps_detractor_unit_bucket(partition, offset, buckets)];
        if (!applied && !nps_delta_add_detractor(delta, views, ev, ts, partition, offset))
            return NPS_ERR_NOMEM;
    }
    delta->counted++;
    delta->late += late;
    return NPS_OK;
}

bool nps_shard_publish(nps_shard *shard)
{
    if (nps_delta_is_empty(shard->current))
        return false;
    return nps_handoff_publish_spsc(&shard->handoff, &shard->current);
}

void nps_shard_drain(nps_shard *shard)
{
    while (!nps_delta_is_empty(shard->current) && !nps_shard_publish(shard))
        sched_yield();
}

nps_delta *nps_shard_take(nps_shard *shard)
{
    return nps_handoff_take_spsc(&shard->handoff);
}

void nps_shard_give_back(nps_shard *shard, nps_delta *delta)
{
    nps_delta_clear(delta);
    nps_handoff_give_back_spsc(&shard->handoff, delta);
}
