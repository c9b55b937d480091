/* The socket under hostctl's HTTP/2: hostd's Unix socket, or TCP with mutual TLS 1.3. */
#include "conn.h"

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

_printf_(3, 4) static int conn_fail(struct conn *c, int r, const char *fmt, ...)
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

void conn_init(struct conn *c)
{
        *c = (struct conn){ .fd = -1, .read_wants = POLLIN, .write_wants = POLLOUT };
}

void conn_close(struct conn *c)
{
        SSL_free(c->ssl);
        c->ssl = NULL;
        SSL_CTX_free(c->ssl_ctx);
        c->ssl_ctx = NULL;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->read_wants = POLLIN;
        c->write_wants = POLLOUT;
}

static uint64_t deadline_after(int64_t timeout_ms)
{
        if (timeout_ms < 0)
                return UINT64_MAX;
        return now_monotonic_usec() + (uint64_t)timeout_ms * 1000;
}

/* Wait for events on fd until the deadline: 0 when ready, -ETIMEDOUT. */
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

int conn_connect_unix(struct conn *c, const char *path, int64_t timeout_ms)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);

        if (n == 0)
                return conn_fail(c, -EINVAL, "connect: empty socket path");
        if (n >= sizeof sa.sun_path)
                return conn_fail(c, -ENAMETOOLONG, "connect %s: socket path longer than %zu bytes",
                                 path, sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, path, n);

        conn_close(c);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return conn_fail(c, -errno, "socket: %m");

        /* A non-blocking connect on a Unix socket cannot be waited for with poll (it fails
         * with EAGAIN when the listener's backlog is full), but a blocking one honours
         * SO_SNDTIMEO: that is the connect timeout. */
        if (timeout_ms >= 0) {
                int64_t ms = timeout_ms > 0 ? timeout_ms : 1;
                struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
                if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                        return conn_fail(c, -errno, "connect %s: set timeout: %m", path);
        }
        for (;;) {
                if (connect(fd, (struct sockaddr *)&sa, sizeof sa) >= 0)
                        break;
                if (errno == EINTR)
                        continue;
                int r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
                return conn_fail(c, r, "connect %s: %m", path);
        }

        /* From here on every wait is the caller's poll(). */
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return conn_fail(c, -errno, "connect %s: set non-blocking: %m", path);
        c->fd = TAKE_FD(fd);
        return 0;
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

/* After an SSL call returned k: -EAGAIN (*wants says for what), 0 for the peer's end, or a
 * negative errno with c->tls_error set. */
