/* The cost of one sample of one dyno's figures, hostd's sampler against the ways a tool
 * without it reads them, over N cgroups each holding a sleeping process. Driven by
 * bench/metrics (see bench/README.md); prints one JSON object.
 *
 *   metrics-sample --dynos N --rounds R --root REL
 *
 * Rows, alternating round by round so that each sees the same machine:
 *   sampler   cg_stats_read_many on files kept open (pread each, parse in place; the OOM
 *             count only after the kernel's notification), and on v1 the runnable counts
 *             from taskstats requests sent 64 at a time: what hostd's sampler does.
 *   naive     the same figures read as cat or systemd-cgtop read them: open, read, close
 *             each file by path, and the runnable count from the cgroup's task list and each
 *             task's /proc/TID/stat.
 *   before    hostd's previous textfile path (cg_memory_usage, cg_cpu_pids, cg_oom_kills:
 *             paths built and files read whole each time), which has fewer figures and no
 *             runnable count.
 *   floor     the kernel's part: one pread of each file the sampler reads every sample, on
 *             the same open descriptors, parsing nothing and without taskstats. No reader of
 *             these figures can cost less; the sampler's cost above it is its own.
 * Also printed: the cost of one system call that does nothing (getppid), which sets the
 * floor's scale on a given machine (about 0.1 us on bare metal, 10 times that in some VMs).
 * Each row is the wall-clock time of a round over the N dynos, divided by N. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "util.h"

static struct cg_manager *cg;
static char root_rel[128];
static size_t n_dynos;
static pid_t *children;

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void dyno_id(size_t i, char buf[32]) { snprintf(buf, 32, "bench-%zu", i); }

/* ---- the naive reader ---- */

struct naive {
        char *memory_stat, *memory_usage, *oom, *cpu_usage, *cpu_stat, *pids, *tasks;
};

static ssize_t read_path(const char *path, char *buf, size_t len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, len - 1);
        int e = errno;
        close(fd);
        if (n < 0)
                return -e;
        buf[n] = 0;
        return n;
}

static int naive_read(const struct naive *nv, struct cg_stats *st)
{
        char buf[16384];
        ssize_t n;
        *st = (struct cg_stats){ .runnable = 0 };
        if ((n = read_path(nv->memory_stat, buf, sizeof buf)) < 0)
                return (int)n;
        const struct cg_key mk[] = {
                { "total_rss", &st->rss },
                { "total_cache", &st->cache },
                { "total_swap", &st->swap },
                { "total_pgpgin", &st->pgpgin },
                { "total_pgpgout", &st->pgpgout },
                { "anon", &st->rss },
                { "file", &st->cache },
        };
        cg_parse_keyed(buf, (size_t)n, mk, ELEMENTSOF(mk));
        if ((n = read_path(nv->memory_usage, buf, sizeof buf)) < 0 ||
            cg_parse_u64(buf, (size_t)n, &st->memory) < 0)
                return -EIO;
        if ((n = read_path(nv->oom, buf, sizeof buf)) >= 0) {
                const struct cg_key k[] = { { "oom_kill", &st->oom_kills } };
                cg_parse_keyed(buf, (size_t)n, k, 1);
        }
        uint64_t ns = 0;
        if (nv->cpu_usage && (n = read_path(nv->cpu_usage, buf, sizeof buf)) >= 0 &&
            cg_parse_u64(buf, (size_t)n, &ns) == 0)
                st->cpu_usec = ns / 1000;
        if ((n = read_path(nv->cpu_stat, buf, sizeof buf)) >= 0) {
                const struct cg_key k[] = { { "throttled_time", &ns },
                                            { "usage_usec", &st->cpu_usec } };
                cg_parse_keyed(buf, (size_t)n, k, 2);
        }
        if ((n = read_path(nv->pids, buf, sizeof buf)) < 0 ||
            cg_parse_u64(buf, (size_t)n, &st->pids) < 0)
                return -EIO;
        /* runnable: every task's state, from /proc */
        if ((n = read_path(nv->tasks, buf, sizeof buf)) < 0)
                return (int)n;
        for (char *p = buf, *nl; *p; p = nl + 1) {
                nl = strchr(p, '\n');
                if (!nl)
                        break;
                *nl = 0;
                char path[64], stat[1024];
                snprintf(path, sizeof path, "/proc/%.20s/stat", p);
                if (read_path(path, stat, sizeof stat) < 0)
                        continue;
                char *rp = strrchr(stat, ')');
                if (rp && (rp[2] == 'R' || rp[2] == 'D'))
                        st->runnable++;
        }
        return 0;
}

