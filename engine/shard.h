/*
 * shard: one worker's private aggregation state. A worker thread parses
 * its messages and counts them into its current delta, with no lock and
 * no shared write; at batch boundaries it hands the delta to the merger
 * through its nps_handoff (handoff.h).
 *
 * Thread contract:
 *   nps_shard_set_now, nps_shard_add, nps_shard_publish: the worker only.
 *   nps_shard_take, nps_shard_give_back: the merger only.
 *   new/destroy: while neither runs.
 */
#ifndef NPS_SHARD_H
#define NPS_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dedup.h"
#include "delta.h"
#include "event_parse.h"

typedef struct nps_shard nps_shard;

/* The shard reads `config` for its whole life: keep it alive. */
nps_shard *nps_shard_new(const nps_config *config, nps_error *err);
void nps_shard_destroy(nps_shard *shard);

/* @locality worker. The clock for the coming batch: windows, late and
 * future are judged against it. */
void nps_shard_set_now(nps_shard *shard, int64_t now_ms);

/*
 * @locality worker. Count one message: the hot path. It allocates nothing
 * in steady state, takes no lock and writes only the worker's own delta.
 * fallback_ts_ms is the message's transport timestamp, used when the
 * event has no `ts` (negative: none, use now). *reason says whether the
 * event was counted (NPS_VALID) or why not; invalid events are counted by
 * reason in the delta. Returns NPS_ERR_NOMEM only if a table could not
 * grow; the delta may then hold part of that event, and the caller must
 * stop without acknowledging it.
 */
nps_status nps_shard_add(nps_shard *shard, const char *msg, size_t len, int64_t fallback_ts_ms,
                         nps_invalid_reason *reason, char *detail, size_t detail_size);

/* @locality worker. As nps_shard_add, for the message at `offset` of
 * `partition` whose flush units have the fences unit_fences (view v's
 * bucket b is unit v * buckets + b; -1: none yet): the message is counted
 * only in the views whose unit has not applied it (offset >= fence).
 * unit_fences NULL counts it everywhere. With partition >= 0 and
 * detractors-maxlen > 0, a detractor response is also recorded for the
 * stream, with the bucket of the detractor view's (nps_views_detractor_view)
 * unit that appends it (nps_detractor_unit_bucket), unless that unit's
 * fence is past it. */
nps_status nps_shard_add_fenced(nps_shard *shard, const char *msg, size_t len,
                                int64_t fallback_ts_ms, const int64_t *unit_fences,
                                uint32_t buckets, int32_t partition, int64_t offset,
                                nps_invalid_reason *reason, char *detail, size_t detail_size);

/* @locality worker. The message the caller will count after the one it
 * counts next, with its partition's dedup table (NULL: none): the next
 * nps_shard_add_fenced parses it ahead, before counting its own message,
 * and starts loading its dedup slot, so that the cache miss of a large
 * table overlaps that counting instead of stalling the worker; the call
 * that counts it then uses that parse. `msg` must stay valid and
 * unchanged until then. msg NULL announces none and drops a message read
 * ahead: call it so when a batch ends, since a message read ahead but
 * never counted (skipped by the caller) must not be matched later by
 * address. Either way each message is counted exactly as without it. */
void nps_shard_next(nps_shard *shard, const char *msg, size_t len, nps_dedup *table);

/* @locality worker. The dedup table (dedup.h) of the partition whose
 * messages nps_shard_add_fenced counts next; NULL: no dedup. A response
 * with an `id` that the table judges a duplicate is counted nowhere but
 * in the delta's `duplicates` (once: only where the `all` view's unit
 * has not applied it), and is valid (not dead-lettered). A new first
 * occurrence is recorded in the delta for the flusher to persist. */
void nps_shard_set_dedup(nps_shard *shard, nps_dedup *table);

/* @locality worker. The delta being counted (to attach Kafka progress or
 * to read its size). */
nps_delta *nps_shard_current(nps_shard *shard);

/* @locality worker. True when some view of the current delta holds
 * `limit` segments or more: publish (drain) before the next message so a
 * delta never sends a segment to `~overflow` by itself. */
bool nps_shard_segments_at(const nps_shard *shard, uint32_t limit);

/* @locality worker. Offer the current delta to the merger if it holds
 * anything and the merger has returned the other one. Wait-free. */
bool nps_shard_publish(nps_shard *shard);

/* @locality worker. Publish, waiting (cold path: shutdown, end of input)
 * until the merger has taken the delta. */
void nps_shard_drain(nps_shard *shard);

/* A worker consumes up to NPS_BATCH_MESSAGES messages at a time and
 * offers its delta to the merger after each batch (engine/pipeline.c's
 * worker_main; bench/scaling hands off as often). */
#define NPS_BATCH_MESSAGES 1024

/* While a worker reads a backlog the merger takes its deltas at most
 * every NPS_MERGE_PACE_MS, so each delta covers more events and merging
 * them (nps_state_merge and the theme sketches, 10% of the engine's CPU
 * reading 1 M events) runs fewer times on cores the workers need; a
 * worker whose slot is still full keeps counting into its current delta.
 * bench/e2e, 8 alternating runs each: 4.75 s median against 4.96 s; the
 * merger's CPU per event in bench/scaling: 13.5-15.4 ns against 74-93. */
#define NPS_MERGE_PACE_MS 20

/* @locality merger. The delta the worker published, or NULL. */
nps_delta *nps_shard_take(nps_shard *shard);

/* @locality merger. Clear a taken delta and return it to the worker. */
void nps_shard_give_back(nps_shard *shard, nps_delta *delta);

#endif
