/* cgroup v1 driver (legacy and hybrid hosts): one hierarchy per controller, or per group of
 * co-mounted controllers, each with hostd's own place in it. */
#include "cgroup-internal.h"
#include "taskstats.h"
#include "util.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <linux/cgroupstats.h>

#include <libcgroup.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>

/* Memory first: it is the primary hierarchy, and cg_create makes it first so that an
 * existing dyno is reported before anything else is touched. */
static const enum cg_controller v1_controllers[] = {
        CG_CTRL_MEMORY, CG_CTRL_CPU, CG_CTRL_CPUACCT, CG_CTRL_PIDS, CG_CTRL_FREEZER, CG_CTRL_CPUSET,
};

static bool v1_required(enum cg_controller c)
{
        return c == CG_CTRL_MEMORY || c == CG_CTRL_CPU || c == CG_CTRL_PIDS;
}

#define BIT(c) (1u << (c))

/* Make one level of hostd's tree (a component of root_rel, or "dynos") in hierarchy h, with
 * libcgroup: this runs once at start, where its cost does not matter. */
static int v1_prepare_level(const struct cg_hier *h, const char *parent_rel, const char *rel,
                            bool *ret_created)
{
        _cleanup_free_ char *path = strjoin3(h->mount, rel, NULL);
        _cleanup_free_ char *parent = strjoin3(h->mount, parent_rel, NULL);
        if (!path || !parent)
                return -ENOMEM;

        struct stat st;
        bool exists = stat(path, &st) == 0;
        if (!exists && errno != ENOENT)
                return -errno;
        if (exists && !S_ISDIR(st.st_mode))
                return -ENOTDIR;
        *ret_created = false;

        bool cpuset = h->ctrls & BIT(CG_CTRL_CPUSET);
        _cleanup_free_ char *cpus = NULL, *mems = NULL;
        if (cpuset) {
                /* v1 cpuset children start with empty cpus and mems, and no task can join a
                 * cpuset without both: copy the parent's into every level we own. */
                if (exists) {
                        _cleanup_free_ char *c = NULL, *mm = NULL;
                        if (cg_read(path, "cpuset.cpus", &c) == 0 && *c &&
                            cg_read(path, "cpuset.mems", &mm) == 0 && *mm)
                                return 0;
                }
                int r = cg_read(parent, "cpuset.cpus", &cpus);
                if (r < 0)
                        return r;
                r = cg_read(parent, "cpuset.mems", &mems);
                if (r < 0)
                        return r;
        } else if (exists)
                return 0;

        struct cgroup *cg = cgroup_new_cgroup(rel);
        if (!cg)
                return -ENOMEM;
        int r = 0;
        struct cgroup_controller *ctl = cgroup_add_controller(cg, cpuset ? "cpuset" : h->lib_ctrl);
        if (!ctl)
                r = -ENOMEM;
        if (r == 0 && cpuset)
                r = cg_lib_errno(cgroup_add_value_string(ctl, "cpuset.cpus", cpus));
        if (r == 0 && cpuset)
                r = cg_lib_errno(cgroup_add_value_string(ctl, "cpuset.mems", mems));
        if (r == 0)
                r = cg_lib_errno(exists ? cgroup_modify_cgroup(cg) : cgroup_create_cgroup(cg, 0));
        cgroup_free(&cg);
        if (r < 0) {
                /* libcgroup makes the folder before it writes the values. */
                if (!exists)
                        (void)rmdir(path);
                return r;
        }
        *ret_created = !exists;
        return 0;
}