static int ssl_result(struct conn *c, int k, short *wants)
{
        switch (SSL_get_error(c->ssl, k)) {
        case SSL_ERROR_WANT_READ: *wants = POLLIN; return -EAGAIN;
        case SSL_ERROR_WANT_WRITE: *wants = POLLOUT; return -EAGAIN;
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

ssize_t conn_read(struct conn *c, void *buf, size_t n)
{
        if (c->fd < 0)
                return -ENOTCONN;
        if (!c->ssl) {
                for (;;) {
                        ssize_t k = recv(c->fd, buf, n, MSG_DONTWAIT);
                        if (k >= 0)
                                return k;
                        if (errno == EINTR)
                                continue;
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                }
        }
        c->tls_error[0] = 0;
        ERR_clear_error();
        int len = n > INT_MAX ? INT_MAX : (int)n;
        int k = WITHOUT_SIGPIPE(SSL_read(c->ssl, buf, len));
        if (k > 0)
                return k;
        return ssl_result(c, k, &c->read_wants);
}

ssize_t conn_write(struct conn *c, const void *buf, size_t n)
{
        if (c->fd < 0)
                return -ENOTCONN;
        if (!c->ssl) {
                /* send() with MSG_NOSIGNAL rather than write(): a hostd that went away is an
                 * error to report, not a SIGPIPE that kills us (and SIGPIPE stays as it is for
                 * stdout, so that "hostctl logs -f | head" ends the usual way). */
                for (;;) {
                        ssize_t k = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (k >= 0)
                                return k;
                        if (errno == EINTR)
                                continue;
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                }
        }
        c->tls_error[0] = 0;
        ERR_clear_error();
        int len = n > INT_MAX ? INT_MAX : (int)n;
        int w = WITHOUT_SIGPIPE(SSL_write(c->ssl, buf, len));
        if (w > 0)
                return w;
        ssize_t k = ssl_result(c, w, &c->write_wants);
        if (k == 0)
                k = -EPIPE;
        if (k != -EAGAIN && !c->tls_error[0]) {
                /* A hostd that refused our certificate sent an alert before it closed: read
                 * it, to say why rather than "connection reset". */
                uint8_t b;
                short ignored;
                ERR_clear_error();
                int e = WITHOUT_SIGPIPE(SSL_read(c->ssl, &b, 1));
                if (e <= 0)
                        ssl_result(c, e, &ignored);
        }
        return k;
}

bool conn_buffered(const struct conn *c) { return c->ssl && SSL_has_pending(c->ssl); }

static void ssl_ctx_freep(SSL_CTX **p) { SSL_CTX_free(*p); }

/* A TLS 1.3 client context with our certificate and the CAs for hostd's. */
static int client_ssl_ctx(struct conn *c, const char *cert, const char *key, const char *ca,
                          SSL_CTX **ret)
{
        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        int r;
        if (!ctx)
                return conn_fail(c, -ENOMEM, "TLS: %s", ssl_reason());
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        /* nghttp2 hands over what it has and takes back what was not written. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* Each file is opened here first, for an error that says why it cannot be. */
        const struct {
                const char *flag, *path;
        } files[] = { { "--ca", ca }, { "--cert", cert }, { "--key", key } };
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                if (access(files[i].path, R_OK) < 0)
                        return conn_fail(c, -errno, "%s %s: %m", files[i].flag, files[i].path);
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
                return conn_fail(c, -EINVAL, "--ca %s: no PEM certificate in it (%s)", ca,
                                 ssl_reason());
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
                return conn_fail(c, -EINVAL, "--cert %s: no PEM certificate in it (%s)", cert,
                                 ssl_reason());
        BIO *b = BIO_new_file(key, "r");
        EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!pk)
                return conn_fail(c, -EINVAL, "--key %s: no unencrypted PEM private key in it (%s)",
                                 key, ssl_reason());
        r = SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
        EVP_PKEY_free(pk);
        if (!r) {
                ERR_clear_error();
                return conn_fail(c, -EINVAL, "--key %s does not match --cert %s", key, cert);
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
static int tcp_connect(struct conn *c, const char *addr, const char *host, const char *port,
                       uint64_t deadline)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        int g = getaddrinfo(host, port, &hints, &ai);
        if (g != 0)
                return conn_fail(c, -EHOSTUNREACH, "connect %s: %s", addr, gai_strerror(g));
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
        return conn_fail(c, r, "connect %s: %s", addr,
                         r == -ETIMEDOUT ? "no answer in time" : strerror(-r));
}

/* The ALPN protocol list for one protocol: its length, then its name. */
static int alpn_offer(SSL *ssl, const char *alpn)
{
        uint8_t wire[256];
        size_t n = strlen(alpn);
        if (n == 0 || n > 255)
                return -EINVAL;
        wire[0] = (uint8_t)n;
        memcpy(wire + 1, alpn, n);
        /* SSL_set_alpn_protos returns 0 on success. */
        return SSL_set_alpn_protos(ssl, wire, (unsigned)n + 1) == 0 ? 0 : -ENOMEM;
}

int conn_connect_tls(struct conn *c, const char *addr, const char *cert, const char *key,
                     const char *ca, const char *alpn, int64_t timeout_ms)
{
        char host[256], port[8];
        if (split_addr(addr, host, sizeof host, port, sizeof port) < 0)
                return conn_fail(c, -EINVAL,
                                 "--host '%s': expected ADDR:PORT (192.0.2.1:7443, "
                                 "[2001:db8::1]:7443, hostd.example:7443)",
                                 addr);
        conn_close(c);

        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = NULL;
        int r = client_ssl_ctx(c, cert, key, ca, &ctx);
        if (r < 0)
                return r;

        uint64_t deadline = deadline_after(timeout_ms);
        _cleanup_close_ int fd = tcp_connect(c, addr, host, port, deadline);
        if (fd < 0)
                return fd;

        SSL *ssl = SSL_new(ctx);
        if (!ssl || SSL_set_fd(ssl, fd) != 1) {
                SSL_free(ssl);
                return conn_fail(c, -ENOMEM, "TLS %s: %s", addr, ssl_reason());
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
                return conn_fail(c, r, "TLS %s: cannot check the server's name '%s'", addr, host);
        }
        if (alpn && alpn_offer(ssl, alpn) < 0) {
                SSL_free(ssl);
                return conn_fail(c, -ENOMEM, "TLS %s: cannot offer ALPN %s", addr, alpn);
        }
        c->ssl = ssl;
        c->ssl_ctx = TAKE_PTR(ctx);
        c->fd = TAKE_FD(fd);

        for (;;) {
                c->tls_error[0] = 0;
                ERR_clear_error();
                int k = WITHOUT_SIGPIPE(SSL_connect(c->ssl));
                if (k == 1)
                        break;
                long v = SSL_get_verify_result(c->ssl);
                short wants = POLLIN;
                r = ssl_result(c, k, &wants);
                if (r == -EAGAIN) {
                        r = wait_fd(c->fd, wants, deadline);
                        if (r == 0)
                                continue;
                        r = conn_fail(c, r, "TLS %s: no handshake in time", addr);
                } else if (v != X509_V_OK)
                        r = conn_fail(c, -EPROTO,
                                      "TLS %s: server certificate not trusted: %s (checked "
                                      "against --ca %s and the address %s)",
                                      addr, X509_verify_cert_error_string(v), ca, host);
                else if (c->tls_error[0])
                        r = conn_fail(c, -EPROTO, "TLS %s: %s", addr, c->tls_error);
                else
                        r = conn_fail(c, r < 0 ? r : -ECONNRESET,
                                      "TLS %s: the connection closed during the handshake", addr);
                conn_close(c);
                return r;
        }

        if (alpn) {
                /* gRPC is HTTP/2 only: a listener that does not choose it is not hostd's. */
                const unsigned char *got = NULL;
                unsigned got_len = 0;
                SSL_get0_alpn_selected(c->ssl, &got, &got_len);
                if (got_len != strlen(alpn) || memcmp(got, alpn, got_len) != 0) {
                        char chosen[64];
                        if (got_len == 0)
                                snprintf(chosen, sizeof chosen, "chose no protocol");
                        else
                                snprintf(chosen, sizeof chosen, "chose '%.*s'",
                                         got_len > 32 ? 32 : (int)got_len, got);
                        r = conn_fail(c, -EPROTO,
                                      "TLS %s: the server %s in ALPN where %s (HTTP/2, for "
                                      "gRPC) was offered: not hostd's gRPC listener?",
                                      addr, chosen, alpn);
                        conn_close(c);
                        return r;
                }
        }
        return 0;
}
