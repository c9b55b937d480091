/* hostd's configuration: compiled-in defaults, overridden by an INI file in systemd's style.
 *
 * Both sections are described by tables of keys; the parser and config_dump() walk the same
 * tables, so a dumped configuration always reads back as the same configuration. */
#include "config.h"
#include "cpus.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util.h"

#define LINE_MAX_BYTES 4096
#define SIZE_NAME_MAX 63

#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define TiB (1024ULL * GiB)

/* HEROKU.md's Sizes table. Shared sizes get cpu.weight 100 per share; dedicated ones get
 * their CPUs and the plain weight. */
static const struct {
        const char *name;
        uint64_t memory;
        double r15_multiple;
        uint64_t pids;
        uint32_t cpu_weight;
        uint32_t dedicated_cpus;
} default_sizes[] = {
        { "eco", 512 * MiB, 2.0, 256, 100, 0 },
        { "basic", 512 * MiB, 2.0, 256, 100, 0 },
        { "standard-1x", 512 * MiB, 2.0, 256, 100, 0 },
        { "standard-2x", 1 * GiB, 2.0, 512, 200, 0 },
        { "performance-m", 2560 * MiB, 2.0, 16384, 100, 2 },
        { "performance-l", 14 * GiB, 2.0, 32768, 100, 8 },
        { "performance-l-ram", 30 * GiB, 1.2, 24576, 100, 4 },
        { "performance-xl", 62 * GiB, 1.2, 32768, 100, 8 },
        { "performance-2xl", 126 * GiB, 1.2, 65536, 100, 16 },
};

/* A size first named by a [size NAME] section starts from these; memory has no default. */
#define NEW_SIZE_R15_MULTIPLE 2.0
#define NEW_SIZE_PIDS 256
#define NEW_SIZE_CPU_WEIGHT 100

enum value_type {
        VALUE_PATH,            /* absolute path */
        VALUE_PATH_OR_EMPTY,   /* absolute path or "" */
        VALUE_SOCKET_OR_EMPTY, /* a Unix socket's path or "" */
        VALUE_BACKOFF,         /* durations: "0, 20m, 40m" (s, m, h; seconds without a unit) */
        VALUE_DURATION,        /* one duration, as those: uint32_t seconds */
        VALUE_SOCKET,          /* absolute path that fits sockaddr_un */
        VALUE_CGROUP,          /* relative path without "..", or "" */
        VALUE_CGROUP_ABS,      /* absolute cgroup path without "..", not "/", or "" */
        VALUE_SIZE_NAME,       /* a size's name; checked against the sizes at the end */
        VALUE_CPU_POOL,        /* "auto", "none" or a CPU list; checked against the host at start */
        VALUE_GROUP,           /* a group's name or number, or "": looked up at start */
        VALUE_LISTEN,          /* "ADDR:PORT" with an IP address, or "" */
        VALUE_IDENTITIES,      /* identities separated by commas, or "" */
        VALUE_LOG_LEVEL,
        VALUE_U32,
        VALUE_U64,
        VALUE_BYTES32, /* parse_size() syntax */
        VALUE_BYTES64,
        VALUE_DOUBLE,
        VALUE_BOOL,
};

struct key_def {
        const char *name;
        enum value_type type;
        size_t offset;
        uint64_t min, max; /* integers and bytes; doubles use them as whole numbers */
};

#define CONFIG_FIELD(f) offsetof(struct config, f)
#define SIZE_FIELD(f) offsetof(struct size_def, f)

