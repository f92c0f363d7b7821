/*
 * file_source: JSON lines from a file or standard input, one event per
 * line, into a shard. The first source; Kafka is the next one, behind the
 * same role (feed a shard, publish at batch boundaries).
 */
#ifndef NPS_FILE_SOURCE_H
#define NPS_FILE_SOURCE_H

#include <stdint.h>

#include "config.h"
#include "shard.h"

typedef struct nps_file_progress {
    uint64_t lines;
    uint64_t bytes;
} nps_file_progress;

/* @locality worker thread. Read `config->input` to its end, counting each
 * line into `shard` and publishing every config->batch_events lines; a
 * final drain hands over the rest. Empty lines are skipped. */
nps_status nps_file_source_run(const nps_config *config, nps_shard *shard,
                               nps_file_progress *progress, nps_error *err);

#endif
