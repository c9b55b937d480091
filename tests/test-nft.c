/* Test of netd's firewall against the real nf_tables: root only (exit 77 otherwise).
 *
 * Everything happens in network namespaces this process makes: it moves itself into a new one
 * first (nftables tables, links and sysctls are per namespace, so the host's own firewall is
 * never touched), and for the traffic test adds a "dyno" pair and an "outside" namespace,
 * held only by file descriptors, so all of it goes away with the process. */
#include "nft.h"
#include "util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "check.h"

/* CHECK_R with the error text the nft helpers leave in err. */
#define CHECK_RE(expr, want)                                                                       \
        do {                                                                                       \
                err[0] = 0;                                                                        \
                int _r = (expr), _w = (want);                                                      \
                check_record(_r == _w, __FILE__, __LINE__, "%s = %d (%s), want %d [%s]", #expr,    \
                             _r, _r < 0 ? strerror(-_r) : "", _w, err);                            \
        } while (0)

#define TABLE "hostdtest"
#define BRIDGE "tbr0"

static char err[512];
static struct nft_ctx *reader; /* a context of the test's own, to read back what netd wrote */
static int host_ns = -1;

static struct in_addr ip4(const char *s)
{
        struct in_addr a = {};
        inet_pton(AF_INET, s, &a);
        return a;
}

static const struct nft_host_service allowed[] = {
        { .addr = { 0 }, .proto = IPPROTO_TCP, .port = 53 }, /* addr set in main: 10.77.0.1 */
        { .addr = { 0 }, .proto = IPPROTO_UDP, .port = 53 },
};
static struct nft_host_service allowed_rw[ELEMENTSOF(allowed)];

static struct nft_config test_config(void)
{
        memcpy(allowed_rw, allowed, sizeof(allowed));
        for (size_t i = 0; i < ELEMENTSOF(allowed_rw); i++)
                allowed_rw[i].addr = ip4("10.77.0.1");
        return (struct nft_config){
                .table = TABLE,
                .bridge = BRIDGE,
                .subnet = { ip4("10.77.0.0"), 24 },
                .allowed_host = allowed_rw,
                .n_allowed_host = ELEMENTSOF(allowed_rw),
        };
}

/* nft's text for a command, or NULL when it fails (say, no such table). */
static char *list(const char *cmd)
{
        if (nft_run_cmd_from_buffer(reader, cmd) != 0) {
                nft_ctx_get_output_buffer(reader);
                nft_ctx_get_error_buffer(reader);
                return NULL;
        }
        return strdup(nft_ctx_get_output_buffer(reader));
}

static char *list_table(void) { return list("list table inet " TABLE "\n"); }

static bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }

static bool has(const char *text, const char *needle) { return text && strstr(text, needle); }

