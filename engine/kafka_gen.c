/*
 * kafka_gen: `npstream gen --brokers B`, the event generator's output to a
 * Kafka topic.
 *
 * Each event is produced keyed by its response id, so the default
 * partitioner spreads the events evenly over the partitions and a response
 * always lands in the same one. The producer is idempotent: librdkafka's
 * retries never duplicate or reorder a message, and a full local queue is
 * waited out, never dropped. Every message is accounted for by its delivery
 * report; the run fails (exit 1) if any message failed or is still
 * undelivered after the final flush.
 *
 * Everything runs on the calling thread: the delivery and error callbacks
 * are served by rd_kafka_poll()/rd_kafka_flush() here, so the counters need
 * no lock.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "commands.h"
#include "kafka_conf.h"

#define GEN_PREFIX "npstream gen: "

/* How long librdkafka may try to deliver one message (queueing, retries,
 * reconnects included) before failing it. Loopback or a healthy cluster
 * delivers in milliseconds; against an unreachable broker the run then
 * fails after about this long instead of librdkafka's default 5 minutes. */
#define GEN_MESSAGE_TIMEOUT_MS "10000"
/* Generous: on a busy machine the last batches may queue behind others. */
#define GEN_FLUSH_TIMEOUT_MS 60000
/* While paced or while the local queue is full, wait for this long at
 * most between checks: bursts stay at a few milliseconds' worth. */
#define GEN_WAIT_MS 2

typedef struct gen_run {
    const nps_config *config;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int64_t start_ns;
    int64_t produced;  /* handed to librdkafka */
    int64_t delivered; /* acknowledged by the broker (delivery reports) */
    int64_t failed;    /* failed delivery reports */
    rd_kafka_resp_err_t first_failure;
    bool fatal;            /* the producer cannot go on (error callback) */
    int printed_errors[8]; /* codes of the client errors printed so far */
    size_t printed_count;
    char last_error[512];      /* the last client error, for the summary */
    int64_t progress_ns;       /* when progress was last printed */
    int64_t progress_produced; /* produced at that time */
} gen_run;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* @locality the gen thread, inside rd_kafka_poll() or rd_kafka_flush() */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
    (void)rk;
    gen_run *run = opaque;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        run->delivered++;
        return;
    }
    if (run->failed++ == 0)
        run->first_failure = message->err;
}

/* @locality the gen thread, inside rd_kafka_poll() or rd_kafka_flush().
 * Client errors (a broker down, a refused connection) are mostly
 * transient: librdkafka retries them. Print each kind of error once, not on
 * every reconnect; a fatal one stops the run. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    gen_run *run = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        fprintf(stderr, GEN_PREFIX "fatal producer error: %s\n", fatal);
        run->fatal = true;
        return;
    }
    snprintf(run->last_error, sizeof(run->last_error), "%s", reason);
    for (size_t i = 0; i < run->printed_count; i++)
        if (run->printed_errors[i] == err)
            return;
    if (run->printed_count < sizeof(run->printed_errors) / sizeof(run->printed_errors[0]))
        run->printed_errors[run->printed_count++] = err;
    fprintf(stderr, GEN_PREFIX "kafka: %s\n", reason);
}

/* Kafka's rule for topic names, checked here so that a bad one is a clear
 * usage error rather than a delivery failure seconds later. */
static bool topic_name_valid(const char *topic)
{
    size_t len = strlen(topic);
    if (len == 0 || len > 249 || strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0)
        return false;
    return strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
           len;
}

static bool conf_set_all(rd_kafka_conf_t *conf, const nps_config *config)
{
    /* Batches of up to 10 ms and lz4 favour throughput; lz4 also packs
     * more events into the embedded broker's 5 MiB per partition. */
    const char *settings[][2] = {
        {"bootstrap.servers", config->brokers},
        {"enable.idempotence", "true"},
        {"linger.ms", "10"},
        {"batch.num.messages", "10000"},
        {"compression.type", "lz4"},
        {"message.timeout.ms", GEN_MESSAGE_TIMEOUT_MS},
        /* Connection errors go to on_error; the log would repeat them. */
        {"log_level", "2"},
    };
    char errstr[512];
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, GEN_PREFIX "%s\n", errstr);
            return false;
        }
    }
    return true;
}

static bool producer_start(gen_run *run)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, run);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    nps_error err = {{0}};
    if (!conf_set_all(conf, run->config)) {
        rd_kafka_conf_destroy(conf);
        return false;
    }
    if (!nps_kafka_conf_apply(conf, run->config, &err)) {
        fprintf(stderr, GEN_PREFIX "%s\n", err.msg);
        rd_kafka_conf_destroy(conf);
        return false;
    }
    char errstr[512];
    run->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!run->rk) {
        /* rd_kafka_new() keeps conf only on success. */
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, GEN_PREFIX "cannot create the Kafka producer: %s\n", errstr);
        return false;
    }
    run->rkt = rd_kafka_topic_new(run->rk, run->config->topic, NULL);
    if (!run->rkt) {
        fprintf(stderr, GEN_PREFIX "topic '%s': %s\n", run->config->topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        return false;
    }
    return true;
}

