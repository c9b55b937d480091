/* Dyno log lines: a fixed-size ring of the most recent lines and a splitter that turns pipe
 * bytes into lines. Needs nothing but libc and util.h, so unit tests build it alone. */
#include "logs.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct log_ring {
        struct log_line **lines; /* max slots, lines[head] the oldest kept */
        size_t max;
        size_t head;
        size_t count;
        uint64_t next_seq;
        uint64_t dropped;
};

int log_ring_new(size_t max_lines, struct log_ring **ret)
{
        _cleanup_free_ struct log_ring *r = NULL;

        if (max_lines == 0)
                return -EINVAL;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->lines = calloc(max_lines, sizeof(*r->lines));
        if (!r->lines)
                return -ENOMEM;
        r->max = max_lines;

        *ret = TAKE_PTR(r);
        return 0;
}

void log_ring_free(struct log_ring *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->count; i++)
                free(r->lines[(r->head + i) % r->max]);
        free(r->lines);
        free(r);
}

int log_ring_push(struct log_ring *r, int64_t time_usec, enum log_source source, const char *text,
                  size_t len)
{
        struct log_line *l;
        uint64_t seq;

        if (len > UINT32_MAX)
                return -EINVAL;
        /* A lost line still takes its number, so a client following by seq sees the gap. */
        seq = r->next_seq++;

        /* Allocate before evicting: on ENOMEM the ring keeps what it had. */
        l = malloc(sizeof(*l) + len);
        if (!l) {
                r->dropped++;
                return -ENOMEM;
        }
        l->time_usec = time_usec;
        l->seq = seq;
        l->source = (uint8_t)source;
        l->len = (uint32_t)len;
        if (len > 0)
                memcpy(l->text, text, len);

        if (r->count < r->max) {
                r->lines[(r->head + r->count) % r->max] = l;
                r->count++;
        } else {
                /* Full: the new line takes the oldest one's slot. Rotation, not loss. */
                free(r->lines[r->head]);
                r->lines[r->head] = l;
                r->head = (r->head + 1) % r->max;
        }
        return 0;
}

size_t log_ring_count(const struct log_ring *r) { return r->count; }

const struct log_line *log_ring_get(const struct log_ring *r, size_t i)
{
        if (i >= r->count)
                return NULL;
        return r->lines[(r->head + i) % r->max];
}

uint64_t log_ring_next_seq(const struct log_ring *r) { return r->next_seq; }

uint64_t log_ring_dropped(const struct log_ring *r) { return r->dropped; }

int line_splitter_init(struct line_splitter *s, size_t max)
{
        /* max 0 would cut every byte into endless empty pieces. */
        if (max == 0)
                return -EINVAL;

        *s = (struct line_splitter){ .max = max };
        /* The whole buffer up front: feed cannot fail, a line never needs more than max. */
        s->buf = malloc(max);
        if (!s->buf)
                return -ENOMEM;
        return 0;
}

void line_splitter_free(struct line_splitter *s)
{
        free(s->buf);
        *s = (struct line_splitter){};
}

void line_splitter_feed(struct line_splitter *s, const char *data, size_t n, line_cb_t cb,
                        void *userdata)
{
        while (n > 0) {
                const char *nl = memchr(data, '\n', n);
                size_t seg = nl ? (size_t)(nl - data) : n;

                /* Most lines arrive whole: hand them out without copying. */
                if (nl && s->len == 0 && seg <= s->max) {
                        cb(userdata, data, seg);
                        data += seg + 1;
                        n -= seg + 1;
                        continue;
                }

                const char *p = data;
                size_t left = seg;
                while (left > 0) {
                        /* A full buffer is cut only once more of the line follows, so a line of
                         * exactly max bytes does not leave an empty line behind. */
                        if (s->len == s->max) {
                                cb(userdata, s->buf, s->len);
                                s->len = 0;
                        }
                        if (s->len == 0 && left > s->max) {
                                cb(userdata, p, s->max);
                                p += s->max;
                                left -= s->max;
                                continue;
                        }
                        size_t take = s->max - s->len < left ? s->max - s->len : left;
                        memcpy(s->buf + s->len, p, take);
                        s->len += take;
                        p += take;
                        left -= take;
                }

                if (!nl)
                        return;
                cb(userdata, s->buf, s->len);
                s->len = 0;
                data += seg + 1;
                n -= seg + 1;
        }
}

void line_splitter_flush(struct line_splitter *s, line_cb_t cb, void *userdata)
{
        if (s->len == 0)
                return;
        cb(userdata, s->buf, s->len);
        s->len = 0;
}
