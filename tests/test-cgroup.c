/* Integration test of the cgroup driver against the real kernel: root only (exit 77 otherwise,
 * or where no cgroupfs is mounted).
 *
 * It is a guest in whatever cgroup it was started in: everything it makes lives under
 * <own>/hostd-test-cg-<pid> in each hierarchy, and that folder is removed at the end. */
#include "cgroup.h"
#include "cpus.h"
#include "util.h"

#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "check.h"

static struct cg_manager *m;
static enum cg_mode mode;
static char root_rel[64];

static const char *const v1_controllers[] = { "memory", "cpu",     "cpuacct",
                                              "pids",   "freezer", "cpuset" };

/* The folder of a controller's hierarchy that holds the dyno (NULL controller on v2). */
static char *dyno_dir(const char *id, const char *controller)
{
        char *p = NULL;
        if (cg_file_path(m, id, controller, "x", &p) < 0)
                return NULL;
        p[strlen(p) - 2] = 0;
        return p;
}

static bool dir_exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether the dyno has a folder in any hierarchy (v1) or in the unified one (v2). */
static bool exists_anywhere(const char *id)
{
        for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
                _cleanup_free_ char *d =
                        dyno_dir(id, mode == CG_MODE_V1 ? v1_controllers[i] : NULL);
                if (d && dir_exists(d))
                        return true;
        }
        return false;
}

static bool exists_in_all(const char *id)
{
        const char *const *c = v1_controllers;
        size_t n = mode == CG_MODE_V1 ? ELEMENTSOF(v1_controllers) - 1 : 1; /* no cpuset */
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *d = dyno_dir(id, mode == CG_MODE_V1 ? c[i] : NULL);
                if (d && !dir_exists(d)) {
                        /* cpuacct and freezer are optional on v1 */
                        if (mode == CG_MODE_V1 &&
                            (strcmp(c[i], "cpuacct") == 0 || strcmp(c[i], "freezer") == 0))
                                continue;
                        return false;
                }
        }
        return true;
}

static char *read_ctl(const char *id, const char *controller, const char *file)
{
        _cleanup_free_ char *p = NULL;
        if (cg_file_path(m, id, controller, file, &p) < 0)
                return NULL;
        char *s = NULL;
        if (read_full_file(p, &s, NULL) < 0)
                return NULL;
        s[strcspn(s, "\n")] = 0;
        return s;
}

static bool ctl_is(const char *id, const char *controller, const char *file, const char *want)
{
        _cleanup_free_ char *s = read_ctl(id, controller, file);
        if (!s || strcmp(s, want) != 0) {
                fprintf(stderr, "  %s: '%s', want '%s'\n", file, s ? s : "(unreadable)", want);
                return false;
        }
        return true;
}

static bool list_has(const char *id)
{
        _cleanup_strv_free_ char **v = NULL;
        if (cg_list(m, &v) < 0)
                return false;
        for (char **p = v; *p; p++)
                if (strcmp(*p, id) == 0)
                        return true;
        return false;
}

/* A child that waits for a byte on the pipe (sent once it is in its cgroup), then runs fn. */
static pid_t spawn(int *ret_go, void (*fn)(void))
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                char c;
                close(p[1]);
                if (read(p[0], &c, 1) != 1)
                        _exit(100);
                fn();
                _exit(0);
        }
        close(p[0]);
        *ret_go = p[1];
        return pid;
}

static void go(int fd)
{
        (void)!write(fd, "x", 1);
        close(fd);
}

static void do_pause(void)
{
        for (;;)
                pause();
}

static pid_t grandchild = -1;
static int grandchild_pipe[2];

static void do_fork_and_pause(void)
{
        pid_t g = fork();
        if (g == 0)
                do_pause();
        (void)!write(grandchild_pipe[1], &g, sizeof g);
        do_pause();
}

static void do_allocate(void)
{
        /* 128 MiB, every page touched, in a 32 MiB cgroup with no swap. */
        size_t n = 128u << 20;
        char *p = malloc(n);
        if (!p)
                _exit(101);
        for (size_t i = 0; i < n; i += 4096)
                p[i] = 1;
        _exit(0);
}

/* Bounded, so that a driver that fails to kill makes the test fail, not hang. */
static int wait_status(pid_t pid)
{
        for (int i = 0; i < 2000; i++) {
                int st;
                pid_t r = waitpid(pid, &st, WNOHANG);
                if (r == pid)
                        return st;
                if (r < 0)
                        return -1;
                usleep(10000);
        }
        fprintf(stderr, "  pid %d still alive after 20 s\n", (int)pid);
        (void)kill(pid, SIGKILL);
        return -1;
}

