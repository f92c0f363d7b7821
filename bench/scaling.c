/*
 * scaling: events/s of the engine's counting with N worker threads and one
 * merger thread, fed from memory instead of Kafka.
 *
 * Each worker owns a pre-generated corpus of realistic events
 * (engine/event_gen.h, seed 42 + worker, timestamps over the last 20
 * minutes) and its own shard (4 views + `all`, default windows). It counts
 * every event with nps_shard_add (parse, classify, count) and offers its
 * delta to the merger after every 1024 events, without waiting, as
 * engine/pipeline.c's worker does after each consume batch (and at once
 * when a delta reaches the cardinality bound). The merger (this program's
 * main thread) takes the deltas through the hand-off at most every
 * --merge-pace-ms (default NPS_MERGE_PACE_MS, shard.h: the flusher
 * paces the merges so while a worker is behind, and here every worker is
 * behind until it has counted all its events; 0 takes each delta as soon as
 * it is offered), merges them into a bucketed state with nps_state_merge,
 * sleeps 1 ms when none was ready and clears the counts every flush
 * interval (what the pipeline does after it has encoded a flush; the Redis
 * side is not part of this measurement).
 *
 * A run ends when every worker has counted its events and the merger has
 * merged the last delta; the rate is N * events / that time.
 * Efficiency = rate(N) / (N * rate(1)).
 *
 * Output: one gnuplot data block (bench/scaling.gp plots it):
 *   # workers  events_per_s  efficiency  cpu_s_per_wall_s
 * preceded by every run as a comment line.
 *
 * Usage: scaling [--workers 1,2,4,...] [--events N] [--repeat R]
 *                [--corpus C] [--flush-ms MS] [--merge-pace-ms MS]
 *                [--wait-quiet S] [--quick]
 *
 * The machine may be shared: each run prints the CPU other processes used
 * meanwhile (/proc/stat), --wait-quiet S waits up to S seconds before each
 * run for them to go quiet, and the medians leave out runs during which
 * they used a quarter of a core or more, when at least one run was clean.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "event_gen.h"
#include "shard.h"
#include "state.h"

#define NOW_MS 1763800000000LL
#define SPREAD_MS (20 * 60 * 1000)
#define MAX_WORKERS 256
#define MAX_RUNS 64

typedef struct corpus {
    char *text; /* every event, back to back */
    size_t *offsets;
    size_t *lens;
    size_t nevents;
} corpus;

/* One worker. Written by its thread; `done` is read by the merger. */
typedef struct worker {
    pthread_t thread;
    const corpus *events;
    nps_shard *shard;
    uint64_t count; /* events to count */
    const nps_config *config;
    pthread_barrier_t *start;
    atomic_bool done; /* release after the last delta is published */
} worker;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "scaling: %s: %s\n", what, why);
    exit(1);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* CPU seconds of the calling thread. */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds every process of the machine has used (/proc/stat: all
 * but idle and iowait), so a run can tell how much others took. */
static double machine_busy_seconds(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9])
              : 0;
    if (f)
        fclose(f);
    if (n < 8)
        return 0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* Wait, at most max_s, until other processes use under 0.15 of a core
 * over half a second. Returns what they used in the last sample. */
static double wait_quiet(double max_s)
{
    double waited_s = 0, others = 0;
    do {
        double busy0 = machine_busy_seconds(), own0 = cpu_seconds();
        sleep_ms(500);
        others = (machine_busy_seconds() - busy0 - (cpu_seconds() - own0)) / 0.5;
        waited_s += 0.5;
    } while (others >= 0.15 && waited_s < max_s);
    return others;
}

static void corpus_make(corpus *c, uint64_t seed, size_t nevents)
{
    nps_gen_options options = {0};
    options.seed = seed;
    options.now_ms = NOW_MS;
    options.spread_ms = SPREAD_MS;
    nps_error err;
    nps_gen *gen = nps_gen_new(&options, &err);
    if (!gen)
        die("nps_gen_new", err.msg);
    size_t cap = nevents * 512;
    c->text = malloc(cap);
    c->offsets = malloc(nevents * sizeof(size_t));
    c->lens = malloc(nevents * sizeof(size_t));
    if (!c->text || !c->offsets || !c->lens)
        die("corpus", "out of memory");
    size_t at = 0;
    char key[64];
    for (size_t i = 0; i < nevents; i++) {
        c->offsets[i] = at;
        c->lens[i] = nps_gen_next(gen, c->text + at, cap - at, key, sizeof(key));
        at += c->lens[i];
    }
    c->nevents = nevents;
    nps_gen_destroy(gen);
}

static void corpus_free(corpus *c)
{
    free(c->text);
    free(c->offsets);
    free(c->lens);
}

