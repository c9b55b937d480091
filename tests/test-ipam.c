/* Unit tests for netd/ipam.c: allocation, quarantine, persistence and crash safety. No root:
 * everything lives in a temporary folder, and "namespaces" are a list the test keeps. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "ipam.h"
#include "util.h"
#include "check.h"

static char top[64];

/* The namespaces that "exist": ns_alive's answer. */
static struct {
        char ids[64][DYNO_INSTANCE_NAME_MAX + 1];
        size_t n;
        unsigned calls;
} ns;

static void ns_add(const char *id)
{
        if (ns.n < ELEMENTSOF(ns.ids))
                snprintf(ns.ids[ns.n++], sizeof ns.ids[0], "%s", id);
}

static void ns_del(const char *id)
{
        for (size_t i = 0; i < ns.n; i++)
                if (strcmp(ns.ids[i], id) == 0) {
                        memmove(ns.ids[i], ns.ids[ns.n - 1], sizeof ns.ids[0]);
                        ns.n--;
                        return;
                }
}

static bool ns_alive(const char *id, void *userdata)
{
        CHECK(userdata == &ns);
        ns.calls++;
        for (size_t i = 0; i < ns.n; i++)
                if (strcmp(ns.ids[i], id) == 0)
                        return true;
        return false;
}

static const char *ip(struct in_addr a)
{
        static char bufs[4][INET_ADDRSTRLEN];
        static unsigned k;
        char *b = bufs[k++ % ELEMENTSOF(bufs)];
        return inet_ntop(AF_INET, &a, b, INET_ADDRSTRLEN);
}

static bool ip_is(struct in_addr a, const char *s) { return strcmp(ip(a), s) == 0; }

/* A fresh state file path in its own folder. */
static void fresh_path(char *buf, size_t len, const char *name)
{
        snprintf(buf, len, "%s/%s", top, name);
        (void)mkdir(buf, 0755);
        snprintf(buf + strlen(buf), len - strlen(buf), "/ipam");
}

static char *slurp(const char *path)
{
        char *s = NULL;
        if (read_full_file(path, &s, NULL) < 0)
                return NULL;
        return s;
}

static void put(const char *path, const char *s)
{
        if (write_file_atomic(path, s, strlen(s), 0644) < 0)
                fprintf(stderr, "write %s failed\n", path);
}

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static ino_t inode(const char *path)
{
        struct stat st;
        return stat(path, &st) < 0 ? 0 : st.st_ino;
}

static int open_ipam(const char *path, const char *subnet, struct ipam **ret)
{
        char err[512] = "";
        int r = ipam_open(path, subnet, ns_alive, &ns, ret, err, sizeof err);
        if (r < 0)
                fprintf(stderr, "  ipam_open: %s\n", err);
        return r;
}

static double now_s(void) { return (double)now_monotonic_usec() / 1e6; }

