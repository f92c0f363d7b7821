/*
 * top: `npstream top`, a terminal table of the rollups that `run` publishes
 * to Redis (DESIGN.md "Redis contract").
 *
 * DESIGN
 * Each refresh reads one snapshot: the published views (P:views) and
 * windows (P:windows), the segments of each shown view (P:segments:<view>),
 * then one HMGET per (segment, window). The HMGETs are pipelined in batches
 * because a view can hold thousands of segments, and one round trip each
 * would make a refresh take seconds. The snapshot is then drawn as text.
 *
 * Once mode (interval 0) prints one table and exits: 0 when it showed
 * something, 1 when Redis is unreachable or holds nothing under the prefix.
 * Live mode redraws every interval and outlives Redis restarts, because a
 * watching tool that quits on a blip is left closed: it reconnects instead.
 *
 * Everything shown that came from Redis is user data: control bytes in it
 * are never written to the terminal, so a segment value cannot carry an
 * escape sequence to the user's screen.
 *
 * Single-threaded; the only state a signal handler touches is two flags.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "commands.h"
#include "config.h"
#include "redis_sink.h"
#include "view.h"
#include "window.h"

extern char **environ;

#define TOP_PIPELINE_BATCH 512 /* HMGETs in flight per round trip */
#define TOP_TIMEOUT_MS 2000    /* connect and per-reply limit */
#define TOP_DEFAULT_COLS 160   /* when stdout is not a terminal */
#define TOP_DEFAULT_ROWS 50
#define TOP_SEGMENT_MAX_COLS 40
#define TOP_SEGMENT_MIN_COLS 12
#define TOP_CELL_MAX 72
#define TOP_MAX_COLUMNS (NPS_MAX_WINDOWS * 3 + 12)

typedef enum top_result {
    TOP_SHOWN,  /* the snapshot is complete */
    TOP_EMPTY,  /* nothing published under the prefix yet */
    TOP_FAILED, /* see the error message */
} top_result;

/* The fields of a P:win hash that top reads, in HMGET order. */
#define TOP_FIELDS "responses promoters passives detractors score_sum sent nps moe95 updated_ms"
enum {
    F_RESPONSES,
    F_PROMOTERS,
    F_PASSIVES,
    F_DETRACTORS,
    F_SCORE_SUM,
    F_SENT,
    F_NPS,
    F_MOE95,
    F_UPDATED_MS,
    F_COUNT
};

/* One window of one segment, as read from its P:win hash. The figures
 * are the engine's own (nps, moe95), not recomputed: top shows what
 * readers of Redis get. */
typedef struct top_cell {
    bool present; /* the hash exists */
    bool bad;     /* the key or a field breaks the contract: shown as "?" */
    bool has_moe;
    nps_summary figures; /* has_nps false when the nps field is absent */
    int64_t updated_ms;
} top_cell;

typedef struct top_row {
    char *segment;                   /* as stored: part of the key */
    char *label;                     /* decoded for display */
    uint64_t sort_responses;         /* in the widest shown window */
    top_cell cells[NPS_MAX_WINDOWS]; /* by shown window */
} top_row;

typedef struct top_view {
    char *name;
    char *dims; /* comma-separated; "" for `all` */
    top_row *rows;
    size_t nrows;
} top_view;

typedef struct top_window {
    char *name;
    int64_t size_ms; /* 0 for total */
} top_window;

typedef struct top_snapshot {
    top_window windows[NPS_MAX_WINDOWS]; /* shown: narrowest first, total last */
    int nwindows;
    top_view *views; /* `all` first, then by name */
    size_t nviews;
    int64_t newest_updated_ms;
} top_snapshot;

typedef struct top_session {
    const nps_config *config;
    char host[256];
    int port;
    char view[NPS_NAME_MAX]; /* --view without any "=DIMS" of a shared config */
    redisContext *redis;     /* NULL until connected, and after a failure */
} top_session;

/* What one table column shows. */
typedef enum top_field {
    COL_NPS_MOE,
    COL_N,
    COL_PPD,
    COL_NPS,
    COL_MOE,
    COL_P,
    COL_PA,
    COL_D,
    COL_SHARE_P,
    COL_SHARE_D,
    COL_AVG,
    COL_SENT,
    COL_RATE,
} top_field;

typedef struct top_column {
    top_field field;
    int window;    /* index into the snapshot's windows */
    bool optional; /* dropped when rows would be too wide */
    size_t width;
} top_column;

typedef struct top_layout {
    top_column cols[TOP_MAX_COLUMNS];
    int ncols;
    size_t segment_width;
    int hidden_windows; /* the narrowest ones, dropped for width */
} top_layout;

static volatile sig_atomic_t top_stop;
static volatile sig_atomic_t top_resized;

/* ---- text helpers ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_control(unsigned char byte)
{
    return byte < 0x20 || byte == 0x7f;
}

/* Replace control bytes in place, for text from Redis (names, error
 * replies) on its way to the terminal. */
static char *sanitize(char *text)
{
    for (char *p = text; *p; p++)
        if (is_control((unsigned char)*p))
            *p = '?';
    return text;
}

/* Decode %XX for reading. A byte that would be a terminal control stays
 * encoded; a malformed escape is shown as it is. */
