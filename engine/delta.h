/*
 * delta: what one worker counted since its last hand-off, per view, keyed
 * by (segment, delta pane) (window.h).
 *
 * Ownership: a delta is written by exactly one thread at a time: its
 * worker while it counts, the merger after nps_handoff_take_spsc until
 * nps_handoff_give_back_spsc (handoff.h gives the memory ordering).
 *
 * Layout per view: a segment table (the view's dimension values in a
 * canonical byte form -> segment record) and a cell table
 * ((segment, pane) -> score histogram). Both are open-addressing tables
 * whose capacity is kept across nps_delta_clear, so a worker in steady
 * state allocates nothing; a table grows (doubling) only when a batch
 * touches more pairs than any batch before.
 */
#ifndef NPS_DELTA_H
#define NPS_DELTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event_parse.h"
#include "npstream/nps.h"
#include "themes.h"
#include "view.h"
#include "window.h"

/* MurmurHash3's 64-bit finalizer: every input bit moves every output bit. */
static inline uint64_t nps_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#define NPS_SEGMENT_NONE UINT32_MAX

/* The key of a cell: a segment and a pane start (ms). */
typedef struct nps_cell_key {
    int64_t pane;
    uint32_t segment;
} nps_cell_key;

/* One (segment, delta pane) of one view: 88 bytes. The pane is the delta
 * pane's start (ms), or NPS_PANE_LATE. */
typedef struct nps_cell {
    nps_cell_key key;
    uint32_t sent;
    uint32_t h[NPS_BUCKETS];
    uint64_t value[NPS_CLASSES]; /* cents, by score class */
} nps_cell;

typedef struct nps_delta_segment {
    uint64_t hash;
    uint32_t tuple_offset; /* canonical dimension values in the arena */
    uint32_t tuple_len;
    bool overflow;      /* the view's `~overflow` segment */
    uint32_t memo_cell; /* last cell used: most events hit the same pane */
    int64_t memo_pane;
    uint32_t memo_theme_cell; /* the same for the theme cells */
    int64_t memo_theme_pane;
} nps_delta_segment;

/* The comment terms of one (segment, theme pane) of one view, by class:
 * the theme pane is the event time floored to nps_windows.theme_grain_ms. */
typedef struct nps_theme_cell {
    nps_cell_key key; /* the pane: the theme pane's start (ms) */
    nps_theme_sketch by_class[NPS_CLASSES];
} nps_theme_cell;

/* A dimension value as the delta knows it, by its id (its index in
 * nps_delta_dim.values): interned once per delta, so that the hot path
 * finds segments by small integer ids instead of by bytes. */
typedef struct nps_delta_value {
    uint32_t len;
    uint32_t text_offset; /* longer than 16 bytes: its bytes in nps_delta_dim.text */
    uint64_t hash;        /* XXH3-64 of the bytes: segment hashes are built from it */
} nps_delta_value;

/* A slot of the intern table, holding its value's key so that a look-up
 * reads one record: up to 16 bytes, the bytes (nps_delta_intern);
 * longer, XXH3 and 0, with the bytes compared in nps_delta_dim.text. */
typedef struct nps_delta_value_slot {
    uint64_t key[2];
    uint32_t len;
    uint32_t id1; /* the value's id + 1; 0: an empty slot */
} nps_delta_value_slot;

typedef struct nps_delta_dim {
    nps_delta_value_slot *slots; /* NULL until used */
    uint32_t slots_mask;
    nps_delta_value *values;
    uint32_t nvalues, values_cap;
    char *text;
    uint32_t text_len, text_cap;
} nps_delta_dim;

/* The segment of one combination of value ids, for views of at most two
 * dimensions (ids packed in one word), with the cells it counted in by
 * pane slot (the pane's index at its grain modulo NPS_ENTRY_PANES): a
 * live stream's events fall in a few consecutive panes of the finest
 * grain, each with its own slot, so finding the cell is one compare that
 * the branch predictor gets right. 64 bytes: one cache line. */
#define NPS_ENTRY_PANES 4
typedef struct nps_delta_entry {
    uint64_t ids;
    uint32_t segment;               /* NPS_SEGMENT_NONE: an empty slot */
    uint32_t cell[NPS_ENTRY_PANES]; /* UINT32_MAX: none yet */
    int64_t pane[NPS_ENTRY_PANES];
} nps_delta_entry;

typedef struct nps_delta_view {
    uint32_t *segment_slots; /* index + 1 into segments; 0 = empty */
    uint32_t segment_slots_mask;
    nps_delta_segment *segments;
    uint32_t nsegments, segments_cap;
    uint32_t *cell_slots; /* index + 1 into cells; 0 = empty */
    uint32_t cell_slots_mask;
    nps_cell *cells;
    uint32_t ncells, cells_cap;
    char *arena;
    uint32_t arena_len, arena_cap;
    uint32_t overflow_segment; /* NPS_SEGMENT_NONE until used */
    uint32_t *theme_slots;     /* index + 1 into theme_cells; NULL until themes are counted */
    uint32_t theme_slots_mask;
    nps_theme_cell *theme_cells;
    uint32_t ntheme_cells, theme_cells_cap;
    /* Open addressing by ids: a view of one dimension keys a slot by the
     * id itself (ids are dense, so the first probe finds it), a view of
     * two by a hash of both. NULL until used. */
    nps_delta_entry *entries;
    uint32_t entries_mask, nentries;
} nps_delta_view;

