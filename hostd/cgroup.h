/* cgroup driver: one interface over cgroup v1 (legacy and hybrid hosts) and cgroup v2.
 *
 * hostd works only inside its own subtree: the cgroup it was started in (per hierarchy on
 * v1), plus an optional relative path from the configuration. Each dyno lives in
 * <base>/dynos/<dyno-id>. Nothing outside <base> is ever written. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum cg_mode { CG_MODE_V1, CG_MODE_V2 };

struct cg_limits {
        uint64_t memory;        /* hard limit, bytes (the size's quota) */
        uint64_t memory_swap;   /* swap allowed on top of memory, bytes; 0: none */
        uint32_t cpu_weight;    /* cgroup v2 scale, 1..10000; 100 is one share (v1: *1024/100) */
        uint32_t cpu_quota_us;  /* 0: no quota */
        uint32_t cpu_period_us; /* 0: the kernel's default, 100000 */
        uint64_t pids;          /* pids.max; 0: unlimited */
        const char *cpus;       /* cpuset list ("2-3"); NULL: inherit */
};

struct cg_manager;

/* Detect the mode and hostd's own cgroup, then prepare <top>/<root_rel> (created if needed)
 * with the controllers dynos need. top is parent_rel (the dynos-cgroup setting: a cgroup
 * delegated to hostd outside its own unit, named from the hierarchy's root) when given, else
 * hostd's own cgroup. root_rel may be "" (top itself); it must be a relative path without "..".
 * parent_rel may be NULL or "". -ENOMEDIUM: no cgroup filesystem; -EOPNOTSUPP: memory, cpu or
 * pids is missing; -EBUSY (v2, no parent_rel): a non-root own cgroup that holds processes
 * (hostd itself) cannot hand controllers down, so hostd must leave it first. For parent_rel:
 * -ENOENT: it does not exist (v1: in the memory hierarchy; where another
 * hierarchy lacks it, the own cgroup there is the top); -ELOOP: it is
 * hostd's own cgroup or one of its ancestors; -EACCES, -EROFS: not writable. */
int cg_manager_new(const char *root_rel, const char *parent_rel, struct cg_manager **ret);
void cg_manager_free(struct cg_manager *m);
enum cg_mode cg_manager_mode(const struct cg_manager *m);
const char *cg_mode_name(enum cg_mode mode);

/* Create the dyno's cgroup with its limits. -EEXIST when it already exists. On failure
 * nothing is left behind. */
int cg_create(struct cg_manager *m, const char *id, const struct cg_limits *lim);
/* Move a process into the dyno's cgroup (every hierarchy on v1). */
int cg_attach(struct cg_manager *m, const char *id, pid_t pid);

/* The dyno's cgroup held open, to put a process in without a path lookup, on any thread: fd[]
 * are the cgroup.procs files of its hierarchies (one on v2), for cg_procs_write. On v1 such a
 * write waits for an RCU grace period of the kernel's (the threadgroup lock's writer side, 7
 * to 15 ms on a paravirtualised host) unless another move happened within the last one. On v2
 * dir is also the folder, for clone3's CLONE_INTO_CGROUP: a new process is born there and
 * nothing moves (v1: dir is -1).
 *
 * cg_procs_open_self opens them for a process that will move itself (self: on v1 the "tasks"
 * files, for cg_procs_join_self). The kernel takes no threadgroup lock, and so waits for no
 * grace period, when a thread moves itself (Linux 6.0, "0" written to tasks): a single-threaded
 * child moved that way is in its cgroups within 0.1 ms. */
#define CG_PROCS_MAX 6
struct cg_procs {
        int dir;
        int fd[CG_PROCS_MAX];
        size_t n;
        bool self;
};
#define CG_PROCS_INIT                                                                              \
        {                                                                                          \
                .dir = -1                                                                          \
        }
int cg_procs_open(struct cg_manager *m, const char *id, struct cg_procs *ret);
int cg_procs_open_self(struct cg_manager *m, const char *id, struct cg_procs *ret);
/* Move the calling process, which must have one thread (a process just cloned), into p's
 * cgroups (opened with cg_procs_open_self). Async-signal-safe: no allocation, no lock. On v2
 * p has no files (clone3 into the folder instead) and this does nothing. */
int cg_procs_join_self(const struct cg_procs *p);
/* Write pid into each of p's cgroup.procs. Allocates nothing, touches nothing but p: safe on
 * a worker thread. */
int cg_procs_write(const struct cg_procs *p, pid_t pid);
void cg_procs_close(struct cg_procs *p);
/* Kill every process in the dyno's cgroup with SIGKILL (cgroup.kill where the kernel has it),
 * wait until it is empty (bounded), and remove it. Missing is success. */
