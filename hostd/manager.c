/* The dyno lifecycle: start, supervise, stop, and reconcile after a restart of hostd.
 *
 * A dyno moves STARTING -> UP -> (STOPPING ->) DOWN | CRASHED | COMPLETE. Every change is
 * written to <run-dir>/dynos/<id>/record before anyone is told of it, so a hostd that dies at
 * any point finds, at its next start, what it had promised. */
#include "manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "admission.h"
#include "boot.h"
#include "cgroup.h"
#include "cpus.h"
#include "drain.h"
#include "events.h"
#include "exec.h"
#include "images.h"
#include "importer.h"
#include "journal.h"
#include "metrics.h"
#include "logfile.h"
#include "netd-client.h"
#include "call.h"
#include "seccomp-filter.h"
#include "spawn.h"
#include "store.pb-c.h"
#include "util.h"
#include "api-code.h"
#include "validate.h"

#include "config-build.h"

#define DRAIN_LINGER_SEC 10 /* an ended dyno's drains try this long to send what they hold */
/* The command died of a SIGKILL hostd did not send, this close to an OOM kill the kernel
 * counted: the OOM killer's. */
#define OOM_MATCH_USEC (10LL * 1000000)

/* hostd-init holds the log pipe's read end at this descriptor (see init.c), and a one-off's
 * terminal at the next (spawn.c). */
#define INIT_LOG_FD 4
#define INIT_TTY_FD 5

static void closedirp_(DIR **d)
{
        if (*d)
                closedir(*d);
}

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int pidfd_send_signal_(int pidfd, int sig)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}
static int pidfd_getfd_(int pidfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); }

static int dyno_cmp(const void *a, const void *b)
{
        return strcmp(((const struct dyno *)a)->id, ((const struct dyno *)b)->id);
}

struct dyno *manager_find(struct manager *m, const char *id)
{
        struct dyno key = { .id = (char *)id };
        struct dyno **found = tfind(&key, &m->dynos, dyno_cmp);
        return found ? *found : NULL;
}

/* The dyno whose current instance has the name (cg_name). */
static struct dyno *manager_find_instance(struct manager *m, const char *name)
{
        const char *at = strchr(name, '@');
        if (!at)
                return manager_find(m, name);
        _cleanup_free_ char *id = strndup(name, (size_t)(at - name));
        struct dyno *d = id ? manager_find(m, id) : NULL;
        return d && strcmp(d->cg_name, name) == 0 ? d : NULL;
}

static void tree_collect(const void *node, VISIT which, void *closure)
{
        if (which != postorder && which != leaf)
                return;
        struct {
                struct dyno **v;
                size_t n;
        } *c = closure;
        c->v[c->n++] = *(struct dyno *const *)node;
}

void manager_foreach(struct manager *m, void (*fn)(struct dyno *d, void *userdata), void *userdata)
{
        if (m->n_dynos == 0)
                return;
        /* Collect first: fn may change the tree. */
        struct {
                struct dyno **v;
                size_t n;
        } c = { calloc(m->n_dynos, sizeof(struct dyno *)), 0 };
        if (!c.v)
                return;
        twalk_r(m->dynos, tree_collect, &c);
        for (size_t i = 0; i < c.n; i++)
                fn(c.v[i], userdata);
        free(c.v);
}

bool dyno_is_live(const struct dyno *d)
{
        return d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING ||
               d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_UP || d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING;
}

const char *dyno_cgroup_name(const struct dyno *d) { return d->cg_name; }

/* An earlier instance of a dyno that a daily cycle replaced: SIGTERM was sent, the
 * replacement runs, and this one is watched until it is gone (or killed at its deadline),
 * then its cgroup, layer and network are removed. Its lines go on into the dyno's log. */
struct retiring {
        struct dyno *d;
        uint32_t instance;
        char *name; /* its cg_name */
        char *inst_dir;
        char *layer_dir;
        pid_t pid;
        uint64_t init_starttime;
        uid_t uid;
        bool adopted; /* not our child */
        int pidfd, log_fd;
        int64_t deadline_usec; /* CLOCK_REALTIME: SIGKILL then */
        uint32_t grace_seconds;
        uint64_t oom_kills; /* told while it was the dyno's current instance, or since */
        struct line_splitter splitter;
        sd_event_source *pid_source, *log_source, *timer_source;
        struct retiring *next;
};

size_t dyno_retiring_count(const struct dyno *d)
{
        size_t n = 0;
        for (const struct retiring *r = d->retiring; r; r = r->next)
                n++;
        return n;
}

/* The name of instance n of dyno id: the id itself for the first, so that a dyno never
 * cycled has the names it always had. */
static char *instance_name(const char *id, uint32_t n)
{
        char *s = NULL;
        if (n == 0)
                return strdup(id);
        asprintf_safe(&s, "%s@%" PRIu32, id, n);
        return s;
}

static char *instance_dir(const char *run_dir, uint32_t n)
{
        char *s = NULL;
        if (n == 0)
                return strdup(run_dir);
        asprintf_safe(&s, "%s/%" PRIu32, run_dir, n);
        return s;
}

/* Give the dyno the names of instance n. */
static int dyno_set_instance(struct dyno *d, uint32_t n)
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

static void dyno_flush_logfile(struct dyno *d);

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
static void dyno_flush_followers(struct dyno *d)
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

static void dyno_close_sources(struct dyno *d)
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
        closep(&d->memory_fd), d->memory_fd = -1;
        closep(&d->oom_fd), d->oom_fd = -1;
        exec_attach_end(d, -1);
        closep(&d->tty_fd), d->tty_fd = -1;
        closep(&d->boot_fd), d->boot_fd = -1;
        closep(&d->pidfd), d->pidfd = -1;
        closep(&d->log_fd), d->log_fd = -1;
        closep(&d->sync_fd), d->sync_fd = -1;
        dyno_flush_logfile(d);
        logfile_close(&d->logfile);
        closep(&d->state_dirfd), d->state_dirfd = -1;
}

static void retiring_free_all(struct dyno *d);

static void dyno_free(struct dyno *d)
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