/* @locality worker thread. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    nps_shard_set_now(w->shard, NOW_MS);
    pthread_barrier_wait(w->start);
    const corpus *c = w->events;
    size_t i = 0;
    for (uint64_t n = 0; n < w->count; n++) {
        nps_invalid_reason reason;
        if (nps_shard_add(w->shard, c->text + c->offsets[i], c->lens[i], -1, &reason, NULL, 0) !=
            NPS_OK)
            die("nps_shard_add", "out of memory");
        if (++i == c->nevents)
            i = 0;
        if (nps_shard_segments_at(w->shard, w->config->max_segments))
            nps_shard_drain(w->shard);
        else if ((n + 1) % NPS_BATCH_MESSAGES == 0)
            nps_shard_publish(w->shard); /* the merger is behind: keep counting */
    }
    nps_shard_drain(w->shard);
    atomic_store_explicit(&w->done, true, memory_order_release);
    return NULL;
}

typedef struct result {
    int workers;
    double events_per_s;
    double cpu_per_wall;    /* CPU seconds of the process per wall second */
    double others_per_wall; /* CPU seconds of other processes per wall second */
    double merger_per_wall; /* CPU seconds of the merger thread per wall second */
    double merger_ns;       /* the merger's CPU per event counted */
    uint64_t merges;        /* deltas merged */
} result;

