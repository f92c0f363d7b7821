/*
 * config: the one table of settings and the loader that fills nps_config
 * from defaults, a config file, NPSTREAM_* variables and flags.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timestamp.h"

typedef enum setting_type {
    T_STRING,   /* char[] of `size` */
    T_INT,      /* int64_t in [min, max] */
    T_UINT32,   /* uint32_t in [min, max] */
    T_UINT64,   /* uint64_t, any */
    T_DURATION, /* int64_t ms from "5m" */
    T_REAL,     /* double in [min, max] (a share: 0..1) */
    T_VIEWS,    /* repeatable NAME=DIM[,DIM...] */
    T_WINDOWS,  /* list of durations */
    T_SECRET,   /* char[]: a password; "@FILE" reads it from FILE */
} setting_type;

typedef struct setting {
    const char *name; /* flag --name, variable NPSTREAM_NAME, file key name */
    setting_type type;
    size_t offset;
    size_t size;
    const char *default_value;
    unsigned commands;
    int64_t min, max;
    const char *arg; /* placeholder in --help */
    const char *help;
} setting;

#define FIELD(f) offsetof(nps_config, f), sizeof(((nps_config *)0)->f)

static const setting settings[] = {
    {"config", T_STRING, FIELD(config_file), "",
     NPS_CMD_CORE | NPS_CMD_GEN | NPS_CMD_BROKER | NPS_CMD_TOP, 0, 0, "FILE",
     "read settings from an INI file (key = value, keys as the flags without --)"},
    {"view", T_VIEWS, FIELD(views), "", NPS_CMD_CORE, 0, 0, "NAME=DIM[,DIM...]",
     "add a view: a named list of dimension fields (repeat the flag; in NPSTREAM_VIEW "
     "separate views with ';'). The view `all` always exists"},
    {"windows", T_WINDOWS, FIELD(windows), NPS_DEFAULT_WINDOWS, NPS_CMD_CORE, 0, 0, "LIST",
     "sliding windows by event time, each in 60 panes; `total` is always added"},
    {"trends", T_STRING, FIELD(trends_spec), "1h:7d,1d:90d", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "BUCKET:SPAN,...",
     "per-segment NPS series published to Redis (PREFIX:trend:VIEW:SEGMENT:BUCKET), e.g. hourly "
     "for 7 days; empty: none"},
    {"themes", T_STRING, FIELD(themes_spec), "24h,7d", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "WINDOW,...",
     "keep the top terms of comments per segment and score class for these windows "
     "(PREFIX:themes:VIEW:SEGMENT:WINDOW:CLASS); empty: off (the default keeps those of 24h "
     "and 7d that --windows has)"},
    {"trends-views", T_STRING, FIELD(trends_views), "*", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "VIEW,...", "the views that keep --trends: * is every view; empty: none"},
    {"themes-views", T_STRING, FIELD(themes_views), "*", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "VIEW,...", "the views that keep --themes: * is every view; empty: none"},
    {"alerts-views", T_STRING, FIELD(alerts_views), "*", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "VIEW,...", "the views whose segments --alerts watches: * is every view; empty: none"},
    {"max-segments", T_UINT32, FIELD(max_segments), "100000", NPS_CMD_CORE, 1, UINT32_MAX / 4, "N",
     "segments per view; events of further segments count in `~overflow`"},
    {"max-skew", T_DURATION, FIELD(max_skew_ms), "5m", NPS_CMD_CORE, 0, 0, "DURATION",
     "events timestamped further ahead of now are invalid (reason future)"},
    {"max-event-bytes", T_UINT64, FIELD(max_event_bytes), "1048576", NPS_CMD_CORE, 0, 0, "BYTES",
     "larger messages are invalid (reason too_large)"},
    {"now", T_INT, FIELD(now_ms), "0", NPS_CMD_CORE | NPS_CMD_GEN, 0, INT64_MAX / 4, "EPOCH_MS",
     "pin the clock (tests, replays of old data); 0 means the wall clock"},
    {"time-scale", T_INT, FIELD(time_scale), "1", NPS_CMD_CORE | NPS_CMD_DEMO, 1, 1000000, "N",
     "run the engine clock N times as fast as the wall clock, from the start (tests, demos); "
     "a pinned --now stays frozen unless N > 1"},
    {"brokers", T_STRING, FIELD(brokers), "", NPS_CMD_RUN | NPS_CMD_GEN, 0, 0, "HOST:PORT,...",
     "Kafka bootstrap servers. run: consume --topic (without it, run reads --input); "
     "gen: produce to --topic (without it, gen writes --output)"},
    {"topic", T_STRING, FIELD(topic), "nps-events",
     NPS_CMD_RUN | NPS_CMD_GEN | NPS_CMD_BROKER | NPS_CMD_DEMO, 0, 0, "NAME",
     "the Kafka topic of survey events"},
    {"group", T_STRING, FIELD(group), "npstream", NPS_CMD_RUN, 0, 0, "NAME",
     "Kafka consumer group; instances in one group split the partitions"},
    {"redis", T_STRING, FIELD(redis), "127.0.0.1:6379", NPS_CMD_RUN | NPS_CMD_TOP | NPS_CMD_DEMO, 0,
     0, "HOST:PORT", "the Redis that receives (run) or serves (top) the rollups"},
    {"redis-user", T_STRING, FIELD(redis_user), "", NPS_CMD_RUN | NPS_CMD_TOP | NPS_CMD_DEMO, 0, 0,
     "USER", "Redis ACL user (AUTH user password); empty: AUTH with the password alone"},
    {"redis-password", T_SECRET, FIELD(redis_password), "",
     NPS_CMD_RUN | NPS_CMD_TOP | NPS_CMD_DEMO, 0, 0, "PASSWORD|@FILE",
     "Redis password; @FILE reads it from a file. Never printed"},
    {"prefix", T_STRING, FIELD(prefix), "nps", NPS_CMD_RUN | NPS_CMD_TOP | NPS_CMD_DEMO, 0, 0,
     "PREFIX", "first part of every Redis key (PREFIX:win:..., PREFIX:offsets:...)"},
    {"workers", T_INT, FIELD(workers), "0", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 1024, "N",
     "worker threads, each a consumer owning whole partitions; 0 means one per core"},
    {"flush-ms", T_INT, FIELD(flush_ms), "1000", NPS_CMD_RUN | NPS_CMD_DEMO, 10, 3600000, "MS",
     "publish to Redis every MS milliseconds"},
    {"http", T_STRING, FIELD(http), "127.0.0.1:9464", NPS_CMD_RUN, 0, 0, "HOST:PORT",
     "serve the web view (/ and its JSON API under /api/, docs/web.md), /metrics "
     "(Prometheus), /healthz and /readyz here; port 0 picks a free port, an empty value turns "
     "it off. Loopback unless you say otherwise"},
    {"dead-letter-topic", T_STRING, FIELD(dead_letter_topic), "", NPS_CMD_RUN, 0, 0, "TOPIC",
     "copy every invalid message, unchanged, to TOPIC with its reason in the header "
     "npstream-reason (future events too); empty: off"},
    {"alerts", T_STRING, FIELD(alerts), "1h:7d", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "WINDOW:BASELINE,...",
     "append to PREFIX:alerts when a segment's NPS in WINDOW moves against BASELINE past "
     "--alert-z (two-proportion z-test), once per crossing; empty: off (the default is off "
     "when --windows lacks 1h or 7d)"},
    {"alert-z", T_REAL, FIELD(alert_z), "3", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 1000, "Z",
     "the |z| an alert fires past"},
    {"alert-min-responses", T_INT, FIELD(alert_min_responses), "30", NPS_CMD_RUN | NPS_CMD_DEMO, 1,
     INT64_MAX / 4, "N", "responses each of the two windows needs before an alert can fire"},
    {"benchmarks", T_STRING, FIELD(benchmarks), "", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "DIM=VALUE:NPS,...",
     "reference NPS per dimension value (e.g. survey=checkout:42,industry=retail:35): segments "
     "with that value get `benchmark` and `benchmark_gap` (nps - benchmark)"},
    {"detractors-maxlen", T_INT, FIELD(detractors_maxlen), "100000", NPS_CMD_RUN | NPS_CMD_DEMO, 0,
     INT64_MAX / 4, "N",
     "append each detractor response once to the stream PREFIX:detractors, keeping about the "
     "newest N; 0: off"},
    {"dedup-horizon", T_DURATION, FIELD(dedup_horizon_ms), "7d", NPS_CMD_RUN | NPS_CMD_DEMO, 0, 0,
     "DURATION",
     "a response whose `id` was counted within DURATION (by event time) counts once; ids are "
     "kept per partition (producers key messages by id), in memory and in "
     "PREFIX:ids:GROUP:TOPIC:PARTITION:DAY; 0: off"},
    {"log-format", T_STRING, FIELD(log_format), "logfmt", NPS_CMD_RUN, 0, 0, "logfmt|json",
     "one line per event: ts=... level=... component=... msg=\"...\", or the same as JSON"},
    {"log-level", T_STRING, FIELD(log_level), "info", NPS_CMD_RUN, 0, 0, "LEVEL",
     "debug, info, warn or error: the least severe level written"},
    {"log-file", T_STRING, FIELD(log_file), "", NPS_CMD_RUN, 0, 0, "FILE",
     "append the log to FILE (SIGHUP reopens it, for logrotate); empty: standard error"},
    {"buckets", T_INT, FIELD(buckets), "64", NPS_CMD_RUN | NPS_CMD_DEMO, 1, 4096, "N",
     "flush units per view: segments are split by hash into N buckets, each written by its "
     "own atomic script with its own fences, so no script holds Redis long. Fixed for a "
     "prefix once published"},
    {"session-timeout-ms", T_INT, FIELD(session_timeout_ms), "6000", NPS_CMD_RUN, 1000, 3600000,
     "MS", "Kafka group session timeout: a dead instance's partitions move after about this"},
    {"fetch-wait-ms", T_INT, FIELD(fetch_wait_ms), "100", NPS_CMD_RUN, 1, 60000, "MS",
     "the longest a Kafka fetch waits at the broker for new messages (fetch.wait.max.ms). "
     "Kafka answers as soon as messages arrive, so this only sets how often an idle worker "
     "asks; the embedded broker holds every empty fetch this long even when messages arrive "
     "meanwhile, so against it a low value (npstream demo uses 10) shortens the time from "
     "produce to Redis"},
    {"partitions", T_INT, FIELD(partitions), "16", NPS_CMD_BROKER | NPS_CMD_DEMO, 1, 10000, "N",
     "partitions of the topic the embedded broker creates"},
    {"flap-ms", T_INT, FIELD(flap_ms), "0", NPS_CMD_BROKER, 0, 3600000, "MS",
     "chaos for tests and demos: every MS ms the broker drops its connections and refuses new "
     "ones for a third of MS; 0 is off"},
    {"rate", T_INT, FIELD(rate_limit), "0", NPS_CMD_GEN | NPS_CMD_DEMO, 0, INT64_MAX / 4, "N",
     "events per second; 0 means as fast as possible"},
    {"view", T_STRING, FIELD(top_view), "", NPS_CMD_TOP, 0, 0, "NAME",
     "the view to show; empty shows every view"},
    {"window", T_STRING, FIELD(top_window), "", NPS_CMD_TOP, 0, 0, "NAME",
     "the window to show (5m, 1h, ..., total); empty shows every window"},
    {"interval-ms", T_INT, FIELD(interval_ms), "1000", NPS_CMD_TOP | NPS_CMD_DEMO, 0, 3600000, "MS",
     "refresh period of the table; 0 prints it once and exits"},
    {"input", T_STRING, FIELD(input), "-", NPS_CMD_RUN, 0, 0, "FILE",
     "JSON lines to aggregate, one event per line; - reads standard input"},
    {"format", T_STRING, FIELD(format), "table", NPS_CMD_RUN, 0, 0, "table|json",
     "how the final report is printed"},
    {"batch-events", T_INT, FIELD(batch_events), "4096", NPS_CMD_RUN, 1, 1 << 24, "N",
     "events a worker counts before it offers its delta to the merger"},
    {"count", T_INT, FIELD(count), "10000", NPS_CMD_GEN | NPS_CMD_DEMO, 0, INT64_MAX / 4, "N",
     "events to generate"},
    {"seed", T_UINT64, FIELD(seed), "1", NPS_CMD_GEN | NPS_CMD_DEMO, 0, 0, "S",
     "random seed: the same seed gives the same events"},
    {"invalid-share", T_REAL, FIELD(invalid_share), "0", NPS_CMD_GEN | NPS_CMD_DEMO, 0, 1, "0..1",
     "share of invalid messages in the output"},
    {"sent-share", T_REAL, FIELD(sent_share), "0.125", NPS_CMD_GEN, 0, 1, "0..1",
     "share of invitations (type sent; they make response_rate)"},
    {"duplicate-share", T_REAL, FIELD(duplicate_share), "0", NPS_CMD_GEN, 0, 1, "0..1",
     "share of messages that re-send one of the last 64 responses as is (same id and key), "
     "as a retrying producer would"},
    {"drop", T_STRING, FIELD(drop), "", NPS_CMD_GEN, 0, 0, "DIM=VALUE",
     "events of that segment from the last 5 minutes lean to detractors who all say \"the app "
     "keeps crashing after the update\", so its recent NPS drops (e.g. channel=sms, for alerts "
     "and themes); empty: none"},
    {"output", T_STRING, FIELD(output), "-", NPS_CMD_GEN, 0, 0, "FILE",
     "where generated JSON lines go; - is standard output"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

enum source_level { FROM_DEFAULT, FROM_FILE, FROM_ENV, FROM_FLAG };

typedef struct loader {
    nps_config *config;
    unsigned command;
    int views_level; /* the source the current views came from */
    nps_error *err;
    const char *source; /* for messages */
    bool failed;
} loader;

static bool applies(const setting *s, unsigned command);

/* The setting `name` of `command`; if none applies to it, the first of
 * that name (the caller then reports it as not for this command). */
static const setting *find_setting(const char *name, size_t len, unsigned command)
{
    const setting *found = NULL;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *s = settings[i].name;
        if (strlen(s) != len)
            continue;
        size_t k = 0;
        /* a file key may spell - as _ */
        while (k < len && (s[k] == name[k] || (s[k] == '-' && name[k] == '_')))
            k++;
        if (k != len)
            continue;
        if (applies(&settings[i], command))
            return &settings[i];
        if (!found)
            found = &settings[i];
    }
    return found;
}

static bool parse_int(const char *text, int64_t *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end)
        return false;
    *out = v;
    return true;
}

