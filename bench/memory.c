/*
 * memory: what the merger's state (engine/state.h) holds per active
 * (segment, pane), and whether it stays flat under a cardinality attack.
 *
 * Part 1, per (segment, pane): S distinct segments of the view
 * by_customer=customer each receive K events whose ages are log-uniform
 * between 1 s and 29 days, so every default window (5m, 1h, 24h, 7d, 30d)
 * holds some of them (8 events per segment make about 17 panes).
 * Events go through the worker's path (nps_shard_add: parse, classify,
 * count into the delta), are handed over every 4096 events and applied
 * with nps_state_merge, single-threaded, at a pinned now. Bytes per pane =
 * (jemalloc stats.allocated after - before) / panes held (nps_state_stats).
 * "state" is what nps_state_destroy gives back (the shard's own tables
 * left out); RSS is /proc/self/statm. Each measurement runs in a child
 * process of its own, so RSS is not blurred by an earlier one's pages.
 *
 * Why nps_state_merge and not nps_state_apply: apply is advance + merge,
 * what the pipeline's flusher does not call; at a pinned now the advance
 * drops nothing, so the memory is the same. --apply uses nps_state_apply:
 * before the advance skipped its walk when no low pane moved, it made 1M
 * segments take minutes instead of seconds (bench/README.md, "Memory").
 *
 * Part 2, cardinality attack: N events, each of a new segment, into the
 * same view with the bound max_segments (default 100,000); memory is
 * printed every N/10 events and must stay flat once the bound is reached
 * (further segments count in `~overflow`).
 *
 * Usage: memory [--quick] [--segments S,S,...] [--events-per-segment K]
 *               [--attack N] [--bound B] [--apply] [--classes]
 * --classes prints jemalloc's live bytes by size class after each part-1
 * measurement (what the bytes per pane are made of).
 * The allocator is jemalloc (linked by bench/CMakeLists.txt), as in
 * build/npstream.
 */
#include <inttypes.h>
#include <jemalloc/jemalloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "shard.h"
#include "state.h"

#define NOW_MS 1763800000000LL
#define HANDOFF_EVENTS 4096
#define MAX_AGE_S (29.0 * 86400.0)

typedef struct usage {
    uint64_t allocated_bytes; /* jemalloc stats.allocated */
    uint64_t resident_bytes;  /* /proc/self/statm resident */
} usage;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "memory: %s: %s\n", what, why);
    exit(1);
}

static usage measure(void)
{
    usage u = {0, 0};
    uint64_t epoch = 1;
    size_t len = sizeof(epoch);
    if (mallctl("epoch", &epoch, &len, &epoch, len) != 0)
        die("mallctl epoch", "failed (is jemalloc the allocator?)");
    size_t allocated = 0;
    len = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &len, NULL, 0) != 0)
        die("mallctl stats.allocated", "failed");
    u.allocated_bytes = allocated;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size_pages = 0, resident_pages = 0;
    if (f && fscanf(f, "%lu %lu", &size_pages, &resident_pages) == 2)
        u.resident_bytes = (uint64_t)resident_pages * (uint64_t)sysconf(_SC_PAGESIZE);
    if (f)
        fclose(f);
    return u;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: the events only need to be spread, not strong. */
static uint64_t next_random(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545F4914F6CDD1DULL;
}

/* The bench's engine: one view, one worker shard, the merged state. */
typedef struct rig {
    nps_config config;
    nps_shard *shard;
    nps_state *state;
    uint64_t random;
    uint64_t pending; /* events counted since the last hand-off */
    bool apply;       /* nps_state_apply instead of nps_state_merge */
} rig;

static bool use_apply;
static bool show_classes;

static uint64_t mallctl_u64(const char *name, bool size_t_value)
{
    size_t v = 0;
    unsigned u = 0;
    size_t len = size_t_value ? sizeof(v) : sizeof(u);
    if (mallctl(name, size_t_value ? (void *)&v : (void *)&u, &len, NULL, 0) != 0)
        die("mallctl", name);
    return size_t_value ? v : u;
}

/* jemalloc's live allocations by size class, the classes holding 1% of
 * the heap or more: where the bytes per pane go. */
