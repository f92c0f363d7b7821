/*
 * kafka_conf: kafka.<property> pass-through.
 */
#include "kafka_conf.h"

bool nps_kafka_conf_apply(rd_kafka_conf_t *conf, const nps_config *config, nps_error *err)
{
    char errstr[512];
    for (int i = 0; i < config->nkafka; i++) {
        const char *key = config->kafka_keys[i];
        if (rd_kafka_conf_set(conf, key, config->kafka_values[i], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            /* librdkafka's message may quote the value: keep secrets out */
            nps_error_set(err, "kafka.%s: %s", key,
                          nps_config_is_secret(key) ? "invalid value" : errstr);
            return false;
        }
    }
    return true;
}
