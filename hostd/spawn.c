/* The dyno's processes.
 *
 * hostd clones the first process straight into new PID, mount, UTS, IPC and network
 * namespaces (clone3, with a pidfd), and on cgroup v2 straight into the dyno's cgroup
 * (CLONE_INTO_CGROUP). That process mounts the root filesystem in its private mount namespace
 * (so the mounts vanish with the namespace: nothing to unmount on any path) while, on v1,
 * hostd's worker thread moves it into the dyno's cgroup (a write that waits for an RCU grace
 * period: offload.h) and netd wires its network; once hostd lets it go it enters a new cgroup
 * namespace, pivots into the root, forks the command and finally executes the tiny hostd-init
 * by descriptor.
 * The command drops every privilege in crun's order: rlimits, bounding set, uid/gid,
 * remaining capabilities, no_new_privs, seccomp last, then execve.
 *
 * Errors in either process go back to hostd over a SOCK_SEQPACKET pair whose ends close on
 * exec: hostd sees either one struct spawn_error or EOF, which means both have executed. */
#include "spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "cgroup.h"
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

/* What hostd-init relays to the dyno (keep in step with init.c). */
static const int init_relayed_signals[] = { SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                            SIGUSR1, SIGUSR2, SIGWINCH };

/* The descriptors the first process keeps, at fixed numbers. */
enum {
        FD_STATE = 3, /* the init's: its state folder */
        FD_LOG_R = 4, /* the init's: kept for hostd's next life */
        FD_LOG_W = 5, /* the command's stdout and stderr */
        FD_SYNC = 6,
        FD_INIT = 7,
        FD_FIRST_FREE = 8,
};

struct clone_args_v2 {
        uint64_t flags;
        uint64_t pidfd;
        uint64_t child_tid;
        uint64_t parent_tid;
        uint64_t exit_signal;
        uint64_t stack;
        uint64_t stack_size;
        uint64_t tls;
        /* version 1 (5.5) */
        uint64_t set_tid;
        uint64_t set_tid_size;
        /* version 2 (5.7) */
        uint64_t cgroup;
};
#define CLONE_ARGS_SIZE_V0 64

/* A struct spawn_error of error 0 carrying a descriptor: not a failure, a handover. */
static int spawn_send_fd(int sock, int fd)
{
        struct spawn_error e = { .error = 0 };
        snprintf(e.where, sizeof e.where, "terminal");
        struct iovec iov = { .iov_base = &e, .iov_len = sizeof e };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {};
        struct msghdr mh = { .msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = u.buf,
                             .msg_controllen = sizeof u.buf };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
        return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* A new process of ours starts with signals as a fresh program has them: hostd blocks and
 * ignores some for its own loop. */
static void child_reset_signals(void)
{
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
}

/* See spawn.h. */
void spawn_keep_fds(const int *want, const int *at, size_t n, int first_free)
{
        int high[8];
        if (n > ELEMENTSOF(high))
                _exit(127);
        /* Out of the way first, so that no want[] is overwritten before it is moved. */
        for (size_t i = 0; i < n; i++) {
                high[i] = fcntl(want[i], F_DUPFD_CLOEXEC, 64);
                if (high[i] < 0)
                        _exit(127);
        }
        for (size_t i = 0; i < n; i++)
                if (dup2(high[i], at[i]) < 0)
                        _exit(127);
        if (syscall(SYS_close_range, first_free, ~0U, 0) < 0)
                for (int fd = first_free; fd < 65536; fd++)
                        close(fd);
        for (int fd = 3; fd < first_free; fd++) {
                bool kept = false;
                for (size_t i = 0; i < n; i++)
                        kept = kept || at[i] == fd;
                if (!kept)
                        close(fd);
        }
}

static _Noreturn void child_vreport(int sock, int error, const char *fmt, va_list ap)
{
        struct spawn_error e = { .error = error > 0 ? error : (error < 0 ? -error : EIO) };
        vsnprintf(e.where, sizeof e.where, fmt, ap);
        (void)!send(sock, &e, sizeof e, MSG_NOSIGNAL);
        _exit(127);
}

/* A failure of a new process, said on its sync socket, and its end. */
_printf_(3, 4) static _Noreturn void child_report(int sock, int error, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        child_vreport(sock, error, fmt, ap);
}

/* The same once the sync socket is at FD_SYNC. */
_printf_(2, 3) static _Noreturn void child_fail(int error, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        child_vreport(FD_SYNC, error, fmt, ap);
}

/* snprintf into a path buffer; a path that does not fit is a setup error, never a cut. */
_printf_(3, 4) static void child_path(char *buf, size_t size, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= size)
                child_fail(ENAMETOOLONG, "path %.64s...", buf);
}

