/*
 * pipeline: `npstream run --brokers`: Kafka in, Redis out, exactly once.
 *
 * Threads:
 *   workers (N): each is a Kafka group consumer owning whole partitions.
 *     It parses and counts into its shard (no lock, no shared write) and
 *     at batch boundaries hands its delta, with how far it got in each
 *     partition, to the flusher through the shard's wait-free hand-off.
 *   flusher (1): merges deltas into the pending flush (an nps_state whose
 *     counts it clears after each flush) and every --flush-ms writes one
 *     unit per view with flush.lua, then commits Kafka offsets (advisory).
 *   main: signals and a status line.
 *
 * Exactly once. A unit's fence for partition p is the offset after the
 * last message that unit has applied. On assignment a worker reads the
 * fences, seeks to the smallest, and counts a message into view v only if
 * its offset is at or past v's fence. The flusher sends each unit the
 * fence it expects (where the pending counts begin) and the one it sets;
 * the script applies nothing unless the stored fence is the expected one.
 * Anything unexpected (a fence moved by someone else, a partition taken
 * over inside this process while it still has unflushed counts) makes
 * the flusher *resync*: it drops every pending count and bumps the epoch;
 * each worker then drops its delta, re-reads the fences and seeks again.
 * Deltas of an older epoch are discarded on arrival.
 *
 * Locks exist only on cold paths: partition (un)registration and the
 * revocation flush handshake (pipeline.lock).
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "http.h"
#include "kafka_conf.h"
#include "log.h"
#include "redis_sink.h"
#include "shard.h"
#include "state.h"
#include "web.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "flush payloads are encoded little-endian by memcpy"
#endif

/* The longest a worker waits for a batch to fill (librdkafka waits for
 * all NPS_BATCH_MESSAGES or this long): under load a batch fills in a few ms;
 * at a low rate this bounds how long read events wait for the hand-off,
 * which freshness pays (bench/README.md, "End to end": 100 ms here gave
 * a p99 of 1.48-1.77 s at 20,000 events/s, 10 ms 1.42-1.43 s). */
#define BATCH_WAIT_MS 10
#define REDIS_TIMEOUT_MS 30000
#define REVOKE_FLUSH_WAIT_MS 10000
#define SHUTDOWN_FLUSH_WAIT_MS 15000
#define NF 15 /* h0..h10, sent, value cents by class: one pane in a payload */

typedef struct pipeline pipeline;

/* Worker side: where one assigned partition stands. */
typedef struct part_track {
    bool assigned;
    int64_t next;      /* offset after the last message counted; -1: none */
    int64_t published; /* `next` as last handed to the flusher */
    int64_t max_fence; /* messages below it are skipped by some unit */
    int64_t min_fence; /* messages below it were seen by every unit before */
    int64_t *fence;    /* per unit (pipeline.nunits) */
    nps_dedup *dedup;  /* the partition's response ids; NULL: dedup off */
} part_track;

typedef struct worker {
    pipeline *pl;
    int id;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    nps_shard *shard;
    nps_redis *redis; /* fence reads */
    part_track *parts;
    int32_t parts_cap;
    uint64_t epoch;
    pthread_t thread;
    atomic_bool drained;  /* stopped consuming and handed over everything */
    atomic_bool behind;   /* reading a backlog: a batch came full, and it has not caught up */
    atomic_bool lagging;  /* it may hold or have messages it has not handed over */
    _Atomic int assigned; /* partitions held now */
    _Atomic uint64_t messages;
} worker;

/* Flusher side: one partition's fences and progress. */
typedef struct fence_entry {
    bool registered;
    int owner;         /* worker index; -1 once revoked with counts still pending */
    int64_t *begin;    /* per unit: the stored fence it expects */
    int64_t end;       /* offset after the last merged message; -1 none */
    int64_t flush_end; /* `end` when the outstanding flush was cut */
} fence_entry;

typedef struct registration {
    int32_t partition;
    int owner;
    uint64_t epoch;
    bool revoke;
    int64_t *fence; /* per unit; owned by the flusher once pushed */
} registration;

/* One unit of the outstanding flush: its EVALSHA arguments. */
typedef struct unit_payload {
    char *buf; /* every argument, back to back */
    size_t len, cap;
    size_t *offsets, *lens;
    int argc, argv_cap;
    bool done;
} unit_payload;

#define FLUSH_BUCKETS 12
#define FRESH_BUCKETS 10
static const double flush_bounds[FLUSH_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,   0.25,   0.5,   1,    2.5,   5};
static const double fresh_bounds[FRESH_BUCKETS] = {0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30, 60};

typedef struct histogram {
    uint64_t counts[16]; /* per bound, then +Inf; not cumulative */
    double sum;
    uint64_t n;
} histogram;

typedef struct partition_lag {
    int32_t partition;
    int64_t lag;
} partition_lag;

/* What /metrics shows, copied by the flusher under metrics_lock. */
typedef struct metrics {
    nps_state_stats stats;
    size_t segments[NPS_MAX_VIEWS];
    histogram flush, fresh;
    partition_lag *lags;
    size_t nlags, lags_cap;
    int64_t last_flush_mono_ms; /* last completed flush */
    bool unflushed;             /* counts waiting for Redis */
} metrics;

struct pipeline {
    const nps_config *config;
    int nviews;
    uint32_t buckets; /* units per view */
    int nunits;       /* nviews * buckets: unit v * buckets + b */
    char (*unit_names)[NPS_NAME_MAX + 16];
    int nworkers;
    worker *workers;
    atomic_bool stop;
    atomic_bool flusher_done;
    _Atomic uint64_t epoch;
    char instance[64];

    pthread_mutex_t lock; /* registrations and the revocation handshake */
    pthread_cond_t flushed;
    registration *regs;
    size_t nregs, regs_cap;
    uint64_t flush_requests; /* under lock */
    uint64_t flushes_done;   /* under lock: requests served by completed flushes */

    /* flusher thread only */
    nps_state *pending;
    fence_entry *table;
    int32_t table_cap;
    nps_redis *redis;
    unit_payload *units; /* nunits */
    bool outstanding;
    uint64_t outstanding_ticket;
    uint64_t flush_seq;
    int64_t retry_at_ms, backoff_ms;
    bool redis_down;
    char windows_arg[2][1024]; /* flush.lua ARGV[9]: [1] for views that keep themes */
    char alerts_arg[512];      /* ARGV[11], for views that keep alerts */
    char **bench_args;         /* per view: flush.lua ARGV[12] */
    char maxlen_arg[32];       /* ARGV[13] */
    int detractor_view;        /* its units append the detractors (nps_views_detractor_view) */
    char *detractors;          /* pending detractor records (delta.h) */
    size_t detractors_len, detractors_cap;
    uint32_t ndetractors, flush_detractors;
    /* While a flush is encoded: the records' positions in `detractors`,
     * grouped by unit; unit u's are at detractor_at[detractor_start[u]..
     * detractor_start[u + 1]). */
    size_t *detractor_at;
    uint32_t detractor_at_cap;
    uint32_t *detractor_start; /* nunits + 1 */
    /* ARGV[15] when D > 0: the field names of a detractor entry */
    char detractor_fields_arg[NPS_MAX_DIMS * NPS_NAME_MAX + 64];
    int64_t flush_encode_us;         /* the outstanding flush's encoding (a debug log line) */
    nps_dedup_record *dedup_pending; /* first occurrences of ids not yet sent */
    uint32_t ndedup_pending, dedup_pending_cap;
    nps_dedup_record *dedup_spare; /* encode_dedup's other buffer, swapped with it */
    uint32_t dedup_spare_cap;
    unit_payload *dedup_cmds; /* the outstanding flush's id writes, sent before its units */
    int ndedup_cmds, dedup_cmds_cap;
    /* Quiet units: nothing to write and no pane due to leave a window
     * (engine clock < next_expiry_ms[u], as the unit's last script run
     * reported; 0: not known, INT64_MAX: it holds no panes). Their fences
     * move in one call of flush.lua for all of them (quiet_cmd, after the
     * units), not one call each. */
    int64_t *next_expiry_ms;
    unit_payload quiet_cmd;
    int *quiet_units; /* the units in quiet_cmd, in order */
    int nquiet;

    /* status, read by main and the HTTP thread */
    pthread_mutex_t metrics_lock;
    metrics m;
    int64_t pending_oldest_ms, flush_oldest_ms; /* flusher: freshness inputs */
    _Atomic int64_t heartbeat_mono_ms;          /* flusher loop */
    _Atomic uint64_t redis_errors;
    rd_kafka_t *dlq; /* dead-letter producer, shared by the workers; NULL: off */
    _Atomic uint64_t dlq_sent, dlq_failed;
    _Atomic uint64_t flushes, resyncs, mismatches, segments_written, expired_panes;
    _Atomic uint64_t catch_up_flushes;
    atomic_bool caught_up;  /* a worker has just handed over the end of a backlog */
    bool catch_up_pending;  /* flusher: ... and no flush has started since */
    bool flush_is_catch_up; /* the outstanding flush started early for it */
    _Atomic uint64_t detractors_appended, detractors_trimmed;
    _Atomic uint64_t dedup_ids_written; /* first occurrences stored in Redis */
    _Atomic int64_t last_flush_us;
    _Atomic bool redis_ok;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

#define LOG(level, ...) nps_log(NPS_LOG_##level, "run", __VA_ARGS__)

/* ---------------------------------------------------------------- fences */

/* Read the fences of `parts` for every unit; false when Redis fails.
 * fences[i * nunits + u]: -1 where the unit has none yet. */
static bool read_fences(worker *w, const rd_kafka_topic_partition_list_t *parts, int64_t *fences,
                        nps_error *err)
{
    const nps_config *config = w->pl->config;
    int nunits = w->pl->nunits;
    size_t n = (size_t)parts->cnt * (size_t)nunits;
    if (n == 0)
        return true;
    const char **argv = calloc(n + 2, sizeof(char *));
    size_t *lens = calloc(n + 2, sizeof(size_t));
    char *names = calloc(n + 2, 96);
    char key[640];
    bool ok = false;
    if (!argv || !lens || !names) {
        nps_error_set(err, "out of memory reading fences");
        goto out;
    }
    snprintf(key, sizeof(key), "%s:offsets:%s:%s", config->prefix, config->group, config->topic);
    argv[0] = "HMGET";
    argv[1] = key;
    for (int i = 0; i < parts->cnt; i++)
        for (int u = 0; u < nunits; u++) {
            size_t k = (size_t)i * (size_t)nunits + (size_t)u;
            snprintf(names + k * 96, 96, "%s:%d", w->pl->unit_names[u],
                     (int)parts->elems[i].partition);
            argv[k + 2] = names + k * 96;
            lens[k + 2] = strlen(names + k * 96);
        }
    lens[0] = strlen(argv[0]);
    lens[1] = strlen(key);
    redisReply *reply = nps_redis_argv(w->redis, (int)(n + 2), argv, lens, err);
    if (!reply)
        goto out;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == n) {
        ok = true;
        for (size_t k = 0; k < n; k++) {
            redisReply *e = reply->element[k];
            fences[k] = e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : -1;
        }
    } else {
        nps_error_set(err, "redis: unexpected reply reading fences: %s",
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "not an array");
    }
    freeReplyObject(reply);
out:
    free(argv);
    free(lens);
    free(names);
    return ok;
}

/* ----------------------------------------------------------------- dedup */

static part_track *track(worker *w, int32_t p);

#define DAY_MS 86400000LL
/* A stored first occurrence: little-endian uint64 hash of the id, int64
 * offset, int64 event time (ms), copied by memcpy as every payload is
 * (the byte-order check at the top of this file). */
#define DEDUP_RECORD_BYTES 24
#define DEDUP_RECORDS_PER_CMD 43690 /* about 1 MiB per command */
#define DEDUP_LOAD_RECORDS 43690    /* read back in about 1 MiB ranges */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The STRING of partition p's response ids first seen on `day`: their
 * records appended one after the other. */
static void dedup_key(const nps_config *config, int32_t p, int64_t day, char *key, size_t size)
{
    snprintf(key, size, "%s:ids:%s:%s:%d:%" PRId64, config->prefix, config->group, config->topic,
             (int)p, day);
}

/* Load into `table` partition p's stored first occurrences below offset
 * `below` (the partition's lowest fence: the replay from there records
 * the later ones again, deciding as the first run did), from every day
 * key that can still exist. A record met twice (a write retried after a
 * lost reply) loads as once. False when Redis fails. */
