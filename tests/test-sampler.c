/* The parsers behind the sampler (hostd/cgroup-stat.c, hostd/sampler.c) over the kernel's
 * formats, with text as the kernel writes it, and the load average step. No root. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "check.h"
#include "sampler.h"
#include "util.h"

#define LEN(s) (sizeof(s) - 1)

/* v1 memory.stat: local and total_ keys; only the exact key counts. */
static const char v1_memory_stat[] = "cache 9400320\n"
                                     "rss 4767744\n"
                                     "rss_huge 0\n"
                                     "swap 0\n"
                                     "pgpgin 7236\n"
                                     "pgpgout 3777\n"
                                     "hierarchical_memory_limit 9223372036854771712\n"
                                     "total_cache 9510912\n"
                                     "total_rss 4800512\n"
                                     "total_rss_huge 0\n"
                                     "total_swap 4096\n"
                                     "total_pgpgin 7300\n"
                                     "total_pgpgout 3800\n";

/* v2 memory.stat: anon_thp and file_mapped must not be taken for anon and file. */
static const char v2_memory_stat[] = "anon_thp 0\n"
                                     "anon 21086208\n"
                                     "file 1234567\n"
                                     "file_mapped 999\n"
                                     "pgfault 5000\n"
                                     "pgmajfault 12\n"
                                     "pswpout 7\n";

static void test_keyed(void)
{
        uint64_t rss = 1, cache = 1, swap = 1, in = 1, out = 1;
        const struct cg_key k[] = {
                { "total_rss", &rss },   { "total_cache", &cache }, { "total_swap", &swap },
                { "total_pgpgin", &in }, { "total_pgpgout", &out },
        };
        CHECK(cg_parse_keyed(v1_memory_stat, LEN(v1_memory_stat), k, 5) == 5);
        CHECK(rss == 4800512 && cache == 9510912 && swap == 4096 && in == 7300 && out == 3800);

        uint64_t anon = 0, file = 0, maj = 0, missing = 42;
        const struct cg_key k2[] = {
                { "anon", &anon },
                { "file", &file },
                { "pgmajfault", &maj },
                { "nope", &missing },
        };
        CHECK(cg_parse_keyed(v2_memory_stat, LEN(v2_memory_stat), k2, 4) == 3);
        CHECK(anon == 21086208 && file == 1234567 && maj == 12 && missing == 42);

        /* a buffer cut in the middle of a line (a file larger than the buffer): the whole
         * lines count, the cut one is not misread */
        uint64_t oom = 0, kill = 0;
        const char events[] = "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n";
        const struct cg_key k3[] = { { "oom", &oom }, { "oom_kill", &kill } };
        CHECK(cg_parse_keyed(events, LEN(events), k3, 2) == 2 && oom == 2 && kill == 1);
        kill = 9;
        CHECK(cg_parse_keyed(events, strlen("low 0\nhigh 0\nmax 3\noom 2\noom_ki"), k3, 2) == 1);
        CHECK(kill == 9);
        /* a value that is not a number, or overflows, is not taken */
        uint64_t v = 5;
        const struct cg_key k4[] = { { "x", &v } };
        CHECK(cg_parse_keyed("x 12a\n", 6, k4, 1) == 0 && v == 5);
        CHECK(cg_parse_keyed("x 99999999999999999999\n", 23, k4, 1) == 0 && v == 5);
        CHECK(cg_parse_keyed("x 18446744073709551615", 22, k4, 1) == 1 && v == UINT64_MAX);
        CHECK(cg_parse_keyed("", 0, k4, 1) == 0);
        /* v1 cpu.stat */
        uint64_t thr = 0;
        const char cpu_stat[] = "nr_periods 10\nnr_throttled 3\nthrottled_time 123456789\n";
        const struct cg_key k5[] = { { "throttled_time", &thr } };
        CHECK(cg_parse_keyed(cpu_stat, LEN(cpu_stat), k5, 1) == 1 && thr == 123456789);
}

static void test_u64(void)
{
        uint64_t v = 0;
        CHECK(cg_parse_u64("536870912\n", 10, &v) == 0 && v == 536870912);
        CHECK(cg_parse_u64("7", 1, &v) == 0 && v == 7);
        CHECK(cg_parse_u64("max\n", 4, &v) == -EINVAL);
        CHECK(cg_parse_u64("", 0, &v) == -EINVAL);
        CHECK(cg_parse_u64("12 \n", 4, &v) == -EINVAL);
        CHECK(cg_parse_u64("18446744073709551616\n", 21, &v) == -EINVAL);
}