static void child_mkdir(const char *root, const char *name, mode_t mode)
{
        char path[PATH_MAX];
        child_path(path, sizeof path, "%s/%s", root, name);
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                child_fail(errno, "create %s", path);
}

static void child_mount(const char *src, const char *root, const char *target, const char *type,
                        unsigned long flags, const char *data)
{
        char path[PATH_MAX];
        child_path(path, sizeof path, "%s%s", root, target);
        if (mount(src, path, type, flags, data) < 0)
                child_fail(errno, "mount %s on %s", type ? type : src, target);
}

static void child_setup_dev(const char *root, uint64_t shm_size)
{
        static const struct {
                const char *name;
                unsigned major, minor;
        } nodes[] = {
                { "null", 1, 3 },   { "zero", 1, 5 },    { "full", 1, 7 },
                { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
        };
        char dev[PATH_MAX], path[PATH_MAX];
        child_path(dev, sizeof dev, "%s/dev", root);

        child_mount("tmpfs", root, "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_STRICTATIME,
                    "mode=755,size=1m");
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
                child_path(path, sizeof path, "%s/%s", dev, nodes[i].name);
                if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0)
                        child_fail(errno, "create /dev/%s", nodes[i].name);
        }
        child_mkdir(dev, "pts", 0755);
        child_mkdir(dev, "shm", 01777);
        child_mount("devpts", root, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620");
        char opts[64];
        child_path(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)shm_size);
        child_mount("shm", root, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts);

        static const struct {
                const char *target, *name;
        } links[] = {
                { "pts/ptmx", "ptmx" },          { "/proc/self/fd", "fd" },
                { "/proc/self/fd/0", "stdin" },  { "/proc/self/fd/1", "stdout" },
                { "/proc/self/fd/2", "stderr" },
        };
        for (size_t i = 0; i < ELEMENTSOF(links); i++) {
                child_path(path, sizeof path, "%s/%s", dev, links[i].name);
                if (symlink(links[i].target, path) < 0)
                        child_fail(errno, "create /dev/%s", links[i].name);
        }
}

/* The dyno's own cgroup, read-only at /sys/fs/cgroup, as the root of its cgroup namespace:
 * apps and buildpacks read their limits there (memory.max, memory.limit_in_bytes). */
