/* dedup: the table and the rule (engine/dedup.h), alone and in the shard. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dedup.h"
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
