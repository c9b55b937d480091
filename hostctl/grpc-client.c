/* hostctl's gRPC client: HTTP/2 through libnghttp2's client session, driven by poll() on the
 * one socket; see grpc-client.h. */
#include "grpc-client.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-code.h"
#include "config-build.h"
#include "grpc-wire.h"
#include "util.h"

/* Our stream window: a batch of log lines or metrics flows without waiting for WINDOW_UPDATE;
 * the connection's is a few streams' worth. */
#define STREAM_WINDOW (1 << 20)
#define CONNECTION_WINDOW (4 << 20)
/* Bytes read from the socket in one go before the caller gets to take messages. */
#define READ_ROUNDS 64

_printf_(3, 4) static int client_fail(struct grpc_client *c, int r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int saved = errno;
        errno = r < 0 ? -r : r; /* lets the message use %m */
        vsnprintf(c->error, sizeof c->error, fmt, ap);
        errno = saved;
        va_end(ap);
        return r;
}

/* The connection is unusable from now on: every call that finds it so says why. The first
 * reason is kept (a reset after a GOAWAY says less than the GOAWAY). */
_printf_(3, 4) static int connection_fail(struct grpc_client *c, int r, const char *fmt, ...)
{
        if (c->broken)
                return c->broken;
        va_list ap;
        va_start(ap, fmt);
        int saved = errno;
        errno = r < 0 ? -r : r;
        vsnprintf(c->broken_msg, sizeof c->broken_msg, fmt, ap);
        errno = saved;
        va_end(ap);
        c->broken = r;
        return r;
}

static int report_broken(struct grpc_client *c)
{
        snprintf(c->error, sizeof c->error, "%s", c->broken_msg);
        return c->broken;
}

/* " (hostd sent GOAWAY NO_ERROR: debug)" when it did, for messages about a close. */
static const char *goaway_note(const struct grpc_client *c, char buf[static 256])
{
        buf[0] = 0;
        if (c->goaway)
                snprintf(buf, 256, " (hostd sent GOAWAY %s%s%s)",
                         nghttp2_http2_strerror(c->goaway_code), c->goaway_debug[0] ? ": " : "",
                         c->goaway_debug);
        return buf;
}

/* Bytes from a peer for a message: printable ASCII as is, the rest as \xNN. */
static void printable(const uint8_t *p, size_t n, char *out, size_t outlen)
{
        size_t o = 0;
        for (size_t i = 0; i < n && o + 5 < outlen; i++) {
                if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
                        out[o++] = (char)p[i];
                else
                        o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
        }
        out[o] = 0;
}

/* A byte queue buf[*off..*len) with room for n more at its end: the pointer to write them. */
static uint8_t *bytes_reserve(uint8_t **buf, size_t *off, size_t *len, size_t *cap, size_t n)
{
        if (*off == *len)
                *off = *len = 0;
        if (*len + n > *cap && *off > 0) {
                memmove(*buf, *buf + *off, *len - *off);
                *len -= *off;
                *off = 0;
        }
        if (*len + n > *cap) {
                size_t want = *cap ? *cap : 4096;
                while (want < *len + n)
                        want *= 2;
                uint8_t *b = realloc(*buf, want);
                if (!b)
                        return NULL;
                *buf = b;
                *cap = want;
        }
        uint8_t *p = *buf + *len;
        *len += n;
        return p;
}

void grpc_client_init(struct grpc_client *c, int64_t timeout_ms)
{
        *c = (struct grpc_client){
                .timeout_ms = timeout_ms,
                .keepalive_s = GRPC_KEEPALIVE_DEFAULT_S,
                .max_message = GRPC_MAX_MESSAGE_DEFAULT,
                .code = -1,
        };
        conn_init(&c->conn);
}

/* hostd's first frame must be its SETTINGS (RFC 9113 3.4): anything else is a server that does
 * not speak HTTP/2, and saying what it sent helps more than a protocol error. */
