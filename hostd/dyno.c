/* One dyno's life: start, supervise, stop, and the end.
 *
 * A dyno moves STARTING -> UP -> (STOPPING ->) DOWN | CRASHED | COMPLETE, always through
 * dyno_set_state(), which writes <run-dir>/dynos/<id>/record (the event stream told first)
 * before anyone is told, so a hostd that dies at any point finds, at its next start, what it
 * had promised; and answers the calls that wait on the change. */
#include "dyno-internal.h"

static bool dyno_crash_restart(struct dyno *d, Hostd__V1__DynoState before);
static int on_sync(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* The command died of a SIGKILL hostd did not send, this close to an OOM kill the kernel
 * counted: the OOM killer's. */
#define OOM_MATCH_USEC (10LL * 1000000)

bool dyno_is_live(const struct dyno *d)
{
        return d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING ||
               d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_UP ||
               d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING;
}

const char *dyno_cgroup_name(const struct dyno *d) { return d->cg_name; }

/* The name of instance n of dyno id: the id itself for the first, so that a dyno never
 * cycled has the names it always had. */
char *instance_name(const char *id, uint32_t n)
{
        char *s = NULL;
        if (n == 0)
                return strdup(id);
        asprintf_safe(&s, "%s@%" PRIu32, id, n);
        return s;
}

char *instance_dir(const char *run_dir, uint32_t n)
{
        char *s = NULL;
        if (n == 0)
                return strdup(run_dir);
        asprintf_safe(&s, "%s/%" PRIu32, run_dir, n);
        return s;
}

/* Give the dyno the names of instance n. */
int dyno_set_instance(struct dyno *d, uint32_t n)
{
        struct manager *m = d->m;
        _cleanup_free_ char *name = instance_name(d->id, n);
        _cleanup_free_ char *dir = instance_dir(d->run_dir, n);
        _cleanup_free_ char *layer = name ? strjoin3(m->config->layers_dir, "/", name) : NULL;
        _cleanup_free_ char *cgpath = NULL;
        if (!name || !dir || !layer || cg_dyno_path(m->cg, name, &cgpath) < 0)
                return -ENOMEM;
        free(d->cg_name);
        free(d->inst_dir);
        free(d->layer_dir);
        free(d->cgroup_path);
        d->cg_name = TAKE_PTR(name);
        d->inst_dir = TAKE_PTR(dir);
        d->layer_dir = TAKE_PTR(layer);
        d->cgroup_path = TAKE_PTR(cgpath);
        d->instance = n;
        return 0;
}

const char *dyno_state_name(Hostd__V1__DynoState s)
{
        switch (s) {
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING: return "starting";
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_UP: return "up";
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING: return "stopping";
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED: return "crashed";
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN: return "down";
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_COMPLETE: return "complete";
        case HOSTD__V1__DYNO_STATE__DYNO_STATE_IDLE: return "idle";
        default: return "unknown";
        }
}

static const char *dyno_process(const struct dyno *d)
{
        return d->spec && *d->spec->name ? d->spec->name : d->id;
}

/* ---- dyno objects ---- */

static void pending_free(struct pending *p)
{
        call_on_cancel(p->call, NULL, NULL);
        call_unref(p->call);
        free(p);
}

static void pending_free_all(struct pending *p)
{
        while (p) {
                struct pending *next = p->next;
                pending_free(p);
                p = next;
        }
}

static void follower_free(struct follower *f)
{
        call_on_cancel(f->call, NULL, NULL);
        call_unref(f->call);
        free(f);
}

/* The dyno has ended for good: its followers' streams end. */
static void followers_end(struct dyno *d)
{
        while (d->followers) {
                struct follower *f = d->followers;
                d->followers = f->next;
                call_finish(f->call);
                follower_free(f);
        }
}

static void fill_log_line(Hostd__V1__LogLine *o, const struct dyno *d, const struct log_line *l)
{
        hostd__v1__log_line__init(o);
        o->time_usec = l->time_usec;
        o->dyno_id = d->id;
        o->source = l->source == LOG_SOURCE_PLATFORM ? (char *)"heroku" : (char *)"app";
        /* Heroku's own lines name the dyno too: heroku[web.1]. */
        o->process = *d->spec->name ? d->spec->name : d->id;
        o->text.data = (uint8_t *)l->text;
        o->text.len = l->len;
}

/* What a LogsResponse may hold: well under gRPC's usual 4 MiB receive limit. */
#define LOGS_BATCH_BYTES (1u << 20)

int dyno_send_logs(struct dyno *d, struct call *call, size_t first)
{
        size_t total = log_ring_count(d->ring);
        while (first < total) {
                size_t used = 0, k = first;
                while (k < total && (k == first || used < LOGS_BATCH_BYTES)) {
                        used += log_ring_get(d->ring, k)->len + 64;
                        k++;
                }
                size_t n = k - first;
                _cleanup_free_ Hostd__V1__LogLine *lines = calloc(n, sizeof *lines);
                _cleanup_free_ Hostd__V1__LogLine **ptrs = calloc(n, sizeof *ptrs);
                if (!lines || !ptrs) {
                        call_fail(call, API_INTERNAL, "logs: out of memory");
                        return -ECANCELED;
                }
                for (size_t i = 0; i < n; i++) {
                        fill_log_line(&lines[i], d, log_ring_get(d->ring, first + i));
                        ptrs[i] = &lines[i];
                }
                Hostd__V1__LogsResponse resp = HOSTD__V1__LOGS_RESPONSE__INIT;
                resp.n_lines = n;
                resp.lines = ptrs;
                int r = call_send(call, &resp.base);
                if (r < 0)
                        return r;
                first = k;
        }
        return 0;
}

static void on_follower_cancel(struct call *c, void *userdata)
{
        struct follower *gone = userdata;
        struct dyno *d = gone->d;
        for (struct follower **pp = &d->followers; *pp; pp = &(*pp)->next)
                if (*pp == gone) {
                        *pp = gone->next;
                        follower_free(gone);
                        return;
                }
}

void dyno_follow_logs(struct dyno *d, struct call *call)
{
        if (!dyno_is_live(d) && !d->restart_requested && !d->restart_at_usec) {
                call_finish(call); /* nothing more will come */
                return;
        }
        struct follower *f = calloc(1, sizeof *f);
        if (!f) {
                call_fail(call, API_INTERNAL, "logs: out of memory");
                return;
        }
        f->d = d;
        f->call = call_ref(call);
        f->next_seq = log_ring_next_seq(d->ring);
        f->next = d->followers;
        d->followers = f;
        call_on_cancel(call, on_follower_cancel, f);
}

/* Send followers what they have not seen. */
void dyno_flush_followers(struct dyno *d)
{
        uint64_t next = log_ring_next_seq(d->ring);
        uint64_t oldest = next - log_ring_count(d->ring);
        for (struct follower *f = d->followers; f; f = f->next)
                if (f->next_seq < next) {
                        uint64_t from = f->next_seq > oldest ? f->next_seq : oldest;
                        (void)dyno_send_logs(d, f->call, (size_t)(from - oldest));
                        f->next_seq = next;
                }
}

void dyno_close_sources(struct dyno *d)
{
        d->pid_source = sd_event_source_disable_unref(d->pid_source);
        d->log_source = sd_event_source_disable_unref(d->log_source);
        d->sync_source = sd_event_source_disable_unref(d->sync_source);
        d->timer_source = sd_event_source_disable_unref(d->timer_source);
        d->boot_source = sd_event_source_disable_unref(d->boot_source);
        d->restart_source = sd_event_source_disable_unref(d->restart_source);
        d->memory_source = sd_event_source_disable_unref(d->memory_source);
        d->memory_timer = sd_event_source_disable_unref(d->memory_timer);
        d->attach_timer = sd_event_source_disable_unref(d->attach_timer);
        d->cycle_source = sd_event_source_disable_unref(d->cycle_source);
        d->oom_source = sd_event_source_disable_unref(d->oom_source);
        d->oom_timer = sd_event_source_disable_unref(d->oom_timer);
        d->memory_reg_timer = sd_event_source_disable_unref(d->memory_reg_timer);
        cg_event_reg_close(&d->memory_reg); /* not registered: it ended first */
        closep(&d->memory_fd), d->memory_fd = -1;
        closep(&d->oom_fd), d->oom_fd = -1;
        if (d->attach)
                d->attach->end(d->attach, -1);
        closep(&d->tty_fd), d->tty_fd = -1;
        closep(&d->boot_fd), d->boot_fd = -1;
        closep(&d->pidfd), d->pidfd = -1;
        closep(&d->log_fd), d->log_fd = -1;
        closep(&d->sync_fd), d->sync_fd = -1;
        dyno_flush_logfile(d);
        logfile_close(&d->logfile);
        closep(&d->state_dirfd), d->state_dirfd = -1;
}

void dyno_free(struct dyno *d)
{
        if (!d)
                return;
        dyno_close_sources(d);
        drain_set_free(d->drains);
        pending_free_all(d->pending);
        followers_end(d);
        if (d->spec)
                hostd__v1__dyno_spec__free_unpacked(d->spec, NULL);
        line_splitter_free(&d->splitter);
        log_ring_free(d->ring);
        free(d->exit_reason);
        free(d->exit_error);
        retiring_free_all(d);
        free(d->cg_name);
        free(d->inst_dir);
        free(d->layer_dir);
        free(d->run_dir);
        free(d->cgroup_path);
        free(d->stack_root);
        free(d->slug_root);
        free(d->address);
        if (d->netd_attach)
                netd_cancel(d->m->netd, d->netd_attach);
        free(d->id);
        free(d);
}

int dyno_new(struct manager *m, const char *id, struct dyno **ret)
{
        struct dyno *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->m = m;
        d->event_state = -1;
        d->pidfd = d->log_fd = d->sync_fd = d->state_dirfd = d->boot_fd = d->memory_fd = d->tty_fd =
                d->oom_fd = -1;
        d->memory_reg = (struct cg_event_reg)CG_EVENT_REG_INIT;
        logfile_init(&d->logfile);
        d->id = strdup(id);
        d->run_dir = strjoin3(m->dynos_run_dir, "/", id);
        if (!d->id || !d->run_dir || dyno_set_instance(d, 0) < 0 ||
            line_splitter_init(&d->splitter, m->config->log_line_max) < 0 ||
            log_ring_new(m->config->log_lines, &d->ring) < 0) {
                dyno_free(d);
                return -ENOMEM;
        }
        *ret = d;
        return 0;
}

/* ---- logs ---- */

/* Keep a line in the ring and queue it for the log file (see logfile.h). */
static void dyno_keep_line(struct dyno *d, enum log_source source, const char *text, size_t len)
{
        int64_t now = now_realtime_usec();
        log_ring_push(d->ring, now, source, text, len);
        logfile_add(&d->logfile, now, source, text, len, d->m->config->log_lines);
        if (d->m->journal)
                journal_send_line(d->m->journal, dyno_process(d), d->id, d->spec->app,
                                  source == LOG_SOURCE_APP ? "app" : "heroku", text, len);
        drain_set_push(d->drains, now, source, text, len);
}

void dyno_flush_logfile(struct dyno *d)
{
        if (d->state_dirfd < 0)
                return;
        int r = logfile_flush(&d->logfile, d->state_dirfd, "log", d->ring, d->m->config->log_lines);
        if (r < 0)
                log_warning_errno(r, "dyno %s: write its log file: %m; lines stay in memory only",
                                  d->id);
}

void dyno_push_line(void *userdata, const char *line, size_t len)
{
        dyno_keep_line(userdata, LOG_SOURCE_APP, line, len);
}

/* A drain dropped lines and is about to say so: the dyno's log says it too. */
static void on_drain_overflow(void *userdata, const char *text)
{
        dyno_log_platform(userdata, "%s", text);
}

/* The drains of the spec, once per dyno (a restart keeps them). */
void dyno_drains_open(struct dyno *d)
{
        if (d->drains || !d->spec->n_log_drains)
                return;
        int r = drain_set_new(d->m->drains, d->spec->log_drains, d->spec->n_log_drains, d->id,
                              d->spec->app, dyno_process(d), on_drain_overflow, d, &d->drains);
        if (r < 0)
                log_error_errno(r, "dyno %s: open its log drains: %m; its lines go to none", d->id);
}

/* The dyno has ended for good: its drains send what they hold, within a bound, on their own. */
static void dyno_drains_close(struct dyno *d)
{
        drain_set_close(d->drains);
        d->drains = NULL;
}

_printf_(2, 3) void dyno_log_platform(struct dyno *d, const char *fmt, ...)
{
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        dyno_keep_line(d, LOG_SOURCE_PLATFORM, buf,
                       (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        log_info("dyno %s (%s): %s", d->id, dyno_process(d), buf);
        dyno_flush_logfile(d);
        dyno_flush_followers(d);
}

void dyno_log_metrics(struct dyno *d, const char *line)
{
        dyno_keep_line(d, LOG_SOURCE_PLATFORM, line, strlen(line));
        dyno_flush_logfile(d);
        dyno_flush_followers(d);
}

/* Read what a log pipe of the dyno (its instance's, or a retiring one's) holds now. Returns 0
 * at EOF (every writer gone), 1 otherwise. */
int read_log_pipe(struct dyno *d, int fd, struct line_splitter *sp)
{
        char buf[65536];
        for (int rounds = 0; rounds < 4; rounds++) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n > 0) {
                        line_splitter_feed(sp, buf, (size_t)n, dyno_push_line, d);
                        continue;
                }
                if (n == 0) {
                        line_splitter_flush(sp, dyno_push_line, d);
                        return 0;
                }
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN)
                        return 1;
                log_warning_errno(errno, "dyno %s: read logs: %m", d->id);
                return 0;
        }
        return 1; /* more later: let the loop serve others */
}