/* A secret value, or "@FILE": the file's first line. Messages name the
 * setting and the file, never the value. */
static nps_status set_secret(loader *ld, const char *name, char *field, size_t size,
                             const char *value)
{
    if (value[0] != '@') {
        if (strlen(value) >= size) {
            nps_error_set(ld->err, "%s (%s): longer than %zu bytes", name, ld->source, size - 1);
            return NPS_ERR_INVALID;
        }
        strcpy(field, value);
        return NPS_OK;
    }
    FILE *f = fopen(value + 1, "r");
    if (!f) {
        nps_error_set(ld->err, "%s (%s): cannot read %s: %s", name, ld->source, value + 1,
                      strerror(errno));
        return NPS_ERR_INVALID;
    }
    bool ok = fgets(field, (int)size, f) != NULL;
    fclose(f);
    if (!ok) {
        nps_error_set(ld->err, "%s (%s): %s is empty", name, ld->source, value + 1);
        return NPS_ERR_INVALID;
    }
    field[strcspn(field, "\r\n")] = '\0';
    return NPS_OK;
}

bool nps_config_is_secret(const char *name)
{
    return strstr(name, "password") || strstr(name, "secret") || strstr(name, ".key") ||
           strstr(name, "token");
}

/* kafka.<property> = value: passed to librdkafka as is (a later source
 * replaces an earlier one's value). */