static void test_parse_subnet(void)
{
        struct in_addr a;
        unsigned p;
        char err[256];
        CHECK_R(ipam_parse_subnet("10.217.0.0/16", &a, &p, err, sizeof err), 0);
        CHECK(ip_is(a, "10.217.0.0") && p == 16);
        CHECK_R(ipam_parse_subnet("192.168.7.4/30", &a, &p, err, sizeof err), 0);
        CHECK(ip_is(a, "192.168.7.4") && p == 30);
        CHECK_R(ipam_parse_subnet("10.0.0.0/8", &a, &p, err, sizeof err), 0);

        static const struct {
                const char *s, *msg;
        } bad[] = {
                { "10.217.0.1/16", "host bits set (the network is 10.217.0.0/16)" },
                { "10.0.0.0/7", "prefix /7 out of range" },
                { "10.0.0.0/31", "prefix /31 out of range" },
                { "10.0.0.0/32", "prefix /32 out of range" },
                { "10.0.0.0/0", "prefix /0 out of range" },
                { "fd00::/64", "IPv6 is not supported" },
                { "127.0.0.0/8", "loopback" },
                { "169.254.0.0/16", "link-local" },
                { "169.0.0.0/8", "link-local" },
                { "224.1.0.0/16", "multicast" },
                { "0.1.0.0/16", "this network" },
                { "10.0.0.0", "not an IPv4 CIDR" },
                { "10.0.0.0/", "not an IPv4 CIDR" },
                { "10.0.0.0/08", "not an IPv4 CIDR" },
                { "10.0.0.0/16x", "not an IPv4 CIDR" },
                { "10.0.0.0/1/6", "not an IPv4 CIDR" },
                { "010.0.0.0/8", "not an IPv4 CIDR" },
                { "10.0.0.256/24", "not an IPv4 CIDR" },
                { "10.0.0/24", "not an IPv4 CIDR" },
                { " 10.0.0.0/24", "not an IPv4 CIDR" },
                { "", "not an IPv4 CIDR" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                err[0] = 0;
                int r = ipam_parse_subnet(bad[i].s, &a, &p, err, sizeof err);
                CHECK_R(r, -EINVAL);
                if (!strstr(err, bad[i].msg))
                        fprintf(stderr, "  '%s': message '%s' lacks '%s'\n", bad[i].s, err,
                                bad[i].msg);
                CHECK(strstr(err, bad[i].msg));
        }

        /* ipam_open refuses it too, and creates nothing. */
        char path[256];
        fresh_path(path, sizeof path, "parse");
        struct ipam *m = NULL;
        err[0] = 0;
        CHECK_R(ipam_open(path, "10.0.0.0/31", NULL, NULL, &m, err, sizeof err), -EINVAL);
        CHECK(m == NULL && strstr(err, "/31"));
        CHECK(access(path, F_OK) < 0);
}

static void test_allocate_lookup(void)
{
        char path[256];
        fresh_path(path, sizeof path, "basic");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.217.0.0/24", &m), 0);
        if (!m)
                return;
        _cleanup_free_ char *s0 = slurp(path);
        CHECK(streq(s0, "netd-ipam 1 10.217.0.0/24\n"));
        CHECK(ip_is(ipam_gateway(m), "10.217.0.1"));
        CHECK(ip_is(ipam_broadcast(m), "10.217.0.255"));

        struct in_addr a, b, c;
        CHECK_R(ipam_allocate(m, "web.1", &a), 1);
        CHECK(ip_is(a, "10.217.0.2"));
        CHECK_R(ipam_lookup(m, "web.1", &c), 0);
        CHECK(c.s_addr == a.s_addr);

        /* Idempotent, and writes nothing. */
        ino_t ino = inode(path);
        CHECK_R(ipam_allocate(m, "web.1", &c), 0);
        CHECK(c.s_addr == a.s_addr);
        CHECK(inode(path) == ino);

        CHECK_R(ipam_allocate(m, "worker_2-X.y", &b), 1);
        CHECK(ip_is(b, "10.217.0.3"));
        CHECK_R(ipam_lookup(m, "nope", &c), -ENOENT);
        CHECK_R(ipam_release(m, "nope"), 0);

        static const char *const bad_ids[] = {
                "",
                "-x",
                ".x",
                "_x",
                "a/b",
                "a b",
                "a\n",
                "é",
                "@x",
                "0123456789012345678901234567890123456789012345678901234567890123456789012345678901",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_ids); i++) {
                CHECK_R(ipam_allocate(m, bad_ids[i], &c), -EINVAL);
                CHECK_R(ipam_lookup(m, bad_ids[i], &c), -EINVAL);
                CHECK_R(ipam_release(m, bad_ids[i]), -EINVAL);
        }
        /* hostd's longest id, as the instance a daily cycle starts beside the old one */
        CHECK_R(ipam_allocate(m,
                              "012345678901234567890123456789012345678901234567890123456789012"
                              "@4294967295",
                              &c),
                1);

        _cleanup_free_ struct ipam_entry *v = NULL;
        size_t n = 0;
        CHECK_R(ipam_list(m, true, &v, &n), 0);
        CHECK(n == 3);
        if (n == 3) {
                CHECK(streq(v[0].dyno_id, "web.1") && v[0].addr.s_addr == a.s_addr);
                CHECK(streq(v[1].dyno_id, "worker_2-X.y") && v[1].addr.s_addr == b.s_addr);
                CHECK(!v[0].quarantined && !v[1].quarantined && !v[2].quarantined);
        }
        struct ipam_usage u;
        ipam_usage(m, &u);
        CHECK(u.capacity == 253 && u.allocated == 3 && u.quarantined == 0);
        _cleanup_free_ char *s1 = slurp(path);
        CHECK(streq(s1,
                    "netd-ipam 1 10.217.0.0/24\n"
                    "a 10.217.0.2 web.1\n"
                    "a 10.217.0.3 worker_2-X.y\n"
                    "a 10.217.0.4 "
                    "012345678901234567890123456789012345678901234567890123456789012@4294967295\n"));
}

static void test_full_subnet(void)
{
        char path[256];
        fresh_path(path, sizeof path, "full29");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "192.168.50.8/29", &m), 0);
        if (!m)
                return;
        bool seen[8] = { false };
        for (int i = 0; i < 5; i++) {
                char id[16];
                struct in_addr a;
                snprintf(id, sizeof id, "d%d", i);
                CHECK_R(ipam_allocate(m, id, &a), 1);
                uint32_t h = ntohl(a.s_addr);
                CHECK((h & ~7u) == 0xc0a83208);
                CHECK(!seen[h & 7]);
                seen[h & 7] = true;
        }
        /* Exactly .10 to .14: never the network (.8), gateway (.9) or broadcast (.15). */
        CHECK(!seen[0] && !seen[1] && !seen[7]);
        CHECK(seen[2] && seen[3] && seen[4] && seen[5] && seen[6]);
        _cleanup_free_ char *before = slurp(path);
        struct in_addr a = { 0 };
        CHECK_R(ipam_allocate(m, "d5", &a), -ENOSPC);
        CHECK_R(ipam_lookup(m, "d5", &a), -ENOENT);
        _cleanup_free_ char *after = slurp(path);
        CHECK(streq(before, after));
        ipam_free(TAKE_PTR(m));

        /* A /30 holds one dyno. */
        fresh_path(path, sizeof path, "full30");
        CHECK_R(open_ipam(path, "10.1.2.4/30", &m), 0);
        if (!m)
                return;
        CHECK_R(ipam_allocate(m, "only", &a), 1);
        CHECK(ip_is(a, "10.1.2.6"));
        CHECK_R(ipam_allocate(m, "second", &a), -ENOSPC);
        ipam_free(TAKE_PTR(m));

        /* A /26: 61 distinct addresses, none reserved. */
        fresh_path(path, sizeof path, "full26");
        CHECK_R(open_ipam(path, "10.9.0.64/26", &m), 0);
        if (!m)
                return;
        uint64_t bits = 0;
        int ok = 0;
        for (int i = 0; i < 61; i++) {
                char id[16];
                snprintf(id, sizeof id, "d%d", i);
                if (ipam_allocate(m, id, &a) != 1)
                        continue;
                uint32_t off = ntohl(a.s_addr) - 0x0a090040;
                if (off >= 2 && off <= 62 && !(bits >> off & 1))
                        ok++;
                bits |= UINT64_C(1) << off;
        }
        CHECK(ok == 61);
        CHECK_R(ipam_allocate(m, "d61", &a), -ENOSPC);
}

