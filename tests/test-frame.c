/* Unit tests for proto/frame.c: varints, the reader's limits and the writer over real sockets. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "util.h"
#include "check.h"

/* Append one framed message to a growing stream buffer. */
static void stream_add(uint8_t **s, size_t *n, size_t len, unsigned seed)
{
        uint8_t hdr[FRAME_VARINT_MAX];
        size_t h = frame_varint_encode(len, hdr);

        /* Grow by doubling: realloc by a few bytes each time is quadratic where realloc always
         * moves (ASan's), and this test made 10000 of them, 1.5 MB in all. */
        size_t cap = 64, need = *n + h + len;
        while (cap < need)
                cap *= 2;
        if (!*s || need > (*n <= 64 ? 64 : (size_t)1 << (64 - __builtin_clzll(*n - 1)))) {
                *s = realloc(*s, cap);
                if (!*s)
                        abort();
        }
        memcpy(*s + *n, hdr, h);
        msg_pattern(*s + *n + h, len, seed);
        *n += h + len;
}

static void socketpair_or_die(int type, int sv[2])
{
        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("socketpair");
                exit(EXIT_FAILURE);
        }
}

static void test_varint_boundaries(void)
{
        static const struct {
                uint64_t v;
                size_t bytes;
        } cases[] = {
                { 0, 1 },           { 127, 1 },   { 128, 2 },
                { 16383, 2 },       { 16384, 3 }, { UINT64_C(1) << 32, 5 },
                { UINT64_MAX, 10 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t buf[FRAME_VARINT_MAX];
                uint64_t v = 12345;
                size_t used = 0;
                size_t n = frame_varint_encode(cases[i].v, buf);

                CHECK_EQ(n, cases[i].bytes);
                CHECK_EQ(frame_varint_decode(buf, n, &v, &used), 1);
                CHECK(v == cases[i].v);
                CHECK_EQ(used, n);
                /* Every strict prefix asks for more, never errs or decodes early. */
                for (size_t k = 0; k < n; k++)
                        CHECK_EQ(frame_varint_decode(buf, k, &v, &used), 0);
        }

        /* Protobuf's own encoding of 300, and trailing bytes are not consumed. */
        const uint8_t b300[] = { 0xac, 0x02, 0x55 };
        uint64_t v;
        size_t used;
        CHECK_EQ(frame_varint_decode(b300, sizeof b300, &v, &used), 1);
        CHECK_EQ(v, 300);
        CHECK_EQ(used, 2);
}

static void test_varint_malformed(void)
{
        uint8_t ff[11];
        uint64_t v;
        size_t used;

        memset(ff, 0xff, sizeof ff);
        CHECK_EQ(frame_varint_decode(ff, 11, &v, &used), -EBADMSG);
        CHECK_EQ(frame_varint_decode(ff, 10, &v, &used), -EBADMSG);
        CHECK_EQ(frame_varint_decode(ff, 9, &v, &used), 0);

        /* Ten bytes, tenth carries bit 64: over 64 bits. */
        uint8_t over[10];
        memset(over, 0xff, 9);
        over[9] = 0x02;
        CHECK_EQ(frame_varint_decode(over, 10, &v, &used), -EBADMSG);
        over[9] = 0x01;
        CHECK_EQ(frame_varint_decode(over, 10, &v, &used), 1);
        CHECK(v == UINT64_MAX);

        CHECK_EQ(frame_varint_decode(ff, 0, &v, &used), 0);
}

static void test_reader_byte_by_byte(void)
{
        static const size_t sizes[] = { 0, 1, 127, 128, 300, 0, 16384, 5 };
        _cleanup_free_ uint8_t *s = NULL;
        size_t n = 0, got = 0, ends[ELEMENTSOF(sizes)], e = 0;
        struct frame_reader r;

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                stream_add(&s, &n, sizes[i], (unsigned)i);
                ends[i] = n;
        }

        frame_reader_init(&r, 0);
        for (size_t i = 0; i < n; i++) {
                const uint8_t *msg;
                size_t len;
                int k;

                CHECK_EQ(frame_reader_feed(&r, s + i, 1), 0);
                while ((k = frame_reader_next(&r, &msg, &len)) == 1) {
                        CHECK(got < ELEMENTSOF(sizes));
                        if (got >= ELEMENTSOF(sizes))
                                break;
                        CHECK_EQ(len, sizes[got]);
                        CHECK(msg_pattern_ok(msg, len, (unsigned)got));
                        got++;
                }
                CHECK_EQ(k, 0);
                /* Bytes of an unfinished frame are held everywhere but on a frame boundary. */
                bool boundary = e < ELEMENTSOF(ends) && i + 1 == ends[e];
                if (boundary)
                        e++;
                CHECK(frame_reader_partial(&r) == !boundary);
        }
        CHECK_EQ(got, ELEMENTSOF(sizes));
        CHECK(!frame_reader_partial(&r));
        frame_reader_free(&r);
}