static bool load_dedup(worker *w, int32_t p, int64_t below, nps_dedup *table, nps_error *err)
{
    const nps_config *config = w->pl->config;
    nps_dedup_clear(table);
    int64_t now = nps_clock_now_ms(config);
    int64_t first_day = floor_div(now - config->dedup_horizon_ms, DAY_MS) - 1;
    int64_t last_day = floor_div(now + config->max_skew_ms, DAY_MS);
    for (int64_t day = first_day; below > 0 && day <= last_day; day++) {
        char key[640];
        dedup_key(config, p, day, key, sizeof(key));
        for (int64_t at = 0;; at += (int64_t)DEDUP_LOAD_RECORDS * DEDUP_RECORD_BYTES) {
            char from[24], to[24];
            snprintf(from, sizeof(from), "%" PRId64, at);
            snprintf(to, sizeof(to), "%" PRId64,
                     at + (int64_t)DEDUP_LOAD_RECORDS * DEDUP_RECORD_BYTES - 1);
            const char *argv[] = {"GETRANGE", key, from, to};
            size_t lens[] = {8, strlen(key), strlen(from), strlen(to)};
            redisReply *reply = nps_redis_argv(w->redis, 4, argv, lens, err);
            if (!reply)
                return false;
            if (reply->type != REDIS_REPLY_STRING) {
                nps_error_set(err, "redis: unexpected reply reading %s: %s", key,
                              reply->type == REDIS_REPLY_ERROR ? reply->str : "not a string");
                freeReplyObject(reply);
                return false;
            }
            size_t n = reply->len / DEDUP_RECORD_BYTES;
            bool ok = true;
            for (size_t i = 0; ok && i < n; i++) {
                const char *r = reply->str + i * DEDUP_RECORD_BYTES;
                uint64_t hash;
                int64_t offset, ts;
                memcpy(&hash, r, 8);
                memcpy(&offset, r + 8, 8);
                memcpy(&ts, r + 16, 8);
                if (offset < below)
                    ok = nps_dedup_load(table, hash, offset, ts);
            }
            freeReplyObject(reply);
            if (!ok) {
                nps_error_set(err, "out of memory loading response ids");
                return false;
            }
            if (n < DEDUP_LOAD_RECORDS)
                break;
        }
    }
    return true;
}

/* Load the dedup tables of `parts` (fences as read_fences gives them). */
static bool load_dedups(worker *w, const rd_kafka_topic_partition_list_t *parts,
                        const int64_t *fences, nps_error *err)
{
    int nunits = w->pl->nunits;
    if (w->pl->config->dedup_horizon_ms <= 0)
        return true;
    for (int i = 0; i < parts->cnt; i++) {
        part_track *t = track(w, parts->elems[i].partition);
        if (t && !t->dedup)
            t->dedup = nps_dedup_new(w->pl->config->dedup_horizon_ms);
        if (!t || !t->dedup) {
            nps_error_set(err, "out of memory for a dedup table");
            return false;
        }
        int64_t lowest = INT64_MAX;
        for (int u = 0; u < nunits; u++) {
            int64_t f = fences[(size_t)i * (size_t)nunits + (size_t)u];
            lowest = f < lowest ? f : lowest;
        }
        if (!load_dedup(w, parts->elems[i].partition, lowest, t->dedup, err))
            return false;
    }
    return true;
}

/* Grow a table indexed by partition (zeroed new entries, doubling from
 * 64) so that index p exists. False when memory runs out. */
static bool grow_by_partition(void **table, int32_t *cap, size_t entry_size, int32_t p)
{
    if (p < *cap)
        return true;
    int32_t grown = *cap ? *cap : 64;
    while (grown <= p)
        grown *= 2;
    char *bigger = realloc(*table, (size_t)grown * entry_size);
    if (!bigger)
        return false;
    memset(bigger + (size_t)*cap * entry_size, 0, (size_t)(grown - *cap) * entry_size);
    *table = bigger;
    *cap = grown;
    return true;
}

static part_track *track(worker *w, int32_t p)
{
    if (p < 0 || !grow_by_partition((void **)&w->parts, &w->parts_cap, sizeof(*w->parts), p))
        return NULL;
    return &w->parts[p];
}

static void push_registration(pipeline *pl, const registration *reg)
{
    pthread_mutex_lock(&pl->lock);
    if (pl->nregs == pl->regs_cap) {
        size_t cap = pl->regs_cap ? pl->regs_cap * 2 : 64;
        registration *bigger = realloc(pl->regs, cap * sizeof(*bigger));
        if (!bigger) {
            pthread_mutex_unlock(&pl->lock);
            LOG(ERROR, "out of memory registering a partition; exiting");
            exit(1);
        }
        pl->regs = bigger;
        pl->regs_cap = cap;
    }
    pl->regs[pl->nregs++] = *reg;
    pthread_mutex_unlock(&pl->lock);
}

/* Read fences for `parts` (retrying while Redis is down), set each start
 * offset to the smallest fence, and register the partitions with the
 * flusher. False only when the pipeline stops first. */
static bool take_partitions(worker *w, rd_kafka_topic_partition_list_t *parts)
{
    pipeline *pl = w->pl;
    atomic_store(&w->lagging, true); /* until a batch after this says otherwise */
    int nunits = pl->nunits;
    int64_t *fences = calloc((size_t)parts->cnt * (size_t)nunits + 1, sizeof(int64_t));
    if (!fences) {
        LOG(ERROR, "out of memory taking partitions; exiting");
        exit(1);
    }
    nps_error err = {{0}};
    int64_t backoff = 100;
    bool logged = false;
    while (!read_fences(w, parts, fences, &err) || !load_dedups(w, parts, fences, &err)) {
        if (atomic_load(&pl->stop)) {
            free(fences);
            return false;
        }
        if (!logged)
            LOG(WARN, "worker %d: cannot read fences or response ids (%s); retrying", w->id,
                err.msg);
        logged = true;
        sleep_ms(backoff);
        backoff = backoff < 2000 ? backoff * 2 : 2000;
    }
    uint64_t epoch = atomic_load(&pl->epoch);
    w->epoch = epoch;
    for (int i = 0; i < parts->cnt; i++) {
        part_track *t = track(w, parts->elems[i].partition);
        if (!t) {
            LOG(ERROR, "out of memory tracking partitions; exiting");
            exit(1);
        }
        registration reg = {.partition = parts->elems[i].partition,
                            .owner = w->id,
                            .epoch = epoch,
                            .fence = malloc((size_t)nunits * sizeof(int64_t))};
        if (!t->fence)
            t->fence = malloc((size_t)nunits * sizeof(int64_t));
        if (!reg.fence || !t->fence) {
            LOG(ERROR, "out of memory taking partitions; exiting");
            exit(1);
        }
        int64_t lowest = INT64_MAX, highest = -1;
        for (int u = 0; u < nunits; u++) {
            int64_t f = fences[(size_t)i * (size_t)nunits + (size_t)u];
            t->fence[u] = reg.fence[u] = f;
            lowest = f < lowest ? f : lowest;
            highest = f > highest ? f : highest;
        }
        t->assigned = true;
        t->next = t->published = -1;
        t->max_fence = highest;
        t->min_fence = lowest;
        parts->elems[i].offset = lowest < 0 ? RD_KAFKA_OFFSET_BEGINNING : lowest;
        push_registration(pl, &reg);
    }
    free(fences);
    return true;
}

/* Ask the flusher for a flush and wait until one that began after the
 * request has completed, or the wait times out. */
static bool flush_and_wait(pipeline *pl, int64_t wait_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += wait_ms / 1000;
    deadline.tv_nsec += (wait_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&pl->lock);
    uint64_t ticket = ++pl->flush_requests;
    int rc = 0;
    while (pl->flushes_done < ticket && rc != ETIMEDOUT && !atomic_load(&pl->flusher_done))
        rc = pthread_cond_timedwait(&pl->flushed, &pl->lock, &deadline);
    bool done = pl->flushes_done >= ticket;
    pthread_mutex_unlock(&pl->lock);
    return done;
}

/* Hand over the current delta with the progress of every partition,
 * waiting for the flusher when `wait`. True when nothing is left to hand
 * over. */
static bool publish(worker *w, bool wait)
{
    nps_delta *delta = nps_shard_current(w->shard);
    delta->epoch = w->epoch;
    for (int32_t p = 0; p < w->parts_cap; p++) {
        part_track *t = &w->parts[p];
        if (t->assigned && t->next > t->published && !nps_delta_set_partition(delta, p, t->next)) {
            LOG(ERROR, "out of memory recording progress; exiting");
            exit(1);
        }
    }
    if (wait)
        nps_shard_drain(w->shard);
    else if (!nps_shard_publish(w->shard))
        return nps_delta_is_empty(delta);
    for (int32_t p = 0; p < w->parts_cap; p++)
        if (w->parts[p].assigned)
            w->parts[p].published = w->parts[p].next;
    return true;
}

static void release_partitions(worker *w, const rd_kafka_topic_partition_list_t *parts)
{
    pipeline *pl = w->pl;
    publish(w, true);
    if (!atomic_load(&pl->flusher_done) && !flush_and_wait(pl, REVOKE_FLUSH_WAIT_MS))
        LOG(WARN,
            "worker %d: revocation flush did not complete in %d ms; its counts stay "
            "pending (fences keep them exact)",
            w->id, REVOKE_FLUSH_WAIT_MS);
    for (int i = 0; i < parts->cnt; i++) {
        part_track *t = track(w, parts->elems[i].partition);
        if (t) {
            t->assigned = false;
            nps_dedup_destroy(t->dedup); /* the next owner loads it from Redis */
            t->dedup = NULL;
        }
        registration reg = {.partition = parts->elems[i].partition,
                            .owner = w->id,
                            .epoch = w->epoch,
                            .revoke = true};
        push_registration(pl, &reg);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (!take_partitions(w, parts)) {
            rd_kafka_assign(rk, NULL);
            return;
        }
        atomic_store(&w->assigned, parts->cnt);
        LOG(INFO, "worker %d: assigned %d partition(s)", w->id, parts->cnt);
        rd_kafka_resp_err_t aerr = rd_kafka_assign(rk, parts);
        if (aerr)
            LOG(WARN, "worker %d: assign failed: %s", w->id, rd_kafka_err2str(aerr));
    } else {
        release_partitions(w, parts);
        atomic_store(&w->assigned, 0);
        LOG(INFO, "worker %d: revoked %d partition(s)", w->id, parts->cnt);
        rd_kafka_assign(rk, NULL);
    }
}

/* The flusher bumped the epoch: drop what this worker counted, read the
 * fences again and seek every assigned partition to its smallest one. */
