// Cost of encoding a flush: the walk of the merged state and the binary
// records of flush.lua's ARGV (per (window, pane): "<Bi8" window index,
// pane index, then 12 little-endian int64 h0..h10, sent).
//
// The engine's encoder (encode_segment / put_entry) is static in
// engine/pipeline.c, so this benchmark does not call it. It runs the same
// steps through the public headers: a state bucketed as the pipeline's
// (64 buckets), the same iteration (nps_state_segment_count,
// nps_state_segment_bucket, nps_state_panes of `total` to skip untouched
// segments, then of each finite window) and the same record layout
// appended to one reused buffer per unit. What it leaves out: the unit
// header and fences (encode_header), the hiredis command formatting and
// the socket write. Figures: bench/README.md.
//
// The state holds what one 1 s flush of a live stream holds: S segments,
// each with events in the last 5 s, so one pane in each finite window.
#include <benchmark/benchmark.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "config.h"
#include "shard.h"
#include "state.h"
}

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "flush records are little-endian; this benchmark stores them as memory");

namespace
{

constexpr int64_t kNowMs = 1763800000000LL;
constexpr uint32_t kBuckets = 64;
constexpr size_t kRecordBytes = 1 + 8 + 8 * (NPS_BUCKETS + 1);

struct Flush {
    nps_config config;
    nps_state *state = nullptr;
};

// A merged state of `segments` segments of by_customer (plus `all`).
const Flush &flush_of(int64_t segments)
{
    static std::vector<std::pair<int64_t, Flush *>> made;
    for (auto &m : made)
        if (m.first == segments)
            return *m.second;
    auto *f = new Flush;
    nps_error err;
    if (nps_config_init(&f->config, &err) != NPS_OK ||
        nps_views_add(&f->config.views, "by_customer=customer", &err) != NPS_OK)
        abort();
    f->config.max_segments = 1u << 22;
    f->state = nps_state_new_bucketed(&f->config, kBuckets, &err);
    nps_shard *shard = nps_shard_new(&f->config, &err);
    if (!f->state || !shard)
        abort();
    nps_shard_set_now(shard, kNowMs);
    char msg[128];
    for (int64_t s = 0; s < segments; s++) {
        int len = snprintf(msg, sizeof(msg),
                           "{\"score\":%d,\"ts\":%" PRId64 ",\"customer\":\"c%" PRId64 "\"}",
                           (int)(s % 11), kNowMs - (s % 4000), s);
        nps_invalid_reason reason;
        if (nps_shard_add(shard, msg, (size_t)len, -1, &reason, nullptr, 0) != NPS_OK ||
            reason != NPS_VALID)
            abort();
        if ((s + 1) % 4096 == 0 || s + 1 == segments) {
            nps_shard_drain(shard);
            nps_delta *delta = nps_shard_take(shard);
            if (nps_state_merge(f->state, delta, kNowMs, &err) != NPS_OK)
                abort();
            nps_shard_give_back(shard, delta);
        }
    }
    nps_shard_destroy(shard);
    made.emplace_back(segments, f);
    return *f;
}

// One record, as flush.lua unpacks it.
inline void append_record(std::vector<char> &out, int window, int64_t pane, const nps_counts &c)
{
    size_t at = out.size();
    out.resize(at + kRecordBytes);
    char *p = out.data() + at;
    *p++ = (char)window;
    std::memcpy(p, &pane, 8);
    p += 8;
    for (int b = 0; b < NPS_BUCKETS; b++, p += 8) {
        int64_t v = (int64_t)c.h[b];
        std::memcpy(p, &v, 8);
    }
    int64_t sent = (int64_t)c.sent;
    std::memcpy(p, &sent, 8);
}

// encode = false: the walk alone (sums the counts it visits);
// encode = true: the walk plus the segment names and records per unit.
void run_flush(benchmark::State &bstate, bool encode)
{
    const Flush &f = flush_of(bstate.range(0));
    const int total_w = f.config.windows.n - 1;
    const int nviews = f.config.views.nviews;
    std::vector<std::vector<char>> units((size_t)nviews * kBuckets);
    uint64_t records = 0, segments_touched = 0;
    for (auto _ : bstate) {
        for (auto &u : units)
            u.clear(); // capacity kept across flushes, as the engine's payloads
        uint64_t checksum = 0;
        records = segments_touched = 0;
        for (int v = 0; v < nviews; v++) {
            size_t nseg = nps_state_segment_count(f.state, v);
            for (size_t s = 0; s < nseg; s++) {
                uint32_t npanes;
                nps_counts total;
                nps_state_panes(f.state, v, s, total_w, &npanes, &total);
                if (nps_counts_is_zero(&total))
                    continue;
                segments_touched++;
                std::vector<char> &out =
                    units[(size_t)v * kBuckets + nps_state_segment_bucket(f.state, v, s)];
                if (encode) {
                    const char *name = nps_state_segment_name(f.state, v, s);
                    out.insert(out.end(), name, name + std::strlen(name));
                }
                for (int w = 0; w < total_w; w++) {
                    nps_counts window_total;
                    const nps_state_pane *panes =
                        nps_state_panes(f.state, v, s, w, &npanes, &window_total);
                    for (uint32_t k = 0; k < npanes; k++) {
                        if (encode)
                            append_record(out, w, panes[k].index, panes[k].counts);
                        else
                            checksum += panes[k].counts.h[NPS_SCORE_MAX] + (uint64_t)panes[k].index;
                    }
                    records += npanes;
                }
                if (encode)
                    append_record(out, total_w, 0, total);
                records++;
            }
        }
        benchmark::DoNotOptimize(checksum);
        benchmark::DoNotOptimize(units.data());
        benchmark::ClobberMemory();
    }
    // Items are (segment, window) records: the pairs of a flush.
    bstate.SetItemsProcessed((int64_t)(bstate.iterations() * records));
    bstate.counters["records"] = (double)records;
    bstate.counters["segments"] = (double)segments_touched;
    // Seconds per touched segment, printed with an SI prefix (n: ns).
    bstate.counters["s/segment"] =
        benchmark::Counter((double)(bstate.iterations() * segments_touched),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_flush_walk(benchmark::State &state)
{
    run_flush(state, false);
}
BENCHMARK(BM_flush_walk)->Arg(1000)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond);

void BM_flush_encode(benchmark::State &state)
{
    run_flush(state, true);
}
BENCHMARK(BM_flush_encode)->Arg(1000)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