static int v1_prepare_base(struct cg_manager *m)
{
        /* The levels under the top (own or dynos-cgroup): root_rel's components, then
         * "dynos". */
        _cleanup_strv_free_ char **levels = NULL;
        size_t n_levels = 0;
        {
                _cleanup_free_ char *rr = strjoin3(m->root_rel, *m->root_rel ? "/" : NULL, "dynos");
                if (!rr)
                        return -ENOMEM;
                for (char *p = rr; p; n_levels++)
                        p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL;
                levels = calloc(n_levels + 1, sizeof *levels);
                if (!levels)
                        return -ENOMEM;
                size_t k = 0;
                char *save = NULL;
                for (char *t = strtok_r(rr, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                        levels[k] = strdup(t);
                        if (!levels[k++])
                                return -ENOMEM;
                }
        }

        _cleanup_strv_free_ char **made = calloc(m->n_hier * n_levels + 1, sizeof *made);
        if (!made)
                return -ENOMEM;
        size_t n_made = 0;
        int r = 0;
        for (size_t i = 0; i < m->n_hier && r == 0; i++) {
                const struct cg_hier *h = &m->hier[i];
                _cleanup_free_ char *rel = strdup(h->top_rel);
                if (!rel) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t l = 0; l < n_levels && r == 0; l++) {
                        char *next = strjoin3(rel, "/", levels[l]);
                        if (!next) {
                                r = -ENOMEM;
                                break;
                        }
                        bool created = false;
                        r = v1_prepare_level(h, *rel ? rel : "/", next, &created);
                        free(rel);
                        rel = next;
                        if (r == 0 && created) {
                                made[n_made] = strjoin3(h->mount, rel, NULL);
                                if (!made[n_made++])
                                        r = -ENOMEM;
                        }
                }
        }
        if (r < 0)
                /* Remove what this call made, deepest first, so a failed start leaves the
                 * tree as it was. */
                while (n_made > 0)
                        if (made[--n_made])
                                (void)rmdir(made[n_made]);
        return r;
}

static int v1_setup(struct cg_manager *m)
{
        int r = cg_lib_init();
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
                enum cg_controller c = v1_controllers[i];
                const char *name = cg_controller_name(c);
                _cleanup_free_ char *mnt = NULL, *own = NULL, *options = NULL;
                struct statfs fs;
                /* On a hybrid host libcgroup also lists controllers of the unified mount
                 * (hugetlb...): only real v1 hierarchies count here. */
                if (cgroup_get_subsys_mount_point(name, &mnt) != 0 || !mnt ||
                    statfs(mnt, &fs) < 0 || fs.f_type != CGROUP_SUPER_MAGIC ||
                    cg_proc_cgroup_find(0, name, &own, &options) < 0) {
                        if (v1_required(c))
                                return -EOPNOTSUPP;
                        continue;
                }
                r = cg_add_hier(m, c, mnt, own);
                if (r < 0)
                        return r;
                struct cg_hier *h = cg_hier_for(m, c);
                if (!h->options)
                        h->options = TAKE_PTR(options);
        }
        return v1_prepare_base(m);
}

/* Does the dyno get a folder in hierarchy h? cpuset only when it asks for CPUs. */
static bool v1_hier_used(const struct cg_hier *h, const struct cg_limits *lim)
{
        return (h->ctrls & ~BIT(CG_CTRL_CPUSET)) || lim->cpus;
}

