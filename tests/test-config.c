/* Unit tests for hostd/config.c: defaults, overrides, every error path, dump/load round trip. */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>

#include "util.h"

#include "check.h"

#define MiB (1024ULL * 1024)
#define GiB (1024ULL * MiB)

static void config_freep(struct config *c) { config_free(c); }
#define _cleanup_config_ _cleanup_(config_freep)

static bool streq_null(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* Field by field, so that a setting the dump forgets shows up as a difference. */
static bool config_equal(const struct config *a, const struct config *b)
{
        if (!streq_null(a->socket_path, b->socket_path) || !streq_null(a->run_dir, b->run_dir) ||
            !streq_null(a->state_dir, b->state_dir) || !streq_null(a->layers_dir, b->layers_dir) ||
            !streq_null(a->init_path, b->init_path) ||
            !streq_null(a->cgroup_root, b->cgroup_root) ||
            !streq_null(a->dynos_cgroup, b->dynos_cgroup) ||
            !streq_null(a->default_size, b->default_size))
                return false;
        if (a->log_level != b->log_level || a->grace_seconds != b->grace_seconds ||
            a->boot_timeout != b->boot_timeout || a->uid_min != b->uid_min ||
            a->attach_timeout != b->attach_timeout || a->hangup_interval != b->hangup_interval ||
            a->hangups != b->hangups || a->events_keep != b->events_keep ||
            a->metrics_interval != b->metrics_interval ||
            a->runtime_metrics_interval != b->runtime_metrics_interval ||
            !streq_null(a->prometheus_file, b->prometheus_file) ||
            a->cycle_after != b->cycle_after || a->cycle_jitter != b->cycle_jitter ||
            a->uid_max != b->uid_max || a->max_message != b->max_message ||
            a->max_connections != b->max_connections || a->max_command != b->max_command ||
            a->max_env != b->max_env || a->max_env_bytes != b->max_env_bytes ||
            a->max_dynos != b->max_dynos || a->log_lines != b->log_lines ||
            a->log_line_max != b->log_line_max || a->rlimit_nofile != b->rlimit_nofile ||
            a->shm_size != b->shm_size || a->n_sizes != b->n_sizes ||
            !streq_null(a->images_dir, b->images_dir) ||
            a->image_max_compressed != b->image_max_compressed ||
            a->image_max_unpacked != b->image_max_unpacked ||
            a->image_max_files != b->image_max_files || a->images_budget != b->images_budget ||
            !streq_null(a->netd_socket, b->netd_socket) ||
            !streq_null(a->journal_socket, b->journal_socket) ||
            !streq_null(a->netns_dir, b->netns_dir) ||
            !streq_null(a->dedicated_cpu_pool, b->dedicated_cpu_pool) ||
            a->drain_buffer != b->drain_buffer || a->drain_backoff_max != b->drain_backoff_max ||
            !streq_null(a->drain_ca_file, b->drain_ca_file) ||
            !streq_null(a->listen_tls, b->listen_tls) || !streq_null(a->tls_cert, b->tls_cert) ||
            !streq_null(a->tls_key, b->tls_key) || !streq_null(a->tls_ca, b->tls_ca) ||
            !streq_null(a->tls_allow, b->tls_allow) ||
            a->tls_handshake_timeout != b->tls_handshake_timeout ||
            a->idle_timeout != b->idle_timeout || a->max_inflight != b->max_inflight ||
            a->restart_backoff.n != b->restart_backoff.n ||
            memcmp(a->restart_backoff.seconds, b->restart_backoff.seconds,
                   sizeof a->restart_backoff.seconds) != 0)
                return false;
        for (size_t i = 0; i < a->n_sizes; i++) {
                const struct size_def *x = &a->sizes[i], *y = &b->sizes[i];
                if (!streq_null(x->name, y->name) || x->memory != y->memory ||
                    x->r15_multiple != y->r15_multiple || x->pids != y->pids ||
                    x->cpu_weight != y->cpu_weight || x->cpu_quota_pct != y->cpu_quota_pct ||
                    x->dedicated_cpus != y->dedicated_cpus || x->swap != y->swap)
                        return false;
        }
        return true;
}

static char *dump_to_string(const struct config *c)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        config_dump(c, f);
        fclose(f);
        return buf;
}

