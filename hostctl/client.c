/* Blocking client for hostd's Unix socket or TLS listener: framed Requests out, framed
 * Responses in, with a deadline on every wait. */
#include "client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "util.h"

_printf_(3, 4) static int client_fail(struct hostd_client *c, int r, const char *fmt, ...)
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

const char *hostd_code_name(Hostd__V1__Code code, char buf[static 24])
{
        const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value(&hostd__v1__code__descriptor, (int)code);
        if (v)
                return v->name;
        snprintf(buf, 24, "CODE_%d", (int)code);
        return buf;
}

void hostd_client_init(struct hostd_client *c, int64_t timeout_ms)
{
        *c = (struct hostd_client){
                .fd = -1,
                .next_id = 1,
                .timeout_ms = timeout_ms,
                .max_frame = FRAME_MAX_DEFAULT,
        };
        frame_reader_init(&c->reader, c->max_frame);
}

void hostd_client_done(struct hostd_client *c)
{
        SSL_free(c->ssl);
        c->ssl = NULL;
        SSL_CTX_free(c->ssl_ctx);
        c->ssl_ctx = NULL;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        frame_reader_free(&c->reader);
        frame_reader_init(&c->reader, c->max_frame);
}

int hostd_client_connect(struct hostd_client *c, const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);

        if (n == 0)
                return client_fail(c, -EINVAL, "connect: empty socket path");
        if (n >= sizeof sa.sun_path)
                return client_fail(c, -ENAMETOOLONG,
                                   "connect %s: socket path longer than %zu bytes", path,
                                   sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, path, n);

        if (c->fd >= 0)
                hostd_client_done(c);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return client_fail(c, -errno, "socket: %m");

        /* A non-blocking connect on a Unix socket cannot be waited for with poll (it fails
         * with EAGAIN when the listener's backlog is full), but a blocking one honours
         * SO_SNDTIMEO: that is the connect timeout. */
        if (c->timeout_ms >= 0) {
                int64_t ms = c->timeout_ms > 0 ? c->timeout_ms : 1;
                struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
                if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                        return client_fail(c, -errno, "connect %s: set timeout: %m", path);
        }

        for (;;) {
                if (connect(fd, (struct sockaddr *)&sa, sizeof sa) >= 0)
                        break;
                if (errno == EINTR)
                        continue;
                int r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
                return client_fail(c, r, "connect %s: %m", path);
        }

        /* From here on every wait goes through poll with the deadline. */
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return client_fail(c, -errno, "connect %s: set non-blocking: %m", path);

        c->fd = TAKE_FD(fd);
        return 0;
}

static uint64_t deadline_from_now(const struct hostd_client *c)
{
        if (c->timeout_ms < 0)
                return UINT64_MAX;
        return now_monotonic_usec() + (uint64_t)c->timeout_ms * 1000;
}

/* Wait for events on the socket until the deadline: 0 when ready, -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                int ms = -1;
                if (deadline != UINT64_MAX) {
                        uint64_t now = now_monotonic_usec();
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        uint64_t left = (deadline - now + 999) / 1000;
                        ms = left > INT_MAX ? INT_MAX : (int)left;
                }
                struct pollfd p = { .fd = fd, .events = events };
                int r = poll(&p, 1, ms);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r > 0)
                        return 0; /* POLLHUP and POLLERR too: the next read or send says why */
        }
}

/* OpenSSL writes to the socket with write(), so a hostd that went away would be a SIGPIPE, and
 * hostctl keeps SIGPIPE's default for its output ("hostctl logs -f | head"). Around each SSL
 * call it is blocked, and one that call raised is taken back. */
struct sigpipe_guard {
        sigset_t old;
        bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
        sigset_t pipe, pending;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        sigprocmask(SIG_BLOCK, &pipe, &g->old);
        g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
        sigset_t pipe, pending;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
                const struct timespec zero = {};
                int saved = errno;
                sigtimedwait(&pipe, NULL, &zero);
                errno = saved;
        }
        sigprocmask(SIG_SETMASK, &g->old, NULL);
}

