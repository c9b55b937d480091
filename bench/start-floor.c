/* The floor of a dyno start: the kernel work that a hostd dyno start needs, done as directly
 * as a C program can, without any of hostd's own (no API, no records, no log file, no init
 * process). bench/start-stop runs it beside hostd and runc (see bench/README.md); hostd's
 * start is judged against it, so that what hostd adds on top of the kernel's part is seen.
 *
 *   start-floor --stack DIR --slug DIR --layers DIR --uid N
 *               (--cgroup CONTROLLERS=DIR)... | --cgroup2 DIR
 *
 * --cgroup gives, per v1 hierarchy, the folder under which each start makes its cgroup (in
 * hostd's order: the first is written to first); CONTROLLERS is the hierarchy's mount option
 * ("memory", "cpu,cpuacct"). --cgroup2 is the one folder on a unified host.
 *
 * One start per line on stdin, "start ID". It answers "exec" on stdout as soon as the command
 * has been executed (the sync socket, close-on-exec, reads EOF), the moment hostd's reply
 * stands for; then, after the untimed cleanup, one line "done ID key=ns ..." with the parts.
 * A failure is one line "error ..." and exit status 1.
 *
 * Per start, timed: the writable layer (mkdir of upper, work, merged, upper/app owned by the
 * uid), the cgroup in each hierarchy with standard-1x's limits, clone3 into new PID, mount,
 * UTS, IPC and network namespaces, and in the child what hostd's first process does before the
 * command runs: the move into the cgroups (v1: the child writes "0" to each tasks file, as
 * hostd's does; on v2 it is born in its cgroup instead, CLONE_INTO_CGROUP), a cgroup
 * namespace, private mounts, the overlay (volatile, as hostd's), /proc, a /dev tmpfs with its nodes, devpts and /dev/shm, sysfs, the
 * dyno's own cgroups read-only, hostname, loopback up, pivot_root, rlimits, no capabilities,
 * the dyno's uid, no_new_privs, hostd's seccomp filter, exec of /bin/true. hostd runs the
 * command under an init of its own (one more fork and exec); the floor execs the command as
 * PID 1 at once, as runc does. Untimed: the memory threshold and OOM notifications hostd
 * registers once the dyno runs (cgroup.event_control: its worker thread does it after the
 * start), the wait for the end, the removal of the cgroups and the layer
 * (the mounts go with the child's mount namespace, as a dyno's do). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "seccomp-filter.h"
#include "util.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* standard-1x (hostd/config.c): 512 MiB, swap to twice that, weight 100, 256 pids. */
#define SIZE_MEMORY (512ULL << 20)
#define SIZE_MEMSW (1ULL << 30)
#define SIZE_CPU_SHARES 1024
#define SIZE_CPU_WEIGHT 100
#define SIZE_PIDS 256
#define RLIMIT_NOFILE_DYNO 10000
#define SHM_SIZE (64ULL << 20)

#define MAX_HIER 16

struct hier {
        char *controllers; /* the hierarchy's mount option, also its folder in the view */
        char *parent;
};

struct floor {
        const char *stack, *slug, *layers;
        uid_t uid;
        bool v2;
        struct hier hier[MAX_HIER];
        size_t n_hier;
        struct sock_fprog seccomp;
        int cap_last;
};

/* The timed parts of one start, in ns. */
struct parts {
        uint64_t layer, cgroup, clone, procs_first, procs_rest, events, exec, total;
};

/* clone3's arguments up to the cgroup field (CLONE_ARGS_SIZE_VER2); the first 64 bytes are
 * version 0's. */
struct clone_args_v2 {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
        uint64_t set_tid, set_tid_size, cgroup;
};
#define CLONE_ARGS_SIZE_V0 64

/* The paths of one start, made of the options (each under PATH_LEN_MAX, checked in main) and
 * short names: they always fit. A truncated one would fail where it is used. */
#define PATH_LEN_MAX 1024

_printf_(3, 4) static int pathf(char *buf, size_t size, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool has_controller(const struct hier *h, const char *name)
{
        size_t n = strlen(name);
        for (const char *p = h->controllers; *p;) {
                size_t k = strcspn(p, ",");
                if (k == n && strncmp(p, name, n) == 0)
                        return true;
                p += k + (p[k] == ',');
        }
        return false;
}

static int write_u64(const char *dir, const char *file, uint64_t v)
{
        char path[PATH_MAX], buf[32];
        pathf(path, sizeof path, "%s/%s", dir, file);
        snprintf(buf, sizeof buf, "%" PRIu64, v);
        return write_string_file(path, buf);
}

/* ---- the child: what hostd's first process does, then the command's part ---- */

_printf_(2, 3) static _Noreturn void child_fail(int sync, const char *fmt, ...)
{
        char msg[512];
        int e = errno;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof msg)
                snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(e));
        (void)!send(sync, msg, strlen(msg), MSG_NOSIGNAL);
        _exit(127);
}

