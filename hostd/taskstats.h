/* Per-cgroup task counts from the kernel's taskstats generic netlink family
 * (CGROUPSTATS_CMD_GET): binary, one request and one answer, no text. The kernel answers
 * for cgroup v1 folders only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cgroupstats;

/* A generic netlink socket, and the taskstats family's id. -EOPNOTSUPP: the kernel has no
 * taskstats. */
int taskstats_open(int *ret_fd, uint16_t *ret_family);
/* The counts of the tasks in up to TASKSTATS_BATCH cgroups (their folders open at dirfds[]):
 * the requests go in one message and the
 * answers come back with one recvmmsg, so a round over many cgroups costs two system calls
 * per batch rather than two per cgroup. ok[i] says whether ret[i] was answered. Returns the
 * number answered, or a negative errno. */
#define TASKSTATS_BATCH 64
int taskstats_cgroups(int fd, uint16_t family, const int *dirfds, size_t n, struct cgroupstats *ret,
                      bool *ok);