static const struct key_def hostd_keys[] = {
        { "socket", VALUE_SOCKET, CONFIG_FIELD(socket_path), 0, 0 },
        { "read-group", VALUE_GROUP, CONFIG_FIELD(read_group), 0, 0 },
        { "run-dir", VALUE_PATH, CONFIG_FIELD(run_dir), 0, 0 },
        { "state-dir", VALUE_PATH, CONFIG_FIELD(state_dir), 0, 0 },
        { "layers-dir", VALUE_PATH, CONFIG_FIELD(layers_dir), 0, 0 },
        { "init", VALUE_PATH_OR_EMPTY, CONFIG_FIELD(init_path), 0, 0 },
        { "cgroup-root", VALUE_CGROUP, CONFIG_FIELD(cgroup_root), 0, 0 },
        { "dynos-cgroup", VALUE_CGROUP_ABS, CONFIG_FIELD(dynos_cgroup), 0, 0 },
        { "default-size", VALUE_SIZE_NAME, CONFIG_FIELD(default_size), 0, 0 },
        { "log-level", VALUE_LOG_LEVEL, CONFIG_FIELD(log_level), 0, 0 },
        { "grace-seconds", VALUE_U32, CONFIG_FIELD(grace_seconds), 0, 3600 },
        { "boot-timeout", VALUE_U32, CONFIG_FIELD(boot_timeout), 1, 3600 },
        { "attach-timeout", VALUE_U32, CONFIG_FIELD(attach_timeout), 1, 3600 },
        { "hangup-interval", VALUE_U32, CONFIG_FIELD(hangup_interval), 1, 3600 },
        { "hangups", VALUE_U32, CONFIG_FIELD(hangups), 1, 100 },
        { "events-keep", VALUE_U32, CONFIG_FIELD(events_keep), 1, 10000000 },
        { "metrics-interval", VALUE_U32, CONFIG_FIELD(metrics_interval), 1, 3600 },
        { "runtime-metrics-interval", VALUE_U32, CONFIG_FIELD(runtime_metrics_interval), 1, 3600 },
        { "prometheus-file", VALUE_PATH_OR_EMPTY, CONFIG_FIELD(prometheus_file), 0, 0 },
        /* uid 0..999 are the host's system users; (uid_t)-1 means "unchanged" to the kernel */
        { "uid-min", VALUE_U32, CONFIG_FIELD(uid_min), 1000, UINT32_MAX - 2 },
        { "uid-max", VALUE_U32, CONFIG_FIELD(uid_max), 1001, UINT32_MAX - 1 },
        { "max-message", VALUE_BYTES32, CONFIG_FIELD(max_message), 1 * KiB, 64 * MiB },
        { "max-connections", VALUE_U32, CONFIG_FIELD(max_connections), 1, 65536 },
        { "max-command", VALUE_BYTES32, CONFIG_FIELD(max_command), 1, 1 * MiB },
        { "max-env", VALUE_U32, CONFIG_FIELD(max_env), 1, 65536 },
        { "max-env-bytes", VALUE_BYTES32, CONFIG_FIELD(max_env_bytes), 1, 16 * MiB },
        { "max-dynos", VALUE_U32, CONFIG_FIELD(max_dynos), 1, 100000 },
        { "reserved-memory", VALUE_BYTES64, CONFIG_FIELD(reserved_memory), 0, 16 * TiB },
        { "memory-overcommit", VALUE_DOUBLE, CONFIG_FIELD(memory_overcommit), 1, 100 },
        { "log-lines", VALUE_U32, CONFIG_FIELD(log_lines), 1, 1000000 },
        { "log-line-max", VALUE_BYTES32, CONFIG_FIELD(log_line_max), 80, 1 * MiB },
        /* the kernel's ceiling for fs.nr_open */
        { "rlimit-nofile", VALUE_U64, CONFIG_FIELD(rlimit_nofile), 1, 1073741816 },
        { "shm-size", VALUE_BYTES64, CONFIG_FIELD(shm_size), 1 * MiB, 16 * TiB },
        { "images-dir", VALUE_PATH, CONFIG_FIELD(images_dir), 0, 0 },
        { "image-max-compressed", VALUE_BYTES64, CONFIG_FIELD(image_max_compressed), 1 * MiB,
          16 * TiB },
        { "image-max-unpacked", VALUE_BYTES64, CONFIG_FIELD(image_max_unpacked), 1 * MiB,
          16 * TiB },
        { "image-max-files", VALUE_U64, CONFIG_FIELD(image_max_files), 1, 100000000 },
        { "images-budget", VALUE_BYTES64, CONFIG_FIELD(images_budget), 0, 1024 * TiB },
        { "netd-socket", VALUE_SOCKET_OR_EMPTY, CONFIG_FIELD(netd_socket), 0, 0 },
        { "journal-socket", VALUE_SOCKET_OR_EMPTY, CONFIG_FIELD(journal_socket), 0, 0 },
        { "netns-dir", VALUE_PATH, CONFIG_FIELD(netns_dir), 0, 0 },
        /* a week: a longer wait is no restart at all */
        { "restart-backoff", VALUE_BACKOFF, CONFIG_FIELD(restart_backoff), 0, 7 * 24 * 3600 },
        /* 0: never; at most a year */
        { "stop-dynos-on-exit", VALUE_BOOL, CONFIG_FIELD(stop_dynos_on_exit), 0, 0 },
        { "shutdown-timeout", VALUE_DURATION, CONFIG_FIELD(shutdown_timeout), 1, 3600 },
        { "cycle-after", VALUE_DURATION, CONFIG_FIELD(cycle_after), 0, 366 * 24 * 3600 },
        { "cycle-jitter", VALUE_DURATION, CONFIG_FIELD(cycle_jitter), 0, 7 * 24 * 3600 },
        { "dedicated-cpu-pool", VALUE_CPU_POOL, CONFIG_FIELD(dedicated_cpu_pool), 0, 0 },
        { "drain-buffer", VALUE_U32, CONFIG_FIELD(drain_buffer), 1, 1000000 },
        { "drain-backoff-max", VALUE_DURATION, CONFIG_FIELD(drain_backoff_max), 1, 3600 },
        { "drain-ca-file", VALUE_PATH_OR_EMPTY, CONFIG_FIELD(drain_ca_file), 0, 0 },
        { "listen-tls", VALUE_LISTEN, CONFIG_FIELD(listen_tls), 0, 0 },
        { "tls-cert", VALUE_PATH_OR_EMPTY, CONFIG_FIELD(tls_cert), 0, 0 },
        { "tls-key", VALUE_PATH_OR_EMPTY, CONFIG_FIELD(tls_key), 0, 0 },
        { "tls-ca", VALUE_PATH_OR_EMPTY, CONFIG_FIELD(tls_ca), 0, 0 },
        { "tls-allow", VALUE_IDENTITIES, CONFIG_FIELD(tls_allow), 0, 0 },
        { "tls-handshake-timeout", VALUE_U32, CONFIG_FIELD(tls_handshake_timeout), 1, 3600 },
        /* 0: never; at most a day */
        { "idle-timeout", VALUE_U32, CONFIG_FIELD(idle_timeout), 0, 86400 },
        { "max-inflight", VALUE_U32, CONFIG_FIELD(max_inflight), 1, 65536 },
        { "keepalive", VALUE_U32, CONFIG_FIELD(keepalive), 0, 86400 },
};

