/*
 * fuzz_require: the invariant check of the fuzz targets. A violation
 * aborts, which libFuzzer reports as a crash and saves the input of.
 */
#ifndef NPS_FUZZ_REQUIRE_H
#define NPS_FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>

#define require(cond)                                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

static inline void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
    abort();
}

#endif
