/*
 * delta: per-worker tables of (segment, delta pane) -> counts.
 *
 * The segment key is the view's dimension values in canonical form: for
 * each dimension in view order, a 4-byte length and the bytes. Equal
 * tuples are equal segments (percent-encoding is injective), so the
 * segment string is built only by the merger, once per segment and
 * hand-off, never per event. A 64-bit hash finds the candidate; the tuple
 * comparison makes the match exact.
 */
#include "delta.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define INITIAL_SLOTS 1024u

static bool view_alloc(nps_delta_view *dv)
{
    dv->segment_slots = calloc(INITIAL_SLOTS, sizeof(uint32_t));
    dv->cell_slots = calloc(INITIAL_SLOTS, sizeof(uint32_t));
    dv->segments = malloc(INITIAL_SLOTS / 2 * sizeof(nps_delta_segment));
    dv->cells = malloc(INITIAL_SLOTS / 2 * sizeof(nps_cell));
    dv->arena = malloc((size_t)16 * INITIAL_SLOTS);
    dv->segment_slots_mask = dv->cell_slots_mask = INITIAL_SLOTS - 1;
    dv->segments_cap = dv->cells_cap = INITIAL_SLOTS / 2;
    dv->arena_cap = 16 * INITIAL_SLOTS;
    dv->overflow_segment = NPS_SEGMENT_NONE;
    return dv->segment_slots && dv->cell_slots && dv->segments && dv->cells && dv->arena;
}

static void view_free(nps_delta_view *dv)
{
    free(dv->entries);
    free(dv->segment_slots);
    free(dv->cell_slots);
    free(dv->segments);
    free(dv->cells);
    free(dv->arena);
    free(dv->theme_slots);
    free(dv->theme_cells);
}

nps_delta *nps_delta_new(int nviews, nps_error *err)
{
    nps_delta *delta = calloc(1, sizeof(*delta));
    if (!delta)
        goto out_nomem;
    delta->nviews = nviews;
    for (int v = 0; v < nviews; v++)
        if (!view_alloc(&delta->views[v]))
            goto out_free_delta;
    return delta;

out_free_delta:
    nps_delta_destroy(delta);
out_nomem:
    nps_error_set(err, "out of memory for a delta table");
    return NULL;
}

void nps_delta_destroy(nps_delta *delta)
{
    if (!delta)
        return;
    for (int v = 0; v < delta->nviews; v++)
        view_free(&delta->views[v]);
    for (int d = 0; d < NPS_MAX_DIMS; d++) {
        free(delta->dims[d].slots);
        free(delta->dims[d].values);
        free(delta->dims[d].text);
    }
    free(delta->partitions);
    free(delta->detractors);
    free(delta->dedup_records);
    nps_term_dict_free(&delta->terms);
    free(delta);
}

void nps_delta_clear(nps_delta *delta)
{
    for (int v = 0; v < delta->nviews; v++) {
        nps_delta_view *dv = &delta->views[v];
        if (dv->nsegments)
            memset(dv->segment_slots, 0, ((size_t)dv->segment_slots_mask + 1) * sizeof(uint32_t));
        if (dv->ncells)
            memset(dv->cell_slots, 0, ((size_t)dv->cell_slots_mask + 1) * sizeof(uint32_t));
        if (dv->ntheme_cells)
            memset(dv->theme_slots, 0, ((size_t)dv->theme_slots_mask + 1) * sizeof(uint32_t));
        if (dv->nentries)
            for (uint32_t i = 0; i <= dv->entries_mask; i++)
                dv->entries[i].segment = NPS_SEGMENT_NONE;
        dv->nsegments = dv->ncells = dv->arena_len = dv->ntheme_cells = dv->nentries = 0;
        dv->overflow_segment = NPS_SEGMENT_NONE;
    }
    for (int d = 0; d < NPS_MAX_DIMS; d++) {
        nps_delta_dim *dd = &delta->dims[d];
        if (dd->nvalues)
            memset(dd->slots, 0, ((size_t)dd->slots_mask + 1) * sizeof(*dd->slots));
        dd->nvalues = dd->text_len = 0;
    }
    delta->messages = delta->counted = delta->late = delta->overflowed = 0;
    delta->duplicates = 0;
    delta->ndedup_records = 0;
    delta->npartitions = 0;
    delta->oldest_source_ms = 0;
    delta->detractors_len = 0;
    delta->ndetractors = 0;
    nps_term_dict_clear(&delta->terms);
    memset(delta->invalid, 0, sizeof(delta->invalid));
}

