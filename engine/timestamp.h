/*
 * timestamp: RFC 3339 date-times to epoch milliseconds, and durations such
 * as "5m" or "30d" to milliseconds. Pure functions, any thread.
 */
#ifndef NPS_TIMESTAMP_H
#define NPS_TIMESTAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "2025-11-22T08:26:40.123Z", "2025-11-22t08:26:40+05:30" or with a space
 * for the T. Fractions past milliseconds are truncated. */
bool nps_rfc3339_parse(const char *text, size_t len, int64_t *ts_ms);

/* Days since 1970-01-01 of a proleptic Gregorian date. */
int64_t nps_days_from_civil(int64_t year, unsigned month, unsigned day);

/* "250ms", "30s", "5m", "1h", "24h", "7d", "2w": a positive integer and a
 * unit. Returns false for anything else or an overflow. */
bool nps_duration_parse(const char *text, int64_t *ms);

/* Shortest form of a duration: 300000 -> "5m". */
void nps_duration_format(int64_t ms, char *out, size_t out_size);

#endif