#define WITHOUT_SIGPIPE(expr)                                                                      \
        ({                                                                                         \
                struct sigpipe_guard _g;                                                           \
                sigpipe_block(&_g);                                                                \
                __typeof__(expr) _r = (expr);                                                      \
                sigpipe_restore(&_g);                                                              \
                _r;                                                                                \
        })

/* The last OpenSSL error's reason, the queue emptied. */
static const char *ssl_reason(void)
{
        unsigned long e = ERR_peek_last_error();
        const char *s = e ? ERR_reason_error_string(e) : NULL;
        ERR_clear_error();
        return s ? s : "unknown error";
}

/* After an SSL call returned k: -EAGAIN (c->ssl_wants says for what), 0 for the peer's end,
 * or a negative errno with c->tls_error set. */
static int ssl_result(struct hostd_client *c, int k)
{
        switch (SSL_get_error(c->ssl, k)) {
        case SSL_ERROR_WANT_READ: c->ssl_wants = POLLIN; return -EAGAIN;
        case SSL_ERROR_WANT_WRITE: c->ssl_wants = POLLOUT; return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN: return 0;
        case SSL_ERROR_SYSCALL: ERR_clear_error(); return errno > 0 ? -errno : 0;
        default:
                /* TLS 1.3 ends a client's handshake before hostd checks its certificate: a
                 * refusal arrives as an alert on the first read. */
                snprintf(c->tls_error, sizeof c->tls_error,
                         "hostd refused this client over TLS: %s (hostd's log says why)",
                         ssl_reason());
                return -EPROTO;
        }
}

ssize_t hostd_client_fill(struct hostd_client *c)
{
        if (!c->ssl)
                return frame_reader_fill(&c->reader, c->fd);
        uint8_t buf[16384];
        c->tls_error[0] = 0;
        ERR_clear_error();
        int k = WITHOUT_SIGPIPE(SSL_read(c->ssl, buf, sizeof buf));
        if (k <= 0)
                return ssl_result(c, k);
        int r = frame_reader_feed(&c->reader, buf, (size_t)k);
        return r < 0 ? r : k;
}

bool hostd_client_buffered(const struct hostd_client *c)
{
        return c->ssl && SSL_has_pending(c->ssl);
}

