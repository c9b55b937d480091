/* netd's links through libnl-route-3: the host bridge, one veth pair per dyno, the dyno's
 * address, loopback and default route. See link.h for the contract. */
#include "link.h"
#include "util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>

#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/route.h>

/* Typed cleanups for libnl objects (each put/free accepts only non-NULL). */
#define DEFINE_NL_CLEANUP(type, func)                                                              \
        static inline void func##p(type **p)                                                       \
        {                                                                                          \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }
DEFINE_NL_CLEANUP(struct nl_sock, nl_socket_free)
DEFINE_NL_CLEANUP(struct rtnl_link, rtnl_link_put)
DEFINE_NL_CLEANUP(struct rtnl_addr, rtnl_addr_put)
DEFINE_NL_CLEANUP(struct rtnl_route, rtnl_route_put)
DEFINE_NL_CLEANUP(struct nl_addr, nl_addr_put)
DEFINE_NL_CLEANUP(struct nl_cache, nl_cache_free)
DEFINE_NL_CLEANUP(struct nl_msg, nlmsg_free)
DEFINE_NL_CLEANUP(struct rtnl_nexthop, rtnl_route_nh_free)
DEFINE_NL_CLEANUP(struct rtnl_qdisc, rtnl_qdisc_put)

/* An rtnetlink socket and the errno of the kernel's last NLMSG_ERROR on it. libnl folds kernel
 * errors into its NLE_* codes and loses some on the way (ENETUNREACH, ENOSPC, EMLINK all become
 * NLE_FAILURE), so an error callback keeps the real one. Lives on the caller's stack: the
 * callback points into it. */
struct rtnl {
        struct nl_sock *sk;
        int kernel_error; /* negative errno, 0 if none since the last rtnl_errno() */
};

static void rtnl_close(struct rtnl *nl) { nl_socket_freep(&nl->sk); }

static int nle_to_errno(int nle)
{
        static const int map[] = {
                [NLE_FAILURE] = EIO,
                [NLE_INTR] = EINTR,
                [NLE_BAD_SOCK] = EBADF,
                [NLE_AGAIN] = EAGAIN,
                [NLE_NOMEM] = ENOMEM,
                [NLE_EXIST] = EEXIST,
                [NLE_INVAL] = EINVAL,
                [NLE_RANGE] = ERANGE,
                [NLE_MSGSIZE] = EMSGSIZE,
                [NLE_OPNOTSUPP] = EOPNOTSUPP,
                [NLE_AF_NOSUPPORT] = EAFNOSUPPORT,
                [NLE_OBJ_NOTFOUND] = ENOENT,
                [NLE_NOATTR] = ENODATA,
                [NLE_MISSING_ATTR] = EINVAL,
                [NLE_AF_MISMATCH] = EAFNOSUPPORT,
                [NLE_SEQ_MISMATCH] = EPROTO,
                [NLE_MSG_OVERFLOW] = EOVERFLOW,
                [NLE_MSG_TRUNC] = EMSGSIZE,
                [NLE_NOADDR] = EADDRNOTAVAIL,
                [NLE_SRCRT_NOSUPPORT] = EOPNOTSUPP,
                [NLE_MSG_TOOSHORT] = EBADMSG,
                [NLE_MSGTYPE_NOSUPPORT] = EOPNOTSUPP,
                [NLE_OBJ_MISMATCH] = EINVAL,
                [NLE_NOCACHE] = ENOENT,
                [NLE_BUSY] = EBUSY,
                [NLE_PROTO_MISMATCH] = EPROTONOSUPPORT,
                [NLE_NOACCESS] = EACCES,
                [NLE_PERM] = EPERM,
                [NLE_PKTLOC_FILE] = ENOENT,
                [NLE_PARSE_ERR] = EINVAL,
                [NLE_NODEV] = ENODEV,
                [NLE_IMMUTABLE] = EPERM,
                [NLE_DUMP_INTR] = EAGAIN, /* the dump raced with a change: try again */
                [NLE_ATTRSIZE] = EINVAL,
        };
        if (nle < 0)
                nle = -nle;
        if (nle == 0)
                return 0;
        if ((size_t)nle < ELEMENTSOF(map) && map[nle] != 0)
                return -map[nle];
        return -EIO;
}

/* The result of a libnl call on nl as 0/positive or a negative errno: the kernel's own if it
 * answered with an error, else libnl's code translated. */