static void child_mount_cgroups(const char *root, const struct cg_view *v)
{
        const unsigned long ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
        if (v->v2) {
                child_mount("cgroup2", root, "/sys/fs/cgroup", "cgroup2", ro, NULL);
                return;
        }
        /* v1: a folder per hierarchy, as the host has them, on a tmpfs made read-only after. */
        char top[PATH_MAX], target[PATH_MAX];
        child_path(top, sizeof top, "%s/sys/fs/cgroup", root);
        child_mount("tmpfs", root, "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "mode=755,size=64k");
        for (size_t i = 0; i < v->n; i++) {
                const char *name = v->mounts[i].name;
                child_mkdir(top, name, 0755);
                child_path(target, sizeof target, "/sys/fs/cgroup/%s", name);
                child_mount("cgroup", root, target, "cgroup", ro, v->mounts[i].options);
                /* Co-mounted controllers ("cpu,cpuacct") are also found by each one's name. */
                if (!strchr(name, ','))
                        continue;
                char part[64];
                for (const char *p = name; *p;) {
                        size_t n = strcspn(p, ",");
                        if (n > 0 && n < sizeof part) {
                                memcpy(part, p, n);
                                part[n] = 0;
                                child_path(target, sizeof target, "%s/%s", top, part);
                                if (symlink(name, target) < 0 && errno != EEXIST)
                                        child_fail(errno, "create /sys/fs/cgroup/%s", part);
                        }
                        p += n + (p[n] == ',');
                }
        }
        if (mount(NULL, top, NULL, MS_REMOUNT | ro, NULL) < 0)
                child_fail(errno, "make /sys/fs/cgroup read-only");
}

static int openat2_(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
        struct open_how how = { .flags = (uint64_t)flags, .mode = mode, .resolve = resolve };
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Whether the passwd or group text names user or its id (the third field of each line). */
static bool etc_file_has(const char *text, const char *user, uid_t uid)
{
        char id[16];
        int idlen = snprintf(id, sizeof id, "%u", (unsigned)uid);
        size_t ulen = strlen(user);
        for (const char *line = text; *line;) {
                const char *end = strchrnul(line, '\n');
                if ((size_t)(end - line) > ulen && strncmp(line, user, ulen) == 0 &&
                    line[ulen] == ':')
                        return true;
                const char *f = line;
                for (int k = 0; k < 2 && f && f < end; k++)
                        f = memchr(f, ':', (size_t)(end - f)), f = f ? f + 1 : NULL;
                if (f && end - f >= idlen && strncmp(f, id, (size_t)idlen) == 0 &&
                    (f + idlen == end || f[idlen] == ':'))
                        return true;
                line = *end ? end + 1 : end;
        }
        return false;
}

/* A passwd and a group entry for the dyno's uid, "u<uid>" at home in /app, so that whoami,
 * getpwuid() and the programs that use them work. Appended in the dyno's writable layer
 * (overlayfs copies the stack's file up): the stack image is not touched. Called on the new
 * root before the go, while netd wires the network (when it does), so that the copy-up is off
 * the start's path then. Nothing is resolved outside the root: /etc and the files
 * are opened beneath it without following any symlink (one could lead to the host's files),
 * and a stack whose /etc/passwd is not a plain file keeps it as it is. */
static void child_add_user(const char *root, uid_t uid)
{
        const uint64_t strict = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                                RESOLVE_NO_XDEV;
        _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                child_fail(errno, "open %s", root);
        /* The login shell is the one the command runs with (spawn_params.argv0_fallback):
         * bash if the stack has it, resolved as it will be once the root is "/". */
        const char *shell = "/bin/sh";
        _cleanup_close_ int bash = openat2_(rootfd, "bin/bash", O_PATH | O_CLOEXEC, 0,
                                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        struct stat st;
        if (bash >= 0 && fstat(bash, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
                shell = "/bin/bash";
        _cleanup_close_ int etc =
                openat2_(rootfd, "etc", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, strict);
        if (etc < 0)
                return; /* no /etc: a stack with nobody to name */
        char user[32];
        snprintf(user, sizeof user, "u%u", (unsigned)uid);
        static const char *const files[] = { "passwd", "group" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_close_ int fd = openat2_(
                        etc, files[i], O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644, strict);
                if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 22))
                        continue;
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                int r = read_full_fd(fd, &text, &len);
                if (r < 0)
                        child_fail(r, "read /etc/%s", files[i]);
                if (etc_file_has(text, user, uid))
                        continue;
                char add[512];
                int n = 0;
                if (len > 0 && text[len - 1] != '\n')
                        add[n++] = '\n';
                if (len == 0) /* made now: root has a name too */
                        n += snprintf(add + n, sizeof add - (size_t)n,
                                      i == 0 ? "root:x:0:0:root:/root:%s\n" : "root:x:0:\n", shell);
                if (i == 0)
                        n += snprintf(add + n, sizeof add - (size_t)n, "%s:x:%u:%u:dyno:/app:%s\n",
                                      user, (unsigned)uid, (unsigned)uid, shell);
                else
                        n += snprintf(add + n, sizeof add - (size_t)n, "%s:x:%u:\n", user,
                                      (unsigned)uid);
                if (write(fd, add, (size_t)n) != n)
                        child_fail(errno ? errno : EIO, "add the dyno's user to /etc/%s", files[i]);
        }
}

static void child_loopback_up(void)
{
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                child_fail(errno, "socket for loopback");
        struct ifreq ifr = {};
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                child_fail(errno, "read loopback flags");
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                child_fail(errno, "bring loopback up");
}

/* Drop everything a dyno's process must not have, in crun's order: rlimits, the bounding set,
 * groups, gid and uid, the other capability sets, no_new_privs, and the seccomp filter last. */
static void child_become_dyno_user(uid_t uid, uint64_t rlimit_nofile, uint64_t rlimit_nproc,
                                   const struct sock_fprog *seccomp)
{
        struct rlimit nofile = { rlimit_nofile, rlimit_nofile };
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
                child_fail(errno, "set RLIMIT_NOFILE to %llu", (unsigned long long)rlimit_nofile);
        /* The kernel counts RLIMIT_NPROC per uid, and each dyno has a uid of its own: the
         * size's pids limit here is what `ulimit -u` tells the app, and holds as pids.max does. */
        struct rlimit nproc = { rlimit_nproc ? rlimit_nproc : RLIM_INFINITY,
                                rlimit_nproc ? rlimit_nproc : RLIM_INFINITY };
        if (setrlimit(RLIMIT_NPROC, &nproc) < 0)
                child_fail(errno, "set RLIMIT_NPROC to %llu", (unsigned long long)rlimit_nproc);
        struct rlimit core = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &core) < 0)
                child_fail(errno, "set RLIMIT_CORE");

        /* The bounding set needs CAP_SETPCAP, so it goes before the uid switch. */
        for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++)
                if (cap_drop_bound(c) < 0)
                        child_fail(errno, "drop capability %d from the bounding set", (int)c);

        gid_t gid = (gid_t)uid;
        if (setgroups(0, NULL) < 0)
                child_fail(errno, "drop supplementary groups");
        if (setresgid(gid, gid, gid) < 0)
                child_fail(errno, "set gid %u", (unsigned)gid);
        if (setresuid(uid, uid, uid) < 0)
                child_fail(errno, "set uid %u", (unsigned)uid);

        /* The uid switch emptied permitted and effective; clear inheritable and ambient too. */
        cap_t none = cap_init();
        if (!none || cap_set_proc(none) < 0)
                child_fail(errno, "clear capabilities");
        cap_free(none);
        if (cap_reset_ambient() < 0)
                child_fail(errno, "clear ambient capabilities");

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(errno, "set no_new_privs");
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, seccomp) < 0)
                child_fail(errno, "load the seccomp filter");
}

