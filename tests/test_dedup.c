/* dedup: the table and the rule (engine/dedup.h), alone and in the shard. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dedup.h"
#include "event_gen.h"
#include "shard.h"

#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
#define HORIZON_MS (7 * DAY_MS)
#define T0 1763800000000LL

static nps_dedup_verdict judge(nps_dedup *table, const char *id, int64_t offset, int64_t ts)
{
    nps_dedup_verdict verdict;
    cr_assert(nps_dedup_check(table, nps_dedup_hash(id, strlen(id)), offset, ts, &verdict));
    return verdict;
}

Test(dedup, repeat_within_the_horizon_is_a_duplicate)
{
    nps_dedup *table = nps_dedup_new(HORIZON_MS);
    cr_assert_eq(judge(table, "r-1", 10, T0), NPS_DEDUP_FIRST);
    cr_assert_eq(judge(table, "r-2", 11, T0), NPS_DEDUP_FIRST);
    cr_assert_eq(judge(table, "r-1", 12, T0 + HORIZON_MS), NPS_DEDUP_DUPLICATE,
                 "edge: counts once");
    cr_assert_eq(judge(table, "r-1", 13, T0 - HORIZON_MS), NPS_DEDUP_DUPLICATE, "older copy");
    cr_assert_eq(nps_dedup_count(table), 2);
    nps_dedup_destroy(table);
}

Test(dedup, repeat_beyond_the_horizon_counts_and_starts_a_new_horizon)
{
    nps_dedup *table = nps_dedup_new(HORIZON_MS);
    cr_assert_eq(judge(table, "r-1", 10, T0), NPS_DEDUP_FIRST);
    cr_assert_eq(judge(table, "r-1", 20, T0 + HORIZON_MS + 1), NPS_DEDUP_FIRST);
    cr_assert_eq(judge(table, "r-1", 30, T0 + 2 * HORIZON_MS), NPS_DEDUP_DUPLICATE,
                 "within the horizon of the new first occurrence");
    nps_dedup_destroy(table);
}

Test(dedup, the_first_occurrence_replayed_is_counted)
{
    nps_dedup *table = nps_dedup_new(HORIZON_MS);
    /* as loaded from Redis after a crash, then the replay from the fence */
    cr_assert(nps_dedup_load(table, nps_dedup_hash("r-1", 3), 10, T0));
    cr_assert_eq(judge(table, "r-1", 10, T0), NPS_DEDUP_COUNTED);
    cr_assert_eq(judge(table, "r-1", 11, T0 + HOUR_MS), NPS_DEDUP_DUPLICATE);
    nps_dedup_destroy(table);
}

Test(dedup, load_keeps_the_latest_first_occurrence)
{
    nps_dedup *table = nps_dedup_new(HORIZON_MS);
    uint64_t h = nps_dedup_hash("r-1", 3);
    cr_assert(nps_dedup_load(table, h, 50, T0 + 8 * DAY_MS));
    cr_assert(nps_dedup_load(table, h, 10, T0));
    cr_assert_eq(judge(table, "r-1", 60, T0 + 9 * DAY_MS), NPS_DEDUP_DUPLICATE);
    nps_dedup_destroy(table);
}

Test(dedup, growth_keeps_ids_within_the_horizon_and_prunes_older)
{
    nps_dedup *table = nps_dedup_new(HOUR_MS);
    char id[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof(id), "r-%d", i);
        cr_assert_eq(judge(table, id, i, T0 + i * 1000LL), NPS_DEDUP_FIRST);
    }
    /* the newest hour (3600 ids) must all still be there */
    for (int i = 100000 - 3600; i < 100000; i++) {
        snprintf(id, sizeof(id), "r-%d", i);
        cr_assert_eq(judge(table, id, 200000 + i, T0 + 100000 * 1000LL), NPS_DEDUP_DUPLICATE, "%s",
                     id);
    }
    cr_assert_lt(nps_dedup_count(table), 20000, "pruned: %zu", nps_dedup_count(table));
    nps_dedup_destroy(table);
}

/* Not an assertion of a number: prints the memory per id for the docs. */
Test(dedup, bytes_per_million_ids)
{
    nps_dedup *table = nps_dedup_new(30 * DAY_MS);
    char id[32];
    size_t n = 1000000;
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "r-%zu", i);
        cr_assert_eq(judge(table, id, (int64_t)i, T0), NPS_DEDUP_FIRST);
    }
    cr_assert_eq(nps_dedup_count(table), n, "no collisions among 1M ids");
    size_t bytes = nps_dedup_bytes(table);
    fprintf(stderr,
            "dedup table: %zu ids in %zu bytes = %.1f bytes per id (%.1f MiB per million)\n", n,
            bytes, (double)bytes / (double)n, (double)bytes / (double)n * 1e6 / 1048576.0);
    cr_assert_leq(bytes / n, 64);
    nps_dedup_destroy(table);
}

/* The shard: a duplicate counts nowhere but in `duplicates`, is valid and
 * is not a detractor; ids absent are never deduplicated. */