static void print_size_classes(uint64_t panes)
{
    uint64_t allocated = measure().allocated_bytes;
    char name[128];
    const char *kinds[2][4] = {
        {"arenas.nbins", "arenas.bin.%u.size", "stats.arenas.%u.bins.%u.curregs"},
        {"arenas.nlextents", "arenas.lextent.%u.size", "stats.arenas.%u.lextents.%u.curlextents"}};
    for (int k = 0; k < 2; k++) {
        uint64_t n = mallctl_u64(kinds[k][0], false);
        for (unsigned j = 0; j < n; j++) {
            snprintf(name, sizeof(name), kinds[k][1], j);
            uint64_t size = mallctl_u64(name, true);
            snprintf(name, sizeof(name), kinds[k][2], MALLCTL_ARENAS_ALL, j);
            uint64_t live = mallctl_u64(name, true);
            if (live * size * 100 < allocated)
                continue;
            printf("    size class %8" PRIu64 " B: %10" PRIu64 " live, %9.1f MiB, %5.1f%%, %6.1f B "
                   "per pane\n",
                   size, live, (double)(live * size) / (1024.0 * 1024.0),
                   100.0 * (double)(live * size) / (double)allocated,
                   (double)(live * size) / (double)panes);
        }
    }
}

static void rig_open(rig *r, uint32_t bound)
{
    nps_error err;
    memset(r, 0, sizeof(*r));
    r->apply = use_apply;
    if (nps_config_init(&r->config, &err) != NPS_OK ||
        nps_views_add(&r->config.views, "by_customer=customer", &err) != NPS_OK)
        die("config", err.msg);
    r->config.max_segments = bound;
    r->shard = nps_shard_new(&r->config, &err);
    if (!r->shard)
        die("shard", err.msg);
    r->state = nps_state_new(&r->config, &err);
    if (!r->state)
        die("state", err.msg);
    nps_shard_set_now(r->shard, NOW_MS);
    r->random = 0x9E3779B97F4A7C15ULL;
}

/* Hand the shard's delta to the state, as the merger thread does. */
static void rig_handoff(rig *r)
{
    nps_error err;
    nps_shard_drain(r->shard);
    nps_delta *delta = nps_shard_take(r->shard);
    nps_status status = NPS_OK;
    if (delta)
        status = r->apply ? nps_state_apply(r->state, delta, NOW_MS, &err)
                          : nps_state_merge(r->state, delta, NOW_MS, &err);
    if (status != NPS_OK)
        die("merging a delta", err.msg);
    if (delta)
        nps_shard_give_back(r->shard, delta);
    r->pending = 0;
}

/* One response of segment customer=c<id>, aged log-uniformly. */
static void rig_event(rig *r, uint64_t id)
{
    uint64_t x = next_random(&r->random);
    double unit = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
    int64_t age_ms = (int64_t)(1000.0 * exp(unit * log(MAX_AGE_S)));
    int score = (int)(next_random(&r->random) % 11);
    char msg[128];
    int len = snprintf(msg, sizeof(msg),
                       "{\"score\":%d,\"ts\":%" PRId64 ",\"customer\":\"c%" PRIu64 "\"}", score,
                       (int64_t)(NOW_MS - age_ms), id);
    nps_invalid_reason reason;
    if (nps_shard_add(r->shard, msg, (size_t)len, -1, &reason, NULL, 0) != NPS_OK)
        die("nps_shard_add", "out of memory");
    if (reason != NPS_VALID)
        die("event", msg);
    if (++r->pending == HANDOFF_EVENTS)
        rig_handoff(r);
}

static void rig_close(rig *r)
{
    nps_state_destroy(r->state);
    nps_shard_destroy(r->shard);
}