static int dyno_read_logs(struct dyno *d) { return read_log_pipe(d, d->log_fd, &d->splitter); }

static int on_log(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct dyno *d = userdata;
        int r = dyno_read_logs(d);
        dyno_flush_logfile(d);
        dyno_flush_followers(d);
        if (r == 0) {
                d->log_source = sd_event_source_disable_unref(d->log_source);
                closep(&d->log_fd), d->log_fd = -1;
        }
        return 0;
}

/* ---- waiting calls, and the one place a state changes ---- */

/* The answer of a call that waited: the dyno as it is now, as its method's response. */
void reply_dyno(struct call *c, enum dyno_wait wait, const struct dyno *d)
{
        Hostd__V1__Dyno dp;
        Hostd__V1__ExitInfo ei;
        dyno_to_proto(d, &dp, &ei);
        Hostd__V1__StartResponse start = HOSTD__V1__START_RESPONSE__INIT;
        Hostd__V1__StopResponse stop = HOSTD__V1__STOP_RESPONSE__INIT;
        Hostd__V1__RestartResponse restart = HOSTD__V1__RESTART_RESPONSE__INIT;
        start.dyno = stop.dyno = restart.dyno = &dp;
        call_reply(c, wait == WAIT_START_RUNS ? &start.base :
                      wait == WAIT_ENDED      ? &stop.base :
                                                &restart.base);
}