/* Where a worker's consumption of one Kafka partition stands: the offset
 * after the last message this delta (and those before it) covered. */
typedef struct nps_delta_partition {
    int32_t partition;
    int64_t next_offset;
} nps_delta_partition;

/* A response id counted for the first time (dedup.h): the flusher
 * persists it before the fences that pass its offset. */
typedef struct nps_dedup_record {
    int32_t partition;
    uint64_t hash;
    int64_t offset;
    int64_t ts_ms;
} nps_dedup_record;

typedef struct nps_delta {
    int nviews;
    /* Kafka progress at the hand-off (pipeline.c); unused by run --input. */
    uint64_t epoch; /* the pipeline's resync epoch the counts belong to */
    nps_delta_partition *partitions;
    uint32_t npartitions, partitions_cap;
    int64_t oldest_source_ms; /* oldest Kafka timestamp counted; 0: none */
    nps_delta_view views[NPS_MAX_VIEWS];
    uint64_t messages;                     /* every message offered */
    uint64_t counted;                      /* valid events counted */
    uint64_t invalid[NPS_INVALID_REASONS]; /* by reason */
    uint64_t late;                         /* counted in `total` only */
    uint64_t overflowed;                   /* (event, view) pairs sent to `~overflow` */
    uint64_t duplicates;                   /* responses whose id was counted before */
    nps_dedup_record *dedup_records;
    uint32_t ndedup_records, dedup_records_cap;
    /* Detractor responses to append to the stream PREFIX:detractors, one
     * compact binary record each (numbers as integers, strings as bytes;
     * nps_detractor_read): the worker only copies, the flusher formats. */
    char *detractors;
    size_t detractors_len, detractors_cap;
    uint32_t ndetractors;
    nps_term_dict terms;              /* the text of every term in the theme cells */
    nps_delta_dim dims[NPS_MAX_DIMS]; /* interned values, by nps_views.dim_names */
} nps_delta;

nps_delta *nps_delta_new(int nviews, nps_error *err);
void nps_delta_destroy(nps_delta *delta);

/* Empty the delta, keeping its capacity. Cost: its table sizes. */
void nps_delta_clear(nps_delta *delta);

bool nps_delta_is_empty(const nps_delta *delta);

/* @locality owner. Record the progress of a partition (cold: once per
 * partition per hand-off). False when memory runs out. */
bool nps_delta_set_partition(nps_delta *delta, int32_t partition, int64_t next_offset);

/* The 64-bit hash of a segment from its dimension values' XXH3 hashes:
 * stable across processes and view order (the pipeline's flush unit of a
 * segment is this hash modulo the buckets per view). */
uint64_t nps_delta_segment_hash(const nps_views *views, int view, const uint64_t *dim_hashes);

/* @locality owner. The ids of an event's dimension values in this delta
 * (ids[d] for d < ndims), interning the values it has not seen. False
 * only when memory runs out. */
bool nps_delta_intern(nps_delta *delta, int ndims, const nps_str *dims, uint32_t *ids);

/* The XXH3 hashes of interned values (for nps_delta_segment_hash). */
void nps_delta_value_hashes(const nps_delta *delta, int ndims, const uint32_t *ids,
                            uint64_t *dim_hashes);

/* @locality owner. The segment of `view` for the dimension values (and
 * their interned ids), found or added; past max_segments distinct
 * segments, the overflow segment. Returns NPS_SEGMENT_NONE only when
 * memory runs out. */
uint32_t nps_delta_segment_for(nps_delta *delta, const nps_views *views, int view,
                               const nps_str *dims, const uint32_t *ids, uint32_t max_segments);

/* @locality owner. The cell an event counts in for `view`: its segment
 * (as nps_delta_segment_for, also in *segment) and pane, with the pane's
 * index from nps_pane_plan_key. Out of line: every case
 * nps_delta_event_cell does not answer itself. */
nps_cell *nps_delta_event_cell_slow(nps_delta *delta, const nps_views *views, int view,
                                    const nps_str *dims, const uint32_t *ids, int64_t pane,
                                    int64_t pane_index, uint32_t max_segments, uint32_t *segment);

/* The entry key of a view of at most two dimensions: its values' ids. */
static inline uint64_t nps_delta_entry_key(const nps_view *v, const uint32_t *ids)
{
    return v->ndims == 0   ? 0
           : v->ndims == 1 ? ids[v->dim[0]]
                           : ids[v->dim[0]] | (uint64_t)ids[v->dim[1]] << 32;
}

