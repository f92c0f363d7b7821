/*
 * Tests of engine/view.c: view specs ("NAME=DIM[,DIM...]") and their
 * limits, percent-encoding of dimension values, and segment strings
 * (DESIGN.md "Views, segments, windows"), including the truncation
 * contract of nps_segment_format.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "view.h"

static nps_views views;

static void setup(void)
{
    nps_views_init(&views);
}

TestSuite(view, .init = setup);

static void add_ok(const char *spec)
{
    nps_error err = {{0}};
    nps_status st = nps_views_add(&views, spec, &err);
    cr_assert_eq(st, NPS_OK, "'%s' rejected: %s", spec, err.msg);
}

/* A rejected spec leaves the set exactly as it was and explains why. */
static void add_bad(const char *spec)
{
    nps_views before = views;
    nps_error err = {{0}};
    nps_status st = nps_views_add(&views, spec, &err);
    cr_expect_eq(st, NPS_ERR_INVALID, "'%s' accepted", spec);
    cr_expect_gt(strlen(err.msg), 0, "'%s': no message", spec);
    cr_expect_eq(memcmp(&before, &views, sizeof(views)), 0, "'%s' changed the view set", spec);
}

static int dim_index(const char *name)
{
    for (int d = 0; d < views.ndims; d++)
        if (strcmp(views.dim_names[d], name) == 0)
            return d;
    return -1;
}

Test(view, init_has_only_all)
{
    cr_expect_eq(views.nviews, 1);
    cr_expect_str_eq(views.views[0].name, NPS_VIEW_ALL);
    cr_expect_eq(views.views[0].ndims, 0);
    cr_expect_eq(views.ndims, 0);
    cr_expect_eq(nps_views_find(&views, "all"), 0);
    cr_expect_eq(nps_views_find(&views, "by_channel"), -1);
    cr_expect_eq(nps_views_find(&views, ""), -1);
}

Test(view, add_and_find)
{
    add_ok("by_channel=channel");
    add_ok("by_survey_age=survey,age_band");
    add_ok("by_region=region");
    add_ok("by_channel_region=channel,region");
    cr_expect_eq(views.nviews, 5);
    cr_expect_eq(views.ndims, 4, "shared dimensions are stored once");
    cr_expect_eq(nps_views_find(&views, "by_survey_age"), 2);
    cr_expect_eq(nps_views_find(&views, "by_channel_region"), 4);
    cr_expect_eq(nps_views_find(&views, "by_chan"), -1);
    const nps_view *v = &views.views[2];
    cr_expect_str_eq(v->name, "by_survey_age");
    cr_assert_eq(v->ndims, 2);
    cr_expect_str_eq(views.dim_names[v->dim[0]], "survey");
    cr_expect_str_eq(views.dim_names[v->dim[1]], "age_band");
    v = &views.views[4];
    cr_assert_eq(v->ndims, 2);
    cr_expect_eq(v->dim[0], dim_index("channel"));
    cr_expect_eq(v->dim[1], dim_index("region"));
    add_ok("A-Z_a-z_0-9=Dim-1_x");
    cr_expect_neq(dim_index("Dim-1_x"), -1);
}

Test(view, detractor_view_has_the_most_dimensions)
{
    cr_expect_eq(nps_views_detractor_view(&views), 0, "`all` alone");
    add_ok("by_channel=channel");
    cr_expect_eq(nps_views_detractor_view(&views), 1);
    add_ok("by_survey_age=survey,age_band");
    add_ok("by_region=region");
    cr_expect_eq(nps_views_detractor_view(&views), 2, "two dimensions beat one");
    add_ok("by_channel_region=channel,region");
    cr_expect_eq(nps_views_detractor_view(&views), 4, "the last of those with the most");
}

