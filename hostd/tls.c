/* The control plane's TLS context and the checks of a client: see tls.h. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <strings.h>

#include "config.h"
#include "util.h"

struct tls_server {
        SSL_CTX *ctx;
        char *cert, *key, *ca; /* the files, as configured */
        char **allow;          /* NULL-terminated; NULL: any client that chains to the CA */
};

static void ssl_ctx_freep(SSL_CTX **p) { SSL_CTX_free(*p); }
static void bio_freep(BIO **p) { BIO_free(*p); }
static void x509_freep(X509 **p) { X509_free(*p); }
static void evp_pkey_freep(EVP_PKEY **p) { EVP_PKEY_free(*p); }

/* The last OpenSSL error as text, the queue emptied. */
static const char *ssl_reason(void)
{
        unsigned long e = ERR_peek_last_error();
        const char *s = e ? ERR_reason_error_string(e) : NULL;
        ERR_clear_error();
        return s ? s : "unknown error";
}

/* The file of key k in a memory BIO: its errno in err when it cannot be read. */
static int open_pem(const char *k, const char *path, BIO **ret, char **ret_text, char *err,
                    size_t errlen)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, &text, &len);
        if (r < 0) {
                return set_error(err, errlen, r, "%s %s: %s", k, path, strerror(-r));
        }
        BIO *b = BIO_new_mem_buf(text, (int)len);
        if (!b) {
                return set_error(err, errlen, -ENOMEM, "%s %s: out of memory", k, path);
        }
        *ret = b;
        *ret_text = TAKE_PTR(text); /* the BIO reads it in place */
        return 0;
}

static int load_cert_chain(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
        _cleanup_free_ char *text = NULL; /* freed after the BIO that reads it */
        _cleanup_(bio_freep) BIO *b = NULL;
        int r = open_pem("tls-cert", path, &b, &text, err, errlen);
        if (r < 0)
                return r;
        _cleanup_(x509_freep) X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!leaf) {
                return set_error(err, errlen, -EINVAL, "tls-cert %s: no PEM certificate in it (%s)",
                                 path, ssl_reason());
        }
        if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
                return set_error(err, errlen, -EINVAL, "tls-cert %s: %s", path, ssl_reason());
        }
        /* The rest of the file is the chain up to (not necessarily including) the root. */
        for (;;) {
                X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
                if (!x)
                        break;
                if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
                        X509_free(x);
                        return set_error(err, errlen, -EINVAL, "tls-cert %s: %s", path,
                                         ssl_reason());
                }
        }
        ERR_clear_error(); /* the end of the file reads as "no start line" */
        return 0;
}

static int load_key(SSL_CTX *ctx, const char *path, const char *cert, char *err, size_t errlen)
{
        _cleanup_free_ char *text = NULL; /* freed after the BIO that reads it */
        _cleanup_(bio_freep) BIO *b = NULL;
        int r = open_pem("tls-key", path, &b, &text, err, errlen);
        if (r < 0)
                return r;
        _cleanup_(evp_pkey_freep) EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
        explicit_bzero(text, strlen(text)); /* the key stays in OpenSSL's memory only */
        if (!pk) {
                return set_error(err, errlen, -EINVAL,
                                 "tls-key %s: no unencrypted PEM private key in it (%s)", path,
                                 ssl_reason());
        }
        if (SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
                ERR_clear_error();
                return set_error(err, errlen, -EINVAL,
                                 "tls-key %s: does not match the certificate of tls-cert %s", path,
                                 cert);
        }
        return 0;
}

static int load_ca(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
        _cleanup_free_ char *text = NULL; /* freed after the BIO that reads it */
        _cleanup_(bio_freep) BIO *b = NULL;
        int r = open_pem("tls-ca", path, &b, &text, err, errlen);
        if (r < 0)
                return r;
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        size_t n = 0;
        for (;; n++) {
                _cleanup_(x509_freep) X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
                if (!x)
                        break;
                /* The names go into the CertificateRequest, so a client picks the right one. */
                if (X509_STORE_add_cert(store, x) != 1 || SSL_CTX_add_client_CA(ctx, x) != 1) {
                        return set_error(err, errlen, -EINVAL, "tls-ca %s: %s", path, ssl_reason());
                }
        }
        ERR_clear_error();
        if (n == 0) {
                return set_error(err, errlen, -EINVAL, "tls-ca %s: no PEM certificate in it", path);
        }
        return 0;
}