static int naive_init(size_t i, struct naive *nv)
{
        char id[32];
        dyno_id(i, id);
        bool v2 = cg_manager_mode(cg) == CG_MODE_V2;
        int r;
        if ((r = cg_file_path(cg, id, "memory", "memory.stat", &nv->memory_stat)) < 0 ||
            (r = cg_file_path(cg, id, "memory", v2 ? "memory.current" : "memory.usage_in_bytes",
                              &nv->memory_usage)) < 0 ||
            (r = cg_file_path(cg, id, "memory", v2 ? "memory.events" : "memory.oom_control",
                              &nv->oom)) < 0 ||
            (!v2 && (r = cg_file_path(cg, id, "cpuacct", "cpuacct.usage", &nv->cpu_usage)) < 0) ||
            (r = cg_file_path(cg, id, "cpu", "cpu.stat", &nv->cpu_stat)) < 0 ||
            (r = cg_file_path(cg, id, "pids", "pids.current", &nv->pids)) < 0 ||
            (r = cg_file_path(cg, id, "pids", v2 ? "cgroup.threads" : "tasks", &nv->tasks)) < 0)
                return r;
        return 0;
}

/* ---- the floor: the same reads, nothing else ---- */

static void floor_read(const struct cg_stat_files *f)
{
        char buf[16384];
        for (size_t k = 0; k < _CG_STAT_MAX; k++) {
                if (f->fd[k] < 0 || k == CG_STAT_TASKS_DIR ||
                    (k == CG_STAT_OOM && f->oom_event_fd >= 0))
                        continue; /* not a file, or read only after the kernel's notice */
                (void)!pread(f->fd[k], buf, sizeof buf, 0);
        }
}

static double syscall_us(void)
{
        enum { N = 100000 };
        uint64_t a = now_ns();
        for (int i = 0; i < N; i++)
                (void)syscall(SYS_getppid);
        return (double)(now_ns() - a) / 1e3 / N;
}

/* ---- setup and cleanup ---- */

static void cleanup(void)
{
        for (size_t i = 0; i < n_dynos; i++)
                if (children && children[i] > 0)
                        kill(children[i], SIGKILL);
        for (size_t i = 0; i < n_dynos; i++)
                if (children && children[i] > 0)
                        (void)waitpid(children[i], NULL, 0);
        for (size_t i = 0; i < n_dynos; i++) {
                char id[32];
                dyno_id(i, id);
                int r = cg_destroy(cg, id);
                if (r < 0)
                        fprintf(stderr, "cleanup: cgroup %s: %s\n", id, strerror(-r));
        }
        /* <base>/dynos and <base> in every hierarchy */
        for (size_t h = 0; h < cg->n_hier; h++) {
                _cleanup_free_ char *base = strjoin3(cg->hier[h].mount, cg->hier[h].base_rel, NULL);
                _cleanup_free_ char *dynos = strjoin3(base, "/dynos", NULL);
                if (dynos && rmdir(dynos) < 0 && errno != ENOENT)
                        fprintf(stderr, "cleanup: rmdir %s: %m\n", dynos);
                if (base && rmdir(base) < 0 && errno != ENOENT)
                        fprintf(stderr, "cleanup: rmdir %s: %m\n", base);
        }
}

