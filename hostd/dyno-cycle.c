/* Daily cycling, and a restart of an up dyno: the replacement starts as SIGTERM goes to the running
 * instance, which becomes a retiring one, watched until its processes are gone. */
#include "dyno-internal.h"

size_t dyno_retiring_count(const struct dyno *d)
{
        size_t n = 0;
        for (const struct retiring *r = d->retiring; r; r = r->next)
                n++;
        return n;
}

/* ---- instances a daily cycle replaced ---- */

struct retiring *retiring_new(struct dyno *d, uint32_t instance)
{
        const struct config *c = d->m->config;
        struct retiring *r = calloc(1, sizeof *r);
        if (!r)
                return NULL;
        r->d = d;
        r->instance = instance;
        r->pidfd = r->log_fd = -1;
        r->name = instance_name(d->id, instance);
        r->inst_dir = instance_dir(d->run_dir, instance);
        r->layer_dir = r->name ? strjoin3(c->layers_dir, "/", r->name) : NULL;
        if (!r->name || !r->inst_dir || !r->layer_dir ||
            line_splitter_init(&r->splitter, c->log_line_max) < 0) {
                free(r->name);
                free(r->inst_dir);
                free(r->layer_dir);
                free(r);
                return NULL;
        }
        return r;
}

void retiring_link(struct retiring *r)
{
        r->next = r->d->retiring;
        r->d->retiring = r;
        r->d->m->n_retiring++;
}

static void retiring_free(struct retiring *r)
{
        struct dyno *d = r->d;
        for (struct retiring **pp = &d->retiring; *pp; pp = &(*pp)->next)
                if (*pp == r) {
                        *pp = r->next;
                        if (d->m->n_retiring > 0)
                                d->m->n_retiring--;
                        break;
                }
        r->pid_source = sd_event_source_disable_unref(r->pid_source);
        r->log_source = sd_event_source_disable_unref(r->log_source);
        r->timer_source = sd_event_source_disable_unref(r->timer_source);
        closep(&r->pidfd);
        closep(&r->log_fd);
        line_splitter_free(&r->splitter);
        free(r->name);
        free(r->inst_dir);
        free(r->layer_dir);
        free(r);
}

/* hostd goes away: they run on, and the record names them for the next hostd. */
void retiring_free_all(struct dyno *d)
{
        while (d->retiring)
                retiring_free(d->retiring);
}

/* Its processes are gone (or are killed now): remove what it had, and say how it ended. */
static void retiring_finish(struct retiring *r)
{
        struct dyno *d = r->d;
        struct manager *m = d->m;
        if (r->pidfd >= 0 && !r->adopted) {
                siginfo_t si = {};
                waitid(P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOHANG);
        }
        uint64_t ooms;
        if (cg_oom_kills(m->cg, r->name, &ooms) >= 0 && ooms > r->oom_kills) {
                dyno_tell_oom(d, r->name, r->oom_kills, ooms);
                r->oom_kills = ooms;
        }
        int e = cg_destroy(m->cg, r->name); /* kills what is left, and waits */
        if (e < 0)
                log_error_errno(e, "dyno %s: remove cgroup %s: %m", d->id, r->name);
        cpu_pool_release(m->cpus, r->name);
        net_release_name(m, r->name);
        if (r->log_fd >= 0)
                while (read_log_pipe(d, r->log_fd, &r->splitter) > 0)
                        ;
        line_splitter_flush(&r->splitter, dyno_push_line, d);
        e = layer_remove(r->layer_dir);
        if (e < 0)
                log_error_errno(e, "dyno %s: remove %s: %m", d->id, r->layer_dir);

        _cleanup_free_ char *exit_path = strjoin3(r->inst_dir, "/exit", NULL);
        _cleanup_free_ char *status = NULL;
        int n = 128 + SIGKILL; /* no status: the init itself was killed */
        char kind[16];
        if (exit_path && read_full_file(exit_path, &status, NULL) >= 0 &&
            sscanf(status, "%15s %d", kind, &n) == 2 && strcmp(kind, "signaled") == 0)
                n += 128;
        if (r->instance > 0)
                e = rm_rf(r->inst_dir);
        else
                e = exit_path && unlink(exit_path) < 0 && errno != ENOENT ? -errno : 0;
        if (e < 0)
                log_warning_errno(e, "dyno %s: remove the exit status in %s: %m", d->id,
                                  r->inst_dir);
        dyno_log_platform(d, "Process exited with status %d", n);
        retiring_free(r);
        dyno_save(d);
}

