/* A small blocking gRPC client for hostd's API: HTTP/2 (libnghttp2's client session) over
 * hostd's Unix socket or its mutual-TLS listener (ALPN h2), one connection, no threads.
 *
 * A call is one HTTP/2 stream: grpc_call_start() opens it with the method's path and, when the
 * caller expects a reply in time, a grpc-timeout; grpc_call_send() queues request messages (the
 * last one half-closes the stream); grpc_call_recv() waits for the next response message and,
 * at the end, reads the status from the trailers. grpc_unary() and grpc_server_stream() do the
 * usual shapes in one go. Callers with a loop of their own (exec's terminal) poll
 * grpc_client_fd() for grpc_client_poll_events(), hand the result to grpc_client_process() and
 * take what arrived with grpc_call_try_recv().
 *
 * While a call waits with no deadline (a follow, exec), the client pings hostd after
 * keepalive_s seconds without a byte from it, and gives up on the connection when the ping is
 * not answered in time (GRPC_PING_TIMEOUT_S): a follow never times out for want of events, but
 * a dead peer is noticed.
 *
 * Every function returns 0 (or more) on success and a negative errno on failure, and leaves a
 * message for the user in client->error. Two failures are worth telling apart:
 *   -EREMOTEIO   hostd ended the call with a gRPC status other than OK; client->code holds it
 *                and client->error reads "NOT_FOUND: dyno 'web-1' not found".
 *   anything else: hostd could not be reached or the conversation broke (connect failed, the
 *                connection closed or was reset, not HTTP/2, no reply in time (-ETIMEDOUT), a
 *                malformed or unexpected reply (-EBADMSG, -EPROTO)). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <protobuf-c/protobuf-c.h>

#include "conn.h"

#define GRPC_SERVICE_PATH "/hostd.v1.Hostd/"
/* The largest response message taken (gRPC's usual default). */
#define GRPC_MAX_MESSAGE_DEFAULT (4u << 20)
/* Seconds without a byte from hostd before a waiting call pings it: gRPC's documented floor
 * for clients, which servers' ping policies (grpc's "too_many_pings") let through. */
#define GRPC_KEEPALIVE_DEFAULT_S 300
/* Seconds a ping may take to be answered before the connection counts as dead (less when
 * keepalive_s is less: each is answered before the next is due). */
#define GRPC_PING_TIMEOUT_S 20

struct grpc_client {
        struct conn conn;
        nghttp2_session *h2;
        char target[300];    /* what we connected to, for messages: a socket path or ADDR:PORT */
        char authority[300]; /* :authority */
        bool tls;
        /* Milliseconds: the connect's limit, and the default grpc-timeout of calls that
         * expect a reply; negative: none. */
        int64_t timeout_ms;
        uint32_t keepalive_s; /* 0: no pings */
        size_t max_message;

        int broken;            /* 0, or the negative errno the connection failed with */
        char broken_msg[1024]; /* why, for every call that finds it so */
        uint8_t first[9];      /* hostd's first bytes until they are known to be SETTINGS */
        size_t n_first;
        uint64_t last_recv_usec;
        uint64_t ping_sent_usec; /* 0: no ping unanswered */
        bool goaway;
        uint32_t goaway_code;
        char goaway_debug[128];
        char h2_error[256]; /* nghttp2's words for the last protocol error */
        uint8_t *wbuf;      /* bytes nghttp2 gave us that the socket did not take yet */
        size_t wlen, wcap;

        int code; /* the gRPC status of the last call that returned -EREMOTEIO; -1 otherwise */
        char error[1024];
};

struct grpc_call {
        struct grpc_client *client;
        char method[96]; /* "GetDyno": for messages */
        int32_t stream_id;
        uint64_t deadline; /* CLOCK_MONOTONIC usec of the grpc-timeout; UINT64_MAX: none */
        int64_t timeout_ms;
        /* request bytes (framed messages) not yet taken by nghttp2 */
        uint8_t *out;
        size_t out_off, out_len, out_cap;
        bool out_eof;  /* the last message is queued: half-close after it */
        bool deferred; /* nghttp2 waits for grpc_call_send() to resume the stream */
        uint8_t *in;   /* response bytes received and not yet taken as messages */
        size_t in_off, in_len, in_cap;
        int http_status;
        char content_type[64];
        int grpc_status; /* -1 until the trailers (or a trailers-only answer) give it */
        char *grpc_message;
        bool remote_ended; /* hostd's side ended (END_STREAM): the outcome is known */
        bool closed;       /* the stream is gone: ended or reset */
        uint32_t h2_error; /* the RST_STREAM error code when it was reset */
        int local_error;   /* a negative errno the client decided the call with (-EMSGSIZE) */
};

