/* netd's API server; see server.h. Its connections are proto/frame-conn.c's. */
#include "server.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "frame-conn.h"
#include "ipam.h"
#include "netd.h"
#include "netd.pb-c.h"
#include "util.h"

/* A request is a few hundred bytes; a List or Stats reply of a thousand dynos some 60 KiB. */
#define FRAME_MAX (1u << 20)
#define CONN_MAX 256

struct server {
        struct netd *n;
        int fd;
        sd_event_source *source;
        size_t n_conns;
};

/* A reply that cannot be queued (16 MiB wait already: the client does not read) ends the
 * connection once what is queued is written. */
static void conn_reply(struct frame_conn *c, const Netd__V1__Response *resp)
{
        if (frame_conn_send_pb(c, &resp->base) < 0) {
                log_warning("connection: cannot queue a %zu-byte reply; disconnecting",
                            netd__v1__response__get_packed_size(resp));
                frame_conn_close(c);
        }
}

/* Queue the response to call id with one result. */
#define conn_reply_result(c, id_, result, field, value)                                            \
        do {                                                                                       \
                Netd__V1__Response _resp = NETD__V1__RESPONSE__INIT;                               \
                _resp.id = (id_);                                                                  \
                _resp.result_case = NETD__V1__RESPONSE__RESULT_##result;                           \
                _resp.field = (value);                                                             \
                conn_reply((c), &_resp);                                                           \
        } while (0)

static void reply_status(struct frame_conn *c, uint64_t id, int code, const char *msg)
{
        Netd__V1__Status st = NETD__V1__STATUS__INIT;
        st.code = (uint32_t)code;
        st.message = (char *)msg;
        Netd__V1__Response resp = NETD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.status = &st;
        conn_reply(c, &resp);
}

static void call_attach(struct frame_conn *c, struct netd *netd, uint64_t id,
                        const Netd__V1__AttachRequest *req)
{
        char msg[1024] = "";
        struct netd_attach_reply ar;
        int code = netd_attach(netd, req->dyno_id, req->netns_path, req->web, req->port, req->size,
                               &ar, msg, sizeof msg);
        if (code != API_OK)
                return reply_status(c, id, code, msg);
        char addr[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN], mac[18];
        inet_ntop(AF_INET, &ar.address, addr, sizeof addr);
        inet_ntop(AF_INET, &ar.gateway, gw, sizeof gw);
        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", ar.mac[0], ar.mac[1], ar.mac[2],
                 ar.mac[3], ar.mac[4], ar.mac[5]);
        Netd__V1__AttachReply a = NETD__V1__ATTACH_REPLY__INIT;
        a.address = addr;
        a.gateway = gw;
        a.mac = mac;
        a.host_port = ar.host_port;
        conn_reply_result(c, id, ATTACH, attach, &a);
}

static void call_detach(struct frame_conn *c, struct netd *netd, uint64_t id,
                        const Netd__V1__DetachRequest *req)
{
        char msg[1024] = "";
        int code = netd_detach(netd, req->dyno_id, msg, sizeof msg);
        if (code != API_OK)
                return reply_status(c, id, code, msg);
        Netd__V1__DetachReply d = NETD__V1__DETACH_REPLY__INIT;
        conn_reply_result(c, id, DETACH, detach, &d);
}

static void call_list(struct frame_conn *c, struct netd *netd, uint64_t id)
{
        _cleanup_free_ struct netd_attachment *a = NULL;
        size_t n = 0;
        int r = netd_list(netd, &a, &n);
        if (r < 0)
                return reply_status(c, id, API_INTERNAL, "list: out of memory");
        _cleanup_free_ Netd__V1__Attachment *items = calloc(n + 1, sizeof *items);
        _cleanup_free_ Netd__V1__Attachment **ptrs = calloc(n + 1, sizeof *ptrs);
        _cleanup_free_ char *addrs = calloc(n + 1, INET_ADDRSTRLEN);
        if (!items || !ptrs || !addrs)
                return reply_status(c, id, API_INTERNAL, "list: out of memory");
        for (size_t i = 0; i < n; i++) {
                netd__v1__attachment__init(&items[i]);
                items[i].dyno_id = a[i].dyno_id;
                items[i].address = addrs + i * INET_ADDRSTRLEN;
                inet_ntop(AF_INET, &a[i].address, items[i].address, INET_ADDRSTRLEN);
                items[i].host_port = a[i].host_port;
                ptrs[i] = &items[i];
        }
        Netd__V1__ListReply l = NETD__V1__LIST_REPLY__INIT;
        l.n_attachments = n;
        l.attachments = ptrs;
        conn_reply_result(c, id, LIST, list, &l);
}

