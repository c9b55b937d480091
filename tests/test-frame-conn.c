/* Unit tests for proto/frame-conn.c: two ends of a socketpair on one sd-event loop, or one end
 * and a raw socket the test writes and reads by hand. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "frame-conn.h"
#include "frame.h"
#include "util.h"
#include "check.h"

/* The size of message i of a test: mostly small, every 50th large (past a socket's buffer). */
static size_t msg_size(unsigned i) { return i % 50 == 49 ? 300000 + i : (i * 97) % 3000; }

/* One end as its owner sees it. */
struct end {
        struct frame_conn *conn;
        unsigned n_msgs;    /* whole messages received */
        unsigned n_bad;     /* of them, not the one expected next */
        int refused;        /* the error of a refused frame, 0 if none */
        int n_closed;       /* closed() calls */
        int closed_error;   /* the last one's error */
        bool echo;          /* send every message back */
        unsigned free_at;   /* free the connection at this message (1-based; 0: never) */
        unsigned close_at;  /* reply "bye" and close at this message (1-based; 0: never) */
        const char *last;   /* sent back on a refused frame */
        bool fixed_sizes;   /* messages are msg_size(i) long; else any length */
        bool keep_on_close; /* do not free in closed() (the test looks at the ended one) */
};

static bool in_send; /* no callback may run within a send */

static void on_message(struct frame_conn *c, int error, const uint8_t *msg, size_t len,
                       void *userdata)
{
        struct end *e = userdata;
        CHECK(!in_send);
        if (error < 0) {
                CHECK(!msg);
                e->refused = error;
                if (e->last)
                        CHECK_R(frame_conn_send(c, e->last, strlen(e->last)), 0);
                return;
        }
        unsigned i = e->n_msgs++;
        if ((e->fixed_sizes && len != msg_size(i)) || !msg_pattern_ok(msg, len, i))
                e->n_bad++;
        if (e->echo)
                CHECK_R(frame_conn_send(c, msg, len), 0);
        if (e->free_at == e->n_msgs) {
                frame_conn_free(c);
                e->conn = NULL;
        } else if (e->close_at == e->n_msgs) {
                CHECK_R(frame_conn_send(c, "bye", 3), 0);
                frame_conn_close(c);
        }
}

static void on_closed(struct frame_conn *c, int error, void *userdata)
{
        struct end *e = userdata;
        e->n_closed++;
        e->closed_error = error;
        if (!e->keep_on_close) {
                frame_conn_free(c);
                e->conn = NULL;
        }
}

static struct frame_conn_kind kind = {
        .max_frame = 1u << 20,
        .max_queued = 16u << 20,
        .batch = 64,
        .message = on_message,
        .closed = on_closed,
};

static sd_event *loop_new(void)
{
        sd_event *e = NULL;
        if (sd_event_new(&e) < 0)
                abort();
        return e;
}

static void pair_or_die(int sv[2])
{
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
}

static void attach(sd_event *e, int fd, const struct frame_conn_kind *k, struct end *end)
{
        int r = frame_conn_new(e, fd, k, end, &end->conn);
        CHECK_R(r, 0);
        if (r < 0)
                abort();
}

/* Every event that is ready now, as many iterations as it takes. */
static void run_ready(sd_event *e)
{
        while (sd_event_run(e, 0) > 0)
                ;
}

/* Iterate until cond holds, 10 s at most. */
#define RUN_UNTIL(e, cond)                                                                         \
        do {                                                                                       \
                uint64_t _end = now_monotonic_usec() + 10 * 1000000ULL;                            \
                while (!(cond) && now_monotonic_usec() < _end)                                     \
                        sd_event_run((e), 100000);                                                 \
                CHECK(cond);                                                                       \
        } while (0)

/* A framed stream of messages first..first+n-1 (msg_size, pattern), for a raw socket. */
static uint8_t *stream_make(unsigned first, unsigned n, size_t *ret_len, bool small)
{
        size_t total = 0;
        for (unsigned i = first; i < first + n; i++)
                total += FRAME_VARINT_MAX + (small ? 8 : msg_size(i));
        uint8_t *s = malloc(total), *p = s;
        if (!s)
                abort();
        for (unsigned i = first; i < first + n; i++) {
                size_t len = small ? 8 : msg_size(i);
                p += frame_varint_encode(len, p);
                msg_pattern(p, len, i);
                p += len;
        }
        *ret_len = (size_t)(p - s);
        return s;
}

static void write_full(int fd, const void *p, size_t n) { CHECK_EQ(write(fd, p, n), (ssize_t)n); }

/* Read one framed message from a non-blocking raw socket, running the loop while it waits:
 * 1, 0 at EOF, negative on error. */