bool nps_delta_is_empty(const nps_delta *delta)
{
    return delta->messages == 0 && delta->npartitions == 0;
}

/* Double an array's capacity (`initial` elements when it has none). */
static bool grow_array(void **array, uint32_t *cap, size_t elem_size, uint32_t initial)
{
    uint32_t want = *cap ? *cap * 2 : initial;
    void *bigger = realloc(*array, (size_t)want * elem_size);
    if (!bigger)
        return false;
    *array = bigger;
    *cap = want;
    return true;
}

bool nps_delta_add_dedup_record(nps_delta *delta, const nps_dedup_record *record)
{
    if (delta->ndedup_records == delta->dedup_records_cap &&
        !grow_array((void **)&delta->dedup_records, &delta->dedup_records_cap,
                    sizeof(*delta->dedup_records), 1024))
        return false;
    delta->dedup_records[delta->ndedup_records++] = *record;
    return true;
}

/* Make room for `more` bytes at the end of a byte buffer (doubling from
 * 4 KiB); false when memory runs out. */
static bool reserve_bytes(char **buf, size_t len, size_t *cap, size_t more)
{
    if (len + more <= *cap)
        return true;
    size_t want = *cap ? *cap : 4096;
    while (want < len + more)
        want *= 2;
    char *bigger = realloc(*buf, want);
    if (!bigger)
        return false;
    *buf = bigger;
    *cap = want;
    return true;
}

bool nps_detractors_append(char **buf, size_t *len, size_t *cap, const char *data, size_t data_len)
{
    if (!reserve_bytes(buf, *len, cap, data_len))
        return false;
    if (data_len)
        memcpy(*buf + *len, data, data_len);
    *len += data_len;
    return true;
}

/* A detractor record: this header, then ndims uint32 dimension lengths,
 * then the bytes of the id, of each dimension and of the comment. Records
 * are written and read in one process, so the header is copied as it is
 * in memory. */
typedef struct detractor_head {
    uint32_t bytes; /* the whole record */
    int32_t partition;
    int64_t offset;
    int64_t ts_ms;
    int64_t value_cents;
    uint32_t id_len, comment_len;
    uint8_t score, has_value, ndims;
} detractor_head;

/* `len` bytes from `src` to *dst, advancing it (an absent string may have
 * a NULL pointer). */
static void put_bytes(char **dst, const char *src, size_t len)
{
    if (len)
        memcpy(*dst, src, len);
    *dst += len;
}

bool nps_delta_add_detractor(nps_delta *delta, const nps_views *views, const nps_event *ev,
                             int64_t ts_ms, int32_t partition, int64_t offset)
{
    detractor_head head = {
        .partition = partition,
        .offset = offset,
        .ts_ms = ts_ms,
        .value_cents = ev->has_value ? ev->value_cents : 0,
        .id_len = (uint32_t)ev->id.len,
        .comment_len = (uint32_t)ev->comment.len,
        .score = (uint8_t)ev->score,
        .has_value = ev->has_value,
        .ndims = (uint8_t)views->ndims,
    };
    uint32_t dim_lens[NPS_MAX_DIMS];
    size_t bytes = sizeof(head) + (size_t)views->ndims * 4 + ev->id.len + ev->comment.len;
    for (int d = 0; d < views->ndims; d++) {
        dim_lens[d] = (uint32_t)ev->dims[d].len;
        bytes += ev->dims[d].len;
    }
    if (!reserve_bytes(&delta->detractors, delta->detractors_len, &delta->detractors_cap, bytes))
        return false;
    head.bytes = (uint32_t)bytes;
    char *p = delta->detractors + delta->detractors_len;
    put_bytes(&p, (const char *)&head, sizeof(head));
    put_bytes(&p, (const char *)dim_lens, (size_t)views->ndims * 4);
    put_bytes(&p, ev->id.ptr, ev->id.len);
    for (int d = 0; d < views->ndims; d++)
        put_bytes(&p, ev->dims[d].ptr, ev->dims[d].len);
    put_bytes(&p, ev->comment.ptr, ev->comment.len);
    delta->detractors_len += bytes;
    delta->ndetractors++;
    return true;
}