static nps_status set_kafka(loader *ld, const char *property, const char *value)
{
    nps_config *c = ld->config;
    if (!*property || strlen(property) >= sizeof(c->kafka_keys[0])) {
        nps_error_set(ld->err, "kafka.%s (%s): not a librdkafka property name", property,
                      ld->source);
        return NPS_ERR_INVALID;
    }
    int i = 0;
    while (i < c->nkafka && strcmp(c->kafka_keys[i], property) != 0)
        i++;
    if (i == NPS_MAX_KAFKA_PROPS) {
        nps_error_set(ld->err, "kafka.%s (%s): more than %d kafka.* properties", property,
                      ld->source, NPS_MAX_KAFKA_PROPS);
        return NPS_ERR_INVALID;
    }
    snprintf(c->kafka_keys[i], sizeof(c->kafka_keys[i]), "%s", property);
    char name[160];
    snprintf(name, sizeof(name), "kafka.%s", property);
    if (set_secret(ld, name, c->kafka_values[i], sizeof(c->kafka_values[i]), value) != NPS_OK)
        return NPS_ERR_INVALID;
    if (i == c->nkafka)
        c->nkafka++;
    return NPS_OK;
}

static nps_status set_value(loader *ld, const setting *s, const char *value, int level)
{
    void *field = (char *)ld->config + s->offset;
    nps_error inner;
    int64_t integer;
    switch (s->type) {
    case T_SECRET:
        return set_secret(ld, s->name, field, s->size, value);
    case T_STRING:
        if (strlen(value) >= s->size) {
            nps_error_set(ld->err, "%s (%s): longer than %zu bytes", s->name, ld->source,
                          s->size - 1);
            return NPS_ERR_INVALID;
        }
        strcpy(field, value);
        return NPS_OK;
    case T_INT:
    case T_UINT32:
        if (!parse_int(value, &integer) || integer < s->min || integer > s->max) {
            nps_error_set(ld->err,
                          "%s (%s): expected an integer in %" PRId64 "..%" PRId64 ", got '%s'",
                          s->name, ld->source, s->min, s->max, value);
            return NPS_ERR_INVALID;
        }
        if (s->type == T_INT)
            *(int64_t *)field = integer;
        else
            *(uint32_t *)field = (uint32_t)integer;
        return NPS_OK;
    case T_UINT64: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-') {
            nps_error_set(ld->err, "%s (%s): expected a non-negative integer, got '%s'", s->name,
                          ld->source, value);
            return NPS_ERR_INVALID;
        }
        *(uint64_t *)field = v;
        return NPS_OK;
    }
    case T_DURATION:
        if (!nps_duration_parse(value, &integer) && strcmp(value, "0") != 0) {
            nps_error_set(ld->err, "%s (%s): expected a duration such as 30s, 5m, 1h; got '%s'",
                          s->name, ld->source, value);
            return NPS_ERR_INVALID;
        }
        *(int64_t *)field = strcmp(value, "0") == 0 ? 0 : integer;
        return NPS_OK;
    case T_REAL: {
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end || !(v >= (double)s->min && v <= (double)s->max)) {
            nps_error_set(ld->err,
                          "%s (%s): expected a number from %" PRId64 " to %" PRId64 ", got '%s'",
                          s->name, ld->source, s->min, s->max, value);
            return NPS_ERR_INVALID;
        }
        *(double *)field = v;
        return NPS_OK;
    }
    case T_WINDOWS:
        if (nps_windows_parse(field, value, &inner) != NPS_OK) {
            nps_error_set(ld->err, "%s (%s): %s", s->name, ld->source, inner.msg);
            return NPS_ERR_INVALID;
        }
        snprintf(ld->config->windows_spec, sizeof(ld->config->windows_spec), "%s", value);
        return NPS_OK;
    case T_VIEWS: {
        /* A source that names views replaces the views of weaker sources. */
        if (level > ld->views_level) {
            nps_views_init(field);
            ld->views_level = level;
        }
        char *copy = strdup(value);
        if (!copy) {
            nps_error_set(ld->err, "out of memory");
            return NPS_ERR_NOMEM;
        }
        nps_status status = NPS_OK;
        char *save = NULL;
        for (char *spec = strtok_r(copy, ";", &save); spec && status == NPS_OK;
             spec = strtok_r(NULL, ";", &save)) {
            while (isspace((unsigned char)*spec))
                spec++;
            if (!*spec)
                continue;
            status = nps_views_add(field, spec, &inner);
            if (status != NPS_OK)
                nps_error_set(ld->err, "%s (%s): %s", s->name, ld->source, inner.msg);
        }
        free(copy);
        return status;
    }
    }
    return NPS_ERR;
}

