/* Metrics: the sampler (sampler.h) and what consumes its rounds:
 * - the Prometheus textfile for node_exporter (prometheus-file, every metrics-interval);
 * - Heroku's runtime-metrics lines in the log of each dyno whose spec asks for them (every
 *   runtime-metrics-interval, which is also the sampler's own pace);
 * - SubscribeMetrics streams (metrics-stream.c). */
#pragma once

#include <stdint.h>

#include "hostd.pb-c.h"

struct manager;
struct call;
struct sampler;
struct dyno;
struct dyno_sample;

struct metrics {
        struct manager *m;
        struct sampler *sampler;
        struct sampler_listener *textfile, *runtime;
        struct metrics_stream *streams; /* metrics-stream.c: one per interval */
};

/* Start the sampler and its consumers. 0 or a negative errno. */
int metrics_start(struct manager *m);
void metrics_stop(struct manager *m);

/* The runtime-metrics lines of one sample, as Heroku writes them ("source=web.1 dyno=...
 * sample#load_avg_1m=0.00 ..."). */
void metrics_runtime_lines(const struct dyno *d, const struct dyno_sample *ds, char *load,
                           size_t load_len, char *memory, size_t memory_len);

/* SubscribeMetrics (metrics-stream.c; the request checked by validate_subscribe_metrics): a
 * batch at once, then every interval until the client cancels. */
void metrics_subscribe(struct manager *m, struct call *c,
                       const Hostd__V1__SubscribeMetricsRequest *req);
void metrics_streams_free(struct metrics *mt);
/* The host's figures of the last round into h (no sizes); NULL-safe on a hostd without
 * metrics (then nothing is set). */
void metrics_fill_host(struct manager *m, Hostd__V1__Host *h);