/* ---- cases ---- */

static void test_validation(void)
{
        static const char *const bad_roots[] = {
                "/abs", "..", "a/../b", "a//b", "a/", ".", "a/./b"
        };
        struct cg_manager *x = NULL;
        for (size_t i = 0; i < ELEMENTSOF(bad_roots); i++)
                CHECK_R(cg_manager_new(bad_roots[i], NULL, &x), -EINVAL);
        CHECK_R(cg_manager_new(NULL, NULL, &x), -EINVAL);
        CHECK(x == NULL);

        static const char *const bad_ids[] = { "", "a/b", "..", ".", "../x", "/x" };
        struct cg_limits lim = { .memory = 64 << 20 };
        for (size_t i = 0; i < ELEMENTSOF(bad_ids); i++) {
                char *s = NULL;
                uint64_t u;
                CHECK_R(cg_create(m, bad_ids[i], &lim), -EINVAL);
                CHECK_R(cg_destroy(m, bad_ids[i]), -EINVAL);
                CHECK_R(cg_attach(m, bad_ids[i], getpid()), -EINVAL);
                CHECK_R(cg_signal_all(m, bad_ids[i], 0), -EINVAL);
                CHECK_R(cg_oom_kills(m, bad_ids[i], &u), -EINVAL);
                CHECK_R(cg_dyno_path(m, bad_ids[i], &s), -EINVAL);
                CHECK_R(cg_file_path(m, bad_ids[i], NULL, "x", &s), -EINVAL);
        }
        CHECK_R(cg_create(m, NULL, &lim), -EINVAL);
        CHECK_R(cg_create(m, "ok", NULL), -EINVAL);
        CHECK(!exists_anywhere("ok"));
}

static void test_paths(void)
{
        _cleanup_free_ char *dp = NULL, *fp = NULL, *own = NULL, *want = NULL, *text = NULL;
        CHECK_R(cg_dyno_path(m, "p1", &dp), 0);
        /* The own cgroup, as the kernel shows it. */
        CHECK_R(read_full_file("/proc/self/cgroup", &text, NULL), 0);
        for (char *l = text, *n; l && *l; l = n) {
                n = strchr(l, '\n');
                if (n)
                        *n++ = 0;
                const char *tag = mode == CG_MODE_V1 ? ":memory:" : "0::";
                char *at = strstr(l, tag);
                if (at && (mode == CG_MODE_V1 || at == l))
                        own = strdup(at + strlen(tag));
        }
        CHECK(own != NULL);
        if (!own || !dp)
                return;
        CHECK(asprintf_safe(&want, "%s/%s/dynos/p1", strcmp(own, "/") == 0 ? "" : own, root_rel) ==
              0);
        CHECK(strcmp(dp, want) == 0);

        if (mode == CG_MODE_V1) {
                CHECK_R(cg_file_path(m, "p1", "memory", "memory.limit_in_bytes", &fp), 0);
                _cleanup_free_ char *w =
                        strjoin3("/sys/fs/cgroup/memory", want, "/memory.limit_in_bytes");
                CHECK(fp && strcmp(fp, w) == 0);
                char *s = NULL;
                CHECK_R(cg_file_path(m, "p1", "nosuch", "x", &s), -EINVAL);
        } else {
                CHECK_R(cg_file_path(m, "p1", "memory", "memory.max", &fp), 0);
                _cleanup_free_ char *w = strjoin3("/sys/fs/cgroup", want, "/memory.max");
                CHECK(fp && strcmp(fp, w) == 0);
        }
}