/* The command's process, inside the new root: drop everything, then exec. */
static _Noreturn void child_exec_command(const struct spawn_params *p, int master)
{
        if (setsid() < 0)
                child_fail(errno, "setsid");

        close(FD_STATE);
        close(FD_LOG_R);
        close(FD_INIT);
        if (master >= 0) {
                /* A one-off's terminal: stdin, stdout and stderr, and the controlling tty. */
                int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (slave < 0)
                        child_fail(errno, "open the terminal's peer");
                if (ioctl(slave, TIOCSCTTY, 0) < 0)
                        child_fail(errno, "take the terminal");
                for (int fd = 0; fd < 3; fd++)
                        if (dup2(slave, fd) < 0)
                                child_fail(errno, "set up stdio");
                close(slave);
                close(master);
        } else {
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul < 0)
                        child_fail(errno, "open /dev/null");
                if (dup2(nul, 0) < 0 || dup2(FD_LOG_W, 1) < 0 || dup2(FD_LOG_W, 2) < 0)
                        child_fail(errno, "set up stdio");
                close(nul);
        }
        close(FD_LOG_W);

        child_become_dyno_user(p->uid, p->rlimit_nofile, p->rlimit_nproc, p->seccomp);

        if (chdir("/app") < 0)
                child_fail(errno, "enter /app");
        execve(p->argv[0], p->argv, p->envp);
        if (errno == ENOENT && p->argv0_fallback) {
                /* Only the init, which is done with it, shares this memory: busybox picks its
                 * applet by argv[0]. */
                p->argv[0] = (char *)p->argv0_fallback;
                execve(p->argv0_fallback, p->argv, p->envp);
                child_fail(errno, "execute %s (the stack has no %s) in the stack",
                           p->argv0_fallback, p->argv[0]);
        }
        child_fail(errno, "execute %s in the stack", p->argv[0]);
}

