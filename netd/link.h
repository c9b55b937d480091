/* netd's links: the host bridge and one veth pair per dyno, with their addresses and routes,
 * through rtnetlink (libnl-route-3).
 *
 * Errors: every function returns 0 (or a count) on success and a negative errno on failure.
 * libnl's own NLE_* codes never come out: where the kernel answered, its errno is returned as it
 * was (ENETUNREACH, ENOSPC... which libnl would fold into NLE_FAILURE), otherwise the NLE code
 * is translated. Nothing here logs, except link_bridge_ensure's refusal of a link that is not a
 * bridge (see there); the caller logs once, with the dyno id.
 *
 * Namespaces: a dyno's side is named by the path of its network namespace file (a bind mount,
 * such as /run/hostd/netns/<id>). netd is single-threaded, so to act inside that namespace it
 * switches into it (setns) only long enough to open a netlink socket there, then switches back
 * to the namespace it was in (kept open as an fd for that); the socket stays bound to the dyno's
 * namespace for its whole life. The original namespace is restored on every path; if even that
 * fails the process aborts rather than carry on in a dyno's namespace. Everything else acts in
 * the namespace of the calling process (the host's, for netd).
 *
 * Ownership: the host end of a dyno's veth is named from a hash of the dyno id (see
 * link_host_ifname) and carries the dyno id in its alias (IFLA_IFALIAS). The alias, not the name,
 * says whose a link is: two ids whose names collide are told apart, and the second one is refused
 * with -EEXIST rather than allowed to take the first one's link. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

/* The largest egress rate: libnl takes a tbf rate in an int of bytes per second. */
#define LINK_EGRESS_RATE_MAX UINT64_C(2147483647)
/* The tbf's bucket holds this much traffic at the rate (but at least two full frames and 16
 * KiB), and its queue this much more before it drops. */
#define LINK_EGRESS_BURST_USEC 10000
#define LINK_EGRESS_LATENCY_USEC 50000

/* The dyno's end of the pair, inside its namespace. */
#define LINK_DYNO_IFNAME "eth0"
/* Host ends are LINK_HOST_IFNAME_PREFIX followed by 12 lower-case hex digits. */
#define LINK_HOST_IFNAME_PREFIX "dy"

/* The name of a dyno's host end: "dy" + the top 48 bits of a 64-bit hash of the id (FNV-1a,
 * then murmur3's finaliser) in hex ("dy3f9a0c12b4e7"), 14 characters, stable across restarts
 * and versions. Collisions are
 * possible in principle and are checked through the alias (-EEXIST from link_attach). -EINVAL if
 * the id is not a dyno instance's name (dyno_instance_name_valid). */
int link_host_ifname(const char *dyno_id, char ret[static IFNAMSIZ]);

/* Create the host bridge if it is missing: up, holding gateway/prefixlen, with the given MTU and
 * a fixed MAC derived from its name (so that it does not change to the lowest MAC of its ports
 * as dynos come and go, which would leave every dyno's ARP entry for the gateway stale). On an
 * existing bridge the MTU, the address and the up flag are brought back to what is asked;
 * nothing else is touched. The MTU is set after creation on purpose: only then does the kernel
 * remember it as chosen by the user and keep it when the last port leaves.
 *
 * -EEXIST (and an error logged, naming the kind of link found) if a link of that name exists and
 * is not a bridge. -EINVAL for a bad name, prefix length (1-32) or MTU (68-65535). */
int link_bridge_ensure(const char *name, const struct in_addr *gateway, int prefixlen,
                       unsigned mtu);

struct link_attach_params {
        const char *dyno_id;    /* owner, stored in the host end's alias */
        const char *netns_path; /* the dyno's network namespace file */
        const char *bridge;     /* host bridge, made by link_bridge_ensure */
        struct in_addr address; /* the dyno's address on eth0 ... */
        int prefixlen;          /* ... and its prefix length (the subnet of the bridge) */
        struct in_addr gateway; /* the bridge's address: the dyno's default route */
        unsigned mtu;           /* of both ends */
        /* A tbf qdisc at the root of eth0 limits what the dyno sends to this many bytes per
         * second (1000..LINK_EGRESS_RATE_MAX); 0: no qdisc of netd's. */
        uint64_t egress_rate;
};

