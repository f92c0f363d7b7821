// The worker -> merger hand-off (handoff.h): the cost of one publish +
// take + give-back round trip, and a worker thread counting events while
// a merger thread takes and merges its deltas concurrently.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>

#include "bench_corpus.h"

extern "C" {
#include "handoff.h"
#include "shard.h"
#include "state.h"
}

namespace
{

using npsbench::kCorpusEvents;
using npsbench::kNow;

// Pure hand-off protocol: two atomic exchanges and a store per round trip.
void BM_handoff_roundtrip(benchmark::State &state)
{
    nps_handoff handoff;
    nps_delta *a = reinterpret_cast<nps_delta *>(0x1000),
              *b = reinterpret_cast<nps_delta *>(0x2000);
    nps_handoff_init(&handoff, b);
    nps_delta *current = a;
    for (auto _ : state) {
        nps_handoff_publish_spsc(&handoff, &current);
        nps_delta *taken = nps_handoff_take_spsc(&handoff);
        nps_handoff_give_back_spsc(&handoff, taken);
        benchmark::DoNotOptimize(current);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_handoff_roundtrip);

// One worker thread and one merger thread, publishing every 4096 events:
// events/s of the pair, the figure a single-partition engine would reach.
void BM_worker_with_concurrent_merger(benchmark::State &state)
{
    nps_config config;
    npsbench::make_config(&config);
    nps_error err;
    const auto &events = npsbench::corpus().events;
    for (auto _ : state) {
        nps_shard *shard = nps_shard_new(&config, &err);
        nps_state *merged = nps_state_new(&config, &err);
        std::atomic<bool> done{false};
        std::thread merger([&] {
            for (;;) {
                bool finished = done.load(std::memory_order_acquire);
                nps_delta *delta = nps_shard_take(shard);
                if (delta) {
                    nps_state_apply(merged, delta, kNow, &err);
                    nps_shard_give_back(shard, delta);
                } else if (finished) {
                    return;
                }
            }
        });
        nps_shard_set_now(shard, kNow);
        nps_invalid_reason reason;
        for (int i = 0; i < (1 << 20); i++) {
            const std::string &m = events[i & (kCorpusEvents - 1)];
            nps_shard_add(shard, m.data(), m.size(), -1, &reason, nullptr, 0);
            if ((i & (kCorpusEvents - 1)) == kCorpusEvents - 1)
                nps_shard_publish(shard);
        }
        nps_shard_drain(shard);
        done.store(true, std::memory_order_release);
        merger.join();
        nps_state_destroy(merged);
        nps_shard_destroy(shard);
    }
    state.SetItemsProcessed(state.iterations() * (1 << 20));
}
BENCHMARK(BM_worker_with_concurrent_merger)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