/* See spawn.h. A fork would copy the page tables of all of hostd's memory, and the new
 * program's execve would then tear that copy down: 1 to 2 ms of a start. */
pid_t spawn_vfork(int (*fn)(void *), void *arg)
{
        const size_t size = 256 * 1024;
        void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
                return -1;
        pid_t pid = clone(fn, (char *)stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
        int e = errno;
        munmap(stack, size);
        errno = e;
        return pid;
}

struct command_args {
        const struct spawn_params *p;
        int master;
};

static int command_start(void *arg)
{
        const struct command_args *a = arg;
        child_exec_command(a->p, a->master);
}

static _Noreturn void child_main(const struct spawn_params *p, int sync_fd)
{
        /* The dyno's PID 1 from now on, though it executes hostd-init only after the command
         * (which may look at /proc/1 at once): named so from the start. */
        (void)prctl(PR_SET_NAME, "hostd-init");
        /* hostd blocks and ignores signals for its own loop; the dyno starts clean. The clone
         * holds copies of all of hostd's sockets and pipes: only ours stay. */
        child_reset_signals();
        const int want[] = { p->state_dirfd, p->log_read_fd, p->log_write_fd, sync_fd,
                             p->init_exe_fd };
        const int at[] = { FD_STATE, FD_LOG_R, FD_LOG_W, FD_SYNC, FD_INIT };
        spawn_keep_fds(want, at, ELEMENTSOF(want), FD_FIRST_FREE);
        for (int fd = FD_LOG_W; fd <= FD_INIT; fd++)
                fcntl(fd, F_SETFD, FD_CLOEXEC);

        /* Nothing mounted here may propagate back to the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                child_fail(errno, "make mounts private");

        umask(0);
        char root[PATH_MAX];
        child_path(root, sizeof root, "%s/merged", p->layer_dir);
        if (mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, p->overlay_options) < 0) {
                /* "volatile" (layer_mount_options) came with Linux 5.10: without it, the same
                 * layer with its syncs. */
                char plain[3 * PATH_MAX + 64];
                const char *v = strstr(p->overlay_options, ",volatile");
                int e = errno;
                if (e != EINVAL || !v || v[strlen(",volatile")] ||
                    (size_t)(v - p->overlay_options) >= sizeof plain)
                        child_fail(e, "mount the root filesystem (overlay %s)", p->overlay_options);
                memcpy(plain, p->overlay_options, (size_t)(v - p->overlay_options));
                plain[v - p->overlay_options] = 0;
                if (mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, plain) < 0)
                        child_fail(errno, "mount the root filesystem (overlay %s)", plain);
        }

        child_mkdir(root, "proc", 0555);
        child_mkdir(root, "dev", 0755);
        child_mkdir(root, "sys", 0555);
        child_mkdir(root, "tmp", 01777);
        child_mount("proc", root, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        child_setup_dev(root, p->shm_size);
        child_mount("sysfs", root, "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    NULL);
        umask(022);
        child_add_user(root, p->uid);
        umask(0);

        /* The root is built, and we are in the dyno's cgroup (clone_in_cgroup): wait until
         * netd has wired the network, if it does, then root a cgroup namespace here. */
        char go;
        if (read(FD_SYNC, &go, 1) != 1)
                _exit(127);
        if (unshare(CLONE_NEWCGROUP) < 0)
                child_fail(errno, "create cgroup namespace");
        if (p->cgroup_view)
                child_mount_cgroups(root, p->cgroup_view);

        int master = -1;
        if (p->tty) {
                /* A terminal of the dyno's own devpts, made before the root is left behind. */
                char ptmx[PATH_MAX];
                child_path(ptmx, sizeof ptmx, "%s/dev/pts/ptmx", root);
                master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
                int unlock = 0;
                struct winsize ws = { .ws_row = (unsigned short)(p->tty_rows ? p->tty_rows : 24),
                                      .ws_col = (unsigned short)(p->tty_columns ? p->tty_columns :
                                                                                  80) };
                if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0 ||
                    ioctl(master, TIOCSWINSZ, &ws) < 0)
                        child_fail(errno, "create the dyno's terminal");
        }

        if (sethostname(p->id, strlen(p->id)) < 0)
                child_fail(errno, "set hostname");
        child_loopback_up();

        if (chdir(root) < 0)
                child_fail(errno, "enter %s", root);
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                child_fail(errno, "pivot_root to %s", root);
        if (umount2(".", MNT_DETACH) < 0)
                child_fail(errno, "detach the host's root");
        if (chdir("/") < 0)
                child_fail(errno, "enter /");
        umask(022);

        if (master >= 0) {
                /* A one-off's command runs only once its client is there: hostd gets the
                 * terminal now, and lets us go on when a client has attached to it. */
                if (spawn_send_fd(FD_SYNC, master) < 0)
                        child_fail(errno, "hand the terminal to hostd");
                if (read(FD_SYNC, &go, 1) != 1)
                        _exit(127);
        }

        struct command_args ca = { .p = p, .master = master };
        pid_t cmd = spawn_vfork(command_start, &ca);
        if (cmd < 0)
                child_fail(errno, "fork the command");

        close(FD_LOG_W);
        if (master >= 0) {
                /* The init keeps the terminal where the log pipe's write end was, for a hostd
                 * that restarts to take back (pidfd_getfd). */
                if (dup3(master, FD_LOG_W, O_CLOEXEC) < 0 || fcntl(FD_LOG_W, F_SETFD, 0) < 0)
                        child_fail(errno, "keep the terminal");
                close(master);
        }
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
                child_fail(errno, "set up the init's stdio");
        close(nul);

        /* The OOM killer should pick one of the dyno's own processes, never the init: its
         * end would end them all. Lowering the score takes CAP_SYS_RESOURCE, which some
         * sandboxes withhold from hostd: then the init's few pages make it the last choice. */
        int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (adj >= 0) {
                (void)!write(adj, "-1000", 5);
                close(adj);
        }

        /* The init needs no privilege but CAP_KILL, to relay signals to the dyno's other uid
         * (it writes its exit record as the owner of the run folder). Root's capabilities
         * after execve are the bounding set: leave only that one in it. */
        for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++)
                if (c != CAP_KILL && cap_drop_bound(c) < 0)
                        child_fail(errno, "drop capability %d from the init's bounding set",
                                   (int)c);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(errno, "set no_new_privs for the init");
        /* The same in our own sets now, not only after the execve: hostd answers before it
         * (SPAWN_STARTED), and whoever looks at the init then finds what it will keep. */
        cap_t kill_only = cap_init();
        const cap_value_t keep[] = { CAP_KILL };
        if (!kill_only || cap_set_flag(kill_only, CAP_PERMITTED, 1, keep, CAP_SET) < 0 ||
            cap_set_flag(kill_only, CAP_EFFECTIVE, 1, keep, CAP_SET) < 0 ||
            cap_set_proc(kill_only) < 0)
                child_fail(errno, "keep only CAP_KILL for the init");
        cap_free(kill_only);

        /* A namespace's init drops a signal it has no handler for. Until hostd-init has set
         * its handlers, hold the signals it relays blocked: blocked, they stay pending (a
         * stop sent right after the start is not lost), and the mask survives execve. */
        sigset_t relayed;
        sigemptyset(&relayed);
        for (size_t i = 0; i < ELEMENTSOF(init_relayed_signals); i++)
                sigaddset(&relayed, init_relayed_signals[i]);
        sigprocmask(SIG_BLOCK, &relayed, NULL);

        char pidbuf[16];
        snprintf(pidbuf, sizeof pidbuf, "%d", (int)cmd);
        char *argv[] = { (char *)"hostd-init", pidbuf, NULL };
        char *envp[] = { NULL };
        /* The command runs (its own failure was said before we got here): hostd may answer
         * now, rather than when our execveat has torn down this copy of hostd's memory, about
         * half a millisecond later. */
        const struct spawn_error started = { .error = 0, .where = SPAWN_STARTED };
        (void)!send(FD_SYNC, &started, sizeof started, MSG_NOSIGNAL);
        syscall(SYS_execveat, FD_INIT, "", argv, envp, AT_EMPTY_PATH);
        /* Our exit as the namespace's init takes the command with us: hostd hears of it as
         * the dyno's end (status 127). */
        child_fail(errno, "execute the dyno init");
}

