/*
 * web: the web view on the engine's HTTP port: the page (engine/web/
 * index.html, compiled in) at / and the JSON API it polls under /api/,
 * read from Redis (docs/web.md). It plugs into http.c as its `serve`
 * callback and shares nothing with the pipeline's threads: each request
 * opens its own Redis connection, so a slow or absent Redis delays only
 * that request, never a worker or the flusher.
 */
#ifndef NPS_WEB_H
#define NPS_WEB_H

#include <stdio.h>

#include "config.h"
#include "http.h"

typedef struct nps_web nps_web;

/* What the view reads: --redis, --redis-user, --redis-password and
 * --prefix of `config` (copied). NULL with err set on failure. */
nps_web *nps_web_new(const nps_config *config, nps_error *err);
void nps_web_destroy(nps_web *web);

/* The nps_http_handlers `serve` callback; ctx is an nps_web.
 * @locality any HTTP thread, several at once (nps_web is only read) */
unsigned nps_web_serve(void *ctx, const char *path, const nps_http_request *request, FILE *out,
                       const char **type);

#endif
