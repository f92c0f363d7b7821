/* delta: the detractor records a worker keeps for the stream
 * PREFIX:detractors (engine/delta.h), written through the shard and read
 * back as the flusher reads them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "shard.h"

#define T0 1763800000000LL

static bool str_is(nps_str s, const char *want)
{
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.ptr, want, s.len) == 0);
}

/* The index of a dimension in records (nps_views.dim_names order). */
static int dim(const nps_views *views, const char *name)
{
    for (int d = 0; d < views->ndims; d++)
        if (strcmp(views->dim_names[d], name) == 0)
            return d;
    cr_assert_fail("no dimension %s", name);
    return 0;
}

static nps_shard *shard_with_views(nps_config *config)
{
    nps_error err;
    cr_assert_eq(nps_config_init(config, &err), NPS_OK);
    cr_assert_eq(nps_views_add(&config->views, "by_channel=channel", &err), NPS_OK, "%s", err.msg);
    cr_assert_eq(nps_views_add(&config->views, "by_survey_region=survey,region", &err), NPS_OK,
                 "%s", err.msg);
    nps_shard *shard = nps_shard_new(config, &err);
    cr_assert(shard, "%s", err.msg);
    nps_shard_set_now(shard, T0);
    return shard;
}

static void add(nps_shard *shard, const char *msg, int32_t partition, int64_t offset)
{
    nps_invalid_reason reason;
    cr_assert_eq(nps_shard_add_fenced(shard, msg, strlen(msg), -1, NULL, 1, partition, offset,
                                      &reason, NULL, 0),
                 NPS_OK);
    cr_assert_eq(reason, NPS_VALID, "%s", msg);
}

Test(delta, detractor_records_read_back_field_by_field)
{
    nps_config config;
    nps_shard *shard = shard_with_views(&config);
    add(shard,
        "{\"id\":\"r-1\",\"ts\":1763800000123,\"score\":6,\"channel\":\"e\\\"mail\","
        "\"survey\":\"caf\\u00e9\",\"region\":-7,\"value\":1240.5,\"comment\":\"slow, "
        "\\\"very\\\"\"}",
        3, 41);
    add(shard, "{\"id\":\"r-2\",\"ts\":1763800000000,\"score\":9,\"channel\":\"sms\"}", 3, 42);
    add(shard, "{\"ts\":1763799999000,\"score\":0,\"survey\":\"\"}", 12, 9000000000LL);
    add(shard, "{\"id\":\"r-4\",\"ts\":1763800000000,\"score\":4,\"value\":0}", 0, 0);
    nps_delta *delta = nps_shard_current(shard);
    cr_assert_eq(delta->ndetractors, 3, "scores 6, 0 and 4; not the promoter");

    /* as the flusher holds them: appended after another delta's */
    char *buf = NULL;
    size_t len = 0, cap = 0, pos = 0;
    cr_assert(nps_detractors_append(&buf, &len, &cap, delta->detractors, delta->detractors_len));
    cr_assert(nps_detractors_append(&buf, &len, &cap, delta->detractors, delta->detractors_len));
    int channel = dim(&config.views, "channel"), survey = dim(&config.views, "survey");
    int region = dim(&config.views, "region");

    nps_detractor d;
    cr_assert_eq(nps_detractor_bucket(buf, pos, 1), 0, "one bucket: 0");
    nps_detractor_read(buf, &pos, &d);
    cr_assert_eq(d.partition, 3);
    cr_assert_eq(d.offset, 41);
    cr_assert_eq(d.ts_ms, 1763800000123LL);
    cr_assert_eq(d.score, 6);
    cr_assert(d.has_value);
    cr_assert_eq(d.value_cents, 124050);
    cr_assert(str_is(d.id, "r-1"));
    cr_assert(str_is(d.comment, "slow, \"very\""), "the comment unescaped");
    cr_assert_eq(d.ndims, config.views.ndims);
    cr_assert(str_is(d.dims[channel], "e\"mail"));
    cr_assert(str_is(d.dims[survey], "caf\xc3\xa9"));
    cr_assert(str_is(d.dims[region], "-7"), "an integer dimension as its decimal text");

    nps_detractor_read(buf, &pos, &d);
    cr_assert_eq(d.partition, 12);
    cr_assert_eq(d.offset, 9000000000LL);
    cr_assert_eq(d.score, 0);
    cr_assert(!d.has_value);
    cr_assert(str_is(d.id, ""), "no id: empty");
    cr_assert(str_is(d.comment, ""), "no comment: empty");
    cr_assert(str_is(d.dims[channel], "") && str_is(d.dims[survey], "") &&
              str_is(d.dims[region], ""));

    nps_detractor_read(buf, &pos, &d);
    cr_assert(str_is(d.id, "r-4"));
    cr_assert(d.has_value, "a value of 0 is a value");
    cr_assert_eq(d.value_cents, 0);
    cr_assert_eq(pos, delta->detractors_len, "three records, back to back");

    /* the copy: skipping reads only lengths and lands on the same records */
    nps_detractor_skip(buf, &pos);
    nps_detractor_skip(buf, &pos);
    nps_detractor_read(buf, &pos, &d);
    cr_assert(str_is(d.id, "r-4"));
    cr_assert_eq(pos, len);
    free(buf);
    nps_shard_destroy(shard);
}