static bool first_frame_ok(const struct grpc_client *c)
{
        const uint8_t *h = c->first;
        uint32_t len = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
        uint32_t stream =
                ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
                0x7fffffffu;
        return h[3] == NGHTTP2_SETTINGS && h[4] == 0 && stream == 0 && len % 6 == 0 && len <= 16384;
}

static int not_http2(struct grpc_client *c, bool closed)
{
        char seen[64];
        printable(c->first, c->n_first, seen, sizeof seen);
        return connection_fail(
                c, -EPROTO, "%s does not speak gRPC: %s \"%s\"%s; is it hostd's API%s?", c->target,
                closed ? "it sent" : "its first bytes are not HTTP/2:", seen,
                closed ? " and closed the connection" : "", c->tls ? " listener" : " socket");
}

static int peer_closed(struct grpc_client *c)
{
        char note[256];
        /* What it sent before it closed (unread when a write noticed first) may say why. */
        while (c->n_first < sizeof c->first) {
                ssize_t k =
                        conn_read(&c->conn, c->first + c->n_first, sizeof c->first - c->n_first);
                if (k <= 0)
                        break;
                c->n_first += (size_t)k;
        }
        if (c->conn.tls_error[0])
                return connection_fail(c, -EPROTO, "%s", c->conn.tls_error);
        if (c->n_first == sizeof c->first && !first_frame_ok(c))
                return not_http2(c, false);
        if (c->n_first > 0 && c->n_first < sizeof c->first)
                return not_http2(c, true);
        if (c->tls && c->n_first == 0)
                /* Some servers refuse a certificate by closing without a TLS alert. */
                return connection_fail(c, -ECONNRESET,
                                       "hostd closed the TLS connection before it said anything "
                                       "(did it refuse this client's certificate? its log says "
                                       "why)");
        return connection_fail(c, -ECONNRESET, "hostd closed the connection%s",
                               goaway_note(c, note));
}

/* Why a read or write failed, in the user's words. */
static int connection_io_failed(struct grpc_client *c, ssize_t k, const char *what)
{
        if (c->conn.tls_error[0])
                return connection_fail(c, (int)k, "%s", c->conn.tls_error);
        if (k == -EPIPE || k == -ECONNRESET)
                return peer_closed(c);
        return connection_fail(c, (int)k, "%s hostd: %s", what, strerror((int)-k));
}

/* Write what nghttp2 has for hostd, as far as the socket takes it without waiting. */
static int flush(struct grpc_client *c)
{
        if (c->broken)
                return c->broken;
        for (;;) {
                if (c->wlen > 0) {
                        ssize_t k = conn_write(&c->conn, c->wbuf, c->wlen);
                        if (k == -EAGAIN)
                                return 0;
                        if (k < 0)
                                return connection_io_failed(c, k, "send to");
                        memmove(c->wbuf, c->wbuf + k, c->wlen - (size_t)k);
                        c->wlen -= (size_t)k;
                        continue;
                }
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->h2, &data);
                if (n < 0)
                        return connection_fail(c, -EPROTO, "HTTP/2 with hostd: %s",
                                               nghttp2_strerror((int)n));
                if (n == 0)
                        return 0;
                ssize_t k = conn_write(&c->conn, data, (size_t)n);
                if (k == -EAGAIN)
                        k = 0;
                else if (k < 0)
                        return connection_io_failed(c, k, "send to");
                if (k < n) {
                        /* data is nghttp2's until the next call: keep the rest. */
                        size_t rest = (size_t)(n - k);
                        if (rest > c->wcap) {
                                uint8_t *b = realloc(c->wbuf, rest);
                                if (!b)
                                        return connection_fail(c, -ENOMEM, "out of memory");
                                c->wbuf = b;
                                c->wcap = rest;
                        }
                        memcpy(c->wbuf, data + k, rest);
                        c->wlen = rest;
                }
        }
}

