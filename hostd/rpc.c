/* The API server.
 *
 * Two listeners feed one kind of connection: the Unix socket (operators, local tools) and,
 * with listen-tls, TCP with mutual TLS (the control plane). A connection is plain or TLS only
 * in how its bytes move (conn_recv(), conn_send()); framing, limits and the calls are the same.
 *
 * Every connection is non-blocking and has its own reader and writer; a request is decoded,
 * validated and answered (or handed to the manager, which answers later) without blocking
 * the loop. A peer that sends what is not our protocol is told so once, if it can be, and
 * disconnected; it never takes hostd or another client with it.
 *
 * Fairness: each wake-up of a connection handles at most CONN_BATCH requests; what is left
 * buffered (in the frame reader, or decrypted inside OpenSSL, which epoll cannot see) is taken
 * up by the connection's deferred source after the other sources of the loop had their turn.
 *
 * In flight: every reference to a connection other than its own is a call that will still
 * answer (a start, a stop, an import) or an open stream (logs -f, events -f, exec). At
 * max-inflight of them, a request that would add one is refused (RESOURCE_EXHAUSTED) while
 * the others, and the input of open streams, go on: not reading at all (back-pressure) would
 * leave an exec waiting for the input queued behind it. With none in flight for idle-timeout
 * seconds, and no request meanwhile, the connection is closed. */
#include "rpc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "admission.h"
#include "cgroup.h"
#include "cpus.h"
#include "events.h"
#include "exec.h"
#include "frame.h"
#include "images.h"
#include "importer.h"
#include "manager.h"
#include "metrics.h"
#include "tls.h"
#include "validate.h"

#include "config-build.h"

/* What a slow reader may leave queued before it is cut off. */
#define CONN_MAX_PENDING (64u << 20)
/* Requests handled per wake-up of one connection before the others get their turn. */
#define CONN_BATCH 16
/* One TLS record's worth of plaintext per SSL_read(). */
#define TLS_READ_CHUNK 16384

struct rpc_server {
        struct manager *m;
        int fd;
        sd_event_source *source;
        int tls_fd; /* listen-tls; -1: none */
        sd_event_source *tls_source;
        struct tls_server *tls;
        size_t n_conns; /* both listeners: max-connections counts them together */
        struct conn *conns;
        gid_t read_gid; /* read-group's; (gid_t)-1: none */
};

struct conn {
        unsigned ref;
        unsigned own_refs;        /* taken by this file while it works on the connection */
        struct rpc_server *srv;   /* not to be used once closed: it may be gone */
        struct conn *prev, *next; /* the server's open connections */
        unsigned max_inflight;
        int fd;
        sd_event_source *source;
        sd_event_source *work;  /* deferred: requests left buffered after a batch */
        sd_event_source *timer; /* the handshake's deadline, then the idle check */
        struct frame_reader rd;
        struct frame_writer wr;
        uint64_t active_usec; /* the last request, or the end of the last call in flight */
        char peer[INET6_ADDRSTRLEN + 16]; /* "192.0.2.1:40000", "pid 42" */
        SSL *ssl;                         /* NULL: a plain connection (the Unix socket) */
        uint32_t handshake_events;        /* while handshaking: what SSL_accept waits for */
        bool handshaking;
        bool first_byte_seen;  /* of a TLS connection: it was a handshake's */
        bool read_wants_write; /* SSL_read needs the socket writable */
        bool write_wants_read; /* SSL_write needs it readable */
        bool batching;         /* in conn_process(): replies go out together at its end */
        bool deferred;         /* a batch ended with more to read: the deferred source reads on */
        bool closed;
        bool close_after_flush;
        bool read_only; /* a read-group member: only the calls that change nothing */
};

/* Calls that will still answer and open streams: every reference but ours. */
static unsigned conn_in_flight(const struct conn *c)
{
        unsigned own = (c->closed ? 0 : 1) + c->own_refs;
        return c->ref > own ? c->ref - own : 0;
}

struct conn *conn_ref(struct conn *c)
{
        c->ref++;
        return c;
}

static void conn_take(struct conn *c)
{
        c->ref++;
        c->own_refs++;
}

static void conn_free(struct conn *c)
{
        SSL_free(c->ssl);
        frame_reader_free(&c->rd);
        frame_writer_free(&c->wr);
        free(c);
}

void conn_unref(struct conn *c)
{
        if (!c)
                return;
        if (--c->ref == 0)
                return conn_free(c);
        if (c->closed)
                return;
        /* A call ended or a stream closed. */
        if (conn_in_flight(c) == 0)
                c->active_usec = now_monotonic_usec(); /* idle from now */
}

static void conn_release(struct conn *c)
{
        c->own_refs--;
        if (--c->ref == 0)
                conn_free(c);
}

static void conn_close(struct conn *c)
{
        if (c->closed)
                return;
        c->closed = true;
        c->source = sd_event_source_disable_unref(c->source);
        c->work = sd_event_source_disable_unref(c->work);
        c->timer = sd_event_source_disable_unref(c->timer);
        /* A quiet close_notify; a peer that is gone already makes it fail, which is fine. */
        if (c->ssl && !c->handshaking && SSL_shutdown(c->ssl) < 0)
                ERR_clear_error();
        closep(&c->fd), c->fd = -1;
        c->srv->n_conns--;
        if (c->prev)
                c->prev->next = c->next;
        else
                c->srv->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        conn_unref(c);
}

/* ---- the transport: plain or TLS ---- */

/* Read what the peer sent into the frame reader: >0 bytes, 0 at the end, -EAGAIN, or
 * another negative errno. */
static ssize_t conn_recv(struct conn *c)
{
        if (!c->ssl)
                return frame_reader_fill(&c->rd, c->fd);

        uint8_t buf[TLS_READ_CHUNK];
        c->read_wants_write = false;
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n > 0) {
                int r = frame_reader_feed(&c->rd, buf, (size_t)n);
                return r < 0 ? r : n;
        }
        switch (SSL_get_error(c->ssl, n)) {
        case SSL_ERROR_WANT_READ: return -EAGAIN;
        case SSL_ERROR_WANT_WRITE: c->read_wants_write = true; return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN: return 0;
        case SSL_ERROR_SYSCALL: return errno > 0 ? -errno : 0;
        default: ERR_clear_error(); return -EPROTO;
        }
}

