/* The deletion of dynos' veths, off netd's loop: one worker thread deletes them in the order
 * they were queued.
 *
 * Why: the kernel's unregister of a net device waits for RCU before it returns
 * (synchronize_rcu_expedited under the RTNL lock, then an rcu_barrier() after it), 15 to 30 ms
 * on a paravirtualised host against 1 to 3 ms for everything else a detach does. The caller of
 * Detach needs the dyno cut off (its firewall elements gone, its address and port released),
 * which is done before the reply; the link itself goes a moment later, and the loop serves
 * other calls meanwhile.
 *
 * A queued link is known by its ifindex (the kernel does not hand an ifindex out again soon:
 * it allocates them cyclically) and by its name, which the loop uses to wait for a pending
 * deletion before it makes a link of that name again (link_deleter_wait) and to leave a
 * pending link alone when it looks for orphans (link_deleter_pending). A deletion that fails
 * is logged; the veth is then an orphan that the next gc or start of netd removes (it belongs
 * to no attachment any more), or that goes with the dyno's namespace.
 *
 * The worker runs with every signal blocked and in the network namespace netd had when it
 * made it (setns() of the loop's thread does not change the worker's). Only the loop's thread
 * calls these functions. */
#pragma once

#include <net/if.h>
#include <stdbool.h>

struct link_deleter;

/* 0, or a negative errno (the thread could not be made). */
int link_deleter_new(struct link_deleter **ret);
/* Deletes everything still queued, then ends the worker. */
void link_deleter_free(struct link_deleter *d);
/* Queue the deletion of the link ifindex, named ifname, the host end of dyno_id's veth (for the
 * log). -ENOMEM, or 0. */
int link_deleter_queue(struct link_deleter *d, int ifindex, const char *ifname,
                       const char *dyno_id);
/* Whether a link called ifname is queued or being deleted. */
bool link_deleter_pending(struct link_deleter *d, const char *ifname);
/* Return once no link called ifname is queued or being deleted. */
void link_deleter_wait(struct link_deleter *d, const char *ifname);
/* Return once the queue is empty and the worker idle: how many deletions were pending. */
unsigned link_deleter_drain(struct link_deleter *d);
