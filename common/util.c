#include "util.h"
#include "api-code.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <time.h>

static int max_level = LOG_LEVEL_INFO;
static const char *log_ident = NULL;

void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

void log_set_max_level(int level) { max_level = level; }
void log_set_ident(const char *ident) { log_ident = ident; }

int log_parse_level(const char *s)
{
        static const char *const names[] = {
                [LOG_LEVEL_ERR] = "err",       [LOG_LEVEL_WARNING] = "warning",
                [LOG_LEVEL_NOTICE] = "notice", [LOG_LEVEL_INFO] = "info",
                [LOG_LEVEL_DEBUG] = "debug",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (names[i] && strcmp(names[i], s) == 0)
                        return (int)i;
        return -EINVAL;
}

int log_msg(int level, int error, const char *fmt, ...)
{
        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;

        char buf[2048];
        va_list ap;
        va_start(ap, fmt);
        int saved = errno;
        errno = error;
        vsnprintf(buf, sizeof buf, fmt, ap); /* %m sees the error */
        errno = saved;
        va_end(ap);

        /* Under systemd stderr is the journal, which reads the "<N>" prefix as the priority. */
        static int journal = -1;
        if (journal < 0)
                journal = getenv("JOURNAL_STREAM") != NULL;
        if (journal)
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "%s%s%s\n", log_ident ? log_ident : "", log_ident ? ": " : "", buf);
        return -error;
}

int read_full_fd(int fd, char **ret, size_t *ret_len)
{
        size_t cap = 4096, len = 0;
        char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap > (64u << 20)) {
                                free(buf);
                                return -EFBIG;
                        }
                        char *n = realloc(buf, cap * 2 + 1);
                        if (!n) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = n;
                        cap *= 2;
                }
                ssize_t k = read(fd, buf + len, cap - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        free(buf);
                        return r;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        buf[len] = 0;
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int read_full_file(const char *path, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_full_fd(fd, ret, ret_len);
}

/* How much of a renamed write reaches the disk before the call returns. */
enum write_sync {
        WRITE_SYNC_NONE,    /* nothing: per-boot state */
        WRITE_SYNC_DATA,    /* the new file's data, before the rename */
        WRITE_SYNC_DURABLE, /* that, and the folder after the rename */
};

static int write_file_renamed_at(int dirfd, const char *name, const void *data, size_t len,
                                 mode_t mode, enum write_sync sync)
{
        char tmp[512];
        if (snprintf(tmp, sizeof tmp, ".#%s.%d", name, (int)getpid()) >= (int)sizeof tmp)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd =
                openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        const char *p = data;
        size_t left = len;
        while (left > 0) {
                ssize_t k = write(fd, p, left);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        unlinkat(dirfd, tmp, 0);
                        return r;
                }
                p += k;
                left -= (size_t)k;
        }
        if ((sync >= WRITE_SYNC_DATA && fsync(fd) < 0) || renameat(dirfd, tmp, dirfd, name) < 0) {
                int r = -errno;
                unlinkat(dirfd, tmp, 0);
                return r;
        }
        /* The rename is durable only once the folder is. */
        if (sync >= WRITE_SYNC_DURABLE && fsync(dirfd) < 0 && errno != EINVAL)
                return -errno;
        return 0;
}

int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
        return write_file_renamed_at(dirfd, name, data, len, mode, WRITE_SYNC_DURABLE);
}

int write_file_replace_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
        return write_file_renamed_at(dirfd, name, data, len, mode, WRITE_SYNC_NONE);
}

static int write_file_path(const char *path, const void *data, size_t len, mode_t mode,
                           enum write_sync sync)
{
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        const char *name;
        if (!slash) {
                free(dir);
                dir = strdup(".");
                if (!dir)
                        return -ENOMEM;
                name = path;
        } else {
                name = path + (slash - dir) + 1;
                if (slash == dir)
                        slash[1] = 0;
                else
                        *slash = 0;
        }
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        return write_file_renamed_at(dfd, name, data, len, mode, sync);
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
        return write_file_path(path, data, len, mode, WRITE_SYNC_DURABLE);
}

int write_file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
        return write_file_path(path, data, len, mode, WRITE_SYNC_NONE);
}