/* Whether what the call waits for has come. */
static bool dyno_wait_met(const struct dyno *d, enum dyno_wait wait)
{
        bool runs = d->running && (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING ||
                                   d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_UP);
        switch (wait) {
        case WAIT_START_RUNS: return runs;
        /* A restart that stops first waits for the run after this one. */
        case WAIT_RESTART_RUNS: return runs && !d->restart_requested;
        case WAIT_ENDED: return !dyno_is_live(d);
        }
        return false;
}

/* Answer every call whose wait is over. */
static void dyno_wake(struct dyno *d)
{
        for (struct pending **pp = &d->pending; *pp;) {
                struct pending *p = *pp;
                if (!dyno_wait_met(d, p->wait)) {
                        pp = &p->next;
                        continue;
                }
                *pp = p->next;
                reply_dyno(p->call, p->wait, d);
                pending_free(p);
        }
}

/* The one place a dyno's state changes: the record is written (the event stream told first,
 * see dyno_save), with log the platform line Heroku writes ("State changed from up to
 * crashed"), and whoever waits on it is answered. */
void dyno_set_state(struct dyno *d, Hostd__V1__DynoState state, bool log)
{
        Hostd__V1__DynoState from = d->state;
        d->state = state;
        if (log && from != state)
                dyno_log_platform(d, "State changed from %s to %s", dyno_state_name(from),
                                  dyno_state_name(state));
        dyno_save(d);
        dyno_wake(d);
}

/* The command runs now (or a one-off waits for its client): the calls that waited for it. */
static void dyno_mark_running(struct dyno *d)
{
        d->running = true;
        dyno_wake(d);
}

static void on_pending_cancel(struct call *c, void *userdata)
{
        struct pending *gone = userdata;
        for (struct pending **pp = &gone->d->pending; *pp; pp = &(*pp)->next)
                if (*pp == gone) {
                        *pp = gone->next;
                        pending_free(gone);
                        return;
                }
}

void dyno_add_pending(struct dyno *d, struct call *c, enum dyno_wait wait)
{
        struct pending *p = calloc(1, sizeof *p);
        if (!p) {
                call_fail(c, API_INTERNAL, "out of memory");
                return;
        }
        p->d = d;
        p->call = call_ref(c);
        p->wait = wait;
        p->next = d->pending;
        d->pending = p;
        call_on_cancel(c, on_pending_cancel, p);
}

/* Answer every call that waits with the dyno as it is now. */
static void dyno_answer_all(struct dyno *d)
{
        while (d->pending) {
                struct pending *p = d->pending;
                d->pending = p->next;
                reply_dyno(p->call, p->wait, d);
                pending_free(p);
        }
}

/* Fail the calls that wait (all of them, or those of one wait) with code and msg. */
static void dyno_answer_error(struct dyno *d, int wait, enum api_code code, const char *msg)
{
        for (struct pending **pp = &d->pending; *pp;) {
                struct pending *p = *pp;
                if (wait >= 0 && p->wait != (enum dyno_wait)wait) {
                        pp = &p->next;
                        continue;
                }
                *pp = p->next;
                call_fail(p->call, code, "%s", msg);
                pending_free(p);
        }
}

/* ---- teardown ---- */

static void dyno_set_exit_from_status(struct dyno *d, const char *text)
{
        char kind[16];
        int n;
        if (text && sscanf(text, "%15s %d", kind, &n) == 2) {
                if (strcmp(kind, "exited") == 0) {
                        d->exited = true;
                        d->exit_code = n;
                        d->exit_signal = 0;
                        d->exit_known = true;
                        return;
                }
                if (strcmp(kind, "signaled") == 0) {
                        d->exited = false;
                        d->exit_signal = n;
                        d->exit_code = 128 + n;
                        d->exit_known = true;
                        return;
                }
        }
        /* No record from the init: it was killed itself (SIGKILL at the end of the grace, the
         * OOM killer), and the namespace with it. */
        d->exited = false;
        d->exit_signal = SIGKILL;
        d->exit_code = 128 + SIGKILL;
        d->exit_known = true;
}

static void dyno_describe_exit(struct dyno *d)
{
        free(d->exit_reason);
        free(d->exit_error);
        d->exit_reason = d->exit_error = NULL;
        if (d->oom_killed)
                asprintf_safe(&d->exit_reason,
                              "killed by the kernel's OOM killer (memory limit %llu bytes)",
                              (unsigned long long)(d->size ? d->size->memory : 0));
        else if (d->exited)
                asprintf_safe(&d->exit_reason, "exit status %d", d->exit_code);
        else
                asprintf_safe(&d->exit_reason, "killed by signal %d (%s)", d->exit_signal,
                              strsignal(d->exit_signal));
        if (d->stop_timed_out)
                d->exit_error = strdup("R12");
        else if (d->boot_timed_out)
                d->exit_error = strdup("R10");
        else if (d->oom_killed)
                d->exit_error = strdup("R15");
        else if (d->r13)
                d->exit_error = strdup("R13");
        else if (d->r16)
                d->exit_error = strdup("R16");
}

/* The init has exited (or was found gone): collect everything and remove the dyno's kernel
 * objects and files, keeping the record. */