static char *decode_label(const char *segment)
{
    char *label = malloc(strlen(segment) + 1);
    if (!label)
        return NULL;
    size_t n = 0;
    for (const char *p = segment; *p; p++) {
        int hi = *p == '%' ? hex_value(p[1]) : -1;
        int lo = hi >= 0 ? hex_value(p[2]) : -1;
        if (lo >= 0 && !is_control((unsigned char)(hi * 16 + lo))) {
            label[n++] = (char)(hi * 16 + lo);
            p += 2;
        } else {
            label[n++] = is_control((unsigned char)*p) ? '?' : *p;
        }
    }
    label[n] = '\0';
    return label;
}

/* Terminal columns of UTF-8 text: one per character (no wide scripts). */
static size_t display_width(const char *text)
{
    size_t width = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        width += (*p & 0xC0) != 0x80;
    return width;
}

/* Byte length of the first `columns` characters of `text`. */
static size_t prefix_bytes(const char *text, size_t columns)
{
    size_t bytes = 0;
    for (size_t seen = 0; text[bytes]; bytes++) {
        if (((unsigned char)text[bytes] & 0xC0) != 0x80 && seen++ == columns)
            break;
    }
    return bytes;
}

/* Print `text` in exactly `width` columns: padded, or cut with "...". */
static void print_fitted(FILE *out, const char *text, size_t width, bool left)
{
    size_t text_width = display_width(text);
    if (text_width > width) {
        size_t keep = width > 3 ? width - 3 : 0;
        fprintf(out, "%.*s%.*s", (int)prefix_bytes(text, keep), text, (int)(width - keep), "...");
        return;
    }
    int pad = (int)(width - text_width);
    if (left)
        fprintf(out, "%s%*s", text, pad, "");
    else
        fprintf(out, "%*s%s", pad, "", text);
}

/* ---- Redis ---- */

static void session_disconnect(top_session *s)
{
    if (s->redis)
        redisFree(s->redis);
    s->redis = NULL;
}

static bool session_connect(top_session *s, nps_error *err)
{
    if (s->redis)
        return true;
    struct timeval timeout = {TOP_TIMEOUT_MS / 1000, (suseconds_t)(TOP_TIMEOUT_MS % 1000) * 1000};
    redisContext *redis = redisConnectWithTimeout(s->host, s->port, timeout);
    if (!redis || redis->err || redisSetTimeout(redis, timeout) != REDIS_OK) {
        nps_error_set(err, "Redis %s:%d unreachable: %s", s->host, s->port,
                      redis ? redis->errstr : "out of memory");
        if (redis)
            redisFree(redis);
        return false;
    }
    if (!nps_redis_auth(redis, s->config->redis_user, s->config->redis_password, err)) {
        redisFree(redis);
        return false;
    }
    s->redis = redis;
    return true;
}

static void set_connection_error(top_session *s, nps_error *err)
{
    nps_error_set(err, "Redis %s:%d unreachable: %s", s->host, s->port,
                  s->redis->err ? s->redis->errstr : "out of memory");
}

/* Run a command that must answer an array (HGETALL, SMEMBERS) of strings.
 * NULL with `err` set otherwise; `key` names the key in the message. */
static redisReply *command_strings(top_session *s, const char *key, nps_error *err,
                                   const char *format, ...)
{
    va_list args;
    va_start(args, format);
    redisReply *reply = redisvCommand(s->redis, format, args);
    va_end(args);
    if (!reply) {
        set_connection_error(s, err);
        return NULL;
    }
    bool strings = reply->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; strings && i < reply->elements; i++)
        strings = reply->element[i]->type == REDIS_REPLY_STRING;
    if (strings)
        return reply;
    if (reply->type == REDIS_REPLY_ERROR)
        nps_error_set(err, "reading %s: %s", key, reply->str);
    else
        nps_error_set(err, "reading %s: not an array of strings (reply type %d)", key, reply->type);
    freeReplyObject(reply);
    return NULL;
}

static void set_nothing_published(const top_session *s, const char *key, nps_error *err)
{
    nps_error_set(err, "nothing published yet in Redis %s:%d under prefix '%s' (no key %s)",
                  s->host, s->port, s->config->prefix, key);
}

/* ---- views and windows ---- */

static int compare_views(const void *a, const void *b)
{
    const top_view *x = a;
    const top_view *y = b;
    bool x_all = strcmp(x->name, NPS_VIEW_ALL) == 0;
    bool y_all = strcmp(y->name, NPS_VIEW_ALL) == 0;
    if (x_all != y_all)
        return x_all ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* "a, b, c" of the field names of an HGETALL reply, for messages. */
static void list_names(const redisReply *pairs, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i + 1 < pairs->elements && used < size; i += 2) {
        int n = snprintf(out + used, size - used, "%s%s", i ? ", " : "", pairs->element[i]->str);
        used += n > 0 ? (size_t)n : 0;
    }
    sanitize(out);
}

/* --view or --window names what P:views or P:windows lacks. */
static top_result set_not_published(const top_session *s, const char *what, const char *name,
                                    const redisReply *pairs, nps_error *err)
{
    char names[512];
    list_names(pairs, names, sizeof(names));
    nps_error_set(err, "%s '%s' is not published (%s:%ss has %s)", what, name, s->config->prefix,
                  what, names);
    return TOP_FAILED;
}