static void test_setup(struct nft_fw *fw)
{
        _cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL, *t4 = NULL, *all = NULL;

        CHECK_RE(nft_setup(fw, NULL, err, sizeof(err)), 0);
        t1 = list_table();
        CHECK(t1);
        CHECK(has(t1, "set dynos {\n\t\ttype ipv4_addr\n"));
        CHECK(has(t1, "map ports {\n\t\ttype inet_service : ipv4_addr . inet_service\n"));
        CHECK(has(t1, "set allowed_host {\n\t\ttype ipv4_addr . inet_proto . inet_service\n"));
        CHECK(has(t1, "10.77.0.1 . tcp . 53"));
        CHECK(has(t1, "10.77.0.1 . udp . 53"));
        CHECK(has(t1, "169.254.0.0/16"));
        CHECK(has(t1, "type nat hook prerouting priority dstnat; policy accept;"));
        CHECK(has(t1, "fib daddr type local dnat ip to tcp dport map @ports"));
        CHECK(has(t1, "type nat hook output priority -100; policy accept;"));
        CHECK(has(t1, "ip saddr 10.77.0.0/24 oifname != \"" BRIDGE "\" masquerade"));
        CHECK(has(t1, "type filter hook forward priority filter; policy accept;"));
        CHECK(has(t1, "iifname \"" BRIDGE "\" oifname \"" BRIDGE "\" drop"));
        CHECK(has(t1, "iifname \"" BRIDGE "\" ip daddr @blocked drop"));
        CHECK(has(t1, "oifname \"" BRIDGE "\" ct status dnat accept"));
        CHECK(has(t1, "type filter hook input priority filter; policy accept;"));
        CHECK(has(t1, "ip daddr . meta l4proto . th dport @allowed_host accept"));

        /* Twice: replaced, not doubled, and the elements of the first are gone. */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.9"), 20009, 5000, err, sizeof(err)), 0);
        CHECK_RE(nft_setup(fw, NULL, err, sizeof(err)), 0);
        t2 = list_table();
        CHECK(t2 && streq(t1, t2));
        all = list("list ruleset\n");
        CHECK(all && strstr(all, "table inet " TABLE) &&
              !strstr(strstr(all, "table inet " TABLE) + 1, "table inet " TABLE));

        /* Setup keeping elements installs them in the same transaction. */
        struct in_addr keep_dynos[] = { ip4("10.77.0.7"), ip4("10.77.0.8") };
        struct nft_port_map keep_ports[] = { { 20007, ip4("10.77.0.7"), 8080 } };
        struct nft_elements keep = { keep_dynos, 2, keep_ports, 1 };
        CHECK_RE(nft_setup(fw, &keep, err, sizeof(err)), 0);
        t3 = list_table();
        CHECK(has(t3, "10.77.0.7, 10.77.0.8") || has(t3, "10.77.0.8, 10.77.0.7"));
        CHECK(has(t3, "20007 : 10.77.0.7 . 8080"));

        /* A kept element that fails validation changes nothing. */
        struct nft_port_map bad_ports[] = { { 20007, ip4("10.77.1.7"), 8080 } };
        struct nft_elements bad = { keep_dynos, 2, bad_ports, 1 };
        CHECK_RE(nft_setup(fw, &bad, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "10.77.1.7"));
        t4 = list_table();
        CHECK(t3 && t4 && streq(t3, t4));

        CHECK_RE(nft_setup(fw, NULL, err, sizeof(err)), 0);
}

static bool elements_have_dyno(const struct nft_elements *e, const char *a)
{
        for (size_t i = 0; i < e->n_dynos; i++)
                if (e->dynos[i].s_addr == ip4(a).s_addr)
                        return true;
        return false;
}

static bool elements_have_port(const struct nft_elements *e, uint16_t hp, const char *a,
                               uint16_t dp)
{
        for (size_t i = 0; i < e->n_ports; i++)
                if (e->ports[i].host_port == hp && e->ports[i].addr.s_addr == ip4(a).s_addr &&
                    e->ports[i].dyno_port == dp)
                        return true;
        return false;
}

