/* Shared between cgroup.c and the two drivers (cgroup-v1.c, cgroup-v2.c). Not for other parts
 * of hostd: they use cgroup.h. */
#pragma once

#include "cgroup.h"

#include <stddef.h>
#include <sys/types.h>

/* The controllers hostd uses. On v2 they all live in the one unified hierarchy. */
enum cg_controller {
        CG_CTRL_MEMORY,
        CG_CTRL_CPU,
        CG_CTRL_CPUACCT,
        CG_CTRL_PIDS,
        CG_CTRL_FREEZER,
        CG_CTRL_CPUSET,
        _CG_CTRL_MAX,
};

/* One mounted hierarchy: several controllers share one when they are co-mounted
 * ("cpu,cpuacct") and, on v2, all of them share the unified one. */
struct cg_hier {
        char *mount;    /* "/sys/fs/cgroup/memory" */
        char *own_rel;  /* hostd's own cgroup, relative to the mount ("" is the root) */
        char *top_rel;  /* where root_rel starts: parent_rel where configured and present in
                         * this hierarchy, else own_rel */
        char *base_rel; /* top_rel + "/" + root_rel: "/process_api/x/hostd" */
        char *lib_ctrl; /* a controller name libcgroup knows this hierarchy by */
        char *options;  /* v1: its controllers as /proc/self/cgroup lists them ("cpu,cpuacct"),
                         * what a mount of the same hierarchy names; NULL: lib_ctrl alone */
        unsigned ctrls; /* bit (1u << enum cg_controller) for each controller in it */
};

struct cg_manager {
        const struct cg_ops *ops;
        char *root_rel;
        char *parent_rel; /* dynos-cgroup: "" (none) or "/system.slice/hostd-dynos.service" */
        struct cg_hier hier[_CG_CTRL_MAX];
        size_t n_hier;
        int hier_of[_CG_CTRL_MAX]; /* index into hier, -1: not mounted */
        bool cpuset_enabled;       /* v2: +cpuset is on in the subtree_control chain */
        int taskstats_fd;          /* v1: generic netlink socket for CGROUPSTATS (taskstats.c) */
        uint16_t taskstats_family; /* 0: not resolved yet, or the kernel has no taskstats */
        bool taskstats_tried;
};

/* The files cg_stats_read reads; each driver opens those its version has (-1: none). */
enum cg_stat_file {
        CG_STAT_MEMORY_STAT,
        CG_STAT_MEMORY_USAGE, /* v2 memory.current (v1 adds up memory.stat) */
        CG_STAT_SWAP,         /* v2 memory.swap.current */
        CG_STAT_OOM,          /* v1 memory.oom_control, v2 memory.events */
        CG_STAT_CPU_USAGE,    /* v1 cpuacct.usage */
        CG_STAT_CPU_STAT,     /* v1 cpu.stat (throttling), v2 cpu.stat (usage and throttling) */
        CG_STAT_PIDS,
        CG_STAT_CPU_PRESSURE, /* v2, where the kernel has PSI */
        CG_STAT_MEMORY_PRESSURE,
        CG_STAT_IO_PRESSURE,
        CG_STAT_TASKS_DIR, /* v1: the cpuacct folder, for the taskstats request */
        _CG_STAT_MAX,
};

struct cg_stat_files {
        int fd[_CG_STAT_MAX];
        /* The OOM kill count is read again only after the kernel said it may have changed:
         * oom_event_fd (v1: an eventfd on memory.oom_control; v2: memory.events itself) is
         * ready then. -1: read in every sample. */
        int oom_event_fd;
        uint32_t oom_epoll_events;
        unsigned oom_reads_due; /* samples that still read it */
        uint64_t oom_kills;
};

/* Whether this sample reads the OOM kill count (else f->oom_kills stands). */
bool cg_stats_oom_due(struct cg_stat_files *f);

/* Parsers of the control files' own formats, over a buffer that need not end in NUL. */
struct cg_key {
        const char *key;
        uint64_t *dst;
};
/* "key value" lines: each key of keys that is there sets its *dst; the number set. */
size_t cg_parse_keyed(const char *buf, size_t len, const struct cg_key *keys, size_t n_keys);
/* One unsigned number and an optional newline. */
int cg_parse_u64(const char *buf, size_t len, uint64_t *ret);

