/*
 * limit_consumer: the ceiling for `npstream run` on this machine and
 * broker: a bare librdkafka high-level consumer that only reads every
 * message, consumed the way the engine consumes (bench/e2e, bench/README.md).
 *
 * Like `npstream run`, it starts K threads (default: one per core), each
 * its own rd_kafka_t in one consumer group, subscribed to the topic, with
 * the engine's consumer settings (auto.offset.reset=earliest, no commits,
 * session.timeout.ms 6000, fetch.wait.max.ms 100), each draining its
 * consumer queue with rd_kafka_consume_batch_queue() in batches of 1024.
 * Per message it touches the payload (sums the lengths and the first and
 * last byte) and notes the offset; nothing is parsed, counted or written.
 *
 * It stops once every partition has been read up to the total of --count
 * messages (counted as the highest offset read + 1 per partition, so a
 * partition re-read after a rebalance is not counted twice) and prints one
 * line of `key=value` figures on standard output:
 *
 *   messages, duplicates, bytes, consumers,
 *   start_to_last_s   process start to the last message read,
 *   assign_to_last_s  first partition assignment to the last message,
 *   first_to_last_s   first message to the last message,
 *   rate              messages / start_to_last_s (the headline, measured
 *                     as bench/e2e measures npstream: from process start),
 *   rate_assigned     messages / assign_to_last_s,
 *   mono_*_ns         CLOCK_MONOTONIC of the first assignment, the first and
 *                     the last message, for a driver's own clock.
 *
 * Exit status: 0 when all messages were read, 1 on a timeout or a Kafka
 * error, 2 on a bad option.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define BATCH_MESSAGES 1024
#define MAX_PARTITIONS 4096

typedef struct options {
    const char *brokers;
    const char *topic;
    const char *group;
    int64_t count;
    int consumers;
    int timeout_s;
} options;

typedef struct consumer {
    int id;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    pthread_t thread;
    uint64_t messages;
    uint64_t bytes;
    uint64_t touch;
} consumer;

static options opt = {.topic = "e2e", .count = 0, .consumers = 0, .timeout_s = 300};
static int64_t start_ns;
static _Atomic int64_t first_assign_ns;
static _Atomic int64_t first_message_ns;
static _Atomic int64_t last_message_ns;
static _Atomic int64_t next_offset[MAX_PARTITIONS]; /* highest offset read + 1 */
static _Atomic int64_t unique_read;
static atomic_bool done;
static atomic_bool failed;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The time since the process started, from /proc/self/stat's starttime,
 * so that librdkafka's and our own start-up count as they do for npstream. */
static int64_t process_start_ns(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long start_ticks = 0;
    /* after "pid (comm)": fields 3.. ; starttime is field 22 */
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p + 1, "%llu", &start_ticks) != 1)
        return now_ns();
    struct timespec boot;
    clock_gettime(CLOCK_BOOTTIME, &boot);
    int64_t since_boot_ns = (int64_t)boot.tv_sec * 1000000000 + boot.tv_nsec;
    int64_t started_ns =
        (int64_t)(start_ticks * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)));
    int64_t age_ns = since_boot_ns - started_ns;
    if (age_ns < 0 || age_ns > 10LL * 1000000000)
        return now_ns();
    return now_ns() - age_ns;
}

static void cas_min(_Atomic int64_t *slot, int64_t value)
{
    int64_t cur = atomic_load(slot);
    while ((cur == 0 || value < cur) && !atomic_compare_exchange_weak(slot, &cur, value)) {
    }
}

/* Raise *slot to value; returns by how much it rose (0 if it did not). */
static int64_t cas_max(_Atomic int64_t *slot, int64_t value)
{
    int64_t cur = atomic_load(slot);
    while (value > cur)
        if (atomic_compare_exchange_weak(slot, &cur, value))
            return value - cur;
    return 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (parts->cnt > 0)
            cas_min(&first_assign_ns, now_ns());
        fprintf(stderr, "limit_consumer: consumer %d: assigned %d partition(s)\n", c->id,
                parts->cnt);
        rd_kafka_assign(rk, parts);
    } else {
        fprintf(stderr, "limit_consumer: consumer %d: revoked %d partition(s)\n", c->id,
                parts->cnt);
        rd_kafka_assign(rk, NULL);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    consumer *c = opaque;
    fprintf(stderr, "limit_consumer: consumer %d: kafka: %s\n", c->id, reason);
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        atomic_store(&failed, true);
}

