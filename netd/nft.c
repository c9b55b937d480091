/* netd's firewall through libnftables: the table is written as nft's own language, built only
 * from validated values, and run with nft_run_cmd_from_buffer(); nft's error text is captured
 * in a buffer and turned into a negative errno and a one-line message. See nft.h. */
#include "nft.h"
#include "util.h"

#include <arpa/inet.h>
#include <nftables/libnftables.h>

struct nft_fw {
        struct nft_ctx *ctx;
        char table[NFT_NAME_MAX + 1];
        char bridge[16]; /* IFNAMSIZ */
        struct nft_cidr subnet;
        uint16_t host_port_min, host_port_max;
        struct nft_host_service *allowed_host;
        size_t n_allowed_host;
        struct nft_cidr *blocked;
        size_t n_blocked;
};

/* Link-local, where clouds put their metadata service (169.254.169.254). */
static const struct nft_cidr link_local = { .addr = { .s_addr = 0x0000fea9 }, .prefixlen = 16 };

static const char *addr_str(struct in_addr a, char buf[static INET_ADDRSTRLEN])
{
        return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static bool name_valid(const char *s, size_t max, bool letter_first)
{
        size_t n = strlen(s);
        if (n == 0 || n > max)
                return false;
        /* nft 1.0.6 takes no quoted table names, and an unquoted one cannot start with a digit
         * or a dash. */
        if (letter_first &&
            !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static uint32_t prefix_mask(unsigned prefixlen)
{
        return prefixlen == 0 ? 0 : UINT32_MAX << (32 - prefixlen);
}

static bool cidr_valid(const struct nft_cidr *c, unsigned min, unsigned max)
{
        return c->prefixlen >= min && c->prefixlen <= max &&
               (ntohl(c->addr.s_addr) & ~prefix_mask(c->prefixlen)) == 0;
}

/* A host address of the subnet: inside it, neither its network nor its broadcast address. */
static bool addr_in_subnet(const struct nft_fw *fw, struct in_addr a)
{
        uint32_t mask = prefix_mask(fw->subnet.prefixlen), h = ntohl(a.s_addr);
        uint32_t net = ntohl(fw->subnet.addr.s_addr);
        return (h & mask) == net && h != net && h != (net | ~mask);
}

static const char *proto_name(uint8_t proto)
{
        switch (proto) {
        case IPPROTO_TCP: return "tcp";
        case IPPROTO_UDP: return "udp";
        default: return NULL;
        }
}

void nft_elements_done(struct nft_elements *e)
{
        free(e->dynos);
        free(e->ports);
        *e = (struct nft_elements){};
}

struct nft_fw *nft_fw_free(struct nft_fw *fw)
{
        if (!fw)
                return NULL;
        if (fw->ctx)
                nft_ctx_free(fw->ctx);
        free(fw->allowed_host);
        free(fw->blocked);
        free(fw);
        return NULL;
}

const char *nft_fw_table(const struct nft_fw *fw) { return fw->table; }

static int config_check(const struct nft_config *c, char *err, size_t errlen)
{
        char a[INET_ADDRSTRLEN];

        if (c->table && c->table[0] && !name_valid(c->table, NFT_NAME_MAX, true)) {
                set_error(err, errlen, 0, "table name must match [A-Za-z_][A-Za-z0-9_-]{0,31}");
                return -EINVAL;
        }
        if (c->bridge && c->bridge[0] && !name_valid(c->bridge, 15, false)) {
                set_error(err, errlen, 0, "bridge name must match [A-Za-z0-9_-]{1,15}");
                return -EINVAL;
        }
        if (!cidr_valid(&c->subnet, 8, 30)) {
                set_error(err, errlen, 0,
                          "subnet %s/%u: want a prefix of 8 to 30 bits, host bits 0",
                          addr_str(c->subnet.addr, a), c->subnet.prefixlen);
                return -EINVAL;
        }
        if ((c->host_port_min || c->host_port_max) &&
            (c->host_port_min == 0 || c->host_port_min > c->host_port_max)) {
                set_error(err, errlen, 0, "host port range %u-%u is empty or starts at 0",
                          c->host_port_min, c->host_port_max);
                return -EINVAL;
        }
        for (size_t i = 0; i < c->n_allowed_host; i++) {
                const struct nft_host_service *s = &c->allowed_host[i];
                if (s->addr.s_addr == INADDR_ANY || !proto_name(s->proto) || s->port == 0) {
                        set_error(err, errlen, 0,
                                  "allowed host service %s proto %u port %u: want an address, "
                                  "tcp or udp and a port",
                                  addr_str(s->addr, a), s->proto, s->port);
                        return -EINVAL;
                }
        }
        for (size_t i = 0; i < c->n_blocked; i++)
                if (!cidr_valid(&c->blocked[i], 1, 32)) {
                        set_error(err, errlen, 0,
                                  "blocked prefix %s/%u: want 1 to 32 bits, host bits 0",
                                  addr_str(c->blocked[i].addr, a), c->blocked[i].prefixlen);
                        return -EINVAL;
                }
        return 0;
}

int nft_fw_new(const struct nft_config *c, struct nft_fw **ret, char *err, size_t errlen)
{
        _cleanup_nft_fw_ struct nft_fw *fw = NULL;
        int r;

        r = config_check(c, err, errlen);
        if (r < 0)
                return r;

        fw = calloc(1, sizeof(*fw));
        if (!fw)
                return -ENOMEM;
        snprintf(fw->table, sizeof(fw->table), "%s",
                 c->table && c->table[0] ? c->table : NFT_TABLE_DEFAULT);
        snprintf(fw->bridge, sizeof(fw->bridge), "%s",
                 c->bridge && c->bridge[0] ? c->bridge : NFT_BRIDGE_DEFAULT);
        fw->subnet = c->subnet;
        fw->host_port_min = c->host_port_min ? c->host_port_min : NFT_HOST_PORT_MIN_DEFAULT;
        fw->host_port_max = c->host_port_max ? c->host_port_max : NFT_HOST_PORT_MAX_DEFAULT;
        if (c->n_allowed_host > 0) {
                fw->allowed_host = calloc(c->n_allowed_host, sizeof(*fw->allowed_host));
                if (!fw->allowed_host)
                        return -ENOMEM;
                memcpy(fw->allowed_host, c->allowed_host,
                       c->n_allowed_host * sizeof(*fw->allowed_host));
                fw->n_allowed_host = c->n_allowed_host;
        }
        if (c->n_blocked > 0) {
                fw->blocked = calloc(c->n_blocked, sizeof(*fw->blocked));
                if (!fw->blocked)
                        return -ENOMEM;
                memcpy(fw->blocked, c->blocked, c->n_blocked * sizeof(*fw->blocked));
                fw->n_blocked = c->n_blocked;
        }

        fw->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!fw->ctx)
                return -ENOMEM;
        /* Plain listings: ports as numbers, no DNS lookups; both buffers kept for us. */
        nft_ctx_output_set_flags(fw->ctx, 0);
        if (nft_ctx_buffer_output(fw->ctx) < 0 || nft_ctx_buffer_error(fw->ctx) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(fw);
        return 0;
}

/* nft reports a kernel refusal as "Error: Could not process rule: <strerror>" and its own as
 * "Error: <text>". Recover the errno from the text; syntax errors are EINVAL. */
static int error_to_errno(const char *msg)
{
        static const int known[] = { ENOENT,     EEXIST,       EBUSY,           EPERM,
                                     EACCES,     ENOMEM,       ENOSPC,          E2BIG,
                                     EOPNOTSUPP, EAFNOSUPPORT, EPROTONOSUPPORT, ENOBUFS,
                                     EMSGSIZE,   ERANGE,       EOVERFLOW,       EINVAL };
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (strstr(msg, strerror(known[i])))
                        return -known[i];
        return strstr(msg, "syntax error") ? -EINVAL : -EIO;
}

/* Run a buffer of commands as one transaction. On failure, err gets "<what>: <nft's first
 * error> (at: <the command it names>)". */
static int fw_run(struct nft_fw *fw, const char *cmds, const char *what, char *err, size_t errlen)
{
        const char *text, *e, *eol, *ctx, *ctx_end;
        int r;

        r = nft_run_cmd_from_buffer(fw->ctx, cmds);
        text = nft_ctx_get_error_buffer(fw->ctx); /* also empties it for the next run */
        if (r == 0)
                return 0;

        text = text ? text : "";
        e = strstr(text, "Error: ");
        e = e ? e + strlen("Error: ") : text;
        eol = strchrnul(e, '\n');
        r = error_to_errno(strndupa(e, eol - e));

        /* The line after the message is the command nft refused. */
        ctx = *eol ? eol + 1 : eol;
        ctx += strspn(ctx, " \t");
        ctx_end = strchrnul(ctx, '\n');
        if (ctx_end > ctx)
                set_error(err, errlen, 0, "%s: %.*s (at: %.*s)", what, (int)(eol - e), e,
                          (int)(ctx_end - ctx), ctx);
        else
                set_error(err, errlen, 0, "%s: %.*s", what, (int)(eol - e), e);
        return r;
}

static bool port_map_valid(const struct nft_fw *fw, const struct nft_port_map *m, char *err,
                           size_t errlen)
{
        char a[INET_ADDRSTRLEN];

        if (!addr_in_subnet(fw, m->addr)) {
                set_error(err, errlen, 0, "dyno address %s is not a host address of the subnet",
                          addr_str(m->addr, a));
                return false;
        }
        if (m->host_port < fw->host_port_min || m->host_port > fw->host_port_max) {
                set_error(err, errlen, 0, "dyno %s: host port %u is outside %u-%u",
                          addr_str(m->addr, a), m->host_port, fw->host_port_min, fw->host_port_max);
                return false;
        }
        if (m->dyno_port == 0) {
                set_error(err, errlen, 0, "dyno %s: host port %u maps to port 0",
                          addr_str(m->addr, a), m->host_port);
                return false;
        }
        return true;
}

static void write_elements_dynos(FILE *f, const struct nft_elements *keep)
{
        char a[INET_ADDRSTRLEN];

        if (!keep || keep->n_dynos == 0)
                return;
        fputs("\t\telements = { ", f);
        for (size_t i = 0; i < keep->n_dynos; i++)
                fprintf(f, "%s%s", i ? ", " : "", addr_str(keep->dynos[i], a));
        fputs(" }\n", f);
}

static void write_elements_ports(FILE *f, const struct nft_elements *keep)
{
        char a[INET_ADDRSTRLEN];

        if (!keep || keep->n_ports == 0)
                return;
        fputs("\t\telements = { ", f);
        for (size_t i = 0; i < keep->n_ports; i++)
                fprintf(f, "%s%u : %s . %u", i ? ", " : "", keep->ports[i].host_port,
                        addr_str(keep->ports[i].addr, a), keep->ports[i].dyno_port);
        fputs(" }\n", f);
}

int nft_setup(struct nft_fw *fw, const struct nft_elements *keep, char *err, size_t errlen)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        _cleanup_fclose_ FILE *f = NULL;
        char a[INET_ADDRSTRLEN], what[64];
        const char *t = fw->table, *b = fw->bridge;

        for (size_t i = 0; keep && i < keep->n_dynos; i++)
                if (!addr_in_subnet(fw, keep->dynos[i])) {
                        set_error(err, errlen, 0,
                                  "dyno address %s is not a host address of the subnet",
                                  addr_str(keep->dynos[i], a));
                        return -EINVAL;
                }
        for (size_t i = 0; keep && i < keep->n_ports; i++)
                if (!port_map_valid(fw, &keep->ports[i], err, errlen))
                        return -EINVAL;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;

        /* "add; delete" first, so the same transaction works whether the table exists or not. */
        fprintf(f, "add table inet %s\ndelete table inet %s\ntable inet %s {\n", t, t, t);

        fputs("\tset dynos {\n\t\ttype ipv4_addr\n", f);
        write_elements_dynos(f, keep);
        fputs("\t}\n", f);

        fputs("\tmap ports {\n\t\ttype inet_service : ipv4_addr . inet_service\n", f);
        write_elements_ports(f, keep);
        fputs("\t}\n", f);

        fputs("\tset allowed_host {\n\t\ttype ipv4_addr . inet_proto . inet_service\n", f);
        for (size_t i = 0; i < fw->n_allowed_host; i++)
                fprintf(f, "%s%s . %s . %u%s", i ? ", " : "\t\telements = { ",
                        addr_str(fw->allowed_host[i].addr, a),
                        proto_name(fw->allowed_host[i].proto), fw->allowed_host[i].port,
                        i + 1 == fw->n_allowed_host ? " }\n" : "");
        fputs("\t}\n", f);

        fputs("\tset blocked {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n", f);
        fprintf(f, "\t\telements = { %s/%u", addr_str(link_local.addr, a), link_local.prefixlen);
        for (size_t i = 0; i < fw->n_blocked; i++)
                fprintf(f, ", %s/%u", addr_str(fw->blocked[i].addr, a), fw->blocked[i].prefixlen);
        fputs(" }\n\t}\n", f);

        /* DNAT whatever arrives for a local address on a mapped port; a port not in the map
         * makes the lookup fail and the rule not match. */
        fputs("\tchain prerouting {\n"
              "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
              "\t\tfib daddr type local dnat ip to tcp dport map @ports\n"
              "\t}\n",
              f);
        /* The host's own connections; 127.0.0.0/8 stays local (the kernel drops loopback
         * sources routed out of lo unless route_localnet is set). nft 1.0.6 does not accept
         * the name dstnat for the output hook of an inet table: -100 is its value. */
        fputs("\tchain output {\n"
              "\t\ttype nat hook output priority -100; policy accept;\n"
              "\t\tip daddr != 127.0.0.0/8 fib daddr type local dnat ip to tcp dport map @ports\n"
              "\t}\n",
              f);
        fprintf(f,
                "\tchain postrouting {\n"
                "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
                "\t\tip saddr %s/%u oifname != \"%s\" masquerade\n"
                "\t}\n",
                addr_str(fw->subnet.addr, a), fw->subnet.prefixlen, b);
        fprintf(f,
                "\tchain forward {\n"
                "\t\ttype filter hook forward priority filter; policy accept;\n"
                "\t\tiifname \"%s\" oifname \"%s\" drop\n"
                "\t\tiifname \"%s\" meta nfproto != ipv4 drop\n"
                "\t\tiifname \"%s\" ip saddr != @dynos drop\n"
                "\t\tiifname \"%s\" ip daddr @blocked drop\n"
                "\t\toifname \"%s\" ct state established,related accept\n"
                "\t\toifname \"%s\" ct status dnat accept\n"
                "\t\toifname \"%s\" drop\n"
                "\t}\n",
                b, b, b, b, b, b, b, b);
        fprintf(f,
                "\tchain input {\n"
                "\t\ttype filter hook input priority filter; policy accept;\n"
                "\t\tiifname \"%s\" ct state established,related accept\n"
                "\t\tiifname \"%s\" ip daddr . meta l4proto . th dport @allowed_host accept\n"
                "\t\tiifname \"%s\" drop\n"
                "\t}\n"
                "}\n",
                b, b, b);

        if (fflush(f) != 0 || ferror(f))
                return -ENOMEM;
        snprintf(what, sizeof(what), "set up table inet %s", t);
        return fw_run(fw, buf, what, err, errlen);
}

int nft_teardown(struct nft_fw *fw, char *err, size_t errlen)
{
        char cmd[128], what[64];

        snprintf(cmd, sizeof(cmd), "add table inet %s\ndelete table inet %s\n", fw->table,
                 fw->table);
        snprintf(what, sizeof(what), "delete table inet %s", fw->table);
        return fw_run(fw, cmd, what, err, errlen);
}

int nft_dyno_add(struct nft_fw *fw, struct in_addr addr, uint16_t host_port, uint16_t dyno_port,
                 char *err, size_t errlen)
{
        const struct nft_port_map m = { host_port, addr, dyno_port };
        char a[INET_ADDRSTRLEN], cmd[256], what[96];
        int r;

        if (!addr_in_subnet(fw, addr)) {
                set_error(err, errlen, 0, "dyno address %s is not a host address of the subnet",
                          addr_str(addr, a));
                return -EINVAL;
        }
        if (host_port != 0 && !port_map_valid(fw, &m, err, errlen))
                return -EINVAL;

        addr_str(addr, a);
        if (host_port == 0) {
                snprintf(cmd, sizeof(cmd), "add element inet %s dynos { %s }\n", fw->table, a);
                snprintf(what, sizeof(what), "add dyno %s", a);
        } else {
                snprintf(cmd, sizeof(cmd),
                         "add element inet %s dynos { %s }\n"
                         "add element inet %s ports { %u : %s . %u }\n",
                         fw->table, a, fw->table, host_port, a, dyno_port);
                snprintf(what, sizeof(what), "add dyno %s with host port %u -> %u", a, host_port,
                         dyno_port);
        }
        r = fw_run(fw, cmd, what, err, errlen);
        if (r == -EEXIST && host_port != 0)
                /* "add" of an element that exists with the same data succeeds; this is a
                 * mapping to something else. */
                set_error(err, errlen, 0, "add dyno %s: host port %u is mapped to another dyno", a,
                          host_port);
        return r;
}

/* Parse "... elements = { x, y, ... } ..." and call one() on each trimmed item. */
static int for_each_element(const char *text, int (*one)(const char *item, void *userdata),
                            void *userdata)
{
        const char *p = strstr(text, "elements = {"), *end;

        if (!p)
                return 0; /* an empty set lists no elements line */
        p += strlen("elements = {");
        end = strchr(p, '}');
        if (!end)
                return -EBADMSG;
        while (p < end) {
                const char *comma = memchr(p, ',', end - p), *stop = comma ? comma : end;
                const char *s = p, *e = stop;
                char item[64];
                int r;

                while (s < e && strchr(" \t\n", *s))
                        s++;
                while (e > s && strchr(" \t\n", e[-1]))
                        e--;
                if (e > s) {
                        if ((size_t)(e - s) >= sizeof(item))
                                return -EBADMSG;
                        memcpy(item, s, e - s);
                        item[e - s] = 0;
                        r = one(item, userdata);
                        if (r < 0)
                                return r;
                }
                p = stop + 1;
        }
        return 0;
}

static int parse_port_map(const char *item, struct nft_port_map *ret)
{
        char a[INET_ADDRSTRLEN];
        unsigned hp, dp;
        int n = -1;

        if (sscanf(item, "%u : %15[0-9.] . %u%n", &hp, a, &dp, &n) != 3 || item[n] != 0 ||
            hp == 0 || hp > 65535 || dp > 65535 || inet_pton(AF_INET, a, &ret->addr) != 1)
                return -EBADMSG;
        ret->host_port = hp;
        ret->dyno_port = dp;
        return 0;
}

static int add_dyno_item(const char *item, void *userdata)
{
        struct nft_elements *e = userdata;
        struct in_addr addr, *n;

        if (inet_pton(AF_INET, item, &addr) != 1)
                return -EBADMSG;
        n = reallocarray(e->dynos, e->n_dynos + 1, sizeof(*e->dynos));
        if (!n)
                return -ENOMEM;
        e->dynos = n;
        e->dynos[e->n_dynos++] = addr;
        return 0;
}

static int add_port_item(const char *item, void *userdata)
{
        struct nft_elements *e = userdata;
        struct nft_port_map m, *n;
        int r;

        r = parse_port_map(item, &m);
        if (r < 0)
                return r;
        n = reallocarray(e->ports, e->n_ports + 1, sizeof(*e->ports));
        if (!n)
                return -ENOMEM;
        e->ports = n;
        e->ports[e->n_ports++] = m;
        return 0;
}

/* Run one listing command and return nft's text output (owned by the context until the next
 * command). */
static int fw_list(struct nft_fw *fw, const char *cmd, const char *what, const char **ret,
                   char *err, size_t errlen)
{
        int r;

        r = fw_run(fw, cmd, what, err, errlen);
        *ret = nft_ctx_get_output_buffer(fw->ctx); /* empties it for the next run */
        if (r < 0)
                return r;
        if (!*ret)
                return -ENOMEM;
        return 0;
}

int nft_list_elements(struct nft_fw *fw, struct nft_elements *ret, char *err, size_t errlen)
{
        _cleanup_(nft_elements_done) struct nft_elements e = {};
        const char *text;
        char cmd[128], what[64];
        int r;

        snprintf(cmd, sizeof(cmd), "list set inet %s dynos\n", fw->table);
        snprintf(what, sizeof(what), "list set inet %s dynos", fw->table);
        r = fw_list(fw, cmd, what, &text, err, errlen);
        if (r < 0)
                return r;
        r = for_each_element(text, add_dyno_item, &e);
        if (r < 0) {
                set_error(err, errlen, 0, "%s: cannot parse nft's listing", what);
                return r;
        }

        snprintf(cmd, sizeof(cmd), "list map inet %s ports\n", fw->table);
        snprintf(what, sizeof(what), "list map inet %s ports", fw->table);
        r = fw_list(fw, cmd, what, &text, err, errlen);
        if (r < 0)
                return r;
        r = for_each_element(text, add_port_item, &e);
        if (r < 0) {
                set_error(err, errlen, 0, "%s: cannot parse nft's listing", what);
                return r;
        }

        *ret = e;
        e = (struct nft_elements){};
        return 0;
}

/* The mapping at host_port, or -ENOENT. */
static int port_lookup(struct nft_fw *fw, uint16_t host_port, struct nft_port_map *ret, char *err,
                       size_t errlen)
{
        struct nft_elements e = {};
        const char *text;
        char cmd[128], what[64];
        int r;

        snprintf(cmd, sizeof(cmd), "get element inet %s ports { %u }\n", fw->table, host_port);
        snprintf(what, sizeof(what), "look up host port %u", host_port);
        r = fw_list(fw, cmd, what, &text, err, errlen);
        if (r < 0)
                return r;
        r = for_each_element(text, add_port_item, &e);
        if (r >= 0 && e.n_ports == 1 && e.ports[0].host_port == host_port)
                *ret = e.ports[0];
        else
                r = r < 0 ? r : -ENOENT;
        nft_elements_done(&e);
        return r;
}

int nft_dyno_remove(struct nft_fw *fw, struct in_addr addr, uint16_t host_port, uint16_t dyno_port,
                    char *err, size_t errlen)
{
        char a[INET_ADDRSTRLEN], cmd[512], what[96];
        const char *t = fw->table;
        int r;

        if (!addr_in_subnet(fw, addr)) {
                set_error(err, errlen, 0, "dyno address %s is not a host address of the subnet",
                          addr_str(addr, a));
                return -EINVAL;
        }
        addr_str(addr, a);

        for (unsigned attempt = 0;; attempt++) {
                if (host_port != 0 && dyno_port == 0) {
                        struct nft_port_map m;
                        r = port_lookup(fw, host_port, &m, err, errlen);
                        if (r == -ENOENT || (r >= 0 && m.addr.s_addr != addr.s_addr))
                                host_port = 0; /* no mapping, or someone else's */
                        else if (r < 0)
                                return r;
                        else
                                dyno_port = m.dyno_port;
                }

                /* 1.0.6 has no "destroy": adding first makes the delete always find the element.
                 * The add of the mapping fails with EEXIST, changing nothing, when host_port
                 * maps elsewhere (another dyno, or another port of this one: then look it up). */
                if (host_port == 0)
                        snprintf(cmd, sizeof(cmd),
                                 "add element inet %s dynos { %s }\n"
                                 "delete element inet %s dynos { %s }\n",
                                 t, a, t, a);
                else
                        snprintf(cmd, sizeof(cmd),
                                 "add element inet %s dynos { %s }\n"
                                 "add element inet %s ports { %u : %s . %u }\n"
                                 "delete element inet %s dynos { %s }\n"
                                 "delete element inet %s ports { %u }\n",
                                 t, a, t, host_port, a, dyno_port, t, a, t, host_port);
                snprintf(what, sizeof(what), "remove dyno %s", a);
                r = fw_run(fw, cmd, what, err, errlen);
                if (r == -EEXIST && host_port != 0 && attempt < 2) {
                        dyno_port = 0;
                        continue;
                }
                /* No table, no set: nothing of the dyno's is left either. */
                return r == -ENOENT ? 0 : r;
        }
}