void grpc_client_init(struct grpc_client *c, int64_t timeout_ms);
/* Close the connection (GOAWAY first, when it still works) and free everything. */
void grpc_client_done(struct grpc_client *c);

/* Connect to hostd's Unix socket (h2 with prior knowledge), or to its TLS listener as
 * conn_connect_tls() does, offering and requiring ALPN h2. -EINVAL from the TLS one: a usage
 * error in addr, cert, key or ca. */
int grpc_client_connect_unix(struct grpc_client *c, const char *path);
int grpc_client_connect_tls(struct grpc_client *c, const char *addr, const char *cert,
                            const char *key, const char *ca);

/* Open a call of method ("GetDyno") on hostd.v1.Hostd. timeout_ms >= 0 is sent as
 * grpc-timeout and is also the local limit of the whole call (then -ETIMEDOUT, the stream
 * cancelled); negative: no deadline. */
int grpc_call_start(struct grpc_client *c, struct grpc_call *call, const char *method,
                    int64_t timeout_ms);
/* Queue one request message; last: no more will follow (END_STREAM after it). Never waits:
 * the bytes go out while the caller waits for something. */
int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg, bool last);
/* Request bytes queued and not yet handed to the connection (for a caller that reads its own
 * input: stop reading while this is large). */
size_t grpc_call_pending(const struct grpc_call *call);
/* The next response message, unpacked with d: 1 and *ret (free with
 * protobuf_c_message_free_unpacked), 0 when the call ended with OK, -EREMOTEIO for another
 * status, -ETIMEDOUT when the call's deadline or the given one (CLOCK_MONOTONIC usec;
 * UINT64_MAX: none) passed first (the stream is then cancelled), or another negative errno. */
int grpc_call_recv(struct grpc_call *call, const ProtobufCMessageDescriptor *d, uint64_t deadline,
                   ProtobufCMessage **ret);
/* As grpc_call_recv() without waiting: -EAGAIN when nothing more has arrived. */
int grpc_call_try_recv(struct grpc_call *call, const ProtobufCMessageDescriptor *d,
                       ProtobufCMessage **ret);
/* Reset the stream (CANCEL) unless it ended, sending what can be sent without waiting. */
void grpc_call_cancel(struct grpc_call *call);
/* Cancel when still open, and free the call's buffers. */
void grpc_call_done(struct grpc_call *call);

/* One request, one response (*ret), within c->timeout_ms. A call that ends with no response
 * or with two is -EPROTO. */
int grpc_unary(struct grpc_client *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *d, ProtobufCMessage **ret);

/* A response stream hands each message to cb. Return 0 to go on, a negative errno to stop
 * reading (the stream is then cancelled and that value returned, client->error left empty:
 * the caller knows why it stopped). */
typedef int (*grpc_message_cb_t)(const ProtobufCMessage *msg, void *userdata);

/* One request, then every response to cb until hostd ends the stream: 0 when it ends with OK.
 * timeout_ms >= 0: a grpc-timeout for the whole stream (one that ends by itself: events and
 * logs without follow); negative: none, for a follow. first_ms >= 0: a local limit on the wait
 * for the first message only (a stream whose first message comes at once), sent nowhere. */
int grpc_server_stream(struct grpc_client *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *d, int64_t timeout_ms, int64_t first_ms,
                       grpc_message_cb_t cb, void *userdata);

/* For callers that run their own poll() loop: the socket, the events to wait for, and how
 * long at most (milliseconds, -1 forever; 0 when bytes are buffered where poll() cannot see
 * them, or a keepalive ping is due). */
int grpc_client_fd(const struct grpc_client *c);
short grpc_client_poll_events(const struct grpc_client *c);
int grpc_client_poll_timeout(const struct grpc_client *c);
/* After poll(): read what is there into the calls, write what is pending, ping when due.
 * A negative errno when the connection failed (client->error says why). */
int grpc_client_process(struct grpc_client *c, short revents);