Test(view, rejected_specs)
{
    add_ok("by_channel=channel");
    static const char *const bad[] = {"",
                                      "noequals",
                                      "=channel",
                                      "a=",
                                      "a=,b",
                                      "a=b,",
                                      "a=b,,c",
                                      ",=b",
                                      "bad name=x",
                                      "a.b=x",
                                      "a=b c",
                                      "a=b=c",
                                      "a=b;c",
                                      "a/b=c",
                                      "a=\xc3\xa9",
                                      "\xc3\xa9=b",
                                      "all=x",
                                      "by_channel=region",
                                      "v=channel,channel",
                                      "v=region,channel,region",
                                      "v=score",
                                      "v=ts",
                                      "v=channel,score",
                                      "v=ts,channel",
                                      "a= b",
                                      "a=b ",
                                      " a=b",
                                      "a=b\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        add_bad(bad[i]);
    add_ok("v=Score,tss,scores"); /* only exactly score and ts are reserved */
}

Test(view, name_length_limits)
{
    char spec[256];
    memset(spec, 'n', NPS_NAME_MAX - 1);
    strcpy(spec + NPS_NAME_MAX - 1, "=d");
    add_ok(spec);
    cr_expect_eq(strlen(views.views[1].name), NPS_NAME_MAX - 1);
    memset(spec, 'm', NPS_NAME_MAX);
    strcpy(spec + NPS_NAME_MAX, "=d");
    add_bad(spec);
    strcpy(spec, "v=");
    memset(spec + 2, 'd', NPS_NAME_MAX - 1);
    spec[2 + NPS_NAME_MAX - 1] = '\0';
    add_ok(spec);
    strcpy(spec, "w=");
    memset(spec + 2, 'e', NPS_NAME_MAX);
    spec[2 + NPS_NAME_MAX] = '\0';
    add_bad(spec);
}

Test(view, dimension_limits)
{
    char spec[1024];
    size_t at = (size_t)sprintf(spec, "wide=");
    for (int i = 0; i < NPS_MAX_VIEW_DIMS; i++)
        at += (size_t)sprintf(spec + at, "%sd%d", i ? "," : "", i);
    add_ok(spec);
    cr_expect_eq(views.views[1].ndims, NPS_MAX_VIEW_DIMS);
    sprintf(spec + at, ",d%d", NPS_MAX_VIEW_DIMS);
    spec[0] = 'W';
    add_bad(spec);
    /* distinct dimensions over all views */
    for (int d = NPS_MAX_VIEW_DIMS; d < NPS_MAX_DIMS; d++) {
        snprintf(spec, sizeof(spec), "v%d=x%d", d, d);
        add_ok(spec);
    }
    cr_expect_eq(views.ndims, NPS_MAX_DIMS);
    add_bad("one_more=brand_new");
    add_ok("reuse=d0,x9"); /* existing dimensions still fit */
}

Test(view, view_count_limit)
{
    char spec[64];
    for (int v = 1; v < NPS_MAX_VIEWS; v++) {
        snprintf(spec, sizeof(spec), "view%d=channel", v);
        add_ok(spec);
    }
    cr_expect_eq(views.nviews, NPS_MAX_VIEWS);
    add_bad("one_too_many=channel");
}

static size_t decode(const char *in, size_t len, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] != '%') {
            out[o++] = (unsigned char)in[i++];
            continue;
        }
        cr_assert_leq(i + 3, len, "cut escape");
        unsigned value;
        char hex[3] = {in[i + 1], in[i + 2], 0};
        cr_assert_eq(sscanf(hex, "%2X", &value), 1);
        out[o++] = (unsigned char)value;
        i += 3;
    }
    return o;
}

static bool rfc3986_unreserved(unsigned char c)
{
    return strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", c) && c;
}

Test(view, percent_encode_every_byte)
{
    unsigned char all[256];
    for (int c = 0; c < 256; c++) {
        all[c] = (unsigned char)c;
        char out[4] = {0};
        char one = (char)c;
        size_t n = nps_percent_encode(&one, 1, out);
        if (rfc3986_unreserved((unsigned char)c)) {
            cr_expect_eq(n, 1, "byte 0x%02x", c);
            cr_expect_eq(out[0], (char)c, "byte 0x%02x", c);
        } else {
            char want[4];
            snprintf(want, sizeof(want), "%%%02X", c);
            cr_expect_eq(n, 3, "byte 0x%02x", c);
            cr_expect_arr_eq(out, want, 3, "byte 0x%02x gave %.3s", c, out);
        }
    }
    char encoded[3 * 256];
    size_t n = nps_percent_encode((const char *)all, 256, encoded);
    cr_expect_eq(n, 66 + 3 * (256 - 66));
    for (size_t i = 0; i < n; i++)
        cr_expect(rfc3986_unreserved((unsigned char)encoded[i]) || encoded[i] == '%',
                  "output byte 0x%02x", (unsigned char)encoded[i]);
    unsigned char back[256];
    cr_assert_eq(decode(encoded, n, back), 256);
    cr_expect_arr_eq(back, all, 256);
    cr_expect_eq(nps_percent_encode("", 0, encoded), 0);
}

static void setup_segments(void)
{
    add_ok("by_channel=channel");
    add_ok("by_survey_age=survey,age_band");
    add_ok("by_region=region");
    add_ok("by_age_survey=age_band,survey");
}

/* The segment string of view `name` for the given values by dimension. */
static size_t segment(const char *name, const nps_str *values, char *out, size_t out_size)
{
    int v = nps_views_find(&views, name);
    cr_assert_geq(v, 0, "no view %s", name);
    return nps_segment_format(&views, v, values, out, out_size);
}