static top_result add_views(top_session *s, top_snapshot *snap, const redisReply *pairs,
                            nps_error *err)
{
    snap->views = calloc(pairs->elements / 2 + 1, sizeof(*snap->views));
    if (!snap->views) {
        nps_error_set(err, "out of memory");
        return TOP_FAILED;
    }
    for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
        const char *name = pairs->element[i]->str;
        if (s->view[0] && strcmp(name, s->view) != 0)
            continue;
        top_view *view = &snap->views[snap->nviews++];
        view->name = strdup(name);
        view->dims = strdup(pairs->element[i + 1]->str);
        if (!view->name || !view->dims) {
            nps_error_set(err, "out of memory");
            return TOP_FAILED;
        }
        sanitize(view->name);
        sanitize(view->dims);
    }
    if (snap->nviews == 0)
        return set_not_published(s, "view", s->view, pairs, err);
    qsort(snap->views, snap->nviews, sizeof(*snap->views), compare_views);
    return TOP_SHOWN;
}

typedef top_result (*top_hash_reader)(top_session *s, top_snapshot *snap, const redisReply *pairs,
                                      nps_error *err);

/* HGETALL P:<name> into `snap` with `read`; a missing hash means nothing
 * is published yet. */
static top_result fetch_listing(top_session *s, top_snapshot *snap, const char *name,
                                top_hash_reader read, nps_error *err)
{
    char key[128];
    snprintf(key, sizeof(key), "%s:%s", s->config->prefix, name);
    redisReply *pairs = command_strings(s, key, err, "HGETALL %s", key);
    if (!pairs)
        return TOP_FAILED;
    top_result result = TOP_EMPTY;
    if (pairs->elements == 0)
        set_nothing_published(s, key, err);
    else
        result = read(s, snap, pairs, err);
    freeReplyObject(pairs);
    return result;
}

/* Narrowest first, total (size 0) last. */
static int compare_windows(const void *a, const void *b)
{
    const top_window *x = a;
    const top_window *y = b;
    if ((x->size_ms == 0) != (y->size_ms == 0))
        return x->size_ms == 0 ? 1 : -1;
    if (x->size_ms != y->size_ms)
        return x->size_ms < y->size_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool parse_i64(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end)
        return false;
    *out = value;
    return true;
}

/* Keep only --window, when one is chosen. */
static top_result choose_window(const top_session *s, top_snapshot *snap, const redisReply *pairs,
                                nps_error *err)
{
    const char *chosen = s->config->top_window;
    if (!chosen[0])
        return TOP_SHOWN;
    for (int w = 0; w < snap->nwindows; w++) {
        if (strcmp(snap->windows[w].name, chosen) != 0)
            continue;
        top_window keep = snap->windows[w];
        snap->windows[w] = snap->windows[0];
        snap->windows[0] = keep;
        return TOP_SHOWN;
    }
    return set_not_published(s, "window", chosen, pairs, err);
}

static top_result read_windows(top_session *s, top_snapshot *snap, const redisReply *pairs,
                               nps_error *err)
{
    if (pairs->elements / 2 > NPS_MAX_WINDOWS) {
        nps_error_set(err, "%s:windows has more than %d windows", s->config->prefix,
                      NPS_MAX_WINDOWS);
        return TOP_FAILED;
    }
    for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
        top_window *window = &snap->windows[snap->nwindows++];
        window->name = strdup(pairs->element[i]->str);
        if (!window->name) {
            nps_error_set(err, "out of memory");
            return TOP_FAILED;
        }
        sanitize(window->name);
        if (!parse_i64(pairs->element[i + 1]->str, &window->size_ms) || window->size_ms < 0) {
            nps_error_set(err, "%s:windows: window '%s' has size '%s', not milliseconds",
                          s->config->prefix, window->name, pairs->element[i + 1]->str);
            return TOP_FAILED;
        }
    }
    qsort(snap->windows, (size_t)snap->nwindows, sizeof(snap->windows[0]), compare_windows);
    return choose_window(s, snap, pairs, err);
}

/* After choose_window, only the first window is shown; the others stay
 * in the array so that snapshot_release frees them. */
static int shown_windows(const top_session *s, const top_snapshot *snap)
{
    return s->config->top_window[0] ? 1 : snap->nwindows;
}

/* ---- segments and their window hashes ---- */

static top_result add_rows(top_view *view, const redisReply *members, nps_error *err)
{
    view->rows = calloc(members->elements + 1, sizeof(*view->rows));
    if (!view->rows)
        goto out_of_memory;
    for (size_t i = 0; i < members->elements; i++) {
        top_row *row = &view->rows[view->nrows++];
        row->segment = strdup(members->element[i]->str);
        row->label = decode_label(members->element[i]->str);
        if (!row->segment || !row->label)
            goto out_of_memory;
    }
    return TOP_SHOWN;
out_of_memory:
    nps_error_set(err, "out of memory");
    return TOP_FAILED;
}

