/* The API's transport: gRPC over HTTP/2 (libnghttp2) on the sd-event loop. See grpc-server.h.
 *
 * Two listeners feed one kind of connection: the Unix socket (operators, local tools) and,
 * with listen-tls, TCP with mutual TLS (the control plane). A connection is plain or TLS only
 * in how its bytes move (conn_recv(), conn_send()); HTTP/2, the calls and the limits are the
 * same. Each connection has an nghttp2 server session driven by memory: bytes read are fed to
 * nghttp2_session_mem_recv(), whose callbacks build the calls, and what
 * nghttp2_session_mem_send() returns is written out while the socket takes it. A peer that
 * does not speak HTTP/2 is told so, if it can be, and disconnected; it never takes hostd or
 * another client with it.
 *
 * A call (struct call, call.h) is one stream. The stream holds one reference, dropped when
 * nghttp2 closes the stream; whoever answers later holds theirs. Responses queue on the call
 * (chunks of length-prefixed messages) and nghttp2 pulls them through the data source as the
 * client's flow-control window allows; what a slow reader leaves queued is bounded per stream
 * and per connection. Requests are taken with automatic WINDOW_UPDATE off: bytes are consumed
 * once a message is handed over, so a client-streaming call whose owner has not asked for
 * input yet holds its client by flow control, not by our memory.
 *
 * Fairness: each wake-up of a connection starts or feeds at most CONN_BATCH calls and reads at
 * most CONN_READ_BUDGET bytes; what is left (bytes not yet given to nghttp2, or decrypted
 * inside OpenSSL, which epoll cannot see) is taken up by the connection's deferred source
 * after the other sources of the loop had their turn.
 *
 * Callbacks of nghttp2 never write to the socket nor free the session: answers given from
 * inside them (a handler that replies at once) are flushed when the read returns, answers
 * given later through a deferred source, once per turn of the loop for all of them. */
#include "grpc-server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "grpc-internal.h"
#include "grpc-wire.h"
#include "tls.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)

/* Calls started or fed per wake-up of one connection before the others get their turn, and
 * bytes read. */
#define CONN_BATCH 16
#define CONN_READ_BUDGET (256u << 10)
/* One TLS record's worth per read. */
#define CONN_READ_CHUNK 16384
/* Bytes handed to nghttp2 at a time, so that a batch can stop within what was read. */
#define CONN_FEED_PIECE 2048
/* Bytes taken from nghttp2 before they are written. */
#define CONN_OUT_MAX (64u << 10)
/* Flow-control windows we give a client: per stream (what a held client stream may leave
 * unread), and for the connection. */
#define STREAM_WINDOW (256u << 10)
#define CONN_WINDOW (4u << 20)
/* A request's headers, names and values with HPACK's 32 bytes each; a path. */
#define HEADER_BYTES_MAX 16384
#define PATH_LEN_MAX 512
#define DEFAULT_MAX_PENDING_STREAM (16u << 20)
#define DEFAULT_MAX_PENDING_CONN (64u << 20)
#define DEFAULT_KEEPALIVE_TIMEOUT 20
/* A connection that said its last words (GOAWAY) or is refused gets this long to read them. */
#define CLOSE_GRACE_USEC (5 * USEC_PER_SEC)
/* Below the default priority: a connection's work left after its batch (HOSTD_PRIORITY_LOGS,
 * beside the dynos' log pipes). */
#define PRIORITY_BATCH 10
/* A message of grpc-message at most (longer ones are cut). */
#define STATUS_MESSAGE_MAX 1024

struct route {
        const char *path; /* "/hostd.v1.Hostd/Start", owned */
        const struct grpc_method *method;
        const struct grpc_service *service;
};

struct grpc_server {
        sd_event *event;
        struct grpc_server_options opts; /* strings owned */
        int fd;
        sd_event_source *source;
        int tls_fd; /* listen-tls; -1: none */
        sd_event_source *tls_source;
        struct tls_server *tls;
        gid_t read_gid;       /* read-group's; (gid_t)-1: none */
        size_t n_conns;       /* both listeners: max-connections counts them together */
        size_t n_handshaking; /* TLS connections not authenticated yet */
        struct conn *conns;
        uint32_t max_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
        nghttp2_session_callbacks *callbacks;
        nghttp2_option *h2_options;
        struct route *routes; /* sorted by path */
        size_t n_routes;
        struct grpc_service *services; /* the caller's, then health and reflection */
        size_t n_services;
        const char **names;
        struct grpc_health *health;
        struct grpc_reflection *reflection;
        /* Calls whose owners learn of their end on the loop's next turn (call_send's bound). */
        struct call *notify;
        sd_event_source *notify_source;
};

struct chunk {
        struct chunk *next;
        size_t len, off;
        uint8_t data[];
};

struct conn {
        unsigned ref; /* 1 while open, and one for each function of this file at work on it */
        struct grpc_server *srv;  /* not to be used once closed: it may be gone */
        struct conn *prev, *next; /* the server's open connections */
        int fd;
        SSL *ssl; /* NULL: a plain connection (the Unix socket) */
        nghttp2_session *h2;
        sd_event_source *io;
        /* Input left after a batch: a timer already due rather than a defer source, as a defer
         * stays pending from the iteration it was made in and sd-event would take it before
         * every newer source of its priority (the dynos' log pipes) each time it is enabled. */
        sd_event_source *work;
        sd_event_source *flush; /* deferred: answers given outside a read */
        sd_event_source *timer; /* handshake, keepalive, idle and closing deadlines */
        struct call *calls;     /* with a stream open */
        size_t n_streams;
        uint32_t n_active; /* calls not ended: what max-inflight counts */
        size_t pending;    /* response bytes queued on all its calls */
        uint8_t in[CONN_READ_CHUNK];
        size_t in_off, in_len; /* read, not yet given to nghttp2 */
        uint8_t *out;
        size_t out_off, out_len, out_cap; /* from nghttp2, not yet written */
        unsigned dispatched;              /* calls started or fed in this batch */
        uint64_t created_usec, last_recv_usec, idle_since_usec, ping_sent_usec, close_usec;
        char *denied;                      /* TLS: why every call is refused (tls-allow) */
        char peer[INET6_ADDRSTRLEN + 352]; /* "pid 42 uid 0", "192.0.2.1:40000 CN=cp" */
        uint32_t handshake_events;         /* while handshaking: what SSL_accept waits for */
        bool handshaking;
        bool first_byte_seen;  /* of a TLS connection: it was a handshake's */
        bool read_wants_write; /* SSL_read needs the socket writable */
        bool write_wants_read; /* SSL_write needs it readable */
        bool deferred;         /* a batch ended with more to do: the deferred source goes on */
        bool in_h2;            /* inside nghttp2: no flush, no free */
        bool h2_started;
        bool got_bytes; /* the peer sent something: the server preface may go out */
        bool closing;   /* GOAWAY sent or refused: closed once flushed, or at close_usec */
        bool closed;
        bool read_only; /* a read-group member: only the methods marked read_only */
};

struct call {
        unsigned ref;
        struct conn *conn;        /* NULL once its stream is gone */
        struct call *prev, *next; /* the connection's */
        int32_t stream_id;
        const struct grpc_method *method; /* NULL until the headers named one */
        const struct grpc_service *service;
        char *path; /* :path, for call_method() */
        char *peer;
        /* The request's headers, while they come. */
        size_t header_bytes;
        uint64_t timeout_usec;
        char timeout_text[16];
        enum grpc_content_type content_type;
        char *bad_header;   /* why the headers are refused, once one is */
        char *bad_encoding; /* a grpc-encoding other than identity */
        bool is_post, te_trailers, has_timeout, too_big;
        bool accept_encoding; /* answer with grpc-accept-encoding: identity */
        /* The request. */
        uint8_t *in;
        size_t in_off, in_len, in_cap;
        size_t held;           /* received, not consumed: waits for call_on_input */
        ProtobufCMessage *req; /* unary: the message, until the half-close */
        bool started;          /* the handler ran */
        bool remote_closed;    /* the client half-closed */
        bool input_ended;      /* ... and the owner was told */
        bool active;           /* counted in n_active */
        /* The response. */
        struct chunk *out_head, *out_tail;
        size_t pending;
        unsigned http_status; /* of a trailers-only answer: 200 unless the request was not gRPC */
        bool headers_sent, data_deferred, trailers_pending;
        bool done;
        enum api_code status;
        char *status_message;
        sd_event_source *deadline;
        void (*on_cancel)(struct call *c, void *userdata);
        void *cancel_userdata;
        void (*on_input)(struct call *c, const ProtobufCMessage *msg, void *userdata);
        void *input_userdata;
        /* Set when the call ended without its owner: told by call_notify(). */
        void (*notify_fn)(struct call *c, void *userdata);
        void *notify_userdata;
        struct call *notify_next; /* in the server's queue (with a reference) */
};

