/*
 * config: every setting of npstream, declared once in one table
 * (config.c), read from defaults, then a config file (--config, INI
 * "key = value"), then NPSTREAM_* environment variables, then flags; the
 * later source wins. `npstream --help` prints the same table.
 *
 * A config is filled at start (cold path) and then only read.
 */
#ifndef NPS_CONFIG_H
#define NPS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "npstream/nps.h"
#include "view.h"
#include "window.h"

#define NPS_PATH_MAX 1024
#define NPS_MAX_KAFKA_PROPS 32

typedef struct nps_config {
    char config_file[NPS_PATH_MAX];
    nps_views views;
    nps_windows windows;
    char windows_spec[256];
    char trends_spec[128]; /* trends published by the pipeline (windows.w[].trend) */
    char themes_spec[128]; /* windows with comment themes (windows.w[].themes) */
    /* the views that keep trends, themes and alerts: "*" or names; the
     * masks of the views that do not (bit v: view v; 0, the default: every
     * view keeps them) are set when a run's config is loaded */
    char trends_views[1024];
    char themes_views[1024];
    char alerts_views[1024];
    uint32_t trends_off;
    uint32_t themes_off;
    uint32_t alerts_off;
    uint32_t max_segments;    /* per view; past it `~overflow` */
    int64_t max_skew_ms;      /* events further ahead are invalid (future) */
    uint64_t max_event_bytes; /* larger messages are invalid (too_large) */
    int64_t now_ms;           /* 0: the wall clock; else a pinned clock */
    int64_t clock_base_ms;    /* engine time at load, for time-scale */
    int64_t clock_base_mono_ms;
    /* run */
    char input[NPS_PATH_MAX]; /* JSON lines; "-" for stdin */
    char format[16];          /* report format: table or json */
    int64_t batch_events;     /* events per hand-off to the merger */
    /* Kafka and Redis */
    char brokers[512]; /* bootstrap servers; empty: run reads --input */
    char topic[256];
    char group[256];
    char redis[256]; /* HOST:PORT */
    char redis_user[128];
    char redis_password[512]; /* secret: never printed */
    /* librdkafka properties passed through (kafka.<property> = value) */
    int nkafka;
    char kafka_keys[NPS_MAX_KAFKA_PROPS][128];
    char kafka_values[NPS_MAX_KAFKA_PROPS][1024];
    char prefix[64]; /* Redis key prefix */
    int64_t workers; /* 0: one per core */
    int64_t flush_ms;
    char http[128];              /* metrics and health endpoint; empty: off */
    char dead_letter_topic[256]; /* invalid messages copied here; empty: off */
    /* what NPS teams act on (docs/redis-schema.md) */
    char alerts[256]; /* WINDOW:BASELINE,...; empty: no alerts */
    double alert_z;   /* |z| past this fires */
    int64_t alert_min_responses;
    char benchmarks[2048];     /* DIM=VALUE:NPS,... */
    int64_t detractors_maxlen; /* nps:detractors entries kept; 0: off */
    int64_t dedup_horizon_ms;  /* a response id counts once within it; 0: off */
    char log_format[16];
    char log_level[16];
    char log_file[NPS_PATH_MAX];
    int64_t buckets; /* flush units per view */
    int64_t session_timeout_ms;
    int64_t fetch_wait_ms; /* fetch.wait.max.ms */
    int64_t time_scale;    /* the engine clock runs this many times the wall clock */
    int64_t partitions;    /* broker */
    int64_t flap_ms;       /* broker: chaos, 0 off */
    char top_view[64];     /* top: the view shown; empty: all views */
    char top_window[16];
    int64_t interval_ms; /* top: refresh period; 0: print once */
    /* gen */
    int64_t rate_limit; /* events/s; 0: as fast as possible */
    int64_t count;
    uint64_t seed;
    double invalid_share;
    double sent_share;
    double duplicate_share;
    char drop[96];
    char output[NPS_PATH_MAX];
} nps_config;

/* Which command a setting belongs to, for --help and validation. */
enum {
    NPS_CMD_CORE = 1 << 0, /* every command that aggregates */
    NPS_CMD_RUN = 1 << 1,
    NPS_CMD_GEN = 1 << 2,
    NPS_CMD_BROKER = 1 << 3,
    NPS_CMD_TOP = 1 << 4,
    NPS_CMD_DEMO = 1 << 5,
};

/* Whether view `v` keeps a feature, given the mask of the views that do
 * not (nps_config.trends_off, themes_off, alerts_off). */
static inline bool nps_view_keeps(uint32_t off, int v)
{
    return !((off >> v) & 1u);
}

/* Defaults of every setting. */
nps_status nps_config_init(nps_config *config, nps_error *err);

/* Fill `config` for `command` (one of NPS_CMD_*) from its sources: the
 * file named by --config or NPSTREAM_CONFIG, the environment, and argv
 * (flags only, after the command word). On a bad setting, the message
 * names the setting and its source. */
nps_status nps_config_load(nps_config *config, unsigned command, int argc, char **argv, char **envp,
                           nps_error *err);

/* The engine clock: the wall clock, or the pinned `now`, running
 * time-scale times faster than the wall clock since the first call. */
int64_t nps_clock_now_ms(const nps_config *config);

/* Split "HOST:PORT" (port default 6379). False on a malformed address. */
bool nps_parse_host_port(const char *text, char *host, size_t host_size, int *port);

/* Whether a setting or librdkafka property holds a secret (its value is
 * never printed): names with password, secret or key material. */
bool nps_config_is_secret(const char *name);

/* Whether `command` has a setting of that name (`len` bytes, a flag
 * without its dashes). */
bool nps_config_takes(const char *name, size_t len, unsigned command);

/* Print the settings of `command` with their flags, variables, defaults
 * and descriptions. */
void nps_config_print_help(unsigned command, void *stream);

#endif
