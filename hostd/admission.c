/* Admission and drain: see admission.h. */
#include "admission.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cgroup.h"
#include "config.h"
#include "cpus.h"
#include "events.h"
#include "hostd.pb-c.h"
#include "manager.h"
#include "util.h"
#include "api-code.h"

#include "config-build.h"

int host_memory(uint64_t *ret_total, uint64_t *ret_available)
{
        _cleanup_free_ char *text = NULL;
        int r = read_full_file("/proc/meminfo", &text, NULL);
        if (r < 0)
                return r;
        unsigned long long total = 0, avail = 0;
        const char *p = strstr(text, "MemTotal:");
        if (!p || sscanf(p, "MemTotal: %llu", &total) != 1)
                return -EBADMSG;
        p = strstr(text, "MemAvailable:");
        if (!p || sscanf(p, "MemAvailable: %llu", &avail) != 1)
                return -EBADMSG;
        *ret_total = (uint64_t)total * 1024;
        *ret_available = (uint64_t)avail * 1024;
        return 0;
}

uint64_t memory_allocatable(const struct config *c, uint64_t total)
{
        return total > c->reserved_memory ? total - c->reserved_memory : 0;
}

static uint64_t committed_for(const struct config *c, const struct size_def *s)
{
        if (s->dedicated_cpus)
                return s->memory;
        return (uint64_t)((double)s->memory / c->memory_overcommit);
}

static void add_committed(struct dyno *d, void *userdata)
{
        uint64_t *sum = userdata;
        if (!d->size)
                return;
        uint64_t one = committed_for(d->m->config, d->size);
        *sum += one * ((dyno_is_live(d) ? 1 : 0) + dyno_retiring_count(d));
}

uint64_t memory_committed(struct manager *m)
{
        uint64_t sum = 0;
        manager_foreach(m, add_committed, &sum);
        return sum;
}

enum api_code admission_check(struct manager *m, const char *id, const struct size_def *size,
                              bool fresh, char *msg, size_t len)
{
        const struct config *c = m->config;
        char a[32], b[32], n[32], rs[32];
        if (fresh && m->draining) {
                snprintf(msg, len, "dyno '%s': this host is draining: it takes no new dynos", id);
                return API_FAILED_PRECONDITION;
        }
        if (m->n_live >= c->max_dynos) {
                snprintf(msg, len, "dyno '%s': this host runs %zu dynos, its limit (max-dynos)", id,
                         m->n_live);
                return API_RESOURCE_EXHAUSTED;
        }
        uint64_t total, avail;
        if (host_memory(&total, &avail) == 0) {
                uint64_t allocatable = memory_allocatable(c, total);
                uint64_t used = memory_committed(m);
                uint64_t need = committed_for(c, size);
                if (used + need > allocatable) {
                        snprintf(msg, len,
                                 "dyno '%s': size %s needs %s of memory, %s of the %s "
                                 "allocatable are committed (reserved-memory %s%s)",
                                 id, size->name, format_bytes_human(need, n),
                                 format_bytes_human(used, a), format_bytes_human(allocatable, b),
                                 format_bytes_human(c->reserved_memory, rs),
                                 size->dedicated_cpus || c->memory_overcommit == 1.0 ?
                                         "" :
                                         "; shared sizes count at quota / memory-overcommit");
                        return API_RESOURCE_EXHAUSTED;
                }
        }
        char why[256];
        if (cpu_pool_check(m->cpus, size->dedicated_cpus, why, sizeof why) < 0) {
                snprintf(msg, len, "dyno '%s': size %s %s", id, size->name, why);
                return API_RESOURCE_EXHAUSTED;
        }
        return 0;
}

/* ---- drain ---- */

static char *drain_path(const struct manager *m)
{
        return strjoin3(m->config->state_dir, "/drain", NULL);
}

static int on_drain_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        m->drain_timer = sd_event_source_disable_unref(m->drain_timer);
        if (!m->draining)
                return 0;
        log_notice("drain: the deadline has passed; stopping the %zu dynos left", m->n_live);
        if (m->events)
                events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                            "drain deadline passed: stopping the %zu dynos left", m->n_live);
        manager_stop_all(m);
        return 0;
}

static int drain_arm(struct manager *m)
{
        m->drain_timer = sd_event_source_disable_unref(m->drain_timer);
        if (!m->drain_deadline_usec)
                return 0;
        int64_t left = m->drain_deadline_usec - now_realtime_usec();
        return sd_event_add_time_relative(m->event, &m->drain_timer, CLOCK_MONOTONIC,
                                          left > 0 ? (uint64_t)left : 0, 0, on_drain_deadline, m);
}