/* Read what the socket has (a bounded amount) into nghttp2, which hands it to the calls. */
static int receive(struct grpc_client *c)
{
        for (int round = 0; round < READ_ROUNDS; round++) {
                uint8_t buf[16384];
                ssize_t k = conn_read(&c->conn, buf, sizeof buf);
                if (k == -EAGAIN)
                        return 0;
                if (k == 0)
                        return peer_closed(c);
                if (k < 0)
                        return connection_io_failed(c, k, "read from");
                c->last_recv_usec = now_monotonic_usec();
                if (c->n_first < sizeof c->first) {
                        size_t n = sizeof c->first - c->n_first;
                        if (n > (size_t)k)
                                n = (size_t)k;
                        memcpy(c->first + c->n_first, buf, n);
                        c->n_first += n;
                        if (c->n_first == sizeof c->first && !first_frame_ok(c))
                                return not_http2(c, false);
                }
                ssize_t m = nghttp2_session_mem_recv(c->h2, buf, (size_t)k);
                if (m < 0)
                        return connection_fail(c, -EPROTO, "HTTP/2 from hostd: %s",
                                               nghttp2_strerror((int)m));
                if (c->broken)
                        return c->broken;
        }
        return 0;
}

/* How long a ping may go unanswered: GRPC_PING_TIMEOUT_S, or less when pings are more
 * frequent than that, so that each is answered before the next is due. */
static uint32_t ping_timeout_s(const struct grpc_client *c)
{
        return c->keepalive_s && c->keepalive_s < GRPC_PING_TIMEOUT_S ? c->keepalive_s :
                                                                        GRPC_PING_TIMEOUT_S;
}

/* Ping a quiet connection; give up on one whose ping goes unanswered. */
static int keepalive(struct grpc_client *c)
{
        uint64_t now = now_monotonic_usec();
        if (c->ping_sent_usec) {
                if (now - c->ping_sent_usec >= (uint64_t)ping_timeout_s(c) * 1000000)
                        return connection_fail(c, -ETIMEDOUT,
                                               "hostd did not answer a ping within %" PRIu32
                                               " s: the connection to %s is dead",
                                               ping_timeout_s(c), c->target);
                return 0;
        }
        if (c->keepalive_s == 0 || now - c->last_recv_usec < (uint64_t)c->keepalive_s * 1000000)
                return 0;
        int r = nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
        if (r < 0)
                return connection_fail(c, -EPROTO, "HTTP/2 ping: %s", nghttp2_strerror(r));
        c->ping_sent_usec = now;
        return 0;
}

int grpc_client_fd(const struct grpc_client *c) { return c->conn.fd; }

short grpc_client_poll_events(const struct grpc_client *c)
{
        short ev = POLLIN;
        if (c->conn.read_wants == POLLOUT)
                ev |= POLLOUT;
        if (c->wlen > 0)
                ev |= c->conn.write_wants;
        return ev;
}

int grpc_client_poll_timeout(const struct grpc_client *c)
{
        if (c->broken || conn_buffered(&c->conn))
                return 0;
        uint64_t due;
        if (c->ping_sent_usec)
                due = c->ping_sent_usec + (uint64_t)ping_timeout_s(c) * 1000000;
        else if (c->keepalive_s)
                due = c->last_recv_usec + (uint64_t)c->keepalive_s * 1000000;
        else
                return -1;
        uint64_t now = now_monotonic_usec();
        if (due <= now)
                return 0;
        uint64_t ms = (due - now + 999) / 1000;
        return ms > INT_MAX ? INT_MAX : (int)ms;
}

int grpc_client_process(struct grpc_client *c, short revents)
{
        if (c->broken)
                return c->broken;
        int r = receive(c);
        if (r >= 0)
                r = keepalive(c);
        if (r >= 0)
                r = flush(c);
        if (r < 0)
                return r;
        if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
            c->wlen == 0) {
                /* nghttp2 ended the session: a protocol error it answered with GOAWAY, or
                 * hostd's GOAWAY with no stream of ours left. */
                char note[256];
                if (c->h2_error[0])
                        return connection_fail(c, -EPROTO, "HTTP/2 with hostd failed: %s",
                                               c->h2_error);
                return connection_fail(c, -ECONNRESET, "hostd ended the HTTP/2 session%s",
                                       goaway_note(c, note));
        }
        return 0;
}

