/* themes: comment terms, Space-Saving sketches, the term dictionary
 * (engine/themes.h), and their way through the shard and the state. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "config.h"
#include "shard.h"
#include "state.h"
#include "themes.h"

static nps_stop_words *stop;

static void setup(void)
{
    nps_error err;
    stop = nps_stop_words_new(&err);
    cr_assert(stop, "%s", err.msg);
}

static void teardown(void)
{
    nps_stop_words_destroy(stop);
}

/* The terms of a comment joined by '|'. */
static const char *terms_of(const char *comment)
{
    static char out[1024];
    nps_term terms[NPS_TERMS_PER_COMMENT];
    size_t n = nps_comment_terms(stop, comment, strlen(comment), terms, NPS_TERMS_PER_COMMENT);
    out[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(terms[k].hash, XXH3_64bits(terms[k].text, terms[k].len) ?: 1);
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%.*s", k ? "|" : "",
                 (int)terms[k].len, terms[k].text);
    }
    return out;
}

TestSuite(terms, .init = setup, .fini = teardown);

Test(terms, words_lower_cased_once_each_without_stop_words)
{
    cr_assert_str_eq(terms_of("The app keeps CRASHING, the App keeps crashing!"),
                     "app|keeps|crashing");
    cr_assert_str_eq(terms_of("too slow and too expensive"), "slow|expensive");
}

Test(terms, short_long_and_numeric_words_are_dropped)
{
    cr_assert_str_eq(terms_of("ok go 42 2024 abc 3rd"), "abc|3rd");
    cr_assert_str_eq(terms_of("abcdefghijklmnopqrstuvwxyzabcdef abcdefghijklmnopqrstuvwxyzabcdefg"),
                     "abcdefghijklmnopqrstuvwxyzabcdef", "32 bytes kept, 33 dropped");
}

Test(terms, apostrophes_inside_words_and_the_typographic_one)
{
    cr_assert_str_eq(terms_of("'quoted' order's didn't"), "quoted|order's",
                     "didn't is a stop word");
    cr_assert_str_eq(terms_of("order\xe2\x80\x99s don\xe2\x80\x99t"), "order's",
                     "U+2019 reads as '");
}

Test(terms, non_ascii_bytes_are_word_bytes)
{
    cr_assert_str_eq(terms_of("caf\xc3\xa9 \xc3\xa9t\xc3\xa9 na\xc3\xafve-ish"),
                     "caf\xc3\xa9|\xc3\xa9t\xc3\xa9|na\xc3\xafve|ish");
}

Test(terms, at_most_max_terms_and_empty_input)
{
    char comment[4096] = "";
    for (int i = 0; i < 40; i++)
        snprintf(comment + strlen(comment), sizeof(comment) - strlen(comment), "word%02d ", i);
    nps_term terms[NPS_TERMS_PER_COMMENT];
    cr_assert_eq(nps_comment_terms(stop, comment, strlen(comment), terms, NPS_TERMS_PER_COMMENT),
                 NPS_TERMS_PER_COMMENT);
    cr_assert_eq(nps_comment_terms(stop, "", 0, terms, NPS_TERMS_PER_COMMENT), 0);
    cr_assert_eq(nps_comment_terms(stop, "!!! ... ,,,", 11, terms, NPS_TERMS_PER_COMMENT), 0);
}

Test(terms, the_stop_word_file_is_loaded)
{
    cr_assert(nps_is_stop_word(stop, "the", 3));
    cr_assert(nps_is_stop_word(stop, "yourselves", 10));
    cr_assert(!nps_is_stop_word(stop, "refund", 6));
    cr_assert(!nps_is_stop_word(stop, "# Stop words", 12), "comment lines are not words");
}

static uint64_t count_of(const nps_theme_sketch *s, uint64_t term)
{
    for (uint32_t k = 0; k < s->n; k++)
        if (s->e[k].term == term)
            return s->e[k].count;
    return 0;
}

