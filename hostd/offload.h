/* Kernel calls that wait, off the loop: one worker thread runs them in order, and the loop
 * learns of each end through an eventfd and finishes the job there.
 *
 * On this kind of host some cgroup writes wait for an RCU grace period (7 to 20 ms on a
 * paravirtualised machine): a v1 memory threshold registration (cgroup.event_control), and a
 * cgroup.procs write (the threadgroup lock's writer side). The loop must not wait for them.
 *
 * A job's run() touches only the job's own data (its own file descriptors, numbers and
 * buffers: never the manager's), and sets its result there; done() then runs on the loop,
 * after run(), and frees the job. An owner that goes away before done() leaves the job be and
 * marks it so itself (done() still runs, and must not touch the owner). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

struct offload;

struct offload_job {
        struct offload_job *next;
        void (*run)(struct offload_job *j);  /* on the worker */
        void (*done)(struct offload_job *j); /* on the loop; frees the job */
};

int offload_new(sd_event *e, struct offload **ret);
/* Every job queued runs and is done (on the calling thread) before the worker ends. */
void offload_free(struct offload *o);
/* An urgent job (one a start waits for) runs before the others queued, after the urgent ones
 * queued before it. */
void offload_submit(struct offload *o, struct offload_job *j, bool urgent);
/* Jobs submitted and not yet done. */
size_t offload_pending(const struct offload *o);
