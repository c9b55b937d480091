/* hostd's start: re-adopt the dynos that still run, record those that ended while it was away,
 * and remove what belongs to no dyno (cgroups, layers, network namespace names). */
#include "dyno-internal.h"

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

        int pidfd = d->pid > 0 ? pidfd_open(d->pid, 0) : -1;
        bool ours = pidfd >= 0 && proc_starttime(d->pid) == d->init_starttime &&
                    d->init_starttime != 0 && cg_contains(m->cg, d->cg_name, d->pid) > 0;
        if (pidfd >= 0 && !ours) {
                /* A pid reused by someone else, or our init before it reached its cgroup
                 * (hostd died mid-start): in the latter case it is ours to kill. */
                if (proc_starttime(d->pid) == d->init_starttime && d->init_starttime != 0)
                        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
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
        d->log_fd = pidfd_getfd(pidfd, INIT_LOG_FD, 0);
        if (d->log_fd < 0)
                log_warning_errno(errno, "dyno %s: take the log pipe from the init: %m", d->id);
        else {
                fcntl(d->log_fd, F_SETFD, FD_CLOEXEC);
                fcntl(d->log_fd, F_SETFL, O_NONBLOCK);
        }
        if (d->spec->tty) {
                /* The init holds the terminal where the log pipe's write end was. */
                d->tty_fd = pidfd_getfd(pidfd, INIT_TTY_FD, 0);
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
        _cleanup_closedir_ DIR *dir = opendir(d->run_dir);
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
        _cleanup_closedir_ DIR *dir = opendir(m->dynos_run_dir);
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
                else if (d->state == HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED &&
                         d->restart_at_usec)
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
        _cleanup_closedir_ DIR *layers = opendir(m->config->layers_dir);
        while (layers && (de = readdir(layers))) {
                if (de->d_name[0] == '.' || is_live_instance(m, de->d_name))
                        continue;
                _cleanup_free_ char *path = strjoin3(m->config->layers_dir, "/", de->d_name);
                log_notice("removing leftover layer %s", path);
                int r = rm_rf(path);
                if (r < 0)
                        log_error_errno(r, "remove %s: %m", path);
        }

        if (m->events)
                events_emit(m->events, NULL, HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST, 0,
                            "hostd %s started: %zu dynos known, %zu live", HOSTD_VERSION,
                            m->n_dynos, m->n_live);
        (void)admission_load(m); /* after the events' "started": then the drain goes on */
        if (!m->netd)
                return 0;
        _cleanup_closedir_ DIR *netns = opendir(m->config->netns_dir);
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