static void child_mount(int sync, const char *src, const char *root, const char *target,
                        const char *type, unsigned long flags, const char *data)
{
        char path[PATH_MAX];
        pathf(path, sizeof path, "%s%s", root, target);
        if (mount(src, path, type, flags, data) < 0)
                child_fail(sync, "mount %s on %s", type, target);
}

static void child_mkdir(int sync, const char *dir, const char *name, mode_t mode)
{
        char path[PATH_MAX];
        pathf(path, sizeof path, "%s/%s", dir, name);
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                child_fail(sync, "create %s", path);
}

static void child_dev(int sync, const char *root)
{
        static const struct {
                const char *name;
                unsigned major, minor;
        } nodes[] = {
                { "null", 1, 3 },   { "zero", 1, 5 },    { "full", 1, 7 },
                { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
        };
        static const char *const links[][2] = {
                { "pts/ptmx", "ptmx" },          { "/proc/self/fd", "fd" },
                { "/proc/self/fd/0", "stdin" },  { "/proc/self/fd/1", "stdout" },
                { "/proc/self/fd/2", "stderr" },
        };
        char dev[PATH_MAX], path[PATH_MAX], opts[64];
        pathf(dev, sizeof dev, "%s/dev", root);
        child_mount(sync, "tmpfs", root, "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_STRICTATIME,
                    "mode=755,size=1m");
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
                pathf(path, sizeof path, "%s/%s", dev, nodes[i].name);
                if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0)
                        child_fail(sync, "create /dev/%s", nodes[i].name);
        }
        child_mkdir(sync, dev, "pts", 0755);
        child_mkdir(sync, dev, "shm", 01777);
        child_mount(sync, "devpts", root, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620");
        snprintf(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)SHM_SIZE);
        child_mount(sync, "shm", root, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts);
        for (size_t i = 0; i < ELEMENTSOF(links); i++) {
                pathf(path, sizeof path, "%s/%s", dev, links[i][1]);
                if (symlink(links[i][0], path) < 0)
                        child_fail(sync, "create /dev/%s", links[i][1]);
        }
}

/* The dyno's own cgroups, read-only at /sys/fs/cgroup, as hostd shows them. */
static void child_cgroup_view(int sync, const struct floor *f, const char *root)
{
        const unsigned long ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
        if (f->v2) {
                child_mount(sync, "cgroup2", root, "/sys/fs/cgroup", "cgroup2", ro, NULL);
                return;
        }
        char top[PATH_MAX], target[PATH_MAX];
        pathf(top, sizeof top, "%s/sys/fs/cgroup", root);
        child_mount(sync, "tmpfs", root, "/sys/fs/cgroup", "tmpfs",
                    MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k");
        for (size_t i = 0; i < f->n_hier; i++) {
                child_mkdir(sync, top, f->hier[i].controllers, 0755);
                pathf(target, sizeof target, "/sys/fs/cgroup/%s", f->hier[i].controllers);
                child_mount(sync, "cgroup", root, target, "cgroup", ro, f->hier[i].controllers);
        }
        if (mount(NULL, top, NULL, MS_REMOUNT | ro, NULL) < 0)
                child_fail(sync, "make /sys/fs/cgroup read-only");
}

static void child_loopback_up(int sync)
{
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {};
        strcpy(ifr.ifr_name, "lo");
        if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                child_fail(sync, "read loopback flags");
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                child_fail(sync, "bring loopback up");
        close(s);
}

/* hostd's order (crun's): rlimits, bounding set, groups, gid, uid, the other capability
 * sets, no_new_privs, seccomp last. */
static void child_drop_privileges(int sync, const struct floor *f)
{
        const struct rlimit nofile = { RLIMIT_NOFILE_DYNO, RLIMIT_NOFILE_DYNO };
        const struct rlimit nproc = { SIZE_PIDS, SIZE_PIDS }, core = { 0, 0 };
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_NPROC, &nproc) < 0 ||
            setrlimit(RLIMIT_CORE, &core) < 0)
                child_fail(sync, "set rlimits");
        for (int c = 0; c <= f->cap_last; c++)
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
                        child_fail(sync, "drop capability %d from the bounding set", c);
        if (setgroups(0, NULL) < 0 || setresgid(f->uid, f->uid, f->uid) < 0 ||
            setresuid(f->uid, f->uid, f->uid) < 0)
                child_fail(sync, "become uid %u", (unsigned)f->uid);
        struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct none[2] = {};
        if (syscall(SYS_capset, &head, none) < 0 ||
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
                child_fail(sync, "clear capabilities");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(sync, "set no_new_privs");
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &f->seccomp) < 0)
                child_fail(sync, "load the seccomp filter");
}