static void test_elements(struct nft_fw *fw)
{
        _cleanup_free_ char *t0 = list_table(), *t1 = NULL, *t2 = NULL, *t3 = NULL;
        struct nft_elements e = {};

        CHECK_RE(nft_list_elements(fw, &e, err, sizeof(err)), 0);
        CHECK(e.n_dynos == 0 && e.n_ports == 0);
        nft_elements_done(&e);

        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 20001, 5000, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 20001, 5000, err, sizeof(err)), 0); /* again */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.3"), 0, 0, err, sizeof(err)), 0);
        t1 = list_table();
        CHECK(has(t1, "10.77.0.2, 10.77.0.3") || has(t1, "10.77.0.3, 10.77.0.2"));
        CHECK(has(t1, "elements = { 20001 : 10.77.0.2 . 5000 }"));

        CHECK_RE(nft_list_elements(fw, &e, err, sizeof(err)), 0);
        CHECK(e.n_dynos == 2 && e.n_ports == 1);
        CHECK(elements_have_dyno(&e, "10.77.0.2") && elements_have_dyno(&e, "10.77.0.3"));
        CHECK(elements_have_port(&e, 20001, "10.77.0.2", 5000));
        nft_elements_done(&e);

        /* A host port mapped to another dyno: refused, nothing changed (not even the address). */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.4"), 20001, 5000, err, sizeof(err)), -EEXIST);
        CHECK(has(err, "20001"));
        t2 = list_table();
        CHECK(t1 && t2 && streq(t1, t2));

        /* A stale remove naming a port that is someone else's takes only its own address. */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.4"), 0, 0, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.4"), 20001, 5000, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.4"), 20001, 0, err, sizeof(err)), 0);
        t2 = (free(t2), list_table());
        CHECK(t1 && t2 && streq(t1, t2));

        /* Remove with the dyno port unknown (0): looked up. Then again: fine. */
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.2"), 20001, 0, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.2"), 20001, 0, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.2"), 20001, 5000, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.3"), 0, 0, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.3"), 0, 0, err, sizeof(err)), 0);
        CHECK_RE(nft_list_elements(fw, &e, err, sizeof(err)), 0);
        CHECK(e.n_dynos == 0 && e.n_ports == 0);
        nft_elements_done(&e);

        /* A wrong dyno port given to remove still removes the dyno's own mapping. */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.5"), 20005, 3000, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.5"), 20005, 3001, err, sizeof(err)), 0);

        t3 = list_table();
        CHECK(t0 && t3 && streq(t0, t3));

        /* Many elements: listed back in full (the text wraps over lines). */
        char a[INET_ADDRSTRLEN];
        for (unsigned i = 2; i < 252; i++) {
                snprintf(a, sizeof(a), "10.77.0.%u", i);
                CHECK_RE(nft_dyno_add(fw, ip4(a), i % 2 ? 0 : 20000 + i, 1000 + i, err,
                                      sizeof(err)),
                         0);
        }
        CHECK_RE(nft_list_elements(fw, &e, err, sizeof(err)), 0);
        CHECK(e.n_dynos == 250 && e.n_ports == 125);
        CHECK(elements_have_dyno(&e, "10.77.0.251") &&
              elements_have_port(&e, 20250, "10.77.0.250", 1250));
        for (size_t i = 0; i < e.n_ports; i++)
                CHECK_RE(nft_dyno_remove(fw, e.ports[i].addr, e.ports[i].host_port, 0, err,
                                         sizeof(err)),
                         0);
        for (size_t i = 0; i < e.n_dynos; i++)
                CHECK_RE(nft_dyno_remove(fw, e.dynos[i], 0, 0, err, sizeof(err)), 0);
        nft_elements_done(&e);
        free(t3);
        t3 = list_table();
        CHECK(t0 && t3 && streq(t0, t3));
}

static void test_cycles(struct nft_fw *fw)
{
        _cleanup_free_ char *before = list("list ruleset\n"), *after = NULL;
        unsigned bad = 0;

        for (unsigned i = 0; i < 200; i++) {
                struct in_addr a = ip4(i % 2 ? "10.77.0.20" : "10.77.0.21");
                uint16_t hp = 20000 + i % 7;
                if (nft_dyno_add(fw, a, hp, 5000, err, sizeof(err)) < 0 ||
                    nft_dyno_remove(fw, a, hp, i % 3 ? 5000 : 0, err, sizeof(err)) < 0)
                        bad++;
        }
        CHECK(bad == 0);
        after = list("list ruleset\n");
        CHECK(before && after && streq(before, after));
}