static void test_create_limits(void)
{
        struct cg_limits lim = {
                .memory = 64 << 20,
                .memory_swap = 0,
                .cpu_weight = 200,
                .cpu_quota_us = 50000,
                .cpu_period_us = 100000,
                .pids = 32,
        };
        CHECK_R(cg_create(m, "lim", &lim), 0);
        CHECK(exists_in_all("lim"));
        if (mode == CG_MODE_V1) {
                CHECK(ctl_is("lim", "memory", "memory.limit_in_bytes", "67108864"));
                _cleanup_free_ char *memsw =
                        read_ctl("lim", "memory", "memory.memsw.limit_in_bytes");
                if (memsw)
                        CHECK(strcmp(memsw, "67108864") == 0);
                CHECK(ctl_is("lim", "cpu", "cpu.shares", "2048"));
                CHECK(ctl_is("lim", "cpu", "cpu.cfs_quota_us", "50000"));
                CHECK(ctl_is("lim", "cpu", "cpu.cfs_period_us", "100000"));
                CHECK(ctl_is("lim", "pids", "pids.max", "32"));
        } else {
                CHECK(ctl_is("lim", NULL, "memory.max", "67108864"));
                _cleanup_free_ char *swap = read_ctl("lim", NULL, "memory.swap.max");
                if (swap)
                        CHECK(strcmp(swap, "0") == 0);
                CHECK(ctl_is("lim", NULL, "cpu.weight", "200"));
                CHECK(ctl_is("lim", NULL, "cpu.max", "50000 100000"));
                CHECK(ctl_is("lim", NULL, "pids.max", "32"));
        }

        /* Second create: refused, and the first one's limits stay. */
        struct cg_limits other = { .memory = 128 << 20 };
        CHECK_R(cg_create(m, "lim", &other), -EEXIST);
        CHECK(ctl_is("lim", mode == CG_MODE_V1 ? "memory" : NULL,
                     mode == CG_MODE_V1 ? "memory.limit_in_bytes" : "memory.max", "67108864"));
        CHECK(list_has("lim"));

        CHECK_R(cg_destroy(m, "lim"), 0);
        CHECK(!exists_anywhere("lim"));
        CHECK(!list_has("lim"));
}

static void test_attach_signal(void)
{
        struct cg_limits lim = { .memory = 64 << 20, .pids = 32 };
        CHECK_R(cg_create(m, "att", &lim), 0);
        int gofd;
        pid_t pid = spawn(&gofd, do_pause);
        CHECK(pid > 0);
        CHECK_R(cg_attach(m, "missing", pid), -ENOENT);
        CHECK_R(cg_attach(m, "att", pid), 0);
        go(gofd);

        CHECK_R(cg_contains(m, "att", pid), 1);
        CHECK_R(cg_contains(m, "att", getpid()), 0);
        CHECK_R(cg_count_procs(m, "att"), 1);

        /* What the kernel says, in every hierarchy the dyno uses. */
        _cleanup_free_ char *path = NULL, *text = NULL, *dp = NULL;
        CHECK_R(cg_dyno_path(m, "att", &dp), 0);
        CHECK(asprintf_safe(&path, "/proc/%d/cgroup", (int)pid) == 0);
        CHECK_R(read_full_file(path, &text, NULL), 0);
        if (text && dp) {
                if (mode == CG_MODE_V1) {
                        _cleanup_free_ char *line = strjoin3(":memory:", dp, "\n");
                        CHECK(strstr(text, line) != NULL);
                        _cleanup_free_ char *tail = NULL;
                        CHECK(asprintf_safe(&tail, "/%s/dynos/att\n", root_rel) == 0);
                        for (const char *c = "cpu"; c; c = strcmp(c, "cpu") == 0 ? "pids" : NULL) {
                                _cleanup_free_ char *tag = strjoin3(":", c, ":");
                                const char *l = strstr(text, tag);
                                CHECK(l && strstr(l, tail) &&
                                      strstr(l, tail) < strchr(l, '\n') + 1);
                        }
                } else {
                        _cleanup_free_ char *line = strjoin3("0::", dp, "\n");
                        CHECK(strstr(text, line) != NULL);
                }
        }

        CHECK_R(cg_signal_all(m, "att", SIGTERM), 1);
        int st = wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
        CHECK_R(cg_count_procs(m, "att"), 0);
        CHECK_R(cg_signal_all(m, "att", SIGTERM), 0);
        CHECK_R(cg_destroy(m, "att"), 0);
        CHECK_R(cg_signal_all(m, "att", SIGTERM), -ENOENT);
        CHECK_R(cg_contains(m, "att", getpid()), 0);
}

/* A new process that moves itself in, as a dyno's first process does (cg_procs_open_self,
 * then cg_procs_join_self in the child): it is in the dyno's cgroup in every hierarchy, its
 * parent is not, and a set opened that way is refused for moving another process. */
