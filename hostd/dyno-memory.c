/* A dyno's memory, from the kernel's own notifications: R14 (over the quota, into swap) and every
 * OOM kill (R15), whichever process the kernel picks. */
#include "dyno-internal.h"

/* ---- memory: R14 ---- */

/* Heroku repeats R14 while a dyno stays over its quota; this is how often, at most. */
#define R14_INTERVAL_USEC (20ULL * 1000000)

/* Over the quota (memory and swap together, so some of it is in swap): the two R14 lines, at
 * most every 20 s, and a look again in 20 s in case the kernel says nothing more (the
 * notification is the trigger, this is only the backstop while over). */
static void dyno_memory_check(struct dyno *d)
{
        uint64_t mem, swap;
        if (!dyno_is_live(d) || !d->size || cg_memory_usage(d->m->cg, d->cg_name, &mem, &swap) < 0)
                return;
        uint64_t total = mem + swap, quota = d->size->memory;
        if (total <= quota) {
                if (d->memory_timer)
                        sd_event_source_set_enabled(d->memory_timer, SD_EVENT_OFF);
                return;
        }
        int64_t now = now_realtime_usec();
        if (!d->r14_last_usec || now - d->r14_last_usec >= (int64_t)R14_INTERVAL_USEC) {
                d->r14_last_usec = now;
                dyno_log_platform(d, "Process running mem=%" PRIu64 "M(%.1f%%)",
                                  (total + (1 << 19)) >> 20, (double)total * 100.0 / (double)quota);
                dyno_log_platform(d, "Error R14 (Memory quota exceeded)");
        }
        if (d->memory_timer) {
                sd_event_source_set_time_relative(d->memory_timer, R14_INTERVAL_USEC);
                sd_event_source_set_enabled(d->memory_timer, SD_EVENT_ONESHOT);
        }
}

static int on_memory_event(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct dyno *d = userdata;
        cg_memory_watch_ack(d->m->cg, fd);
        dyno_memory_check(d);
        return 0;
}

static int on_memory_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        dyno_memory_check(userdata);
        return 0;
}

/* The v1 threshold is registered once the dyno has run this long. The registration waits for
 * an RCU grace period (on the worker), and removing the cgroup (on the loop) waits for a
 * registration in progress in it: a dyno that ends at once, a crash at boot, would hold the
 * loop 3 to 14 ms each time. One that ends sooner never registers. */
#define MEMORY_REG_DELAY_USEC (1ULL * 1000000)

/* The v1 threshold's registration, off the loop. The dyno may have gone by its end: then the
 * eventfd watched stays silent; if it is still the same run, its usage is read once, since a
 * threshold crossed before it was registered is never told. */
struct memory_reg_job {
        struct offload_job job;
        struct cg_event_reg reg;
        int error;
        struct manager *m;
        char id[DYNO_ID_MAX + 1];
        char run_id[37];
};

static void memory_reg_run(struct offload_job *j)
{
        struct memory_reg_job *mj = container_of(j, struct memory_reg_job, job);
        mj->error = cg_event_register(&mj->reg);
}

static void memory_reg_done(struct offload_job *j)
{
        struct memory_reg_job *mj = container_of(j, struct memory_reg_job, job);
        if (mj->error < 0)
                log_warning_errno(mj->error,
                                  "dyno %s: no memory notifications (register the threshold: "
                                  "%m): no R14 warnings",
                                  mj->id);
        cg_event_reg_close(&mj->reg);
        struct dyno *d = manager_find(mj->m, mj->id);
        if (mj->error >= 0 && d && strcmp(d->run_id, mj->run_id) == 0)
                dyno_memory_check(d);
        free(mj);
}

static int on_memory_reg_due(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        d->memory_reg_timer = sd_event_source_disable_unref(d->memory_reg_timer);
        struct memory_reg_job *mj = calloc(1, sizeof *mj);
        if (!mj) {
                log_warning("dyno %s: no memory notifications (out of memory): no R14 warnings",
                            d->id);
                cg_event_reg_close(&d->memory_reg);
                return 0;
        }
        mj->job.run = memory_reg_run;
        mj->job.done = memory_reg_done;
        mj->reg = d->memory_reg;
        d->memory_reg = (struct cg_event_reg)CG_EVENT_REG_INIT;
        mj->m = d->m;
        snprintf(mj->id, sizeof mj->id, "%s", d->id);
        snprintf(mj->run_id, sizeof mj->run_id, "%s", d->run_id);
        offload_submit(d->m->offload, &mj->job, false);
        return 0;
}

/* Sizes with swap may go over their quota (into swap) without being killed: that is R14.
 * Without swap the kernel stops them at the quota (R15), and there is nothing to watch. */
