#include <stdio.h>

#include "commands.h"

int nps_cmd_broker(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "npstream broker: not built yet\n");
    return 1;
}
