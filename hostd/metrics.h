/* Per-dyno and host figures in the Prometheus text format, written atomically to a file for
 * node_exporter's textfile collector, every metrics-interval. */
#pragma once

struct manager;

/* Start writing, when the configuration names a file. 0 or a negative errno. */
int metrics_start(struct manager *m);
void metrics_stop(struct manager *m);
