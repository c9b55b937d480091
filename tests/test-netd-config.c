/* Unit tests for netd/config.c: defaults, every key, the list keys (allow, egress-rate) and
 * their errors, each naming the file's line and the key. No root. */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>

#include "util.h"

#include "check.h"

static bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }

static char tmpdir[] = "/tmp/hostd-test-netd-config-XXXXXX";

/* Load text (written to a file) over the defaults into *c; the error in err. */
static int load(struct netd_config *c, const char *text, char *err, size_t errlen)
{
        _cleanup_free_ char *path = strjoin3(tmpdir, "/", "netd.conf");
        if (!path)
                abort();
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                abort();
        if (netd_config_init_defaults(c) < 0)
                abort();
        err[0] = 0;
        return netd_config_load_file(c, path, err, errlen);
}

/* text is refused, with an error that holds want (":LINE: KEY: ..." and the cause). */
static void check_refused(const char *text, const char *want)
{
        struct netd_config c;
        char err[512];
        int r = load(&c, text, err, sizeof err);
        if (r != -EINVAL || !strstr(err, want)) {
                fprintf(stderr, "config %s: got %d '%s', want -EINVAL and '%s'\n", text, r, err,
                        want);
                n_failed++;
        }
        netd_config_free(&c);
}

static void test_defaults(void)
{
        struct netd_config c;
        CHECK(netd_config_init_defaults(&c) == 0);
        CHECK(streq(c.socket_path, "/run/netd/netd.sock"));
        CHECK(streq(c.state_dir, "/var/lib/netd"));
        CHECK(streq(c.bridge, "dyno0"));
        CHECK(streq(c.subnet, "10.217.0.0/16"));
        CHECK(streq(c.table, "netd"));
        CHECK(streq(c.netns_dir, "/run/hostd/netns"));
        CHECK(c.mtu == 1500);
        CHECK(c.host_port_min == 20000 && c.host_port_max == 29999);
        CHECK(c.n_allow == 0);
        CHECK(c.n_egress_rate == 0);
        CHECK(netd_config_egress_rate(&c, "standard-1x") == 0);
        netd_config_free(&c);
}

static void test_keys(void)
{
        struct netd_config c;
        char err[512];
        int r = load(&c,
                     "# every key\n"
                     "[netd]\n"
                     "socket = /tmp/n.sock\n"
                     "state-dir = /tmp/state\n"
                     "bridge = hostd-test-br\n"
                     "subnet = 10.1.0.0/24\n"
                     "mtu = 9000\n"
                     "host-ports = 30000-30010\n"
                     "table = hostd_test\n"
                     "netns-dir = /tmp/netns\n"
                     "log-level = debug\n"
                     "allow = 10.1.0.1 udp 53, 10.1.0.1 tcp 53\n"
                     "egress-rate = standard-1x 100mbit\n",
                     err, sizeof err);
        CHECK(r == 0);
        CHECK(streq(c.socket_path, "/tmp/n.sock") && streq(c.state_dir, "/tmp/state"));
        CHECK(streq(c.bridge, "hostd-test-br") && streq(c.subnet, "10.1.0.0/24"));
        CHECK(c.mtu == 9000 && c.host_port_min == 30000 && c.host_port_max == 30010);
        CHECK(streq(c.table, "hostd_test") && streq(c.netns_dir, "/tmp/netns"));
        CHECK(c.log_level == LOG_LEVEL_DEBUG);
        CHECK(c.n_allow == 2 && c.allow[0].port == 53 && c.allow[1].proto == IPPROTO_TCP);
        CHECK(c.n_egress_rate == 1);
        CHECK(netd_config_egress_rate(&c, "standard-1x") == 100000000);
        netd_config_free(&c);
}

