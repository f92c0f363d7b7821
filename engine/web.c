/*
 * web: the page at / and its JSON API under /api/, read from Redis.
 *
 * DESIGN
 * A request opens its own Redis connection (WEB_TIMEOUT_MS to connect and
 * per reply), authenticates as the pipeline does, runs a few commands,
 * mostly pipelined, and closes it. Nothing is shared between requests but
 * the read-only nps_web, so the HTTP threads need no lock, and the
 * pipeline's threads never wait on the page.
 *
 * Every read is bounded, because a view may hold 100,000 segments: sets
 * and hashes are read with SSCAN/HSCAN up to WEB_SCAN_MAX members (the
 * reply says whether it saw them all: "complete"), streams with a COUNT,
 * and a reply stops adding rows past WEB_BODY_MAX bytes ("truncated").
 *
 * Whatever Redis holds is data: keys are built binary-safe from lengths,
 * and every string goes out through json_write, so the reply is valid
 * JSON and UTF-8 whatever bytes a segment or a comment carries.
 *
 * Statuses: 200; 400 a bad parameter; 404 an unknown path, view or
 * window; 503 Redis unreachable, refusing the credentials, loading or
 * busy; 502 any other Redis error (a key of the wrong type). Errors are
 * {"error": "..."}.
 */
#include "web.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "json_scan.h"
#include "json_write.h"
#include "redis_sink.h"

#define WEB_TIMEOUT_MS 1000
#define WEB_BODY_MAX (1 << 20) /* bytes of a reply past which rows stop */
#define WEB_SCAN_MAX 10000     /* members of one SET or HASH read per request */
#define WEB_SCAN_COUNT "1000"  /* the COUNT hint of each SSCAN/HSCAN */
#define WEB_ROWS_DEFAULT 200
#define WEB_ROWS_MAX 1000
#define WEB_POINTS_DEFAULT 48
#define WEB_POINTS_MAX 1000
#define WEB_ENTRIES_DEFAULT 20
#define WEB_ENTRIES_MAX 200
#define WEB_VALUE_MAX 1024   /* bytes of one stream field shown; longer ones end in "…" */
#define WEB_SEGMENT_MAX 4096 /* bytes of a segment parameter */

extern const char nps_web_index_html[];

struct nps_web {
    char host[256];
    int port;
    char user[128];
    char password[512];
    char prefix[64];
};

typedef struct web_request {
    const nps_web *web;
    const nps_http_request *http;
    redisContext *redis; /* connected on first use */
    FILE *body;          /* the reply, kept only on success */
    char error[512];     /* the reason when the status is not 200 */
    char *key;           /* the last key built (key_build) */
    size_t key_len, key_cap;
} web_request;

nps_web *nps_web_new(const nps_config *config, nps_error *err)
{
    nps_web *web = calloc(1, sizeof(*web));
    if (!web) {
        nps_error_set(err, "out of memory for the web view");
        return NULL;
    }
    if (!nps_parse_host_port(config->redis, web->host, sizeof(web->host), &web->port)) {
        nps_error_set(err, "web: redis: expected HOST:PORT, got '%s'", config->redis);
        free(web);
        return NULL;
    }
    snprintf(web->user, sizeof(web->user), "%s", config->redis_user);
    snprintf(web->password, sizeof(web->password), "%s", config->redis_password);
    snprintf(web->prefix, sizeof(web->prefix), "%s", config->prefix);
    return web;
}

void nps_web_destroy(nps_web *web)
{
    free(web);
}

static void set_error(web_request *rq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(web_request *rq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rq->error, sizeof(rq->error), fmt, ap);
    va_end(ap);
}

/* Say why and give the status: `return WEB_FAIL(rq, 400, "...", ...);`. A
 * macro, so that the status stays a constant the analyzers can follow. */
#define WEB_FAIL(rq, status, ...) (set_error((rq), __VA_ARGS__), (unsigned)(status))

/* ---- Redis ---- */