static int dyno_new(struct manager *m, const char *id, struct dyno **ret)
{
        struct dyno *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->m = m;
        d->event_state = -1;
        d->pidfd = d->log_fd = d->sync_fd = d->state_dirfd = d->boot_fd = d->memory_fd = d->tty_fd =
                d->oom_fd = -1;
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

static int manager_add(struct manager *m, struct dyno *d)
{
        struct dyno **slot = tsearch(d, &m->dynos, dyno_cmp);
        if (!slot)
                return -ENOMEM;
        if (*slot != d)
                return -EEXIST;
        m->n_dynos++;
        return 0;
}

static void manager_remove(struct manager *m, struct dyno *d)
{
        if (tdelete(d, &m->dynos, dyno_cmp))
                m->n_dynos--;
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

static void dyno_flush_logfile(struct dyno *d)
{
        if (d->state_dirfd < 0)
                return;
        int r = logfile_flush(&d->logfile, d->state_dirfd, "log", d->ring, d->m->config->log_lines);
        if (r < 0)
                log_warning_errno(r, "dyno %s: write its log file: %m; lines stay in memory only",
                                  d->id);
}

static void dyno_push_line(void *userdata, const char *line, size_t len)
{
        dyno_keep_line(userdata, LOG_SOURCE_APP, line, len);
}

_printf_(2, 3) static void dyno_log_platform(struct dyno *d, const char *fmt, ...);

/* A drain dropped lines and is about to say so: the dyno's log says it too. */
static void on_drain_overflow(void *userdata, const char *text)
{
        dyno_log_platform(userdata, "%s", text);
}

/* The drains of the spec, once per dyno (a restart keeps them). */
static void dyno_drains_open(struct dyno *d)
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

_printf_(2, 3) static void dyno_log_platform(struct dyno *d, const char *fmt, ...)
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
static int read_log_pipe(struct dyno *d, int fd, struct line_splitter *sp)
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

/* ---- records ---- */

static void dyno_fill_exit(const struct dyno *d, Hostd__V1__ExitInfo *e)
{
        hostd__v1__exit_info__init(e);
        e->exited = d->exited;
        e->code = d->exit_code;
        e->signal = d->exit_signal;
        e->oom_killed = d->oom_killed;
        e->reason = d->exit_reason ? d->exit_reason : (char *)"";
        e->error = d->exit_error ? d->exit_error : (char *)"";
}

void dyno_to_proto(const struct dyno *d, Hostd__V1__Dyno *out, Hostd__V1__ExitInfo *exit)
{
        hostd__v1__dyno__init(out);
        out->spec = d->spec;
        out->state = d->state;
        out->pid = (uint32_t)(dyno_is_live(d) && d->pid > 0 ? d->pid : 0);
        out->uid = d->uid;
        out->created_usec = d->created_usec;
        out->started_usec = d->started_usec;
        out->finished_usec = d->finished_usec;
        if (d->exit_known) {
                dyno_fill_exit(d, exit);
                out->exit = exit;
        }
        out->cgroup = d->cgroup_path;
        out->restarts = d->restarts;
        out->address = d->address ? d->address : (char *)"";
        out->host_port = d->host_port;
        if (d->size) {
                out->memory_limit = d->size->memory;
                out->swap_limit = d->size->swap ? (uint64_t)((double)d->size->memory *
                                                             (d->size->r15_multiple - 1.0)) :
                                                  0;
                out->cpu_weight = d->size->cpu_weight;
                out->pids_limit = d->size->pids;
        }
        out->log_dropped = log_ring_dropped(d->ring);
        out->oom_kills = d->oom_kills;
        out->run_id = (char *)d->run_id;
        drain_set_status(d->drains, &out->drains, &out->n_drains);
}

static int dyno_save(struct dyno *d)
{
        /* Told to the event stream first: a hostd that dies between the two finds the change
         * in the stream at its next start, never a record the stream did not hear of. */
        if (d->m->events && d->event_state != (int)d->state) {
                if (d->event_state < 0)
                        events_emit(d->m->events, d->id, HOSTD__V1__EVENT_KIND__EVENT_KIND_STATE, d->state, "%s",
                                    dyno_state_name(d->state));
                else
                        events_emit(d->m->events, d->id, HOSTD__V1__EVENT_KIND__EVENT_KIND_STATE, d->state,
                                    "State changed from %s to %s%s%s",
                                    dyno_state_name((Hostd__V1__DynoState)d->event_state),
                                    dyno_state_name(d->state), d->exit_reason ? ": " : "",
                                    d->exit_reason ? d->exit_reason : "");
                d->event_state = (int)d->state;
        }
        Hostd__V1__Dyno dp;
        Hostd__V1__ExitInfo ei;
        dyno_to_proto(d, &dp, &ei);
        Hostd__Store__DynoRecord rec = HOSTD__STORE__DYNO_RECORD__INIT;
        rec.dyno = &dp;
        rec.init_starttime = d->init_starttime;
        rec.boot_id = d->m->boot_id;
        rec.stop_deadline_usec = d->stop_deadline_usec;
        rec.stop_requested = d->stop_requested;
        rec.grace_seconds = d->grace_seconds;
        rec.boot_deadline_usec = d->booting ? d->boot_deadline_usec : 0;
        rec.crashes = d->crashes;
        rec.restart_at_usec = d->restart_at_usec;
        rec.up_usec = d->up_usec;
        rec.cycle_at_usec = d->cycle_at_usec;
        rec.instance = d->instance;
        size_t n_ret = 0;
        for (struct retiring *r = d->retiring; r; r = r->next)
                n_ret++;
        _cleanup_free_ Hostd__Store__RetiringInstance *ret_items =
                calloc(n_ret + 1, sizeof *ret_items);
        _cleanup_free_ Hostd__Store__RetiringInstance **ret_ptrs =
                calloc(n_ret + 1, sizeof *ret_ptrs);
        if (!ret_items || !ret_ptrs)
                return -ENOMEM;
        size_t i = 0;
        for (struct retiring *r = d->retiring; r; r = r->next, i++) {
                hostd__store__retiring_instance__init(&ret_items[i]);
                ret_items[i].instance = r->instance;
                ret_items[i].pid = r->pid;
                ret_items[i].init_starttime = r->init_starttime;
                ret_items[i].deadline_usec = r->deadline_usec;
                ret_items[i].uid = r->uid;
                ret_items[i].grace_seconds = r->grace_seconds;
                ret_items[i].oom_kills = r->oom_kills;
                ret_ptrs[i] = &ret_items[i];
        }
        rec.n_retiring = n_ret;
        rec.retiring = ret_ptrs;

        size_t len = hostd__store__dyno_record__get_packed_size(&rec);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        hostd__store__dyno_record__pack(&rec, buf);
        _cleanup_free_ char *path = strjoin3(d->run_dir, "/record", NULL);
        if (!path)
                return -ENOMEM;
        int r = write_file_atomic(path, buf, len, 0600);
        if (r < 0)
                log_error_errno(r, "dyno %s: write %s: %m", d->id, path);
        return r;
}

/* ---- waiting calls, and the one place a state changes ---- */

/* The answer of a call that waited: the dyno as it is now, as its method's response. */
static void reply_dyno(struct call *c, enum dyno_wait wait, const struct dyno *d)
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

_printf_(2, 3) static void dyno_log_platform(struct dyno *d, const char *fmt, ...);

/* The one place a dyno's state changes: the record is written (the event stream told first,
 * see dyno_save), with log the platform line Heroku writes ("State changed from up to
 * crashed"), and whoever waits on it is answered. */
static void dyno_set_state(struct dyno *d, Hostd__V1__DynoState state, bool log)
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

static void dyno_add_pending(struct dyno *d, struct call *c, enum dyno_wait wait)
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

static void dyno_relaunch(struct dyno *d);
static void dyno_net_release(struct dyno *d);
static bool dyno_crash_restart(struct dyno *d, Hostd__V1__DynoState before);
static void dyno_arm_restart(struct dyno *d);
static bool dyno_needs_boot(const struct dyno *d);
static void dyno_attach_wait(struct dyno *d);
static void dyno_kill_now(struct dyno *d);
static void dyno_oom_check(struct dyno *d);
static uint32_t dyno_default_grace(const struct dyno *d);
static uint32_t dyno_boot_timeout(const struct dyno *d);

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
static void dyno_finish(struct dyno *d)
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
        Hostd__V1__DynoState ended =
                d->stop_requested ? HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN :
                d->spec->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF && d->exited &&
                                d->exit_code == 0 ?
                                    HOSTD__V1__DYNO_STATE__DYNO_STATE_COMPLETE :
                                    HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED;

        dyno_log_platform(d, "Process exited with status %d", d->exit_code);
        exec_attach_end(d, d->exit_code); /* the client learns the exit code */
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

static void dyno_arm_restart(struct dyno *d)
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

static void dyno_stop_begin(struct dyno *d, uint32_t grace)
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
        if (pidfd_send_signal_(d->pidfd, SIGTERM) < 0 && errno != ESRCH)
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
static void dyno_cancel_waiting(struct dyno *d)
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

/* The dyno a stop or restart names (the request is checked); NULL once answered. */
static struct dyno *find_to_stop(struct manager *m, const char *id, struct call *call)
{
        struct dyno *d = manager_find(m, id);
        if (!d)
                call_fail(call, API_NOT_FOUND, "dyno '%s' not found", id);
        return d;
}

/* Crashed and waiting to restart, stopped: it stays down. */
static void dyno_stop_crashed(struct dyno *d)
{
        dyno_cancel_restart(d);
        d->stop_requested = true;
        dyno_set_state(d, HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN, true);
        followers_end(d);
        dyno_drains_close(d);
}

/* The spec's grace period, else the host's. */
static uint32_t dyno_default_grace(const struct dyno *d)
{
        return d->spec->grace_case == HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS ?
                       d->spec->grace_seconds :
                       d->m->config->grace_seconds;
}

void manager_stop(struct manager *m, const char *id, bool grace_set, uint32_t grace,
                  struct call *call)
{
        struct dyno *d = find_to_stop(m, id, call);
        if (!d)
                return;
        if (!dyno_is_live(d)) {
                if (d->restart_at_usec)
                        dyno_stop_crashed(d);
                reply_dyno(call, WAIT_ENDED, d);
                return;
        }
        if (!grace_set)
                grace = dyno_default_grace(d);
        dyno_add_pending(d, call, WAIT_ENDED);
        if (d->waiting_images) {
                dyno_cancel_waiting(d);
                return;
        }
        if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING) {
                /* Already stopping: a shorter grace takes effect, a longer one does not. */
                int64_t deadline = now_realtime_usec() + (int64_t)grace * 1000000;
                if (deadline < d->stop_deadline_usec) {
                        d->stop_deadline_usec = deadline;
                        d->grace_seconds = grace;
                        d->timer_source = sd_event_source_disable_unref(d->timer_source);
                }
        }
        dyno_stop_begin(d, grace);
}

static void stop_one(struct dyno *d, void *userdata)
{
        if (!dyno_is_live(d)) {
                if (d->restart_at_usec)
                        dyno_stop_crashed(d);
                return;
        }
        if (d->waiting_images)
                dyno_cancel_waiting(d);
        else if (d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING)
                dyno_stop_begin(d, dyno_default_grace(d));
}

void manager_stop_all(struct manager *m) { manager_foreach(m, stop_one, NULL); }

static void kill_one(struct dyno *d, void *userdata)
{
        if (dyno_is_live(d))
                dyno_kill_now(d);
        for (struct retiring *r = d->retiring; r; r = r->next)
                (void)cg_kill(d->m->cg, r->name);
}

#define SHUTDOWN_POLL_USEC (100ULL * 1000)
#define SHUTDOWN_KILL_WAIT_USEC (5ULL * 1000000)

static int on_shutdown_poll(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        int64_t now = now_realtime_usec();
        if (m->n_live == 0 && m->n_retiring == 0) {
                log_info("every dyno has stopped; exiting");
                return sd_event_exit(m->event, 0);
        }
        if (!m->shutdown_killed && now >= m->shutdown_deadline_usec) {
                log_warning("shutdown-timeout passed with %zu dynos still running: killing them",
                            m->n_live + m->n_retiring);
                manager_foreach(m, kill_one, NULL);
                m->shutdown_killed = true;
        } else if (m->shutdown_killed &&
                   now >= m->shutdown_deadline_usec + (int64_t)SHUTDOWN_KILL_WAIT_USEC) {
                log_error("%zu dynos did not go after SIGKILL; exiting without them",
                          m->n_live + m->n_retiring);
                return sd_event_exit(m->event, 0);
        }
        return sd_event_source_set_time_relative(s, SHUTDOWN_POLL_USEC) < 0 ||
                               sd_event_source_set_enabled(s, SD_EVENT_ONESHOT) < 0 ?
                       sd_event_exit(m->event, 0) :
                       0;
}

int manager_shutdown(struct manager *m)
{
        const struct config *c = m->config;
        if (m->shutting_down) /* a second signal: now */
                return sd_event_exit(m->event, 0);
        m->shutting_down = true;
        if (!c->stop_dynos_on_exit || m->n_live + m->n_retiring == 0) {
                log_info("stopping; %zu dynos keep running, for the next hostd to re-adopt",
                         m->n_live);
                if (m->events)
                        events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                                    "hostd stopping: %zu dynos keep running", m->n_live);
                return sd_event_exit(m->event, 0);
        }
        log_notice("stopping: first the %zu dynos (stop-dynos-on-exit), within %" PRIu32 " s",
                   m->n_live + m->n_retiring, c->shutdown_timeout);
        if (m->events)
                events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                            "hostd stopping: stopping its %zu dynos first, within %" PRIu32 " s",
                            m->n_live, c->shutdown_timeout);
        m->shutdown_deadline_usec = now_realtime_usec() + (int64_t)c->shutdown_timeout * 1000000;
        m->draining = true; /* nothing new meanwhile; not kept: the next hostd takes dynos */
        manager_stop_all(m);
        int r = sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC,
                                           SHUTDOWN_POLL_USEC, 0, on_shutdown_poll, m);
        if (r < 0) {
                log_error_errno(r, "shutdown timer: %m; exiting now, dynos stopping on their own");
                return sd_event_exit(m->event, 0);
        }
        return 0;
}

