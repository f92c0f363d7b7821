// Per-event cost of the worker's hot path: parse only, and parse + count
// into the shard (4 views, default windows), on one core. The merge of a
// delta into the state runs on the merger thread; BM_parse_aggregate_merge
// adds it on the same core to show its share. Figures: bench/README.md.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "config.h"
#include "event_gen.h"
#include "event_parse.h"
#include "shard.h"
#include "state.h"
}

namespace {

constexpr int64_t kNow = 1763800000000LL;

struct Corpus {
    std::vector<std::string> events;
    size_t bytes = 0;
    Corpus()
    {
        nps_gen_options options{};
        options.seed = 42;
        options.now_ms = kNow;
        nps_error err;
        nps_gen *gen = nps_gen_new(&options, &err);
        char msg[1024], key[64];
        for (int i = 0; i < 4096; i++) {
            size_t len = nps_gen_next(gen, msg, sizeof(msg), key, sizeof(key));
            events.emplace_back(msg, len);
            bytes += len;
        }
        nps_gen_destroy(gen);
    }
};

const Corpus &corpus()
{
    static Corpus c;
    return c;
}

void make_config(nps_config *config)
{
    nps_error err;
    nps_config_init(config, &err);
    const char *views[] = {"by_survey=survey", "by_channel=channel", "by_region=region",
                           "by_survey_age=survey,age_band"};
    for (const char *v : views)
        if (nps_views_add(&config->views, v, &err) != NPS_OK)
            abort();
}

void BM_parse_only(benchmark::State &state)
{
    nps_config config;
    make_config(&config);
    nps_error err;
    nps_event_parser *parser = nps_event_parser_new(&config.views, config.max_event_bytes, &err);
    nps_event ev;
    const auto &events = corpus().events;
    size_t i = 0;
    for (auto _ : state) {
        const std::string &msg = events[i++ & 4095];
        benchmark::DoNotOptimize(nps_event_parse(parser, msg.data(), msg.size(), &ev, nullptr, 0));
        benchmark::DoNotOptimize(ev.score);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed((int64_t)(state.iterations() * corpus().bytes / 4096));
    nps_event_parser_destroy(parser);
}
BENCHMARK(BM_parse_only);

// Worker hot path; the delta is handed back every 4096 events (as a
// worker does at batch boundaries) without merging, so only the worker's
// own work is timed.
void BM_parse_aggregate(benchmark::State &state)
{
    nps_config config;
    make_config(&config);
    nps_error err;
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_shard_set_now(shard, kNow);
    const auto &events = corpus().events;
    size_t i = 0;
    nps_invalid_reason reason;
    for (auto _ : state) {
        const std::string &msg = events[i & 4095];
        nps_shard_add(shard, msg.data(), msg.size(), -1, &reason, nullptr, 0);
        if ((++i & 4095) == 0) {
            state.PauseTiming();
            nps_shard_publish(shard);
            nps_shard_give_back(shard, nps_shard_take(shard));
            state.ResumeTiming();
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed((int64_t)(state.iterations() * corpus().bytes / 4096));
    nps_shard_destroy(shard);
}
BENCHMARK(BM_parse_aggregate);

// Worker and merger on one core: every 4096 events the delta is merged
// into the state (window roll-up, pane expiry) within the timed loop.
void BM_parse_aggregate_merge(benchmark::State &state)
{
    nps_config config;
    make_config(&config);
    nps_error err;
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_state *merged = nps_state_new(&config, &err);
    nps_shard_set_now(shard, kNow);
    const auto &events = corpus().events;
    size_t i = 0;
    nps_invalid_reason reason;
    for (auto _ : state) {
        const std::string &msg = events[i & 4095];
        nps_shard_add(shard, msg.data(), msg.size(), -1, &reason, nullptr, 0);
        if ((++i & 4095) == 0) {
            nps_shard_publish(shard);
            nps_delta *delta = nps_shard_take(shard);
            nps_state_apply(merged, delta, kNow, &err);
            nps_shard_give_back(shard, delta);
        }
    }
    state.SetItemsProcessed(state.iterations());
    nps_state_destroy(merged);
    nps_shard_destroy(shard);
}
BENCHMARK(BM_parse_aggregate_merge);

} // namespace

BENCHMARK_MAIN();