static int raw_read_one(sd_event *e, int fd, struct frame_reader *rd, uint8_t *buf, size_t max,
                        size_t *ret_len)
{
        uint64_t end = now_monotonic_usec() + 10 * 1000000ULL;
        for (;;) {
                const uint8_t *msg;
                size_t len;
                int r = frame_reader_next(rd, &msg, &len);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (len > max)
                                return -EMSGSIZE;
                        memcpy(buf, msg, len);
                        *ret_len = len;
                        return 1;
                }
                ssize_t n = frame_reader_fill(rd, fd);
                if (n == 0)
                        return 0;
                if (n == -EAGAIN) {
                        if (now_monotonic_usec() > end)
                                return -ETIMEDOUT;
                        sd_event_run(e, 10000);
                } else if (n < 0)
                        return (int)n;
        }
}

/* 400 messages of up to 300 kB one way, each echoed back: in order, whole, both ways. */
static void test_both_ways(void)
{
        sd_event *e = loop_new();
        int sv[2];
        pair_or_die(sv);
        struct end a = { .fixed_sizes = true }, b = { .fixed_sizes = true, .echo = true };
        attach(e, sv[0], &kind, &a);
        attach(e, sv[1], &kind, &b);

        size_t max = 0;
        for (unsigned i = 0; i < 400; i++)
                max = msg_size(i) > max ? msg_size(i) : max;
        uint8_t *buf = malloc(max);
        if (!buf)
                abort();
        for (unsigned i = 0; i < 400; i++) {
                msg_pattern(buf, msg_size(i), i);
                in_send = true;
                CHECK_R(frame_conn_send(a.conn, buf, msg_size(i)), 0);
                in_send = false;
                if (i % 100 == 99)
                        run_ready(e); /* some go out while more are queued */
        }
        free(buf);
        RUN_UNTIL(e, a.n_msgs == 400);
        CHECK_EQ(b.n_msgs, 400);
        CHECK_EQ(a.n_bad + b.n_bad, 0);
        CHECK_EQ(frame_conn_queued(a.conn), 0);

        /* a closes: b reads the end between two frames, a's own end follows its flush */
        frame_conn_close(a.conn);
        CHECK_EQ(a.n_closed, 0); /* from the loop, not from within the call */
        RUN_UNTIL(e, a.n_closed == 1 && b.n_closed == 1);
        CHECK_EQ(a.closed_error, 0);
        CHECK_EQ(b.closed_error, 0);
        CHECK(!a.conn && !b.conn);
        sd_event_unref(e);
}

/* A stream written a byte at a time: each message is handed over as soon as its last byte is
 * in, and only then. */
static void test_split_writes(void)
{
        sd_event *e = loop_new();
        int sv[2];
        pair_or_die(sv);
        struct end b = { .fixed_sizes = true };
        attach(e, sv[1], &kind, &b);

        size_t len;
        uint8_t *s = stream_make(0, 10, &len, false);
        size_t done = 0;
        for (unsigned i = 0; i < 10; i++) {
                uint8_t hdr[FRAME_VARINT_MAX];
                size_t end = done + frame_varint_encode(msg_size(i), hdr) + msg_size(i);
                for (; done < end; done++) {
                        CHECK_EQ(b.n_msgs, i);
                        write_full(sv[0], s + done, 1);
                        run_ready(e);
                }
                CHECK_EQ(b.n_msgs, i + 1);
        }
        free(s);
        CHECK_EQ(b.n_bad, 0);
        CHECK_EQ(b.n_closed, 0);
        close(sv[0]);
        RUN_UNTIL(e, b.n_closed == 1);
        CHECK_EQ(b.closed_error, 0);
        sd_event_unref(e);
}

/* An announced length over max_frame is refused at once, before any of the message: the
 * owner is told, its last words still go out, then the connection ends with that error. A
 * malformed prefix likewise. Nothing after the bad frame is handed over. */
