/* The gRPC server (hostd/grpc-server.c) on one connection adopted from a socketpair
 * (grpc_server_adopt()), serving the transport's test service: what it writes back to the
 * bytes a client sends, whole or in pieces. No socket path, no root. The cases fuzz-grpc
 * found are here, each with the bytes that showed it. */
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "grpc-server.h"
#include "grpc-test-service.h"
#include "grpc-wire.h"
#include "grpctest.pb-c.h"

#define CLIENT_MAGIC "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

struct peer {
        sd_event *event;
        struct grpc_server *server;
        struct grpc_test_service service;
        int fd;       /* the client's end */
        uint8_t *out; /* all the server wrote */
        size_t out_len, out_cap;
        bool closed; /* by the server */
};

static void peer_read(struct peer *p)
{
        uint8_t buf[16384];
        while (!p->closed) {
                ssize_t n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno == ECONNRESET)) {
                        p->closed = true;
                        return;
                }
                if (n < 0)
                        return;
                if (p->out_cap - p->out_len < (size_t)n) {
                        p->out_cap = (p->out_len + (size_t)n) * 2;
                        p->out = realloc(p->out, p->out_cap);
                        if (!p->out)
                                abort();
                }
                memcpy(p->out + p->out_len, buf, (size_t)n);
                p->out_len += (size_t)n;
        }
}

/* Turn the server's loop until nothing is due, reading all it writes. */
static void peer_settle(struct peer *p)
{
        for (int i = 0; i < 1000; i++) {
                peer_read(p);
                if (sd_event_run(p->event, 0) <= 0)
                        break;
        }
        peer_read(p);
}

static void peer_start(struct peer *p)
{
        *p = (struct peer){ .fd = -1 };
        const struct grpc_server_options opts = {
                .max_connections = 1,
                .max_inflight = 4,
                .max_message = 16384,
                .descriptors = grpctest_descriptor_set,
                .descriptors_len = grpctest_descriptor_set_len,
        };
        int sv[2];
        if (sd_event_new(&p->event) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        p->service.event = p->event;
        const struct grpc_service services[] = { grpc_test_service(&p->service) };
        CHECK_R(grpc_server_new(p->event, &opts, services, 1, &p->server), 0);
        p->fd = sv[1];
        CHECK_R(grpc_server_adopt(p->server, sv[0], "test", false), 0);
}

static void peer_send(struct peer *p, const void *buf, size_t n)
{
        CHECK_EQ(send(p->fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
        peer_settle(p);
}

static void peer_stop(struct peer *p)
{
        grpc_server_free(p->server);
        close(p->fd);
        sd_event_unref(p->event);
        free(p->out);
}

static bool peer_wrote(const struct peer *p, const char *s)
{
        return p->out_len > 0 && memmem(p->out, p->out_len, s, strlen(s)) != NULL;
}

/* ---- a client: nghttp2's, with one call ---- */

struct client {
        nghttp2_session *h2;
        const uint8_t *body;
        size_t body_len, body_off;
        uint8_t data[4096];
        size_t data_len;
        char status[8], grpc_status[8];
        char grpc_message[256];
        bool closed;
        uint32_t close_error; /* the stream's: NO_ERROR, or why nghttp2 reset it */
};

static ssize_t client_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *userdata)
{
        struct client *c = userdata;
        size_t n = c->body_len - c->body_off < len ? c->body_len - c->body_off : len;
        memcpy(buf, c->body + c->body_off, n);
        c->body_off += n;
        if (c->body_off == c->body_len)
                *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
}

static int client_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                         size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *userdata)
{
        struct client *c = userdata;
        char *dst = NULL;
        size_t max = sizeof c->status;
        if (namelen == 7 && memcmp(name, ":status", 7) == 0)
                dst = c->status;
        else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
                dst = c->grpc_status;
        else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
                dst = c->grpc_message, max = sizeof c->grpc_message;
        if (dst && valuelen < max) {
                memcpy(dst, value, valuelen);
                dst[valuelen] = 0;
        }
        return 0;
}

static int client_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                       size_t len, void *userdata)
{
        struct client *c = userdata;
        if (len <= sizeof c->data - c->data_len) {
                memcpy(c->data + c->data_len, data, len);
                c->data_len += len;
        }
        return 0;
}

static int client_close(nghttp2_session *h2, int32_t id, uint32_t error, void *userdata)
{
        struct client *c = userdata;
        c->closed = true;
        c->close_error = error;
        return 0;
}

/* Echo with its bytes sent in pieces of piece bytes (0: whole); the answer read by a client
 * that checks what it reads as nghttp2 does by default. */