static void test_bad_input(struct nft_fw *fw)
{
        _cleanup_free_ char *before = list("list ruleset\n"), *after = NULL;
        struct nft_config c;
        struct nft_fw *other = NULL;

        c = test_config();
        c.table = "bad name";
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "table name"));
        c.table = "x;flush ruleset";
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c.table = "0abc";
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c.table = "a23456789012345678901234567890123"; /* 33 */
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c = test_config();
        c.bridge = "br 0";
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "bridge"));
        c.bridge = "\"; flush ruleset";
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c.bridge = "a234567890123456"; /* 16: longer than an interface name */
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c = test_config();
        c.subnet = (struct nft_cidr){ ip4("10.77.0.1"), 24 }; /* host bits */
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "10.77.0.1/24"));
        c.subnet = (struct nft_cidr){ ip4("10.77.0.0"), 31 };
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c = test_config();
        c.host_port_min = 30000;
        c.host_port_max = 20000;
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c = test_config();
        allowed_rw[0].proto = IPPROTO_ICMP;
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c = test_config();
        allowed_rw[1].port = 0;
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        c = test_config();
        struct nft_cidr blocked = { ip4("100.100.100.200"), 24 };
        c.blocked = &blocked;
        c.n_blocked = 1;
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), -EINVAL);
        CHECK(!other);

        /* A name nft's grammar takes as a keyword: refused by nft, nothing changed. */
        c = test_config();
        c.table = "table";
        CHECK_RE(nft_fw_new(&c, &other, err, sizeof(err)), 0);
        CHECK_RE(nft_setup(other, NULL, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "syntax error"));
        other = nft_fw_free(other);

        CHECK_RE(nft_dyno_add(fw, ip4("10.78.0.2"), 0, 0, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "10.78.0.2"));
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.0"), 0, 0, err, sizeof(err)), -EINVAL); /* network */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.255"), 0, 0, err, sizeof(err)), -EINVAL); /* bcast */
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 20001, 0, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "port 0"));
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 22, 5000, err, sizeof(err)), -EINVAL);
        CHECK(has(err, "20000-29999"));
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 30000, 5000, err, sizeof(err)), -EINVAL);
        CHECK_RE(nft_dyno_remove(fw, ip4("192.168.0.1"), 0, 0, err, sizeof(err)), -EINVAL);

        after = list("list ruleset\n");
        CHECK(before && after && streq(before, after));
}

/* Namespaces and links for the traffic test. */

static int netns_new(void)
{
        int fd;
        if (unshare(CLONE_NEWNET) < 0)
                return -errno;
        fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (setns(host_ns, CLONE_NEWNET) < 0)
                abort(); /* the test would carry on in the wrong namespace */
        return fd < 0 ? -errno : fd;
}

/* Run a shell command inside a namespace (-1: the test's host namespace). */
static _printf_(2, 3) int sh_in(int ns, const char *fmt, ...)
{
        _cleanup_free_ char *cmd = NULL;
        va_list ap;
        int r, status;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (ns >= 0 && setns(ns, CLONE_NEWNET) < 0)
                return -errno;
        status = system(cmd);
        if (ns >= 0 && setns(host_ns, CLONE_NEWNET) < 0)
                abort();
        if (status != 0)
                fprintf(stderr, "command failed (%d): %s\n", status, cmd);
        return status == 0 ? 0 : -EIO;
}

/* A socket made in a namespace stays there: make it there, use it from here. */
static int socket_in(int ns)
{
        int fd;
        if (ns >= 0 && setns(ns, CLONE_NEWNET) < 0)
                return -errno;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (ns >= 0 && setns(host_ns, CLONE_NEWNET) < 0)
                abort();
        return fd < 0 ? -errno : fd;
}

static struct sockaddr_in sin4(const char *a, uint16_t port)
{
        return (struct sockaddr_in){ .sin_family = AF_INET,
                                     .sin_port = htons(port),
                                     .sin_addr = ip4(a) };
}

static int listen_in(int ns, const char *a, uint16_t port)
{
        struct sockaddr_in sa = sin4(a, port);
        int fd = socket_in(ns), one = 1;
        if (fd < 0)
                return fd;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Connect from a namespace; the connected socket, or -ETIMEDOUT / -ECONNREFUSED / ... */
static int connect_in(int ns, const char *a, uint16_t port, int timeout_ms)
{
        struct sockaddr_in sa = sin4(a, port);
        int fd = socket_in(ns), r = 0;
        socklen_t len = sizeof(r);
        struct pollfd p = { .fd = fd, .events = POLLOUT };

        if (fd < 0)
                return fd;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
                r = -errno;
                close(fd);
                return r;
        }
        if (poll(&p, 1, timeout_ms) <= 0) {
                close(fd);
                return -ETIMEDOUT;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &len) < 0 || r != 0) {
                close(fd);
                return r ? -r : -EIO;
        }
        return fd;
}