Test(delta, no_detractor_record_without_a_partition_or_with_the_stream_off)
{
    nps_config config;
    nps_shard *shard = shard_with_views(&config);
    add(shard, "{\"id\":\"a\",\"ts\":1763800000000,\"score\":2}", -1, 0); /* run --input */
    config.detractors_maxlen = 0;
    add(shard, "{\"id\":\"b\",\"ts\":1763800000000,\"score\":2}", 1, 1);
    cr_assert_eq(nps_shard_current(shard)->ndetractors, 0);
    cr_assert_eq(nps_shard_current(shard)->counted, 2);
    nps_shard_destroy(shard);
}

/* With fences (a restart), a detractor is recorded exactly when the
 * detractor view's (by_survey_region: the most dimensions) unit of
 * nps_detractor_unit_bucket(partition, offset) has not applied it,
 * whatever the other units' fences say; and the record names that bucket. */
Test(delta, detractor_records_follow_the_detractor_views_fences)
{
    nps_config config;
    nps_shard *shard = shard_with_views(&config);
    enum { B = 8, VIEWS = 3 };
    int64_t fences[VIEWS * B];
    const char *msg = "{\"ts\":1763800000000,\"score\":3,\"survey\":\"s\",\"region\":\"r\"}";
    nps_invalid_reason reason;
    uint32_t mine = nps_detractor_unit_bucket(1, 50, B);

    for (int u = 0; u < VIEWS * B; u++) /* only its unit applied it */
        fences[u] = u == 2 * B + (int)mine ? 100 : -1;
    cr_assert_eq(
        nps_shard_add_fenced(shard, msg, strlen(msg), -1, fences, B, 1, 50, &reason, NULL, 0),
        NPS_OK);
    cr_assert_eq(nps_shard_current(shard)->ndetractors, 0, "applied by its unit: not again");
    cr_assert_eq(nps_shard_current(shard)->counted, 1, "still counted where not applied");

    for (int u = 0; u < VIEWS * B; u++) /* every unit but its own applied it */
        fences[u] = u == 2 * B + (int)mine ? -1 : 100;
    cr_assert_eq(
        nps_shard_add_fenced(shard, msg, strlen(msg), -1, fences, B, 1, 50, &reason, NULL, 0),
        NPS_OK);
    nps_delta *delta = nps_shard_current(shard);
    cr_assert_eq(delta->ndetractors, 1, "its unit has not applied it: recorded");
    cr_assert_eq(nps_detractor_bucket(delta->detractors, 0, B), mine);

    /* Without fences: the position decides, not the segment; one
     * segment's detractors at 64 consecutive offsets of a partition
     * spread over every one of the 8 buckets (8 each when even). */
    uint32_t per_bucket[B] = {0};
    for (int i = 0; i < 64; i++)
        cr_assert_eq(nps_shard_add_fenced(shard, msg, strlen(msg), -1, NULL, B, 2, 1000 + i,
                                          &reason, NULL, 0),
                     NPS_OK);
    size_t pos = 0;
    nps_detractor d;
    nps_detractor_read(delta->detractors, &pos, &d); /* offset 50 */
    for (int i = 0; i < 64; i++) {
        uint32_t bucket = nps_detractor_bucket(delta->detractors, pos, B);
        nps_detractor_read(delta->detractors, &pos, &d);
        cr_assert_eq(d.partition, 2);
        cr_assert_eq(d.offset, 1000 + i);
        cr_assert_eq(bucket, nps_detractor_unit_bucket(2, 1000 + i, B));
        per_bucket[bucket]++;
    }
    cr_assert_eq(pos, delta->detractors_len);
    for (int b = 0; b < B; b++)
        cr_assert(per_bucket[b] >= 2 && per_bucket[b] <= 16, "bucket %d holds %u of 64", b,
                  per_bucket[b]);
    nps_shard_destroy(shard);
}