void dyno_finish(struct dyno *d)
{
        struct manager *m = d->m;
        Hostd__V1__DynoState before = d->state;

        if (d->pidfd >= 0 && !d->adopted) {
                siginfo_t si = {};
                waitid(P_PIDFD, (id_t)d->pidfd, &si, WEXITED | WNOHANG);
        }

        _cleanup_free_ char *exit_path = strjoin3(d->inst_dir, "/exit", NULL);
        _cleanup_free_ char *status = NULL;
        struct stat exit_st;
        int64_t exit_usec = 0; /* when the init wrote the command's status */
        if (exit_path && read_full_file(exit_path, &status, NULL) >= 0 &&
            stat(exit_path, &exit_st) == 0)
                exit_usec =
                        (int64_t)exit_st.st_mtim.tv_sec * 1000000 + exit_st.st_mtim.tv_nsec / 1000;
        dyno_set_exit_from_status(d, status);

        /* OOM kills not told yet (hostd was away, or the init's end came first) are told now.
         * The command itself was the one killed when it died of SIGKILL that hostd did not
         * send, with the kernel counting a kill then. */
        uint64_t told = d->oom_kills;
        dyno_oom_check(d);
        if (!d->exited && d->exit_signal == SIGKILL && !d->killed && d->oom_kills > 0)
                d->oom_killed =
                        d->oom_kills > told ||
                        (exit_usec && llabs(exit_usec - d->oom_last_usec) <= OOM_MATCH_USEC);

        int r = cg_destroy(m->cg, d->cg_name);
        if (r < 0)
                log_error_errno(r, "dyno %s: remove cgroup %s: %m", d->id, d->cgroup_path);
        cpu_pool_release(m->cpus, d->cg_name);
        dyno_net_release(d);

        /* Every writer is gone now: take the last lines. */
        if (d->log_fd >= 0) {
                while (dyno_read_logs(d) > 0)
                        ;
        }

        r = layer_remove(d->layer_dir);
        if (r < 0)
                log_error_errno(r, "dyno %s: remove %s: %m", d->id, d->layer_dir);
        if (d->instance > 0 && (r = rm_rf(d->inst_dir)) < 0)
                log_error_errno(r, "dyno %s: remove %s: %m", d->id, d->inst_dir);

        d->booting = d->running = false;
        dyno_describe_exit(d);
        d->finished_usec = now_realtime_usec();
        Hostd__V1__DynoState ended = d->stop_requested ?
                                             HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN :
                                     d->spec->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF &&
                                                     d->exited && d->exit_code == 0 ?
                                             HOSTD__V1__DYNO_STATE__DYNO_STATE_COMPLETE :
                                             HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED;

        dyno_log_platform(d, "Process exited with status %d", d->exit_code);
        if (d->attach)
                d->attach->end(d->attach, d->exit_code); /* the client learns the exit code */
        if (m->n_live > 0)
                m->n_live--;
        dyno_set_state(d, ended, true); /* a Stop waiting is answered */
        dyno_close_sources(d);
        bool again = ended == HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED && !d->restart_requested &&
                     dyno_crash_restart(d, before);
        if (again)
                dyno_save(d); /* when it restarts */
        dyno_flush_followers(d);
        if (d->restart_requested) {
                dyno_relaunch(d);
                return;
        }
        if (!again) {
                followers_end(d); /* a dyno that restarts goes on logging */
                dyno_drains_close(d);
        }
        /* A start that never came to run: it is answered with how the dyno ended. */
        dyno_answer_all(d);
}

/* ---- crash restarts ---- */

static int on_restart_due(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        struct manager *m = d->m;
        d->restart_source = sd_event_source_disable_unref(d->restart_source);
        if (d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED || !d->restart_at_usec)
                return 0;
        d->restart_at_usec = 0;
        char msg[512];
        if (admission_check(m, d->id, d->size, false, msg, sizeof msg)) {
                log_warning("%s: cannot restart; trying again in a minute", msg);
                d->restart_at_usec = now_realtime_usec() + 60 * 1000000LL;
                dyno_arm_restart(d);
                return 0;
        }
        dyno_relaunch(d);
        return 0;
}

void dyno_arm_restart(struct dyno *d)
{
        int64_t left = d->restart_at_usec - now_realtime_usec();
        d->restart_source = sd_event_source_disable_unref(d->restart_source);
        int r = sd_event_add_time_relative(d->m->event, &d->restart_source, CLOCK_MONOTONIC,
                                           left > 0 ? (uint64_t)left : 0, 0, on_restart_due, d);
        if (r < 0)
                log_error_errno(r, "dyno %s: restart timer: %m; it stays crashed", d->id);
}

static void dyno_cancel_restart(struct dyno *d)
{
        d->restart_source = sd_event_source_disable_unref(d->restart_source);
        d->restart_at_usec = 0;
}

/* A formation dyno restarts after any exit, exit 0 included, with the back-off of the config:
 * the n-th crash in a row waits its n-th delay. A crash after a good boot starts the count
 * again: a web dyno booted when it bound $PORT; a worker, once it ran for its boot timeout.
 * One-off dynos never restart. Returns whether a restart is scheduled. */
static bool dyno_crash_restart(struct dyno *d, Hostd__V1__DynoState before)
{
        const struct backoff *b = &d->m->config->restart_backoff;
        if (d->spec->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF || b->n == 0)
                return false;
        int64_t now = now_realtime_usec();
        bool booted =
                before == HOSTD__V1__DYNO_STATE__DYNO_STATE_UP &&
                (dyno_needs_boot(d) || now - d->up_usec >= (int64_t)dyno_boot_timeout(d) * 1000000);
        if (booted)
                d->crashes = 0;
        if (d->crashes < UINT32_MAX)
                d->crashes++;
        uint32_t wait = b->seconds[d->crashes - 1 < b->n ? d->crashes - 1 : b->n - 1];
        d->restart_at_usec = now + (int64_t)wait * 1000000;
        if (wait == 0)
                dyno_log_platform(d, "Crashed: restarting now (crash %u in a row)", d->crashes);
        else
                dyno_log_platform(d, "Crashed: restarting in %u seconds (crash %u in a row)", wait,
                                  d->crashes);
        dyno_arm_restart(d);
        return true;
}

static int on_init_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        dyno_finish(userdata);
        return 0;
}

/* ---- stop ---- */

static int on_grace_over(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        d->timer_source = sd_event_source_disable_unref(d->timer_source);
        if (d->pidfd < 0)
                return 0;
        d->stop_timed_out = true;
        dyno_log_platform(d,
                          "Error R12 (Exit timeout) -> At least one process failed to exit within "
                          "%u seconds of SIGTERM",
                          d->grace_seconds);
        dyno_log_platform(d, "Stopping process with SIGKILL");
        dyno_kill_now(d);
        return 0;
}

void dyno_stop_begin(struct dyno *d, uint32_t grace)
{
        d->stop_requested = true;
        d->grace_seconds = grace;
        if (d->awaiting_attach) {
                /* Its command never ran, and the waiting first process has no handler for
                 * SIGTERM: nothing to be graceful about. */
                d->awaiting_attach = false;
                dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING, false);
                dyno_kill_now(d);
                return;
        }
        if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING && !d->booting)
                return; /* on_sync begins the stop once the start is settled */
        d->booting = false;
        d->boot_source = sd_event_source_disable_unref(d->boot_source);
        closep(&d->boot_fd), d->boot_fd = -1;

        if (d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING) {
                d->stop_deadline_usec = now_realtime_usec() + (int64_t)grace * 1000000;
                dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING, false);
                dyno_log_platform(d, "Stopping all processes with SIGTERM");
        }
        /* The init relays SIGTERM to every process of the dyno. */
        if (pidfd_send_signal(d->pidfd, SIGTERM, NULL, 0) < 0 && errno != ESRCH)
                log_error_errno(errno, "dyno %s: SIGTERM: %m", d->id);

        if (!d->timer_source) {
                int64_t left = d->stop_deadline_usec - now_realtime_usec();
                int r = sd_event_add_time_relative(d->m->event, &d->timer_source, CLOCK_MONOTONIC,
                                                   left > 0 ? (uint64_t)left : 0, 0, on_grace_over,
                                                   d);
                if (r < 0) {
                        log_error_errno(r, "dyno %s: grace timer: %m; killing now", d->id);
                        on_grace_over(NULL, 0, d);
                }
        }
}