/* ---- start ---- */

struct uid_marks {
        uint8_t *used;
        const struct config *c;
};

static void mark_one_uid(struct uid_marks *ctx, uid_t uid)
{
        if (uid < ctx->c->uid_min || uid > ctx->c->uid_max)
                return;
        size_t i = uid - ctx->c->uid_min;
        ctx->used[i / 8] |= (uint8_t)(1u << (i % 8));
}

static void mark_uid(struct dyno *d, void *userdata)
{
        if (dyno_is_live(d))
                mark_one_uid(userdata, d->uid);
        for (struct retiring *r = d->retiring; r; r = r->next)
                mark_one_uid(userdata, r->uid);
}

/* The lowest uid of the range that no running dyno has. */
static uid_t manager_pick_uid(struct manager *m, int *error)
{
        const struct config *c = m->config;
        size_t span = (size_t)(c->uid_max - c->uid_min) + 1;
        _cleanup_free_ uint8_t *used = calloc((span + 7) / 8, 1);
        if (!used) {
                *error = -ENOMEM;
                return 0;
        }
        struct uid_marks ctx = { used, c };
        manager_foreach(m, mark_uid, &ctx);
        *error = 0;
        for (size_t i = 0; i < span; i++)
                if (!(used[i / 8] & (1u << (i % 8))))
                        return (uid_t)(c->uid_min + i);
        *error = -EUSERS;
        return 0;
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

static uint64_t proc_starttime(pid_t pid)
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

/* Undo a start that did not complete: kill, wait, remove everything, forget the dyno. */
/* ---- network (netd) ---- */

/* netd's answers come fast (milliseconds); this only bounds a hung netd. */
#define NETD_TIMEOUT_USEC (30ULL * 1000000)

static void dyno_fail_start(struct dyno *d, enum api_code code, const char *msg);

static char *netns_path(const struct manager *m, const char *id)
{
        return strjoin3(m->config->netns_dir, "/", id);
}

/* Remove the bind mount that names a dyno's network namespace for netd. Once it is gone and
 * the dyno's processes with it, the kernel frees the namespace. */
static void netns_unbind(struct manager *m, const char *id)
{
        _cleanup_free_ char *path = netns_path(m, id);
        if (!path)
                return;
        if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
                log_warning_errno(errno, "dyno %s: unmount %s: %m", id, path);
        if (unlink(path) < 0 && errno != ENOENT)
                log_warning_errno(errno, "dyno %s: remove %s: %m", id, path);
}

static int netns_bind(struct manager *m, const struct dyno *d, char **ret_path)
{
        _cleanup_free_ char *path = netns_path(m, d->cg_name);
        char ns[64];
        if (!path)
                return -ENOMEM;
        netns_unbind(m, d->cg_name); /* a leftover of an earlier run of this instance */
        int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
        if (fd < 0)
                return -errno;
        close(fd);
        /* Our child, not yet reaped: its /proc entry cannot name another process. */
        snprintf(ns, sizeof ns, "/proc/%d/ns/net", (int)d->pid);
        if (mount(ns, path, NULL, MS_BIND, NULL) < 0) {
                int r = -errno;
                unlink(path);
                return r;
        }
        *ret_path = TAKE_PTR(path);
        return 0;
}

static void on_netd_logged(void *userdata, int code, const char *msg,
                           const Netd__V1__Response *resp)
{
        char *what = userdata;
        if (code)
                log_warning("netd: %s: %s", what, msg);
        free(what);
}

/* An instance's processes are gone (or never ran): release its network. A detach of a name
 * netd does not know is a no-op there, so this is sent whether or not an Attach got through. */
static void net_release_name(struct manager *m, const char *name)
{
        if (!m->netd)
                return;
        netns_unbind(m, name);
        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        Netd__V1__DetachRequest det = NETD__V1__DETACH_REQUEST__INIT;
        det.dyno_id = (char *)name;
        req.call_case = NETD__V1__REQUEST__CALL_DETACH;
        req.detach = &det;
        char *what = NULL;
        asprintf_safe(&what, "detach dyno %s", name);
        int64_t r = netd_call_full(m->netd, &req, on_netd_logged, what, free);
        if (r < 0) {
                /* netd cleans it at its next start, or at our next Gc. */
                log_warning_errno((int)r, "dyno %s: netd detach: %m", name);
                free(what);
        }
}

static void dyno_net_release(struct dyno *d)
{
        struct manager *m = d->m;
        if (!m->netd)
                return;
        if (d->netd_attach) {
                netd_cancel(m->netd, d->netd_attach);
                d->netd_attach = 0;
        }
        free(d->address);
        d->address = NULL;
        d->host_port = 0;
        net_release_name(m, d->cg_name);
}

static void on_attached(void *userdata, int code, const char *msg, const Netd__V1__Response *resp)
{
        struct dyno *d = userdata;
        char full[600];
        d->netd_attach = 0;
        if (!code &&
            (!resp || resp->result_case != NETD__V1__RESPONSE__RESULT_ATTACH || !resp->attach)) {
                code = API_INTERNAL;
                msg = "netd answered an Attach with something else";
        }
        if (code) {
                snprintf(full, sizeof full, "dyno '%s': attach to the network: %s", d->id, msg);
                dyno_fail_start(d,
                                code == API_DEADLINE_EXCEEDED ||
                                                code == API_RESOURCE_EXHAUSTED ?
                                        code :
                                        API_UNAVAILABLE,
                                full);
                return;
        }
        free(d->address);
        d->address = strdup(resp->attach->address);
        d->host_port = resp->attach->host_port;
        log_debug("dyno %s: address %s, host port %" PRIu32, d->id, resp->attach->address,
                  d->host_port);
        /* Wired: the first process may build the root and run the command. */
        int r = spawn_go(d->sync_fd);
        if (r < 0) {
                snprintf(full, sizeof full, "dyno '%s': let the dyno's processes go on: %s", d->id,
                         strerror(-r));
                dyno_fail_start(d, API_INTERNAL, full);
        }
}

/* Name the new network namespace for netd and ask it to wire the dyno; the dyno's first
 * process waits until it is done (on_attached). */
static int dyno_net_attach(struct dyno *d, char *errbuf, size_t errlen)
{
        struct manager *m = d->m;
        _cleanup_free_ char *path = NULL;
        int r = netns_bind(m, d, &path);
        if (r < 0)
                return snprintf(errbuf, errlen, "name the network namespace in %s: %s",
                                m->config->netns_dir, strerror(-r)),
                       r;

        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        Netd__V1__AttachRequest at = NETD__V1__ATTACH_REQUEST__INIT;
        at.dyno_id = d->cg_name;
        at.netns_path = path;
        at.web = d->spec->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB && d->spec->port > 0;
        at.port = at.web ? d->spec->port : 0;
        at.size = d->size->name;
        req.call_case = NETD__V1__REQUEST__CALL_ATTACH;
        req.attach = &at;
        int64_t h = netd_call(m->netd, &req, on_attached, d);
        if (h < 0) {
                snprintf(errbuf, errlen, "attach to the network: netd at %s: %s",
                         m->config->netd_socket, strerror((int)-h));
                return h == -ENOMEM ? -ENOMEM : -ENETUNREACH; /* UNAVAILABLE to the caller */
        }
        d->netd_attach = h;
        return 0;
}

struct live_ids {
        char **v;
        size_t n;
};

static void collect_live(struct dyno *d, void *userdata)
{
        struct live_ids *l = userdata;
        if (dyno_is_live(d))
                l->v[l->n++] = d->cg_name;
        for (struct retiring *r = d->retiring; r; r = r->next)
                l->v[l->n++] = r->name;
}

static void on_gc(void *userdata, int code, const char *msg, const Netd__V1__Response *resp)
{
        if (code) {
                log_warning("netd: gc: %s", msg);
                return;
        }
        if (resp->result_case == NETD__V1__RESPONSE__RESULT_GC && resp->gc)
                for (size_t i = 0; i < resp->gc->n_freed; i++)
                        log_notice("netd: freed the network of dyno %s, which no longer runs",
                                   resp->gc->freed[i]);
}

/* Fill in what a record could not hold (hostd died between netd's answer and the record). */
static void on_list(void *userdata, int code, const char *msg, const Netd__V1__Response *resp)
{
        struct manager *m = userdata;
        if (code) {
                log_warning("netd: list: %s", msg);
                return;
        }
        if (resp->result_case != NETD__V1__RESPONSE__RESULT_LIST || !resp->list)
                return;
        for (size_t i = 0; i < resp->list->n_attachments; i++) {
                const Netd__V1__Attachment *a = resp->list->attachments[i];
                struct dyno *d = manager_find_instance(m, a->dyno_id);
                if (!d || !dyno_is_live(d) || d->netd_attach || d->address)
                        continue;
                d->address = strdup(a->address);
                d->host_port = a->host_port;
        }
}

/* A Gc of every dyno that is not live here, then a List: netd may have missed Detaches while
 * it or we were away. Live includes starting dynos, and netd answers in order, so an Attach
 * sent after this is not undone by it. */
static void netd_sync(struct manager *m)
{
        struct live_ids l = { .v = calloc(m->n_dynos + m->n_retiring + 1, sizeof(char *)) };
        if (!l.v)
                return;
        manager_foreach(m, collect_live, &l);
        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        Netd__V1__GcRequest gc = NETD__V1__GC_REQUEST__INIT;
        gc.live_dyno_ids = l.v;
        gc.n_live_dyno_ids = l.n;
        req.call_case = NETD__V1__REQUEST__CALL_GC;
        req.gc = &gc;
        int64_t r = netd_call(m->netd, &req, on_gc, NULL);
        free(l.v);
        if (r < 0) {
                log_warning_errno((int)r, "netd: gc: %m");
                return;
        }
        Netd__V1__ListRequest lst = NETD__V1__LIST_REQUEST__INIT;
        req = (Netd__V1__Request)NETD__V1__REQUEST__INIT;
        req.call_case = NETD__V1__REQUEST__CALL_LIST;
        req.list = &lst;
        r = netd_call(m->netd, &req, on_list, m);
        if (r < 0)
                log_warning_errno((int)r, "netd: list: %m");
}

/* Every new connection begins with netd_sync, once the records are all loaded: before that,
 * a dyno not yet read back would look gone. manager_reconcile syncs at its end. */
static void on_netd_connected(struct netd_client *c, void *userdata)
{
        struct manager *m = userdata;
        if (m->reconciled)
                netd_sync(m);
}

static void retiring_kill_all(struct dyno *d);

static void dyno_abort_start(struct dyno *d)
{
        struct manager *m = d->m;
        retiring_kill_all(d);
        if (d->pidfd >= 0) {
                pidfd_send_signal_(d->pidfd, SIGKILL);
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

/* Sizes with swap may go over their quota (into swap) without being killed: that is R14.
 * Without swap the kernel stops them at the quota (R15), and there is nothing to watch. */
static void dyno_memory_watch(struct dyno *d)
{
        struct manager *m = d->m;
        uint32_t events;
        if (!d->size || !d->size->swap || d->memory_source)
                return;
        int r = cg_memory_watch(m->cg, d->cg_name, d->size->memory, &d->memory_fd, &events);
        if (r >= 0)
                r = sd_event_add_io(m->event, &d->memory_source, d->memory_fd, events,
                                    on_memory_event, d);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &d->memory_timer, CLOCK_MONOTONIC,
                                               R14_INTERVAL_USEC, 0, on_memory_timer, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->memory_timer, SD_EVENT_OFF);
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
static void dyno_tell_oom(struct dyno *d, const char *name, uint64_t told, uint64_t now)
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
static void dyno_oom_check(struct dyno *d)
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
static void dyno_oom_watch(struct dyno *d)
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

/* ---- a one-off's terminal: R13, R16 ---- */

/* SIGKILL to every process of the dyno at once (cg_kill), its init among them. */
static void dyno_kill_now(struct dyno *d)
{
        d->killed = true;
        int r = cg_kill(d->m->cg, d->cg_name);
        if (r < 0 && r != -ENOENT)
                log_error_errno(r, "dyno %s: kill cgroup %s: %m", d->id, d->cgroup_path);
        /* The init too, should it not be in the cgroup yet (a start under way). */
        if (d->pidfd >= 0 && pidfd_send_signal_(d->pidfd, SIGKILL) < 0 && errno != ESRCH)
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
                        pidfd_send_signal_(d->pidfd, SIGHUP);
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
static void dyno_attach_wait(struct dyno *d)
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

/* ---- instances a daily cycle replaced ---- */

static struct retiring *retiring_new(struct dyno *d, uint32_t instance)
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

static void retiring_link(struct retiring *r)
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
static void retiring_free_all(struct dyno *d)
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
static void retiring_kill_all(struct dyno *d)
{
        while (d->retiring) {
                struct retiring *r = d->retiring;
                if (r->pidfd >= 0)
                        pidfd_send_signal_(r->pidfd, SIGKILL);
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
                closep(&r->log_fd);
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
        if (r->pidfd >= 0 && pidfd_send_signal_(r->pidfd, SIGKILL) < 0 && errno != ESRCH)
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
static void retiring_readopt(struct retiring *r)
{
        struct dyno *d = r->d;
        r->adopted = true;
        int pidfd = r->pid > 0 ? pidfd_open_(r->pid) : -1;
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
        r->log_fd = pidfd_getfd_(pidfd, INIT_LOG_FD);
        if (r->log_fd >= 0) {
                fcntl(r->log_fd, F_SETFD, FD_CLOEXEC);
                fcntl(r->log_fd, F_SETFL, O_NONBLOCK);
        }
        (void)cpu_pool_adopt(d->m->cpus, r->name, d->size ? d->size->dedicated_cpus : 0);
        int k = retiring_watch(r);
        if (k < 0) {
                log_error_errno(k, "dyno %s: watch %s: %m; killing it", d->id, r->name);
                pidfd_send_signal_(r->pidfd, SIGKILL);
                retiring_finish(r);
        }
}

/* ---- daily cycling ---- */

static void dyno_reset_run(struct dyno *d);
static void dyno_begin(struct dyno *d);

/* Heroku's cycling and restart: the replacement starts as SIGTERM goes to the dyno's processes,
 * so a web dyno is served throughout. This instance becomes a retiring one, with its own names,
 * stopping within grace, and the dyno goes on as the next instance. 0, or a negative errno when
 * the replacement cannot run beside it (-ENOSPC: its dedicated CPUs are not free), nothing
 * changed. */
static int dyno_cycle_overlap(struct dyno *d, uint32_t grace, const char *what)
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
        if (pidfd_send_signal_(up_pidfd, SIGTERM) < 0 && errno != ESRCH)
                log_error_errno(errno, "dyno %s: SIGTERM: %m", d->id);
        k = retiring_watch(r);
        if (k < 0) {
                log_error_errno(k, "dyno %s: watch %s: %m; killing it", d->id, r->name);
                pidfd_send_signal_(r->pidfd, SIGKILL);
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
static void dyno_cycle_arm(struct dyno *d)
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

/* ---- boot (web dynos) ---- */

#define BOOT_PROBE_INTERVAL_USEC (100ULL * 1000)

/* A web dyno is up once it listens on $PORT; anything else is up once its command runs. */
static bool dyno_needs_boot(const struct dyno *d)
{
        return d->spec->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB && d->spec->port > 0;
}

static uint32_t dyno_boot_timeout(const struct dyno *d)
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

static void dyno_set_up(struct dyno *d)
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
        int r = boot_probe_listening(d->boot_fd, (uint16_t)d->spec->port);
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
static void dyno_boot_begin(struct dyno *d)
{
        struct manager *m = d->m;
        d->booting = true;
        int fd = boot_probe_open(d->pid, m->netns_fd);
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
        if (r == 0 && d->netd_attach) {
                /* Closed before we let it go: the first process died waiting. */
                r = 1;
                err.error = ECHILD;
                snprintf(err.where, sizeof err.where,
                         "the dyno's first process ended while netd wired it");
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

static int dyno_watch(struct dyno *d)
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
                return r = -errno,
                       snprintf(errbuf, errlen, "create %s: %s", d->run_dir, strerror(-r)), r;
        d->state_dirfd = open(d->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->state_dirfd < 0)
                return r = -errno,
                       snprintf(errbuf, errlen, "open %s: %s", d->run_dir, strerror(-r)), r;
        /* The instance's own folder for its exit status: an instance a daily cycle replaced
         * may still be writing its own. */
        if (d->instance > 0 && mkdir(d->inst_dir, 0700) < 0 && errno != EEXIST)
                return r = -errno,
                       snprintf(errbuf, errlen, "create %s: %s", d->inst_dir, strerror(-r)), r;
        _cleanup_close_ int inst_dirfd =
                d->instance > 0 ? open(d->inst_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) :
                                  fcntl(d->state_dirfd, F_DUPFD_CLOEXEC, 3);
        if (inst_dirfd < 0)
                return r = -errno,
                       snprintf(errbuf, errlen, "open %s: %s", d->inst_dir, strerror(-r)), r;
        if (unlinkat(inst_dirfd, "exit", 0) < 0 && errno != ENOENT)
                return r = -errno,
                       snprintf(errbuf, errlen, "remove the last exit status: %s", strerror(-r)), r;
        /* A restarted dyno keeps its lines: the file starts as the ring. */
        r = logfile_open(&d->logfile, d->state_dirfd, "log", d->ring);
        if (r < 0)
                return snprintf(errbuf, errlen, "create the log file: %s", strerror(-r)), r;
        r = dyno_save(d);
        if (r < 0)
                return snprintf(errbuf, errlen, "write the record: %s", strerror(-r)), r;

        /* The writable layer over the shared, read-only stack and slug. */
        _cleanup_free_ char *layer = NULL, *overlay = NULL;
        r = layer_create(m->config->layers_dir, d->cg_name, d->uid, &layer, errbuf, errlen);
        if (r < 0)
                return r;
        r = layer_mount_options(d->stack_root, d->slug_root, d->layer_dir, &overlay);
        if (r < 0)
                return snprintf(errbuf, errlen, "overlay options: %s", strerror(-r)), r;

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
                return snprintf(errbuf, errlen, "create cgroup %s: %s", d->cgroup_path,
                                strerror(-r)),
                       r;

        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0)
                return r = -errno,
                       snprintf(errbuf, errlen, "create the log pipe: %s", strerror(-r)), r;
        d->log_fd = pipefd[0];
        _cleanup_close_ int log_w = pipefd[1];
        /* The pipe is what buffers the dyno's output while hostd is away: make it large. */
        (void)fcntl(log_w, F_SETPIPE_SZ, 1 << 20);
        /* The dyno's writes must block when full, not fail. */
        (void)fcntl(log_w, F_SETFL, 0);

        struct cg_view view;
        r = cg_dyno_view(m->cg, d->cg_name, &view);
        if (r < 0)
                return snprintf(errbuf, errlen, "the dyno's view of its cgroup: %s", strerror(-r)),
                       r;
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
                .hold = m->netd != NULL,
                .tty = d->spec->tty,
                .tty_columns = d->spec->tty_columns,
                .tty_rows = d->spec->tty_rows,
        };
        /* Before the command can print anything: its lines follow this one. */
        dyno_log_platform(d, "Starting process with command `%s`", d->spec->command);
        r = spawn_dyno(&p, m->cg, &d->pid, &d->pidfd, &d->sync_fd);
        if (r < 0)
                return snprintf(errbuf, errlen, "create the dyno's processes: %s", strerror(-r)), r;
        d->init_starttime = proc_starttime(d->pid);

        r = sd_event_add_io(m->event, &d->sync_source, d->sync_fd, EPOLLIN, on_sync, d);
        if (r < 0 || (r = dyno_watch(d)) < 0)
                return snprintf(errbuf, errlen, "watch the dyno: %s", strerror(-r)), r;
        /* The pid is known now: record it, so that a restart of hostd finds the dyno. */
        r = dyno_save(d);
        if (r < 0)
                return snprintf(errbuf, errlen, "write the record: %s", strerror(-r)), r;
        if (m->netd)
                return dyno_net_attach(d, errbuf, errlen);
        return 0;
}

/* A start that cannot go on: tell whoever waits, and undo everything. */
static void dyno_fail_start(struct dyno *d, enum api_code code, const char *msg)
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
        int r = importer_busy(m, digest) ? -ENOENT : image_lookup(m->images, digest, &info);
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
        r = importer_start(m, url, digest, kind, NULL, NULL, NULL);
        if (r < 0) {
                snprintf(msg, len, "spec.%s_url: start the import: %s", what, strerror(-r));
                return r;
        }
        d->fetch_quarter[kind == IMAGE_KIND_SLUG] = 0;
        dyno_log_platform(d, "Fetching %s %.12s from %s", what, digest, url);
        return 1;
}

/* Resolve the dyno's layers and launch it, or wait for its images to arrive. */
static void dyno_begin(struct dyno *d)
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
                dyno_fail_start(d,
                                r == -ENOMEM ? API_INTERNAL :
                                               API_FAILED_PRECONDITION,
                                full);
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

struct waiting_ctx {
        struct dyno **v;
        size_t n;
        const char *digest;
};

static void collect_waiting(struct dyno *d, void *userdata)
{
        struct waiting_ctx *c = userdata;
        if (d->waiting_images && (strcmp(d->spec->stack_digest, c->digest) == 0 ||
                                  strcmp(d->spec->slug_digest, c->digest) == 0))
                c->v[c->n++] = d;
}

void manager_image_ready(struct manager *m, const char *digest, int error, const char *msg)
{
        /* Collect first: a failed start frees its dyno. */
        struct waiting_ctx c = { calloc(m->n_dynos ? m->n_dynos : 1, sizeof(struct dyno *)), 0,
                                 digest };
        if (!c.v)
                return;
        manager_foreach(m, collect_waiting, &c);
        for (size_t i = 0; i < c.n; i++) {
                struct dyno *d = c.v[i];
                d->waiting_images = false;
                if (error < 0) {
                        char full[600];
                        snprintf(full, sizeof full, "dyno '%s': %s", d->id, msg);
                        dyno_fail_start(d, API_FAILED_PRECONDITION, full);
                } else
                        dyno_begin(d);
        }
        free(c.v);
}

struct progress_ctx {
        const char *digest;
        uint64_t done, total;
};

static void log_progress(struct dyno *d, void *userdata)
{
        struct progress_ctx *p = userdata;
        if (!d->waiting_images || p->total == 0)
                return;
        bool stack = strcmp(d->spec->stack_digest, p->digest) == 0;
        if (!stack && strcmp(d->spec->slug_digest, p->digest) != 0)
                return;
        /* A line at each quarter: enough to see a fetch move, not a flood. */
        unsigned q = (unsigned)(p->done * 4 / p->total);
        if (q <= d->fetch_quarter[!stack] || q > 4)
                return;
        d->fetch_quarter[!stack] = q;
        dyno_log_platform(d, "Fetching %s %.12s: %llu of %llu bytes", stack ? "stack" : "slug",
                          p->digest, (unsigned long long)p->done, (unsigned long long)p->total);
}

void manager_image_progress(struct manager *m, const char *digest, uint64_t done, uint64_t total)
{
        struct progress_ctx p = { digest, done, total };
        manager_foreach(m, log_progress, &p);
}

static void count_users(struct dyno *d, void *userdata)
{
        struct waiting_ctx *c = userdata;
        if (dyno_is_live(d) && (strcmp(d->spec->stack_digest, c->digest) == 0 ||
                                strcmp(d->spec->slug_digest, c->digest) == 0))
                c->n++;
}

unsigned manager_image_users(struct manager *m, const char *digest)
{
        struct waiting_ctx c = { NULL, 0, digest };
        manager_foreach(m, count_users, &c);
        return (unsigned)c.n;
}

bool manager_image_in_use(const char *digest, void *userdata)
{
        return manager_image_users(userdata, digest) > 0;
}

void manager_start(struct manager *m, Hostd__V1__DynoSpec *spec, struct call *call)
{
        char msg[512];
        const struct size_def *size =
                config_find_size(m->config, *spec->size ? spec->size : m->config->default_size);
        if (!size) { /* validate_spec saw it: only a reload could make it go */
                call_fail(call, API_INVALID_ARGUMENT, "spec.size: unknown size '%s'", spec->size);
                hostd__v1__dyno_spec__free_unpacked(spec, NULL);
                return;
        }

        /* Record the size the dyno got, not an empty "default". */
        if (!*spec->size) {
                char *name = strdup(size->name);
                if (!name) {
                        call_fail(call, API_INTERNAL, "out of memory");
                        hostd__v1__dyno_spec__free_unpacked(spec, NULL);
                        return;
                }
                spec->size = name; /* the empty default is static: nothing to free */
        }

        struct dyno *old = manager_find(m, spec->id);
        if (old && dyno_is_live(old)) {
                call_fail(call, API_ALREADY_EXISTS, "dyno '%s' already exists (%s)", spec->id,
                          dyno_state_name(old->state));
                hostd__v1__dyno_spec__free_unpacked(spec, NULL);
                return;
        }
        enum api_code code = admission_check(m, spec->id, size, true, msg, sizeof msg);
        if (code) {
                call_fail(call, code, "%s", msg);
                hostd__v1__dyno_spec__free_unpacked(spec, NULL);
                return;
        }

        /* An ended dyno of the same id gives way to the new one, with what it has left
         * stopping: the new one takes its names. */
        if (old) {
                retiring_kill_all(old);
                manager_remove(m, old);
                dyno_free(old);
        }

        struct dyno *d;
        int r = dyno_new(m, spec->id, &d);
        if (r < 0) {
                call_fail(call, API_INTERNAL, "dyno '%s': out of memory", spec->id);
                hostd__v1__dyno_spec__free_unpacked(spec, NULL);
                return;
        }
        d->spec = spec;
        d->size = size;
        d->state = HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING;
        d->created_usec = now_realtime_usec();
        d->uid = manager_pick_uid(m, &r);
        if (r < 0 || (r = manager_add(m, d)) < 0) {
                call_fail(call, API_RESOURCE_EXHAUSTED, "dyno '%s': no free uid: %s", spec->id,
                          strerror(-r));
                dyno_free(d);
                return;
        }
        m->n_live++;

        dyno_add_pending(d, call, WAIT_START_RUNS);
        /* Its CPUs are its own from now on, also while it waits for its images. */
        r = cpu_pool_reserve(m->cpus, d->cg_name, size->dedicated_cpus, msg, sizeof msg);
        if (r < 0) {
                dyno_fail_start(d, API_RESOURCE_EXHAUSTED, msg);
                return;
        }
        /* A new dyno of an old id starts with nothing of the old one's. */
        r = rm_rf(d->run_dir);
        if (r < 0) {
                snprintf(msg, sizeof msg, "dyno '%s': remove %s: %s", d->id, d->run_dir,
                         strerror(-r));
                dyno_fail_start(d, API_INTERNAL, msg);
                return;
        }
        dyno_begin(d);
}

/* Forget everything of the last run before the next. */
static void dyno_reset_run(struct dyno *d)
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
static void dyno_relaunch(struct dyno *d)
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

void manager_restart(struct manager *m, const char *id, bool grace_set, uint32_t grace,
                     struct call *call)
{
        struct dyno *d = find_to_stop(m, id, call);
        if (!d)
                return;
        char msg[512];
        enum api_code code =
                dyno_is_live(d) ? API_OK : admission_check(m, id, d->size, true, msg, sizeof msg);
        if (code) {
                call_fail(call, code, "%s", msg);
                return;
        }
        dyno_add_pending(d, call, WAIT_RESTART_RUNS);
        d->crashes = 0;       /* an explicit restart starts the back-off again */
        d->cycle_at_usec = 0; /* and the daily cycle's clock */
        if (!dyno_is_live(d)) {
                dyno_relaunch(d);
                return;
        }
        if (!grace_set)
                grace = dyno_default_grace(d);
        /* As Heroku does: the replacement starts as SIGTERM goes to the running one, beside
         * it where it can (the reply comes when the new one runs); else once it has stopped. */
        if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_UP &&
            dyno_cycle_overlap(d, grace, "Restarting") == 0)
                return;
        d->restart_requested = true;
        dyno_stop_begin(d, grace);
}

/* ---- reconcile ---- */

static int dyno_load(struct manager *m, const char *id, struct dyno **ret)
{
        _cleanup_free_ char *path = NULL;
        if (asprintf_safe(&path, "%s/%s/record", m->dynos_run_dir, id) < 0)
                return -ENOMEM;
        _cleanup_free_ char *buf = NULL;
        size_t len;
        int r = read_full_file(path, &buf, &len);
        if (r < 0)
                return r;
        Hostd__Store__DynoRecord *rec =
                hostd__store__dyno_record__unpack(NULL, len, (uint8_t *)buf);
        if (!rec)
                return -EBADMSG;
        if (!rec->dyno || !rec->dyno->spec || strcmp(rec->dyno->spec->id, id) != 0) {
                hostd__store__dyno_record__free_unpacked(rec, NULL);
                return -EBADMSG;
        }

        struct dyno *d;
        r = dyno_new(m, id, &d);
        if (r < 0) {
                hostd__store__dyno_record__free_unpacked(rec, NULL);
                return r;
        }
        Hostd__V1__Dyno *dp = rec->dyno;
        d->spec = TAKE_PTR(dp->spec);
        d->size = config_find_size(m->config,
                                   *d->spec->size ? d->spec->size : m->config->default_size);
        d->state = dp->state;
        d->pid = (pid_t)dp->pid;
        d->uid = dp->uid;
        d->created_usec = dp->created_usec;
        d->started_usec = dp->started_usec;
        d->finished_usec = dp->finished_usec;
        d->restarts = dp->restarts;
        d->oom_kills = dp->oom_kills;
        snprintf(d->run_id, sizeof d->run_id, "%s", dp->run_id);
        d->address = *dp->address ? strdup(dp->address) : NULL;
        d->host_port = dp->host_port;
        d->init_starttime = rec->init_starttime;
        d->stop_deadline_usec = rec->stop_deadline_usec;
        d->stop_requested = rec->stop_requested;
        d->grace_seconds = rec->grace_seconds;
        d->boot_deadline_usec = rec->boot_deadline_usec;
        d->crashes = rec->crashes;
        d->restart_at_usec = rec->restart_at_usec;
        d->up_usec = rec->up_usec;
        d->cycle_at_usec = rec->cycle_at_usec;
        r = dyno_set_instance(d, rec->instance);
        for (size_t i = 0; r >= 0 && i < rec->n_retiring; i++) {
                const Hostd__Store__RetiringInstance *ri = rec->retiring[i];
                struct retiring *old =
                        ri->instance != rec->instance ? retiring_new(d, ri->instance) : NULL;
                if (!old) {
                        r = ri->instance != rec->instance ? -ENOMEM : -EBADMSG;
                        break;
                }
                old->pid = ri->pid;
                old->init_starttime = ri->init_starttime;
                old->deadline_usec = ri->deadline_usec;
                old->uid = ri->uid;
                old->grace_seconds = ri->grace_seconds;
                old->oom_kills = ri->oom_kills;
                retiring_link(old);
        }
        if (r < 0) {
                hostd__store__dyno_record__free_unpacked(rec, NULL);
                dyno_free(d);
                return r;
        }
        /* What the stream last said of it; a dyno it never heard of is told once now. */
        if (m->events)
                d->event_state = events_last_state(m->events, id);
        if (dp->exit) {
                d->exit_known = true;
                d->exited = dp->exit->exited;
                d->exit_code = dp->exit->code;
                d->exit_signal = dp->exit->signal;
                d->oom_killed = dp->exit->oom_killed;
                d->exit_reason = *dp->exit->reason ? strdup(dp->exit->reason) : NULL;
                d->exit_error = *dp->exit->error ? strdup(dp->exit->error) : NULL;
        }
        _cleanup_free_ char *logpath = strjoin3(d->run_dir, "/log", NULL);
        if (logpath && (r = logfile_load(logpath, d->ring, &d->logfile.lines)) < 0)
                log_warning_errno(r, "dyno %s: read %s: %m", id, logpath);
        bool same_boot = strcmp(rec->boot_id, m->boot_id) == 0;
        hostd__store__dyno_record__free_unpacked(rec, NULL);
        if (!same_boot) {
                /* Nothing of it survived the reboot: manager_reconcile reports it and forgets
                 * it. Its pids, retiring ones included, are another boot's. */
                d->rebooted = true;
                retiring_free_all(d);
                if (dyno_is_live(d)) {
                        d->state = HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN;
                        free(d->exit_reason);
                        d->exit_reason = strdup("host rebooted");
                }
        }
        *ret = d;
        return 0;
}

/* A live record: adopt the running init, or collect what happened while we were away. */
static void dyno_readopt(struct dyno *d)
{
        struct manager *m = d->m;
        d->adopted = true;
        m->n_live++;
        dyno_drains_open(d);
        d->state_dirfd = open(d->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->state_dirfd >= 0) {
                int r = logfile_open_append(&d->logfile, d->state_dirfd, "log", d->logfile.lines);
                if (r < 0)
                        log_warning_errno(r, "dyno %s: open its log file: %m", d->id);
        }

        if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING && d->pid == 0) {
                /* hostd died before the dyno's processes were recorded: whatever a half-done
                 * launch made goes, and the start begins again (it never ran, so this is not
                 * a second start). */
                log_notice("dyno %s: its start was interrupted; starting it again", d->id);
                int r = cg_destroy(m->cg, d->cg_name);
                if (r < 0)
                        log_warning_errno(r, "dyno %s: remove cgroup: %m", d->id);
                r = layer_remove(d->layer_dir);
                if (r < 0)
                        log_warning_errno(r, "dyno %s: remove %s: %m", d->id, d->layer_dir);
                d->adopted = false;
                dyno_begin(d);
                return;
        }

        int pidfd = d->pid > 0 ? pidfd_open_(d->pid) : -1;
        bool ours = pidfd >= 0 && proc_starttime(d->pid) == d->init_starttime &&
                    d->init_starttime != 0 && cg_contains(m->cg, d->cg_name, d->pid) > 0;
        if (pidfd >= 0 && !ours) {
                /* A pid reused by someone else, or our init before it reached its cgroup
                 * (hostd died mid-start): in the latter case it is ours to kill. */
                if (proc_starttime(d->pid) == d->init_starttime && d->init_starttime != 0)
                        pidfd_send_signal_(pidfd, SIGKILL);
                close(pidfd);
                pidfd = -1;
        }
        if (pidfd < 0) {
                log_notice("dyno %s: ended while hostd was away", d->id);
                dyno_finish(d);
                return;
        }

        d->pidfd = pidfd;
        d->running = true; /* its first process was recorded once it ran the command */
        (void)cpu_pool_adopt(m->cpus, d->cg_name, d->size ? d->size->dedicated_cpus : 0);
        d->log_fd = pidfd_getfd_(pidfd, INIT_LOG_FD);
        if (d->log_fd < 0)
                log_warning_errno(errno, "dyno %s: take the log pipe from the init: %m", d->id);
        else {
                fcntl(d->log_fd, F_SETFD, FD_CLOEXEC);
                fcntl(d->log_fd, F_SETFL, O_NONBLOCK);
        }
        if (d->spec->tty) {
                /* The init holds the terminal where the log pipe's write end was. */
                d->tty_fd = pidfd_getfd_(pidfd, INIT_TTY_FD);
                if (d->tty_fd < 0)
                        log_warning_errno(errno, "dyno %s: take the terminal from the init: %m",
                                          d->id);
                else {
                        fcntl(d->tty_fd, F_SETFD, FD_CLOEXEC);
                        fcntl(d->tty_fd, F_SETFL, O_NONBLOCK);
                }
        }
        int r = dyno_watch(d);
        if (r < 0)
                log_error_errno(r, "dyno %s: watch: %m", d->id);
        dyno_oom_check(d); /* kills while hostd was away */
        /* Its client was connected to the hostd that died: it may attach again, and if it
         * does not, the dyno is hung up as for a client that left (R16), not R13. */
        d->attached_once = d->spec->tty;
        dyno_attach_wait(d);
        dyno_cycle_arm(d);
        if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING) {
                /* The reply was lost with the old hostd; the command runs. */
                if (!d->started_usec)
                        d->started_usec = now_realtime_usec();
                if (dyno_needs_boot(d)) {
                        if (!d->boot_deadline_usec)
                                d->boot_deadline_usec =
                                        d->started_usec + (int64_t)dyno_boot_timeout(d) * 1000000;
                        dyno_boot_begin(d); /* the deadline is the old one */
                } else
                        dyno_set_up(d);
        }
        log_info("dyno %s: re-adopted, pid %d (%s)", d->id, (int)d->pid, dyno_state_name(d->state));
        if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_STOPPING) {
                dyno_stop_begin(d, d->grace_seconds); /* the deadline is in the record */
        }
}

/* Whether name (a cgroup's, a layer's, a network namespace's) is a running instance's: a live
 * dyno's current one, or one still stopping after a daily cycle. */
static bool is_live_instance(struct manager *m, const char *name)
{
        const char *at = strchr(name, '@');
        _cleanup_free_ char *id = at ? strndup(name, (size_t)(at - name)) : NULL;
        struct dyno *d = manager_find(m, at ? (id ? id : "") : name);
        if (!d)
                return false;
        if (dyno_is_live(d) && strcmp(d->cg_name, name) == 0)
                return true;
        for (struct retiring *r = d->retiring; r; r = r->next)
                if (strcmp(r->name, name) == 0)
                        return true;
        return false;
}

/* Folders of instances that no longer run, in a dyno's run folder (a hostd that died before
 * it removed them). */
static void dyno_remove_stale_instance_dirs(struct dyno *d)
{
        _cleanup_(closedirp_) DIR *dir = opendir(d->run_dir);
        struct dirent *de;
        while (dir && (de = readdir(dir))) {
                uint64_t n;
                if (de->d_type != DT_DIR || de->d_name[0] == '.' ||
                    safe_atou64(de->d_name, &n) < 0 || n == 0 || n > UINT32_MAX)
                        continue;
                bool used = dyno_is_live(d) && d->instance == n;
                for (struct retiring *r = d->retiring; r; r = r->next)
                        used = used || r->instance == n;
                if (used)
                        continue;
                _cleanup_free_ char *path = strjoin3(d->run_dir, "/", de->d_name);
                int r = path ? rm_rf(path) : -ENOMEM;
                if (r < 0)
                        log_warning_errno(r, "dyno %s: remove %s: %m", d->id, de->d_name);
        }
}

int manager_reconcile(struct manager *m)
{
        _cleanup_(closedirp_) DIR *dir = opendir(m->dynos_run_dir);
        if (!dir)
                return log_error_errno(errno, "open %s: %m", m->dynos_run_dir);
        struct dirent *de;
        while ((de = readdir(dir))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *path = strjoin3(m->dynos_run_dir, "/", de->d_name);
                if (!path)
                        return -ENOMEM;
                struct dyno *d = NULL;
                int r = dyno_id_valid(de->d_name) ? dyno_load(m, de->d_name, &d) : -EINVAL;
                if (r < 0) {
                        log_warning_errno(r, "%s: not a dyno record (%m); removing", path);
                        rm_rf(path);
                        continue;
                }
                if (d->rebooted) {
                        /* Told once (the event stream hears "down: host rebooted" of those
                         * that ran), then gone: the control plane places them anew. */
                        log_notice("dyno %s: its record is from before a reboot; forgetting it",
                                   d->id);
                        if (d->m->events && d->event_state != (int)d->state)
                                dyno_save(d);
                        r = rm_rf(path);
                        if (r < 0)
                                log_error_errno(r, "remove %s: %m", path);
                        dyno_free(d);
                        continue;
                }
                if (manager_add(m, d) < 0) {
                        dyno_free(d);
                        continue;
                }
                if (dyno_is_live(d))
                        dyno_readopt(d);
                else if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED && d->restart_at_usec)
                        dyno_arm_restart(d); /* the back-off goes on where it was */
                /* A start that failed there took the dyno, and what a cycle replaced, away. */
                d = manager_find(m, de->d_name);
                if (!d)
                        continue;
                for (struct retiring *ret = d->retiring, *next; ret; ret = next) {
                        next = ret->next;
                        retiring_readopt(ret);
                }
                dyno_remove_stale_instance_dirs(d);
        }

        /* Kernel objects and files that belong to no running dyno. */
        _cleanup_strv_free_ char **cgs = NULL;
        if (cg_list(m->cg, &cgs) >= 0)
                for (char **p = cgs; p && *p; p++)
                        if (!is_live_instance(m, *p)) {
                                log_notice("removing leftover cgroup of dyno %s", *p);
                                int r = cg_destroy(m->cg, *p);
                                if (r < 0)
                                        log_error_errno(r, "remove leftover cgroup %s: %m", *p);
                        }
        /* Every running dyno holds its CPUs again: the others get the rest. */
        cpu_pool_sync(m->cpus);
        _cleanup_(closedirp_) DIR *layers = opendir(m->config->layers_dir);
        while (layers && (de = readdir(layers))) {
                if (de->d_name[0] == '.' || is_live_instance(m, de->d_name))
                        continue;
                _cleanup_free_ char *path = strjoin3(m->config->layers_dir, "/", de->d_name);
                log_notice("removing leftover layer %s", path);
                int r = rm_rf(path);
                if (r < 0)
                        log_error_errno(r, "remove %s: %m", path);
        }

        int mr = metrics_start(m);
        if (mr < 0)
                log_error_errno(mr, "metrics: %m; no metrics, runtime-metrics lines or textfile");
        if (m->events)
                events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                            "hostd %s started: %zu dynos known, %zu live", HOSTD_VERSION,
                            m->n_dynos, m->n_live);
        (void)admission_load(m); /* after the events' "started": then the drain goes on */
        if (!m->netd)
                return 0;
        _cleanup_(closedirp_) DIR *netns = opendir(m->config->netns_dir);
        while (netns && (de = readdir(netns)))
                if (de->d_name[0] != '.' && !is_live_instance(m, de->d_name)) {
                        log_notice("removing leftover network namespace name %s/%s",
                                   m->config->netns_dir, de->d_name);
                        netns_unbind(m, de->d_name);
                }
        m->reconciled = true;
        int r = netd_client_connect(m->netd);
        if (r == 0)
                netd_sync(m); /* already connected (an Attach or Detach above connected) */
        else if (r < 0)
                log_warning_errno(r,
                                  "netd at %s: %m; dynos cannot start until it answers, and "
                                  "its leftovers are collected when it does",
                                  m->config->netd_socket);
        return 0;
}