Test(sketch, exact_while_it_has_room)
{
    nps_theme_sketch s = {0};
    for (uint64_t t = 1; t <= NPS_THEME_CAPACITY; t++)
        for (uint64_t i = 0; i < t; i++)
            nps_theme_sketch_add(&s, t);
    cr_assert_eq(s.n, NPS_THEME_CAPACITY);
    for (uint64_t t = 1; t <= NPS_THEME_CAPACITY; t++)
        cr_assert_eq(count_of(&s, t), t);
}

/* A stream of comments where one term is in a third of them and every
 * other is rare: Space-Saving keeps the frequent one and never counts it
 * under; no count exceeds its truth by more than N / capacity. */
Test(sketch, a_heavy_hitter_survives_a_long_tail)
{
    nps_theme_sketch s = {0};
    uint64_t n = 30000, heavy = 1000000, truth = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i % 3 == 0) {
            nps_theme_sketch_add(&s, heavy);
            truth++;
        } else {
            nps_theme_sketch_add(&s, 2 + i); /* each rare term once */
        }
    }
    uint64_t got = count_of(&s, heavy);
    cr_assert_geq(got, truth);
    cr_assert_leq(got - truth, n / NPS_THEME_CAPACITY);
    uint64_t sum = 0;
    for (uint32_t k = 0; k < s.n; k++)
        sum += s.e[k].count;
    cr_assert_eq(sum, n, "Space-Saving's counters sum to the stream length");
}

Test(sketch, merge_sums_and_keeps_the_largest)
{
    nps_theme_sketch a = {0}, b = {0};
    for (uint64_t t = 1; t <= NPS_THEME_CAPACITY; t++) {
        for (uint64_t i = 0; i < t; i++)
            nps_theme_sketch_add(&a, t);
        for (uint64_t i = 0; i < 2; i++)
            nps_theme_sketch_add(&b, t + NPS_THEME_CAPACITY / 2); /* half overlap */
    }
    nps_theme_sketch_merge(&a, &b);
    cr_assert_eq(a.n, NPS_THEME_CAPACITY);
    /* terms 9..16 gained 2; 17..24 (2 each) compete with 1..8 (1..8 each) */
    for (uint64_t t = NPS_THEME_CAPACITY / 2 + 1; t <= NPS_THEME_CAPACITY; t++)
        cr_assert_eq(count_of(&a, t), t + 2);
    cr_assert_eq(count_of(&a, NPS_THEME_CAPACITY / 2), NPS_THEME_CAPACITY / 2);
    cr_assert_eq(count_of(&a, 1), 0, "the smallest left");
    uint64_t smallest = UINT64_MAX;
    for (uint32_t k = 0; k < a.n; k++)
        smallest = a.e[k].count < smallest ? a.e[k].count : smallest;
    cr_assert_geq(smallest, 2);
}

Test(dict, put_get_grow_clear_merge)
{
    nps_term_dict d = {0}, e = {0};
    char word[16];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(word, sizeof(word), "term%d", i);
        cr_assert(nps_term_dict_put(&d, XXH3_64bits(word, (size_t)n), word, (size_t)n));
        cr_assert(nps_term_dict_put(&d, XXH3_64bits(word, (size_t)n), word, (size_t)n));
    }
    cr_assert_eq(d.n, 1000, "a repeated put adds nothing");
    nps_str s = nps_term_dict_get(&d, XXH3_64bits("term517", 7));
    cr_assert_eq(s.len, 7);
    cr_assert(memcmp(s.ptr, "term517", 7) == 0);
    cr_assert_null(nps_term_dict_get(&d, 12345).ptr);
    cr_assert(nps_term_dict_merge(&e, &d));
    cr_assert_eq(e.n, 1000);
    nps_term_dict_clear(&d);
    cr_assert_null(nps_term_dict_get(&d, XXH3_64bits("term517", 7)).ptr);
    cr_assert_eq(nps_term_dict_get(&e, XXH3_64bits("term9", 5)).len, 5);
    nps_term_dict_free(&d);
    nps_term_dict_free(&e);
}