/* Hand one message to librdkafka, waiting while its queue is full: the
 * queue drains as batches are delivered, so nothing is ever dropped. */
static bool produce_one(gen_run *run, const char *value, size_t value_len, const char *key)
{
    for (;;) {
        rd_kafka_resp_err_t err =
            rd_kafka_producev(run->rk, RD_KAFKA_V_RKT(run->rkt), RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE((void *)value, value_len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            run->produced++;
            return true;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, GEN_PREFIX "cannot produce to '%s': %s\n", run->config->topic,
                    rd_kafka_err2str(err));
            return false;
        }
        rd_kafka_poll(run->rk, GEN_WAIT_MS);
    }
}

/* Hold back until the next message is due at config->rate_limit per
 * second, measured from the start, so that the average rate is exact and
 * a late start catches up. Waiting in rd_kafka_poll() serves the delivery
 * reports meanwhile. */
static void pace(gen_run *run)
{
    if (run->config->rate_limit <= 0)
        return;
    double due_ns = (double)run->produced * 1e9 / (double)run->config->rate_limit;
    for (;;) {
        double ahead_ns = due_ns - (double)(now_ns() - run->start_ns);
        if (ahead_ns <= 0)
            return;
        int wait_ms = ahead_ns < GEN_WAIT_MS * 1e6 ? (int)(ahead_ns / 1e6) + 1 : GEN_WAIT_MS;
        rd_kafka_poll(run->rk, wait_ms);
    }
}

static void report_progress(gen_run *run, int64_t now)
{
    int64_t since_ns = now - run->progress_ns;
    if (since_ns < 1000000000)
        return;
    double per_s = (double)(run->produced - run->progress_produced) * 1e9 / (double)since_ns;
    fprintf(stderr, GEN_PREFIX "%" PRId64 " / %" PRId64 " sent (%.0f/s), %" PRId64 " delivered\n",
            run->produced, run->config->count, per_s, run->delivered);
    run->progress_ns = now;
    run->progress_produced = run->produced;
}

/* Produce config->count events; stop early on the first failed delivery
 * or a fatal error, since the run has failed by then. */
static void produce_all(gen_run *run, nps_gen *gen)
{
    char value[1024], key[64];
    while (run->produced < run->config->count && run->failed == 0 && !run->fatal) {
        size_t value_len = nps_gen_next(gen, value, sizeof(value), key, sizeof(key));
        if (value_len == 0) {
            fprintf(stderr, GEN_PREFIX "generated event does not fit %zu bytes\n", sizeof(value));
            return;
        }
        pace(run);
        if (!produce_one(run, value, value_len, key))
            return;
        rd_kafka_poll(run->rk, 0);
        report_progress(run, now_ns());
    }
}

/* Wait for the outstanding deliveries and report; 0 if every event was
 * delivered, else 1. */
static int finish(gen_run *run)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(run->rk, GEN_FLUSH_TIMEOUT_MS);
    double seconds = (double)(now_ns() - run->start_ns) / 1e9;
    int64_t undelivered = run->produced - run->delivered - run->failed;
    int64_t unsent = run->config->count - run->produced;
    if (run->failed == 0 && undelivered == 0 && unsent == 0) {
        fprintf(stderr, GEN_PREFIX "%" PRId64 " delivered to %s in %.2f s (%.0f/s)\n",
                run->delivered, run->config->topic, seconds,
                seconds > 0 ? (double)run->delivered / seconds : 0.0);
        return 0;
    }
    fprintf(stderr, GEN_PREFIX "%" PRId64 " of %" PRId64 " delivered to %s in %.2f s\n",
            run->delivered, run->config->count, run->config->topic, seconds);
    if (run->failed > 0)
        fprintf(stderr, GEN_PREFIX "%" PRId64 " failed: %s%s%s\n", run->failed,
                rd_kafka_err2str(run->first_failure), run->last_error[0] ? "; last error: " : "",
                run->last_error);
    if (undelivered > 0)
        fprintf(stderr, GEN_PREFIX "%" PRId64 " still undelivered after %d s (%s)\n", undelivered,
                GEN_FLUSH_TIMEOUT_MS / 1000, rd_kafka_err2str(err));
    if (unsent > 0)
        fprintf(stderr, GEN_PREFIX "%" PRId64 " not sent: the run stopped early\n", unsent);
    return 1;
}

int nps_gen_to_kafka(const nps_config *config, nps_gen *gen)
{
    if (!topic_name_valid(config->topic)) {
        fprintf(stderr, GEN_PREFIX "invalid topic name '%s': use 1 to 249 of a-z A-Z 0-9 . _ -\n",
                config->topic);
        return 2;
    }
    gen_run run = {.config = config, .first_failure = RD_KAFKA_RESP_ERR_NO_ERROR};
    int rc = 1;
    if (!producer_start(&run))
        goto out_destroy;
    run.start_ns = now_ns();
    run.progress_ns = run.start_ns;
    produce_all(&run, gen);
    rc = finish(&run);
out_destroy:
    if (run.rkt)
        rd_kafka_topic_destroy(run.rkt);
    if (run.rk)
        rd_kafka_destroy(run.rk);
    return rc;
}
