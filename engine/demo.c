/*
 * demo: `npstream demo` runs the whole path on one machine: the embedded
 * broker, the generator producing into it, the engine publishing to the
 * Redis at --redis, and the live table. Each part is this same binary in
 * its own process, exactly as a user would start them by hand; their logs
 * go to a file so the table stays readable.
 *
 * On a terminal the table refreshes until Ctrl-C. Otherwise (scripts, CI)
 * the demo waits until the engine has published every generated event,
 * prints the table once and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "redis_sink.h"

extern char **environ;

#define DEMO_WAIT_MS 600000

typedef struct child {
    const char *name;
    pid_t pid;
} child;

static child children[3];
static int nchildren;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void stop_children(void)
{
    /* In reverse order of start, one at a time: the generator, then the
     * engine (it flushes on SIGTERM, so it needs the broker), then the
     * broker. */
    for (int i = nchildren - 1; i >= 0; i--) {
        if (children[i].pid <= 0)
            continue;
        kill(children[i].pid, SIGTERM);
        waitpid(children[i].pid, NULL, 0);
    }
    nchildren = 0;
}

/* Start `npstream ARGS...` with stdout to `out_fd` (or the log) and
 * stderr to the log. */
static pid_t spawn(const char *name, char *const args[], int log_fd, int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out_fd >= 0 ? out_fd : log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execv("/proc/self/exe", args);
        fprintf(stderr, "npstream demo: cannot start %s: %s\n", name, strerror(errno));
        _exit(127);
    }
    if (pid > 0)
        children[nchildren++] = (child){name, pid};
    return pid;
}

/* Start the broker and read its bootstrap line. */
static bool start_broker(const nps_config *config, int log_fd, char *bootstrap, size_t size)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return false;
    char partitions[32];
    snprintf(partitions, sizeof(partitions), "%" PRId64, config->partitions);
    char *args[] = {
        "npstream", "broker", "--partitions", partitions, "--topic", (char *)config->topic, NULL};
    pid_t pid = spawn("broker", args, log_fd, pipefd[1]);
    close(pipefd[1]);
    FILE *in = fdopen(pipefd[0], "r");
    char line[240];
    bool ok = false;
    while (pid > 0 && in && fgets(line, sizeof(line), in)) {
        if (strncmp(line, "bootstrap=", 10) == 0) {
            line[strcspn(line, "\r\n")] = '\0';
            snprintf(bootstrap, size, "%s", line + 10);
            ok = true;
            break;
        }
    }
    if (in)
        fclose(in); /* the broker's later stdout lines are not needed */
    else
        close(pipefd[0]);
    return ok;
}

/* The view flags of the engine: the configured views (the loader gives
 * the demo a default set when none is configured). */
static int view_args(const nps_config *config, char **args, int n, char specs[][256])
{
    const nps_views *views = &config->views;
    for (int v = 1; v < views->nviews; v++) {
        const nps_view *vw = &views->views[v];
        size_t len = (size_t)snprintf(specs[v - 1], 256, "%s=", vw->name);
        for (int d = 0; d < vw->ndims; d++)
            len += (size_t)snprintf(specs[v - 1] + len, 256 - len, "%s%s", d ? "," : "",
                                    views->dim_names[vw->dim[d]]);
        args[n++] = "--view";
        args[n++] = specs[v - 1];
    }
    return n;
}

/* Append the flags of the demo's command line that `run` takes too (what
 * to publish, bounds, windows: "--name value" or "--name=value") to
 * args[n..max), as given. Not its views and config file (view_args and
 * --config pass them), nor secrets (the environment carries those, not
 * argv: ps shows argv). Returns the new n. */
static int forward_args(int argc, char **argv, char **args, int n, int max)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0)
            continue;
        const char *name = argv[i] + 2;
        size_t len = strcspn(name, "=");
        bool joined = name[len] == '=';
        char bare[128];
        snprintf(bare, sizeof(bare), "%.*s", (int)len, name);
        bool pass = nps_config_takes(name, len, NPS_CMD_RUN) && strcmp(bare, "view") != 0 &&
                    strcmp(bare, "config") != 0 && !nps_config_is_secret(bare);
        if (pass && n + 2 <= max && (joined || i + 1 < argc)) {
            args[n++] = argv[i];
            if (!joined)
                args[n++] = argv[i + 1];
        }
        if (!joined)
            i++; /* the loader has checked every flag has a value */
    }
    return n;
}

