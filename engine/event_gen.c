/*
 * event_gen: synthetic events. Popularity follows a rough power law (the
 * first values of each dimension are the most common) and each segment has
 * its own score leaning, so per-segment NPS values differ.
 */
#include "event_gen.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct nps_gen {
    nps_gen_options opt;
    uint64_t state;
    uint64_t serial;
};

static const char *const surveys[] = {"checkout", "onboarding", "support", "delivery", "app"};
static const char *const channels[] = {"email", "sms", "web", "in-app"};
static const char *const age_bands[] = {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"};
static const char *const comments[] = {
    "fast delivery",          "slow delivery and rude courier", "great app",
    "the app keeps crashing", "support solved it quickly",      "too expensive",
    "love the new checkout",  "hard to find \\\"help\\\"",
};
static const char *const invalid_messages[] = {
    "{\"id\":\"bad\",\"score\":11,\"survey\":\"checkout\"}",
    "{\"id\":\"bad\",\"score\":\"9\",\"survey\":\"checkout\"}",
    "{\"id\":\"bad\",\"score\":9.5}",
    "{\"id\":\"bad\",\"survey\":\"app\"}",
    "{\"id\":\"bad\",\"score\":7,\"ts\":\"yesterday\"}",
    "{\"id\":\"bad\",\"score\":7,",
    "not json at all",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

uint64_t nps_gen_random(nps_gen *gen)
{
    /* splitmix64: a full-period generator with good mixing for its size */
    uint64_t z = (gen->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Index in [0, n) skewed toward 0: the minimum of two uniform draws. */
static size_t skewed(nps_gen *gen, size_t n)
{
    size_t a = nps_gen_random(gen) % n, b = nps_gen_random(gen) % n;
    return a < b ? a : b;
}

nps_gen *nps_gen_new(const nps_gen_options *options, nps_error *err)
{
    nps_gen *gen = calloc(1, sizeof(*gen));
    if (!gen) {
        nps_error_set(err, "out of memory for the event generator");
        return NULL;
    }
    gen->opt = *options;
    if (gen->opt.spread_ms <= 0)
        gen->opt.spread_ms = (int64_t)20 * 60 * 1000;
    if (gen->opt.regions <= 0)
        gen->opt.regions = 40;
    gen->state = options->seed;
    return gen;
}

void nps_gen_destroy(nps_gen *gen)
{
    free(gen);
}

size_t nps_gen_next(nps_gen *gen, char *out, size_t out_size, char *key, size_t key_size)
{
    uint64_t serial = gen->serial++;
    snprintf(key, key_size, "r-%" PRIx64 "-%" PRIu64, gen->opt.seed, serial);
    int n;
    double roll = (double)(nps_gen_random(gen) >> 11) / 9007199254740992.0;
    if (roll < gen->opt.invalid_share) {
        n = snprintf(out, out_size, "%s",
                     invalid_messages[nps_gen_random(gen) % COUNT(invalid_messages)]);
        return n > 0 && (size_t)n < out_size ? (size_t)n : 0;
    }
    size_t survey = skewed(gen, COUNT(surveys));
    size_t channel = skewed(gen, COUNT(channels));
    size_t age = nps_gen_random(gen) % COUNT(age_bands);
    unsigned region = (unsigned)skewed(gen, (size_t)gen->opt.regions);
    /* Each (survey, channel) leans differently: a base score of 5..10
     * plus noise, clamped to 0..10. */
    int lean = 5 + (int)((survey * 7 + channel * 3) % 6);
    int score = lean + (int)(nps_gen_random(gen) % 7) - 3;
    score = score < 0 ? 0 : score > 10 ? 10 : score;
    int64_t ts = gen->opt.now_ms - (int64_t)(nps_gen_random(gen) % (uint64_t)gen->opt.spread_ms);
    bool sent = nps_gen_random(gen) % 8 == 0;
    if (sent) {
        n = snprintf(out, out_size,
                     "{\"id\":\"%s\",\"ts\":%" PRId64 ",\"type\":\"sent\",\"survey\":\"%s\","
                     "\"channel\":\"%s\",\"region\":\"R%02u\",\"age_band\":\"%s\"}",
                     key, ts, surveys[survey], channels[channel], region, age_bands[age]);
    } else {
        n = snprintf(out, out_size,
                     "{\"id\":\"%s\",\"ts\":%" PRId64 ",\"score\":%d,\"survey\":\"%s\","
                     "\"channel\":\"%s\",\"region\":\"R%02u\",\"age_band\":\"%s\","
                     "\"type\":\"response\",\"value\":%u.%u,\"comment\":\"%s\"}",
                     key, ts, score, surveys[survey], channels[channel], region, age_bands[age],
                     (unsigned)(nps_gen_random(gen) % 5000), (unsigned)(nps_gen_random(gen) % 10),
                     comments[nps_gen_random(gen) % COUNT(comments)]);
    }
    return n > 0 && (size_t)n < out_size ? (size_t)n : 0;
}
