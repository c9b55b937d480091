/* netd's API server; see server.h. Written like hostd's rpc.c. */
#include "server.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "frame.h"
#include "ipam.h"
#include "netd.h"
#include "netd.pb-c.h"
#include "util.h"

#define CONN_MAX_PENDING (16u << 20)
#define CONN_MAX 256
#define FRAME_MAX (1u << 20)

struct server {
        struct netd *n;
        sd_event *event;
        int fd;
        sd_event_source *source;
        size_t n_conns;
};

struct conn {
        struct server *srv;
        int fd;
        sd_event_source *source;
        sd_event_source *more; /* frames read but not yet handled, after a full batch */
        struct frame_reader rd;
        struct frame_writer wr;
        bool close_after_flush;
};

static void conn_free(struct conn *c)
{
        sd_event_source_disable_unref(c->source);
        sd_event_source_disable_unref(c->more);
        closep(&c->fd);
        frame_reader_free(&c->rd);
        frame_writer_free(&c->wr);
        c->srv->n_conns--;
        free(c);
}

/* false when the connection was closed (and freed) */
static bool conn_flush(struct conn *c)
{
        int r = frame_writer_flush(&c->wr, c->fd);
        if ((r < 0 && r != -EAGAIN) || (r == 0 && c->close_after_flush)) {
                if (r < 0)
                        log_debug("connection: write: %s", strerror(-r));
                conn_free(c);
                return false;
        }
        uint32_t ev = frame_writer_pending(&c->wr) ? EPOLLOUT : 0;
        if (!c->close_after_flush)
                ev |= EPOLLIN;
        sd_event_source_set_io_events(c->source, ev);
        return true;
}

static void conn_reply(struct conn *c, Netd__V1__Response *resp)
{
        size_t len = netd__v1__response__get_packed_size(resp);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf ||
            (netd__v1__response__pack(resp, buf), frame_writer_append(&c->wr, buf, len) < 0)) {
                log_warning("connection: cannot queue a %zu-byte reply; disconnecting", len);
                c->close_after_flush = true;
        }
}

/* Queue the response to call id with one result (see hostd's rpc.h). */
#define conn_reply_result(c, id_, result, field, value)                                            \
        do {                                                                                       \
                Netd__V1__Response _resp = NETD__V1__RESPONSE__INIT;                               \
                _resp.id = (id_);                                                                  \
                _resp.result_case = NETD__V1__RESPONSE__RESULT_##result;                           \
                _resp.field = (value);                                                             \
                conn_reply((c), &_resp);                                                           \
        } while (0)

static void reply_status(struct conn *c, uint64_t id, int code, const char *msg)
{
        Netd__V1__Status st = NETD__V1__STATUS__INIT;
        st.code = (uint32_t)code;
        st.message = (char *)msg;
        Netd__V1__Response resp = NETD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.status = &st;
        conn_reply(c, &resp);
}

