/*
 * json_write: JSON strings that are valid whatever bytes they carry.
 */
#include "json_write.h"

#include <stdbool.h>

#include "json_scan.h"

void nps_json_write_string(FILE *out, const char *text, size_t len)
{
    fputc('"', out);
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x80) {
            size_t n = nps_json_utf8_sequence(text + i, len - i);
            if (n) {
                fwrite(text + i, 1, n, out);
                i += n;
            } else {
                fputs("\xef\xbf\xbd", out); /* U+FFFD for the stray byte */
                i++;
            }
            continue;
        }
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
        i++;
    }
    fputc('"', out);
}

void nps_json_write_number_or_string(FILE *out, const char *text, size_t len)
{
    if (nps_json_is_number(text, len))
        fwrite(text, 1, len, out);
    else
        nps_json_write_string(out, text, len);
}
