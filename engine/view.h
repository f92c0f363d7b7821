/*
 * view: named lists of dimensions, and the segment strings of DESIGN.md
 * ("d1=v1,d2=v2", values percent-encoded; the view `all` has the one
 * segment "*").
 *
 * A view set is built once at start (cold path) and then only read, by
 * any number of threads.
 */
#ifndef NPS_VIEW_H
#define NPS_VIEW_H

#include <stddef.h>

#include "npstream/nps.h"

#define NPS_MAX_VIEWS 32
#define NPS_MAX_VIEW_DIMS 8
#define NPS_MAX_DIMS 32 /* distinct dimension fields over all views */
#define NPS_NAME_MAX 64

#define NPS_VIEW_ALL "all"
#define NPS_SEGMENT_ALL "*"
#define NPS_SEGMENT_OVERFLOW "~overflow"

/* A string slice; not NUL-terminated. */
typedef struct nps_str {
    const char *ptr;
    size_t len;
} nps_str;

typedef struct nps_view {
    char name[NPS_NAME_MAX];
    int ndims;
    int dim[NPS_MAX_VIEW_DIMS]; /* index into nps_views.dim_names */
} nps_view;

typedef struct nps_views {
    int nviews; /* views[0] is always `all` */
    nps_view views[NPS_MAX_VIEWS];
    int ndims;
    char dim_names[NPS_MAX_DIMS][NPS_NAME_MAX];
} nps_views;

/* A set holding only the view `all`. */
void nps_views_init(nps_views *views);

/* Add a view from "NAME=DIM[,DIM...]". Names and dimensions are
 * [A-Za-z0-9_-]{1,63}; a view name is unique; `score` and `ts` are not
 * dimensions. */
nps_status nps_views_add(nps_views *views, const char *spec, nps_error *err);

/* Index of a view by name, or -1. */
int nps_views_find(const nps_views *views, const char *name);

/* The view whose flush units append the detractor stream's entries, each
 * with the unit of nps_detractor_unit_bucket: the one with the most
 * dimensions (the last of those), whose units most often carry counts of
 * their own anyway, so the entries add few scripts to a flush; `all` (0)
 * alone. */
int nps_views_detractor_view(const nps_views *views);

/* Percent-encode a dimension value: bytes outside A-Za-z0-9-._~ as %XX.
 * Writes at most 3 * len bytes; returns the length written. */
size_t nps_percent_encode(const char *value, size_t len, char *out);

/* The segment string of `view` for the event's dimension values
 * (values[i] is the value of dim_names[i]). Returns the length, or the
 * length it would need when larger than out_size (nothing is then
 * written past out_size). */
size_t nps_segment_format(const nps_views *views, int view, const nps_str *values, char *out,
                          size_t out_size);

#endif
