/* See taskstats.h. A raw generic netlink socket: two small messages, not worth a library. */
#include "taskstats.h"

#include <linux/cgroupstats.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define NLA_ALIGN_UP(n) (((n) + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1))

struct request {
        struct nlmsghdr nh;
        struct genlmsghdr gh;
        char attrs[64];
};

/* Append one attribute to r. */
static void put_attr(struct request *r, uint16_t type, const void *data, uint16_t len)
{
        struct nlattr *a = (struct nlattr *)((char *)r + NLMSG_ALIGN(r->nh.nlmsg_len));
        a->nla_type = type;
        a->nla_len = (uint16_t)(NLA_HDRLEN + len);
        memcpy((char *)a + NLA_HDRLEN, data, len);
        r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + NLA_ALIGN_UP(a->nla_len);
}

/* Send r and receive the answer into buf: its genetlink payload's attributes. */
static int transact(int fd, struct request *r, char *buf, size_t len, struct nlattr **ret_attrs,
                    size_t *ret_len)
{
        static uint32_t seq;
        r->nh.nlmsg_seq = ++seq;
        r->nh.nlmsg_pid = 0;
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
                return -errno;
        for (;;) {
                ssize_t n = recv(fd, buf, len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                struct nlmsghdr *nh = (struct nlmsghdr *)buf;
                if (!NLMSG_OK(nh, (size_t)n))
                        return -EBADMSG;
                if (nh->nlmsg_seq != r->nh.nlmsg_seq)
                        continue; /* the answer to an earlier request that timed out */
                if (nh->nlmsg_type == NLMSG_ERROR) {
                        struct nlmsgerr *e = NLMSG_DATA(nh);
                        return e->error ? e->error : -EBADMSG;
                }
                size_t hdr = NLMSG_LENGTH(GENL_HDRLEN);
                if (nh->nlmsg_len < hdr)
                        return -EBADMSG;
                *ret_attrs = (struct nlattr *)((char *)nh + hdr);
                *ret_len = nh->nlmsg_len - hdr;
                return 0;
        }
}

/* The attribute of type in attrs (not nested), or NULL. */
static struct nlattr *find_attr(struct nlattr *attrs, size_t len, uint16_t type)
{
        while (len >= NLA_HDRLEN) {
                if (attrs->nla_len < NLA_HDRLEN || attrs->nla_len > len)
                        return NULL;
                if ((attrs->nla_type & NLA_TYPE_MASK) == type)
                        return attrs;
                size_t step = NLA_ALIGN_UP(attrs->nla_len);
                if (step >= len)
                        return NULL;
                len -= step;
                attrs = (struct nlattr *)((char *)attrs + step);
        }
        return NULL;
}

int taskstats_open(int *ret_fd, uint16_t *ret_family)
{
        _cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
        if (fd < 0)
                return -errno;
        struct sockaddr_nl self = { .nl_family = AF_NETLINK };
        if (bind(fd, (struct sockaddr *)&self, sizeof self) < 0)
                return -errno;
        /* The kernel answers at once; a bound on the wait all the same, for hostd's loop. */
        struct timeval tv = { .tv_sec = 1 };
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
                return -errno;

        struct request r = {
                .nh = { .nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN),
                        .nlmsg_type = GENL_ID_CTRL,
                        .nlmsg_flags = NLM_F_REQUEST },
                .gh = { .cmd = CTRL_CMD_GETFAMILY, .version = 1 },
        };
        put_attr(&r, CTRL_ATTR_FAMILY_NAME, TASKSTATS_GENL_NAME, sizeof TASKSTATS_GENL_NAME);
        char buf[4096];
        struct nlattr *attrs;
        size_t len = 0;
        int e = transact(fd, &r, buf, sizeof buf, &attrs, &len);
        if (e == -ENOENT)
                return -EOPNOTSUPP;
        if (e < 0)
                return e;
        struct nlattr *id = find_attr(attrs, len, CTRL_ATTR_FAMILY_ID);
        if (!id || id->nla_len < NLA_HDRLEN + sizeof(uint16_t))
                return -EBADMSG;
        memcpy(ret_family, (char *)id + NLA_HDRLEN, sizeof(uint16_t));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int taskstats_cgroups(int fd, uint16_t family, const int *dirfds, size_t n, struct cgroupstats *ret,
                      bool *ok)
{
        enum { REQ = NLMSG_ALIGN(NLMSG_LENGTH(GENL_HDRLEN) + NLA_HDRLEN + sizeof(uint32_t)) };
        static uint32_t seq_base;
        if (n == 0)
                return 0;
        if (n > TASKSTATS_BATCH)
                return -EINVAL;
        char out[TASKSTATS_BATCH * REQ];
        memset(out, 0, n * REQ);
        uint32_t first = seq_base + 1;
        seq_base += (uint32_t)n;
        for (size_t i = 0; i < n; i++) {
                struct nlmsghdr *nh = (struct nlmsghdr *)(out + i * REQ);
                nh->nlmsg_len = REQ;
                nh->nlmsg_type = family;
                nh->nlmsg_flags = NLM_F_REQUEST;
                nh->nlmsg_seq = first + (uint32_t)i;
                struct genlmsghdr *gh = NLMSG_DATA(nh);
                gh->cmd = CGROUPSTATS_CMD_GET;
                gh->version = TASKSTATS_GENL_VERSION;
                struct nlattr *a = (struct nlattr *)((char *)nh + NLMSG_LENGTH(GENL_HDRLEN));
                a->nla_type = CGROUPSTATS_CMD_ATTR_FD;
                a->nla_len = NLA_HDRLEN + sizeof(uint32_t);
                uint32_t u = (uint32_t)dirfds[i];
                memcpy((char *)a + NLA_HDRLEN, &u, sizeof u);
                ok[i] = false;
        }
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        if (sendto(fd, out, n * REQ, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
                return -errno;

        /* The kernel answers each request while it takes the message in: every answer is
         * queued when sendto returns. */
        static char in[TASKSTATS_BATCH][256];
        struct iovec iov[TASKSTATS_BATCH];
        struct mmsghdr msgs[TASKSTATS_BATCH];
        size_t answered = 0, got = 0;
        while (got < n) {
                size_t want = n - got;
                for (size_t i = 0; i < want; i++) {
                        iov[i] = (struct iovec){ in[i], sizeof in[i] };
                        msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i],
                                                                 .msg_iovlen = 1 } };
                }
                int k = recvmmsg(fd, msgs, (unsigned)want, MSG_DONTWAIT, NULL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break; /* fewer answers than requests: the rest are lost */
                        return -errno;
                }
                for (int j = 0; j < k; j++) {
                        struct nlmsghdr *nh = (struct nlmsghdr *)in[j];
                        size_t len = msgs[j].msg_len;
                        if (!NLMSG_OK(nh, len))
                                continue;
                        uint32_t i = nh->nlmsg_seq - first;
                        if (i >= n)
                                continue; /* a late answer to an earlier call */
                        got++;
                        if (nh->nlmsg_type == NLMSG_ERROR)
                                continue;
                        size_t hdr = NLMSG_LENGTH(GENL_HDRLEN);
                        if (nh->nlmsg_len < hdr)
                                continue;
                        struct nlattr *a = find_attr((struct nlattr *)((char *)nh + hdr),
                                                     nh->nlmsg_len - hdr,
                                                     CGROUPSTATS_TYPE_CGROUP_STATS);
                        if (!a || a->nla_len < NLA_HDRLEN + sizeof *ret)
                                continue;
                        memcpy(&ret[i], (char *)a + NLA_HDRLEN, sizeof *ret);
                        ok[i] = true;
                        answered++;
                }
        }
        return (int)answered;
}