/* Wait for the socket (or a keepalive's time) until the deadline, then process. */
static int pump(struct grpc_client *c, uint64_t until)
{
        int r = flush(c);
        if (r < 0)
                return r;
        int ms = grpc_client_poll_timeout(c);
        if (until != UINT64_MAX) {
                uint64_t now = now_monotonic_usec();
                uint64_t left = until > now ? (until - now + 999) / 1000 : 0;
                if (ms < 0 || left < (uint64_t)ms)
                        ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd p = { .fd = c->conn.fd, .events = grpc_client_poll_events(c) };
        int k = poll(&p, 1, ms);
        if (k < 0 && errno != EINTR)
                return connection_fail(c, -errno, "poll: %m");
        return grpc_client_process(c, k > 0 ? p.revents : 0);
}

/* ---- nghttp2's callbacks ---- */

static struct grpc_call *call_of(nghttp2_session *s, int32_t stream_id)
{
        return nghttp2_session_get_stream_user_data(s, stream_id);
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
        return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *userdata)
{
        struct grpc_call *call = call_of(s, f->hd.stream_id);
        if (f->hd.type != NGHTTP2_HEADERS || !call)
                return 0;
        char v[32];
        if (header_is(name, namelen, ":status")) {
                snprintf(v, sizeof v, "%.*s", (int)(valuelen < 31 ? valuelen : 31), value);
                call->http_status = atoi(v);
        } else if (header_is(name, namelen, "content-type"))
                snprintf(call->content_type, sizeof call->content_type, "%.*s",
                         (int)(valuelen < 63 ? valuelen : 63), value);
        else if (header_is(name, namelen, "grpc-status")) {
                uint32_t code;
                snprintf(v, sizeof v, "%.*s", (int)(valuelen < 31 ? valuelen : 31), value);
                /* gRPC: a status that does not parse is UNKNOWN. */
                call->grpc_status = safe_atou32(v, &code) == 0 && code <= INT_MAX ? (int)code :
                                                                                    API_UNKNOWN;
        } else if (header_is(name, namelen, "grpc-message")) {
                free(call->grpc_message);
                call->grpc_message = grpc_percent_decode((const char *)value, valuelen);
        }
        return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *userdata)
{
        struct grpc_client *c = userdata;
        struct grpc_call *call = call_of(s, stream_id);
        if (!call || call->local_error)
                return 0;
        uint8_t *p = bytes_reserve(&call->in, &call->in_off, &call->in_len, &call->in_cap, len);
        if (!p) {
                call->local_error = client_fail(c, -ENOMEM, "out of memory");
                return 0;
        }
        memcpy(p, data, len);
        /* A message over the limit is refused as soon as its length is known, before its
         * bytes pile up. */
        size_t mlen;
        int r = grpc_frame_parse(call->in + call->in_off, call->in_len - call->in_off,
                                 c->max_message, &mlen);
        if (r < 0) {
                const uint8_t *h = call->in + call->in_off;
                if (r == -EMSGSIZE)
                        call->local_error = client_fail(
                                c, r,
                                "hostd sent a message of %" PRIu32 " bytes, over the limit of %zu",
                                (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 |
                                        h[4],
                                c->max_message);
                else
                        call->local_error = client_fail(
                                c, r,
                                "hostd sent a compressed message, which hostctl did not ask for");
                nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
        }
        return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *userdata)
{
        struct grpc_client *c = userdata;
        switch (f->hd.type) {
        case NGHTTP2_PING:
                if (f->hd.flags & NGHTTP2_FLAG_ACK)
                        c->ping_sent_usec = 0;
                break;
        case NGHTTP2_GOAWAY:
                c->goaway = true;
                c->goaway_code = f->goaway.error_code;
                printable(f->goaway.opaque_data,
                          f->goaway.opaque_data_len > 40 ? 40 : f->goaway.opaque_data_len,
                          c->goaway_debug, sizeof c->goaway_debug);
                break;
        case NGHTTP2_HEADERS:
        case NGHTTP2_DATA:
                /* hostd's side is done (its trailers, or a trailers-only answer): the call has
                 * its outcome even while ours stays open (an exec never half-closes). */
                if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
                        struct grpc_call *call = call_of(s, f->hd.stream_id);
                        if (call)
                                call->remote_ended = true;
                }
                break;
        }
        return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                           void *userdata)
{
        struct grpc_call *call = call_of(s, stream_id);
        if (call) {
                call->closed = true;
                call->h2_error = error_code;
        }
        return 0;
}

static int on_error(nghttp2_session *s, int lib_error_code, const char *msg, size_t len,
                    void *userdata)
{
        struct grpc_client *c = userdata;
        snprintf(c->h2_error, sizeof c->h2_error, "%.*s", (int)len, msg);
        return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *userdata)
{
        /* By the stream's user data, not source->ptr: a call given up on (grpc_call_done)
         * clears it, and its stream then sends nothing more before the RST_STREAM. */
        struct grpc_call *call = call_of(s, stream_id);
        if (!call)
                return NGHTTP2_ERR_DEFERRED;
        size_t avail = call->out_len - call->out_off;
        if (avail == 0) {
                if (call->out_eof) {
                        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
                        return 0;
                }
                call->deferred = true;
                return NGHTTP2_ERR_DEFERRED;
        }
        size_t n = avail < length ? avail : length;
        memcpy(buf, call->out + call->out_off, n);
        call->out_off += n;
        if (call->out_off == call->out_len) {
                call->out_off = call->out_len = 0;
                if (call->out_eof)
                        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        return (ssize_t)n;
}

/* ---- connecting ---- */

static int session_open(struct grpc_client *c)
{
        nghttp2_session_callbacks *cbs;
        if (nghttp2_session_callbacks_new(&cbs) != 0)
                return client_fail(c, -ENOMEM, "out of memory");
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
        int r = nghttp2_session_client_new(&c->h2, cbs, c);
        nghttp2_session_callbacks_del(cbs);
        if (r != 0)
                return client_fail(c, -ENOMEM, "HTTP/2 session: %s", nghttp2_strerror(r));

        const nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
        };
        r = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings));
        if (r == 0)
                r = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                                          CONNECTION_WINDOW);
        if (r != 0)
                return client_fail(c, -ENOMEM, "HTTP/2 settings: %s", nghttp2_strerror(r));
        c->last_recv_usec = now_monotonic_usec();
        /* The preface goes with the first call: a hostd that refuses this client over TLS
         * (TLS 1.3 ends the handshake before hostd checks our certificate) then says so to
         * that call, which names what was being done. */
        return 0;
}