static void call_gc(struct frame_conn *c, struct netd *netd, uint64_t id,
                    const Netd__V1__GcRequest *req)
{
        char msg[1024] = "";
        _cleanup_free_ char **live = calloc(req->n_live_dyno_ids + 1, sizeof *live);
        if (!live)
                return reply_status(c, id, API_INTERNAL, "gc: out of memory");
        for (size_t i = 0; i < req->n_live_dyno_ids; i++)
                live[i] = req->live_dyno_ids[i];
        _cleanup_strv_free_ char **freed = NULL;
        int code = netd_gc(netd, live, &freed, msg, sizeof msg);
        if (code != API_OK)
                return reply_status(c, id, code, msg);
        size_t n = 0;
        while (freed[n])
                n++;
        Netd__V1__GcReply g = NETD__V1__GC_REPLY__INIT;
        g.n_freed = n;
        g.freed = freed;
        conn_reply_result(c, id, GC, gc, &g);
}

/* The counters of the dynos asked for (all attached ones when none is named); a dyno that is
 * named and not attached is NOT_FOUND. One dump of the links answers the whole request, so
 * hostd's once-a-round request for a thousand dynos is one netlink round trip here. */
static int dyno_stats_cmp(const void *a, const void *b)
{
        return strcmp(((const struct link_dyno_stats *)a)->dyno_id,
                      ((const struct link_dyno_stats *)b)->dyno_id);
}

static void call_stats(struct frame_conn *c, struct netd *netd, uint64_t id,
                       const Netd__V1__StatsRequest *req)
{
        for (size_t i = 0; i < req->n_dyno_ids; i++)
                if (!dyno_instance_name_valid(req->dyno_ids[i])) {
                        char msg[256];
                        snprintf(msg, sizeof msg, "stats.dyno_ids[%zu]: invalid dyno id", i);
                        return reply_status(c, id, API_INVALID_ARGUMENT, msg);
                }
        _cleanup_free_ struct netd_attachment *a = NULL;
        size_t n = req->n_dyno_ids;
        bool all = n == 0;
        if (all && netd_list(netd, &a, &n) < 0)
                return reply_status(c, id, API_INTERNAL, "stats: out of memory");
        struct link_dyno_stats *dump = NULL;
        int nd = link_stats_all(&dump);
        if (nd < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "stats: dump the links: %s", strerror(-nd));
                return reply_status(c, id, API_INTERNAL, msg);
        }
        Netd__V1__LinkStats *items = calloc(n + 1, sizeof *items);
        Netd__V1__LinkStats **ptrs = calloc(n + 1, sizeof *ptrs);
        if (!items || !ptrs) {
                free(items);
                free(ptrs);
                link_dyno_stats_free(dump, (size_t)nd);
                return reply_status(c, id, API_INTERNAL, "stats: out of memory");
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                char *dyno = all ? a[i].dyno_id : req->dyno_ids[i];
                struct link_dyno_stats key = { .dyno_id = dyno };
                const struct link_dyno_stats *ls =
                        bsearch(&key, dump, (size_t)nd, sizeof *dump, dyno_stats_cmp);
                if (!ls && all)
                        continue; /* attached in the records, its link gone: nothing to count */
                if (!all && !netd_attached(netd, dyno))
                        ls = NULL; /* detached, its veth maybe not deleted yet */
                if (!ls) {
                        char msg[256];
                        snprintf(msg, sizeof msg, "dyno %s: not attached", dyno);
                        free(items);
                        free(ptrs);
                        link_dyno_stats_free(dump, (size_t)nd);
                        return reply_status(c, id, API_NOT_FOUND, msg);
                }
                netd__v1__link_stats__init(&items[k]);
                items[k].dyno_id = dyno;
                items[k].rx_bytes = ls->stats.rx_bytes;
                items[k].tx_bytes = ls->stats.tx_bytes;
                items[k].rx_packets = ls->stats.rx_packets;
                items[k].tx_packets = ls->stats.tx_packets;
                ptrs[k] = &items[k];
                k++;
        }
        Netd__V1__StatsReply s = NETD__V1__STATS_REPLY__INIT;
        s.n_stats = k;
        s.stats = ptrs;
        conn_reply_result(c, id, STATS, stats, &s);
        free(items);
        free(ptrs);
        link_dyno_stats_free(dump, (size_t)nd);
}

