/*
 * themes: comment terms, Space-Saving sketches and the term dictionary.
 */
#include "themes.h"

#include <stdlib.h>
#include <string.h>
/* inlined: a comment's terms are hashed on the worker's hot path */
#define XXH_INLINE_ALL
#include <xxhash.h>

extern const char nps_stopwords_txt[]; /* engine/stopwords.txt, compiled in */

struct nps_stop_words {
    uint64_t *hashes; /* open addressing on the word's XXH3; 0 = empty */
    uint32_t mask;
    /* Per byte: 0 outside a word, else the byte as it goes into a term
     * (ASCII letters lower-cased). */
    unsigned char word[256];
};

static uint64_t nonzero(uint64_t hash)
{
    return hash ? hash : 1;
}

static void stop_insert(nps_stop_words *stop, uint64_t hash)
{
    uint32_t at = (uint32_t)hash & stop->mask;
    while (stop->hashes[at] && stop->hashes[at] != hash)
        at = (at + 1) & stop->mask;
    stop->hashes[at] = hash;
}

nps_stop_words *nps_stop_words_new(nps_error *err)
{
    nps_stop_words *stop = calloc(1, sizeof(*stop));
    size_t lines = 1;
    for (const char *p = nps_stopwords_txt; *p; p++)
        lines += *p == '\n';
    uint32_t slots = 64;
    while (slots < 4 * lines)
        slots *= 2;
    if (stop)
        stop->hashes = calloc(slots, sizeof(uint64_t));
    if (!stop || !stop->hashes) {
        nps_stop_words_destroy(stop);
        nps_error_set(err, "out of memory for the stop words");
        return NULL;
    }
    stop->mask = slots - 1;
    for (int c = 0; c < 256; c++)
        stop->word[c] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80
                            ? (unsigned char)c
                        : c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a')
                                               : 0;
    for (const char *line = nps_stopwords_txt; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len && line[0] != '#')
            stop_insert(stop, nonzero(XXH3_64bits(line, len)));
        line += len + (end != NULL);
    }
    return stop;
}

void nps_stop_words_destroy(nps_stop_words *stop)
{
    if (!stop)
        return;
    free(stop->hashes);
    free(stop);
}

static bool stop_has(const nps_stop_words *stop, uint64_t hash)
{
    for (uint32_t at = (uint32_t)hash & stop->mask; stop->hashes[at]; at = (at + 1) & stop->mask)
        if (stop->hashes[at] == hash)
            return true;
    return false;
}

bool nps_is_stop_word(const nps_stop_words *stop, const char *word, size_t len)
{
    return stop_has(stop, nonzero(XXH3_64bits(word, len)));
}

/* U+2019 (right single quotation mark) is written where ' is meant. */
static bool is_right_quote(const unsigned char *s, size_t i, size_t len)
{
    return i + 2 < len && s[i] == 0xE2 && s[i + 1] == 0x80 && s[i + 2] == 0x99;
}

size_t nps_comment_terms(const nps_stop_words *stop, const char *comment, size_t len,
                         nps_term *terms, size_t max)
{
    const unsigned char *s = (const unsigned char *)comment;
    const unsigned char *word = stop->word;
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && !word[s[i]])
            i++;
        nps_term *t = &terms[n];
        size_t w = 0;
        bool too_long = false, digits_only = true;
        for (unsigned char c; i < len && (c = word[s[i]]) != 0; i++) {
            if (c == 0xE2 && is_right_quote(s, i, len)) {
                c = '\'';
                i += 2;
            }
            digits_only = digits_only && c >= '0' && c <= '9';
            if (w < NPS_TERM_MAX)
                t->text[w++] = (char)c;
            else
                too_long = true;
        }
        /* quotes around a word are not part of it */
        size_t first = 0;
        while (first < w && t->text[first] == '\'')
            first++;
        while (w > first && t->text[w - 1] == '\'')
            w--;
        w -= first;
        if (first)
            memmove(t->text, t->text + first, w);
        if (too_long || digits_only || w < NPS_TERM_MIN)
            continue;
        t->len = (uint32_t)w;
        t->hash = nonzero(XXH3_64bits(t->text, w));
        if (stop_has(stop, t->hash))
            continue;
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = terms[k].hash == t->hash;
        n += !seen;
    }
    return n;
}

void nps_theme_sketch_clear(nps_theme_sketch *sketch)
{
    sketch->n = 0;
    memset(sketch->slot, 0, sizeof(sketch->slot));
}

static void index_entry(nps_theme_sketch *sketch, uint32_t k)
{
    uint32_t at = (uint32_t)sketch->e[k].term & (NPS_THEME_SLOTS - 1);
    while (sketch->slot[at])
        at = (at + 1) & (NPS_THEME_SLOTS - 1);
    sketch->slot[at] = (uint8_t)(k + 1);
}

static void reindex(nps_theme_sketch *sketch)
{
    memset(sketch->slot, 0, sizeof(sketch->slot));
    for (uint32_t k = 0; k < sketch->n; k++)
        index_entry(sketch, k);
}

