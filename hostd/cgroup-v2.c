/* cgroup v2 driver: the unified hierarchy at /sys/fs/cgroup.
 *
 * All writes here are direct cgroupfs. libcgroup 2.0.2's cgroup_create_cgroup enables each
 * controller in the subtree_control of every ancestor below the mount root, which writes
 * outside hostd's subtree and fails (EBUSY) at any ancestor that holds processes (seen in the
 * v2 guest of VM.md). */
#include "cgroup-internal.h"
#include "util.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <signal.h>

#define CG2_MOUNT "/sys/fs/cgroup"

static const char *const v2_base_controllers[] = { "memory", "pids", "cpu" };
static const char *const v2_cpuset_controllers[] = { "cpuset" };

static bool word_in(const char *list, const char *word)
{
        size_t n = strlen(word);
        for (const char *p = list; *p;) {
                p += strspn(p, " \n");
                size_t k = strcspn(p, " \n");
                if (k == n && strncmp(p, word, n) == 0)
                        return true;
                p += k;
        }
        return false;
}

/* Enable controllers for the children of dir, writing only those not yet on. */
static int v2_enable(const char *dir, const char *const *names, size_t n)
{
        _cleanup_free_ char *on = NULL;
        int r = cg_read(dir, "cgroup.subtree_control", &on);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (word_in(on, names[i]))
                        continue;
                _cleanup_free_ char *w = strjoin3("+", names[i], NULL);
                if (!w)
                        return -ENOMEM;
                r = cg_write(dir, "cgroup.subtree_control", w);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Walk top (own or dynos-cgroup) -> <root_rel components> -> dynos: create the missing folders
 * (recorded in made, when given) and enable controllers in each, so that every dyno folder has
 * their files. */
static int v2_enable_chain(struct cg_manager *m, const char *const *names, size_t n, char ***made,
                           size_t *n_made)
{
        const struct cg_hier *h = cg_primary(m);
        _cleanup_free_ char *rest = strjoin3(m->root_rel, *m->root_rel ? "/" : NULL, "dynos");
        _cleanup_free_ char *dir = strjoin3(h->mount, h->top_rel, NULL);
        if (!rest || !dir)
                return -ENOMEM;

        char *save = NULL;
        for (char *t = strtok_r(rest, "/", &save);; t = strtok_r(NULL, "/", &save)) {
                int r = v2_enable(dir, names, n);
                if (r < 0)
                        return r;
                if (!t)
                        return 0;
                char *next = strjoin3(dir, "/", t);
                if (!next)
                        return -ENOMEM;
                free(dir);
                dir = next;
                r = cg_mkdir(dir);
                if (r < 0)
                        return r;
                if (r > 0 && made) {
                        char **nv = realloc(*made, (*n_made + 2) * sizeof **made);
                        char *copy = strdup(dir);
                        if (nv)
                                *made = nv;
                        if (!nv || !copy) {
                                free(copy);
                                (void)rmdir(dir);
                                return -ENOMEM;
                        }
                        nv[(*n_made)++] = copy;
                        nv[*n_made] = NULL;
                }
        }
}

/* A hostd started from inside its own supervisor cgroup (a re-exec, a restart by a
 * process that lives there) must find the same base: <base>/supervisor means own is the
 * cgroup <base> was made under. */
static int v2_strip_supervisor(char *own, const char *root_rel)
{
        size_t n = strlen(own), sl = strlen("/supervisor");
        if (n <= sl || strcmp(own + n - sl, "/supervisor") != 0)
                return 0;
        own[n - sl] = 0;
        n -= sl;
        size_t rl = strlen(root_rel);
        if (rl > 0) {
                if (n <= rl || own[n - rl - 1] != '/' || strcmp(own + n - rl, root_rel) != 0)
                        return 0;
                own[n - rl - 1] = 0;
        }
        if (!*own)
                strcpy(own, "/");
        return 0;
}

static int v2_move_self(struct cg_manager *m, const char *owndir)
{
        const struct cg_hier *h = cg_primary(m);
        _cleanup_free_ char *base = strjoin3(h->mount, h->base_rel, NULL);
        _cleanup_free_ char *sup = base ? strjoin3(base, "/supervisor", NULL) : NULL;
        if (!sup)
                return -ENOMEM;
        int r = mkdir_p(sup, 0755);
        if (r < 0)
                return r;
        r = cg_write(sup, "cgroup.procs", "0");
        if (r < 0)
                return r;
        _cleanup_free_ pid_t *pids = NULL;
        size_t n;
        r = cg_read_pids(owndir, &pids, &n);
        if (r < 0)
                return r;
        return n > 0 ? -EBUSY : 0;
}

static int v2_setup(struct cg_manager *m)
{
        /* libcgroup is still used to read the counters (cg_lib_read_key). */
        int r = cg_lib_init();
        if (r < 0)
                return r;

        _cleanup_free_ char *own = NULL, *owndir = NULL, *avail = NULL;
        r = cg_proc_cgroup_path(0, NULL, &own);
        if (r < 0)
                return r == -ENOENT ? -ENOMEDIUM : r;
        r = v2_strip_supervisor(own, m->root_rel);
        if (r < 0)
                return r;
        owndir = strjoin3(CG2_MOUNT, strcmp(own, "/") == 0 ? "" : own, NULL);
        if (!owndir)
                return -ENOMEM;

        /* Checks dynos-cgroup (m->parent_rel) first, so that a bad one is named as such. */
        static const enum cg_controller ctrls[] = { CG_CTRL_MEMORY, CG_CTRL_CPU, CG_CTRL_PIDS };
        for (size_t i = 0; i < ELEMENTSOF(ctrls); i++) {
                r = cg_add_hier(m, ctrls[i], CG2_MOUNT, own);
                if (r < 0)
                        return r;
        }
        /* The controllers the dynos' top was given by its parent. */
        _cleanup_free_ char *topdir = strjoin3(CG2_MOUNT, cg_primary(m)->top_rel, NULL);
        if (!topdir)
                return -ENOMEM;
        r = cg_read(topdir, "cgroup.controllers", &avail);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(v2_base_controllers); i++)
                if (!word_in(avail, v2_base_controllers[i]))
                        return -EOPNOTSUPP;
        if (word_in(avail, "cpuset")) {
                r = cg_add_hier(m, CG_CTRL_CPUSET, CG2_MOUNT, own);
                if (r < 0)
                        return r;
        }

        /* No internal processes: a non-root cgroup that holds processes cannot hand
         * controllers to children, so hostd moves itself into <base>/supervisor first (the
         * root cgroup is exempt). Anything else left in its own cgroup is not ours to move.
         * With the dynos in dynos-cgroup, hostd's own cgroup hands nothing down: hostd stays
         * where its unit started it, which systemd < 254 requires of a restart. */
        if (strcmp(own, "/") != 0 && !*m->parent_rel) {
                r = v2_move_self(m, owndir);
                if (r < 0)
                        return r;
        }

        _cleanup_strv_free_ char **made = NULL;
        size_t n_made = 0;
        r = v2_enable_chain(m, v2_base_controllers, ELEMENTSOF(v2_base_controllers), &made,
                            &n_made);
        if (r < 0)
                while (n_made > 0)
                        (void)rmdir(made[--n_made]);
        return r;
}