/* A connection waiting on the listener: its peer's address, or "" when none came. */
static const char *accepted_from(int lfd, int timeout_ms, char peer[static INET_ADDRSTRLEN])
{
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        struct pollfd p = { .fd = lfd, .events = POLLIN };
        int fd;

        peer[0] = 0;
        if (poll(&p, 1, timeout_ms) <= 0)
                return peer;
        fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
        if (fd < 0)
                return peer;
        inet_ntop(AF_INET, &sa.sin_addr, peer, INET_ADDRSTRLEN);
        close(fd);
        return peer;
}

/* SYNs to port 5000 that reached a namespace, counted by a table of its own there: a dropped
 * hairpin would not complete a handshake anyway (the reply goes straight back over the
 * isolated bridge), so the listener alone cannot tell whether the firewall stopped it. */
static int syn_probe_add(int ns)
{
        return sh_in(ns, "nft add table inet probe && nft add chain inet probe pre "
                         "'{ type filter hook prerouting priority -400; }' && "
                         "nft add rule inet probe pre tcp dport 5000 tcp flags syn counter");
}

static long syn_probe_count(int ns)
{
        _cleanup_free_ char *line = NULL;
        size_t n = 0;
        long count = -1;
        FILE *f;

        if (setns(ns, CLONE_NEWNET) < 0)
                return -1;
        f = popen("nft list chain inet probe pre", "re");
        if (setns(host_ns, CLONE_NEWNET) < 0)
                abort();
        if (!f)
                return -1;
        while (getline(&line, &n, f) > 0) {
                const char *p = strstr(line, "counter packets ");
                if (p)
                        count = strtol(p + strlen("counter packets "), NULL, 10);
        }
        pclose(f);
        return count;
}

#define SHORT_MS 800 /* a dropped SYN: no answer within this */
#define LONG_MS 5000

