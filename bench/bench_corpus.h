// Shared by the core benchmarks: a corpus of realistic events from the
// engine's generator and the 4-view configuration the goals are stated for.
#pragma once

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

extern "C" {
#include "config.h"
#include "event_gen.h"
}

namespace npsbench
{

constexpr int64_t kNow = 1763800000000LL;
constexpr size_t kCorpusEvents = 4096; // a power of two: index with & (kCorpusEvents - 1)

struct Corpus {
    std::vector<std::string> events;
    size_t bytes = 0;
};

// Append n events of the generator seeded with `seed`, their timestamps
// spread over [now - spread_ms, now], out of order.
inline void generate(Corpus *c, uint64_t seed, int64_t spread_ms, size_t n)
{
    nps_gen_options options{};
    options.seed = seed;
    options.now_ms = kNow;
    options.spread_ms = spread_ms;
    nps_error err;
    nps_gen *gen = nps_gen_new(&options, &err);
    char msg[1024], key[64];
    for (size_t i = 0; i < n; i++) {
        size_t len = nps_gen_next(gen, msg, sizeof(msg), key, sizeof(key));
        c->events.emplace_back(msg, len);
        c->bytes += len;
    }
    nps_gen_destroy(gen);
}

// The shared corpus of kCorpusEvents events for a spread.
inline const Corpus &corpus(int64_t spread_ms = 20 * 60 * 1000)
{
    static std::map<int64_t, Corpus> cache;
    Corpus &c = cache[spread_ms];
    if (c.events.empty())
        generate(&c, 42, spread_ms, kCorpusEvents);
    return c;
}

// all + by_survey, by_channel, by_region, by_survey_age; default windows.
inline void make_config(nps_config *config)
{
    nps_error err;
    if (nps_config_init(config, &err) != NPS_OK)
        abort();
    const char *views[] = {"by_survey=survey", "by_channel=channel", "by_region=region",
                           "by_survey_age=survey,age_band"};
    for (const char *v : views)
        if (nps_views_add(&config->views, v, &err) != NPS_OK)
            abort();
}

} // namespace npsbench
