#include "logfile.h"

#include <fcntl.h>
#include <sys/uio.h>

#include "util.h"

struct record_header {
        int64_t time_usec;
        uint32_t len;
        uint8_t source;
        uint8_t pad[3];
};

int logfile_append(int fd, int64_t time_usec, enum log_source source, const char *text, size_t len)
{
        struct record_header h = { .time_usec = time_usec,
                                   .len = (uint32_t)len,
                                   .source = (uint8_t)source };
        struct iovec iov[2] = { { &h, sizeof h }, { (void *)text, len } };
        ssize_t n = writev(fd, iov, 2);
        if (n < 0)
                return -errno;
        return (size_t)n == sizeof h + len ? 0 : -EIO;
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

int logfile_rewrite(int dirfd, const char *name, const struct log_ring *ring)
{
        char tmp[256];
        if (snprintf(tmp, sizeof tmp, ".#%s", name) >= (int)sizeof tmp)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd =
                openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < log_ring_count(ring); i++) {
                const struct log_line *l = log_ring_get(ring, i);
                int r = logfile_append(fd, l->time_usec, (enum log_source)l->source, l->text,
                                       l->len);
                if (r < 0) {
                        unlinkat(dirfd, tmp, 0);
                        return r;
                }
        }
        if (renameat(dirfd, tmp, dirfd, name) < 0) {
                int r = -errno;
                unlinkat(dirfd, tmp, 0);
                return r;
        }
        int afd = openat(dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        return afd < 0 ? -errno : afd;
}
