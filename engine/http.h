/*
 * http: the engine's HTTP endpoint (libmicrohttpd, a small pool of its own
 * threads): /metrics (Prometheus text format), /healthz and /readyz, and
 * any other path through an optional `serve` callback (the web view,
 * web.c). The pipeline supplies the content through callbacks; this module
 * knows nothing of Kafka or Redis.
 *
 * Every callback runs on one of the HTTP threads, several at once: a
 * callback reads shared state only through atomics or under a lock, and a
 * slow one (a Redis round trip) delays only its own request.
 */
#ifndef NPS_HTTP_H
#define NPS_HTTP_H

#include <stdbool.h>
#include <stdio.h>

#include "npstream/nps.h"

/* One request, as the `serve` callback sees it. */
typedef struct nps_http_request nps_http_request;

/* The value of query argument `name` (percent-decoded), or NULL. */
const char *nps_http_arg(const nps_http_request *request, const char *name);

typedef struct nps_http_handlers {
    void *ctx;
    /* Write the Prometheus text exposition to `out`. */
    void (*metrics)(void *ctx, FILE *out);
    /* True when alive (healthz) / ready (readyz); else why in `why`. */
    bool (*healthy)(void *ctx, char *why, size_t size);
    bool (*ready)(void *ctx, char *why, size_t size);
    /* Optional (NULL: 404): any other GET path. Writes the body to `out`,
     * points *type at its Content-Type (a string that outlives the call)
     * and returns the HTTP status, or 0 when the path is not its own
     * (404). Replies are never cached. */
    unsigned (*serve)(void *serve_ctx, const char *path, const nps_http_request *request, FILE *out,
                      const char **type);
    void *serve_ctx;
} nps_http_handlers;

typedef struct nps_http nps_http;

/* Listen on "HOST:PORT" (an IPv4 address). NULL with err set on failure. */
nps_http *nps_http_start(const char *address, const nps_http_handlers *handlers, nps_error *err);
void nps_http_stop(nps_http *http);

/* The port listened on (the one picked when asked for port 0). */
int nps_http_port(const nps_http *http);

#endif
