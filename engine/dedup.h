/*
 * dedup: one Kafka partition's table of response ids already counted,
 * and the rule that decides whether a message is a duplicate.
 *
 * Key: the XXH3-64 hash of the id (distinct ids colliding in 64 bits are
 * merged: with n ids the chance of any collision is about n^2 / 2^65).
 * Value: the offset and event time of the id's first occurrence.
 *
 * The rule is a function of the partition's history only, so a replay
 * after a crash decides the same as the first run: the message (id,
 * offset o, ts) is a duplicate iff the table holds the id with first
 * offset < o and |ts - first ts| <= horizon. A repeat beyond the horizon
 * is counted and becomes the id's new first occurrence; the first
 * occurrence itself (first offset == o, a replay) is counted.
 *
 * Thread contract: a table belongs to the worker that owns the partition;
 * nothing here is shared or locked.
 */
#ifndef NPS_DEDUP_H
#define NPS_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nps_dedup nps_dedup;

typedef enum nps_dedup_verdict {
    NPS_DEDUP_FIRST,     /* counted; a new first occurrence, to persist */
    NPS_DEDUP_COUNTED,   /* counted; nothing new to persist */
    NPS_DEDUP_DUPLICATE, /* counted nowhere */
} nps_dedup_verdict;

/* horizon_ms > 0. NULL when memory runs out. */
nps_dedup *nps_dedup_new(int64_t horizon_ms);
void nps_dedup_destroy(nps_dedup *table);

/* Forget every id, keeping the capacity. */
void nps_dedup_clear(nps_dedup *table);

/* The 64-bit key of an id (never 0: 0 marks an empty slot). */
uint64_t nps_dedup_hash(const char *id, size_t len);

/* @locality owner. Start loading the slot where `hash` is probed first,
 * so that the cache miss of a large table overlaps the work done before
 * nps_dedup_check. Changes nothing. */
void nps_dedup_prefetch(const nps_dedup *table, uint64_t hash);

/* @locality owner. Judge one message and record it when it is a new
 * first occurrence. Allocates only when the table must grow (after
 * pruning ids older than the horizon before the newest ts seen); returns
 * false only when that fails. */
bool nps_dedup_check(nps_dedup *table, uint64_t hash, int64_t offset, int64_t ts_ms,
                     nps_dedup_verdict *verdict);

/* @locality owner. Load a stored first occurrence (cold: partition
 * assignment). Of several stored for one id, the one with the largest
 * offset is kept: the latest first occurrence. False when memory runs
 * out. */
bool nps_dedup_load(nps_dedup *table, uint64_t hash, int64_t offset, int64_t ts_ms);

size_t nps_dedup_count(const nps_dedup *table);

/* Bytes the table holds in memory (its slots and itself). */
size_t nps_dedup_bytes(const nps_dedup *table);

#endif