static void test_reader_several_in_one_read(void)
{
        _cleanup_close_ int a = -1, b = -1;
        _cleanup_free_ uint8_t *s = NULL;
        struct frame_reader r;
        const uint8_t *msg;
        size_t n = 0, len;
        int sv[2];

        socketpair_or_die(SOCK_STREAM | SOCK_NONBLOCK, sv);
        a = sv[0];
        b = sv[1];
        stream_add(&s, &n, 10, 0);
        stream_add(&s, &n, 0, 1);
        stream_add(&s, &n, 2000, 2);
        CHECK_EQ(write(a, s, n), (ssize_t)n);

        frame_reader_init(&r, 0);
        CHECK_EQ(frame_reader_fill(&r, b), (ssize_t)n);
        for (unsigned i = 0; i < 3; i++) {
                CHECK_EQ(frame_reader_next(&r, &msg, &len), 1);
                CHECK_EQ(len, i == 0 ? 10 : i == 1 ? 0 : 2000);
                CHECK(msg_pattern_ok(msg, len, i));
        }
        CHECK_EQ(frame_reader_next(&r, &msg, &len), 0);
        CHECK(!frame_reader_partial(&r));
        /* Nothing more to read on the non-blocking socket. */
        CHECK_EQ(frame_reader_fill(&r, b), -EAGAIN);
        frame_reader_free(&r);
}

static void test_reader_zero_length(void)
{
        struct frame_reader r;
        const uint8_t *msg = NULL;
        size_t len = 99;

        frame_reader_init(&r, 0);
        CHECK_EQ(frame_reader_feed(&r, "\0", 1), 0);
        CHECK(frame_reader_partial(&r));
        CHECK_EQ(frame_reader_next(&r, &msg, &len), 1);
        CHECK_EQ(len, 0);
        CHECK(msg != NULL);
        CHECK(!frame_reader_partial(&r));
        CHECK_EQ(frame_reader_next(&r, &msg, &len), 0);
        frame_reader_free(&r);
}

static void test_reader_oversized(void)
{
        uint8_t hdr[FRAME_VARINT_MAX], body[1000] = {};
        size_t h = frame_varint_encode(UINT64_C(1) << 30, hdr);
        struct frame_reader r;
        const uint8_t *msg;
        size_t len;

        /* Fed directly: the 1 GiB header is refused and nothing near its size is allocated. */
        frame_reader_init(&r, 0);
        CHECK_EQ(frame_reader_feed(&r, hdr, h), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), -EMSGSIZE);
        CHECK(r.cap <= 4096);
        CHECK_EQ(frame_reader_feed(&r, body, sizeof body), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), -EMSGSIZE); /* stays refused */
        CHECK(r.cap <= 4096);
        frame_reader_free(&r);

        /* Through a socket, header then some payload, as an attacker would send it. */
        _cleanup_close_ int a = -1, b = -1;
        int sv[2];
        socketpair_or_die(SOCK_STREAM, sv);
        a = sv[0];
        b = sv[1];
        CHECK_EQ(write(a, hdr, h), (ssize_t)h);
        CHECK_EQ(write(a, body, sizeof body), (ssize_t)sizeof body);

        uint8_t *m = NULL;
        size_t mlen = 0;
        frame_reader_init(&r, 0);
        CHECK_EQ(frame_read_one(b, &r, &m, &mlen), -EMSGSIZE);
        CHECK(m == NULL);
        CHECK(r.cap <= 64 * 1024 + 4096);
        frame_reader_free(&r);

        /* Exactly max is accepted, max + 1 is not. */
        _cleanup_free_ uint8_t *s = NULL;
        size_t n = 0;
        stream_add(&s, &n, 100, 7);
        frame_reader_init(&r, 100);
        CHECK_EQ(frame_reader_feed(&r, s, n), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), 1);
        CHECK_EQ(len, 100);
        CHECK(msg_pattern_ok(msg, len, 7));
        h = frame_varint_encode(101, hdr);
        CHECK_EQ(frame_reader_feed(&r, hdr, h), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), -EMSGSIZE);
        frame_reader_free(&r);
}