static void test_rates(void)
{
        static const struct {
                const char *s;
                int r;
                uint64_t bits;
        } cases[] = {
                { "100mbit", 0, 100000000 },
                { "1Mbit", 0, 1000000 },
                { "8kbit", 0, 8000 },
                { "8000bit", 0, 8000 },
                { "17gbit", 0, 17000000000 },
                { "10MB/s", 0, 80000000 },
                { "10mb/s", 0, 80000000 },
                { "1000B/s", 0, 8000 },
                { "2kB/s", 0, 16000 },
                { "2GB/s", 0, 16000000000 },
                { "7999bit", -ERANGE, 0 },
                { "18gbit", -ERANGE, 0 },
                { "3GB/s", -ERANGE, 0 },
                { "0mbit", -ERANGE, 0 },
                { "100", -EINVAL, 0 },
                { "mbit", -EINVAL, 0 },
                { "1.5gbit", -EINVAL, 0 },
                { "-1mbit", -EINVAL, 0 },
                { "100 mbit", -EINVAL, 0 },
                { "100mbps", -EINVAL, 0 },
                { "100MB", -EINVAL, 0 },
                { "", -EINVAL, 0 },
                { "1000000000000bit", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t bits = 0;
                int r = netd_parse_rate(cases[i].s, &bits);
                if (r != cases[i].r || (r == 0 && bits != cases[i].bits)) {
                        fprintf(stderr, "rate '%s': got %d %" PRIu64 ", want %d %" PRIu64 "\n",
                                cases[i].s, r, bits, cases[i].r, cases[i].bits);
                        n_failed++;
                }
        }
}

static void test_egress_rate(void)
{
        struct netd_config c;
        char err[512];

        /* commas and repeated keys add up */
        CHECK(load(&c,
                   "[netd]\n"
                   "egress-rate = standard-1x 50mbit, standard-2x 100mbit\n"
                   "egress-rate = performance-l 1gbit\n",
                   err, sizeof err) == 0);
        CHECK(c.n_egress_rate == 3);
        CHECK(netd_config_egress_rate(&c, "standard-1x") == 50000000);
        CHECK(netd_config_egress_rate(&c, "standard-2x") == 100000000);
        CHECK(netd_config_egress_rate(&c, "performance-l") == 1000000000);
        CHECK(netd_config_egress_rate(&c, "eco") == 0);
        CHECK(netd_config_egress_rate(&c, "") == 0);
        CHECK(netd_config_egress_rate(&c, NULL) == 0);
        netd_config_free(&c);

        /* an empty value clears what came before */
        CHECK(load(&c,
                   "[netd]\n"
                   "egress-rate = standard-1x 50mbit\n"
                   "egress-rate =\n"
                   "egress-rate = eco 1mbit\n",
                   err, sizeof err) == 0);
        CHECK(c.n_egress_rate == 1 && netd_config_egress_rate(&c, "standard-1x") == 0);
        CHECK(netd_config_egress_rate(&c, "eco") == 1000000);
        netd_config_free(&c);

        /* 64 sizes fit; the 65th does not */
        _cleanup_free_ char *many = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&many, &len);
        if (!f)
                abort();
        fputs("[netd]\n", f);
        for (int i = 0; i < NETD_EGRESS_RATE_MAX; i++)
                fprintf(f, "egress-rate = size-%d %dmbit\n", i, i + 1);
        fclose(f);
        CHECK(load(&c, many, err, sizeof err) == 0);
        CHECK(c.n_egress_rate == NETD_EGRESS_RATE_MAX);
        CHECK(netd_config_egress_rate(&c, "size-63") == 64000000);
        netd_config_free(&c);
        _cleanup_free_ char *too_many = strjoin3(many, "egress-rate = one-more 1mbit", "\n");
        check_refused(too_many, ":66: egress-rate: more than 64");

        check_refused("[netd]\negress-rate = standard-1x\n",
                      ":2: egress-rate: expected 'SIZE RATE'");
        check_refused("[netd]\negress-rate = standard-1x 1mbit 2mbit\n",
                      ":2: egress-rate: expected 'SIZE RATE'");
        check_refused("[netd]\n\negress-rate = standard-1x 100\n",
                      ":3: egress-rate: size standard-1x: invalid rate '100'");
        check_refused("[netd]\negress-rate = eco 1mbps\n",
                      ":2: egress-rate: size eco: invalid rate");
        check_refused("[netd]\negress-rate = eco 1kbit\n",
                      ":2: egress-rate: size eco: rate '1kbit' is not within 8kbit..17gbit");
        check_refused("[netd]\negress-rate = eco 20gbit\n", "is not within 8kbit..17gbit");
        check_refused("[netd]\negress-rate = Standard-1X 1mbit\n",
                      ":2: egress-rate: invalid size name 'Standard-1X'");
        check_refused("[netd]\negress-rate = a_b 1mbit\n", "invalid size name 'a_b'");
        check_refused("[netd]\negress-rate = eco 1mbit,, basic 2mbit\n",
                      ":2: egress-rate: expected 'SIZE RATE'");
        check_refused("[netd]\negress-rate = eco 1mbit, eco 2mbit\n",
                      ":2: egress-rate: size eco is given a rate twice");
        check_refused("[netd]\negress-rate = eco 1mbit\negress-rate = eco 2mbit\n",
                      ":3: egress-rate: size eco is given a rate twice");
        char long_name[128];
        memset(long_name, 'a', 64);
        snprintf(long_name + 64, sizeof long_name - 64, " 1mbit\n");
        _cleanup_free_ char *too_long = strjoin3("[netd]\n", "egress-rate = ", long_name);
        check_refused(too_long, ":2: egress-rate: invalid size name");
        check_refused("egress-rate = eco 1mbit\n", ":1: key 'egress-rate' outside the [netd]");
}