static const struct key_def size_keys[] = {
        { "memory", VALUE_BYTES64, SIZE_FIELD(memory), 1 * MiB, 16 * TiB },
        { "r15-multiple", VALUE_DOUBLE, SIZE_FIELD(r15_multiple), 1, 100 },
        { "pids", VALUE_U64, SIZE_FIELD(pids), 1, 4194304 },
        { "cpu-weight", VALUE_U32, SIZE_FIELD(cpu_weight), 1, 10000 },
        { "cpu-quota", VALUE_U32, SIZE_FIELD(cpu_quota_pct), 0, 100000 },
        { "dedicated-cpus", VALUE_U32, SIZE_FIELD(dedicated_cpus), 0, 4096 },
        { "swap", VALUE_BOOL, SIZE_FIELD(swap), 0, 0 },
};

static const char *const log_level_names[] = {
        [LOG_LEVEL_ERR] = "err",   [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
        [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
};

static bool value_is_string(enum value_type t)
{
        return t == VALUE_PATH || t == VALUE_PATH_OR_EMPTY || t == VALUE_SOCKET ||
               t == VALUE_SOCKET_OR_EMPTY || t == VALUE_CGROUP || t == VALUE_CGROUP_ABS ||
               t == VALUE_SIZE_NAME || t == VALUE_CPU_POOL || t == VALUE_GROUP ||
               t == VALUE_LISTEN || t == VALUE_IDENTITIES;
}

/* A group name as useradd takes it (letters, digits, '_', '-', '.', not first '-'), or a gid. */
static bool group_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0)
                return true;
        if (n > 32 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
                        return false;
        return true;
}

static char **string_field(void *base, const struct key_def *k)
{
        return (char **)((char *)base + k->offset);
}

static bool size_name_valid(const char *s)
{
        size_t n = strlen(s);
        if (n < 1 || n > SIZE_NAME_MAX)
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* "512M" for exact binary multiples, plain bytes otherwise: parse_size() reads both back. */
static const char *format_bytes(uint64_t v, char buf[static 32])
{
        static const char suffixes[] = "TGMK";
        for (size_t i = 0; v > 0 && i < sizeof suffixes - 1; i++) {
                uint64_t unit = 1ULL << (10 * (4 - i));
                if (v % unit == 0) {
                        snprintf(buf, 32, "%llu%c", (unsigned long long)(v / unit), suffixes[i]);
                        return buf;
                }
        }
        snprintf(buf, 32, "%llu", (unsigned long long)v);
        return buf;
}

/* The shortest fixed-point text that strtod() turns back into exactly v. */
static const char *format_double(double v, char buf[static 64])
{
        for (int prec = 1; prec <= 20; prec++) {
                snprintf(buf, 64, "%.*f", prec, v);
                if (strtod(buf, NULL) == v)
                        return buf;
        }
        snprintf(buf, 64, "%.17g", v);
        return buf;
}

static char *strip(char *s)
{
        s += strspn(s, " \t\r\f\v");
        size_t n = strlen(s);
        while (n > 0 && strchr(" \t\r\f\v", s[n - 1]))
                s[--n] = 0;
        return s;
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_bytes(const char *s, uint64_t *ret)
{
        size_t n = strlen(s);
        /* parse_size() would truncate "1.5" to one byte; a fraction needs a unit. */
        if (n > 0 && s[n - 1] >= '0' && s[n - 1] <= '9' && strchr(s, '.'))
                return -EINVAL;
        return parse_size(s, ret);
}

static int parse_double(const char *s, double *ret)
{
        /* digits and one optional fraction: no signs, exponents, hex, "inf" or "nan" */
        size_t n = strlen(s);
        if (n == 0 || s[0] < '0' || s[0] > '9' || strspn(s, "0123456789.") != n)
                return -EINVAL;
        const char *dot = strchr(s, '.');
        if (dot && (strchr(dot + 1, '.') || dot[1] == 0))
                return -EINVAL;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || *end || !isfinite(v))
                return -EINVAL;
        *ret = v;
        return 0;
}

static int check_path(const char *v, bool allow_empty, char *why, size_t whylen)
{
        if (allow_empty && v[0] == 0)
                return 0;
        if (v[0] != '/') {
                snprintf(why, whylen, "not an absolute path: '%s'", v);
                return -EINVAL;
        }
        return 0;
}

static int check_cgroup_path(const char *v, char *why, size_t whylen)
{
        if (v[0] == 0)
                return 0;
        if (v[0] == '/') {
                snprintf(why, whylen, "must be relative to hostd's own cgroup, not '%s'", v);
                return -EINVAL;
        }
        for (const char *p = v;;) {
                size_t n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
                        snprintf(why, whylen,
                                 "invalid cgroup path '%s' (empty, '.' or '..' component)", v);
                        return -EINVAL;
                }
                if (p[n] == 0)
                        return 0;
                p += n + 1;
        }
}

/* A cgroup named from the root of the hierarchy ("/system.slice/hostd-dynos.service"); that it
 * exists, is writable and is not hostd's own or an ancestor is checked at start (cgroup.c). */
static int check_cgroup_abs_path(const char *v, char *why, size_t whylen)
{
        if (v[0] == 0)
                return 0;
        if (v[0] != '/' || v[1] == 0) {
                snprintf(why, whylen,
                         "must be a cgroup below the root of the hierarchy, starting with '/', "
                         "not '%s'",
                         v);
                return -EINVAL;
        }
        return check_cgroup_path(v + 1, why, whylen);
}

static int parse_backoff(const struct key_def *k, const char *v, struct backoff *out, char *why,
                         size_t whylen)
{
        struct backoff b = {};
        if (v[strspn(v, " \t")] == 0) {
                *out = b; /* empty: crashed dynos are not restarted (the caller does it) */
                return 0;
        }
        for (const char *p = v;;) {
                p += strspn(p, " \t");
                size_t n = strcspn(p, ",");
                size_t len = n;
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                char item[32];
                if (len == 0 || len >= sizeof item) {
                        snprintf(why, whylen,
                                 "'%s': expected durations separated by commas "
                                 "(0, 20m, 40m; s, m, h)",
                                 v);
                        return -EINVAL;
                }
                memcpy(item, p, len);
                item[len] = 0;
                uint64_t mult = 1;
                char unit = item[len - 1];
                if (unit == 's' || unit == 'm' || unit == 'h') {
                        mult = unit == 'h' ? 3600 : unit == 'm' ? 60 : 1;
                        item[len - 1] = 0;
                }
                uint64_t u;
                if (safe_atou64(item, &u) < 0) {
                        snprintf(why, whylen, "'%.*s' is not a duration (s, m, h)", (int)len, p);
                        return -EINVAL;
                }
                if (u > k->max / mult) {
                        snprintf(why, whylen, "'%.*s' is over a week", (int)len, p);
                        return -ERANGE;
                }
                if (b.n == RESTART_BACKOFF_MAX) {
                        snprintf(why, whylen, "more than %d durations", RESTART_BACKOFF_MAX);
                        return -E2BIG;
                }
                b.seconds[b.n++] = (uint32_t)(u * mult);
                if (!p[n])
                        break;
                p += n + 1;
        }
        *out = b;
        return 0;
}

int config_parse_listen(const char *s, struct sockaddr_storage *ret, unsigned *ret_len)
{
        return parse_listen_address(s, ret, ret_len);
}

/* "cp-1, spiffe://x/y": items of printable ASCII without spaces or commas, none empty. */
static int check_identities(const char *v, char *why, size_t whylen)
{
        if (v[0] == 0)
                return 0;
        for (const char *p = v;;) {
                p += strspn(p, " \t");
                size_t n = strcspn(p, ","), len = n;
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len == 0) {
                        snprintf(why, whylen, "'%s': an empty identity in the list", v);
                        return -EINVAL;
                }
                for (size_t i = 0; i < len; i++)
                        if (p[i] <= ' ' || p[i] > '~') {
                                snprintf(why, whylen,
                                         "'%.*s': an identity is printable ASCII without spaces",
                                         (int)len, p);
                                return -EINVAL;
                        }
                if (!p[n])
                        return 0;
                p += n + 1;
        }
}