static void on_signal(int sig)
{
        cleanup();
        _exit(128 + sig);
}

static int make_dynos(void)
{
        children = calloc(n_dynos, sizeof *children);
        if (!children)
                return -ENOMEM;
        struct cg_limits lim = { .memory = 512ULL << 20, .cpu_weight = 100, .pids = 256 };
        for (size_t i = 0; i < n_dynos; i++) {
                char id[32];
                dyno_id(i, id);
                int r = cg_create(cg, id, &lim);
                if (r < 0) {
                        fprintf(stderr, "create cgroup %s: %s\n", id, strerror(-r));
                        return r;
                }
                pid_t pid = fork();
                if (pid < 0)
                        return -errno;
                if (pid == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        for (;;)
                                pause();
                }
                children[i] = pid;
                r = cg_attach(cg, id, pid);
                if (r < 0) {
                        fprintf(stderr, "attach %d to %s: %s\n", (int)pid, id, strerror(-r));
                        return r;
                }
        }
        return 0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static void print_row(const char *name, uint64_t *wall, uint64_t *cpu, size_t rounds, bool last)
{
        qsort(wall, rounds, sizeof *wall, cmp_u64);
        qsort(cpu, rounds, sizeof *cpu, cmp_u64);
        double per = (double)n_dynos * 1000.0; /* ns per round -> us per dyno */
        printf("    \"%s\": {\"us_per_dyno_median\": %.3f, \"us_per_dyno_p10\": %.3f, "
               "\"us_per_dyno_p90\": %.3f, \"cpu_us_per_dyno_median\": %.3f, "
               "\"cpu_us_per_dyno_p10\": %.3f}%s\n",
               name, (double)wall[rounds / 2] / per, (double)wall[rounds / 10] / per,
               (double)wall[rounds * 9 / 10] / per, (double)cpu[rounds / 2] / per,
               (double)cpu[rounds / 10] / per, last ? "" : ",");
}

int main(int argc, char **argv)
{
        size_t rounds = 50;
        bool only_sampler = false;
        const char *root = NULL;
        static const struct option opts[] = {
                { "dynos", required_argument, NULL, 'n' },
                { "rounds", required_argument, NULL, 'r' },
                { "root", required_argument, NULL, 'R' },
                { "only-sampler", no_argument, NULL, 'S' },
                {},
        };
        int c;
        n_dynos = 1000;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                if (c == 'n')
                        n_dynos = strtoul(optarg, NULL, 10);
                else if (c == 'r')
                        rounds = strtoul(optarg, NULL, 10);
                else if (c == 'R')
                        root = optarg;
                else if (c == 'S')
                        only_sampler = true; /* for a profiler: the sampler's rounds alone */
                else
                        return 2;
        }
        if (n_dynos == 0 || rounds < 2) {
                fprintf(stderr, "--dynos and --rounds (at least 2) must be positive\n");
                return 2;
        }
        snprintf(root_rel, sizeof root_rel, "%s", root ? root : "hostd-bench-metrics");
        log_set_max_level(LOG_LEVEL_WARNING);
        int r = cg_manager_new(root_rel, NULL, &cg);
        if (r < 0) {
                fprintf(stderr, "cgroup base %s: %s%s\n", root_rel, strerror(-r),
                        r == -EBUSY ? " (cgroup v2: run from a cgroup that holds no process)" : "");
                return 1;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        uint64_t t0 = now_ns();
        r = make_dynos();
        uint64_t setup_ns = now_ns() - t0;
        int ret = 1;
        struct cg_stat_files **files = calloc(n_dynos, sizeof *files);
        struct naive *nv = calloc(n_dynos, sizeof *nv);
        uint64_t *w[4], *u[4];
        for (int k = 0; k < 4; k++) {
                w[k] = calloc(rounds, sizeof(uint64_t));
                u[k] = calloc(rounds, sizeof(uint64_t));
        }
        if (r < 0 || !files || !nv)
                goto out;

        t0 = now_ns();
        for (size_t i = 0; i < n_dynos; i++) {
                char id[32];
                dyno_id(i, id);
                if ((r = cg_stats_open(cg, id, &files[i])) < 0 || (r = naive_init(i, nv + i)) < 0) {
                        fprintf(stderr, "open %s: %s\n", id, strerror(-r));
                        goto out;
                }
        }
        uint64_t open_ns = now_ns() - t0;

        /* one untimed round of each, then alternate */
        uint64_t check_pids = 0, check_naive = 0;
        static struct cg_stats many[256];
        static int many_r[256];
        for (size_t round = 0; round <= rounds; round++) {
                for (int k = 0; k < 4; k++) {
                        int which = (int)((round + (size_t)k) % 4);
                        if (only_sampler && which != 0)
                                continue;
                        uint64_t a = now_ns(), ac = cpu_ns();
                        if (which == 0) {
                                /* as the sampler does: every dyno, in chunks */
                                for (size_t i = 0; i < n_dynos; i += 256) {
                                        size_t cnt = n_dynos - i < 256 ? n_dynos - i : 256;
                                        cg_stats_read_many(cg, files + i, many, many_r, cnt);
                                        for (size_t j = 0; j < cnt; j++) {
                                                check_pids += many[j].pids;
                                                if (many_r[j] < 0) {
                                                        fprintf(stderr, "dyno %zu: %s\n", i + j,
                                                                strerror(-many_r[j]));
                                                        goto out;
                                                }
                                        }
                                }
                        }
                        for (size_t i = 0; which == 3 && i < n_dynos; i++)
                                floor_read(files[i]);
                        for (size_t i = 0; (which == 1 || which == 2) && i < n_dynos; i++) {
                                struct cg_stats st;
                                char id[32];
                                if (which == 1) {
                                        r = naive_read(&nv[i], &st);
                                        check_naive += st.pids;
                                } else {
                                        uint64_t mem, swap, cpu, pids, oom;
                                        dyno_id(i, id);
                                        if ((r = cg_memory_usage(cg, id, &mem, &swap)) >= 0 &&
                                            (r = cg_cpu_pids(cg, id, &cpu, &pids)) >= 0)
                                                r = cg_oom_kills(cg, id, &oom);
                                }
                                if (r < 0) {
                                        fprintf(stderr, "round %zu, way %d, dyno %zu: %s\n", round,
                                                which, i, strerror(-r));
                                        goto out;
                                }
                        }
                        if (round > 0) {
                                w[which][round - 1] = now_ns() - a;
                                u[which][round - 1] = cpu_ns() - ac;
                        }
                }
        }
        if (!only_sampler && (check_pids != check_naive || check_pids != (rounds + 1) * n_dynos)) {
                fprintf(stderr, "the two readers disagree on pids: %" PRIu64 " and %" PRIu64 "\n",
                        check_pids, check_naive);
                goto out;
        }
        printf("{\n  \"cgroup\": \"%s\",\n  \"dynos\": %zu,\n  \"rounds\": %zu,\n"
               "  \"setup_seconds\": %.2f,\n  \"open_us_per_dyno\": %.3f,\n"
               "  \"syscall_us\": %.3f,\n  \"rows\": {\n",
               cg_mode_name(cg_manager_mode(cg)), n_dynos, rounds, (double)setup_ns / 1e9,
               (double)open_ns / 1e3 / (double)n_dynos, syscall_us());
        print_row("sampler", w[0], u[0], rounds, false);
        print_row("naive", w[1], u[1], rounds, false);
        print_row("before", w[2], u[2], rounds, false);
        print_row("floor", w[3], u[3], rounds, true);
        printf("  }\n}\n");
        ret = 0;
out:
        for (size_t i = 0; files && i < n_dynos; i++)
                cg_stat_files_free(files[i]);
        cleanup();
        cg_manager_free(cg);
        return ret;
}