static void conn_flush(struct conn *c);
static void conn_close(struct conn *c);
static void conn_arm_timer(struct conn *c);
static void call_parse_input(struct call *call);
static ssize_t call_data_read(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *data_flags, nghttp2_data_source *source, void *userdata);

static uint64_t loop_now(sd_event *e)
{
        uint64_t now;
        if (sd_event_now(e, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        return now;
}

/* ---- calls: what the rest of hostd sees (call.h) ---- */

static void chunks_free(struct call *call)
{
        while (call->out_head) {
                struct chunk *k = call->out_head;
                call->out_head = k->next;
                free(k);
        }
        call->out_tail = NULL;
        if (call->conn)
                call->conn->pending -= call->pending;
        call->pending = 0;
}

static void call_free(struct call *call)
{
        chunks_free(call);
        if (call->req)
                protobuf_c_message_free_unpacked(call->req, NULL);
        sd_event_source_disable_unref(call->deadline);
        free(call->in);
        free(call->path);
        free(call->peer);
        free(call->bad_header);
        free(call->bad_encoding);
        free(call->status_message);
        free(call);
}

struct call *call_ref(struct call *c)
{
        c->ref++;
        return c;
}

void call_unref(struct call *c)
{
        if (c && --c->ref == 0)
                call_free(c);
}

bool call_is_done(const struct call *c) { return c->done; }

size_t call_pending(const struct call *c) { return c->pending; }

const char *call_peer(const struct call *c) { return c->peer; }

const char *call_method(const struct call *c) { return c->path ? c->path : "(no path)"; }

void call_on_cancel(struct call *c, void (*fn)(struct call *c, void *userdata), void *userdata)
{
        if (c->done)
                return;
        c->on_cancel = fn;
        c->cancel_userdata = userdata;
}

/* Inside nghttp2 nothing is scheduled: the read or the flush that entered it flushes once it
 * returns (conn_process(), conn_flush()). */
static void conn_schedule_flush(struct conn *c)
{
        if (c && !c->closed && c->flush && !c->in_h2)
                sd_event_source_set_enabled(c->flush, SD_EVENT_ONESHOT);
}

/* Held input: a client-streaming call whose owner has not asked for more yet. */
static bool call_held(const struct call *call)
{
        return call->method && call->method->client_streaming && call->started && !call->done &&
               !call->on_input;
}

static void call_consume(struct call *call, size_t n)
{
        struct conn *c = call->conn;
        if (n > 0 && c && !c->closed && c->h2)
                (void)nghttp2_session_consume(c->h2, call->stream_id, n);
}

void call_on_input(struct call *c,
                   void (*fn)(struct call *c, const ProtobufCMessage *msg, void *userdata),
                   void *userdata)
{
        if (c->done)
                return;
        bool was_held = call_held(c);
        c->on_input = fn;
        c->input_userdata = userdata;
        if (was_held && fn && c->conn && !c->conn->closed) {
                /* What waited is taken up by the connection's work, on the loop. */
                c->conn->deferred = true;
                sd_event_source_set_enabled(c->conn->work, SD_EVENT_ONESHOT);
        }
}

/* The trailers, or the trailers-only answer: grpc-status and grpc-message. */
static int call_submit_status(struct call *call, bool trailers_only)
{
        struct conn *c = call->conn;
        char status[12], status_line[8], msg[STATUS_MESSAGE_MAX * 3 + 1];
        nghttp2_nv nv[6];
        size_t n = 0;

#define NV(k, v)                                                                                   \
        (nv[n++] = (nghttp2_nv){ (uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v),             \
                                 NGHTTP2_NV_FLAG_NONE })
        if (trailers_only) {
                snprintf(status_line, sizeof status_line, "%u", call->http_status);
                NV(":status", status_line);
                NV("content-type", "application/grpc");
        }
        snprintf(status, sizeof status, "%d", (int)call->status);
        NV("grpc-status", status);
        if (call->status_message && call->status_message[0])
                NV("grpc-message", grpc_percent_encode(call->status_message, msg, sizeof msg));
        if (call->accept_encoding)
                NV("grpc-accept-encoding", "identity");
#undef NV
        int r = trailers_only ? nghttp2_submit_response(c->h2, call->stream_id, nv, n, NULL) :
                                nghttp2_submit_trailer(c->h2, call->stream_id, nv, n);
        if (r < 0) {
                log_debug("connection %s: stream %d: status: %s", c->peer, call->stream_id,
                          nghttp2_strerror(r));
                nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                          NGHTTP2_INTERNAL_ERROR);
        }
        return r;
}

/* Tell the owner now of an end it did not make. */
static void call_notify(struct call *call)
{
        void (*fn)(struct call *, void *) = call->notify_fn;
        call->notify_fn = NULL;
        if (fn)
                fn(call, call->notify_userdata);
}

enum call_end_flags {
        END_SEND_STATUS = 1 << 0, /* the stream is there to carry it */
        END_TELL_OWNER = 1 << 1,  /* an end the owner did not make: keep its on_cancel to call */
};

/* The one place a call ends: finished, failed, refused or cancelled. */
static void call_end(struct call *call, enum api_code code, const char *message, unsigned flags)
{
        if (call->done)
                return;
        struct conn *c = call->conn;

        call->done = true;
        call->status = code;
        free(call->status_message);
        call->status_message = message ? strndup(message, STATUS_MESSAGE_MAX) : NULL;
        call->deadline = sd_event_source_disable_unref(call->deadline);
        if (call->active) {
                call->active = false;
                if (c)
                        c->n_active--;
        }
        if (call->req)
                protobuf_c_message_free_unpacked(TAKE_PTR(call->req), NULL);
        /* Input that waited is not wanted any more: let the client's window go. */
        call_consume(call, call->held);
        call->held = 0;
        free(TAKE_PTR(call->in));
        call->in_off = call->in_len = call->in_cap = 0;

        if ((flags & END_TELL_OWNER) && call->started && call->on_cancel) {
                call->notify_fn = call->on_cancel;
                call->notify_userdata = call->cancel_userdata;
        }
        call->on_cancel = NULL;
        call->on_input = NULL;

        if (!(flags & END_SEND_STATUS) || !c || c->closed || !c->h2)
                return;
        if (!call->headers_sent && !call->out_head) {
                call->headers_sent = true;
                call_submit_status(call, true);
        } else {
                call->trailers_pending = true;
                if (call->data_deferred) {
                        call->data_deferred = false;
                        nghttp2_session_resume_data(c->h2, call->stream_id);
                }
        }
        conn_schedule_flush(c);
}

/* The transport ends a call (a bad request, a deadline): the client gets the status, the
 * owner (if the handler ran) its on_cancel now. */
_printf_(3, 4) static void call_abort(struct call *call, enum api_code code, const char *fmt, ...)
{
        char msg[STATUS_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        call_end(call, code, msg, END_SEND_STATUS | END_TELL_OWNER);
        call_notify(call);
}

void call_finish(struct call *c) { call_end(c, API_OK, NULL, END_SEND_STATUS); }

void call_fail(struct call *c, enum api_code code, const char *fmt, ...)
{
        char msg[STATUS_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        call_end(c, code, msg, END_SEND_STATUS);
}

void call_reply(struct call *c, const ProtobufCMessage *msg)
{
        if (call_send(c, msg) >= 0)
                call_finish(c);
}

static int on_notify(sd_event_source *s, void *userdata)
{
        struct grpc_server *srv = userdata;
        while (srv->notify) {
                struct call *call = srv->notify;
                srv->notify = call->notify_next;
                call->notify_next = NULL;
                call_notify(call);
                call_unref(call);
        }
        return 0;
}

/* A slow reader passed a bound: the stream is reset with ENHANCE_YOUR_CALM, which clients map
 * to RESOURCE_EXHAUSTED (PROTOCOL-HTTP2), since trailers would wait behind the very data the
 * client does not read. The owner learns on the loop's next turn. */
static void call_overflow(struct call *call, size_t len, bool whole_conn)
{
        struct conn *c = call->conn;
        struct grpc_server *srv = c->srv;
        char msg[256];

        snprintf(msg, sizeof msg,
                 "%s: the client does not read its responses: %zu bytes queued%s, over the "
                 "limit of %" PRIu32 "",
                 call->path, (whole_conn ? c->pending : call->pending) + len,
                 whole_conn ? " on its connection" : "",
                 whole_conn ? srv->opts.max_pending_conn : srv->opts.max_pending_stream);
        log_info("connection %s: %s; stream cancelled (RESOURCE_EXHAUSTED)", c->peer, msg);
        chunks_free(call);
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_ENHANCE_YOUR_CALM);
        call_end(call, API_RESOURCE_EXHAUSTED, msg, END_TELL_OWNER);
        if (call->notify_fn) {
                call->notify_next = srv->notify;
                srv->notify = call_ref(call);
                sd_event_source_set_enabled(srv->notify_source, SD_EVENT_ONESHOT);
        }
        conn_schedule_flush(c);
}

/* Queue a response message of len bytes, which fill(dst, src) writes into place. */
static int call_queue(struct call *c, size_t len, void (*fill)(uint8_t *dst, const void *src),
                      const void *src)
{
        struct conn *conn = c->conn;
        if (c->done || !conn || conn->closed)
                return -ECANCELED;
        const struct grpc_server_options *o = &conn->srv->opts;

        if (len > UINT32_MAX) {
                call_end(c, API_INTERNAL, "response over 4 GiB", END_SEND_STATUS);
                return -EMSGSIZE;
        }
        size_t total = GRPC_PREFIX_LEN + len;
        /* One message is always taken when nothing waits: the bounds are on what piles up. */
        if (c->pending > 0 && c->pending + total > o->max_pending_stream) {
                call_overflow(c, total, false);
                return -ECANCELED;
        }
        if (c->pending > 0 && conn->pending + total > o->max_pending_conn) {
                call_overflow(c, total, true);
                return -ECANCELED;
        }
        struct chunk *k = malloc(sizeof *k + total);
        if (!k) {
                call_end(c, API_RESOURCE_EXHAUSTED, "out of memory for a response",
                         END_SEND_STATUS);
                return -ENOMEM;
        }
        k->next = NULL;
        k->len = total;
        k->off = 0;
        grpc_prefix_write(k->data, false, (uint32_t)len);
        fill(k->data + GRPC_PREFIX_LEN, src);
        if (c->out_tail)
                c->out_tail->next = k;
        else
                c->out_head = k;
        c->out_tail = k;
        c->pending += total;
        conn->pending += total;

        if (!c->headers_sent) {
                static const nghttp2_nv nv[] = {
                        { (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE },
                        { (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
                          NGHTTP2_NV_FLAG_NONE },
                };
                nghttp2_data_provider prd = { .source.ptr = c, .read_callback = call_data_read };
                int r = nghttp2_submit_response(conn->h2, c->stream_id, nv, ELEMENTSOF(nv), &prd);
                if (r < 0) {
                        log_debug("connection %s: stream %d: response: %s", conn->peer,
                                  c->stream_id, nghttp2_strerror(r));
                        chunks_free(c);
                        nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, c->stream_id,
                                                  NGHTTP2_INTERNAL_ERROR);
                        call_end(c, API_INTERNAL, "response", 0);
                        conn_schedule_flush(conn);
                        return -ECANCELED;
                }
                c->headers_sent = true;
        } else if (c->data_deferred) {
                c->data_deferred = false;
                nghttp2_session_resume_data(conn->h2, c->stream_id);
        }
        conn_schedule_flush(conn);
        return 0;
}

static void fill_message(uint8_t *dst, const void *src) { protobuf_c_message_pack(src, dst); }

int call_send(struct call *c, const ProtobufCMessage *msg)
{
        return call_queue(c, protobuf_c_message_get_packed_size(msg), fill_message, msg);
}

struct packed {
        const uint8_t *buf;
        size_t len;
};

static void fill_packed(uint8_t *dst, const void *src)
{
        const struct packed *p = src;
        memcpy(dst, p->buf, p->len);
}

int call_send_packed(struct call *c, const uint8_t *buf, size_t len)
{
        const struct packed p = { buf, len };
        return call_queue(c, len, fill_packed, &p);
}

/* nghttp2 pulls a stream's response: queued messages, then the trailers. */
static ssize_t call_data_read(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *data_flags, nghttp2_data_source *source, void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        struct call *call = source->ptr;
        size_t n = 0;
        while (n < length && call->out_head) {
                struct chunk *k = call->out_head;
                size_t take = k->len - k->off;
                if (take > length - n)
                        take = length - n;
                memcpy(buf + n, k->data + k->off, take);
                k->off += take;
                n += take;
                if (k->off == k->len) {
                        call->out_head = k->next;
                        if (!call->out_head)
                                call->out_tail = NULL;
                        free(k);
                }
        }
        call->pending -= n;
        c->pending -= n;
        if (!call->out_head && call->trailers_pending) {
                call->trailers_pending = false;
                *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
                call_submit_status(call, false);
                return (ssize_t)n;
        }
        if (n == 0) {
                call->data_deferred = true;
                return NGHTTP2_ERR_DEFERRED;
        }
        return (ssize_t)n;
}

/* ---- requests ---- */

static const struct route *route_find(const struct grpc_server *srv, const char *path)
{
        size_t lo = 0, hi = srv->n_routes;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(path, srv->routes[mid].path);
                if (k == 0)
                        return &srv->routes[mid];
                if (k < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

static bool service_known(const struct grpc_server *srv, const char *name, size_t len)
{
        for (size_t i = 0; i < srv->n_services; i++)
                if (strlen(srv->services[i].name) == len &&
                    memcmp(srv->services[i].name, name, len) == 0)
                        return true;
        return false;
}

/* A message from the wire: unpacked, canonical, and valid for the method; else the code,
 * with why in err. */
static enum api_code call_unpack(struct call *call, const uint8_t *data, size_t len,
                                 ProtobufCMessage **ret, char *err, size_t errlen)
{
        const ProtobufCMessageDescriptor *d = call->method->request;
        ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, len, data);
        if (!msg) {
                snprintf(err, errlen, "%s: the request is not a %s (%zu bytes)", call->path,
                         d->name, len);
                return API_INVALID_ARGUMENT;
        }
        /* protobuf-c keeps strings NUL-terminated and silently cuts one holding a NUL byte:
         * such a request packs back smaller than it came. */
        if (protobuf_c_message_get_packed_size(msg) != len) {
                protobuf_c_message_free_unpacked(msg, NULL);
                snprintf(err, errlen,
                         "%s: request: a string holds a NUL byte, or the encoding is not "
                         "canonical",
                         call->path);
                return API_INVALID_ARGUMENT;
        }
        if (call->method->validate) {
                err[0] = 0;
                enum api_code code =
                        call->method->validate(msg, call->service->userdata, err, errlen);
                if (code != API_OK) {
                        protobuf_c_message_free_unpacked(msg, NULL);
                        if (!err[0])
                                snprintf(err, errlen, "%s: the request is not valid", call->path);
                        return code;
                }
        }
        *ret = msg;
        return API_OK;
}

static void call_start(struct call *call, ProtobufCMessage *req)
{
        call->started = true;
        if (call->conn)
                call->conn->dispatched++;
        call_ref(call);
        call->method->handle(call, req, call->service->userdata);
        call_unref(call);
}

/* One whole message of the request. */
static void call_message(struct call *call, const uint8_t *data, size_t len)
{
        char err[STATUS_MESSAGE_MAX];
        ProtobufCMessage *msg;
        enum api_code code = call_unpack(call, data, len, &msg, err, sizeof err);
        if (code != API_OK) {
                call_abort(call, code, "%s", err);
                return;
        }
        if (!call->method->client_streaming) {
                if (call->req) {
                        protobuf_c_message_free_unpacked(msg, NULL);
                        call_abort(call, API_INVALID_ARGUMENT,
                                   "%s takes one request message; a second came", call->path);
                        return;
                }
                call->req = msg; /* the handler runs at the half-close */
                return;
        }
        if (!call->started) {
                call_start(call, msg);
                return;
        }
        if (call->conn)
                call->conn->dispatched++;
        call->on_input(call, msg, call->input_userdata);
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* The client half-closed and everything before was taken. */
static void call_input_end(struct call *call)
{
        if (call->done || call->input_ended || call_held(call))
                return;
        if (call->in_len > call->in_off) {
                call_abort(call, API_INVALID_ARGUMENT,
                           "%s: the request ended within a message (%zu bytes of it)", call->path,
                           call->in_len - call->in_off);
                return;
        }
        call->input_ended = true;
        if (!call->method->client_streaming) {
                if (!call->req)
                        call_abort(call, API_INVALID_ARGUMENT, "%s: no request message",
                                   call->path);
                else
                        call_start(call, TAKE_PTR(call->req));
                return;
        }
        if (!call->started) {
                call_abort(call, API_INVALID_ARGUMENT, "%s: no request message", call->path);
                return;
        }
        if (call->on_input) {
                if (call->conn)
                        call->conn->dispatched++;
                call->on_input(call, NULL, call->input_userdata);
        }
}

/* Take the whole messages buffered on the call, as far as the owner wants them. */
static void call_parse_input(struct call *call)
{
        struct conn *c = call->conn;
        const uint32_t max = c->srv->opts.max_message;

        call_ref(call);
        while (!call->done && !call_held(call) && call->in_len - call->in_off >= GRPC_PREFIX_LEN) {
                const uint8_t *p = call->in + call->in_off;
                bool compressed;
                uint32_t len;
                if (grpc_prefix_parse(p, &compressed, &len) < 0) {
                        call_abort(call, API_INVALID_ARGUMENT,
                                   "%s: a message prefix with the flag byte 0x%02x (0 or 1)",
                                   call->path, p[0]);
                        break;
                }
                if (compressed) {
                        call->accept_encoding = true;
                        call_abort(call, API_UNIMPLEMENTED,
                                   "%s: a compressed message: this server takes identity "
                                   "encoding only",
                                   call->path);
                        break;
                }
                if (len > max) {
                        call_abort(call, API_RESOURCE_EXHAUSTED,
                                   "%s: a request message of %" PRIu32 " bytes, over the limit "
                                   "of %" PRIu32 " (max-message)",
                                   call->path, len, max);
                        break;
                }
                size_t whole = GRPC_PREFIX_LEN + (size_t)len;
                if (call->in_len - call->in_off < whole) {
                        /* Room for the rest at once, rather than growing with every frame. */
                        if (call->in_off > 0) {
                                memmove(call->in, p, call->in_len - call->in_off);
                                call->in_len -= call->in_off;
                                call->in_off = 0;
                        }
                        if (call->in_cap < whole) {
                                uint8_t *b = realloc(call->in, whole);
                                if (!b) {
                                        call_abort(call, API_RESOURCE_EXHAUSTED,
                                                   "%s: out of memory for a request of %zu bytes",
                                                   call->path, whole);
                                        break;
                                }
                                call->in = b;
                                call->in_cap = whole;
                        }
                        break;
                }
                call->in_off += whole;
                call_message(call, p + GRPC_PREFIX_LEN, len);
        }
        if (!call->done && call->in_off == call->in_len)
                call->in_off = call->in_len = 0;
        if (!call->done && call->remote_closed && !call_held(call))
                call_input_end(call);
        call_unref(call);
}

/* What waited for call_on_input, once it is set: taken on the connection's work. */
static void conn_release_held(struct conn *c)
{
        for (struct call *call = c->calls, *next; call && !c->closed; call = next) {
                next = call->next;
                if (call_held(call) || call->done || !call->started)
                        continue;
                if (call->held == 0 && call->in_len == call->in_off &&
                    !(call->remote_closed && !call->input_ended))
                        continue;
                call_ref(call);
                call_consume(call, call->held);
                call->held = 0;
                call_parse_input(call);
                next = call->next; /* it may have left the list meanwhile */
                call_unref(call);
        }
}

static void call_deadline_text(uint64_t usec, char *buf, size_t len)
{
        if (usec % USEC_PER_SEC == 0)
                snprintf(buf, len, "%" PRIu64 " s", usec / USEC_PER_SEC);
        else if (usec % USEC_PER_MSEC == 0)
                snprintf(buf, len, "%" PRIu64 " ms", usec / USEC_PER_MSEC);
        else
                snprintf(buf, len, "%" PRIu64 " us", usec);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct call *call = userdata;
        char t[32];
        call_deadline_text(call->timeout_usec, t, sizeof t);
        call_ref(call);
        log_debug("connection %s: %s: deadline of %s passed", call->peer, call->path, t);
        call_abort(call, API_DEADLINE_EXCEEDED, "%s: deadline exceeded (%s, grpc-timeout)",
                   call->path, t);
        call_unref(call);
        return 0;
}

/* The request's headers are all there: who may call what, and the limits. */
static void call_headers_done(struct call *call)
{
        struct conn *c = call->conn;
        struct grpc_server *srv = c->srv;

        if (c->denied) {
                call_abort(call, API_PERMISSION_DENIED, "%s", c->denied);
                return;
        }
        if (call->too_big) {
                call_abort(call, API_RESOURCE_EXHAUSTED, "request headers over %u bytes",
                           HEADER_BYTES_MAX);
                return;
        }
        if (call->bad_header) {
                call_abort(call, API_INVALID_ARGUMENT, "%s", call->bad_header);
                return;
        }
        if (!call->is_post) {
                call->http_status = 405;
                call_abort(call, API_UNIMPLEMENTED, "gRPC takes POST requests only");
                return;
        }
        if (call->content_type == GRPC_CONTENT_NOT_GRPC) {
                call->http_status = 415;
                call_abort(call, API_INVALID_ARGUMENT,
                           "content-type: not application/grpc (this is a gRPC server)");
                return;
        }
        if (call->content_type == GRPC_CONTENT_OTHER_SUB) {
                call_abort(call, API_UNIMPLEMENTED,
                           "content-type: this server speaks application/grpc+proto only");
                return;
        }
        if (!call->path || call->path[0] != '/') {
                call_abort(call, API_UNIMPLEMENTED, "no method in the path");
                return;
        }
        const struct route *rt = route_find(srv, call->path);
        if (!rt) {
                const char *slash = strchr(call->path + 1, '/');
                if (slash && service_known(srv, call->path + 1, (size_t)(slash - call->path - 1)))
                        call_abort(call, API_UNIMPLEMENTED,
                                   "unknown method %s: the service has "
                                   "no method %s",
                                   call->path, slash + 1);
                else
                        call_abort(call, API_UNIMPLEMENTED,
                                   "unknown method %s: this server has no such service",
                                   call->path);
                return;
        }
        call->method = rt->method;
        call->service = rt->service;
        if (call->bad_encoding) {
                call->accept_encoding = true;
                call_abort(call, API_UNIMPLEMENTED, "%s: %s", call->path, call->bad_encoding);
                return;
        }
        if (!call->te_trailers) {
                call_abort(call, API_INVALID_ARGUMENT,
                           "%s: no 'te: trailers' header (gRPC clients send it)", call->path);
                return;
        }
        if (c->read_only && !call->method->read_only) {
                log_notice("connection %s: refused %s from a read-only client (read-group): it "
                           "needs root",
                           c->peer, call->path);
                call_abort(call, API_PERMISSION_DENIED,
                           "%s: permission denied: this client may only read (it is in "
                           "read-group, not root)",
                           call->path);
                return;
        }
        if (c->n_active >= srv->opts.max_inflight) {
                call_abort(call, API_RESOURCE_EXHAUSTED,
                           "%s: calls in flight on this connection: %" PRIu32 ", the limit "
                           "(max-inflight); send it again once one has ended",
                           call->path, c->n_active);
                return;
        }
        call->active = true;
        c->n_active++;
        if (call->has_timeout) {
                int r = sd_event_add_time_relative(srv->event, &call->deadline, CLOCK_MONOTONIC,
                                                   call->timeout_usec, USEC_PER_MSEC, on_deadline,
                                                   call);
                if (r < 0) {
                        call_abort(call, API_RESOURCE_EXHAUSTED, "%s: deadline timer: %s",
                                   call->path, strerror(-r));
                        return;
                }
        }
}

/* ---- nghttp2's callbacks ---- */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        struct call *call = calloc(1, sizeof *call);
        if (!call || !(call->peer = strdup(c->peer))) {
                free(call);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        call->ref = 1; /* the stream's */
        call->conn = c;
        call->stream_id = frame->hd.stream_id;
        call->http_status = 200;
        call->content_type = GRPC_CONTENT_NOT_GRPC;
        if (nghttp2_session_set_stream_user_data(h2, call->stream_id, call) < 0) {
                call_free(call);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        call->next = c->calls;
        if (c->calls)
                c->calls->prev = call;
        c->calls = call;
        c->n_streams++;
        return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
        return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0; /* the client's trailers: nothing in them for us */
        struct call *call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
        if (!call)
                return 0;
        call->header_bytes += namelen + valuelen + 32;
        if (call->header_bytes > HEADER_BYTES_MAX) {
                call->too_big = true;
                return 0;
        }
        const char *v = (const char *)value;
        if (header_is(name, namelen, ":method"))
                call->is_post = valuelen == 4 && memcmp(v, "POST", 4) == 0;
        else if (header_is(name, namelen, ":path")) {
                if (valuelen > PATH_LEN_MAX)
                        call->too_big = true;
                else if (!call->path && !(call->path = strndup(v, valuelen)))
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        } else if (header_is(name, namelen, "content-type"))
                call->content_type = grpc_content_type_parse(v, valuelen);
        else if (header_is(name, namelen, "te"))
                call->te_trailers = valuelen == 8 && memcmp(v, "trailers", 8) == 0;
        else if (header_is(name, namelen, "grpc-timeout")) {
                if (grpc_timeout_parse(v, valuelen, &call->timeout_usec) < 0) {
                        char esc[64];
                        _cleanup_free_ char *s = strndup(v, valuelen < 32 ? valuelen : 32);
                        free(call->bad_header);
                        if (asprintf_safe(&call->bad_header,
                                          "grpc-timeout '%s': not 1 to 8 digits and a unit "
                                          "(H, M, S, m, u, n)",
                                          s ? escape_value(s, 32, esc, sizeof esc) : "?") < 0)
                                call->bad_header = NULL;
                } else
                        call->has_timeout = true;
        } else if (header_is(name, namelen, "grpc-encoding")) {
                if (!(valuelen == 8 && memcmp(v, "identity", 8) == 0) && !call->bad_encoding) {
                        char esc[64];
                        _cleanup_free_ char *s = strndup(v, valuelen < 32 ? valuelen : 32);
                        if (asprintf_safe(&call->bad_encoding,
                                          "grpc-encoding '%s': this server takes identity only",
                                          s ? escape_value(s, 32, esc, sizeof esc) : "?") < 0)
                                call->bad_encoding = NULL;
                }
        }
        return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        struct call *call = NULL;

        switch (frame->hd.type) {
        case NGHTTP2_HEADERS:
        case NGHTTP2_DATA:
                call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
                if (!call)
                        return 0;
                call_ref(call);
                if (frame->hd.type == NGHTTP2_HEADERS &&
                    frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
                        call_headers_done(call);
                }
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
                        call->remote_closed = true;
                        call_input_end(call);
                }
                call_unref(call);
                break;
        case NGHTTP2_PING:
                if (frame->hd.flags & NGHTTP2_FLAG_ACK)
                        c->ping_sent_usec = 0;
                break;
        case NGHTTP2_GOAWAY:
                log_debug("connection %s: the client sent GOAWAY (%s)", c->peer,
                          nghttp2_http2_strerror(frame->goaway.error_code));
                break;
        default: break;
        }
        return 0;
}

static int on_data_chunk_recv(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        struct call *call = nghttp2_session_get_stream_user_data(h2, stream_id);
        if (!call || call->done || !call->method || call->input_ended) {
                (void)nghttp2_session_consume(h2, stream_id, len);
                return 0;
        }
        if (call->in_cap - call->in_len < len) {
                size_t want = call->in_len + len;
                uint8_t *b = realloc(call->in, want);
                if (!b) {
                        (void)nghttp2_session_consume(h2, stream_id, len);
                        call_abort(call, API_RESOURCE_EXHAUSTED, "%s: out of memory", call->path);
                        return 0;
                }
                call->in = b;
                call->in_cap = want;
        }
        memcpy(call->in + call->in_len, data, len);
        call->in_len += len;
        if (call_held(call))
                call->held += len;
        else
                (void)nghttp2_session_consume(h2, stream_id, len);
        call_parse_input(call);
        return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return 0;
        if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
                log_info("connection %s: HTTP/2 error from the client: %s; closing", c->peer,
                         nghttp2_http2_strerror(frame->goaway.error_code));
                return 0;
        }
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            nghttp2_session_get_stream_remote_close(h2, frame->hd.stream_id) == 0)
                /* Answered before the client finished its request: it may stop sending
                 * (RFC 9113 8.1). */
                nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                          NGHTTP2_NO_ERROR);
        return 0;
}

/* The stream is gone: the call leaves the connection. */
static void call_detach(struct call *call)
{
        struct conn *c = call->conn;
        chunks_free(call);
        if (call->prev)
                call->prev->next = call->next;
        else
                c->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        call->prev = call->next = NULL;
        call->conn = NULL;
        if (--c->n_streams == 0 && !c->closed) {
                c->idle_since_usec = loop_now(c->srv->event);
                conn_arm_timer(c);
        }
        call_unref(call);
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                           void *userdata)
{
        struct conn *c = userdata;
        if (c->closed)
                return 0;
        struct call *call = nghttp2_session_get_stream_user_data(h2, stream_id);
        if (!call)
                return 0;
        call_ref(call);
        if (!call->done) {
                char msg[128];
                snprintf(msg, sizeof msg, "the client cancelled the call (RST_STREAM %s)",
                         nghttp2_http2_strerror(error_code));
                call_end(call, API_CANCELLED, msg, END_TELL_OWNER);
        }
        call_detach(call);
        call_notify(call);
        call_unref(call);
        return 0;
}

static int on_invalid_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, int error,
                                 void *userdata)
{
        struct conn *c = userdata;
        log_debug("connection %s: invalid frame on stream %d: %s", c->peer, frame->hd.stream_id,
                  nghttp2_strerror(error));
        return 0;
}

/* ---- connections ---- */

static void conn_take(struct conn *c) { c->ref++; }

static void conn_free(struct conn *c)
{
        nghttp2_session_del(c->h2);
        SSL_free(c->ssl);
        free(c->out);
        free(c->denied);
        free(c);
}

static void conn_release(struct conn *c)
{
        if (--c->ref == 0)
                conn_free(c);
}

static void conn_close(struct conn *c)
{
        if (c->closed)
                return;
        struct grpc_server *srv = c->srv;
        c->closed = true;
        c->io = sd_event_source_disable_unref(c->io);
        c->work = sd_event_source_disable_unref(c->work);
        c->flush = sd_event_source_disable_unref(c->flush);
        c->timer = sd_event_source_disable_unref(c->timer);
        /* A quiet close_notify; a peer that is gone already makes it fail, which is fine. */
        if (c->ssl && !c->handshaking && SSL_shutdown(c->ssl) < 0)
                ERR_clear_error();
        closep(&c->fd), c->fd = -1;
        srv->n_conns--;
        if (c->handshaking)
                srv->n_handshaking--;
        if (c->prev)
                c->prev->next = c->next;
        else
                srv->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;

        /* Every call ends first, then the owners hear of it: one that answers another call
         * of this connection from its on_cancel finds it ended already. */
        struct call *calls = TAKE_PTR(c->calls), *next;
        for (struct call *call = calls; call; call = call->next)
                call_end(call, API_CANCELLED, "the connection closed", END_TELL_OWNER);
        for (struct call *call = calls; call; call = next) {
                next = call->next;
                chunks_free(call);
                call->conn = NULL;
                call->prev = call->next = NULL;
                call_notify(call);
                call_unref(call); /* the stream's */
        }
        c->n_streams = 0;
        conn_release(c); /* the open connection's */
}

/* Read what the peer sent into buf: >0 bytes, 0 at the end, -EAGAIN, or another negative
 * errno. */
static ssize_t conn_recv(struct conn *c, uint8_t *buf, size_t len)
{
        if (!c->ssl) {
                ssize_t n = recv(c->fd, buf, len, 0);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
                return n;
        }
        c->read_wants_write = false;
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, (int)len);
        if (n > 0)
                return n;
        switch (SSL_get_error(c->ssl, n)) {
        case SSL_ERROR_WANT_READ: return -EAGAIN;
        case SSL_ERROR_WANT_WRITE: c->read_wants_write = true; return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN: return 0;
        case SSL_ERROR_SYSCALL: return errno > 0 ? -errno : 0;
        default: ERR_clear_error(); return -EPROTO;
        }
}