int grpc_client_connect_unix(struct grpc_client *c, const char *path)
{
        int r = conn_connect_unix(&c->conn, path, c->timeout_ms);
        if (r < 0)
                return client_fail(c, r, "%s", c->conn.error);
        snprintf(c->target, sizeof c->target, "%s", path);
        /* What gRPC's own clients send for a Unix socket. */
        snprintf(c->authority, sizeof c->authority, "localhost");
        c->tls = false;
        return session_open(c);
}

int grpc_client_connect_tls(struct grpc_client *c, const char *addr, const char *cert,
                            const char *key, const char *ca)
{
        int r = conn_connect_tls(&c->conn, addr, cert, key, ca, "h2", c->timeout_ms);
        if (r < 0)
                return client_fail(c, r, "%s", c->conn.error);
        snprintf(c->target, sizeof c->target, "%s", addr);
        snprintf(c->authority, sizeof c->authority, "%s", addr);
        c->tls = true;
        return session_open(c);
}

void grpc_client_done(struct grpc_client *c)
{
        if (c->h2) {
                /* A GOAWAY, if the socket takes it now, lets hostd tell a goodbye from a
                 * crash; nothing waits for it. */
                if (!c->broken && nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR) == 0)
                        flush(c);
                nghttp2_session_del(c->h2);
                c->h2 = NULL;
        }
        conn_close(&c->conn);
        free(c->wbuf);
        c->wbuf = NULL;
        c->wlen = c->wcap = 0;
}