static int v1_set_limits(struct cg_manager *m, const char *id, const struct cg_limits *lim)
{
        _cleanup_free_ char *mem = NULL, *cpu = NULL, *pids = NULL;
        int r = cg_hier_dyno_dir(m, cg_hier_for(m, CG_CTRL_MEMORY), id, &mem);
        if (r == 0)
                r = cg_hier_dyno_dir(m, cg_hier_for(m, CG_CTRL_CPU), id, &cpu);
        if (r == 0)
                r = cg_hier_dyno_dir(m, cg_hier_for(m, CG_CTRL_PIDS), id, &pids);
        if (r < 0)
                return r;

        if (lim->memory > 0) {
                if (lim->memory_swap > UINT64_MAX - lim->memory)
                        return -ERANGE;
                /* A new cgroup is unlimited, and memsw must stay >= limit: limit first. */
                r = cg_write_u64(mem, "memory.limit_in_bytes", lim->memory);
                if (r < 0)
                        return r;
                /* memsw exists only with swap accounting (swapaccount=1). */
                if (cg_file_exists(mem, "memory.memsw.limit_in_bytes")) {
                        r = cg_write_u64(mem, "memory.memsw.limit_in_bytes",
                                         lim->memory + lim->memory_swap);
                        if (r < 0)
                                return r;
                }
        }

        if (lim->cpu_weight > 0) {
                /* v2's weight 100 is v1's 1024 shares; the kernel's floor is 2. */
                uint64_t shares = (uint64_t)lim->cpu_weight * 1024 / 100;
                r = cg_write_u64(cpu, "cpu.shares", shares < 2 ? 2 : shares);
                if (r < 0)
                        return r;
        }
        if (lim->cpu_quota_us > 0) {
                r = cg_write_u64(cpu, "cpu.cfs_period_us",
                                 lim->cpu_period_us > 0 ? lim->cpu_period_us : 100000);
                if (r < 0)
                        return r;
                r = cg_write_u64(cpu, "cpu.cfs_quota_us", lim->cpu_quota_us);
                if (r < 0)
                        return r;
        }

        if (lim->pids > 0) {
                r = cg_write_u64(pids, "pids.max", lim->pids);
                if (r < 0)
                        return r;
        }

        if (lim->cpus) {
                _cleanup_free_ char *set = NULL, *parent = NULL, *mems = NULL;
                struct cg_hier *h = cg_hier_for(m, CG_CTRL_CPUSET);
                r = cg_hier_dyno_dir(m, h, id, &set);
                if (r == 0)
                        r = cg_hier_dyno_dir(m, h, NULL, &parent);
                if (r == 0)
                        r = cg_read(parent, "cpuset.mems", &mems);
                if (r == 0)
                        r = cg_write(set, "cpuset.mems", mems);
                if (r == 0)
                        r = cg_write(set, "cpuset.cpus", lim->cpus);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Direct mkdir and writes: libcgroup 2.0.2's cgroup_create_cgroup took 1.2 ms on average (3 ms
 * cold) for the five hierarchies here, as it chowns every control file and rereads
 * /proc/mounts for each value, against 0.2 ms for these; dynos must start in milliseconds. */
static int v1_create(struct cg_manager *m, const char *id, const struct cg_limits *lim)
{
        if (lim->cpus && !cg_hier_for(m, CG_CTRL_CPUSET))
                return -EOPNOTSUPP;

        char *made[_CG_CTRL_MAX] = {};
        size_t n_made = 0;
        int r = 0;
        for (size_t i = 0; i < m->n_hier; i++) {
                const struct cg_hier *h = &m->hier[i];
                if (!v1_hier_used(h, lim))
                        continue;
                char *dir;
                r = cg_hier_dyno_dir(m, h, id, &dir);
                if (r < 0)
                        break;
                r = cg_mkdir(dir);
                if (r <= 0) {
                        free(dir);
                        /* Existing in any hierarchy, even a leftover in one, is existing:
                         * the caller finds it with cg_list and removes it with cg_destroy. */
                        r = r == 0 ? -EEXIST : r;
                        break;
                }
                made[n_made++] = dir;
        }
        if (r >= 0)
                r = v1_set_limits(m, id, lim);
        /* No process has joined yet, so the new folders are empty and rmdir works. */
        while (n_made > 0) {
                char *dir = made[--n_made];
                if (r < 0)
                        (void)rmdir(dir);
                free(dir);
        }
        return r < 0 ? r : 0;
}

/* Direct writes to cgroup.procs: libcgroup 2.0.2's cgroup_attach_task_pid writes the v1
 * "tasks" file, which moves one thread, not the process. A process that moves itself writes
 * "tasks" (cg_procs_open_self). */
static int v1_procs_open(struct cg_manager *m, const char *id, bool self, struct cg_procs *ret)
{
        for (size_t i = 0; i < m->n_hier; i++) {
                const struct cg_hier *h = &m->hier[i];
                _cleanup_free_ char *dir = NULL;
                int r = cg_hier_dyno_dir(m, h, id, &dir);
                if (r < 0)
                        return r;
                _cleanup_free_ char *path = strjoin3(dir, "/", self ? "tasks" : "cgroup.procs");
                if (!path)
                        return -ENOMEM;
                int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                /* A dyno without dedicated CPUs has no cpuset folder. */
                if (fd < 0 && errno == ENOENT && h->ctrls == BIT(CG_CTRL_CPUSET))
                        continue;
                if (fd < 0)
                        return -errno;
                if (ret->n >= CG_PROCS_MAX) {
                        close(fd);
                        return -E2BIG;
                }
                ret->fd[ret->n++] = fd;
        }
        return 0;
}

/* Freeze, kill, thaw, so that nothing forks between reading cgroup.procs and the kill. Direct
 * cgroupfs: libcgroup 2.0.2 has no freezer call (set FROZEN and wait until it holds). */
static int v1_kill(struct cg_manager *m, const char *id)
{
        /* Freezing and thawing cost the kernel a few ms even for an empty cgroup; nothing
         * can enter one but hostd's own attach, so skip them when every hierarchy is empty. */
        bool exists = false, populated = false;
        for (size_t i = 0; i < m->n_hier && !populated; i++) {
                _cleanup_free_ char *dir = NULL;
                _cleanup_free_ pid_t *pids = NULL;
                size_t n;
                int r = cg_hier_dyno_dir(m, &m->hier[i], id, &dir);
                if (r < 0)
                        return r;
                r = cg_read_pids(dir, &pids, &n);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                exists = true;
                populated = n > 0;
        }
        if (!populated)
                return exists ? 0 : -ENOENT;

        _cleanup_free_ char *fdir = NULL;
        struct cg_hier *fh = cg_hier_for(m, CG_CTRL_FREEZER);
        bool frozen = false;
        if (fh) {
                int r = cg_hier_dyno_dir(m, fh, id, &fdir);
                if (r < 0)
                        return r;
                if (cg_write(fdir, "freezer.state", "FROZEN") == 0) {
                        frozen = true;
                        /* Tasks in uninterruptible sleep can keep it FREEZING; the kill
                         * loop of cg_destroy covers that case, so wait only briefly. */
                        uint64_t deadline = now_monotonic_usec() + 1000 * 1000;
                        for (;;) {
                                _cleanup_free_ char *state = NULL;
                                if (cg_read(fdir, "freezer.state", &state) < 0 ||
                                    strcmp(state, "FROZEN") == 0 ||
                                    now_monotonic_usec() >= deadline)
                                        break;
                                usleep(1000);
                        }
                }
        }

        int ret = 0;
        for (size_t i = 0; i < m->n_hier; i++) {
                _cleanup_free_ char *dir = NULL;
                int r = cg_hier_dyno_dir(m, &m->hier[i], id, &dir);
                if (r == 0)
                        r = cg_kill_dir(dir, SIGKILL);
                if (r < 0 && r != -ENOENT && ret == 0)
                        ret = r;
        }
        /* Thaw even after an error: a frozen task does not act on SIGKILL, and one left
         * frozen could never be removed. */
        if (frozen)
                (void)cg_write(fdir, "freezer.state", "THAWED");
        return ret;
}

static int v1_cpuset_dir(struct cg_manager *m, const char *id, char **ret)
{
        struct cg_hier *h = cg_hier_for(m, CG_CTRL_CPUSET);
        if (!h)
                return -EOPNOTSUPP;
        return cg_hier_dyno_dir(m, h, id, ret);
}

/* ---- statistics ---- */

/* Open dir/file of controller c's hierarchy for the dyno into *fd; missing files stay -1
 * unless required. */
static int v1_open_stat(struct cg_manager *m, enum cg_controller c, const char *id,
                        const char *file, bool required, int *fd)
{
        struct cg_hier *h = cg_hier_for(m, c);
        if (!h)
                return required ? -EOPNOTSUPP : 0;
        _cleanup_free_ char *dir = NULL;
        int r = cg_hier_dyno_dir(m, h, id, &dir);
        if (r < 0)
                return r;
        _cleanup_free_ char *path = file ? strjoin3(dir, "/", file) : strdup(dir);
        if (!path)
                return -ENOMEM;
        *fd = open(path, O_RDONLY | O_CLOEXEC | (file ? 0 : O_DIRECTORY));
        if (*fd < 0 && (required || errno != ENOENT))
                return -errno;
        return 0;
}

static void v1_taskstats_init(struct cg_manager *m)
{
        if (m->taskstats_tried)
                return;
        m->taskstats_tried = true;
        m->taskstats_fd = -1;
        int r = taskstats_open(&m->taskstats_fd, &m->taskstats_family);
        if (r < 0)
                log_warning_errno(r, "cgroup v1: taskstats: %m; load averages are estimated from "
                                     "CPU use");
}

/* An eventfd the kernel signals when the cgroup meets the OOM killer, so that
 * memory.oom_control is read only then. */
static int v1_oom_watch(struct cg_manager *m, const char *id, struct cg_stat_files *f)
{
        if (f->fd[CG_STAT_OOM] < 0)
                return 0;
        _cleanup_free_ char *dir = NULL, *control = NULL;
        int r = cg_hier_dyno_dir(m, cg_primary(m), id, &dir);
        if (r < 0)
                return r;
        control = strjoin3(dir, "/", "cgroup.event_control");
        if (!control)
                return -ENOMEM;
        _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
                return -errno;
        char line[64];
        snprintf(line, sizeof line, "%d %d", efd, f->fd[CG_STAT_OOM]);
        r = write_string_file(control, line);
        if (r < 0)
                return 0; /* no notification: the count is read every sample */
        f->oom_event_fd = TAKE_FD(efd);
        f->oom_epoll_events = EPOLLIN;
        return 0;
}

static int v1_stats_open(struct cg_manager *m, const char *id, struct cg_stat_files *f)
{
        int r;
        if ((r = v1_open_stat(m, CG_CTRL_MEMORY, id, "memory.stat", true,
                              &f->fd[CG_STAT_MEMORY_STAT])) < 0 ||
            (r = v1_open_stat(m, CG_CTRL_MEMORY, id, "memory.oom_control", false,
                              &f->fd[CG_STAT_OOM])) < 0 ||
            (r = v1_open_stat(m, CG_CTRL_CPUACCT, id, "cpuacct.usage", false,
                              &f->fd[CG_STAT_CPU_USAGE])) < 0 ||
            (r = v1_open_stat(m, CG_CTRL_PIDS, id, "pids.current", true, &f->fd[CG_STAT_PIDS])) <
                    0 ||
            (r = v1_oom_watch(m, id, f)) < 0)
                return r;
        /* Without a CFS quota (hostd sets it at creation only) nothing is throttled: cpu.stat
         * would cost a read per sample to say 0. */
        _cleanup_free_ char *cpu_dir = NULL, *quota = NULL;
        struct cg_hier *cpu = cg_hier_for(m, CG_CTRL_CPU);
        if (cpu && cg_hier_dyno_dir(m, cpu, id, &cpu_dir) >= 0 &&
            cg_read(cpu_dir, "cpu.cfs_quota_us", &quota) >= 0 && strcmp(quota, "-1") != 0 &&
            (r = v1_open_stat(m, CG_CTRL_CPU, id, "cpu.stat", false, &f->fd[CG_STAT_CPU_STAT])) < 0)
                return r;
        v1_taskstats_init(m);
        if (m->taskstats_family == 0)
                return 0;
        /* Any v1 folder of the dyno serves taskstats; cpuacct's is the one for CPU figures. */
        return v1_open_stat(m, cg_hier_for(m, CG_CTRL_CPUACCT) ? CG_CTRL_CPUACCT : CG_CTRL_CPU, id,
                            NULL, false, &f->fd[CG_STAT_TASKS_DIR]);
}

/* The number in a one-number file; -ENODEV when the cgroup is gone. */
static int read_u64_fd(int fd, uint64_t *ret)
{
        char buf[64];
        ssize_t n = cg_pread(fd, buf, sizeof buf);
        if (n < 0)
                return n;
        return cg_parse_u64(buf, (size_t)n, ret);
}

/* The runnable counts of n dynos from one batch of taskstats requests. */
static void v1_stats_tasks(struct cg_manager *m, struct cg_stat_files **f, struct cg_stats **st,
                           size_t n)
{
        if (m->taskstats_family == 0)
                return;
        int dirfds[TASKSTATS_BATCH] = { 0 };
        struct cgroupstats cs[TASKSTATS_BATCH];
        bool ok[TASKSTATS_BATCH];
        size_t idx[TASKSTATS_BATCH], k = 0;
        for (size_t i = 0; i < n && k < TASKSTATS_BATCH; i++)
                if (f[i]->fd[CG_STAT_TASKS_DIR] >= 0) {
                        idx[k] = i;
                        dirfds[k++] = f[i]->fd[CG_STAT_TASKS_DIR];
                }
        if (taskstats_cgroups(m->taskstats_fd, m->taskstats_family, dirfds, k, cs, ok) < 0)
                return;
        for (size_t j = 0; j < k; j++)
                if (ok[j])
                        st[idx[j]]->runnable =
                                (int64_t)(cs[j].nr_running + cs[j].nr_uninterruptible);
}

static int v1_stats_read(struct cg_manager *m, struct cg_stat_files *f, struct cg_stats *st)
{
        char buf[16384];
        ssize_t n = cg_pread(f->fd[CG_STAT_MEMORY_STAT], buf, sizeof buf);
        if (n < 0)
                return n;
        /* total_*: the cgroup and its descendants, should a dyno ever have any */
        const struct cg_key mem_keys[] = {
                { "total_rss", &st->rss },         { "total_cache", &st->cache },
                { "total_swap", &st->swap },       { "total_pgpgin", &st->pgpgin },
                { "total_pgpgout", &st->pgpgout },
        };
        cg_parse_keyed(buf, (size_t)n, mem_keys, ELEMENTSOF(mem_keys));
        /* The kernel's advice (cgroup-v1/memory.rst, 5.5): usage_in_bytes is a fuzz value,
         * RSS + CACHE of memory.stat the exact one; and it saves a read. */
        st->memory = st->rss + st->cache;
        if (f->fd[CG_STAT_OOM] >= 0 && cg_stats_oom_due(f) &&
            (n = cg_pread(f->fd[CG_STAT_OOM], buf, sizeof buf)) >= 0) {
                const struct cg_key k[] = { { "oom_kill", &f->oom_kills } };
                cg_parse_keyed(buf, (size_t)n, k, 1);
        }
        st->oom_kills = f->oom_kills;
        uint64_t ns;
        if (f->fd[CG_STAT_CPU_USAGE] >= 0 && read_u64_fd(f->fd[CG_STAT_CPU_USAGE], &ns) == 0)
                st->cpu_usec = ns / 1000;
        if (f->fd[CG_STAT_CPU_STAT] >= 0 &&
            (n = cg_pread(f->fd[CG_STAT_CPU_STAT], buf, sizeof buf)) >= 0) {
                const struct cg_key k[] = { { "throttled_time", &ns } };
                if (cg_parse_keyed(buf, (size_t)n, k, 1) == 1)
                        st->throttled_usec = ns / 1000;
        }
        return read_u64_fd(f->fd[CG_STAT_PIDS], &st->pids);
}

const struct cg_ops cg_v1_ops = {
        .mode = CG_MODE_V1,
        .setup = v1_setup,
        .create = v1_create,
        .procs_open = v1_procs_open,
        .kill = v1_kill,
        .cpuset_dir = v1_cpuset_dir,
        .oom_file = "memory.oom_control",
        .stats_open = v1_stats_open,
        .stats_read = v1_stats_read,
        .stats_tasks = v1_stats_tasks,
};