/* A stop of a dyno still waiting for its images: it never ran, so it is simply down. */
void dyno_cancel_waiting(struct dyno *d)
{
        d->waiting_images = false;
        d->stop_requested = true;
        d->finished_usec = now_realtime_usec();
        free(d->exit_reason);
        d->exit_reason = strdup("stopped before its images arrived");
        d->exit_known = true; /* the reason only: it never ran */
        if (d->m->n_live > 0)
                d->m->n_live--;
        dyno_log_platform(d, "Stopped before its images arrived");
        dyno_drains_close(d);
        char msg[256];
        snprintf(msg, sizeof msg, "dyno '%s': stopped before its images arrived", d->id);
        dyno_answer_error(d, WAIT_START_RUNS, API_ABORTED, msg);
        dyno_answer_error(d, WAIT_RESTART_RUNS, API_ABORTED, msg);
        followers_end(d);
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN, false); /* Stop answered */
}

/* Crashed and waiting to restart, stopped: it stays down. */
void dyno_stop_crashed(struct dyno *d)
{
        dyno_cancel_restart(d);
        d->stop_requested = true;
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN, true);
        followers_end(d);
        dyno_drains_close(d);
}

/* The spec's grace period, else the host's. */
uint32_t dyno_default_grace(const struct dyno *d)
{
        return d->spec->grace_case == HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS ?
                       d->spec->grace_seconds :
                       d->m->config->grace_seconds;
}

/* Heroku's start: buildpacks' defaults in .profile.d first, then the app's own .profile, then the
 * command as the last line of the shell's script, so that bash (and busybox's sh) execute a
 * simple command in place of the shell: SIGTERM reaches the app itself. */
static const char dyno_prelude[] =
        "for f in /app/.profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; unset f\n"
        "if [ -r /app/.profile ]; then . /app/.profile; fi\n";

/* The script the dyno's shell runs: the prelude, then the command. NULL: out of memory. */
static char *dyno_script(const struct dyno *d)
{
        /* Nothing after the command: busybox's sh executes it in its own place only when it
         * ends the script, a newline included. */
        const char *cmd = d->spec->command;
        size_t n = strlen(cmd);
        while (n > 0 && (cmd[n - 1] == '\n' || cmd[n - 1] == ' ' || cmd[n - 1] == '\t'))
                n--;
        _cleanup_free_ char *trimmed = strndup(cmd, n);
        return trimmed ? strjoin3(dyno_prelude, trimmed, NULL) : NULL;
}

static int env_add(char **env, size_t *k, const char *name, const char *value)
{
        if (!value || !*value)
                return 0;
        return asprintf_safe(&env[(*k)++], "%s=%s", name, value);
}

char **dyno_build_env(const struct dyno *d, const struct dyno_tty *tty)
{
        const Hostd__V1__DynoSpec *s = d->spec;
        size_t n = s->n_env + 20, k = 0;
        char **env = calloc(n, sizeof(char *));
        if (!env)
                return NULL;
        bool has_path = false;
        for (size_t i = 0; i < s->n_env; i++) {
                const char *name = s->env[i]->name;
                /* The terminal's own description wins over a config var. */
                if (tty && (strcmp(name, "TERM") == 0 || strcmp(name, "COLUMNS") == 0 ||
                            strcmp(name, "LINES") == 0))
                        continue;
                if (strcmp(name, "PATH") == 0)
                        has_path = true;
                if (asprintf_safe(&env[k++], "%s=%s", name, s->env[i]->value) < 0)
                        goto fail;
        }
        if (!has_path && !(env[k++] = strdup("PATH=/app/bin:/usr/local/bin:/usr/bin:/bin")))
                goto fail;
        if (!(env[k++] = strdup("HOME=/app")) ||
            asprintf_safe(&env[k++], "DYNO=%s", dyno_process(d)) < 0)
                goto fail;
        if (s->port && asprintf_safe(&env[k++], "PORT=%u", s->port) < 0)
                goto fail;
        /* Heroku's dyno metadata: the run's own id always, the rest as the spec has them. */
        if (env_add(env, &k, "HEROKU_DYNO_ID", d->run_id) < 0 ||
            env_add(env, &k, "HEROKU_APP_ID", s->app_id) < 0 ||
            env_add(env, &k, "HEROKU_APP_NAME", s->app) < 0 ||
            env_add(env, &k, "HEROKU_RELEASE_VERSION", s->release) < 0 ||
            env_add(env, &k, "HEROKU_RELEASE_CREATED_AT", s->release_created_at) < 0 ||
            env_add(env, &k, "HEROKU_SLUG_COMMIT", s->slug_commit) < 0 ||
            env_add(env, &k, "HEROKU_SLUG_DESCRIPTION", s->slug_description) < 0)
                goto fail;
        if (tty &&
            (env_add(env, &k, "TERM", tty->term && *tty->term ? tty->term : "xterm") < 0 ||
             (tty->columns && asprintf_safe(&env[k++], "COLUMNS=%" PRIu32, tty->columns) < 0) ||
             (tty->rows && asprintf_safe(&env[k++], "LINES=%" PRIu32, tty->rows) < 0)))
                goto fail;
        return env;
fail:
        strv_free(env);
        return NULL;
}

/* A random (version 4) UUID, for each run of a dyno. */
static void make_run_id(char out[37])
{
        uint8_t b[16];
        if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
                /* Only before the pool is ready at boot: time and the pid are unique enough. */
                uint64_t t = (uint64_t)now_realtime_usec(), p = (uint64_t)getpid();
                memcpy(b, &t, 8);
                memcpy(b + 8, &p, 8);
        }
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
}

uint64_t proc_starttime(pid_t pid)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        _cleanup_free_ char *s = NULL;
        if (read_full_file(path, &s, NULL) < 0)
                return 0;
        char *p = strrchr(s, ')');
        if (!p)
                return 0;
        /* Fields after the command: state is field 3, starttime field 22. */
        p += 2;
        for (int field = 3; field < 22 && p; field++) {
                p = strchr(p, ' ');
                if (p)
                        p++;
        }
        return p ? strtoull(p, NULL, 10) : 0;
}

