#include <stdio.h>

#include "commands.h"

int nps_run_pipeline(const nps_config *config)
{
    (void)config;
    
    fprintf(stderr, "npstream run: Kafka input not built yet\n");
    return 1;
}