static unsigned connect_redis(web_request *rq)
{
    if (rq->redis)
        return 200;
    const nps_web *web = rq->web;
    struct timeval tv = {WEB_TIMEOUT_MS / 1000, (WEB_TIMEOUT_MS % 1000) * 1000L};
    rq->redis = redisConnectWithTimeout(web->host, web->port, tv);
    if (!rq->redis || rq->redis->err)
        return WEB_FAIL(rq, 503, "redis %s:%d: %s", web->host, web->port,
                        rq->redis ? rq->redis->errstr : "cannot allocate a context");
    redisSetTimeout(rq->redis, tv);
    nps_error err = {{0}};
    if (!nps_redis_auth(rq->redis, web->user, web->password, &err))
        return WEB_FAIL(rq, 503, "%s", err.msg);
    return 200;
}

/* Queue one command (sent with the next read). */
static unsigned append(web_request *rq, int argc, const char **argv, const size_t *lens)
{
    unsigned status = connect_redis(rq);
    if (status != 200)
        return status;
    if (redisAppendCommandArgv(rq->redis, argc, argv, lens) != REDIS_OK)
        return WEB_FAIL(rq, 503, "redis: %s", rq->redis->errstr);
    return 200;
}

/* The next reply in order; an error reply fails the request (the
 * connection is dropped with it, so unread replies do not matter). */
static unsigned next_reply(web_request *rq, redisReply **reply)
{
    void *raw = NULL;
    *reply = NULL;
    if (redisGetReply(rq->redis, &raw) != REDIS_OK || !raw)
        return WEB_FAIL(rq, 503, "redis %s:%d: %s", rq->web->host, rq->web->port,
                        rq->redis->errstr[0] ? rq->redis->errstr : "no reply");
    redisReply *r = raw;
    if (r->type == REDIS_REPLY_ERROR) {
        static const char *const transient[] = {"LOADING", "BUSY", "NOAUTH", "MASTERDOWN",
                                                "TRYAGAIN"};
        unsigned status = 502;
        for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
            if (strncmp(r->str, transient[i], strlen(transient[i])) == 0)
                status = 503;
        set_error(rq, "redis: %s", r->str);
        freeReplyObject(r);
        return status;
    }
    *reply = r;
    return 200;
}

/* One command and its reply. */
static unsigned command(web_request *rq, redisReply **reply, int argc, const char **argv,
                        const size_t *lens)
{
    unsigned status = append(rq, argc, argv, lens);
    return status == 200 ? next_reply(rq, reply) : status;
}

/* rq->key = PREFIX:parts[0]:parts[1]:..., binary-safe. */
static unsigned key_build(web_request *rq, int n, const char *const *parts, const size_t *lens)
{
    size_t need = strlen(rq->web->prefix) + 1;
    for (int i = 0; i < n; i++)
        need += 1 + lens[i];
    if (need > rq->key_cap) {
        char *grown = realloc(rq->key, need);
        if (!grown)
            return WEB_FAIL(rq, 500, "out of memory for a key");
        rq->key = grown;
        rq->key_cap = need;
    }
    size_t at = strlen(rq->web->prefix);
    memcpy(rq->key, rq->web->prefix, at);
    for (int i = 0; i < n; i++) {
        rq->key[at++] = ':';
        memcpy(rq->key + at, parts[i], lens[i]);
        at += lens[i];
    }
    rq->key[at] = '\0';
    rq->key_len = at;
    return 200;
}

/* The key PREFIX:a (or PREFIX:a:b) from C strings. */
static unsigned key_of(web_request *rq, const char *a, const char *b)
{
    const char *parts[] = {a, b};
    size_t lens[] = {strlen(a), b ? strlen(b) : 0};
    return key_build(rq, b ? 2 : 1, parts, lens);
}

/* Members (SSCAN) or field-value pairs (HSCAN) of rq->key, page by page,
 * until the cursor returns to 0 or `max` elements have been read. The
 * pages are kept (they own the elements' bytes); `complete` says whether
 * the scan finished. Elements may repeat (SCAN's guarantee): callers
 * dedupe. */
typedef struct web_page {
    redisReply *reply;
} web_page;

typedef struct web_scan {
    web_page *pages;
    size_t npages, cap_pages;
    nps_str *elements;
    size_t nelements, cap_elements;
    bool complete;
} web_scan;