void dyno_memory_watch(struct dyno *d)
{
        struct manager *m = d->m;
        uint32_t events;
        if (!d->size || !d->size->swap || d->memory_source)
                return;
        struct cg_event_reg reg;
        int r = cg_memory_watch(m->cg, d->cg_name, d->size->memory, &d->memory_fd, &events, &reg);
        if (r >= 0)
                r = sd_event_add_io(m->event, &d->memory_source, d->memory_fd, events,
                                    on_memory_event, d);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &d->memory_timer, CLOCK_MONOTONIC,
                                               R14_INTERVAL_USEC, 0, on_memory_timer, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->memory_timer, SD_EVENT_OFF);
        if (r >= 0 && reg.control >= 0) {
                r = sd_event_add_time_relative(m->event, &d->memory_reg_timer, CLOCK_MONOTONIC,
                                               MEMORY_REG_DELAY_USEC, 0, on_memory_reg_due, d);
                if (r >= 0) {
                        cg_event_reg_close(&d->memory_reg);
                        d->memory_reg = reg;
                        reg = (struct cg_event_reg)CG_EVENT_REG_INIT;
                }
        }
        cg_event_reg_close(&reg);
        if (r < 0)
                log_warning_errno(r, "dyno %s: no memory notifications (%m): no R14 warnings",
                                  d->id);
}

/* ---- memory: OOM kills (R15) ---- */

/* A notification may come before the kernel's count moves (v1 signals before it kills): the
 * count is read again this long after, twice. */
#define OOM_RECHECK_USEC (200ULL * 1000)
#define OOM_RECHECKS 2

/* The count in cgroup name (the current instance's, or a retiring one's) went from told to
 * now: the R15 lines, with the most memory the dyno used, and an event. */
void dyno_tell_oom(struct dyno *d, const char *name, uint64_t told, uint64_t now)
{
        struct manager *m = d->m;
        uint64_t peak = 0, quota = d->size ? d->size->memory : 0;
        (void)cg_memory_peak(m->cg, name, &peak);
        dyno_log_platform(d, "Process running mem=%" PRIu64 "M(%.1f%%)", (peak + (1 << 19)) >> 20,
                          quota ? (double)peak * 100.0 / (double)quota : 0.0);
        dyno_log_platform(d, "Error R15 (Memory quota vastly exceeded)");
        if (now - told == 1)
                dyno_log_platform(d, "The kernel's OOM killer killed a process of the dyno");
        else
                dyno_log_platform(d,
                                  "The kernel's OOM killer killed %" PRIu64
                                  " processes of the dyno",
                                  now - told);
        if (m->events)
                events_emit(m->events, d->id, HOSTD__V1__EVENT_KIND__EVENT_KIND_OOM, d->state,
                            "Error R15 (Memory quota vastly exceeded): the kernel's OOM killer "
                            "killed %" PRIu64 " process%s of the dyno (%" PRIu64
                            " in this run), mem=%" PRIu64 "M of %" PRIu64 "M",
                            now - told, now - told == 1 ? "" : "es", now, (peak + (1 << 19)) >> 20,
                            (quota + (1 << 19)) >> 20);
}

/* Tell the OOM kills of the current instance that the kernel counted since the last look. */
void dyno_oom_check(struct dyno *d)
{
        uint64_t n;
        if (cg_oom_kills(d->m->cg, d->cg_name, &n) < 0 || n <= d->oom_kills)
                return;
        uint64_t told = d->oom_kills;
        d->oom_kills = n;
        d->oom_last_usec = now_realtime_usec();
        dyno_tell_oom(d, d->cg_name, told, n);
        dyno_save(d); /* the count told, for a hostd that starts again */
}

static int on_oom_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        dyno_oom_check(d);
        if (d->oom_rechecks > 0) {
                d->oom_rechecks--;
                sd_event_source_set_time_relative(s, OOM_RECHECK_USEC);
                sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

static int on_oom_event(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct dyno *d = userdata;
        cg_memory_watch_ack(d->m->cg, fd);
        dyno_oom_check(d);
        if (d->oom_timer) {
                d->oom_rechecks = OOM_RECHECKS - 1;
                sd_event_source_set_time_relative(d->oom_timer, OOM_RECHECK_USEC);
                sd_event_source_set_enabled(d->oom_timer, SD_EVENT_ONESHOT);
        }
        return 0;
}

/* Every dyno: the kernel says when it meets the OOM killer, whichever process it kills. */
void dyno_oom_watch(struct dyno *d)
{
        struct manager *m = d->m;
        uint32_t events;
        if (d->oom_source)
                return;
        int r = cg_oom_watch(m->cg, d->cg_name, &d->oom_fd, &events);
        if (r >= 0)
                r = sd_event_add_io(m->event, &d->oom_source, d->oom_fd, events, on_oom_event, d);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &d->oom_timer, CLOCK_MONOTONIC,
                                               OOM_RECHECK_USEC, 0, on_oom_timer, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->oom_timer, SD_EVENT_OFF);
        if (r < 0)
                log_warning_errno(r,
                                  "dyno %s: no OOM notifications (%m): its OOM kills are told "
                                  "when it ends",
                                  d->id);
}