void nps_detractor_read(const char *buf, size_t *pos, nps_detractor *out)
{
    detractor_head head;
    const char *p = buf + *pos;
    memcpy(&head, p, sizeof(head));
    uint32_t dim_lens[NPS_MAX_DIMS];
    memcpy(dim_lens, p + sizeof(head), (size_t)head.ndims * 4);
    p += sizeof(head) + (size_t)head.ndims * 4;
    out->partition = head.partition;
    out->offset = head.offset;
    out->ts_ms = head.ts_ms;
    out->score = head.score;
    out->has_value = head.has_value;
    out->value_cents = head.value_cents;
    out->id = (nps_str){p, head.id_len};
    p += head.id_len;
    out->ndims = head.ndims;
    for (int d = 0; d < head.ndims; d++) {
        out->dims[d] = (nps_str){p, dim_lens[d]};
        p += dim_lens[d];
    }
    out->comment = (nps_str){p, head.comment_len};
    *pos += head.bytes;
}

uint32_t nps_detractor_bucket(const char *buf, size_t pos, uint32_t buckets)
{
    int32_t partition;
    int64_t offset;
    memcpy(&partition, buf + pos + offsetof(detractor_head, partition), sizeof(partition));
    memcpy(&offset, buf + pos + offsetof(detractor_head, offset), sizeof(offset));
    return nps_detractor_unit_bucket(partition, offset, buckets);
}

void nps_detractor_skip(const char *buf, size_t *pos)
{
    uint32_t bytes;
    memcpy(&bytes, buf + *pos, 4); /* detractor_head.bytes comes first */
    *pos += bytes;
}

bool nps_delta_set_partition(nps_delta *delta, int32_t partition, int64_t next_offset)
{
    for (uint32_t i = 0; i < delta->npartitions; i++) {
        if (delta->partitions[i].partition == partition) {
            delta->partitions[i].next_offset = next_offset;
            return true;
        }
    }
    if (delta->npartitions == delta->partitions_cap &&
        !grow_array((void **)&delta->partitions, &delta->partitions_cap, sizeof(*delta->partitions),
                    16))
        return false;
    delta->partitions[delta->npartitions++] = (nps_delta_partition){partition, next_offset};
    return true;
}

/* Double a slot table and re-insert every entry. Cold: amortized. */
static bool rehash(uint32_t **slots, uint32_t *mask, uint32_t count,
                   uint64_t (*hash_of)(const nps_delta_view *, uint32_t), const nps_delta_view *dv)
{
    uint32_t new_mask = *mask * 2 + 1;
    uint32_t *fresh = calloc((size_t)new_mask + 1, sizeof(uint32_t));
    if (!fresh)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t at = (uint32_t)hash_of(dv, i) & new_mask;
        while (fresh[at])
            at = (at + 1) & new_mask;
        fresh[at] = i + 1;
    }
    free(*slots);
    *slots = fresh;
    *mask = new_mask;
    return true;
}

static uint64_t segment_hash(const nps_delta_view *dv, uint32_t i)
{
    return dv->segments[i].hash;
}

static inline uint64_t cell_key_hash(uint32_t segment, int64_t pane)
{
    return nps_mix64(((uint64_t)segment << 40) ^ (uint64_t)pane);
}

static uint64_t cell_hash(const nps_delta_view *dv, uint32_t i)
{
    return cell_key_hash(dv->cells[i].key.segment, dv->cells[i].key.pane);
}

static uint32_t tuple_len_of(const nps_view *view, const nps_str *dims)
{
    uint32_t len = 0;
    for (int i = 0; i < view->ndims; i++)
        len += 4 + (uint32_t)dims[view->dim[i]].len;
    return len;
}

static bool tuple_equal(const nps_delta_view *dv, const nps_delta_segment *seg,
                        const nps_view *view, const nps_str *dims)
{
    const char *p = dv->arena + seg->tuple_offset;
    for (int i = 0; i < view->ndims; i++) {
        const nps_str *value = &dims[view->dim[i]];
        uint32_t len;
        memcpy(&len, p, 4);
        if (len != value->len || (len && memcmp(p + 4, value->ptr, len) != 0))
            return false;
        p += 4 + len;
    }
    return true;
}

