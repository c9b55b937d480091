/* Per-cgroup task counts from the kernel's taskstats generic netlink family
 * (CGROUPSTATS_CMD_GET): binary, one request and one answer, no text. The kernel answers
 * for cgroup v1 folders only. */
#pragma once

#include <stdint.h>

struct cgroupstats;

/* A generic netlink socket, and the taskstats family's id. -EOPNOTSUPP: the kernel has no
 * taskstats. */
int taskstats_open(int *ret_fd, uint16_t *ret_family);
/* The counts of the tasks in the cgroup whose folder is open at dirfd. */
int taskstats_cgroup(int fd, uint16_t family, int dirfd, struct cgroupstats *ret);