static void dyno_abort_start(struct dyno *d)
{
        struct manager *m = d->m;
        retiring_kill_all(d);
        if (d->pidfd >= 0) {
                pidfd_send_signal(d->pidfd, SIGKILL, NULL, 0);
                siginfo_t si;
                while (waitid(P_PIDFD, (id_t)d->pidfd, &si, WEXITED) < 0 && errno == EINTR)
                        ;
        }
        dyno_net_release(d);
        dyno_close_sources(d);
        int r = cg_destroy(m->cg, d->cg_name);
        if (r < 0)
                log_error_errno(r, "dyno %s: remove cgroup: %m", d->id);
        cpu_pool_release(m->cpus, d->cg_name);
        r = layer_remove(d->layer_dir);
        if (r < 0)
                log_error_errno(r, "dyno %s: remove %s: %m", d->id, d->layer_dir);
        r = rm_rf(d->run_dir);
        if (r < 0)
                log_error_errno(r, "dyno %s: remove %s: %m", d->id, d->run_dir);
        if (m->n_live > 0)
                m->n_live--;
        if (m->events && d->event_state >= 0)
                events_emit(m->events, d->id, HOSTD__V1__EVENT_KIND__EVENT_KIND_REMOVED, 0,
                            "the start failed: nothing of the dyno is left");
        manager_remove(m, d);
        dyno_free(d);
}

/* ---- a one-off's terminal: R13, R16 ---- */