static void resync_worker(worker *w)
{
    atomic_store(&w->lagging, true); /* it reads again from the fences */
    nps_delta_clear(nps_shard_current(w->shard));
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(8);
    for (int32_t p = 0; p < w->parts_cap; p++)
        if (w->parts[p].assigned)
            rd_kafka_topic_partition_list_add(parts, w->pl->config->topic, p);
    w->epoch = atomic_load(&w->pl->epoch);
    if (parts->cnt > 0 && take_partitions(w, parts)) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(w->rk, parts, 10000);
        if (error) {
            LOG(WARN, "worker %d: seek after resync failed: %s", w->id,
                rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

/* Copy an invalid message to the dead-letter topic: value and key as they
 * were, the reason in headers. Never drops: waits while the queue is full. */
static void dead_letter(pipeline *pl, const rd_kafka_message_t *m, nps_invalid_reason reason,
                        const char *detail)
{
    char source[320];
    snprintf(source, sizeof(source), "%s/%d/%" PRId64, rd_kafka_topic_name(m->rkt),
             (int)m->partition, m->offset);
    const char *name = nps_invalid_reason_name(reason);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            pl->dlq, RD_KAFKA_V_TOPIC(pl->config->dead_letter_topic),
            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("npstream-reason", name, -1),
            RD_KAFKA_V_HEADER("npstream-detail", detail, -1),
            RD_KAFKA_V_HEADER("npstream-source", source, -1), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (err) {
                atomic_fetch_add(&pl->dlq_failed, 1);
                LOG(WARN, "dead-letter copy of %s failed: %s", source, rd_kafka_err2str(err));
            }
            return;
        }
        rd_kafka_poll(pl->dlq, 10);
    }
}

static void count_message(worker *w, const rd_kafka_message_t *m)
{
    part_track *t = track(w, m->partition);
    if (!t || !t->assigned || m->offset < t->next)
        return; /* not ours (any more), or already counted */
    rd_kafka_timestamp_type_t tstype;
    int64_t kafka_ts = rd_kafka_message_timestamp(m, &tstype);
    nps_invalid_reason reason;
    /* Below the highest fence some unit has applied this message already. */
    const int64_t *fences = m->offset < t->max_fence ? t->fence : NULL;
    nps_delta *delta = nps_shard_current(w->shard);
    if (kafka_ts > 0 && (delta->oldest_source_ms == 0 || kafka_ts < delta->oldest_source_ms))
        delta->oldest_source_ms = kafka_ts;
    char detail[256] = "";
    nps_shard_set_dedup(w->shard, t->dedup);
    nps_status status = nps_shard_add_fenced(w->shard, m->payload ? m->payload : "", m->len,
                                             kafka_ts, fences, w->pl->buckets, m->partition,
                                             m->offset, &reason, detail, sizeof(detail));
    if (status != NPS_OK) {
        LOG(ERROR, "worker %d: out of memory counting; exiting so nothing is lost", w->id);
        exit(1);
    }
    if (reason != NPS_VALID && w->pl->dlq && m->offset >= t->min_fence)
        dead_letter(w->pl, m, reason, detail);
    t->next = m->offset + 1;
}

/* Announce batch[i + 1] to the shard, which parses it while counting
 * batch[i] (nps_shard_next): its dedup table's cache miss then overlaps
 * work (bench/README.md, "Reading ahead": 424-434 to 348-350 ns per
 * event). Only with dedup on: without a table to load it saves nothing
 * and costs 5-14%.
 * A message that count_message then skips is harmless: the shard counts
 * only the message it is given. */
static void read_ahead(worker *w, rd_kafka_message_t *const *batch, ssize_t i, ssize_t n)
{
    if (i + 1 >= n || batch[i + 1]->err)
        return;
    const rd_kafka_message_t *m = batch[i + 1];
    part_track *t = track(w, m->partition);
    if (t && t->assigned && t->dedup)
        nps_shard_next(w->shard, m->payload ? m->payload : "", m->len, t->dedup);
}

/* Whether some partition of the worker is behind the high watermark the
 * last fetch reported (librdkafka's cached values; nothing is asked of
 * the broker) by more than one offset (the last may be a transaction's
 * marker, which is never delivered), or has no watermark yet. A partition
 * not read from yet stands at its lowest fence, or without one at the
 * low watermark. */
static bool partitions_lag(worker *w)
{
    for (int32_t p = 0; p < w->parts_cap; p++) {
        const part_track *t = &w->parts[p];
        if (!t->assigned)
            continue;
        int64_t low = -1, high = -1;
        rd_kafka_get_watermark_offsets(w->rk, w->pl->config->topic, p, &low, &high);
        int64_t at = t->next >= 0 ? t->next : t->min_fence >= 0 ? t->min_fence : low;
        if (high < 0 || at < 0 || high - at > 1)
            return true;
    }
    return false;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pipeline *pl = w->pl;
    rd_kafka_message_t *batch[NPS_BATCH_MESSAGES];
    uint64_t errors = 0;
    while (!atomic_load(&pl->stop)) {
        if (w->epoch != atomic_load(&pl->epoch))
            resync_worker(w);
        nps_shard_set_now(w->shard, nps_clock_now_ms(pl->config));
        ssize_t n =
            rd_kafka_consume_batch_queue(w->queue, BATCH_WAIT_MS, batch, NPS_BATCH_MESSAGES);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = batch[i];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && errors++ % 1000 == 0)
                    LOG(WARN, "worker %d: consumer error: %s", w->id, rd_kafka_message_errstr(m));
            } else if (w->epoch == atomic_load(&pl->epoch)) {
                read_ahead(w, batch, i, n);
                count_message(w, m);
                if (nps_shard_segments_at(w->shard, pl->config->max_segments))
                    publish(w, true);
            }
            rd_kafka_message_destroy(m);
        }
        nps_shard_next(w->shard, NULL, 0, NULL); /* the batch's messages are gone */
        if (n > 0)
            atomic_fetch_add(&w->messages, (uint64_t)n);
        /* A full batch means a backlog. A short one, once everything is
         * handed over and no partition lags (a short batch alone may only
         * mean that the fetches fell behind the worker), means it has
         * caught up: it tells the flusher, which publishes when no worker
         * lags, without waiting for its tick. */
        bool handed = publish(w, false);
        if (n == NPS_BATCH_MESSAGES) {
            atomic_store(&w->lagging, true);
            atomic_store(&w->behind, true);
        } else {
            bool lagging = !handed || partitions_lag(w);
            atomic_store(&w->lagging, lagging);
            if (!lagging && atomic_load(&w->behind)) {
                atomic_store(&w->behind, false);
                atomic_store(&pl->caught_up, true);
            }
        }
    }
    publish(w, true);
    atomic_store(&w->drained, true);
    /* Close only after the final flush, so the revocation finds nothing
     * pending and the group hands the partitions on at once. */
    while (!atomic_load(&pl->flusher_done))
        sleep_ms(5);
    rd_kafka_consumer_close(w->rk);
    return NULL;
}

/* --------------------------------------------------------------- flusher */

static fence_entry *entry(pipeline *pl, int32_t p)
{
    if (p < 0 || !grow_by_partition((void **)&pl->table, &pl->table_cap, sizeof(*pl->table), p))
        return NULL;
    return &pl->table[p];
}

static bool entry_pending(const pipeline *pl, const fence_entry *e)
{
    for (int u = 0; e->begin && u < pl->nunits; u++)
        if (e->end >= 0 && e->end != e->begin[u])
            return true;
    return false;
}

static void entry_reset(fence_entry *e)
{
    if (!e)
        return;
    free(e->begin);
    memset(e, 0, sizeof(*e));
}

/* Every unit runs its script on the next flush and reports again when a
 * pane of it leaves a window: after a resync, or when partitions move
 * (another instance may have written panes the last reports missed). */
static void forget_expiry(pipeline *pl)
{
    memset(pl->next_expiry_ms, 0, (size_t)pl->nunits * sizeof(*pl->next_expiry_ms));
}

/* Drop every pending count and make the workers start again from the
 * fences in Redis. */
static void resync(pipeline *pl, const char *why)
{
    LOG(WARN, "resync: %s; dropping unflushed counts and re-reading from the fences", why);
    nps_state_clear_counts(pl->pending);
    pl->detractors_len = 0;
    pl->ndetractors = 0;
    pl->ndedup_pending = 0;
    pl->ndedup_cmds = 0;
    forget_expiry(pl);
    for (int32_t p = 0; p < pl->table_cap; p++)
        entry_reset(&pl->table[p]);
    pl->outstanding = false;
    pl->pending_oldest_ms = pl->flush_oldest_ms = 0;
    atomic_fetch_add(&pl->epoch, 1);
    atomic_fetch_add(&pl->resyncs, 1);
}

/* Returns whether there were any. */
static bool apply_registrations(pipeline *pl)
{
    pthread_mutex_lock(&pl->lock);
    registration *regs = pl->regs;
    size_t n = pl->nregs;
    pl->regs = NULL;
    pl->nregs = pl->regs_cap = 0;
    pthread_mutex_unlock(&pl->lock);
    uint64_t epoch = atomic_load(&pl->epoch);
    for (size_t i = 0; i < n; i++) {
        const registration *r = &regs[i];
        fence_entry *e = entry(pl, r->partition);
        if (r->epoch != epoch || !e)
            continue; /* the worker registers again after the resync */
        if (r->revoke) {
            if (e->registered && e->owner == r->owner)
                e->owner = -1;
            if (!entry_pending(pl, e) && !(pl->outstanding && e->flush_end >= 0))
                entry_reset(e);
            continue;
        }
        if (e->registered && (entry_pending(pl, e) || (pl->outstanding && e->flush_end >= 0))) {
            char why[128];
            snprintf(why, sizeof(why), "partition %d taken over while it had unflushed counts",
                     (int)r->partition);
            resync(pl, why);
            epoch = atomic_load(&pl->epoch);
            continue;
        }
        e->registered = true;
        e->owner = r->owner;
        free(e->begin);
        e->begin = r->fence; /* taken over */
        regs[i].fence = NULL;
        e->end = e->flush_end = -1;
    }
    for (size_t i = 0; i < n; i++)
        free(regs[i].fence);
    free(regs);
    if (n > 0)
        forget_expiry(pl);
    return n > 0;
}

/* Keep the newest `keep` pending detractor entries: while Redis is down
 * they would otherwise grow with events, and the stream's MAXLEN would
 * trim the older ones anyway (and from a flush of more than the cap). */
static void trim_detractors(pipeline *pl, uint32_t keep)
{
    size_t pos = 0;
    uint32_t drop = pl->ndetractors - keep;
    for (uint32_t i = 0; i < drop; i++)
        nps_detractor_skip(pl->detractors, &pos);
    memmove(pl->detractors, pl->detractors + pos, pl->detractors_len - pos);
    pl->detractors_len -= pos;
    pl->ndetractors = keep;
    atomic_fetch_add(&pl->detractors_trimmed, drop);
}

/* Keep a delta's first occurrences of response ids for the next flush
 * (while Redis is down they grow by 32 bytes per new id). */
static bool append_dedup_records(pipeline *pl, const nps_delta *delta)
{
    uint32_t need = pl->ndedup_pending + delta->ndedup_records;
    if (need > pl->dedup_pending_cap) {
        uint32_t cap = pl->dedup_pending_cap ? pl->dedup_pending_cap : 1024;
        while (cap < need)
            cap *= 2;
        nps_dedup_record *bigger = realloc(pl->dedup_pending, (size_t)cap * sizeof(*bigger));
        if (!bigger)
            return false;
        pl->dedup_pending = bigger;
        pl->dedup_pending_cap = cap;
    }
    if (delta->ndedup_records)
        memcpy(pl->dedup_pending + pl->ndedup_pending, delta->dedup_records,
               (size_t)delta->ndedup_records * sizeof(*delta->dedup_records));
    pl->ndedup_pending = need;
    return true;
}

static void merge_delta(pipeline *pl, nps_delta *delta)
{
    if (delta->epoch != atomic_load(&pl->epoch))
        return; /* counted before a resync */
    nps_error err = {{0}};
    if (nps_state_merge(pl->pending, delta, nps_clock_now_ms(pl->config), &err) != NPS_OK) {
        LOG(ERROR, "%s; exiting so nothing is lost", err.msg);
        exit(1);
    }
    if (!nps_detractors_append(&pl->detractors, &pl->detractors_len, &pl->detractors_cap,
                               delta->detractors, delta->detractors_len)) {
        LOG(ERROR, "out of memory keeping detractor responses; exiting so nothing is lost");
        exit(1);
    }
    pl->ndetractors += delta->ndetractors;
    if (!append_dedup_records(pl, delta)) {
        LOG(ERROR, "out of memory keeping response ids; exiting so nothing is lost");
        exit(1);
    }
    uint64_t maxlen = (uint64_t)pl->config->detractors_maxlen;
    if (maxlen && pl->ndetractors > 2 * maxlen)
        trim_detractors(pl, (uint32_t)maxlen);
    if (delta->oldest_source_ms &&
        (!pl->pending_oldest_ms || delta->oldest_source_ms < pl->pending_oldest_ms))
        pl->pending_oldest_ms = delta->oldest_source_ms;
    for (uint32_t i = 0; i < delta->npartitions; i++) {
        fence_entry *e = entry(pl, delta->partitions[i].partition);
        if (!e || !e->registered) {
            resync(pl, "progress for a partition that is not registered");
            return;
        }
        if (delta->partitions[i].next_offset > e->end)
            e->end = delta->partitions[i].next_offset;
    }
}

/* Append to the last argument (the segment's entries being built). */
static bool payload_extend(unit_payload *u, const void *data, size_t len)
{
    if (u->len + len > u->cap) {
        size_t cap = u->cap ? u->cap : 4096;
        while (cap < u->len + len)
            cap *= 2;
        char *bigger = realloc(u->buf, cap);
        if (!bigger)
            return false;
        u->buf = bigger;
        u->cap = cap;
    }
    if (len)
        memcpy(u->buf + u->len, data, len);
    u->len += len;
    u->lens[u->argc - 1] += len;
    return true;
}

/* Start a new argument holding `data`. */
static bool payload_arg(unit_payload *u, const void *data, size_t len)
{
    if (u->argc == u->argv_cap) {
        int cap = u->argv_cap ? u->argv_cap * 2 : 64;
        size_t *o = realloc(u->offsets, (size_t)cap * sizeof(size_t));
        if (o)
            u->offsets = o;
        size_t *l = realloc(u->lens, (size_t)cap * sizeof(size_t));
        if (l)
            u->lens = l;
        if (!o || !l)
            return false;
        u->argv_cap = cap;
    }
    u->offsets[u->argc] = u->len;
    u->lens[u->argc++] = 0;
    return payload_extend(u, data, len);
}

static bool payload_str(unit_payload *u, const char *s)
{
    return payload_arg(u, s, strlen(s));
}