int cg_destroy(struct cg_manager *m, const char *id);
/* SIGKILL every process of the dyno's cgroup at once, forks included (cgroup.kill on v2; freeze,
 * kill, thaw on v1), without waiting for them to go. -ENOENT: no such cgroup. */
int cg_kill(struct cg_manager *m, const char *id);
/* Send sig to every process in the dyno's cgroup. Returns the number signalled. */
int cg_signal_all(struct cg_manager *m, const char *id, int sig);
/* 1 when pid is in the dyno's cgroup, 0 when not, negative errno (-ESRCH: no such pid). */
int cg_contains(struct cg_manager *m, const char *id, pid_t pid);
/* Number of processes in the dyno's cgroup. */
int cg_count_procs(struct cg_manager *m, const char *id);
/* OOM kills the kernel counted in the dyno's cgroup (memory.events oom_kill on v2,
 * memory.oom_control oom_kill on v1). */
int cg_oom_kills(struct cg_manager *m, const char *id, uint64_t *ret);
/* A descriptor the kernel makes ready when the dyno's cgroup met the OOM killer (v1: an eventfd
 * registered for memory.oom_control, EPOLLIN; v2: memory.events, EPOLLPRI), to be taken with
 * cg_memory_watch_ack; cg_oom_kills then tells the count. On v1 the kernel signals before it
 * kills: read the count again a moment later. */
int cg_oom_watch(struct cg_manager *m, const char *id, int *ret_fd, uint32_t *ret_epoll_events);
/* The most memory (swap included where the kernel counts it) the dyno's processes used at once
 * since the last call (v1, which resets the mark) or since the cgroup was made (v2's
 * memory.peak, plus memory.swap.peak where there is one); without a peak file, the use now. */
int cg_memory_peak(struct cg_manager *m, const char *id, uint64_t *ret);
/* Memory the dyno's processes use now: in memory (charged page cache included) and in swap. */
int cg_memory_usage(struct cg_manager *m, const char *id, uint64_t *ret_memory, uint64_t *ret_swap);
/* CPU time the dyno's processes used (microseconds) and how many tasks it has now. */
int cg_cpu_pids(struct cg_manager *m, const char *id, uint64_t *ret_cpu_usec, uint64_t *ret_pids);
/* A descriptor the kernel makes ready when the dyno's memory use may have passed its quota
 * (and so gone to swap): on v1 an eventfd (EPOLLIN; read 8 bytes to take the event) for a
 * threshold at quota bytes of memory.memsw.usage_in_bytes; on v2 memory.events, which is
 * EPOLLPRI after each change (call cg_memory_watch_ack to take it). -EOPNOTSUPP: the kernel
 * does not account swap (v1 without memsw).
 *
 * On v1 the threshold is not registered yet: that is *ret_reg, for cg_event_register, which
 * waits for an RCU grace period of the kernel's (10 to 20 ms on a paravirtualised host), so
 * hostd does it off its loop (offload.h); then cg_event_reg_close. On v2 *ret_reg holds
 * nothing (cg_event_register does nothing). */
struct cg_event_reg {
        int control; /* cgroup.event_control; -1: nothing to register */
        int efd;     /* the registration's own copy of the eventfd */
        int file;    /* the file watched */
        uint64_t arg;
        bool has_arg;
};
#define CG_EVENT_REG_INIT                                                                          \
        {                                                                                          \
                .control = -1, .efd = -1, .file = -1                                               \
        }
int cg_memory_watch(struct cg_manager *m, const char *id, uint64_t quota, int *ret_fd,
                    uint32_t *ret_epoll_events, struct cg_event_reg *ret_reg);
/* Write the registration. Allocates nothing, touches nothing but reg: safe on a worker. */
int cg_event_register(const struct cg_event_reg *reg);
void cg_event_reg_close(struct cg_event_reg *reg);
void cg_memory_watch_ack(struct cg_manager *m, int fd);
/* What a dyno sees at /sys/fs/cgroup: its own cgroup only, as the root of its cgroup
 * namespace. On v2 one cgroup2 mount; on v1 one mount per hierarchy in which the dyno has a
 * folder, named as on the host ("memory", "cpu,cpuacct") and given the options that name that
 * hierarchy. Fixed-size, so that the dyno's first process needs no allocation. */