/* ---- the manager ---- */

static int read_boot_id(char **ret)
{
        char *s;
        int r = read_full_file("/proc/sys/kernel/random/boot_id", &s, NULL);
        if (r < 0)
                return r;
        s[strcspn(s, "\n")] = 0;
        *ret = s;
        return 0;
}

/* The init binary: configured, else beside our own executable (a build tree), else the
 * installed one. Held open so that an upgrade on disk never leaves a dyno without one. */
static int open_init(const struct config *c)
{
        if (*c->init_path)
                return open(c->init_path, O_RDONLY | O_CLOEXEC);
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
                self[n] = 0;
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = 0;
                        _cleanup_free_ char *p = strjoin3(self, "/hostd-init", NULL);
                        int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
                        if (fd >= 0)
                                return fd;
                }
        }
        return open(HOSTD_LIBEXECDIR "/hostd-init", O_RDONLY | O_CLOEXEC);
}

int manager_new(struct config *c, sd_event *e, struct manager **ret)
{
        struct manager *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->config = c;
        m->event = sd_event_ref(e);
        m->init_exe_fd = m->netns_fd = -1;
        int r;

        /* First: a drain-ca-file that cannot be read stops hostd before it changes anything. */
        struct drain_options dopt = {
                .buffer_lines = c->drain_buffer,
                .backoff_max_sec = c->drain_backoff_max,
                .ca_file = c->drain_ca_file,
                .linger_sec = DRAIN_LINGER_SEC,
        };
        if ((r = drain_ctx_new(e, &dopt, &m->drains)) < 0) {
                if (r == -EBADMSG)
                        log_error("drain-ca-file '%s': no PEM certificate in it", c->drain_ca_file);
                else if (*c->drain_ca_file)
                        log_error_errno(r, "drain-ca-file '%s': cannot be read: %m",
                                        c->drain_ca_file);
                else
                        log_error_errno(r, "syslog drains: set up TLS: %m");
                goto fail;
        }
        if ((r = read_boot_id(&m->boot_id)) < 0) {
                log_error_errno(r, "read the boot id: %m");
                goto fail;
        }
        m->init_exe_fd = open_init(c);
        if (m->init_exe_fd < 0) {
                r = log_error_errno(errno, "open the dyno init (init = '%s'): %m", c->init_path);
                goto fail;
        }
        m->netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (m->netns_fd < 0) {
                r = log_error_errno(errno, "open hostd's network namespace: %m");
                goto fail;
        }
        m->dynos_run_dir = strjoin3(c->run_dir, "/dynos", NULL);
        if (!m->dynos_run_dir) {
                r = -ENOMEM;
                goto fail;
        }
        const char *dirs[] = { c->run_dir, m->dynos_run_dir, c->state_dir, c->layers_dir,
                               *c->netd_socket ? c->netns_dir : NULL };
        for (size_t i = 0; i < ELEMENTSOF(dirs) && dirs[i]; i++)
                if ((r = mkdir_p(dirs[i], 0755)) < 0) {
                        log_error_errno(r, "create %s: %m", dirs[i]);
                        goto fail;
                }
        if ((r = dyno_seccomp_new(&m->seccomp)) < 0) {
                log_error_errno(r, "build the seccomp filter: %m");
                goto fail;
        }
        struct image_limits lim = {
                .max_compressed = c->image_max_compressed,
                .max_unpacked = c->image_max_unpacked,
                .max_files = c->image_max_files,
        };
        if ((r = image_store_open(c->images_dir, &lim, &m->images)) < 0) {
                log_error_errno(r, "open the image store %s: %m", c->images_dir);
                goto fail;
        }
        image_store_defer_deletes(m->images, true);
        if ((r = cg_manager_new(c->cgroup_root, c->dynos_cgroup, &m->cg)) < 0) {
                const char *why = !*c->dynos_cgroup ? NULL :
                                  r == -ENOENT      ? "no such cgroup" :
                                  r == -ELOOP ? "is hostd's own cgroup or one of its ancestors" :
                                  r == -EACCES || r == -EPERM || r == -EROFS ? "not writable" :
                                  r == -ENOTDIR                              ? "not a cgroup" :
                                  r == -EOPNOTSUPP ? "memory, cpu or pids is not available there" :
                                                     NULL;
                if (why)
                        log_error("dynos-cgroup %s: %s", c->dynos_cgroup, why);
                else if (*c->dynos_cgroup)
                        log_error_errno(
                                r, "set up cgroups under dynos-cgroup %s, cgroup-root '%s': %m",
                                c->dynos_cgroup, c->cgroup_root);
                else
                        log_error_errno(r, "set up cgroups under '%s': %m", c->cgroup_root);
                goto fail;
        }
        char err[512];
        if ((r = cpus_setup(c, m->cg, &m->cpus, err, sizeof err)) < 0) {
                log_error("%s", err);
                goto fail;
        }
        if ((r = events_open(c->state_dir, c->events_keep, &m->events)) < 0) {
                log_error_errno(r, "open the event log in %s: %m", c->state_dir);
                goto fail;
        }
        if (*c->journal_socket && (r = journal_new(c->journal_socket, &m->journal)) < 0) {
                log_error_errno(r, "open a socket for the journal: %m");
                goto fail;
        }
        if (*c->netd_socket && (r = netd_client_new(e, c->netd_socket, NETD_TIMEOUT_USEC,
                                                    on_netd_connected, m, &m->netd)) < 0) {
                log_error_errno(r, "set up the netd client: %m");
                goto fail;
        }
        log_info("cgroup %s, dynos run from %s, network: %s%s",
                 cg_mode_name(cg_manager_mode(m->cg)), m->dynos_run_dir,
                 m->netd ? "netd at " : "loopback only (no netd-socket)",
                 m->netd ? c->netd_socket : "");
        *ret = m;
        return 0;
fail:
        manager_free(m);
        return r;
}

static void free_node(void *p) { dyno_free(p); }

void manager_free(struct manager *m)
{
        if (!m)
                return;
        exec_free_all(m);
        metrics_stop(m);
        admission_free(m);
        m->shutdown_timer = sd_event_source_disable_unref(m->shutdown_timer);
        tdestroy(m->dynos, free_node);
        drain_ctx_free(m->drains); /* after the dynos: what their drains still hold is lost */
        netd_client_free(m->netd);
        journal_free(m->journal);
        events_free(m->events);
        dyno_seccomp_free(&m->seccomp);
        importer_free_all(m);
        image_store_free(m->images);
        cpu_pool_free(m->cpus);
        cg_manager_free(m->cg);
        closep(&m->init_exe_fd);
        closep(&m->netns_fd);
        sd_event_unref(m->event);
        free(m->boot_id);
        free(m->dynos_run_dir);
        free(m);
}