/* Where the child leaves the times of its move into its cgroups (v1), for the parts: a page
 * shared with it (MAP_SHARED before any clone). */
static volatile uint64_t *child_times;

static _Noreturn void child_main(const struct floor *f, const char *id, const char *layer,
                                 const char *overlay, const int *tasks, int sync)
{
        /* v1: move into the cgroups first, as hostd's first process does: "0" to each tasks
         * file moves the calling thread, for which the kernel takes no threadgroup lock (no
         * RCU grace period, Linux 6.0). Then the cgroup namespace is rooted there and
         * every process is counted. */
        uint64_t t0 = now_ns(), t1 = t0;
        for (size_t i = 0; !f->v2 && i < f->n_hier; i++) {
                if (pwrite(tasks[i], "0", 1, 0) != 1)
                        child_fail(sync, "move into cgroup %zu", i);
                if (i == 0)
                        t1 = now_ns();
                close(tasks[i]);
        }
        child_times[0] = t1 - t0;
        child_times[1] = now_ns() - t1;
        if (unshare(CLONE_NEWCGROUP) < 0)
                child_fail(sync, "create cgroup namespace");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                child_fail(sync, "make mounts private");

        umask(0);
        char root[PATH_MAX];
        pathf(root, sizeof root, "%s/merged", layer);
        if (mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, overlay) < 0)
                child_fail(sync, "mount the overlay %s", overlay);
        child_mkdir(sync, root, "proc", 0555);
        child_mkdir(sync, root, "dev", 0755);
        child_mkdir(sync, root, "sys", 0555);
        child_mkdir(sync, root, "tmp", 01777);
        child_mount(sync, "proc", root, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        child_dev(sync, root);
        child_mount(sync, "sysfs", root, "/sys", "sysfs",
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        child_cgroup_view(sync, f, root);
        if (sethostname(id, strlen(id)) < 0)
                child_fail(sync, "set hostname");
        child_loopback_up(sync);

        /* pivot_root, as hostd does: chroot would leave the host's root reachable (a chroot
         * is escaped with a second one by whoever has CAP_SYS_CHROOT) and every host mount
         * attached to the namespace. */
        if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
                child_fail(sync, "pivot_root to %s", root);
        if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                child_fail(sync, "detach the host's root");
        umask(022);

        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
                child_fail(sync, "set up stdio");
        if (setsid() < 0)
                child_fail(sync, "setsid");
        child_drop_privileges(sync, f);
        if (chdir("/app") < 0)
                child_fail(sync, "enter /app");

        char dyno_id[128];
        snprintf(dyno_id, sizeof dyno_id, "HEROKU_DYNO_ID=%s", id);
        char *argv[] = { (char *)"true", NULL };
        char *envp[] = { (char *)"PATH=/app/bin:/usr/local/bin:/usr/bin:/bin", (char *)"HOME=/app",
                         (char *)"DYNO=worker.1", dyno_id, NULL };
        execve("/bin/true", argv, envp);
        child_fail(sync, "execute /bin/true");
}

/* ---- the parent: one start ---- */

static int layer_make(const struct floor *f, const char *layer)
{
        static const char *const sub[] = { "", "/upper", "/work", "/merged", "/upper/app" };
        char path[PATH_MAX];
        for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
                pathf(path, sizeof path, "%s%s", layer, sub[i]);
                if (mkdir(path, 0755) < 0)
                        return -errno;
        }
        return chown(path, f->uid, f->uid) < 0 ? -errno : 0;
}

static bool file_exists(const char *dir, const char *file)
{
        char path[PATH_MAX];
        pathf(path, sizeof path, "%s/%s", dir, file);
        return access(path, F_OK) == 0;
}

