/*
 * http: the engine's HTTP endpoint (libmicrohttpd, its own thread):
 * /metrics (Prometheus text format), /healthz and /readyz. The pipeline
 * supplies the content through callbacks; this module knows nothing of
 * Kafka or Redis.
 */
#ifndef NPS_HTTP_H
#define NPS_HTTP_H

#include <stdbool.h>
#include <stdio.h>

#include "npstream/nps.h"

typedef struct nps_http_handlers {
    void *ctx;
    /* Write the Prometheus text exposition to `out`. */
    void (*metrics)(void *ctx, FILE *out);
    /* True when alive (healthz) / ready (readyz); else why in `why`. */
    bool (*healthy)(void *ctx, char *why, size_t size);
    bool (*ready)(void *ctx, char *why, size_t size);
} nps_http_handlers;

typedef struct nps_http nps_http;

/* Listen on "HOST:PORT" (an IPv4 address). NULL with err set on failure. */
nps_http *nps_http_start(const char *address, const nps_http_handlers *handlers, nps_error *err);
void nps_http_stop(nps_http *http);

/* The port listened on (the one picked when asked for port 0). */
int nps_http_port(const nps_http *http);

#endif
