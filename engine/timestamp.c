/*
 * timestamp: strict RFC 3339 parsing (section 5.6 "date-time") without the
 * C library's locale- and time-zone-dependent calls, and duration strings.
 */
#include "timestamp.h"

#include <stdio.h>
#include <string.h>

static bool read_digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

int64_t nps_days_from_civil(int64_t year, unsigned month, unsigned day)
{
    /* Count in 400-year eras that start on March 1st, so the leap day is
     * the last day of its year and each era has the same length. */
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static bool is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

bool nps_rfc3339_parse(const char *s, size_t len, int64_t *ts_ms)
{
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second;
    /* YYYY-MM-DDTHH:MM:SS is 19 bytes, then a fraction and a zone */
    if (len < 20)
        return false;
    if (!read_digits(s, 4, &year) || s[4] != '-' || !read_digits(s + 5, 2, &month) || s[7] != '-' ||
        !read_digits(s + 8, 2, &day) || !(s[10] == 'T' || s[10] == 't' || s[10] == ' ') ||
        !read_digits(s + 11, 2, &hour) || s[13] != ':' || !read_digits(s + 14, 2, &minute) ||
        s[16] != ':' || !read_digits(s + 17, 2, &second))
        return false;
    if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60)
        return false;
    int max_day = month_days[month - 1] + (month == 2 && is_leap(year));
    if (day > max_day)
        return false;
    size_t i = 19;
    int millis = 0;
    if (s[i] == '.') {
        i++;
        size_t first = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (i - first < 3)
                millis = millis * 10 + (s[i] - '0');
            i++;
        }
        if (i == first)
            return false;
        for (size_t n = i - first; n < 3; n++)
            millis *= 10;
    }
    if (i >= len)
        return false;
    int offset_minutes = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (len - i < 6 || !read_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !read_digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset_minutes = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (i != len)
        return false;
    int64_t days = nps_days_from_civil(year, (unsigned)month, (unsigned)day);
    int64_t seconds = days * 86400 + (int64_t)hour * 3600 + (int64_t)minute * 60 + second -
                      (int64_t)offset_minutes * 60;
    *ts_ms = seconds * 1000 + millis;
    return true;
}

static const struct {
    const char *suffix;
    int64_t ms;
} duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 604800000},
};

bool nps_duration_parse(const char *text, int64_t *ms)
{
    const char *p = text;
    int64_t n = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        int digit = *p - '0';
        if (n > (INT64_MAX - digit) / 10) /* exact: INT64_MAX itself fits */
            return false;
        n = n * 10 + digit;
    }
    for (size_t u = 0; u < sizeof(duration_units) / sizeof(duration_units[0]); u++) {
        if (strcmp(p, duration_units[u].suffix) == 0) {
            if (n == 0 || n > INT64_MAX / duration_units[u].ms)
                return false;
            *ms = n * duration_units[u].ms;
            return true;
        }
    }
    return false;
}

void nps_duration_format(int64_t ms, char *out, size_t out_size)
{
    size_t best = 0;
    for (size_t u = 0; u < sizeof(duration_units) / sizeof(duration_units[0]); u++)
        if (ms % duration_units[u].ms == 0)
            best = u;
    snprintf(out, out_size, "%lld%s", (long long)(ms / duration_units[best].ms),
             duration_units[best].suffix);
}
