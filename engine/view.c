/*
 * view: view definitions parsed from "NAME=DIM[,DIM...]" and the segment
 * string encoding that Redis keys and readers rely on.
 */
#include "view.h"

#include <stdbool.h>
#include <string.h>

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len >= NPS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void nps_views_init(nps_views *views)
{
    memset(views, 0, sizeof(*views));
    strcpy(views->views[0].name, NPS_VIEW_ALL);
    views->nviews = 1;
}

int nps_views_find(const nps_views *views, const char *name)
{
    for (int v = 0; v < views->nviews; v++)
        if (strcmp(views->views[v].name, name) == 0)
            return v;
    return -1;
}

int nps_views_detractor_view(const nps_views *views)
{
    int best = 0;
    for (int v = 1; v < views->nviews; v++)
        if (views->views[v].ndims >= views->views[best].ndims)
            best = v;
    return best;
}

static int find_or_add_dim(nps_views *views, const char *name, size_t len)
{
    for (int d = 0; d < views->ndims; d++)
        if (strlen(views->dim_names[d]) == len && memcmp(views->dim_names[d], name, len) == 0)
            return d;
    if (views->ndims == NPS_MAX_DIMS)
        return -1;
    memcpy(views->dim_names[views->ndims], name, len);
    views->dim_names[views->ndims][len] = '\0';
    return views->ndims++;
}

nps_status nps_views_add(nps_views *views, const char *spec, nps_error *err)
{
    const char *eq = strchr(spec, '=');
    if (!eq) {
        nps_error_set(err, "view '%s': expected NAME=DIM[,DIM...]", spec);
        return NPS_ERR_INVALID;
    }
    size_t name_len = (size_t)(eq - spec);
    if (!valid_name(spec, name_len)) {
        nps_error_set(err, "view '%s': the name must be 1-63 characters of A-Za-z0-9_-", spec);
        return NPS_ERR_INVALID;
    }
    nps_view view = {0};
    memcpy(view.name, spec, name_len);
    if (nps_views_find(views, view.name) >= 0) {
        nps_error_set(err, "view '%s' is defined twice (`all` always exists)", view.name);
        return NPS_ERR_INVALID;
    }
    if (views->nviews == NPS_MAX_VIEWS) {
        nps_error_set(err, "view '%s': at most %d views", view.name, NPS_MAX_VIEWS - 1);
        return NPS_ERR_INVALID;
    }
    nps_views scratch = *views; /* commit dimensions only if the view is valid */
    const char *p = eq + 1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!valid_name(p, len)) {
            nps_error_set(err, "view '%s': dimension '%.*s' must be 1-63 characters of A-Za-z0-9_-",
                          view.name, (int)len, p);
            return NPS_ERR_INVALID;
        }
        if ((len == 5 && memcmp(p, "score", 5) == 0) || (len == 2 && memcmp(p, "ts", 2) == 0)) {
            nps_error_set(err, "view '%s': '%.*s' is not a dimension", view.name, (int)len, p);
            return NPS_ERR_INVALID;
        }
        if (view.ndims == NPS_MAX_VIEW_DIMS) {
            nps_error_set(err, "view '%s': at most %d dimensions", view.name, NPS_MAX_VIEW_DIMS);
            return NPS_ERR_INVALID;
        }
        int d = find_or_add_dim(&scratch, p, len);
        if (d < 0) {
            nps_error_set(err, "view '%s': at most %d distinct dimensions over all views",
                          view.name, NPS_MAX_DIMS);
            return NPS_ERR_INVALID;
        }
        for (int i = 0; i < view.ndims; i++) {
            if (view.dim[i] == d) {
                nps_error_set(err, "view '%s': dimension '%.*s' appears twice", view.name, (int)len,
                              p);
                return NPS_ERR_INVALID;
            }
        }
        view.dim[view.ndims++] = d;
        if (!comma)
            break;
        p = comma + 1;
    }
    *views = scratch;
    views->views[views->nviews++] = view;
    return NPS_OK;
}

static inline bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

size_t nps_percent_encode(const char *value, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

/* Appends that count what they would write once the buffer is full. */
static void put(char *out, size_t out_size, size_t *at, const char *s, size_t len)
{
    if (*at < out_size)
        memcpy(out + *at, s, *at + len <= out_size ? len : out_size - *at);
    *at += len;
}

size_t nps_segment_format(const nps_views *views, int view, const nps_str *values, char *out,
                          size_t out_size)
{
    const nps_view *v = &views->views[view];
    size_t at = 0;
    if (v->ndims == 0) {
        put(out, out_size, &at, NPS_SEGMENT_ALL, 1);
        return at;
    }
    char encoded[3 * 64];
    for (int i = 0; i < v->ndims; i++) {
        const char *name = views->dim_names[v->dim[i]];
        if (i)
            put(out, out_size, &at, ",", 1);
        put(out, out_size, &at, name, strlen(name));
        put(out, out_size, &at, "=", 1);
        const nps_str *value = &values[v->dim[i]];
        for (size_t done = 0; done < value->len; done += 64) {
            size_t chunk = value->len - done < 64 ? value->len - done : 64;
            put(out, out_size, &at, encoded, nps_percent_encode(value->ptr + done, chunk, encoded));
        }
    }
    return at;
}