static result run_once(const nps_config *config, corpus *corpora, int nworkers, uint64_t events,
                       int64_t flush_ms, int64_t pace_ms)
{
    nps_error err;
    worker *workers = calloc((size_t)nworkers, sizeof(worker));
    pthread_barrier_t start;
    if (!workers || pthread_barrier_init(&start, NULL, (unsigned)nworkers + 1) != 0)
        die("workers", "out of memory");
    nps_state *pending = nps_state_new_bucketed(config, 64, &err);
    if (!pending)
        die("state", err.msg);
    for (int i = 0; i < nworkers; i++) {
        worker *w = &workers[i];
        w->events = &corpora[i];
        w->count = events;
        w->config = config;
        w->start = &start;
        atomic_init(&w->done, false);
        w->shard = nps_shard_new(config, &err);
        if (!w->shard)
            die("shard", err.msg);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            die("pthread_create", "failed");
    }
    pthread_barrier_wait(&start);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double cpu0 = cpu_seconds(), busy0 = machine_busy_seconds();
    double merger0 = thread_cpu_seconds();
    double next_flush_s = (double)flush_ms / 1000.0, last_take_s = -1.0;
    uint64_t merges = 0;
    /* This thread is the merger, as pipeline.c's flusher_main: while a
     * worker is still counting it takes deltas at most every pace_ms. */
    for (;;) {
        bool all_done = true;
        for (int i = 0; i < nworkers; i++)
            all_done &= atomic_load_explicit(&workers[i].done, memory_order_acquire);
        bool busy = false;
        double now_s = seconds_since(&t0);
        if (all_done || last_take_s < 0 || now_s >= last_take_s + (double)pace_ms / 1000.0) {
            last_take_s = now_s;
            for (int i = 0; i < nworkers; i++) {
                nps_delta *delta = nps_shard_take(workers[i].shard);
                if (!delta)
                    continue;
                busy = true;
                merges++;
                if (nps_state_merge(pending, delta, NOW_MS, &err) != NPS_OK)
                    die("nps_state_merge", err.msg);
                nps_shard_give_back(workers[i].shard, delta);
            }
        }
        if (seconds_since(&t0) >= next_flush_s) {
            nps_state_clear_counts(pending);
            next_flush_s += (double)flush_ms / 1000.0;
        }
        if (all_done && !busy)
            break;
        if (!busy)
            sleep_ms(1);
    }
    double elapsed_s = seconds_since(&t0);
    double cpu_s = cpu_seconds() - cpu0;
    double merger_s = thread_cpu_seconds() - merger0;
    double others_s = machine_busy_seconds() - busy0 - cpu_s;
    nps_state_stats stats;
    nps_state_get_stats(pending, &stats);
    if (stats.messages != (uint64_t)nworkers * events)
        die("check", "the merger did not see every event");
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i].thread, NULL);
        nps_shard_destroy(workers[i].shard);
    }
    nps_state_destroy(pending);
    pthread_barrier_destroy(&start);
    free(workers);
    double total = (double)nworkers * (double)events;
    result r = {nworkers,
                total / elapsed_s,
                cpu_s / elapsed_s,
                (others_s > 0 ? others_s : 0) / elapsed_s,
                merger_s / elapsed_s,
                merger_s * 1e9 / total,
                merges};
    return r;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage_exit(void)
{
    fprintf(stderr, "usage: scaling [--workers 1,2,4,...] [--events N] [--repeat R] "
                    "[--corpus C] [--flush-ms MS] [--merge-pace-ms MS] [--wait-quiet S] "
                    "[--quick]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char list[256] = "1,2";
    uint64_t events = 4000000;
    int repeat = 3;
    size_t corpus_events = 65536;
    int64_t flush_ms = 1000, pace_ms = NPS_MERGE_PACE_MS;
    double quiet_s = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--quick") == 0) {
            events = 200000;
            repeat = 1;
            corpus_events = 8192;
        } else if (strcmp(argv[i], "--workers") == 0 && next) {
            snprintf(list, sizeof(list), "%s", argv[++i]);
        } else if (strcmp(argv[i], "--events") == 0 && next) {
            events = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--repeat") == 0 && next) {
            repeat = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--corpus") == 0 && next) {
            corpus_events = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--flush-ms") == 0 && next) {
            flush_ms = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--merge-pace-ms") == 0 && next) {
            pace_ms = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--wait-quiet") == 0 && next) {
            quiet_s = strtod(argv[++i], NULL);
        } else {
            usage_exit();
        }
    }
    int counts[MAX_RUNS], ncounts = 0, most = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int n = atoi(tok);
        if (n < 1 || n > MAX_WORKERS || ncounts == MAX_RUNS)
            usage_exit();
        counts[ncounts++] = n;
        most = n > most ? n : most;
    }
    if (events == 0 || repeat < 1 || repeat > MAX_RUNS || corpus_events == 0 || flush_ms < 1 ||
        pace_ms < 0 || pace_ms > 1000 || ncounts == 0)
        usage_exit();

    nps_config config;
    nps_error err;
    if (nps_config_init(&config, &err) != NPS_OK)
        die("config", err.msg);
    const char *views[] = {"by_survey=survey", "by_channel=channel", "by_region=region",
                           "by_survey_age=survey,age_band"};
    for (size_t v = 0; v < sizeof(views) / sizeof(views[0]); v++)
        if (nps_views_add(&config.views, views[v], &err) != NPS_OK)
            die("view", err.msg);
    corpus *corpora = calloc((size_t)most, sizeof(corpus));
    if (!corpora)
        die("corpus", "out of memory");
    for (int i = 0; i < most; i++)
        corpus_make(&corpora[i], 42 + (uint64_t)i, corpus_events);

    printf("# scaling: %" PRIu64 " events per worker (corpus of %zu each), 4 views + all, "
           "windows %s, publish every %d events, merges at most every %" PRId64
           " ms, flush every %" PRId64 " ms\n",
           events, corpus_events, NPS_DEFAULT_WINDOWS, NPS_BATCH_MESSAGES, pace_ms, flush_ms);
    /* bench/scaling.gp puts this in the plot's title */
    printf("# machine: %ld CPUs online\n", sysconf(_SC_NPROCESSORS_ONLN));
    double medians[MAX_RUNS], cpu_medians[MAX_RUNS], one = 0;
    int used[MAX_RUNS];
    for (int k = 0; k < ncounts; k++) {
        double rates[MAX_RUNS], cpus[MAX_RUNS];
        int clean = 0;
        result runs[MAX_RUNS];
        for (int r = 0; r < repeat; r++) {
            if (quiet_s > 0)
                wait_quiet(quiet_s);
            runs[r] = run_once(&config, corpora, counts[k], events, flush_ms, pace_ms);
            printf("# run: workers %d, %.0f events/s, %.2f CPU s per s (merger %.2f, %.1f ns "
                   "per event, %" PRIu64 " merges; other processes: %.2f)\n",
                   counts[k], runs[r].events_per_s, runs[r].cpu_per_wall, runs[r].merger_per_wall,
                   runs[r].merger_ns, runs[r].merges, runs[r].others_per_wall);
            fflush(stdout);
            clean += runs[r].others_per_wall < 0.25;
        }
        int kept = 0;
        for (int r = 0; r < repeat; r++) {
            if (clean && runs[r].others_per_wall >= 0.25)
                continue; /* disturbed, and a clean run exists */
            rates[kept] = runs[r].events_per_s;
            cpus[kept++] = runs[r].cpu_per_wall;
        }
        qsort(rates, (size_t)kept, sizeof(double), compare_double);
        qsort(cpus, (size_t)kept, sizeof(double), compare_double);
        medians[k] = rates[kept / 2];
        cpu_medians[k] = cpus[kept / 2];
        used[k] = kept;
        if (counts[k] == 1)
            one = medians[k];
    }
    printf("# workers  events_per_s  efficiency  cpu_s_per_wall_s  runs_in_median\n");
    for (int k = 0; k < ncounts; k++) {
        double efficiency = one > 0 ? medians[k] / ((double)counts[k] * one) : 0.0;
        printf("%9d  %12.0f  %10.3f  %16.2f  %14d\n", counts[k], medians[k], efficiency,
               cpu_medians[k], used[k]);
    }
    for (int i = 0; i < most; i++)
        corpus_free(&corpora[i]);
    free(corpora);
    return 0;
}