static void test_reader_garbage(void)
{
        uint8_t ff[11];
        struct frame_reader r;
        const uint8_t *msg;
        size_t len;

        memset(ff, 0xff, sizeof ff);
        frame_reader_init(&r, 0);
        CHECK_EQ(frame_reader_feed(&r, ff, sizeof ff), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), -EBADMSG);
        frame_reader_free(&r);

        /* Nine bytes are still a possible prefix; the tenth decides. */
        frame_reader_init(&r, 0);
        CHECK_EQ(frame_reader_feed(&r, ff, 9), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), 0);
        CHECK_EQ(frame_reader_feed(&r, ff, 1), 0);
        CHECK_EQ(frame_reader_next(&r, &msg, &len), -EBADMSG);
        frame_reader_free(&r);

        /* And over a socket with the blocking helper. */
        _cleanup_close_ int a = -1, b = -1;
        int sv[2];
        uint8_t *m = NULL;
        size_t mlen;
        socketpair_or_die(SOCK_STREAM, sv);
        a = sv[0];
        b = sv[1];
        CHECK_EQ(write(a, ff, sizeof ff), (ssize_t)sizeof ff);
        frame_reader_init(&r, 0);
        CHECK_EQ(frame_read_one(b, &r, &m, &mlen), -EBADMSG);
        CHECK(m == NULL);
        frame_reader_free(&r);
}

static void test_read_one_peer_closes_mid_frame(void)
{
        struct frame_reader r;
        uint8_t *m = NULL;
        size_t mlen;
        int sv[2];

        /* Header announces 10 bytes, 5 arrive, then the peer is gone. */
        {
                _cleanup_close_ int b = -1;
                const uint8_t half[] = { 10, 'h', 'e', 'l', 'l', 'o' };

                socketpair_or_die(SOCK_STREAM, sv);
                b = sv[1];
                CHECK_EQ(write(sv[0], half, sizeof half), (ssize_t)sizeof half);
                close(sv[0]);
                frame_reader_init(&r, 0);
                CHECK_EQ(frame_read_one(b, &r, &m, &mlen), -EPIPE);
                CHECK(m == NULL);
                frame_reader_free(&r);
        }

        /* Closed inside the length prefix itself. */
        {
                _cleanup_close_ int b = -1;
                const uint8_t cont = 0x80;

                socketpair_or_die(SOCK_STREAM, sv);
                b = sv[1];
                CHECK_EQ(write(sv[0], &cont, 1), 1);
                close(sv[0]);
                frame_reader_init(&r, 0);
                CHECK_EQ(frame_read_one(b, &r, &m, &mlen), -EPIPE);
                frame_reader_free(&r);
        }

        /* Whole frames then a close: both messages, then a clean 0. */
        {
                _cleanup_close_ int b = -1;

                socketpair_or_die(SOCK_STREAM, sv);
                b = sv[1];
                CHECK_EQ(frame_write_all(sv[0], "abc", 3), 0);
                CHECK_EQ(frame_write_all(sv[0], NULL, 0), 0);
                close(sv[0]);
                frame_reader_init(&r, 0);
                CHECK_EQ(frame_read_one(b, &r, &m, &mlen), 1);
                CHECK_EQ(mlen, 3);
                CHECK(m && memcmp(m, "abc", 3) == 0);
                free(m);
                m = NULL;
                CHECK_EQ(frame_read_one(b, &r, &m, &mlen), 1);
                CHECK_EQ(mlen, 0);
                CHECK(m != NULL);
                free(m);
                m = NULL;
                CHECK_EQ(frame_read_one(b, &r, &m, &mlen), 0);
                CHECK(m == NULL);
                frame_reader_free(&r);
        }
}