static int rtnl_errno(struct rtnl *nl, int r)
{
        int k = nl->kernel_error;
        nl->kernel_error = 0;
        if (r >= 0)
                return r;
        return k < 0 ? k : nle_to_errno(r);
}

static int record_kernel_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
        *(int *)arg = e->error;
        return NL_STOP; /* libnl then returns its NLE_ translation, which rtnl_errno overrides */
}

static int rtnl_open(struct rtnl *nl)
{
        nl->kernel_error = 0;
        nl->sk = nl_socket_alloc();
        if (!nl->sk)
                return -ENOMEM;
        int r = nl_socket_modify_err_cb(nl->sk, NL_CB_CUSTOM, record_kernel_error,
                                        &nl->kernel_error);
        if (r < 0)
                return nle_to_errno(r);
        r = nl_connect(nl->sk, NETLINK_ROUTE); /* SOCK_CLOEXEC */
        if (r < 0)
                return nle_to_errno(r);
        return 0;
}

/* Open nl inside the network namespace netns_fd. A socket belongs to the namespace it was
 * created in, for life: enter the namespace, create it, come back. -EINVAL if netns_fd is not a
 * network namespace. */
static int rtnl_open_in_netns(struct rtnl *nl, int netns_fd)
{
        _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0)
                return -errno;
        if (setns(netns_fd, CLONE_NEWNET) < 0)
                return -errno;
        int r = rtnl_open(nl);
        if (setns(self, CLONE_NEWNET) < 0) {
                /* Going on would configure the host's links in a dyno's namespace. */
                log_error_errno(errno, "cannot return to netd's own network namespace: %m");
                abort();
        }
        return r;
}

