/*
 * dedup: an open-addressing table (linear probing, power-of-two slots,
 * at most 3/4 full) of 24-byte entries. When it is full, entries whose
 * first ts is more than the horizon before the newest ts seen are
 * dropped first; the table doubles only if that frees less than half.
 * A message can match a dropped entry only if its own ts is older than
 * the newest one seen (out of order by more than the horizon's remainder),
 * so pruning changes no verdict for events that arrive roughly in time
 * order; docs/redis-schema.md states this.
 */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define INITIAL_SLOTS 1024u

typedef struct dedup_entry {
    uint64_t hash; /* 0: empty */
    int64_t offset;
    int64_t ts_ms;
} dedup_entry;

struct nps_dedup {
    dedup_entry *slots;
    size_t mask; /* slots - 1 */
    size_t count;
    int64_t horizon_ms;
    int64_t newest_ts_ms;
};

/* `n` empty slots. Not calloc: it hands a large block over as fresh zero
 * pages, which the probes read first and the inserts then write, so each
 * page took a copy-on-write fault that flushes the TLB of every CPU of the
 * process (8-10% of the engine's CPU profile while reading a backlog).
 * Writing each slot's hash (empty is hash 0; nothing reads an empty slot's
 * other fields) makes the first touch of every page a write. */
static dedup_entry *new_slots(size_t n)
{
    dedup_entry *slots = malloc(n * sizeof(*slots));
    for (size_t i = 0; slots && i < n; i++)
        slots[i].hash = 0;
    return slots;
}

nps_dedup *nps_dedup_new(int64_t horizon_ms)
{
    nps_dedup *table = calloc(1, sizeof(*table));
    if (!table)
        return NULL;
    table->slots = new_slots(INITIAL_SLOTS);
    if (!table->slots) {
        free(table);
        return NULL;
    }
    table->mask = INITIAL_SLOTS - 1;
    table->horizon_ms = horizon_ms;
    table->newest_ts_ms = INT64_MIN;
    return table;
}

void nps_dedup_destroy(nps_dedup *table)
{
    if (!table)
        return;
    free(table->slots);
    free(table);
}

void nps_dedup_clear(nps_dedup *table)
{
    memset(table->slots, 0, (table->mask + 1) * sizeof(dedup_entry));
    table->count = 0;
    table->newest_ts_ms = INT64_MIN;
}

uint64_t nps_dedup_hash(const char *id, size_t len)
{
    uint64_t hash = XXH3_64bits(id, len);
    return hash ? hash : 1;
}

/* Where the probe for `hash` starts. */
static size_t first_slot(const nps_dedup *table, uint64_t hash)
{
    return (size_t)(hash ^ (hash >> 29)) & table->mask;
}

/* The slot of `hash`: its entry, or the empty slot where it goes. */
static dedup_entry *slot_for(const nps_dedup *table, uint64_t hash)
{
    size_t i = first_slot(table, hash);
    while (table->slots[i].hash && table->slots[i].hash != hash)
        i = (i + 1) & table->mask;
    return &table->slots[i];
}

void nps_dedup_prefetch(const nps_dedup *table, uint64_t hash)
{
    __builtin_prefetch(&table->slots[first_slot(table, hash)]);
}

static bool expired(const nps_dedup *table, const dedup_entry *e)
{
    return table->newest_ts_ms != INT64_MIN && e->ts_ms < table->newest_ts_ms - table->horizon_ms;
}

/* Make room for one more entry: rebuild without the expired entries, at
 * twice the size when they were fewer than half. */
static bool make_room(nps_dedup *table)
{
    if ((table->count + 1) * 4 <= (table->mask + 1) * 3)
        return true;
    size_t live = 0;
    for (size_t i = 0; i <= table->mask; i++)
        live += table->slots[i].hash && !expired(table, &table->slots[i]);
    size_t nslots = table->mask + 1;
    if (live * 2 >= nslots)
        nslots *= 2;
    dedup_entry *old = table->slots;
    size_t old_slots = table->mask + 1;
    table->slots = new_slots(nslots);
    if (!table->slots) {
        table->slots = old;
        return false;
    }
    table->mask = nslots - 1;
    table->count = 0;
    for (size_t i = 0; i < old_slots; i++)
        if (old[i].hash && !expired(table, &old[i])) {
            *slot_for(table, old[i].hash) = old[i];
            table->count++;
        }
    free(old);
    return true;
}

static bool insert(nps_dedup *table, uint64_t hash, int64_t offset, int64_t ts_ms)
{
    if (!make_room(table))
        return false;
    *slot_for(table, hash) = (dedup_entry){hash, offset, ts_ms};
    table->count++;
    return true;
}

bool nps_dedup_check(nps_dedup *table, uint64_t hash, int64_t offset, int64_t ts_ms,
                     nps_dedup_verdict *verdict)
{
    if (ts_ms > table->newest_ts_ms)
        table->newest_ts_ms = ts_ms;
    dedup_entry *e = slot_for(table, hash);
    if (!e->hash) {
        *verdict = NPS_DEDUP_FIRST;
        return insert(table, hash, offset, ts_ms);
    }
    if (e->offset >= offset) {
        /* the first occurrence itself (a replay), or, never in a replay
         * that starts at the fences, a message before it */
        *verdict = NPS_DEDUP_COUNTED;
        return true;
    }
    int64_t gap = ts_ms - e->ts_ms;
    if (gap <= table->horizon_ms && gap >= -table->horizon_ms) {
        *verdict = NPS_DEDUP_DUPLICATE;
        return true;
    }
    *verdict = NPS_DEDUP_FIRST; /* beyond the horizon: a new first occurrence */
    e->offset = offset;
    e->ts_ms = ts_ms;
    return true;
}

bool nps_dedup_load(nps_dedup *table, uint64_t hash, int64_t offset, int64_t ts_ms)
{
    if (!hash)
        hash = 1;
    if (ts_ms > table->newest_ts_ms)
        table->newest_ts_ms = ts_ms;
    dedup_entry *e = slot_for(table, hash);
    if (!e->hash)
        return insert(table, hash, offset, ts_ms);
    if (offset > e->offset) {
        e->offset = offset;
        e->ts_ms = ts_ms;
    }
    return true;
}

size_t nps_dedup_count(const nps_dedup *table)
{
    return table->count;
}

size_t nps_dedup_bytes(const nps_dedup *table)
{
    return sizeof(*table) + (table->mask + 1) * sizeof(dedup_entry);
}