/* Drain into a reader in chunks that never line up with frames: the buffer must be reused. */
static void test_reader_compacts(void)
{
        _cleanup_free_ uint8_t *s = NULL;
        struct frame_reader r;
        size_t n = 0, got = 0, max_cap = 0;
        const unsigned count = 10000;

        for (unsigned i = 0; i < count; i++)
                stream_add(&s, &n, (i * 37) % 201, i);

        frame_reader_init(&r, 1000);
        for (size_t off = 0; off < n; off += 150) {
                size_t chunk = n - off < 150 ? n - off : 150;
                const uint8_t *msg;
                size_t len;

                CHECK_EQ(frame_reader_feed(&r, s + off, chunk), 0);
                while (frame_reader_next(&r, &msg, &len) == 1) {
                        if (len != (got * 37) % 201 || !msg_pattern_ok(msg, len, (unsigned)got))
                                CHECK(!"message content");
                        got++;
                }
                if (r.cap > max_cap)
                        max_cap = r.cap;
        }
        CHECK_EQ(got, count);
        CHECK(!frame_reader_partial(&r));
        /* 1.5 MB went through; the buffer never held more than a frame and a chunk. */
        CHECK(max_cap <= 1024);
        frame_reader_free(&r);
}

/* A peer that sends faster than we consume cannot make fill buffer past max + 10 + a chunk. */
static void test_reader_fill_bound(void)
{
        const size_t max = 100000, chunk = 64 * 1024;
        const unsigned count = 20;
        struct frame_reader r;
        _cleanup_close_ int b = -1;
        size_t got = 0, max_held = 0, max_cap = 0;
        bool saw_nobufs = false;
        int sv[2], status;
        pid_t pid;

        socketpair_or_die(SOCK_STREAM, sv);
        pid = fork();
        if (pid < 0) {
                perror("fork");
                exit(EXIT_FAILURE);
        }
        if (pid == 0) {
                uint8_t *m = malloc(max);
                int rc = 0;

                close(sv[1]);
                for (unsigned i = 0; m && i < count && rc == 0; i++) {
                        msg_pattern(m, max, i);
                        rc = frame_write_all(sv[0], m, max);
                }
                free(m);
                close(sv[0]);
                _exit(rc == 0 ? 0 : 1);
        }
        close(sv[0]);
        b = sv[1];

        frame_reader_init(&r, max);
        /* First only fill, never take: fill must stop by itself. */
        for (;;) {
                ssize_t k = frame_reader_fill(&r, b);
                size_t held = r.len - r.start;

                if (held > max_held)
                        max_held = held;
                if (k == -ENOBUFS) {
                        saw_nobufs = true;
                        break;
                }
                CHECK(k > 0);
                if (k <= 0)
                        break;
        }
        CHECK(saw_nobufs);

        for (;;) {
                const uint8_t *msg;
                size_t len;
                int k;

                while ((k = frame_reader_next(&r, &msg, &len)) == 1) {
                        CHECK_EQ(len, max);
                        CHECK(msg_pattern_ok(msg, len, (unsigned)got));
                        got++;
                }
                CHECK_EQ(k, 0);
                ssize_t n = frame_reader_fill(&r, b);
                size_t held = r.len - r.start;
                if (held > max_held)
                        max_held = held;
                if (r.cap > max_cap)
                        max_cap = r.cap;
                CHECK(n >= 0);
                if (n <= 0)
                        break;
        }
        CHECK_EQ(got, count);
        CHECK(!frame_reader_partial(&r));
        CHECK(max_held <= max + FRAME_VARINT_MAX + chunk);
        CHECK(max_cap <= max + FRAME_VARINT_MAX + chunk);
        frame_reader_free(&r);

        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* write_all/read_one across a real socket, with a message far larger than the socket buffer. */
static void test_write_all_read_one_large(void)
{
        const size_t big = 3u << 20;
        struct frame_reader r;
        _cleanup_close_ int b = -1;
        uint8_t *m = NULL;
        size_t mlen;
        int sv[2], status;
        pid_t pid;

        socketpair_or_die(SOCK_STREAM, sv);
        pid = fork();
        if (pid < 0) {
                perror("fork");
                exit(EXIT_FAILURE);
        }
        if (pid == 0) {
                uint8_t *p = malloc(big);
                int rc = -ENOMEM;

                close(sv[1]);
                if (p) {
                        msg_pattern(p, big, 42);
                        rc = frame_write_all(sv[0], p, big);
                        if (rc == 0)
                                rc = frame_write_all(sv[0], NULL, 0);
                }
                free(p);
                close(sv[0]);
                _exit(rc == 0 ? 0 : 1);
        }
        close(sv[0]);
        b = sv[1];

        frame_reader_init(&r, 4u << 20);
        CHECK_EQ(frame_read_one(b, &r, &m, &mlen), 1);
        CHECK_EQ(mlen, big);
        CHECK(m && msg_pattern_ok(m, mlen, 42));
        free(m);
        m = NULL;
        CHECK(r.cap >= big);
        CHECK_EQ(frame_read_one(b, &r, &m, &mlen), 1);
        CHECK_EQ(mlen, 0);
        free(m);
        m = NULL;
        CHECK_EQ(frame_read_one(b, &r, &m, &mlen), 0);
        /* The megabytes went back at the next read after the big message was taken. */
        CHECK(r.cap <= 256 * 1024);
        frame_reader_free(&r);

        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_writer_nobufs(void)
{
        struct frame_writer w;
        struct frame_reader r;
        uint8_t m[100];
        uint8_t *got = NULL;
        size_t glen;
        _cleanup_close_ int rd = -1, wr = -1;
        int p[2];

        frame_writer_init(&w, 100);
        msg_pattern(m, sizeof m, 1);
        CHECK_EQ(frame_writer_append(&w, m, 50), 0); /* 51 bytes */
        CHECK_EQ(frame_writer_pending(&w), 51);
        CHECK_EQ(frame_writer_append(&w, m, 50), -ENOBUFS); /* would be 102 */
        CHECK_EQ(frame_writer_pending(&w), 51);             /* nothing queued */
        CHECK_EQ(frame_writer_append(&w, m, 100), -ENOBUFS);
        CHECK_EQ(frame_writer_append(&w, m, 48), 0); /* exactly 100 */
        CHECK_EQ(frame_writer_pending(&w), 100);
        CHECK_EQ(frame_writer_append(&w, NULL, 0), -ENOBUFS); /* even 1 byte is too many */

        /* Flush through a pipe (not a socket: the write() path) and see exactly what was
         * accepted arrive. */
        CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
        rd = p[0];
        wr = p[1];
        CHECK_EQ(frame_writer_flush(&w, wr), 0);
        CHECK_EQ(frame_writer_pending(&w), 0);
        close(TAKE_FD(wr));

        frame_reader_init(&r, 0);
        CHECK_EQ(frame_read_one(rd, &r, &got, &glen), 1);
        CHECK_EQ(glen, 50);
        CHECK(got && memcmp(got, m, 50) == 0);
        free(got);
        got = NULL;
        CHECK_EQ(frame_read_one(rd, &r, &got, &glen), 1);
        CHECK_EQ(glen, 48);
        CHECK(got && memcmp(got, m, 48) == 0);
        free(got);
        got = NULL;
        CHECK_EQ(frame_read_one(rd, &r, &got, &glen), 0);
        frame_reader_free(&r);

        /* After the flush the bound applies afresh. */
        CHECK_EQ(frame_writer_append(&w, m, 99), 0);
        frame_writer_free(&w);

        frame_writer_init(&w, 0); /* unlimited */
        for (int i = 0; i < 1000; i++)
                CHECK_EQ(frame_writer_append(&w, m, sizeof m), 0);
        CHECK_EQ(frame_writer_pending(&w), 1000 * 101);
        frame_writer_free(&w);
}

/* A writer of its own (rpc.c's TLS): take the queued bytes in odd pieces while appending
 * more in between; what comes out is exactly the framed stream. */
static void test_writer_peek_advance(void)
{
        struct frame_writer w;
        struct frame_reader r;
        uint8_t m[300];
        uint8_t *expect = NULL, out[4096];
        size_t expect_len = 0, out_len = 0;

        frame_writer_init(&w, 0);
        for (unsigned i = 0; i < 5; i++) {
                msg_pattern(m, sizeof m, i);
                CHECK_EQ(frame_writer_append(&w, m, 100 + i * 50), 0);
                stream_add(&expect, &expect_len, 100 + i * 50, i);
                /* take 77 bytes (or what is left) after each append */
                size_t n;
                const uint8_t *p = frame_writer_peek(&w, &n);
                size_t take = n < 77 ? n : 77;
                memcpy(out + out_len, p, take);
                out_len += take;
                frame_writer_advance(&w, take);
        }
        for (;;) {
                size_t n;
                const uint8_t *p = frame_writer_peek(&w, &n);
                if (n == 0)
                        break;
                size_t take = n < 13 ? n : 13;
                memcpy(out + out_len, p, take);
                out_len += take;
                frame_writer_advance(&w, take);
        }
        CHECK_EQ(frame_writer_pending(&w), 0);
        CHECK_EQ(out_len, expect_len);
        CHECK(expect && memcmp(out, expect, expect_len) == 0);
        /* Advancing past the end takes only what there is. */
        CHECK_EQ(frame_writer_append(&w, m, 10), 0);
        frame_writer_advance(&w, 1000);
        CHECK_EQ(frame_writer_pending(&w), 0);

        frame_reader_init(&r, 0);
        CHECK_EQ(frame_reader_feed(&r, out, out_len), 0);
        for (unsigned i = 0; i < 5; i++) {
                const uint8_t *msg;
                size_t len;
                CHECK_EQ(frame_reader_next(&r, &msg, &len), 1);
                CHECK_EQ(len, 100 + i * 50);
                CHECK(msg_pattern_ok(msg, len, i));
        }
        frame_reader_free(&r);
        frame_writer_free(&w);
        free(expect);
}

static void test_writer_epipe(void)
{
        struct frame_writer w;
        int sv[2];
        _cleanup_close_ int a = -1;

        /* Default disposition: a SIGPIPE would kill this test process outright. */
        signal(SIGPIPE, SIG_DFL);

        socketpair_or_die(SOCK_STREAM | SOCK_NONBLOCK, sv);
        a = sv[0];
        close(sv[1]);

        frame_writer_init(&w, 0);
        CHECK_EQ(frame_writer_append(&w, "hello", 5), 0);
        CHECK_EQ(frame_writer_flush(&w, a), -EPIPE);
        CHECK_EQ(frame_writer_pending(&w), 6); /* nothing was sent */
        frame_writer_free(&w);

        CHECK_EQ(frame_write_all(a, "hello", 5), -EPIPE);
        /* Reaching this line is the proof: no signal was raised. */
}

static void test_writer_partial_flush(void)
{
        const unsigned count = 200;
        const size_t size = 4000;
        struct frame_writer w;
        struct frame_reader r;
        _cleanup_close_ int a = -1, b = -1;
        uint8_t m[4000];
        unsigned got = 0, again = 0;
        int sv[2], sndbuf = 4096, k;
        size_t last_pending;

        socketpair_or_die(SOCK_STREAM | SOCK_NONBLOCK, sv);
        a = sv[0];
        b = sv[1];
        CHECK_EQ(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);

        frame_writer_init(&w, 0);
        for (unsigned i = 0; i < count; i++) {
                msg_pattern(m, size, i);
                CHECK_EQ(frame_writer_append(&w, m, size), 0);
        }
        last_pending = frame_writer_pending(&w);

        /* The socket fills long before 800 KB are out. */
        CHECK_EQ(frame_writer_flush(&w, a), -EAGAIN);
        CHECK(frame_writer_pending(&w) > 0);
        CHECK(frame_writer_pending(&w) < last_pending);

        frame_reader_init(&r, 0);
        for (int rounds = 0; rounds < 100000; rounds++) {
                const uint8_t *msg;
                size_t len;
                ssize_t n;

                /* The peer drains what is there... */
                while ((n = frame_reader_fill(&r, b)) > 0)
                        while (frame_reader_next(&r, &msg, &len) == 1) {
                                if (len != size || !msg_pattern_ok(msg, len, got))
                                        CHECK(!"message content");
                                got++;
                        }
                CHECK_EQ(n, -EAGAIN);

                /* ...and the writer goes on where it stopped. */
                last_pending = frame_writer_pending(&w);
                k = frame_writer_flush(&w, a);
                if (k == 0)
                        break;
                CHECK_EQ(k, -EAGAIN);
                if (k != -EAGAIN)
                        break;
                CHECK(frame_writer_pending(&w) < last_pending);
                again++;
        }
        CHECK_EQ(k, 0);
        CHECK_EQ(frame_writer_pending(&w), 0);
        CHECK(again > 0);
        CHECK(w.cap <= 256 * 1024); /* the 800 KB burst is not kept */

        /* What the last flush sent is still in the socket. */
        for (;;) {
                const uint8_t *msg;
                size_t len;

                while (frame_reader_next(&r, &msg, &len) == 1) {
                        if (len != size || !msg_pattern_ok(msg, len, got))
                                CHECK(!"message content");
                        got++;
                }
                if (frame_reader_fill(&r, b) <= 0)
                        break;
        }
        CHECK_EQ(got, count);
        CHECK(!frame_reader_partial(&r));
        frame_reader_free(&r);
        frame_writer_free(&w);
}

static void test_free_twice(void)
{
        struct frame_reader r;
        struct frame_writer w;

        frame_reader_init(&r, 123);
        CHECK_EQ(frame_reader_feed(&r, "\x01x", 2), 0);
        frame_reader_free(&r);
        frame_reader_free(&r);
        CHECK_EQ(r.max, 123);
        CHECK(!frame_reader_partial(&r));

        frame_writer_init(&w, 0);
        CHECK_EQ(frame_writer_append(&w, "x", 1), 0);
        frame_writer_free(&w);
        frame_writer_free(&w);
        CHECK_EQ(frame_writer_pending(&w), 0);
}

int main(void)
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "varint round-trips at boundaries", test_varint_boundaries },
                { "varint malformed", test_varint_malformed },
                { "reader: partial frames fed byte by byte", test_reader_byte_by_byte },
                { "reader: several frames in one read", test_reader_several_in_one_read },
                { "reader: zero-length frame", test_reader_zero_length },
                { "reader: oversized length refused before allocating", test_reader_oversized },
                { "reader: garbage prefix", test_reader_garbage },
                { "read_one: peer closes mid-frame", test_read_one_peer_closes_mid_frame },
                { "reader: buffer compacts and is reused", test_reader_compacts },
                { "reader: fill bounded by max + 10 + chunk", test_reader_fill_bound },
                { "write_all/read_one: 3 MiB message", test_write_all_read_one_large },
                { "writer: max_pending bound", test_writer_nobufs },
                { "writer: peek and advance in pieces", test_writer_peek_advance },
                { "writer: closed peer gives EPIPE, no SIGPIPE", test_writer_epipe },
                { "writer: partial flush on a full socket", test_writer_partial_flush },
                { "reader/writer: free twice", test_free_twice },
        };
        int failed = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                case_failures = 0;
                cases[i].fn();
                printf("%s: %s\n", case_failures ? "FAIL" : "ok  ", cases[i].name);
                fflush(stdout);
                if (case_failures)
                        failed++;
        }
        if (failed) {
                printf("%d of %zu cases failed\n", failed, ELEMENTSOF(cases));
                return EXIT_FAILURE;
        }
        printf("all %zu cases passed\n", ELEMENTSOF(cases));
        return EXIT_SUCCESS;
}