static top_result fetch_segments(top_session *s, top_view *view, nps_error *err)
{
    char key[256];
    snprintf(key, sizeof(key), "%s:segments:%s", s->config->prefix, view->name);
    redisReply *members =
        command_strings(s, key, err, "SMEMBERS %s:segments:%s", s->config->prefix, view->name);
    if (!members)
        return TOP_FAILED;
    top_result result = add_rows(view, members, err);
    freeReplyObject(members);
    return result;
}

static bool parse_u64_field(const redisReply *field, uint64_t *out)
{
    *out = 0;
    if (field->type == REDIS_REPLY_NIL)
        return true;
    if (field->type != REDIS_REPLY_STRING || field->str[0] < '0' || field->str[0] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long value = strtoull(field->str, &end, 10);
    *out = value;
    return !errno && end != field->str && !*end;
}

static bool parse_double_field(const redisReply *field, double *out, bool *present)
{
    *present = false;
    if (field->type == REDIS_REPLY_NIL)
        return true;
    if (field->type != REDIS_REPLY_STRING)
        return false;
    char *end;
    *out = strtod(field->str, &end);
    *present = true;
    return end != field->str && !*end && *out > -1e300 && *out < 1e300;
}

/* Fill `cell` from an HMGET reply. All fields nil: the key does not exist
 * (a window with no events leaves no hash). */
static void parse_cell(const redisReply *reply, top_cell *cell)
{
    memset(cell, 0, sizeof(*cell));
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != F_COUNT) {
        cell->bad = true;
        return;
    }
    redisReply *const *f = reply->element;
    for (int i = 0; i < F_COUNT; i++)
        cell->present |= f[i]->type != REDIS_REPLY_NIL;
    uint64_t updated = 0;
    bool ok = parse_u64_field(f[F_RESPONSES], &cell->figures.responses) &&
              parse_u64_field(f[F_PROMOTERS], &cell->figures.promoters) &&
              parse_u64_field(f[F_PASSIVES], &cell->figures.passives) &&
              parse_u64_field(f[F_DETRACTORS], &cell->figures.detractors) &&
              parse_u64_field(f[F_SCORE_SUM], &cell->figures.score_sum) &&
              parse_u64_field(f[F_SENT], &cell->figures.sent) &&
              parse_u64_field(f[F_UPDATED_MS], &updated) &&
              parse_double_field(f[F_NPS], &cell->figures.nps, &cell->figures.has_nps) &&
              parse_double_field(f[F_MOE95], &cell->figures.moe95, &cell->has_moe);
    cell->updated_ms = updated <= INT64_MAX ? (int64_t)updated : 0;
    cell->bad = !ok;
}

static top_result append_hmget(top_session *s, const top_view *view, const top_row *row,
                               const top_window *window, nps_error *err)
{
    if (redisAppendCommand(s->redis, "HMGET %s:win:%s:%s:%s " TOP_FIELDS, s->config->prefix,
                           view->name, row->segment, window->name) == REDIS_OK)
        return TOP_SHOWN;
    set_connection_error(s, err);
    return TOP_FAILED;
}

/* Pipeline the HMGETs of cells [first, last) of `view`, cell i being
 * window i % nwindows of row i / nwindows, and read their replies. */
static top_result fetch_cell_batch(top_session *s, top_snapshot *snap, top_view *view, size_t first,
                                   size_t last, nps_error *err)
{
    size_t nwindows = (size_t)shown_windows(s, snap);
    for (size_t i = first; i < last; i++) {
        const top_window *window = &snap->windows[i % nwindows];
        if (append_hmget(s, view, &view->rows[i / nwindows], window, err) != TOP_SHOWN)
            return TOP_FAILED;
    }
    for (size_t i = first; i < last; i++) {
        void *reply = NULL;
        if (redisGetReply(s->redis, &reply) != REDIS_OK || !reply) {
            set_connection_error(s, err);
            return TOP_FAILED;
        }
        top_cell *cell = &view->rows[i / nwindows].cells[i % nwindows];
        parse_cell(reply, cell);
        if (cell->updated_ms > snap->newest_updated_ms)
            snap->newest_updated_ms = cell->updated_ms;
        freeReplyObject(reply);
    }
    return TOP_SHOWN;
}

/* Most responses first; equal counts by segment, so the order is stable
 * between refreshes. */
static int compare_rows(const void *a, const void *b)
{
    const top_row *x = a;
    const top_row *y = b;
    if (x->sort_responses != y->sort_responses)
        return x->sort_responses > y->sort_responses ? -1 : 1;
    return strcmp(x->segment, y->segment);
}

static top_result fetch_cells(top_session *s, top_snapshot *snap, top_view *view, nps_error *err)
{
    int nwindows = shown_windows(s, snap);
    size_t total = view->nrows * (size_t)nwindows;
    for (size_t first = 0; first < total; first += TOP_PIPELINE_BATCH) {
        size_t last = first + TOP_PIPELINE_BATCH < total ? first + TOP_PIPELINE_BATCH : total;
        if (fetch_cell_batch(s, snap, view, first, last, err) != TOP_SHOWN)
            return TOP_FAILED;
    }
    for (size_t r = 0; r < view->nrows; r++)
        view->rows[r].sort_responses = view->rows[r].cells[nwindows - 1].figures.responses;
    qsort(view->rows, view->nrows, sizeof(*view->rows), compare_rows);
    return TOP_SHOWN;
}