static int range_error(const struct key_def *k, char *why, size_t whylen)
{
        char lo[32], hi[32];
        if (k->type == VALUE_BYTES32 || k->type == VALUE_BYTES64)
                snprintf(why, whylen, "value out of range (%s..%s)", format_bytes(k->min, lo),
                         format_bytes(k->max, hi));
        else
                snprintf(why, whylen, "value out of range (%llu..%llu)", (unsigned long long)k->min,
                         (unsigned long long)k->max);
        return -ERANGE;
}

/* Store the text v into the field k of base. On error why says what is wrong with v. */
static int set_value(void *base, const struct key_def *k, const char *v, char *why, size_t whylen)
{
        void *field = (char *)base + k->offset;
        uint64_t u;
        int r;

        switch (k->type) {
        case VALUE_PATH:
        case VALUE_PATH_OR_EMPTY:
                r = check_path(v, k->type == VALUE_PATH_OR_EMPTY, why, whylen);
                if (r < 0)
                        return r;
                break;
        case VALUE_SOCKET:
        case VALUE_SOCKET_OR_EMPTY:
                r = check_path(v, k->type == VALUE_SOCKET_OR_EMPTY, why, whylen);
                if (r < 0)
                        return r;
                if (strlen(v) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
                        snprintf(why, whylen, "path too long for a unix socket (max %zu bytes)",
                                 sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
                        return -ENAMETOOLONG;
                }
                break;
        case VALUE_CGROUP:
                r = check_cgroup_path(v, why, whylen);
                if (r < 0)
                        return r;
                break;
        case VALUE_CGROUP_ABS:
                r = check_cgroup_abs_path(v, why, whylen);
                if (r < 0)
                        return r;
                break;
        case VALUE_SIZE_NAME:
                if (!size_name_valid(v)) {
                        snprintf(why, whylen,
                                 "invalid size name '%s' (a-z, 0-9 and '-', 1 to %d characters)", v,
                                 SIZE_NAME_MAX);
                        return -EINVAL;
                }
                break;
        case VALUE_LISTEN: {
                struct sockaddr_storage ss;
                unsigned len;
                if (v[0] && config_parse_listen(v, &ss, &len) < 0) {
                        snprintf(why, whylen,
                                 "'%s' is not ADDR:PORT with an IP address (127.0.0.1:7443, "
                                 "[::]:7443) and a port 1..65535",
                                 v);
                        return -EINVAL;
                }
                break;
        }
        case VALUE_IDENTITIES:
                r = check_identities(v, why, whylen);
                if (r < 0)
                        return r;
                break;
        case VALUE_CPU_POOL:
                if (!cpu_pool_spec_valid(v)) {
                        snprintf(why, whylen, "'%s' is not 'auto', 'none' or a CPU list (1-3,6)",
                                 v);
                        return -EINVAL;
                }
                break;
        case VALUE_GROUP:
                if (!group_valid(v)) {
                        snprintf(why, whylen,
                                 "'%s' is not a group name or number (letters, digits, _ - ., "
                                 "at most 32)",
                                 v);
                        return -EINVAL;
                }
                break;
        case VALUE_LOG_LEVEL:
                r = log_parse_level(v);
                if (r < 0) {
                        snprintf(why, whylen,
                                 "unknown log level '%s' (err, warning, notice, info, debug)", v);
                        return -EINVAL;
                }
                *(int *)field = r;
                return 0;
        case VALUE_U32:
        case VALUE_U64:
                r = safe_atou64(v, &u);
                if (r == -EINVAL) {
                        snprintf(why, whylen, "not a number");
                        return r;
                }
                if (r < 0 || u < k->min || u > k->max)
                        return range_error(k, why, whylen);
                if (k->type == VALUE_U32)
                        *(uint32_t *)field = (uint32_t)u;
                else
                        *(uint64_t *)field = u;
                return 0;
        case VALUE_BYTES32:
        case VALUE_BYTES64:
                r = parse_bytes(v, &u);
                if (r == -EINVAL) {
                        snprintf(why, whylen, "not a size (bytes, or with K, M, G, T: 512M, 2.5G)");
                        return r;
                }
                if (r < 0 || u < k->min || u > k->max)
                        return range_error(k, why, whylen);
                if (k->type == VALUE_BYTES32)
                        *(uint32_t *)field = (uint32_t)u;
                else
                        *(uint64_t *)field = u;
                return 0;
        case VALUE_DOUBLE: {
                double d;
                if (parse_double(v, &d) < 0) {
                        snprintf(why, whylen, "not a number");
                        return -EINVAL;
                }
                if (d < (double)k->min || d > (double)k->max)
                        return range_error(k, why, whylen);
                *(double *)field = d;
                return 0;
        }
        case VALUE_BACKOFF: return parse_backoff(k, v, field, why, whylen);
        case VALUE_DURATION: {
                struct backoff b;
                r = parse_backoff(k, v, &b, why, whylen);
                if (r < 0)
                        return r;
                if (b.n != 1) {
                        snprintf(why, whylen, "'%s': expected one duration (30s, 20m, 24h)", v);
                        return -EINVAL;
                }
                if (b.seconds[0] < k->min) {
                        snprintf(why, whylen, "'%s' is under %llu s", v,
                                 (unsigned long long)k->min);
                        return -ERANGE;
                }
                *(uint32_t *)field = b.seconds[0];
                return 0;
        }
        case VALUE_BOOL:
                if (parse_bool(v, (bool *)field) < 0) {
                        snprintf(why, whylen, "not a boolean (yes, no, true, false, 1, 0)");
                        return -EINVAL;
                }
                return 0;
        }

        /* the string types */
        char *s = strdup(v);
        if (!s) {
                snprintf(why, whylen, "out of memory");
                return -ENOMEM;
        }
        char **p = field;
        free(*p);
        *p = s;
        return 0;
}

static void print_value(FILE *f, const void *base, const struct key_def *k)
{
        const void *field = (const char *)base + k->offset;
        const char *text = "";
        char buf[256];

        switch (k->type) {
        case VALUE_PATH:
        case VALUE_PATH_OR_EMPTY:
        case VALUE_SOCKET:
        case VALUE_SOCKET_OR_EMPTY:
        case VALUE_CGROUP:
        case VALUE_CGROUP_ABS:
        case VALUE_SIZE_NAME:
        case VALUE_CPU_POOL:
        case VALUE_GROUP:
        case VALUE_LISTEN:
        case VALUE_IDENTITIES: text = *(char *const *)field ?: ""; break;
        case VALUE_LOG_LEVEL: {
                int l = *(const int *)field;
                bool known = l >= 0 && (size_t)l < ELEMENTSOF(log_level_names) &&
                             log_level_names[l];
                text = known ? log_level_names[l] : "info";
                break;
        }
        case VALUE_U32:
                snprintf(buf, sizeof buf, "%" PRIu32, *(const uint32_t *)field);
                text = buf;
                break;
        case VALUE_U64:
                snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)field);
                text = buf;
                break;
        case VALUE_BYTES32: text = format_bytes(*(const uint32_t *)field, buf); break;
        case VALUE_BYTES64: text = format_bytes(*(const uint64_t *)field, buf); break;
        case VALUE_DOUBLE: text = format_double(*(const double *)field, buf); break;
        case VALUE_BOOL: text = *(const bool *)field ? "yes" : "no"; break;
        case VALUE_BACKOFF:
        case VALUE_DURATION: {
                const struct backoff *b = field;
                uint32_t one = *(const uint32_t *)field, n = k->type == VALUE_BACKOFF ? b->n : 1;
                size_t o = 0;
                buf[0] = 0;
                for (uint32_t i = 0; i < n && o < sizeof buf; i++) {
                        uint32_t x = k->type == VALUE_BACKOFF ? b->seconds[i] : one;
                        const char *sep = i ? ", " : "";
                        if (x && x % 3600 == 0)
                                o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%uh", sep,
                                                      x / 3600);
                        else if (x && x % 60 == 0)
                                o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%um", sep,
                                                      x / 60);
                        else
                                o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%u", sep, x);
                }
                text = buf;
                break;
        }
        }
        fprintf(f, "%s =%s%s\n", k->name, text[0] ? " " : "", text);
}