/* Write the out buffer: 0 when all is out, -EAGAIN, another negative errno. */
static int conn_send(struct conn *c)
{
        c->write_wants_read = false;
        while (c->out_off < c->out_len) {
                const uint8_t *p = c->out + c->out_off;
                size_t n = c->out_len - c->out_off;
                if (!c->ssl) {
                        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
                        if (k < 0)
                                return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
                        c->out_off += (size_t)k;
                        continue;
                }
                ERR_clear_error();
                int k = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
                if (k > 0) {
                        c->out_off += (size_t)k;
                        continue;
                }
                switch (SSL_get_error(c->ssl, k)) {
                case SSL_ERROR_WANT_WRITE: return -EAGAIN;
                case SSL_ERROR_WANT_READ: c->write_wants_read = true; return -EAGAIN;
                case SSL_ERROR_SYSCALL: return errno > 0 ? -errno : -EPIPE;
                default: ERR_clear_error(); return -EPROTO;
                }
        }
        c->out_off = c->out_len = 0;
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
                ev = c->out_off < c->out_len || c->read_wants_write ? EPOLLOUT : 0;
                if (!c->deferred || c->write_wants_read)
                        ev |= EPOLLIN;
        }
        sd_event_source_set_io_events(c->io, ev);
}

/* Take from nghttp2 what it has to send, and write it while the socket takes it. */
static void conn_flush(struct conn *c)
{
        if (c->closed || c->handshaking || !c->h2_started)
                return;
        if (c->in_h2)
                return; /* the caller that entered nghttp2 flushes when it returns */
        if (!c->got_bytes)
                return; /* the preface waits for the client's: see conn_h2_failed() */
        /* This flush takes what a reply made outside nghttp2 scheduled: left on, that one
         * would cost a turn of the loop with nothing to send. */
        sd_event_source_set_enabled(c->flush, SD_EVENT_OFF);
        conn_take(c);
        for (;;) {
                while (c->out_len < CONN_OUT_MAX) {
                        const uint8_t *p;
                        c->in_h2 = true;
                        ssize_t n = nghttp2_session_mem_send(c->h2, &p);
                        c->in_h2 = false;
                        if (c->closed)
                                goto out;
                        if (n < 0) {
                                log_warning("connection %s: HTTP/2: %s; closing", c->peer,
                                            nghttp2_strerror((int)n));
                                conn_close(c);
                                goto out;
                        }
                        if (n == 0)
                                break;
                        if (c->out_cap - c->out_len < (size_t)n) {
                                size_t cap = c->out_len + (size_t)n + CONN_OUT_MAX;
                                uint8_t *b = realloc(c->out, cap);
                                if (!b) {
                                        log_error("connection %s: out of memory; closing", c->peer);
                                        conn_close(c);
                                        goto out;
                                }
                                c->out = b;
                                c->out_cap = cap;
                        }
                        memcpy(c->out + c->out_len, p, (size_t)n);
                        c->out_len += (size_t)n;
                }
                if (c->out_off == c->out_len)
                        break;
                int r = conn_send(c);
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        log_debug("connection %s: write: %s", c->peer, strerror(-r));
                        conn_close(c);
                        goto out;
                }
        }
        if (c->out_off == c->out_len && !nghttp2_session_want_read(c->h2) &&
            !nghttp2_session_want_write(c->h2)) {
                conn_close(c); /* after GOAWAY: all said */
                goto out;
        }
        conn_update_events(c);
