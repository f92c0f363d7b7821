/*
 * broker: `npstream broker`, librdkafka's in-process mock cluster served as
 * a real Kafka-protocol broker on loopback, so a newcomer, kcat and the
 * tests need no Kafka install.
 *
 * DESIGN: the mock cluster lives inside an rd_kafka_t (a producer that
 * never produces); it runs its own thread that accepts connections on
 * 127.0.0.1 only and answers produce, fetch, metadata and the consumer
 * group protocol. The main thread only waits for SIGINT or SIGTERM. The
 * signals are blocked before librdkafka starts its threads, so they inherit
 * the mask and only sigwait() here ever takes them.
 *
 * Retention is the mock's: about the newest 5 MiB (and 100,000 message
 * batches) per partition; older data is dropped as new data arrives. A
 * demo and test broker, not storage. Topics a client names that do not
 * exist are auto-created with the mock's default of 4 partitions.
 *
 * Consumer groups work, with one difference from Kafka: when a member joins
 * or leaves a running group, the mock waits session.timeout.ms - 1 s before
 * it hands out the new assignment, and offset commits fail with "rebalance
 * in progress" meanwhile (librdkafka 2.0).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "commands.h"
#include "config.h"

extern char **environ;

#define BROKER_PREFIX "npstream broker: "

/* librdkafka's own messages, prefixed like ours. */
static void broker_log(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
    (void)rk;
    (void)level;
    fprintf(stderr, BROKER_PREFIX "librdkafka %s: %s\n", facility, message);
}

/* The rd_kafka_t that hosts the mock cluster: a producer that never
 * produces and, without bootstrap.servers, never connects anywhere. */
static rd_kafka_t *broker_host_new(void)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, broker_log);
    /* Warnings and errors only: the host has no bootstrap.servers by
     * design, which librdkafka reports as a notice. */
    if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, BROKER_PREFIX "%s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        /* rd_kafka_new() keeps conf only on success. */
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, BROKER_PREFIX "cannot start librdkafka: %s\n", errstr);
    }
    return rk;
}

/* Print the mock's bootstrap address as `bootstrap=127.0.0.1:PORT`.
 * librdkafka 2.0 gives "127.0.0.1:PORT"; "localhost" is accepted too, in
 * case a later version names it so. A one-broker cluster has a single
 * address; false if it is anything else. */
static bool print_bootstrap(const char *bootstraps)
{
    const char *port = strrchr(bootstraps, ':');
    if (!port || strchr(bootstraps, ',') || port[1] == '\0') {
        fprintf(stderr, BROKER_PREFIX "unexpected mock bootstrap address '%s'\n", bootstraps);
        return false;
    }
    size_t host_len = (size_t)(port - bootstraps);
    bool loopback =
        (host_len == strlen("localhost") && strncmp(bootstraps, "localhost", host_len) == 0) ||
        (host_len == strlen("127.0.0.1") && strncmp(bootstraps, "127.0.0.1", host_len) == 0);
    if (!loopback) {
        fprintf(stderr, BROKER_PREFIX "mock cluster is not on loopback: '%s'\n", bootstraps);
        return false;
    }
    printf("bootstrap=127.0.0.1%s\n", port);
    return fflush(stdout) == 0;
}

/* Block SIGINT and SIGTERM, to be taken by sigwait() alone. Called before
 * any librdkafka thread exists, so that they all inherit the mask. A shell
 * starts background jobs with SIGINT ignored, and an ignored signal never
 * reaches sigwait(): restore the default so that `kill -INT` stops us. */
static bool block_stop_signals(sigset_t *signals, sigset_t *old_signals)
{
    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    int rc = pthread_sigmask(SIG_BLOCK, signals, old_signals);
    if (rc != 0) {
        fprintf(stderr, BROKER_PREFIX "cannot block signals: %s\n", strerror(rc));
        return false;
    }
    if (signal(SIGINT, SIG_DFL) == SIG_ERR || signal(SIGTERM, SIG_DFL) == SIG_ERR) {
        fprintf(stderr, BROKER_PREFIX "cannot set up SIGINT and SIGTERM\n");
        pthread_sigmask(SIG_SETMASK, old_signals, NULL);
        return false;
    }
    return true;
}

/* Block until SIGINT or SIGTERM, already blocked in `signals`. */
/* Wait for SIGINT or SIGTERM. With flap_ms, meanwhile take the broker
 * down for a third of every flap_ms (connections dropped, new ones
 * refused) and bring it back: a flaky network for tests and demos. */
static int wait_for_stop(const sigset_t *signals, rd_kafka_mock_cluster_t *mcluster,
                         int64_t flap_ms)
{
    bool down = false;
    for (;;) {
        int64_t wait_ms = !flap_ms ? 3600000 : down ? flap_ms / 3 : flap_ms - flap_ms / 3;
        struct timespec wait = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
        int signo = sigtimedwait(signals, NULL, &wait);
        if (signo == SIGINT || signo == SIGTERM) {
            fprintf(stderr, BROKER_PREFIX "%s, stopping\n", signo == SIGINT ? "SIGINT" : "SIGTERM");
            return 0;
        }
        if (signo < 0 && errno != EAGAIN && errno != EINTR) {
            fprintf(stderr, BROKER_PREFIX "sigtimedwait failed: %s\n", strerror(errno));
            return 1;
        }
        if (!flap_ms || signo >= 0)
            continue;
        down = !down;
        rd_kafka_resp_err_t err = down ? rd_kafka_mock_broker_set_down(mcluster, 1)
                                       : rd_kafka_mock_broker_set_up(mcluster, 1);
        fprintf(stderr, BROKER_PREFIX "flap: broker %s%s%s\n", down ? "down" : "up",
                err ? ": " : "", err ? rd_kafka_err2str(err) : "");
    }
}

static int broker_serve(const nps_config *config, const sigset_t *signals)
{
    rd_kafka_t *rk = broker_host_new();
    if (!rk)
        return 1;
    int rc = 1;
    rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, 1);
    if (!mcluster) {
        fprintf(stderr, BROKER_PREFIX "cannot create the mock cluster (no free loopback port?)\n");
        goto out_destroy_host;
    }
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(mcluster, config->topic, (int)config->partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, BROKER_PREFIX "cannot create topic '%s': %s\n", config->topic,
                rd_kafka_err2str(err));
        goto out_destroy_cluster;
    }
    if (!print_bootstrap(rd_kafka_mock_cluster_bootstraps(mcluster)))
        goto out_destroy_cluster;
    fprintf(stderr,
            BROKER_PREFIX "topic %s, %d partitions; keeps about 5 MiB per partition; "
                          "Ctrl-C stops it\n",
            config->topic, (int)config->partitions);
    rc = wait_for_stop(signals, mcluster, config->flap_ms);
out_destroy_cluster:
    rd_kafka_mock_cluster_destroy(mcluster);
out_destroy_host:
    rd_kafka_destroy(rk);
    return rc;
}

int nps_cmd_broker(int argc, char **argv)
{
    nps_config config;
    nps_error err = {{0}};
    if (nps_config_load(&config, NPS_CMD_BROKER, argc, argv, environ, &err) != NPS_OK) {
        fprintf(stderr, BROKER_PREFIX "%s\n", err.msg);
        return 2;
    }
    sigset_t signals, old_signals;
    if (!block_stop_signals(&signals, &old_signals))
        return 1;
    int rc = broker_serve(&config, &signals);
    pthread_sigmask(SIG_SETMASK, &old_signals, NULL);
    return rc;
}
