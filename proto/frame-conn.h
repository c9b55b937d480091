/* A framed connection on an sd-event loop: a non-blocking stream socket whose incoming bytes
 * are split into messages (frame.h) and handed to a callback, and whose outgoing messages wait
 * in a bounded queue written whenever the socket takes more. netd's server and hostd's client
 * of netd are both made of it.
 *
 * Callbacks may send, close or free the connection. Neither sending nor anything else the
 * owner calls runs a callback: they run from the loop only. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct frame_conn;

/* What a kind of connection takes and does: its limits and its two callbacks. */
struct frame_conn_kind {
        size_t max_frame;  /* largest message taken from the peer (0: FRAME_MAX_DEFAULT) */
        size_t max_queued; /* bytes waiting to be written at most (0: unlimited) */
        unsigned batch;    /* messages handled per wake-up, the rest on the next iteration */

        /* The next frame from the peer. error 0: msg[0..len) is one whole message, valid during
         * the call. -EMSGSIZE (announced over max_frame) or -EBADMSG (malformed length prefix):
         * msg is NULL, nothing more is read, and the connection closes once what is queued is
         * written: a last message may still be sent, or the connection freed. */
        void (*message)(struct frame_conn *c, int error, const uint8_t *msg, size_t len,
                        void *userdata);
        /* The connection ended, its socket closed: error 0 after the peer's end between two
         * frames or frame_conn_close(), -EPIPE after its end within a frame, the frame's error
         * after a refused frame, or the errno of a failed read or write. Called once, never for
         * a connection freed before; free it here or later. */
        void (*closed)(struct frame_conn *c, int error, void *userdata);
};

/* Watch fd (a connected, non-blocking stream socket) on e. On success the connection owns fd;
 * on failure the caller still does. */
int frame_conn_new(sd_event *e, int fd, const struct frame_conn_kind *kind, void *userdata,
                   struct frame_conn **ret);
/* Close at once, dropping what is queued; no callback runs. NULL is a no-op. */
void frame_conn_free(struct frame_conn *c);

/* Queue one message, written from the loop. -ENOBUFS past max_queued, -ENOMEM, -ENOTCONN once
 * the connection has ended; nothing is queued on error. */
int frame_conn_send(struct frame_conn *c, const void *msg, size_t len);
/* frame_conn_send() of a protobuf message, packed here. */
int frame_conn_send_pb(struct frame_conn *c, const ProtobufCMessage *m);

/* Read nothing more, write what is queued, then end (closed() with 0, or the write's error). */
void frame_conn_close(struct frame_conn *c);

/* Bytes queued and not yet written. */
size_t frame_conn_queued(const struct frame_conn *c);