/* ---- calls ---- */

#define NV(n, v)                                                                                   \
        {                                                                                          \
                (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE     \
        }

int grpc_call_start(struct grpc_client *c, struct grpc_call *call, const char *method,
                    int64_t timeout_ms)
{
        *call = (struct grpc_call){
                .client = c,
                .grpc_status = -1,
                .deadline = UINT64_MAX,
                .timeout_ms = timeout_ms,
        };
        snprintf(call->method, sizeof call->method, "%s", method);
        c->code = -1;
        c->error[0] = 0;
        if (c->broken)
                return report_broken(c);
        if (!c->h2)
                return client_fail(c, -ENOTCONN, "not connected to hostd");

        char path[160], timeout[16];
        snprintf(path, sizeof path, GRPC_SERVICE_PATH "%s", method);
        nghttp2_nv nva[] = {
                NV(":method", "POST"),
                NV(":scheme", c->tls ? "https" : "http"),
                NV(":path", path),
                NV(":authority", c->authority),
                NV("content-type", "application/grpc"),
                NV("te", "trailers"),
                NV("user-agent", "hostctl/" HOSTD_VERSION),
                /* Nothing compressed: hostctl would have to inflate it. */
                NV("grpc-accept-encoding", "identity"),
                NV("grpc-timeout", timeout_ms >= 0 ? grpc_timeout_format(timeout_ms, timeout) : ""),
        };
        size_t n = ELEMENTSOF(nva) - (timeout_ms >= 0 ? 0 : 1);
        nghttp2_data_provider body = { .read_callback = read_body };
        int32_t id = nghttp2_submit_request(c->h2, NULL, nva, n, &body, call);
        if (id < 0) {
                char note[256];
                if (id == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED)
                        return client_fail(c, -ECONNRESET,
                                           "hostd takes no more calls on this connection%s",
                                           goaway_note(c, note));
                return client_fail(c, -EPROTO, "HTTP/2 request: %s", nghttp2_strerror(id));
        }
        call->stream_id = id;
        if (timeout_ms >= 0)
                call->deadline = now_monotonic_usec() + (uint64_t)timeout_ms * 1000;
        return 0;
}

int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg, bool last)
{
        struct grpc_client *c = call->client;
        if (call->stream_id <= 0 || call->closed || call->remote_ended || call->out_eof)
                return -EPIPE; /* the call is over (or our side is): nobody reads this */
        if (msg) {
                size_t len = protobuf_c_message_get_packed_size(msg);
                if (len > UINT32_MAX)
                        return client_fail(c, -EMSGSIZE, "request too large");
                uint8_t *p = bytes_reserve(&call->out, &call->out_off, &call->out_len,
                                           &call->out_cap, GRPC_FRAME_HEADER + len);
                if (!p)
                        return client_fail(c, -ENOMEM, "out of memory");
                grpc_frame_header(p, (uint32_t)len);
                protobuf_c_message_pack(msg, p + GRPC_FRAME_HEADER);
        }
        if (last)
                call->out_eof = true;
        if (call->deferred) {
                call->deferred = false;
                int r = nghttp2_session_resume_data(c->h2, call->stream_id);
                if (r < 0 && r != NGHTTP2_ERR_INVALID_ARGUMENT)
                        return client_fail(c, -EPROTO, "HTTP/2: %s", nghttp2_strerror(r));
        }
        return 0;
}

size_t grpc_call_pending(const struct grpc_call *call)
{
        return call->out_len - call->out_off + call->client->wlen;
}

static int check_headers(struct grpc_call *call)
{
        struct grpc_client *c = call->client;
        char cb[24];
        if (call->http_status != 200)
                return client_fail(c, -EPROTO,
                                   "hostd answered %s with HTTP status %d (gRPC would say %s), "
                                   "not a gRPC reply",
                                   call->method, call->http_status,
                                   grpc_code_name(grpc_code_from_http(call->http_status), cb));
        if (!startswith(call->content_type, "application/grpc"))
                return client_fail(c, -EPROTO,
                                   "hostd answered %s with content-type '%s', not gRPC's",
                                   call->method, call->content_type);
        return 0;
}

