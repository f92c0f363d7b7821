/*
 * http: /metrics, /healthz, /readyz and the `serve` callback's paths over
 * libmicrohttpd's internal thread pool.
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Threads answering requests: enough that a page's parallel API calls,
 * each waiting on Redis, leave one free for /metrics and the probes. */
#define NPS_HTTP_THREADS 4u

struct nps_http {
    struct MHD_Daemon *daemon;
    nps_http_handlers handlers;
};

struct nps_http_request {
    struct MHD_Connection *conn;
};

const char *nps_http_arg(const nps_http_request *request, const char *name)
{
    return MHD_lookup_connection_value(request->conn, MHD_GET_ARGUMENT_KIND, name);
}

#define NOT_FOUND "not found: try /metrics, /healthz, /readyz\n"

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result serve_metrics(nps_http *http, struct MHD_Connection *conn)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return reply(conn, 500, "text/plain", "out of memory\n", 14);
    http->handlers.metrics(http->handlers.ctx, out);
    fclose(out);
    enum MHD_Result rc = reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rc;
}

static enum MHD_Result serve_other(nps_http *http, struct MHD_Connection *conn, const char *url)
{
    char *body = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&body, &len);
    if (!out)
        return reply(conn, 500, "text/plain", "out of memory\n", 14);
    const char *type = "text/plain";
    nps_http_request request = {conn};
    unsigned status = http->handlers.serve(http->handlers.serve_ctx, url, &request, out, &type);
    fclose(out);
    if (status == 0) {
        free(body);
        return reply(conn, 404, "text/plain", NOT_FOUND, strlen(NOT_FOUND));
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result serve_check(nps_http *http, struct MHD_Connection *conn, bool ready)
{
    char why[256] = "";
    bool ok = ready ? http->handlers.ready(http->handlers.ctx, why, sizeof(why))
                    : http->handlers.healthy(http->handlers.ctx, why, sizeof(why));
    char body[300];
    int n =
        snprintf(body, sizeof(body), "%s%s%s\n", ok ? "ok" : "not ready", why[0] ? ": " : "", why);
    return reply(conn, ok ? 200 : 503, "text/plain", body, (size_t)n);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)state;
    nps_http *http = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, 405, "text/plain", "GET only\n", 9);
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(http, conn);
    if (strcmp(url, "/healthz") == 0)
        return serve_check(http, conn, false);
    if (strcmp(url, "/readyz") == 0)
        return serve_check(http, conn, true);
    if (http->handlers.serve)
        return serve_other(http, conn, url);
    return reply(conn, 404, "text/plain", NOT_FOUND, strlen(NOT_FOUND));
}

nps_http *nps_http_start(const char *address, const nps_http_handlers *handlers, nps_error *err)
{
    char host[128];
    int port;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    if (!nps_parse_host_port(address, host, sizeof(host), &port) ||
        inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        nps_error_set(err, "http: expected an IPv4 HOST:PORT such as 127.0.0.1:9464, got '%s'",
                      address);
        return NULL;
    }
    addr.sin_port = htons((uint16_t)port);
    nps_http *http = calloc(1, sizeof(*http));
    if (!http) {
        nps_error_set(err, "out of memory for the HTTP endpoint");
        return NULL;
    }
    http->handlers = *handlers;
    http->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                                    (uint16_t)port, NULL, NULL, handle, http, MHD_OPTION_SOCK_ADDR,
                                    (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                    MHD_OPTION_THREAD_POOL_SIZE, NPS_HTTP_THREADS, MHD_OPTION_END);
    if (!http->daemon) {
        nps_error_set(err, "http: cannot listen on %s (in use, or not a local address?)", address);
        free(http);
        return NULL;
    }
    return http;
}

void nps_http_stop(nps_http *http)
{
    if (!http)
        return;
    MHD_stop_daemon(http->daemon);
    free(http);
}

int nps_http_port(const nps_http *http)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? (int)info->port : -1;
}
