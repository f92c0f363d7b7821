/*
 * redis_sink: reconnecting hiredis connection plus the flush script.
 */
#include "redis_sink.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "config.h"

extern const char nps_flush_lua[];

/* A flush's pipeline is written to the socket whenever this much is
 * buffered, not all at once before the first reply is read: hiredis
 * keeps the whole unsent pipeline in one growing buffer (a flush reading
 * a backlog sends tens of MiB), copies it at each doubling, and moves
 * the unsent rest to the front after each partial write. The replies
 * (a few dozen bytes a unit) wait in the socket meanwhile. */
#define PIPELINE_WRITE_BYTES (1u << 20)

struct nps_redis {
    char address[256];
    char host[256];
    int port;
    int timeout_ms;
    redisContext *ctx;
    char user[128];
    char password[512];
    char sha[41];      /* the script's; empty until loaded on this connection's server */
    bool auth_refused; /* the last connection attempt was refused by AUTH */
};

nps_redis *nps_redis_new(const char *address, int timeout_ms, nps_error *err)
{
    nps_redis *redis = calloc(1, sizeof(*redis));
    if (!redis) {
        nps_error_set(err, "out of memory for a Redis connection");
        return NULL;
    }
    snprintf(redis->address, sizeof(redis->address), "%s", address);
    if (!nps_parse_host_port(address, redis->host, sizeof(redis->host), &redis->port)) {
        nps_error_set(err, "redis: expected HOST:PORT, got '%s'", address);
        free(redis);
        return NULL;
    }
    redis->timeout_ms = timeout_ms;
    return redis;
}

void nps_redis_set_auth(nps_redis *redis, const char *user, const char *password)
{
    snprintf(redis->user, sizeof(redis->user), "%s", user);
    snprintf(redis->password, sizeof(redis->password), "%s", password);
}

bool nps_redis_auth(redisContext *ctx, const char *user, const char *password, nps_error *err)
{
    if (!password[0])
        return true;
    redisReply *r = user[0] ? redisCommand(ctx, "AUTH %s %s", user, password)
                            : redisCommand(ctx, "AUTH %s", password);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok)
        nps_error_set(err, "redis AUTH%s%s refused: %s", user[0] ? " as " : "", user,
                      !r                             ? ctx->errstr
                      : r->type == REDIS_REPLY_ERROR ? r->str
                                                     : "unexpected reply");
    if (r)
        freeReplyObject(r);
    return ok;
}

static void drop(nps_redis *redis)
{
    if (redis->ctx)
        redisFree(redis->ctx);
    redis->ctx = NULL;
    redis->sha[0] = '\0';
}

void nps_redis_free(nps_redis *redis)
{
    if (!redis)
        return;
    drop(redis);
    free(redis);
}

const char *nps_redis_address(const nps_redis *redis)
{
    return redis->address;
}

static bool connect_now(nps_redis *redis, nps_error *err)
{
    if (redis->ctx)
        return true;
    struct timeval tv = {redis->timeout_ms / 1000, (redis->timeout_ms % 1000) * 1000L};
    redis->ctx = redisConnectWithTimeout(redis->host, redis->port, tv);
    if (!redis->ctx || redis->ctx->err) {
        nps_error_set(err, "redis %s: %s", redis->address,
                      redis->ctx ? redis->ctx->errstr : "cannot allocate a context");
        drop(redis);
        return false;
    }
    redisSetTimeout(redis->ctx, tv);
    nps_error auth_err = {{0}};
    redis->auth_refused = !nps_redis_auth(redis->ctx, redis->user, redis->password, &auth_err);
    if (redis->auth_refused) {
        nps_error_set(err, "redis %s: %s", redis->address, auth_err.msg);
        drop(redis);
        return false;
    }
    return true;
}

redisReply *nps_redis_argv(nps_redis *redis, int argc, const char **argv, const size_t *lens,
                           nps_error *err)
{
    if (!connect_now(redis, err))
        return NULL;
    redisReply *reply = redisCommandArgv(redis->ctx, argc, argv, lens);
    if (!reply) {
        nps_error_set(err, "redis %s: %s", redis->address, redis->ctx->errstr);
        drop(redis);
    }
    return reply;
}