static pid_t start_engine(const nps_config *config, const char *bootstrap, int log_fd, int argc,
                          char **argv)
{
    static char specs[NPS_MAX_VIEWS][256];
    static char flush[32], workers[32], scale[32], now[32];
    snprintf(flush, sizeof(flush), "%" PRId64, config->flush_ms);
    snprintf(workers, sizeof(workers), "%" PRId64, config->workers);
    snprintf(scale, sizeof(scale), "%" PRId64, config->time_scale);
    snprintf(now, sizeof(now), "%" PRId64, config->now_ms);
    /* --fetch-wait-ms 10: the embedded broker holds an empty fetch that
     * long even when messages arrive meanwhile (README.md) */
    char *args[2 * NPS_MAX_VIEWS + 80] = {"npstream",        "run",
                                          "--brokers",       (char *)bootstrap,
                                          "--topic",         (char *)config->topic,
                                          "--group",         "npstream-demo",
                                          "--redis",         (char *)config->redis,
                                          "--prefix",        (char *)config->prefix,
                                          "--flush-ms",      flush,
                                          "--workers",       workers,
                                          "--time-scale",    scale,
                                          "--now",           now,
                                          "--http",          "127.0.0.1:0",
                                          "--fetch-wait-ms", "10",
                                          "--windows",       (char *)config->windows_spec};
    int n = 26;
    if (!config->windows_spec[0])
        n -= 2;
    n = view_args(config, args, n, specs);
    if (config->config_file[0]) { /* the engine reads its run settings too */
        args[n++] = "--config";
        args[n++] = (char *)config->config_file;
    }
    n = forward_args(argc, argv, args, n, (int)(sizeof(args) / sizeof(args[0])) - 1);
    args[n] = NULL;
    return spawn("engine", args, log_fd, -1);
}

static pid_t start_gen(const nps_config *config, const char *bootstrap, int log_fd)
{
    static char count[32], rate[32], seed[32], share[32], now[32];
    snprintf(count, sizeof(count), "%" PRId64, config->count);
    snprintf(rate, sizeof(rate), "%" PRId64, config->rate_limit);
    snprintf(seed, sizeof(seed), "%" PRIu64, config->seed);
    snprintf(share, sizeof(share), "%g", config->invalid_share);
    snprintf(now, sizeof(now), "%" PRId64, config->now_ms);
    char *args[] = {"npstream",
                    "gen",
                    "--brokers",
                    (char *)bootstrap,
                    "--topic",
                    (char *)config->topic,
                    "--count",
                    count,
                    "--rate",
                    rate,
                    "--seed",
                    seed,
                    "--invalid-share",
                    share,
                    "--now",
                    now,
                    NULL};
    return spawn("gen", args, log_fd, -1);
}

/* Messages the engine has published: for each view, the sum of its
 * fences (offsets start at 0 on the fresh embedded broker); the smallest
 * over `views` views, or -1 until every view has fences. */
static int64_t published(redisContext *redis, const nps_config *config, int views)
{
    redisReply *r =
        redisCommand(redis, "HGETALL %s:offsets:npstream-demo:%s", config->prefix, config->topic);
    if (!r)
        return -1;
    char names[NPS_MAX_VIEWS][NPS_NAME_MAX];
    int64_t sums[NPS_MAX_VIEWS] = {0};
    int n = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const char *field = r->element[i]->str;
            const char *colon = strrchr(field, ':');
            size_t len = colon ? (size_t)(colon - field) : 0;
            if (!colon || len >= NPS_NAME_MAX)
                continue;
            int k = 0;
            while (k < n && (strlen(names[k]) != len || strncmp(names[k], field, len) != 0))
                k++;
            if (k == n && n < NPS_MAX_VIEWS)
                snprintf(names[n++], NPS_NAME_MAX, "%.*s", (int)len, field);
            if (k < n)
                sums[k] += strtoll(r->element[i + 1]->str, NULL, 10);
        }
    }
    freeReplyObject(r);
    if (n < views)
        return -1;
    int64_t least = INT64_MAX;
    for (int k = 0; k < n; k++)
        least = sums[k] < least ? sums[k] : least;
    return least;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A connection to --redis, authenticated; NULL after saying why. */