/* Write what is queued: 0 when all is out, -EAGAIN, another negative errno. */
static int conn_send(struct conn *c)
{
        if (!c->ssl)
                return frame_writer_flush(&c->wr, c->fd);

        c->write_wants_read = false;
        while (frame_writer_pending(&c->wr) > 0) {
                size_t n;
                const uint8_t *p = frame_writer_peek(&c->wr, &n);
                ERR_clear_error();
                int k = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
                if (k > 0) {
                        frame_writer_advance(&c->wr, (size_t)k);
                        continue;
                }
                switch (SSL_get_error(c->ssl, k)) {
                case SSL_ERROR_WANT_WRITE: return -EAGAIN;
                case SSL_ERROR_WANT_READ: c->write_wants_read = true; return -EAGAIN;
                case SSL_ERROR_SYSCALL: return errno > 0 ? -errno : -EPIPE;
                default: ERR_clear_error(); return -EPROTO;
                }
        }
        return 0;
}

static void conn_update_events(struct conn *c)
{
        if (c->closed)
                return;
        uint32_t ev;
        if (c->handshaking)
                ev = c->handshake_events;
        else {
                ev = frame_writer_pending(&c->wr) || c->read_wants_write ? EPOLLOUT : 0;
                if ((!c->close_after_flush && !c->deferred) || c->write_wants_read)
                        ev |= EPOLLIN;
        }
        sd_event_source_set_io_events(c->source, ev);
}

static void conn_flush(struct conn *c)
{
        if (c->closed || c->handshaking)
                return;
        int r = conn_send(c);
        if (r < 0 && r != -EAGAIN) {
                log_debug("connection %s: write: %s", c->peer, strerror(-r));
                conn_close(c);
                return;
        }
        if (r == 0 && c->close_after_flush) {
                conn_close(c);
                return;
        }
        conn_update_events(c);
}

void conn_reply(struct conn *c, Hostd__V1__Response *resp)
{
        if (c->closed)
                return;
        size_t len = hostd__v1__response__get_packed_size(resp);
        uint8_t stackbuf[4096];
        uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
        if (!buf) {
                log_error("connection %s: out of memory for a %zu-byte reply", c->peer, len);
                conn_close(c);
                return;
        }
        hostd__v1__response__pack(resp, buf);
        int r = frame_writer_append(&c->wr, buf, len);
        if (buf != stackbuf)
                free(buf);
        if (r < 0) {
                log_warning("connection %s: %s; disconnecting a client that does not read its "
                            "replies",
                            c->peer, strerror(-r));
                conn_close(c);
                return;
        }
        if (!c->batching)
                conn_flush(c);
}

void conn_reply_packed(struct conn *c, uint64_t id, const uint8_t *body, size_t len)
{
        if (c->closed)
                return;
        /* Response.id is field 1, a varint: its tag byte is 0x08. */
        uint8_t head[1 + FRAME_VARINT_MAX];
        size_t h = 0;
        if (id) {
                head[0] = 0x08;
                h = 1 + frame_varint_encode(id, head + 1);
        }
        _cleanup_free_ uint8_t *buf = malloc(h + len);
        if (!buf) {
                log_error("connection: out of memory for a %zu-byte reply", h + len);
                conn_close(c);
                return;
        }
        memcpy(buf, head, h);
        memcpy(buf + h, body, len);
        int r = frame_writer_append(&c->wr, buf, h + len);
        if (r < 0) {
                log_warning("connection: %s; disconnecting a client that does not read its replies",
                            strerror(-r));
                conn_close(c);
                return;
        }
        conn_flush(c);
}

size_t conn_pending(const struct conn *c) { return c->closed ? 0 : frame_writer_pending(&c->wr); }

void conn_reply_error(struct conn *c, uint64_t id, int code, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        Hostd__V1__Status st = HOSTD__V1__STATUS__INIT;
        st.code = code;
        st.message = msg;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.status = &st;
        conn_reply(c, &resp);
}

/* Tell the peer (id 0) why it is being disconnected, then hang up. */
_printf_(3, 4) static void conn_hang_up(struct conn *c, int code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        conn_reply_error(c, 0, code, "%s", msg);
        c->close_after_flush = true;
        c->active_usec = now_monotonic_usec(); /* the peer has idle-timeout to read it */
        conn_flush(c);
}

/* Tell the peer what was wrong with its stream, then hang up. */
_printf_(3, 4) static void conn_protocol_error(struct conn *c, int code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        log_info("connection %s: %s; disconnecting", c->peer, msg);
        conn_hang_up(c, code, "%s", msg);
}

/* ---- calls ---- */

/* The dyno a call names, after checking the id; NULL once the error is answered. */
static struct dyno *find_dyno(struct conn *c, uint64_t id, const char *dyno_id)
{
        char msg[256];
        int code = validate_id("id", dyno_id, msg, sizeof msg);
        if (code) {
                conn_reply_error(c, id, code, "%s", msg);
                return NULL;
        }
        struct dyno *d = manager_find(c->srv->m, dyno_id);
        if (!d)
                conn_reply_error(c, id, API_NOT_FOUND, "dyno '%s' not found", dyno_id);
        return d;
}

static void call_get(struct conn *c, uint64_t id, const Hostd__V1__GetRequest *req)
{
        struct dyno *d = find_dyno(c, id, req->id);
        if (!d)
                return;
        Hostd__V1__Dyno dp;
        Hostd__V1__ExitInfo ei;
        dyno_to_proto(d, &dp, &ei);
        Hostd__V1__GetReply get = HOSTD__V1__GET_REPLY__INIT;
        get.dyno = &dp;
        conn_reply_result(c, id, GET, get, &get);
}

