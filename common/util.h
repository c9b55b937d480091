/* Small helpers shared by every part: cleanup attributes, logging, files. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
/* The struct that holds member at ptr. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

/* Close and forget: the number is -1 afterwards, so that a second look (or a second closep)
 * finds nothing, rather than a descriptor someone else has opened since under that number. */
static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
                *fd = -1;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

void strv_free(char **v);
static inline void strv_freep(char ***v) { strv_free(*v); }
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Hand ownership out of a cleanup variable. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _p = (p);                                                            \
                (p) = NULL;                                                                        \
                _p;                                                                                \
        })
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _fd = (fd);                                                                    \
                (fd) = -1;                                                                         \
                _fd;                                                                               \
        })

/* Logging: levels as syslog's. Messages go to stderr with a "<N>" prefix that journald
 * understands when stderr is the journal (SYSLOG_PREFIX), plain text on a terminal. */
enum {
        LOG_LEVEL_ERR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7
};
void log_set_max_level(int level);
int log_parse_level(const char *s); /* "err", "warning", "notice", "info", "debug"; -EINVAL */
void log_set_ident(const char *ident);
int log_msg(int level, int error, const char *fmt, ...) _printf_(3, 4);
#define log_error_errno(e, ...) log_msg(LOG_LEVEL_ERR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_msg(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERR, 0, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, 0, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)

/* Files. All return 0 or a negative errno. */
int read_full_file(const char *path, char **ret, size_t *ret_len);
int read_full_fd(int fd, char **ret, size_t *ret_len);
/* Write atomically: temporary file in the same folder, fsync, rename, fsync the folder. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* The same without the fsyncs, for per-boot state (the run-dir, a tmpfs): a crash of the
 * writer leaves the old file or the new one, whole (the page cache outlives the process);
 * only a crash of the machine could lose the rename, and that ends what the state is about. */
int write_file_replace(const char *path, const void *data, size_t len, mode_t mode);
int write_file_replace_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* Between the two, for state that a reboot makes moot but that must still parse after one
 * (netd's books: every dyno's namespace dies with the machine): the data is fsynced before the
 * rename, the folder is not after it. A crash of the machine leaves the old file or the new
 * one, whole (never an empty or torn one); which one is not known. One fsync instead of two. */
int write_file_whole(const char *path, const void *data, size_t len, mode_t mode);
/* Write a short string to an existing file (cgroupfs, procfs). */
int write_string_file(const char *path, const char *s);
int mkdir_p(const char *path, mode_t mode);
/* Remove a tree without following symlinks or crossing mount points. ENOENT is success. */
int rm_rf(const char *path);

/* A listening, non-blocking Unix stream socket at path, mode 0600, its folder made if needed.
 * A stale socket file is replaced; one where another daemon answers is -EADDRINUSE. Logs
 * what failed (daemon names who "another" is). Returns the descriptor or a negative errno. */
int unix_listen(const char *path, const char *daemon);
/* A non-blocking connection to the Unix stream socket at path: the descriptor, or a negative
 * errno (-ENOENT, -ECONNREFUSED: nobody listens; -EAGAIN: its backlog is full). Logs nothing. */
int unix_connect(const char *path);

/* "127.0.0.1:7443" or "[::1]:7443" into an address (config's listen-tls, the transport's
 * listener). -EINVAL. */
struct sockaddr_storage;
int parse_listen_address(const char *s, struct sockaddr_storage *ret, unsigned *ret_len);

/* Strings */
int safe_atou64(const char *s, uint64_t *ret);
int safe_atou32(const char *s, uint32_t *ret);
/* "512M", "1G", "2.5G", "1048576": binary multiples. */
int parse_size(const char *s, uint64_t *ret);
bool startswith(const char *s, const char *prefix);
char *strjoin3(const char *a, const char *b, const char *c);        /* NULL on ENOMEM */
int asprintf_safe(char **ret, const char *fmt, ...) _printf_(2, 3); /* -ENOMEM */

/* Time */
int64_t now_realtime_usec(void);
uint64_t now_monotonic_usec(void);

/* Text */
/* The length of the well-formed UTF-8 sequence at p (at most n bytes), with its code point in
 * *ret; 0 when there is none (a bad byte, a cut sequence, an overlong form, a surrogate, a
 * value past U+10FFFF). The one decoder of the project. */
size_t utf8_decode(const uint8_t *p, size_t n, uint32_t *ret);
bool utf8_valid(const char *s);

/* A dyno's id, as the API takes it: 1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or a
 * digit; safe as a file name, a cgroup name and a host name. */
#define DYNO_ID_MAX 63
bool dyno_id_valid(const char *id);
/* The name of one run of a dyno, an instance (its cgroup, layer and netd attachment): its id,
 * or "<id>@<n>" for its n-th replacement (n from 1 to 4294967295, without leading zeros). The
 * one grammar hostd and netd share. */
#define DYNO_INSTANCE_NAME_MAX (DYNO_ID_MAX + 11)
bool dyno_instance_name_valid(const char *name);
/* s made safe to quote in a message: printable ASCII kept, other bytes as \xNN, at most max
 * input bytes (then "..."). Returns buf. */
/* The one way a message goes into a caller's err buffer (err may be NULL, len 0): it is
 * written, and r returned, so that `return set_error(err, len, -EINVAL, "...", ...)` says both
 * what is wrong and the code. */
_printf_(4, 5) int set_error(char *err, size_t len, int r, const char *fmt, ...);

const char *escape_value(const char *s, size_t max, char *buf, size_t buflen);

/* Binary multiples as parse_size() reads them: 536870912 is "512M", 2684354560 "2.5G". */
const char *format_bytes_human(uint64_t v, char buf[static 32]);