#define CG_VIEW_MAX 8
struct cg_view {
        bool v2;
        size_t n; /* v1 */
        struct {
                char name[64];    /* the folder under /sys/fs/cgroup */
                char options[64]; /* the hierarchy's controllers, or name=... */
        } mounts[CG_VIEW_MAX];
};
int cg_dyno_view(struct cg_manager *m, const char *id, struct cg_view *ret);
/* The ids of every dyno cgroup that exists (for reconciliation): a NULL-terminated strv. */
int cg_list(struct cg_manager *m, char ***ret);
/* Path of a controller's file for the dyno, for tests and inspect: e.g. ("memory",
 * "memory.limit_in_bytes") on v1, (NULL, "memory.max") on v2. Allocated. */
int cg_file_path(struct cg_manager *m, const char *id, const char *controller, const char *file,
                 char **ret);
/* The dyno's cgroup path relative to the hierarchy root (the memory hierarchy on v1). */
int cg_dyno_path(struct cg_manager *m, const char *id, char **ret);

/* Dedicated CPUs (cpus.c). The CPUs dynos may be given: <base>/dynos' cpuset.cpus on v1 (a
 * copy of hostd's own), hostd's own cpuset.cpus.effective on v2. -EOPNOTSUPP: no cpuset
 * controller. Allocated CPU list. */
int cg_cpus_available(struct cg_manager *m, char **ret);
/* The dyno's cpuset.cpus as written ("" when it inherits). -ENOENT: no such cgroup (on v1: no
 * cpuset folder, a dyno made without a cpuset). */
int cg_get_cpus(struct cg_manager *m, const char *id, char **ret);
/* Change the CPUs of a live dyno's cgroup; its processes move at once. -ENOENT as above. */
int cg_set_cpus(struct cg_manager *m, const char *id, const char *cpus);

/* Figures of a dyno's cgroup (cg_stats_read). A file the kernel does not have (no swap
 * accounting, no PSI) leaves its figures at 0. */
struct cg_psi {
        bool present;
        /* Share of time, in percent, over the last 10, 60 and 300 s; and the total, in
         * microseconds. "some": at least one task stalled; "full": every non-idle one. */
        double some_avg[3], full_avg[3]; /* avg10, avg60, avg300 */
        uint64_t some_total_usec, full_total_usec;
};

struct cg_stats {
        /* In memory now, page cache included: v1 total_rss + total_cache of memory.stat (the
         * exact figure, where usage_in_bytes is a fuzz value), v2 memory.current. */
        uint64_t memory;
        uint64_t rss;             /* anonymous memory (v1 total_rss, v2 anon) */
        uint64_t cache;           /* page cache (v1 total_cache, v2 file) */
        uint64_t swap;            /* v1 total_swap, v2 memory.swap.current */
        uint64_t pgpgin, pgpgout; /* pages; see docs/INTERNALS.md for what v2 has instead */
        uint64_t cpu_usec, throttled_usec;
        uint64_t pids;
        uint64_t oom_kills;
        /* Tasks running or waiting for a CPU, plus those in uninterruptible sleep, now (the
         * kernel's load average input); -1 where the kernel cannot tell per cgroup (v2). */
        int64_t runnable;
        struct cg_psi cpu_psi, memory_psi, io_psi; /* v2 only */
};

/* The control files of one dyno's cgroup, kept open so that each sample costs a pread per
 * file. Open again when the dyno's cgroup changes (a new name, a restart). */
struct cg_stat_files;
/* -ENOENT: the cgroup is not there. */
int cg_stats_open(struct cg_manager *m, const char *id, struct cg_stat_files **ret);
void cg_stat_files_free(struct cg_stat_files *f);
/* Read every figure. -ENODEV (or another negative errno) when the cgroup went away. */
int cg_stats_read(struct cg_manager *m, struct cg_stat_files *f, struct cg_stats *ret);
/* The same for n dynos, cheaper than n calls where the kernel can answer for many at once
 * (v1's runnable counts). ret_r[i] is each one's result. */
void cg_stats_read_many(struct cg_manager *m, struct cg_stat_files **f, struct cg_stats *ret,
                        int *ret_r, size_t n);
/* A descriptor that epoll reports (with *ret_events) when the dyno's OOM kill count may have
 * changed; cg_stats_oom_event then makes the next two samples read it. -1: there is none,
 * and every sample reads the count. */
int cg_stats_oom_fd(const struct cg_stat_files *f, uint32_t *ret_events);
void cg_stats_oom_event(struct cg_stat_files *f);

/* Shared with the sampler's host files (/proc/pressure/... has the same format). */
/* "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and the same for "full". */
int cg_parse_psi(const char *buf, size_t len, struct cg_psi *ret);
/* pread the file at offset 0 into buf (up to len - 1 bytes, NUL added): bytes read, or a
 * negative errno. */
ssize_t cg_pread(int fd, char *buf, size_t len);