void config_free(struct config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < ELEMENTSOF(hostd_keys); i++)
                if (value_is_string(hostd_keys[i].type))
                        free(*string_field(c, &hostd_keys[i]));
        for (size_t i = 0; i < c->n_sizes; i++)
                free(c->sizes[i].name);
        free(c->sizes);
        *c = (struct config){};
}

static int config_copy(struct config *dst, const struct config *src)
{
        _cleanup_(config_free) struct config t = *src;

        /* Own nothing yet, so that the cleanup frees only what this copy allocates. */
        for (size_t i = 0; i < ELEMENTSOF(hostd_keys); i++)
                if (value_is_string(hostd_keys[i].type))
                        *string_field(&t, &hostd_keys[i]) = NULL;
        t.sizes = NULL;
        t.n_sizes = 0;

        for (size_t i = 0; i < ELEMENTSOF(hostd_keys); i++) {
                if (!value_is_string(hostd_keys[i].type))
                        continue;
                const char *s = *string_field((void *)src, &hostd_keys[i]);
                if (s && !(*string_field(&t, &hostd_keys[i]) = strdup(s)))
                        return -ENOMEM;
        }
        if (src->n_sizes > 0) {
                t.sizes = calloc(src->n_sizes, sizeof *t.sizes);
                if (!t.sizes)
                        return -ENOMEM;
                for (size_t i = 0; i < src->n_sizes; i++) {
                        t.sizes[i] = src->sizes[i];
                        t.sizes[i].name = NULL;
                        t.n_sizes = i + 1;
                        if (src->sizes[i].name && !(t.sizes[i].name = strdup(src->sizes[i].name)))
                                return -ENOMEM;
                }
        }
        *dst = t;
        t = (struct config){};
        return 0;
}