static void test_defaults(void)
{
        static const struct {
                const char *name;
                uint64_t memory;
                double r15;
                uint64_t pids;
                uint32_t weight, dedicated;
        } heroku[] = {
                /* HEROKU.md, Sizes */
                { "eco", 536870912ULL, 2.0, 256, 100, 0 },
                { "basic", 536870912ULL, 2.0, 256, 100, 0 },
                { "standard-1x", 536870912ULL, 2.0, 256, 100, 0 },
                { "standard-2x", 1073741824ULL, 2.0, 512, 200, 0 },
                { "performance-m", 2684354560ULL, 2.0, 16384, 100, 2 },
                { "performance-l", 14 * GiB, 2.0, 32768, 100, 8 },
                { "performance-l-ram", 30 * GiB, 1.2, 24576, 100, 4 },
                { "performance-xl", 62 * GiB, 1.2, 32768, 100, 8 },
                { "performance-2xl", 126 * GiB, 1.2, 65536, 100, 16 },
        };
        _cleanup_config_ struct config c = {};

        printf("defaults\n");
        CHECK(config_init_defaults(&c) == 0);
        CHECK(streq_null(c.socket_path, "/run/hostd/hostd.sock"));
        CHECK(streq_null(c.run_dir, "/run/hostd"));
        CHECK(streq_null(c.state_dir, "/var/lib/hostd"));
        CHECK(streq_null(c.layers_dir, "/var/lib/hostd/layers"));
        CHECK(streq_null(c.init_path, ""));
        CHECK(streq_null(c.cgroup_root, "hostd"));
        CHECK(streq_null(c.dynos_cgroup, ""));
        CHECK(streq_null(c.default_size, "standard-1x"));
        CHECK(c.log_level == LOG_LEVEL_INFO);
        CHECK(c.grace_seconds == 30);
        CHECK(c.boot_timeout == 60);
        CHECK(c.uid_min == 200000);
        CHECK(c.uid_max == 265535);
        CHECK(c.max_message == 4 * MiB);
        CHECK(c.max_connections == 256);
        CHECK(c.max_command == 16384);
        CHECK(c.max_env == 256);
        CHECK(c.max_env_bytes == 65536);
        CHECK(c.max_dynos == 1000);
        CHECK(c.log_lines == 1500);
        CHECK(c.log_line_max == 10000);
        CHECK(c.rlimit_nofile == 10000);
        CHECK(c.shm_size == 64 * MiB);
        CHECK(streq_null(c.images_dir, "/var/lib/hostd/images"));
        CHECK(c.image_max_compressed == 4 * GiB && c.image_max_unpacked == 16 * GiB);
        CHECK(c.image_max_files == 1000000 && c.images_budget == 50 * GiB);
        CHECK(streq_null(c.netd_socket, "") && streq_null(c.netns_dir, "/run/hostd/netns"));
        CHECK(streq_null(c.journal_socket, "/run/systemd/journal/socket"));
        CHECK(c.events_keep == 10000 && c.metrics_interval == 20);
        CHECK(c.runtime_metrics_interval == 20);
        CHECK(streq_null(c.prometheus_file, ""));
        CHECK(c.attach_timeout == 30 && c.hangup_interval == 5 && c.hangups == 3);
        CHECK(c.cycle_after == 24 * 3600 && c.cycle_jitter == 216 * 60);
        CHECK(streq_null(c.dedicated_cpu_pool, "auto"));
        /* Heroku's: at once, then 20, 40, 60, 180, 320 minutes */
        CHECK(c.restart_backoff.n == 6 && c.restart_backoff.seconds[0] == 0 &&
              c.restart_backoff.seconds[1] == 1200 && c.restart_backoff.seconds[5] == 19200);

        CHECK(c.n_sizes == ELEMENTSOF(heroku));
        for (size_t i = 0; i < ELEMENTSOF(heroku); i++) {
                const struct size_def *s = config_find_size(&c, heroku[i].name);
                CHECK(s != NULL);
                if (!s)
                        continue;
                CHECK(s->memory == heroku[i].memory);
                CHECK(s->r15_multiple == heroku[i].r15);
                CHECK(s->pids == heroku[i].pids);
                CHECK(s->cpu_weight == heroku[i].weight);
                CHECK(s->dedicated_cpus == heroku[i].dedicated);
                CHECK(s->cpu_quota_pct == 0);
                CHECK(s->swap);
        }
        CHECK(config_find_size(&c, "standard-1x")->memory == 536870912);
        CHECK(config_find_size(&c, "performance-l-ram")->r15_multiple == 1.2);
        CHECK(config_find_size(&c, "performance-l-ram")->pids == 24576);
        CHECK(config_find_size(&c, "hobby") == NULL);
        CHECK(config_find_size(&c, NULL) == NULL);
        CHECK(config_find_size(NULL, "eco") == NULL);
        CHECK(config_find_size(&c, c.default_size) != NULL);
}