struct list_ctx {
        Hostd__V1__Dyno *dynos;
        Hostd__V1__ExitInfo *exits;
        Hostd__V1__Dyno **ptrs;
        size_t n;
};

static void list_one(struct dyno *d, void *userdata)
{
        struct list_ctx *l = userdata;
        dyno_to_proto(d, &l->dynos[l->n], &l->exits[l->n]);
        l->ptrs[l->n] = &l->dynos[l->n];
        l->n++;
}

static void call_list(struct conn *c, uint64_t id)
{
        struct manager *m = c->srv->m;
        size_t n = m->n_dynos ? m->n_dynos : 1;
        struct list_ctx l = {
                .dynos = calloc(n, sizeof(Hostd__V1__Dyno)),
                .exits = calloc(n, sizeof(Hostd__V1__ExitInfo)),
                .ptrs = calloc(n, sizeof(Hostd__V1__Dyno *)),
        };
        if (l.dynos && l.exits && l.ptrs) {
                manager_foreach(m, list_one, &l);
                Hostd__V1__ListReply list = HOSTD__V1__LIST_REPLY__INIT;
                list.n_dynos = l.n;
                list.dynos = l.ptrs;
                conn_reply_result(c, id, LIST, list, &list);
        } else
                conn_reply_error(c, id, API_INTERNAL, "list: out of memory");
        free(l.dynos);
        free(l.exits);
        free(l.ptrs);
}

static void call_host_info(struct conn *c, uint64_t id)
{
        struct manager *m = c->srv->m;
        const struct config *cfg = m->config;
        Hostd__V1__Host h = HOSTD__V1__HOST__INIT;
        char hostname[256];
        host_info_fill(m, &h, hostname);

        Hostd__V1__Size *sizes = calloc(cfg->n_sizes, sizeof *sizes);
        Hostd__V1__Size **ptrs = calloc(cfg->n_sizes, sizeof *ptrs);
        if (!sizes || !ptrs) {
                free(sizes);
                free(ptrs);
                return conn_reply_error(c, id, API_INTERNAL,
                                        "host_info: out of memory");
        }
        for (size_t i = 0; i < cfg->n_sizes; i++) {
                const struct size_def *s = &cfg->sizes[i];
                hostd__v1__size__init(&sizes[i]);
                sizes[i].name = s->name;
                sizes[i].memory_bytes = s->memory;
                sizes[i].r15_multiple = s->r15_multiple;
                sizes[i].pids = s->pids;
                sizes[i].cpu_weight = s->cpu_weight;
                sizes[i].dedicated_cpus = s->dedicated_cpus;
                sizes[i].swap = s->swap;
                ptrs[i] = &sizes[i];
        }
        h.n_sizes = cfg->n_sizes;
        h.sizes = ptrs;

        conn_reply_result(c, id, HOST_INFO, host_info, &h);
        free(sizes);
        free(ptrs);
}

static void call_drain(struct conn *c, uint64_t id, const Hostd__V1__DrainRequest *req)
{
        char msg[256];
        int r = admission_drain(c->srv->m,
                                req->deadline_case ==
                                        HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS,
                                req->deadline_seconds, msg, sizeof msg);
        if (r < 0)
                return conn_reply_error(c, id,
                                        r == -EINVAL ? API_INVALID_ARGUMENT :
                                                       API_INTERNAL,
                                        "%s", msg);
        Hostd__V1__DrainReply d = HOSTD__V1__DRAIN_REPLY__INIT;
        conn_reply_result(c, id, DRAIN, drain, &d);
}