nps_status nps_config_init(nps_config *config, nps_error *err)
{
    memset(config, 0, sizeof(*config));
    nps_views_init(&config->views);
    loader ld = {.config = config, .err = err, .source = "default"};
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].type != T_VIEWS &&
            set_value(&ld, &settings[i], settings[i].default_value, FROM_DEFAULT) != NPS_OK)
            return NPS_ERR;
    return NPS_OK;
}

static bool applies(const setting *s, unsigned command)
{
    return (s->commands & command) ||
           ((s->commands & NPS_CMD_CORE) && (command & (NPS_CMD_RUN | NPS_CMD_DEMO)));
}

bool nps_config_takes(const char *name, size_t len, unsigned command)
{
    const setting *s = find_setting(name, len, command);
    return s && applies(s, command);
}

static int read_file_setting(void *user, const char *section, const char *name, const char *value)
{
    loader *ld = user;
    (void)section; /* sections are allowed for readability, not meaning */
    if (strncmp(name, "kafka.", 6) == 0) {
        if (!(ld->command & (NPS_CMD_RUN | NPS_CMD_GEN | NPS_CMD_DEMO)))
            return 1;
        if (set_kafka(ld, name + 6, value) != NPS_OK) {
            ld->failed = true;
            return 0;
        }
        return 1;
    }
    const setting *s = find_setting(name, strlen(name), ld->command);
    if (!s) {
        nps_error_set(ld->err, "%s: unknown setting '%s'", ld->source, name);
        ld->failed = true;
        return 0;
    }
    if (!applies(s, ld->command) || s->offset == offsetof(nps_config, config_file))
        return 1; /* a shared file may hold other commands' settings */
    if (set_value(ld, s, value, FROM_FILE) != NPS_OK) {
        ld->failed = true;
        return 0;
    }
    return 1;
}