static uint64_t fnv1a64(const void *data, size_t len)
{
        const unsigned char *p = data;
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

/* murmur3's 64-bit finaliser: every input bit reaches every output bit, which FNV alone does
 * poorly for the high bits (ids differing in their last character would share most of them). */
static uint64_t fmix64(uint64_t h)
{
        h ^= h >> 33;
        h *= UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 33;
        h *= UINT64_C(0xc4ceb9fe1a85ec53);
        h ^= h >> 33;
        return h;
}

static bool ifname_valid(const char *name)
{
        if (!name || !*name || strnlen(name, IFNAMSIZ) >= IFNAMSIZ)
                return false;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        for (const unsigned char *c = (const unsigned char *)name; *c; c++)
                if (*c <= 0x20 || *c >= 0x7f || *c == '/' || *c == ':')
                        return false;
        return true;
}

int link_host_ifname(const char *dyno_id, char ret[static IFNAMSIZ])
{
        if (!dyno_instance_name_valid(dyno_id))
                return -EINVAL;
        /* Names must stay the same across versions: netd finds existing links by them. */
        uint64_t h = fmix64(fnv1a64(dyno_id, strlen(dyno_id)));
        snprintf(ret, IFNAMSIZ, LINK_HOST_IFNAME_PREFIX "%012" PRIx64, h >> 16);
        return 0;
}

static bool link_is_kind(struct rtnl_link *l, const char *kind)
{
        const char *k = rtnl_link_get_type(l);
        return k && strcmp(k, kind) == 0;
}

/* The link called name, -ENODEV if there is none. */
static int link_get(struct rtnl *nl, const char *name, struct rtnl_link **ret)
{
        *ret = NULL;
        return rtnl_errno(nl, rtnl_link_get_kernel(nl->sk, 0, name, ret));
}

static int link_change(struct rtnl *nl, struct rtnl_link *link, struct rtnl_link *changes)
{
        return rtnl_errno(nl, rtnl_link_change(nl->sk, link, changes, 0));
}

static int link_ensure_up(struct rtnl *nl, struct rtnl_link *link)
{
        if (rtnl_link_get_flags(link) & IFF_UP)
                return 0;
        _cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();
        if (!c)
                return -ENOMEM;
        rtnl_link_set_flags(c, IFF_UP);
        return link_change(nl, link, c);
}

/* Delete a link by ifindex, or by name if ifindex is 0. Gone already is fine. */
static int link_delete(struct rtnl *nl, int ifindex, const char *name)
{
        _cleanup_(rtnl_link_putp) struct rtnl_link *l = rtnl_link_alloc();
        if (!l)
                return -ENOMEM;
        if (ifindex > 0)
                rtnl_link_set_ifindex(l, ifindex);
        else
                rtnl_link_set_name(l, name);
        int r = rtnl_errno(nl, rtnl_link_delete(nl->sk, l));
        return r == -ENODEV ? 0 : r;
}

/* Bridge port isolation: an isolated port exchanges frames only with non-isolated ports (here
 * the bridge itself, the gateway), never with another isolated port, so dynos cannot reach each
 * other even by MAC. libnl 3.7 has no setter for IFLA_BRPORT_ISOLATED (its bridge port flags stop
 * at IFLA_BRPORT_LEARNING_SYNC), so the message is built by hand: the same RTM_NEWLINK as
 * `ip link set DEV type bridge_slave isolated on`, the port's slave data inside IFLA_LINKINFO. */
static int bridge_port_set_isolated(struct rtnl *nl, int ifindex, bool isolated)
{
        _cleanup_(nlmsg_freep) struct nl_msg *m = nlmsg_alloc_simple(RTM_NEWLINK, 0);
        if (!m)
                return -ENOMEM;
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
        if (nlmsg_append(m, &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0)
                return -EMSGSIZE;
        struct nlattr *info = nla_nest_start(m, IFLA_LINKINFO);
        if (!info || nla_put_string(m, IFLA_INFO_SLAVE_KIND, "bridge") < 0)
                return -EMSGSIZE;
        struct nlattr *data = nla_nest_start(m, IFLA_INFO_SLAVE_DATA);
        if (!data || nla_put_u8(m, IFLA_BRPORT_ISOLATED, isolated) < 0)
                return -EMSGSIZE;
        nla_nest_end(m, data);
        nla_nest_end(m, info);
        return rtnl_errno(nl, nl_send_sync(nl->sk, TAKE_PTR(m))); /* frees the message */
}

static int address_replace(struct rtnl *nl, int ifindex, const struct in_addr *a, int prefixlen)
{
        _cleanup_(rtnl_addr_putp) struct rtnl_addr *ra = rtnl_addr_alloc();
        _cleanup_(nl_addr_putp) struct nl_addr *local = nl_addr_build(AF_INET, a, sizeof *a);
        if (!ra || !local)
                return -ENOMEM;
        nl_addr_set_prefixlen(local, prefixlen);
        rtnl_addr_set_ifindex(ra, ifindex);
        int r = rtnl_addr_set_local(ra, local);
        if (r < 0)
                return nle_to_errno(r);
        rtnl_addr_set_prefixlen(ra, prefixlen);
        return rtnl_errno(nl, rtnl_addr_add(nl->sk, ra, NLM_F_REPLACE));
}

/* Delete the IPv4 addresses of ifindex other than a/prefixlen; with same_local_only, only those
 * that are a with another prefix length (a subnet reconfigured since the last run). */
static int addresses_prune(struct rtnl *nl, int ifindex, const struct in_addr *a, int prefixlen,
                           bool same_local_only)
{
        _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
        int r = rtnl_errno(nl, rtnl_addr_alloc_cache(nl->sk, &cache));
        if (r < 0)
                return r;
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_addr *ra = (struct rtnl_addr *)o;
                if (rtnl_addr_get_ifindex(ra) != ifindex || rtnl_addr_get_family(ra) != AF_INET)
                        continue;
                struct nl_addr *local = rtnl_addr_get_local(ra);
                if (!local || nl_addr_get_len(local) != sizeof *a)
                        continue;
                bool same_local = memcmp(nl_addr_get_binary_addr(local), a, sizeof *a) == 0;
                if (same_local && rtnl_addr_get_prefixlen(ra) == prefixlen)
                        continue;
                if (same_local_only && !same_local)
                        continue;
                r = rtnl_errno(nl, rtnl_addr_delete(nl->sk, ra, 0));
                if (r < 0 && r != -EADDRNOTAVAIL)
                        return r;
        }
        return 0;
}

static int default_route_replace(struct rtnl *nl, int ifindex, const struct in_addr *gateway)
{
        static const struct in_addr any = { 0 };
        _cleanup_(rtnl_route_putp) struct rtnl_route *rt = rtnl_route_alloc();
        _cleanup_(nl_addr_putp) struct nl_addr *dst = nl_addr_build(AF_INET, &any, sizeof any);
        _cleanup_(nl_addr_putp) struct nl_addr *via =
                nl_addr_build(AF_INET, gateway, sizeof *gateway);
        _cleanup_(rtnl_route_nh_freep) struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
        if (!rt || !dst || !via || !nh)
                return -ENOMEM;
        nl_addr_set_prefixlen(dst, 0);
        rtnl_route_set_family(rt, AF_INET);
        rtnl_route_set_table(rt, RT_TABLE_MAIN);
        rtnl_route_set_scope(rt, RT_SCOPE_UNIVERSE);
        rtnl_route_set_protocol(rt, RTPROT_STATIC);
        rtnl_route_set_type(rt, RTN_UNICAST);
        int r = rtnl_route_set_dst(rt, dst);
        if (r < 0)
                return nle_to_errno(r);
        rtnl_route_nh_set_ifindex(nh, ifindex);
        rtnl_route_nh_set_gateway(nh, via);
        rtnl_route_add_nexthop(rt, TAKE_PTR(nh)); /* the route owns it now */
        return rtnl_errno(nl, rtnl_route_add(nl->sk, rt, NLM_F_REPLACE));
}

/* The egress limit of a dyno: a tbf at the root of its eth0 (rate in bytes per second), or,
 * rate 0, none: a root qdisc of ours is deleted (the kernel's default has handle 0 and cannot
 * be deleted: -ENOENT, which is fine). */
static int egress_limit_apply(struct rtnl *nl, int ifindex, uint64_t rate, unsigned mtu)
{
        _cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *q = rtnl_qdisc_alloc();
        if (!q)
                return -ENOMEM;
        rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
        rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
        if (rate == 0) {
                int r = rtnl_errno(nl, rtnl_qdisc_delete(nl->sk, q));
                return r == -ENOENT ? 0 : r;
        }
        if (rate < 1000 || rate > LINK_EGRESS_RATE_MAX)
                return -EINVAL;
        /* A packet longer than the bucket is dropped (tbf splits only GSO ones): two full
         * frames at least. The queue: LINK_EGRESS_LATENCY_USEC of traffic past the bucket. */
        uint64_t burst = rate * LINK_EGRESS_BURST_USEC / 1000000;
        if (burst < 2 * ((uint64_t)mtu + 14))
                burst = 2 * ((uint64_t)mtu + 14);
        if (burst < 16384)
                burst = 16384;
        int r = rtnl_tc_set_kind(TC_CAST(q), "tbf");
        if (r < 0)
                return nle_to_errno(r);
        rtnl_tc_set_mtu(TC_CAST(q), mtu + 14);
        rtnl_qdisc_tbf_set_rate(q, (int)rate, (int)burst, 0);
        r = rtnl_qdisc_tbf_set_limit_by_latency(q, LINK_EGRESS_LATENCY_USEC);
        if (r < 0)
                return nle_to_errno(r);
        return rtnl_errno(nl, rtnl_qdisc_add(nl->sk, q, NLM_F_CREATE | NLM_F_REPLACE));
}

/* A stable, locally administered unicast MAC for the bridge. */
static void bridge_mac(const char *name, uint8_t mac[static 6])
{
        uint64_t h = fnv1a64(name, strlen(name)) ^ UINT64_C(0x686f737464627200); /* "hostdbr" */
        for (int i = 0; i < 6; i++)
                mac[i] = (uint8_t)(h >> (8 * i));
        mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02);
}