static int cgroup_make(const struct floor *f, char dirs[][PATH_MAX], const char *id)
{
        for (size_t i = 0; i < f->n_hier; i++)
                dirs[i][0] = 0;
        for (size_t i = 0; i < f->n_hier; i++) {
                pathf(dirs[i], PATH_MAX, "%s/%s", f->hier[i].parent, id);
                if (mkdir(dirs[i], 0755) < 0)
                        return -errno;
        }
        int r = 0;
        if (f->v2) {
                const char *d = dirs[0];
                if ((r = write_u64(d, "memory.max", SIZE_MEMORY)) < 0 ||
                    (r = write_u64(d, "memory.swap.max", SIZE_MEMSW - SIZE_MEMORY)) < 0 ||
                    (r = write_u64(d, "cpu.weight", SIZE_CPU_WEIGHT)) < 0 ||
                    (r = write_u64(d, "pids.max", SIZE_PIDS)) < 0)
                        return r;
                return 0;
        }
        for (size_t i = 0; i < f->n_hier && r >= 0; i++) {
                const struct hier *h = &f->hier[i];
                if (has_controller(h, "memory")) {
                        r = write_u64(dirs[i], "memory.limit_in_bytes", SIZE_MEMORY);
                        /* memsw exists only with swap accounting, as hostd checks too. */
                        if (r >= 0 && file_exists(dirs[i], "memory.memsw.limit_in_bytes"))
                                r = write_u64(dirs[i], "memory.memsw.limit_in_bytes", SIZE_MEMSW);
                }
                if (r >= 0 && has_controller(h, "cpu"))
                        r = write_u64(dirs[i], "cpu.shares", SIZE_CPU_SHARES);
                if (r >= 0 && has_controller(h, "pids"))
                        r = write_u64(dirs[i], "pids.max", SIZE_PIDS);
        }
        return r;
}

/* What hostd asks of the memory controller once the dyno runs: a notification at the
 * memory + swap quota (R14) and one on OOM (R15). On v1 each is a cgroup.event_control
 * registration; on v2 memory.events is opened and polled. */