/* clone3 a process with flags (CLONE_PIDFD among them) running child(p, its end of a new
 * sync socket), in the cgroup of id: born there on v2 (CLONE_INTO_CGROUP); on v1 it moves
 * itself in before anything else (cg_procs_join_self, no grace period to wait for), and says
 * on the sync socket if it could not. On failure nothing is left running. */
static int clone_in_cgroup(uint64_t flags, struct cg_manager *cg, const char *id,
                           void (*child)(const void *p, int sync_fd), const void *p,
                           struct spawn_child *ret)
{
        struct cg_procs procs;
        int r = cg_procs_open_self(cg, id, &procs);
        if (r < 0)
                return r;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                cg_procs_close(&procs);
                return r;
        }
        _cleanup_close_ int parent_end = sv[0];
        _cleanup_close_ int child_end = sv[1];

        int pidfd = -1;
        struct clone_args_v2 args = {
                .flags = flags,
                .pidfd = (uint64_t)(uintptr_t)&pidfd,
                .exit_signal = SIGCHLD,
        };
        size_t size = CLONE_ARGS_SIZE_V0;
        if (procs.dir >= 0) {
                args.flags |= CLONE_INTO_CGROUP;
                args.cgroup = (uint64_t)procs.dir;
                size = sizeof args;
        }
        pid_t pid = (pid_t)syscall(SYS_clone3, &args, size);
        if (pid < 0) {
                r = -errno;
                cg_procs_close(&procs);
                return r;
        }
        if (pid == 0) {
                r = cg_procs_join_self(&procs);
                if (r < 0)
                        child_report(child_end, -r, "move into the dyno's cgroup %s", id);
                child(p, child_end); /* does not return */
                _exit(127);
        }
        cg_procs_close(&procs);
        ret->pid = pid;
        ret->pidfd = pidfd;
        ret->sync_fd = TAKE_FD(parent_end);
        return 0;
}