static top_result fetch_snapshot(top_session *s, top_snapshot *snap, nps_error *err)
{
    top_result result = fetch_listing(s, snap, "views", add_views, err);
    if (result == TOP_SHOWN)
        result = fetch_listing(s, snap, "windows", read_windows, err);
    for (size_t v = 0; result == TOP_SHOWN && v < snap->nviews; v++) {
        result = fetch_segments(s, &snap->views[v], err);
        if (result == TOP_SHOWN)
            result = fetch_cells(s, snap, &snap->views[v], err);
    }
    return result;
}

static void snapshot_release(top_snapshot *snap)
{
    for (size_t v = 0; v < snap->nviews; v++) {
        top_view *view = &snap->views[v];
        for (size_t r = 0; r < view->nrows; r++) {
            free(view->rows[r].segment);
            free(view->rows[r].label);
        }
        free(view->rows);
        free(view->name);
        free(view->dims);
    }
    free(snap->views);
    for (int w = 0; w < snap->nwindows; w++)
        free(snap->windows[w].name);
    memset(snap, 0, sizeof(*snap));
}

/* ---- drawing ---- */

static const char *column_title(top_field field)
{
    static const char *const titles[] = {
        [COL_NPS_MOE] = "NPS \xC2\xB1moe",
        [COL_N] = "n",
        [COL_PPD] = "P/Pa/D",
        [COL_NPS] = "NPS",
        [COL_MOE] = "\xC2\xB1moe95",
        [COL_P] = "promoters",
        [COL_PA] = "passives",
        [COL_D] = "detractors",
        [COL_SHARE_P] = "%P",
        [COL_SHARE_D] = "%D",
        [COL_AVG] = "avg",
        [COL_SENT] = "sent",
        [COL_RATE] = "resp rate",
    };
    return titles[field];
}

/* NPS with its sign; a value that rounds to zero prints "+0.0", never
 * "-0.0". */
static void format_nps(double nps, char *out, size_t size)
{
    snprintf(out, size, "%+.1f", nps > -0.05 && nps < 0.05 ? 0.0 : nps);
}

static void format_share(uint64_t part, uint64_t whole, char *out, size_t size)
{
    if (whole == 0)
        snprintf(out, size, "-");
    else
        snprintf(out, size, "%.1f%%", 100.0 * (double)part / (double)whole);
}

static void format_average(const top_cell *cell, char *out, size_t size)
{
    if (cell->figures.responses)
        snprintf(out, size, "%.2f",
                 (double)cell->figures.score_sum / (double)cell->figures.responses);
    else
        snprintf(out, size, "-");
}

static void format_nps_moe(const top_cell *cell, char *out, size_t size)
{
    char nps[32];
    format_nps(cell->figures.nps, nps, sizeof(nps));
    if (cell->has_moe)
        snprintf(out, size, "%s \xC2\xB1%.1f", nps, cell->figures.moe95);
    else
        snprintf(out, size, "%s", nps);
}

static void format_count(uint64_t count, char *out, size_t size)
{
    snprintf(out, size, "%" PRIu64, count);
}

/* The figures of DESIGN.md "NPS, exactly": "-" without responses. */
static void format_nps_field(top_field field, const top_cell *cell, char *out, size_t size)
{
    bool has_figure = cell->figures.has_nps && (field != COL_MOE || cell->has_moe);
    if (!has_figure)
        snprintf(out, size, "-");
    else if (field == COL_NPS_MOE)
        format_nps_moe(cell, out, size);
    else if (field == COL_NPS)
        format_nps(cell->figures.nps, out, size);
    else
        snprintf(out, size, "\xC2\xB1%.1f", cell->figures.moe95);
}

/* The text of one cell; "-" where there is no figure, "?" where Redis
 * holds something the contract does not allow. */
static void format_cell(top_field field, const top_cell *cell, char *out, size_t size)
{
    if (cell->bad) {
        snprintf(out, size, "?");
        return;
    }
    switch (field) {
    case COL_NPS_MOE:
    case COL_NPS:
    case COL_MOE:
        format_nps_field(field, cell, out, size);
        break;
    case COL_PPD:
        snprintf(out, size, "%" PRIu64 "/%" PRIu64 "/%" PRIu64, cell->figures.promoters,
                 cell->figures.passives, cell->figures.detractors);
        break;
    case COL_N:
        format_count(cell->figures.responses, out, size);
        break;
    case COL_P:
        format_count(cell->figures.promoters, out, size);
        break;
    case COL_PA:
        format_count(cell->figures.passives, out, size);
        break;
    case COL_D:
        format_count(cell->figures.detractors, out, size);
        break;
    case COL_SENT:
        if (cell->figures.sent)
            format_count(cell->figures.sent, out, size);
        else
            snprintf(out, size, "-");
        break;
    case COL_SHARE_P:
        format_share(cell->figures.promoters, cell->figures.responses, out, size);
        break;
    case COL_SHARE_D:
        format_share(cell->figures.detractors, cell->figures.responses, out, size);
        break;
    case COL_RATE:
        format_share(cell->figures.responses, cell->figures.sent, out, size);
        break;
    case COL_AVG:
        format_average(cell, out, size);
        break;
    }
}