static void test_quarantine(void)
{
        char path[256];
        fresh_path(path, sizeof path, "quarantine");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.5.0.0/29", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        struct in_addr a[5], x;
        for (int i = 0; i < 5; i++) {
                char id[8];
                snprintf(id, sizeof id, "d%d", i);
                ns_add(id);
                CHECK_R(ipam_allocate(m, id, &a[i]), 1);
        }
        /* d3's namespace still exists: its address is not handed out. */
        CHECK_R(ipam_release(m, "d3"), 1);
        CHECK_R(ipam_release(m, "d3"), 0);
        CHECK_R(ipam_lookup(m, "d3", &x), -ENOENT);
        _cleanup_free_ char *s = slurp(path);
        CHECK(s && strstr(s, "\nq 10.5.0.5 d3\n"));
        struct ipam_usage u;
        ipam_usage(m, &u);
        CHECK(u.allocated == 4 && u.quarantined == 1);
        unsigned calls = ns.calls;
        CHECK_R(ipam_allocate(m, "new", &x), -ENOSPC);
        CHECK(ns.calls > calls); /* it asked */
        CHECK_R(ipam_sweep(m), 0);
        CHECK_R(ipam_allocate(m, "new", &x), -ENOSPC);

        /* Gone: now it is. */
        ns_del("d3");
        CHECK_R(ipam_allocate(m, "new", &x), 1);
        CHECK(x.s_addr == a[3].s_addr);
        free(s);
        s = slurp(path);
        CHECK(s && !strstr(s, "\nq ") && strstr(s, "\na 10.5.0.5 new\n"));

        /* A dyno allocating again gets its own quarantined address back. */
        CHECK_R(ipam_release(m, "d1"), 1);
        CHECK_R(ipam_allocate(m, "d1", &x), 1);
        CHECK(x.s_addr == a[1].s_addr);

        /* Released after its namespace went: free at once, no q line. */
        ns_del("d2");
        CHECK_R(ipam_release(m, "d2"), 1);
        free(s);
        s = slurp(path);
        CHECK(s && !strstr(s, "d2") && !strstr(s, "\nq "));

        /* Sweep on its own. */
        CHECK_R(ipam_release(m, "d4"), 1);
        CHECK_R(ipam_sweep(m), 0);
        ns_del("d4");
        CHECK_R(ipam_sweep(m), 1);
        CHECK_R(ipam_sweep(m), 0);
        free(s);
        s = slurp(path);
        CHECK(streq(s, "netd-ipam 1 10.5.0.0/29\n"
                       "a 10.5.0.2 d0\n"
                       "a 10.5.0.3 d1\n"
                       "a 10.5.0.5 new\n"));
        ipam_free(TAKE_PTR(m));

        /* Round-robin: a released address, even free, is not the next one handed out. */
        fresh_path(path, sizeof path, "roundrobin");
        CHECK_R(open_ipam(path, "10.6.0.0/24", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        CHECK_R(ipam_allocate(m, "a", &a[0]), 1);
        CHECK_R(ipam_allocate(m, "b", &a[1]), 1);
        CHECK_R(ipam_release(m, "a"), 1);
        CHECK_R(ipam_release(m, "b"), 1);
        CHECK_R(ipam_allocate(m, "c", &x), 1);
        CHECK(ip_is(x, "10.6.0.4"));

        /* Without ns_alive, quarantine ends at the next change. */
        ipam_free(TAKE_PTR(m));
        fresh_path(path, sizeof path, "nocallback");
        char err[256];
        CHECK_R(ipam_open(path, "10.7.0.0/30", NULL, NULL, &m, err, sizeof err), 0);
        if (!m)
                return;
        CHECK_R(ipam_allocate(m, "a", &x), 1);
        CHECK_R(ipam_release(m, "a"), 1);
        CHECK_R(ipam_allocate(m, "b", &x), 1);
        CHECK(ip_is(x, "10.7.0.2"));
}

static void test_persistence(void)
{
        char path[256];
        fresh_path(path, sizeof path, "persist");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.217.0.0/16", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        struct in_addr a;
        for (int i = 0; i < 300; i++) {
                char id[16];
                snprintf(id, sizeof id, "web.%d", i);
                CHECK_R(ipam_allocate(m, id, &a), 1);
        }
        ns_add("web.7");
        CHECK_R(ipam_release(m, "web.7"), 1);
        CHECK_R(ipam_release(m, "web.8"), 1); /* namespace gone: freed */
        _cleanup_free_ struct ipam_entry *v1 = NULL, *v2 = NULL;
        size_t n1 = 0, n2 = 0;
        CHECK_R(ipam_list(m, true, &v1, &n1), 0);
        CHECK(n1 == 299);
        _cleanup_free_ char *s1 = slurp(path);
        CHECK(s1 && strstr(s1, "\na 10.217.1.0 web.254\n") && strstr(s1, "\nq 10.217.0.9 web.7\n"));

        /* A second opener is refused while the first holds the lock. */
        struct ipam *m2 = NULL;
        char err[512] = "";
        CHECK_R(ipam_open(path, "10.217.0.0/16", NULL, NULL, &m2, err, sizeof err), -EBUSY);
        CHECK(m2 == NULL && strstr(err, "another"));
        ipam_free(TAKE_PTR(m));

        /* A temporary file left by a crash is removed at open; the state is untouched. */
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%.*s/.#ipam.999999", (int)(strlen(path) - 5), path);
        put(tmp, "half-written garbage");

        CHECK_R(open_ipam(path, "10.217.0.0/16", &m), 0);
        if (!m)
                return;
        CHECK(access(tmp, F_OK) < 0);
        CHECK_R(ipam_list(m, true, &v2, &n2), 0);
        CHECK(n1 == n2 && n1 > 0 && memcmp(v1, v2, n1 * sizeof *v1) == 0);
        CHECK_R(ipam_lookup(m, "web.0", &a), 0);
        CHECK(ip_is(a, "10.217.0.2"));
        CHECK_R(ipam_lookup(m, "web.7", &a), -ENOENT);
        struct ipam_usage u;
        ipam_usage(m, &u);
        CHECK(u.allocated == 298 && u.quarantined == 1 && u.capacity == 65533);
        /* Reopening wrote nothing. */
        _cleanup_free_ char *s2 = slurp(path);
        CHECK(streq(s1, s2));
        /* Round-robin continues after the highest address in use, not in the hole at .10. */
        CHECK_R(ipam_allocate(m, "after", &a), 1);
        CHECK(ip_is(a, "10.217.1.46"));

        /* The position survives a restart: the address just freed is not the next one. */
        CHECK_R(ipam_release(m, "after"), 1);
        ipam_free(TAKE_PTR(m));
        CHECK_R(open_ipam(path, "10.217.0.0/16", &m), 0);
        if (!m)
                return;
        CHECK_R(ipam_allocate(m, "after2", &a), 1);
        CHECK(ip_is(a, "10.217.1.47"));
        /* A lost or garbled hint: after the highest address in use. */
        CHECK_R(ipam_release(m, "after2"), 1);
        ipam_free(TAKE_PTR(m));
        char lock[300];
        snprintf(lock, sizeof lock, "%s.lock", path);
        put(lock, "10.99.0.1      \n");
        CHECK_R(open_ipam(path, "10.217.0.0/16", &m), 0);
        if (!m)
                return;
        CHECK_R(ipam_allocate(m, "after3", &a), 1);
        CHECK(ip_is(a, "10.217.1.46"));
}

/* A call whose write fails changes nothing: not the file, not the memory (the next call
 * behaves as if the failed one had never been made). The folder is moved away to make the
 * writes fail: permissions would not stop root. */
static void test_write_failure(void)
{
        char path[256], dir[256], moved[300];
        fresh_path(path, sizeof path, "wfail");
        snprintf(dir, sizeof dir, "%.*s", (int)(strlen(path) - 5), path);
        snprintf(moved, sizeof moved, "%s.away", dir);
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.80.0.0/24", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        struct in_addr a;
        CHECK_R(ipam_allocate(m, "a", &a), 1);
        CHECK_R(ipam_allocate(m, "b", &a), 1);
        CHECK_R(ipam_allocate(m, "c", &a), 1);
        ns_add("b");
        CHECK_R(ipam_release(m, "c"), 1); /* freed: its namespace is gone */
        _cleanup_free_ char *before = slurp(path);

        CHECK_R(rename(dir, moved), 0);
        CHECK_R(ipam_allocate(m, "d", &a), -ENOENT);
        CHECK_R(ipam_lookup(m, "d", &a), -ENOENT);
        CHECK_R(ipam_allocate(m, "c", &a), -ENOENT);
        CHECK_R(ipam_release(m, "a"), -ENOENT); /* would have left quarantine at once */
        CHECK_R(ipam_release(m, "b"), -ENOENT);
        CHECK_R(ipam_lookup(m, "a", &a), 0);
        CHECK(ip_is(a, "10.80.0.2"));
        CHECK_R(ipam_lookup(m, "b", &a), 0);
        char *live[] = { "x", NULL };
        CHECK_R(ipam_gc(m, live, NULL), -ENOENT);
        struct ipam_usage u;
        ipam_usage(m, &u);
        CHECK(u.allocated == 2 && u.quarantined == 0);
        CHECK_R(rename(moved, dir), 0);

        _cleanup_free_ char *after = slurp(path);
        CHECK(streq(before, after));
        /* .5: the failed calls did not move the round-robin position either. */
        CHECK_R(ipam_allocate(m, "d", &a), 1);
        CHECK(ip_is(a, "10.80.0.5"));
        CHECK_R(ipam_release(m, "b"), 1);
        CHECK_R(ipam_gc(m, live, NULL), 2);
        ipam_usage(m, &u);
        CHECK(u.allocated == 0 && u.quarantined == 1);
}

/* A child opens the file, makes one call, reports its result and _exit()s at once (no
 * ipam_free, nothing flushed): the file must reflect every call that returned success. */
enum op_kind { OP_ALLOC, OP_RELEASE, OP_GC };
struct op {
        enum op_kind kind;
        const char *id;
        const char *live[4];
};
struct report {
        int step, r;
        struct in_addr a;
        unsigned usec; /* how long the call took */
};
struct model {
        char id[DYNO_INSTANCE_NAME_MAX + 1];
        struct in_addr a;
        bool held;
};

static struct model *model_get(struct model *v, size_t *n, const char *id)
{
        for (size_t i = 0; i < *n; i++)
                if (strcmp(v[i].id, id) == 0)
                        return &v[i];
        snprintf(v[*n].id, sizeof v[*n].id, "%s", id);
        v[*n].held = false;
        return &v[(*n)++];
}

static int run_child(const char *path, const struct op *ops, int from, int to, int fd)
{
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0)
                return pid;
        if (!ops)
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* it waits for a kill: not forever */
        struct ipam *m = NULL;
        char err[256];
        if (ipam_open(path, "10.40.0.0/24", NULL, NULL, &m, err, sizeof err) < 0)
                _exit(3);
        for (int s = from; s < to; s++) {
                struct report rep = { .step = s };
                uint64_t t0 = now_monotonic_usec();
                if (ops) {
                        const struct op *o = &ops[s];
                        if (o->kind == OP_ALLOC)
                                rep.r = ipam_allocate(m, o->id, &rep.a);
                        else if (o->kind == OP_RELEASE)
                                rep.r = ipam_release(m, o->id);
                        else
                                rep.r = ipam_gc(m, (char *const *)o->live, NULL);
                } else {
                        /* The endless script: allocate k<s>, every third step release k<s-1>. */
                        char id[32];
                        snprintf(id, sizeof id, "k%d", s % 3 == 2 ? s - 1 : s);
                        rep.r = s % 3 == 2 ? ipam_release(m, id) : ipam_allocate(m, id, &rep.a);
                }
                rep.usec = (unsigned)(now_monotonic_usec() - t0);
                if (write(fd, &rep, sizeof rep) != sizeof rep)
                        _exit(4);
        }
        /* The script's child waits for its SIGKILL, which thus always ends it, whether it came
         * in the middle of a call or after the last one. */
        if (!ops)
                pause();
        _exit(0);
}

static void apply_report(const struct op *o, const struct report *rep, struct model *v, size_t *n)
{
        if (rep->r < 0)
                return;
        if (o->kind == OP_ALLOC) {
                struct model *e = model_get(v, n, o->id);
                e->held = true;
                e->a = rep->a;
        } else if (o->kind == OP_RELEASE)
                model_get(v, n, o->id)->held = false;
        else
                for (size_t i = 0; i < *n; i++) {
                        bool live = false;
                        for (const char *const *l = o->live; *l; l++)
                                live = live || strcmp(*l, v[i].id) == 0;
                        if (!live)
                                v[i].held = false;
                }
}

/* The file holds exactly the model's allocations (ids in extra may be there too). */
static bool state_matches(const char *path, struct model *v, size_t n, const char *extra)
{
        _cleanup_ipam_ struct ipam *m = NULL;
        if (open_ipam(path, "10.40.0.0/24", &m) < 0)
                return false;
        bool ok = true;
        for (size_t i = 0; i < n; i++) {
                struct in_addr a;
                int r = ipam_lookup(m, v[i].id, &a);
                bool inflight = extra && strcmp(extra, v[i].id) == 0;
                if (v[i].held && !(inflight && r == -ENOENT)) {
                        if (r < 0 || a.s_addr != v[i].a.s_addr) {
                                fprintf(stderr, "  %s: want %s, file has %s\n", v[i].id, ip(v[i].a),
                                        r < 0 ? "none" : ip(a));
                                ok = false;
                        }
                } else if (!v[i].held && r != -ENOENT && !inflight) {
                        fprintf(stderr, "  %s: released, still held in the file\n", v[i].id);
                        ok = false;
                }
        }
        _cleanup_free_ struct ipam_entry *e = NULL;
        size_t k = 0;
        if (ipam_list(m, false, &e, &k) < 0)
                return false;
        for (size_t i = 0; i < k; i++) {
                bool known = extra && strcmp(extra, e[i].dyno_id) == 0;
                for (size_t j = 0; j < n && !known; j++)
                        known = v[j].held && strcmp(v[j].id, e[i].dyno_id) == 0;
                if (!known) {
                        fprintf(stderr, "  %s holds %s: never reported\n", e[i].dyno_id,
                                ip(e[i].addr));
                        ok = false;
                }
        }
        return ok;
}

static void test_crash_after_each_call(void)
{
        static const struct op ops[] = {
                { OP_ALLOC, "a", { NULL } },    { OP_ALLOC, "b", { NULL } },
                { OP_ALLOC, "a", { NULL } },    { OP_RELEASE, "a", { NULL } },
                { OP_ALLOC, "c", { NULL } },    { OP_ALLOC, "d", { NULL } },
                { OP_GC, NULL, { "c", "x" } },  { OP_ALLOC, "a", { NULL } },
                { OP_RELEASE, "zz", { NULL } }, { OP_RELEASE, "c", { NULL } },
                { OP_ALLOC, "e", { NULL } },    { OP_GC, NULL, { NULL } },
                { OP_ALLOC, "f", { NULL } },
        };
        char path[256];
        fresh_path(path, sizeof path, "crash-each");
        struct model v[16];
        size_t n = 0;
        for (int s = 0; s < (int)ELEMENTSOF(ops); s++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        return;
                pid_t pid = run_child(path, ops, s, s + 1, p[1]);
                close(p[1]);
                struct report rep;
                ssize_t k = read(p[0], &rep, sizeof rep);
                close(p[0]);
                int status = 0;
                waitpid(pid, &status, 0);
                CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                CHECK(k == sizeof rep && rep.step == s && rep.r >= 0);
                if (k != sizeof rep)
                        return;
                apply_report(&ops[s], &rep, v, &n);
                CHECK(state_matches(path, v, n, NULL));
        }
        /* Each child started where the previous one stopped (.2 to .8), and what was freed is
         * gone from the file. */
        _cleanup_free_ char *s = slurp(path);
        CHECK(streq(s, "netd-ipam 1 10.40.0.0/24\na 10.40.0.8 f\n"));
}

/* A child allocating and releasing in a loop is SIGKILLed at random moments; after each kill
 * the file holds every reported change, and at most the one call in flight besides.
 *
 * The moment is random in the child's progress, not in wall time: the parent reads a random
 * number of reports, then waits a random part of two calls' time (the child says how long its
 * calls take) and kills. So a fast machine makes no more calls than a slow one (at most
 * KILL_CALLS a round: the script holds one address every three calls, and the /24 has room for
 * them all), and a slow one is still killed in the middle of its work. */
#define KILL_ROUNDS 25
#define KILL_CALLS 30
#define KILL_MAX_HELD (KILL_ROUNDS * KILL_CALLS / 3 + 1)
_Static_assert(KILL_MAX_HELD <= 253, "the /24 holds every allocation the script makes");

/* One report of the script's child, checked and applied to the model; the next step. */
static int apply_script_report(const struct report *rep, int next, struct model *v, size_t *n)
{
        CHECK(rep->step == next && rep->r >= 0);
        char id[32];
        snprintf(id, sizeof id, "k%d", rep->step % 3 == 2 ? rep->step - 1 : rep->step);
        struct op o = { rep->step % 3 == 2 ? OP_RELEASE : OP_ALLOC, id, { NULL } };
        apply_report(&o, rep, v, n);
        return rep->step + 1;
}

static void test_crash_sigkill(void)
{
        char path[256];
        fresh_path(path, sizeof path, "crash-kill");
        static struct model v[KILL_ROUNDS * KILL_CALLS];
        size_t n = 0;
        int next = 0, mid_run = 0;
        unsigned call_usec = 0; /* the last call's time, as the child measured it */
        srand(4);
        for (int round = 0; round < KILL_ROUNDS; round++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        return;
                int first = next;
                pid_t pid = run_child(path, NULL, first, first + KILL_CALLS, p[1]);
                close(p[1]);
                if (pid < 0) {
                        close(p[0]);
                        CHECK_R(pid, 0);
                        return;
                }
                /* 0 to KILL_CALLS - 3 reports: the kill then comes during the open or a call,
                 * unless this process is kept off the CPU for the child's remaining calls. */
                int wait_for = rand() % (KILL_CALLS - 2);
                struct report rep;
                for (int i = 0; i < wait_for && read(p[0], &rep, sizeof rep) == sizeof rep; i++) {
                        next = apply_script_report(&rep, next, v, &n);
                        call_usec = rep.usec;
                }
                usleep((useconds_t)(rand() % (2 * call_usec + 1)));
                kill(pid, SIGKILL);
                int status = 0;
                waitpid(pid, &status, 0);
                CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
                while (read(p[0], &rep, sizeof rep) == sizeof rep)
                        next = apply_script_report(&rep, next, v, &n);
                close(p[0]);
                mid_run += next < first + KILL_CALLS;
                /* The call in flight may or may not have reached the disk. */
                char inflight[32];
                snprintf(inflight, sizeof inflight, "k%d", next % 3 == 2 ? next - 1 : next);
                CHECK(state_matches(path, v, n, inflight));
        }
        printf("      %d calls over %d kills, %d of them before the child's last call\n", next,
               KILL_ROUNDS, mid_run);
        /* The folder holds the file and its lock, no temporary left over. */
        char dir[256];
        snprintf(dir, sizeof dir, "%.*s", (int)(strlen(path) - 5), path);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "test \"$(ls -A %s | tr '\\n' ' ')\" = 'ipam ipam.lock '", dir);
        CHECK(system(cmd) == 0);
}