static void scan_free(web_scan *scan)
{
    for (size_t i = 0; i < scan->npages; i++)
        freeReplyObject(scan->pages[i].reply);
    free(scan->pages);
    free(scan->elements);
    memset(scan, 0, sizeof(*scan));
}

/* Keep one SCAN reply and its elements. */
static unsigned scan_keep(web_request *rq, web_scan *scan, redisReply *page, const char *verb)
{
    if (scan->npages == scan->cap_pages) {
        size_t cap = scan->cap_pages ? 2 * scan->cap_pages : 8;
        web_page *grown = realloc(scan->pages, cap * sizeof(web_page));
        if (!grown) {
            freeReplyObject(page);
            return WEB_FAIL(rq, 500, "out of memory for a scan");
        }
        scan->pages = grown;
        scan->cap_pages = cap;
    }
    scan->pages[scan->npages++].reply = page;
    if (page->type != REDIS_REPLY_ARRAY || page->elements != 2 ||
        page->element[0]->type != REDIS_REPLY_STRING || page->element[1]->type != REDIS_REPLY_ARRAY)
        return WEB_FAIL(rq, 502, "redis: unexpected %s reply", verb);
    const redisReply *items = page->element[1];
    if (scan->nelements + items->elements > scan->cap_elements) {
        size_t cap = 2 * (scan->nelements + items->elements);
        nps_str *grown = realloc(scan->elements, cap * sizeof(nps_str));
        if (!grown)
            return WEB_FAIL(rq, 500, "out of memory for a scan");
        scan->elements = grown;
        scan->cap_elements = cap;
    }
    for (size_t i = 0; i < items->elements; i++) {
        if (items->element[i]->type != REDIS_REPLY_STRING)
            return WEB_FAIL(rq, 502, "redis: unexpected %s element", verb);
        scan->elements[scan->nelements++] =
            (nps_str){items->element[i]->str, items->element[i]->len};
    }
    return 200;
}

static unsigned scan_key(web_request *rq, const char *verb, size_t max, web_scan *scan)
{
    char cursor[32] = "0";
    do {
        const char *argv[] = {verb, rq->key, cursor, "COUNT", WEB_SCAN_COUNT};
        size_t lens[] = {strlen(verb), rq->key_len, strlen(cursor), 5, strlen(WEB_SCAN_COUNT)};
        redisReply *page;
        unsigned status = command(rq, &page, 5, argv, lens);
        if (status == 200)
            status = scan_keep(rq, scan, page, verb);
        if (status != 200)
            return status;
        const redisReply *next = page->element[0];
        if (next->len >= sizeof(cursor))
            return WEB_FAIL(rq, 502, "redis: a %s cursor of %zu bytes", verb, next->len);
        memcpy(cursor, next->str, next->len + 1);
    } while (strcmp(cursor, "0") != 0 && scan->nelements < max);
    scan->complete = strcmp(cursor, "0") == 0;
    return 200;
}

/* ---- parameters ---- */

/* A view or window name: [A-Za-z0-9_-]{1,63}. `fallback` when absent
 * (NULL: required). */
static unsigned param_name(web_request *rq, const char *arg, const char *fallback, const char **out)
{
    const char *value = nps_http_arg(rq->http, arg);
    if (!value && !fallback)
        return WEB_FAIL(rq, 400, "missing parameter '%s'", arg);
    value = value ? value : fallback;
    size_t len = strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
    if (len == 0 || len >= NPS_NAME_MAX || value[len] != '\0')
        return WEB_FAIL(rq, 400, "parameter '%s': expected a name of letters, digits, '_' or '-'",
                        arg);
    *out = value;
    return 200;
}

/* A whole number in [min, max]; `fallback` when absent. */
static unsigned param_count(web_request *rq, const char *arg, long fallback, long min, long max,
                            long *out)
{
    const char *value = nps_http_arg(rq->http, arg);
    if (!value) {
        *out = fallback;
        return 200;
    }
    size_t len = strspn(value, "0123456789");
    long n = len && len <= 9 && value[len] == '\0' ? strtol(value, NULL, 10) : -1;
    if (n < min || n > max)
        return WEB_FAIL(rq, 400, "parameter '%s': expected a whole number from %ld to %ld", arg,
                        min, max);
    *out = n;
    return 200;
}

