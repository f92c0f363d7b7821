/*
 * npstream public API: status codes, the error buffer, NPS counts and math.
 *
 * Every public name carries the nps_ prefix. Functions named for an action
 * return an nps_status and, on failure, fill an nps_error with a message a
 * user can act on. Opaque handles come in _new/_destroy pairs in the module
 * headers beside this one.
 */
#ifndef NPSTREAM_NPS_H
#define NPSTREAM_NPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nps_status {
    NPS_OK = 0,
    NPS_ERR = -1,         /* see the nps_error message */
    NPS_ERR_NOMEM = -2,   /* an allocation failed */
    NPS_ERR_INVALID = -3, /* bad input: an event or a setting */
} nps_status;

#define NPS_ERROR_MAX 256

/* A message buffer that functions fill on failure. */
typedef struct nps_error {
    char msg[NPS_ERROR_MAX];
} nps_error;

void nps_error_set(nps_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Score classes. */
#define NPS_SCORE_MAX 10
#define NPS_BUCKETS (NPS_SCORE_MAX + 1)

/* Score classes, in the order of nps_counts.value. */
typedef enum nps_class { NPS_PROMOTER, NPS_PASSIVE, NPS_DETRACTOR, NPS_CLASSES } nps_class;

static inline nps_class nps_score_class(int score)
{
    return score >= 9 ? NPS_PROMOTER : score >= 7 ? NPS_PASSIVE : NPS_DETRACTOR;
}

/* Counts of one segment over one pane or window: the histogram h0..h10 is
 * the whole truth; promoters, detractors, score_sum and NPS derive from it.
 * `sent` counts invitations (events of type "sent"); value[class] sums the
 * responses' `value` in cents by score class. */
typedef struct nps_counts {
    uint64_t h[NPS_BUCKETS];
    uint64_t sent;
    uint64_t value[NPS_CLASSES];
} nps_counts;

/* What DESIGN.md "NPS, exactly" defines, derived from nps_counts. */
typedef struct nps_summary {
    uint64_t responses;
    uint64_t promoters;
    uint64_t passives;
    uint64_t detractors;
    uint64_t score_sum;
    uint64_t sent;
    bool has_nps; /* false when responses == 0: no NPS, never 0 */
    double nps;   /* 100 * (promoters - detractors) / responses */
    double moe95; /* 1.96 * 100 * sqrt((p + d - (p - d)^2) / n) */
    double avg;   /* score_sum / responses */
    /* Value-weighted, in cents: present when value_total > 0. */
    uint64_t value[NPS_CLASSES];
    uint64_t value_total;
    double value_nps; /* 100 * (value promoters - value detractors) / value_total */
} nps_summary;

void nps_counts_add(nps_counts *into, const nps_counts *delta);
void nps_counts_sub(nps_counts *from, const nps_counts *delta);
bool nps_counts_is_zero(const nps_counts *c);
void nps_summarize(const nps_counts *c, nps_summary *out);

#ifdef __cplusplus
}
#endif
#endif