static void test_psi(void)
{
        const char both[] = "some avg10=1.25 avg60=0.50 avg300=0.07 total=123456\n"
                            "full avg10=0.00 avg60=100.00 avg300=0.01 total=42\n";
        struct cg_psi p;
        CHECK(cg_parse_psi(both, LEN(both), &p) == 0);
        CHECK(p.present && p.some_avg[0] == 1.25 && p.some_avg[1] == 0.5 &&
              fabs(p.some_avg[2] - 0.07) < 1e-9 && p.some_total_usec == 123456);
        CHECK(p.full_avg[0] == 0 && p.full_avg[1] == 100 && p.full_total_usec == 42);
        /* host cpu.pressure on older kernels: "some" only */
        const char some[] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        CHECK(cg_parse_psi(some, LEN(some), &p) == 0 && p.present && p.full_total_usec == 0);
        CHECK(cg_parse_psi("", 0, &p) == -EINVAL);
        CHECK(cg_parse_psi("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 48, &p) == -EINVAL);
        const char bad[] = "some avg10=x avg60=0.00 avg300=0.00 total=0\n";
        CHECK(cg_parse_psi(bad, LEN(bad), &p) == -EINVAL);
        const char cut[] = "some avg10=0.00 avg60=0.00";
        CHECK(cg_parse_psi(cut, LEN(cut), &p) == -EINVAL);
}

static void test_host(void)
{
        double l[3] = { -1, -1, -1 };
        const char la[] = "0.52 1.07 12.50 2/345 6789\n";
        CHECK(sampler_parse_loadavg(la, LEN(la), l) == 0);
        CHECK(fabs(l[0] - 0.52) < 1e-9 && fabs(l[1] - 1.07) < 1e-9 && l[2] == 12.5);
        CHECK(sampler_parse_loadavg("0.52 1.07", 9, l) == -EINVAL);
        CHECK(sampler_parse_loadavg("a b c d", 7, l) == -EINVAL);

        const char mi[] = "MemTotal:       24683620 kB\n"
                          "MemFree:        20000000 kB\n"
                          "MemAvailable:   24071480 kB\n"
                          "Buffers:          123 kB\n";
        uint64_t total = 0, avail = 0;
        CHECK(sampler_parse_meminfo(mi, LEN(mi), &total, &avail) == 0);
        CHECK(total == 24683620ULL * 1024 && avail == 24071480ULL * 1024);
        /* MemAvailable missing (kernels before 3.14): an error, not 0 */
        CHECK(sampler_parse_meminfo(mi, strlen("MemTotal:       24683620 kB\n"), &total, &avail) ==
              -EINVAL);

        uint32_t n = 0;
        CHECK(sampler_parse_cpu_count("0-1\n", 4, &n) == 0 && n == 2);
        CHECK(sampler_parse_cpu_count("0-3,8,10-11\n", 12, &n) == 0 && n == 7);
        CHECK(sampler_parse_cpu_count("5", 1, &n) == 0 && n == 1);
        CHECK(sampler_parse_cpu_count("3-1", 3, &n) == -EINVAL);
        CHECK(sampler_parse_cpu_count("", 0, &n) == -EINVAL);
        CHECK(sampler_parse_cpu_count("0,", 2, &n) == -EINVAL);
        CHECK(sampler_parse_cpu_count("0-", 2, &n) == -EINVAL);
}

static void test_load_step(void)
{
        /* one task always runnable, sampled every 5 s as the kernel does: after one minute
         * the 1-minute average is 1 - 1/e, the others lag behind */
        double l[3] = { 0, 0, 0 };
        for (int i = 0; i < 12; i++)
                sampler_load_step(l, 1, 5);
        CHECK(fabs(l[0] - (1 - exp(-1))) < 1e-9);
        CHECK(fabs(l[1] - (1 - exp(-60.0 / 300))) < 1e-9);
        CHECK(l[2] < l[1] && l[1] < l[0]);
        /* the rounds' spacing does not change the result: 60 s in one step is the same */
        double m[3] = { 0, 0, 0 };
        sampler_load_step(m, 1, 60);
        CHECK(fabs(m[0] - l[0]) < 1e-9 && fabs(m[2] - l[2]) < 1e-9);
        /* then idle: it decays */
        sampler_load_step(l, 0, 60);
        CHECK(fabs(l[0] - (1 - exp(-1)) * exp(-1)) < 1e-9);
        /* no time, or an unknown count: no change */
        double before = l[0];
        sampler_load_step(l, 5, 0);
        sampler_load_step(l, -1, 10);
        CHECK(l[0] == before);
}

/* ---- the drivers' stats_open and stats_read over a fake cgroupfs ----
 *
 * Regular files laid out as the drivers expect them, so that both versions' code runs here
 * whatever this machine mounts (it is v1; production is v2). */

static char fake_root[] = "/tmp/test-sampler-XXXXXX";

/* In place (the same inode): the drivers hold the files open, as they do cgroupfs's. */
static void put_file(const char *dir, const char *name, const char *text)
{
        _cleanup_free_ char *path = strjoin3(dir, "/", name);
        _cleanup_close_ int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) :
                                        -1;
        CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
}

static char *make_dir(const char *mount, const char *rel)
{
        char *d = strjoin3(mount, rel, NULL);
        CHECK(d && mkdir_p(d, 0755) == 0);
        return d;
}

static void add_hier(struct cg_manager *m, enum cg_controller c, const char *name)
{
        struct cg_hier *h = &m->hier[m->n_hier];
        h->mount = strjoin3(fake_root, "/", name);
        h->own_rel = strdup("");
        h->base_rel = strdup("/base");
        h->lib_ctrl = strdup(name);
        m->hier_of[c] = (int)m->n_hier++;
}

static const char psi_text[] = "some avg10=2.50 avg60=1.00 avg300=0.20 total=3000000\n"
                               "full avg10=1.25 avg60=0.50 avg300=0.10 total=1000000\n";

static void test_v2_driver(void)
{
        struct cg_manager *m = calloc(1, sizeof *m);
        CHECK(m != NULL);
        if (!m)
                return;
        m->ops = &cg_v2_ops;
        for (size_t i = 0; i < ELEMENTSOF(m->hier_of); i++)
                m->hier_of[i] = -1;
        add_hier(m, CG_CTRL_MEMORY, "unified");
        for (int c = 0; c < _CG_CTRL_MAX; c++)
                m->hier_of[c] = 0;
        _cleanup_free_ char *d = make_dir(m->hier[0].mount, "/base/dynos/web-1");
        put_file(d, "memory.stat", v2_memory_stat);
        put_file(d, "memory.current", "30000000\n");
        put_file(d, "memory.swap.current", "4096\n");
        put_file(d, "memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n");
        put_file(d, "cpu.stat",
                 "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
                 "nr_periods 10\nnr_throttled 2\nthrottled_usec 7000\n");
        put_file(d, "pids.current", "4\n");
        put_file(d, "cpu.pressure", psi_text);
        put_file(d, "io.pressure", psi_text);
        /* no memory.pressure: a kernel without it leaves it out, not the sample */

        struct cg_stat_files *f = NULL;
        CHECK(cg_stats_open(m, "web-1", &f) == 0);
        struct cg_stat_files *none = NULL;
        CHECK(cg_stats_open(m, "nope", &none) == -ENOENT && none == NULL);
        struct cg_stats st;
        CHECK(f && cg_stats_read(m, f, &st) == 0);
        CHECK(st.memory == 30000000 && st.swap == 4096);
        CHECK(st.rss == 21086208 && st.cache == 1234567);
        CHECK(st.pgpgin == 12 && st.pgpgout == 7); /* pgmajfault, pswpout */
        CHECK(st.cpu_usec == 1500000 && st.throttled_usec == 7000);
        CHECK(st.pids == 4 && st.oom_kills == 2);
        CHECK(st.runnable == -1); /* no count per cgroup on v2 */
        CHECK(st.cpu_psi.present && st.cpu_psi.some_total_usec == 3000000);
        CHECK(st.io_psi.present && st.io_psi.full_avg[0] == 1.25);
        CHECK(!st.memory_psi.present);
        /* the OOM count is read again only after an event */
        uint32_t ev = 0;
        CHECK(f && cg_stats_oom_fd(f, &ev) >= 0 && ev != 0);
        put_file(d, "memory.events", "low 0\nhigh 0\nmax 6\noom 3\noom_kill 3\n");
        CHECK(f && cg_stats_read(m, f, &st) == 0 && st.oom_kills == 2);
        if (f)
                cg_stats_oom_event(f);
        CHECK(f && cg_stats_read(m, f, &st) == 0 && st.oom_kills == 3);
        /* the rest is read every time */
        put_file(d, "pids.current", "9\n");
        CHECK(f && cg_stats_read(m, f, &st) == 0 && st.pids == 9);
        /* a required file that is not a number is an error, not a 0 */
        put_file(d, "memory.current", "max\n");
        CHECK(f && cg_stats_read(m, f, &st) == -EINVAL);
        cg_stat_files_free(f);

        /* a required file missing: nothing opened, an error */
        _cleanup_free_ char *d2 = make_dir(m->hier[0].mount, "/base/dynos/web-2");
        put_file(d2, "memory.stat", v2_memory_stat);
        f = NULL;
        CHECK(cg_stats_open(m, "web-2", &f) == -ENOENT && f == NULL);
        CHECK(cg_stats_open(m, "../x", &f) == -EINVAL);
        cg_manager_free(m);
}

static void test_v1_driver(void)
{
        struct cg_manager *m = calloc(1, sizeof *m);
        CHECK(m != NULL);
        if (!m)
                return;
        m->ops = &cg_v1_ops;
        for (size_t i = 0; i < ELEMENTSOF(m->hier_of); i++)
                m->hier_of[i] = -1;
        add_hier(m, CG_CTRL_MEMORY, "memory");
        add_hier(m, CG_CTRL_CPU, "cpu");
        add_hier(m, CG_CTRL_CPUACCT, "cpuacct");
        add_hier(m, CG_CTRL_PIDS, "pids");
        _cleanup_free_ char *mem = make_dir(m->hier[0].mount, "/base/dynos/w");
        _cleanup_free_ char *cpu = make_dir(m->hier[1].mount, "/base/dynos/w");
        _cleanup_free_ char *acct = make_dir(m->hier[2].mount, "/base/dynos/w");
        _cleanup_free_ char *pids = make_dir(m->hier[3].mount, "/base/dynos/w");
        put_file(mem, "memory.stat", v1_memory_stat);
        put_file(mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
        put_file(mem, "cgroup.event_control", "");
        put_file(acct, "cpuacct.usage", "2500000000\n");
        put_file(cpu, "cpu.cfs_quota_us", "50000\n");
        put_file(cpu, "cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 123456789\n");
        put_file(pids, "pids.current", "3\n");

        struct cg_stat_files *f = NULL;
        struct cg_stats st;
        CHECK(cg_stats_open(m, "w", &f) == 0);
        CHECK(f && cg_stats_read(m, f, &st) == 0);
        /* memory: total_rss + total_cache, the kernel's exact figure */
        CHECK(st.memory == 4800512 + 9510912 && st.swap == 4096);
        CHECK(st.pgpgin == 7300 && st.pgpgout == 3800);
        CHECK(st.cpu_usec == 2500000 && st.throttled_usec == 123456);
        CHECK(st.pids == 3 && st.oom_kills == 1);
        /* a folder that is no cgroup: taskstats says nothing, the sample stands */
        CHECK(st.runnable == -1);
        cg_stat_files_free(f);

        /* without a quota, cpu.stat is not read: nothing is throttled */
        put_file(cpu, "cpu.cfs_quota_us", "-1\n");
        f = NULL;
        CHECK(cg_stats_open(m, "w", &f) == 0);
        CHECK(f && cg_stats_read(m, f, &st) == 0 && st.throttled_usec == 0);
        cg_stat_files_free(f);
        cg_manager_free(m);
}

static void test_drivers(void)
{
        if (!mkdtemp(fake_root)) {
                CHECK(!"mkdtemp");
                return;
        }
        test_v2_driver();
        test_v1_driver();
        CHECK(rm_rf(fake_root) == 0);
}

static void test_estimate(void)
{
        /* over 20 s: one task busy on an idle CPU is 1 */
        CHECK(fabs(sampler_estimate_active(20000000, 0, 0, 20000000) - 1) < 1e-9);
        /* two busy tasks sharing one CPU: 1 running, 1 waiting all the time: 2, as the
         * kernel's nr_running says */
        CHECK(fabs(sampler_estimate_active(20000000, 20000000, 0, 20000000) - 2) < 1e-9);
        /* two tasks on two CPUs: 2 CPU-seconds a second, nobody waits */
        CHECK(fabs(sampler_estimate_active(40000000, 0, 0, 20000000) - 2) < 1e-9);
        /* a task blocked on I/O half the time and running the other half: 1 */
        CHECK(fabs(sampler_estimate_active(10000000, 0, 10000000, 20000000) - 1) < 1e-9);
        /* idle */
        CHECK(sampler_estimate_active(0, 0, 0, 20000000) == 0);
        CHECK(sampler_estimate_active(5, 5, 5, 0) == 0);
}

int main(void)
{
        test_estimate();
        test_drivers();
        test_keyed();
        test_u64();
        test_psi();
        test_host();
        test_load_step();
        if (n_failed)
                fprintf(stderr, "%d failures\n", n_failed);
        return n_failed != 0;
}
