/*
 * fuzz_config: libFuzzer target for the config loader (engine/config.c)
 * and for what a loaded config feeds: views, windows and a shard.
 *
 * Each input is used twice:
 *  - split at newlines and NUL bytes into strings: NPSTREAM_*=... strings
 *    form a small environment, the others argv (flags after the command
 *    word), loaded for `run`;
 *  - as the text of an INI config file named by NPSTREAM_CONFIG, loaded
 *    for `run` and for one other command (picked by the input's size, so
 *    each command's settings, such as top's string `view`, get fuzzed).
 * The file is a memfd, rewritten per input: no disk traffic, nothing left
 * behind. Any --config or NPSTREAM_CONFIG the input names is pointed at
 * it, so the loader never opens an arbitrary path (/dev/zero would hang
 * inih's line reader).
 *
 * Errors are fine; invariants, a violation aborts:
 *  - an error comes with a non-empty, NUL-terminated message;
 *  - a loaded config is one the engine accepts: every string field
 *    NUL-terminated in its array, kafka.* properties named and distinct,
 *    --redis split into a host and a port or refused, views well formed
 *    (`all` first, names and dimensions valid and in range, no `score` or
 *    `ts` dimension), windows sane (`total` last, 60 panes each), limits
 *    in their ranges;
 *  - from a loaded config of an aggregating command, a shard can be made
 *    and counts an event.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_require.h"
#include "shard.h"
#include "view.h"
#include "window.h"

#define FUZZ_MAX_ARGS 64
#define FUZZ_MAX_ENV 16
#define FUZZ_SHARD_MAX_BYTES (1u << 20) /* larger scratch buffers only slow the fuzzer */
#define FUZZ_EVENT "{\"score\":9,\"channel\":\"email\",\"region\":\"IN\",\"survey\":\"checkout\"}"

static struct {
    int fd;        /* the memfd holding the input as a config file */
    char path[64]; /* /proc/self/fd/N */
    char flag[80]; /* --config=path */
    char env[96];  /* NPSTREAM_CONFIG=path */
} fuzz;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A secret "@FILE" is read from FILE: /dev/stdin must not wait. */
    require(freopen("/dev/null", "r", stdin) != NULL);
    fuzz.fd = memfd_create("npstream-fuzz-config", MFD_CLOEXEC);
    require(fuzz.fd >= 0);
    snprintf(fuzz.path, sizeof(fuzz.path), "/proc/self/fd/%d", fuzz.fd);
    snprintf(fuzz.flag, sizeof(fuzz.flag), "--config=%s", fuzz.path);
    snprintf(fuzz.env, sizeof(fuzz.env), "NPSTREAM_CONFIG=%s", fuzz.path);
    return 0;
}

static void write_config_file(const uint8_t *data, size_t size)
{
    require(ftruncate(fuzz.fd, 0) == 0);
    require(pwrite(fuzz.fd, data, size, 0) == (ssize_t)size);
}

static bool terminated(const char *field, size_t size)
{
    return memchr(field, '\0', size) != NULL;
}

