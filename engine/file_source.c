/*
 * file_source: line reader feeding one shard. Lines are handed to the
 * parser without their newline; a line longer than max-event-bytes is
 * still read whole and then counted invalid (too_large).
 */
#include "file_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

nps_status nps_file_source_run(const nps_config *config, nps_shard *shard,
                               nps_file_progress *progress, nps_error *err)
{
    bool use_stdin = strcmp(config->input, "-") == 0;
    FILE *in = use_stdin ? stdin : fopen(config->input, "r");
    if (!in) {
        nps_error_set(err, "input %s: %s", config->input, strerror(errno));
        return NPS_ERR;
    }
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int64_t in_batch = 0;
    nps_status status = NPS_OK;
    nps_shard_set_now(shard, nps_clock_now_ms(config));
    while ((len = getline(&line, &line_cap, in)) >= 0) {
        progress->lines++;
        progress->bytes += (uint64_t)len;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        nps_invalid_reason reason;
        status = nps_shard_add(shard, line, (size_t)len, -1, &reason, NULL, 0);
        if (status != NPS_OK) {
            nps_error_set(err, "input %s line %llu: out of memory", config->input,
                          (unsigned long long)progress->lines);
            break;
        }
        if (++in_batch >= config->batch_events) {
            nps_shard_publish(shard);
            nps_shard_set_now(shard, nps_clock_now_ms(config));
            in_batch = 0;
        }
    }
    if (status == NPS_OK && ferror(in)) {
        nps_error_set(err, "input %s: %s", config->input, strerror(errno));
        status = NPS_ERR;
    }
    free(line);
    if (!use_stdin)
        fclose(in);
    nps_shard_drain(shard);
    return status;
}
