/* Whether this host takes a dyno: the drain state, max-dynos, the memory allocatable to dynos
 * (the total less reserved-memory, shared sizes counted at 1/memory-overcommit) and the
 * dedicated CPUs. A refusal names the numbers, so that the control plane can place the dyno
 * elsewhere knowing why. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api-code.h"
#include "hostd.pb-c.h"

struct config;
struct manager;
struct size_def;

/* MemTotal and MemAvailable of /proc/meminfo, in bytes. */
int host_memory(uint64_t *ret_total, uint64_t *ret_available);
/* What dynos may have of total: total less reserved-memory, 0 when that is more. */
uint64_t memory_allocatable(const struct config *c, uint64_t total);
/* The memory the running dynos hold against allocatable: dedicated sizes at their quota,
 * shared ones at quota / memory-overcommit; a cycled dyno's retiring instance counts. */
uint64_t memory_committed(struct manager *m);

/* 0 when a dyno of size may start now, else a hostd.v1 code (RESOURCE_EXHAUSTED, or
 * FAILED_PRECONDITION while draining) with msg. fresh: a dyno that is not running (a new one,
 * or a stopped one started again): a drain refuses it; a crash restart is not fresh. */
enum api_code admission_check(struct manager *m, const char *id, const struct size_def *size,
                              bool fresh, char *msg, size_t len);

/* Drain: take no fresh dynos, say so in HostInfo and the event stream, and with a deadline stop
 * the dynos still running gracefully once it passes. Kept in <state-dir>/drain across restarts
 * of hostd. 0, or a negative errno with msg (nothing changed). */
int admission_drain(struct manager *m, bool has_deadline, uint32_t seconds, char *msg, size_t len);
int admission_undrain(struct manager *m, char *msg, size_t len);
/* At the end of reconciliation: a drain of the last hostd goes on (its deadline too). */
int admission_load(struct manager *m);
void admission_free(struct manager *m);

/* The host as GetHost tells it, but the sizes and the last sample's load and pressure
 * (metrics_fill_host): capacity, allocation, drain. hostname is the buffer h->hostname points
 * into. */
void host_info_fill(struct manager *m, Hostd__V1__Host *h, char hostname[static 256]);
