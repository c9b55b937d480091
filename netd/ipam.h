/* IP address allocation for netd: one IPv4 address per dyno from a configured subnet,
 * persisted so that a crash or restart of netd loses and leaks nothing.
 *
 * The subnet (a CIDR, /8 to /30) is laid out as:
 *   network address  never handed out
 *   network + 1      the gateway (the bridge's address), never handed out
 *   network + 2 ...  the dynos'
 *   broadcast        never handed out
 *
 * An address is never handed out while its previous owner's network namespace still exists.
 * A released address goes to quarantine with its owner's dyno id; it leaves quarantine only
 * once ns_alive(owner) says false. Every call that changes the state also drops the
 * quarantine entries whose namespace is gone (one ns_alive call per quarantined address);
 * ipam_sweep() does only that. A dyno that allocates again while its own old address is in
 * quarantine gets that address back: the namespace holding it is its own.
 *
 * New addresses go round-robin: the first free address after the one handed out last,
 * wrapping round to the lowest, so that a released address is reused only once the others
 * have been, which limits surprises from stale ARP entries. The position is a hint kept in the
 * lock file (below), not in the state file, which therefore depends only on what is held; when
 * the hint is missing, the search starts after the highest address in use.
 *
 * State file (e.g. /var/lib/netd/ipam), text, one line per address in use, sorted by address:
 *   netd-ipam 1 10.217.0.0/16     header: format version, subnet
 *   a 10.217.0.2 web.1-5f3c       allocated to a dyno
 *   q 10.217.0.3 worker.1-77ab    in quarantine; the id is the previous owner's
 * Each dyno id ([A-Za-z0-9][A-Za-z0-9._-]{0,62}) and each address appears at most once. It is
 * parsed strictly: an error names the line, and nothing is ever discarded silently.
 *
 * Every change is written (write_file_whole: temporary file, fsync, rename) before the call
 * returns success; a call that fails changes nothing, in memory or on disk. So an address the
 * caller was given is in the file that a restarted netd reads, and one that is there but that
 * no caller saw (a crash between the write and the reply) belongs to a dyno id that the caller
 * either asks for again (and gets the same address) or that ipam_gc() frees. The folder is
 * not fsynced after the rename: only a crash of the machine could lose the rename, and the
 * file is then the previous version, whole, which is as good: every namespace it names died
 * with the machine, and netd's start detaches those and lets their quarantine go.
 * Each write rewrites the whole file: O(n), a few tens of kilobytes for thousands of dynos;
 * the fsync costs more than the formatting.
 *
 * An open ipam holds an exclusive flock() on "<path>.lock": a second opener (another netd)
 * gets -EBUSY rather than overwriting the first one's allocations. The lock file also holds
 * the round-robin position (an address, not fsynced: it only needs to survive a restart of
 * netd, and after a reboot there is no stale ARP entry left to avoid). Temporary files that a
 * crash in the middle of a write left (".#<name>.<pid>") are removed at open.
 *
 * Functions return a negative errno on failure. Lookups are O(log n); memory is a bitmap of
 * the subnet (2 MiB for a /8) plus the entries. Not thread-safe: netd has one loop. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define IPAM_PREFIX_MIN 8
#define IPAM_PREFIX_MAX 30

struct ipam;

/* Whether the network namespace of dyno_id still exists (netd: the bind mount
 * /run/hostd/netns/<id> is there). When unsure (an error other than ENOENT), say true: the
 * address then stays in quarantine a little longer, which is safe. */
typedef bool (*ipam_ns_alive_t)(const char *dyno_id, void *userdata);

struct ipam_entry {
        char dyno_id[DYNO_INSTANCE_NAME_MAX + 1];
        struct in_addr addr;
        bool quarantined; /* released; dyno_id is the previous owner */
};

struct ipam_usage {
        unsigned capacity;    /* addresses for dynos: the subnet's size minus 3 */
        unsigned allocated;   /* held by dynos */
        unsigned quarantined; /* released, waiting for their old namespace to go */
};

/* [A-Za-z0-9][A-Za-z0-9._@-]{0,79}: hostd's dyno ids, and "<id>@<n>" for an instance that
 * overlaps an earlier one during a daily cycle. */

/* Parse "a.b.c.d/p" strictly (dotted quad without leading zeros, host bits zero, prefix /8 to
 * /30, not inside 0/8, 127/8, 169.254/16 or 224/3). 0, or -EINVAL and a message in err. For
 * netd's configuration check as much as for ipam_open(). */
int ipam_parse_subnet(const char *s, struct in_addr *ret_network, unsigned *ret_prefix, char *err,
                      size_t errlen);

/* Open the state file at path for subnet (as ipam_parse_subnet), creating it when missing
 * (its folder must exist), and take the lock. ns_alive may be NULL: then no namespace is ever
 * alive and quarantine is left at the next change. Errors, with err naming the file and the
 * line: -EINVAL for a bad subnet, a corrupt file, or a file that records another subnet
 * while it still holds addresses (changing the subnet under live dynos must be deliberate:
 * remove the file; a file holding none is rewritten for the new subnet); -EBUSY when another
 * process holds the lock; other errnos from the file system. */
int ipam_open(const char *path, const char *subnet, ipam_ns_alive_t ns_alive, void *userdata,
              struct ipam **ret, char *err, size_t errlen);
void ipam_free(struct ipam *m);
static inline void ipam_freep(struct ipam **m)
{
        if (*m)
                ipam_free(*m);
}
#define _cleanup_ipam_ __attribute__((cleanup(ipam_freep)))

/* The gateway (the network's first address) and the broadcast address. */
struct in_addr ipam_gateway(const struct ipam *m);
struct in_addr ipam_broadcast(const struct ipam *m);
void ipam_usage(const struct ipam *m, struct ipam_usage *ret);

/* The address of dyno_id: the one it holds already (returns 0, nothing written), else its own
 * old address back from quarantine, else the next free address round-robin (returns 1 for
 * both, once persisted). -EINVAL for an invalid id; -ENOSPC when every address is held or in
 * quarantine behind a live namespace. */
int ipam_allocate(struct ipam *m, const char *dyno_id, struct in_addr *ret);
/* Put dyno_id's address in quarantine (left at once when its namespace is already gone).
 * Returns 1, once persisted; 0 when dyno_id holds no address (nothing written). */
int ipam_release(struct ipam *m, const char *dyno_id);
/* 0 and the address (ret may be NULL), or -ENOENT when dyno_id holds none (being in
 * quarantine is holding none); -EINVAL for an invalid id. */
int ipam_lookup(struct ipam *m, const char *dyno_id, struct in_addr *ret);
/* Every address in use, allocated and quarantined, sorted by address. *ret is malloc'ed (NULL
 * when there are none); with include_quarantined false, only the allocations. */
int ipam_list(struct ipam *m, bool include_quarantined, struct ipam_entry **ret, size_t *ret_n);
/* Release every allocation whose dyno id is not in live (a NULL-terminated strv; NULL means
 * none is live). The freed ids, sorted, go to *ret_freed (may be NULL; a strv, possibly
 * empty). Returns how many were freed, once persisted. */
int ipam_gc(struct ipam *m, char *const *live, char ***ret_freed);
/* Leave quarantine for every address whose previous owner's namespace is gone. Returns how
 * many, once persisted (0: nothing written). */
int ipam_sweep(struct ipam *m);