static redisContext *demo_connect(const nps_config *config)
{
    char host[256];
    int port;
    if (!nps_parse_host_port(config->redis, host, sizeof(host), &port)) {
        fprintf(stderr, "npstream demo: redis: expected HOST:PORT, got '%s'\n", config->redis);
        return NULL;
    }
    struct timeval tv = {2, 0};
    redisContext *redis = redisConnectWithTimeout(host, port, tv);
    if (!redis || redis->err) {
        fprintf(stderr, "npstream demo: redis %s: %s (start one, e.g. redis-server --port %d)\n",
                config->redis, redis ? redis->errstr : "no memory", port);
        if (redis)
            redisFree(redis);
        return NULL;
    }
    nps_error auth_err = {{0}};
    if (!nps_redis_auth(redis, config->redis_user, config->redis_password, &auth_err)) {
        fprintf(stderr, "npstream demo: %s\n", auth_err.msg);
        redisFree(redis);
        return NULL;
    }
    return redis;
}

/* Non-interactive: wait for the engine to publish all events; prints
 * progress about every 5 s. */
static bool wait_published(const nps_config *config)
{
    int views = config->views.nviews;
    redisContext *redis = demo_connect(config);
    if (!redis)
        return false;
    bool ok = false;
    for (long waited = 0; waited < DEMO_WAIT_MS && !interrupted; waited += 200) {
        int64_t done = published(redis, config, views);
        if (done >= config->count) {
            ok = true;
            break;
        }
        if (waited % 5000 == 0)
            fprintf(stderr, "npstream demo: %" PRId64 " / %" PRId64 " events published\n",
                    done < 0 ? 0 : done, config->count);
        sleep_ms(200);
    }
    redisFree(redis);
    return ok;
}

/* A demo writes under --prefix with its own group: refuse a Redis that
 * already holds data there, which a fresh broker's offsets would not fit. */
static bool redis_is_fresh(const nps_config *config)
{
    redisContext *redis = demo_connect(config);
    if (!redis)
        return false;
    redisReply *r = redisCommand(redis, "EXISTS %s:views", config->prefix);
    bool fresh = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    if (r && !fresh)
        fprintf(stderr,
                "npstream demo: redis %s already holds npstream data under prefix '%s'; use "
                "another --prefix or an empty Redis\n",
                config->redis, config->prefix);
    if (r)
        freeReplyObject(r);
    redisFree(redis);
    return fresh;
}

static int run_top(const nps_config *config, bool live)
{
    char interval[32];
    snprintf(interval, sizeof(interval), "%" PRId64, live ? config->interval_ms : 0);
    char *args[] = {"--redis",
                    (char *)config->redis,
                    "--prefix",
                    (char *)config->prefix,
                    "--interval-ms",
                    interval,
                    NULL};
    return nps_cmd_top(6, args);
}

int nps_cmd_demo(int argc, char **argv)
{
    nps_config config;
    nps_error err = {{0}};
    if (nps_config_load(&config, NPS_CMD_DEMO, argc, argv, environ, &err) != NPS_OK) {
        fprintf(stderr, "npstream demo: %s\n", err.msg);
        return 2;
    }
    if (!redis_is_fresh(&config))
        return 1;
    /* The children read credentials from the environment, not argv (ps). */
    if (config.redis_password[0])
        setenv("NPSTREAM_REDIS_PASSWORD", config.redis_password, 1);
    if (config.redis_user[0])
        setenv("NPSTREAM_REDIS_USER", config.redis_user, 1);
    const char *log_path = "npstream-demo.log";
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "npstream demo: cannot write %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool live = isatty(STDOUT_FILENO) && config.interval_ms > 0;
    char bootstrap[256];
    int rc = 1;
    if (!start_broker(&config, log_fd, bootstrap, sizeof(bootstrap))) {
        fprintf(stderr, "npstream demo: the broker did not start (see %s)\n", log_path);
        goto out;
    }
    if (start_engine(&config, bootstrap, log_fd, argc, argv) <= 0 ||
        start_gen(&config, bootstrap, log_fd) <= 0)
        goto out;
    fprintf(stderr,
            "npstream demo: broker %s, %" PRId64 " events into topic %s, engine publishing to "
            "redis %s; logs in %s\n",
            bootstrap, config.count, config.topic, config.redis, log_path);
    if (live) {
        rc = run_top(&config, true);
    } else if (wait_published(&config)) {
        rc = run_top(&config, false);
    } else {
        fprintf(stderr, "npstream demo: the engine did not publish every event (see %s)\n",
                log_path);
    }
out:
    stop_children();
    close(log_fd);
    return rc;
}
