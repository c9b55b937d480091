/* netd's manager; see netd.h.
 *
 * The record of what is attached is the ipam file (addresses) and the ports file (host ports
 * of web dynos). Links and firewall elements are derived from it: at start and in gc, what
 * the record does not explain is removed, and a record whose dyno's namespace file is gone is
 * detached. */
#include "netd.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "ipam.h"
#include "link-deleter.h"
#include "nft.h"
#include "ports.h"
#include "util.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

struct netd {
        const struct netd_config *cfg;
        struct ipam *ipam;
        struct ports *ports;
        struct nft_fw *fw;
        struct link_deleter *deleter;
        struct in_addr network, gateway;
        unsigned prefix;
};

static bool ns_alive(const char *dyno_id, void *userdata)
{
        struct netd *n = userdata;
        _cleanup_free_ char *p = strjoin3(n->cfg->netns_dir, "/", dyno_id);
        if (!p)
                return true;
        struct stat st;
        return !(stat(p, &st) < 0 && errno == ENOENT);
}

static uint32_t prefix_mask(unsigned p) { return p == 0 ? 0 : htonl(~0u << (32 - p)); }

/* The subnet must not overlap a route of the main table (the one /proc/net/route shows),
 * except the default route and netd's own bridge route. */
static int check_routes(struct netd *n)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/net/route", "re");
        if (!f)
                return log_error_errno(errno, "read /proc/net/route: %m");
        char line[512];
        uint32_t net = n->network.s_addr, mask = prefix_mask(n->prefix);
        bool header = true;
        while (fgets(line, sizeof line, f)) {
                if (header) {
                        header = false;
                        continue;
                }
                char ifname[IFNAMSIZ + 1];
                unsigned dst, gw, flags, refcnt, use, metric, rmask;
                if (sscanf(line, "%16s %x %x %x %u %u %u %x", ifname, &dst, &gw, &flags, &refcnt,
                           &use, &metric, &rmask) != 8)
                        continue;
                if (rmask == 0 || strcmp(ifname, n->cfg->bridge) == 0)
                        continue;
                /* Both are in network byte order as the kernel prints the raw words. */
                uint32_t m = ntohl(rmask) < ntohl(mask) ? rmask : mask;
                if ((dst & m) != (net & m))
                        continue;
                struct in_addr d = { dst };
                char buf[INET_ADDRSTRLEN];
                int plen = __builtin_popcount(rmask);
                log_error("subnet %s overlaps the host's route %s/%d on %s: choose another "
                          "subnet in the configuration",
                          n->cfg->subnet, inet_ntop(AF_INET, &d, buf, sizeof buf), plen, ifname);
                return -EADDRINUSE;
        }
        return 0;
}