/* Write all of buf, waiting until the deadline. */
static int client_write(struct hostd_client *c, const void *buf, size_t n, uint64_t deadline)
{
        c->tls_error[0] = 0;
        for (size_t done = 0; done < n;) {
                ssize_t k;
                short wants = POLLOUT;
                if (c->ssl) {
                        ERR_clear_error();
                        int len = n - done > INT_MAX ? INT_MAX : (int)(n - done);
                        int w = WITHOUT_SIGPIPE(
                                SSL_write(c->ssl, (const uint8_t *)buf + done, len));
                        k = w > 0 ? w : ssl_result(c, w);
                        if (k == 0)
                                k = -EPIPE;
                        wants = c->ssl_wants;
                } else {
                        /* send() with MSG_NOSIGNAL rather than write(): a hostd that went away
                         * is an error to report, not a SIGPIPE that kills us (and SIGPIPE stays
                         * as it is for stdout, so that "hostctl logs -f | head" ends the usual
                         * way). */
                        k = send(c->fd, (const uint8_t *)buf + done, n - done,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (k < 0)
                                k = errno == EWOULDBLOCK ? -EAGAIN : -errno;
                }
                if (k >= 0) {
                        done += (size_t)k;
                        continue;
                }
                if (k == -EINTR)
                        continue;
                if (k != -EAGAIN && c->ssl && !c->tls_error[0]) {
                        /* A hostd that refused our certificate sent an alert before it
                         * closed: read it, to say why rather than "connection reset". */
                        uint8_t b;
                        ERR_clear_error();
                        int e = WITHOUT_SIGPIPE(SSL_read(c->ssl, &b, 1));
                        if (e <= 0)
                                ssl_result(c, e);
                }
                if (k != -EAGAIN)
                        return (int)k;
                int r = wait_fd(c->fd, wants, deadline);
                if (r < 0)
                        return r;
        }
        return 0;
}

int hostd_client_send_frame(struct hostd_client *c, const void *msg, size_t len)
{
        _cleanup_free_ uint8_t *buf = malloc(FRAME_VARINT_MAX + len);
        if (!buf)
                return -ENOMEM;
        size_t n = frame_varint_encode(len, buf);
        if (len > 0)
                memcpy(buf + n, msg, len);
        return client_write(c, buf, n + len, UINT64_MAX);
}

static void ssl_ctx_freep(SSL_CTX **p) { SSL_CTX_free(*p); }

/* A TLS 1.3 client context with our certificate and the CAs for hostd's. */
static int client_ssl_ctx(struct hostd_client *c, const char *cert, const char *key, const char *ca,
                          SSL_CTX **ret)
{
        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        int r;
        if (!ctx)
                return client_fail(c, -ENOMEM, "TLS: %s", ssl_reason());
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* Each file is opened here first, for an error that says why it cannot be. */
        const struct {
                const char *flag, *path;
        } files[] = { { "--ca", ca }, { "--cert", cert }, { "--key", key } };
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                if (access(files[i].path, R_OK) < 0)
                        return client_fail(c, -errno, "%s %s: %m", files[i].flag, files[i].path);
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
                return client_fail(c, -EINVAL, "--ca %s: no PEM certificate in it (%s)", ca,
                                   ssl_reason());
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
                return client_fail(c, -EINVAL, "--cert %s: no PEM certificate in it (%s)", cert,
                                   ssl_reason());
        BIO *b = BIO_new_file(key, "r");
        EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!pk)
                return client_fail(c, -EINVAL,
                                   "--key %s: no unencrypted PEM private key in it (%s)", key,
                                   ssl_reason());
        r = SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
        EVP_PKEY_free(pk);
        if (!r) {
                ERR_clear_error();
                return client_fail(c, -EINVAL, "--key %s does not match --cert %s", key, cert);
        }
        *ret = TAKE_PTR(ctx);
        return 0;
}

/* "host:port", "[v6]:port" into host and port. */
static int split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
        const char *colon = strrchr(addr, ':');
        if (!colon || !colon[1] || strlen(colon + 1) >= portlen ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1))
                return -EINVAL;
        const char *h = addr;
        size_t n = (size_t)(colon - addr);
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
                h++;
                n -= 2;
        }
        if (n == 0 || n >= hostlen || memchr(h, ':', n) != NULL) {
                /* a bare IPv6 address must be in brackets */
                if (!(n > 0 && n < hostlen && addr[0] == '['))
                        return -EINVAL;
        }
        memcpy(host, h, n);
        host[n] = 0;
        strcpy(port, colon + 1);
        return 0;
}

/* A non-blocking TCP connection to host:port, within the deadline. */
static int tcp_connect(struct hostd_client *c, const char *addr, const char *host, const char *port,
                       uint64_t deadline)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        int g = getaddrinfo(host, port, &hints, &ai);
        if (g != 0)
                return client_fail(c, -EHOSTUNREACH, "connect %s: %s", addr, gai_strerror(g));
        int r = -EHOSTUNREACH;
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                _cleanup_close_ int fd =
                        socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
                        if (errno != EINPROGRESS) {
                                r = -errno;
                                continue;
                        }
                        r = wait_fd(fd, POLLOUT, deadline);
                        if (r < 0)
                                continue;
                        int err = 0;
                        socklen_t n = sizeof err;
                        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n) < 0)
                                err = errno;
                        if (err) {
                                r = -err;
                                continue;
                        }
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                freeaddrinfo(ai);
                return TAKE_FD(fd);
        }
        freeaddrinfo(ai);
        return client_fail(c, r, "connect %s: %s", addr,
                           r == -ETIMEDOUT ? "no answer in time" : strerror(-r));
}

