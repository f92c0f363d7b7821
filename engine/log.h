/*
 * log: the engine's structured log. One line per event, logfmt
 * (ts=... level=info component=run msg="...") or JSON, at or above the
 * configured level, to standard error or a file that SIGHUP reopens (for
 * logrotate). Each line is one write(2), so threads never interleave.
 */
#ifndef NPS_LOG_H
#define NPS_LOG_H

#include <stdbool.h>

typedef enum nps_log_level {
    NPS_LOG_DEBUG,
    NPS_LOG_INFO,
    NPS_LOG_WARN,
    NPS_LOG_ERROR,
} nps_log_level;

/* Configure before any thread logs. format "logfmt" or "json"; level
 * "debug", "info", "warn" or "error"; file "" for standard error. False
 * with *why set on a bad value or an unwritable file. */
bool nps_log_setup(const char *format, const char *level, const char *file, const char **why);

/* Reopen the log file (after logrotate moved it). */
void nps_log_reopen(void);

void nps_log(nps_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