static rd_kafka_t *new_consumer(consumer *c)
{
    char errstr[512];
    char client_id[64];
    snprintf(client_id, sizeof(client_id), "limit-consumer-%d-%d", (int)getpid(), c->id);
    const char *settings[][2] = {
        {"bootstrap.servers", opt.brokers},
        {"group.id", opt.group},
        {"client.id", client_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "1500"},
        {"fetch.wait.max.ms", "100"},
        {"log_level", "3"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "limit_consumer: %s: %s\n", settings[i][0], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "limit_consumer: cannot create a consumer: %s\n", errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, opt.topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        fprintf(stderr, "limit_consumer: subscribe to %s: %s\n", opt.topic, rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

static void *consume_main(void *arg)
{
    consumer *c = arg;
    rd_kafka_message_t *batch[BATCH_MESSAGES];
    int64_t deadline = start_ns + (int64_t)opt.timeout_s * 1000000000;
    while (!atomic_load(&done) && !atomic_load(&failed)) {
        ssize_t n = rd_kafka_consume_batch_queue(c->queue, 100, batch, BATCH_MESSAGES);
        int64_t gained = 0;
        bool any = false;
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = batch[i];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    fprintf(stderr, "limit_consumer: consumer %d: %s\n", c->id,
                            rd_kafka_message_errstr(m));
            } else if (m->partition >= 0 && m->partition < MAX_PARTITIONS) {
                const unsigned char *p = m->payload;
                c->messages++;
                c->bytes += m->len;
                if (p && m->len > 0)
                    c->touch += (uint64_t)p[0] + p[m->len - 1];
                /* Messages of a partition arrive in offset order from 0, so
                 * the highest offset + 1 is how many of it were read; a
                 * partition re-read after a rebalance adds nothing. */
                gained += cas_max(&next_offset[m->partition], m->offset + 1);
                any = true;
            }
            rd_kafka_message_destroy(m);
        }
        if (any) {
            int64_t t = now_ns();
            cas_min(&first_message_ns, t);
            if (atomic_fetch_add(&unique_read, gained) + gained >= opt.count) {
                cas_max(&last_message_ns, t);
                atomic_store(&done, true);
            }
        }
        if (now_ns() > deadline) {
            fprintf(stderr,
                    "limit_consumer: timed out after %d s with %" PRId64 " of %" PRId64
                    " messages read\n",
                    opt.timeout_s, atomic_load(&unique_read), opt.count);
            atomic_store(&failed, true);
        }
    }
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: limit_consumer --brokers HOST:PORT --group G --count N [--topic T]\n"
                 "                      [--consumers K] [--timeout-s S]\n"
                 "  reads N messages of topic T (default e2e) from the beginning with K\n"
                 "  librdkafka group consumers (default: one per core), as npstream run\n"
                 "  consumes, and prints messages/s; see bench/README.md\n");
}

static bool parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "limit_consumer: %s needs a value\n", a);
            return false;
        }
        const char *v = argv[++i];
        char *end = NULL;
        if (strcmp(a, "--brokers") == 0)
            opt.brokers = v;
        else if (strcmp(a, "--topic") == 0)
            opt.topic = v;
        else if (strcmp(a, "--group") == 0)
            opt.group = v;
        else if (strcmp(a, "--count") == 0)
            opt.count = strtoll(v, &end, 10);
        else if (strcmp(a, "--consumers") == 0)
            opt.consumers = (int)strtol(v, &end, 10);
        else if (strcmp(a, "--timeout-s") == 0)
            opt.timeout_s = (int)strtol(v, &end, 10);
        else {
            fprintf(stderr, "limit_consumer: unknown option %s\n", a);
            return false;
        }
        if (end && (*end != '\0' || end == v)) {
            fprintf(stderr, "limit_consumer: %s: not a number: '%s'\n", a, v);
            return false;
        }
    }
    if (!opt.brokers || !opt.group || opt.count <= 0) {
        fprintf(stderr, "limit_consumer: --brokers, --group and --count (> 0) are required\n");
        return false;
    }
    if (opt.consumers <= 0)
        opt.consumers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (opt.consumers < 1)
        opt.consumers = 1;
    if (opt.timeout_s <= 0)
        opt.timeout_s = 300;
    return true;
}

int main(int argc, char **argv)
{
    start_ns = process_start_ns();
    if (!parse_args(argc, argv)) {
        usage(stderr);
        return 2;
    }
    consumer *cs = calloc((size_t)opt.consumers, sizeof(*cs));
    if (!cs)
        return 1;
    for (int i = 0; i < opt.consumers; i++) {
        cs[i].id = i;
        cs[i].rk = new_consumer(&cs[i]);
        if (!cs[i].rk)
            return 1;
        cs[i].queue = rd_kafka_queue_get_consumer(cs[i].rk);
    }
    for (int i = 0; i < opt.consumers; i++)
        pthread_create(&cs[i].thread, NULL, consume_main, &cs[i]);
    for (int i = 0; i < opt.consumers; i++)
        pthread_join(cs[i].thread, NULL);

    uint64_t messages = 0, bytes = 0, touch = 0;
    for (int i = 0; i < opt.consumers; i++) {
        messages += cs[i].messages;
        bytes += cs[i].bytes;
        touch += cs[i].touch;
    }
    int rc = 0;
    if (!atomic_load(&done)) {
        rc = 1;
    } else {
        int64_t last = atomic_load(&last_message_ns);
        double start_s = (double)(last - start_ns) / 1e9;
        double assign_s = (double)(last - atomic_load(&first_assign_ns)) / 1e9;
        double first_s = (double)(last - atomic_load(&first_message_ns)) / 1e9;
        int64_t unique = atomic_load(&unique_read);
        printf("messages=%" PRId64 " duplicates=%" PRIu64 " bytes=%" PRIu64
               " consumers=%d start_to_last_s=%.3f assign_to_last_s=%.3f first_to_last_s=%.3f"
               " rate=%.0f rate_assigned=%.0f touch=%" PRIu64 " mono_assign_ns=%" PRId64
               " mono_first_ns=%" PRId64 " mono_last_ns=%" PRId64 "\n",
               unique, messages - (uint64_t)unique, bytes, opt.consumers, start_s, assign_s,
               first_s, (double)unique / start_s, (double)unique / assign_s, touch,
               atomic_load(&first_assign_ns), atomic_load(&first_message_ns), last);
        fflush(stdout);
    }
    /* Leave without the group's leave/close handshake: the figures are out,
     * and the group is never used again. */
    for (int i = 0; i < opt.consumers; i++) {
        rd_kafka_queue_destroy(cs[i].queue);
        rd_kafka_destroy_flags(cs[i].rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    free(cs);
    return rc;
}
