/*
 * commands: the entry point of each `npstream` command that lives outside
 * main.c. Each takes the arguments after the command word and returns the
 * process exit status (0 ok, 1 run-time failure, 2 bad usage).
 */
#ifndef NPS_COMMANDS_H
#define NPS_COMMANDS_H

#include "config.h"
#include "event_gen.h"

/* `npstream broker`: the embedded Kafka-protocol broker (broker.c). */
int nps_cmd_broker(int argc, char **argv);

/* `npstream top`: the live terminal table read from Redis (top.c). */
int nps_cmd_top(int argc, char **argv);

/* `npstream demo`: broker + gen + run + live table (demo.c). */
int nps_cmd_demo(int argc, char **argv);

/* `npstream gen --brokers B`: produce config->count events of `gen` to
 * config->topic, keyed by response id, at config->rate_limit per second
 * (0: unlimited), printing progress on stderr (kafka_gen.c). */
int nps_gen_to_kafka(const nps_config *config, nps_gen *gen);

/* `npstream run --brokers B`: the Kafka-to-Redis pipeline (pipeline.c). */
int nps_run_pipeline(const nps_config *config);

#endif