static void test_join_self(void)
{
        struct cg_limits lim = { .memory = 64 << 20, .pids = 32 };
        CHECK_R(cg_create(m, "self", &lim), 0);
        struct cg_procs procs;
        CHECK_R(cg_procs_open_self(m, "missing", &procs), -ENOENT);
        CHECK_R(cg_procs_open_self(m, "../self", &procs), -EINVAL);
        CHECK_R(cg_procs_open_self(m, "self", &procs), 0);
        CHECK_R(cg_procs_write(&procs, getpid()), -EINVAL);
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                close(p[0]);
                int r = cg_procs_join_self(&procs);
                (void)!write(p[1], &r, sizeof r);
                do_pause();
        }
        CHECK(pid > 0);
        close(p[1]);
        int r = -1;
        CHECK(read(p[0], &r, sizeof r) == sizeof r);
        close(p[0]);
        cg_procs_close(&procs);
        /* v2: clone3 puts the process there (CLONE_INTO_CGROUP); joining does nothing. */
        CHECK_R(r, 0);
        if (mode == CG_MODE_V1) {
                CHECK_R(cg_contains(m, "self", pid), 1);
                CHECK_R(cg_count_procs(m, "self"), 1);
                _cleanup_free_ char *path = NULL, *text = NULL, *dp = NULL;
                CHECK_R(cg_dyno_path(m, "self", &dp), 0);
                CHECK(asprintf_safe(&path, "/proc/%d/cgroup", (int)pid) == 0);
                CHECK_R(read_full_file(path, &text, NULL), 0);
                _cleanup_free_ char *line = strjoin3(":memory:", dp, "\n");
                CHECK(text && line && strstr(text, line));
                /* Each hierarchy has its own base (hostd's cgroup there): the pids one ends
                 * the same way. */
                _cleanup_free_ char *tail = NULL;
                CHECK(asprintf_safe(&tail, "/%s/dynos/self\n", root_rel) == 0);
                const char *pl = text ? strstr(text, ":pids:") : NULL;
                const char *end = pl ? strchr(pl, '\n') : NULL;
                CHECK(pl && end && tail && (size_t)(end + 1 - pl) >= strlen(tail) &&
                      strncmp(end + 1 - strlen(tail), tail, strlen(tail)) == 0);
        }
        CHECK_R(cg_contains(m, "self", getpid()), 0);
        (void)kill(pid, SIGKILL);
        (void)wait_status(pid);
        CHECK_R(cg_destroy(m, "self"), 0);
        CHECK(!exists_anywhere("self"));
}

static void test_destroy_live(void)
{
        struct cg_limits lim = { .memory = 64 << 20, .pids = 32 };
        CHECK_R(cg_create(m, "live", &lim), 0);
        CHECK(pipe2(grandchild_pipe, O_CLOEXEC) == 0);
        int gofd;
        pid_t pid = spawn(&gofd, do_fork_and_pause);
        CHECK(pid > 0);
        CHECK_R(cg_attach(m, "live", pid), 0);
        go(gofd);
        CHECK(read(grandchild_pipe[0], &grandchild, sizeof grandchild) == sizeof grandchild);
        close(grandchild_pipe[0]);
        close(grandchild_pipe[1]);
        CHECK_R(cg_count_procs(m, "live"), 2);
        CHECK_R(cg_contains(m, "live", grandchild), 1);

        uint64_t t0 = now_monotonic_usec();
        CHECK_R(cg_destroy(m, "live"), 0);
        fprintf(stderr, "  destroy with 2 live processes: %.3f ms\n",
                (double)(now_monotonic_usec() - t0) / 1000);
        int st = wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* We are the subreaper, so the orphaned grandchild came to us. */
        st = wait_status(grandchild);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK(!exists_anywhere("live"));
        CHECK(!list_has("live"));

        /* Missing is success, and so is doing it again. */
        CHECK_R(cg_destroy(m, "live"), 0);
        CHECK_R(cg_destroy(m, "never-made"), 0);
}