static int bridge_create(struct rtnl *nl, const char *name)
{
        uint8_t mac[6];
        bridge_mac(name, mac);
        _cleanup_(rtnl_link_putp) struct rtnl_link *l = rtnl_link_alloc();
        _cleanup_(nl_addr_putp) struct nl_addr *a = nl_addr_build(AF_LLC, mac, sizeof mac);
        if (!l || !a)
                return -ENOMEM;
        int r = rtnl_link_set_type(l, "bridge");
        if (r < 0)
                return nle_to_errno(r);
        rtnl_link_set_name(l, name);
        rtnl_link_set_addr(l, a);
        return rtnl_errno(nl, rtnl_link_add(nl->sk, l, NLM_F_CREATE | NLM_F_EXCL));
}

int link_bridge_ensure(const char *name, const struct in_addr *gateway, int prefixlen, unsigned mtu)
{
        if (!ifname_valid(name) || !gateway || prefixlen < 1 || prefixlen > 32 || mtu < 68 ||
            mtu > 65535)
                return -EINVAL;

        _cleanup_(rtnl_close) struct rtnl nl = { 0 };
        int r = rtnl_open(&nl);
        if (r < 0)
                return r;

        _cleanup_(rtnl_link_putp) struct rtnl_link *br = NULL;
        r = link_get(&nl, name, &br);
        if (r == -ENODEV) {
                r = bridge_create(&nl, name);
                if (r < 0 && r != -EEXIST) /* EEXIST: made meanwhile by someone else, look */
                        return r;
                r = link_get(&nl, name, &br);
        }
        if (r < 0)
                return r;
        if (!link_is_kind(br, "bridge")) {
                const char *kind = rtnl_link_get_type(br);
                log_error("bridge %s: a link of that name exists and is %s%s, not a bridge; "
                          "remove it or configure another bridge name",
                          name, kind ? "a " : "a device with no link kind (a physical NIC?)",
                          kind ? kind : "");
                return -EEXIST;
        }

        /* MTU apart from creation, so that the kernel keeps it as the user's choice. */
        _cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();
        if (!c)
                return -ENOMEM;
        bool change = false;
        if (rtnl_link_get_mtu(br) != mtu) {
                rtnl_link_set_mtu(c, mtu);
                change = true;
        }
        if (!(rtnl_link_get_flags(br) & IFF_UP)) {
                rtnl_link_set_flags(c, IFF_UP);
                change = true;
        }
        if (change) {
                r = link_change(&nl, br, c);
                if (r < 0)
                        return r;
        }

        int ifindex = rtnl_link_get_ifindex(br);
        r = addresses_prune(&nl, ifindex, gateway, prefixlen, true);
        if (r < 0)
                return r;
        return address_replace(&nl, ifindex, gateway, prefixlen);
}