static void test_other_subnet(void)
{
        char path[256];
        fresh_path(path, sizeof path, "subnet");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.217.0.0/24", &m), 0);
        if (!m)
                return;
        struct in_addr a;
        CHECK_R(ipam_allocate(m, "web.1", &a), 1);
        ipam_free(TAKE_PTR(m));
        _cleanup_free_ char *before = slurp(path);

        char err[512] = "";
        CHECK_R(ipam_open(path, "10.218.0.0/24", NULL, NULL, &m, err, sizeof err), -EINVAL);
        CHECK(m == NULL);
        CHECK(strstr(err, "10.217.0.0/24") && strstr(err, "10.218.0.0/24") &&
              strstr(err, "1 address in use") && strstr(err, "deliberate"));
        err[0] = 0;
        CHECK_R(ipam_open(path, "10.217.0.0/16", NULL, NULL, &m, err, sizeof err), -EINVAL);
        CHECK(strstr(err, "10.217.0.0/24"));
        _cleanup_free_ char *after = slurp(path);
        CHECK(streq(before, after));

        /* A file that holds no address is rewritten for the new subnet. */
        put(path, "netd-ipam 1 10.217.0.0/24\n");
        CHECK_R(open_ipam(path, "10.218.0.0/24", &m), 0);
        free(after);
        after = slurp(path);
        CHECK(streq(after, "netd-ipam 1 10.218.0.0/24\n"));
}

