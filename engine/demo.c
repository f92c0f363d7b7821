#include <stdio.h>

#include "commands.h"

int nps_cmd_demo(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "npstream demo: not built yet\n");
    return 1;
}
