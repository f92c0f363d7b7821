/*
 * report: the merged state as a terminal table or JSON, per view, segment
 * and window, with the counters of the run.
 */
#ifndef NPS_REPORT_H
#define NPS_REPORT_H

#include <stdio.h>

#include "config.h"
#include "state.h"

void nps_report_table(const nps_config *config, const nps_state *state, FILE *out);
void nps_report_json(const nps_config *config, const nps_state *state, FILE *out);

#endif
