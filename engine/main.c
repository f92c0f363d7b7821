/*
 * npstream: the one binary. `run` without --brokers aggregates JSON lines
 * (file or stdin) with a worker thread and a merger thread and prints the
 * rollup; with --brokers it is the Kafka-to-Redis pipeline (pipeline.c).
 * `gen` writes realistic events; broker, top and demo live in their own
 * files (commands.h).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "event_gen.h"
#include "file_source.h"
#include "report.h"
#include "shard.h"
#include "state.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "npstream %s: streaming Net Promoter Score aggregation\n\n"
            "usage:\n"
            "  npstream run [options]    consume survey events from Kafka (--brokers) and\n"
            "                            publish NPS rollups to Redis, exactly once; without\n"
            "                            --brokers, aggregate JSON lines from --input and\n"
            "                            print NPS per view, segment and window\n"
            "  npstream gen [options]    realistic survey events, to Kafka (--brokers) or\n"
            "                            as JSON lines (--output)\n"
            "  npstream broker [options] the embedded Kafka-protocol broker on loopback\n"
            "  npstream top [options]    live NPS table read from Redis\n"
            "  npstream demo [options]   broker + gen + run against a local Redis, with the\n"
            "                            live table\n"
            "  npstream COMMAND --help  the options of a command\n\n"
            "Every option is also read from a config file (--config) and from an\n"
            "NPSTREAM_* environment variable; flags win over variables, variables over\n"
            "the file.\n",
            NPS_VERSION);
}

static void command_help(const char *command, unsigned mask)
{
    printf("usage: npstream %s [options]\n\noptions:\n", command);
    nps_config_print_help(mask, stdout);
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

typedef struct merger {
    const nps_config *config;
    nps_shard *shard;
    nps_state *state;
    atomic_bool input_done; /* worker -> merger: release after the final drain */
    nps_status status;
    nps_error err;
} merger;

