/*
 * report: readable and machine forms of the merged state. In JSON, a
 * segment's window without responses has no "nps" field (never 0).
 */
#include "report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"

static void json_string(FILE *out, const char *s)
{
    nps_json_write_string(out, s, strlen(s));
}

static void print_stats_json(const nps_state *state, FILE *out)
{
    nps_state_stats st;
    nps_state_get_stats(state, &st);
    fprintf(out,
            "\"stats\":{\"messages\":%" PRIu64 ",\"counted\":%" PRIu64 ",\"late\":%" PRIu64
            ",\"overflowed\":%" PRIu64 ",\"invalid\":{",
            st.messages, st.counted, st.late, st.overflowed);
    for (int r = 1; r < NPS_INVALID_REASONS; r++)
        fprintf(out, "%s\"%s\":%" PRIu64, r > 1 ? "," : "", nps_invalid_reason_name(r),
                st.invalid[r]);
    fprintf(out, "}}");
}

void nps_report_json(const nps_config *config, const nps_state *state, FILE *out)
{
    fprintf(out, "{\"views\":{");
    for (int v = 0; v < config->views.nviews; v++) {
        fprintf(out, "%s", v ? "," : "");
        json_string(out, config->views.views[v].name);
        fprintf(out, ":{");
        size_t n = nps_state_segment_count(state, v);
        for (size_t i = 0; i < n; i++) {
            const char *name = nps_state_segment_name(state, v, i);
            fprintf(out, "%s", i ? "," : "");
            json_string(out, name);
            fprintf(out, ":{");
            for (int w = 0; w < config->windows.n; w++) {
                nps_counts counts;
                nps_summary sum;
                nps_state_get(state, v, name, w, &counts);
                nps_summarize(&counts, &sum);
                fprintf(out,
                        "%s\"%s\":{\"responses\":%" PRIu64 ",\"promoters\":%" PRIu64
                        ",\"passives\":%" PRIu64 ",\"detractors\":%" PRIu64
                        ",\"score_sum\":%" PRIu64 ",\"sent\":%" PRIu64,
                        w ? "," : "", config->windows.w[w].name, sum.responses, sum.promoters,
                        sum.passives, sum.detractors, sum.score_sum, sum.sent);
                if (sum.has_nps)
                    fprintf(out, ",\"nps\":%.4f,\"moe95\":%.4f,\"avg\":%.4f", sum.nps, sum.moe95,
                            sum.avg);
                for (int b = 0; b < NPS_BUCKETS; b++)
                    fprintf(out, ",\"h%d\":%" PRIu64, b, counts.h[b]);
                if (sum.value_total) {
                    static const char *const names[NPS_CLASSES] = {
                        "value_promoters", "value_passives", "value_detractors"};
                    for (int k = 0; k < NPS_CLASSES; k++)
                        fprintf(out, ",\"%s\":%" PRIu64 ".%02d", names[k], sum.value[k] / 100,
                                (int)(sum.value[k] % 100));
                    fprintf(out, ",\"value_nps\":%.4f", sum.value_nps);
                }
                fprintf(out, "}");
            }
            fprintf(out, "}");
        }
        fprintf(out, "}");
    }
    fprintf(out, "},");
    print_stats_json(state, out);
    fprintf(out, "}\n");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void nps_report_table(const nps_config *config, const nps_state *state, FILE *out)
{
    for (int v = 0; v < config->views.nviews; v++) {
        size_t n = nps_state_segment_count(state, v);
        const char **names = malloc((n ? n : 1) * sizeof(*names));
        if (!names)
            return;
        for (size_t i = 0; i < n; i++)
            names[i] = nps_state_segment_name(state, v, i);
        qsort(names, n, sizeof(*names), by_name);
        fprintf(out, "\nview %s (%zu segments)\n%-36s", config->views.views[v].name, n, "segment");
        for (int w = 0; w < config->windows.n; w++)
            fprintf(out, " %22s", config->windows.w[w].name);
        fprintf(out, "\n");
        for (size_t i = 0; i < n; i++) {
            fprintf(out, "%-36s", names[i]);
            for (int w = 0; w < config->windows.n; w++) {
                nps_counts counts;
                nps_summary sum;
                char cell[64];
                nps_state_get(state, v, names[i], w, &counts);
                nps_summarize(&counts, &sum);
                if (sum.has_nps)
                    snprintf(cell, sizeof(cell), "%+.1f ±%.1f n=%" PRIu64, sum.nps, sum.moe95,
                             sum.responses);
                else
                    snprintf(cell, sizeof(cell), "- n=0");
                fprintf(out, " %23s", cell);
            }
            fprintf(out, "\n");
        }
        free(names);
    }
    nps_state_stats st;
    nps_state_get_stats(state, &st);
    fprintf(out,
            "\nmessages %" PRIu64 ", counted %" PRIu64 ", late %" PRIu64
            ", overflowed (event, view) pairs %" PRIu64 "\ninvalid:",
            st.messages, st.counted, st.late, st.overflowed);
    for (int r = 1; r < NPS_INVALID_REASONS; r++)
        fprintf(out, " %s=%" PRIu64, nps_invalid_reason_name(r), st.invalid[r]);
    fprintf(out, "\n");
}