static void add_column(top_layout *layout, top_field field, int window, bool optional)
{
    top_column *col = &layout->cols[layout->ncols++];
    col->field = field;
    col->window = window;
    col->optional = optional;
    col->width = display_width(column_title(field));
}

/* Several windows: a compact group each. One window: room for detail. */
static void plan_columns(int nwindows, top_layout *layout)
{
    static const top_field detail[] = {COL_NPS,     COL_MOE,     COL_N,   COL_P,    COL_PA,  COL_D,
                                       COL_SHARE_P, COL_SHARE_D, COL_AVG, COL_SENT, COL_RATE};
    memset(layout, 0, sizeof(*layout));
    if (nwindows == 1) {
        for (size_t i = 0; i < sizeof(detail) / sizeof(detail[0]); i++)
            add_column(layout, detail[i], 0, i >= 6);
        return;
    }
    for (int w = 0; w < nwindows; w++) {
        add_column(layout, COL_NPS_MOE, w, false);
        add_column(layout, COL_N, w, false);
        add_column(layout, COL_PPD, w, true);
    }
}

static void measure_columns(const top_view *view, size_t nrows, top_layout *layout)
{
    layout->segment_width = display_width("segment");
    for (size_t r = 0; r < nrows; r++) {
        const top_row *row = &view->rows[r];
        size_t label_width = display_width(row->label);
        if (label_width > layout->segment_width)
            layout->segment_width = label_width;
        for (int c = 0; c < layout->ncols; c++) {
            char text[TOP_CELL_MAX];
            format_cell(layout->cols[c].field, &row->cells[layout->cols[c].window], text,
                        sizeof(text));
            size_t width = display_width(text);
            if (width > layout->cols[c].width)
                layout->cols[c].width = width;
        }
    }
    if (layout->segment_width > TOP_SEGMENT_MAX_COLS)
        layout->segment_width = TOP_SEGMENT_MAX_COLS;
}

/* Spaces before column c: a wider gap where a window's group begins. */
static size_t column_gap(const top_layout *layout, int c)
{
    return c == 0 || layout->cols[c - 1].window != layout->cols[c].window ? 3 : 2;
}

static size_t row_width(const top_layout *layout)
{
    size_t width = layout->segment_width;
    for (int c = 0; c < layout->ncols; c++)
        width += column_gap(layout, c) + layout->cols[c].width;
    return width;
}

/* Keep the columns for which `keep` holds. */
static void filter_columns(top_layout *layout, bool (*keep)(const top_column *, int), int arg)
{
    int kept = 0;
    for (int c = 0; c < layout->ncols; c++)
        if (keep(&layout->cols[c], arg))
            layout->cols[kept++] = layout->cols[c];
    layout->ncols = kept;
}

static bool is_required(const top_column *col, int unused)
{
    (void)unused;
    return !col->optional;
}

static bool is_not_window(const top_column *col, int window)
{
    return col->window != window;
}

static void narrow_segment(top_layout *layout, size_t max_cols)
{
    size_t width = row_width(layout);
    if (width <= max_cols || layout->segment_width <= TOP_SEGMENT_MIN_COLS)
        return;
    size_t room = layout->segment_width - TOP_SEGMENT_MIN_COLS;
    layout->segment_width -= width - max_cols < room ? width - max_cols : room;
}

/* Make rows fit in `max_cols`, since a wrapped row breaks the table:
 * drop optional columns, narrow the segment column, then drop the
 * narrowest windows, keeping the widest (it orders the rows). */
static void fit_columns(top_layout *layout, size_t max_cols)
{
    if (row_width(layout) > max_cols)
        filter_columns(layout, is_required, 0);
    narrow_segment(layout, max_cols);
    while (row_width(layout) > max_cols &&
           layout->cols[0].window != layout->cols[layout->ncols - 1].window) {
        filter_columns(layout, is_not_window, layout->cols[0].window);
        layout->hidden_windows++;
    }
}

/* The line of window names, each over its group of columns. */
static void print_window_line(FILE *out, const top_snapshot *snap, const top_layout *layout)
{
    fprintf(out, "%*s", (int)layout->segment_width, "");
    for (int c = 0; c < layout->ncols;) {
        int window = layout->cols[c].window;
        size_t span = layout->cols[c].width;
        int next = c + 1;
        for (; next < layout->ncols && layout->cols[next].window == window; next++)
            span += column_gap(layout, next) + layout->cols[next].width;
        /* The last name is not padded: no trailing blanks. */
        const char *name = snap->windows[window].name;
        size_t name_width = display_width(name);
        fprintf(out, "%*s", (int)column_gap(layout, c), "");
        print_fitted(out, name, next == layout->ncols && name_width < span ? name_width : span,
                     true);
        c = next;
    }
    fputc('\n', out);
}

static void print_title_line(FILE *out, const top_layout *layout)
{
    print_fitted(out, "segment", layout->segment_width, true);
    for (int c = 0; c < layout->ncols; c++) {
        fprintf(out, "%*s", (int)column_gap(layout, c), "");
        print_fitted(out, column_title(layout->cols[c].field), layout->cols[c].width, false);
    }
    fputc('\n', out);
}