static void env_name(const setting *s, char *out, size_t out_size)
{
    size_t o = (size_t)snprintf(out, out_size, "NPSTREAM_");
    for (const char *p = s->name; *p && o + 1 < out_size; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t len = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

/* The mask of the views the setting `name` leaves out: those not named
 * in `list` ("*": every view); an unknown view is an error that lists the
 * views. */
static nps_status views_off(const nps_config *config, const char *name, const char *list,
                            uint32_t *off, nps_error *err)
{
    const nps_views *views = &config->views;
    uint32_t on = 0;
    *off = 0;
    if (strcmp(list, "*") == 0)
        return NPS_OK;
    char copy[sizeof(config->trends_views)], *save = NULL;
    snprintf(copy, sizeof(copy), "%s", list);
    for (char *item = strtok_r(copy, ", ", &save); item; item = strtok_r(NULL, ", ", &save)) {
        int v = nps_views_find(views, item);
        if (v < 0) {
            char known[NPS_MAX_VIEWS * (NPS_NAME_MAX + 1)];
            size_t len = 0;
            for (int k = 0; k < views->nviews; k++)
                len += (size_t)snprintf(known + len, sizeof(known) - len, "%s%s", k ? "," : "",
                                        views->views[k].name);
            nps_error_set(err, "%s: '%s' is not a view (the views: %s; * is every view)", name,
                          item, known);
            return NPS_ERR_INVALID;
        }
        on |= 1u << v;
    }
    for (int v = 0; v < views->nviews; v++)
        if (!(on >> v & 1u))
            *off |= 1u << v;
    return NPS_OK;
}

/* Trends and themes join the windows only where they are published (run
 * with --brokers) and some view keeps them; alerts must name windows;
 * benchmarks must name a dimension of some view. */
static nps_status check_insights(nps_config *config, nps_error *err)
{
    nps_error inner;
    if (views_off(config, "trends-views", config->trends_views, &config->trends_off, err) !=
            NPS_OK ||
        views_off(config, "themes-views", config->themes_views, &config->themes_off, err) !=
            NPS_OK ||
        views_off(config, "alerts-views", config->alerts_views, &config->alerts_off, err) != NPS_OK)
        return NPS_ERR_INVALID;
    uint32_t every = config->views.nviews == 32 ? UINT32_MAX : (1u << config->views.nviews) - 1;
    if (config->trends_off == every) /* no view keeps them: no work for them either */
        config->trends_spec[0] = '\0';
    if (config->themes_off == every)
        config->themes_spec[0] = '\0';
    if (config->alerts_off == every)
        config->alerts[0] = '\0';
    if (config->brokers[0] &&
        nps_windows_add_trends(&config->windows, config->trends_spec, &inner) != NPS_OK) {
        nps_error_set(err, "trends: %s", inner.msg);
        return NPS_ERR_INVALID;
    }
    if (config->brokers[0] &&
        nps_windows_set_themes(&config->windows, config->themes_spec,
                               strcmp(config->themes_spec, "24h,7d") == 0, &inner) != NPS_OK) {
        nps_error_set(err, "%s (windows: %s)", inner.msg, config->windows_spec);
        return NPS_ERR_INVALID;
    }
    /* The default pair needs the default windows; with others it is off. */
    if (strcmp(config->alerts, "1h:7d") == 0 && (nps_windows_find(&config->windows, "1h") < 0 ||
                                                 nps_windows_find(&config->windows, "7d") < 0))
        config->alerts[0] = '\0';
    char list[sizeof(config->benchmarks)];
    snprintf(list, sizeof(list), "%s", config->alerts);
    char *save = NULL;
    for (char *pair = strtok_r(list, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(pair, ':');
        if (colon)
            *colon = '\0';
        if (!colon || nps_windows_find(&config->windows, pair) < 0 ||
            nps_windows_find(&config->windows, colon + 1) < 0 || strcmp(pair, colon + 1) == 0) {
            nps_error_set(err, "alerts: '%s%s%s' is not WINDOW:BASELINE of two of the windows %s",
                          pair, colon ? ":" : "", colon ? colon + 1 : "", config->windows_spec);
            return NPS_ERR_INVALID;
        }
    }
    snprintf(list, sizeof(list), "%s", config->benchmarks);
    for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *colon = strrchr(item, ':'), *end = NULL;
        double nps = colon ? strtod(colon + 1, &end) : 0;
        if (!eq || !colon || colon < eq || end == colon + 1 || *end ||
            !(nps >= -100 && nps <= 100)) {
            nps_error_set(err, "benchmarks: '%s' is not DIM=VALUE:NPS with NPS in -100..100", item);
            return NPS_ERR_INVALID;
        }
        *eq = '\0';
        bool known = false;
        for (int d = 0; d < config->views.ndims; d++)
            known = known || strcmp(config->views.dim_names[d], item) == 0;
        if (!known) {
            nps_error_set(err, "benchmarks: dimension '%s' is in no view (add --view ...=%s)", item,
                          item);
            return NPS_ERR_INVALID;
        }
    }
    return NPS_OK;
}

nps_status nps_config_load(nps_config *config, unsigned command, int argc, char **argv, char **envp,
                           nps_error *err)
{
    if (nps_config_init(config, err) != NPS_OK)
        return NPS_ERR;
    loader ld = {.config = config, .command = command, .err = err};
    char source[NPS_PATH_MAX + 16];

    /* The config file first: flags and variables override it. */
    const char *file = env_lookup(envp, "NPSTREAM_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file && *file) {
        snprintf(config->config_file, sizeof(config->config_file), "%s", file);
        snprintf(source, sizeof(source), "config file %s", file);
        ld.source = source;
        int rc = ini_parse(file, read_file_setting, &ld);
        if (rc < 0) {
            nps_error_set(err, "config file %s: cannot open it (%s)", file, strerror(errno));
            return NPS_ERR_INVALID;
        }
        if (ld.failed)
            return NPS_ERR_INVALID;
        if (rc > 0) {
            nps_error_set(err, "config file %s: line %d is not `key = value`", file, rc);
            return NPS_ERR_INVALID;
        }
    }

    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        char name[96];
        env_name(s, name, sizeof(name));
        const char *value = env_lookup(envp, name);
        if (!value || !applies(s, command) || s->offset == offsetof(nps_config, config_file))
            continue;
        snprintf(source, sizeof(source), "from %s", name);
        ld.source = source;
        if (set_value(&ld, s, value, FROM_ENV) != NPS_OK)
            return NPS_ERR_INVALID;
    }

    /* NPSTREAM_KAFKA_SASL_PASSWORD is kafka.sasl.password */
    for (char **e = envp; e && *e && (command & (NPS_CMD_RUN | NPS_CMD_GEN | NPS_CMD_DEMO)); e++) {
        if (strncmp(*e, "NPSTREAM_KAFKA_", 15) != 0 || !strchr(*e, '='))
            continue;
        char property[128];
        size_t n = 0;
        for (const char *p = *e + 15; *p != '=' && n + 1 < sizeof(property); p++)
            property[n++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
        property[n] = '\0';
        snprintf(source, sizeof(source), "from NPSTREAM_KAFKA_...");
        ld.source = source;
        if (set_kafka(&ld, property, strchr(*e, '=') + 1) != NPS_OK)
            return NPS_ERR_INVALID;
    }

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--kafka.", 8) == 0 &&
            (command & (NPS_CMD_RUN | NPS_CMD_GEN | NPS_CMD_DEMO))) {
            const char *eq = strchr(arg, '=');
            char property[128];
            snprintf(property, sizeof(property), "%.*s",
                     (int)(eq ? eq - arg - 8 : (long)strlen(arg + 8)), arg + 8);
            const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) {
                nps_error_set(err, "--kafka.%s needs a value", property);
                return NPS_ERR_INVALID;
            }
            snprintf(source, sizeof(source), "from --kafka.%s", property);
            ld.source = source;
            if (set_kafka(&ld, property, value) != NPS_OK)
                return NPS_ERR_INVALID;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            nps_error_set(err, "unexpected argument '%s' (settings are --name VALUE)", arg);
            return NPS_ERR_INVALID;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const setting *s = find_setting(name, name_len, command);
        if (!s || !applies(s, command)) {
            nps_error_set(err, "unknown option '%.*s' for this command (see --help)",
                          (int)(name_len + 2), arg);
            return NPS_ERR_INVALID;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                nps_error_set(err, "--%s needs a value (%s)", s->name, s->arg);
                return NPS_ERR_INVALID;
            }
            value = argv[++i];
        }
        if (s->offset == offsetof(nps_config, config_file))
            continue; /* already read */
        snprintf(source, sizeof(source), "from --%s", s->name);
        ld.source = source;
        if (set_value(&ld, s, value, FROM_FLAG) != NPS_OK)
            return NPS_ERR_INVALID;
    }

    if (strcmp(config->format, "table") != 0 && strcmp(config->format, "json") != 0) {
        nps_error_set(err, "format: expected table or json, got '%s'", config->format);
        return NPS_ERR_INVALID;
    }
    if (config->max_event_bytes < 2 || config->max_event_bytes > (64u << 20)) {
        nps_error_set(err, "max-event-bytes: expected 2..67108864, got %" PRIu64,
                      config->max_event_bytes);
        return NPS_ERR_INVALID;
    }
    if (command == NPS_CMD_DEMO && config->views.nviews == 1) {
        /* the demo's views when none is configured */
        static const char *const demo_views[] = {"by_channel=channel", "by_region=region",
                                                 "by_survey_age=survey,age_band"};
        for (size_t i = 0; i < sizeof(demo_views) / sizeof(demo_views[0]); i++)
            if (nps_views_add(&config->views, demo_views[i], err) != NPS_OK)
                return NPS_ERR;
    }
    if ((command & (NPS_CMD_RUN | NPS_CMD_DEMO)) && check_insights(config, err) != NPS_OK)
        return NPS_ERR_INVALID;
    struct timespec wall, mono;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    config->clock_base_ms =
        config->now_ms ? config->now_ms : (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    config->clock_base_mono_ms = (int64_t)mono.tv_sec * 1000 + mono.tv_nsec / 1000000;
    return NPS_OK;
}