out:
        conn_release(c);
}

static void conn_schedule_work(struct conn *c)
{
        if (c->closed)
                return;
        c->deferred = true;
        sd_event_source_set_enabled(c->work, SD_EVENT_ONESHOT);
}

/* A client whose first bytes are not HTTP/2's preface. first: these are the connection's
 * first bytes and nothing was written to it yet; otherwise the client began with a piece of
 * the preface (which the server's SETTINGS answered), or a keepalive PING went out, and an
 * HTTP/1 answer would follow HTTP/2 on the wire. */
static void conn_not_h2(struct conn *c, bool first)
{
        const char *p = (const char *)c->in + c->in_off;
        size_t n = c->in_len - c->in_off;
        bool http1 = false;
        static const char *const methods[] = { "GET ",     "POST ",   "HEAD ",    "PUT ",
                                               "OPTIONS ", "DELETE ", "CONNECT ", "PATCH " };
        for (size_t i = 0; first && i < ELEMENTSOF(methods); i++)
                if (n >= strlen(methods[i]) && memcmp(p, methods[i], strlen(methods[i])) == 0)
                        http1 = true;
        if (http1) {
                log_info("connection %s: refused: an HTTP/1 request; gRPC needs HTTP/2", c->peer);
                /* Best effort: nothing else was written yet (the preface waits for theirs). */
                static const char answer[] =
                        "HTTP/1.1 505 HTTP Version Not Supported\r\n"
                        "Content-Type: text/plain\r\nContent-Length: 40\r\nConnection: close\r\n"
                        "\r\nThis is a gRPC server: it needs HTTP/2.\n";
                if (!c->ssl)
                        (void)send(c->fd, answer, sizeof answer - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else
                log_info("connection %s: refused: not HTTP/2 (no client preface; the first byte "
                         "is 0x%02x)",
                         c->peer, n > 0 ? (uint8_t)p[0] : 0);
        conn_close(c);
}

/* Read and feed nghttp2, within the batch; then write what it answered. */
static void conn_process(struct conn *c)
{
        size_t read_total = 0;
        bool drained = false;

        conn_take(c);
        c->dispatched = 0;
        while (!c->closed) {
                if (c->in_off < c->in_len) {
                        if (c->dispatched >= CONN_BATCH) {
                                conn_schedule_work(c);
                                break;
                        }
                        size_t n = c->in_len - c->in_off;
                        if (n > CONN_FEED_PIECE)
                                n = CONN_FEED_PIECE;
                        bool first = !c->got_bytes; /* nothing fed, nothing written yet */
                        c->got_bytes = true;
                        c->in_h2 = true;
                        ssize_t k = nghttp2_session_mem_recv(c->h2, c->in + c->in_off, n);
                        c->in_h2 = false;
                        if (c->closed)
                                break;
                        if (k == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
                                conn_not_h2(c, first);
                                break;
                        }
                        if (k < 0) {
                                log_info("connection %s: HTTP/2: %s; closing", c->peer,
                                         nghttp2_strerror((int)k));
                                conn_close(c);
                                break;
                        }
                        c->in_off += (size_t)k;
                        continue;
                }
                c->in_off = c->in_len = 0;
                if (!nghttp2_session_want_read(c->h2))
                        break;
                if (read_total >= CONN_READ_BUDGET || c->dispatched >= CONN_BATCH) {
                        conn_schedule_work(c); /* the rest after the others' turn */
                        break;
                }
                if (drained)
                        break;
                ssize_t n = conn_recv(c, c->in, sizeof c->in);
                if (n > 0) {
                        c->in_len = (size_t)n;
                        read_total += (size_t)n;
                        c->last_recv_usec = loop_now(c->srv->event);
                        /* A plain socket that gave less than asked is empty: the poll says when
                         * more comes (level-triggered), a read now would only say EAGAIN. TLS
                         * may hold a record's rest inside OpenSSL, which the poll cannot see. */
                        drained = !c->ssl && (size_t)n < sizeof c->in;
                        continue;
                }
                if (n == -EAGAIN)
                        break;
                if (n < 0)
                        log_debug("connection %s: read: %s", c->peer, strerror((int)-n));
                else if (c->n_streams > 0)
                        log_debug("connection %s: closed by the client with %zu streams open",
                                  c->peer, c->n_streams);
                conn_close(c);
        }
        conn_flush(c);
        conn_release(c);
}

/* Say goodbye (GOAWAY) and close once it is written, or after CLOSE_GRACE_USEC. */
static void conn_goaway(struct conn *c, uint32_t error, const char *why)
{
        if (c->closed || c->closing)
                return;
        c->closing = true;
        c->close_usec = loop_now(c->srv->event) + CLOSE_GRACE_USEC;
        if (c->h2_started) {
                nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                                      nghttp2_session_get_last_proc_stream_id(c->h2), error,
                                      (const uint8_t *)why, strlen(why));
                nghttp2_session_terminate_session(c->h2, error);
                c->got_bytes = true; /* say it even to a client that said nothing */
        }
        conn_arm_timer(c);
        conn_flush(c);
}

static void conn_arm_timer(struct conn *c)
{
        if (c->closed || !c->timer)
                return;
        const struct grpc_server_options *o = &c->srv->opts;
        uint64_t next = UINT64_MAX;
#define EARLIEST(t)                                                                                \
        do {                                                                                       \
                uint64_t _t = (t);                                                                 \
                if (_t < next)                                                                     \
                        next = _t;                                                                 \
        } while (0)
        if (c->handshaking) {
                if (o->tls_handshake_timeout > 0)
                        EARLIEST(c->created_usec + o->tls_handshake_timeout * USEC_PER_SEC);
        } else if (c->closing)
                EARLIEST(c->close_usec);
        else {
                if (o->keepalive > 0)
                        EARLIEST(c->ping_sent_usec ?
                                         c->ping_sent_usec + o->keepalive_timeout * USEC_PER_SEC :
                                         c->last_recv_usec + o->keepalive * USEC_PER_SEC);
                if (o->idle_timeout > 0 && c->n_streams == 0)
                        EARLIEST(c->idle_since_usec + o->idle_timeout * USEC_PER_SEC);
        }
#undef EARLIEST
        if (next == UINT64_MAX) {
                sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return;
        }
        if (sd_event_source_set_time(c->timer, next) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                log_warning("connection %s: cannot arm its timer", c->peer);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct conn *c = userdata;
        const struct grpc_server_options *o = &c->srv->opts;
        uint64_t now = loop_now(c->srv->event);

        conn_take(c);
        if (c->handshaking) {
                log_warning("TLS %s: refused: no TLS handshake within %" PRIu32
                            " s (tls-handshake-timeout)",
                            c->peer, o->tls_handshake_timeout);
                conn_close(c);
        } else if (c->closing) {
                if (now >= c->close_usec)
                        conn_close(c); /* its last words were not read in all that time */
        } else if (o->keepalive > 0 && c->ping_sent_usec &&
                   now >= c->ping_sent_usec + o->keepalive_timeout * USEC_PER_SEC) {
                log_info("connection %s: no answer to a keepalive ping within %" PRIu32
                         " s; closing",
                         c->peer, o->keepalive_timeout);
                conn_goaway(c, NGHTTP2_NO_ERROR, "keepalive ping not answered");
                conn_close(c); /* a peer that does not answer pings reads nothing either */
        } else if (o->idle_timeout > 0 && c->n_streams == 0 &&
                   now >= c->idle_since_usec + o->idle_timeout * USEC_PER_SEC) {
                log_info("connection %s: closed after %" PRIu32 " s without a call "
                         "(idle-timeout)",
                         c->peer, o->idle_timeout);
                conn_goaway(c, NGHTTP2_NO_ERROR, "idle-timeout");
        } else if (o->keepalive > 0 && !c->ping_sent_usec &&
                   now >= c->last_recv_usec + o->keepalive * USEC_PER_SEC) {
                uint8_t data[8];
                memcpy(data, &now, sizeof data);
                if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, data) == 0) {
                        c->ping_sent_usec = now;
                        c->got_bytes = true;
                        conn_flush(c);
                }
        }
        conn_arm_timer(c);
        conn_release(c);
        return 0;
}

