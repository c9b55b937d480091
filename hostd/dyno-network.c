/* A dyno's network, through netd: its network namespace named for netd, the Attach its first
 * process waits for, the Detach when its processes are gone, and the Gc and List that bring
 * netd and hostd together after either was away. */
#include "dyno-internal.h"

static char *netns_path(const struct manager *m, const char *id)
{
        return strjoin3(m->config->netns_dir, "/", id);
}

/* Remove the bind mount that names a dyno's network namespace for netd. Once it is gone and
 * the dyno's processes with it, the kernel frees the namespace. */
void netns_unbind(struct manager *m, const char *id)
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
void net_release_name(struct manager *m, const char *name)
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

void dyno_net_release(struct dyno *d)
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
                                code == API_DEADLINE_EXCEEDED || code == API_RESOURCE_EXHAUSTED ?
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
        /* Wired: the first process may go on once it is in its cgroup too. */
        int r = dyno_go_if_ready(d);
        if (r < 0) {
                snprintf(full, sizeof full, "dyno '%s': let the dyno's processes go on: %s", d->id,
                         strerror(-r));
                dyno_fail_start(d, API_INTERNAL, full);
        }
}

/* Name the new network namespace for netd and ask it to wire the dyno; the dyno's first
 * process waits until it is done (on_attached). */
int dyno_net_attach(struct dyno *d, char *errbuf, size_t errlen)
{
        struct manager *m = d->m;
        _cleanup_free_ char *path = NULL;
        int r = netns_bind(m, d, &path);
        if (r < 0)
                return set_error(errbuf, errlen, r, "name the network namespace in %s: %s",
                                 m->config->netns_dir, strerror(-r));

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
                (void)set_error(errbuf, errlen, 0, "attach to the network: netd at %s: %s",
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
void netd_sync(struct manager *m)
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
void on_netd_connected(struct netd_client *c, void *userdata)
{
        struct manager *m = userdata;
        if (m->reconciled)
                netd_sync(m);
}