static void test_traffic(struct nft_fw *fw)
{
        _cleanup_close_ int dyno1 = -1, dyno2 = -1, outside = -1;
        _cleanup_close_ int l_out = -1, l_meta = -1, l_dyno = -1, l_host = -1, l_dns = -1;
        _cleanup_close_ int c = -1;
        char peer[INET_ADDRSTRLEN];
        pid_t self = getpid();
        long syns;

        dyno1 = netns_new();
        dyno2 = netns_new();
        outside = netns_new();
        if (dyno1 < 0 || dyno2 < 0 || outside < 0) {
                fprintf(stderr, "traffic: cannot make namespaces, skipped\n");
                return;
        }

        /* The host: a bridge with the gateway, two dynos and a link to the outside, where
         * 169.254.169.254 also lives. The dyno ports are not isolated, unlike netd's: that is
         * link.c's L2 guard, and with it the kernel (6.18 here) drops a DNATed packet routed
         * back out of the bridge it came in on before the forward hook, which would hide
         * whether the firewall's own L3 drop works. */
        if (write_string_file("/proc/sys/net/ipv4/ip_forward", "1") < 0 ||
            sh_in(-1,
                  "ip link add " BRIDGE " type bridge forward_delay 0 && "
                  "ip addr add 10.77.0.1/24 dev " BRIDGE " && ip link set " BRIDGE " up && "
                  "ip link add tdyno1 type veth peer name eth0 netns /proc/%d/fd/%d && "
                  "ip link add tdyno2 type veth peer name eth0 netns /proc/%d/fd/%d && "
                  "ip link add tout0 type veth peer name eth0 netns /proc/%d/fd/%d && "
                  "ip link set tdyno1 master " BRIDGE " up && "
                  "ip link set tdyno2 master " BRIDGE " up && "
                  "ip addr add 192.0.2.1/24 dev tout0 && ip link set tout0 up && "
                  "ip route add 169.254.169.254/32 via 192.0.2.2",
                  (int)self, dyno1, (int)self, dyno2, (int)self, outside) < 0 ||
            sh_in(dyno1, "ip link set lo up && ip addr add 10.77.0.2/24 dev eth0 && "
                         "ip link set eth0 up && ip route add default via 10.77.0.1") < 0 ||
            sh_in(dyno2, "ip link set lo up && ip addr add 10.77.0.3/24 dev eth0 && "
                         "ip link set eth0 up && ip route add default via 10.77.0.1") < 0 ||
            /* The outside can route back to the subnet: without masquerade it would see the
             * dyno's own address, not fail. */
            sh_in(outside, "ip link set lo up && ip addr add 192.0.2.2/24 dev eth0 && "
                           "ip addr add 169.254.169.254/32 dev lo && ip link set eth0 up && "
                           "ip route add 10.77.0.0/24 via 192.0.2.1") < 0) {
                fprintf(stderr, "traffic: cannot make links, skipped\n");
                return;
        }

        l_out = listen_in(outside, "0.0.0.0", 8000);
        l_meta = listen_in(outside, "169.254.169.254", 80);
        l_dyno = listen_in(dyno1, "10.77.0.2", 5000);
        l_host = listen_in(-1, "0.0.0.0", 7000);
        l_dns = listen_in(-1, "10.77.0.1", 53);
        CHECK(l_out >= 0 && l_meta >= 0 && l_dyno >= 0 && l_host >= 0 && l_dns >= 0);
        CHECK_RE(syn_probe_add(dyno1), 0);

        CHECK_RE(nft_setup(fw, NULL, err, sizeof(err)), 0);

        /* Not attached yet: its address is not in @dynos, nothing leaves. */
        CHECK_RE(connect_in(dyno1, "192.0.2.2", 8000, SHORT_MS), -ETIMEDOUT);
        CHECK(streq(accepted_from(l_out, 0, peer), ""));

        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 20001, 5000, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.3"), 0, 0, err, sizeof(err)), 0);

        /* Out: masqueraded, the outside sees the host's address. */
        c = connect_in(dyno1, "192.0.2.2", 8000, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_out, LONG_MS, peer), "192.0.2.1"));
        c = (close(c), -1);
        c = connect_in(dyno2, "192.0.2.2", 8000, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_out, LONG_MS, peer), "192.0.2.1"));
        c = (close(c), -1);

        /* In: the host port reaches the web dyno, from outside and from the host itself (to
         * its outside address and to the gateway). */
        c = connect_in(outside, "192.0.2.1", 20001, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_dyno, LONG_MS, peer), "192.0.2.2"));
        c = (close(c), -1);
        c = connect_in(-1, "192.0.2.1", 20001, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_dyno, LONG_MS, peer), "192.0.2.1"));
        c = (close(c), -1);
        c = connect_in(-1, "10.77.0.1", 20001, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_dyno, LONG_MS, peer), "10.77.0.1"));
        c = (close(c), -1);

        /* Only through the host port: the dyno's address itself is not reachable from out. */
        syns = syn_probe_count(dyno1);
        CHECK(syns == 3);
        CHECK_RE(connect_in(outside, "10.77.0.2", 5000, SHORT_MS), -ETIMEDOUT);
        CHECK(streq(accepted_from(l_dyno, 0, peer), ""));

        /* Dyno to dyno: through dyno 1's host port (routed, so L3: the forward drop). The SYN
         * does not even arrive. */
        CHECK_RE(connect_in(dyno2, "192.0.2.1", 20001, SHORT_MS), -ETIMEDOUT);
        CHECK_RE(connect_in(dyno2, "10.77.0.1", 20001, SHORT_MS), -ETIMEDOUT);
        CHECK(streq(accepted_from(l_dyno, 0, peer), ""));
        CHECK(syn_probe_count(dyno1) == syns);

        /* The host's own services: dropped, bar the allowed DNS port on the gateway. */
        CHECK_RE(connect_in(dyno1, "192.0.2.1", 7000, SHORT_MS), -ETIMEDOUT);
        CHECK_RE(connect_in(dyno1, "10.77.0.1", 7000, SHORT_MS), -ETIMEDOUT);
        CHECK(streq(accepted_from(l_host, 0, peer), ""));
        c = connect_in(-1, "10.77.0.1", 7000, LONG_MS); /* the listener does work */
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_host, LONG_MS, peer), "10.77.0.1"));
        c = (close(c), -1);
        c = connect_in(dyno1, "10.77.0.1", 53, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_dns, LONG_MS, peer), "10.77.0.2"));
        c = (close(c), -1);

        /* The metadata address: nothing arrives there, though the host itself gets through. */
        CHECK_RE(connect_in(dyno1, "169.254.169.254", 80, SHORT_MS), -ETIMEDOUT);
        CHECK(streq(accepted_from(l_meta, 0, peer), ""));
        c = connect_in(-1, "169.254.169.254", 80, LONG_MS);
        CHECK(c >= 0);
        CHECK(streq(accepted_from(l_meta, LONG_MS, peer), "192.0.2.1"));
        c = (close(c), -1);

        /* Detached: the host port leads nowhere (the host answers for itself: refused) and the
         * dyno's address no longer gets out. */
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.2"), 20001, 0, err, sizeof(err)), 0);
        CHECK_RE(connect_in(outside, "192.0.2.1", 20001, LONG_MS), -ECONNREFUSED);
        CHECK(streq(accepted_from(l_dyno, 0, peer), ""));
        CHECK_RE(connect_in(dyno1, "192.0.2.2", 8000, SHORT_MS), -ETIMEDOUT);
        CHECK(streq(accepted_from(l_out, 0, peer), ""));

        /* The links go with the namespaces; the host end of each veth with its peer. */
        sh_in(-1, "ip link del tout0; ip link del tdyno1; ip link del tdyno2; "
                  "ip link del " BRIDGE);
}