int config_init_defaults(struct config *c)
{
        _cleanup_(config_free) struct config t = {
                .log_level = LOG_LEVEL_INFO,
                .grace_seconds = 30,
                .boot_timeout = 60,
                .attach_timeout = 30,
                .cycle_after = 24 * 3600,
                .cycle_jitter = 216 * 60,
                .hangup_interval = 5,
                .hangups = 3,
                .events_keep = 10000,
                .metrics_interval = 20,
                .runtime_metrics_interval = 20,
                .uid_min = 200000,
                .uid_max = 265535,
                .max_message = 4 * MiB,
                .max_connections = 256,
                .max_command = 16384,
                .max_env = 256,
                .max_env_bytes = 65536,
                .max_dynos = 1000,
                .reserved_memory = 1 * GiB,
                .memory_overcommit = 1.0,
                .shutdown_timeout = 90,
                .log_lines = 1500,
                .log_line_max = 10000,
                .rlimit_nofile = 10000,
                .shm_size = 64 * MiB,
                .image_max_compressed = 4 * GiB,
                .image_max_unpacked = 16 * GiB,
                .image_max_files = 1000000,
                .images_budget = 50 * GiB,
                .drain_buffer = 1024,
                .drain_backoff_max = 60,
                .tls_handshake_timeout = 10,
                .idle_timeout = 600,
                .max_inflight = 64,
                .keepalive = 60,
                .restart_backoff = { .seconds = { 0, 20 * 60, 40 * 60, 60 * 60, 180 * 60,
                                                  320 * 60 },
                                     .n = 6 },
        };

        if (!(t.socket_path = strdup("/run/hostd/hostd.sock")) ||
            !(t.run_dir = strdup("/run/hostd")) || !(t.state_dir = strdup("/var/lib/hostd")) ||
            !(t.layers_dir = strdup("/var/lib/hostd/layers")) ||
            !(t.images_dir = strdup("/var/lib/hostd/images")) || !(t.init_path = strdup("")) ||
            !(t.netd_socket = strdup("")) ||
            !(t.journal_socket = strdup("/run/systemd/journal/socket")) ||
            !(t.prometheus_file = strdup("")) || !(t.netns_dir = strdup("/run/hostd/netns")) ||
            !(t.cgroup_root = strdup("hostd")) || !(t.dynos_cgroup = strdup("")) ||
            !(t.default_size = strdup("standard-1x")) || !(t.dedicated_cpu_pool = strdup("auto")) ||
            !(t.read_group = strdup("hostd")) || !(t.drain_ca_file = strdup("")) ||
            !(t.listen_tls = strdup("")) || !(t.tls_cert = strdup("")) ||
            !(t.tls_key = strdup("")) || !(t.tls_ca = strdup("")) || !(t.tls_allow = strdup("")))
                return -ENOMEM;

        t.sizes = calloc(ELEMENTSOF(default_sizes), sizeof *t.sizes);
        if (!t.sizes)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(default_sizes); i++) {
                t.sizes[i] = (struct size_def){
                        .memory = default_sizes[i].memory,
                        .r15_multiple = default_sizes[i].r15_multiple,
                        .pids = default_sizes[i].pids,
                        .cpu_weight = default_sizes[i].cpu_weight,
                        .cpu_quota_pct = 0,
                        .dedicated_cpus = default_sizes[i].dedicated_cpus,
                        .swap = true,
                };
                t.n_sizes = i + 1;
                if (!(t.sizes[i].name = strdup(default_sizes[i].name)))
                        return -ENOMEM;
        }

        *c = t;
        t = (struct config){};
        return 0;
}