static void values_of(nps_str *values, const char *channel, const char *survey,
                      const char *age_band, const char *region)
{
    const char *by_dim[4] = {channel, survey, age_band, region};
    const char *names[4] = {"channel", "survey", "age_band", "region"};
    for (int i = 0; i < 4; i++) {
        int d = dim_index(names[i]);
        cr_assert_geq(d, 0);
        values[d] = (nps_str){by_dim[i], by_dim[i] ? strlen(by_dim[i]) : 0};
    }
}

static void expect_segment(const char *view, const nps_str *values, const char *want)
{
    char out[4096];
    memset(out, '#', sizeof(out));
    size_t n = segment(view, values, out, sizeof(out) - 1);
    cr_assert_lt(n, sizeof(out) - 1);
    cr_expect_eq(n, strlen(want), "%s: length %zu, want %s", view, n, want);
    cr_expect_arr_eq(out, want, strlen(want), "%s: got %.*s, want %s", view, (int)n, out, want);
    cr_expect_eq(out[n], '#', "%s: wrote past its length", view);
}

Test(view, segment_strings)
{
    setup_segments();
    nps_str values[NPS_MAX_DIMS] = {{0}};
    values_of(values, "email", "checkout", "25-34", "IN");
    expect_segment("by_channel", values, "channel=email");
    expect_segment("by_survey_age", values, "survey=checkout,age_band=25-34");
    expect_segment("by_age_survey", values, "age_band=25-34,survey=checkout");
    expect_segment("by_region", values, "region=IN");
    expect_segment("all", values, "*");
    expect_segment("all", NULL, "*");
    values_of(values, "", NULL, "", "");
    expect_segment("by_channel", values, "channel=");
    expect_segment("by_survey_age", values, "survey=,age_band=");
    values_of(values, "a b,c=d", "caf\xc3\xa9", "*", "%41~x.y_z-9");
    expect_segment("by_channel", values, "channel=a%20b%2Cc%3Dd");
    expect_segment("by_survey_age", values, "survey=caf%C3%A9,age_band=%2A");
    expect_segment("by_region", values, "region=%2541~x.y_z-9");
    const char with_nul[] = {'a', 0, 'b'};
    values[dim_index("channel")] = (nps_str){with_nul, 3};
    expect_segment("by_channel", values, "channel=a%00b");
}

Test(view, segment_long_values)
{
    setup_segments();
    nps_str values[NPS_MAX_DIMS] = {{0}};
    char survey[300], age[200];
    for (size_t i = 0; i < sizeof(survey); i++)
        survey[i] = (char)(i % 3 == 0 ? ' ' : 'a' + i % 26);
    for (size_t i = 0; i < sizeof(age); i++)
        age[i] = (char)(0x80 + i % 128);
    values[dim_index("survey")] = (nps_str){survey, sizeof(survey)};
    values[dim_index("age_band")] = (nps_str){age, sizeof(age)};
    char want[2048];
    size_t at = (size_t)sprintf(want, "survey=");
    at += nps_percent_encode(survey, sizeof(survey), want + at);
    at += (size_t)sprintf(want + at, ",age_band=");
    at += nps_percent_encode(age, sizeof(age), want + at);
    want[at] = '\0';
    cr_assert_eq(at, 7 + 300 + 2 * 100 + 10 + 3 * 200);
    expect_segment("by_survey_age", values, want);
}

/* Too small a buffer: the needed length comes back, the bytes that fit are
 * the prefix of the full string, and nothing past out_size is written. */
Test(view, segment_truncation)
{
    setup_segments();
    nps_str values[NPS_MAX_DIMS] = {{0}};
    values_of(values, "e mail", "checkout\xe2\x82\xac", "25-34", "IN");
    static const char *const names[] = {"all", "by_channel", "by_survey_age", "by_region"};
    for (size_t v = 0; v < sizeof(names) / sizeof(names[0]); v++) {
        char full[512];
        size_t len = segment(names[v], values, full, sizeof(full));
        cr_assert_lt(len, sizeof(full));
        cr_expect_eq(segment(names[v], values, NULL, 0), len, "%s with no buffer", names[v]);
        for (size_t size = 0; size <= len + 2; size++) {
            char out[600];
            memset(out, '#', sizeof(out));
            size_t n = segment(names[v], values, out, size);
            cr_expect_eq(n, len, "%s, out_size %zu: %zu", names[v], size, n);
            size_t kept = size < len ? size : len;
            cr_expect_arr_eq(out, full, kept, "%s, out_size %zu", names[v], size);
            for (size_t i = kept; i < sizeof(out); i++)
                if (out[i] != '#')
                    cr_assert_fail("%s, out_size %zu: byte %zu written", names[v], size, i);
        }
    }
}