int main(void)
{
        _cleanup_nft_fw_ struct nft_fw *fw = NULL;
        struct nft_config c;
        int r;

        if (geteuid() != 0) {
                printf("skipped: needs root\n");
                return 77;
        }
        if (unshare(CLONE_NEWNET) < 0) {
                printf("skipped: cannot make a network namespace: %m\n");
                return 77;
        }
        host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (host_ns < 0)
                return 1;
        setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
        sh_in(-1, "ip link set lo up");

        reader = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!reader || nft_ctx_buffer_output(reader) < 0 || nft_ctx_buffer_error(reader) < 0)
                return 1;

        c = test_config();
        r = nft_fw_new(&c, &fw, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "nft_fw_new: %s\n", err);
                return 1;
        }
        CHECK(streq(nft_fw_table(fw), TABLE));
        r = nft_setup(fw, NULL, err, sizeof(err));
        if (r == -EOPNOTSUPP || r == -EAFNOSUPPORT || r == -EPROTONOSUPPORT) {
                printf("skipped: no nf_tables here: %s\n", err);
                return 77;
        }

        test_setup(fw);
        test_elements(fw);
        test_cycles(fw);
        test_bad_input(fw);
        test_traffic(fw);

        CHECK_RE(nft_teardown(fw, err, sizeof(err)), 0);
        CHECK(!list_table());
        CHECK_RE(nft_teardown(fw, err, sizeof(err)), 0); /* no table: fine */
        CHECK_RE(nft_dyno_remove(fw, ip4("10.77.0.2"), 20001, 0, err, sizeof(err)), 0);
        CHECK_RE(nft_dyno_add(fw, ip4("10.77.0.2"), 0, 0, err, sizeof(err)), -ENOENT);
        CHECK(has(err, "10.77.0.2"));

        nft_ctx_free(reader);
        close(host_ns);
        return check_report();
}
