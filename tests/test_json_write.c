/*
 * Tests of engine/json_write.c: whatever the bytes, the output is one
 * valid JSON string (checked with yajl, the independent validator) that
 * keeps every well-formed UTF-8 character and replaces the rest.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "json_write.h"

/* nps_json_write_string of `len` bytes, as a NUL-terminated heap string. */
static char *written(const char *text, size_t len)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    cr_assert_not_null(f);
    nps_json_write_string(f, text, len);
    fclose(f);
    return out;
}

/* The string a JSON validator reads back from `json` (freed by caller). */
static char *parsed(const char *json)
{
    char doc[4096], errbuf[256];
    snprintf(doc, sizeof(doc), "[%s]", json);
    yajl_val v = yajl_tree_parse(doc, errbuf, sizeof(errbuf));
    cr_assert_not_null(v, "yajl rejects %s: %s", doc, errbuf);
    cr_assert(YAJL_IS_ARRAY(v) && v->u.array.len == 1 && YAJL_IS_STRING(v->u.array.values[0]));
    const char *text = YAJL_GET_STRING(v->u.array.values[0]);
    cr_assert_not_null(text);
    char *s = strdup(text);
    yajl_tree_free(v);
    return s;
}

static void expect_written(const char *text, size_t len, const char *json, const char *back)
{
    char *out = written(text, len);
    cr_expect_str_eq(out, json);
    char *round = parsed(out);
    cr_expect_str_eq(round, back);
    free(round);
    free(out);
}

Test(json_write, escapes_quotes_backslashes_and_controls)
{
    expect_written("a\"b\\c", 5, "\"a\\\"b\\\\c\"", "a\"b\\c");
    expect_written("t\tn\n\x01\x7f", 6, "\"t\\u0009n\\u000a\\u0001\\u007f\"", "t\tn\n\x01\x7f");
    expect_written("", 0, "\"\"", "");
    expect_written("</script>", 9, "\"</script>\"", "</script>");
}

Test(json_write, keeps_well_formed_utf8)
{
    const char *text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    expect_written(text, strlen(text), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", text);
}

Test(json_write, replaces_what_is_not_utf8)
{
    /* a stray continuation byte, a truncated sequence at the end, an
     * overlong '/', a surrogate, a code point past U+10FFFF */
    static const struct {
        const char *text;
        const char *json;
    } cases[] = {
        {"a\x80z", "\"a\xef\xbf\xbdz\""},
        {"a\xc3", "\"a\xef\xbf\xbd\""},
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = written(cases[i].text, strlen(cases[i].text));
        cr_expect_str_eq(out, cases[i].json, "case %zu", i);
        free(parsed(out));
        free(out);
    }
}

Test(json_write, nul_bytes_are_escaped)
{
    char *out = written("a\0b", 3);
    cr_expect_str_eq(out, "\"a\\u0000b\"");
    free(out);
}

Test(json_write, every_byte_pair_gives_valid_json)
{
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b += 7) {
            char text[3] = {(char)a, (char)b, '\xe2'};
            char *out = written(text, sizeof(text));
            free(parsed(out));
            free(out);
        }
    }
}

Test(json_write, numbers_verbatim_else_strings)
{
    static const struct {
        const char *text;
        const char *json;
    } cases[] = {{"-15.1268", "-15.1268"}, {"0", "0"},         {"1763800000123", "1763800000123"},
                 {"01", "\"01\""},         {"inf", "\"inf\""}, {"", "\"\""},
                 {"1 ", "\"1 \""}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&out, &size);
        nps_json_write_number_or_string(f, cases[i].text, strlen(cases[i].text));
        fclose(f);
        cr_expect_str_eq(out, cases[i].json);
        free(out);
    }
}
