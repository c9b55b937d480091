/* hostctl's connection to hostd, below HTTP/2: its Unix socket, or TCP with mutual TLS 1.3 to
 * its listen-tls. Connecting waits up to a deadline; once connected the socket is non-blocking
 * and conn_read()/conn_write() never wait, so that the caller's poll() loop decides.
 *
 * Every function returns 0 (or a byte count) on success and a negative errno on failure; the
 * connecting ones leave a message for the user in conn->error. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <sys/types.h>

#define HOSTD_SOCKET_PATH_DEFAULT "/run/hostd/hostd.sock"

struct conn {
        int fd;
        SSL_CTX *ssl_ctx; /* TLS only */
        SSL *ssl;
        /* TLS: what the last conn_read() or conn_write() that returned -EAGAIN waits for,
         * POLLIN or POLLOUT (a TLS read may need to write, and a write to read). */
        short read_wants, write_wants;
        char error[1024];
        char tls_error[512]; /* why the last TLS read or write failed, when it did */
};

void conn_init(struct conn *c);
/* Close the connection; the struct may connect again. */
void conn_close(struct conn *c);

/* Connect to the Unix socket at path within timeout_ms (negative: no limit). The error
 * message reads "connect PATH: <strerror>". */
int conn_connect_unix(struct conn *c, const char *path, int64_t timeout_ms);

/* Connect to hostd's TLS listener at addr ("192.0.2.1:7443", "[2001:db8::1]:7443",
 * "host.example:7443") with TLS 1.3, showing the certificate cert with its key, checking the
 * server's against the CAs of ca and against the address's IP or name, and offering the ALPN
 * protocol alpn (e.g. "h2"), which the server must choose. The error message names the address
 * and what failed ("server certificate not trusted: ..."). -EINVAL: addr, cert, key or ca is
 * unusable (a usage error). */
int conn_connect_tls(struct conn *c, const char *addr, const char *cert, const char *key,
                     const char *ca, const char *alpn, int64_t timeout_ms);

/* Never waits: >0 bytes, 0 when the peer closed, -EAGAIN (then wait for read_wants, POLLIN
 * for a Unix socket), or a negative errno, with tls_error saying why when TLS knows. */
ssize_t conn_read(struct conn *c, void *buf, size_t n);
/* Never waits: >0 bytes taken, -EAGAIN (wait for write_wants, POLLOUT for a Unix socket), or
 * a negative errno, with tls_error saying why when TLS knows (a refusal's alert). */
ssize_t conn_write(struct conn *c, const void *buf, size_t n);
/* Bytes decrypted already, where poll() cannot see them: read before waiting. */
bool conn_buffered(const struct conn *c);