static void test_refused_frames(void)
{
        static const struct {
                const uint8_t bytes[12];
                size_t n;
                int error;
                const char *last;
        } cases[] = {
                /* 1 MiB + 1 announced, 3 bytes of it sent */
                { { 0x81, 0x80, 0x40, 1, 2, 3 }, 6, -EMSGSIZE, "too big" },
                /* 11 varint bytes: not a length */
                { { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
                  11,
                  -EBADMSG,
                  NULL },
        };
        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                sd_event *e = loop_new();
                int sv[2];
                pair_or_die(sv);
                struct end b = { .fixed_sizes = true, .last = cases[k].last };
                attach(e, sv[1], &kind, &b);

                size_t len;
                uint8_t *good = stream_make(0, 1, &len, false);
                write_full(sv[0], good, len);
                write_full(sv[0], cases[k].bytes, cases[k].n);
                uint8_t *after = stream_make(1, 1, &len, false);
                write_full(sv[0], after, len); /* a good frame after the bad one */
                free(good);
                free(after);

                RUN_UNTIL(e, b.n_closed == 1);
                CHECK_EQ(b.n_msgs, 1);
                CHECK_EQ(b.refused, cases[k].error);
                CHECK_EQ(b.closed_error, cases[k].error);

                struct frame_reader rd;
                frame_reader_init(&rd, 0);
                uint8_t got[64];
                size_t n = 0;
                if (cases[k].last) {
                        CHECK_EQ(raw_read_one(e, sv[0], &rd, got, sizeof got, &n), 1);
                        CHECK(n == strlen(cases[k].last) && memcmp(got, cases[k].last, n) == 0);
                }
                CHECK_EQ(raw_read_one(e, sv[0], &rd, got, sizeof got, &n), 0); /* then EOF */
                frame_reader_free(&rd);
                close(sv[0]);
                sd_event_unref(e);
        }
}

/* A peer that reads nothing: the queue grows to max_queued and no further, the sender is told
 * with -ENOBUFS and its message is not queued; once the peer reads, everything accepted
 * arrives, in order, and sending works again. */
static void test_peer_stops_reading(void)
{
        sd_event *e = loop_new();
        int sv[2];
        pair_or_die(sv);
        struct frame_conn_kind small = kind;
        small.max_queued = 64 * 1024;
        struct end a = { 0 };
        attach(e, sv[0], &small, &a);

        uint8_t buf[1000];
        unsigned sent = 0;
        int r = 0;
        while (sent < 100000) {
                msg_pattern(buf, sizeof buf, sent);
                size_t before = frame_conn_queued(a.conn);
                r = frame_conn_send(a.conn, buf, sizeof buf);
                CHECK(frame_conn_queued(a.conn) <= small.max_queued);
                if (r < 0) {
                        CHECK_EQ(frame_conn_queued(a.conn), before);
                        break;
                }
                sent++;
                run_ready(e);
        }
        CHECK_R(r, -ENOBUFS);
        /* the kernel's buffers took their share first: more than the queue alone was accepted */
        CHECK(sent * (sizeof buf + 2) > small.max_queued);
        CHECK_EQ(a.n_closed, 0);

        struct frame_reader rd;
        frame_reader_init(&rd, 0);
        unsigned got = 0, bad = 0;
        for (; got < sent; got++) {
                size_t n;
                if (raw_read_one(e, sv[1], &rd, buf, sizeof buf, &n) != 1)
                        break;
                if (n != sizeof buf || !msg_pattern_ok(buf, n, got))
                        bad++;
        }
        CHECK_EQ(got, sent);
        CHECK_EQ(bad, 0);
        CHECK_EQ(frame_conn_queued(a.conn), 0);
        CHECK_R(frame_conn_send(a.conn, "again", 5), 0);
        size_t n;
        CHECK_EQ(raw_read_one(e, sv[1], &rd, buf, sizeof buf, &n), 1);
        CHECK(n == 5 && memcmp(buf, "again", 5) == 0);
        frame_reader_free(&rd);
        frame_conn_free(a.conn);
        close(sv[1]);
        sd_event_unref(e);
}

/* The peer's end within a frame is -EPIPE; the whole frames before it are handed over first.
 * At a frame boundary it is 0, also after more frames than a batch. */
static void test_eof(void)
{
        for (int mid = 0; mid <= 1; mid++) {
                sd_event *e = loop_new();
                int sv[2];
                pair_or_die(sv);
                struct end b = { 0 };
                attach(e, sv[1], &kind, &b);

                size_t len;
                uint8_t *s = stream_make(0, 200, &len, true);
                write_full(sv[0], s, mid ? len - 3 : len);
                free(s);
                close(sv[0]);
                RUN_UNTIL(e, b.n_closed == 1);
                CHECK_EQ(b.n_msgs, mid ? 199 : 200);
                CHECK_EQ(b.n_bad, 0);
                CHECK_EQ(b.closed_error, mid ? -EPIPE : 0);
                sd_event_unref(e);
        }
}

/* 200 messages in one write: at most a batch of 64 a wake-up, the rest from the defer source,
 * all in order; another connection ready meanwhile is served between two batches. */
