/* See journal.h. The native protocol is one datagram of "FIELD=value\n" pairs; a value that
 * may hold a newline is sent as "FIELD\n", a 64-bit little-endian length, the bytes and "\n".
 * Lines of a dyno hold no newline (the splitter cuts them), but the other fields are the
 * caller's, so every value goes the binary-safe way. */
#include "journal.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "util.h"

struct journal {
        int fd;
        struct sockaddr_un addr;
        socklen_t addr_len;
};

int journal_new(const char *path, struct journal **ret)
{
        struct journal *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->addr.sun_family = AF_UNIX;
        if (strlen(path) >= sizeof j->addr.sun_path) {
                free(j);
                return -ENAMETOOLONG;
        }
        strcpy(j->addr.sun_path, path);
        j->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        /* Not connected: a journald that restarts is found again at the next line. */
        j->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (j->fd < 0) {
                int r = -errno;
                free(j);
                return r;
        }
        *ret = j;
        return 0;
}

void journal_free(struct journal *j)
{
        if (!j)
                return;
        closep(&j->fd);
        free(j);
}

struct field {
        char name_nl[32];
        uint64_t le_len;
};

int journal_send_line(struct journal *j, const char *process, const char *dyno_id, const char *app,
                      const char *source, const char *text, size_t len)
{
        const char *names[] = { "MESSAGE", "DYNO",     "DYNO_ID",          "APP",
                                "SOURCE",  "PRIORITY", "SYSLOG_IDENTIFIER" };
        const char *values[] = {
                text, process, dyno_id, app, source, "6", *app ? app : "hostd-dyno"
        };
        size_t lens[ELEMENTSOF(values)];
        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                lens[i] = i == 0 ? len : strlen(values[i]);

        struct field f[ELEMENTSOF(names)];
        struct iovec iov[ELEMENTSOF(names) * 4];
        size_t n = 0;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                size_t k = strlen(names[i]);
                memcpy(f[i].name_nl, names[i], k);
                f[i].name_nl[k] = '\n';
                f[i].le_len = htole64((uint64_t)lens[i]);
                iov[n++] = (struct iovec){ f[i].name_nl, k + 1 };
                iov[n++] = (struct iovec){ &f[i].le_len, sizeof f[i].le_len };
                iov[n++] = (struct iovec){ (void *)values[i], lens[i] };
                iov[n++] = (struct iovec){ (void *)"\n", 1 };
        }
        struct msghdr mh = {
                .msg_name = &j->addr,
                .msg_namelen = j->addr_len,
                .msg_iov = iov,
                .msg_iovlen = n,
        };
        if (sendmsg(j->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}