static void print_row(FILE *out, const top_row *row, const top_layout *layout)
{
    print_fitted(out, row->label, layout->segment_width, true);
    for (int c = 0; c < layout->ncols; c++) {
        char text[TOP_CELL_MAX];
        format_cell(layout->cols[c].field, &row->cells[layout->cols[c].window], text, sizeof(text));
        fprintf(out, "%*s", (int)column_gap(layout, c), "");
        print_fitted(out, text, layout->cols[c].width, false);
    }
    fputc('\n', out);
}

static void print_view_title(FILE *out, const top_snapshot *snap, const top_view *view,
                             const top_layout *layout)
{
    fprintf(out, "view %s (", view->name);
    if (!view->dims[0])
        fprintf(out, "no dimensions");
    for (const char *d = view->dims; *d; d++)
        fprintf(out, *d == ',' ? ", " : "%c", *d);
    fprintf(out, "): %zu segment%s", view->nrows, view->nrows == 1 ? "" : "s");
    for (int w = 0; w < layout->hidden_windows; w++)
        fprintf(out, "%s%s", w ? ", " : "; too narrow for ", snap->windows[w].name);
    fputc('\n', out);
}

/* One view in at most `max_lines` lines (title, two header lines, rows,
 * and a "... more" line when rows are cut). Returns the lines used. */
static size_t print_view(FILE *out, const top_snapshot *snap, int nwindows, const top_view *view,
                         size_t max_lines, size_t max_cols)
{
    size_t shown = view->nrows;
    if (max_lines < 3 + shown)
        shown = max_lines > 5 ? max_lines - 4 : 1;
    top_layout layout;
    plan_columns(nwindows, &layout);
    if (view->nrows == 0) {
        print_view_title(out, snap, view, &layout);
        return 1;
    }
    measure_columns(view, shown, &layout);
    fit_columns(&layout, max_cols);
    print_view_title(out, snap, view, &layout);
    print_window_line(out, snap, &layout);
    print_title_line(out, &layout);
    for (size_t r = 0; r < shown; r++)
        print_row(out, &view->rows[r], &layout);
    if (shown < view->nrows)
        fprintf(out, "... %zu more segments\n", view->nrows - shown);
    return 3 + shown + (shown < view->nrows);
}

/* Every view, sharing `max_lines` evenly, each after a blank line. */
static void print_snapshot(FILE *out, const top_snapshot *snap, int nwindows, size_t max_lines,
                           size_t max_cols)
{
    size_t lines_left = max_lines;
    for (size_t v = 0; v < snap->nviews; v++) {
        size_t share = lines_left / (snap->nviews - v);
        fputc('\n', out);
        size_t used = 1 + print_view(out, snap, nwindows, &snap->views[v],
                                     share > 1 ? share - 1 : 1, max_cols);
        lines_left -= used < lines_left ? used : lines_left;
    }
}

static int64_t wall_clock_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* How fresh the data is. An age that is negative or hours old most likely
 * comes from an engine clock apart from the wall clock (--now,
 * --time-scale), so it is shown as a time instead. */
static void format_age(int64_t updated_ms, int64_t now_ms, char *out, size_t size)
{
    int64_t age_ms = now_ms - updated_ms;
    if (updated_ms <= 0) {
        snprintf(out, size, "no update time");
    } else if (age_ms >= 0 && age_ms < 120000) {
        snprintf(out, size, "updated %.1f s ago", (double)age_ms / 1000.0);
    } else if (age_ms >= 0 && age_ms < 7200000) {
        snprintf(out, size, "updated %" PRId64 " min ago", age_ms / 60000);
    } else {
        time_t seconds = (time_t)(updated_ms / 1000);
        struct tm utc;
        gmtime_r(&seconds, &utc);
        strftime(out, size, "updated at %Y-%m-%d %H:%M:%S UTC", &utc);
    }
}

static void print_status(FILE *out, const top_session *s, int64_t updated_ms)
{
    int64_t now_ms = wall_clock_ms();
    time_t seconds = (time_t)(now_ms / 1000);
    struct tm local;
    localtime_r(&seconds, &local);
    char clock[16];
    strftime(clock, sizeof(clock), "%H:%M:%S", &local);
    char age[64] = "";
    if (updated_ms)
        format_age(updated_ms, now_ms, age, sizeof(age));
    fprintf(out, "npstream top   Redis %s:%d   prefix %s   %s%s%s\n", s->host, s->port,
            s->config->prefix, clock, age[0] ? "   " : "", age);
}

/* ---- modes ---- */

static void terminal_size(size_t *rows, size_t *cols)
{
    struct winsize size;
    *rows = TOP_DEFAULT_ROWS;
    *cols = TOP_DEFAULT_COLS;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 && size.ws_col > 0) {
        *rows = size.ws_row;
        *cols = size.ws_col;
    }
}