static void test_override(void)
{
        _cleanup_config_ struct config c = {};
        char err[512] = "stale";

        printf("override keys\n");
        CHECK(config_init_defaults(&c) == 0);
        CHECK(config_load_string(&c, "t.conf",
                                 "# a comment\n"
                                 "; another comment\n"
                                 "\n"
                                 "[hostd]\n"
                                 "grace-seconds = 10\n"
                                 "  boot-timeout=90  \n"
                                 "\tlog-level\t=\tdebug\r\n"
                                 "grace-seconds = 12\n" /* a duplicate overrides */
                                 "socket = /run/other/hostd.sock\n"
                                 "init = /usr/lib/hostd/hostd-init\n"
                                 "cgroup-root = \n"
                                 "dynos-cgroup = /system.slice/hostd-dynos.service\n"
                                 "max-message = 1M\n"
                                 "shm-size = 2.5G\n"
                                 "log-line-max = 20000\n"
                                 "uid-min = 1000\n"
                                 "uid-max = 1999\n"
                                 "default-size = performance-m\n"
                                 "netd-socket = /run/netd/netd.sock\n"
                                 "netns-dir = /run/dynos/netns\n"
                                 "dedicated-cpu-pool = 2-5,8\n"
                                 "restart-backoff = 0, 90s ,2m,1h,5\n"
                                 "cycle-after = 90m\n"
                                 "cycle-jitter = 0\n"
                                 "rlimit-nofile = 65536",
                                 err, sizeof err) == 0);
        CHECK(err[0] == 0);
        CHECK(c.grace_seconds == 12);
        CHECK(c.boot_timeout == 90);
        CHECK(c.log_level == LOG_LEVEL_DEBUG);
        CHECK(streq_null(c.socket_path, "/run/other/hostd.sock"));
        CHECK(streq_null(c.init_path, "/usr/lib/hostd/hostd-init"));
        CHECK(streq_null(c.cgroup_root, ""));
        CHECK(streq_null(c.dynos_cgroup, "/system.slice/hostd-dynos.service"));
        CHECK(c.max_message == 1 * MiB);
        CHECK(c.shm_size == 2560 * MiB);
        CHECK(c.log_line_max == 20000);
        CHECK(c.uid_min == 1000 && c.uid_max == 1999);
        CHECK(streq_null(c.default_size, "performance-m"));
        CHECK(c.rlimit_nofile == 65536);
        CHECK(streq_null(c.netd_socket, "/run/netd/netd.sock"));
        CHECK(streq_null(c.netns_dir, "/run/dynos/netns"));
        CHECK(streq_null(c.dedicated_cpu_pool, "2-5,8"));
        CHECK(c.cycle_after == 5400 && c.cycle_jitter == 0);
        CHECK(c.restart_backoff.n == 5 && c.restart_backoff.seconds[0] == 0 &&
              c.restart_backoff.seconds[1] == 90 && c.restart_backoff.seconds[2] == 120 &&
              c.restart_backoff.seconds[3] == 3600 && c.restart_backoff.seconds[4] == 5);
        CHECK(config_load_string(&c, "b.conf", "[hostd]\nrestart-backoff =\n", err, sizeof err) ==
              0);
        CHECK(c.restart_backoff.n == 0); /* never restart */
        /* untouched */
        CHECK(streq_null(c.run_dir, "/run/hostd"));
        CHECK(c.max_dynos == 1000);
        CHECK(c.n_sizes == 9);

        /* a second file applies over the first */
        CHECK(config_load_string(&c, "u.conf", "[hostd]\ncgroup-root = a/b-c/d\n", err,
                                 sizeof err) == 0);
        CHECK(streq_null(c.cgroup_root, "a/b-c/d"));
        CHECK(c.grace_seconds == 12);

        /* an empty file changes nothing */
        CHECK(config_load_string(&c, "empty.conf", "", err, sizeof err) == 0);
        CHECK(c.grace_seconds == 12);
}

static void test_sizes(void)
{
        _cleanup_config_ struct config c = {};
        char err[512];
        const struct size_def *s;

        printf("add a size, override a size partially\n");
        CHECK(config_init_defaults(&c) == 0);
        CHECK(config_load_string(&c, "s.conf",
                                 "[hostd]\n"
                                 "default-size = custom-4x\n" /* defined further down */
                                 "[size standard-1x]\n"
                                 "pids = 300\n"
                                 "swap = no\n"
                                 "[ size  custom-4x ]\n"
                                 "memory = 2G\n"
                                 "cpu-weight = 400\n"
                                 "cpu-quota = 150\n"
                                 "r15-multiple = 1.5\n"
                                 "[size tiny]\n"
                                 "memory = 64M\n"
                                 "[size tiny]\n"
                                 "dedicated-cpus = 1\n"
                                 "swap = FALSE\n",
                                 err, sizeof err) == 0);
        CHECK(err[0] == 0);

        s = config_find_size(&c, "standard-1x");
        CHECK(s && s->pids == 300 && !s->swap);
        CHECK(s && s->memory == 536870912 && s->r15_multiple == 2.0 && s->cpu_weight == 100);
        /* the other sizes that looked the same are untouched */
        s = config_find_size(&c, "eco");
        CHECK(s && s->pids == 256 && s->swap);

        s = config_find_size(&c, "custom-4x");
        CHECK(s != NULL);
        CHECK(s && s->memory == 2 * GiB && s->cpu_weight == 400 && s->cpu_quota_pct == 150);
        CHECK(s && s->r15_multiple == 1.5);
        CHECK(s && s->pids == 256 && s->dedicated_cpus == 0 && s->swap); /* new-size defaults */
        CHECK(streq_null(c.default_size, "custom-4x"));

        s = config_find_size(&c, "tiny");
        CHECK(s && s->memory == 64 * MiB && s->dedicated_cpus == 1 && !s->swap);
        CHECK(c.n_sizes == 11);
        /* new sizes come after the built-in ones, in file order */
        CHECK(streq_null(c.sizes[9].name, "custom-4x") && streq_null(c.sizes[10].name, "tiny"));

        /* a new size that gets its memory in a later section of the same name is complete */
        CHECK(config_load_string(&c, "s2.conf",
                                 "[size later]\npids = 5\n[size later]\nmemory = 1G\n", err,
                                 sizeof err) == 0);
        s = config_find_size(&c, "later");
        CHECK(s && s->memory == 1 * GiB && s->pids == 5);
}