static const char *format_timeout(int64_t ms, char buf[static 32])
{
        if (ms % 1000 == 0)
                snprintf(buf, 32, "%" PRId64 " s", ms / 1000);
        else
                snprintf(buf, 32, "%" PRId64 " ms", ms);
        return buf;
}

/* How the call ended, once hostd's side is done or the stream is gone. */
static int call_outcome(struct grpc_call *call)
{
        struct grpc_client *c = call->client;
        char cb[24], tb[32];
        if (call->grpc_status >= 0) {
                /* A status (in trailers, or a trailers-only answer) is the outcome, whatever
                 * the HTTP status said. */
                if (call->grpc_status == API_OK) {
                        int r = check_headers(call);
                        if (r < 0)
                                return r;
                        if (call->in_len > call->in_off)
                                return client_fail(c, -EPROTO,
                                                   "hostd ended %s in the middle of a message",
                                                   call->method);
                        return 0;
                }
                /* As hostd wrote it: the caller escapes what it shows on a terminal. */
                const char *m = call->grpc_message ? call->grpc_message : "";
                if (call->grpc_status == API_DEADLINE_EXCEEDED && call->timeout_ms >= 0)
                        /* hostd's deadline and ours are the same one: the same words. */
                        return client_fail(c, -ETIMEDOUT, "no reply from hostd within %s (%s%s%s)",
                                           format_timeout(call->timeout_ms, tb),
                                           grpc_code_name(call->grpc_status, cb), *m ? ": " : "",
                                           m);
                c->code = call->grpc_status;
                return client_fail(c, -EREMOTEIO, "%s%s%s", grpc_code_name(call->grpc_status, cb),
                                   *m ? ": " : "", m);
        }
        if (call->closed && call->h2_error != NGHTTP2_NO_ERROR) {
                char note[256];
                return client_fail(c, -ECONNRESET, "hostd reset the call %s (HTTP/2 %s, gRPC %s)%s",
                                   call->method, nghttp2_http2_strerror(call->h2_error),
                                   grpc_code_name(grpc_code_from_h2_error(call->h2_error), cb),
                                   goaway_note(c, note));
        }
        int r = check_headers(call);
        if (r < 0)
                return r;
        return client_fail(c, -EPROTO, "hostd ended %s without a gRPC status", call->method);
}

/* The next whole message in the call's buffer: 1, or -EAGAIN. */
static int call_take(struct grpc_call *call, const ProtobufCMessageDescriptor *d,
                     ProtobufCMessage **ret)
{
        struct grpc_client *c = call->client;
        size_t len;
        int r = grpc_frame_parse(call->in + call->in_off, call->in_len - call->in_off,
                                 c->max_message, &len);
        if (r == 0)
                return -EAGAIN;
        if (r < 0) /* on_data_chunk said why */
                return call->local_error ? call->local_error : r;
        r = check_headers(call);
        if (r < 0)
                return r;
        ProtobufCMessage *m = protobuf_c_message_unpack(
                d, NULL, len, call->in + call->in_off + GRPC_FRAME_HEADER);
        call->in_off += GRPC_FRAME_HEADER + len;
        if (!m)
                return client_fail(c, -EBADMSG, "hostd answered %s with a %s that does not decode",
                                   call->method, d->short_name);
        *ret = m;
        return 1;
}

int grpc_call_try_recv(struct grpc_call *call, const ProtobufCMessageDescriptor *d,
                       ProtobufCMessage **ret)
{
        struct grpc_client *c = call->client;
        if (call->local_error)
                return call->local_error;
        int r = call_take(call, d, ret);
        if (r != -EAGAIN)
                return r;
        if (call->remote_ended || call->closed)
                return call_outcome(call);
        if (c->broken)
                return report_broken(c);
        return -EAGAIN;
}