static void test_corrupt(void)
{
        static const struct {
                const char *text;
                unsigned line;
                const char *msg;
        } cases[] = {
                { "", 1, "empty file" },
                { "netd-ipam 1 10.30.0.0/24", 1, "not terminated" },
                { "hello\n", 1, "not a netd-ipam file" },
                { "netd-ipam 2 10.30.0.0/24\n", 1, "format version '2'" },
                { "netd-ipam 1 10.30.0.0/24 \n", 1, "not a netd-ipam file" },
                { "netd-ipam 1 10.30.0.1/24\n", 1, "host bits" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\nb 10.30.0.3 y\n", 3,
                  "expected 'a ADDRESS DYNO-ID'" },
                { "netd-ipam 1 10.30.0.0/24\n\n", 2, "expected" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\r\n", 2, "carriage return" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\na 10.30.0.3 y", 3, "not terminated" },
                { "netd-ipam 1 10.30.0.0/24\na  10.30.0.2 x\n", 2, "expected" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x extra\n", 2, "expected" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2\n", 2, "expected" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.300 x\n", 2, "not an IPv4 address" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.02 x\n", 2, "not an IPv4 address" },
                { "netd-ipam 1 10.30.0.0/24\na 10.31.0.2 x\n", 2, "outside the subnet" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.0 x\n", 2, "network address" },
                { "netd-ipam 1 10.30.0.0/24\nq 10.30.0.1 x\n", 2, "gateway" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.255 x\n", 2, "broadcast" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\nq 10.30.0.2 y\n", 3, "appears twice" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\nq 10.30.0.3 x\n", 3, "appears twice" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 -x\n", 2, "not a valid dyno id" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x/y\n", 2, "not a valid dyno id" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 "
                  "0123456789012345678901234567890123456789012345678901234567890123"
                  "45678901234567890\n",
                  2, "longer than 74" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 @x\n", 2, "not a valid dyno id" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x@0\n", 2, "not a valid dyno id" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x@4294967296\n", 2,
                  "not a valid dyno id" },
                { "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\na 10.30.0.3 y\nA 10.30.0.4 z\n", 4,
                  "expected" },
        };
        char path[256];
        fresh_path(path, sizeof path, "corrupt");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                put(path, cases[i].text);
                struct ipam *m = NULL;
                char err[512] = "", want[64];
                CHECK_R(ipam_open(path, "10.30.0.0/24", NULL, NULL, &m, err, sizeof err), -EINVAL);
                CHECK(m == NULL);
                snprintf(want, sizeof want, "/ipam:%u: ", cases[i].line);
                bool ok = strstr(err, want) && strstr(err, cases[i].msg);
                if (!ok)
                        fprintf(stderr, "  case %zu: message '%s' lacks '%s' or '%s'\n", i, err,
                                want, cases[i].msg);
                CHECK(ok);
                _cleanup_free_ char *after = slurp(path);
                CHECK(streq(after, cases[i].text)); /* never rewritten */
                ipam_free(m);
        }
        /* And a valid file with both kinds of line loads. */
        put(path, "netd-ipam 1 10.30.0.0/24\na 10.30.0.2 x\nq 10.30.0.3 y\na 10.30.0.254 z\n");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.30.0.0/24", &m), 0);
        struct in_addr a;
        if (m) {
                CHECK_R(ipam_lookup(m, "z", &a), 0);
                CHECK_R(ipam_lookup(m, "y", &a), -ENOENT);
        }
}