static bool contains(const char *haystack, const char *needle)
{
        return needle == NULL || strstr(haystack, needle) != NULL;
}

static void test_errors(void)
{
        static const struct {
                const char *text;
                const char *where; /* "NAME:LINE:" */
                const char *key;   /* the key or section named */
                const char *why;
        } cases[] = {
                { "[hostd]\ngrace-seconds = soon\n", "e.conf:2:", "key 'grace-seconds'",
                  "not a number" },
                { "[hostd]\ngrace-seconds = -1\n", "e.conf:2:", "key 'grace-seconds'",
                  "not a number" },
                { "[hostd]\ngrace-seconds =\n", "e.conf:2:", "key 'grace-seconds'",
                  "not a number" },
                { "[hostd]\ngrace-seconds = 3601\n", "e.conf:2:", "key 'grace-seconds'",
                  "value out of range (0..3600)" },
                { "[hostd]\ngrace-seconds = 99999999999999999999999\n",
                  "e.conf:2:", "key 'grace-seconds'", "value out of range (0..3600)" },
                { "[hostd]\nboot-timeout = 0\n", "e.conf:2:", "key 'boot-timeout'",
                  "value out of range (1..3600)" },
                { "[hostd]\nboot-timeout = 3601\n", "e.conf:2:", "key 'boot-timeout'",
                  "value out of range (1..3600)" },
                { "[hostd]\nmax-message = 1023\n", "e.conf:2:", "key 'max-message'",
                  "value out of range (1K..64M)" },
                { "[hostd]\nmax-message = 65M\n", "e.conf:2:", "key 'max-message'",
                  "value out of range (1K..64M)" },
                { "[hostd]\nmax-message = 4X\n", "e.conf:2:", "key 'max-message'", "not a size" },
                { "[hostd]\nmax-message = 4096.5\n", "e.conf:2:", "key 'max-message'",
                  "not a size" },
                { "[hostd]\nlog-lines = 0\n", "e.conf:2:", "key 'log-lines'",
                  "value out of range (1..1000000)" },
                { "[hostd]\nlog-lines = 1000001\n", "e.conf:2:", "key 'log-lines'",
                  "value out of range (1..1000000)" },
                { "[hostd]\nlog-line-max = 79\n", "e.conf:2:", "key 'log-line-max'",
                  "value out of range (80..1M)" },
                { "[hostd]\nlog-line-max = 2M\n", "e.conf:2:", "key 'log-line-max'",
                  "value out of range (80..1M)" },
                { "[hostd]\nlog-level = verbose\n", "e.conf:2:", "key 'log-level'",
                  "unknown log level 'verbose'" },
                { "[hostd]\nfoo = 1\n", "e.conf:2:", "key 'foo'", "unknown key" },
                { "[hostd]\nGrace-Seconds = 1\n", "e.conf:2:", "key 'Grace-Seconds'",
                  "unknown key" },
                { "[size eco]\nmemroy = 1G\n", "e.conf:2:", "key 'memroy'", "unknown key" },
                { "[hostd]\n\n[foo]\n", "e.conf:3:", "'[foo]'", "unknown section" },
                { "[size]\n", "e.conf:1:", "'[size]'", "needs a name" },
                { "[size Big]\nmemory = 1G\n", "e.conf:1:", "'Big'", "invalid size name" },
                { "[size a_b]\nmemory = 1G\n", "e.conf:1:", "'a_b'", "invalid size name" },
                { "[size aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n",
                  "e.conf:1:", "'aaaa", "invalid size name" },
                { "[hostd\n", "e.conf:1:", "'[hostd'", "no ']'" },
                { "[hostd]\ngrace-seconds 10\n", "e.conf:2:", "grace-seconds", "missing '='" },
                { "[hostd]\n= 10\n", "e.conf:2:", NULL, "missing key" },
                { "grace-seconds = 10\n", "e.conf:1:", "key 'grace-seconds'", "outside" },
                { "[hostd]\nsocket = run/hostd.sock\n", "e.conf:2:", "key 'socket'",
                  "not an absolute path" },
                { "[hostd]\nsocket =\n", "e.conf:2:", "key 'socket'", "not an absolute path" },
                { "[hostd]\nsocket = /run/hostd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
                  "e.conf:2:", "key 'socket'", "too long for a unix socket" },
                { "[hostd]\nrun-dir = run\n", "e.conf:2:", "key 'run-dir'",
                  "not an absolute path" },
                { "[hostd]\ndedicated-cpu-pool = 1-\n", "e.conf:2:", "key 'dedicated-cpu-pool'",
                  "not 'auto', 'none' or a CPU list" },
                { "[hostd]\ndedicated-cpu-pool =\n", "e.conf:2:", "key 'dedicated-cpu-pool'",
                  "not 'auto', 'none' or a CPU list" },
                { "[hostd]\nnetd-socket = netd.sock\n", "e.conf:2:", "key 'netd-socket'",
                  "not an absolute path" },
                { "[hostd]\nnetd-socket = /run/netd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
                  "e.conf:2:", "key 'netd-socket'", "too long for a unix socket" },
                { "[hostd]\nnetns-dir =\n", "e.conf:2:", "key 'netns-dir'",
                  "not an absolute path" },
                { "[hostd]\nrestart-backoff = 0,,5\n", "e.conf:2:", "key 'restart-backoff'",
                  "expected durations" },
                { "[hostd]\nrestart-backoff = 5d\n", "e.conf:2:", "key 'restart-backoff'",
                  "not a duration" },
                { "[hostd]\nrestart-backoff = -1\n", "e.conf:2:", "key 'restart-backoff'",
                  "not a duration" },
                { "[hostd]\nrestart-backoff = 169h\n", "e.conf:2:", "key 'restart-backoff'",
                  "over a week" },
                { "[hostd]\ncycle-after = 1h, 2h\n", "e.conf:2:", "key 'cycle-after'",
                  "expected one duration" },
                { "[hostd]\ncycle-jitter = 2d\n", "e.conf:2:", "key 'cycle-jitter'",
                  "not a duration" },
                { "[hostd]\nrestart-backoff = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
                  "e.conf:2:", "key 'restart-backoff'", "more than 16" },
                { "[hostd]\nlisten-tls = localhost:7443\n", "e.conf:2:", "key 'listen-tls'",
                  "not ADDR:PORT with an IP address" },
                { "[hostd]\nlisten-tls = 127.0.0.1:0\n", "e.conf:2:", "key 'listen-tls'",
                  "a port 1..65535" },
                { "[hostd]\nlisten-tls = ::1:7443\n", "e.conf:2:", "key 'listen-tls'",
                  "not ADDR:PORT" },
                { "[hostd]\nlisten-tls = 127.0.0.1:7443\ntls-cert = /c\ntls-key = /k\n",
                  "e.conf:", "key 'tls-ca'", "required when listen-tls is set" },
                { "[hostd]\nlisten-tls = [::1]:7443\n", "e.conf:", "key 'tls-cert'",
                  "required when listen-tls is set" },
                { "[hostd]\ntls-cert = cert.pem\n", "e.conf:2:", "key 'tls-cert'",
                  "not an absolute path" },
                { "[hostd]\ntls-allow = a,,b\n", "e.conf:2:", "key 'tls-allow'",
                  "an empty identity" },
                { "[hostd]\ntls-allow = control plane\n", "e.conf:2:", "key 'tls-allow'",
                  "printable ASCII without spaces" },
                { "[hostd]\ntls-handshake-timeout = 0\n",
                  "e.conf:2:", "key 'tls-handshake-timeout'", "value out of range (1..3600)" },
                { "[hostd]\nmax-inflight = 0\n", "e.conf:2:", "key 'max-inflight'",
                  "value out of range (1..65536)" },
                { "[hostd]\nidle-timeout = 86401\n", "e.conf:2:", "key 'idle-timeout'",
                  "value out of range (0..86400)" },
                { "[hostd]\nstate-dir = ./state\n", "e.conf:2:", "key 'state-dir'",
                  "not an absolute path" },
                { "[hostd]\nlayers-dir = layers\n", "e.conf:2:", "key 'layers-dir'",
                  "not an absolute path" },
                { "[hostd]\ninit = hostd-init\n", "e.conf:2:", "key 'init'",
                  "not an absolute path" },
                { "[hostd]\ncgroup-root = /hostd\n", "e.conf:2:", "key 'cgroup-root'",
                  "must be relative" },
                { "[hostd]\ncgroup-root = a/../b\n", "e.conf:2:", "key 'cgroup-root'", "'..'" },
                { "[hostd]\ncgroup-root = ..\n", "e.conf:2:", "key 'cgroup-root'", "'..'" },
                { "[hostd]\ncgroup-root = a//b\n", "e.conf:2:", "key 'cgroup-root'", "empty" },
                { "[hostd]\ncgroup-root = a/\n", "e.conf:2:", "key 'cgroup-root'", "empty" },
                { "[hostd]\ndynos-cgroup = system.slice/x\n", "e.conf:2:", "key 'dynos-cgroup'",
                  "starting with '/'" },
                { "[hostd]\ndynos-cgroup = /\n", "e.conf:2:", "key 'dynos-cgroup'",
                  "starting with '/'" },
                { "[hostd]\ndynos-cgroup = /a/../b\n", "e.conf:2:", "key 'dynos-cgroup'", "'..'" },
                { "[hostd]\ndynos-cgroup = /a//b\n", "e.conf:2:", "key 'dynos-cgroup'", "empty" },
                { "[hostd]\ndynos-cgroup = /a/\n", "e.conf:2:", "key 'dynos-cgroup'", "empty" },
                { "[hostd]\nuid-min = 999\n", "e.conf:2:", "key 'uid-min'",
                  "value out of range (1000..4294967293)" },
                { "[hostd]\nuid-min = 300000\n", "e.conf:2:", "key 'uid-min'",
                  "must be less than uid-max" },
                { "[hostd]\nuid-min = 5000\nuid-max = 5000\n", "e.conf:3:", "key 'uid-max'",
                  "must be less than uid-max" },
                { "[hostd]\ndefault-size = huge\n", "e.conf:2:", "key 'default-size'",
                  "no such size 'huge'" },
                { "[hostd]\ndefault-size = Huge\n", "e.conf:2:", "key 'default-size'",
                  "invalid size name" },
                { "[size new-one]\npids = 10\n", "e.conf:1:", "[size new-one]", "needs 'memory'" },
                { "[size eco]\nmemory = lots\n", "e.conf:2:", "key 'memory'", "not a size" },
                { "[size eco]\nmemory = 1K\n", "e.conf:2:", "key 'memory'",
                  "value out of range (1M..16T)" },
                { "[size eco]\nr15-multiple = 0.5\n", "e.conf:2:", "key 'r15-multiple'",
                  "value out of range (1..100)" },
                { "[size eco]\nr15-multiple = 100.5\n", "e.conf:2:", "key 'r15-multiple'",
                  "value out of range (1..100)" },
                { "[size eco]\nr15-multiple = nan\n", "e.conf:2:", "key 'r15-multiple'",
                  "not a number" },
                { "[size eco]\nr15-multiple = 1e1\n", "e.conf:2:", "key 'r15-multiple'",
                  "not a number" },
                { "[size eco]\nr15-multiple = 1.\n", "e.conf:2:", "key 'r15-multiple'",
                  "not a number" },
                { "[size eco]\npids = 0\n", "e.conf:2:", "key 'pids'",
                  "value out of range (1..4194304)" },
                { "[size eco]\npids = 4194305\n", "e.conf:2:", "key 'pids'",
                  "value out of range (1..4194304)" },
                { "[size eco]\ncpu-weight = 0\n", "e.conf:2:", "key 'cpu-weight'",
                  "value out of range (1..10000)" },
                { "[size eco]\ncpu-weight = 10001\n", "e.conf:2:", "key 'cpu-weight'",
                  "value out of range (1..10000)" },
                { "[size eco]\ncpu-quota = 100001\n", "e.conf:2:", "key 'cpu-quota'",
                  "value out of range (0..100000)" },
                { "[size eco]\nswap = maybe\n", "e.conf:2:", "key 'swap'", "not a boolean" },
                /* a valid line before the bad one must not be applied */
                { "[hostd]\ngrace-seconds = 5\nmax-dynos = 7\nboot-timeout = 0\n",
                  "e.conf:4:", "key 'boot-timeout'", "value out of range" },
                { "[size eco]\nmemory = 1G\n[size added]\nmemory = 1G\n[hostd]\nx = 1\n",
                  "e.conf:6:", "key 'x'", "unknown key" },
        };
        _cleanup_config_ struct config c = {};
        _cleanup_free_ char *before = NULL;

        printf("errors (%zu cases)\n", ELEMENTSOF(cases));
        CHECK(config_init_defaults(&c) == 0);
        before = dump_to_string(&c);
        CHECK(before != NULL);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_config_ struct config ref = {};
                _cleanup_free_ char *after = NULL;
                char err[512] = "";

                CHECK(config_init_defaults(&ref) == 0);
                int r = config_load_string(&c, "e.conf", cases[i].text, err, sizeof err);
                printf("  case %zu: %s\n", i, err);
                CHECK(r < 0);
                CHECK(startswith(err, cases[i].where));
                CHECK(contains(err, cases[i].key));
                CHECK(contains(err, cases[i].why));
                if (r >= 0 || !startswith(err, cases[i].where) || !contains(err, cases[i].key) ||
                    !contains(err, cases[i].why))
                        fprintf(stderr, "  case %zu: r=%d err='%s'\n", i, r, err);
                /* c is unchanged */
                CHECK(config_equal(&c, &ref));
                after = dump_to_string(&c);
                CHECK(after && streq_null(before, after));
        }

        /* the error buffer may be absent or tiny */
        CHECK(config_load_string(&c, "e.conf", "[foo]\n", NULL, 0) == -EINVAL);
        char small[8];
        CHECK(config_load_string(&c, "e.conf", "[foo]\n", small, sizeof small) == -EINVAL);
        CHECK(strlen(small) == sizeof small - 1 && startswith("e.conf:1: ", small));

        /* 4096 bytes is the longest line */
        char *text = malloc(8192);
        CHECK(text != NULL);
        if (text) {
                char err[512] = "";
                strcpy(text, "[hostd]\n# ");
                size_t n = strlen(text);
                memset(text + n, 'x', 4096 - 2);
                strcpy(text + n + 4096 - 2, "\n[hostd]\n");
                CHECK(config_load_string(&c, "long.conf", text, err, sizeof err) == 0);

                strcpy(text, "[hostd]\n# ");
                memset(text + n, 'x', 4096 - 1);
                strcpy(text + n + 4096 - 1, "\n[hostd]\n");
                CHECK(config_load_string(&c, "long.conf", text, err, sizeof err) < 0);
                printf("  long line: %s\n", err);
                CHECK(startswith(err, "long.conf:2: ") && contains(err, "line too long"));
                free(text);
        }
        _cleanup_free_ char *after = dump_to_string(&c);
        CHECK(after && streq_null(before, after));
}