int write_file_whole(const char *path, const void *data, size_t len, mode_t mode)
{
        return write_file_path(path, data, len, mode, WRITE_SYNC_DATA);
}

int write_string_file(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        size_t n = strlen(s);
        ssize_t k = write(fd, s, n);
        if (k < 0)
                return -errno;
        if ((size_t)k != n)
                return -EIO;
        return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int rm_rf_children(int dfd, dev_t dev)
{
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -errno;
        }
        int ret = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT && ret == 0)
                                ret = -errno;
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        if (st.st_dev != dev) { /* a mount point: never cross it */
                                if (ret == 0)
                                        ret = -EBUSY;
                                continue;
                        }
                        int cfd = openat(dirfd(d), de->d_name,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (cfd < 0) {
                                if (ret == 0)
                                        ret = -errno;
                                continue;
                        }
                        int r = rm_rf_children(cfd, dev);
                        if (r < 0 && ret == 0)
                                ret = r;
                        if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT &&
                            ret == 0)
                                ret = -errno;
                } else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && ret == 0)
                        ret = -errno;
        }
        closedir(d);
        return ret;
}

int rm_rf(const char *path)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        int r = rm_rf_children(fd, st.st_dev);
        if (rmdir(path) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int safe_atou64(const char *s, uint64_t *ret)
{
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return -errno;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int safe_atou32(const char *s, uint32_t *ret)
{
        uint64_t v;
        int r = safe_atou64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || !isfinite(v) || v < 0)
                return -ERANGE;
        double mult = 1;
        switch (*end) {
        case 0: break;
        case 'K':
                mult = 1024.0;
                end++;
                break;
        case 'M':
                mult = 1024.0 * 1024;
                end++;
                break;
        case 'G':
                mult = 1024.0 * 1024 * 1024;
                end++;
                break;
        case 'T':
                mult = 1024.0 * 1024 * 1024 * 1024;
                end++;
                break;
        default: return -EINVAL;
        }
        if (*end)
                return -EINVAL;
        v *= mult;
        if (v >= 18446744073709551615.0)
                return -ERANGE;
        *ret = (uint64_t)v;
        return 0;
}

bool startswith(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

char *strjoin3(const char *a, const char *b, const char *c)
{
        size_t la = strlen(a), lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
        char *r = malloc(la + lb + lc + 1);
        if (!r)
                return NULL;
        memcpy(r, a, la);
        if (b)
                memcpy(r + la, b, lb);
        if (c)
                memcpy(r + la + lb, c, lc);
        r[la + lb + lc] = 0;
        return r;
}

int asprintf_safe(char **ret, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(ret, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

int64_t now_realtime_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t now_monotonic_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

size_t utf8_decode(const uint8_t *p, size_t n, uint32_t *ret)
{
        size_t len;
        uint32_t cp, min;
        if (n == 0)
                return 0;
        if (p[0] < 0x80) {
                *ret = p[0];
                return 1;
        } else if ((p[0] & 0xe0) == 0xc0)
                len = 2, cp = p[0] & 0x1f, min = 0x80;
        else if ((p[0] & 0xf0) == 0xe0)
                len = 3, cp = p[0] & 0x0f, min = 0x800;
        else if ((p[0] & 0xf8) == 0xf0)
                len = 4, cp = p[0] & 0x07, min = 0x10000;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t k = 1; k < len; k++) {
                if ((p[k] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past Unicode are not UTF-8. */
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret = cp;
        return len;
}

bool utf8_valid(const char *s)
{
        const uint8_t *p = (const uint8_t *)s;
        size_t n = strlen(s);
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t k = utf8_decode(p + i, n - i, &cp);
                if (k == 0)
                        return false;
                i += k;
        }
        return true;
}

static bool dyno_id_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* The id at s, up to its end or an '@': its length, or 0 when it is not one. */
static size_t dyno_id_span(const char *s)
{
        size_t n = 0;
        if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
              (s[0] >= '0' && s[0] <= '9')))
                return 0;
        while (s[n] && s[n] != '@') {
                if (!dyno_id_char(s[n]) || n == DYNO_ID_MAX)
                        return 0;
                n++;
        }
        return n;
}

bool dyno_id_valid(const char *id)
{
        size_t n = dyno_id_span(id);
        return n > 0 && id[n] == 0;
}

bool dyno_instance_name_valid(const char *name)
{
        size_t n = dyno_id_span(name);
        if (n == 0)
                return false;
        if (name[n] == 0)
                return true;
        const char *num = name + n + 1; /* after '@' */
        if (num[0] < '1' || num[0] > '9' || strlen(num) > 10)
                return false;
        uint64_t v = 0;
        for (const char *p = num; *p; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        return v <= UINT32_MAX;
}

int set_error(char *err, size_t len, int r, const char *fmt, ...)
{
        if (err && len > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, len, fmt, ap);
                va_end(ap);
        }
        return r;
}

const char *escape_value(const char *s, size_t max, char *buf, size_t buflen)
{
        size_t o = 0, i = 0;
        if (buflen == 0)
                return buf;
        for (; s[i] && i < max; i++) {
                unsigned char c = (unsigned char)s[i];
                char tmp[5];
                size_t k;
                if (c >= 0x20 && c < 0x7f && c != '\\') {
                        tmp[0] = (char)c;
                        k = 1;
                } else
                        k = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
                if (o + k + 4 > buflen)
                        break;
                memcpy(buf + o, tmp, k);
                o += k;
        }
        if (s[i] && o + 4 <= buflen) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = 0;
        return buf;
}

int unix_listen(const char *path, const char *daemon)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(ENAMETOOLONG, "socket %s: %m", path);
        strcpy(sa.sun_path, path);

        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                int r = mkdir_p(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "create %s: %m", dir);
        }

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket: %m");
        /* A socket file may be left by a daemon that died; one that answers is another. */
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0)
                return log_error_errno(EADDRINUSE, "socket %s: another %s is listening there", path,
                                       daemon);
        if (unlink(path) < 0 && errno != ENOENT)
                return log_error_errno(errno, "remove stale socket %s: %m", path);
        mode_t old = umask(0077);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (r < 0)
                return log_error_errno(errno, "bind %s: %m", path);
        if (listen(fd, 128) < 0)
                return log_error_errno(errno, "listen on %s: %m", path);
        return TAKE_FD(fd);
}

