/* The API server: a Unix socket and a TLS listener, framed protobuf requests, replies and
 * streams. */
#pragma once

#include <stdarg.h>
#include <stdint.h>

#include "hostd.pb-c.h"
#include "util.h"

struct manager;
struct rpc_server;
struct conn;
struct dyno;

struct tls_server;

/* Listen on the configured socket, and with tls (taken over, freed on failure too) on
 * listen-tls. Refuses to start when another hostd answers there. Logs what failed. */
int rpc_server_new(struct manager *m, struct tls_server *tls, struct rpc_server **ret);
void rpc_server_free(struct rpc_server *s);
/* SIGHUP: read the TLS certificates, key and CAs again for new connections (logged). */
void rpc_server_reload_tls(struct rpc_server *s);

struct conn *conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* Queue a response on the connection (dropped if the connection is closed). */
void conn_reply(struct conn *c, Hostd__V1__Response *resp);
void conn_reply_error(struct conn *c, uint64_t id, int code, const char *fmt, ...) _printf_(4, 5);
/* Queue the response to call id with one result: conn_reply_result(c, id, IMAGE_REMOVE,
 * image_remove, &reply) sets result_case HOSTD__V1__RESPONSE__RESULT_IMAGE_REMOVE and the
 * field image_remove. */
#define conn_reply_result(c, id_, result, field, value)                                            \
        do {                                                                                       \
                Hostd__V1__Response _resp = HOSTD__V1__RESPONSE__INIT;                             \
                _resp.id = (id_);                                                                  \
                _resp.result_case = HOSTD__V1__RESPONSE__RESULT_##result;                          \
                _resp.field = (value);                                                             \
                conn_reply((c), &_resp);                                                           \
        } while (0)
/* Queue a Response packed without its id (body), with id added: one encoding shared by many
 * connections. */
void conn_reply_packed(struct conn *c, uint64_t id, const uint8_t *body, size_t len);
/* Bytes queued for the peer and not yet written to its socket. */
size_t conn_pending(const struct conn *c);
bool conn_is_closed(const struct conn *c);

/* Send a dyno's kept lines from ring index first on. Without follow: one response with the
 * newest lines that fit a frame, ending the call. With follow: every line, in as many
 * responses as it takes, the stream left open. */
void rpc_send_logs(struct conn *c, uint64_t id, const struct dyno *d, size_t first, bool follow);
/* An ImageImportReply with the image. */
struct image_info;
void rpc_reply_image(struct conn *c, uint64_t id, struct manager *m, const struct image_info *info);

/* The last response of a stream. */
void rpc_end_stream(struct conn *c, uint64_t id);