/* A segment string as stored: no control byte and no ':' (values are
 * percent-encoded, so no segment holds one). */
static unsigned param_segment(web_request *rq, const char **out)
{
    const char *value = nps_http_arg(rq->http, "segment");
    if (!value)
        return WEB_FAIL(rq, 400, "missing parameter 'segment'");
    size_t len = strlen(value);
    bool clean = len > 0 && len <= WEB_SEGMENT_MAX;
    for (size_t i = 0; clean && i < len; i++)
        clean = value[i] != ':' && (unsigned char)value[i] >= 0x20 && value[i] != 0x7f;
    if (!clean)
        return WEB_FAIL(rq, 400,
                        "parameter 'segment': expected a segment string such as "
                        "channel=email (1 to %d bytes, no ':' or control characters)",
                        WEB_SEGMENT_MAX);
    *out = value;
    return 200;
}

/* 404 unless `name` is a field of PREFIX:catalog (views, windows). */
static unsigned require_published(web_request *rq, const char *catalog, const char *name)
{
    unsigned status = key_of(rq, catalog, NULL);
    if (status != 200)
        return status;
    const char *argv[] = {"HEXISTS", rq->key, name};
    size_t lens[] = {7, rq->key_len, strlen(name)};
    redisReply *r;
    status = command(rq, &r, 3, argv, lens);
    if (status != 200)
        return status;
    bool found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!found)
        return WEB_FAIL(rq, 404, "no %.*s '%s' in %s", (int)strlen(catalog) - 1, catalog, name,
                        rq->key);
    return 200;
}

/* ---- JSON ---- */

static void json_text(FILE *out, const char *text)
{
    nps_json_write_string(out, text, strlen(text));
}

static void json_reply_string(FILE *out, const redisReply *r)
{
    nps_json_write_string(out, r->str, r->len);
}

/* A stream value, cut at WEB_VALUE_MAX bytes (on a character boundary)
 * with "…" appended. */
static void json_bounded(FILE *out, const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING) {
        fputs("null", out);
        return;
    }
    if (r->len <= WEB_VALUE_MAX) {
        json_reply_string(out, r);
        return;
    }
    size_t cut = WEB_VALUE_MAX;
    while (cut > 0 && ((unsigned char)r->str[cut] & 0xc0) == 0x80)
        cut--;
    char *shown = malloc(cut + 4);
    if (!shown) {
        nps_json_write_string(out, r->str, cut);
        return;
    }
    memcpy(shown, r->str, cut);
    memcpy(shown + cut, "\xe2\x80\xa6", 4); /* U+2026 and its NUL */
    nps_json_write_string(out, shown, cut + 3);
    free(shown);
}

static void json_number_or_string(FILE *out, const redisReply *r)
{
    nps_json_write_number_or_string(out, r->str, r->len);
}

/* A flat field-value array (HGETALL, a stream entry) as one object. */
static void json_pairs(FILE *out, const redisReply *r,
                       void (*write_field)(FILE *, const redisReply *),
                       void (*write_value)(FILE *, const redisReply *))
{
    fputc('{', out);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        if (i)
            fputc(',', out);
        write_field(out, r->element[i]);
        fputc(':', out);
        write_value(out, r->element[i + 1]);
    }
    fputc('}', out);
}

static bool body_full(FILE *body)
{
    return ftell(body) > WEB_BODY_MAX;
}

/* ---- /api/views ---- */

typedef struct web_pair {
    const redisReply *name, *value;
} web_pair;