static void call_undrain(struct conn *c, uint64_t id)
{
        char msg[256];
        if (admission_undrain(c->srv->m, msg, sizeof msg) < 0)
                return conn_reply_error(c, id, API_INTERNAL, "%s", msg);
        Hostd__V1__UndrainReply u = HOSTD__V1__UNDRAIN_REPLY__INIT;
        conn_reply_result(c, id, UNDRAIN, undrain, &u);
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

/* One LogBatch response with the ring's lines [from, to). */
static void send_log_batch(struct conn *c, uint64_t id, const struct dyno *d, size_t from,
                           size_t to, bool end)
{
        size_t n = to - from;
        Hostd__V1__LogLine *lines = calloc(n ? n : 1, sizeof *lines);
        Hostd__V1__LogLine **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!lines || !ptrs) {
                free(lines);
                free(ptrs);
                return conn_reply_error(c, id, API_INTERNAL, "logs: out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                fill_log_line(&lines[i], d, log_ring_get(d->ring, from + i));
                ptrs[i] = &lines[i];
        }
        Hostd__V1__LogBatch batch = HOSTD__V1__LOG_BATCH__INIT;
        batch.n_lines = n;
        batch.lines = ptrs;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_LOGS;
        resp.logs = &batch;
        resp.end_of_stream = end;
        conn_reply(c, &resp);
        free(lines);
        free(ptrs);
}

static size_t log_line_cost(const struct dyno *d, const struct log_line *l)
{
        return l->len + 64 + strlen(d->id) * 2;
}

void rpc_send_logs(struct conn *c, uint64_t id, const struct dyno *d, size_t first, bool follow)
{
        size_t total = log_ring_count(d->ring);
        size_t budget = d->m->config->max_frame - 1024;
        if (!follow) {
                /* One reply, one frame: the newest lines that fit, in order. */
                size_t used = 0, k = total;
                while (k > first) {
                        size_t cost = log_line_cost(d, log_ring_get(d->ring, k - 1));
                        if (used + cost > budget)
                                break;
                        used += cost;
                        k--;
                }
                return send_log_batch(c, id, d, k, total, true);
        }
        /* A stream: every line, in as many frames as it takes. */
        do {
                size_t used = 0, k = first;
                while (k < total) {
                        size_t cost = log_line_cost(d, log_ring_get(d->ring, k));
                        if (k > first && used + cost > budget)
                                break;
                        used += cost;
                        k++;
                }
                send_log_batch(c, id, d, first, k, false);
                first = k;
        } while (first < total && !c->closed);
}

void rpc_end_stream(struct conn *c, uint64_t id)
{
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.end_of_stream = true;
        conn_reply(c, &resp);
}

bool conn_is_closed(const struct conn *c) { return c->closed; }

static void call_logs(struct conn *c, uint64_t id, const Hostd__V1__LogsRequest *req)
{
        struct dyno *d = find_dyno(c, id, req->id);
        if (!d)
                return;

        size_t total = log_ring_count(d->ring);
        size_t first = req->lines && req->lines < total ? total - req->lines : 0;
        rpc_send_logs(c, id, d, first, req->follow);
        if (req->follow)
                dyno_follow_logs(d, c, id);
}

/* ---- images ---- */

static void image_to_proto(struct manager *m, const struct image_info *info, Hostd__V1__Image *o)
{
        hostd__v1__image__init(o);
        o->digest = (char *)info->digest;
        o->kind = info->kind == IMAGE_KIND_STACK ? HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK :
                                                   HOSTD__V1__IMAGE_KIND__IMAGE_KIND_SLUG;
        o->size_bytes = info->size_bytes;
        o->imported_usec = info->imported_usec;
        o->last_used_usec = info->last_used_usec;
        o->users = manager_image_users(m, info->digest);
}

void rpc_reply_image(struct conn *c, uint64_t id, struct manager *m, const struct image_info *info)
{
        Hostd__V1__Image img;
        image_to_proto(m, info, &img);
        Hostd__V1__ImageImportReply reply = HOSTD__V1__IMAGE_IMPORT_REPLY__INIT;
        reply.image = &img;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_IMAGE_IMPORT;
        resp.image_import = &reply;
        resp.end_of_stream = true;
        conn_reply(c, &resp);
}

static bool digest_checked(struct conn *c, uint64_t id, const char *field, const char *digest)
{
        char msg[512];
        int code = validate_digest(field, digest, msg, sizeof msg);
        if (code)
                conn_reply_error(c, id, code, "%s", msg);
        return code == 0;
}

static void call_image_import(struct conn *c, uint64_t id, const Hostd__V1__ImageImportRequest *req)
{
        struct manager *m = c->srv->m;
        char msg[512];
        int code = validate_image_import(req, msg, sizeof msg);
        if (code)
                return conn_reply_error(c, id, code, "%s", msg);
        enum image_kind kind = req->kind == HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK ? IMAGE_KIND_STACK :
                                                                           IMAGE_KIND_SLUG;
        struct image_info info;
        if (!importer_busy(m, req->sha256) && image_lookup(m->images, req->sha256, &info) == 0) {
                if (info.kind != kind)
                        return conn_reply_error(c, id, API_ALREADY_EXISTS,
                                                "image %.12s is here already, as a %s", req->sha256,
                                                info.kind == IMAGE_KIND_STACK ? "stack" : "slug");
                return rpc_reply_image(c, id, m, &info);
        }
        int r = importer_start(m, req->source, req->sha256, kind, c, id);
        if (r < 0)
                conn_reply_error(c, id, API_INTERNAL,
                                 "image %.12s: start the import: %s", req->sha256, strerror(-r));
}

static void call_image_list(struct conn *c, uint64_t id)
{
        struct manager *m = c->srv->m;
        _cleanup_free_ struct image_info *infos = NULL;
        size_t n = 0;
        int r = image_list(m->images, &infos, &n);
        if (r < 0)
                return conn_reply_error(c, id, API_INTERNAL, "image_list: %s",
                                        strerror(-r));
        _cleanup_free_ Hostd__V1__Image *imgs = calloc(n ? n : 1, sizeof *imgs);
        _cleanup_free_ Hostd__V1__Image **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!imgs || !ptrs)
                return conn_reply_error(c, id, API_INTERNAL,
                                        "image_list: out of memory");
        for (size_t i = 0; i < n; i++) {
                image_to_proto(m, &infos[i], &imgs[i]);
                ptrs[i] = &imgs[i];
        }
        Hostd__V1__ImageListReply reply = HOSTD__V1__IMAGE_LIST_REPLY__INIT;
        reply.n_images = n;
        reply.images = ptrs;
        conn_reply_result(c, id, IMAGE_LIST, image_list, &reply);
}

static void call_image_remove(struct conn *c, uint64_t id, const Hostd__V1__ImageRemoveRequest *req)
{
        struct manager *m = c->srv->m;
        if (!digest_checked(c, id, "image_remove.digest", req->digest))
                return;
        if (importer_busy(m, req->digest))
                return conn_reply_error(c, id, API_FAILED_PRECONDITION,
                                        "image %.12s is being imported", req->digest);
        char err[512] = "";
        int r = image_remove(m->images, req->digest, manager_image_in_use, m, err, sizeof err);
        if (r == -ENOENT)
                return conn_reply_error(c, id, API_NOT_FOUND, "image %s not found",
                                        req->digest);
        if (r == -EBUSY)
                return conn_reply_error(c, id, API_FAILED_PRECONDITION, "%s", err);
        if (r < 0)
                return conn_reply_error(c, id, API_INTERNAL, "%s",
                                        *err ? err : strerror(-r));
        log_info("image %.12s removed", req->digest);
        importer_sweep(m);
        Hostd__V1__ImageRemoveReply reply = HOSTD__V1__IMAGE_REMOVE_REPLY__INIT;
        conn_reply_result(c, id, IMAGE_REMOVE, image_remove, &reply);
}