/* Through the shard and the merger: a response's terms reach every
 * view's segment, in the theme windows only, per class. */
Test(themes, shard_to_state)
{
    nps_config config;
    nps_error err;
    char *argv[] = {"--view",    "by_channel=channel", "--brokers", "localhost:9092",
                    "--windows", "5m,1h,24h",          "--themes",  "1h,24h",
                    "--now",     "1763800000000"};
    char *envp[] = {NULL};
    cr_assert_eq(nps_config_load(&config, NPS_CMD_RUN, 10, argv, envp, &err), NPS_OK, "%s",
                 err.msg);
    cr_assert_eq(config.windows.theme_grain_ms, 60000, "gcd of 1m and 24m panes");
    nps_shard *shard = nps_shard_new(&config, &err);
    cr_assert(shard, "%s", err.msg);
    int64_t now = config.now_ms;
    nps_shard_set_now(shard, now);
    char msg[256];
    const struct {
        int score;
        int64_t age_ms;
        const char *comment;
    } events[] = {
        {2, 1000, "Slow refund"},        {3, 2000, "refund never came"},
        {10, 3000, "great refund"},      {1, 2 * 3600000, "slow slow"}, /* 24h only */
        {0, 30 * 3600000LL, "very old"},                                /* in no theme window */
    };
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        int n = snprintf(msg, sizeof(msg),
                         "{\"score\":%d,\"ts\":%lld,\"channel\":\"sms\",\"comment\":\"%s\"}",
                         events[i].score, (long long)(now - events[i].age_ms), events[i].comment);
        nps_invalid_reason reason;
        cr_assert_eq(nps_shard_add(shard, msg, (size_t)n, -1, &reason, NULL, 0), NPS_OK);
        cr_assert_eq(reason, NPS_VALID);
    }
    nps_state *state = nps_state_new(&config, &err);
    cr_assert(state, "%s", err.msg);
    cr_assert_eq(nps_state_merge(state, nps_shard_current(shard), now, &err), NPS_OK);
    int w1h = nps_windows_find(&config.windows, "1h"),
        w24h = nps_windows_find(&config.windows, "24h");
    for (int view = 0; view < 2; view++) {
        cr_assert_eq(nps_state_segment_count(state, view), 1);
        uint32_t n;
        const nps_state_theme *t = nps_state_themes(state, view, 0, &n);
        uint64_t refund[NPS_MAX_WINDOWS][NPS_CLASSES] = {{0}}, slow[NPS_MAX_WINDOWS] = {0};
        for (uint32_t i = 0; i < n; i++) {
            cr_assert(t[i].window == w1h || t[i].window == w24h, "window %d", t[i].window);
            for (uint32_t k = 0; k < t[i].sketch.n; k++) {
                nps_str text = nps_term_dict_get(nps_state_terms(state), t[i].sketch.e[k].term);
                cr_assert(text.ptr);
                if (text.len == 6 && memcmp(text.ptr, "refund", 6) == 0)
                    refund[t[i].window][t[i].klass] += t[i].sketch.e[k].count;
                if (text.len == 4 && memcmp(text.ptr, "slow", 4) == 0 &&
                    t[i].klass == NPS_DETRACTOR)
                    slow[t[i].window] += t[i].sketch.e[k].count;
                cr_assert(text.len != 3 || memcmp(text.ptr, "old", 3) != 0, "outside 24h");
            }
        }
        cr_assert_eq(refund[w1h][NPS_DETRACTOR], 2);
        cr_assert_eq(refund[w1h][NPS_PROMOTER], 1);
        cr_assert_eq(refund[w24h][NPS_DETRACTOR], 2);
        cr_assert_eq(slow[w1h], 1, "the 2 h old comment is not in 1h");
        cr_assert_eq(slow[w24h], 2, "once per comment, however often it says it");
    }
    nps_state_clear_counts(state);
    uint32_t n;
    nps_state_themes(state, 1, 0, &n);
    cr_assert_eq(n, 0);
    nps_state_destroy(state);
    nps_shard_destroy(shard);
}