static uint64_t panes_held(const rig *r)
{
    nps_state_stats stats;
    nps_state_get_stats(r->state, &stats);
    return stats.panes;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static void per_pane(uint64_t segments, uint64_t per_segment)
{
    rig r;
    rig_open(&r, (uint32_t)segments);
    usage before = measure();
    double t0 = seconds_now();
    /* Round-robin over the segments: a segment's events arrive spread out. */
    for (uint64_t k = 0; k < per_segment; k++)
        for (uint64_t s = 0; s < segments; s++)
            rig_event(&r, s);
    rig_handoff(&r);
    double elapsed_s = seconds_now() - t0;
    usage after = measure();
    uint64_t panes = panes_held(&r);
    size_t nseg = nps_state_segment_count(r.state, 1);
    if (show_classes)
        print_size_classes(panes);
    nps_state_destroy(r.state);
    r.state = NULL;
    usage freed = measure();
    nps_shard_destroy(r.shard);
    uint64_t grown = after.allocated_bytes - before.allocated_bytes;
    uint64_t state_bytes = after.allocated_bytes - freed.allocated_bytes;
    int64_t rss = (int64_t)after.resident_bytes - (int64_t)before.resident_bytes;
    printf("%9" PRIu64 " %5" PRIu64 " %11" PRIu64 " %7.1f %10.1f %8.1f %8.1f %10.1f %8.1f %6.1f\n",
           (uint64_t)nseg, per_segment, panes, (double)panes / (double)nseg, mib(grown),
           (double)grown / (double)panes, (double)state_bytes / (double)panes, mib((uint64_t)rss),
           (double)rss / (double)panes, elapsed_s);
    fflush(stdout);
}

static void attack(uint64_t events, uint64_t bound)
{
    rig r;
    rig_open(&r, (uint32_t)bound);
    usage before = measure();
    printf("\ncardinality attack: %" PRIu64 " events, each of a new segment, bound %" PRIu64
           " segments per view\n",
           events, bound);
    printf("%9s %9s %8s %12s %12s %12s\n", "events", "segments", "panes", "alloc MiB", "+alloc MiB",
           "RSS MiB");
    /* Every tenth of the run, and at half, once and twice the bound. */
    uint64_t step = events / 10 ? events / 10 : 1;
    for (uint64_t i = 0; i < events; i++) {
        rig_event(&r, i);
        uint64_t n = i + 1;
        if (n % step == 0 || n == events || n == bound / 2 || n == bound || n == 2 * bound) {
            rig_handoff(&r);
            usage u = measure();
            printf("%9" PRIu64 " %9zu %8" PRIu64 " %12.1f %12.1f %12.1f\n", i + 1,
                   nps_state_segment_count(r.state, 1), panes_held(&r), mib(u.allocated_bytes),
                   mib(u.allocated_bytes - before.allocated_bytes), mib(u.resident_bytes));
            fflush(stdout);
        }
    }
    nps_state_stats stats;
    nps_state_get_stats(r.state, &stats);
    printf("overflowed (event, view) pairs: %" PRIu64 "\n", stats.overflowed);
    rig_close(&r);
}

/* Run one measurement in a child process: a fresh heap and RSS. */
static void in_child(void (*measurement)(uint64_t, uint64_t), uint64_t a, uint64_t b)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", "failed");
    if (pid == 0) {
        measurement(a, b);
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("measurement", "the child process failed");
}

static const char usage_text[] =
    "usage: memory [--quick] [--segments S,S,...] [--events-per-segment K] [--attack N]\n"
    "              [--bound B] [--apply] [--classes]\n";

typedef struct options {
    char segments_list[256];
    uint64_t per_segment;
    uint64_t attack_events;
    uint64_t bound;
} options;

/* The value after a flag; when it is missing, "0" and *ok false. */
static const char *flag_value(int argc, char **argv, int *i, bool *ok)
{
    if (*i + 1 >= argc) {
        *ok = false;
        return "0";
    }
    return argv[++*i];
}

static bool parse_options(int argc, char **argv, options *o)
{
    bool ok = true;
    for (int i = 1; ok && i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--quick") == 0) {
            snprintf(o->segments_list, sizeof(o->segments_list), "10000");
            o->attack_events = 300000;
        } else if (strcmp(flag, "--apply") == 0) {
            use_apply = true;
        } else if (strcmp(flag, "--classes") == 0) {
            show_classes = true;
        } else if (strcmp(flag, "--segments") == 0) {
            snprintf(o->segments_list, sizeof(o->segments_list), "%s",
                     flag_value(argc, argv, &i, &ok));
        } else if (strcmp(flag, "--events-per-segment") == 0) {
            o->per_segment = strtoull(flag_value(argc, argv, &i, &ok), NULL, 10);
        } else if (strcmp(flag, "--attack") == 0) {
            o->attack_events = strtoull(flag_value(argc, argv, &i, &ok), NULL, 10);
        } else if (strcmp(flag, "--bound") == 0) {
            o->bound = strtoull(flag_value(argc, argv, &i, &ok), NULL, 10);
        } else {
            ok = false;
        }
    }
    return ok && o->per_segment > 0 && o->bound > 0 && o->bound < (1u << 30);
}

int main(int argc, char **argv)
{
    options o = {.segments_list = "10000,100000,1000000",
                 .per_segment = 8,
                 .attack_events = 5000000,
                 .bound = 100000};
    if (!parse_options(argc, argv, &o)) {
        fputs(usage_text, stderr);
        return 2;
    }
    printf("merged state per active (segment, pane): view by_customer=customer, windows "
           "5m,1h,24h,7d,30d,total, %d events per hand-off\n",
           HANDOFF_EVENTS);
    printf("%9s %5s %11s %7s %10s %8s %8s %10s %8s %6s\n", "segments", "ev/sg", "panes", "pn/sg",
           "alloc MiB", "B/pane", "state B", "RSS MiB", "RSS B", "s");
    char *save = NULL;
    for (char *tok = strtok_r(o.segments_list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint64_t segments = strtoull(tok, NULL, 10);
        if (segments > 0)
            in_child(per_pane, segments, o.per_segment);
    }
    if (o.attack_events)
        in_child(attack, o.attack_events, o.bound);
    return 0;
}
