// Per-event cost of the worker's hot path on one core: parse only, and
// parse + count into the shard (4 views, default windows). The merge of a
// delta into the state runs on the merger thread; BM_parse_aggregate_merge
// adds it on the same core to show its share. The argument is the spread
// of event timestamps in seconds: 1200 (20 minutes, out of order: many
// panes per segment) and 10 (a live stream). Figures: bench/README.md.
#include <benchmark/benchmark.h>

#include "bench_corpus.h"

extern "C" {
#include "event_parse.h"
#include "shard.h"
#include "state.h"
}

namespace
{

using npsbench::corpus;
using npsbench::kCorpusEvents;
using npsbench::kNow;

void BM_parse_only(benchmark::State &state)
{
    nps_config config;
    npsbench::make_config(&config);
    nps_error err;
    nps_event_parser *parser = nps_event_parser_new(&config.views, config.max_event_bytes, &err);
    nps_event ev;
    const auto &c = corpus(state.range(0) * 1000);
    size_t i = 0;
    for (auto _ : state) {
        const std::string &msg = c.events[i++ & (kCorpusEvents - 1)];
        benchmark::DoNotOptimize(nps_event_parse(parser, msg.data(), msg.size(), &ev, nullptr, 0));
        benchmark::DoNotOptimize(ev.score);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed((int64_t)(state.iterations() * c.bytes / kCorpusEvents));
    nps_event_parser_destroy(parser);
}
BENCHMARK(BM_parse_only)->Arg(1200)->Arg(10);

// themes: the pipeline's default comment themes (24h and 7d) on, as
// `npstream run --brokers` has them; the corpus's responses all carry a
// comment, so this is their worst case.
// merge: false = only the worker's work is timed (the delta is handed back
// every 4096 events outside the timing, as the merger thread would);
// true = the merge runs inside the timed loop on the same core.
void run_aggregate(benchmark::State &state, bool merge, bool themes = false)
{
    nps_config config;
    npsbench::make_config(&config);
    nps_error err;
    if (themes && nps_windows_set_themes(&config.windows, "24h,7d", false, &err) != NPS_OK)
        abort();
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_state *merged = nps_state_new(&config, &err);
    nps_shard_set_now(shard, kNow);
    const auto &c = corpus(state.range(0) * 1000);
    size_t i = 0;
    nps_invalid_reason reason;
    for (auto _ : state) {
        const std::string &msg = c.events[i & (kCorpusEvents - 1)];
        nps_shard_add(shard, msg.data(), msg.size(), -1, &reason, nullptr, 0);
        if ((++i & (kCorpusEvents - 1)) == 0) {
            if (!merge)
                state.PauseTiming();
            nps_shard_publish(shard);
            nps_delta *delta = nps_shard_take(shard);
            if (merge)
                nps_state_apply(merged, delta, kNow, &err);
            nps_shard_give_back(shard, delta);
            if (!merge)
                state.ResumeTiming();
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed((int64_t)(state.iterations() * c.bytes / kCorpusEvents));
    nps_state_destroy(merged);
    nps_shard_destroy(shard);
}

void BM_parse_aggregate(benchmark::State &state)
{
    run_aggregate(state, false);
}
BENCHMARK(BM_parse_aggregate)->Arg(1200)->Arg(10);

void BM_parse_aggregate_merge(benchmark::State &state)
{
    run_aggregate(state, true);
}
BENCHMARK(BM_parse_aggregate_merge)->Arg(1200)->Arg(10);

void BM_parse_aggregate_themes(benchmark::State &state)
{
    run_aggregate(state, false, true);
}
BENCHMARK(BM_parse_aggregate_themes)->Arg(1200)->Arg(10);

void BM_parse_aggregate_merge_themes(benchmark::State &state)
{
    run_aggregate(state, true, true);
}
BENCHMARK(BM_parse_aggregate_merge_themes)->Arg(1200)->Arg(10);

// Reading ahead over 2^20 distinct events. First argument 1: each
// message is announced to the shard while the one before it is counted
// (nps_shard_next), as the pipeline's workers do when dedup is on, so its
// dedup slot's cache miss overlaps work; 0: not announced. Second
// argument 1: dedup on, every response judged against a table of ids as
// `npstream run` does by default (the table outgrows the caches as a
// backlog's does; it is cleared, outside the timing, before the ids
// repeat); 0: off.
void BM_parse_aggregate_ahead(benchmark::State &state)
{
    constexpr size_t kEvents = size_t{1} << 20;
    static npsbench::Corpus distinct;
    if (distinct.events.empty())
        npsbench::generate(&distinct, 43, 20 * 60 * 1000, kEvents);
    const std::vector<std::string> &events = distinct.events;
    const size_t bytes = distinct.bytes;
    const bool ahead = state.range(0) != 0;
    nps_config config;
    npsbench::make_config(&config);
    nps_error err;
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_dedup *table = nps_dedup_new(config.dedup_horizon_ms);
    nps_shard_set_now(shard, kNow);
    nps_dedup *judge = state.range(1) != 0 ? table : nullptr;
    nps_shard_set_dedup(shard, judge);
    size_t i = 0;
    nps_invalid_reason reason;
    for (auto _ : state) {
        size_t at = i & (kEvents - 1);
        if (ahead && ((at + 1) & 1023) != 0) {
            const std::string &next = events[(at + 1) & (kEvents - 1)];
            nps_shard_next(shard, next.data(), next.size(), judge);
        }
        const std::string &msg = events[at];
        nps_shard_add_fenced(shard, msg.data(), msg.size(), -1, nullptr, 1, 0, (int64_t)i, &reason,
                             nullptr, 0);
        ++i;
        if ((i & 1023) == 0 && ahead)
            nps_shard_next(shard, nullptr, 0, nullptr); // a batch ends
        if ((i & 4095) == 0 || (i & (kEvents - 1)) == 0) {
            state.PauseTiming();
            nps_shard_publish(shard);
            nps_shard_give_back(shard, nps_shard_take(shard));
            if ((i & (kEvents - 1)) == 0)
                nps_dedup_clear(table); // the ids would repeat: start over
            state.ResumeTiming();
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed((int64_t)(state.iterations() * bytes / kEvents));
    nps_dedup_destroy(table);
    nps_shard_destroy(shard);
}
BENCHMARK(BM_parse_aggregate_ahead)
    ->ArgNames({"ahead", "dedup"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Iterations(size_t{1} << 21);

} // namespace

BENCHMARK_MAIN();
