/* A small blocking client for hostd's API: its Unix socket, or its TLS listener (listen-tls);
 * one connection, one call at a time.
 *
 * Every function returns 0 (or more) on success and a negative errno on failure, and leaves a
 * message for the user in client->error. Two failures are worth telling apart:
 *   -EREMOTEIO   hostd answered with an error Status; client->code holds its code and
 *                client->error reads "NOT_FOUND: dyno 'web-1' not found".
 *   anything else: hostd could not be reached or the conversation broke (connect failed, the
 *                connection closed, no reply in time (-ETIMEDOUT), a malformed or unexpected
 *                reply (-EBADMSG, -EPROTO)). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <sys/types.h>

#include "frame.h"
#include "hostd.pb-c.h"

#define HOSTD_SOCKET_PATH_DEFAULT "/run/hostd/hostd.sock"

struct hostd_client {
        int fd;
        uint64_t next_id;
        /* Milliseconds to wait for the connection and for each reply; negative: forever. May
         * be changed between calls (a stop waits for its grace period too). */
        int64_t timeout_ms;
        size_t max_frame; /* largest reply accepted */
        struct frame_reader reader;
        SSL_CTX *ssl_ctx; /* TLS only */
        SSL *ssl;
        short ssl_wants;      /* POLLIN or POLLOUT: what the last SSL call waits for */
        Hostd__V1__Code code; /* of the last error Status, when a call returned -EREMOTEIO */
        char error[1024];
        char tls_error[512]; /* why the last SSL call failed, when it did */
};

/* A stream delivers each Response that carries a result. Return 0 to go on, a negative errno
 * to stop reading (the stream call then returns that value). */
typedef int (*hostd_stream_cb_t)(const Hostd__V1__Response *resp, void *userdata);

void hostd_client_init(struct hostd_client *c, int64_t timeout_ms);
/* Close the connection and free the buffers; the client may connect again. */
void hostd_client_done(struct hostd_client *c);

/* Connect to the Unix socket at path. The error message reads "connect PATH: <strerror>". */
int hostd_client_connect(struct hostd_client *c, const char *path);

/* Connect to hostd's TLS listener at addr ("192.0.2.1:7443", "[2001:db8::1]:7443",
 * "host.example:7443") with TLS 1.3, showing the certificate cert with its key, and checking
 * the server's against the CAs of ca and against the address's IP or name. The error message
 * names the address and what failed ("server certificate not trusted: ..."). */
int hostd_client_connect_tls(struct hostd_client *c, const char *addr, const char *cert,
                             const char *key, const char *ca);

/* For callers that run their own loop (exec's terminal): send one framed message, waiting as
 * long as it takes; read what is there into c->reader (as frame_reader_fill(): >0, 0 at the
 * end, -EAGAIN, negative errno); and whether bytes are buffered where poll() cannot see them
 * (inside OpenSSL), so that the caller reads before it waits. */
int hostd_client_send_frame(struct hostd_client *c, const void *msg, size_t len);
ssize_t hostd_client_fill(struct hostd_client *c);
bool hostd_client_buffered(const struct hostd_client *c);

/* Send req with a fresh id (req->id is overwritten) and wait for the Response that echoes it,
 * skipping Responses to other ids. On success *ret is the Response (free it with
 * hostd__v1__response__free_unpacked), whose result is of the kind expected: a reply of
 * another kind is -EPROTO. */
int hostd_client_call(struct hostd_client *c, Hostd__V1__Request *req,
                      Hostd__V1__Response__ResultCase expected, Hostd__V1__Response **ret);

/* Send req with a fresh id and hand every Response to it to cb until one has end_of_stream
 * set (that one too, when it carries a result). The timeout applies until the first Response;
 * after it the stream may stay quiet for as long as it likes (a dyno that logs nothing).
 * Returns 0 at the end of the stream, -EREMOTEIO when a Response carries an error Status, or
 * cb's negative value (client->error is then left empty: the caller knows why it stopped). */
int hostd_client_stream(struct hostd_client *c, Hostd__V1__Request *req,
                        Hostd__V1__Response__ResultCase expected, hostd_stream_cb_t cb,
                        void *userdata);

/* For a call that reports progress before it answers (an image import): send req with a fresh
 * id, hand every Response carrying a `progress` result to cb, and end at the one carrying
 * `expected`, which *ret receives as from hostd_client_call. Unlike a stream, the timeout
 * applies to every wait, not only the first: the call may take as long as it likes while
 * hostd keeps reporting. c->timeout_ms is read again before each wait, so cb may change it
 * (negative: wait forever, for a phase in which hostd reports nothing). Returns 0,
 * -EREMOTEIO for an error Status, -EPROTO when the stream ends without the answer, or cb's
 * negative value (client->error then left empty). */
int hostd_client_call_progress(struct hostd_client *c, Hostd__V1__Request *req,
                               Hostd__V1__Response__ResultCase progress, hostd_stream_cb_t cb,
                               void *userdata, Hostd__V1__Response__ResultCase expected,
                               Hostd__V1__Response **ret);

/* "NOT_FOUND" for API_NOT_FOUND; "CODE_<n>" for codes this build does not know
 * (the buffer is used only then). */
const char *hostd_code_name(Hostd__V1__Code code, char buf[static 24]);