static void call_attach(struct conn *c, uint64_t id, const Netd__V1__AttachRequest *req)
{
        char msg[1024] = "";
        struct netd_attach_reply ar;
        int code = netd_attach(c->srv->n, req->dyno_id, req->netns_path, req->web, req->port,
                               req->size, &ar, msg, sizeof msg);
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

static void call_detach(struct conn *c, uint64_t id, const Netd__V1__DetachRequest *req)
{
        char msg[1024] = "";
        int code = netd_detach(c->srv->n, req->dyno_id, msg, sizeof msg);
        if (code != API_OK)
                return reply_status(c, id, code, msg);
        Netd__V1__DetachReply d = NETD__V1__DETACH_REPLY__INIT;
        conn_reply_result(c, id, DETACH, detach, &d);
}

static void call_list(struct conn *c, uint64_t id)
{
        _cleanup_free_ struct netd_attachment *a = NULL;
        size_t n = 0;
        int r = netd_list(c->srv->n, &a, &n);
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

static void call_gc(struct conn *c, uint64_t id, const Netd__V1__GcRequest *req)
{
        char msg[1024] = "";
        _cleanup_free_ char **live = calloc(req->n_live_dyno_ids + 1, sizeof *live);
        if (!live)
                return reply_status(c, id, API_INTERNAL, "gc: out of memory");
        for (size_t i = 0; i < req->n_live_dyno_ids; i++)
                live[i] = req->live_dyno_ids[i];
        _cleanup_strv_free_ char **freed = NULL;
        int code = netd_gc(c->srv->n, live, &freed, msg, sizeof msg);
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

static void call_stats(struct conn *c, uint64_t id, const Netd__V1__StatsRequest *req)
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
        if (all && netd_list(c->srv->n, &a, &n) < 0)
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

static void conn_handle(struct conn *c, const uint8_t *msg, size_t len)
{
        Netd__V1__Request *req = netd__v1__request__unpack(NULL, len, msg);
        if (!req) {
                reply_status(c, 0, API_INVALID_ARGUMENT, "not a netd.v1.Request");
                c->close_after_flush = true;
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
        switch (req->call_case) {
        case NETD__V1__REQUEST__CALL_ATTACH: call_attach(c, req->id, req->attach); break;
        case NETD__V1__REQUEST__CALL_DETACH: call_detach(c, req->id, req->detach); break;
        case NETD__V1__REQUEST__CALL_LIST: call_list(c, req->id); break;
        case NETD__V1__REQUEST__CALL_GC: call_gc(c, req->id, req->gc); break;
        case NETD__V1__REQUEST__CALL_STATS: call_stats(c, req->id, req->stats); break;
        case NETD__V1__REQUEST__CALL__NOT_SET:
                reply_status(c, req->id, API_INVALID_ARGUMENT, "request: no call set");
                break;
        default: reply_status(c, req->id, API_UNIMPLEMENTED, "request: unknown call"); break;
        }
        netd__v1__request__free_unpacked(req, NULL);
}

static void conn_handle_batch(struct conn *c);

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;
        if (revents & EPOLLOUT && !conn_flush(c))
                return 0;
        if (c->close_after_flush || !(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        ssize_t n = frame_reader_fill(&c->rd, c->fd);
        if (n == 0 || (n < 0 && n != -EAGAIN && n != -ENOBUFS)) {
                conn_free(c);
                return 0;
        }
        conn_handle_batch(c);
        return 0;
}

static int on_more(sd_event_source *s, void *userdata)
{
        struct conn *c = userdata;
        if (!c->close_after_flush)
                conn_handle_batch(c);
        return 0;
}

/* A bounded batch per wake-up, so that one busy client cannot hold the loop. What one read
 * brought beyond it (a hostd sends a hundred Detach calls at once when as many dynos stop)
 * waits in the reader, where no readiness of the socket would ever call us again: a oneshot
 * defer source takes it up on the next iteration. */
static void conn_handle_batch(struct conn *c)
{
        int i;
        for (i = 0; i < 64 && !c->close_after_flush; i++) {
                const uint8_t *msg;
                size_t len;
                int r = frame_reader_next(&c->rd, &msg, &len);
                if (r == 0)
                        break;
                if (r < 0) {
                        reply_status(c, 0,
                                     r == -EMSGSIZE ? API_RESOURCE_EXHAUSTED : API_INVALID_ARGUMENT,
                                     r == -EMSGSIZE ? "frame over the limit" :
                                                      "malformed frame length");
                        c->close_after_flush = true;
                        break;
                }
                conn_handle(c, msg, len);
        }
        if (i == 64 && frame_reader_partial(&c->rd)) {
                int r = c->more ? 0 : sd_event_add_defer(c->srv->event, &c->more, on_more, c);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->more, SD_EVENT_ONESHOT);
                if (r < 0) {
                        log_warning_errno(r, "connection: cannot schedule its next requests: %m");
                        c->close_after_flush = true;
                }
        }
        conn_flush(c);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct server *srv = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accept: %m");
                return 0;
        }
        if (srv->n_conns >= CONN_MAX) {
                log_warning("refusing a connection: %zu open", srv->n_conns);
                close(cfd);
                return 0;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
                close(cfd);
                return 0;
        }
        c->srv = srv;
        c->fd = cfd;
        frame_reader_init(&c->rd, FRAME_MAX);
        frame_writer_init(&c->wr, CONN_MAX_PENDING);
        srv->n_conns++;
        int r = sd_event_add_io(srv->event, &c->source, cfd, EPOLLIN, on_conn, c);
        if (r < 0) {
                log_error_errno(-r, "watch a connection: %m");
                conn_free(c);
        }
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
        srv->event = event;
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