static _Noreturn void child_start(const void *p, int sync_fd) { child_main(p, sync_fd); }

int spawn_dyno(const struct spawn_params *p, struct cg_manager *cg, struct spawn_child *ret)
{
        return clone_in_cgroup(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                       CLONE_NEWNET | CLONE_PIDFD,
                               cg, p->cgroup, child_start, p, ret);
}

/* ---- exec ---- */

enum {
        EXEC_FD_IO = 3,
        EXEC_FD_DYNO = 4,
        /* FD_SYNC, 6, as for the first process: child_fail() writes there */
        EXEC_FD_FIRST_FREE = 7,
};

static _Noreturn void exec_command(const struct exec_params *p, int slave)
{
        if (setsid() < 0)
                child_fail(errno, "setsid");
        int io = p->tty ? slave : EXEC_FD_IO;
        if (p->tty && ioctl(slave, TIOCSCTTY, 0) < 0)
                child_fail(errno, "take the terminal");
        for (int fd = 0; fd < 3; fd++)
                if (dup2(io, fd) < 0)
                        child_fail(errno, "set up stdio");
        close(EXEC_FD_IO);
        if (slave >= 0)
                close(slave);

        child_become_dyno_user(p->uid, p->rlimit_nofile, p->rlimit_nproc, p->seccomp);
        if (chdir("/app") < 0 && chdir("/") < 0)
                child_fail(errno, "enter /app");
        /* execvp looks PATH up in environ, not in an envp argument. */
        environ = p->envp;
        execvp(p->argv[0], p->argv);
        child_fail(errno, "execute %s in the dyno", p->argv[0]);
}