/* @locality merger thread: apply deltas as the worker hands them over. */
static void *merger_main(void *arg)
{
    merger *m = arg;
    for (;;) {
        bool done = atomic_load_explicit(&m->input_done, memory_order_acquire);
        nps_delta *delta = nps_shard_take(m->shard);
        if (delta) {
            m->status = nps_state_apply(m->state, delta, nps_clock_now_ms(m->config), &m->err);
            nps_shard_give_back(m->shard, delta);
            if (m->status != NPS_OK)
                return NULL;
            continue;
        }
        if (done)
            return NULL;
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
}

static int cmd_run(int argc, char **argv)
{
    nps_config config;
    nps_error err = {{0}};
    if (nps_config_load(&config, NPS_CMD_RUN, argc, argv, environ, &err) != NPS_OK) {
        fprintf(stderr, "npstream run: %s\n", err.msg);
        return 2;
    }
    if (config.brokers[0])
        return nps_run_pipeline(&config);
    nps_shard *shard = nps_shard_new(&config, &err);
    nps_state *state = shard ? nps_state_new(&config, &err) : NULL;
    if (!state) {
        fprintf(stderr, "npstream run: %s\n", err.msg);
        nps_shard_destroy(shard);
        return 1;
    }
    merger m = {.config = &config, .shard = shard, .state = state};
    atomic_init(&m.input_done, false);
    pthread_t thread;
    if (pthread_create(&thread, NULL, merger_main, &m) != 0) {
        fprintf(stderr, "npstream run: cannot start the merger thread\n");
        return 1;
    }
    nps_file_progress progress = {0};
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    nps_status status = nps_file_source_run(&config, shard, &progress, &err);
    atomic_store_explicit(&m.input_done, true, memory_order_release);
    pthread_join(thread, NULL);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (status != NPS_OK || m.status != NPS_OK) {
        fprintf(stderr, "npstream run: %s\n", status != NPS_OK ? err.msg : m.err.msg);
        nps_state_destroy(state);
        nps_shard_destroy(shard);
        return 1;
    }
    double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    fprintf(stderr, "npstream run: %" PRIu64 " lines, %.1f MB in %.2f s (%.0f lines/s)\n",
            progress.lines, (double)progress.bytes / 1e6, seconds,
            seconds > 0 ? (double)progress.lines / seconds : 0.0);
    nps_state_advance(state, nps_clock_now_ms(&config));
    if (strcmp(config.format, "json") == 0)
        nps_report_json(&config, state, stdout);
    else
        nps_report_table(&config, state, stdout);
    nps_state_destroy(state);
    nps_shard_destroy(shard);
    return 0;
}

static int cmd_gen(int argc, char **argv)
{
    nps_config config;
    nps_error err = {{0}};
    if (nps_config_load(&config, NPS_CMD_GEN, argc, argv, environ, &err) != NPS_OK) {
        fprintf(stderr, "npstream gen: %s\n", err.msg);
        return 2;
    }
    nps_gen_options options = {
        .seed = config.seed,
        .now_ms = nps_clock_now_ms(&config),
        .invalid_share = config.invalid_share,
        .sent_share = config.sent_share,
        .duplicate_share = config.duplicate_share,
    };
    snprintf(options.drop, sizeof(options.drop), "%s", config.drop);
    nps_gen *gen = nps_gen_new(&options, &err);
    if (!gen) {
        fprintf(stderr, "npstream gen: %s\n", err.msg);
        return 1;
    }
    if (config.brokers[0]) {
        int rc = nps_gen_to_kafka(&config, gen);
        nps_gen_destroy(gen);
        return rc;
    }
    FILE *out = strcmp(config.output, "-") == 0 ? stdout : fopen(config.output, "w");
    if (!out) {
        fprintf(stderr, "npstream gen: cannot write %s\n", config.output);
        nps_gen_destroy(gen);
        return 1;
    }
    char msg[1024], key[64];
    bool tty = isatty(STDERR_FILENO);
    for (int64_t i = 0; i < config.count; i++) {
        size_t len = nps_gen_next(gen, msg, sizeof(msg), key, sizeof(key));
        fwrite(msg, 1, len, out);
        fputc('\n', out);
        if (tty && (i + 1) % 100000 == 0)
            fprintf(stderr, "\rnpstream gen: %" PRId64 " / %" PRId64, i + 1, config.count);
    }
    if (tty && config.count >= 100000)
        fprintf(stderr, "\n");
    nps_gen_destroy(gen);
    int rc = ferror(out) ? 1 : 0;
    if (out != stdout)
        rc |= fclose(out) != 0;
    else
        rc |= fflush(out) != 0;
    if (rc)
        fprintf(stderr, "npstream gen: write error on %s\n", config.output);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 ||
        strcmp(command, "help") == 0) {
        usage(stdout);
        printf("\nrun options:\n");
        nps_config_print_help(NPS_CMD_RUN, stdout);
        printf("\ngen options:\n");
        nps_config_print_help(NPS_CMD_GEN, stdout);
        printf("\nbroker options:\n");
        nps_config_print_help(NPS_CMD_BROKER, stdout);
        printf("\ntop options:\n");
        nps_config_print_help(NPS_CMD_TOP, stdout);
        printf("\ndemo options:\n");
        nps_config_print_help(NPS_CMD_DEMO, stdout);
        return 0;
    }
    if (strcmp(command, "--version") == 0) {
        printf("npstream %s\n", NPS_VERSION);
        return 0;
    }
    struct {
        const char *name;
        unsigned mask;
        int (*fn)(int, char **);
    } commands[] = {{"run", NPS_CMD_RUN, cmd_run},
                    {"gen", NPS_CMD_GEN, cmd_gen},
                    {"broker", NPS_CMD_BROKER, nps_cmd_broker},
                    {"top", NPS_CMD_TOP, nps_cmd_top},
                    {"demo", NPS_CMD_DEMO, nps_cmd_demo}};
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(command, commands[i].name) != 0)
            continue;
        if (wants_help(argc - 2, argv + 2)) {
            command_help(command, commands[i].mask);
            return 0;
        }
        return commands[i].fn(argc - 2, argv + 2);
    }
    fprintf(stderr, "npstream: unknown command '%s'\n\n", command);
    usage(stderr);
    return 2;
}