/* ALPN: the API is gRPC, which runs on HTTP/2 only. A client that offers protocols without h2
 * is refused in the handshake (no_application_protocol); one that offers none at all is
 * refused by the transport after it (grpc-server.c), as OpenSSL does not call this then. */
static int select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                     const unsigned char *in, unsigned inlen, void *arg)
{
        for (unsigned i = 0; i < inlen;) {
                unsigned n = in[i];
                if (i + 1 + n > inlen)
                        break;
                if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
                        *out = in + i + 1;
                        *outlen = 2;
                        return SSL_TLSEXT_ERR_OK;
                }
                i += 1 + n;
        }
        return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int context_new(const struct tls_server *t, SSL_CTX **ret, char *err, size_t errlen)
{
        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx) {
                return set_error(err, errlen, -ENOMEM, "TLS: create a context: %s", ssl_reason());
        }
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        /* No resumption: every connection shows its certificate to the current context, so a
         * reload (a CA taken away) applies to every new connection. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        /* grpc-server.c writes from its out buffer, which may move and grow between tries. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_alpn_select_cb(ctx, select_h2, NULL);

        int r = load_cert_chain(ctx, t->cert, err, errlen);
        if (r >= 0)
                r = load_key(ctx, t->key, t->cert, err, errlen);
        if (r >= 0)
                r = load_ca(ctx, t->ca, err, errlen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ctx);
        return 0;
}

/* "a, b,c" into { "a", "b", "c", NULL } */
static int split_allow(const char *s, char ***ret)
{
        size_t n = 0;
        char **v = calloc(strlen(s) / 2 + 2, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (const char *p = s; *p;) {
                p += strspn(p, " \t");
                size_t k = strcspn(p, ","), len = k;
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len > 0 && !(v[n++] = strndup(p, len))) {
                        strv_free(v);
                        return -ENOMEM;
                }
                p += k + (p[k] ? 1 : 0);
        }
        *ret = v;
        return 0;
}

void tls_server_free(struct tls_server *t)
{
        if (!t)
                return;
        SSL_CTX_free(t->ctx);
        free(t->cert);
        free(t->key);
        free(t->ca);
        strv_free(t->allow);
        free(t);
}

