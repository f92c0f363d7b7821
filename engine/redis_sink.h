/*
 * redis_sink: one synchronous hiredis connection that reconnects on
 * demand, and the flush script (flush.lua) loaded into it.
 *
 * A connection belongs to one thread. Every call that fails on I/O drops
 * the connection and reports it; the next call reconnects, so callers
 * only decide when to retry.
 */
#ifndef NPS_REDIS_SINK_H
#define NPS_REDIS_SINK_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "npstream/nps.h"

typedef struct nps_redis nps_redis;

/* address "HOST:PORT"; timeout_ms bounds connect and each reply. */
nps_redis *nps_redis_new(const char *address, int timeout_ms, nps_error *err);
void nps_redis_free(nps_redis *redis);

const char *nps_redis_address(const nps_redis *redis);

/* Authenticate every connection: AUTH user password (ACL), or AUTH
 * password when user is empty; nothing when password is empty. */
void nps_redis_set_auth(nps_redis *redis, const char *user, const char *password);

/* True when the last connection attempt failed because Redis refused
 * the credentials (a configuration error, not an outage). */
bool nps_redis_auth_refused(const nps_redis *redis);

/* AUTH on a connection made elsewhere (top, demo). False with err set
 * (without the password) when Redis refuses. */
bool nps_redis_auth(redisContext *ctx, const char *user, const char *password, nps_error *err);

/* A command from argv; NULL (with err set) on a connection error. A
 * Redis error reply is returned as a reply of type REDIS_REPLY_ERROR. */
redisReply *nps_redis_argv(nps_redis *redis, int argc, const char **argv, const size_t *lens,
                           nps_error *err);

/* EVALSHA of the flush script with no keys and these arguments, loading
 * the script first when Redis does not have it. */
redisReply *nps_redis_flush_unit(nps_redis *redis, int argc, const char **argv, const size_t *lens,
                                 nps_error *err);

/* One command's arguments, for pipelining. */
typedef struct nps_redis_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
    bool raw; /* argv is a whole command, not the flush script's arguments */
} nps_redis_cmd;

/* EVALSHA of the flush script for each of n units (or a raw command),
 * pipelined in order: all sent (written out each time about 1 MiB is
 * buffered), then the replies read in order. Returns how many replies arrived
 * (replies[0..returned)); fewer than n means the connection failed (err
 * set) and the rest are unknown: their units may or may not have run. A
 * NOSCRIPT reply is left NULL (the script is loaded again next time). */
size_t nps_redis_flush_units(nps_redis *redis, size_t n, const nps_redis_cmd *cmds,
                             redisReply **replies, nps_error *err);

#endif