static int conn_h2_start(struct conn *c)
{
        struct grpc_server *srv = c->srv;
        int r = nghttp2_session_server_new2(&c->h2, srv->callbacks, c, srv->h2_options);
        if (r < 0)
                return -ENOMEM;
        const nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->max_streams },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HEADER_BYTES_MAX },
        };
        r = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv));
        if (r == 0)
                r = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
        if (r < 0)
                return -ENOMEM;
        c->h2_started = true;
        c->last_recv_usec = c->idle_since_usec = loop_now(srv->event);
        return 0;
}

static void conn_handshake(struct conn *c)
{
        struct grpc_server *srv = c->srv;
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
        srv->n_handshaking--;

        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
                log_warning("TLS %s: refused: the client offered no ALPN protocol; gRPC needs "
                            "h2 (HTTP/2)",
                            c->peer);
                conn_close(c);
                return;
        }

        char who[320];
        bool allowed = tls_peer_allowed(srv->tls, c->ssl, who, sizeof who);
        if (allowed)
                log_info("TLS %s: %s connected", c->peer, who);
        /* From now on the peer is the address and the identity: "192.0.2.1:40000 CN=cp". */
        size_t n = strlen(c->peer);
        snprintf(c->peer + n, sizeof c->peer - n, " %s", who);
        if (conn_h2_start(c) < 0) {
                log_error("TLS %s: out of memory for its HTTP/2 session", c->peer);
                conn_close(c);
                return;
        }
        if (!allowed) {
                log_warning("TLS %s: refused: %s is not on the allow-list (tls-allow)", c->peer,
                            who);
                /* Its calls are answered PERMISSION_DENIED, so it knows why; and it goes soon. */
                if (asprintf_safe(&c->denied, "%s is not allowed on this host (tls-allow)", who) <
                    0) {
                        conn_close(c);
                        return;
                }
                c->closing = true;
                c->close_usec = loop_now(srv->event) + CLOSE_GRACE_USEC;
        }
        conn_arm_timer(c);
        conn_update_events(c);
        /* Requests may have come with the handshake's last flight, inside OpenSSL already. */
        conn_process(c);
}