static void test_gc(void)
{
        char path[256];
        fresh_path(path, sizeof path, "gc");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.50.0.0/24", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        static const char *const ids[] = { "e", "a", "d", "c", "b" };
        struct in_addr a;
        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                CHECK_R(ipam_allocate(m, ids[i], &a), 1);
        ns_add("c"); /* c's namespace lingers */
        char *live[] = { "b", "d", "zz", NULL };
        _cleanup_strv_free_ char **freed = NULL;
        CHECK_R(ipam_gc(m, live, &freed), 3);
        CHECK(freed && streq(freed[0], "a") && streq(freed[1], "c") && streq(freed[2], "e") &&
              !freed[3]);
        CHECK_R(ipam_lookup(m, "a", &a), -ENOENT);
        CHECK_R(ipam_lookup(m, "c", &a), -ENOENT);
        CHECK_R(ipam_lookup(m, "b", &a), 0);
        CHECK_R(ipam_lookup(m, "d", &a), 0);
        _cleanup_free_ char *s = slurp(path);
        CHECK(streq(s, "netd-ipam 1 10.50.0.0/24\n"
                       "a 10.50.0.4 d\n"
                       "q 10.50.0.5 c\n"
                       "a 10.50.0.6 b\n"));

        /* Nothing more to free: an empty list, nothing written. */
        strv_free(TAKE_PTR(freed));
        ino_t ino = inode(path);
        CHECK_R(ipam_gc(m, live, &freed), 0);
        CHECK(freed && !freed[0]);
        CHECK(inode(path) == ino);

        /* No live dyno at all; c's namespace is gone by now. */
        ns.n = 0;
        CHECK_R(ipam_gc(m, NULL, NULL), 2);
        free(s);
        s = slurp(path);
        CHECK(streq(s, "netd-ipam 1 10.50.0.0/24\n"));
}