static int compare_bytes(nps_str a, nps_str b)
{
    int c = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static nps_str str_of(const redisReply *r)
{
    return (nps_str){r->str, r->len};
}

/* `all` first, then by name. */
static int compare_views(const void *pa, const void *pb)
{
    const web_pair *a = pa, *b = pb;
    bool all_a = strcmp(a->name->str, NPS_VIEW_ALL) == 0;
    bool all_b = strcmp(b->name->str, NPS_VIEW_ALL) == 0;
    if (all_a != all_b)
        return all_a ? -1 : 1;
    return compare_bytes(str_of(a->name), str_of(b->name));
}

/* Narrowest first, total (0) last. */
static int compare_windows(const void *pa, const void *pb)
{
    const web_pair *a = pa, *b = pb;
    unsigned long long sa = strtoull(a->value->str, NULL, 10);
    unsigned long long sb = strtoull(b->value->str, NULL, 10);
    sa = sa ? sa : ~0ULL;
    sb = sb ? sb : ~0ULL;
    if (sa != sb)
        return sa < sb ? -1 : 1;
    return compare_bytes(str_of(a->name), str_of(b->name));
}

/* The pairs of a HGETALL reply, sorted; NULL when empty or short of memory. */
static web_pair *hash_pairs(const redisReply *r, size_t *n,
                            int (*order)(const void *, const void *))
{
    *n = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return NULL;
    web_pair *pairs = calloc(r->elements / 2, sizeof(*pairs));
    if (!pairs)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        pairs[(*n)++] = (web_pair){r->element[i], r->element[i + 1]};
    qsort(pairs, *n, sizeof(*pairs), order);
    return pairs;
}

static unsigned api_views(web_request *rq)
{
    redisReply *views = NULL, *windows = NULL;
    const char *catalogs[] = {"views", "windows"};
    unsigned status = 200;
    for (int i = 0; i < 2 && status == 200; i++) {
        status = key_of(rq, catalogs[i], NULL);
        const char *argv[] = {"HGETALL", rq->key};
        size_t lens[] = {7, rq->key_len};
        if (status == 200)
            status = append(rq, 2, argv, lens);
    }
    if (status == 200)
        status = next_reply(rq, &views);
    if (status == 200)
        status = next_reply(rq, &windows);
    if (status != 200)
        goto out;
    size_t nviews, nwindows;
    web_pair *vp = hash_pairs(views, &nviews, compare_views);
    web_pair *wp = hash_pairs(windows, &nwindows, compare_windows);
    FILE *out = rq->body;
    fputs("{\"prefix\":", out);
    json_text(out, rq->web->prefix);
    fputs(",\"views\":[", out);
    for (size_t i = 0; i < nviews; i++) {
        fprintf(out, "%s{\"name\":", i ? "," : "");
        json_reply_string(out, vp[i].name);
        fputs(",\"dimensions\":[", out);
        const char *dims = vp[i].value->str, *end = dims + vp[i].value->len;
        for (const char *p = dims; p < end;) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *stop = comma ? comma : end;
            if (p != dims)
                fputc(',', out);
            nps_json_write_string(out, p, (size_t)(stop - p));
            p = comma ? comma + 1 : end;
        }
        fputs("]}", out);
    }
    fputs("],\"windows\":[", out);
    for (size_t i = 0; i < nwindows; i++) {
        fprintf(out, "%s{\"name\":", i ? "," : "");
        json_reply_string(out, wp[i].name);
        fputs(",\"size_ms\":", out);
        json_number_or_string(out, wp[i].value);
        fputc('}', out);
    }
    fputs("]}", out);
    free(vp);
    free(wp);
out:
    if (views)
        freeReplyObject(views);
    if (windows)
        freeReplyObject(windows);
    return status;
}

/* ---- /api/segments ---- */

typedef struct web_row {
    nps_str segment;
    unsigned long long responses;
} web_row;

static int compare_segments(const void *pa, const void *pb)
{
    return compare_bytes(((const web_row *)pa)->segment, ((const web_row *)pb)->segment);
}

/* Most responses first, then by segment. */
static int compare_rows(const void *pa, const void *pb)
{
    const web_row *a = pa, *b = pb;
    if (a->responses != b->responses)
        return a->responses > b->responses ? -1 : 1;
    return compare_bytes(a->segment, b->segment);
}

/* Queue a command on PREFIX:win:<view>:<segment>:<window>. */
static unsigned append_on_window(web_request *rq, const char *view, nps_str segment,
                                 const char *window, int argc, const char **argv, size_t *lens)
{
    const char *parts[] = {"win", view, segment.ptr, window};
    size_t plens[] = {3, strlen(view), segment.len, strlen(window)};
    unsigned status = key_build(rq, 4, parts, plens);
    if (status != 200)
        return status;
    argv[1] = rq->key;
    lens[1] = rq->key_len;
    return append(rq, argc, argv, lens);
}

