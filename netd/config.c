/* netd's configuration file: systemd-style INI, one [netd] section, parsed strictly. */
#include "config.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/un.h>

#include "ipam.h"
#include "util.h"

#define NETD_SOCKET_DEFAULT "/run/netd/netd.sock"
#define NETD_STATE_DIR_DEFAULT "/var/lib/netd"
#define NETD_SUBNET_DEFAULT "10.217.0.0/16"
#define NETD_NETNS_DIR_DEFAULT "/run/hostd/netns"
#define NETD_MTU_DEFAULT 1500

static int set_string(char **field, const char *v)
{
        char *s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

int netd_config_init_defaults(struct netd_config *c)
{
        *c = (struct netd_config){
                .mtu = NETD_MTU_DEFAULT,
                .host_port_min = NFT_HOST_PORT_MIN_DEFAULT,
                .host_port_max = NFT_HOST_PORT_MAX_DEFAULT,
                .log_level = LOG_LEVEL_INFO,
        };
        if (set_string(&c->socket_path, NETD_SOCKET_DEFAULT) < 0 ||
            set_string(&c->state_dir, NETD_STATE_DIR_DEFAULT) < 0 ||
            set_string(&c->bridge, NFT_BRIDGE_DEFAULT) < 0 ||
            set_string(&c->subnet, NETD_SUBNET_DEFAULT) < 0 ||
            set_string(&c->table, NFT_TABLE_DEFAULT) < 0 ||
            set_string(&c->netns_dir, NETD_NETNS_DIR_DEFAULT) < 0) {
                netd_config_free(c);
                return -ENOMEM;
        }
        return 0;
}

void netd_config_free(struct netd_config *c)
{
        free(c->socket_path);
        free(c->state_dir);
        free(c->bridge);
        free(c->subnet);
        free(c->table);
        free(c->netns_dir);
        *c = (struct netd_config){};
}

static char *strip(char *s)
{
        s += strspn(s, " \t\r\f\v");
        size_t n = strlen(s);
        while (n > 0 && strchr(" \t\r\f\v", s[n - 1]))
                s[--n] = 0;
        return s;
}

static bool name_valid(const char *s, size_t max, bool first_alpha)
{
        size_t n = strlen(s);
        if (n < 1 || n > max)
                return false;
        if (first_alpha &&
            !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* "10.217.0.1 udp 53" */
static int parse_allow(struct netd_config *c, const char *v, char *why, size_t whylen)
{
        char addr[64], proto[8], port[16], extra[2];
        if (sscanf(v, "%63s %7s %15s %1s", addr, proto, port, extra) != 3) {
                snprintf(why, whylen, "expected 'ADDRESS tcp|udp PORT', got '%s'", v);
                return -EINVAL;
        }
        struct nft_host_service s = {};
        if (inet_pton(AF_INET, addr, &s.addr) != 1) {
                snprintf(why, whylen, "not an IPv4 address: '%s'", addr);
                return -EINVAL;
        }
        if (strcmp(proto, "tcp") == 0)
                s.proto = IPPROTO_TCP;
        else if (strcmp(proto, "udp") == 0)
                s.proto = IPPROTO_UDP;
        else {
                snprintf(why, whylen, "protocol '%s' is neither tcp nor udp", proto);
                return -EINVAL;
        }
        uint32_t p;
        if (safe_atou32(port, &p) < 0 || p < 1 || p > 65535) {
                snprintf(why, whylen, "port '%s' is not in 1..65535", port);
                return -EINVAL;
        }
        s.port = (uint16_t)p;
        if (c->n_allow >= NETD_ALLOW_MAX) {
                snprintf(why, whylen, "more than %d allow entries", NETD_ALLOW_MAX);
                return -EINVAL;
        }
        c->allow[c->n_allow++] = s;
        return 0;
}

bool netd_size_name_valid(const char *s)
{
        size_t n = strlen(s);
        return n >= 1 && n <= NETD_SIZE_NAME_MAX &&
               strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

int netd_parse_rate(const char *s, uint64_t *ret)
{
        static const struct {
                const char *unit;
                uint64_t bits;
        } units[] = {
                { "bit", 1 }, { "kbit", 1000 }, { "mbit", 1000000 }, { "gbit", 1000000000 },
                { "B/s", 8 }, { "kB/s", 8000 }, { "MB/s", 8000000 }, { "GB/s", 8000000000 },
        };
        size_t digits = strspn(s, "0123456789");
        if (digits == 0 || digits > 12)
                return -EINVAL;
        char num[16];
        memcpy(num, s, digits);
        num[digits] = 0;
        uint64_t v;
        if (safe_atou64(num, &v) < 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcasecmp(s + digits, units[i].unit) == 0) {
                        /* v < 10^12 and a unit <= 8*10^9: no overflow in 64 bits */
                        uint64_t bits = v * units[i].bits;
                        if (bits < NETD_EGRESS_RATE_MIN_BITS || bits > NETD_EGRESS_RATE_MAX_BITS)
                                return -ERANGE;
                        *ret = bits;
                        return 0;
                }
        return -EINVAL;
}

uint64_t netd_config_egress_rate(const struct netd_config *c, const char *size)
{
        for (size_t i = 0; size && i < c->n_egress_rate; i++)
                if (strcmp(c->egress_rate[i].size, size) == 0)
                        return c->egress_rate[i].bits_per_second;
        return 0;
}

/* "standard-1x 100mbit" */
static int parse_egress_rate(struct netd_config *c, const char *v, char *why, size_t whylen)
{
        char size[NETD_SIZE_NAME_MAX + 2], rate[32], extra[2];
        if (sscanf(v, "%64s %31s %1s", size, rate, extra) != 2) {
                snprintf(why, whylen, "expected 'SIZE RATE' (e.g. 'standard-1x 100mbit'), got '%s'",
                         v);
                return -EINVAL;
        }
        if (!netd_size_name_valid(size)) {
                snprintf(why, whylen, "invalid size name '%s' (1 to %d of a-z, 0-9 and -)", size,
                         NETD_SIZE_NAME_MAX);
                return -EINVAL;
        }
        uint64_t bits;
        int r = netd_parse_rate(rate, &bits);
        if (r == -ERANGE) {
                snprintf(why, whylen, "size %s: rate '%s' is not within 8kbit..17gbit", size, rate);
                return -EINVAL;
        }
        if (r < 0) {
                snprintf(why, whylen,
                         "size %s: invalid rate '%s' (an integer and bit, kbit, mbit, gbit, B/s, "
                         "kB/s, MB/s or GB/s)",
                         size, rate);
                return -EINVAL;
        }
        for (size_t i = 0; i < c->n_egress_rate; i++)
                if (strcmp(c->egress_rate[i].size, size) == 0) {
                        snprintf(why, whylen, "size %s is given a rate twice", size);
                        return -EINVAL;
                }
        if (c->n_egress_rate >= NETD_EGRESS_RATE_MAX) {
                snprintf(why, whylen, "more than %d egress-rate entries", NETD_EGRESS_RATE_MAX);
                return -EINVAL;
        }
        struct netd_egress_rate *e = &c->egress_rate[c->n_egress_rate++];
        memcpy(e->size, size, strlen(size) + 1); /* checked: fits */
        e->bits_per_second = bits;
        return 0;
}

/* A list key: entries separated by commas, or one per line; an empty entry is an error. */
static int parse_list(struct netd_config *c, const char *v,
                      int (*one)(struct netd_config *c, const char *v, char *why, size_t whylen),
                      char *why, size_t whylen)
{
        _cleanup_free_ char *copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        for (char *rest = copy, *t; (t = strsep(&rest, ","));) {
                int r = one(c, strip(t), why, whylen);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_port_range(struct netd_config *c, const char *v, char *why, size_t whylen)
{
        char lo[16], hi[16], extra[2];
        uint32_t a, b;
        if (sscanf(v, "%15[0-9]-%15[0-9]%1s", lo, hi, extra) != 2 || safe_atou32(lo, &a) < 0 ||
            safe_atou32(hi, &b) < 0 || a < 1 || b > 65535 || a > b) {
                snprintf(why, whylen, "expected a range MIN-MAX within 1..65535, got '%s'", v);
                return -EINVAL;
        }
        c->host_port_min = (uint16_t)a;
        c->host_port_max = (uint16_t)b;
        return 0;
}

struct list_seen {
        bool allow, egress_rate;
};

static int set_key(struct netd_config *c, const char *key, const char *v, struct list_seen *seen,
                   char *why, size_t whylen)
{
        uint32_t u;
        if (strcmp(key, "socket") == 0) {
                if (v[0] != '/' || strlen(v) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
                        snprintf(why, whylen, "not an absolute path that fits a unix socket");
                        return -EINVAL;
                }
                return set_string(&c->socket_path, v);
        }
        if (strcmp(key, "state-dir") == 0 || strcmp(key, "netns-dir") == 0) {
                if (v[0] != '/') {
                        snprintf(why, whylen, "not an absolute path: '%s'", v);
                        return -EINVAL;
                }
                return set_string(key[0] == 's' ? &c->state_dir : &c->netns_dir, v);
        }
        if (strcmp(key, "bridge") == 0) {
                if (!name_valid(v, IFNAMSIZ - 1, false)) {
                        snprintf(why, whylen, "invalid interface name '%s' ([A-Za-z0-9_-]{1,15})",
                                 v);
                        return -EINVAL;
                }
                return set_string(&c->bridge, v);
        }
        if (strcmp(key, "table") == 0) {
                if (!name_valid(v, NFT_NAME_MAX, true)) {
                        snprintf(why, whylen,
                                 "invalid table name '%s' ([A-Za-z_][A-Za-z0-9_-]{0,31})", v);
                        return -EINVAL;
                }
                return set_string(&c->table, v);
        }
        if (strcmp(key, "subnet") == 0) {
                struct in_addr net;
                unsigned prefix;
                if (ipam_parse_subnet(v, &net, &prefix, why, whylen) < 0)
                        return -EINVAL;
                return set_string(&c->subnet, v);
        }
        if (strcmp(key, "mtu") == 0) {
                if (safe_atou32(v, &u) < 0 || u < 68 || u > 65535) {
                        snprintf(why, whylen, "not a number in 68..65535: '%s'", v);
                        return -EINVAL;
                }
                c->mtu = u;
                return 0;
        }
        if (strcmp(key, "host-ports") == 0)
                return parse_port_range(c, v, why, whylen);
        if (strcmp(key, "log-level") == 0) {
                int l = log_parse_level(v);
                if (l < 0) {
                        snprintf(why, whylen,
                                 "unknown log level '%s' (err, warning, notice, info, debug)", v);
                        return -EINVAL;
                }
                c->log_level = l;
                return 0;
        }
        if (strcmp(key, "allow") == 0) {
                /* The first allow in the file replaces the defaults (none); an empty value
                 * clears the list, as systemd's list settings do. */
                if (!seen->allow || v[0] == 0)
                        c->n_allow = 0;
                seen->allow = true;
                return v[0] == 0 ? 0 : parse_list(c, v, parse_allow, why, whylen);
        }
        if (strcmp(key, "egress-rate") == 0) {
                /* as allow: the file's first replaces the defaults (none), empty clears */
                if (!seen->egress_rate || v[0] == 0)
                        c->n_egress_rate = 0;
                seen->egress_rate = true;
                return v[0] == 0 ? 0 : parse_list(c, v, parse_egress_rate, why, whylen);
        }
        snprintf(why, whylen, "unknown key");
        return -ENOENT;
}

/* Lines are cut at 4095 bytes, as fgets() into a 4096-byte buffer did before. */
#define NETD_LINE_MAX 4094

int netd_config_load_string(struct netd_config *c, const char *name, const char *text, size_t len,
                            char *err, size_t errlen)
{
        char line[NETD_LINE_MAX + 1];
        unsigned lineno = 0;
        bool in_section = false;
        struct list_seen seen = {};
        for (const char *pos = text, *end = text + len; pos < end;) {
                const char *nl = memchr(pos, '\n', (size_t)(end - pos));
                size_t n = (size_t)((nl ? nl : end) - pos);
                lineno++;
                if (n > NETD_LINE_MAX) {
                        return set_error(err, errlen, -EINVAL, "%s:%u: line too long", name,
                                         lineno);
                }
                /* fgets() read on past a NUL and strlen() then dropped the rest of the line:
                 * "bridge = br0\0x" was taken as br0. */
                if (memchr(pos, 0, n)) {
                        return set_error(err, errlen, -EINVAL, "%s:%u: NUL byte in line", name,
                                         lineno);
                }
                memcpy(line, pos, n);
                line[n] = 0;
                pos = nl ? nl + 1 : end;

                char *s = strip(line);
                if (s[0] == 0 || s[0] == '#' || s[0] == ';')
                        continue;
                if (s[0] == '[') {
                        if (strcmp(s, "[netd]") != 0) {
                                return set_error(err, errlen, -EINVAL,
                                                 "%s:%u: unknown section %s (only [netd])", name,
                                                 lineno, s);
                        }
                        in_section = true;
                        continue;
                }
                char *eq = strchr(s, '=');
                if (!eq) {
                        return set_error(err, errlen, -EINVAL, "%s:%u: expected KEY = VALUE", name,
                                         lineno);
                }
                *eq = 0;
                char *key = strip(s), *value = strip(eq + 1);
                if (!in_section) {
                        return set_error(err, errlen, -EINVAL,
                                         "%s:%u: key '%s' outside the [netd] section", name, lineno,
                                         key);
                }
                char why[256] = "";
                int r = set_key(c, key, value, &seen, why, sizeof why);
                if (r == -ENOMEM) {
                        return set_error(err, errlen, r, "%s:%u: out of memory", name, lineno);
                }
                if (r < 0) {
                        return set_error(err, errlen, -EINVAL, "%s:%u: %s: %s", name, lineno, key,
                                         why);
                }
        }
        return 0;
}

int netd_config_load_file(struct netd_config *c, const char *path, char *err, size_t errlen)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, &text, &len);
        if (r < 0) {
                return set_error(err, errlen, r, "%s: %s", path, strerror(-r));
        }
        return netd_config_load_string(c, path, text, len, err, errlen);
}