int hostd_client_connect_tls(struct hostd_client *c, const char *addr, const char *cert,
                             const char *key, const char *ca)
{
        char host[256], port[8];
        if (split_addr(addr, host, sizeof host, port, sizeof port) < 0)
                return client_fail(c, -EINVAL,
                                   "--host '%s': expected ADDR:PORT (192.0.2.1:7443, "
                                   "[2001:db8::1]:7443, hostd.example:7443)",
                                   addr);
        if (c->fd >= 0)
                hostd_client_done(c);

        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = NULL;
        int r = client_ssl_ctx(c, cert, key, ca, &ctx);
        if (r < 0)
                return r;

        uint64_t deadline = deadline_from_now(c);
        _cleanup_close_ int fd = tcp_connect(c, addr, host, port, deadline);
        if (fd < 0)
                return fd;

        SSL *ssl = SSL_new(ctx);
        if (!ssl || SSL_set_fd(ssl, fd) != 1) {
                SSL_free(ssl);
                return client_fail(c, -ENOMEM, "TLS %s: %s", addr, ssl_reason());
        }
        /* hostd's certificate must name what we connected to: its IP, or its DNS name. */
        struct in6_addr ip;
        if (inet_pton(AF_INET, host, &ip) == 1 || inet_pton(AF_INET6, host, &ip) == 1)
                r = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -EINVAL;
        else
                r = SSL_set1_host(ssl, host) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1 ?
                            0 :
                            -EINVAL;
        if (r < 0) {
                SSL_free(ssl);
                return client_fail(c, r, "TLS %s: cannot check the server's name '%s'", addr, host);
        }
        c->ssl = ssl;
        c->ssl_ctx = TAKE_PTR(ctx);
        c->fd = TAKE_FD(fd);

        for (;;) {
                ERR_clear_error();
                int k = WITHOUT_SIGPIPE(SSL_connect(c->ssl));
                if (k == 1)
                        return 0;
                long v = SSL_get_verify_result(c->ssl);
                r = ssl_result(c, k);
                if (r == -EAGAIN) {
                        r = wait_fd(c->fd, c->ssl_wants, deadline);
                        if (r == 0)
                                continue;
                        r = client_fail(c, r, "TLS %s: no handshake in time", addr);
                } else if (v != X509_V_OK)
                        r = client_fail(c, -EPROTO,
                                        "TLS %s: server certificate not trusted: %s (checked "
                                        "against --ca %s and the address %s)",
                                        addr, X509_verify_cert_error_string(v), ca, host);
                else if (c->tls_error[0])
                        r = client_fail(c, -EPROTO, "TLS %s: %s", addr, c->tls_error);
                else
                        r = client_fail(c, r < 0 ? r : -ECONNRESET,
                                        "TLS %s: the connection closed during the handshake", addr);
                hostd_client_done(c);
                return r;
        }
}

static int send_request(struct hostd_client *c, Hostd__V1__Request *req, uint64_t deadline)
{
        if (c->fd < 0)
                return client_fail(c, -ENOTCONN, "not connected to hostd");

        size_t len = hostd__v1__request__get_packed_size(req);
        if (len > c->max_frame)
                return client_fail(c, -EMSGSIZE, "request of %zu bytes is over the limit of %zu",
                                   len, c->max_frame);

        _cleanup_free_ uint8_t *buf = malloc(FRAME_VARINT_MAX + len);
        if (!buf)
                return client_fail(c, -ENOMEM, "out of memory");
        size_t n = frame_varint_encode(len, buf);
        n += hostd__v1__request__pack(req, buf + n);
        int r;

        r = client_write(c, buf, n, deadline);
        if (r == -ETIMEDOUT)
                return client_fail(c, r, "hostd did not take the request within %" PRId64 " ms",
                                   c->timeout_ms);
        if (r < 0 && c->tls_error[0])
                return client_fail(c, r, "%s", c->tls_error);
        if (r < 0)
                return client_fail(c, r, "send request to hostd: %s", strerror(-r));
        return 0;
}

