/*
 * json_write: JSON text out, for replies built from data that may hold any
 * bytes (segment strings, comments, Redis replies).
 */
#ifndef NPS_JSON_WRITE_H
#define NPS_JSON_WRITE_H

#include <stddef.h>
#include <stdio.h>

/* `len` bytes of `text` as one JSON string: `"` and `\` escaped, control
 * characters (and DEL) as \u00XX, every byte that is not part of
 * well-formed UTF-8 as U+FFFD. The output is valid JSON and valid UTF-8
 * whatever the input, NUL bytes included. */
void nps_json_write_string(FILE *out, const char *text, size_t len);

/* `text` as a JSON number when it is one literally ("-15.1268"), so the
 * reader gets exactly the stored value; otherwise as a string. */
void nps_json_write_number_or_string(FILE *out, const char *text, size_t len);

#endif