struct link_attach_result {
        char host_ifname[IFNAMSIZ]; /* host end, on the bridge */
        int host_ifindex;
        uint8_t mac[6]; /* of eth0 inside the dyno */
        bool created;   /* false: the dyno was already attached and its link was kept */
};

/* Attach a dyno: a veth pair whose host end (named by link_host_ifname, alias = dyno id) is on
 * the bridge with bridge port isolation on and IPv6 off (disable_ipv6), then up; whose other end is created directly inside
 * the dyno's namespace as eth0 with the address, the MTU, up; the dyno's loopback up and a
 * default route via the gateway (which must be inside address/prefixlen: the kernel refuses a
 * gateway it cannot reach, -ENETUNREACH). With an egress rate, a tbf qdisc at the root of eth0,
 * put there before eth0 goes up; the dyno, without CAP_NET_ADMIN, cannot remove it.
 *
 * Idempotent: if the dyno is already attached (host end with this alias whose peer is the eth0
 * of this namespace) the pair is kept (same MAC, same ifindex) and every setting above is
 * re-applied, which repairs an attach interrupted half-way; the tbf is replaced in place (its
 * counters kept) or, without an egress rate, deleted. A host end of this dyno whose peer
 * is elsewhere (an older namespace of the same id) or without an alias (an attach killed between
 * creating the pair and labelling it) is deleted and the pair made afresh.
 *
 * On failure nothing is left: the pair is deleted (which removes both ends), whether this call
 * created it or found it. Errors: -EEXIST if the host end's name is taken by another dyno's link
 * (hash collision) or by something that is not a veth, or if the namespace already has an eth0
 * that is not this dyno's; -ENODEV if the bridge does not exist or is not a bridge; -ENOENT if
 * the namespace file does not exist, -EINVAL if it is not a network namespace; -EINVAL for bad
 * parameters. */
int link_attach(const struct link_attach_params *p, struct link_attach_result *r);

/* Detach a dyno: delete its host end; the peer, its address and its route go with it. 0 if it
 * was not attached (idempotent). A link that has the dyno's name but belongs to another dyno (by
 * alias) is left alone; one with no alias (an interrupted attach) is deleted. */
int link_detach(const char *dyno_id);
/* link_detach in two halves, for a caller that deletes the link elsewhere (link-deleter.h):
 * the host end of dyno_id's veth that link_detach would delete (*ret_ifindex, and its name),
 * or *ret_ifindex 0 when there is none of the dyno's; then its deletion by ifindex (the pair
 * goes whole; 0 if it is gone already). */
int link_detach_find(const char *dyno_id, int *ret_ifindex, char ret_ifname[static IFNAMSIZ]);
int link_delete_ifindex(int ifindex);

/* The ids of the dynos attached to the bridge, for netd's gc: the aliases of the veths that are
 * ports of the bridge, or that have no master any more (the bridge was deleted and made again),
 * and whose name is the one link_host_ifname gives for their alias, so that an operator's veth is
 * never mistaken for a dyno's. *ret_ids is a NULL-terminated array (free with strv_free). Returns
 * the number of ids. */
int link_list_attached(const char *bridge, char ***ret_ids);

/* Traffic counters of a dyno, AS THE DYNO SEES THEM: rx is what the dyno received (transmitted
 * by the host end), tx what the dyno sent (received by the host end). Bytes include the
 * Ethernet header. -ENOENT if the dyno is not attached. */
struct link_stats {
        uint64_t rx_bytes;
        uint64_t rx_packets;
        uint64_t tx_bytes;
        uint64_t tx_packets;
};
int link_stats(const char *dyno_id, struct link_stats *ret);

/* The counters of every dyno's link, from one dump of the links (one netlink round trip
 * whatever the number of dynos): the host ends of veths whose alias names them, as
 * link_list_attached finds them, sorted by dyno id. Returns the number of entries. */
struct link_dyno_stats {
        char *dyno_id;
        struct link_stats stats;
};
int link_stats_all(struct link_dyno_stats **ret);
void link_dyno_stats_free(struct link_dyno_stats *v, size_t n);
