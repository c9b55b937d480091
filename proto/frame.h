/* Length-delimited framing: each message is preceded by its size as a base-128 varint
 * (protobuf's "delimited" stream). The reader refuses a length over its maximum before it
 * allocates anything for the message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FRAME_MAX_DEFAULT (4u << 20)
#define FRAME_VARINT_MAX 10

/* Encode len as a varint into out; returns the number of bytes used (1..10). */
size_t frame_varint_encode(uint64_t len, uint8_t out[FRAME_VARINT_MAX]);

/* Decode a varint from buf[0..n): 1 and *ret, *used on success, 0 when more bytes are
 * needed, -EBADMSG when it is malformed (over 10 bytes, or over 64 bits). */
int frame_varint_decode(const uint8_t *buf, size_t n, uint64_t *ret, size_t *used);

struct frame_reader {
        uint8_t *buf;
        size_t start; /* first unconsumed byte */
        size_t len;   /* bytes held, from buf[0] */
        size_t cap;
        size_t max; /* largest message accepted */
};

void frame_reader_init(struct frame_reader *r, size_t max);
void frame_reader_free(struct frame_reader *r);

/* Append bytes read from the peer. -ENOMEM. */
int frame_reader_feed(struct frame_reader *r, const void *data, size_t n);

/* Read from fd (non-blocking or not) into the reader, up to 64 KiB a call: >0 bytes read, 0 on
 * EOF, -EAGAIN, -ENOBUFS when max + 10 bytes are already held (take the message with
 * frame_reader_next() first), other negative errno. */
ssize_t frame_reader_fill(struct frame_reader *r, int fd);

/* Take the next complete message: 1 with *msg, *len pointing into the reader (valid until the
 * next call on it), 0 when more bytes are needed, -EMSGSIZE when the announced length is over
 * max, -EBADMSG when the length prefix is malformed. A zero-length message is valid (*len 0). */
int frame_reader_next(struct frame_reader *r, const uint8_t **msg, size_t *len);

/* True when bytes of an incomplete message are buffered (a peer closing now closed mid-frame). */
bool frame_reader_partial(const struct frame_reader *r);

/* Outgoing bytes for a non-blocking socket. */
struct frame_writer {
        uint8_t *buf;
        size_t start, len, cap;
        size_t max_pending; /* bytes queued at most; 0: unlimited */
};

void frame_writer_init(struct frame_writer *w, size_t max_pending);
void frame_writer_free(struct frame_writer *w);
/* Queue one message with its length prefix. -ENOBUFS when it would pass max_pending,
 * -ENOMEM. Nothing is queued on error. */
int frame_writer_append(struct frame_writer *w, const void *msg, size_t len);
/* Write what is queued: 0 when all is written, -EAGAIN when some is left, other negative
 * errno (EPIPE...) on failure. */
int frame_writer_flush(struct frame_writer *w, int fd);
size_t frame_writer_pending(const struct frame_writer *w);
/* For a writer of its own (TLS): the queued bytes, and how many of them went out. */
const uint8_t *frame_writer_peek(const struct frame_writer *w, size_t *len);
void frame_writer_advance(struct frame_writer *w, size_t n);

/* Blocking helpers for clients and tests: write one framed message fully; read one framed
 * message (malloc'ed into *ret). read returns 1, 0 on clean EOF before any byte, -EPIPE on
 * EOF mid-frame, -EMSGSIZE, -EBADMSG, or another negative errno. */
int frame_write_all(int fd, const void *msg, size_t len);
int frame_read_one(int fd, struct frame_reader *r, uint8_t **ret, size_t *ret_len);