int grpc_call_recv(struct grpc_call *call, const ProtobufCMessageDescriptor *d, uint64_t deadline,
                   ProtobufCMessage **ret)
{
        struct grpc_client *c = call->client;
        uint64_t until = deadline < call->deadline ? deadline : call->deadline;
        for (;;) {
                int r = grpc_call_try_recv(call, d, ret);
                if (r != -EAGAIN)
                        return r;
                if (until != UINT64_MAX && now_monotonic_usec() >= until) {
                        char tb[32];
                        grpc_call_cancel(call);
                        if (until == call->deadline)
                                return client_fail(c, -ETIMEDOUT, "no reply from hostd within %s",
                                                   format_timeout(call->timeout_ms, tb));
                        return client_fail(c, -ETIMEDOUT, "no reply from hostd in time");
                }
                r = pump(c, until);
                if (r < 0 && !c->broken)
                        return client_fail(c, r, "%m");
        }
}

void grpc_call_cancel(struct grpc_call *call)
{
        struct grpc_client *c = call->client;
        if (!c || call->stream_id <= 0 || call->closed)
                return;
        /* Whatever comes for the stream from now on finds no call: this one may be gone. */
        nghttp2_session_set_stream_user_data(c->h2, call->stream_id, NULL);
        if (!c->broken) {
                /* hostd's side already ended: no error, just our side's end. */
                nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                          call->remote_ended ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
                flush(c);
        }
        call->closed = true;
}

void grpc_call_done(struct grpc_call *call)
{
        if (!call->client)
                return;
        grpc_call_cancel(call);
        free(call->out);
        free(call->in);
        free(call->grpc_message);
        *call = (struct grpc_call){};
}

static void call_donep(struct grpc_call *call) { grpc_call_done(call); }
#define _cleanup_call_ _cleanup_(call_donep)

int grpc_unary(struct grpc_client *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *d, ProtobufCMessage **ret)
{
        _cleanup_call_ struct grpc_call call = {};
        int r = grpc_call_start(c, &call, method, c->timeout_ms);
        if (r >= 0)
                r = grpc_call_send(&call, req, true);
        if (r < 0)
                return r;
        ProtobufCMessage *m = NULL, *extra = NULL;
        r = grpc_call_recv(&call, d, UINT64_MAX, &m);
        if (r == 0)
                return client_fail(c, -EPROTO, "hostd ended %s without an answer", method);
        if (r < 0)
                return r;
        r = grpc_call_recv(&call, d, UINT64_MAX, &extra);
        if (r > 0) {
                protobuf_c_message_free_unpacked(extra, NULL);
                r = client_fail(c, -EPROTO, "hostd answered %s with more than one message", method);
        }
        if (r < 0) {
                protobuf_c_message_free_unpacked(m, NULL);
                return r;
        }
        *ret = m;
        return 0;
}

int grpc_server_stream(struct grpc_client *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *d, int64_t timeout_ms, int64_t first_ms,
                       grpc_message_cb_t cb, void *userdata)
{
        _cleanup_call_ struct grpc_call call = {};
        int r = grpc_call_start(c, &call, method, timeout_ms);
        if (r >= 0)
                r = grpc_call_send(&call, req, true);
        if (r < 0)
                return r;
        for (bool first = true;; first = false) {
                uint64_t until = first && first_ms >= 0 ?
                                         now_monotonic_usec() + (uint64_t)first_ms * 1000 :
                                         UINT64_MAX;
                ProtobufCMessage *m;
                r = grpc_call_recv(&call, d, until, &m);
                if (r == -ETIMEDOUT && until != UINT64_MAX && until < call.deadline) {
                        char tb[32];
                        return client_fail(c, r, "no reply from hostd within %s",
                                           format_timeout(first_ms, tb));
                }
                if (r <= 0)
                        return r;
                r = cb(m, userdata);
                protobuf_c_message_free_unpacked(m, NULL);
                if (r < 0) {
                        grpc_call_cancel(&call);
                        c->error[0] = 0;
                        return r;
                }
        }
}