static int veth_create(struct rtnl *nl, const char *host_ifname, int bridge_ifindex, unsigned mtu,
                       int netns_fd)
{
        _cleanup_(rtnl_link_putp) struct rtnl_link *veth = rtnl_link_veth_alloc();
        if (!veth)
                return -ENOMEM;
        _cleanup_(rtnl_link_putp) struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
        if (!peer)
                return -ENOMEM;
        /* Host end down and already a port of the bridge (IFLA_MASTER is applied within the
         * creation, so no unenslaved pair ever exists); the peer made directly in the dyno's
         * namespace under its final name, never visible in the host's. */
        rtnl_link_set_name(veth, host_ifname);
        rtnl_link_set_mtu(veth, mtu);
        rtnl_link_set_master(veth, bridge_ifindex);
        rtnl_link_set_name(peer, LINK_DYNO_IFNAME);
        rtnl_link_set_mtu(peer, mtu);
        /* One queue each way on both ends, as the kernel would leave them: asked for at
         * creation, the kernel does not make one per CPU and then cut them down to one, which
         * waits for an RCU grace period per end (netif_set_real_num_tx_queues). */
        rtnl_link_set_num_tx_queues(veth, 1);
        rtnl_link_set_num_rx_queues(veth, 1);
        rtnl_link_set_num_tx_queues(peer, 1);
        rtnl_link_set_num_rx_queues(peer, 1);
        rtnl_link_set_ns_fd(peer, netns_fd);
        return rtnl_errno(nl, rtnl_link_add(nl->sk, veth, NLM_F_CREATE | NLM_F_EXCL));
}

/* Whether host (in the host's namespace) and eth (in the dyno's) are the two ends of one veth:
 * each names the other's ifindex as its IFLA_LINK. */
static bool veth_is_pair(struct rtnl_link *host, struct rtnl_link *eth)
{
        return eth && link_is_kind(eth, "veth") &&
               rtnl_link_get_link(host) == rtnl_link_get_ifindex(eth) &&
               rtnl_link_get_link(eth) == rtnl_link_get_ifindex(host);
}

/* A bridge port needs no IPv6 of its own, and each host end with IPv6 on adds a link-local
 * address and routes to the host's IPv6 table, which the kernel walks whole on every link
 * deletion: with it off, attach and detach cost the same with 500 dynos as with 1. Done before
 * the link goes up, so none of it is ever made. A kernel without IPv6 has no such file. */
static int host_end_disable_ipv6(const char *ifname)
{
        char path[96];
        snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
        int r = write_string_file(path, "1");
        return r == -ENOENT ? 0 : r;
}