static void test_oom(void)
{
        struct cg_limits lim = { .memory = 32 << 20, .memory_swap = 0, .pids = 32 };
        CHECK_R(cg_create(m, "oom", &lim), 0);
        uint64_t kills = UINT64_MAX;
        CHECK_R(cg_oom_kills(m, "oom", &kills), 0);
        CHECK(kills == 0);

        int watch = -1;
        uint32_t events = 0;
        CHECK_R(cg_oom_watch(m, "oom", &watch, &events), 0);
        CHECK(events == (mode == CG_MODE_V2 ? EPOLLPRI : EPOLLIN));
        if (mode == CG_MODE_V2) /* kernfs says "changed" until the file has been read once */
                cg_memory_watch_ack(m, watch);
        struct pollfd pfd = { .fd = watch, .events = (short)events };
        CHECK(poll(&pfd, 1, 0) == 0);

        int gofd;
        pid_t pid = spawn(&gofd, do_allocate);
        CHECK(pid > 0);
        CHECK_R(cg_attach(m, "oom", pid), 0);
        go(gofd);
        int st = wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        if (!WIFSIGNALED(st))
                fprintf(stderr, "  allocating child: exit status %d\n", WEXITSTATUS(st));
        /* The kernel told the watch, and counts the kill. */
        CHECK(poll(&pfd, 1, 10000) == 1 && (pfd.revents & events));
        cg_memory_watch_ack(m, watch);
        CHECK_R(cg_oom_kills(m, "oom", &kills), 0);
        CHECK(kills >= 1 && kills != UINT64_MAX);
        close(watch);
        /* The most it held was the quota, the use now is next to nothing. */
        uint64_t peak = 0;
        CHECK_R(cg_memory_peak(m, "oom", &peak), 0);
        CHECK(peak >= 30u << 20 && peak <= 33u << 20);
        if (peak < 30u << 20 || peak > 33u << 20)
                fprintf(stderr, "  peak %" PRIu64 " bytes, want about 32 MiB\n", peak);
        CHECK_R(cg_destroy(m, "oom"), 0);
        CHECK_R(cg_oom_kills(m, "oom", &kills), -ENOENT);
}

/* cg_kill: every process, forks included, at once; the cgroup stays for cg_destroy. */
static void test_kill(void)
{
        struct cg_limits lim = { .memory = 64 << 20, .pids = 32 };
        CHECK_R(cg_create(m, "kill", &lim), 0);
        CHECK(pipe2(grandchild_pipe, O_CLOEXEC) == 0);
        int gofd;
        pid_t pid = spawn(&gofd, do_fork_and_pause);
        CHECK(pid > 0);
        CHECK_R(cg_attach(m, "kill", pid), 0);
        go(gofd);
        pid_t g = -1;
        CHECK(read(grandchild_pipe[0], &g, sizeof g) == sizeof g);
        close(grandchild_pipe[0]);
        close(grandchild_pipe[1]);
        CHECK_R(cg_count_procs(m, "kill"), 2);
        CHECK_R(cg_kill(m, "kill"), 0);
        int st = wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        st = wait_status(g);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK(exists_in_all("kill"));
        CHECK_R(cg_destroy(m, "kill"), 0);
        CHECK_R(cg_kill(m, "kill"), -ENOENT);
        CHECK_R(cg_kill(m, "../x"), -EINVAL);
}

/* What a dyno sees at /sys/fs/cgroup: its hierarchies, named and mounted as the host's. */
static void test_view(void)
{
        struct cg_limits lim = { .memory = 64 << 20, .pids = 32 };
        CHECK_R(cg_create(m, "view", &lim), 0);
        struct cg_view v;
        CHECK_R(cg_dyno_view(m, "view", &v), 0);
        if (mode == CG_MODE_V2) {
                CHECK(v.v2 && v.n == 0);
        } else {
                CHECK(!v.v2 && v.n >= 3);
                bool memory = false, pids = false, cpuset = false;
                for (size_t i = 0; i < v.n; i++) {
                        /* Each is a mount point of the host, and names its hierarchy. */
                        _cleanup_free_ char *mnt =
                                strjoin3("/sys/fs/cgroup/", v.mounts[i].name, NULL);
                        CHECK(mnt && dir_exists(mnt));
                        CHECK(strstr(v.mounts[i].options, "memory") == NULL ||
                              strcmp(v.mounts[i].name, v.mounts[i].options) == 0 ||
                              strchr(v.mounts[i].options, ','));
                        memory = memory || strcmp(v.mounts[i].options, "memory") == 0;
                        pids = pids || strcmp(v.mounts[i].options, "pids") == 0;
                        cpuset = cpuset || strstr(v.mounts[i].options, "cpuset") != NULL;
                }
                CHECK(memory && pids);
                CHECK(!cpuset); /* no folder there without dedicated CPUs */
        }
        CHECK_R(cg_dyno_view(m, "../x", &v), -EINVAL);
        CHECK_R(cg_destroy(m, "view"), 0);
}

