/* A framed connection on an sd-event loop; see frame-conn.h. */
#include "frame-conn.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "frame.h"
#include "util.h"

enum conn_state {
        CONN_OPEN,     /* reading, handling messages */
        CONN_DRAINING, /* the peer has ended: handling what it sent before, then closing */
        CONN_CLOSING,  /* writing what is queued, then ending */
        CONN_ENDED,    /* the socket is closed */
};

struct frame_conn {
        const struct frame_conn_kind *kind;
        void *userdata;
        int fd;
        sd_event_source *io;
        sd_event_source *more; /* oneshot defer: messages a batch left, or a close to finish */
        struct frame_reader rd;
        struct frame_writer wr;
        enum conn_state state;
        int end_error;   /* for closed(), from CONN_CLOSING on */
        bool in_message; /* the owner's message callback runs */
        bool freed;      /* ... and freed the connection: free it once the callback returns */
};

static void conn_shut(struct frame_conn *c)
{
        c->io = sd_event_source_disable_unref(c->io);
        c->more = sd_event_source_disable_unref(c->more);
        closep(&c->fd);
        c->fd = -1;
        frame_reader_free(&c->rd);
        frame_writer_free(&c->wr);
        c->state = CONN_ENDED;
}

/* Whoever calls this touches c no more: the owner may free it in closed(). */
static void conn_end(struct frame_conn *c, int error)
{
        conn_shut(c);
        c->kind->closed(c, error, c->userdata);
}

static void conn_closing(struct frame_conn *c, int error)
{
        c->state = CONN_CLOSING;
        c->end_error = error;
}

static void conn_watch(struct frame_conn *c)
{
        uint32_t ev = (c->state == CONN_OPEN ? EPOLLIN : 0) |
                      (frame_writer_pending(&c->wr) ? EPOLLOUT : 0);
        /* Off when waiting for nothing: epoll reports a hang-up even when no event is asked. */
        (void)sd_event_source_set_io_events(c->io, ev);
        (void)sd_event_source_set_enabled(c->io, ev ? SD_EVENT_ON : SD_EVENT_OFF);
}

/* Write what is queued. false when the connection ended: the write failed, or a closing
 * connection has written everything. */
static bool conn_flush(struct frame_conn *c)
{
        int r = frame_writer_flush(&c->wr, c->fd);
        if (r < 0 && r != -EAGAIN) {
                conn_end(c, r);
                return false;
        }
        if (r == 0 && c->state == CONN_CLOSING) {
                conn_end(c, c->end_error);
                return false;
        }
        conn_watch(c);
        return true;
}

/* Hand the owner at most a batch of messages, then write what it queued, the replies of a
 * whole batch in one write. What one read brought beyond a batch waits in the reader, where no
 * readiness of the socket would ever call us again (hostd sends a hundred Detach calls in one
 * write when as many dynos stop): the defer source takes it up on the next iteration. */
static void conn_dispatch(struct frame_conn *c)
{
        unsigned i;
        for (i = 0; i < c->kind->batch && c->state != CONN_CLOSING; i++) {
                const uint8_t *msg = NULL;
                size_t len = 0;
                int r = frame_reader_next(&c->rd, &msg, &len);
                if (r == 0) {
                        /* The peer's end counts once everything it sent before is handled. */
                        if (c->state == CONN_DRAINING)
                                conn_closing(c, frame_reader_partial(&c->rd) ? -EPIPE : 0);
                        break;
                }
                if (r < 0) /* no frame boundary to go on from */
                        conn_closing(c, r);
                c->in_message = true;
                c->kind->message(c, r < 0 ? r : 0, msg, len, c->userdata);
                c->in_message = false;
                if (c->freed) {
                        free(c);
                        return;
                }
        }
        if (i == c->kind->batch && c->state != CONN_CLOSING)
                (void)sd_event_source_set_enabled(c->more, SD_EVENT_ONESHOT);
        conn_flush(c);
}

static int on_more(sd_event_source *s, void *userdata)
{
        conn_dispatch(userdata);
        return 0;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct frame_conn *c = userdata;

        if (revents & EPOLLOUT && !conn_flush(c))
                return 0;
        if (c->state != CONN_OPEN || !(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        /* One read a wake-up, 64 KiB at most: many small messages, and still a bounded share
         * of the loop. -ENOBUFS: the reader holds a whole message already. */
        ssize_t n = frame_reader_fill(&c->rd, c->fd);
        if (n < 0 && n != -EAGAIN && n != -ENOBUFS) {
                conn_end(c, (int)n);
                return 0;
        }
        if (n == 0)
                c->state = CONN_DRAINING;
        conn_dispatch(c);
        return 0;
}

int frame_conn_new(sd_event *e, int fd, const struct frame_conn_kind *kind, void *userdata,
                   struct frame_conn **ret)
{
        if (kind->batch == 0)
                return -EINVAL;
        struct frame_conn *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (struct frame_conn){ .kind = kind, .userdata = userdata, .fd = -1 };
        frame_reader_init(&c->rd, kind->max_frame);
        frame_writer_init(&c->wr, kind->max_queued);
        int r = sd_event_add_io(e, &c->io, fd, EPOLLIN, on_io, c);
        if (r >= 0)
                r = sd_event_add_defer(e, &c->more, on_more, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->more, SD_EVENT_OFF);
        /* A defer source re-enabled from its own callback stays pending since its first
         * iteration, and would come before any other source of its priority, batch after
         * batch: one step below, a busy connection leaves the loop to the others between its
         * batches (and still comes before hostd's log pipes). */
        if (r >= 0)
                r = sd_event_source_set_priority(c->more, SD_EVENT_PRIORITY_NORMAL + 1);
        if (r < 0) {
                frame_conn_free(c); /* c->fd is -1: fd stays the caller's */
                return r;
        }
        c->fd = fd;
        *ret = c;
        return 0;
}

void frame_conn_free(struct frame_conn *c)
{
        if (!c)
                return;
        conn_shut(c);
        if (c->in_message)
                c->freed = true;
        else
                free(c);
}

int frame_conn_send(struct frame_conn *c, const void *msg, size_t len)
{
        if (c->state == CONN_ENDED)
                return -ENOTCONN;
        int r = frame_writer_append(&c->wr, msg, len);
        if (r < 0)
                return r;
        /* Written from the loop, so that no callback runs before the caller is done. */
        conn_watch(c);
        return 0;
}

int frame_conn_send_pb(struct frame_conn *c, const ProtobufCMessage *m)
{
        size_t len = protobuf_c_message_get_packed_size(m);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        protobuf_c_message_pack(m, buf);
        return frame_conn_send(c, buf, len);
}

void frame_conn_close(struct frame_conn *c)
{
        if (c->state == CONN_CLOSING || c->state == CONN_ENDED)
                return;
        conn_closing(c, 0);
        conn_watch(c);
        /* Ends it from the loop even with nothing queued, when no write would call us. */
        (void)sd_event_source_set_enabled(c->more, SD_EVENT_ONESHOT);
}

size_t frame_conn_queued(const struct frame_conn *c) { return frame_writer_pending(&c->wr); }
