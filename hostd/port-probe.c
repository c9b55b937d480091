/* See boot.h. One dump request per address family, filtered to listening sockets by the
 * kernel; the answer is a few messages even for a busy dyno. */
#include "port-probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

int port_probe_open(pid_t pid, int own_netns_fd)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
        _cleanup_close_ int ns = open(path, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
                return -errno;
        /* A socket belongs to the namespace it was created in, whatever happens after. */
        if (setns(ns, CLONE_NEWNET) < 0)
                return -errno;
        int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        int r = fd < 0 ? -errno : 0;
        if (setns(own_netns_fd, CLONE_NEWNET) < 0) {
                /* hostd in a dyno's namespace would be a disaster: nothing is worth going on. */
                log_error_errno(errno, "return to hostd's network namespace: %m");
                abort();
        }
        return r < 0 ? r : fd;
}

static bool addr_is_any(const struct inet_diag_msg *m)
{
        size_t n = m->idiag_family == AF_INET ? 4 : 16;
        const uint8_t *a = (const uint8_t *)m->id.idiag_src;
        for (size_t i = 0; i < n; i++)
                if (a[i])
                        return false;
        return true;
}

static int dump_family(int fd, uint8_t family, uint16_t port)
{
        struct {
                struct nlmsghdr nlh;
                struct inet_diag_req_v2 req;
        } msg = {
                .nlh = {
                        .nlmsg_len = sizeof msg,
                        .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                        .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                },
                .req = {
                        .sdiag_family = family,
                        .sdiag_protocol = IPPROTO_TCP,
                        .idiag_states = 1u << TCP_LISTEN,
                },
        };
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
                return -errno;

        int found = 0;
        uint8_t buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
                     h = NLMSG_NEXT(h, n)) {
                        if (h->nlmsg_type == NLMSG_DONE)
                                return found;
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = NLMSG_DATA(h);
                                return e->error ? e->error : -EPROTO;
                        }
                        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                            h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                                continue;
                        const struct inet_diag_msg *m = NLMSG_DATA(h);
                        if (ntohs(m->id.idiag_sport) == port && addr_is_any(m))
                                found = 1; /* read on to the end of the dump */
                }
        }
}

int port_probe_listening(int fd, uint16_t port)
{
        int r = dump_family(fd, AF_INET, port);
        if (r != 0)
                return r;
        return dump_family(fd, AF_INET6, port);
}