/* A TLS connection's first byte is a handshake record's type (22); anything else is a client
 * that does not speak TLS, such as one meant for the Unix socket: say so by name. */
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
                if (!c->closed && readable)
                        conn_process(c);
        }
        conn_release(c);
        return 0;
}

static int on_work(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct conn *c = userdata;
        conn_take(c);
        c->deferred = false;
        if (!c->handshaking && !c->closed) {
                conn_release_held(c);
                conn_process(c);
        }
        conn_release(c);
        return 0;
}

static int on_flush(sd_event_source *s, void *userdata)
{
        struct conn *c = userdata;
        conn_take(c);
        conn_flush(c);
        conn_release(c);
        return 0;
}

/* A connection on an accepted socket (taken over: closed on failure too). */
static int conn_new(struct grpc_server *srv, int cfd, const char *peer, bool tls, bool read_only)
{
        struct conn *c = calloc(1, sizeof *c);
        int r = -ENOMEM;

        if (!c) {
                close(cfd);
                return r;
        }
        c->ref = 1;
        c->srv = srv;
        c->fd = cfd;
        c->read_only = read_only;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        c->created_usec = loop_now(srv->event);
        if (tls) {
                c->ssl = tls_server_new_ssl(srv->tls, cfd);
                if (!c->ssl)
                        goto fail;
                c->handshaking = true;
                c->handshake_events = EPOLLIN;
        } else if ((r = conn_h2_start(c)) < 0)
                goto fail;
        r = sd_event_add_io(srv->event, &c->io, cfd, EPOLLIN, on_conn, c);
        if (r >= 0)
                r = sd_event_add_time(srv->event, &c->work, CLOCK_MONOTONIC, 1, 0, on_work, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->work, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_source_set_priority(c->work, PRIORITY_BATCH);
        if (r >= 0)
                r = sd_event_add_defer(srv->event, &c->flush, on_flush, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->flush, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(srv->event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX,
                                      USEC_PER_SEC / 10, on_timer, c);
        if (r < 0)
                goto fail;
        srv->n_conns++;
        if (tls)
                srv->n_handshaking++;
        c->next = srv->conns;
        if (c->next)
                c->next->prev = c;
        srv->conns = c;
        conn_arm_timer(c);
        return 0;
fail:
        c->io = sd_event_source_disable_unref(c->io);
        c->work = sd_event_source_disable_unref(c->work);
        c->flush = sd_event_source_disable_unref(c->flush);
        c->timer = sd_event_source_disable_unref(c->timer);
        close(cfd);
        conn_free(c);
        return r;
}

/* ---- listeners ---- */

/* Accept one connection: its descriptor, or a negative errno (logged unless EAGAIN). */
static int accept_one(int fd, struct sockaddr_storage *sa, socklen_t *salen)
{
        int cfd = accept4(fd, (struct sockaddr *)sa, salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accept: %m");
                return -errno;
        }
        return cfd;
}

static bool over_limit(struct grpc_server *srv, const char *peer, bool tls)
{
        if (srv->n_conns >= srv->opts.max_connections) {
                log_warning("refusing a connection from %s: %zu open, the limit "
                            "(max-connections)",
                            peer, srv->n_conns);
                return true;
        }
        /* Clients that have not shown a certificate yet never take the places that
         * authenticated and local ones need: half at most. */
        size_t half = srv->opts.max_connections / 2 > 0 ? srv->opts.max_connections / 2 : 1;
        if (tls && srv->n_handshaking >= half) {
                log_warning("refusing a TLS connection from %s: %zu handshakes in progress, half "
                            "of max-connections (the rest is kept for authenticated and local "
                            "clients)",
                            peer, srv->n_handshaking);
                return true;
        }
        return false;
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
static bool peer_allowed(struct grpc_server *srv, int fd, bool *ret_read_only)
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
                   (unsigned)cred.uid, (int)cred.pid, srv->opts.read_group);
        return false;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct grpc_server *srv = userdata;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int cfd = accept_one(fd, &sa, &salen);
        if (cfd < 0)
                return 0;
        char peer[64] = "a local client";
        struct ucred cred;
        socklen_t n = sizeof cred;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0)
                snprintf(peer, sizeof peer, "pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
        if (over_limit(srv, peer, false)) {
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
        struct grpc_server *srv = userdata;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int cfd = accept_one(fd, &sa, &salen);
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
        if (over_limit(srv, peer, true)) {
                close(cfd);
                return 0;
        }
        /* Answers are small and a client waits for each: do not hold them back (Nagle). */
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = conn_new(srv, cfd, peer, true, false);
        if (r < 0)
                log_error_errno(r, "TLS %s: set up the connection: %m", peer);
        return 0;
}

int grpc_server_adopt(struct grpc_server *s, int fd, const char *peer, bool read_only)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (over_limit(s, peer, false)) {
                close(fd);
                return -EBUSY;
        }
        return conn_new(s, fd, peer, false, read_only);
}

static int tcp_listen(const char *addr)
{
        struct sockaddr_storage ss;
        unsigned len;
        int r = parse_listen_address(addr, &ss, &len);
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

/* Find read-group's gid; and, on a socket we made, give the socket to that group: its members
 * may connect (and then only read). A socket systemd passed keeps the owner and mode its
 * socket unit gave it (SocketGroup=, SocketMode=). */
static int read_group_setup(const char *g, const char *path, bool own_socket, gid_t *ret)
{
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

/* ---- the server ---- */

static int route_cmp(const void *a, const void *b)
{
        return strcmp(((const struct route *)a)->path, ((const struct route *)b)->path);
}

/* Every service's methods by path; the caller's first, then the standard ones. */
static int routes_build(struct grpc_server *srv)
{
        size_t n = 0;
        for (size_t i = 0; i < srv->n_services; i++)
                n += srv->services[i].n_methods;
        srv->routes = calloc(n ? n : 1, sizeof *srv->routes);
        if (!srv->routes)
                return log_error_errno(ENOMEM, "gRPC server: %m");
        for (size_t i = 0; i < srv->n_services; i++) {
                const struct grpc_service *svc = &srv->services[i];
                for (size_t j = 0; j < svc->n_methods; j++) {
                        struct route *rt = &srv->routes[srv->n_routes];
                        char *p;
                        if (asprintf_safe(&p, "/%s/%s", svc->name, svc->methods[j].name) < 0)
                                return log_error_errno(ENOMEM, "gRPC server: %m");
                        rt->path = p;
                        rt->method = &svc->methods[j];
                        rt->service = svc;
                        srv->n_routes++;
                }
        }
        qsort(srv->routes, srv->n_routes, sizeof *srv->routes, route_cmp);
        for (size_t i = 1; i < srv->n_routes; i++)
                if (strcmp(srv->routes[i - 1].path, srv->routes[i].path) == 0)
                        return log_error_errno(EINVAL, "gRPC server: %s is served twice",
                                               srv->routes[i].path);
        return 0;
}

static int h2_setup(struct grpc_server *srv)
{
        if (nghttp2_session_callbacks_new(&srv->callbacks) < 0 ||
            nghttp2_option_new(&srv->h2_options) < 0)
                return log_error_errno(ENOMEM, "gRPC server: %m");
        nghttp2_session_callbacks *cb = srv->callbacks;
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame_recv);
        /* Requests are consumed as they are handed over (held input waits in the window). */
        nghttp2_option_set_no_auto_window_update(srv->h2_options, 1);
        return 0;
}

int grpc_server_new(sd_event *e, const struct grpc_server_options *opts,
                    const struct grpc_service *services, size_t n_services,
                    struct grpc_server **ret)
{
        struct grpc_server *srv = calloc(1, sizeof *srv);
        if (!srv) {
                tls_server_free(opts->tls);
                return log_error_errno(ENOMEM, "gRPC server: %m");
        }
        srv->event = sd_event_ref(e);
        srv->fd = srv->tls_fd = -1;
        srv->read_gid = (gid_t)-1;
        srv->tls = opts->tls;
        srv->opts = *opts;
        srv->opts.tls = NULL;
        srv->opts.socket_path = srv->opts.read_group = srv->opts.listen_tls = NULL;
        srv->opts.descriptors = NULL;
        struct grpc_server_options *o = &srv->opts;
        if (!o->max_pending_stream)
                o->max_pending_stream = DEFAULT_MAX_PENDING_STREAM;
        if (!o->max_pending_conn)
                o->max_pending_conn = DEFAULT_MAX_PENDING_CONN;
        if (!o->keepalive_timeout)
                o->keepalive_timeout = DEFAULT_KEEPALIVE_TIMEOUT;
        if (!o->max_inflight)
                o->max_inflight = 1;
        if (!o->max_connections)
                o->max_connections = 1;
        srv->max_streams = o->max_inflight + (o->max_inflight > 8 ? o->max_inflight : 8);

        int r = -ENOMEM;
        if (!(o->socket_path = strdup(opts->socket_path ? opts->socket_path : "")) ||
            !(o->read_group = strdup(opts->read_group ? opts->read_group : "")) ||
            !(o->listen_tls = strdup(opts->listen_tls ? opts->listen_tls : ""))) {
                log_error_errno(r, "gRPC server: %m");
                goto fail;
        }

        /* The caller's services, then the standard ones, all served alike. */
        srv->services = calloc(n_services + 3, sizeof *srv->services);
        srv->names = calloc(n_services + 3, sizeof *srv->names);
        if (!srv->services || !srv->names) {
                log_error_errno(r, "gRPC server: %m");
                goto fail;
        }
        for (size_t i = 0; i < n_services; i++) {
                srv->services[i] = services[i];
                srv->names[i] = services[i].name;
        }
        srv->names[n_services] = "grpc.health.v1.Health";
        srv->names[n_services + 1] = "grpc.reflection.v1alpha.ServerReflection";
        srv->names[n_services + 2] = "grpc.reflection.v1.ServerReflection";
        r = grpc_health_new(srv->names, n_services + 3, &srv->health);
        if (r < 0) {
                log_error_errno(r, "gRPC server: health service: %m");
                goto fail;
        }
        r = grpc_reflection_new(opts->descriptors, opts->descriptors_len, srv->names,
                                n_services + 3, &srv->reflection);
        if (r < 0)
                goto fail;
        srv->services[n_services] = *grpc_health_service(srv->health);
        srv->services[n_services + 1] = grpc_reflection_services(srv->reflection)[0];
        srv->services[n_services + 2] = grpc_reflection_services(srv->reflection)[1];
        srv->n_services = n_services + 3;
        for (size_t i = 0; i < srv->n_services; i++)
                if (!grpc_reflection_has_symbol(srv->reflection, srv->names[i]))
                        log_warning("gRPC server: %s is not in the descriptors given for "
                                    "reflection: clients cannot discover it",
                                    srv->names[i]);
        r = routes_build(srv);
        if (r >= 0)
                r = h2_setup(srv);
        if (r >= 0)
                r = sd_event_add_defer(e, &srv->notify_source, on_notify, srv);
        if (r >= 0)
                r = sd_event_source_set_enabled(srv->notify_source, SD_EVENT_OFF);
        if (r < 0)
                goto fail;

        /* The TLS port first: a client that sees the socket answer may go on to it at once. */
        if (o->listen_tls[0] && srv->tls) {
                r = tcp_listen(o->listen_tls);
                if (r < 0) {
                        log_error_errno(r, "listen-tls %s: %m", o->listen_tls);
                        goto fail;
                }
                srv->tls_fd = r;
                r = sd_event_add_io(e, &srv->tls_source, srv->tls_fd, EPOLLIN, on_accept_tls, srv);
                if (r < 0) {
                        log_error_errno(r, "watch listen-tls %s: %m", o->listen_tls);
                        goto fail;
                }
        }

        if (o->socket_path[0]) {
                r = listen_fd_from_systemd(o->socket_path);
                bool own_socket = r == -ENOENT;
                if (own_socket)
                        r = unix_listen(o->socket_path, "hostd");
                else if (r >= 0)
                        log_info("serving %s, the socket systemd passed", o->socket_path);
                if (r < 0)
                        goto fail;
                srv->fd = r;
                r = read_group_setup(o->read_group, o->socket_path, own_socket, &srv->read_gid);
                if (r < 0)
                        goto fail;
                r = sd_event_add_io(e, &srv->source, srv->fd, EPOLLIN, on_accept, srv);
                if (r < 0) {
                        log_error_errno(r, "watch %s: %m", o->socket_path);
                        goto fail;
                }
        }
        *ret = srv;
        return 0;
fail:
        grpc_server_free(srv);
        return r;
}

void grpc_server_reload_tls(struct grpc_server *s)
{
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
        const char *cert, *key, *ca;
        tls_server_files(s->tls, &cert, &key, &ca);
        log_info("TLS: reloaded tls-cert %s, tls-key %s and tls-ca %s for new connections", cert,
                 key, ca);
}

void grpc_server_set_serving(struct grpc_server *s, bool serving)
{
        grpc_health_set_serving(s->health, serving);
}

void grpc_server_free(struct grpc_server *s)
{
        if (!s)
                return;
        /* Owners still to hear of a call's end hear now; then every connection closes, and
         * what the owners hold of their calls sees them ended, never s. */
        if (s->notify_source)
                on_notify(s->notify_source, s);
        while (s->conns)
                conn_close(s->conns);
        s->notify_source = sd_event_source_disable_unref(s->notify_source);
        s->source = sd_event_source_disable_unref(s->source);
        s->tls_source = sd_event_source_disable_unref(s->tls_source);
        closep(&s->fd);
        closep(&s->tls_fd);
        tls_server_free(s->tls);
        grpc_health_free(s->health);
        grpc_reflection_free(s->reflection);
        for (size_t i = 0; i < s->n_routes; i++)
                free((char *)s->routes[i].path);
        free(s->routes);
        free(s->services);
        free(s->names);
        nghttp2_session_callbacks_del(s->callbacks);
        nghttp2_option_del(s->h2_options);
        free((char *)s->opts.socket_path);
        free((char *)s->opts.read_group);
        free((char *)s->opts.listen_tls);
        sd_event_unref(s->event);
        free(s);
}