const struct size_def *config_find_size(const struct config *c, const char *name)
{
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_sizes; i++)
                if (c->sizes[i].name && strcmp(c->sizes[i].name, name) == 0)
                        return &c->sizes[i];
        return NULL;
}

struct parser {
        struct config *c; /* the copy being changed */
        const char *name; /* for messages */
        unsigned line;
        char *err;
        size_t errlen;

        enum { SECTION_NONE, SECTION_HOSTD, SECTION_SIZE } section;
        size_t size_index;
        /* per entry of c->sizes: the header line that created it, 0 for sizes that existed */
        unsigned *size_lines;

        unsigned default_size_line;
        unsigned uid_line;
        const char *uid_key; /* the uid key set last, named when the pair is wrong */
};

_printf_(4, 5) static int parse_error(struct parser *p, unsigned line, int r, const char *fmt, ...)
{
        if (!p->err || p->errlen == 0)
                return r;

        int n = line > 0 ? snprintf(p->err, p->errlen, "%s:%u: ", p->name, line) :
                           snprintf(p->err, p->errlen, "%s: ", p->name);
        if (n >= 0 && (size_t)n < p->errlen) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return r;
}

static int open_size_section(struct parser *p, const char *name)
{
        struct config *c = p->c;

        for (size_t i = 0; i < c->n_sizes; i++)
                if (strcmp(c->sizes[i].name, name) == 0) {
                        p->size_index = i;
                        return 0;
                }

        struct size_def *s = realloc(c->sizes, (c->n_sizes + 1) * sizeof *s);
        if (!s)
                return parse_error(p, p->line, -ENOMEM, "out of memory");
        c->sizes = s;
        unsigned *l = realloc(p->size_lines, (c->n_sizes + 1) * sizeof *l);
        if (!l)
                return parse_error(p, p->line, -ENOMEM, "out of memory");
        p->size_lines = l;

        char *n = strdup(name);
        if (!n)
                return parse_error(p, p->line, -ENOMEM, "out of memory");
        /* memory 0: not given yet; every valid value is at least 1M */
        c->sizes[c->n_sizes] = (struct size_def){
                .name = n,
                .r15_multiple = NEW_SIZE_R15_MULTIPLE,
                .pids = NEW_SIZE_PIDS,
                .cpu_weight = NEW_SIZE_CPU_WEIGHT,
                .swap = true,
        };
        p->size_lines[c->n_sizes] = p->line;
        p->size_index = c->n_sizes++;
        return 0;
}

static int parse_section(struct parser *p, char *s)
{
        size_t n = strlen(s);
        if (s[n - 1] != ']')
                return parse_error(p, p->line, -EINVAL, "invalid section header '%s' (no ']')", s);
        s[n - 1] = 0;
        char *inner = strip(s + 1);

        if (strcmp(inner, "hostd") == 0) {
                p->section = SECTION_HOSTD;
                return 0;
        }
        if (strcmp(inner, "size") == 0)
                return parse_error(p, p->line, -EINVAL,
                                   "section '[size]' needs a name: '[size NAME]'");
        if (startswith(inner, "size") && strchr(" \t", inner[4])) {
                const char *name = strip(inner + 4);
                if (!size_name_valid(name))
                        return parse_error(p, p->line, -EINVAL,
                                           "invalid size name '%s' (a-z, 0-9 and '-', 1 to %d "
                                           "characters)",
                                           name, SIZE_NAME_MAX);
                p->section = SECTION_SIZE;
                return open_size_section(p, name);
        }
        return parse_error(p, p->line, -EINVAL, "unknown section '[%s]'", inner);
}

static int parse_assignment(struct parser *p, char *s)
{
        char *eq = strchr(s, '=');
        if (!eq)
                return parse_error(p, p->line, -EINVAL, "missing '=' in '%s'", s);
        *eq = 0;
        const char *key = strip(s), *value = strip(eq + 1);
        if (key[0] == 0)
                return parse_error(p, p->line, -EINVAL, "missing key before '='");

        const struct key_def *table;
        size_t n;
        void *base;
        switch (p->section) {
        case SECTION_HOSTD:
                table = hostd_keys;
                n = ELEMENTSOF(hostd_keys);
                base = p->c;
                break;
        case SECTION_SIZE:
                table = size_keys;
                n = ELEMENTSOF(size_keys);
                base = &p->c->sizes[p->size_index];
                break;
        default:
                return parse_error(p, p->line, -EINVAL,
                                   "key '%s': outside of a section ([hostd] or [size NAME])", key);
        }

        const struct key_def *k = NULL;
        for (size_t i = 0; i < n && !k; i++)
                if (strcmp(table[i].name, key) == 0)
                        k = &table[i];
        if (!k) {
                if (p->section == SECTION_HOSTD)
                        return parse_error(p, p->line, -EINVAL, "key '%s': unknown key in [hostd]",
                                           key);
                return parse_error(p, p->line, -EINVAL, "key '%s': unknown key in [size %s]", key,
                                   p->c->sizes[p->size_index].name);
        }

        char why[256];
        int r = set_value(base, k, value, why, sizeof why);
        if (r < 0)
                return parse_error(p, p->line, r, "key '%s': %s", key, why);

        if (base == p->c && k->offset == offsetof(struct config, default_size))
                p->default_size_line = p->line;
        if (base == p->c && (k->offset == offsetof(struct config, uid_min) ||
                             k->offset == offsetof(struct config, uid_max))) {
                p->uid_line = p->line;
                p->uid_key = k->name;
        }
        return 0;
}