struct cg_ops {
        enum cg_mode mode;
        /* Find the hierarchies and hostd's place in them, then create <base>/dynos. */
        int (*setup)(struct cg_manager *m);
        int (*create)(struct cg_manager *m, const char *id, const struct cg_limits *lim);
        /* Open what puts a process into the cgroup (cg_procs_open; self: cg_procs_open_self);
         * ret is CG_PROCS_INIT. */
        int (*procs_open)(struct cg_manager *m, const char *id, bool self, struct cg_procs *ret);
        /* Start killing everything in the cgroup; cg_destroy then waits and removes. */
        int (*kill)(struct cg_manager *m, const char *id);
        /* The folder whose cpuset files are the dyno's (id NULL: <base>/dynos on v1, hostd's
         * own cgroup on v2), making the cpuset controller available there first on v2. */
        int (*cpuset_dir)(struct cg_manager *m, const char *id, char **ret);
        /* The memory controller's file and key that count OOM kills. */
        const char *oom_file;
        /* Open the dyno's statistics files into f (every fd -1 beforehand). */
        int (*stats_open)(struct cg_manager *m, const char *id, struct cg_stat_files *f);
        int (*stats_read)(struct cg_manager *m, struct cg_stat_files *f, struct cg_stats *ret);
        /* Optional: the runnable counts of n dynos at once (st[i]->runnable). */
        void (*stats_tasks)(struct cg_manager *m, struct cg_stat_files **f, struct cg_stats **st,
                            size_t n);
};

extern const struct cg_ops cg_v1_ops;
extern const struct cg_ops cg_v2_ops;

const char *cg_controller_name(enum cg_controller c);
/* The hierarchy that answers for "the dyno" as a whole: memory on v1, the unified one on v2. */
struct cg_hier *cg_primary(struct cg_manager *m);
struct cg_hier *cg_hier_for(struct cg_manager *m, enum cg_controller c);

/* Add a hierarchy for controller c at mount with hostd's own cgroup own (as in
 * /proc/self/cgroup), or join the one already added for that mount. */
int cg_add_hier(struct cg_manager *m, enum cg_controller c, const char *mount, const char *own);

/* "<mount><base_rel>/dynos/<id>" (id NULL: "<mount><base_rel>/dynos"). */
int cg_hier_dyno_dir(const struct cg_manager *m, const struct cg_hier *h, const char *id,
                     char **ret);
/* The same relative to the mount. */
int cg_hier_dyno_rel(const struct cg_manager *m, const struct cg_hier *h, const char *id,
                     char **ret);

/* The cgroup path of pid (0: self) in the hierarchy that holds controller (NULL: the v2
 * unified "0::" line), from /proc/<pid>/cgroup. */
int cg_proc_cgroup_path(pid_t pid, const char *controller, char **ret);
/* The same, and the line's controllers field ("cpu,cpuacct"; "" on the unified line). */
int cg_proc_cgroup_find(pid_t pid, const char *controller, char **ret, char **ret_controllers);

/* cgroupfs helpers: small direct reads and writes of one control file in folder dir. */
int cg_write(const char *dir, const char *file, const char *value);
int cg_write_u64(const char *dir, const char *file, uint64_t value);
int cg_read(const char *dir, const char *file, char **ret); /* trailing newline removed */
bool cg_file_exists(const char *dir, const char *file);
/* The pids in dir/cgroup.procs. */
int cg_read_pids(const char *dir, pid_t **ret, size_t *ret_n);
/* Send sig to every pid in dir/cgroup.procs; the number signalled. -ENOENT when dir is gone. */
int cg_kill_dir(const char *dir, int sig);
/* mkdir that reports whether it made the folder: 1 made, 0 existed (and is a folder). */
int cg_mkdir(const char *path);

/* libcgroup wrappers: they return 0 or a negative errno, never an ECG* code. */
int cg_lib_errno(int ecg);
int cg_lib_init(void);
/* Remove the empty cgroup rel of hierarchy h. Missing is success. */
int cg_lib_rmdir(const struct cg_hier *h, const char *rel);
/* The number after "key " in a keyed control file ("oom_kill 3"). */
int cg_lib_read_key(const struct cg_hier *h, const char *rel, const char *file, const char *key,
                    uint64_t *ret);

int cg_validate_id(const char *id);
