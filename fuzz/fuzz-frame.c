/* The frame decoder (proto/frame.c) on bytes from the peer, fed as they might arrive: the
 * first byte of the input chooses the sizes of the pieces, so one input is read whole, a byte
 * at a time or in pieces of a few bytes, as a slow or hostile client would send it. Checks
 * what the reader promises: every message it returns lies within what was fed, no message is
 * over the maximum, and the messages and what is left add up to the input. The same bytes are
 * then read through a pipe with frame_read_one(), which must agree. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "fuzz.h"

/* Small, so that the fuzzer reaches "over the maximum" and a full buffer easily. */
#define FUZZ_FRAME_MAX 512

struct outcome {
        size_t n_msgs, bytes; /* messages and their bytes, prefixes included */
        uint64_t hash;        /* of every message's bytes, in order */
        int error;            /* the first negative return, 0 if none */
};

static uint64_t hash_step(uint64_t h, const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 0x100000001b3ULL;
        return (h ^ n) * 0x100000001b3ULL;
}

/* Take every complete message; returns false once the reader reported an error. */
static bool drain(struct frame_reader *r, struct outcome *o)
{
        for (;;) {
                const uint8_t *msg;
                size_t len, held = r->len - r->start;
                int k = frame_reader_next(r, &msg, &len);
                if (k == 0)
                        return true;
                if (k < 0) {
                        FUZZ_ASSERT(k == -EMSGSIZE || k == -EBADMSG);
                        o->error = k;
                        return false;
                }
                FUZZ_ASSERT(len <= FUZZ_FRAME_MAX);
                FUZZ_ASSERT(msg >= r->buf && msg + len <= r->buf + r->cap);
                /* A length may be longer than it needs (0x80 0x00 is 0), as protobuf allows. */
                FUZZ_ASSERT(held - (r->len - r->start) > len);
                o->bytes += held - (r->len - r->start);
                o->hash = hash_step(o->hash, msg, len);
                o->n_msgs++;
        }
}

static void run_pieces(const uint8_t *data, size_t size, unsigned piece, struct outcome *o)
{
        struct frame_reader r;
        frame_reader_init(&r, FUZZ_FRAME_MAX);
        size_t off = 0;
        bool ok = true;
        while (off < size && ok) {
                size_t n = piece && piece < size - off ? piece : size - off;
                FUZZ_ASSERT(frame_reader_feed(&r, data + off, n) == 0);
                off += n;
                ok = drain(&r, o);
        }
        if (ok) {
                /* What is left is one incomplete frame, and partial() says so. */
                size_t left = size - o->bytes;
                FUZZ_ASSERT(o->bytes <= size);
                FUZZ_ASSERT(frame_reader_partial(&r) == (left > 0));
        }
        frame_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const unsigned pieces[] = { 0, 1, 2, 3, 7, 64 };
        if (size < 1)
                return 0;
        unsigned piece = pieces[data[0] % ELEMENTSOF(pieces)];
        data++, size--;

        struct outcome whole = { .hash = 1 }, split = { .hash = 1 };
        run_pieces(data, size, 0, &whole);
        run_pieces(data, size, piece, &split);
        /* However the bytes arrive, the same messages come out, and the same error. */
        FUZZ_ASSERT(whole.n_msgs == split.n_msgs && whole.hash == split.hash);
        FUZZ_ASSERT(whole.error == split.error);

        /* The blocking reader of the clients, through a pipe (the input fits one). */
        if (size <= 4096) {
                int p[2];
                FUZZ_ASSERT(pipe2(p, O_CLOEXEC) == 0);
                FUZZ_ASSERT(write(p[1], data, size) == (ssize_t)size);
                close(p[1]);
                struct frame_reader r;
                frame_reader_init(&r, FUZZ_FRAME_MAX);
                struct outcome pipe_o = { .hash = 1 };
                for (;;) {
                        uint8_t *msg = NULL;
                        size_t len;
                        int k = frame_read_one(p[0], &r, &msg, &len);
                        if (k <= 0) {
                                /* EOF mid-frame is -EPIPE; the others as frame_reader_next(). */
                                if (k < 0 && k != -EPIPE)
                                        pipe_o.error = k;
                                FUZZ_ASSERT(k != -EPIPE || whole.bytes < size);
                                break;
                        }
                        pipe_o.hash = hash_step(pipe_o.hash, msg, len);
                        pipe_o.n_msgs++;
                        free(msg);
                }
                close(p[0]);
                frame_reader_free(&r);
                FUZZ_ASSERT(pipe_o.n_msgs == whole.n_msgs && pipe_o.hash == whole.hash);
                FUZZ_ASSERT(pipe_o.error == whole.error);
        }

        /* And a writer turns the messages back into frames a reader takes as they were. */
        struct frame_writer w;
        frame_writer_init(&w, 0);
        FUZZ_ASSERT(frame_writer_append(&w, data, size) == 0);
        struct frame_reader r;
        frame_reader_init(&r, size > 0 ? size : 1);
        FUZZ_ASSERT(frame_reader_feed(&r, w.buf + w.start, frame_writer_pending(&w)) == 0);
        const uint8_t *msg;
        size_t len;
        FUZZ_ASSERT(frame_reader_next(&r, &msg, &len) == 1);
        FUZZ_ASSERT(len == size && (size == 0 || memcmp(msg, data, size) == 0));
        FUZZ_ASSERT(!frame_reader_partial(&r));
        frame_reader_free(&r);
        frame_writer_free(&w);
        return 0;
}
