/* Length-delimited framing over stream sockets and pipes. */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util.h"

/* One read() per fill: enough to take many small messages per wakeup, small enough that one
 * connection cannot make the reader hold much more than its largest message. */
#define FRAME_FILL_CHUNK (64u * 1024)
#define FRAME_ALLOC_MIN 256u
/* A buffer grown for a large message goes back down to this once it is mostly empty, so an idle
 * connection does not keep megabytes. */
#define FRAME_SHRINK_ABOVE (256u * 1024)

static size_t add_sat(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

size_t frame_varint_encode(uint64_t len, uint8_t out[FRAME_VARINT_MAX])
{
        size_t i = 0;

        while (len >= 0x80) {
                out[i++] = (uint8_t)(len | 0x80);
                len >>= 7;
        }
        out[i++] = (uint8_t)len;
        return i;
}

int frame_varint_decode(const uint8_t *buf, size_t n, uint64_t *ret, size_t *used)
{
        uint64_t v = 0;

        for (size_t i = 0; i < n && i < FRAME_VARINT_MAX; i++) {
                uint8_t b = buf[i];

                /* The tenth byte holds bit 63 only: anything more is past 64 bits, and a
                 * continuation would make an eleventh byte. */
                if (i == FRAME_VARINT_MAX - 1 && b > 1)
                        return -EBADMSG;
                v |= (uint64_t)(b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        if (ret)
                                *ret = v;
                        if (used)
                                *used = i + 1;
                        return 1;
                }
        }
        return 0;
}

void frame_reader_init(struct frame_reader *r, size_t max)
{
        /* 0 would accept only empty messages, which no caller wants: take it as "default". */
        *r = (struct frame_reader){ .max = max > 0 ? max : FRAME_MAX_DEFAULT };
}

void frame_reader_free(struct frame_reader *r)
{
        free(r->buf);
        *r = (struct frame_reader){ .max = r->max };
}

/* Make room for n more bytes after r->len. Unconsumed bytes move to the front first, so a
 * long-lived connection reuses one buffer instead of growing it. */
static int reader_reserve(struct frame_reader *r, size_t n)
{
        size_t held = r->len - r->start;

        if (n > SIZE_MAX - held)
                return -ENOMEM;
        size_t need = held + n;
        bool shrink = r->cap > FRAME_SHRINK_ABOVE && need <= r->cap / 4;

        if (!shrink && r->cap - r->len >= n)
                return 0;

        if (r->start > 0) {
                memmove(r->buf, r->buf + r->start, held);
                r->start = 0;
                r->len = held;
        }

        if (shrink) {
                size_t new_cap = need > FRAME_SHRINK_ABOVE ? need : FRAME_SHRINK_ABOVE;
                uint8_t *p = realloc(r->buf, new_cap);
                if (p) { /* a failed shrink leaves the larger, still valid buffer */
                        r->buf = p;
                        r->cap = new_cap;
                }
                return 0;
        }

        if (need <= r->cap)
                return 0;

        /* Double for amortised growth, but not past what fill can ever need. */
        size_t limit = add_sat(add_sat(r->max, FRAME_VARINT_MAX), FRAME_FILL_CHUNK);
        size_t new_cap = r->cap > SIZE_MAX / 2 ? SIZE_MAX : r->cap * 2;
        if (new_cap < FRAME_ALLOC_MIN)
                new_cap = FRAME_ALLOC_MIN;
        if (new_cap > limit)
                new_cap = limit;
        if (new_cap < need)
                new_cap = need;

        uint8_t *p = realloc(r->buf, new_cap);
        if (!p)
                return -ENOMEM;
        r->buf = p;
        r->cap = new_cap;
        return 0;
}

int frame_reader_feed(struct frame_reader *r, const void *data, size_t n)
{
        int k;

        if (n == 0)
                return 0;
        k = reader_reserve(r, n);
        if (k < 0)
                return k;
        memcpy(r->buf + r->len, data, n);
        r->len += n;
        return 0;
}

ssize_t frame_reader_fill(struct frame_reader *r, int fd)
{
        int k;

        /* With max + 10 bytes held, a whole message (or a bad prefix) is already there: the
         * caller must take it with frame_reader_next() before we read more, or a peer that
         * sends faster than we consume would grow the buffer without bound. */
        if (r->len - r->start >= add_sat(r->max, FRAME_VARINT_MAX))
                return -ENOBUFS;

        k = reader_reserve(r, FRAME_FILL_CHUNK);
        if (k < 0)
                return k;

        for (;;) {
                ssize_t n = read(fd, r->buf + r->len, FRAME_FILL_CHUNK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                r->len += (size_t)n;
                return n;
        }
}

int frame_reader_next(struct frame_reader *r, const uint8_t **msg, size_t *len)
{
        size_t held = r->len - r->start, used;
        uint64_t size;
        int k;

        if (held == 0)
                return 0;

        k = frame_varint_decode(r->buf + r->start, held, &size, &used);
        if (k <= 0)
                return k;
        if (size > r->max)
                return -EMSGSIZE;
        if (held - used < size)
                return 0;

        *msg = r->buf + r->start + used;
        *len = (size_t)size;
        r->start += used + (size_t)size;
        /* Rewinding only moves the indexes: the message stays in place until the next call. */
        if (r->start == r->len)
                r->start = r->len = 0;
        return 1;
}

bool frame_reader_partial(const struct frame_reader *r) { return r->len > r->start; }

void frame_writer_init(struct frame_writer *w, size_t max_pending)
{
        *w = (struct frame_writer){ .max_pending = max_pending };
}

void frame_writer_free(struct frame_writer *w)
{
        free(w->buf);
        *w = (struct frame_writer){ .max_pending = w->max_pending };
}

size_t frame_writer_pending(const struct frame_writer *w) { return w->len - w->start; }

int frame_writer_append(struct frame_writer *w, const void *msg, size_t len)
{
        uint8_t hdr[FRAME_VARINT_MAX];
        size_t h = frame_varint_encode(len, hdr);
        size_t pending = w->len - w->start;

        if (len > SIZE_MAX - h)
                return -ENOMEM;
        size_t total = h + len;

        if (w->max_pending > 0 && (total > w->max_pending || pending > w->max_pending - total))
                return -ENOBUFS;
        if (total > SIZE_MAX - pending)
                return -ENOMEM;

        if (w->cap - w->len < total) {
                if (w->start > 0) {
                        memmove(w->buf, w->buf + w->start, pending);
                        w->start = 0;
                        w->len = pending;
                }
                size_t need = pending + total;
                if (need > w->cap) {
                        size_t new_cap = w->cap > SIZE_MAX / 2 ? SIZE_MAX : w->cap * 2;
                        if (new_cap < FRAME_ALLOC_MIN)
                                new_cap = FRAME_ALLOC_MIN;
                        if (new_cap < need)
                                new_cap = need;
                        uint8_t *p = realloc(w->buf, new_cap);
                        if (!p)
                                return -ENOMEM;
                        w->buf = p;
                        w->cap = new_cap;
                }
        }

        memcpy(w->buf + w->len, hdr, h);
        if (len > 0)
                memcpy(w->buf + w->len + h, msg, len);
        w->len += total;
        return 0;
}

int frame_writer_flush(struct frame_writer *w, int fd)
{
        bool sock = true;

        while (w->start < w->len) {
                size_t n = w->len - w->start;
                ssize_t k;

                /* send(MSG_NOSIGNAL) turns a closed peer into EPIPE instead of SIGPIPE; pipes
                 * have no such flag and rely on the daemon ignoring SIGPIPE. */
                if (sock) {
                        k = send(fd, w->buf + w->start, n, MSG_NOSIGNAL);
                        if (k < 0 && errno == ENOTSOCK) {
                                sock = false;
                                continue;
                        }
                } else
                        k = write(fd, w->buf + w->start, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return -EAGAIN;
                        return -errno;
                }
                if (k == 0) /* cannot progress; do not spin */
                        return -EIO;
                frame_writer_advance(w, (size_t)k);
        }
        return 0;
}

const uint8_t *frame_writer_peek(const struct frame_writer *w, size_t *len)
{
        *len = w->len - w->start;
        return w->buf + w->start;
}

void frame_writer_advance(struct frame_writer *w, size_t n)
{
        w->start += n < w->len - w->start ? n : w->len - w->start;
        if (w->start < w->len)
                return;
        w->start = w->len = 0;
        /* Give back what a burst made us allocate once it is out. */
        if (w->cap > FRAME_SHRINK_ABOVE) {
                free(w->buf);
                w->buf = NULL;
                w->cap = 0;
        }
}

static int fd_wait(int fd, short events)
{
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };

                if (poll(&p, 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p.revents & POLLNVAL)
                        return -EBADF;
                /* POLLERR/POLLHUP: the next read or write reports the cause. */
                return 0;
        }
}

int frame_write_all(int fd, const void *msg, size_t len)
{
        uint8_t hdr[FRAME_VARINT_MAX];
        struct iovec iov[2] = {
                { .iov_base = hdr, .iov_len = frame_varint_encode(len, hdr) },
                { .iov_base = (void *)msg, .iov_len = len },
        };
        size_t i = 0;
        bool sock = true;

        for (;;) {
                while (i < ELEMENTSOF(iov) && iov[i].iov_len == 0)
                        i++;
                if (i == ELEMENTSOF(iov))
                        return 0;

                ssize_t k;
                if (sock) {
                        struct msghdr mh = { .msg_iov = iov + i,
                                             .msg_iovlen = ELEMENTSOF(iov) - i };
                        k = sendmsg(fd, &mh, MSG_NOSIGNAL);
                        if (k < 0 && errno == ENOTSOCK) {
                                sock = false;
                                continue;
                        }
                } else
                        k = writev(fd, iov + i, (int)(ELEMENTSOF(iov) - i));

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                /* A non-blocking fd still gets blocking semantics here. */
                                int r = fd_wait(fd, POLLOUT);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        return -errno;
                }
                if (k == 0)
                        return -EIO;

                size_t done = (size_t)k;
                while (done > 0) {
                        size_t step = done < iov[i].iov_len ? done : iov[i].iov_len;
                        iov[i].iov_base = (uint8_t *)iov[i].iov_base + step;
                        iov[i].iov_len -= step;
                        done -= step;
                        if (iov[i].iov_len == 0)
                                i++;
                }
        }
}

int frame_read_one(int fd, struct frame_reader *r, uint8_t **ret, size_t *ret_len)
{
        for (;;) {
                size_t start = r->start, held = r->len;
                const uint8_t *msg;
                size_t len;
                int k;

                k = frame_reader_next(r, &msg, &len);
                if (k < 0)
                        return k;
                if (k > 0) {
                        uint8_t *copy = malloc(len > 0 ? len : 1);
                        if (!copy) {
                                /* next() moved only the indexes: put the message back. */
                                r->start = start;
                                r->len = held;
                                return -ENOMEM;
                        }
                        if (len > 0)
                                memcpy(copy, msg, len);
                        *ret = copy;
                        *ret_len = len;
                        return 1;
                }

                ssize_t n = frame_reader_fill(r, fd);
                if (n == -EAGAIN) {
                        k = fd_wait(fd, POLLIN);
                        if (k < 0)
                                return k;
                        continue;
                }
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return frame_reader_partial(r) ? -EPIPE : 0;
        }
}