/* Bring an existing pair to what p asks. Every step is idempotent. */
static int attach_configure(struct rtnl *hn, struct rtnl *dn, struct rtnl_link *host,
                            struct rtnl_link *eth, int bridge_ifindex,
                            const struct link_attach_params *p, bool created)
{
        /* Host end: labelled first (detach and gc know it by the alias), isolated before it
         * goes up, so that no frame crosses the bridge unisolated. */
        _cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();
        if (!c)
                return -ENOMEM;
        rtnl_link_set_ifalias(c, p->dyno_id);
        if (rtnl_link_get_master(host) != bridge_ifindex)
                rtnl_link_set_master(c, bridge_ifindex);
        if (rtnl_link_get_mtu(host) != p->mtu)
                rtnl_link_set_mtu(c, p->mtu);
        int r = link_change(hn, host, c);
        if (r < 0)
                return r;
        r = bridge_port_set_isolated(hn, rtnl_link_get_ifindex(host), true);
        if (r < 0)
                return r;
        r = host_end_disable_ipv6(rtnl_link_get_name(host));
        if (r < 0)
                return r;
        r = link_ensure_up(hn, host);
        if (r < 0)
                return r;

        /* Dyno side. */
        _cleanup_(rtnl_link_putp) struct rtnl_link *lo = NULL;
        r = link_get(dn, "lo", &lo);
        if (r < 0)
                return r;
        r = link_ensure_up(dn, lo);
        if (r < 0)
                return r;

        /* Before eth0 goes up, so that nothing leaves unlimited. A pair made just now has no
         * qdisc of ours to delete. */
        int eth_ifindex = rtnl_link_get_ifindex(eth);
        if (p->egress_rate > 0 || !created) {
                r = egress_limit_apply(dn, eth_ifindex, p->egress_rate, p->mtu);
                if (r < 0)
                        return r;
        }

        _cleanup_(rtnl_link_putp) struct rtnl_link *ce = rtnl_link_alloc();
        if (!ce)
                return -ENOMEM;
        bool change = false;
        if (rtnl_link_get_mtu(eth) != p->mtu) {
                rtnl_link_set_mtu(ce, p->mtu);
                change = true;
        }
        if (!(rtnl_link_get_flags(eth) & IFF_UP)) {
                rtnl_link_set_flags(ce, IFF_UP);
                change = true;
        }
        if (change) {
                r = link_change(dn, eth, ce);
                if (r < 0)
                        return r;
        }

        if (!created) { /* an address from an earlier attach with other parameters */
                r = addresses_prune(dn, eth_ifindex, &p->address, p->prefixlen, false);
                if (r < 0)
                        return r;
        }
        r = address_replace(dn, eth_ifindex, &p->address, p->prefixlen);
        if (r < 0)
                return r;
        return default_route_replace(dn, eth_ifindex, &p->gateway);
}

int link_attach(const struct link_attach_params *p, struct link_attach_result *r)
{
        char host_ifname[IFNAMSIZ];
        int q;

        if (!p || !r || !p->netns_path || !*p->netns_path || !ifname_valid(p->bridge) ||
            p->prefixlen < 1 || p->prefixlen > 32 || p->mtu < 68 || p->mtu > 65535 ||
            (p->egress_rate != 0 &&
             (p->egress_rate < 1000 || p->egress_rate > LINK_EGRESS_RATE_MAX)))
                return -EINVAL;
        q = link_host_ifname(p->dyno_id, host_ifname);
        if (q < 0)
                return q;

        _cleanup_close_ int netns_fd = open(p->netns_path, O_RDONLY | O_CLOEXEC);
        if (netns_fd < 0)
                return -errno;

        _cleanup_(rtnl_close) struct rtnl hn = { 0 };
        _cleanup_(rtnl_close) struct rtnl dn = { 0 };
        q = rtnl_open(&hn);
        if (q < 0)
                return q;
        q = rtnl_open_in_netns(&dn, netns_fd);
        if (q < 0)
                return q;

        _cleanup_(rtnl_link_putp) struct rtnl_link *br = NULL;
        q = link_get(&hn, p->bridge, &br);
        if (q < 0)
                return q;
        if (!link_is_kind(br, "bridge"))
                return -ENODEV;
        int bridge_ifindex = rtnl_link_get_ifindex(br);

        _cleanup_(rtnl_link_putp) struct rtnl_link *host = NULL;
        _cleanup_(rtnl_link_putp) struct rtnl_link *eth = NULL;
        q = link_get(&hn, host_ifname, &host);
        if (q < 0 && q != -ENODEV)
                return q;
        q = link_get(&dn, LINK_DYNO_IFNAME, &eth);
        if (q < 0 && q != -ENODEV)
                return q;

        bool created = false;
        if (host) {
                const char *alias = rtnl_link_get_ifalias(host);
                bool ours = alias && strcmp(alias, p->dyno_id) == 0;
                if (!link_is_kind(host, "veth") || (alias && *alias && !ours))
                        return -EEXIST;
                if (!ours || !veth_is_pair(host, eth)) {
                        /* Ours but its peer is elsewhere, or unlabelled: start afresh. The
                         * peer, if it was our eth0, goes with it. */
                        q = link_delete(&hn, rtnl_link_get_ifindex(host), NULL);
                        if (q < 0)
                                return q;
                        rtnl_link_putp(&host);
                        host = NULL;
                        rtnl_link_putp(&eth);
                        eth = NULL;
                        q = link_get(&dn, LINK_DYNO_IFNAME, &eth);
                        if (q < 0 && q != -ENODEV)
                                return q;
                }
        }
        if (!host) {
                if (eth) /* not the peer of any link of this dyno: someone else's */
                        return -EEXIST;
                q = veth_create(&hn, host_ifname, bridge_ifindex, p->mtu, netns_fd);
                if (q < 0)
                        return q;
                created = true;
                q = link_get(&hn, host_ifname, &host);
                if (q >= 0)
                        q = link_get(&dn, LINK_DYNO_IFNAME, &eth);
                if (q < 0) {
                        (void)link_delete(&hn, 0, host_ifname);
                        return q;
                }
        }

        int host_ifindex = rtnl_link_get_ifindex(host);
        q = attach_configure(&hn, &dn, host, eth, bridge_ifindex, p, created);
        if (q < 0) {
                /* Whether made now or found: a failed attach leaves the dyno unattached. */
                (void)link_delete(&hn, host_ifindex, NULL);
                return q;
        }

        struct nl_addr *mac = rtnl_link_get_addr(eth);
        if (!mac || nl_addr_get_len(mac) != sizeof r->mac) {
                (void)link_delete(&hn, host_ifindex, NULL);
                return -EBADMSG;
        }
        *r = (struct link_attach_result){ .host_ifindex = host_ifindex, .created = created };
        memcpy(r->mac, nl_addr_get_binary_addr(mac), sizeof r->mac);
        snprintf(r->host_ifname, sizeof r->host_ifname, "%s", host_ifname);
        return 0;
}