/* A dyno that goes (its start failed, or a new dyno takes its id) takes its retiring
 * instances with it. */
void retiring_kill_all(struct dyno *d)
{
        while (d->retiring) {
                struct retiring *r = d->retiring;
                if (r->pidfd >= 0)
                        pidfd_send_signal(r->pidfd, SIGKILL, NULL, 0);
                retiring_finish(r);
        }
}

static int on_retiring_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        retiring_finish(userdata);
        return 0;
}

static int on_retiring_log(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct retiring *r = userdata;
        int n = read_log_pipe(r->d, r->log_fd, &r->splitter);
        dyno_flush_logfile(r->d);
        dyno_flush_followers(r->d);
        if (n == 0) {
                r->log_source = sd_event_source_disable_unref(r->log_source);
                closep(&r->log_fd), r->log_fd = -1; /* retiring_finish and _free look again */
        }
        return 0;
}

static int on_retiring_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct retiring *r = userdata;
        r->timer_source = sd_event_source_disable_unref(r->timer_source);
        dyno_log_platform(r->d,
                          "Error R12 (Exit timeout) -> At least one process failed to exit within "
                          "%u seconds of SIGTERM",
                          r->grace_seconds);
        dyno_log_platform(r->d, "Stopping process with SIGKILL");
        int k = cg_kill(r->d->m->cg, r->name);
        if (k < 0 && k != -ENOENT)
                log_error_errno(k, "dyno %s: kill cgroup %s: %m", r->d->id, r->name);
        if (r->pidfd >= 0 && pidfd_send_signal(r->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
                log_error_errno(errno, "dyno %s: SIGKILL %s: %m", r->d->id, r->name);
        return 0;
}

/* Watch its exit, its log pipe and its deadline. */
static int retiring_watch(struct retiring *r)
{
        sd_event *e = r->d->m->event;
        int k = sd_event_add_io(e, &r->pid_source, r->pidfd, EPOLLIN, on_retiring_exit, r);
        if (k < 0)
                return k;
        if (r->log_fd >= 0) {
                k = sd_event_add_io(e, &r->log_source, r->log_fd, EPOLLIN, on_retiring_log, r);
                if (k < 0)
                        return k;
                (void)sd_event_source_set_priority(r->log_source, HOSTD_PRIORITY_LOGS);
        }
        int64_t left = r->deadline_usec - now_realtime_usec();
        return sd_event_add_time_relative(e, &r->timer_source, CLOCK_MONOTONIC,
                                          left > 0 ? (uint64_t)left : 0, 0, on_retiring_deadline,
                                          r);
}

/* After a restart of hostd: watch a retiring instance the record names, or, when its init is
 * gone, remove what it left. */
void retiring_readopt(struct retiring *r)
{
        struct dyno *d = r->d;
        r->adopted = true;
        int pidfd = r->pid > 0 ? pidfd_open(r->pid, 0) : -1;
        if (pidfd >= 0 && (r->init_starttime == 0 || proc_starttime(r->pid) != r->init_starttime ||
                           cg_contains(d->m->cg, r->name, r->pid) <= 0)) {
                close(pidfd);
                pidfd = -1;
        }
        if (pidfd < 0) {
                retiring_finish(r);
                return;
        }
        r->pidfd = pidfd;
        r->log_fd = pidfd_getfd(pidfd, INIT_LOG_FD, 0);
        if (r->log_fd >= 0) {
                fcntl(r->log_fd, F_SETFD, FD_CLOEXEC);
                fcntl(r->log_fd, F_SETFL, O_NONBLOCK);
        }
        (void)cpu_pool_adopt(d->m->cpus, r->name, d->size ? d->size->dedicated_cpus : 0);
        int k = retiring_watch(r);
        if (k < 0) {
                log_error_errno(k, "dyno %s: watch %s: %m; killing it", d->id, r->name);
                pidfd_send_signal(r->pidfd, SIGKILL, NULL, 0);
                retiring_finish(r);
        }
}

/* Heroku's cycling and restart: the replacement starts as SIGTERM goes to the dyno's processes,
 * so a web dyno is served throughout. This instance becomes a retiring one, with its own names,
 * stopping within grace, and the dyno goes on as the next instance. 0, or a negative errno when
 * the replacement cannot run beside it (-ENOSPC: its dedicated CPUs are not free), nothing
 * changed. */
int dyno_cycle_overlap(struct dyno *d, uint32_t grace, const char *what)
{
        struct manager *m = d->m;
        if (d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_UP || d->pidfd < 0 || d->sync_fd >= 0 ||
            d->netd_attach)
                return -EBUSY;
        uint32_t old = d->instance;
        _cleanup_free_ char *next = instance_name(d->id, old + 1);
        if (!next)
                return -ENOMEM;
        char why[256];
        int k = cpu_pool_reserve(m->cpus, next, d->size->dedicated_cpus, why, sizeof why);
        if (k < 0) {
                log_info("dyno %s: its replacement %s; it starts once this one has stopped", d->id,
                         why);
                return k;
        }
        struct retiring *r = retiring_new(d, old);
        if (!r || dyno_set_instance(d, old + 1) < 0) {
                if (r)
                        retiring_free(r);
                cpu_pool_release(m->cpus, next);
                return -ENOMEM;
        }
        int up_pidfd = d->pidfd;
        r->pid = d->pid;
        r->init_starttime = d->init_starttime;
        r->uid = d->uid;
        r->adopted = d->adopted;
        r->pidfd = TAKE_FD(d->pidfd);
        r->log_fd = TAKE_FD(d->log_fd);
        struct line_splitter sp = r->splitter; /* a partial line goes with its pipe */
        r->splitter = d->splitter;
        d->splitter = sp;
        r->deadline_usec = now_realtime_usec() + (int64_t)grace * 1000000;
        r->grace_seconds = grace;
        r->oom_kills = d->oom_kills;
        retiring_link(r);
        dyno_close_sources(d); /* its log file is opened again by the launch */
        free(d->address);
        d->address = NULL; /* the retiring instance's, released with it */
        d->host_port = 0;

        if (what)
                dyno_log_platform(d, "%s", what);
        dyno_log_platform(d, "Stopping all processes with SIGTERM");
        /* The init relays SIGTERM to every process of the instance. */
        if (pidfd_send_signal(up_pidfd, SIGTERM, NULL, 0) < 0 && errno != ESRCH)
                log_error_errno(errno, "dyno %s: SIGTERM: %m", d->id);
        k = retiring_watch(r);
        if (k < 0) {
                log_error_errno(k, "dyno %s: watch %s: %m; killing it", d->id, r->name);
                pidfd_send_signal(r->pidfd, SIGKILL, NULL, 0);
                retiring_finish(r);
        }

        dyno_reset_run(d);
        d->uid = manager_pick_uid(m, &k);
        if (k < 0) {
                char msg[300];
                snprintf(msg, sizeof msg, "dyno '%s': no free uid: %s", d->id, strerror(-k));
                dyno_fail_start(d, API_RESOURCE_EXHAUSTED, msg);
                return 0;
        }
        d->restarts++;
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING, true);
        dyno_begin(d);
        return 0;
}

