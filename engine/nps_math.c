/*
 * NPS math: the derived fields of DESIGN.md "NPS, exactly", computed from
 * the score histogram so that every figure agrees with the counts.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "npstream/nps.h"

void nps_error_set(nps_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

void nps_counts_add(nps_counts *into, const nps_counts *delta)
{
    for (int s = 0; s < NPS_BUCKETS; s++)
        into->h[s] += delta->h[s];
    into->sent += delta->sent;
    for (int c = 0; c < NPS_CLASSES; c++)
        into->value[c] += delta->value[c];
}

void nps_counts_sub(nps_counts *from, const nps_counts *delta)
{
    for (int s = 0; s < NPS_BUCKETS; s++)
        from->h[s] -= delta->h[s];
    from->sent -= delta->sent;
    for (int c = 0; c < NPS_CLASSES; c++)
        from->value[c] -= delta->value[c];
}

bool nps_counts_is_zero(const nps_counts *c)
{
    for (int s = 0; s < NPS_BUCKETS; s++)
        if (c->h[s])
            return false;
    for (int k = 0; k < NPS_CLASSES; k++)
        if (c->value[k])
            return false;
    return c->sent == 0;
}

void nps_summarize(const nps_counts *c, nps_summary *out)
{
    *out = (nps_summary){.sent = c->sent};
    for (int k = 0; k < NPS_CLASSES; k++) {
        out->value[k] = c->value[k];
        out->value_total += c->value[k];
    }
    if (out->value_total)
        out->value_nps = 100.0 *
                         ((double)c->value[NPS_PROMOTER] - (double)c->value[NPS_DETRACTOR]) /
                         (double)out->value_total;
    for (int s = 0; s < NPS_BUCKETS; s++) {
        out->responses += c->h[s];
        out->score_sum += (uint64_t)s * c->h[s];
        if (s >= 9)
            out->promoters += c->h[s];
        else if (s >= 7)
            out->passives += c->h[s];
        else
            out->detractors += c->h[s];
    }
    if (out->responses == 0)
        return;
    double n = (double)out->responses;
    double p = (double)out->promoters / n;
    double d = (double)out->detractors / n;
    out->has_nps = true;
    /* Integer difference first: (p - d) in doubles would round twice. */
    out->nps = 100.0 * ((double)out->promoters - (double)out->detractors) / n;
    double variance = p + d - (p - d) * (p - d);
    out->moe95 = 1.96 * 100.0 * sqrt(variance > 0 ? variance / n : 0.0);
    out->avg = (double)out->score_sum / n;
}