static int parse_line(struct parser *p, char *line)
{
        char *s = strip(line);
        if (s[0] == 0 || s[0] == '#' || s[0] == ';')
                return 0;
        if (s[0] == '[')
                return parse_section(p, s);
        return parse_assignment(p, s);
}

/* Checks that need the whole file: a setting may name a size defined further down. */
static int parse_finish(struct parser *p)
{
        struct config *c = p->c;

        for (size_t i = 0; i < c->n_sizes; i++)
                if (c->sizes[i].memory == 0)
                        return parse_error(p, p->size_lines ? p->size_lines[i] : 0, -EINVAL,
                                           "[size %s]: a new size needs 'memory'",
                                           c->sizes[i].name);

        if (!c->default_size || !config_find_size(c, c->default_size))
                return parse_error(p, p->default_size_line, -EINVAL,
                                   "key 'default-size': no such size '%s'",
                                   c->default_size ? c->default_size : "");

        if (c->uid_min >= c->uid_max)
                return parse_error(p, p->uid_line, -ERANGE,
                                   "key '%s': uid-min (%" PRIu32 ") must be less than uid-max "
                                   "(%" PRIu32 ")",
                                   p->uid_key ? p->uid_key : "uid-min", c->uid_min, c->uid_max);

        /* The files themselves are read at start (tls.c), where an unreadable one stops hostd. */
        if (c->listen_tls[0]) {
                const struct {
                        const char *key, *value;
                } need[] = { { "tls-cert", c->tls_cert },
                             { "tls-key", c->tls_key },
                             { "tls-ca", c->tls_ca } };
                for (size_t i = 0; i < ELEMENTSOF(need); i++)
                        if (!need[i].value[0])
                                return parse_error(p, 0, -EINVAL,
                                                   "key '%s': required when listen-tls is set",
                                                   need[i].key);
        }
        return 0;
}

static int parse_text(struct parser *p, const char *text, size_t len)
{
        char buf[LINE_MAX_BYTES + 1];
        const char *pos = text, *end = text + len;
        int r;

        while (pos < end) {
                const char *nl = memchr(pos, '\n', (size_t)(end - pos));
                size_t n = (size_t)((nl ? nl : end) - pos);

                p->line++;
                if (memchr(pos, 0, n))
                        return parse_error(p, p->line, -EINVAL, "NUL byte in line");
                if (n > LINE_MAX_BYTES)
                        return parse_error(p, p->line, -EINVAL,
                                           "line too long (more than %d bytes)", LINE_MAX_BYTES);
                memcpy(buf, pos, n);
                buf[n] = 0;
                r = parse_line(p, buf);
                if (r < 0)
                        return r;
                pos = nl ? nl + 1 : end;
        }
        return parse_finish(p);
}

static int load_buffer(struct config *c, const char *name, const char *text, size_t len, char *err,
                       size_t errlen)
{
        _cleanup_(config_free) struct config n = {};
        struct parser p = {
                .c = &n,
                .name = name ? name : "(config)",
                .err = err,
                .errlen = errlen,
        };
        int r;

        if (err && errlen > 0)
                err[0] = 0;

        r = config_copy(&n, c);
        if (r < 0)
                return parse_error(&p, 0, r, "out of memory");
        if (n.n_sizes > 0) {
                p.size_lines = calloc(n.n_sizes, sizeof *p.size_lines);
                if (!p.size_lines)
                        return parse_error(&p, 0, -ENOMEM, "out of memory");
        }

        r = parse_text(&p, text, len);
        free(p.size_lines);
        if (r < 0)
                return r;

        config_free(c);
        *c = n;
        n = (struct config){};
        return 0;
}

int config_load_string(struct config *c, const char *name, const char *text, char *err,
                       size_t errlen)
{
        return load_buffer(c, name, text, strlen(text), err, errlen);
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        r = read_full_file(path, &text, &len);
        if (r < 0) {
                if (err && errlen > 0)
                        return set_error(err, errlen, r, "%s: %s", path, strerror(-r));
        }
        return load_buffer(c, path, text, len, err, errlen);
}

void config_dump(const struct config *c, FILE *f)
{
        fputs("[hostd]\n", f);
        for (size_t i = 0; i < ELEMENTSOF(hostd_keys); i++)
                print_value(f, c, &hostd_keys[i]);

        for (size_t i = 0; i < c->n_sizes; i++) {
                fprintf(f, "\n[size %s]\n", c->sizes[i].name);
                for (size_t j = 0; j < ELEMENTSOF(size_keys); j++)
                        print_value(f, &c->sizes[i], &size_keys[j]);
        }
}