static int on_cycle(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        d->cycle_source = sd_event_source_disable_unref(d->cycle_source);
        if (!dyno_is_live(d) || d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING)
                return 0;
        d->cycle_at_usec = 0; /* the replacement gets its own */
        dyno_log_platform(d, "Cycling");
        /* A one-off ends; any other dyno starts again, on a fresh filesystem layer: beside
         * this one where it can, else once this one has stopped. */
        if (d->spec->type != HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF) {
                if (dyno_cycle_overlap(d, dyno_default_grace(d), NULL) == 0)
                        return 0;
                d->restart_requested = true;
        }
        dyno_stop_begin(d, dyno_default_grace(d));
        return 0;
}

/* Every dyno is cycled cycle-after plus a random part of cycle-jitter after it started. The
 * time is in the record: a crash restart or a restart of hostd keeps it; an explicit restart
 * or a new start sets another. */
void dyno_cycle_arm(struct dyno *d)
{
        const struct config *c = d->m->config;
        if (!c->cycle_after || !dyno_is_live(d))
                return;
        int64_t now = now_realtime_usec();
        if (!d->cycle_at_usec) {
                uint64_t rnd = 0;
                if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                        rnd = (uint64_t)now;
                uint64_t jitter = (uint64_t)c->cycle_jitter * 1000000;
                d->cycle_at_usec = now + (int64_t)c->cycle_after * 1000000 +
                                   (int64_t)(jitter ? rnd % (jitter + 1) : 0);
                dyno_save(d);
        }
        int64_t left = d->cycle_at_usec - now;
        d->cycle_source = sd_event_source_disable_unref(d->cycle_source);
        int r = sd_event_add_time_relative(d->m->event, &d->cycle_source, CLOCK_MONOTONIC,
                                           left > 0 ? (uint64_t)left : 0, 0, on_cycle, d);
        if (r < 0)
                log_error_errno(r, "dyno %s: cycling timer: %m", d->id);
}