static void on_request(struct frame_conn *c, int error, const uint8_t *msg, size_t len,
                       void *userdata)
{
        struct server *srv = userdata;
        /* A refused frame: told with id 0, then the connection closes (frame-conn.h). */
        if (error == -EMSGSIZE)
                return reply_status(c, 0, API_RESOURCE_EXHAUSTED, "frame over the limit");
        if (error < 0)
                return reply_status(c, 0, API_INVALID_ARGUMENT, "malformed frame length");
        Netd__V1__Request *req = netd__v1__request__unpack(NULL, len, msg);
        if (!req) {
                reply_status(c, 0, API_INVALID_ARGUMENT, "not a netd.v1.Request");
                frame_conn_close(c);
                return;
        }
        /* protobuf-c cuts a string at a NUL byte: such a request packs back smaller. */
        if (netd__v1__request__get_packed_size(req) != len) {
                reply_status(c, req->id, API_INVALID_ARGUMENT,
                             "request: a string holds a NUL byte, or the encoding is not "
                             "canonical");
                netd__v1__request__free_unpacked(req, NULL);
                return;
        }
        struct netd *netd = srv->n;
        switch (req->call_case) {
        case NETD__V1__REQUEST__CALL_ATTACH: call_attach(c, netd, req->id, req->attach); break;
        case NETD__V1__REQUEST__CALL_DETACH: call_detach(c, netd, req->id, req->detach); break;
        case NETD__V1__REQUEST__CALL_LIST: call_list(c, netd, req->id); break;
        case NETD__V1__REQUEST__CALL_GC: call_gc(c, netd, req->id, req->gc); break;
        case NETD__V1__REQUEST__CALL_STATS: call_stats(c, netd, req->id, req->stats); break;
        case NETD__V1__REQUEST__CALL__NOT_SET:
                reply_status(c, req->id, API_INVALID_ARGUMENT, "request: no call set");
                break;
        default: reply_status(c, req->id, API_UNIMPLEMENTED, "request: unknown call"); break;
        }
        netd__v1__request__free_unpacked(req, NULL);
}

static void on_conn_closed(struct frame_conn *c, int error, void *userdata)
{
        struct server *srv = userdata;
        if (error < 0)
                log_debug("connection: %s", strerror(-error));
        frame_conn_free(c);
        srv->n_conns--;
}

/* Every request is answered at once, in order; 64 of them a wake-up, so that one busy client
 * cannot hold the loop. */
static const struct frame_conn_kind conn_kind = {
        .max_frame = FRAME_MAX,
        .max_queued = 16u << 20,
        .batch = 64,
        .message = on_request,
        .closed = on_conn_closed,
};

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct server *srv = userdata;
        _cleanup_close_ int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accept: %m");
                return 0;
        }
        if (srv->n_conns >= CONN_MAX) {
                log_warning("refusing a connection: %zu open", srv->n_conns);
                return 0;
        }
        struct frame_conn *c;
        int r = frame_conn_new(sd_event_source_get_event(s), cfd, &conn_kind, srv, &c);
        if (r < 0)
                return log_error_errno(r, "watch a connection: %m"), 0;
        TAKE_FD(cfd);
        srv->n_conns++;
        return 0;
}

int server_new(struct netd *n, sd_event *event, const char *path, struct server **ret)
{
        _cleanup_close_ int fd = unix_listen(path, "netd");
        if (fd < 0)
                return fd;
        struct server *srv = calloc(1, sizeof *srv);
        if (!srv)
                return -ENOMEM;
        srv->n = n;
        int r = sd_event_add_io(event, &srv->source, fd, EPOLLIN, on_accept, srv);
        if (r < 0) {
                free(srv);
                return log_error_errno(-r, "watch %s: %m", path);
        }
        srv->fd = TAKE_FD(fd);
        *ret = srv;
        return 0;
}

void server_free(struct server *s)
{
        if (!s)
                return;
        sd_event_source_disable_unref(s->source);
        closep(&s->fd);
        free(s);
}