Test(dedup, shard_counts_a_duplicate_once_and_only_there)
{
    nps_config config;
    nps_error err;
    cr_assert_eq(nps_config_init(&config, &err), NPS_OK);
    nps_shard *shard = nps_shard_new(&config, &err);
    cr_assert(shard);
    nps_dedup *table = nps_dedup_new(HORIZON_MS);
    nps_shard_set_now(shard, T0);
    nps_shard_set_dedup(shard, table);
    const char *msgs[] = {
        "{\"id\":\"a\",\"score\":3,\"ts\":1763800000000}",
        "{\"id\":\"a\",\"score\":3,\"ts\":1763800001000}", /* duplicate */
        "{\"score\":9,\"ts\":1763800000000}",              /* no id */
        "{\"score\":9,\"ts\":1763800000000}",              /* no id: counted again */
        "{\"id\":\"b\",\"type\":\"sent\",\"ts\":1763800000000}",
        "{\"id\":\"b\",\"score\":10,\"ts\":1763800000000}", /* a response after its invitation */
    };
    for (int i = 0; i < 6; i++) {
        nps_invalid_reason reason;
        cr_assert_eq(nps_shard_add_fenced(shard, msgs[i], strlen(msgs[i]), -1, NULL, 1, 0, i,
                                          &reason, NULL, 0),
                     NPS_OK);
        cr_assert_eq(reason, NPS_VALID);
    }
    nps_delta *delta = nps_shard_current(shard);
    cr_assert_eq(delta->counted, 5);
    cr_assert_eq(delta->duplicates, 1);
    cr_assert_eq(delta->ndetractors, 1, "the duplicate detractor is not appended again");
    cr_assert_eq(delta->ndedup_records, 2, "a and b, recorded for Redis");
    cr_assert_eq(delta->dedup_records[0].offset, 0);
    cr_assert_eq(delta->dedup_records[1].offset, 5);
    nps_shard_destroy(shard);
    nps_dedup_destroy(table);
}

/* A duplicate below the `all` view's fence was counted by the run before
 * the restart: it is judged again but not counted again. */
Test(dedup, shard_counts_a_replayed_duplicate_only_past_the_all_fence)
{
    nps_config config;
    nps_error err;
    cr_assert_eq(nps_config_init(&config, &err), NPS_OK);
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_dedup *table = nps_dedup_new(HORIZON_MS);
    cr_assert(nps_dedup_load(table, nps_dedup_hash("a", 1), 0, T0));
    nps_shard_set_now(shard, T0);
    nps_shard_set_dedup(shard, table);
    int64_t fences[1] = {2}; /* one view (`all`), one bucket: applied below 2 */
    const char *dup = "{\"id\":\"a\",\"score\":7,\"ts\":1763800000000}";
    nps_invalid_reason reason;
    cr_assert_eq(
        nps_shard_add_fenced(shard, dup, strlen(dup), -1, fences, 1, 0, 1, &reason, NULL, 0),
        NPS_OK);
    cr_assert_eq(nps_shard_current(shard)->duplicates, 0);
    cr_assert_eq(
        nps_shard_add_fenced(shard, dup, strlen(dup), -1, fences, 1, 0, 2, &reason, NULL, 0),
        NPS_OK);
    cr_assert_eq(nps_shard_current(shard)->duplicates, 1);
    nps_shard_destroy(shard);
    nps_dedup_destroy(table);
}

/* Count `n` messages in batches of `batch`, skipping those whose index
 * is a multiple of `skip_every` (as the pipeline skips a message it has
 * already counted). With `ahead`, each message is announced
 * (nps_shard_next) before the one in front of it is counted, and each
 * batch ends with nps_shard_next(NULL), as engine/pipeline.c's worker
 * does; the messages then live in a ring of three buffers that every
 * batch starts over from ring[0], so a batch's first message takes the
 * buffer of the last one before it, as a reused fetch buffer would. */
static void count_corpus(nps_shard *shard, nps_dedup *table, char (*corpus)[512],
                         const size_t *lens, int n, int batch, int skip_every, bool ahead,
                         char (*details)[256])
{
    static char ring[3][512];
    nps_shard_set_dedup(shard, table);
    for (int start = 0; start < n; start += batch) {
        int end = start + batch < n ? start + batch : n;
        if (ahead)
            memcpy(ring[0], corpus[start], lens[start]);
        for (int i = start; i < end; i++) {
            const char *msg = ahead ? ring[(i - start) % 3] : corpus[i];
            if (ahead && i + 1 < end) {
                char *next = ring[(i + 1 - start) % 3];
                memcpy(next, corpus[i + 1], lens[i + 1]);
                nps_shard_next(shard, next, lens[i + 1], table);
            }
            if (i % skip_every == 0)
                continue;
            nps_invalid_reason reason;
            details[i][0] = '\0';
            cr_assert_eq(nps_shard_add_fenced(shard, msg, lens[i], -1, NULL, 1, 0, i, &reason,
                                              details[i], sizeof(details[i])),
                         NPS_OK);
        }
        if (ahead)
            nps_shard_next(shard, NULL, 0, NULL);
    }
}