bool nps_theme_sketch_add(nps_theme_sketch *sketch, uint64_t term)
{
    uint32_t at = (uint32_t)term & (NPS_THEME_SLOTS - 1);
    for (uint8_t slot; (slot = sketch->slot[at]) != 0; at = (at + 1) & (NPS_THEME_SLOTS - 1)) {
        if (sketch->e[slot - 1].term == term) {
            sketch->e[slot - 1].count++;
            return false;
        }
    }
    if (sketch->n < NPS_THEME_CAPACITY) {
        sketch->e[sketch->n] = (nps_theme_entry){term, 1};
        sketch->slot[at] = (uint8_t)++sketch->n;
        return true;
    }
    /* full: the new term takes the smallest counter's place */
    uint32_t smallest = 0;
    for (uint32_t k = 1; k < sketch->n; k++)
        if (sketch->e[k].count < sketch->e[smallest].count)
            smallest = k;
    sketch->e[smallest].term = term;
    sketch->e[smallest].count++;
    reindex(sketch);
    return true;
}

static int by_count_desc(const void *a, const void *b)
{
    const nps_theme_entry *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return x->term < y->term ? -1 : x->term > y->term;
}

void nps_theme_sketch_merge(nps_theme_sketch *into, const nps_theme_sketch *from)
{
    nps_theme_entry all[2 * NPS_THEME_CAPACITY];
    uint32_t n = into->n;
    memcpy(all, into->e, n * sizeof(all[0]));
    for (uint32_t k = 0; k < from->n; k++) {
        uint32_t j = 0;
        while (j < n && all[j].term != from->e[k].term)
            j++;
        if (j < n)
            all[j].count += from->e[k].count;
        else
            all[n++] = from->e[k];
    }
    if (n > NPS_THEME_CAPACITY) {
        qsort(all, n, sizeof(all[0]), by_count_desc);
        n = NPS_THEME_CAPACITY;
    }
    memcpy(into->e, all, n * sizeof(all[0]));
    into->n = n;
    reindex(into);
}

/* ------------------------------------------------------------ dictionary */

static bool dict_grow(nps_term_dict *dict)
{
    uint32_t mask = dict->mask ? dict->mask * 2 + 1 : 255;
    uint64_t *hashes = calloc((size_t)mask + 1, sizeof(uint64_t));
    uint32_t *offsets = malloc(((size_t)mask + 1) * sizeof(uint32_t));
    uint8_t *lens = malloc((size_t)mask + 1);
    if (!hashes || !offsets || !lens) {
        free(hashes);
        free(offsets);
        free(lens);
        return false;
    }
    for (uint32_t i = 0; dict->hashes && i <= dict->mask; i++) {
        if (!dict->hashes[i])
            continue;
        uint32_t at = (uint32_t)dict->hashes[i] & mask;
        while (hashes[at])
            at = (at + 1) & mask;
        hashes[at] = dict->hashes[i];
        offsets[at] = dict->offsets[i];
        lens[at] = dict->lens[i];
    }
    nps_term_dict fresh = *dict;
    fresh.hashes = hashes;
    fresh.offsets = offsets;
    fresh.lens = lens;
    fresh.mask = mask;
    free(dict->hashes);
    free(dict->offsets);
    free(dict->lens);
    *dict = fresh;
    return true;
}

void nps_term_dict_free(nps_term_dict *dict)
{
    free(dict->hashes);
    free(dict->offsets);
    free(dict->lens);
    free(dict->arena);
    memset(dict, 0, sizeof(*dict));
}

void nps_term_dict_clear(nps_term_dict *dict)
{
    if (dict->n)
        memset(dict->hashes, 0, ((size_t)dict->mask + 1) * sizeof(uint64_t));
    dict->n = 0;
    dict->arena_len = 0;
}

bool nps_term_dict_put(nps_term_dict *dict, uint64_t hash, const char *text, size_t len)
{
    if (len > NPS_TERM_MAX)
        return false;
    if ((dict->n + 1) * 2 > dict->mask && !dict_grow(dict))
        return false;
    uint32_t at = (uint32_t)hash & dict->mask;
    for (; dict->hashes[at]; at = (at + 1) & dict->mask)
        if (dict->hashes[at] == hash)
            return true;
    if (dict->arena_len + len > dict->arena_cap) {
        size_t cap = dict->arena_cap ? dict->arena_cap * 2 : 4096;
        char *bigger = realloc(dict->arena, cap);
        if (!bigger)
            return false;
        dict->arena = bigger;
        dict->arena_cap = cap;
    }
    memcpy(dict->arena + dict->arena_len, text, len);
    dict->hashes[at] = hash;
    dict->offsets[at] = (uint32_t)dict->arena_len;
    dict->lens[at] = (uint8_t)len;
    dict->arena_len += len;
    dict->n++;
    return true;
}

nps_str nps_term_dict_get(const nps_term_dict *dict, uint64_t hash)
{
    if (!dict->n)
        return (nps_str){0};
    for (uint32_t at = (uint32_t)hash & dict->mask; dict->hashes[at]; at = (at + 1) & dict->mask)
        if (dict->hashes[at] == hash)
            return (nps_str){dict->arena + dict->offsets[at], dict->lens[at]};
    return (nps_str){0};
}

bool nps_term_dict_merge(nps_term_dict *into, const nps_term_dict *from)
{
    for (uint32_t i = 0; from->n && i <= from->mask; i++)
        if (from->hashes[i] && !nps_term_dict_put(into, from->hashes[i],
                                                  from->arena + from->offsets[i], from->lens[i]))
            return false;
    return true;
}

const char *nps_class_plural(nps_class klass)
{
    static const char *const names[NPS_CLASSES] = {"promoters", "passives", "detractors"};
    return names[klass];
}