static void test_errors(void)
{
        check_refused("[netd]\nmtu = 12\n", ":2: mtu: not a number in 68..65535");
        check_refused("[netd]\nsocket = relative\n", ":2: socket:");
        check_refused("[netd]\nstate-dir = x\n", ":2: state-dir: not an absolute path");
        check_refused("[netd]\nbridge = way-too-long-a-name\n", ":2: bridge: invalid interface");
        check_refused("[netd]\ntable = 1x\n", ":2: table: invalid table name");
        check_refused("[netd]\nhost-ports = 10-5\n", ":2: host-ports: expected a range");
        check_refused("[netd]\nlog-level = loud\n", ":2: log-level: unknown log level");
        check_refused("[netd]\nallow = 10.0.0.1 icmp 1\n", ":2: allow: protocol 'icmp'");
        check_refused("[netd]\nallow = 10.0.0.1 udp 53,, 10.0.0.1 tcp 53\n",
                      ":2: allow: expected 'ADDRESS tcp|udp PORT'");
        check_refused("[netd]\nrate = 1\n", ":2: rate: unknown key");
        check_refused("[other]\n", ":1: unknown section [other]");
        check_refused("[netd]\njust words\n", ":2: expected KEY = VALUE");
}

/* A NUL byte in a line: fgets() read past it and strlen() dropped the rest, so that
 * "bridge = br0\0junk" loaded as br0. Refused, from a file and from a string. */
static void test_nul(void)
{
        static const char text[] = "[netd]\nbridge = br0\0junk\nmtu = 1400\n";
        _cleanup_free_ char *path = strjoin3(tmpdir, "/", "netd.conf");
        FILE *f = path ? fopen(path, "we") : NULL;
        if (!f || fwrite(text, 1, sizeof text - 1, f) != sizeof text - 1 || fclose(f) != 0)
                abort();
        struct netd_config c;
        char err[512] = "";
        CHECK(netd_config_init_defaults(&c) == 0);
        CHECK(netd_config_load_file(&c, path, err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "netd.conf:2: NUL byte in line") != NULL);
        CHECK(streq(c.bridge, NFT_BRIDGE_DEFAULT));
        netd_config_free(&c);

        CHECK(netd_config_init_defaults(&c) == 0);
        CHECK(netd_config_load_string(&c, "s", text, sizeof text - 1, err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "s:2: NUL byte in line") != NULL);
        netd_config_free(&c);

        /* Without the NUL, the same text from a string loads (no newline at the end either). */
        CHECK(netd_config_init_defaults(&c) == 0);
        static const char good[] = "[netd]\nbridge = br0\nmtu = 1400";
        CHECK(netd_config_load_string(&c, "s", good, sizeof good - 1, err, sizeof err) == 0);
        CHECK(streq(c.bridge, "br0") && c.mtu == 1400);
        netd_config_free(&c);

        /* The longest line is still 4094 bytes. */
        char line[4200];
        snprintf(line, sizeof line, "[netd]\n# %04092d\n", 0);
        CHECK(netd_config_init_defaults(&c) == 0);
        CHECK(netd_config_load_string(&c, "s", line, strlen(line), err, sizeof err) == 0);
        snprintf(line, sizeof line, "[netd]\n# %04093d\n", 0);
        CHECK(netd_config_load_string(&c, "s", line, strlen(line), err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "s:2: line too long") != NULL);
        netd_config_free(&c);
}

int main(void)
{
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        test_defaults();
        test_keys();
        test_rates();
        test_egress_rate();
        test_errors();
        test_nul();

        _cleanup_free_ char *path = strjoin3(tmpdir, "/", "netd.conf");
        if (path)
                unlink(path);
        rmdir(tmpdir);
        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return EXIT_FAILURE;
        }
        printf("all passed\n");
        return EXIT_SUCCESS;
}
