/* The control plane's TLS: the server context (certificate, key, client CAs, ALPN h2 only),
 * read at start and again on SIGHUP, the reasons a handshake failed, and the allow-list of
 * client identities. The connections themselves are grpc-server.c's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct config;
struct tls_server;

/* Read tls-cert, tls-key and tls-ca of cfg into a TLS 1.3 server context that requires a
 * client certificate chained to tls-ca, and a client that offers ALPN h2 (gRPC's HTTP/2). On error err reads "tls-key /etc/k.pem: ..."
 * (the key and the file). -ENOMEM, -EINVAL, or the errno of reading a file. */
int tls_server_new(const struct config *cfg, struct tls_server **ret, char *err, size_t errlen);
void tls_server_free(struct tls_server *t);

/* Read the three files again into a new context, used by handshakes from now on; the
 * connections already open keep theirs. On error the old context stays and err says why. */
int tls_server_reload(struct tls_server *t, char *err, size_t errlen);

/* The files as configured, for logs. */
void tls_server_files(const struct tls_server *t, const char **cert, const char **key,
                      const char **ca);

/* A server end for the connected socket fd, in the current context. NULL: out of memory. */
SSL *tls_server_new_ssl(struct tls_server *t, int fd);

/* Why the handshake on ssl failed, given SSL_get_error()'s value: "no client certificate",
 * "client certificate expired", "the client does not offer ALPN h2"... Reads (and clears) OpenSSL's error queue. */
const char *tls_handshake_failure(SSL *ssl, int ssl_error, char *buf, size_t len);

/* After a handshake: the client's identity for logs in who ("CN=x", or the first SAN) and
 * whether tls-allow lets it in (always, with an empty tls-allow). */
bool tls_peer_allowed(const struct tls_server *t, SSL *ssl, char *who, size_t wholen);
