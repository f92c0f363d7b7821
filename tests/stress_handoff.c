/*
 * Threaded validator of the worker -> merger hand-off (handoff.h): several
 * worker threads count known events into their shards and publish every
 * few events, while one merger thread takes and applies deltas as fast as
 * it can. At the end the merged state must hold exactly every event, per
 * segment, with no delta lost, applied twice or torn. Run under
 * ThreadSanitizer by tests/run (build-tsan).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "shard.h"
#include "state.h"

#define WORKERS 3
#define EVENTS_PER_WORKER 60000
#define NOW 1763800000000LL

static nps_config config;
static nps_shard *shards[WORKERS];
static atomic_int workers_done;
static uint64_t expected[WORKERS][NPS_BUCKETS]; /* per worker, by score */
static uint64_t handoffs;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "stress_handoff: FAIL %s:%d: ", __FILE__, __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    nps_shard *shard = shards[id];
    nps_shard_set_now(shard, NOW);
    char msg[128];
    uint64_t x = (uint64_t)id * 7919 + 1;
    for (int i = 0; i < EVENTS_PER_WORKER; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int score = (int)((x >> 33) % 11);
        int len =
            snprintf(msg, sizeof(msg), "{\"score\":%d,\"channel\":\"w%d-c%d\",\"ts\":%lld}", score,
                     id, (int)((x >> 40) % 7), (long long)(NOW - (int64_t)(x % 600000)));
        nps_invalid_reason reason;
        CHECK(nps_shard_add(shard, msg, (size_t)len, -1, &reason, NULL, 0) == NPS_OK, "add");
        CHECK(reason == NPS_VALID, "invalid %s", msg);
        expected[id][score]++;
        if (i % 37 == 0)
            nps_shard_publish(shard);
    }
    nps_shard_drain(shard);
    atomic_fetch_add_explicit(&workers_done, 1, memory_order_release);
    return NULL;
}

int main(void)
{
    nps_error err;
    CHECK(nps_config_init(&config, &err) == NPS_OK, "%s", err.msg);
    CHECK(nps_views_add(&config.views, "by_channel=channel", &err) == NPS_OK, "%s", err.msg);
    nps_state *state = nps_state_new(&config, &err);
    CHECK(state, "%s", err.msg);
    pthread_t threads[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        shards[i] = nps_shard_new(&config, &err);
        CHECK(shards[i], "%s", err.msg);
    }
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&threads[i], NULL, worker_main, (void *)(intptr_t)i) == 0, "thread");
    /* This thread is the merger. */
    for (;;) {
        bool done = atomic_load_explicit(&workers_done, memory_order_acquire) == WORKERS;
        bool took = false;
        for (int i = 0; i < WORKERS; i++) {
            nps_delta *delta = nps_shard_take(shards[i]);
            if (!delta)
                continue;
            took = true;
            handoffs++;
            CHECK(nps_state_apply(state, delta, NOW, &err) == NPS_OK, "%s", err.msg);
            nps_shard_give_back(shards[i], delta);
        }
        if (done && !took)
            break;
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(threads[i], NULL);
    int total = config.windows.n - 1;
    uint64_t all = 0;
    nps_counts counts;
    CHECK(nps_state_get(state, 0, "*", total, &counts), "no all segment");
    for (int w = 0; w < WORKERS; w++)
        for (int b = 0; b < NPS_BUCKETS; b++)
            all += expected[w][b];
    uint64_t got = 0;
    for (int b = 0; b < NPS_BUCKETS; b++) {
        uint64_t want = 0;
        for (int w = 0; w < WORKERS; w++)
            want += expected[w][b];
        CHECK(counts.h[b] == want, "h%d: merged %" PRIu64 " != counted %" PRIu64, b, counts.h[b],
              want);
        got += counts.h[b];
    }
    /* Per worker: its channels are its own, so per-worker sums must match. */
    for (int w = 0; w < WORKERS; w++) {
        uint64_t want = 0, have = 0;
        for (int b = 0; b < NPS_BUCKETS; b++)
            want += expected[w][b];
        for (int c = 0; c < 7; c++) {
            char name[64];
            snprintf(name, sizeof(name), "channel=w%d-c%d", w, c);
            if (nps_state_get(state, 1, name, total, &counts))
                for (int b = 0; b < NPS_BUCKETS; b++)
                    have += counts.h[b];
        }
        CHECK(have == want, "worker %d: merged %" PRIu64 " != counted %" PRIu64, w, have, want);
    }
    CHECK(handoffs > WORKERS, "only %" PRIu64 " hand-offs: the test did not exercise the race",
          handoffs);
    printf("stress_handoff: %d workers, %" PRIu64 " events, %" PRIu64
           " hand-offs, merged exactly\n",
           WORKERS, got, handoffs);
    nps_state_destroy(state);
    for (int i = 0; i < WORKERS; i++)
        nps_shard_destroy(shards[i]);
    return got == all ? 0 : 1;
}
