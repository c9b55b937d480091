/* The API server: a Unix socket, framed protobuf requests, replies and streams. */
#pragma once

#include <stdarg.h>
#include <stdint.h>

#include "hostd.pb-c.h"
#include "util.h"

struct manager;
struct rpc_server;
struct conn;
struct dyno;

/* Listen on the configured socket. Refuses to start when another hostd answers there. */
int rpc_server_new(struct manager *m, struct rpc_server **ret);
void rpc_server_free(struct rpc_server *s);

struct conn *conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* Queue a response on the connection (dropped if the connection is closed). */
void conn_reply(struct conn *c, Hostd__V1__Response *resp);
void conn_reply_error(struct conn *c, uint64_t id, int code, const char *fmt, ...) _printf_(4, 5);
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