int admission_drain(struct manager *m, bool has_deadline, uint32_t seconds, char *msg, size_t len)
{
        /* validate_drain checked the deadline. */
        int64_t deadline = has_deadline ? now_realtime_usec() + (int64_t)seconds * 1000000 : 0;
        /* Kept first: a hostd that dies now comes back draining. */
        _cleanup_free_ char *path = drain_path(m);
        char text[64];
        int n = snprintf(text, sizeof text, "draining %" PRId64 "\n", deadline);
        int r = path ? write_file_atomic(path, text, (size_t)n, 0600) : -ENOMEM;
        if (r < 0) {
                snprintf(msg, len, "drain: keep the state in %s: %s", path ? path : "?",
                         strerror(-r));
                return r;
        }
        bool was = m->draining;
        int64_t old_deadline = m->drain_deadline_usec;
        m->draining = true;
        m->drain_deadline_usec = deadline;
        r = drain_arm(m);
        if (r < 0) {
                m->draining = was;
                m->drain_deadline_usec = old_deadline;
                (void)drain_arm(m);
                snprintf(msg, len, "drain: deadline timer: %s", strerror(-r));
                return r;
        }
        log_notice("draining: no new dynos%s%s", has_deadline ? ", the running ones stop in " : "",
                   has_deadline ? "the deadline's seconds" : "");
        if (m->events) {
                if (has_deadline)
                        events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                                    "draining: no new dynos; the %zu running stop in %" PRIu32 " s",
                                    m->n_live, seconds);
                else
                        events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                                    "draining: no new dynos");
        }
        return 0;
}

int admission_undrain(struct manager *m, char *msg, size_t len)
{
        _cleanup_free_ char *path = drain_path(m);
        if (!path || (unlink(path) < 0 && errno != ENOENT)) {
                int r = path ? -errno : -ENOMEM;
                snprintf(msg, len, "undrain: remove %s: %s", path ? path : "?", strerror(-r));
                return r;
        }
        bool was = m->draining;
        m->draining = false;
        m->drain_deadline_usec = 0;
        m->drain_timer = sd_event_source_disable_unref(m->drain_timer);
        if (was) {
                log_notice("undrained: new dynos are welcome again");
                if (m->events)
                        events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                                    "undrained: new dynos welcome");
        }
        return 0;
}

int admission_load(struct manager *m)
{
        _cleanup_free_ char *path = drain_path(m);
        _cleanup_free_ char *text = NULL;
        if (!path)
                return -ENOMEM;
        int r = read_full_file(path, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_error_errno(r, "read %s: %m; taking it as a drain", path);
        long long deadline = 0;
        if (sscanf(text, "draining %lld", &deadline) != 1 || deadline < 0)
                log_warning("%s: not a drain state; taking it as a drain without a deadline", path);
        m->draining = true;
        m->drain_deadline_usec = deadline > 0 ? (int64_t)deadline : 0;
        log_notice("draining, as before the restart%s",
                   m->drain_deadline_usec ? ", deadline kept" : "");
        r = drain_arm(m);
        if (r < 0)
                log_error_errno(r, "drain deadline timer: %m; the dynos are not stopped by it");
        return 0;
}

void admission_free(struct manager *m)
{
        m->drain_timer = sd_event_source_disable_unref(m->drain_timer);
}

/* Live dynos, and the memory given to them: a retiring instance (a daily cycle's old one,
 * still stopping) holds its quota too. */
static void count_live(struct dyno *d, void *userdata)
{
        uint64_t *v = userdata;
        if (!d->size)
                return;
        if (dyno_is_live(d)) {
                v[0]++;
                v[1] += d->size->memory;
        }
        v[1] += dyno_retiring_count(d) * d->size->memory;
}

void host_info_fill(struct manager *m, Hostd__V1__Host *h, char hostname[static 256])
{
        const struct config *c = m->config;
        hostname[0] = 0;
        gethostname(hostname, 255);
        hostname[255] = 0;
        h->hostname = hostname;
        h->version = (char *)HOSTD_VERSION;
        h->boot_id = m->boot_id ? m->boot_id : (char *)"";
        h->cgroup_mode = (char *)cg_mode_name(cg_manager_mode(m->cg));
        h->cpus = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
        (void)host_memory(&h->memory_total, &h->memory_available);
        uint64_t live[2] = { 0, 0 };
        manager_foreach(m, count_live, live);
        h->dynos = (uint32_t)live[0];
        h->memory_allocated = live[1];
        h->memory_reserved = c->reserved_memory;
        h->memory_allocatable = memory_allocatable(c, h->memory_total);
        h->memory_committed = memory_committed(m);
        h->draining = m->draining;
        h->drain_deadline_usec = m->drain_deadline_usec;
        h->max_dynos = c->max_dynos;
        h->dedicated_cpu_pool = (char *)cpu_pool_list(m->cpus);
        h->dedicated_cpus_free = cpu_pool_n_free(m->cpus);
}