static int write_temp(char path[static 64], const char *data, size_t len)
{
        strcpy(path, "/tmp/test-config.XXXXXX");
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t k = write(fd, data, len);
        int r = k == (ssize_t)len ? 0 : -EIO;
        close(fd);
        return r;
}

static void test_files(void)
{
        _cleanup_config_ struct config c = {}, ref = {};
        char path[64], err[512] = "", want[128];

        printf("files\n");
        CHECK(config_init_defaults(&c) == 0);
        CHECK(config_init_defaults(&ref) == 0);

        CHECK(config_load_file(&c, "/nonexistent/hostd.conf", err, sizeof err) == -ENOENT);
        printf("  %s\n", err);
        CHECK(streq_null(err, "/nonexistent/hostd.conf: No such file or directory"));
        CHECK(config_equal(&c, &ref));

        CHECK(config_load_file(&c, "/tmp", err, sizeof err) == -EISDIR);
        printf("  %s\n", err);
        CHECK(streq_null(err, "/tmp: Is a directory"));

        static const char nul[] = "[hostd]\ngrace-seconds = 5\nmax-dynos = 1\0 0\n";
        CHECK(write_temp(path, nul, sizeof nul - 1) == 0);
        CHECK(config_load_file(&c, path, err, sizeof err) < 0);
        printf("  %s\n", err);
        snprintf(want, sizeof want, "%s:3: ", path);
        CHECK(startswith(err, want) && contains(err, "NUL"));
        CHECK(config_equal(&c, &ref));
        unlink(path);

        static const char good[] = "[hostd]\ngrace-seconds = 5\n[size eco]\nmemory = 256M\n";
        CHECK(write_temp(path, good, sizeof good - 1) == 0);
        CHECK(config_load_file(&c, path, err, sizeof err) == 0);
        CHECK(err[0] == 0);
        CHECK(c.grace_seconds == 5 && config_find_size(&c, "eco")->memory == 256 * MiB);
        unlink(path);
}