/* 200 allocate/release cycles (as attach/detach, the namespace removed after detach) leave
 * the file as it was; addresses go round-robin, wrapping round the /25. */
static void test_cycles(void)
{
        char path[256];
        fresh_path(path, sizeof path, "cycles");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.60.0.0/25", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        struct in_addr a;
        static const char *const base[] = { "base-1", "base-2", "base-3" };
        for (size_t i = 0; i < ELEMENTSOF(base); i++) {
                ns_add(base[i]);
                CHECK_R(ipam_allocate(m, base[i], &a), 1);
        }
        _cleanup_free_ char *start = slurp(path);
        int in_order = 0;
        for (int i = 0; i < 200; i++) {
                char id[16];
                snprintf(id, sizeof id, "cyc%d", i);
                ns_add(id);
                CHECK_R(ipam_allocate(m, id, &a), 1);
                /* .5 to .126: 122 addresses, then round again. */
                in_order += ntohl(a.s_addr) == 0x0a3c0000u + 5 + (unsigned)(i % 122);
                CHECK_R(ipam_release(m, id), 1); /* namespace still there: quarantined */
                ns_del(id);
        }
        CHECK(in_order == 200);
        _cleanup_free_ char *mid = slurp(path);
        CHECK(mid && strstr(mid, "\nq ")); /* the last one still waits */
        CHECK_R(ipam_sweep(m), 1);
        _cleanup_free_ char *end = slurp(path);
        CHECK(streq(start, end));
}

