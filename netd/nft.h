/* netd's firewall: one nftables table (family inet) that netd owns, managed with libnftables.
 *
 * nft_setup() writes the whole table in one transaction; after that, a dyno coming or going
 * changes only elements of its sets and maps, never a rule:
 *
 *   set dynos          ipv4_addr                       addresses of attached dynos
 *   map ports          inet_service : ipv4_addr . inet_service
 *                                                      host port -> dyno address . $PORT
 *   set allowed_host   ipv4_addr . inet_proto . inet_service
 *                                                      host services dynos may reach (DNS)
 *   set blocked        ipv4_addr (intervals)           never forwarded from dynos
 *                                                      (169.254.0.0/16 and the config's)
 *
 * and the chains:
 *   prerouting (nat)   TCP to a local address on a mapped host port: DNAT to the dyno
 *   output (nat)       the same for connections the host itself opens (not over 127.0.0.0/8,
 *                      which the kernel would not route to the bridge)
 *   postrouting (nat)  masquerade the subnet leaving by any interface but the bridge
 *   forward (filter)   from the bridge: drop to the bridge (dyno to dyno, L3; port isolation
 *                      is the L2 guard), non-IPv4, sources not in @dynos, @blocked; then
 *                      accept established/related and DNATed connections to the bridge; drop
 *                      anything else towards the bridge
 *   input (filter)     from the bridge to the host: accept established/related and
 *                      @allowed_host, drop the rest
 *
 * There is no hairpin masquerade: a dyno reaching a host port (its own or another's) is
 * dyno-to-dyno traffic, which the forward chain drops. The base chains have policy accept, so
 * the host's own tables still apply; netd's table only ever takes traffic away.
 *
 * Every command is built from validated values only: addresses printed with inet_ntop, ports
 * as integers, names matched against a strict character set. The functions return 0 or a
 * negative errno; when err is not NULL it receives a one-line message naming the object and
 * the cause (the validation failure, or nft's own error with the command it refused). They
 * do not log. */
#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define NFT_TABLE_DEFAULT "netd"
#define NFT_BRIDGE_DEFAULT "dyno0"
#define NFT_HOST_PORT_MIN_DEFAULT 20000
#define NFT_HOST_PORT_MAX_DEFAULT 29999
#define NFT_NAME_MAX 32 /* table: [A-Za-z_][A-Za-z0-9_-]{0,31} */

struct nft_cidr {
        struct in_addr addr; /* network byte order, host bits zero */
        unsigned prefixlen;  /* 0..32 */
};

/* A service on the host that dynos may reach despite the input drop, e.g. a DNS resolver. */
struct nft_host_service {
        struct in_addr addr; /* one of the host's addresses, e.g. the gateway */
        uint8_t proto;       /* IPPROTO_TCP or IPPROTO_UDP */
        uint16_t port;       /* 1..65535 */
};

struct nft_config {
        const char *table;      /* NULL or "": NFT_TABLE_DEFAULT */
        const char *bridge;     /* NULL or "": NFT_BRIDGE_DEFAULT; [A-Za-z0-9_-]{1,15} */
        struct nft_cidr subnet; /* the dynos' subnet, prefix 8..30 */
        uint16_t host_port_min, host_port_max; /* both 0: the defaults above */
        const struct nft_host_service *allowed_host;
        size_t n_allowed_host;
        const struct nft_cidr *blocked; /* besides 169.254.0.0/16, always blocked */
        size_t n_blocked;
};

/* A host port mapped to a web dyno. */
struct nft_port_map {
        uint16_t host_port;
        struct in_addr addr;
        uint16_t dyno_port;
};

/* The per-dyno elements: what nft_list_elements() finds, what nft_setup() keeps. */
struct nft_elements {
        struct in_addr *dynos;
        size_t n_dynos;
        struct nft_port_map *ports;
        size_t n_ports;
};

void nft_elements_done(struct nft_elements *e); /* frees the arrays, zeroes *e */

struct nft_fw;

/* Validate and copy the configuration and open a libnftables context. Touches no ruleset.
 * The context's netlink socket belongs to the network namespace the caller is in now: every
 * later call acts there, whatever namespace the caller has moved to since.
 * -EINVAL (with err) for a bad name, subnet, range or service; -ENOMEM. */
int nft_fw_new(const struct nft_config *c, struct nft_fw **ret, char *err, size_t errlen);
struct nft_fw *nft_fw_free(struct nft_fw *fw);
static inline void nft_fw_freep(struct nft_fw **fw) { nft_fw_free(*fw); }
#define _cleanup_nft_fw_ __attribute__((cleanup(nft_fw_freep)))

/* (Re)create the table in one transaction ("add table; delete table; table { ... }"), so a
 * restart of netd replaces whatever an earlier run left. keep (may be NULL) lists the
 * elements to install in the same transaction, so dynos that outlive a restart of netd keep
 * their traffic without a gap; each is validated as nft_dyno_add() would. */
int nft_setup(struct nft_fw *fw, const struct nft_elements *keep, char *err, size_t errlen);

/* Delete the table. A missing table is fine. */
int nft_teardown(struct nft_fw *fw, char *err, size_t errlen);

/* Add a dyno's address and, when host_port is not 0, its mapping host_port -> addr:dyno_port,
 * in one transaction. Idempotent. addr must be a host address of the subnet (not its network
 * or broadcast address); host_port 0 or in the configured range; dyno_port 1..65535 when
 * host_port is set. -EEXIST (nothing changed) if host_port already maps elsewhere. */
int nft_dyno_add(struct nft_fw *fw, struct in_addr addr, uint16_t host_port, uint16_t dyno_port,
                 char *err, size_t errlen);

/* Remove a dyno's address and its mapping at host_port (0: none) in one transaction.
 * Idempotent: missing elements are fine, and so is a missing table. A mapping at host_port
 * that points to another address (the port was given to another dyno since) is left alone.
 * dyno_port may be 0 when unknown: it is then read from the map first, which costs a fetch of
 * the whole map (nft 1.0.6 caches all elements for "get element"), so pass it when known. */
int nft_dyno_remove(struct nft_fw *fw, struct in_addr addr, uint16_t host_port, uint16_t dyno_port,
                    char *err, size_t errlen);

/* The elements of the dynos set and the ports map, for gc. On success *ret owns its arrays
 * (nft_elements_done()). */
int nft_list_elements(struct nft_fw *fw, struct nft_elements *ret, char *err, size_t errlen);

/* The table's name, as nft_fw_new() settled it. */
const char *nft_fw_table(const struct nft_fw *fw);