/* An image being imported is not in the store yet: gc cannot see it. */
static void call_image_gc(struct conn *c, uint64_t id, const Hostd__V1__ImageGcRequest *req)
{
        struct manager *m = c->srv->m;
        uint64_t budget = req->budget_case == HOSTD__V1__IMAGE_GC_REQUEST__BUDGET_BUDGET_BYTES ?
                                  req->budget_bytes :
                                  m->config->images_budget;
        _cleanup_strv_free_ char **removed = NULL;
        uint64_t freed = 0;
        int r = image_gc(m->images, budget, manager_image_in_use, m, &removed, &freed);
        if (r < 0)
                return conn_reply_error(c, id, API_INTERNAL, "image_gc: %s",
                                        strerror(-r));
        size_t n = 0;
        while (removed && removed[n])
                n++;
        log_info("image gc: %zu removed, %llu bytes freed (budget %llu)", n,
                 (unsigned long long)freed, (unsigned long long)budget);
        if (n > 0)
                importer_sweep(m);
        Hostd__V1__ImageGcReply reply = HOSTD__V1__IMAGE_GC_REPLY__INIT;
        reply.n_removed = n;
        reply.removed = removed;
        reply.freed_bytes = freed;
        conn_reply_result(c, id, IMAGE_GC, image_gc, &reply);
}

static const char *call_name(Hostd__V1__Request__CallCase cc)
{
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
                &hostd__v1__request__descriptor, (unsigned)cc);
        return f ? f->name : "unknown";
}

/* The calls a read-group member may make: they show, and change nothing. */
static bool call_reads_only(Hostd__V1__Request__CallCase cc)
{
        switch (cc) {
        case HOSTD__V1__REQUEST__CALL_GET:
        case HOSTD__V1__REQUEST__CALL_LIST:
        case HOSTD__V1__REQUEST__CALL_HOST_INFO:
        case HOSTD__V1__REQUEST__CALL_LOGS:
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_EVENTS:
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_METRICS:
        case HOSTD__V1__REQUEST__CALL_IMAGE_LIST: return true;
        default: return false;
        }
}

/* A call that answers later or opens a stream: what max-inflight counts. */
static bool adds_in_flight(const Hostd__V1__Request *req)
{
        switch (req->call_case) {
        case HOSTD__V1__REQUEST__CALL_START:
        case HOSTD__V1__REQUEST__CALL_STOP:
        case HOSTD__V1__REQUEST__CALL_RESTART:
        case HOSTD__V1__REQUEST__CALL_IMAGE_IMPORT:
        case HOSTD__V1__REQUEST__CALL_EXEC:
        case HOSTD__V1__REQUEST__CALL_ATTACH: return true;
        case HOSTD__V1__REQUEST__CALL_LOGS: return req->logs->follow;
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_EVENTS: return req->subscribe_events->follow;
        default: return false;
        }
}

static void conn_handle(struct conn *c, const uint8_t *msg, size_t len)
{
        struct manager *m = c->srv->m;
        Hostd__V1__Request *req = hostd__v1__request__unpack(NULL, len, msg);
        if (!req)
                return conn_protocol_error(c, API_INVALID_ARGUMENT,
                                           "a %zu-byte frame that is not a hostd.v1.Request", len);
        /* protobuf-c keeps strings NUL-terminated and silently cuts one holding a NUL byte:
         * such a request packs back smaller than it came. */
        if (hostd__v1__request__get_packed_size(req) != len) {
                conn_reply_error(
                        c, req->id, API_INVALID_ARGUMENT,
                        "request: a string holds a NUL byte, or the encoding is not canonical");
                hostd__v1__request__free_unpacked(req, NULL);
                return;
        }

        uint64_t id = req->id;
        if (c->read_only && !call_reads_only(req->call_case)) {
                log_notice("refused %s from a read-only client (read-group): it needs root",
                           call_name(req->call_case));
                conn_reply_error(c, id, API_PERMISSION_DENIED,
                                 "%s: permission denied: this client may only read (it is in "
                                 "read-group, not root)",
                                 call_name(req->call_case));
                hostd__v1__request__free_unpacked(req, NULL);
                return;
        }
        if (adds_in_flight(req) && conn_in_flight(c) >= c->max_inflight) {
                conn_reply_error(c, id, API_RESOURCE_EXHAUSTED,
                                 "%s: calls and streams in flight on this connection: %u, the "
                                 "limit (max-inflight); send it again once one has ended",
                                 call_name(req->call_case), conn_in_flight(c));
                hostd__v1__request__free_unpacked(req, NULL);
                return;
        }
        switch (req->call_case) {
        case HOSTD__V1__REQUEST__CALL_START:
                if (!req->start->spec) {
                        conn_reply_error(c, id, API_INVALID_ARGUMENT,
                                         "start.spec: required");
                        break;
                }
                manager_start(m, TAKE_PTR(req->start->spec), c, id);
                break;
        case HOSTD__V1__REQUEST__CALL_STOP:
                manager_stop(m, req->stop->id,
                             req->stop->grace_case == HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS,
                             req->stop->grace_seconds, c, id);
                break;
        case HOSTD__V1__REQUEST__CALL_RESTART:
                manager_restart(m, req->restart->id,
                                req->restart->grace_case ==
                                        HOSTD__V1__RESTART_REQUEST__GRACE_GRACE_SECONDS,
                                req->restart->grace_seconds, c, id);
                break;
        case HOSTD__V1__REQUEST__CALL_GET: call_get(c, id, req->get); break;
        case HOSTD__V1__REQUEST__CALL_LIST: call_list(c, id); break;
        case HOSTD__V1__REQUEST__CALL_HOST_INFO: call_host_info(c, id); break;
        case HOSTD__V1__REQUEST__CALL_DRAIN: call_drain(c, id, req->drain); break;
        case HOSTD__V1__REQUEST__CALL_UNDRAIN: call_undrain(c, id); break;
        case HOSTD__V1__REQUEST__CALL_LOGS: call_logs(c, id, req->logs); break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_IMPORT:
                call_image_import(c, id, req->image_import);
                break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_LIST: call_image_list(c, id); break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_REMOVE:
                call_image_remove(c, id, req->image_remove);
                break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_GC: call_image_gc(c, id, req->image_gc); break;
        case HOSTD__V1__REQUEST__CALL_EXEC: exec_start(m, c, id, req->exec); break;
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_EVENTS:
                events_subscribe(m->events, c, id, req->subscribe_events->since,
                                 req->subscribe_events->follow);
                break;
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_METRICS:
                metrics_subscribe(m, c, id, req->subscribe_metrics);
                break;
        case HOSTD__V1__REQUEST__CALL_ATTACH: exec_attach(m, c, id, req->attach); break;
        case HOSTD__V1__REQUEST__CALL_STREAM_INPUT: exec_input(m, c, id, req->stream_input); break;
        case HOSTD__V1__REQUEST__CALL__NOT_SET:
                conn_reply_error(c, id, API_INVALID_ARGUMENT, "request: no call set");
                break;
        default:
                conn_reply_error(c, id, API_UNIMPLEMENTED,
                                 "%s: not implemented by hostd %s", call_name(req->call_case),
                                 HOSTD_VERSION);
                break;
        }
        hostd__v1__request__free_unpacked(req, NULL);
}