static void test_batches(void)
{
        sd_event *e = loop_new();
        int sv[2], sw[2];
        pair_or_die(sv);
        pair_or_die(sw);
        struct end b = { 0 }, other = { 0 };
        attach(e, sv[1], &kind, &b);
        attach(e, sw[1], &kind, &other);

        size_t len;
        uint8_t *s = stream_make(0, 200, &len, true);
        CHECK(len < 64 * 1024); /* one read takes it all */
        write_full(sv[0], s, len);
        free(s);

        unsigned before = 0, wakeups = 0, b_when_other = 0;
        bool seen_other = false;
        while (b.n_msgs < 200 && wakeups < 100) {
                if (sd_event_run(e, 100000) <= 0)
                        break;
                if (wakeups++ == 0) { /* the other one becomes ready after the first batch */
                        s = stream_make(0, 1, &len, true);
                        write_full(sw[0], s, len);
                        free(s);
                }
                CHECK(b.n_msgs - before <= 64);
                before = b.n_msgs;
                if (other.n_msgs == 1 && !seen_other) {
                        seen_other = true;
                        b_when_other = b.n_msgs;
                }
        }
        CHECK_EQ(b.n_msgs, 200);
        CHECK_EQ(b.n_bad, 0);
        CHECK_EQ(other.n_msgs, 1);
        CHECK(seen_other && b_when_other < 200);
        CHECK(wakeups >= 4);
        frame_conn_free(b.conn);
        frame_conn_free(other.conn);
        close(sv[0]);
        close(sw[0]);
        sd_event_unref(e);
}

/* The owner frees the connection within its message callback: nothing more is handed over,
 * closed() never runs, and the peer sees the socket closed. ASan checks the rest. */
static void test_free_in_callback(void)
{
        sd_event *e = loop_new();
        int sv[2];
        pair_or_die(sv);
        struct end b = { .free_at = 3 };
        attach(e, sv[1], &kind, &b);

        size_t len;
        uint8_t *s = stream_make(0, 10, &len, true);
        write_full(sv[0], s, len);
        free(s);
        run_ready(e);
        CHECK_EQ(b.n_msgs, 3);
        CHECK_EQ(b.n_closed, 0);
        CHECK(!b.conn);
        char c;
        CHECK_EQ(read(sv[0], &c, 1), 0);
        close(sv[0]);
        sd_event_unref(e);
}

/* A reply, then frame_conn_close() within the callback: the reply goes out, then the end;
 * what the peer sent after is not handed over. The ended connection refuses to send. */
static void test_close_after_reply(void)
{
        sd_event *e = loop_new();
        int sv[2];
        pair_or_die(sv);
        struct end b = { .close_at = 1, .keep_on_close = true };
        attach(e, sv[1], &kind, &b);

        size_t len;
        uint8_t *s = stream_make(0, 5, &len, true);
        write_full(sv[0], s, len);
        free(s);
        RUN_UNTIL(e, b.n_closed == 1);
        CHECK_EQ(b.n_msgs, 1);
        CHECK_EQ(b.closed_error, 0);
        CHECK_R(frame_conn_send(b.conn, "late", 4), -ENOTCONN);

        struct frame_reader rd;
        frame_reader_init(&rd, 0);
        uint8_t got[16];
        size_t n = 0;
        CHECK_EQ(raw_read_one(e, sv[0], &rd, got, sizeof got, &n), 1);
        CHECK(n == 3 && memcmp(got, "bye", 3) == 0);
        CHECK_EQ(raw_read_one(e, sv[0], &rd, got, sizeof got, &n), 0);
        frame_reader_free(&rd);
        frame_conn_free(b.conn);
        close(sv[0]);
        sd_event_unref(e);
}

/* A failed frame_conn_new() leaves the descriptor to the caller. */
static void test_new_fails(void)
{
        sd_event *e = loop_new();
        int sv[2];
        pair_or_die(sv);
        struct frame_conn_kind bad = kind;
        bad.batch = 0;
        struct frame_conn *c = NULL;
        CHECK_R(frame_conn_new(e, sv[0], &bad, NULL, &c), -EINVAL);
        CHECK(!c);
        CHECK(fcntl(sv[0], F_GETFD) >= 0);
        close(sv[0]);
        close(sv[1]);
        sd_event_unref(e);
}

int main(void)
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "messages both ways, echoed, in order", test_both_ways },
                { "a stream written a byte at a time", test_split_writes },
                { "oversized and malformed frames refused, last words, closed",
                  test_refused_frames },
                { "a peer that stops reading: bounded queue, -ENOBUFS", test_peer_stops_reading },
                { "EOF within a frame and between frames", test_eof },
                { "batches of 64 a wake-up, another connection between", test_batches },
                { "freed within its message callback", test_free_in_callback },
                { "close after a reply", test_close_after_reply },
                { "a failed new leaves the fd", test_new_fails },
        };
        int failed = 0;

        signal(SIGPIPE, SIG_IGN);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                case_failures = 0;
                cases[i].fn();
                printf("%s: %s\n", case_failures ? "FAIL" : "ok  ", cases[i].name);
                fflush(stdout);
                if (case_failures)
                        failed++;
        }
        printf("%d of %zu cases failed\n", failed, ELEMENTSOF(cases));
        return check_report();
}
