/*
 * themes: the terms of comments, and the heavy-hitter sketches that keep
 * the most frequent ones per (segment, score class, pane).
 *
 * A comment's terms are its words, lower-cased (ASCII letters; other
 * bytes as they are), with stop words (engine/stopwords.txt), words of
 * fewer than 3 or more than NPS_TERM_MAX bytes and numbers dropped. A
 * term counts once per comment: a theme's count is how many comments
 * mention it.
 *
 * A sketch is Space-Saving with NPS_THEME_CAPACITY counters: a term whose
 * count exceeds 1/NPS_THEME_CAPACITY of the comments it saw is always
 * kept, and a kept term's count is exact while the sketch has never been
 * full (at most NPS_THEME_CAPACITY distinct terms). Merging two sketches
 * sums the counts of each term and keeps the NPS_THEME_CAPACITY largest.
 *
 * Terms travel as their 64-bit XXH3 hash; an nps_term_dict maps hashes
 * back to text. Everything here is single-threaded: each table belongs to
 * one thread (a worker's delta, or the merger's state).
 */
#ifndef NPS_THEMES_H
#define NPS_THEMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "npstream/nps.h"
#include "view.h"

#define NPS_TERM_MIN 3
#define NPS_TERM_MAX 32
#define NPS_TERMS_PER_COMMENT 32 /* distinct terms counted per comment; the rest are skipped */
#define NPS_THEME_CAPACITY 16

typedef struct nps_term {
    uint64_t hash;
    uint32_t len;
    char text[NPS_TERM_MAX];
} nps_term;

typedef struct nps_stop_words nps_stop_words;

/* The stop words compiled in from engine/stopwords.txt. */
nps_stop_words *nps_stop_words_new(nps_error *err);
void nps_stop_words_destroy(nps_stop_words *stop);
bool nps_is_stop_word(const nps_stop_words *stop, const char *word, size_t len);

/* @locality any (reads only `stop`). The distinct terms of a comment, in
 * order of first appearance, at most `max`. Allocates nothing. */
size_t nps_comment_terms(const nps_stop_words *stop, const char *comment, size_t len,
                         nps_term *terms, size_t max);

typedef struct nps_theme_entry {
    uint64_t term;
    uint64_t count;
} nps_theme_entry;

#define NPS_THEME_SLOTS (2 * NPS_THEME_CAPACITY)

/* slot: an open-addressing index on the term (entry index + 1; 0 empty),
 * so counting a comment's term is a probe or two, not a scan. */
typedef struct nps_theme_sketch {
    uint32_t n;
    uint8_t slot[NPS_THEME_SLOTS];
    nps_theme_entry e[NPS_THEME_CAPACITY];
} nps_theme_sketch;

/* An empty sketch (a zeroed one is empty too). */
void nps_theme_sketch_clear(nps_theme_sketch *sketch);

/* Count one comment mentioning `term`. When the sketch is full and the
 * term is new, it replaces the smallest counter and takes its count + 1
 * (Space-Saving: counts may then be over, never under). True when the
 * term was not in the sketch before (its text is then needed). */
bool nps_theme_sketch_add(nps_theme_sketch *sketch, uint64_t term);

/* Add `from` into `into`: counts of equal terms sum; past the capacity
 * the largest stay (ties: the smaller hash). */
void nps_theme_sketch_merge(nps_theme_sketch *into, const nps_theme_sketch *from);

/* Term hash -> text, for the terms of a delta or of the merged state. */
typedef struct nps_term_dict {
    uint64_t *hashes; /* open addressing; 0 = empty (a zero hash is stored as 1) */
    uint32_t *offsets;
    uint8_t *lens;
    uint32_t mask, n;
    char *arena;
    size_t arena_len, arena_cap;
} nps_term_dict;

void nps_term_dict_free(nps_term_dict *dict);
void nps_term_dict_clear(nps_term_dict *dict);

/* Remember the text of a term; false when memory runs out. */
bool nps_term_dict_put(nps_term_dict *dict, uint64_t hash, const char *text, size_t len);

/* The text of a term; {NULL, 0} when unknown. */
nps_str nps_term_dict_get(const nps_term_dict *dict, uint64_t hash);

/* Copy every term of `from` into `into`; false when memory runs out. */
bool nps_term_dict_merge(nps_term_dict *into, const nps_term_dict *from);

/* The class names used in Redis keys: promoters, passives, detractors. */
const char *nps_class_plural(nps_class klass);

#endif
