#include "logfile.h"

#include <fcntl.h>

#include "util.h"

struct record_header {
        int64_t time_usec;
        uint32_t len;
        uint8_t source;
        uint8_t pad[3];
};

void logfile_init(struct logfile *f) { *f = (struct logfile){ .fd = -1 }; }

void logfile_close(struct logfile *f)
{
        closep(&f->fd);
        free(f->buf);
        logfile_init(f);
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static int buf_append(char **buf, size_t *len, size_t *cap, int64_t time_usec,
                      enum log_source source, const char *text, size_t n)
{
        struct record_header h = { .time_usec = time_usec,
                                   .len = (uint32_t)n,
                                   .source = (uint8_t)source };
        size_t need = *len + sizeof h + n;
        if (need > *cap) {
                size_t c = *cap ? *cap : 4096;
                while (c < need)
                        c *= 2;
                char *nb = realloc(*buf, c);
                if (!nb)
                        return -ENOMEM;
                *buf = nb;
                *cap = c;
        }
        memcpy(*buf + *len, &h, sizeof h);
        memcpy(*buf + *len + sizeof h, text, n);
        *len = need;
        return 0;
}

/* Write the ring to a temporary file and rename it over name. */
static int rewrite_from_ring(int dirfd, const char *name, const struct log_ring *ring)
{
        char *buf = NULL;
        size_t len = 0, cap = 0;
        for (size_t i = 0; i < log_ring_count(ring); i++) {
                const struct log_line *l = log_ring_get(ring, i);
                int r = buf_append(&buf, &len, &cap, l->time_usec, (enum log_source)l->source,
                                   l->text, l->len);
                if (r < 0) {
                        free(buf);
                        return r;
                }
        }
        int r = write_file_replace_at(dirfd, name, buf ? buf : "", len, 0600); /* run-dir */
        free(buf);
        return r;
}

int logfile_open_append(struct logfile *f, int dirfd, const char *name, size_t lines)
{
        int fd = openat(dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        closep(&f->fd);
        f->fd = fd;
        f->lines = lines;
        f->len = f->pending = 0;
        f->rewrite = false;
        return 0;
}

int logfile_open(struct logfile *f, int dirfd, const char *name, const struct log_ring *ring)
{
        int r = rewrite_from_ring(dirfd, name, ring);
        if (r < 0)
                return r;
        return logfile_open_append(f, dirfd, name, log_ring_count(ring));
}

void logfile_add(struct logfile *f, int64_t time_usec, enum log_source source, const char *text,
                 size_t len, size_t ring_max)
{
        if (f->fd < 0 || f->rewrite)
                return;
        if (f->pending >= ring_max ||
            buf_append(&f->buf, &f->len, &f->cap, time_usec, source, text, len) < 0) {
                /* The ring has every line worth keeping: write it instead, once. */
                f->rewrite = true;
                f->len = f->pending = 0;
                return;
        }
        f->pending++;
}

int logfile_flush(struct logfile *f, int dirfd, const char *name, const struct log_ring *ring,
                  size_t ring_max)
{
        if (f->fd < 0 || (!f->pending && !f->rewrite))
                return 0;
        int r;
        if (f->rewrite || f->lines + f->pending > 2 * ring_max)
                r = logfile_open(f, dirfd, name, ring);
        else {
                r = write_all(f->fd, f->buf, f->len);
                if (r >= 0)
                        f->lines += f->pending;
        }
        f->len = f->pending = 0;
        f->rewrite = false;
        if (f->cap > (1u << 20)) { /* a burst passed: give the memory back */
                free(f->buf);
                f->buf = NULL;
                f->cap = 0;
        }
        if (r < 0)
                closep(&f->fd), f->fd = -1;
        return r;
}

int logfile_load(const char *path, struct log_ring *ring, size_t *ret_lines)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, lines = 0;
        int r = read_full_file(path, &buf, &len);
        if (r == -ENOENT) {
                *ret_lines = 0;
                return 0;
        }
        if (r < 0)
                return r;
        size_t off = 0;
        while (len - off >= sizeof(struct record_header)) {
                struct record_header h;
                memcpy(&h, buf + off, sizeof h);
                if (h.len > len - off - sizeof h || h.source > LOG_SOURCE_PLATFORM)
                        break;
                log_ring_push(ring, h.time_usec, (enum log_source)h.source, buf + off + sizeof h,
                              h.len);
                off += sizeof h + h.len;
                lines++;
        }
        *ret_lines = lines;
        return 0;
}