/* Reading ahead changes nothing that is counted: generated messages with
 * invalid ones, duplicates, invitations and comments, some skipped, give
 * the same delta, cell for cell, and the same invalid details. */
Test(dedup, shard_reading_ahead_counts_exactly_as_without)
{
    enum { N = 6000, BATCH = 7, SKIP = 5 };
    static char corpus[N][512];
    static size_t lens[N];
    static char details[2][N][256];
    nps_error err;
    nps_gen_options opt = {.seed = 7, .now_ms = T0, .invalid_share = 0.05, .duplicate_share = 0.1};
    nps_gen *gen = nps_gen_new(&opt, &err);
    cr_assert(gen);
    char key[128];
    for (int i = 0; i < N; i++) {
        lens[i] = nps_gen_next(gen, corpus[i], sizeof(corpus[i]), key, sizeof(key));
        cr_assert_gt(lens[i], 0);
    }
    nps_gen_destroy(gen);
    /* Message 20, the last of the batch 14..20, is read ahead while 19 is
     * counted, then skipped (20 % SKIP == 0); 21 opens the next batch in
     * 20's buffer. Give 21 20's length and another score: taken for the
     * message read ahead at that address, it would count 20's score. */
    const char *a = "{\"id\":\"trap-a\",\"score\":0,\"ts\":1763800000000,\"survey\":\"s\"}";
    const char *b = "{\"id\":\"trap-b\",\"score\":9,\"ts\":1763800000000,\"survey\":\"s\"}";
    cr_assert_eq(strlen(a), strlen(b));
    lens[20] = strlen(a);
    memcpy(corpus[20], a, lens[20]);
    lens[21] = strlen(b);
    memcpy(corpus[21], b, lens[21]);

    nps_config config;
    cr_assert_eq(nps_config_init(&config, &err), NPS_OK);
    cr_assert_eq(nps_views_add(&config.views, "by_channel=channel", &err), NPS_OK, "%s", err.msg);
    cr_assert_eq(nps_views_add(&config.views, "by_survey_age=survey,age_band", &err), NPS_OK, "%s",
                 err.msg);
    cr_assert_eq(nps_views_add(&config.views, "by_three=survey,channel,region", &err), NPS_OK, "%s",
                 err.msg);
    nps_shard *shards[2];
    nps_dedup *tables[2];
    for (int k = 0; k < 2; k++) {
        shards[k] = nps_shard_new(&config, &err);
        tables[k] = nps_dedup_new(HORIZON_MS);
        cr_assert(shards[k] && tables[k]);
        nps_shard_set_now(shards[k], T0);
        count_corpus(shards[k], tables[k], corpus, lens, N, BATCH, SKIP, k == 1, details[k]);
    }
    const nps_delta *d0 = nps_shard_current(shards[0]), *d1 = nps_shard_current(shards[1]);
    cr_assert_gt(d0->counted, N / 2);
    cr_assert_gt(d0->duplicates, 0, "the corpus has duplicates");
    cr_assert_gt(d0->invalid[NPS_INVALID_JSON] + d0->invalid[NPS_INVALID_SCORE], 0);
    cr_assert_eq(d1->messages, d0->messages);
    cr_assert_eq(d1->counted, d0->counted);
    cr_assert_eq(d1->duplicates, d0->duplicates);
    cr_assert_eq(d1->late, d0->late);
    for (int r = 0; r < NPS_INVALID_REASONS; r++)
        cr_assert_eq(d1->invalid[r], d0->invalid[r], "invalid reason %d", r);
    cr_assert_eq(d1->ndetractors, d0->ndetractors);
    cr_assert_eq(d1->ndedup_records, d0->ndedup_records);
    for (uint32_t i = 0; i < d0->ndedup_records; i++)
        cr_assert_eq(d1->dedup_records[i].hash, d0->dedup_records[i].hash);
    for (int v = 0; v < d0->nviews; v++) {
        const nps_delta_view *v0 = &d0->views[v], *v1 = &d1->views[v];
        cr_assert_eq(v1->nsegments, v0->nsegments, "view %d", v);
        cr_assert_eq(v1->ncells, v0->ncells, "view %d", v);
        for (uint32_t c = 0; c < v0->ncells; c++) {
            const nps_cell *c0 = &v0->cells[c], *c1 = &v1->cells[c];
            cr_assert_eq(c1->key.segment, c0->key.segment);
            cr_assert_eq(c1->key.pane, c0->key.pane);
            cr_assert_eq(c1->sent, c0->sent);
            for (int h = 0; h < NPS_BUCKETS; h++)
                cr_assert_eq(c1->h[h], c0->h[h], "view %d cell %u score %d", v, c, h);
            for (int k = 0; k < NPS_CLASSES; k++)
                cr_assert_eq(c1->value[k], c0->value[k]);
        }
    }
    for (int i = 0; i < N; i++)
        cr_assert_str_eq(details[1][i], details[0][i], "message %d", i);
    for (int k = 0; k < 2; k++) {
        nps_shard_destroy(shards[k]);
        nps_dedup_destroy(tables[k]);
    }
}