/* SIGKILL to every process of the dyno at once (cg_kill), its init among them. */
void dyno_kill_now(struct dyno *d)
{
        d->killed = true;
        int r = cg_kill(d->m->cg, d->cg_name);
        if (r < 0 && r != -ENOENT)
                log_error_errno(r, "dyno %s: kill cgroup %s: %m", d->id, d->cgroup_path);
        /* The init too, should it not be in the cgroup yet (a start under way). */
        if (d->pidfd >= 0 && pidfd_send_signal(d->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
                log_error_errno(errno, "dyno %s: SIGKILL: %m", d->id);
}

static int on_attach_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct dyno *d = userdata;
        struct manager *m = d->m;
        if (!dyno_is_live(d) || d->attach)
                return 0;
        if (!d->attached_once) {
                dyno_log_platform(d, "Error R13 (Attach error) -> Failed to attach to process");
                d->r13 = true;
                dyno_kill_now(d);
                return 0;
        }
        if (d->hangups < m->config->hangups) {
                /* The init relays it to every process of the dyno. */
                d->hangups++;
                if (d->pidfd >= 0)
                        pidfd_send_signal(d->pidfd, SIGHUP, NULL, 0);
                sd_event_source_set_time_relative(s,
                                                  (uint64_t)m->config->hangup_interval * 1000000);
                sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        dyno_log_platform(d, "Error R16 (Detached) -> An attached process is not responding to "
                             "SIGHUP after its external connection was closed.");
        d->r16 = true;
        dyno_kill_now(d);
        return 0;
}

static void dyno_arm_attach_timer(struct dyno *d, uint64_t usec)
{
        if (!d->attach_timer) {
                int r = sd_event_add_time_relative(d->m->event, &d->attach_timer, CLOCK_MONOTONIC,
                                                   usec, 0, on_attach_timer, d);
                if (r < 0)
                        log_error_errno(r, "dyno %s: attach timer: %m", d->id);
                return;
        }
        sd_event_source_set_time_relative(d->attach_timer, usec);
        sd_event_source_set_enabled(d->attach_timer, SD_EVENT_ONESHOT);
}

/* A one-off with a terminal waits for its client: R13 when none comes in time. */
void dyno_attach_wait(struct dyno *d)
{
        if (d->spec->tty && d->tty_fd >= 0 && !d->attach && dyno_is_live(d))
                dyno_arm_attach_timer(d, (uint64_t)d->m->config->attach_timeout * 1000000);
}

void dyno_attached(struct dyno *d)
{
        d->attached_once = true;
        if (d->attach_timer)
                sd_event_source_set_enabled(d->attach_timer, SD_EVENT_OFF);
        if (d->awaiting_attach) {
                /* The client is there: the command may run (on_sync sees it executed). */
                d->awaiting_attach = false;
                int r = spawn_go(d->sync_fd);
                if (r < 0) {
                        log_error_errno(r, "dyno %s: let the command run: %m", d->id);
                        dyno_kill_now(d);
                }
        }
}

/* Its client went away: hang the dyno up, as a closed terminal would, every few seconds,
 * and end it (R16) when that does not. */
void dyno_detached(struct dyno *d)
{
        if (!dyno_is_live(d))
                return;
        dyno_log_platform(d, "Client detached; sending SIGHUP to all processes");
        dyno_arm_attach_timer(d, 0);
}

/* The start is settled (the command runs, or a one-off waits for its client): the calls that
 * waited for it are answered, and a stop that came meanwhile begins. */
static void dyno_start_settled(struct dyno *d)
{
        dyno_mark_running(d);
        if (d->stop_requested)
                dyno_stop_begin(d, d->grace_seconds);
}

static int on_sync(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct dyno *d = userdata;
        struct spawn_error err;
        int tty = -1;
        int r = spawn_read_result(d->sync_fd, &err, &tty);
        if (r == -EAGAIN)
                return 0;
        if (r == 2) {
                /* The one-off's terminal: the dyno waits for its client, who may attach now
                 * (exec_attach lets the command go on). */
                closep(&d->tty_fd);
                d->tty_fd = tty;
                fcntl(tty, F_SETFL, O_NONBLOCK);
                d->awaiting_attach = true;
                dyno_attach_wait(d);
                dyno_start_settled(d);
                return 0;
        }
        d->sync_source = sd_event_source_disable_unref(d->sync_source);
        closep(&d->sync_fd), d->sync_fd = -1;
        if (r == 0 && !d->go_sent) {
                /* Closed before we let it go: the first process died waiting. */
                r = 1;
                err.error = ECHILD;
                snprintf(err.where, sizeof err.where, "the dyno's first process ended %s",
                         d->netd_attach ? "while netd wired it" : "while it built its root");
        }

        if (r != 0) {
                char msg[512];
                if (r > 0)
                        snprintf(msg, sizeof msg, "dyno %s: %s: %s", d->id, err.where,
                                 strerror(err.error));
                else
                        snprintf(msg, sizeof msg, "dyno %s: read the setup result: %s", d->id,
                                 strerror(-r));
                dyno_fail_start(d, API_FAILED_PRECONDITION, msg);
                return 0;
        }

        d->started_usec = now_realtime_usec();
        d->running = true; /* the state change below answers the calls that waited */
        if (dyno_needs_boot(d)) {
                d->boot_deadline_usec = d->started_usec + (int64_t)dyno_boot_timeout(d) * 1000000;
                dyno_boot_begin(d);
        } else
                dyno_set_up(d);
        dyno_cycle_arm(d);
        dyno_start_settled(d);
        return 0;
}

/* Let the first process go on once netd has wired it: it enters its cgroup namespace, pivots
 * into its root and runs the command. 0, or a negative errno: the caller fails the start. */
int dyno_go_if_ready(struct dyno *d)
{
        if (d->go_sent || d->netd_attach || d->sync_fd < 0)
                return 0;
        d->go_sent = true;
        return spawn_go(d->sync_fd);
}

int dyno_watch(struct dyno *d)
{
        int r = sd_event_add_io(d->m->event, &d->pid_source, d->pidfd, EPOLLIN, on_init_exit, d);
        if (r < 0)
                return r;
        dyno_memory_watch(d);
        dyno_oom_watch(d);
        if (d->log_fd >= 0) {
                r = sd_event_add_io(d->m->event, &d->log_source, d->log_fd, EPOLLIN, on_log, d);
                if (r < 0)
                        return r;
                /* A dyno that floods its output must not delay the API or process exits: its
                 * pipe fills and it waits, which is the kernel's back-pressure. */
                (void)sd_event_source_set_priority(d->log_source, HOSTD_PRIORITY_LOGS);
        }
        return 0;
}

static int dyno_launch(struct dyno *d, char *errbuf, size_t errlen)
{
        struct manager *m = d->m;
        const struct size_def *size = d->size;
        int r;

        make_run_id(d->run_id); /* before the first record of this run */

        /* The run folder holds the record, the log file and, later, the init's exit status. */
        closep(&d->state_dirfd), d->state_dirfd = -1; /* a resumed start had it open */
        if (mkdir(d->run_dir, 0700) < 0 && errno != EEXIST)
                return set_error(errbuf, errlen, -errno, "create %s: %s", d->run_dir,
                                 strerror(errno));
        d->state_dirfd = open(d->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->state_dirfd < 0)
                return set_error(errbuf, errlen, -errno, "open %s: %s", d->run_dir,
                                 strerror(errno));
        /* The instance's own folder for its exit status: an instance a daily cycle replaced
         * may still be writing its own. */
        if (d->instance > 0 && mkdir(d->inst_dir, 0700) < 0 && errno != EEXIST)
                return set_error(errbuf, errlen, -errno, "create %s: %s", d->inst_dir,
                                 strerror(errno));
        _cleanup_close_ int inst_dirfd =
                d->instance > 0 ? open(d->inst_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) :
                                  fcntl(d->state_dirfd, F_DUPFD_CLOEXEC, 3);
        if (inst_dirfd < 0)
                return set_error(errbuf, errlen, -errno, "open %s: %s", d->inst_dir,
                                 strerror(errno));
        if (unlinkat(inst_dirfd, "exit", 0) < 0 && errno != ENOENT)
                return set_error(errbuf, errlen, -errno, "remove the last exit status: %s",
                                 strerror(errno));
        /* A restarted dyno keeps its lines: the file starts as the ring. */
        r = logfile_open(&d->logfile, d->state_dirfd, "log", d->ring);
        if (r < 0)
                return set_error(errbuf, errlen, r, "create the log file: %s", strerror(-r));
        r = dyno_save(d);
        if (r < 0)
                return set_error(errbuf, errlen, r, "write the record: %s", strerror(-r));

        /* The writable layer over the shared, read-only stack and slug. */
        _cleanup_free_ char *layer = NULL, *overlay = NULL;
        r = layer_create(m->config->layers_dir, d->cg_name, d->uid, &layer, errbuf, errlen);
        if (r < 0)
                return r;
        r = layer_mount_options(d->stack_root, d->slug_root, d->layer_dir, &overlay);
        if (r < 0)
                return set_error(errbuf, errlen, r, "overlay options: %s", strerror(-r));

        /* Reserved at admission; this only covers a start resumed after a restart of hostd. */
        r = cpu_pool_reserve(m->cpus, d->cg_name, size->dedicated_cpus, errbuf, errlen);
        if (r < 0)
                return r;
        struct cg_limits lim = {
                .memory = size->memory,
                .memory_swap =
                        size->swap ? (uint64_t)((double)size->memory * (size->r15_multiple - 1.0)) :
                                     0,
                .cpu_weight = size->cpu_weight,
                .cpu_quota_us = size->cpu_quota_pct ? size->cpu_quota_pct * 1000 : 0,
                .cpu_period_us = size->cpu_quota_pct ? 100000 : 0,
                .pids = size->pids,
                .cpus = cpu_pool_cpus_for(m->cpus, d->cg_name),
        };
        r = cg_create(m->cg, d->cg_name, &lim);
        if (r < 0)
                return set_error(errbuf, errlen, r, "create cgroup %s: %s", d->cgroup_path,
                                 strerror(-r));

        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0)
                return set_error(errbuf, errlen, -errno, "create the log pipe: %s",
                                 strerror(errno));
        d->log_fd = pipefd[0];
        _cleanup_close_ int log_w = pipefd[1];
        /* The pipe is what buffers the dyno's output while hostd is away: make it large. */
        (void)fcntl(log_w, F_SETPIPE_SZ, 1 << 20);
        /* The dyno's writes must block when full, not fail. */
        (void)fcntl(log_w, F_SETFL, 0);

        struct cg_view view;
        r = cg_dyno_view(m->cg, d->cg_name, &view);
        if (r < 0)
                return set_error(errbuf, errlen, r, "the dyno's view of its cgroup: %s",
                                 strerror(-r));
        const struct dyno_tty tty = { d->spec->tty_term, d->spec->tty_columns, d->spec->tty_rows };
        _cleanup_strv_free_ char **envp = dyno_build_env(d, d->spec->tty ? &tty : NULL);
        _cleanup_free_ char *script = dyno_script(d);
        if (!envp || !script)
                return -ENOMEM;
        char *argv[] = { (char *)"/bin/bash", (char *)"-c", script, NULL };
        struct spawn_params p = {
                .id = d->id,
                .cgroup = d->cg_name,
                .layer_dir = d->layer_dir,
                .overlay_options = overlay,
                .uid = d->uid,
                .argv = argv,
                .argv0_fallback = "/bin/sh",
                .envp = envp,
                .state_dirfd = inst_dirfd,
                .log_read_fd = d->log_fd,
                .log_write_fd = log_w,
                .init_exe_fd = m->init_exe_fd,
                .seccomp = &m->seccomp,
                .rlimit_nofile = m->config->rlimit_nofile,
                .rlimit_nproc = size->pids,
                .shm_size = m->config->shm_size,
                .cgroup_view = &view,
                .tty = d->spec->tty,
                .tty_columns = d->spec->tty_columns,
                .tty_rows = d->spec->tty_rows,
        };
        /* Before the command can print anything: its lines follow this one. */
        dyno_log_platform(d, "Starting process with command `%s`", d->spec->command);
        struct spawn_child child;
        r = spawn_dyno(&p, m->cg, &child);
        if (r < 0)
                return set_error(errbuf, errlen, r, "create the dyno's processes: %s",
                                 strerror(-r));
        d->pid = child.pid;
        d->pidfd = child.pidfd;
        d->sync_fd = child.sync_fd;
        d->go_sent = false;
        d->init_starttime = proc_starttime(d->pid);

        r = sd_event_add_io(m->event, &d->sync_source, d->sync_fd, EPOLLIN, on_sync, d);
        if (r < 0 || (r = dyno_watch(d)) < 0)
                return set_error(errbuf, errlen, r, "watch the dyno: %s", strerror(-r));
        /* The pid is known now: record it, so that a restart of hostd finds the dyno. */
        r = dyno_save(d);
        if (r < 0)
                return set_error(errbuf, errlen, r, "write the record: %s", strerror(-r));
        if (m->netd && (r = dyno_net_attach(d, errbuf, errlen)) < 0)
                return r;
        r = dyno_go_if_ready(d);
        if (r < 0)
                return set_error(errbuf, errlen, r, "let the dyno's processes go on: %s",
                                 strerror(-r));
        return 0;
}

/* A start that cannot go on: tell whoever waits, and undo everything. */
void dyno_fail_start(struct dyno *d, enum api_code code, const char *msg)
{
        log_error("%s", msg);
        /* Undo first, answer after: whoever is told of the failure finds nothing left. */
        struct pending *pending = TAKE_PTR(d->pending);
        dyno_abort_start(d);
        for (struct pending *p = pending; p; p = p->next)
                call_fail(p->call, code, "%s", msg);
        pending_free_all(pending);
}

/* The folder for one lower layer: the spec's path, or an image of the store. Returns 0 with
 * *root set (NULL for no slug), 1 when an import has begun and the dyno must wait, or a
 * negative errno with msg. */
static int dyno_resolve_layer(struct dyno *d, const char *what, enum image_kind kind,
                              const char *path, const char *digest, const char *url, bool dry_run,
                              char **root, char *msg, size_t len)
{
        struct manager *m = d->m;
        free(*root);
        *root = NULL;
        if (!*digest) {
                if (*path && !(*root = strdup(path)))
                        return -ENOMEM;
                return 0;
        }
        struct image_info info;
        int r = importer_busy(m->importer, digest) ? -ENOENT :
                                                     image_lookup(m->images, digest, &info);
        if (r == 0) {
                if (info.kind != kind) {
                        snprintf(msg, len, "spec.%s_digest: image %.12s is a %s, not a %s", what,
                                 digest, info.kind == IMAGE_KIND_STACK ? "stack" : "slug", what);
                        return -EMEDIUMTYPE;
                }
                if (!dry_run) /* once per start: a touch is an atomic rewrite with fsyncs */
                        (void)image_touch(m->images, digest);
                return image_rootfs_path(m->images, digest, root);
        }
        if (r != -ENOENT) {
                snprintf(msg, len, "spec.%s_digest: image %.12s: %s", what, digest, strerror(-r));
                return r;
        }
        if (!*url) {
                snprintf(msg, len,
                         "spec.%s_digest: image %s is not on this host and spec.%s_url is empty",
                         what, digest, what);
                return -ENOENT;
        }
        if (dry_run)
                return 1;
        r = importer_start(m->importer, url, digest, kind, NULL, NULL, NULL);
        if (r < 0) {
                snprintf(msg, len, "spec.%s_url: start the import: %s", what, strerror(-r));
                return r;
        }
        d->fetch_quarter[kind == IMAGE_KIND_SLUG] = 0;
        dyno_log_platform(d, "Fetching %s %.12s from %s", what, digest, url);
        return 1;
}

/* Resolve the dyno's layers and launch it, or wait for its images to arrive. */
void dyno_begin(struct dyno *d)
{
        const Hostd__V1__DynoSpec *s = d->spec;
        char msg[512], full[600];
        dyno_drains_open(d);
        /* Twice: the first pass only checks, so that a slug that cannot be had does not
         * leave a stack import running for nothing. */
        int r = 0, w = 0;
        for (int pass = 0; pass < 2 && r >= 0; pass++) {
                bool dry = pass == 0;
                r = dyno_resolve_layer(d, "stack", IMAGE_KIND_STACK, s->stack_path, s->stack_digest,
                                       s->stack_url, dry, &d->stack_root, msg, sizeof msg);
                w = r;
                if (r >= 0) {
                        r = dyno_resolve_layer(d, "slug", IMAGE_KIND_SLUG, s->slug_path,
                                               s->slug_digest, s->slug_url, dry, &d->slug_root, msg,
                                               sizeof msg);
                        if (r > w)
                                w = r;
                }
        }
        if (r < 0) {
                snprintf(full, sizeof full, "dyno '%s': %s", d->id, msg);
                dyno_fail_start(d, r == -ENOMEM ? API_INTERNAL : API_FAILED_PRECONDITION, full);
                return;
        }
        d->waiting_images = w > 0;
        if (d->waiting_images) {
                dyno_save(d);
                return;
        }
        if (d->restarts == 0)
                dyno_log_platform(d, "Starting process with size %s", d->size->name);
        r = dyno_launch(d, msg, sizeof msg);
        if (r < 0) {
                snprintf(full, sizeof full, "dyno '%s': %s", d->id, msg);
                dyno_fail_start(d,
                                r == -ENOMEM      ? API_INTERNAL :
                                r == -ENETUNREACH ? API_UNAVAILABLE :
                                r == -ENOSPC      ? API_RESOURCE_EXHAUSTED :
                                                    API_FAILED_PRECONDITION,
                                full);
        }
}

/* Forget everything of the last run before the next. */
void dyno_reset_run(struct dyno *d)
{
        d->restart_requested = d->stop_requested = d->stop_timed_out = false;
        d->booting = d->boot_timed_out = false;
        d->boot_deadline_usec = 0;
        d->attached_once = d->awaiting_attach = d->r13 = d->r16 = false;
        d->hangups = 0;
        d->exit_known = d->exited = d->oom_killed = d->killed = false;
        d->oom_kills = 0;
        d->oom_last_usec = 0;
        d->exit_code = d->exit_signal = 0;
        free(d->exit_reason);
        free(d->exit_error);
        d->exit_reason = d->exit_error = NULL;
        d->started_usec = d->finished_usec = d->stop_deadline_usec = 0;
        d->pid = 0;
        d->init_starttime = 0;
        d->adopted = d->running = false;
}

/* Start an ended dyno again in place: same spec, logs kept, a fresh layer and a new uid. */
void dyno_relaunch(struct dyno *d)
{
        struct manager *m = d->m;
        char msg[512];
        int r;

        dyno_cancel_restart(d);
        dyno_reset_run(d);
        d->uid = manager_pick_uid(m, &r);
        if (r < 0) {
                snprintf(msg, sizeof msg, "dyno '%s': no free uid: %s", d->id, strerror(-r));
                dyno_answer_error(d, -1, API_RESOURCE_EXHAUSTED, msg);
                dyno_save(d);
                return;
        }
        char why[256];
        if (cpu_pool_reserve(m->cpus, d->cg_name, d->size->dedicated_cpus, why, sizeof why) < 0) {
                snprintf(msg, sizeof msg, "dyno '%s': size %s %s", d->id, d->size->name, why);
                dyno_answer_error(d, -1, API_RESOURCE_EXHAUSTED, msg);
                dyno_save(d);
                return;
        }
        d->restarts++;
        m->n_live++;
        dyno_log_platform(d, "Restarting");
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING, false);
        dyno_begin(d);
}