static uint32_t add_segment(nps_delta_view *dv, uint64_t hash, bool overflow)
{
    if (dv->nsegments == dv->segments_cap &&
        !grow_array((void **)&dv->segments, &dv->segments_cap, sizeof(nps_delta_segment),
                    INITIAL_SLOTS / 2))
        return NPS_SEGMENT_NONE;
    uint32_t index = dv->nsegments++;
    dv->segments[index] = (nps_delta_segment){
        .hash = hash,
        .tuple_offset = dv->arena_len,
        .overflow = overflow,
        .memo_pane = NPS_PANE_LATE,
        .memo_cell = UINT32_MAX,
        .memo_theme_pane = NPS_PANE_LATE,
        .memo_theme_cell = UINT32_MAX,
    };
    return index;
}

uint64_t nps_delta_segment_hash(const nps_views *views, int view, const uint64_t *dim_hashes)
{
    /* No view index in the seed: the hash (and so a segment's flush unit,
     * hash % buckets) depends only on the dimension values, the same in
     * every process. */
    const nps_view *v = &views->views[view];
    uint64_t hash = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < v->ndims; i++)
        hash = nps_mix64(hash ^ dim_hashes[v->dim[i]]);
    return hash;
}

uint32_t nps_delta_segment_for(nps_delta *delta, const nps_views *views, int view,
                               const nps_str *dims, const uint32_t *ids, uint32_t max_segments)
{
    nps_delta_view *dv = &delta->views[view];
    const nps_view *v = &views->views[view];
    uint64_t dim_hashes[NPS_MAX_DIMS];
    nps_delta_value_hashes(delta, views->ndims, ids, dim_hashes);
    uint64_t hash = nps_delta_segment_hash(views, view, dim_hashes);
    uint32_t at = (uint32_t)hash & dv->segment_slots_mask;
    for (uint32_t slot; (slot = dv->segment_slots[at]) != 0;
         at = (at + 1) & dv->segment_slots_mask) {
        const nps_delta_segment *seg = &dv->segments[slot - 1];
        if (seg->hash == hash && !seg->overflow && tuple_equal(dv, seg, v, dims))
            return slot - 1;
    }
    /* A new segment for this delta: cold relative to events. */
    if (dv->nsegments - (dv->overflow_segment != NPS_SEGMENT_NONE) >= max_segments) {
        delta->overflowed++;
        if (dv->overflow_segment == NPS_SEGMENT_NONE)
            dv->overflow_segment = add_segment(dv, 0, true);
        return dv->overflow_segment;
    }
    uint32_t tuple_len = tuple_len_of(v, dims);
    while (dv->arena_len + tuple_len > dv->arena_cap)
        if (!grow_array((void **)&dv->arena, &dv->arena_cap, 1, 16 * INITIAL_SLOTS))
            return NPS_SEGMENT_NONE;
    uint32_t index = add_segment(dv, hash, false);
    if (index == NPS_SEGMENT_NONE)
        return NPS_SEGMENT_NONE;
    char *p = dv->arena + dv->arena_len;
    for (int i = 0; i < v->ndims; i++) {
        const nps_str *value = &dims[v->dim[i]];
        uint32_t len = (uint32_t)value->len;
        memcpy(p, &len, 4);
        if (len) /* an empty value may have a NULL pointer */
            memcpy(p + 4, value->ptr, len);
        p += 4 + len;
    }
    dv->segments[index].tuple_len = tuple_len;
    dv->arena_len += tuple_len;
    dv->segment_slots[at] = index + 1;
    if (dv->nsegments * 2 > dv->segment_slots_mask &&
        !rehash(&dv->segment_slots, &dv->segment_slots_mask, dv->nsegments, segment_hash, dv))
        return NPS_SEGMENT_NONE;
    return index;
}

/* The exact key of a value of up to 16 bytes: its bytes as two words,
 * read from both ends (overlapping), never past the end. With the length
 * it identifies the value. */
static inline void value_key(const char *p, size_t len, uint64_t key[2])
{
    uint64_t a = 0, b = 0;
    if (len >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + len - 8, 8);
    } else if (len >= 4) {
        uint32_t head, tail;
        memcpy(&head, p, 4);
        memcpy(&tail, p + len - 4, 4);
        a = head | (uint64_t)tail << 32;
    } else if (len) {
        a = (uint64_t)(unsigned char)p[0] | (uint64_t)(unsigned char)p[len / 2] << 8 |
            (uint64_t)(unsigned char)p[len - 1] << 16;
    }
    key[0] = a;
    key[1] = b;
}

