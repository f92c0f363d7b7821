#include <stdio.h>

#include "commands.h"

int nps_gen_to_kafka(const nps_config *config, nps_gen *gen)
{
    (void)config;
    (void)gen;
    fprintf(stderr, "npstream gen: Kafka output not built yet\n");
    return 1;
}