struct exec_command_args {
        const struct exec_params *p;
        int slave;
};

static int exec_command_start(void *arg)
{
        const struct exec_command_args *a = arg;
        exec_command(a->p, a->slave);
}

static _Noreturn void exec_helper_main(const struct exec_params *p, int sync_fd)
{
        child_reset_signals();
        const int want[] = { p->io_fd, p->dyno_pidfd, sync_fd };
        const int at[] = { EXEC_FD_IO, EXEC_FD_DYNO, FD_SYNC };
        spawn_keep_fds(want, at, ELEMENTSOF(want), EXEC_FD_FIRST_FREE);
        for (size_t i = 0; i < ELEMENTSOF(at); i++)
                fcntl(at[i], F_SETFD, FD_CLOEXEC);

        char go;
        if (read(FD_SYNC, &go, 1) != 1)
                _exit(127);
        /* In the dyno's cgroup now (hostd put us there): its cgroup namespace is rooted at it. */
        if (setns(EXEC_FD_DYNO, CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                                        CLONE_NEWPID | CLONE_NEWCGROUP) < 0)
                child_fail(errno, "enter the dyno's namespaces");
        close(EXEC_FD_DYNO);

        int slave = -1;
        if (p->tty) {
                /* The peer of a master of the dyno's own devpts, without a path lookup. */
                slave = ioctl(EXEC_FD_IO, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (slave < 0)
                        child_fail(errno, "open the terminal's peer");
        }

        /* the first process in the dyno's PID namespace */
        struct exec_command_args ea = { .p = p, .slave = slave };
        pid_t cmd = spawn_vfork(exec_command_start, &ea);
        if (cmd < 0)
                child_fail(errno, "fork the command");

        /* The command holds what it needs; we only wait, with nothing. */
        close(EXEC_FD_IO);
        if (slave >= 0)
                close(slave);
        close(FD_SYNC);
        for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++)
                (void)cap_drop_bound(c);
        cap_t none = cap_init();
        if (none)
                (void)cap_set_proc(none);
        cap_free(none);
        (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);

        int status;
        while (waitpid(cmd, &status, 0) < 0)
                if (errno != EINTR)
                        _exit(127);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static _Noreturn void exec_helper_start(const void *p, int sync_fd)
{
        exec_helper_main(p, sync_fd);
}

int spawn_exec(const struct exec_params *p, struct cg_manager *cg, const char *dyno_id,
               struct spawn_child *ret)
{
        /* Counted in the dyno's pids, killed with it, before it runs anything. */
        return clone_in_cgroup(CLONE_PIDFD, cg, dyno_id, exec_helper_start, p, ret);
}

int spawn_go(int sync_fd) { return send(sync_fd, "g", 1, MSG_NOSIGNAL) == 1 ? 0 : -errno; }

int spawn_read_result(int sync_fd, struct spawn_error *err, int *ret_fd)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u;
        struct iovec iov = { .iov_base = err, .iov_len = sizeof *err };
        struct msghdr mh = { .msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = u.buf,
                             .msg_controllen = sizeof u.buf };
        ssize_t n = recvmsg(sync_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        int fd = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                    c->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        if (n == 0)
                return 0;
        if ((size_t)n != sizeof *err) {
                closep(&fd);
                err->error = EPROTO;
                snprintf(err->where, sizeof err->where, "short message from the dyno setup");
                return 1;
        }
        err->where[sizeof err->where - 1] = 0;
        if (err->error == 0 && fd < 0 && strcmp(err->where, SPAWN_STARTED) == 0)
                return 0;
        if (err->error == 0 && fd >= 0) {
                if (ret_fd)
                        *ret_fd = fd;
                else
                        close(fd);
                return 2;
        }
        closep(&fd);
        if (err->error == 0)
                err->error = EPROTO;
        return 1;
}