/* Distinct segments of the scan, each with its responses in the window. */
static unsigned read_responses(web_request *rq, const char *view, const char *window,
                               const web_scan *scan, web_row *rows, size_t *nrows)
{
    size_t n = 0;
    for (size_t i = 0; i < scan->nelements; i++)
        rows[n++].segment = scan->elements[i];
    qsort(rows, n, sizeof(web_row), compare_segments);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (!distinct || compare_bytes(rows[distinct - 1].segment, rows[i].segment) != 0)
            rows[distinct++] = rows[i];
    *nrows = distinct;
    for (size_t i = 0; i < distinct; i++) {
        const char *argv[] = {"HGET", NULL, "responses"};
        size_t lens[] = {4, 0, 9};
        unsigned status = append_on_window(rq, view, rows[i].segment, window, 3, argv, lens);
        if (status != 200)
            return status;
    }
    for (size_t i = 0; i < distinct; i++) {
        redisReply *r;
        unsigned status = next_reply(rq, &r);
        if (status != 200)
            return status;
        rows[i].responses = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
        freeReplyObject(r);
    }
    return 200;
}

/* The first `shown` rows with their window hashes, until the body is full. */
static unsigned write_rows(web_request *rq, const char *view, const char *window,
                           const web_row *rows, size_t shown, bool *truncated)
{
    for (size_t i = 0; i < shown; i++) {
        const char *argv[] = {"HGETALL", NULL};
        size_t lens[] = {7, 0};
        unsigned status = append_on_window(rq, view, rows[i].segment, window, 2, argv, lens);
        if (status != 200)
            return status;
    }
    FILE *out = rq->body;
    *truncated = false;
    for (size_t i = 0; i < shown && !*truncated; i++) {
        redisReply *r;
        unsigned status = next_reply(rq, &r);
        if (status != 200)
            return status;
        fprintf(out, "%s{\"segment\":", i ? "," : "");
        nps_json_write_string(out, rows[i].segment.ptr, rows[i].segment.len);
        fputs(",\"fields\":", out);
        json_pairs(out, r, json_reply_string, json_number_or_string);
        fputc('}', out);
        freeReplyObject(r);
        *truncated = body_full(out);
    }
    return 200;
}

static unsigned api_segments(web_request *rq)
{
    const char *view = "", *window = "";
    long limit = 0;
    unsigned status;
    if ((status = param_name(rq, "view", NULL, &view)) != 200 ||
        (status = param_name(rq, "window", NULL, &window)) != 200 ||
        (status = param_count(rq, "limit", WEB_ROWS_DEFAULT, 1, WEB_ROWS_MAX, &limit)) != 200 ||
        (status = require_published(rq, "views", view)) != 200 ||
        (status = require_published(rq, "windows", window)) != 200 ||
        (status = key_of(rq, "segments", view)) != 200)
        return status;
    const char *argv[] = {"SCARD", rq->key};
    size_t lens[] = {5, rq->key_len};
    redisReply *card = NULL;
    if ((status = command(rq, &card, 2, argv, lens)) != 200)
        return status;
    long long total = card->type == REDIS_REPLY_INTEGER ? card->integer : 0;
    freeReplyObject(card);
    web_scan scan = {0};
    web_row *rows = NULL;
    size_t nrows = 0;
    bool truncated = false;
    if ((status = scan_key(rq, "SSCAN", WEB_SCAN_MAX, &scan)) != 200)
        goto out;
    rows = calloc(scan.nelements + 1, sizeof(web_row));
    if (!rows) {
        status = WEB_FAIL(rq, 500, "out of memory for %zu segments", scan.nelements);
        goto out;
    }
    if ((status = read_responses(rq, view, window, &scan, rows, &nrows)) != 200)
        goto out;
    qsort(rows, nrows, sizeof(web_row), compare_rows);
    FILE *out = rq->body;
    fputs("{\"view\":", out);
    json_text(out, view);
    fputs(",\"window\":", out);
    json_text(out, window);
    fprintf(out, ",\"segments\":%lld,\"read\":%zu,\"complete\":%s,\"rows\":[", total, nrows,
            scan.complete ? "true" : "false");
    size_t shown = nrows < (size_t)limit ? nrows : (size_t)limit;
    if ((status = write_rows(rq, view, window, rows, shown, &truncated)) != 200)
        goto out;
    fprintf(out, "],\"truncated\":%s}", truncated ? "true" : "false");
out:
    free(rows);
    scan_free(&scan);
    return status;
}

