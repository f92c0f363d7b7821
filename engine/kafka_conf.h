/*
 * kafka_conf: the kafka.<property> settings (SASL, SSL, anything
 * librdkafka takes) applied to a client configuration, after npstream's
 * own defaults so the user's value wins.
 */
#ifndef NPS_KAFKA_CONF_H
#define NPS_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "config.h"

/* False with err set when librdkafka refuses a property; the message
 * names the property and never shows a secret value. */
bool nps_kafka_conf_apply(rd_kafka_conf_t *conf, const nps_config *config, nps_error *err);

#endif