static void call_echo(struct peer *p, struct client *c, size_t piece,
                      const Hostd__Test__V1__EchoRequest *req)
{
        nghttp2_session_callbacks *cb;
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_header_callback(cb, client_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, client_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, client_close);
        CHECK_R(nghttp2_session_client_new(&c->h2, cb, c), 0);
        nghttp2_session_callbacks_del(cb);

        uint8_t body[256];
        if (protobuf_c_message_get_packed_size(&req->base) > sizeof body - 5)
                abort();
        size_t n = protobuf_c_message_pack(&req->base, body + 5);
        body[0] = 0;
        body[1] = body[2] = body[3] = 0;
        body[4] = (uint8_t)n;
        c->body = body;
        c->body_len = n + 5;
#define NV(k, v)                                                                                   \
        {                                                                                          \
                (uint8_t *)k, (uint8_t *)v, strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE             \
        }
        const nghttp2_nv nv[] = {
                NV(":method", "POST"),
                NV(":scheme", "http"),
                NV(":path", "/hostd.test.v1.Test/Echo"),
                NV(":authority", "localhost"),
                NV("content-type", "application/grpc"),
                NV("te", "trailers"),
        };
#undef NV
        nghttp2_data_provider prd = { .read_callback = client_body };
        CHECK_R(nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0), 0);
        CHECK(nghttp2_submit_request(c->h2, NULL, nv, ELEMENTSOF(nv), &prd, NULL) == 1);

        size_t taken = 0;
        for (int round = 0; round < 10 && !c->closed && !p->closed; round++) {
                const uint8_t *out;
                ssize_t k;
                while ((k = nghttp2_session_mem_send(c->h2, &out)) > 0)
                        for (size_t off = 0; off < (size_t)k;) {
                                size_t m = piece && piece < (size_t)k - off ? piece :
                                                                              (size_t)k - off;
                                peer_send(p, out + off, m);
                                off += m;
                        }
                CHECK(k == 0);
                CHECK_EQ(nghttp2_session_mem_recv(c->h2, p->out + taken, p->out_len - taken),
                         (ssize_t)(p->out_len - taken));
                taken = p->out_len;
        }
}

static void test_echo(size_t piece)
{
        struct peer p;
        struct client c = {};
        Hostd__Test__V1__EchoRequest req = HOSTD__TEST__V1__ECHO_REQUEST__INIT;
        req.text = (char *)"hi";
        peer_start(&p);
        call_echo(&p, &c, piece, &req);
        CHECK(c.closed);
        CHECK_EQ(c.close_error, NGHTTP2_NO_ERROR);
        CHECK_STR(c.status, "200");
        CHECK_STR(c.grpc_status, "0");
        Hostd__Test__V1__EchoResponse *resp =
                c.data_len > 5 ?
                        hostd__test__v1__echo_response__unpack(NULL, c.data_len - 5, c.data + 5) :
                        NULL;
        CHECK(resp);
        if (resp) {
                CHECK_STR(resp->text, "hi");
                CHECK_STR(resp->peer, "test"); /* the name grpc_server_adopt() was given */
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        CHECK(!p.closed);
        nghttp2_session_del(c.h2);
        peer_stop(&p);
}

/* grpc_server_adopt() counts in max-connections as an accepted socket does. */
static void test_adopt_limit(void)
{
        struct peer p;
        peer_start(&p);
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        CHECK_R(grpc_server_adopt(p.server, sv[0], "second", false), -EBUSY);
        CHECK(fcntl(sv[0], F_GETFD) < 0); /* taken over, and closed */
        close(sv[1]);
        peer_stop(&p);
}

/* An HTTP/1 request as a connection's first bytes is answered 505, and the connection
 * closed. */
static void test_http1(void)
{
        struct peer p;
        peer_start(&p);
        peer_send(&p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
        CHECK(p.out_len > 13 && memcmp(p.out, "HTTP/1.1 505 ", 13) == 0);
        CHECK(p.closed);
        peer_stop(&p);
}

/* Found by fuzz-grpc: "PRI * H", the start of HTTP/2's preface, then "POST ...". The first
 * piece made the server write its SETTINGS; the second, which breaks the preface, was taken
 * for an HTTP/1 request line and answered 505: HTTP/1 after HTTP/2 on one connection. An
 * HTTP/1 request is a connection's first bytes, and nothing may have been written before. */
static void test_preface_broken_by_http1(void)
{
        struct peer p;
        peer_start(&p);
        peer_send(&p, "PRI * H", 7);
        CHECK(p.out_len >= 9 && p.out[3] == NGHTTP2_SETTINGS);
        size_t settings = p.out_len;
        peer_send(&p, "POST / HTTP/1.1\r\n\r\n", 19);
        CHECK(p.closed);
        CHECK_EQ(p.out_len, settings);
        CHECK(!peer_wrote(&p, "HTTP/1.1"));
        peer_stop(&p);

        /* The same bytes at once: refused, nothing written. */
        peer_start(&p);
        peer_send(&p, "PRI * HPOST / HTTP/1.1\r\n\r\n", 26);
        CHECK(p.closed);
        CHECK_EQ(p.out_len, 0);
        peer_stop(&p);
}

/* Found by fuzz-grpc: a status message that ends with a space (a test service's
 * fail_message 'caf\xc3\xa9... 100% '). grpc-message kept it as it was, and RFC 9113 (8.2.1)
 * forbids whitespace at either end of a field value: a client on nghttp2 reset the stream
 * (PROTOCOL_ERROR) rather than read the status. */
static void test_status_message_whitespace(void)
{
        static const char *const messages[] = { " leading", "trailing ", " both ", "  " };
        for (size_t i = 0; i < ELEMENTSOF(messages); i++) {
                struct peer p;
                struct client c = {};
                Hostd__Test__V1__EchoRequest req = HOSTD__TEST__V1__ECHO_REQUEST__INIT;
                req.fail_code = API_NOT_FOUND;
                req.fail_message = (char *)messages[i];
                peer_start(&p);
                call_echo(&p, &c, 0, &req);
                CHECK(c.closed);
                CHECK_EQ(c.close_error, NGHTTP2_NO_ERROR);
                CHECK_STR(c.grpc_status, "5");
                CHECK_R(grpc_percent_decode(c.grpc_message), 0);
                CHECK_STR(c.grpc_message, messages[i]);
                nghttp2_session_del(c.h2);
                peer_stop(&p);
        }
}

int main(void)
{
        log_set_max_level(LOG_LEVEL_WARNING);
        test_echo(0);
        test_echo(1);
        test_echo(7);
        test_adopt_limit();
        test_http1();
        test_preface_broken_by_http1();
        test_status_message_whitespace();
        return check_report();
}