static void test_round_trip(void)
{
        _cleanup_config_ struct config c = {}, d = {}, e = {};
        _cleanup_free_ char *a = NULL, *b = NULL, *dflt = NULL;
        char err[512] = "";

        printf("dump and load round trip\n");
        /* the defaults */
        CHECK(config_init_defaults(&c) == 0);
        CHECK(config_init_defaults(&d) == 0);
        dflt = dump_to_string(&c);
        CHECK(dflt != NULL);
        CHECK(config_load_string(&d, "dump", dflt, err, sizeof err) == 0);
        CHECK(config_equal(&c, &d));
        /* a dump is readable by hand */
        CHECK(contains(dflt, "[hostd]\nsocket = /run/hostd/hostd.sock\n"));
        CHECK(contains(dflt, "\ninit =\n"));
        CHECK(contains(dflt, "\nmax-message = 4M\n"));
        CHECK(contains(dflt, "\n[size performance-m]\nmemory = 2560M\nr15-multiple = 2.0\n"));
        CHECK(contains(dflt, "\n[size performance-l-ram]\nmemory = 30G\nr15-multiple = 1.2\n"));

        /* every setting changed, sizes changed and added */
        CHECK(config_load_string(&c, "custom",
                                 "[hostd]\n"
                                 "socket = /s/h.sock\nrun-dir = /r\nstate-dir = /st\n"
                                 "layers-dir = /l\ninit = /i/hostd-init\ncgroup-root = x/y\n"
                                 "default-size = odd\nlog-level = warning\ngrace-seconds = 0\n"
                                 "boot-timeout = 3600\nuid-min = 1000\nuid-max = 4294967294\n"
                                 "max-message = 1025\nmax-connections = 3\nmax-command = 1K\n"
                                 "max-env = 9\nmax-env-bytes = 3000\nmax-dynos = 4\n"
                                 "log-lines = 1000000\nlog-line-max = 80\n"
                                 "rlimit-nofile = 1073741816\nshm-size = 1.5G\n"
                                 "[size eco]\nr15-multiple = 1.1\nswap = no\n"
                                 "[size odd]\nmemory = 1234567891\nr15-multiple = 3.14159\n"
                                 "pids = 4194304\ncpu-weight = 10000\ncpu-quota = 100000\n"
                                 "dedicated-cpus = 3\n",
                                 err, sizeof err) == 0);
        CHECK(err[0] == 0);
        CHECK(c.shm_size == 1536 * MiB && c.max_command == 1024);
        a = dump_to_string(&c);
        CHECK(a != NULL);
        CHECK(a && contains(a, "\nr15-multiple = 3.14159\n")); /* shortest exact text */
        CHECK(a && contains(a, "\nmemory = 1234567891\n"));
        CHECK(a && contains(a, "\nshm-size = 1536M\n"));
        CHECK(config_init_defaults(&e) == 0);
        CHECK(config_load_string(&e, "dump", a, err, sizeof err) == 0);
        CHECK(config_equal(&c, &e));
        b = dump_to_string(&e);
        CHECK(b && streq_null(a, b));

        /* dumped to a file and read with config_load_file */
        char path[64];
        _cleanup_config_ struct config f = {};
        CHECK(config_init_defaults(&f) == 0);
        CHECK(write_temp(path, a, strlen(a)) == 0);
        CHECK(config_load_file(&f, path, err, sizeof err) == 0);
        CHECK(config_equal(&c, &f));
        unlink(path);
}