/* Read the next Response, whichever id it carries. */
static int read_response(struct hostd_client *c, uint64_t deadline, Hostd__V1__Response **ret)
{
        for (;;) {
                const uint8_t *msg;
                size_t len;
                int r = frame_reader_next(&c->reader, &msg, &len);
                if (r == -EMSGSIZE)
                        return client_fail(c, r, "hostd sent a message over the limit of %zu bytes",
                                           c->max_frame);
                if (r < 0)
                        return client_fail(c, r, "hostd sent a malformed frame: %m");
                if (r > 0) {
                        Hostd__V1__Response *resp = hostd__v1__response__unpack(NULL, len, msg);
                        if (!resp)
                                return client_fail(c, -EBADMSG,
                                                   "hostd sent a Response that does not decode");
                        *ret = resp;
                        return 0;
                }

                ssize_t k = hostd_client_fill(c);
                if (k > 0)
                        continue;
                if (k == 0) {
                        if (frame_reader_partial(&c->reader))
                                return client_fail(
                                        c, -EPIPE,
                                        "hostd closed the connection in the middle of a message");
                        return client_fail(c, -ECONNRESET, "hostd closed the connection");
                }
                if (k != -EAGAIN && c->tls_error[0])
                        return client_fail(c, (int)k, "%s", c->tls_error);
                if (k != -EAGAIN)
                        return client_fail(c, (int)k, "read from hostd: %m");

                r = wait_fd(c->fd, c->ssl ? c->ssl_wants : POLLIN, deadline);
                if (r == -ETIMEDOUT) {
                        if (c->timeout_ms % 1000 == 0)
                                return client_fail(c, r, "no reply from hostd within %" PRId64 " s",
                                                   c->timeout_ms / 1000);
                        return client_fail(c, r, "no reply from hostd within %" PRId64 " ms",
                                           c->timeout_ms);
                }
                if (r < 0)
                        return client_fail(c, r, "poll: %m");
        }
}

/* An error Status turns into -EREMOTEIO with "CODE: message". */
static int check_status(struct hostd_client *c, const Hostd__V1__Response *resp)
{
        if (!resp->status || resp->status->code == API_OK)
                return 0;
        char buf[24];
        c->code = resp->status->code;
        const char *m = resp->status->message;
        return client_fail(c, -EREMOTEIO, "%s%s%s", hostd_code_name(c->code, buf),
                           m && *m ? ": " : "", m ? m : "");
}

/* The Response answers our request: its id, or id 0 with an error Status, which can only be
 * hostd refusing a request it could not even read the id of (we never use id 0). */
static bool response_is_ours(const Hostd__V1__Response *resp, uint64_t id)
{
        if (resp->id == id)
                return true;
        return resp->id == 0 && resp->status && resp->status->code != API_OK;
}

static int check_result(struct hostd_client *c, const Hostd__V1__Response *resp,
                        Hostd__V1__Response__ResultCase expected)
{
        if (resp->result_case == expected)
                return 0;
        const ProtobufCFieldDescriptor *got = protobuf_c_message_descriptor_get_field(
                &hostd__v1__response__descriptor, (unsigned)resp->result_case);
        const ProtobufCFieldDescriptor *want = protobuf_c_message_descriptor_get_field(
                &hostd__v1__response__descriptor, (unsigned)expected);
        if (!got)
                return client_fail(c, -EPROTO,
                                   "hostd answered without a result where '%s' was expected",
                                   want ? want->name : "?");
        return client_fail(c, -EPROTO, "hostd answered with a '%s' result where '%s' was expected",
                           got->name, want ? want->name : "?");
}

static uint64_t fresh_id(struct hostd_client *c)
{
        uint64_t id = c->next_id++;
        if (id == 0) /* id 0 is reserved for hostd's connection-level errors */
                id = c->next_id++;
        return id;
}