int unix_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket connects at once or not at all: no EINPROGRESS to wait for. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* Binary multiples as parse_size() reads them: 536870912 is "512M", 2684354560 "2.5G". */
const char *format_bytes_human(uint64_t v, char buf[static 32])
{
        static const char units[] = "KMGTPE";
        if (v < 1024) {
                snprintf(buf, 32, "%" PRIu64 "B", v);
                return buf;
        }
        int u = 0;
        uint64_t div = 1024;
        while (u < 5 && v / div >= 1024) {
                div *= 1024;
                u++;
        }
        if (v % div == 0)
                snprintf(buf, 32, "%" PRIu64 "%c", v / div, units[u]);
        else {
                snprintf(buf, 32, "%.1f", (double)v / (double)div);
                size_t n = strlen(buf);
                if (n > 2 && strcmp(buf + n - 2, ".0") == 0)
                        buf[n - 2] = 0;
                snprintf(buf + strlen(buf), 32 - strlen(buf), "%c", units[u]);
        }
        return buf;
}

const char *api_code_name(enum api_code code)
{
        static const char *const names[] = {
                "OK",
                "CANCELLED",
                "UNKNOWN",
                "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS",
                "UNAUTHENTICATED",
        };
        return (unsigned)code < ELEMENTSOF(names) ? names[code] : "UNKNOWN";
}

int parse_listen_address(const char *s, struct sockaddr_storage *ret, unsigned *ret_len)
{
        const char *colon = strrchr(s, ':');
        char host[INET6_ADDRSTRLEN + 2];
        uint64_t port;

        if (!colon || (size_t)(colon - s) >= sizeof host || safe_atou64(colon + 1, &port) < 0 ||
            port < 1 || port > 65535)
                return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;

        struct sockaddr_storage ss = {};
        size_t n = strlen(host);
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                host[n - 1] = 0;
                if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
                        return -EINVAL;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t)port);
                *ret_len = sizeof *a;
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                        return -EINVAL;
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t)port);
                *ret_len = sizeof *a;
        }
        *ret = ss;
        return 0;
}