static bool put_entry(unit_payload *u, int window, int64_t pane, const nps_counts *c)
{
    unsigned char rec[1 + 8 + 8 * NF];
    int64_t v[NF];
    for (int b = 0; b < NPS_BUCKETS; b++)
        v[b] = (int64_t)c->h[b];
    v[NPS_BUCKETS] = (int64_t)c->sent;
    for (int k = 0; k < NPS_CLASSES; k++)
        v[NPS_BUCKETS + 1 + k] = (int64_t)c->value[k];
    rec[0] = (unsigned char)window;
    memcpy(rec + 1, &pane, 8);
    memcpy(rec + 9, v, sizeof(v));
    return payload_extend(u, rec, sizeof(rec));
}

/* A segment's theme sketches after its counts: per (window, pane, class)
 * "<BBi8BBB" 255, window index, pane index, class, capacity, n, then n
 * times "<I4B" count, length and the term's bytes. */
static bool put_themes(pipeline *pl, int view, size_t s, unit_payload *u)
{
    uint32_t n;
    const nps_state_theme *themes = nps_state_themes(pl->pending, view, s, &n);
    const nps_term_dict *terms = nps_state_terms(pl->pending);
    for (uint32_t i = 0; i < n; i++) {
        const nps_state_theme *t = &themes[i];
        unsigned char head[1 + 1 + 8 + 3];
        head[0] = 255;
        head[1] = (unsigned char)t->window;
        memcpy(head + 2, &t->index, 8);
        head[10] = (unsigned char)t->klass;
        head[11] = NPS_THEME_CAPACITY;
        head[12] = (unsigned char)t->sketch.n;
        if (!payload_extend(u, head, sizeof(head)))
            return false;
        for (uint32_t k = 0; k < t->sketch.n; k++) {
            nps_str text = nps_term_dict_get(terms, t->sketch.e[k].term);
            unsigned char rec[4 + 1];
            uint32_t count = (uint32_t)t->sketch.e[k].count;
            memcpy(rec, &count, 4);
            rec[4] = (unsigned char)text.len;
            if (!payload_extend(u, rec, sizeof(rec)) || !payload_extend(u, text.ptr, text.len))
                return false;
        }
    }
    return true;
}

/* Append one segment's entries (every pane of every finite window, then
 * `total`) to its unit's payload. */
static bool encode_segment(pipeline *pl, int view, size_t s, unit_payload *u)
{
    int total_w = pl->config->windows.n - 1;
    uint32_t npanes;
    nps_counts total;
    nps_state_panes(pl->pending, view, s, total_w, &npanes, &total);
    if (nps_counts_is_zero(&total))
        return true; /* nothing new for this segment */
    if (!payload_str(u, nps_state_segment_name(pl->pending, view, s)) || !payload_arg(u, "", 0))
        return false;
    for (int w = 0; w < total_w; w++) {
        nps_counts wt;
        const nps_state_pane *panes = nps_state_panes(pl->pending, view, s, w, &npanes, &wt);
        for (uint32_t k = 0; k < npanes; k++)
            if (!put_entry(u, w, panes[k].index, &panes[k].counts))
                return false;
    }
    return put_entry(u, total_w, 0, &total) && put_themes(pl, view, s, u);
}

/* `v` (>= 0) in decimal at `out` (room for 20 digits); returns the
 * number of digits. snprintf costs several times more, per number of
 * each detractor entry. */
static size_t format_decimal(char *out, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return n;
}

/* One value of a detractor entry: a little-endian uint32 length, then
 * the bytes (flush.lua reads it with struct.unpack's I4c0). */
static bool put_value(unit_payload *u, const char *bytes, size_t len)
{
    uint32_t n = (uint32_t)len;
    return payload_extend(u, &n, 4) && payload_extend(u, bytes, len);
}

static bool put_number(unit_payload *u, int64_t v)
{
    char text[24];
    size_t n = 0;
    if (v < 0) {
        text[n++] = '-';
        n += format_decimal(text + n, 0 - (uint64_t)v);
    } else {
        n = format_decimal(text, (uint64_t)v);
    }
    return put_value(u, text, n);
}

/* A detractor entry's values in ARGV[15]'s order; the optional value and
 * comment are empty when absent. */
static bool put_detractor(unit_payload *u, const nps_detractor *d)
{
    char money[32];
    size_t money_len = 0;
    if (d->has_value) { /* cents >= 0, written with two decimals */
        money_len = format_decimal(money, (uint64_t)d->value_cents / 100);
        money[money_len++] = '.';
        money[money_len++] = (char)('0' + d->value_cents % 100 / 10);
        money[money_len++] = (char)('0' + d->value_cents % 10);
    }
    bool ok =
        put_value(u, d->id.ptr, d->id.len) && put_number(u, d->score) && put_number(u, d->ts_ms);
    for (int i = 0; ok && i < d->ndims; i++)
        ok = put_value(u, d->dims[i].ptr, d->dims[i].len);
    return ok && put_value(u, money, money_len) && put_value(u, d->comment.ptr, d->comment.len) &&
           put_number(u, d->partition) && put_number(u, d->offset);
}

/* Detractor entries reach Redis in arguments of about this many bytes
 * (of records), so no argument nears Redis's proto-max-bulk-len. */
#define DETRACTOR_CHUNK_BYTES (1u << 20)

/* Whether the next record, `record_bytes` long, starts a new argument;
 * counts it into *chunk_bytes (DETRACTOR_CHUNK_BYTES before the first). */
static bool starts_chunk(size_t *chunk_bytes, size_t record_bytes)
{
    bool starts = *chunk_bytes >= DETRACTOR_CHUNK_BYTES;
    *chunk_bytes = (starts ? 0 : *chunk_bytes) + record_bytes;
    return starts;
}

/* Group the pending detractor records by the unit that appends them
 * (the detractor view's unit of nps_detractor_unit_bucket), keeping their order
 * within a unit: detractor_at and detractor_start. After the trim of a
 * backlog's flush to the newest --detractors-maxlen. False when memory
 * runs out. */
static bool group_detractors(pipeline *pl)
{
    uint64_t maxlen = (uint64_t)pl->config->detractors_maxlen;
    if (maxlen && pl->ndetractors > maxlen)
        trim_detractors(pl, (uint32_t)maxlen);
    uint32_t n = pl->ndetractors, *start = pl->detractor_start;
    if (n > pl->detractor_at_cap) {
        size_t *bigger = realloc(pl->detractor_at, (size_t)n * sizeof(*bigger));
        if (!bigger)
            return false;
        pl->detractor_at = bigger;
        pl->detractor_at_cap = n;
    }
    memset(start, 0, ((size_t)pl->nunits + 1) * sizeof(*start));
    int first = pl->detractor_view * (int)pl->buckets;
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) { /* count per unit, into start[u + 1] */
        start[first + (int)nps_detractor_bucket(pl->detractors, pos, pl->buckets) + 1]++;
        nps_detractor_skip(pl->detractors, &pos);
    }
    for (int u = 0; u < pl->nunits; u++)
        start[u + 1] += start[u];
    pos = 0; /* place each, start[u] moving to unit u's end */
    for (uint32_t i = 0; i < n; i++) {
        int u = first + (int)nps_detractor_bucket(pl->detractors, pos, pl->buckets);
        pl->detractor_at[start[u]++] = pos;
        nps_detractor_skip(pl->detractors, &pos);
    }
    for (int u = pl->nunits; u > 0; u--) /* back to where each unit's records begin */
        start[u] = start[u - 1];
    start[0] = 0;
    return true;
}

/* Unit `unit`'s pending detractor entries as flush.lua's ARGV[14..]: D,
 * the number of arguments that follow; when D > 0 the field names
 * (ARGV[15]), then the entries in chunks of about DETRACTOR_CHUNK_BYTES,
 * each entry its values back to back. Numbers are formatted here, on the
 * flusher, and Redis parses a few large arguments instead of two per
 * field. */
static bool encode_detractors(pipeline *pl, int unit, unit_payload *u)
{
    uint32_t from = pl->detractor_start[unit], to = pl->detractor_start[unit + 1];
    size_t nchunks = 0, chunk_bytes = DETRACTOR_CHUNK_BYTES;
    for (uint32_t i = from; i < to; i++) {
        size_t at = pl->detractor_at[i], pos = at;
        nps_detractor_skip(pl->detractors, &pos);
        nchunks += starts_chunk(&chunk_bytes, pos - at);
    }
    char num[32];
    snprintf(num, sizeof(num), "%zu", nchunks ? nchunks + 1 : 0);
    bool ok = payload_str(u, num);
    if (nchunks)
        ok = ok && payload_str(u, pl->detractor_fields_arg);
    chunk_bytes = DETRACTOR_CHUNK_BYTES;
    for (uint32_t i = from; ok && i < to; i++) {
        size_t at = pl->detractor_at[i], pos = at;
        nps_detractor d;
        nps_detractor_read(pl->detractors, &pos, &d);
        if (starts_chunk(&chunk_bytes, pos - at))
            ok = payload_arg(u, "", 0);
        ok = ok && put_detractor(u, &d);
    }
    return ok;
}

/* The fixed arguments of a unit (flush.lua's ARGV[1..14]), then its
 * detractor entries. */
static bool encode_header(pipeline *pl, int unit, int64_t now, unit_payload *u)
{
    const nps_config *config = pl->config;
    int view = unit / (int)pl->buckets;
    const nps_view *vw = &config->views.views[view];
    char dims[512] = "", num[64], flush_id[128];
    for (int d = 0; d < vw->ndims; d++) {
        size_t len = strlen(dims);
        snprintf(dims + len, sizeof(dims) - len, "%s%s", d ? "," : "",
                 config->views.dim_names[vw->dim[d]]);
    }
    snprintf(num, sizeof(num), "%" PRId64, now);
    snprintf(flush_id, sizeof(flush_id), "%s:%" PRIu64, pl->instance, pl->flush_seq);
    u->argc = 0;
    u->len = 0;
    u->done = false;
    bool ok = payload_str(u, config->prefix) && payload_str(u, config->group) &&
              payload_str(u, config->topic) && payload_str(u, pl->unit_names[unit]) &&
              payload_str(u, vw->name) && payload_str(u, dims) && payload_str(u, num) &&
              payload_str(u, flush_id) &&
              payload_str(u, pl->windows_arg[nps_view_keeps(config->themes_off, view)]) &&
              payload_arg(u, "", 0);
    for (int32_t p = 0; ok && p < pl->table_cap; p++) {
        const fence_entry *e = &pl->table[p];
        if (!e->registered || e->flush_end < 0 || e->flush_end == e->begin[unit])
            continue;
        char part[96];
        int n = snprintf(part, sizeof(part), "%s%d:%" PRId64 ":%" PRId64,
                         u->lens[u->argc - 1] ? ";" : "", (int)p, e->begin[unit], e->flush_end);
        ok = payload_extend(u, part, (size_t)n);
    }
    ok = ok && payload_str(u, nps_view_keeps(config->alerts_off, view) ? pl->alerts_arg : "") &&
         payload_str(u, pl->bench_args[view]) && payload_str(u, pl->maxlen_arg);
    return ok && encode_detractors(pl, unit, u);
}

/* One day key's new first occurrences: append their records, then set
 * the key's time to live. ARGV: ttl ms, the records. */
static const char dedup_lua[] = "redis.call('APPEND', KEYS[1], ARGV[2])\n"
                                "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                                "return #ARGV[2] / 24\n";