static bool load_script(nps_redis *redis, nps_error *err)
{
    const char *argv[] = {"SCRIPT", "LOAD", nps_flush_lua};
    size_t lens[] = {6, 4, strlen(nps_flush_lua)};
    redisReply *reply = nps_redis_argv(redis, 3, argv, lens, err);
    if (!reply)
        return false;
    bool ok = reply->type == REDIS_REPLY_STRING && reply->len == 40;
    if (ok)
        memcpy(redis->sha, reply->str, 41);
    else
        nps_error_set(err, "redis %s: SCRIPT LOAD failed: %s", redis->address,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    freeReplyObject(reply);
    return ok;
}

redisReply *nps_redis_flush_unit(nps_redis *redis, int argc, const char **argv, const size_t *lens,
                                 nps_error *err)
{
    const char **args = malloc((size_t)(argc + 3) * sizeof(char *));
    size_t *arglens = malloc((size_t)(argc + 3) * sizeof(size_t));
    redisReply *reply = NULL;
    if (!args || !arglens) {
        nps_error_set(err, "out of memory for a flush command");
        goto out;
    }
    memcpy(args + 3, argv, (size_t)argc * sizeof(char *));
    memcpy(arglens + 3, lens, (size_t)argc * sizeof(size_t));
    args[0] = "EVALSHA";
    arglens[0] = 7;
    args[2] = "0";
    arglens[2] = 1;
    /* Twice at most: a restarted or flushed Redis forgets its scripts. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!connect_now(redis, err) || (!redis->sha[0] && !load_script(redis, err)))
            goto out;
        args[1] = redis->sha;
        arglens[1] = 40;
        reply = nps_redis_argv(redis, argc + 3, args, arglens, err);
        if (!reply || reply->type != REDIS_REPLY_ERROR || strncmp(reply->str, "NOSCRIPT", 8) != 0)
            goto out;
        freeReplyObject(reply);
        reply = NULL;
        redis->sha[0] = '\0';
    }
    nps_error_set(err, "redis %s: the flush script could not be loaded", redis->address);
out:
    free(args);
    free(arglens);
    return reply;
}

size_t nps_redis_flush_units(nps_redis *redis, size_t n, const nps_redis_cmd *cmds,
                             redisReply **replies, nps_error *err)
{
    if (!connect_now(redis, err) || (!redis->sha[0] && !load_script(redis, err)))
        return 0;
    size_t most = 0;
    for (size_t i = 0; i < n; i++)
        most = (size_t)cmds[i].argc > most ? (size_t)cmds[i].argc : most;
    const char **args = malloc((most + 3) * sizeof(char *));
    size_t *lens = malloc((most + 3) * sizeof(size_t));
    if (!args || !lens) {
        free(args);
        free(lens);
        nps_error_set(err, "out of memory for a flush pipeline");
        return 0;
    }
    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = redis->sha;
    lens[1] = 40;
    args[2] = "0";
    lens[2] = 1;
    size_t buffered = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(args + 3, cmds[i].argv, (size_t)cmds[i].argc * sizeof(char *));
        memcpy(lens + 3, cmds[i].lens, (size_t)cmds[i].argc * sizeof(size_t));
        if (cmds[i].raw)
            redisAppendCommandArgv(redis->ctx, cmds[i].argc, cmds[i].argv, cmds[i].lens);
        else
            redisAppendCommandArgv(redis->ctx, cmds[i].argc + 3, args, lens);
        for (int a = 0; a < cmds[i].argc; a++)
            buffered += cmds[i].lens[a];
        if (buffered < PIPELINE_WRITE_BYTES)
            continue;
        buffered = 0;
        /* On an error the context keeps it, and the first redisGetReply
         * below reports it. */
        for (int done = 0; !done && redisBufferWrite(redis->ctx, &done) == REDIS_OK;)
            ;
    }
    free(args);
    free(lens);
    size_t got = 0;
    bool noscript = false;
    for (; got < n; got++) {
        void *reply = NULL;
        if (redisGetReply(redis->ctx, &reply) != REDIS_OK || !reply) {
            nps_error_set(err, "redis %s: %s", redis->address, redis->ctx->errstr);
            drop(redis);
            break;
        }
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            r = NULL;
            noscript = true;
        }
        replies[got] = r;
    }
    if (noscript && redis->ctx)
        redis->sha[0] = '\0';
    return got;
}

bool nps_redis_auth_refused(const nps_redis *redis)
{
    return redis->auth_refused;
}