static int events_register(const struct floor *f, const char *mem_dir, int fds[4])
{
        char path[PATH_MAX], line[64];
        if (f->v2) {
                pathf(path, sizeof path, "%s/memory.events", mem_dir);
                for (int i = 0; i < 2; i++)
                        if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                                return -errno;
                return 0;
        }
        static const char *const watched[] = { "memory.memsw.usage_in_bytes",
                                               "memory.oom_control" };
        for (int i = 0; i < 2; i++) {
                /* Without swap accounting hostd has no quota notification either. */
                if (i == 0 && !file_exists(mem_dir, watched[0]))
                        continue;
                pathf(path, sizeof path, "%s/%s", mem_dir, watched[i]);
                fds[2 * i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                fds[2 * i + 1] = open(path, O_RDONLY | O_CLOEXEC);
                if (fds[2 * i] < 0 || fds[2 * i + 1] < 0)
                        return -errno;
                if (i == 0)
                        snprintf(line, sizeof line, "%d %d %llu", fds[0], fds[1], SIZE_MEMORY);
                else
                        snprintf(line, sizeof line, "%d %d", fds[2], fds[3]);
                pathf(path, sizeof path, "%s/cgroup.event_control", mem_dir);
                int r = write_string_file(path, line);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int rm_cgroups(char dirs[][PATH_MAX], size_t n)
{
        int ret = 0;
        for (size_t i = 0; i < n; i++) {
                /* A reaped child can still count in its cgroup for a moment. */
                int tries = 0;
                while (dirs[i][0] && rmdir(dirs[i]) < 0) {
                        if (errno == ENOENT)
                                break;
                        if (errno != EBUSY || ++tries > 1000) {
                                ret = -errno;
                                break;
                        }
                        usleep(1000);
                }
        }
        return ret;
}

/* One start; the "exec" line goes out as soon as the command runs. Returns 0, or a negative
 * errno with msg set. */
static int floor_start(const struct floor *f, const char *id, struct parts *pt, char *msg,
                       size_t msglen)
{
        char layer[PATH_MAX], overlay[3 * PATH_MAX + 64];
        char dirs[MAX_HIER][PATH_MAX];
        int efds[4] = { -1, -1, -1, -1 };
        int r;

        uint64_t t0 = now_ns();
        pathf(layer, sizeof layer, "%s/%s", f->layers, id);
        r = layer_make(f, layer);
        if (r < 0)
                return set_error(msg, msglen, r, "create the layer %s: %s", layer, strerror(-r));
        /* volatile, as hostd mounts a dyno's throw-away layer (images/layer.c). */
        pathf(overlay, sizeof overlay,
              "lowerdir=%s:%s,upperdir=%s/upper,workdir=%s/work,volatile", f->slug, f->stack,
              layer, layer);
        uint64_t t1 = now_ns();
        r = cgroup_make(f, dirs, id);
        if (r < 0) {
                (void)rm_cgroups(dirs, f->n_hier);
                (void)rm_rf(layer);
                return set_error(msg, msglen, r, "create cgroup %s: %s", id, strerror(-r));
        }
        uint64_t t2 = now_ns();

        /* v1: the tasks files the child writes to move itself in (hostd's cg_procs_open_self). */
        int tasks[MAX_HIER];
        size_t n_tasks = 0;
        for (size_t i = 0; !f->v2 && i < f->n_hier; i++) {
                char path[PATH_MAX];
                pathf(path, sizeof path, "%s/tasks", dirs[i]);
                tasks[n_tasks] = open(path, O_WRONLY | O_CLOEXEC);
                if (tasks[n_tasks] < 0) {
                        r = set_error(msg, msglen, -errno, "open %s: %s", path, strerror(errno));
                        while (n_tasks > 0)
                                close(tasks[--n_tasks]);
                        goto undo;
                }
                n_tasks++;
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                while (n_tasks > 0)
                        close(tasks[--n_tasks]);
                goto undo;
        }
        int pidfd = -1;
        struct clone_args_v2 args = {
                .flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                         CLONE_PIDFD,
                .pidfd = (uint64_t)(uintptr_t)&pidfd,
                .exit_signal = SIGCHLD,
        };
        size_t size = CLONE_ARGS_SIZE_V0;
        /* On v2 the child is born in its cgroup, as hostd's first process is: no move through
         * cgroup.procs, whose first write waits for an RCU grace period. */
        int cgfd = -1;
        if (f->v2) {
                cgfd = open(dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (cgfd < 0) {
                        r = set_error(msg, msglen, -errno, "open %s: %s", dirs[0], strerror(errno));
                        close(sv[0]);
                        close(sv[1]);
                        goto undo;
                }
                args.flags |= CLONE_INTO_CGROUP;
                args.cgroup = (uint64_t)cgfd;
                size = sizeof args;
        }
        pid_t pid = (pid_t)syscall(SYS_clone3, &args, size);
        if (pid == 0) {
                close(sv[0]);
                child_main(f, id, layer, overlay, tasks, sv[1]);
        }
        if (pid < 0)
                r = -errno;
        if (cgfd >= 0)
                close(cgfd);
        while (n_tasks > 0)
                close(tasks[--n_tasks]);
        close(sv[1]);
        if (pid < 0) {
                close(sv[0]);
                set_error(msg, msglen, r, "clone3: %s", strerror(-r));
                goto undo;
        }
        uint64_t t3 = now_ns();

        uint64_t t6 = t3;
        if (r >= 0) {
                char err[512];
                ssize_t n;
                while ((n = recv(sv[0], err, sizeof err - 1, 0)) < 0 && errno == EINTR)
                        ;
                if (n < 0)
                        r = set_error(msg, msglen, -errno, "read the child's result: %s",
                                      strerror(errno));
                else if (n > 0) {
                        err[n] = 0;
                        r = set_error(msg, msglen, -EPROTO, "start %s: %s", id, err);
                }
        }
        uint64_t t7 = now_ns();
        close(sv[0]);
        if (r >= 0) {
                (void)!write(STDOUT_FILENO, "exec\n", 5);
                *pt = (struct parts){ .layer = t1 - t0,
                                      .cgroup = t2 - t1,
                                      .clone = t3 - t2,
                                      .procs_first = child_times[0],
                                      .procs_rest = child_times[1],
                                      .exec = t7 - t6,
                                      .total = t7 - t0 };
        } else
                (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        /* hostd registers these once the dyno runs, off its start path (its worker thread):
         * after the answer here too, but done, so that the cleanup is the same. */
        if (r >= 0) {
                r = events_register(f, dirs[0], efds);
                if (r < 0)
                        set_error(msg, msglen, r, "register memory notifications in %s: %s",
                                  dirs[0], strerror(-r));
                pt->events = now_ns() - t7;
        }

        /* Untimed: the end of `true`, then the cgroups and the layer. */
        siginfo_t si = {};
        while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
                ;
        close(pidfd);
        for (int i = 0; i < 4; i++)
                if (efds[i] >= 0)
                        close(efds[i]);
        if (r >= 0 && !(si.si_code == CLD_EXITED && si.si_status == 0))
                r = set_error(msg, msglen, -EPROTO, "start %s: true ended with code %d status %d",
                              id, si.si_code, si.si_status);
undo:;
        int k = rm_cgroups(dirs, f->n_hier);
        if (k < 0 && r >= 0)
                r = set_error(msg, msglen, k, "remove cgroup %s: %s", id, strerror(-k));
        k = rm_rf(layer);
        if (k < 0 && r >= 0)
                r = set_error(msg, msglen, k, "remove the layer %s: %s", layer, strerror(-k));
        return r;
}

static int cap_last_cap(void)
{
        FILE *fp = fopen("/proc/sys/kernel/cap_last_cap", "re");
        int n = 40;
        if (fp) {
                if (fscanf(fp, "%d", &n) != 1)
                        n = 40;
                fclose(fp);
        }
        return n;
}

static void usage(void)
{
        fprintf(stderr, "usage: start-floor --stack DIR --slug DIR --layers DIR --uid N "
                        "(--cgroup CONTROLLERS=DIR)... | --cgroup2 DIR\n");
        exit(2);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "stack", required_argument, NULL, 's' },
                { "slug", required_argument, NULL, 'a' },
                { "layers", required_argument, NULL, 'l' },
                { "uid", required_argument, NULL, 'u' },
                { "cgroup", required_argument, NULL, 'c' },
                { "cgroup2", required_argument, NULL, '2' },
                {},
        };
        struct floor f = {};
        int c;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 's': f.stack = optarg; break;
                case 'a': f.slug = optarg; break;
                case 'l': f.layers = optarg; break;
                case 'u': f.uid = (uid_t)strtoul(optarg, NULL, 10); break;
                case 'c':
                case '2': {
                        char *eq = strchr(optarg, '=');
                        if (f.n_hier == MAX_HIER || (c == 'c' && !eq) || (c == '2' && f.n_hier))
                                usage();
                        f.v2 = c == '2';
                        f.hier[f.n_hier].controllers =
                                c == 'c' ? strndup(optarg, (size_t)(eq - optarg)) : NULL;
                        f.hier[f.n_hier++].parent = c == 'c' ? eq + 1 : optarg;
                        break;
                }
                default: usage();
                }
        }
        if (!f.stack || !f.slug || !f.layers || f.uid == 0 || f.n_hier == 0 ||
            (f.v2 && f.n_hier != 1))
                usage();
        bool long_path = strlen(f.stack) >= PATH_LEN_MAX || strlen(f.slug) >= PATH_LEN_MAX ||
                         strlen(f.layers) >= PATH_LEN_MAX;
        for (size_t i = 0; i < f.n_hier; i++)
                long_path = long_path || strlen(f.hier[i].parent) >= PATH_LEN_MAX;
        if (long_path) {
                printf("error a path of %d characters or more\n", PATH_LEN_MAX);
                return 1;
        }
        f.cap_last = cap_last_cap();
        child_times = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (child_times == MAP_FAILED) {
                printf("error map a shared page: %s\n", strerror(errno));
                return 1;
        }
        int r = dyno_seccomp_new(&f.seccomp);
        if (r < 0) {
                printf("error build the seccomp filter: %s\n", strerror(-r));
                return 1;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);

        char line[256];
        while (fgets(line, sizeof line, stdin)) {
                char id[128];
                if (sscanf(line, "start %127s", id) != 1 || id[0] == '.' ||
                    strspn(id,
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
                            strlen(id)) {
                        printf("error not a request: %s", line);
                        return 1;
                }
                struct parts p;
                char msg[1024] = "";
                r = floor_start(&f, id, &p, msg, sizeof msg);
                if (r < 0) {
                        printf("error %s\n", msg);
                        return 1;
                }
                printf("done %s layer=%" PRIu64 " cgroup=%" PRIu64 " clone=%" PRIu64
                       " procs_first=%" PRIu64 " procs_rest=%" PRIu64 " events=%" PRIu64
                       " exec=%" PRIu64 " total=%" PRIu64 "\n",
                       id, p.layer, p.cgroup, p.clone, p.procs_first, p.procs_rest, p.events,
                       p.exec, p.total);
        }
        dyno_seccomp_free(&f.seccomp);
        return 0;
}
