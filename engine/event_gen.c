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
#include <string.h>

#define RECENT 64 /* responses a duplicate may repeat */

struct nps_gen {
    nps_gen_options opt;
    uint64_t state;
    uint64_t serial;
    int drop_dim; /* index into dims below, -1: no drop */
    const char *drop_value;
    char recent[RECENT][512];
    char recent_key[RECENT][64];
    size_t recent_len[RECENT];
    uint64_t nrecent;
};

static const char *const surveys[] = {"checkout", "onboarding", "support", "delivery", "app"};
static const char *const channels[] = {"email", "sms", "web", "in-app"};
static const char *const age_bands[] = {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"};
/* By class: what promoters, passives and detractors write. */
static const char *const comments[3][6] = {
    {"fast delivery", "great app", "support solved it quickly", "love the new checkout",
     "fast and friendly support", "great prices and fast delivery"},
    {"ok but delivery was slow", "app is fine", "checkout could be simpler", "decent prices",
     "support was ok", "hard to find \\\"help\\\""},
    {"slow delivery and rude courier", "the app keeps crashing", "too expensive",
     "support never answered", "checkout keeps crashing", "late delivery, damaged box"},
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
    if (gen->opt.sent_share <= 0)
        gen->opt.sent_share = 0.125;
    gen->state = options->seed;
    gen->drop_dim = -1;
    static const char *const dims[] = {"survey", "channel", "age_band", "region"};
    char *eq = strchr(gen->opt.drop, '=');
    if (gen->opt.drop[0]) {
        for (int d = 0; eq && d < 4; d++)
            if (strlen(dims[d]) == (size_t)(eq - gen->opt.drop) &&
                strncmp(dims[d], gen->opt.drop, strlen(dims[d])) == 0)
                gen->drop_dim = d;
        if (gen->drop_dim < 0) {
            nps_error_set(err,
                          "drop '%s': expected DIM=VALUE with DIM survey, channel, "
                          "age_band or region",
                          gen->opt.drop);
            free(gen);
            return NULL;
        }
        gen->drop_value = eq + 1;
    }
    return gen;
}

void nps_gen_destroy(nps_gen *gen)
{
    free(gen);
}

static double uniform(nps_gen *gen)
{
    return (double)(nps_gen_random(gen) >> 11) / 9007199254740992.0;
}

size_t nps_gen_next(nps_gen *gen, char *out, size_t out_size, char *key, size_t key_size)
{
    if (gen->opt.duplicate_share > 0 && gen->nrecent && uniform(gen) < gen->opt.duplicate_share) {
        uint64_t pick = nps_gen_random(gen) % (gen->nrecent < RECENT ? gen->nrecent : RECENT);
        if (gen->recent_len[pick] >= out_size)
            return 0;
        memcpy(out, gen->recent[pick], gen->recent_len[pick]);
        snprintf(key, key_size, "%s", gen->recent_key[pick]);
        return gen->recent_len[pick];
    }
    uint64_t serial = gen->serial++;
    snprintf(key, key_size, "r-%" PRIx64 "-%" PRIu64, gen->opt.seed, serial);
    int n;
    double roll = uniform(gen);
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
    char region_name[16];
    snprintf(region_name, sizeof(region_name), "R%02u", region);
    const char *values[] = {surveys[survey], channels[channel], age_bands[age], region_name};
    bool dropping = gen->drop_dim >= 0 && strcmp(values[gen->drop_dim], gen->drop_value) == 0 &&
                    ts > gen->opt.now_ms - 5 * 60 * 1000;
    if (dropping)
        score = (int)(nps_gen_random(gen) % 7); /* recent: detractors, with a theme */
    bool sent = uniform(gen) < gen->opt.sent_share;
    if (sent) {
        n = snprintf(out, out_size,
                     "{\"id\":\"%s\",\"ts\":%" PRId64 ",\"type\":\"sent\",\"survey\":\"%s\","
                     "\"channel\":\"%s\",\"region\":\"R%02u\",\"age_band\":\"%s\"}",
                     key, ts, surveys[survey], channels[channel], region, age_bands[age]);
    } else {
        n = snprintf(
            out, out_size,
            "{\"id\":\"%s\",\"ts\":%" PRId64 ",\"score\":%d,\"survey\":\"%s\","
            "\"channel\":\"%s\",\"region\":\"R%02u\",\"age_band\":\"%s\","
            "\"type\":\"response\",\"value\":%u.%u,\"comment\":\"%s\"}",
            key, ts, score, surveys[survey], channels[channel], region, age_bands[age],
            (unsigned)(nps_gen_random(gen) % 5000), (unsigned)(nps_gen_random(gen) % 10),
            dropping ? "the app keeps crashing after the update"
                     : comments[nps_score_class(score)][nps_gen_random(gen) % COUNT(comments[0])]);
        /* a response a later duplicate may repeat */
        if (n > 0 && (size_t)n < out_size && (size_t)n < sizeof(gen->recent[0])) {
            size_t slot = gen->nrecent++ % RECENT;
            memcpy(gen->recent[slot], out, (size_t)n);
            gen->recent_len[slot] = (size_t)n;
            snprintf(gen->recent_key[slot], sizeof(gen->recent_key[slot]), "%s", key);
        }
    }
    return n > 0 && (size_t)n < out_size ? (size_t)n : 0;
}