/* ---- /api/trend ---- */

typedef struct web_point {
    int64_t t;            /* bucket start, epoch ms */
    const char *parts[5]; /* responses, promoters, passives, detractors, nps */
    size_t lens[5];
} web_point;

static int compare_points(const void *pa, const void *pb)
{
    const web_point *a = pa, *b = pb;
    return (a->t > b->t) - (a->t < b->t);
}

/* A whole number as JSON writes it: digits, no leading zero, fits int64. */
static bool is_count(const char *text, size_t len)
{
    return len > 0 && len <= 18 && strspn(text, "0123456789") >= len &&
           nps_json_is_number(text, len);
}

/* A trend field and value: "<epoch ms>" and "n,p,pa,d,nps" (counts whole
 * numbers; nps a number, or empty when n is 0; fields past the fifth are
 * ignored, for later additions). */
static bool parse_point(nps_str field, nps_str value, web_point *point)
{
    if (!is_count(field.ptr, field.len) || field.ptr[field.len] != '\0')
        return false; /* (hiredis ends every string with a NUL) */
    point->t = strtoll(field.ptr, NULL, 10);
    const char *p = value.ptr, *end = value.ptr + value.len;
    for (int i = 0; i < 5; i++) {
        const char *comma = p <= end ? memchr(p, ',', (size_t)(end - p)) : NULL;
        const char *stop = comma ? comma : end;
        if (p > end || (i < 4 && !comma))
            return false;
        point->parts[i] = p;
        point->lens[i] = (size_t)(stop - p);
        bool ok = i < 4 ? is_count(p, point->lens[i])
                        : point->lens[i] == 0 || nps_json_is_number(p, point->lens[i]);
        if (!ok)
            return false;
        p = stop + 1;
    }
    return true;
}

static unsigned api_trend(web_request *rq)
{
    static const char *const names[] = {"responses", "promoters", "passives", "detractors", "nps"};
    const char *view = "", *segment = "", *res = "";
    long points = 0;
    unsigned status;
    if ((status = param_name(rq, "view", NULL, &view)) != 200 ||
        (status = param_segment(rq, &segment)) != 200 ||
        (status = param_name(rq, "res", "1h", &res)) != 200)
        return status;
    if (strcmp(res, "1h") != 0 && strcmp(res, "1d") != 0)
        return WEB_FAIL(rq, 400, "parameter 'res': expected 1h or 1d");
    const char *parts[] = {"trend", view, segment, res};
    size_t lens[] = {5, strlen(view), strlen(segment), 2};
    if ((status = param_count(rq, "points", WEB_POINTS_DEFAULT, 1, WEB_POINTS_MAX, &points)) !=
            200 ||
        (status = require_published(rq, "views", view)) != 200 ||
        (status = key_build(rq, 4, parts, lens)) != 200)
        return status;
    web_scan scan = {0};
    web_point *list = NULL;
    if ((status = scan_key(rq, "HSCAN", (size_t)2 * WEB_SCAN_MAX, &scan)) != 200)
        goto out;
    list = calloc(scan.nelements / 2 + 1, sizeof(web_point));
    if (!list) {
        status = WEB_FAIL(rq, 500, "out of memory for a trend");
        goto out;
    }
    size_t n = 0, malformed = 0;
    for (size_t i = 0; i + 1 < scan.nelements; i += 2) {
        if (parse_point(scan.elements[i], scan.elements[i + 1], &list[n]))
            n++;
        else
            malformed++;
    }
    qsort(list, n, sizeof(web_point), compare_points);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (!distinct || list[distinct - 1].t != list[i].t)
            list[distinct++] = list[i];
    size_t first = distinct > (size_t)points ? distinct - (size_t)points : 0;
    FILE *out = rq->body;
    fputs("{\"view\":", out);
    json_text(out, view);
    fputs(",\"segment\":", out);
    json_text(out, segment);
    fprintf(out, ",\"res\":\"%s\",\"complete\":%s,\"malformed\":%zu,\"points\":[", res,
            scan.complete ? "true" : "false", malformed);
    for (size_t i = first; i < distinct; i++) {
        fprintf(out, "%s{\"t\":%" PRId64, i > first ? "," : "", list[i].t);
        for (int f = 0; f < 5; f++) {
            fprintf(out, ",\"%s\":", names[f]);
            if (list[i].lens[f])
                fwrite(list[i].parts[f], 1, list[i].lens[f], out);
            else
                fputs("null", out);
        }
        fputc('}', out);
    }
    fputs("]}", out);
out:
    free(list);
    scan_free(&scan);
    return status;
}