int link_detach_find(const char *dyno_id, int *ret_ifindex, char ret_ifname[static IFNAMSIZ])
{
        int r = link_host_ifname(dyno_id, ret_ifname);
        if (r < 0)
                return r;
        *ret_ifindex = 0;

        _cleanup_(rtnl_close) struct rtnl nl = { 0 };
        r = rtnl_open(&nl);
        if (r < 0)
                return r;
        _cleanup_(rtnl_link_putp) struct rtnl_link *host = NULL;
        r = link_get(&nl, ret_ifname, &host);
        if (r == -ENODEV)
                return 0;
        if (r < 0)
                return r;

        /* Another dyno's (alias) or not a veth at all: ours is not there. An unlabelled veth is
         * an attach of ours killed before it could label it. */
        const char *alias = rtnl_link_get_ifalias(host);
        if (!link_is_kind(host, "veth") || (alias && *alias && strcmp(alias, dyno_id) != 0))
                return 0;
        *ret_ifindex = rtnl_link_get_ifindex(host);
        return 0;
}

int link_delete_ifindex(int ifindex)
{
        if (ifindex <= 0)
                return -EINVAL;
        _cleanup_(rtnl_close) struct rtnl nl = { 0 };
        int r = rtnl_open(&nl);
        if (r < 0)
                return r;
        return link_delete(&nl, ifindex, NULL);
}

int link_detach(const char *dyno_id)
{
        char ifname[IFNAMSIZ];
        int ifindex;
        int r = link_detach_find(dyno_id, &ifindex, ifname);
        if (r < 0 || ifindex == 0)
                return r;
        return link_delete_ifindex(ifindex);
}

/* Whether l is the host end of a dyno's veth: a veth whose alias is an id that names it. */
static const char *link_dyno_id(struct rtnl_link *l)
{
        char expected[IFNAMSIZ];
        const char *alias = rtnl_link_get_ifalias(l);
        const char *name = rtnl_link_get_name(l);
        if (!alias || !name || !link_is_kind(l, "veth"))
                return NULL;
        if (link_host_ifname(alias, expected) < 0 || strcmp(expected, name) != 0)
                return NULL;
        return alias;
}