static int v2_set_limits(const char *dir, const struct cg_limits *lim)
{
        int r;
        if (lim->memory > 0) {
                r = cg_write_u64(dir, "memory.max", lim->memory);
                if (r < 0)
                        return r;
        }
        /* memory.swap.max exists only with swap accounting. */
        if (cg_file_exists(dir, "memory.swap.max")) {
                r = cg_write_u64(dir, "memory.swap.max", lim->memory_swap);
                if (r < 0)
                        return r;
        }
        if (lim->cpu_weight > 0) {
                r = cg_write_u64(dir, "cpu.weight",
                                 lim->cpu_weight > 10000 ? 10000 : lim->cpu_weight);
                if (r < 0)
                        return r;
        }
        if (lim->cpu_quota_us > 0) {
                char buf[32];
                snprintf(buf, sizeof buf, "%u %u", lim->cpu_quota_us,
                         lim->cpu_period_us > 0 ? lim->cpu_period_us : 100000);
                r = cg_write(dir, "cpu.max", buf);
                if (r < 0)
                        return r;
        }
        if (lim->pids > 0) {
                r = cg_write_u64(dir, "pids.max", lim->pids);
                if (r < 0)
                        return r;
        }
        if (lim->cpus) {
                r = cg_write(dir, "cpuset.cpus", lim->cpus);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Only hosts with a dedicated CPU pool need cpuset, so it is turned on at first use. */
static int v2_enable_cpuset(struct cg_manager *m)
{
        if (m->cpuset_enabled)
                return 0;
        if (!cg_hier_for(m, CG_CTRL_CPUSET))
                return -EOPNOTSUPP;
        int r = v2_enable_chain(m, v2_cpuset_controllers, 1, NULL, NULL);
        if (r < 0)
                return r;
        m->cpuset_enabled = true;
        return 0;
}

static int v2_create(struct cg_manager *m, const char *id, const struct cg_limits *lim)
{
        int r;
        if (lim->cpus) {
                r = v2_enable_cpuset(m);
                if (r < 0)
                        return r;
        }

        _cleanup_free_ char *dir = NULL;
        r = cg_hier_dyno_dir(m, cg_primary(m), id, &dir);
        if (r < 0)
                return r;
        r = cg_mkdir(dir);
        if (r == 0)
                return -EEXIST;
        if (r < 0)
                return r;
        r = v2_set_limits(dir, lim);
        if (r < 0)
                (void)rmdir(dir);
        return r;
}

/* Direct, like v1: cgroup.procs, where libcgroup would need the cgroup built with all its
 * controllers first; and the folder itself, for CLONE_INTO_CGROUP. */
static int v2_procs_open(struct cg_manager *m, const char *id, bool self, struct cg_procs *ret)
{
        _cleanup_free_ char *dir = NULL;
        int r = cg_hier_dyno_dir(m, cg_primary(m), id, &dir);
        if (r < 0)
                return r;
        ret->dir = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ret->dir < 0)
                return -errno;
        if (self)
                return 0; /* cloned into the folder: nothing to write */
        int fd = openat(ret->dir, "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        ret->fd[ret->n++] = fd;
        return 0;
}

static int v2_kill(struct cg_manager *m, const char *id)
{
        struct cg_hier *h = cg_primary(m);
        _cleanup_free_ char *dir = NULL, *rel = NULL;
        int r = cg_hier_dyno_dir(m, h, id, &dir);
        if (r == 0)
                r = cg_hier_dyno_rel(m, h, id, &rel);
        if (r < 0)
                return r;
        if (access(dir, F_OK) < 0)
                return -errno;

        /* cgroup.kill (Linux 5.14) kills every process, forks included, in one step;
         * libcgroup 2.0.2 has no call for it. */
        if (cg_file_exists(dir, "cgroup.kill"))
                return cg_write(dir, "cgroup.kill", "1");

        /* Older kernels: freeze (5.2), kill, thaw, so nothing forks in between. Direct:
         * libcgroup 2.0.2 has no freezer call. */
        bool frozen = cg_write(dir, "cgroup.freeze", "1") == 0;
        if (frozen) {
                uint64_t deadline = now_monotonic_usec() + 1000 * 1000;
                uint64_t v = 0;
                while (cg_lib_read_key(h, rel, "cgroup.events", "frozen", &v) == 0 && v != 1 &&
                       now_monotonic_usec() < deadline)
                        usleep(1000);
        }
        r = cg_kill_dir(dir, SIGKILL);
        if (frozen)
                (void)cg_write(dir, "cgroup.freeze", "0");
        return r < 0 ? r : 0;
}

static int v2_cpuset_dir(struct cg_manager *m, const char *id, char **ret)
{
        const struct cg_hier *h = cg_hier_for(m, CG_CTRL_CPUSET);
        if (!h)
                return -EOPNOTSUPP;
        if (!id)
                /* The top cgroup: its parent gave it cpuset, so it has the files. */
                return asprintf_safe(ret, "%s%s", h->mount, h->top_rel);
        int r = v2_enable_cpuset(m);
        if (r < 0)
                return r;
        return cg_hier_dyno_dir(m, h, id, ret);
}

/* ---- statistics ---- */

static int v2_stats_open(struct cg_manager *m, const char *id, struct cg_stat_files *f)
{
        static const struct {
                enum cg_stat_file which;
                const char *name;
                bool required;
        } files[] = {
                { CG_STAT_MEMORY_STAT, "memory.stat", true },
                { CG_STAT_MEMORY_USAGE, "memory.current", true },
                { CG_STAT_SWAP, "memory.swap.current", false }, /* no swap accounting */
                { CG_STAT_OOM, "memory.events", false },
                { CG_STAT_CPU_STAT, "cpu.stat", true },
                { CG_STAT_PIDS, "pids.current", true },
                { CG_STAT_CPU_PRESSURE, "cpu.pressure", false }, /* no PSI in the kernel */
                { CG_STAT_MEMORY_PRESSURE, "memory.pressure", false },
                { CG_STAT_IO_PRESSURE, "io.pressure", false },
        };
        _cleanup_free_ char *dir = NULL;
        int r = cg_hier_dyno_dir(m, cg_primary(m), id, &dir);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                int fd = openat(dfd, files[i].name, O_RDONLY | O_CLOEXEC);
                /* A pressure file exists but fails to read with EOPNOTSUPP when PSI is
                 * compiled in and off (psi=0): cg_stats_read then leaves it out. */
                if (fd < 0 && (files[i].required || errno != ENOENT))
                        return -errno;
                f->fd[files[i].which] = fd;
        }
        /* memory.events is ready (EPOLLPRI) after each change: oom_kill is read only then. */
        if (f->fd[CG_STAT_OOM] >= 0) {
                f->oom_event_fd = f->fd[CG_STAT_OOM];
                f->oom_epoll_events = EPOLLPRI;
        }
        return 0;
}

static int v2_read_u64(int fd, uint64_t *ret)
{
        char buf[64];
        ssize_t n = cg_pread(fd, buf, sizeof buf);
        if (n < 0)
                return n;
        return cg_parse_u64(buf, (size_t)n, ret);
}

static void v2_read_psi(int fd, struct cg_psi *ret)
{
        char buf[256];
        ssize_t n = fd >= 0 ? cg_pread(fd, buf, sizeof buf) : -EBADF;
        if (n < 0 || cg_parse_psi(buf, (size_t)n, ret) < 0)
                *ret = (struct cg_psi){ .present = false };
}

static int v2_stats_read(struct cg_manager *m, struct cg_stat_files *f, struct cg_stats *st)
{
        char buf[16384];
        ssize_t n = cg_pread(f->fd[CG_STAT_MEMORY_STAT], buf, sizeof buf);
        if (n < 0)
                return n;
        /* v2 counts no page charges (v1's pgpgin and pgpgout): what a user means by them,
         * pages read from and written to disk, is closest to major faults and pages swapped
         * out (pswpout, kernels since 6.12; 0 before). */
        const struct cg_key mem_keys[] = {
                { "anon", &st->rss },
                { "file", &st->cache },
                { "pgmajfault", &st->pgpgin },
                { "pswpout", &st->pgpgout },
        };
        cg_parse_keyed(buf, (size_t)n, mem_keys, ELEMENTSOF(mem_keys));
        int r = v2_read_u64(f->fd[CG_STAT_MEMORY_USAGE], &st->memory);
        if (r < 0)
                return r;
        if (f->fd[CG_STAT_SWAP] >= 0)
                (void)v2_read_u64(f->fd[CG_STAT_SWAP], &st->swap);
        /* Reading memory.events also re-arms its EPOLLPRI. */
        if (f->fd[CG_STAT_OOM] >= 0 && cg_stats_oom_due(f) &&
            (n = cg_pread(f->fd[CG_STAT_OOM], buf, sizeof buf)) >= 0) {
                const struct cg_key k[] = { { "oom_kill", &f->oom_kills } };
                cg_parse_keyed(buf, (size_t)n, k, 1);
        }
        st->oom_kills = f->oom_kills;
        n = cg_pread(f->fd[CG_STAT_CPU_STAT], buf, sizeof buf);
        if (n < 0)
                return n;
        const struct cg_key cpu_keys[] = {
                { "usage_usec", &st->cpu_usec },
                { "throttled_usec", &st->throttled_usec },
        };
        cg_parse_keyed(buf, (size_t)n, cpu_keys, ELEMENTSOF(cpu_keys));
        r = v2_read_u64(f->fd[CG_STAT_PIDS], &st->pids);
        if (r < 0)
                return r;
        v2_read_psi(f->fd[CG_STAT_CPU_PRESSURE], &st->cpu_psi);
        v2_read_psi(f->fd[CG_STAT_MEMORY_PRESSURE], &st->memory_psi);
        v2_read_psi(f->fd[CG_STAT_IO_PRESSURE], &st->io_psi);
        /* The kernel keeps no runnable count per v2 cgroup: runnable stays -1 and the sampler
         * estimates the load from CPU use and pressure. */
        return 0;
}

const struct cg_ops cg_v2_ops = {
        .mode = CG_MODE_V2,
        .setup = v2_setup,
        .create = v2_create,
        .procs_open = v2_procs_open,
        .kill = v2_kill,
        .cpuset_dir = v2_cpuset_dir,
        .oom_file = "memory.events",
        .stats_open = v2_stats_open,
        .stats_read = v2_stats_read,
};
