/* The API's transport: gRPC over HTTP/2 (libnghttp2) on hostd's sd-event loop, with no thread,
 * on the Unix socket and on the mutual-TLS listener (ALPN h2). It implements call.h: each
 * stream a client opens becomes a struct call handed to a method of a registered service.
 *
 * What it does so that no method has to:
 *   - who may call: on the Unix socket root may call everything and members of read-group the
 *     methods marked read_only (PERMISSION_DENIED otherwise); on TLS a client whose certificate
 *     chains to tls-ca and that tls-allow lets in may call everything;
 *   - the request: unpacked with the method's descriptor, refused INVALID_ARGUMENT when it is
 *     not one, RESOURCE_EXHAUSTED over max-message bytes, then checked with the method's
 *     validator (the same function the fuzzers run) before the handler sees it;
 *   - deadlines from grpc-timeout (DEADLINE_EXCEEDED, the call cancelled); a stream the client
 *     resets or a connection that closes cancels its calls only;
 *   - limits: streams per connection (max-inflight; RESOURCE_EXHAUSTED beyond), connections
 *     (max-connections), what a slow reader may leave queued (bounded per stream and per
 *     connection; HTTP/2 flow control does the rest), keepalive pings, idle-timeout;
 *   - the status: grpc-status and grpc-message (percent-encoded) in the trailers.
 *
 * Services: hostd's own (api.c), grpc.health.v1.Health and grpc.reflection.v1alpha/v1
 * ServerReflection (grpc-health.c, grpc-reflection.c), all registered the same way. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>
#include <systemd/sd-event.h>

#include "call.h"

struct grpc_server;
struct tls_server;

struct grpc_method {
        const char *name; /* "Start": the path is /<service>/<name> */
        const ProtobufCMessageDescriptor *request, *response;
        bool client_streaming, server_streaming;
        bool read_only; /* a member of read-group may call it: it shows, and changes nothing */
        /* Checks what came from the wire; 0 or the code, with msg naming the field. NULL:
         * nothing to check beyond the message's shape. */
        enum api_code (*validate)(const ProtobufCMessage *req, void *userdata, char *msg,
                                  size_t len);
        /* The request (the first message of a client stream), the handler's to free with
         * protobuf_c_message_free_unpacked; the call holds one reference for the handler,
         * which takes more for whoever answers later. That reference is the transport's: a
         * handler that answers before it returns takes none and drops none.
         *
         * When: a unary or server-streaming call's handler runs once the client has sent its
         * one message and half-closed (a second message is INVALID_ARGUMENT); a
         * client-streaming call's at its first message (see call_on_input for the rest). */
        void (*handle)(struct call *c, ProtobufCMessage *req, void *userdata);
};

struct grpc_service {
        const char *name; /* "hostd.v1.Hostd" */
        const struct grpc_method *methods;
        size_t n_methods;
        void *userdata; /* given to validate and handle */
};

struct grpc_server_options {
        /* The Unix socket, or one systemd passed (socket activation). "" with no listen_tls:
         * no listener, connections come through grpc_server_adopt(). */
        const char *socket_path;
        const char *read_group;   /* "" : none */
        const char *listen_tls;   /* "" : no TLS listener */
        struct tls_server *tls;   /* with listen_tls: taken over (freed on failure too) */
        uint32_t max_connections; /* open connections, both listeners */
        uint32_t max_inflight;    /* open streams per connection */
        uint32_t max_message;     /* bytes of one request message */
        uint32_t idle_timeout;    /* seconds without a stream open before a connection closes */
        uint32_t tls_handshake_timeout;
        uint32_t keepalive; /* seconds between pings on a quiet connection; 0: none */
        /* Added by the transport's author (issue 15): */
        uint32_t keepalive_timeout; /* seconds a ping may go unanswered, then close; 0: 20 */
        /* Bytes of response a client may leave unread: on one stream, and on all the streams of
         * one connection together. Past either, the stream that adds to it is cancelled
         * (RESOURCE_EXHAUSTED) and its owner told. One message is always taken on a stream with
         * nothing queued, whatever its size. 0: 16 MiB and 64 MiB. */
        uint32_t max_pending_stream;
        uint32_t max_pending_conn;
        /* A serialized google.protobuf.FileDescriptorSet with the files of every service
         * served and all they import (protoc --include_imports), for server reflection. */
        const uint8_t *descriptors;
        size_t descriptors_len;
};

/* Listen as opts say and serve the services (the array must outlive the server). Refuses to
 * start when another hostd answers on the socket. Logs what failed.
 *
 * The wire, as served: requests are POST, content-type application/grpc or
 * application/grpc+proto, with te: trailers; messages are identity-encoded only (a compressed
 * message or a grpc-encoding other than identity is UNIMPLEMENTED). An unknown path is
 * UNIMPLEMENTED. A connection's SETTINGS_MAX_CONCURRENT_STREAMS is above max_inflight, so
 * that a stream past max_inflight reaches the server and is answered RESOURCE_EXHAUSTED
 * rather than refused by HTTP/2. On TLS the client must offer ALPN h2. */
int grpc_server_new(sd_event *e, const struct grpc_server_options *opts,
                    const struct grpc_service *services, size_t n_services,
                    struct grpc_server **ret);
/* Serve fd, a connected stream socket, as a plain connection: as one accepted on the Unix
 * socket from root, or from a member of read-group when read_only. Nothing checks who is at
 * the other end: that is the caller's to know. For tests and the fuzzer, which drive a server
 * with no listener through a socketpair. fd is taken over (closed on failure too) and made
 * non-blocking; peer names the client in logs and call_peer(). Counts in max-connections:
 * -EBUSY past it, as accept would refuse. */
int grpc_server_adopt(struct grpc_server *s, int fd, const char *peer, bool read_only);
/* Every connection closes (their calls are cancelled), the listeners go. */
void grpc_server_free(struct grpc_server *s);
/* SIGHUP: read the TLS certificate, key and CAs again for new connections (logged). */
void grpc_server_reload_tls(struct grpc_server *s);
/* What the health service answers, for the server as a whole ("") and every registered
 * service: SERVING (the default) or NOT_SERVING (hostd is shutting down). Watchers are told. */
void grpc_server_set_serving(struct grpc_server *s, bool serving);