int hostd_client_call(struct hostd_client *c, Hostd__V1__Request *req,
                      Hostd__V1__Response__ResultCase expected, Hostd__V1__Response **ret)
{
        c->error[0] = 0;
        c->code = API_OK;
        req->id = fresh_id(c);

        uint64_t deadline = deadline_from_now(c);
        int r = send_request(c, req, deadline);
        if (r < 0)
                return r;

        for (;;) {
                Hostd__V1__Response *resp;
                r = read_response(c, deadline, &resp);
                if (r < 0)
                        return r;
                if (!response_is_ours(resp, req->id)) {
                        /* Left over from an earlier call (a stream we stopped reading). */
                        hostd__v1__response__free_unpacked(resp, NULL);
                        continue;
                }
                r = check_status(c, resp);
                if (r >= 0)
                        r = check_result(c, resp, expected);
                if (r < 0) {
                        hostd__v1__response__free_unpacked(resp, NULL);
                        return r;
                }
                *ret = resp;
                return 0;
        }
}

int hostd_client_stream(struct hostd_client *c, Hostd__V1__Request *req,
                        Hostd__V1__Response__ResultCase expected, hostd_stream_cb_t cb,
                        void *userdata)
{
        c->error[0] = 0;
        c->code = API_OK;
        req->id = fresh_id(c);

        uint64_t deadline = deadline_from_now(c);
        int r = send_request(c, req, deadline);
        if (r < 0)
                return r;

        for (;;) {
                Hostd__V1__Response *resp;
                r = read_response(c, deadline, &resp);
                if (r < 0)
                        return r;
                if (!response_is_ours(resp, req->id)) {
                        hostd__v1__response__free_unpacked(resp, NULL);
                        continue;
                }
                deadline = UINT64_MAX;

                bool end = resp->end_of_stream;
                r = check_status(c, resp);
                /* The closing Response may be a bare marker without a result. */
                if (r >= 0 && !(end && resp->result_case == HOSTD__V1__RESPONSE__RESULT__NOT_SET)) {
                        r = check_result(c, resp, expected);
                        if (r >= 0)
                                r = cb(resp, userdata);
                }
                hostd__v1__response__free_unpacked(resp, NULL);
                if (r < 0)
                        return r;
                if (end)
                        return 0;
        }
}

int hostd_client_call_progress(struct hostd_client *c, Hostd__V1__Request *req,
                               Hostd__V1__Response__ResultCase progress, hostd_stream_cb_t cb,
                               void *userdata, Hostd__V1__Response__ResultCase expected,
                               Hostd__V1__Response **ret)
{
        c->error[0] = 0;
        c->code = API_OK;
        req->id = fresh_id(c);

        int r = send_request(c, req, deadline_from_now(c));
        if (r < 0)
                return r;

        bool reported = false;
        for (;;) {
                Hostd__V1__Response *resp;
                /* A fresh deadline for each wait: a long import is fine, a silent one is not. */
                r = read_response(c, deadline_from_now(c), &resp);
                if (r == -ETIMEDOUT && reported)
                        return client_fail(c, r, "hostd reported no progress for %" PRId64 " s",
                                           (c->timeout_ms + 999) / 1000);
                if (r < 0)
                        return r;
                if (!response_is_ours(resp, req->id)) {
                        hostd__v1__response__free_unpacked(resp, NULL);
                        continue;
                }

                r = check_status(c, resp);
                if (r >= 0 && resp->result_case == expected) {
                        *ret = resp;
                        return 0;
                }
                if (r >= 0 && resp->end_of_stream &&
                    resp->result_case == HOSTD__V1__RESPONSE__RESULT__NOT_SET)
                        r = client_fail(c, -EPROTO, "hostd ended the call without an answer");
                else if (r >= 0) {
                        r = check_result(c, resp, progress);
                        if (r >= 0)
                                r = cb(resp, userdata);
                        if (r >= 0 && resp->end_of_stream)
                                r = client_fail(c, -EPROTO,
                                                "hostd ended the call without an answer");
                }
                hostd__v1__response__free_unpacked(resp, NULL);
                if (r < 0)
                        return r;
                reported = true;
        }
}