/* One multiply: the tables are small and probed linearly. */
static inline uint64_t value_slot_hash(const uint64_t key[2], uint32_t len)
{
    /* key[1] rotated: for 8 bytes it equals key[0] */
    uint64_t tail = key[1] << 31 | key[1] >> 33;
    return ((key[0] ^ tail ^ len) * 0x9e3779b97f4a7c15ULL) >> 32;
}

/* Double the intern table of a dimension (or make its first). Cold. */
static bool grow_value_slots(nps_delta_dim *dd)
{
    uint32_t new_mask = dd->slots ? dd->slots_mask * 2 + 1 : 63;
    nps_delta_value_slot *fresh = calloc((size_t)new_mask + 1, sizeof(*fresh));
    if (!fresh)
        return false;
    for (uint32_t i = 0; dd->slots && i <= dd->slots_mask; i++) {
        const nps_delta_value_slot *old = &dd->slots[i];
        if (!old->id1)
            continue;
        uint32_t at = (uint32_t)value_slot_hash(old->key, old->len) & new_mask;
        while (fresh[at].id1)
            at = (at + 1) & new_mask;
        fresh[at] = *old;
    }
    free(dd->slots);
    dd->slots = fresh;
    dd->slots_mask = new_mask;
    return true;
}

/* A value new to the delta: cold (once per distinct value and batch). */
static uint32_t add_value(nps_delta_dim *dd, nps_delta_value_slot *slot, const uint64_t key[2],
                          const char *p, size_t len)
{
    if (dd->nvalues == dd->values_cap &&
        !grow_array((void **)&dd->values, &dd->values_cap, sizeof(nps_delta_value), 64))
        return UINT32_MAX;
    uint32_t text_offset = 0;
    if (len > 16) {
        while (dd->text_len + len > dd->text_cap)
            if (!grow_array((void **)&dd->text, &dd->text_cap, 1, 4096))
                return UINT32_MAX;
        text_offset = dd->text_len;
        memcpy(dd->text + text_offset, p, len);
        dd->text_len += (uint32_t)len;
    }
    uint32_t id = dd->nvalues++;
    dd->values[id] = (nps_delta_value){
        .len = (uint32_t)len,
        .text_offset = text_offset,
        .hash = len > 16 ? key[0] : XXH3_64bits(p, len),
    };
    *slot = (nps_delta_value_slot){.key = {key[0], key[1]}, .len = (uint32_t)len, .id1 = id + 1};
    if (dd->nvalues * 2 > dd->slots_mask && !grow_value_slots(dd))
        return UINT32_MAX;
    return id;
}

static inline uint32_t intern_value(nps_delta_dim *dd, const char *p, size_t len)
{
    uint64_t key[2];
    if (len <= 16) {
        value_key(p, len, key);
    } else {
        key[0] = XXH3_64bits(p, len);
        key[1] = 0;
    }
    if (!dd->slots && !grow_value_slots(dd)) /* the dimension's first value in the delta's life */
        return UINT32_MAX;
    uint32_t at = (uint32_t)value_slot_hash(key, (uint32_t)len) & dd->slots_mask;
    for (;; at = (at + 1) & dd->slots_mask) {
        const nps_delta_value_slot *slot = &dd->slots[at];
        if (!slot->id1)
            break;
        if (slot->key[0] == key[0] && slot->key[1] == key[1] && slot->len == len &&
            (len <= 16 || memcmp(dd->text + dd->values[slot->id1 - 1].text_offset, p, len) == 0))
            return slot->id1 - 1;
    }
    return add_value(dd, &dd->slots[at], key, p, len);
}

bool nps_delta_intern(nps_delta *delta, int ndims, const nps_str *dims, uint32_t *ids)
{
    for (int d = 0; d < ndims; d++) {
        ids[d] = intern_value(&delta->dims[d], dims[d].ptr, dims[d].len);
        if (ids[d] == UINT32_MAX)
            return false;
    }
    return true;
}

void nps_delta_value_hashes(const nps_delta *delta, int ndims, const uint32_t *ids,
                            uint64_t *dim_hashes)
{
    for (int d = 0; d < ndims; d++)
        dim_hashes[d] = delta->dims[d].values[ids[d]].hash;
}

static nps_cell *cell_lookup(nps_delta_view *dv, uint32_t segment, int64_t pane);

