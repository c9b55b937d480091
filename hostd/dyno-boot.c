/* A web dyno's boot: STARTING until a process of it listens on $PORT on all addresses (asked of
 * the kernel by port-probe.c), UP then, or R10 when its boot timeout passes first. */
#include "dyno-internal.h"

/* ---- boot (web dynos) ---- */

#define BOOT_PROBE_INTERVAL_USEC (100ULL * 1000)

/* A web dyno is up once it listens on $PORT; anything else is up once its command runs. */
bool dyno_needs_boot(const struct dyno *d)
{
        return d->spec->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB && d->spec->port > 0;
}

uint32_t dyno_boot_timeout(const struct dyno *d)
{
        return d->spec->boot_case == HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS ?
                       d->spec->boot_timeout_seconds :
                       d->m->config->boot_timeout;
}

static void dyno_boot_end(struct dyno *d)
{
        d->booting = false;
        d->boot_source = sd_event_source_disable_unref(d->boot_source);
        closep(&d->boot_fd), d->boot_fd = -1;
}

void dyno_set_up(struct dyno *d)
{
        dyno_boot_end(d);
        d->up_usec = now_realtime_usec();
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_UP, true);
}

static int on_boot_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        if (!d->booting || d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING) {
                dyno_boot_end(d);
                return 0;
        }
        int r = port_probe_listening(d->boot_fd, (uint16_t)d->spec->port);
        if (r > 0) {
                dyno_set_up(d);
                return 0;
        }
        if (r < 0)
                log_msg(LOG_LEVEL_DEBUG, r, "dyno %s: boot probe: %m", d->id);
        if (now_realtime_usec() >= d->boot_deadline_usec) {
                dyno_log_platform(d,
                                  "Error R10 (Boot timeout) -> Web process failed to bind to "
                                  "$PORT within %u seconds of launch",
                                  dyno_boot_timeout(d));
                dyno_log_platform(d, "Stopping process with SIGKILL");
                dyno_boot_end(d);
                d->boot_timed_out = true;
                dyno_kill_now(d);
                return 0;
        }
        sd_event_source_set_time_relative(s, BOOT_PROBE_INTERVAL_USEC);
        return 0;
}

/* Watch for the bind: the kernel is asked every 100 ms, from the first moment, so that "up"
 * follows the bind by at most that. */
void dyno_boot_begin(struct dyno *d)
{
        struct manager *m = d->m;
        d->booting = true;
        int fd = port_probe_open(d->pid, m->netns_fd);
        if (fd < 0) {
                /* No sock_diag in this kernel: say so, and do not hold the dyno hostage. */
                log_warning_errno(fd, "dyno %s: cannot watch for the bind to $PORT (%m); up now",
                                  d->id);
                dyno_set_up(d);
                return;
        }
        d->boot_fd = fd;
        int r = sd_event_add_time_relative(m->event, &d->boot_source, CLOCK_MONOTONIC, 0, 0,
                                           on_boot_tick, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->boot_source, SD_EVENT_ON);
        if (r < 0) {
                log_warning_errno(r, "dyno %s: boot timer: %m; up now", d->id);
                dyno_set_up(d);
                return;
        }
        /* Starting still, with its command running: the boot deadline into the record. */
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING, false);
}