static bool valid_name(const char *name)
{
    size_t len = strnlen(name, NPS_NAME_MAX);
    if (len == 0 || len >= NPS_NAME_MAX)
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

static void check_views(const nps_views *views)
{
    require(views->nviews >= 1 && views->nviews <= NPS_MAX_VIEWS);
    require(strcmp(views->views[0].name, NPS_VIEW_ALL) == 0 && views->views[0].ndims == 0);
    require(views->ndims >= 0 && views->ndims <= NPS_MAX_DIMS);
    for (int d = 0; d < views->ndims; d++) {
        require(valid_name(views->dim_names[d]));
        require(strcmp(views->dim_names[d], "score") != 0 &&
                strcmp(views->dim_names[d], "ts") != 0);
    }
    for (int v = 1; v < views->nviews; v++) {
        const nps_view *view = &views->views[v];
        require(valid_name(view->name));
        require(nps_views_find(views, view->name) == v);
        require(view->ndims >= 1 && view->ndims <= NPS_MAX_VIEW_DIMS);
        for (int i = 0; i < view->ndims; i++)
            require(view->dim[i] >= 0 && view->dim[i] < views->ndims);
    }
}

static void check_windows(const nps_windows *windows)
{
    require(windows->n >= 1 && windows->n <= NPS_MAX_WINDOWS);
    const nps_window *total = &windows->w[windows->n - 1];
    require(strcmp(total->name, NPS_WINDOW_TOTAL) == 0 && total->size_ms == 0);
    for (int i = 0; i + 1 < windows->n; i++) {
        const nps_window *w = &windows->w[i];
        require(terminated(w->name, sizeof(w->name)) && w->name[0]);
        require(w->size_ms > 0 && w->pane_ms > 0);
        require(w->pane_ms * w->npanes == w->size_ms);
        if (w->trend) { /* a trend: whole buckets, not found as a window */
            require(w->npanes >= 1 && w->npanes <= NPS_MAX_TREND_BUCKETS);
            require(nps_windows_find(windows, w->name) != i);
        } else {
            require(w->npanes == NPS_PANES_PER_WINDOW);
            require(nps_windows_find(windows, w->name) == i);
        }
    }
}

static void check_strings(const nps_config *c)
{
    require(terminated(c->config_file, sizeof(c->config_file)));
    require(terminated(c->windows_spec, sizeof(c->windows_spec)));
    require(terminated(c->input, sizeof(c->input)) && terminated(c->output, sizeof(c->output)));
    require(terminated(c->format, sizeof(c->format)));
    require(terminated(c->brokers, sizeof(c->brokers)) && terminated(c->topic, sizeof(c->topic)));
    require(terminated(c->group, sizeof(c->group)) && terminated(c->redis, sizeof(c->redis)));
    require(terminated(c->prefix, sizeof(c->prefix)));
    require(terminated(c->top_view, sizeof(c->top_view)));
    require(terminated(c->top_window, sizeof(c->top_window)));
    require(terminated(c->redis_user, sizeof(c->redis_user)));
    require(terminated(c->redis_password, sizeof(c->redis_password)));
    require(terminated(c->http, sizeof(c->http)));
    require(terminated(c->dead_letter_topic, sizeof(c->dead_letter_topic)));
    require(terminated(c->log_format, sizeof(c->log_format)));
    require(terminated(c->log_level, sizeof(c->log_level)));
    require(terminated(c->log_file, sizeof(c->log_file)));
}

/* kafka.<property> pass-through: named, distinct, within the table. */
static void check_kafka(const nps_config *c)
{
    require(c->nkafka >= 0 && c->nkafka <= NPS_MAX_KAFKA_PROPS);
    for (int i = 0; i < c->nkafka; i++) {
        require(terminated(c->kafka_keys[i], sizeof(c->kafka_keys[i])) && c->kafka_keys[i][0]);
        require(terminated(c->kafka_values[i], sizeof(c->kafka_values[i])));
        for (int k = 0; k < i; k++)
            require(strcmp(c->kafka_keys[k], c->kafka_keys[i]) != 0);
    }
}

/* What the sink does with --redis: a host within its buffer, a port. */
static void check_redis_address(const nps_config *c)
{
    char host[64];
    int port = -1;
    if (!nps_parse_host_port(c->redis, host, sizeof(host), &port))
        return;
    require(terminated(host, sizeof(host)) && host[0]);
    require(port >= 0 && port <= 65535);
}

static void check_loaded(const nps_config *c)
{
    check_strings(c);
    check_kafka(c);
    check_redis_address(c);
    check_views(&c->views);
    check_windows(&c->windows);
    require(strcmp(c->format, "table") == 0 || strcmp(c->format, "json") == 0);
    require(c->max_event_bytes >= 2 && c->max_event_bytes <= (64u << 20));
    require(c->max_segments >= 1 && c->max_skew_ms >= 0 && c->now_ms >= 0);
    require(c->time_scale >= 1 && c->batch_events >= 1);
    require(c->workers >= 0 && c->flush_ms >= 10 && c->interval_ms >= 0);
    require(c->invalid_share >= 0.0 && c->invalid_share <= 1.0);
}

/* A loaded config drives the engine: a shard is made from it and counts
 * one event through a full hand-off. */
static void check_shard(const nps_config *config)
{
    if (config->max_event_bytes > FUZZ_SHARD_MAX_BYTES)
        return;
    nps_error err;
    nps_shard *shard = nps_shard_new(config, &err);
    require(shard != NULL);
    nps_shard_set_now(shard, nps_clock_now_ms(config));
    nps_invalid_reason reason;
    require(nps_shard_add(shard, FUZZ_EVENT, strlen(FUZZ_EVENT), -1, &reason, NULL, 0) == NPS_OK);
    nps_shard_drain(shard);
    nps_delta *delta = nps_shard_take(shard);
    require(delta != NULL && delta->messages == 1);
    nps_shard_give_back(shard, delta);
    nps_shard_destroy(shard);
}

static void load(unsigned command, int argc, char **argv, char **envp)
{
    nps_config config;
    nps_error err = {{0}};
    nps_status status = nps_config_load(&config, command, argc, argv, envp, &err);
    if (status != NPS_OK) {
        require(terminated(err.msg, sizeof(err.msg)) && err.msg[0]);
        return;
    }
    check_loaded(&config);
    if (command & (NPS_CMD_RUN | NPS_CMD_DEMO))
        check_shard(&config);
}

/* Point every config file the strings name at the memfd, as the loader
 * finds them: "--config PATH", "--config=PATH", NPSTREAM_CONFIG=PATH. */
static void redirect_config(int argc, char **argv, int envc, char **envp)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            argv[i + 1] = fuzz.path;
        else if (strncmp(argv[i], "--config=", 9) == 0)
            argv[i] = fuzz.flag;
    }
    for (int i = 0; i < envc; i++)
        if (strncmp(envp[i], "NPSTREAM_CONFIG=", 16) == 0)
            envp[i] = fuzz.env;
}

/* The input as argv and environment strings, loaded for `run`. */
static void load_args(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    require(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[FUZZ_MAX_ARGS + 1], *envp[FUZZ_MAX_ENV + 1];
    int argc = 0, envc = 0;
    for (char *p = text; p < text + size;) {
        size_t len = strcspn(p, "\n"); /* a NUL byte in the input ends a string too */
        p[len] = '\0';
        bool is_env = strncmp(p, "NPSTREAM_", 9) == 0 && strchr(p, '=');
        if (is_env && envc < FUZZ_MAX_ENV)
            envp[envc++] = p;
        else if (!is_env && len && argc < FUZZ_MAX_ARGS)
            argv[argc++] = p;
        p += len + 1;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    redirect_config(argc, argv, envc, envp);
    load(NPS_CMD_RUN, argc, argv, envp);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned others[] = {NPS_CMD_GEN, NPS_CMD_BROKER, NPS_CMD_TOP, NPS_CMD_DEMO};
    char *file_env[] = {fuzz.env, NULL};
    write_config_file(data, size);
    load_args(data, size);
    load(NPS_CMD_RUN, 0, NULL, file_env);
    load(others[size % 4], 0, NULL, file_env);
    return 0;
}
