/* The sampler: every running dyno's figures (cgroup files, load averages, network counters
 * from netd) and the host's, taken in rounds that every consumer shares (the Prometheus
 * textfile, runtime-metrics log lines, SubscribeMetrics streams).
 *
 * Each dyno's cgroup files stay open between rounds and are re-read with pread into a stack
 * buffer (the OOM kill count only after the kernel's notification, taken from one epoll per
 * round); they are opened again when the dyno's cgroup name or its init's pid changes. The
 * host's files (/proc/loadavg, /proc/meminfo, /proc/pressure/...) stay open too. netd is
 * asked once per round for every attached dyno's counters; a round uses the last answer. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "cgroup.h"

struct manager;
struct dyno;
struct sampler;

struct dyno_sample {
        int64_t time_usec; /* CLOCK_REALTIME */
        struct cg_stats cg;
        double load[3]; /* 1, 5 and 15 minutes, decayed as the kernel's over the rounds */
        uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets; /* as the dyno sees them */
};

struct host_sample {
        int64_t time_usec;
        uint32_t cpus; /* online */
        uint64_t memory_total, memory_available;
        double load[3];                            /* /proc/loadavg */
        struct cg_psi cpu_psi, memory_psi, io_psi; /* /proc/pressure/..., where present */
};

int sampler_new(struct manager *m, struct sampler **ret);
void sampler_free(struct sampler *s);

/* Sample the host and every running dyno, unless a round was taken in the last 100 ms (two
 * consumers due at the same moment share it). */
void sampler_round(struct sampler *s);
/* Each dyno sampled in the last round, in id order. */
typedef void (*sampler_dyno_fn)(struct dyno *d, const struct dyno_sample *ds, void *userdata);
void sampler_foreach(struct sampler *s, sampler_dyno_fn fn, void *userdata);
const struct host_sample *sampler_host(const struct sampler *s);
/* Dynos sampled in the last round. */
size_t sampler_count(const struct sampler *s);

/* Call fn every interval seconds (the first time after one interval, or at once with now),
 * after a round. Listeners of one interval share one timer. */
struct sampler_listener;
typedef void (*sampler_tick_fn)(struct sampler *s, void *userdata);
int sampler_listen(struct sampler *s, uint32_t interval, bool now, sampler_tick_fn fn,
                   void *userdata, struct sampler_listener **ret);
/* Safe from within fn. */
void sampler_unlisten(struct sampler *s, struct sampler_listener *l);

/* Parsers of the host's files, over a buffer that need not end in NUL. */
int sampler_parse_loadavg(const char *buf, size_t len, double ret[3]);
/* MemTotal and MemAvailable, in bytes. */
int sampler_parse_meminfo(const char *buf, size_t len, uint64_t *ret_total,
                          uint64_t *ret_available);
/* The number of CPUs in a list such as "0-3,8,10-11". */
int sampler_parse_cpu_count(const char *buf, size_t len, uint32_t *ret);
/* One step of an exponentially decayed average, as the kernel's load average: active tasks
 * over dt seconds, against time constants of 1, 5 and 15 minutes. */
void sampler_load_step(double load[3], double active, double dt_sec);
/* Where the kernel counts no runnable tasks (v2): the average number of active tasks over a
 * span, from the CPU time the dyno used in it and the time some task of it waited for a CPU
 * and for I/O (PSI "some" totals), all in microseconds. See docs/INTERNALS.md. */
double sampler_estimate_active(uint64_t cpu_usec, uint64_t cpu_wait_usec, uint64_t io_wait_usec,
                               uint64_t span_usec);