/* hostd.conf.example lists every setting commented out ("#key = default"); uncommented, it
 * must read back as the defaults, so it cannot drift from the code. */
static void test_example(void)
{
        const char *src = getenv("HOSTD_SOURCE_DIR") ?: ".";
        _cleanup_free_ char *path = strjoin3(src, "/hostd/hostd.conf.example", NULL);
        _cleanup_free_ char *text = NULL, *uncommented = NULL;
        _cleanup_config_ struct config c = {}, ref = {};
        char err[512] = "";
        size_t len, keys = 0;

        printf("hostd.conf.example\n");
        CHECK(path != NULL);
        if (!path || read_full_file(path, &text, &len) < 0) {
                printf("  skipped: %s not found (set HOSTD_SOURCE_DIR)\n", path ? path : "");
                return;
        }
        CHECK(config_init_defaults(&c) == 0);
        CHECK(config_init_defaults(&ref) == 0);
        CHECK(config_load_string(&c, path, text, err, sizeof err) == 0);
        CHECK(config_equal(&c, &ref));

        uncommented = malloc(len + 1);
        CHECK(uncommented != NULL);
        if (!uncommented)
                return;
        size_t o = 0;
        for (const char *p = text; *p;) {
                const char *nl = strchrnul(p, '\n');
                if (p[0] == '#' && ((p[1] >= 'a' && p[1] <= 'z') || p[1] == '[')) {
                        p++;
                        keys++;
                }
                memcpy(uncommented + o, p, (size_t)(nl - p));
                o += (size_t)(nl - p);
                uncommented[o++] = '\n';
                p = *nl ? nl + 1 : nl;
        }
        uncommented[o] = 0;
        CHECK(config_load_string(&c, path, uncommented, err, sizeof err) == 0);
        if (err[0])
                printf("  %s\n", err);
        CHECK(config_equal(&c, &ref));
        /* 59 settings, 9 size headers (8 lines each with their keys) */
        CHECK(keys == 59 + 9 * 8);
}

int main(void)
{
        test_defaults();
        test_override();
        test_sizes();
        test_errors();
        test_files();
        test_round_trip();
        test_example();

        config_free(NULL);
        struct config c = {};
        config_free(&c); /* an empty config, and twice */
        config_free(&c);

        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return EXIT_FAILURE;
        }
        printf("all passed\n");
        return EXIT_SUCCESS;
}