static int top_once(top_session *s)
{
    nps_error err;
    top_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    top_result result = TOP_FAILED;
    if (session_connect(s, &err))
        result = fetch_snapshot(s, &snap, &err);
    if (result == TOP_SHOWN) {
        size_t rows;
        size_t cols;
        terminal_size(&rows, &cols);
        print_status(stdout, s, snap.newest_updated_ms);
        print_snapshot(stdout, &snap, shown_windows(s, &snap), SIZE_MAX, cols);
    } else {
        fprintf(stderr, "npstream top: %s\n", sanitize(err.msg));
    }
    snapshot_release(&snap);
    session_disconnect(s);
    return result == TOP_SHOWN ? 0 : 1;
}

/* One screen into `out`. A failure is shown, never fatal: the next
 * refresh reconnects, since a reply stream cut mid-pipeline cannot be
 * trusted again. */
static void draw_screen(top_session *s, FILE *out, size_t rows, size_t cols)
{
    nps_error err;
    top_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    top_result result = TOP_FAILED;
    if (session_connect(s, &err))
        result = fetch_snapshot(s, &snap, &err);
    fputs("\033[H\033[2J", out); /* home, clear */
    print_status(out, s, snap.newest_updated_ms);
    if (result == TOP_SHOWN) {
        print_snapshot(out, &snap, shown_windows(s, &snap), rows > 3 ? rows - 3 : 1, cols);
    } else {
        fprintf(out, "\n%s; %s every %" PRId64 " ms\n", sanitize(err.msg),
                result == TOP_EMPTY ? "checking again" : "retrying", s->config->interval_ms);
    }
    if (result == TOP_FAILED)
        session_disconnect(s);
    snapshot_release(&snap);
}

static void on_stop(int signo)
{
    (void)signo;
    top_stop = 1;
}

static void on_resize(int signo)
{
    (void)signo;
    top_resized = 1;
}

/* No SA_RESTART: a signal must cut the sleep short. hiredis retries its
 * reads and writes on EINTR, so a refresh in progress is not disturbed. */
static void install_handlers(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    sigemptyset(&action.sa_mask);
    action.sa_handler = on_stop;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    action.sa_handler = on_resize;
    sigaction(SIGWINCH, &action, NULL);
}

/* Sleep `ms`, or less when stopped or the terminal is resized. */
static void sleep_ms(int64_t ms)
{
    struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (!top_stop && !top_resized && nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    top_resized = 0;
}

/* Cut each line of `screen` at `cols` columns, in place: a line that
 * wrapped would push the table's top off the screen. */
static size_t clip_lines(char *screen, size_t bytes, size_t cols)
{
    size_t kept = 0;
    size_t column = 0;
    bool in_escape = false; /* ESC [ ... letter takes no column */
    for (size_t i = 0; i < bytes; i++) {
        unsigned char byte = (unsigned char)screen[i];
        bool escape_byte = in_escape || byte == '\033';
        in_escape =
            byte == '\033' || (in_escape && !((byte | 0x20) >= 'a' && (byte | 0x20) <= 'z'));
        if (byte == '\n')
            column = 0;
        else if ((byte & 0xC0) != 0x80 && !escape_byte)
            column++;
        if (byte == '\n' || column <= cols)
            screen[kept++] = (char)byte;
    }
    return kept;
}

static void write_all(const char *data, size_t bytes)
{
    while (bytes > 0) {
        ssize_t written = write(STDOUT_FILENO, data, bytes);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return;
        data += written;
        bytes -= (size_t)written;
    }
}

/* Draw into memory, then one write: the terminal never shows a half-drawn
 * table. */
static bool show_screen(top_session *s)
{
    char *screen = NULL;
    size_t screen_bytes = 0;
    FILE *out = open_memstream(&screen, &screen_bytes);
    if (!out)
        return false;
    size_t rows;
    size_t cols;
    terminal_size(&rows, &cols);
    draw_screen(s, out, rows, cols);
    fclose(out);
    write_all(screen, clip_lines(screen, screen_bytes, cols));
    free(screen);
    return true;
}

static int top_live(top_session *s)
{
    install_handlers();
    while (!top_stop) {
        if (!show_screen(s)) {
            fprintf(stderr, "npstream top: out of memory\n");
            return 1;
        }
        sleep_ms(s->config->interval_ms);
    }
    session_disconnect(s);
    return 0;
}

static bool session_init(top_session *s, const nps_config *config, nps_error *err)
{
    memset(s, 0, sizeof(*s));
    s->config = config;
    if (!nps_parse_host_port(config->redis, s->host, sizeof(s->host), &s->port)) {
        nps_error_set(err, "--redis '%s': expected HOST:PORT", config->redis);
        return false;
    }
    /* A config file shared with `run` says `view = NAME=DIMS`. */
    size_t name_len = strcspn(config->top_view, "=");
    if (name_len >= sizeof(s->view)) {
        nps_error_set(err, "--view '%s': the name is too long", config->top_view);
        return false;
    }
    memcpy(s->view, config->top_view, name_len);
    s->view[name_len] = '\0';
    return true;
}

int nps_cmd_top(int argc, char **argv)
{
    nps_config config;
    nps_error err;
    top_session session;
    if (nps_config_load(&config, NPS_CMD_TOP, argc, argv, environ, &err) != NPS_OK ||
        !session_init(&session, &config, &err)) {
        fprintf(stderr, "npstream top: %s\n", err.msg);
        return 2;
    }
    return config.interval_ms == 0 ? top_once(&session) : top_live(&session);
}