/* ---- /api/detractors, /api/alerts ---- */

static unsigned api_stream(web_request *rq, const char *stream)
{
    long count = 0;
    unsigned status;
    if ((status = param_count(rq, "count", WEB_ENTRIES_DEFAULT, 1, WEB_ENTRIES_MAX, &count)) !=
            200 ||
        (status = key_of(rq, stream, NULL)) != 200)
        return status;
    char count_text[16];
    snprintf(count_text, sizeof(count_text), "%ld", count);
    const char *argv[] = {"XREVRANGE", rq->key, "+", "-", "COUNT", count_text};
    size_t lens[] = {9, rq->key_len, 1, 1, 5, strlen(count_text)};
    redisReply *r = NULL;
    if ((status = command(rq, &r, 6, argv, lens)) != 200)
        return status;
    FILE *out = rq->body;
    fputs("{\"stream\":", out);
    nps_json_write_string(out, rq->key, rq->key_len);
    fputs(",\"entries\":[", out);
    bool truncated = false;
    size_t written = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && !truncated; i++) {
        const redisReply *entry = r->element[i];
        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
            entry->element[0]->type != REDIS_REPLY_STRING)
            continue;
        fprintf(out, "%s{\"id\":", written++ ? "," : "");
        json_reply_string(out, entry->element[0]);
        fputs(",\"fields\":", out);
        json_pairs(out, entry->element[1], json_bounded, json_bounded);
        fputc('}', out);
        truncated = body_full(out);
    }
    fprintf(out, "],\"truncated\":%s}", truncated ? "true" : "false");
    freeReplyObject(r);
    return status;
}

static unsigned api_detractors(web_request *rq)
{
    return api_stream(rq, "detractors");
}

static unsigned api_alerts(web_request *rq)
{
    return api_stream(rq, "alerts");
}

/* ---- routing ---- */

static const struct web_endpoint {
    const char *path;
    unsigned (*run)(web_request *rq);
} web_endpoints[] = {
    {"/api/views", api_views},           {"/api/segments", api_segments}, {"/api/trend", api_trend},
    {"/api/detractors", api_detractors}, {"/api/alerts", api_alerts},
};

unsigned nps_web_serve(void *ctx, const char *path, const nps_http_request *request, FILE *out,
                       const char **type)
{
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        *type = "text/html; charset=utf-8";
        fputs(nps_web_index_html, out);
        return 200;
    }
    if (strncmp(path, "/api/", 5) != 0)
        return 0;
    *type = "application/json";
    web_request rq = {.web = ctx, .http = request};
    unsigned status = WEB_FAIL(&rq, 404,
                               "no such endpoint: try /api/views, /api/segments, "
                               "/api/trend, /api/detractors or /api/alerts");
    char *body = NULL;
    size_t len = 0;
    for (size_t i = 0; i < sizeof(web_endpoints) / sizeof(web_endpoints[0]); i++) {
        if (strcmp(path, web_endpoints[i].path) != 0)
            continue;
        rq.body = open_memstream(&body, &len);
        status = rq.body ? web_endpoints[i].run(&rq) : WEB_FAIL(&rq, 500, "out of memory");
        if (rq.body)
            fclose(rq.body);
        break;
    }
    if (status == 200) {
        fwrite(body, 1, len, out);
    } else {
        fputs("{\"error\":", out);
        json_text(out, rq.error);
        fputs("}", out);
    }
    free(body);
    free(rq.key);
    if (rq.redis)
        redisFree(rq.redis);
    return status;
}