static int compare_dedup_records(const void *a, const void *b)
{
    const nps_dedup_record *x = a, *y = b;
    int64_t dx = floor_div(x->ts_ms, DAY_MS), dy = floor_div(y->ts_ms, DAY_MS);
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    if (dx != dy)
        return dx < dy ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* A new, empty command for the outstanding flush's id writes. */
static unit_payload *new_dedup_cmd(pipeline *pl)
{
    if (pl->ndedup_cmds == pl->dedup_cmds_cap) {
        int cap = pl->dedup_cmds_cap ? pl->dedup_cmds_cap * 2 : 16;
        unit_payload *bigger = realloc(pl->dedup_cmds, (size_t)cap * sizeof(*bigger));
        if (!bigger)
            return NULL;
        memset(bigger + pl->dedup_cmds_cap, 0,
               (size_t)(cap - pl->dedup_cmds_cap) * sizeof(*bigger));
        pl->dedup_cmds = bigger;
        pl->dedup_cmds_cap = cap;
    }
    unit_payload *u = &pl->dedup_cmds[pl->ndedup_cmds++];
    u->argc = 0;
    u->len = 0;
    u->done = false;
    return u;
}

/* Order the pending first occurrences as compare_dedup_records does, in
 * linear time for what a flush usually holds: a stable counting pass by
 * partition into the spare buffer, after which a partition's run is
 * already in (day, offset) order (its one worker hands its records over
 * in offset order, and its events mostly fall on one day); a run that is
 * not, or every record when the spare buffer cannot grow, is sorted.
 * A flush after a backlog holds a record per event: with qsort, the
 * glibc merge sort and its comparisons were 5% of the engine's CPU
 * profile reading a backlog of 1 M events (bench/README.md). */
static void sort_dedup_records(pipeline *pl)
{
    uint32_t n = pl->ndedup_pending;
    nps_dedup_record *in = pl->dedup_pending;
    int32_t top = 0, bottom = 0;
    for (uint32_t i = 0; i < n; i++) {
        top = in[i].partition > top ? in[i].partition : top;
        bottom = in[i].partition < bottom ? in[i].partition : bottom;
    }
    size_t *start = NULL;
    if (n > pl->dedup_spare_cap) {
        nps_dedup_record *bigger =
            realloc(pl->dedup_spare, (size_t)pl->dedup_pending_cap * sizeof(*bigger));
        if (bigger) {
            pl->dedup_spare = bigger;
            pl->dedup_spare_cap = pl->dedup_pending_cap;
        }
    }
    if (n < 2 || n > pl->dedup_spare_cap || bottom < 0 ||
        !(start = calloc((size_t)top + 2, sizeof(*start)))) {
        if (n > 1)
            qsort(in, n, sizeof(*in), compare_dedup_records);
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        start[in[i].partition + 1]++;
    for (int32_t p = 0; p <= top; p++)
        start[p + 1] += start[p];
    nps_dedup_record *out = pl->dedup_spare;
    for (uint32_t i = 0; i < n; i++)
        out[start[in[i].partition]++] = in[i];
    /* start[p] is now where partition p's run ends */
    for (size_t p = 0, from = 0; p <= (size_t)top; from = start[p], p++)
        for (size_t i = from + 1; i < start[p]; i++)
            if (compare_dedup_records(&out[i - 1], &out[i]) > 0) {
                qsort(out + from, start[p] - from, sizeof(*out), compare_dedup_records);
                break;
            }
    free(start);
    pl->dedup_spare = in;
    pl->dedup_pending = out;
    uint32_t cap = pl->dedup_spare_cap;
    pl->dedup_spare_cap = pl->dedup_pending_cap;
    pl->dedup_pending_cap = cap;
}

/* Turn the pending first occurrences into one command per (partition,
 * day) key (at most DEDUP_RECORDS_PER_CMD records each). The key lives
 * until its day plus the horizon, counted on the engine clock (which
 * --now and --time-scale may move away from Redis's), hence PEXPIRE. */
static bool encode_dedup(pipeline *pl, int64_t now)
{
    pl->ndedup_cmds = 0;
    sort_dedup_records(pl);
    unit_payload *u = NULL;
    int32_t partition = -1;
    int64_t day = 0;
    int records = 0;
    bool ok = true;
    for (uint32_t i = 0; ok && i < pl->ndedup_pending; i++) {
        const nps_dedup_record *r = &pl->dedup_pending[i];
        int64_t d = floor_div(r->ts_ms, DAY_MS);
        if (!u || r->partition != partition || d != day || records == DEDUP_RECORDS_PER_CMD) {
            char key[640], ttl[32];
            partition = r->partition;
            day = d;
            records = 0;
            dedup_key(pl->config, partition, day, key, sizeof(key));
            int64_t ttl_ms = (day + 1) * DAY_MS + pl->config->dedup_horizon_ms - now;
            snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms > 1000 ? ttl_ms : 1000);
            u = new_dedup_cmd(pl);
            ok = u && payload_str(u, "EVAL") && payload_str(u, dedup_lua) && payload_str(u, "1") &&
                 payload_str(u, key) && payload_str(u, ttl) && payload_arg(u, "", 0);
        }
        unsigned char rec[DEDUP_RECORD_BYTES];
        memcpy(rec, &r->hash, 8);
        memcpy(rec + 8, &r->offset, 8);
        memcpy(rec + 16, &r->ts_ms, 8);
        ok = ok && payload_extend(u, rec, sizeof(rec));
        records++;
    }
    pl->ndedup_pending = 0;
    return ok;
}

/* flush.lua's fixed arguments (ARGV[1..14]); a unit with no more has no
 * segment and no detractor entry to write. */
#define FLUSH_HEADER_ARGS 14

/* Take the quiet units out of the flush: a unit with nothing to write
 * whose next pane leaves no window before now is not sent; its fences,
 * when they move, go into quiet_cmd. A flush left with nothing to send
 * sends a PING there. */
static bool encode_quiet(pipeline *pl, int64_t now)
{
    unit_payload *q = &pl->quiet_cmd;
    q->argc = 0;
    q->len = 0;
    q->done = true;
    pl->nquiet = 0;
    for (int u = 0; u < pl->nunits; u++) {
        unit_payload *up = &pl->units[u];
        if (up->argc != FLUSH_HEADER_ARGS || now >= pl->next_expiry_ms[u])
            continue;
        up->done = true; /* not sent */
        if (up->lens[9] == 0)
            continue;  /* no fence moves either */
        if (q->done) { /* flush.lua with no unit: the quiet units' fences */
            if (!payload_str(q, pl->config->prefix) || !payload_str(q, pl->config->group) ||
                !payload_str(q, pl->config->topic) || !payload_str(q, ""))
                return false;
            q->done = false;
        }
        if (!payload_str(q, pl->unit_names[u]) ||
            !payload_arg(q, up->buf + up->offsets[9], up->lens[9]))
            return false;
        pl->quiet_units[pl->nquiet++] = u;
    }
    bool idle = q->done && pl->ndedup_cmds == 0;
    for (int u = 0; idle && u < pl->nunits; u++)
        idle = pl->units[u].done;
    if (idle) { /* a PING, so that an idle engine still notices Redis going away */
        if (!payload_str(q, "PING"))
            return false;
        q->done = false;
    }
    return true;
}

/* Cut the pending counts into one payload per unit and start sending. */
static void start_flush(pipeline *pl)
{
    /* Dead-letter copies of the messages this flush covers are delivered
     * before their fences move: a crash after it cannot lose them. */
    if (pl->dlq && rd_kafka_flush(pl->dlq, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        LOG(WARN, "dead-letter topic %s: %d copies still undelivered after 10 s",
            pl->config->dead_letter_topic, rd_kafka_outq_len(pl->dlq));
    pthread_mutex_lock(&pl->lock);
    pl->outstanding_ticket = pl->flush_requests;
    pthread_mutex_unlock(&pl->lock);
    pl->flush_seq++;
    for (int32_t p = 0; p < pl->table_cap; p++)
        pl->table[p].flush_end = pl->table[p].registered ? pl->table[p].end : -1;
    int64_t now = nps_clock_now_ms(pl->config);
    int64_t encode_from_us = mono_us();
    /* Past the cap, the scripts' MAXLEN would trim the oldest detractor
     * entries right after appending them, where no reader sees them: a
     * flush of a backlog leaves them out instead (group_detractors). */
    bool ok = encode_dedup(pl, now) && group_detractors(pl);
    for (int u = 0; ok && u < pl->nunits; u++)
        ok = encode_header(pl, u, now, &pl->units[u]);
    pl->flush_detractors = pl->ndetractors;
    pl->detractors_len = 0;
    pl->ndetractors = 0;
    /* One pass over each view's segments, each to its bucket's unit. */
    for (int v = 0; ok && v < pl->nviews; v++) {
        size_t nseg = nps_state_segment_count(pl->pending, v);
        for (size_t s = 0; ok && s < nseg; s++) {
            uint32_t b = nps_state_segment_bucket(pl->pending, v, s);
            ok = encode_segment(pl, v, s, &pl->units[(size_t)v * pl->buckets + b]);
        }
    }
    ok = ok && encode_quiet(pl, now);
    if (!ok) {
        LOG(ERROR, "out of memory encoding a flush; exiting so nothing is lost");
        exit(1);
    }
    nps_state_clear_counts(pl->pending);
    pl->flush_encode_us = mono_us() - encode_from_us;
    pl->flush_oldest_ms = pl->pending_oldest_ms;
    pl->pending_oldest_ms = 0;
    pl->outstanding = true;
    pl->retry_at_ms = 0;
}

static void set_redis_state(pipeline *pl, bool ok, const char *msg)
{
    if (ok == !pl->redis_down)
        return;
    pl->redis_down = !ok;
    atomic_store(&pl->redis_ok, ok);
    if (ok)
        LOG(INFO, "redis %s is back; publishing", nps_redis_address(pl->redis));
    else
        LOG(WARN, "%s; still consuming and aggregating, retrying with backoff", msg);
}

/* Fences advanced: commit the smallest fence of each owned partition to
 * Kafka, for lag tools (advisory; restarts read the fences). */
static void commit_offsets(pipeline *pl)
{
    for (int wi = 0; wi < pl->nworkers; wi++) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
        for (int32_t p = 0; p < pl->table_cap; p++) {
            const fence_entry *e = &pl->table[p];
            if (!e->registered || e->owner != wi)
                continue;
            int64_t lowest = INT64_MAX;
            for (int u = 0; u < pl->nunits; u++)
                lowest = e->begin[u] < lowest ? e->begin[u] : lowest;
            if (lowest >= 0 && lowest != INT64_MAX)
                rd_kafka_topic_partition_list_add(list, pl->config->topic, p)->offset = lowest;
        }
        if (list->cnt > 0)
            rd_kafka_commit(pl->workers[wi].rk, list, 1);
        rd_kafka_topic_partition_list_destroy(list);
    }
}

static void observe(histogram *h, const double *bounds, int nbounds, double value)
{
    int i = 0;
    while (i < nbounds && value > bounds[i])
        i++;
    h->counts[i]++;
    h->sum += value;
    h->n++;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* @locality flusher. After a flush: its duration, the freshness of its
 * oldest event, segments per view, and lag per owned partition. */
static void record_flush(pipeline *pl, double seconds)
{
    pthread_mutex_lock(&pl->metrics_lock);
    metrics *m = &pl->m;
    observe(&m->flush, flush_bounds, FLUSH_BUCKETS, seconds);
    if (pl->flush_oldest_ms) {
        double age = (double)(wall_ms() - pl->flush_oldest_ms) / 1000.0;
        observe(&m->fresh, fresh_bounds, FRESH_BUCKETS, age > 0 ? age : 0);
    }
    for (int v = 0; v < pl->nviews; v++)
        m->segments[v] = nps_state_segment_count(pl->pending, v);
    m->nlags = 0;
    for (int32_t p = 0; p < pl->table_cap; p++) {
        const fence_entry *e = &pl->table[p];
        int64_t low, high;
        if (!e->registered || e->owner < 0 || e->end < 0 ||
            rd_kafka_get_watermark_offsets(pl->workers[e->owner].rk, pl->config->topic, p, &low,
                                           &high) != RD_KAFKA_RESP_ERR_NO_ERROR)
            continue;
        if (m->nlags == m->lags_cap) {
            size_t cap = m->lags_cap ? m->lags_cap * 2 : 64;
            partition_lag *bigger = realloc(m->lags, cap * sizeof(*bigger));
            if (!bigger)
                break;
            m->lags = bigger;
            m->lags_cap = cap;
        }
        m->lags[m->nlags++] = (partition_lag){p, high > e->end ? high - e->end : 0};
    }
    m->last_flush_mono_ms = mono_ms();
    pthread_mutex_unlock(&pl->metrics_lock);
}

static void finish_flush(pipeline *pl, int64_t started_us)
{
    for (int32_t p = 0; p < pl->table_cap; p++) {
        fence_entry *e = &pl->table[p];
        if (!e->registered || e->flush_end < 0)
            continue;
        for (int u = 0; u < pl->nunits; u++)
            e->begin[u] = e->flush_end;
        e->flush_end = -1;
        if (e->owner < 0 && !entry_pending(pl, e))
            entry_reset(e);
    }
    pl->outstanding = false;
    pl->ndedup_cmds = 0;
    atomic_fetch_add(&pl->detractors_appended, pl->flush_detractors);
    if (pl->flush_is_catch_up)
        atomic_fetch_add(&pl->catch_up_flushes, 1);
    commit_offsets(pl);
    int64_t took_us = mono_us() - started_us;
    LOG(DEBUG, "flush %" PRIu64 "%s: encoded in %.1f ms, applied in %.1f ms; %u detractor entries",
        pl->flush_seq, pl->flush_is_catch_up ? " (a backlog's end)" : "",
        (double)pl->flush_encode_us / 1000, (double)took_us / 1000, pl->flush_detractors);
    pl->flush_detractors = 0;
    atomic_store(&pl->last_flush_us, took_us);
    record_flush(pl, (double)took_us / 1e6);
    atomic_fetch_add(&pl->flushes, 1);
    pthread_mutex_lock(&pl->lock);
    if (pl->outstanding_ticket > pl->flushes_done)
        pl->flushes_done = pl->outstanding_ticket;
    pthread_cond_broadcast(&pl->flushed);
    pthread_mutex_unlock(&pl->lock);
}

/* Judge one unit's reply. False on a fence mismatch or script error,
 * after which the flusher has resynced. */
static bool unit_reply(pipeline *pl, int unit, redisReply *reply)
{
    const char *status = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                                 reply->element[0]->type == REDIS_REPLY_STRING
                             ? reply->element[0]->str
                             : NULL;
    if (status && strcmp(status, "ok") == 0) {
        if (reply->elements >= 3) {
            atomic_fetch_add(&pl->segments_written, (uint64_t)reply->element[1]->integer);
            atomic_fetch_add(&pl->expired_panes, (uint64_t)reply->element[2]->integer);
        }
        pl->next_expiry_ms[unit] = 0;
        if (reply->elements >= 4 && reply->element[3]->type == REDIS_REPLY_INTEGER)
            pl->next_expiry_ms[unit] =
                reply->element[3]->integer < 0 ? INT64_MAX : reply->element[3]->integer;
        pl->units[unit].done = true;
        return true;
    }
    if (status && strcmp(status, "applied") == 0) {
        pl->units[unit].done = true; /* its reply was lost; Redis has it */
        pl->next_expiry_ms[unit] = 0;
        return true;
    }
    char why[512];
    if (status && strcmp(status, "mismatch") == 0 && reply->elements >= 2)
        snprintf(why, sizeof(why), "unit %s: fence moved by someone else (stored %s)",
                 pl->unit_names[unit], reply->element[1]->str);
    else
        snprintf(why, sizeof(why), "unit %s: flush script failed: %s", pl->unit_names[unit],
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    atomic_fetch_add(&pl->mismatches, 1);
    resync(pl, why);
    return false;
}

/* Judge the reply to the quiet units' fences: 1 done, 0 a mismatch
 * (after which the flusher has resynced), -1 failed (sent again later). */
static int quiet_reply(pipeline *pl, const redisReply *reply)
{
    if (pl->nquiet == 0 && reply->type == REDIS_REPLY_STATUS) { /* the idle PING */
        pl->quiet_cmd.done = true;
        return 1;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)pl->nquiet) {
        LOG(WARN, "moving the fences of %d quiet units failed: %s; retrying", pl->nquiet,
            reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        return -1;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *r = reply->element[i];
        if (r->type == REDIS_REPLY_INTEGER)
            continue;
        char why[512];
        snprintf(why, sizeof(why), "unit %s: fence moved by someone else (stored %s)",
                 pl->unit_names[pl->quiet_units[i]], r->type == REDIS_REPLY_STRING ? r->str : "?");
        atomic_fetch_add(&pl->mismatches, 1);
        resync(pl, why);
        return 0;
    }
    pl->quiet_cmd.done = true;
    return 1;
}

/* Judge the reply to one command writing response ids; false leaves it
 * to be sent again. */
static bool dedup_reply(pipeline *pl, int cmd, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER) {
        LOG(WARN, "storing response ids failed: %s; retrying",
            reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        return false;
    }
    pl->dedup_cmds[cmd].done = true;
    atomic_fetch_add(&pl->dedup_ids_written, (uint64_t)reply->integer);
    return true;
}

/* Send the id writes and units not yet applied, pipelined, the id writes
 * first: Redis runs one connection's commands in order, so no fence
 * passes an offset whose response id is not stored. Returns when all are
 * done, on a fence mismatch (resync) or on a Redis failure (retry
 * later). */
static void send_units(pipeline *pl)
{
    int64_t started_us = mono_us();
    size_t n = 0, total_args = 0;
    for (int d = 0; d < pl->ndedup_cmds; d++)
        if (!pl->dedup_cmds[d].done) {
            n++;
            total_args += (size_t)pl->dedup_cmds[d].argc;
        }
    for (int u = 0; u < pl->nunits; u++)
        if (!pl->units[u].done) {
            n++;
            total_args += (size_t)pl->units[u].argc;
        }
    if (!pl->quiet_cmd.done) {
        n++;
        total_args += (size_t)pl->quiet_cmd.argc;
    }
    int *which = calloc(n + 1, sizeof(int)); /* unit, or -1 - id write */
    nps_redis_cmd *cmds = malloc((n + 1) * sizeof(*cmds));
    const char **args = malloc((total_args + 1) * sizeof(char *));
    redisReply **replies = calloc(n + 1, sizeof(redisReply *));
    if (!which || !cmds || !args || !replies) {
        LOG(ERROR, "out of memory sending a flush; exiting so nothing is lost");
        exit(1);
    }
    size_t k = 0, a = 0;
    /* the id writes, the units, then the quiet units' fences */
    for (int c = -pl->ndedup_cmds; c <= pl->nunits; c++) {
        unit_payload *p = c < 0             ? &pl->dedup_cmds[-1 - c]
                          : c == pl->nunits ? &pl->quiet_cmd
                                            : &pl->units[c];
        if (p->done)
            continue;
        which[k] = c;
        cmds[k] = (nps_redis_cmd){.argc = p->argc,
                                  .argv = args + a,
                                  .lens = p->lens,
                                  .raw = c < 0 || (c == pl->nunits && pl->nquiet == 0)};
        for (int i = 0; i < p->argc; i++)
            args[a++] = p->buf + p->offsets[i];
        k++;
    }
    nps_error err = {{0}};
    size_t got = nps_redis_flush_units(pl->redis, n, cmds, replies, &err);
    bool resynced = false, failed = false;
    for (size_t i = 0; i < got && !resynced; i++) {
        if (!replies[i])
            continue;
        if (which[i] < 0)
            failed |= !dedup_reply(pl, -1 - which[i], replies[i]);
        else if (which[i] == pl->nunits) {
            int verdict = quiet_reply(pl, replies[i]);
            resynced = verdict == 0;
            failed |= verdict < 0;
        } else
            resynced = !unit_reply(pl, which[i], replies[i]);
    }
    for (size_t i = 0; i < got; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    free(which);
    free(cmds);
    free(args);
    free(replies);
    if (resynced)
        return;
    if (got < n || failed) {
        atomic_fetch_add(&pl->redis_errors, 1);
        set_redis_state(pl, got == n, err.msg);
        pl->retry_at_ms = mono_ms() + pl->backoff_ms;
        pl->backoff_ms = pl->backoff_ms < 5000 ? pl->backoff_ms * 2 : 5000;
        return;
    }
    set_redis_state(pl, true, NULL);
    pl->backoff_ms = 100;
    for (int u = 0; u < pl->nunits; u++)
        if (!pl->units[u].done)
            return; /* a NOSCRIPT reply: sent again on the next round */
    if (!pl->quiet_cmd.done)
        return; /* the same */
    finish_flush(pl, started_us);
}

static bool all_drained(const pipeline *pl)
{
    for (int i = 0; i < pl->nworkers; i++)
        if (!atomic_load(&pl->workers[i].drained))
            return false;
    return true;
}

static bool take_deltas(pipeline *pl)
{
    bool any = false;
    for (int i = 0; i < pl->nworkers; i++) {
        nps_delta *delta = nps_shard_take(pl->workers[i].shard);
        if (!delta)
            continue;
        any = true;
        apply_registrations(pl); /* those made before this hand-off */
        merge_delta(pl, delta);
        nps_shard_give_back(pl->workers[i].shard, delta);
    }
    return any;
}

static bool has_pending(const pipeline *pl)
{
    for (int32_t p = 0; p < pl->table_cap; p++)
        if (pl->table[p].registered && entry_pending(pl, &pl->table[p]))
            return true;
    return false;
}

/* What /metrics and /readyz read, copied under metrics_lock. Called only
 * when something changed: has_pending walks every partition and unit. */
static void snapshot_metrics(pipeline *pl)
{
    pthread_mutex_lock(&pl->metrics_lock);
    nps_state_get_stats(pl->pending, &pl->m.stats);
    pl->m.unflushed = pl->outstanding || has_pending(pl);
    pthread_mutex_unlock(&pl->metrics_lock);
}

/* What the workers say of themselves, read before their deltas are
 * taken: a worker hands its delta over before it says it caught up. */
typedef struct workers_state {
    bool caught_up; /* one has just caught up with a backlog */
    bool behind;    /* one still reads a backlog */
    bool lagging;   /* one may still hold what has not been handed over */
} workers_state;

static workers_state read_workers(pipeline *pl)
{
    workers_state st = {.caught_up = atomic_exchange(&pl->caught_up, false)};
    for (int i = 0; i < pl->nworkers; i++) {
        st.behind |= atomic_load(&pl->workers[i].behind);
        st.lagging |= atomic_load(&pl->workers[i].lagging);
    }
    return st;
}

/* Whether a flush starts now, on the tick every --flush-ms, or on a
 * backlog's end. While a worker reads a backlog the tick waits, up to one
 * more interval, so that what it reads reaches Redis in one flush rather
 * than in a flush per tick (a backlog's flushes rewrite the same segments,
 * and the detractor entries of all but the last are trimmed again); once
 * a worker has caught up and none lags, a flush starts at once, if the
 * last one started at least half an interval ago. So flushes stay at
 * least half an interval and at most two apart. */
static bool flush_due(pipeline *pl, const workers_state *st, int64_t now, int64_t next_flush,
                      int64_t last_flush, bool *catch_up)
{
    int64_t interval = pl->config->flush_ms;
    *catch_up = false;
    if (now >= next_flush && (!st->behind || now >= next_flush + interval))
        return true;
    if (pl->catch_up_pending && !st->behind && !st->lagging && now >= last_flush + interval / 2) {
        *catch_up = true;
        return true;
    }
    return false;
}

static void *flusher_main(void *arg)
{
    pipeline *pl = arg;
    int64_t last_flush = mono_ms(), next_flush = last_flush + pl->config->flush_ms;
    int64_t stop_deadline = 0, last_take = 0;
    for (;;) {
        bool changed = apply_registrations(pl);
        workers_state st = read_workers(pl);
        pl->catch_up_pending |= st.caught_up;
        int64_t now = mono_ms();
        bool busy = false;
        if (!st.behind || now >= last_take + NPS_MERGE_PACE_MS) {
            busy = take_deltas(pl);
            last_take = now;
        }
        now = mono_ms();
        atomic_store(&pl->heartbeat_mono_ms, now);
        pthread_mutex_lock(&pl->lock);
        bool requested = pl->flush_requests > pl->flushes_done;
        pthread_mutex_unlock(&pl->lock);
        bool stopping = atomic_load(&pl->stop) && all_drained(pl);
        if (stopping) {
            take_deltas(pl);
            if (!stop_deadline)
                stop_deadline = now + SHUTDOWN_FLUSH_WAIT_MS;
        }
        if (pl->outstanding) {
            if (now >= pl->retry_at_ms) {
                send_units(pl);
                changed = true;
            }
        } else {
            bool catch_up = false;
            if (requested || (stopping && has_pending(pl)) ||
                flush_due(pl, &st, now, next_flush, last_flush, &catch_up)) {
                pl->flush_is_catch_up = catch_up;
                pl->catch_up_pending = false;
                start_flush(pl);
                send_units(pl);
                last_flush = now;
                next_flush = now + pl->config->flush_ms;
                changed = true;
            }
        }
        if (busy || changed)
            snapshot_metrics(pl);
        if (stopping && !pl->outstanding && !has_pending(pl))
            break;
        if (stopping && now > stop_deadline) {
            LOG(WARN, "redis unavailable at shutdown: unflushed counts are dropped; the next "
                      "start re-reads them from Kafka (the fences did not move)");
            break;
        }
        if (!busy)
            sleep_ms(1);
    }
    pthread_mutex_lock(&pl->lock);
    atomic_store(&pl->flusher_done, true);
    pthread_cond_broadcast(&pl->flushed);
    pthread_mutex_unlock(&pl->lock);
    return NULL;
}

/* ------------------------------------------------------------------ setup */

/* librdkafka's own log lines, in ours. Commits are advisory (the fences
 * are what restarts use), so a commit refused during a rebalance is not
 * worth a warning. */
static void kafka_log(const rd_kafka_t *rk, int level, const char *facility, const char *text)
{
    (void)rk;
    if (strcmp(facility, "COMMITFAIL") == 0)
        return;
    nps_log(level <= 3   ? NPS_LOG_ERROR
            : level == 4 ? NPS_LOG_WARN
            : level <= 6 ? NPS_LOG_INFO
                         : NPS_LOG_DEBUG,
            "kafka", "%s: %s", facility, text);
}

static rd_kafka_t *new_consumer(worker *w, nps_error *err)
{
    const nps_config *config = w->pl->config;
    char errstr[512], timeout[32], heartbeat[32], fetch_wait[32], id[160];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(timeout, sizeof(timeout), "%" PRId64, config->session_timeout_ms);
    snprintf(heartbeat, sizeof(heartbeat), "%" PRId64, config->session_timeout_ms / 4);
    snprintf(fetch_wait, sizeof(fetch_wait), "%" PRId64, config->fetch_wait_ms);
    snprintf(id, sizeof(id), "npstream-%s-w%d", w->pl->instance, w->id);
    const char *settings[][2] = {
        {"bootstrap.servers", config->brokers},
        {"group.id", config->group},
        {"client.id", id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", timeout},
        {"heartbeat.interval.ms", heartbeat},
        {"fetch.wait.max.ms", fetch_wait},
        /* librdkafka 2.0 applies this to the whole consumer queue: at its
         * default (100000) a worker doing ~0.5 us per message starves
         * waiting for fetches (bench/README.md, end to end). The byte cap
         * (queued.max.messages.kbytes) still bounds memory. */
        {"queued.min.messages", "1000000"},
    };
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            nps_error_set(err, "kafka %s: %s", settings[i][0], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (!nps_kafka_conf_apply(conf, config, err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    rd_kafka_conf_set_opaque(conf, w);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        nps_error_set(err, "kafka: %s", errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, config->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (serr) {
        nps_error_set(err, "kafka: subscribe to %s: %s", config->topic, rd_kafka_err2str(serr));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* The arguments every unit of a run shares: windows and trends (with and
 * without themes), alerts, each view's benchmarks, the detractor stream's
 * MAXLEN. False when a
 * view's benchmarks do not fit in memory. */
static bool script_args(pipeline *pl)
{
    const nps_config *config = pl->config;
    const nps_windows *ws = &config->windows;
    size_t len = 0;
    for (int themes = 0; themes < 2; themes++) {
        char *arg = pl->windows_arg[themes];
        len = 0;
        for (int i = 0; i < ws->n; i++)
            len +=
                (size_t)snprintf(arg + len, sizeof(pl->windows_arg[0]) - len,
                                 "%s%s:%" PRId64 ":%" PRId64 ":%" PRId64 ":%c", i ? ";" : "",
                                 ws->w[i].name, ws->w[i].size_ms, ws->w[i].pane_ms, ws->w[i].npanes,
                                 ws->w[i].trend              ? 't'
                                 : ws->w[i].themes && themes ? 'h'
                                                             : 'w');
    }
    char list[sizeof(config->benchmarks)], *save = NULL;
    snprintf(list, sizeof(list), "%s", config->alerts);
    len = 0;
    for (char *pair = strtok_r(list, ",", &save); pair; pair = strtok_r(NULL, ",", &save))
        len +=
            (size_t)snprintf(pl->alerts_arg + len, sizeof(pl->alerts_arg) - len, "%s%s:%g:%" PRId64,
                             len ? ";" : "", pair, config->alert_z, config->alert_min_responses);
    snprintf(pl->maxlen_arg, sizeof(pl->maxlen_arg), "%" PRId64, config->detractors_maxlen);
    /* a detractor entry's fields; `?`: left out of the entry when empty */
    len =
        (size_t)snprintf(pl->detractor_fields_arg, sizeof(pl->detractor_fields_arg), "id,score,ts");
    for (int d = 0; d < config->views.ndims; d++)
        len +=
            (size_t)snprintf(pl->detractor_fields_arg + len, sizeof(pl->detractor_fields_arg) - len,
                             ",%s", config->views.dim_names[d]);
    snprintf(pl->detractor_fields_arg + len, sizeof(pl->detractor_fields_arg) - len,
             ",value?,comment?,partition,offset");
    /* benchmarks: "dim=value" as it appears in a segment string */
    pl->bench_args = calloc((size_t)pl->nviews, sizeof(char *));
    if (!pl->bench_args)
        return false;
    for (int v = 0; v < pl->nviews; v++) {
        const nps_view *vw = &config->views.views[v];
        size_t cap = strlen(config->benchmarks) * 3 + 16;
        char *arg = pl->bench_args[v] = calloc(1, cap);
        if (!arg)
            return false;
        snprintf(list, sizeof(list), "%s", config->benchmarks);
        for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '='), *colon = strrchr(item, ':');
            *eq = *colon = '\0'; /* checked when the config was loaded */
            for (int d = 0; d < vw->ndims; d++) {
                if (strcmp(config->views.dim_names[vw->dim[d]], item) != 0)
                    continue;
                len = strlen(arg);
                len += (size_t)snprintf(arg + len, cap - len, "%s=", item);
                len += nps_percent_encode(eq + 1, strlen(eq + 1), arg + len);
                snprintf(arg + len, cap - len, "\t%s\n", colon + 1);
            }
        }
    }
    pl->detractor_view = nps_views_detractor_view(&config->views);
    return true;
}

static void dlq_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pipeline *pl = opaque;
    if (m->err) {
        atomic_fetch_add(&pl->dlq_failed, 1);
        LOG(WARN, "dead-letter delivery failed: %s", rd_kafka_err2str(m->err));
    } else {
        atomic_fetch_add(&pl->dlq_sent, 1);
    }
}

static rd_kafka_t *new_dead_letter_producer(pipeline *pl, nps_error *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", pl->config->brokers, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "20", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        nps_error_set(err, "dead-letter producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (!nps_kafka_conf_apply(conf, pl->config, err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, pl);
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_delivered);
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        nps_error_set(err, "dead-letter producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static int setup(pipeline *pl, const nps_config *config)
{
    nps_error err = {{0}};
    pl->config = config;
    pl->nviews = config->views.nviews;
    pl->buckets = (uint32_t)config->buckets;
    pl->nunits = pl->nviews * (int)pl->buckets;
    pl->unit_names = calloc((size_t)pl->nunits, sizeof(*pl->unit_names));
    pl->units = calloc((size_t)pl->nunits, sizeof(*pl->units));
    pl->next_expiry_ms = calloc((size_t)pl->nunits, sizeof(*pl->next_expiry_ms));
    pl->quiet_units = calloc((size_t)pl->nunits, sizeof(*pl->quiet_units));
    pl->detractor_start = calloc((size_t)pl->nunits + 1, sizeof(*pl->detractor_start));
    if (!pl->unit_names || !pl->units || !pl->next_expiry_ms || !pl->quiet_units ||
        !pl->detractor_start)
        goto fail;
    for (int u = 0; u < pl->nunits; u++) {
        const char *view = config->views.views[u / (int)pl->buckets].name;
        if (pl->buckets == 1)
            snprintf(pl->unit_names[u], sizeof(pl->unit_names[u]), "%s", view);
        else
            snprintf(pl->unit_names[u], sizeof(pl->unit_names[u]), "%s#%d", view,
                     u % (int)pl->buckets);
    }
    pl->nworkers = config->workers ? (int)config->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (pl->nworkers < 1)
        pl->nworkers = 1;
    char host[128] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(pl->instance, sizeof(pl->instance), "%.40s-%d", host, (int)getpid());
    pthread_mutex_init(&pl->lock, NULL);
    pthread_mutex_init(&pl->metrics_lock, NULL);
    atomic_init(&pl->heartbeat_mono_ms, mono_ms());
    pthread_cond_init(&pl->flushed, NULL);
    atomic_init(&pl->epoch, 1);
    pl->backoff_ms = 100;
    if (!script_args(pl))
        goto fail;
    pl->pending = nps_state_new_bucketed(config, pl->buckets, &err);
    pl->redis = pl->pending ? nps_redis_new(config->redis, REDIS_TIMEOUT_MS, &err) : NULL;
    pl->workers = calloc((size_t)pl->nworkers, sizeof(worker));
    if (!pl->redis || !pl->workers)
        goto fail;
    nps_redis_set_auth(pl->redis, config->redis_user, config->redis_password);
    if (config->dead_letter_topic[0] && !(pl->dlq = new_dead_letter_producer(pl, &err)))
        goto fail;
    for (int i = 0; i < pl->nworkers; i++) {
        worker *w = &pl->workers[i];
        w->pl = pl;
        w->id = i;
        w->epoch = 1;
        w->shard = nps_shard_new(config, &err);
        w->redis = w->shard ? nps_redis_new(config->redis, REDIS_TIMEOUT_MS, &err) : NULL;
        if (w->redis)
            nps_redis_set_auth(w->redis, config->redis_user, config->redis_password);
        w->rk = w->redis ? new_consumer(w, &err) : NULL;
        if (!w->rk)
            goto fail;
        w->queue = rd_kafka_queue_get_consumer(w->rk);
    }
    return 0;
fail:
    LOG(ERROR, "%s", err.msg[0] ? err.msg : "out of memory");
    return 1;
}

/* Each view's dimensions and bucket count are part of what its keys and
 * fences mean: check them against `PREFIX:layout` (recording them the
 * first time), waiting while Redis is unreachable. 0 ok, 2 a mismatch. */
static int check_layout(pipeline *pl)
{
    const nps_config *config = pl->config;
    char key[128];
    snprintf(key, sizeof(key), "%s:layout", config->prefix);
    bool logged = false;
    for (int v = 0; v < pl->nviews;) {
        const nps_view *vw = &config->views.views[v];
        char want[600];
        size_t len = 0;
        for (int d = 0; d < vw->ndims; d++)
            len += (size_t)snprintf(want + len, sizeof(want) - len, "%s%s", d ? "," : "",
                                    config->views.dim_names[vw->dim[d]]);
        snprintf(want + len, sizeof(want) - len, "|%u", pl->buckets);
        const char *argv[] = {"HSETNX", key, vw->name, want};
        size_t lens[] = {6, strlen(key), strlen(vw->name), strlen(want)};
        const char *get[] = {"HGET", key, vw->name};
        size_t get_lens[] = {4, lens[1], lens[2]};
        nps_error err = {{0}};
        redisReply *set = nps_redis_argv(pl->redis, 4, argv, lens, &err);
        redisReply *got = set ? nps_redis_argv(pl->redis, 3, get, get_lens, &err) : NULL;
        if (!got) {
            if (set)
                freeReplyObject(set);
            if (nps_redis_auth_refused(pl->redis)) {
                LOG(ERROR, "%s; check --redis-user and --redis-password", err.msg);
                return 1;
            }
            if (!logged)
                LOG(WARN, "%s; waiting for Redis to check the view layout", err.msg);
            logged = true;
            sigset_t pending;
            sigpending(&pending);
            if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM))
                return 1; /* stopped before it started */
            sleep_ms(1000);
            continue;
        }
        bool same = got->type == REDIS_REPLY_STRING && strcmp(got->str, want) == 0;
        if (!same)
            LOG(ERROR,
                "view %s is published under prefix '%s' as '%s' (dimensions|buckets); this "
                "engine has '%s'. Use another --prefix, or the same views and --buckets",
                vw->name, config->prefix, got->type == REDIS_REPLY_STRING ? got->str : "?", want);
        freeReplyObject(set);
        freeReplyObject(got);
        if (!same)
            return 2;
        v++;
    }
    return 0;
}

static void status_line(pipeline *pl, int64_t elapsed_ms)
{
    uint64_t messages = 0;
    for (int i = 0; i < pl->nworkers; i++)
        messages += atomic_load(&pl->workers[i].messages);
    nps_state_stats st;
    nps_state_get_stats(pl->pending, &st);
    uint64_t invalid = 0;
    for (int r = 0; r < NPS_INVALID_REASONS; r++)
        invalid += st.invalid[r];
    LOG(INFO,
        "%" PRIu64 " messages in %.0f s, %" PRIu64 " invalid, %" PRIu64 " late, %" PRIu64
        " duplicates; %" PRIu64 " flushes (last %.1f ms), %" PRIu64 " resyncs; redis %s",
        messages, (double)elapsed_ms / 1000, invalid, st.late, st.duplicates,
        atomic_load(&pl->flushes), (double)atomic_load(&pl->last_flush_us) / 1000,
        atomic_load(&pl->resyncs), atomic_load(&pl->redis_ok) ? "ok" : "unavailable");
}

/* ---------------------------------------------------------------- /metrics */

static void write_histogram(FILE *out, const char *name, const char *help, const histogram *h,
                            const double *bounds, int nbounds)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i < nbounds; i++) {
        cumulative += h->counts[i];
        fprintf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], cumulative);
    }
    cumulative += h->counts[nbounds];
    fprintf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
            cumulative, name, h->sum, name, h->n);
}

static void write_counter(FILE *out, const char *name, const char *help, uint64_t value)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name,
            value);
}

/* The allocator's view of memory in use: jemalloc's stats.allocated when
 * the binary runs on jemalloc (weak: sanitizer builds do not). */
extern int mallctl(const char *, void *, size_t *, void *, size_t) __attribute__((weak));

static uint64_t allocated_bytes(void)
{
    if (!mallctl)
        return 0;
    uint64_t epoch = 1;
    size_t size = sizeof(epoch);
    mallctl("epoch", &epoch, &size, &epoch, size);
    size_t allocated = 0;
    size = sizeof(allocated);
    return mallctl("stats.allocated", &allocated, &size, NULL, 0) == 0 ? allocated : 0;
}

static void write_metrics(void *ctx, FILE *out)
{
    pipeline *pl = ctx;
    const nps_config *config = pl->config;
    uint64_t consumed = 0;
    int assigned = 0;
    for (int i = 0; i < pl->nworkers; i++) {
        consumed += atomic_load(&pl->workers[i].messages);
        assigned += atomic_load(&pl->workers[i].assigned);
    }
    pthread_mutex_lock(&pl->metrics_lock);
    const metrics *m = &pl->m;
    write_counter(out, "npstream_events_consumed_total", "Kafka messages consumed.", consumed);
    write_counter(out, "npstream_events_counted_total", "Valid events counted.", m->stats.counted);
    fprintf(out, "# HELP npstream_events_invalid_total Invalid messages by reason.\n"
                 "# TYPE npstream_events_invalid_total counter\n");
    for (int r = 1; r < NPS_INVALID_REASONS; r++)
        fprintf(out, "npstream_events_invalid_total{reason=\"%s\"} %" PRIu64 "\n",
                nps_invalid_reason_name((nps_invalid_reason)r), m->stats.invalid[r]);
    write_counter(out, "npstream_dead_letter_total",
                  "Invalid messages delivered to the dead-letter topic.",
                  atomic_load(&pl->dlq_sent));
    write_counter(out, "npstream_dead_letter_errors_total",
                  "Dead-letter copies that could not be delivered.", atomic_load(&pl->dlq_failed));
    write_counter(out, "npstream_events_duplicate_total",
                  "Responses whose id was counted before within --dedup-horizon: counted "
                  "nowhere else (once across restarts).",
                  m->stats.duplicates);
    write_counter(out, "npstream_dedup_ids_stored_total",
                  "First occurrences of response ids written to Redis (a replay writes again).",
                  atomic_load(&pl->dedup_ids_written));
    write_counter(out, "npstream_events_late_total",
                  "Events older than the largest window: counted in total only.", m->stats.late);
    fprintf(out, "# HELP npstream_segments_overflowed_total Events counted in ~overflow past the "
                 "cardinality bound, by view.\n"
                 "# TYPE npstream_segments_overflowed_total counter\n");
    for (int v = 0; v < pl->nviews; v++)
        fprintf(out, "npstream_segments_overflowed_total{view=\"%s\"} %" PRIu64 "\n",
                config->views.views[v].name, m->stats.overflowed_by_view[v]);
    fprintf(out, "# HELP npstream_active_segments Segments known per view.\n"
                 "# TYPE npstream_active_segments gauge\n");
    for (int v = 0; v < pl->nviews; v++)
        fprintf(out, "npstream_active_segments{view=\"%s\"} %zu\n", config->views.views[v].name,
                m->segments[v]);
    write_counter(out, "npstream_flushes_total", "Flushes completed.", atomic_load(&pl->flushes));
    write_counter(out, "npstream_catch_up_flushes_total",
                  "Flushes started before their tick because the workers had just read to the "
                  "end of a backlog.",
                  atomic_load(&pl->catch_up_flushes));
    write_histogram(out, "npstream_flush_duration_seconds",
                    "Wall time of a flush: every unit sent and applied.", &m->flush, flush_bounds,
                    FLUSH_BUCKETS);
    write_histogram(out, "npstream_freshness_seconds",
                    "Age of a flush's oldest event (Kafka timestamp) when the flush completed.",
                    &m->fresh, fresh_bounds, FRESH_BUCKETS);
    write_counter(out, "npstream_redis_errors_total",
                  "Flush attempts that failed on Redis (each is retried).",
                  atomic_load(&pl->redis_errors));
    write_counter(out, "npstream_fence_mismatches_total",
                  "Units refused because a fence had moved (each causes a resync).",
                  atomic_load(&pl->mismatches));
    write_counter(out, "npstream_detractors_appended_total",
                  "Detractor responses appended to the stream PREFIX:detractors.",
                  atomic_load(&pl->detractors_appended));
    write_counter(out, "npstream_detractors_trimmed_total",
                  "Detractor responses dropped unwritten, the oldest past twice "
                  "--detractors-maxlen pending (Redis down) or past it in one flush (the "
                  "stream would have trimmed them).",
                  atomic_load(&pl->detractors_trimmed));
    write_counter(out, "npstream_resyncs_total", "Times unflushed counts were dropped and re-read.",
                  atomic_load(&pl->resyncs));
    fprintf(out, "# HELP npstream_consumer_lag Messages behind the partition's end.\n"
                 "# TYPE npstream_consumer_lag gauge\n");
    for (size_t i = 0; i < m->nlags; i++)
        fprintf(out, "npstream_consumer_lag{partition=\"%d\"} %" PRId64 "\n",
                (int)m->lags[i].partition, m->lags[i].lag);
    fprintf(out,
            "# HELP npstream_partitions_assigned Partitions this instance owns.\n"
            "# TYPE npstream_partitions_assigned gauge\nnpstream_partitions_assigned %d\n"
            "# HELP npstream_redis_up Whether the last Redis call succeeded.\n"
            "# TYPE npstream_redis_up gauge\nnpstream_redis_up %d\n"
            "# HELP npstream_memory_allocated_bytes Bytes allocated (jemalloc stats.allocated).\n"
            "# TYPE npstream_memory_allocated_bytes gauge\nnpstream_memory_allocated_bytes %" PRIu64
            "\n",
            assigned, atomic_load(&pl->redis_ok) ? 1 : 0, allocated_bytes());
    pthread_mutex_unlock(&pl->metrics_lock);
}

static bool healthy(void *ctx, char *why, size_t size)
{
    pipeline *pl = ctx;
    int64_t silent = mono_ms() - atomic_load(&pl->heartbeat_mono_ms);
    if (silent > 10000) {
        snprintf(why, size, "the flusher has not run for %" PRId64 " ms", silent);
        return false;
    }
    return true;
}

static bool ready(void *ctx, char *why, size_t size)
{
    pipeline *pl = ctx;
    int assigned = 0;
    for (int i = 0; i < pl->nworkers; i++)
        assigned += atomic_load(&pl->workers[i].assigned);
    if (atomic_load(&pl->stop)) {
        snprintf(why, size, "stopping");
        return false;
    }
    if (!atomic_load(&pl->redis_ok)) {
        snprintf(why, size, "redis %s unreachable", pl->config->redis);
        return false;
    }
    if (assigned == 0) {
        snprintf(why, size, "no partitions assigned yet");
        return false;
    }
    pthread_mutex_lock(&pl->metrics_lock);
    int64_t since = mono_ms() - pl->m.last_flush_mono_ms;
    bool stale = pl->m.unflushed && since > 3 * pl->config->flush_ms + 5000;
    pthread_mutex_unlock(&pl->metrics_lock);
    if (stale) {
        snprintf(why, size, "no flush completed for %" PRId64 " ms", since);
        return false;
    }
    return true;
}

int nps_run_pipeline(const nps_config *config)
{
    static pipeline pl;
    memset(&pl, 0, sizeof(pl));
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    const char *why = NULL;
    if (!nps_log_setup(config->log_format, config->log_level, config->log_file, &why)) {
        fprintf(stderr, "npstream run: %s\n", why);
        return 2;
    }
    atomic_init(&pl.redis_ok, true);
    if (setup(&pl, config) != 0)
        return 1;
    int layout = check_layout(&pl);
    if (layout != 0)
        return layout;
    nps_http *http = NULL;
    nps_web *web = NULL;
    if (config->http[0]) {
        nps_error err = {{0}};
        web = nps_web_new(config, &err);
        nps_http_handlers handlers = {&pl, write_metrics, healthy, ready, nps_web_serve, web};
        http = web ? nps_http_start(config->http, &handlers, &err) : NULL;
        if (!http) {
            LOG(ERROR, "%s", err.msg);
            nps_web_destroy(web);
            return 2;
        }
        char host[128];
        int port;
        nps_parse_host_port(config->http, host, sizeof(host), &port);
        LOG(INFO, "http: the web view (/), /metrics, /healthz and /readyz on %s:%d", host,
            nps_http_port(http));
    }
    LOG(INFO,
        "%d worker(s) consuming %s from %s (group %s), publishing to redis %s every %" PRId64 " ms",
        pl.nworkers, config->topic, config->brokers, config->group, config->redis,
        config->flush_ms);
    pthread_t flusher;
    pthread_create(&flusher, NULL, flusher_main, &pl);
    for (int i = 0; i < pl.nworkers; i++)
        pthread_create(&pl.workers[i].thread, NULL, worker_main, &pl.workers[i]);
    int64_t start = mono_ms(), last_status = start;
    for (;;) {
        struct timespec wait = {0, 200L * 1000000};
        int sig = sigtimedwait(&signals, NULL, &wait);
        if (sig == SIGHUP) {
            nps_log_reopen();
            LOG(INFO, "SIGHUP: log file reopened");
            continue;
        }
        if (sig == SIGINT || sig == SIGTERM) {
            LOG(INFO, "signal %d: stopping (flushing first; a second signal exits at once)", sig);
            atomic_store(&pl.stop, true);
            break;
        }
        if (mono_ms() - last_status >= 10000) {
            last_status = mono_ms();
            status_line(&pl, last_status - start);
        }
    }
    /* A second signal while flushing ends the process at once. */
    struct timespec wait = {0, 100L * 1000000};
    while (!atomic_load(&pl.flusher_done)) {
        int sig = sigtimedwait(&signals, NULL, &wait);
        if (sig == SIGHUP)
            nps_log_reopen();
        if (sig == SIGINT || sig == SIGTERM)
            _exit(130);
    }
    pthread_join(flusher, NULL);
    for (int i = 0; i < pl.nworkers; i++)
        pthread_join(pl.workers[i].thread, NULL);
    nps_http_stop(http);
    nps_web_destroy(web);
    status_line(&pl, mono_ms() - start);
    for (int i = 0; i < pl.nworkers; i++) {
        rd_kafka_queue_destroy(pl.workers[i].queue);
        rd_kafka_destroy(pl.workers[i].rk);
        nps_shard_destroy(pl.workers[i].shard);
        nps_redis_free(pl.workers[i].redis);
        for (int32_t p = 0; p < pl.workers[i].parts_cap; p++) {
            free(pl.workers[i].parts[p].fence);
            nps_dedup_destroy(pl.workers[i].parts[p].dedup);
        }
        free(pl.workers[i].parts);
    }
    for (int u = 0; u < pl.nunits; u++) {
        free(pl.units[u].buf);
        free(pl.units[u].offsets);
        free(pl.units[u].lens);
    }
    free(pl.units);
    for (int d = 0; d < pl.dedup_cmds_cap; d++) {
        free(pl.dedup_cmds[d].buf);
        free(pl.dedup_cmds[d].offsets);
        free(pl.dedup_cmds[d].lens);
    }
    free(pl.dedup_cmds);
    free(pl.quiet_cmd.buf);
    free(pl.quiet_cmd.offsets);
    free(pl.quiet_cmd.lens);
    free(pl.quiet_units);
    free(pl.next_expiry_ms);
    free(pl.dedup_pending);
    free(pl.dedup_spare);
    for (int v = 0; pl.bench_args && v < pl.nviews; v++)
        free(pl.bench_args[v]);
    free(pl.bench_args);
    free(pl.detractors);
    free(pl.detractor_at);
    free(pl.detractor_start);
    free(pl.m.lags);
    free(pl.unit_names);
    for (int32_t p = 0; p < pl.table_cap; p++)
        free(pl.table[p].begin);
    for (size_t i = 0; i < pl.nregs; i++)
        free(pl.regs[i].fence);
    free(pl.workers);
    free(pl.table);
    free(pl.regs);
    nps_redis_free(pl.redis);
    if (pl.dlq) {
        rd_kafka_flush(pl.dlq, 10000);
        rd_kafka_destroy(pl.dlq);
    }
    nps_state_destroy(pl.pending);
    return 0;
}