/* The entry slot of `key`: its entry, or the empty slot where it goes. */
static nps_delta_entry *entry_probe(nps_delta_view *dv, const nps_view *v, uint64_t key)
{
    uint32_t at = nps_delta_entry_slot(v, key) & dv->entries_mask;
    while (dv->entries[at].segment != NPS_SEGMENT_NONE && dv->entries[at].ids != key)
        at = (at + 1) & dv->entries_mask;
    return &dv->entries[at];
}

/* Double the entry table of a view (or make its first). Cold. */
static bool grow_entries(nps_delta_view *dv, const nps_view *v)
{
    nps_delta_entry *old = dv->entries;
    uint32_t old_mask = dv->entries_mask;
    uint32_t new_mask = old ? old_mask * 2 + 1 : 63;
    nps_delta_entry *fresh = malloc(((size_t)new_mask + 1) * sizeof(*fresh));
    if (!fresh)
        return false;
    for (uint32_t i = 0; i <= new_mask; i++)
        fresh[i].segment = NPS_SEGMENT_NONE;
    dv->entries = fresh;
    dv->entries_mask = new_mask;
    for (uint32_t i = 0; old && i <= old_mask; i++)
        if (old[i].segment != NPS_SEGMENT_NONE)
            *entry_probe(dv, v, old[i].ids) = old[i];
    free(old);
    return true;
}

/* The entry of `key`, found or added (NULL only when memory runs out). */
static nps_delta_entry *entry_for(nps_delta *delta, const nps_views *views, int view,
                                  const nps_str *dims, const uint32_t *ids, uint64_t key,
                                  uint32_t max_segments)
{
    nps_delta_view *dv = &delta->views[view];
    const nps_view *v = &views->views[view];
    if (!dv->entries && !grow_entries(dv, v))
        return NULL;
    nps_delta_entry *e = entry_probe(dv, v, key);
    if (e->segment != NPS_SEGMENT_NONE) {
        if (e->segment == dv->overflow_segment)
            delta->overflowed++; /* as nps_delta_segment_for counts it */
        return e;
    }
    /* a combination new to the delta: cold */
    uint32_t segment = nps_delta_segment_for(delta, views, view, dims, ids, max_segments);
    if (segment == NPS_SEGMENT_NONE)
        return NULL;
    *e = (nps_delta_entry){.ids = key, .segment = segment};
    for (int s = 0; s < NPS_ENTRY_PANES; s++) {
        e->cell[s] = UINT32_MAX;
        e->pane[s] = INT64_MAX;
    }
    if (++dv->nentries * 2 > dv->entries_mask) {
        if (!grow_entries(dv, v))
            return NULL;
        e = entry_probe(dv, v, key);
    }
    return e;
}

nps_cell *nps_delta_event_cell_slow(nps_delta *delta, const nps_views *views, int view,
                                    const nps_str *dims, const uint32_t *ids, int64_t pane,
                                    int64_t pane_index, uint32_t max_segments, uint32_t *segment)
{
    nps_delta_view *dv = &delta->views[view];
    const nps_view *v = &views->views[view];
    if (v->ndims > 2) {
        *segment = nps_delta_segment_for(delta, views, view, dims, ids, max_segments);
        return *segment == NPS_SEGMENT_NONE ? NULL
                                            : nps_delta_cell_for(delta, view, *segment, pane);
    }
    uint64_t key = nps_delta_entry_key(v, ids);
    nps_delta_entry *e = entry_for(delta, views, view, dims, ids, key, max_segments);
    if (!e)
        return NULL;
    *segment = e->segment;
    nps_cell *cell = cell_lookup(dv, e->segment, pane);
    if (cell) {
        uint32_t s = (uint32_t)pane_index & (NPS_ENTRY_PANES - 1);
        e->pane[s] = pane;
        e->cell[s] = (uint32_t)(cell - dv->cells);
    }
    return cell;
}

/* Probe a (segment, pane) table whose records, `size` bytes each, begin
 * as nps_cell_key: the record's slot, or the empty slot where it goes. */
static uint32_t *probe_cell(uint32_t *slots, uint32_t mask, const void *records, size_t size,
                            uint32_t segment, int64_t pane)
{
    uint32_t at = (uint32_t)cell_key_hash(segment, pane) & mask;
    for (; slots[at] != 0; at = (at + 1) & mask) {
        const nps_cell_key *key =
            (const nps_cell_key *)((const char *)records + (size_t)(slots[at] - 1) * size);
        if (key->segment == segment && key->pane == pane)
            break;
    }
    return &slots[at];
}

