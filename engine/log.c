/*
 * log: logfmt or JSON lines, one write(2) each.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static struct {
    bool json;
    nps_log_level min;
    char file[1024];
    int fd;
    pthread_mutex_t reopen; /* only around swapping the descriptor */
} logger = {.min = NPS_LOG_INFO, .fd = STDERR_FILENO, .reopen = PTHREAD_MUTEX_INITIALIZER};

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

bool nps_log_setup(const char *format, const char *level, const char *file, const char **why)
{
    if (strcmp(format, "logfmt") == 0 || strcmp(format, "json") == 0) {
        logger.json = strcmp(format, "json") == 0;
    } else {
        *why = "log-format: expected logfmt or json";
        return false;
    }
    int found = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(level, level_names[i]) == 0)
            found = i;
    if (found < 0) {
        *why = "log-level: expected debug, info, warn or error";
        return false;
    }
    logger.min = (nps_log_level)found;
    if (file[0]) {
        int fd = open_file(file);
        if (fd < 0) {
            *why = "log-file: cannot open it for appending";
            return false;
        }
        snprintf(logger.file, sizeof(logger.file), "%s", file);
        logger.fd = fd;
    }
    return true;
}

void nps_log_reopen(void)
{
    if (!logger.file[0])
        return;
    int fd = open_file(logger.file);
    if (fd < 0)
        return; /* keep writing to the old one rather than nowhere */
    pthread_mutex_lock(&logger.reopen);
    int old = logger.fd;
    logger.fd = fd;
    pthread_mutex_unlock(&logger.reopen);
    close(old);
}

/* Append `text` quoted for logfmt or JSON: quotes, backslashes and
 * control characters escaped. */
static size_t put_quoted(char *out, size_t at, size_t size, const char *text)
{
    if (at < size)
        out[at++] = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p && at + 8 < size; p++) {
        if (*p == '"' || *p == '\\') {
            out[at++] = '\\';
            out[at++] = (char)*p;
        } else if (*p == '\n') {
            out[at++] = '\\';
            out[at++] = 'n';
        } else if (*p < 0x20) {
            at += (size_t)snprintf(out + at, size - at, "\\u%04x", *p);
        } else {
            out[at++] = (char)*p;
        }
    }
    if (at < size)
        out[at++] = '"';
    return at;
}

void nps_log(nps_log_level level, const char *component, const char *fmt, ...)
{
    if (level < logger.min)
        return;
    char msg[2048], line[4600], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
    size_t at;
    if (logger.json) {
        at = (size_t)snprintf(line, sizeof(line),
                              "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":", ts,
                              level_names[level], component);
        at = put_quoted(line, at, sizeof(line) - 3, msg);
        line[at++] = '}';
    } else {
        at = (size_t)snprintf(line, sizeof(line), "ts=%s level=%s component=%s msg=", ts,
                              level_names[level], component);
        at = put_quoted(line, at, sizeof(line) - 2, msg);
    }
    line[at++] = '\n';
    pthread_mutex_lock(&logger.reopen);
    ssize_t rc = write(logger.fd, line, at);
    pthread_mutex_unlock(&logger.reopen);
    (void)rc; /* nowhere to report a failed log write */
}