/* ---- connections ---- */

#define USEC_PER_SEC 1000000ULL

/* The rest of a batch waits for the deferred source, whose priority is below every other
 * client's and beside the dynos' log pipes: a flooding client takes only what is left. Its
 * socket's EPOLLIN is off meanwhile, or it would be read at the default priority anyway. */
static void conn_schedule(struct conn *c)
{
        if (c->closed)
                return;
        c->deferred = true;
        sd_event_source_set_enabled(c->work, SD_EVENT_ONESHOT);
}

/* Handle up to CONN_BATCH requests, reading from the peer whenever none is buffered whole. */
static void conn_process(struct conn *c)
{
        unsigned handled = 0;

        conn_take(c);
        c->batching = true;
        while (!c->closed && !c->close_after_flush) {
                if (handled == CONN_BATCH) {
                        conn_schedule(c); /* the rest after the others' turn */
                        break;
                }
                const uint8_t *msg;
                size_t len;
                int r = frame_reader_next(&c->rd, &msg, &len);
                if (r > 0) {
                        c->active_usec = now_monotonic_usec();
                        conn_handle(c, msg, len);
                        handled++;
                        continue;
                }
                if (r == -EMSGSIZE) {
                        conn_protocol_error(c, API_RESOURCE_EXHAUSTED,
                                            "frame over the limit of %zu bytes (max-frame)",
                                            c->rd.max);
                        break;
                }
                if (r < 0) {
                        conn_protocol_error(c, API_INVALID_ARGUMENT,
                                            "malformed frame length");
                        break;
                }
                ssize_t n = conn_recv(c);
                if (n > 0)
                        continue;
                if (n == -EAGAIN)
                        break;
                if (n < 0)
                        log_debug("connection %s: read: %s", c->peer, strerror((int)-n));
                else if (frame_reader_partial(&c->rd))
                        log_debug("connection %s: peer closed in the middle of a frame", c->peer);
                conn_close(c);
        }
        c->batching = false;
        conn_flush(c); /* one write for the batch's replies; sets the events */
        conn_release(c);
}

static void conn_arm_timer(struct conn *c, uint64_t usec)
{
        if (!c->timer)
                return;
        if (sd_event_source_set_time(c->timer, usec) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                log_warning("connection %s: cannot arm its timer", c->peer);
}

static void conn_handshake(struct conn *c)
{
        const struct config *cfg = c->srv->m->config;
        char why[256];

        ERR_clear_error();
        int k = SSL_do_handshake(c->ssl);
        if (k != 1) {
                int e = SSL_get_error(c->ssl, k);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        c->handshake_events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
                        conn_update_events(c);
                        return;
                }
                log_warning("TLS %s: refused: %s", c->peer,
                            tls_handshake_failure(c->ssl, e, why, sizeof why));
                conn_close(c);
                return;
        }

        c->handshaking = false;
        c->active_usec = now_monotonic_usec();
        if (cfg->idle_timeout > 0)
                conn_arm_timer(c, c->active_usec + cfg->idle_timeout * USEC_PER_SEC);
        else if (c->timer)
                c->timer = sd_event_source_disable_unref(c->timer);

        char who[320];
        if (!tls_peer_allowed(c->srv->tls, c->ssl, who, sizeof who)) {
                log_warning("TLS %s: refused: %s is not on the allow-list (tls-allow)", c->peer,
                            who);
                conn_hang_up(c, API_PERMISSION_DENIED,
                             "%s is not allowed on this host (tls-allow)", who);
                return;
        }
        log_info("TLS %s: %s connected", c->peer, who);
        /* Requests may have come with the handshake's last flight, inside OpenSSL already. */
        conn_process(c);
}

/* A TLS connection's first byte is a handshake record's type (22); anything else is a client
 * that does not speak TLS, such as one of the Unix socket's protocol: say so by name. */
static bool conn_speaks_tls(struct conn *c)
{
        if (c->first_byte_seen)
                return true;
        uint8_t b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true; /* not yet known: SSL_do_handshake() waits for it too */
        if (n <= 0) {
                log_info("TLS %s: closed before the handshake", c->peer);
                conn_close(c);
                return false;
        }
        if (b != 22) {
                log_warning("TLS %s: refused: not TLS (the first byte is 0x%02x, a TLS handshake "
                            "starts with 0x16)",
                            c->peer, b);
                conn_close(c);
                return false;
        }
        c->first_byte_seen = true;
        return true;
}

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;

        conn_take(c);
        if (c->handshaking) {
                if (conn_speaks_tls(c))
                        conn_handshake(c);
        } else {
                if ((revents & EPOLLOUT) || (c->write_wants_read && (revents & EPOLLIN)))
                        conn_flush(c);
                bool readable = (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
                                (c->read_wants_write && (revents & EPOLLOUT));
                if (!c->closed && readable) {
                        if (!c->close_after_flush)
                                conn_process(c);
                        else if (revents & (EPOLLHUP | EPOLLERR))
                                conn_close(c); /* gone: nobody to answer */
                }
        }
        conn_release(c);
        return 0;
}