static void test_cpuset(void)
{
        /* A CPU that does not exist: the kernel refuses it and nothing may be left behind. */
        struct cg_limits bad = { .memory = 64 << 20, .cpus = "999" };
        int r = cg_create(m, "cpus", &bad);
        CHECK(r == -EINVAL || r == -EOPNOTSUPP || r == -ERANGE);
        CHECK(!exists_anywhere("cpus"));
        CHECK(!list_has("cpus"));
        if (r == -EOPNOTSUPP) {
                fprintf(stderr, "  no cpuset controller: dedicated CPUs not tested\n");
                return;
        }

        struct cg_limits lim = { .memory = 64 << 20, .cpus = "0" };
        CHECK_R(cg_create(m, "cpus", &lim), 0);
        CHECK(ctl_is("cpus", mode == CG_MODE_V1 ? "cpuset" : NULL, "cpuset.cpus", "0"));
        int gofd;
        pid_t pid = spawn(&gofd, do_pause);
        CHECK_R(cg_attach(m, "cpus", pid), 0);
        go(gofd);
        cpu_set_t set;
        CHECK(sched_getaffinity(pid, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1 &&
              CPU_ISSET(0, &set));
        CHECK_R(cg_destroy(m, "cpus"), 0);
        int st = wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK(!exists_anywhere("cpus"));
}

static bool affinity_is(pid_t pid, const char *list)
{
        cpu_set_t set;
        struct cpu_bits want;
        if (sched_getaffinity(pid, sizeof set, &set) < 0 || cpulist_parse(list, &want) < 0)
                return false;
        for (unsigned c = 0; c < CPU_SETSIZE && c < CPUS_MAX; c++)
                if (!!CPU_ISSET(c, &set) != cpubits_test(&want, c)) {
                        fprintf(stderr, "  pid %d: CPU %u %s, want the CPUs %s\n", (int)pid, c,
                                CPU_ISSET(c, &set) ? "allowed" : "not allowed", list);
                        return false;
                }
        return true;
}

static bool cpus_are(const char *id, const char *want)
{
        _cleanup_free_ char *got = NULL;
        int r = cg_get_cpus(m, id, &got);
        if (r < 0 || strcmp(got, want) != 0) {
                fprintf(stderr, "  %s: cpuset.cpus '%s' (%d), want '%s'\n", id, got ? got : "", r,
                        want);
                return false;
        }
        return true;
}

/* The dedicated CPU pool against real cgroups: a shared dyno loses a CPU when another dyno
 * takes it and gets it back on release; re-adoption reads a dyno's CPUs back. */
static void test_cpu_pool(void)
{
        _cleanup_free_ char *avail = NULL, *x = NULL;
        int r = cg_cpus_available(m, &avail);
        if (r == -EOPNOTSUPP) {
                fprintf(stderr, "  no cpuset controller: the CPU pool not tested\n");
                return;
        }
        CHECK_R(r, 0);
        struct cpu_bits all;
        CHECK(avail && cpulist_parse(avail, &all) == 0 && cpubits_count(&all) >= 1);
        if (!avail)
                return;
        CHECK_R(cg_get_cpus(m, "nosuch", &x), -ENOENT);
        CHECK_R(cg_set_cpus(m, "nosuch", avail), -ENOENT);

        char err[256];
        struct cpu_pool *p = NULL, *p2 = NULL;
        CHECK_R(cpu_pool_new("auto", avail, m, &p, err, sizeof err), 0);
        if (!p)
                return;
        /* A shared dyno: every CPU while nothing is held. */
        struct cg_limits lim = { .memory = 64 << 20, .cpus = cpu_pool_cpus_for(p, "sh") };
        if (cpu_pool_size(p) == 0) {
                CHECK(lim.cpus == NULL);
                fprintf(stderr, "  one CPU: nothing to dedicate, the CPU pool not tested\n");
                cpu_pool_free(p);
                return;
        }
        CHECK(lim.cpus && strcmp(lim.cpus, avail) == 0);
        CHECK_R(cg_create(m, "sh", &lim), 0);
        CHECK(cpus_are("sh", avail));
        int gofd;
        pid_t sh = spawn(&gofd, do_pause);
        CHECK_R(cg_attach(m, "sh", sh), 0);
        go(gofd);
        cpu_pool_sync(p);
        CHECK(affinity_is(sh, avail));

        /* A dedicated dyno takes the pool's lowest CPU; the shared one leaves it at once. */
        CHECK_R(cpu_pool_reserve(p, "ded", 1, err, sizeof err), 0);
        _cleanup_free_ char *ded_cpus = strdup(cpu_pool_held(p, "ded"));
        _cleanup_free_ char *shared = strdup(cpu_pool_cpus_for(p, "sh"));
        CHECK(ded_cpus && shared && strcmp(ded_cpus, shared) != 0);
        CHECK(cpus_are("sh", shared));
        CHECK(affinity_is(sh, shared));
        struct cg_limits dlim = { .memory = 64 << 20, .cpus = cpu_pool_cpus_for(p, "ded") };
        CHECK_R(cg_create(m, "ded", &dlim), 0);
        CHECK(cpus_are("ded", ded_cpus));
        pid_t ded = spawn(&gofd, do_pause);
        CHECK_R(cg_attach(m, "ded", ded), 0);
        go(gofd);
        CHECK(affinity_is(ded, ded_cpus));
        /* A sync (hostd's reconciliation) moves only the dynos that hold nothing. */
        cpu_pool_sync(p);
        CHECK(cpus_are("ded", ded_cpus) && cpus_are("sh", shared));

        /* A new hostd: the running dyno's CPUs are read back and taken again. */
        CHECK_R(cpu_pool_new("auto", avail, m, &p2, err, sizeof err), 0);
        if (p2) {
                CHECK_R(cpu_pool_adopt(p2, "ded", 1), 0);
                CHECK(cpu_pool_held(p2, "ded") && strcmp(cpu_pool_held(p2, "ded"), ded_cpus) == 0);
                cpu_pool_free(p2);
        }
        /* Its CPUs held by another (an interrupted start took them first): it moves to a free
         * CPU, or, with none, holds nothing and is left where it is until a sync. */
        CHECK_R(cpu_pool_new("auto", avail, m, &p2, err, sizeof err), 0);
        if (p2) {
                CHECK_R(cpu_pool_reserve_exact(p2, "other", ded_cpus), 0);
                r = cpu_pool_adopt(p2, "ded", 1);
                if (cpu_pool_size(p2) >= 2) {
                        CHECK_R(r, 0);
                        const char *now = cpu_pool_held(p2, "ded");
                        CHECK(now && strcmp(now, ded_cpus) != 0 && cpus_are("ded", now) &&
                              affinity_is(ded, now));
                        /* Back where it was, for the rest of the test. */
                        CHECK_R(cg_set_cpus(m, "ded", ded_cpus), 0);
                } else {
                        CHECK_R(r, -ENOSPC);
                        CHECK(cpu_pool_held(p2, "ded") == NULL && cpus_are("ded", ded_cpus));
                }
                cpu_pool_free(p2);
        }

        /* The dedicated dyno ends: its CPU goes back to the shared one. */
        CHECK_R(cg_destroy(m, "ded"), 0);
        cpu_pool_release(p, "ded");
        CHECK(cpus_are("sh", avail));
        CHECK(affinity_is(sh, avail));
        int st = wait_status(ded);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK_R(cg_destroy(m, "sh"), 0);
        st = wait_status(sh);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK(!exists_anywhere("sh") && !exists_anywhere("ded"));
        cpu_pool_free(p);
}

static void test_leftover(void)
{
        if (mode != CG_MODE_V1)
                return;
        /* A dyno folder in one hierarchy only, as a crash between two mkdirs leaves it. */
        _cleanup_free_ char *d = dyno_dir("half", "pids");
        CHECK(d && mkdir(d, 0755) == 0);
        CHECK(list_has("half"));
        struct cg_limits lim = { .memory = 64 << 20 };
        CHECK_R(cg_create(m, "half", &lim), -EEXIST);
        _cleanup_free_ char *md = dyno_dir("half", "memory");
        CHECK(md && !dir_exists(md));
        CHECK_R(cg_destroy(m, "half"), 0);
        CHECK(!exists_anywhere("half"));
        CHECK(!list_has("half"));
}

static void test_list(void)
{
        struct cg_limits lim = { .memory = 64 << 20 };
        CHECK_R(cg_create(m, "l-b", &lim), 0);
        CHECK_R(cg_create(m, "l-a", &lim), 0);
        _cleanup_strv_free_ char **v = NULL;
        CHECK_R(cg_list(m, &v), 0);
        CHECK(v && v[0] && v[1] && !v[2] && strcmp(v[0], "l-a") == 0 && strcmp(v[1], "l-b") == 0);
        CHECK_R(cg_destroy(m, "l-a"), 0);
        CHECK_R(cg_destroy(m, "l-b"), 0);
        _cleanup_strv_free_ char **e = NULL;
        CHECK_R(cg_list(m, &e), 0);
        CHECK(e && !e[0]);
}

static void test_timing(void)
{
        struct cg_limits lim = {
                .memory = 512 << 20, .cpu_weight = 100, .cpu_quota_us = 100000, .pids = 256
        };
        const int n = 50;
        uint64_t tc = 0, td = 0;
        for (int i = 0; i < n; i++) {
                uint64_t t0 = now_monotonic_usec();
                CHECK_R(cg_create(m, "time", &lim), 0);
                uint64_t t1 = now_monotonic_usec();
                CHECK_R(cg_destroy(m, "time"), 0);
                tc += t1 - t0;
                td += now_monotonic_usec() - t1;
        }
        double c = (double)tc / n / 1000, d = (double)td / n / 1000;
        fprintf(stderr, "  cg_create %.3f ms, cg_destroy (empty) %.3f ms, mean of %d\n", c, d, n);
        /* Figures only: speed is the benchmarks' business, never a test's assertion. */
        CHECK(c > 0 && d > 0);
}

/* Remove everything this test made: the dynos, then <base>/dynos and <base> in every
 * hierarchy. */
static char orig_v2[PATH_MAX]; /* the test's own cgroup before hostd's driver moved it */

static void cleanup(void)
{
        if (!m)
                return;
        if (mode == CG_MODE_V2) {
                /* On v2 the driver moved us into <base>/supervisor: go back, then remove it. */
                char procs[PATH_MAX + 64], sup[PATH_MAX];
                snprintf(procs, sizeof procs, "/sys/fs/cgroup%s/cgroup.procs",
                         strcmp(orig_v2, "/") == 0 ? "" : orig_v2);
                CHECK(write_string_file(procs, "0") == 0);
                _cleanup_free_ char *d = dyno_dir("x", NULL);
                if (d) {
                        char *sl = strrchr(d, '/');
                        *sl = 0;
                        sl = strrchr(d, '/');
                        *sl = 0;
                        snprintf(sup, sizeof sup, "%s/supervisor", d);
                        if (rmdir(sup) < 0 && errno != ENOENT)
                                fprintf(stderr, "cleanup: rmdir %s: %m\n", sup);
                }
        }
        _cleanup_strv_free_ char **v = NULL;
        if (cg_list(m, &v) == 0)
                for (char **p = v; *p; p++)
                        (void)cg_destroy(m, *p);
        for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
                _cleanup_free_ char *d =
                        dyno_dir("x", mode == CG_MODE_V1 ? v1_controllers[i] : NULL);
                if (!d)
                        continue;
                char *s = strrchr(d, '/'); /* <base>/dynos/x */
                *s = 0;
                (void)rmdir(d);
                s = strrchr(d, '/');
                *s = 0;
                if (rmdir(d) < 0 && errno != ENOENT)
                        fprintf(stderr, "cleanup: rmdir %s: %m\n", d);
                /* The good-neighbour promise, checked. */
                CHECK(!dir_exists(d));
        }
        cg_manager_free(m);
        m = NULL;
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "skip: needs root\n");
                return 77;
        }
        log_set_max_level(LOG_LEVEL_DEBUG);
        snprintf(root_rel, sizeof root_rel, "hostd-test-cg-%d", (int)getpid());
        {
                _cleanup_free_ char *self = NULL;
                if (read_full_file("/proc/self/cgroup", &self, NULL) == 0) {
                        char *p = strstr(self, "0::");
                        if (p && (p == self || p[-1] == '\n'))
                                snprintf(orig_v2, sizeof orig_v2, "%.*s", (int)strcspn(p + 3, "\n"),
                                         p + 3);
                }
        }
        int r = cg_manager_new(root_rel, NULL, &m);
        if (r == -ENOMEDIUM || r == -EOPNOTSUPP) {
                fprintf(stderr, "skip: no usable cgroup filesystem: %s\n", strerror(-r));
                return 77;
        }
        if (r == -EBUSY) {
                fprintf(stderr,
                        "skip: own cgroup holds processes and cannot delegate controllers (cgroup v2)\n");
                return 77;
        }
        if (r < 0) {
                fprintf(stderr, "cg_manager_new(%s): %s\n", root_rel, strerror(-r));
                return 1;
        }
        mode = cg_manager_mode(m);
        fprintf(stderr, "cgroup %s, base %s\n", cg_mode_name(mode), root_rel);
        /* Orphans of killed children come to us, so the test can see how they died. */
        (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

        /* Preparing an existing base again is fine. */
        struct cg_manager *again = NULL;
        CHECK_R(cg_manager_new(root_rel, NULL, &again), 0);
        cg_manager_free(again);

        test_validation();
        test_paths();
        test_create_limits();
        test_attach_signal();
        test_join_self();
        test_destroy_live();
        test_oom();
        test_kill();
        test_view();
        test_cpuset();
        test_cpu_pool();
        test_leftover();
        test_list();
        test_timing();

        cleanup();
        return check_report();
}