static inline uint32_t nps_delta_entry_slot(const nps_view *v, uint64_t key)
{
    return v->ndims == 2 ? (uint32_t)((key * 0x9e3779b97f4a7c15ULL) >> 29) : (uint32_t)key;
}

/* @locality owner. The hot path of nps_delta_event_cell_slow: for views
 * of up to two dimensions, one entry and one compare when the entry has
 * counted in the pane before. NULL only when memory runs out. */
static inline nps_cell *nps_delta_event_cell(nps_delta *delta, const nps_views *views, int view,
                                             const nps_str *dims, const uint32_t *ids, int64_t pane,
                                             int64_t pane_index, uint32_t max_segments,
                                             uint32_t *segment)
{
    nps_delta_view *dv = &delta->views[view];
    const nps_view *v = &views->views[view];
    if (v->ndims <= 2 && dv->entries) {
        uint64_t key = nps_delta_entry_key(v, ids);
        const nps_delta_entry *e = &dv->entries[nps_delta_entry_slot(v, key) & dv->entries_mask];
        uint32_t s = (uint32_t)pane_index & (NPS_ENTRY_PANES - 1);
        if (e->ids == key && e->segment != NPS_SEGMENT_NONE && e->pane[s] == pane &&
            e->cell[s] != UINT32_MAX) {
            *segment = e->segment;
            delta->overflowed += e->segment == dv->overflow_segment; /* as segment_for counts */
            return &dv->cells[e->cell[s]];
        }
    }
    return nps_delta_event_cell_slow(delta, views, view, dims, ids, pane, pane_index, max_segments,
                                     segment);
}

/* @locality owner. The cell of (segment, pane), found or added; NULL only
 * when memory runs out. */
nps_cell *nps_delta_cell_for(nps_delta *delta, int view, uint32_t segment, int64_t pane);

/* @locality owner. The theme cell of (segment, theme pane), found or
 * added; NULL only when memory runs out. */
nps_theme_cell *nps_delta_theme_cell_for(nps_delta *delta, int view, uint32_t segment,
                                         int64_t pane);

/* The bucket of the detractor view (nps_views_detractor_view) whose unit
 * appends the detractor response at (partition, offset) to the stream,
 * and whose fence for that partition says whether it already has. A hash
 * of the position, not the segment: a backlog's entries then divide
 * evenly among the view's units, where by segment a large one put
 * thousands in one unit's script (50-90 ms of Redis at 4 M events). */
static inline uint32_t nps_detractor_unit_bucket(int32_t partition, int64_t offset,
                                                 uint32_t buckets)
{
    return (uint32_t)(nps_mix64((uint64_t)offset ^ (uint64_t)(uint32_t)partition << 40) % buckets);
}

/* @locality owner. Append one detractor response: id, score, ts, every
 * dimension of the views, value and comment when present, and where it
 * came from, as one record: a fixed header and the strings' bytes, no
 * formatting (the hot path). False when memory runs out. */
bool nps_delta_add_detractor(nps_delta *delta, const nps_views *views, const nps_event *ev,
                             int64_t ts_ms, int32_t partition, int64_t offset);

/* @locality owner. Record a first occurrence of a response id. False
 * when memory runs out. */
bool nps_delta_add_dedup_record(nps_delta *delta, const nps_dedup_record *record);

/* One detractor response as read back from its record. The strings
 * point into the records' buffer. */
typedef struct nps_detractor {
    int32_t partition;
    int64_t offset;
    int64_t ts_ms;
    int score;
    bool has_value;
    int64_t value_cents;
    nps_str id;                 /* empty when absent */
    nps_str comment;            /* empty when absent */
    int ndims;                  /* nps_views.ndims when recorded */
    nps_str dims[NPS_MAX_DIMS]; /* by nps_views.dim_names */
} nps_detractor;

/* Read the record at *pos of a detractor buffer (delta->detractors, or
 * records appended from it) and advance *pos past it. */
void nps_detractor_read(const char *buf, size_t *pos, nps_detractor *out);

/* The nps_detractor_unit_bucket of the record at `pos`, reading only its
 * partition and offset. */
uint32_t nps_detractor_bucket(const char *buf, size_t pos, uint32_t buckets);

/* Advance *pos past the record there, reading only its length. */
void nps_detractor_skip(const char *buf, size_t *pos);

/* Append `len` bytes of detractor entries (another delta's) to `buf`,
 * growing it; false when memory runs out. */
bool nps_detractors_append(char **buf, size_t *len, size_t *cap, const char *data, size_t data_len);

/* Decode a segment's canonical tuple into dimension values indexed as
 * nps_views.dim_names (the view's dimensions only; others untouched). */
void nps_delta_segment_values(const nps_delta *delta, const nps_views *views, int view,
                              uint32_t segment, nps_str *values);

#endif