int link_list_attached(const char *bridge, char ***ret_ids)
{
        if (!ifname_valid(bridge) || !ret_ids)
                return -EINVAL;

        _cleanup_(rtnl_close) struct rtnl nl = { 0 };
        int r = rtnl_open(&nl);
        if (r < 0)
                return r;
        _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
        for (int attempt = 0;; attempt++) {
                r = rtnl_errno(&nl, rtnl_link_alloc_cache(nl.sk, AF_UNSPEC, &cache));
                if (r != -EAGAIN || attempt == 4) /* EAGAIN: dump interrupted by a change */
                        break;
        }
        if (r < 0)
                return r;

        int bridge_ifindex = rtnl_link_name2i(cache, bridge); /* 0 if missing */
        size_t n = 0, cap = nl_cache_nitems(cache) + 1;
        _cleanup_strv_free_ char **ids = calloc(cap, sizeof(char *));
        if (!ids)
                return -ENOMEM;
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_link *l = (struct rtnl_link *)o;
                int master = rtnl_link_get_master(l);
                const char *id = link_dyno_id(l);
                if (!id || (master != 0 && master != bridge_ifindex))
                        continue;
                ids[n] = strdup(id);
                if (!ids[n])
                        return -ENOMEM;
                n++;
        }
        *ret_ids = TAKE_PTR(ids);
        return (int)n;
}

int link_stats(const char *dyno_id, struct link_stats *ret)
{
        char host_ifname[IFNAMSIZ];
        int r = link_host_ifname(dyno_id, host_ifname);
        if (r < 0)
                return r;
        if (!ret)
                return -EINVAL;

        _cleanup_(rtnl_close) struct rtnl nl = { 0 };
        r = rtnl_open(&nl);
        if (r < 0)
                return r;
        _cleanup_(rtnl_link_putp) struct rtnl_link *host = NULL;
        r = link_get(&nl, host_ifname, &host);
        if (r == -ENODEV)
                return -ENOENT;
        if (r < 0)
                return r;
        const char *alias = rtnl_link_get_ifalias(host);
        if (!link_is_kind(host, "veth") || !alias || strcmp(alias, dyno_id) != 0)
                return -ENOENT;

        /* The host end transmits what the dyno receives and the other way round. */
        *ret = (struct link_stats){
                .rx_bytes = rtnl_link_get_stat(host, RTNL_LINK_TX_BYTES),
                .rx_packets = rtnl_link_get_stat(host, RTNL_LINK_TX_PACKETS),
                .tx_bytes = rtnl_link_get_stat(host, RTNL_LINK_RX_BYTES),
                .tx_packets = rtnl_link_get_stat(host, RTNL_LINK_RX_PACKETS),
        };
        return 0;
}

static int dyno_stats_cmp(const void *a, const void *b)
{
        return strcmp(((const struct link_dyno_stats *)a)->dyno_id,
                      ((const struct link_dyno_stats *)b)->dyno_id);
}

void link_dyno_stats_free(struct link_dyno_stats *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                free(v[i].dyno_id);
        free(v);
}

int link_stats_all(struct link_dyno_stats **ret)
{
        if (!ret)
                return -EINVAL;
        _cleanup_(rtnl_close) struct rtnl nl = { 0 };
        int r = rtnl_open(&nl);
        if (r < 0)
                return r;
        _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
        for (int attempt = 0;; attempt++) {
                r = rtnl_errno(&nl, rtnl_link_alloc_cache(nl.sk, AF_UNSPEC, &cache));
                if (r != -EAGAIN || attempt == 4) /* EAGAIN: dump interrupted by a change */
                        break;
        }
        if (r < 0)
                return r;
        size_t n = 0;
        struct link_dyno_stats *v = calloc(nl_cache_nitems(cache) + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_link *l = (struct rtnl_link *)o;
                const char *id = link_dyno_id(l);
                if (!id)
                        continue;
                v[n].dyno_id = strdup(id);
                if (!v[n].dyno_id) {
                        link_dyno_stats_free(v, n);
                        return -ENOMEM;
                }
                /* As link_stats: the host end's tx is what the dyno received. */
                v[n].stats = (struct link_stats){
                        .rx_bytes = rtnl_link_get_stat(l, RTNL_LINK_TX_BYTES),
                        .rx_packets = rtnl_link_get_stat(l, RTNL_LINK_TX_PACKETS),
                        .tx_bytes = rtnl_link_get_stat(l, RTNL_LINK_RX_BYTES),
                        .tx_packets = rtnl_link_get_stat(l, RTNL_LINK_RX_PACKETS),
                };
                n++;
        }
        qsort(v, n, sizeof *v, dyno_stats_cmp);
        *ret = v;
        return (int)n;
}
