/* A call of the API in progress, as the rest of hostd sees it.
 *
 * The transport (grpc-server.c) makes one for every gRPC stream a client opens and hands it to
 * the method's handler; whoever answers later (the manager once a dyno runs, the event log for
 * a follower, an exec session) keeps a reference and answers through it. Nothing outside the
 * transport knows of connections, HTTP/2 or frames.
 *
 * A call ends exactly once: call_finish() (OK), call_fail() (an error status), or the client's
 * going away (it cancelled, its deadline passed, its connection closed), which the owner learns
 * through call_on_cancel(). After the end, sending is a no-op that returns -ECANCELED, so an
 * owner that learns late does no harm. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "api-code.h"
#include "util.h"

struct call;

struct call *call_ref(struct call *c);
void call_unref(struct call *c);
static inline void call_unrefp(struct call **c)
{
        if (*c)
                call_unref(*c);
}
#define _cleanup_call_ _cleanup_(call_unrefp)

/* Send one response message: the answer of a unary call (then call_finish), or the next item
 * of a stream. 0, or -ECANCELED once the call has ended. A stream whose client reads slower
 * than it is written to keeps what it was sent queued (see call_pending) and is cancelled,
 * RESOURCE_EXHAUSTED, past the transport's bound. */
int call_send(struct call *c, const ProtobufCMessage *msg);
/* The same with the message packed already (its protobuf bytes): one encoding sent to many
 * subscribers. */
int call_send_packed(struct call *c, const uint8_t *buf, size_t len);
/* End the call with OK (after a unary call's answer, or a stream's last item). */
void call_finish(struct call *c);
/* End the call with an error: code and a message that names the field or object. */
void call_fail(struct call *c, enum api_code code, const char *fmt, ...) _printf_(3, 4);
/* call_send then call_finish: a unary call's answer. */
void call_reply(struct call *c, const ProtobufCMessage *msg);

/* Whether the call has ended (finished, failed, or cancelled by its client). */
bool call_is_done(const struct call *c);
/* Bytes of response sent on this call and not yet taken by the client: a producer of a stream
 * may skip an item for a slow reader rather than queue more. */
size_t call_pending(const struct call *c);
/* fn(c, userdata) once, when the client cancels the call, its deadline passes or its
 * connection goes; not after call_finish or call_fail. One per call: a second replaces it.
 * It runs from the event loop (or grpc_server_free), never from inside a function of this
 * file: a call_send that passes the bound on what a slow reader leaves queued ends the call
 * (RESOURCE_EXHAUSTED; call_send returns -ECANCELED) and fn runs on the loop's next turn.
 * The call is done before fn runs; fn may drop the owner's reference. */
void call_on_cancel(struct call *c, void (*fn)(struct call *c, void *userdata), void *userdata);
/* A client-streaming call (Exec, Attach): fn(c, msg, userdata) for every request message after
 * the first (which went to the handler), and fn(c, NULL, userdata) when the client has
 * half-closed its side. msg is valid during the call only, and was checked by the method's
 * validator like the first (one that fails it ends the call, and fn is not called).
 * Until fn is set, what the client sends next waits unread (HTTP/2 flow control holds the
 * client), so a handler may set it later than it returns. */
void call_on_input(struct call *c,
                   void (*fn)(struct call *c, const ProtobufCMessage *msg, void *userdata),
                   void *userdata);

/* Who called, for logs: "pid 42 uid 0", "192.0.2.1:40000 CN=control-plane". */
const char *call_peer(const struct call *c);
/* The full method name, for logs: "/hostd.v1.Hostd/Start". */
const char *call_method(const struct call *c);