static void test_scale(void)
{
        char path[256];
        fresh_path(path, sizeof path, "scale");
        _cleanup_ipam_ struct ipam *m = NULL;
        CHECK_R(open_ipam(path, "10.70.0.0/20", &m), 0);
        if (!m)
                return;
        ns.n = 0;
        double t0 = now_s();
        int ok = 0;
        for (int i = 0; i < 2000; i++) {
                char id[32];
                struct in_addr a;
                snprintf(id, sizeof id, "web.%d-0123456789abcdef", i);
                ok += ipam_allocate(m, id, &a) == 1 &&
                      ntohl(a.s_addr) == 0x0a460000u + 2 + (unsigned)i;
        }
        double t1 = now_s();
        CHECK(ok == 2000);
        int found = 0;
        for (int i = 0; i < 2000; i++) {
                char id[32];
                snprintf(id, sizeof id, "web.%d-0123456789abcdef", i);
                found += ipam_lookup(m, id, NULL) == 0;
        }
        double t2 = now_s();
        CHECK(found == 2000);
        ipam_free(TAKE_PTR(m));
        CHECK_R(open_ipam(path, "10.70.0.0/20", &m), 0);
        double t3 = now_s();
        if (!m)
                return;
        struct ipam_usage u;
        ipam_usage(m, &u);
        CHECK(u.allocated == 2000 && u.capacity == 4093);
        int released = 0;
        for (int i = 0; i < 2000; i += 20) {
                char id[32];
                snprintf(id, sizeof id, "web.%d-0123456789abcdef", i);
                released += ipam_release(m, id) == 1;
        }
        double t4 = now_s();
        CHECK(released == 100);
        printf("      2000 allocations in a /20: %.3f s (%.2f ms each, file written each time); "
               "2000 lookups %.3f ms; reopen %.3f ms; 100 releases %.3f s\n",
               t1 - t0, (t1 - t0) * 1e3 / 2000, (t2 - t1) * 1e3, (t3 - t2) * 1e3, t4 - t3);
}

int main(void)
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "subnets: parsed strictly, /8 to /30, IPv4 only", test_parse_subnet },
                { "allocate, lookup, idempotent allocate, ids checked", test_allocate_lookup },
                { "network, gateway, broadcast never handed out; full subnet", test_full_subnet },
                { "quarantine until the old namespace is gone; round-robin", test_quarantine },
                { "reopen: same allocations; the lock; stale temporaries", test_persistence },
                { "a failed write changes nothing, on disk or in memory", test_write_failure },
                { "crash right after each call: the file has every success",
                  test_crash_after_each_call },
                { "SIGKILL at random moments: nothing lost, nothing leaked", test_crash_sigkill },
                { "a file of another subnet is refused", test_other_subnet },
                { "corrupt files: an error naming the line", test_corrupt },
                { "gc frees exactly the dead ids", test_gc },
                { "200 allocate/release cycles leave the file as it was", test_cycles },
                { "2000 allocations in a /20", test_scale },
        };
        snprintf(top, sizeof top, "/tmp/test-ipam-XXXXXX");
        if (!mkdtemp(top)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        int cases_failed = 0;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                case_failures = 0;
                cases[i].fn();
                printf("%s: %s\n", case_failures ? "FAIL" : "ok  ", cases[i].name);
                fflush(stdout);
                cases_failed += case_failures > 0;
        }
        int r = rm_rf(top);
        if (r < 0)
                fprintf(stderr, "remove %s: %s\n", top, strerror(-r));
        printf("%d passed, %d failed (%zu cases, %d failed)\n", n_passed, n_failed,
               ELEMENTSOF(cases), cases_failed);
        return n_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