/* The cell of (segment, pane), found or added. */
static nps_cell *cell_lookup(nps_delta_view *dv, uint32_t segment, int64_t pane)
{
    uint32_t *at =
        probe_cell(dv->cell_slots, dv->cell_slots_mask, dv->cells, sizeof(nps_cell), segment, pane);
    uint32_t slot = *at;
    if (slot)
        return &dv->cells[slot - 1];
    if (dv->ncells == dv->cells_cap &&
        !grow_array((void **)&dv->cells, &dv->cells_cap, sizeof(nps_cell), INITIAL_SLOTS / 2))
        return NULL;
    slot = ++dv->ncells;
    dv->cells[slot - 1] = (nps_cell){.key = {.pane = pane, .segment = segment}};
    *at = slot;
    if (dv->ncells * 2 > dv->cell_slots_mask &&
        !rehash(&dv->cell_slots, &dv->cell_slots_mask, dv->ncells, cell_hash, dv))
        return NULL;
    return &dv->cells[slot - 1];
}

nps_cell *nps_delta_cell_for(nps_delta *delta, int view, uint32_t segment, int64_t pane)
{
    nps_delta_view *dv = &delta->views[view];
    nps_delta_segment *seg = &dv->segments[segment];
    if (seg->memo_pane == pane && seg->memo_cell != UINT32_MAX)
        return &dv->cells[seg->memo_cell];
    nps_cell *cell = cell_lookup(dv, segment, pane);
    if (cell) {
        seg->memo_pane = pane;
        seg->memo_cell = (uint32_t)(cell - dv->cells);
    }
    return cell;
}

static uint64_t theme_cell_hash(const nps_delta_view *dv, uint32_t i)
{
    return cell_key_hash(dv->theme_cells[i].key.segment, dv->theme_cells[i].key.pane);
}

nps_theme_cell *nps_delta_theme_cell_for(nps_delta *delta, int view, uint32_t segment, int64_t pane)
{
    nps_delta_view *dv = &delta->views[view];
    nps_delta_segment *seg = &dv->segments[segment];
    if (seg->memo_theme_pane == pane && seg->memo_theme_cell != UINT32_MAX)
        return &dv->theme_cells[seg->memo_theme_cell];
    if (!dv->theme_slots) { /* the first comment of this delta's life: cold */
        dv->theme_slots = calloc(64, sizeof(uint32_t));
        if (!dv->theme_slots)
            return NULL;
        dv->theme_slots_mask = 63;
    }
    uint32_t *at = probe_cell(dv->theme_slots, dv->theme_slots_mask, dv->theme_cells,
                              sizeof(nps_theme_cell), segment, pane);
    uint32_t slot = *at;
    if (slot)
        goto found;
    if (dv->ntheme_cells == dv->theme_cells_cap &&
        !grow_array((void **)&dv->theme_cells, &dv->theme_cells_cap, sizeof(nps_theme_cell), 32))
        return NULL;
    slot = ++dv->ntheme_cells;
    nps_theme_cell *fresh = &dv->theme_cells[slot - 1];
    fresh->key = (nps_cell_key){.pane = pane, .segment = segment};
    for (int k = 0; k < NPS_CLASSES; k++)
        nps_theme_sketch_clear(&fresh->by_class[k]);
    *at = slot;
    if (dv->ntheme_cells * 2 > dv->theme_slots_mask &&
        !rehash(&dv->theme_slots, &dv->theme_slots_mask, dv->ntheme_cells, theme_cell_hash, dv))
        return NULL;
found:
    seg->memo_theme_pane = pane;
    seg->memo_theme_cell = slot - 1;
    return &dv->theme_cells[slot - 1];
}

void nps_delta_segment_values(const nps_delta *delta, const nps_views *views, int view,
                              uint32_t segment, nps_str *values)
{
    const nps_delta_view *dv = &delta->views[view];
    const nps_view *v = &views->views[view];
    const char *p = dv->arena + dv->segments[segment].tuple_offset;
    for (int i = 0; i < v->ndims; i++) {
        uint32_t len;
        memcpy(&len, p, 4);
        values[v->dim[i]] = (nps_str){p + 4, len};
        p += 4 + len;
    }
}
