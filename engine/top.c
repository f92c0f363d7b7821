#include <stdio.h>

#include "commands.h"

int nps_cmd_top(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "npstream top: not built yet\n");
    return 1;
}