static const char *ip_str(struct in_addr a, char buf[static INET_ADDRSTRLEN])
{
        return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* Have the dyno's veth deleted by the deleter's worker: the kernel takes tens of ms over it
 * (link-deleter.h), which the caller need not wait for. */
static int queue_veth_deletion(struct netd *n, const char *dyno_id)
{
        char ifname[IFNAMSIZ];
        int ifindex;
        int r = link_detach_find(dyno_id, &ifindex, ifname);
        if (r < 0 || ifindex == 0 || link_deleter_pending(n->deleter, ifname))
                return r;
        return link_deleter_queue(n->deleter, ifindex, ifname, dyno_id);
}

/* Undo everything of one dyno; every step is idempotent. The veth's deletion is queued, and
 * done after the return; the dyno is cut off before: no firewall element lets its address
 * through any more. */
static int detach_dyno(struct netd *n, const char *dyno_id, char *msg, size_t msglen)
{
        char nerr[512] = "";
        struct in_addr addr;
        struct ports_entry pe = {};
        bool have_addr = ipam_lookup(n->ipam, dyno_id, &addr) == 0;
        bool have_port = ports_lookup(n->ports, dyno_id, &pe) == 0;
        int r;
        if (have_addr) {
                r = nft_dyno_remove(n->fw, addr, have_port ? pe.host_port : 0, pe.dyno_port, nerr,
                                    sizeof nerr);
                if (r < 0) {
                        snprintf(msg, msglen, "dyno %s: firewall: %s", dyno_id, nerr);
                        return r;
                }
        }
        r = queue_veth_deletion(n, dyno_id);
        if (r < 0) {
                snprintf(msg, msglen, "dyno %s: delete its veth: %s", dyno_id, strerror(-r));
                return r;
        }
        r = ports_release(n->ports, dyno_id, NULL);
        if (r < 0) {
                snprintf(msg, msglen, "dyno %s: release its host port: %s", dyno_id, strerror(-r));
                return r;
        }
        r = ipam_release(n->ipam, dyno_id);
        if (r < 0) {
                snprintf(msg, msglen, "dyno %s: release its address: %s", dyno_id, strerror(-r));
                return r;
        }
        return 0;
}

static bool strv_contains(char *const *v, const char *s)
{
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

static int strv_push(char ***v, size_t *n, const char *s)
{
        char **nv = realloc(*v, (*n + 2) * sizeof *nv);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        nv[*n] = strdup(s);
        if (!nv[*n])
                return -ENOMEM;
        nv[++*n] = NULL;
        return 0;
}

/* Remove what belongs to no recorded attachment: veths, firewall elements. */
static int sweep_orphans(struct netd *n, char *msg, size_t msglen)
{
        _cleanup_strv_free_ char **ids = NULL;
        int r = link_list_attached(n->cfg->bridge, &ids);
        if (r < 0) {
                snprintf(msg, msglen, "list the veths on %s: %s", n->cfg->bridge, strerror(-r));
                return r;
        }
        for (char **id = ids; id && *id; id++) {
                if (dyno_instance_name_valid(*id) && ipam_lookup(n->ipam, *id, NULL) == 0)
                        continue;
                char ifname[IFNAMSIZ];
                if (link_host_ifname(*id, ifname) == 0 && link_deleter_pending(n->deleter, ifname))
                        continue; /* detached; its deletion is under way */
                log_info("dyno %s: removing its veth, which no attachment records", *id);
                r = link_detach(*id);
                if (r < 0) {
                        snprintf(msg, msglen, "dyno %s: delete its veth: %s", *id, strerror(-r));
                        return r;
                }
        }

        char nerr[512] = "";
        struct nft_elements el = {};
        r = nft_list_elements(n->fw, &el, nerr, sizeof nerr);
        if (r < 0) {
                snprintf(msg, msglen, "firewall: %s", nerr);
                return r;
        }
        _cleanup_free_ struct ipam_entry *held = NULL;
        size_t n_held = 0;
        r = ipam_list(n->ipam, false, &held, &n_held);
        if (r < 0) {
                nft_elements_done(&el);
                snprintf(msg, msglen, "list addresses: %s", strerror(-r));
                return r;
        }
        for (size_t i = 0; i < el.n_ports && r >= 0; i++) {
                const struct nft_port_map *pm = &el.ports[i];
                const char *owner = NULL;
                size_t np;
                const struct ports_entry *pe = ports_entries(n->ports, &np);
                for (size_t j = 0; j < np; j++)
                        if (pe[j].host_port == pm->host_port)
                                owner = pe[j].dyno_id;
                struct in_addr oa;
                if (owner && ipam_lookup(n->ipam, owner, &oa) == 0 && oa.s_addr == pm->addr.s_addr)
                        continue;
                char b[INET_ADDRSTRLEN];
                log_info("removing the firewall mapping of host port %u to %s, which no "
                         "attachment records",
                         pm->host_port, ip_str(pm->addr, b));
                /* That removes the address from @dynos too; its owner, if any, is put back
                 * below. */
                r = nft_dyno_remove(n->fw, pm->addr, pm->host_port, pm->dyno_port, nerr,
                                    sizeof nerr);
        }
        for (size_t i = 0; i < el.n_dynos && r >= 0; i++) {
                bool owned = false;
                for (size_t j = 0; j < n_held; j++)
                        if (held[j].addr.s_addr == el.dynos[i].s_addr)
                                owned = true;
                if (owned)
                        continue;
                char b[INET_ADDRSTRLEN];
                log_info("removing %s from the firewall: no attachment records it",
                         ip_str(el.dynos[i], b));
                r = nft_dyno_remove(n->fw, el.dynos[i], 0, 0, nerr, sizeof nerr);
        }
        nft_elements_done(&el);
        /* Put back what the recorded attachments need (idempotent). */
        for (size_t j = 0; j < n_held && r >= 0; j++) {
                struct ports_entry pe = {};
                bool web = ports_lookup(n->ports, held[j].dyno_id, &pe) == 0 &&
                           pe.host_port >= n->cfg->host_port_min &&
                           pe.host_port <= n->cfg->host_port_max;
                r = nft_dyno_add(n->fw, held[j].addr, web ? pe.host_port : 0,
                                 web ? pe.dyno_port : 0, nerr, sizeof nerr);
        }
        if (r < 0) {
                snprintf(msg, msglen, "firewall: %s", nerr);
                return r;
        }
        return 0;
}

/* Detach the recorded attachments that are not live (live NULL: all are, at start) or whose
 * namespace file is gone; ports without an address go too. */
static int reap(struct netd *n, char *const *live, bool check_live, char ***freed, size_t *n_freed,
                char *msg, size_t msglen)
{
        _cleanup_free_ struct ipam_entry *held = NULL;
        size_t n_held = 0;
        int r = ipam_list(n->ipam, false, &held, &n_held);
        if (r < 0) {
                snprintf(msg, msglen, "list addresses: %s", strerror(-r));
                return r;
        }
        for (size_t i = 0; i < n_held; i++) {
                const char *id = held[i].dyno_id;
                bool dead = !ns_alive(id, n);
                if (!dead && !(check_live && !strv_contains(live, id)))
                        continue;
                log_info("dyno %s: detaching (%s)", id,
                         dead ? "its network namespace is gone" : "not live");
                r = detach_dyno(n, id, msg, msglen);
                if (r < 0)
                        return r;
                if (freed && strv_push(freed, n_freed, id) < 0)
                        return -ENOMEM;
        }
        size_t np;
        const struct ports_entry *pe = ports_entries(n->ports, &np);
        for (size_t i = 0; i < np;) {
                if (ipam_lookup(n->ipam, pe[i].dyno_id, NULL) == 0) {
                        i++;
                        continue;
                }
                char id[DYNO_INSTANCE_NAME_MAX + 1];
                strcpy(id, pe[i].dyno_id);
                log_info("dyno %s: releasing host port %u, held without an address", id,
                         pe[i].host_port);
                r = detach_dyno(n, id, msg, msglen);
                if (r < 0)
                        return r;
                pe = ports_entries(n->ports, &np);
        }
        return 0;
}

void netd_free(struct netd *n)
{
        if (!n)
                return;
        link_deleter_free(n->deleter); /* deletes what is still queued */
        nft_fw_free(n->fw);
        ports_free(n->ports);
        if (n->ipam)
                ipam_free(n->ipam);
        free(n);
}

static int netd_setup(struct netd *n)
{
        const struct netd_config *cfg = n->cfg;
        char err[512] = "";
        int r = ipam_parse_subnet(cfg->subnet, &n->network, &n->prefix, err, sizeof err);
        if (r < 0) {
                log_error("subnet: %s", err);
                return r;
        }
        r = link_deleter_new(&n->deleter);
        if (r < 0)
                return log_error_errno(r, "start the thread that deletes veths: %m");
        r = check_routes(n);
        if (r < 0)
                return r;
        r = mkdir_p(cfg->state_dir, 0700);
        if (r < 0) {
                log_error_errno(-r, "create %s: %m", cfg->state_dir);
                return r;
        }
        _cleanup_free_ char *ipam_file = strjoin3(cfg->state_dir, "/", "ipam");
        _cleanup_free_ char *ports_file = strjoin3(cfg->state_dir, "/", "ports");
        if (!ipam_file || !ports_file) {
                return log_error_errno(ENOMEM, "out of memory");
        }
        r = ipam_open(ipam_file, cfg->subnet, ns_alive, n, &n->ipam, err, sizeof err);
        if (r < 0) {
                log_error("%s", err);
                return r;
        }
        r = ports_open(ports_file, cfg->host_port_min, cfg->host_port_max, &n->ports, err,
                       sizeof err);
        if (r < 0) {
                log_error("%s", err);
                return r;
        }
        /* Dynos' traffic is routed through the host; the NAT and filter rules assume it. */
        r = write_string_file("/proc/sys/net/ipv4/ip_forward", "1");
        if (r < 0)
                return log_error_errno(r, "enable IPv4 forwarding: %m");
        n->gateway = ipam_gateway(n->ipam);
        r = link_bridge_ensure(cfg->bridge, &n->gateway, (int)n->prefix, cfg->mtu);
        if (r < 0) {
                log_error_errno(-r, "bridge %s: %m", cfg->bridge);
                return r;
        }
        struct nft_config nc = {
                .table = cfg->table,
                .bridge = cfg->bridge,
                .subnet = { n->network, n->prefix },
                .host_port_min = cfg->host_port_min,
                .host_port_max = cfg->host_port_max,
                .allowed_host = cfg->allow,
                .n_allowed_host = cfg->n_allow,
        };
        r = nft_fw_new(&nc, &n->fw, err, sizeof err);
        if (r < 0) {
                log_error("firewall: %s", err);
                return r;
        }

        /* Reconcile with what an earlier run left, then install the table with the elements
         * of the dynos that stay, in one transaction: they keep their traffic throughout. */
        r = reap(n, NULL, false, NULL, NULL, err, sizeof err);
        if (r < 0) {
                log_error("reconcile: %s", err);
                return r;
        }
        _cleanup_free_ struct ipam_entry *held = NULL;
        size_t n_held = 0;
        r = ipam_list(n->ipam, false, &held, &n_held);
        if (r < 0)
                return r;
        size_t np;
        const struct ports_entry *pe = ports_entries(n->ports, &np);
        _cleanup_free_ struct in_addr *keep_addr = calloc(n_held + 1, sizeof *keep_addr);
        _cleanup_free_ struct nft_port_map *keep_ports = calloc(np + 1, sizeof *keep_ports);
        if (!keep_addr || !keep_ports)
                return -ENOMEM;
        for (size_t i = 0; i < n_held; i++)
                keep_addr[i] = held[i].addr;
        size_t nk = 0;
        for (size_t i = 0; i < np; i++) {
                struct in_addr a;
                if (ipam_lookup(n->ipam, pe[i].dyno_id, &a) < 0)
                        continue;
                /* a mapping outside a range the configuration has since narrowed is dropped
                 * from the table; the dyno keeps its port record until it goes */
                if (pe[i].host_port < cfg->host_port_min || pe[i].host_port > cfg->host_port_max)
                        continue;
                keep_ports[nk++] = (struct nft_port_map){ pe[i].host_port, a, pe[i].dyno_port };
        }
        struct nft_elements keep = { keep_addr, n_held, keep_ports, nk };
        r = nft_setup(n->fw, &keep, err, sizeof err);
        if (r < 0) {
                log_error("firewall: %s", err);
                return r;
        }
        r = sweep_orphans(n, err, sizeof err);
        if (r < 0) {
                log_error("reconcile: %s", err);
                return r;
        }
        /* What this start found to delete is gone before the first call is served. */
        link_deleter_drain(n->deleter);
        log_info("%zu dyno(s) attached from before", n_held);
        return 0;
}

int netd_new(const struct netd_config *cfg, struct netd **ret)
{
        struct netd *n = calloc(1, sizeof *n);
        if (!n)
                return log_error_errno(ENOMEM, "out of memory");
        n->cfg = cfg;
        int r = netd_setup(n);
        if (r < 0) {
                netd_free(n);
                return r;
        }
        *ret = n;
        return 0;
}

static int code_for(int r)
{
        switch (r) {
        case -ENOSPC:
        case -EXFULL: return API_RESOURCE_EXHAUSTED;
        case -EINVAL: return API_INVALID_ARGUMENT;
        case -ENOENT: return API_NOT_FOUND;
        case -EEXIST: return API_ALREADY_EXISTS;
        default: return API_INTERNAL;
        }
}

enum api_code netd_attach(struct netd *n, const char *dyno_id, const char *netns_path, bool web,
                          uint32_t port, const char *size, struct netd_attach_reply *ret, char *msg,
                          size_t msglen)
{
        char nerr[512] = "";
        if (!dyno_instance_name_valid(dyno_id)) {
                snprintf(msg, msglen,
                         "attach.dyno_id: not a dyno's instance name (an id of 1 to 63 of "
                         "A-Z a-z 0-9 . _ -, starting with a letter or digit, then maybe @N)");
                return API_INVALID_ARGUMENT;
        }
        if (!size)
                size = "";
        if (size[0] && !netd_size_name_valid(size)) {
                snprintf(msg, msglen,
                         "attach.size: dyno %s: invalid size name (1 to %d of a-z, 0-9 and -)",
                         dyno_id, NETD_SIZE_NAME_MAX);
                return API_INVALID_ARGUMENT;
        }
        _cleanup_free_ char *want = strjoin3(n->cfg->netns_dir, "/", dyno_id);
        if (!want)
                return snprintf(msg, msglen, "out of memory"), API_INTERNAL;
        if (strcmp(netns_path, want) != 0) {
                snprintf(msg, msglen, "attach.netns_path: dyno %s: must be %s", dyno_id, want);
                return API_INVALID_ARGUMENT;
        }
        struct statfs sfs;
        if (statfs(netns_path, &sfs) < 0) {
                snprintf(msg, msglen, "attach.netns_path: dyno %s: %s: %s", dyno_id, netns_path,
                         strerror(errno));
                return errno == ENOENT ? API_NOT_FOUND : API_INVALID_ARGUMENT;
        }
        if (sfs.f_type != NSFS_MAGIC) {
                snprintf(msg, msglen, "attach.netns_path: dyno %s: %s is not a namespace file",
                         dyno_id, netns_path);
                return API_INVALID_ARGUMENT;
        }
        if (web && (port < 1 || port > 65535)) {
                snprintf(msg, msglen, "attach.port: dyno %s: %u is not in 1..65535", dyno_id, port);
                return API_INVALID_ARGUMENT;
        }

        struct in_addr addr;
        int r = ipam_allocate(n->ipam, dyno_id, &addr);
        if (r < 0) {
                snprintf(msg, msglen, "dyno %s: allocate an address in %s: %s", dyno_id,
                         n->cfg->subnet, r == -ENOSPC ? "every address is in use" : strerror(-r));
                return code_for(r);
        }
        bool new_addr = r > 0, new_port = false;
        uint16_t host_port = 0;
        struct ports_entry old = {};
        if (ports_lookup(n->ports, dyno_id, &old) == 0)
                host_port = old.host_port; /* attached as web before: that stays */
        else if (web) {
                r = ports_allocate(n->ports, dyno_id, (uint16_t)port, &host_port);
                if (r < 0) {
                        snprintf(msg, msglen, "dyno %s: allocate a host port in %u-%u: %s", dyno_id,
                                 n->cfg->host_port_min, n->cfg->host_port_max,
                                 r == -ENOSPC ? "every port is in use" : strerror(-r));
                        goto undo;
                }
                new_port = true;
        }
        if (host_port && !web)
                port = old.dyno_port;

        struct link_attach_params p = {
                .dyno_id = dyno_id,
                .netns_path = netns_path,
                .bridge = n->cfg->bridge,
                .address = addr,
                .prefixlen = (int)n->prefix,
                .gateway = n->gateway,
                .mtu = n->cfg->mtu,
                /* a size without a configured rate: no limit */
                .egress_rate = netd_config_egress_rate(n->cfg, size) / 8,
        };
        struct link_attach_result lr = {};
        /* The dyno's veth of an earlier attach may still be on its way out: let it go first,
         * or the attach would find it, keep it, and see it deleted after. */
        char ifname[IFNAMSIZ];
        if (link_host_ifname(dyno_id, ifname) == 0)
                link_deleter_wait(n->deleter, ifname);
        r = link_attach(&p, &lr);
        if (r == -EXFULL && link_deleter_drain(n->deleter) > 0)
                /* the ports of dynos detached just before are still being freed */
                r = link_attach(&p, &lr);
        if (r == -EXFULL) {
                /* BR_MAX_PORTS: 1024 port numbers, 0 reserved (docs/INTERNALS.md) */
                snprintf(msg, msglen,
                         "dyno %s: bridge %s is full: the kernel gives a bridge at most 1023 "
                         "ports",
                         dyno_id, n->cfg->bridge);
                goto undo;
        }
        if (r < 0) {
                snprintf(msg, msglen, "dyno %s: set up its veth in %s: %s", dyno_id, netns_path,
                         strerror(-r));
                goto undo;
        }
        r = nft_dyno_add(n->fw, addr, host_port, host_port ? (uint16_t)port : 0, nerr, sizeof nerr);
        if (r < 0) {
                snprintf(msg, msglen, "dyno %s: firewall: %s", dyno_id, nerr);
                if (lr.created)
                        (void)link_detach(dyno_id);
                goto undo;
        }
        *ret = (struct netd_attach_reply){ .address = addr,
                                           .gateway = n->gateway,
                                           .host_port = host_port };
        memcpy(ret->mac, lr.mac, sizeof ret->mac);
        if (lr.created) {
                char b[INET_ADDRSTRLEN], hp[32] = "", rate[96] = "";
                if (host_port)
                        snprintf(hp, sizeof hp, ", host port %u", host_port);
                if (p.egress_rate)
                        snprintf(rate, sizeof rate,
                                 ", egress limited to %" PRIu64 " bit/s (size %s)",
                                 p.egress_rate * 8, size);
                log_info("dyno %s: attached, %s%s%s", dyno_id, ip_str(addr, b), hp, rate);
        }
        return API_OK;

undo:
        /* Release only what this call took: an earlier attach of the same dyno stays. */
        if (new_port)
                (void)ports_release(n->ports, dyno_id, NULL);
        if (new_addr)
                (void)ipam_release(n->ipam, dyno_id);
        log_warning("%s", msg);
        return code_for(r);
}

enum api_code netd_detach(struct netd *n, const char *dyno_id, char *msg, size_t msglen)
{
        if (!dyno_instance_name_valid(dyno_id)) {
                snprintf(msg, msglen, "detach.dyno_id: invalid dyno id");
                return API_INVALID_ARGUMENT;
        }
        bool held = ipam_lookup(n->ipam, dyno_id, NULL) == 0;
        int r = detach_dyno(n, dyno_id, msg, msglen);
        if (r < 0) {
                log_error("%s", msg);
                return API_INTERNAL;
        }
        if (held)
                log_info("dyno %s: detached", dyno_id);
        return API_OK;
}

enum api_code netd_gc(struct netd *n, char *const *live, char ***ret_freed, char *msg,
                      size_t msglen)
{
        for (char *const *l = live; l && *l; l++)
                if (!dyno_instance_name_valid(*l)) {
                        snprintf(msg, msglen, "gc.live_dyno_ids: invalid dyno id");
                        return API_INVALID_ARGUMENT;
                }
        char **freed = calloc(1, sizeof *freed);
        size_t n_freed = 0;
        if (!freed)
                return snprintf(msg, msglen, "out of memory"), API_INTERNAL;
        int r = reap(n, live, true, &freed, &n_freed, msg, msglen);
        if (r >= 0)
                r = sweep_orphans(n, msg, msglen);
        /* gc's caller counts on the links being gone, which is worth the wait at this rare
         * call; it waits for the deletions of earlier detaches too */
        link_deleter_drain(n->deleter);
        if (r >= 0) {
                r = ipam_sweep(n->ipam);
                if (r < 0)
                        snprintf(msg, msglen, "ipam: %s", strerror(-r));
        }
        if (r < 0) {
                log_error("gc: %s", msg);
                strv_free(freed);
                return API_INTERNAL;
        }
        *ret_freed = freed;
        return API_OK;
}

bool netd_attached(struct netd *n, const char *dyno_id)
{
        return ipam_lookup(n->ipam, dyno_id, NULL) == 0;
}

int netd_list(struct netd *n, struct netd_attachment **ret, size_t *ret_n)
{
        _cleanup_free_ struct ipam_entry *held = NULL;
        size_t n_held = 0;
        int r = ipam_list(n->ipam, false, &held, &n_held);
        if (r < 0)
                return r;
        struct netd_attachment *a = calloc(n_held + 1, sizeof *a);
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n_held; i++) {
                struct ports_entry pe = {};
                snprintf(a[i].dyno_id, sizeof a[i].dyno_id, "%s", held[i].dyno_id);
                a[i].address = held[i].addr;
                if (ports_lookup(n->ports, held[i].dyno_id, &pe) == 0)
                        a[i].host_port = pe.host_port;
        }
        *ret = a;
        *ret_n = n_held;
        return 0;
}
