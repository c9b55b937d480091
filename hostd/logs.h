/* Dyno logs: bytes from the dyno's pipe become lines (split at a maximum length), kept in a
 * ring of the most recent lines. */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum log_source { LOG_SOURCE_APP = 0, LOG_SOURCE_PLATFORM = 1 }; /* "app", "heroku" */

struct log_line {
        int64_t time_usec; /* CLOCK_REALTIME */
        uint64_t seq;      /* 0 for the first line ever pushed to this ring */
        uint8_t source;    /* enum log_source */
        uint32_t len;
        char text[]; /* len bytes, not NUL-terminated, no newline */
};

struct log_ring;

int log_ring_new(size_t max_lines, struct log_ring **ret); /* -EINVAL for 0, -ENOMEM */
void log_ring_free(struct log_ring *r);
/* Keep a copy of the line, dropping the oldest when full. -ENOMEM (the line is lost and
 * counted as dropped). */
int log_ring_push(struct log_ring *r, int64_t time_usec, enum log_source source, const char *text,
                  size_t len);
size_t log_ring_count(const struct log_ring *r);
/* i-th kept line, 0 the oldest kept; NULL past the end. */
const struct log_line *log_ring_get(const struct log_ring *r, size_t i);
/* Sequence number the next pushed line will get (lines pushed so far). */
uint64_t log_ring_next_seq(const struct log_ring *r);
uint64_t log_ring_dropped(const struct log_ring *r);

/* Splits a byte stream into lines. A line longer than max is cut into max-byte pieces (each
 * its own line); "\n" ends a line and is not part of it; a "\r" before it is kept. */
struct line_splitter {
        char *buf;
        size_t len;
        size_t max;
};

typedef void (*line_cb_t)(void *userdata, const char *line, size_t len);

int line_splitter_init(struct line_splitter *s, size_t max); /* -ENOMEM */
void line_splitter_free(struct line_splitter *s);
void line_splitter_feed(struct line_splitter *s, const char *data, size_t n, line_cb_t cb,
                        void *userdata);
/* At EOF: emit what is buffered (a last line without a newline), if anything. */
void line_splitter_flush(struct line_splitter *s, line_cb_t cb, void *userdata);