static bool peer_in_group(int fd, gid_t primary, gid_t want)
{
        if (primary == want)
                return true;
        gid_t groups[256];
        socklen_t len = sizeof groups;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false; /* more than 256 groups, or an old kernel: primary only */
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == want)
                        return true;
        return false;
}

/* Root may do everything, a read-group member may read; anyone else is refused (the socket's
 * mode keeps them out already: this holds should its folder be opened up). */
static bool peer_allowed(struct rpc_server *srv, int fd, bool *ret_read_only)
{
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(errno, "refusing a connection: its credentials: %m");
                return false;
        }
        *ret_read_only = cred.uid != 0;
        if (cred.uid == 0)
                return true;
        if (srv->read_gid != (gid_t)-1 && peer_in_group(fd, cred.gid, srv->read_gid))
                return true;
        log_notice("refusing a connection from uid %u (pid %d): neither root nor in read-group "
                   "'%s'",
                   (unsigned)cred.uid, (int)cred.pid, srv->m->config->read_group);
        return false;
}

static int on_work(sd_event_source *s, void *userdata)
{
        struct conn *c = userdata;
        c->deferred = false;
        if (!c->handshaking)
                conn_process(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct conn *c = userdata;
        const struct config *cfg = c->srv->m->config;

        if (c->handshaking) {
                log_warning("TLS %s: refused: no TLS handshake within %" PRIu32
                            " s (tls-handshake-timeout)",
                            c->peer, cfg->tls_handshake_timeout);
                conn_close(c);
                return 0;
        }
        uint64_t now = now_monotonic_usec(), idle = cfg->idle_timeout * USEC_PER_SEC;
        if (c->close_after_flush && now >= c->active_usec + idle) {
                conn_close(c); /* its last words were not read in all that time */
                return 0;
        }
        if (!c->close_after_flush && (conn_in_flight(c) > 0 || frame_writer_pending(&c->wr) > 0)) {
                conn_arm_timer(c, now + idle); /* busy: look again later */
                return 0;
        }
        if (now < c->active_usec + idle) {
                conn_arm_timer(c, c->active_usec + idle);
                return 0;
        }
        log_info("connection %s: closed after %" PRIu32 " s without a request (idle-timeout)",
                 c->peer, cfg->idle_timeout);
        conn_hang_up(c, API_UNAVAILABLE,
                     "closed after %" PRIu32 " s without a request (idle-timeout)",
                     cfg->idle_timeout);
        return 0;
}

/* A connection on an accepted socket (taken over: closed on failure too). */
static int conn_new(struct rpc_server *srv, int cfd, const char *peer, bool tls, bool read_only)
{
        struct manager *m = srv->m;
        const struct config *cfg = m->config;
        struct conn *c = calloc(1, sizeof *c);
        int r = -ENOMEM;

        if (!c) {
                close(cfd);
                return r;
        }
        c->ref = 1;
        c->srv = srv;
        c->read_only = read_only;
        c->max_inflight = cfg->max_inflight;
        c->fd = cfd;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        frame_reader_init(&c->rd, cfg->max_frame);
        frame_writer_init(&c->wr, CONN_MAX_PENDING);
        if (tls) {
                c->ssl = tls_server_new_ssl(srv->tls, cfd);
                if (!c->ssl)
                        goto fail;
                c->handshaking = true;
                c->handshake_events = EPOLLIN;
        }
        c->active_usec = now_monotonic_usec();
        uint64_t secs = tls ? cfg->tls_handshake_timeout : cfg->idle_timeout;
        r = sd_event_add_io(m->event, &c->source, cfd, EPOLLIN, on_conn, c);
        if (r >= 0)
                r = sd_event_add_defer(m->event, &c->work, on_work, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->work, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_source_set_priority(c->work, HOSTD_PRIORITY_LOGS);
        if (r >= 0 && secs > 0)
                r = sd_event_add_time(m->event, &c->timer, CLOCK_MONOTONIC,
                                      c->active_usec + secs * USEC_PER_SEC, USEC_PER_SEC / 10,
                                      on_timer, c);
        if (r < 0)
                goto fail;
        srv->n_conns++;
        c->next = srv->conns;
        if (c->next)
                c->next->prev = c;
        srv->conns = c;
        return 0;
fail:
        c->source = sd_event_source_disable_unref(c->source);
        c->work = sd_event_source_disable_unref(c->work);
        c->timer = sd_event_source_disable_unref(c->timer);
        close(cfd);
        conn_free(c);
        return r;
}

/* Accept one connection: its descriptor, or a negative errno (logged unless EAGAIN). */
static int accept_one(struct rpc_server *srv, int fd, struct sockaddr_storage *sa, socklen_t *salen)
{
        int cfd = accept4(fd, (struct sockaddr *)sa, salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accept: %m");
                return -errno;
        }
        return cfd;
}

static bool over_limit(struct rpc_server *srv, const char *peer)
{
        if (srv->n_conns < srv->m->config->max_connections)
                return false;
        log_warning("refusing a connection from %s: %zu open, the limit (max-connections)", peer,
                    srv->n_conns);
        return true;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct rpc_server *srv = userdata;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int cfd = accept_one(srv, fd, &sa, &salen);
        if (cfd < 0)
                return 0;
        char peer[64] = "a local client";
        struct ucred cred;
        socklen_t n = sizeof cred;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0)
                snprintf(peer, sizeof peer, "pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
        if (over_limit(srv, peer)) {
                close(cfd);
                return 0;
        }
        bool read_only;
        if (!peer_allowed(srv, cfd, &read_only)) {
                close(cfd);
                return 0;
        }
        int r = conn_new(srv, cfd, peer, false, read_only);
        if (r < 0)
                log_error_errno(r, "connection %s: set up: %m", peer);
        return 0;
}

static int on_accept_tls(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct rpc_server *srv = userdata;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int cfd = accept_one(srv, fd, &sa, &salen);
        if (cfd < 0)
                return 0;
        char host[INET6_ADDRSTRLEN] = "?", peer[INET6_ADDRSTRLEN + 16];
        if (sa.ss_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&sa;
                inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
                snprintf(peer, sizeof peer, "[%s]:%u", host, ntohs(a->sin6_port));
        } else {
                const struct sockaddr_in *a = (const struct sockaddr_in *)&sa;
                inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
                snprintf(peer, sizeof peer, "%s:%u", host, ntohs(a->sin_port));
        }
        if (over_limit(srv, peer)) {
                close(cfd);
                return 0;
        }
        /* Replies are small and a client waits for each: do not hold them back (Nagle). */
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = conn_new(srv, cfd, peer, true, false);
        if (r < 0)
                log_error_errno(r, "TLS %s: set up the connection: %m", peer);
        return 0;
}

static int tcp_listen(const char *addr)
{
        struct sockaddr_storage ss;
        unsigned len;
        int r = config_parse_listen(addr, &ss, &len);
        if (r < 0)
                return r;
        _cleanup_close_ int fd =
                socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* Find read-group's gid; and, on a socket hostd made itself, give the socket to that group:
 * its members may connect (and then only read). A socket systemd passed keeps the owner and
 * mode its socket unit gave it (SocketGroup=, SocketMode=). */
static int read_group_setup(const struct config *c, const char *path, bool own_socket, gid_t *ret)
{
        const char *g = c->read_group;
        if (!*g)
                return 0;
        uint64_t n;
        gid_t gid;
        if (safe_atou64(g, &n) == 0 && n < (gid_t)-1)
                gid = (gid_t)n;
        else {
                struct group *gr = getgrnam(g);
                if (!gr) {
                        log_notice("read-group '%s' is not a group here: only root may use %s", g,
                                   path);
                        return 0;
                }
                gid = gr->gr_gid;
        }
        if (own_socket && (chown(path, 0, gid) < 0 || chmod(path, 0660) < 0))
                return log_error_errno(errno, "give %s to group %s: %m", path, g);
        *ret = gid;
        return 0;
}

/* The listening socket systemd passed (socket activation, hostd.socket), or -ENOENT when none
 * was passed. It must be the configured socket: hostd serves one socket, at one path. */
static int listen_fd_from_systemd(const char *path)
{
        int n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "read the sockets systemd passed: %m");
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return log_error_errno(EINVAL, "systemd passed %d sockets; hostd takes one, %s", n,
                                       path);
        int fd = SD_LISTEN_FDS_START;
        int r = sd_is_socket_unix(fd, SOCK_STREAM, 1, path, 0);
        if (r < 0)
                return log_error_errno(r, "check the socket systemd passed: %m");
        if (r == 0)
                return log_error_errno(EINVAL,
                                       "the socket systemd passed is not a listening stream "
                                       "socket at %s (ListenStream= must be the 'socket' setting)",
                                       path);
        /* accept() runs until EAGAIN; systemd's sockets are blocking unless NonBlocking=. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return log_error_errno(errno, "make the socket systemd passed non-blocking: %m");
        return fd;
}

int rpc_server_new(struct manager *m, struct tls_server *tls, struct rpc_server **ret)
{
        const struct config *cfg = m->config;
        struct rpc_server *srv = calloc(1, sizeof *srv);
        if (!srv) {
                tls_server_free(tls);
                return log_error_errno(ENOMEM, "API server: %m");
        }
        srv->m = m;
        srv->fd = srv->tls_fd = -1;
        srv->tls = tls;

        /* The TLS port first: a client that sees the socket answer may go on to it at once. */
        int r = 0;
        if (tls) {
                r = tcp_listen(cfg->listen_tls);
                if (r < 0) {
                        log_error_errno(r, "listen-tls %s: %m", cfg->listen_tls);
                        goto fail;
                }
                srv->tls_fd = r;
                r = sd_event_add_io(m->event, &srv->tls_source, srv->tls_fd, EPOLLIN, on_accept_tls,
                                    srv);
                if (r < 0) {
                        log_error_errno(r, "watch listen-tls %s: %m", cfg->listen_tls);
                        goto fail;
                }
        }

        r = listen_fd_from_systemd(cfg->socket_path);
        bool own_socket = r == -ENOENT;
        if (own_socket)
                r = unix_listen(cfg->socket_path, "hostd");
        else if (r >= 0)
                log_info("serving %s, the socket systemd passed", cfg->socket_path);
        if (r < 0)
                goto fail;
        srv->fd = r;
        srv->read_gid = (gid_t)-1;
        r = read_group_setup(cfg, cfg->socket_path, own_socket, &srv->read_gid);
        if (r < 0)
                goto fail;
        r = sd_event_add_io(m->event, &srv->source, srv->fd, EPOLLIN, on_accept, srv);
        if (r < 0) {
                log_error_errno(r, "watch %s: %m", cfg->socket_path);
                goto fail;
        }
        *ret = srv;
        return 0;
fail:
        rpc_server_free(srv);
        return r;
}

void rpc_server_reload_tls(struct rpc_server *s)
{
        const struct config *cfg = s->m->config;
        char err[512];

        if (!s->tls) {
                log_info("SIGHUP: no listen-tls, nothing to reload");
                return;
        }
        if (tls_server_reload(s->tls, err, sizeof err) < 0) {
                log_error("TLS: reload failed, new connections keep the certificates in use: %s",
                          err);
                return;
        }
        log_info("TLS: reloaded tls-cert %s, tls-key %s and tls-ca %s for new connections",
                 cfg->tls_cert, cfg->tls_key, cfg->tls_ca);
}

void rpc_server_free(struct rpc_server *s)
{
        if (!s)
                return;
        /* What the manager still holds of a connection then sees it closed, never s. */
        while (s->conns)
                conn_close(s->conns);
        s->source = sd_event_source_disable_unref(s->source);
        s->tls_source = sd_event_source_disable_unref(s->tls_source);
        closep(&s->fd);
        closep(&s->tls_fd);
        tls_server_free(s->tls);
        free(s);
}