int64_t nps_clock_now_ms(const nps_config *config)
{
    struct timespec ts;
    if (config->time_scale > 1) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t elapsed =
            (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - config->clock_base_mono_ms;
        return config->clock_base_ms + elapsed * config->time_scale;
    }
    if (config->now_ms)
        return config->now_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool nps_parse_host_port(const char *text, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(text, ':');
    size_t len = colon ? (size_t)(colon - text) : strlen(text);
    if (len == 0 || len >= host_size)
        return false;
    memcpy(host, text, len);
    host[len] = '\0';
    *port = 6379;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || p < 0 || p > 65535)
            return false;
        *port = (int)p;
    }
    return true;
}

void nps_config_print_help(unsigned command, void *stream)
{
    FILE *out = stream;
    if (command & (NPS_CMD_RUN | NPS_CMD_GEN | NPS_CMD_DEMO))
        fprintf(out, "  %-34s %s\n  %-34s   [%s]\n", "--kafka.PROPERTY VALUE",
                "any librdkafka property (SASL, SSL, ...), passed as is; @FILE reads the value "
                "from a file; secret values are never printed",
                "", "NPSTREAM_KAFKA_PROPERTY, with _ for .");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        if (!applies(s, command))
            continue;
        char flag[64], env[96];
        snprintf(flag, sizeof(flag), "--%s %s", s->name, s->arg);
        env_name(s, env, sizeof(env));
        fprintf(out, "  %-34s %s\n  %-34s   [%s", flag, s->help, "", env);
        if (*s->default_value)
            fprintf(out, "; default %s", s->default_value);
        fprintf(out, "]\n");
    }
}
