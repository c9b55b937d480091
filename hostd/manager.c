/* The Manager owns everything: the dynos by id, the entry points of the calls that change them
 * (start, stop, restart: api.c calls these), their uids, the images they wait for, hostd's
 * shutdown, and setting all of it up. A dyno's own life is dyno.c's. */
#include "dyno-internal.h"

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
struct dyno *manager_find_instance(struct manager *m, const char *name)
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

int manager_add(struct manager *m, struct dyno *d)
{
        struct dyno **slot = tsearch(d, &m->dynos, dyno_cmp);
        if (!slot)
                return -ENOMEM;
        if (*slot != d)
                return -EEXIST;
        m->n_dynos++;
        return 0;
}

void manager_remove(struct manager *m, struct dyno *d)
{
        if (tdelete(d, &m->dynos, dyno_cmp))
                m->n_dynos--;
}

/* The dyno a stop or restart names (the request is checked); NULL once answered. */
static struct dyno *find_to_stop(struct manager *m, const char *id, struct call *call)
{
        struct dyno *d = manager_find(m, id);
        if (!d)
                call_fail(call, API_NOT_FOUND, "dyno '%s' not found", id);
        return d;
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
uid_t manager_pick_uid(struct manager *m, int *error)
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

/* The importer's hooks: the dynos that wait for an image hear of it. */
static void image_ready(void *userdata, const char *digest, int error, const char *msg)
{
        struct manager *m = userdata;
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

static void image_progress(void *userdata, const char *digest, uint64_t done, uint64_t total)
{
        struct progress_ctx p = { digest, done, total };
        manager_foreach(userdata, log_progress, &p);
}

static const struct importer_hooks image_hooks = {
        .progress = image_progress,
        .ready = image_ready,
};

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

/* name ("hostd-init", "hostd-import") in the folder of path, or -1. */
static int open_beside(const char *path, const char *name)
{
        _cleanup_free_ char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (!slash)
                return -1;
        *slash = 0;
        _cleanup_free_ char *p = strjoin3(dir, "/", name);
        return p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
}

/* A helper program: configured (the init), else beside the configured init, else beside our
 * own executable (a build tree), else the installed one. Held open so that an upgrade on
 * disk never leaves a dyno or an import without one. */
static int open_helper(const struct config *c, const char *name, bool configured)
{
        if (*c->init_path && configured)
                return open(c->init_path, O_RDONLY | O_CLOEXEC);
        int fd = *c->init_path ? open_beside(c->init_path, name) : -1;
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (fd < 0 && n > 0) {
                self[n] = 0;
                fd = open_beside(self, name);
        }
        if (fd >= 0)
                return fd;
        _cleanup_free_ char *installed = strjoin3(HOSTD_LIBEXECDIR, "/", name);
        return installed ? open(installed, O_RDONLY | O_CLOEXEC) : -1;
}

int manager_new(struct config *c, sd_event *e, struct manager **ret)
{
        struct manager *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->config = c;
        m->event = sd_event_ref(e);
        m->init_exe_fd = m->import_exe_fd = m->netns_fd = -1;
        int r;

        if ((r = offload_new(e, &m->offload)) < 0) {
                log_error_errno(r, "start the worker thread: %m");
                goto fail;
        }

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
        m->init_exe_fd = open_helper(c, "hostd-init", true);
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
        m->import_exe_fd = open_helper(c, "hostd-import", false);
        if (m->import_exe_fd < 0)
                log_warning_errno(errno,
                                  "no hostd-import beside the init, beside hostd or in %s (%m): "
                                  "every image import will fail",
                                  HOSTD_LIBEXECDIR);
        if ((r = importer_new(m->event, m->images, m->import_exe_fd, &image_hooks, m,
                              &m->importer)) < 0) {
                log_error_errno(r, "set up the importer: %m");
                goto fail;
        }
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
        admission_free(m);
        m->shutdown_timer = sd_event_source_disable_unref(m->shutdown_timer);
        tdestroy(m->dynos, free_node);
        m->dynos = NULL;
        offload_free(m->offload);  /* its last jobs find their dynos gone */
        drain_ctx_free(m->drains); /* after the dynos: what their drains still hold is lost */
        netd_client_free(m->netd);
        journal_free(m->journal);
        events_free(m->events);
        dyno_seccomp_free(&m->seccomp);
        importer_free(m->importer);
        image_store_free(m->images);
        cpu_pool_free(m->cpus);
        cg_manager_free(m->cg);
        closep(&m->init_exe_fd);
        closep(&m->import_exe_fd);
        closep(&m->netns_fd);
        sd_event_unref(m->event);
        free(m->boot_id);
        free(m->dynos_run_dir);
        free(m);
}
