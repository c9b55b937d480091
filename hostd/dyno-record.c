/* A dyno's record, <run-dir>/dynos/<id>/record (store.proto): written atomically at every
 * change, read back at hostd's start; and the Dyno message the API shows. */
#include "dyno-internal.h"

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

int dyno_save(struct dyno *d)
{
        /* Told to the event stream first: a hostd that dies between the two finds the change
         * in the stream at its next start, never a record the stream did not hear of. */
        if (d->m->events && d->event_state != (int)d->state) {
                if (d->event_state < 0)
                        events_emit(d->m->events, d->id, HOSTD__V1__EVENT_KIND__EVENT_KIND_STATE,
                                    d->state, "%s", dyno_state_name(d->state));
                else
                        events_emit(d->m->events, d->id, HOSTD__V1__EVENT_KIND__EVENT_KIND_STATE,
                                    d->state, "State changed from %s to %s%s%s",
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
        /* Per-boot (run-dir): atomic, not durable; see write_file_replace(). */
        int r = write_file_replace(path, buf, len, 0600);
        if (r < 0)
                log_error_errno(r, "dyno %s: write %s: %m", d->id, path);
        return r;
}

/* ---- reconcile ---- */

int dyno_load(struct manager *m, const char *id, struct dyno **ret)
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