int tls_server_new(const struct config *cfg, struct tls_server **ret, char *err, size_t errlen)
{
        struct tls_server *t = calloc(1, sizeof *t);
        if (!t || !(t->cert = strdup(cfg->tls_cert)) || !(t->key = strdup(cfg->tls_key)) ||
            !(t->ca = strdup(cfg->tls_ca)) ||
            (cfg->tls_allow[0] && split_allow(cfg->tls_allow, &t->allow) < 0)) {
                tls_server_free(t);
                return set_error(err, errlen, -ENOMEM, "TLS: out of memory");
        }
        int r = context_new(t, &t->ctx, err, errlen);
        if (r < 0) {
                tls_server_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

int tls_server_reload(struct tls_server *t, char *err, size_t errlen)
{
        SSL_CTX *ctx;
        int r = context_new(t, &ctx, err, errlen);
        if (r < 0)
                return r;
        /* Each SSL holds a reference to the context it was made in. */
        SSL_CTX_free(t->ctx);
        t->ctx = ctx;
        return 0;
}

void tls_server_files(const struct tls_server *t, const char **cert, const char **key,
                      const char **ca)
{
        *cert = t->cert;
        *key = t->key;
        *ca = t->ca;
}

SSL *tls_server_new_ssl(struct tls_server *t, int fd)
{
        SSL *ssl = SSL_new(t->ctx);
        if (!ssl)
                return NULL;
        if (SSL_set_fd(ssl, fd) != 1) {
                SSL_free(ssl);
                return NULL;
        }
        SSL_set_accept_state(ssl);
        return ssl;
}

const char *tls_handshake_failure(SSL *ssl, int ssl_error, char *buf, size_t len)
{
        unsigned long e = ERR_peek_error();
        int reason = e ? ERR_GET_REASON(e) : 0;
        long v = SSL_get_verify_result(ssl);
        ERR_clear_error();

        if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
                snprintf(buf, len, "no client certificate");
        else if (reason == SSL_R_NO_APPLICATION_PROTOCOL)
                snprintf(buf, len, "the client does not offer ALPN h2: gRPC needs HTTP/2");
        else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE)
                snprintf(buf, len, "the client does not offer TLS 1.3");
        else if (v == X509_V_ERR_CERT_HAS_EXPIRED)
                snprintf(buf, len, "client certificate expired");
        else if (v == X509_V_ERR_CERT_NOT_YET_VALID)
                snprintf(buf, len, "client certificate not valid yet");
        else if (v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                 v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                 v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                 v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                 v == X509_V_ERR_CERT_SIGNATURE_FAILURE)
                snprintf(buf, len, "client certificate from an unknown CA, not tls-ca (%s)",
                         X509_verify_cert_error_string(v));
        else if (v != X509_V_OK)
                snprintf(buf, len, "client certificate refused: %s",
                         X509_verify_cert_error_string(v));
        else if (reason >= SSL_AD_REASON_OFFSET) {
                /* An alert from the client: it is the one that refused. */
                const char *s = ERR_reason_error_string(e);
                snprintf(buf, len,
                         "the client ended the handshake with an alert (%s): does it "
                         "trust the CA of tls-cert, and the name or address in it?",
                         s ? s : "?");
        } else if (!e && (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN))
                snprintf(buf, len, "the client closed the connection during the handshake");
        else {
                const char *s = e ? ERR_reason_error_string(e) : NULL;
                snprintf(buf, len, "TLS handshake failed: %s", s ? s : "unknown error");
        }
        return buf;
}

/* An ASN.1 string as text, or NULL when it holds a NUL byte (a name made to fool strcmp). */
static char *asn1_text(const ASN1_STRING *s)
{
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, s);
        if (n < 0)
                return NULL;
        char *r = memchr(utf8, 0, (size_t)n) ? NULL : strndup((char *)utf8, (size_t)n);
        OPENSSL_free(utf8);
        return r;
}

static bool allowed(char *const *allow, const char *id, bool dns)
{
        for (char *const *a = allow; a && *a; a++)
                if (dns ? strcasecmp(*a, id) == 0 : strcmp(*a, id) == 0)
                        return true;
        return false;
}

static void general_names_freep(GENERAL_NAMES **p) { GENERAL_NAMES_free(*p); }

bool tls_peer_allowed(const struct tls_server *t, SSL *ssl, char *who, size_t wholen)
{
        _cleanup_(x509_freep) X509 *x = SSL_get1_peer_certificate(ssl);
        bool ok = !t->allow;
        char esc[256];

        snprintf(who, wholen, "(no name)");
        if (!x)
                return false; /* cannot happen: the handshake requires one */

        X509_NAME *subject = X509_get_subject_name(x);
        bool named = false;
        for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;) {
                _cleanup_free_ char *cn =
                        asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
                if (!cn)
                        continue;
                if (!named) {
                        snprintf(who, wholen, "CN=%s", escape_value(cn, 128, esc, sizeof esc));
                        named = true;
                }
                ok = ok || allowed(t->allow, cn, false);
        }

        _cleanup_(general_names_freep)
                GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
                if (g->type != GEN_DNS && g->type != GEN_URI)
                        continue;
                _cleanup_free_ char *name = asn1_text(g->d.ia5);
                if (!name)
                        continue;
                if (!named) {
                        snprintf(who, wholen, "%s:%s", g->type == GEN_DNS ? "DNS" : "URI",
                                 escape_value(name, 128, esc, sizeof esc));
                        named = true;
                }
                ok = ok || allowed(t->allow, name, g->type == GEN_DNS);
        }
        return ok;
}
