/* Dedicated CPUs: the pool, its holders, and the shared dynos' CPUs (see cpus.h). */
#include "cpus.h"

#include "cgroup.h"
#include "config.h"
#include "util.h"

#include <stdarg.h>

/* ---- CPU lists ---- */

static void bits_set(struct cpu_bits *b, unsigned cpu) { b->w[cpu / 64] |= 1ULL << (cpu % 64); }

static void bits_clear(struct cpu_bits *b, unsigned cpu)
{
        b->w[cpu / 64] &= ~(1ULL << (cpu % 64));
}

unsigned cpubits_count(const struct cpu_bits *b)
{
        unsigned n = 0;
        for (size_t i = 0; i < ELEMENTSOF(b->w); i++)
                n += (unsigned)__builtin_popcountll(b->w[i]);
        return n;
}

static bool bits_subset(const struct cpu_bits *a, const struct cpu_bits *b)
{
        for (size_t i = 0; i < ELEMENTSOF(a->w); i++)
                if (a->w[i] & ~b->w[i])
                        return false;
        return true;
}

static bool bits_disjoint(const struct cpu_bits *a, const struct cpu_bits *b)
{
        for (size_t i = 0; i < ELEMENTSOF(a->w); i++)
                if (a->w[i] & b->w[i])
                        return false;
        return true;
}

/* a & ~b */
static struct cpu_bits bits_minus(const struct cpu_bits *a, const struct cpu_bits *b)
{
        struct cpu_bits r;
        for (size_t i = 0; i < ELEMENTSOF(a->w); i++)
                r.w[i] = a->w[i] & ~b->w[i];
        return r;
}

static int parse_cpu(const char **p, unsigned *ret)
{
        const char *s = *p;
        if (*s < '0' || *s > '9')
                return -EINVAL;
        unsigned long v = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (unsigned long)(*s - '0');
                if (v >= CPUS_MAX)
                        return -ERANGE;
        }
        *p = s;
        *ret = (unsigned)v;
        return 0;
}

int cpulist_parse(const char *s, struct cpu_bits *ret)
{
        struct cpu_bits b = {};
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
                n--;
        if (n == 0) {
                *ret = b;
                return 0;
        }
        _cleanup_free_ char *t = strndup(s, n);
        if (!t)
                return -ENOMEM;
        for (const char *p = t;;) {
                unsigned lo, hi;
                int r = parse_cpu(&p, &lo);
                if (r < 0)
                        return r;
                hi = lo;
                if (*p == '-') {
                        p++;
                        r = parse_cpu(&p, &hi);
                        if (r < 0)
                                return r;
                        if (hi < lo)
                                return -EINVAL;
                }
                for (unsigned c = lo; c <= hi; c++)
                        bits_set(&b, c);
                if (!*p)
                        break;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
        *ret = b;
        return 0;
}

int cpulist_format(const struct cpu_bits *b, char **ret)
{
        /* At most CPUS_MAX/2 items of "dddd," plus ranges: generous. */
        size_t cap = 64, len = 0;
        char *s = malloc(cap);
        if (!s)
                return -ENOMEM;
        s[0] = 0;
        for (unsigned c = 0; c < CPUS_MAX;) {
                if (!cpubits_test(b, c)) {
                        c++;
                        continue;
                }
                unsigned e = c;
                while (e + 1 < CPUS_MAX && cpubits_test(b, e + 1))
                        e++;
                char item[32];
                int k = e == c ? snprintf(item, sizeof item, "%s%u", len ? "," : "", c) :
                                 snprintf(item, sizeof item, "%s%u-%u", len ? "," : "", c, e);
                if (len + (size_t)k + 1 > cap) {
                        char *ns = realloc(s, cap * 2 + (size_t)k);
                        if (!ns) {
                                free(s);
                                return -ENOMEM;
                        }
                        s = ns;
                        cap = cap * 2 + (size_t)k;
                }
                memcpy(s + len, item, (size_t)k + 1);
                len += (size_t)k;
                c = e + 1;
        }
        *ret = s;
        return 0;
}

bool cpu_pool_spec_valid(const char *spec)
{
        struct cpu_bits b;
        return strcmp(spec, "auto") == 0 || strcmp(spec, "none") == 0 ||
               (*spec && cpulist_parse(spec, &b) == 0);
}

/* ---- the pool ---- */

struct holder {
        char *id;
        struct cpu_bits cpus;
        char *list;
};

struct cpu_pool {
        struct cg_manager *cg;
        struct cpu_bits available; /* every CPU hostd may use */
        struct cpu_bits pool;      /* those that may be dedicated */
        struct cpu_bits held;      /* the union of the holders' */
        char *pool_list;
        char *shared_list; /* available & ~held; NULL when the pool is empty */
        struct holder *holders;
        size_t n_holders;
        bool synced; /* cpu_pool_sync has run: changes move the shared dynos */
};

static struct holder *find_holder(const struct cpu_pool *p, const char *id)
{
        for (size_t i = 0; i < p->n_holders; i++)
                if (strcmp(p->holders[i].id, id) == 0)
                        return &p->holders[i];
        return NULL;
}

/* Recompute the shared list; 1 when it changed. */
static int update_shared(struct cpu_pool *p)
{
        if (cpubits_count(&p->pool) == 0)
                return 0;
        struct cpu_bits s = bits_minus(&p->available, &p->held);
        char *list;
        int r = cpulist_format(&s, &list);
        if (r < 0)
                return r;
        bool changed = !p->shared_list || strcmp(list, p->shared_list) != 0;
        free(p->shared_list);
        p->shared_list = list;
        return changed;
}

void cpu_pool_sync(struct cpu_pool *p)
{
        p->synced = true;
        if (!p->cg || !p->shared_list)
                return;
        _cleanup_strv_free_ char **ids = NULL;
        int r = cg_list(p->cg, &ids);
        if (r < 0) {
                log_error_errno(r, "dedicated CPUs: list the dynos' cgroups: %m");
                return;
        }
        for (char **id = ids; *id; id++) {
                if (find_holder(p, *id))
                        continue;
                r = cg_set_cpus(p->cg, *id, p->shared_list);
                /* Gone meanwhile, or (v1) made without a cpuset folder by an older hostd. */
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        log_warning_errno(r, "dyno %s: move to the shared CPUs %s: %m", *id,
                                          p->shared_list);
        }
}

static void changed(struct cpu_pool *p)
{
        int r = update_shared(p);
        if (r < 0)
                log_error_errno(r, "dedicated CPUs: %m");
        else if (r > 0 && p->synced)
                cpu_pool_sync(p);
}

int cpu_pool_new(const char *spec, const char *available, struct cg_manager *cg,
                 struct cpu_pool **ret, char *err, size_t errlen)
{
        if (!spec || !cpu_pool_spec_valid(spec))
                return set_error(err, errlen, -EINVAL,
                                 "dedicated-cpu-pool '%s': not 'auto', 'none' or a CPU list",
                                 spec ?: "");
        struct cpu_pool *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->cg = cg;
        int r = 0;
        if (available && (r = cpulist_parse(available, &p->available)) < 0) {
                r = set_error(err, errlen, r, "the CPUs hostd may use: '%s' is not a CPU list",
                              available);
                goto out;
        }
        if (strcmp(spec, "auto") == 0) {
                /* Every CPU but the lowest, which stays for hostd, the host and shared dynos. */
                p->pool = p->available;
                for (unsigned c = 0; c < CPUS_MAX; c++)
                        if (cpubits_test(&p->pool, c)) {
                                bits_clear(&p->pool, c);
                                break;
                        }
        } else if (strcmp(spec, "none") != 0) {
                (void)cpulist_parse(spec, &p->pool); /* checked above */
                if (!available) {
                        r = set_error(err, errlen, -EOPNOTSUPP,
                                      "dedicated-cpu-pool %s: hostd has no cpuset controller",
                                      spec);
                        goto out;
                }
                if (!bits_subset(&p->pool, &p->available)) {
                        struct cpu_bits out = bits_minus(&p->pool, &p->available);
                        _cleanup_free_ char *o = NULL;
                        r = cpulist_format(&out, &o);
                        if (r == 0)
                                r = set_error(err, errlen, -EINVAL,
                                              "dedicated-cpu-pool %s: CPU %s not online or not "
                                              "allowed to hostd (it may use %s)",
                                              spec, o, available);
                        goto out;
                }
                if (cpubits_count(&p->pool) == cpubits_count(&p->available)) {
                        r = set_error(err, errlen, -EINVAL,
                                      "dedicated-cpu-pool %s: takes every CPU hostd may use (%s); "
                                      "leave at least one for hostd and shared dynos",
                                      spec, available);
                        goto out;
                }
        }
        r = cpulist_format(&p->pool, &p->pool_list);
        if (r >= 0)
                r = update_shared(p);
out:
        if (r < 0) {
                cpu_pool_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int read_online(char **ret)
{
        int r = read_full_file("/sys/devices/system/cpu/online", ret, NULL);
        if (r < 0)
                return r;
        (*ret)[strcspn(*ret, "\n")] = 0;
        return 0;
}

int cpus_setup(const struct config *c, struct cg_manager *cg, struct cpu_pool **ret, char *err,
               size_t errlen)
{
        _cleanup_free_ char *online = NULL, *avail = NULL, *both = NULL;
        int r = read_online(&online);
        if (r < 0)
                return set_error(err, errlen, r, "read /sys/devices/system/cpu/online: %s",
                                 strerror(-r));
        r = cg_cpus_available(cg, &avail);
        if (r < 0 && r != -EOPNOTSUPP)
                return set_error(err, errlen, r, "read the CPUs of hostd's cgroup: %s",
                                 strerror(-r));
        if (avail) {
                struct cpu_bits a, o;
                if (cpulist_parse(avail, &a) < 0 || cpulist_parse(online, &o) < 0)
                        return set_error(err, errlen, -EINVAL, "unreadable CPU lists '%s', '%s'",
                                         avail, online);
                for (size_t i = 0; i < ELEMENTSOF(a.w); i++)
                        a.w[i] &= o.w[i];
                r = cpulist_format(&a, &both);
                if (r < 0)
                        return r;
        }
        r = cpu_pool_new(c->dedicated_cpu_pool, both, cg, ret, err, errlen);
        if (r < 0)
                return r;
        if (!avail)
                log_notice("no cpuset controller: sizes with dedicated CPUs cannot start");
        else
                log_info("dedicated CPU pool: '%s' of %s (online %s)", (*ret)->pool_list, both,
                         online);
        return 0;
}

void cpu_pool_free(struct cpu_pool *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n_holders; i++) {
                free(p->holders[i].id);
                free(p->holders[i].list);
        }
        free(p->holders);
        free(p->pool_list);
        free(p->shared_list);
        free(p);
}

const char *cpu_pool_list(const struct cpu_pool *p) { return p->pool_list; }
unsigned cpu_pool_size(const struct cpu_pool *p) { return cpubits_count(&p->pool); }
unsigned cpu_pool_n_free(const struct cpu_pool *p)
{
        struct cpu_bits f = bits_minus(&p->pool, &p->held);
        return cpubits_count(&f);
}

static int add_holder(struct cpu_pool *p, const char *id, const struct cpu_bits *cpus)
{
        struct holder h = { .cpus = *cpus };
        h.id = strdup(id);
        int r = h.id ? cpulist_format(cpus, &h.list) : -ENOMEM;
        struct holder *nv = r == 0 ? realloc(p->holders, (p->n_holders + 1) * sizeof *nv) : NULL;
        if (!nv) {
                free(h.id);
                free(h.list);
                return -ENOMEM;
        }
        p->holders = nv;
        p->holders[p->n_holders++] = h;
        for (size_t i = 0; i < ELEMENTSOF(p->held.w); i++)
                p->held.w[i] |= cpus->w[i];
        changed(p);
        return 0;
}

int cpu_pool_check(const struct cpu_pool *p, unsigned n, char *err, size_t errlen)
{
        unsigned nfree = cpu_pool_n_free(p);
        if (n <= nfree)
                return 0;
        return set_error(err, errlen, -ENOSPC,
                         "needs %u dedicated CPU%s, %u of %u free (dedicated-cpu-pool '%s')", n,
                         n == 1 ? "" : "s", nfree, cpu_pool_size(p), p->pool_list);
}

int cpu_pool_reserve(struct cpu_pool *p, const char *id, unsigned n, char *err, size_t errlen)
{
        if (n == 0)
                return 0;
        const struct holder *h = find_holder(p, id);
        if (h) {
                if (cpubits_count(&h->cpus) == n)
                        return 0;
                return set_error(err, errlen, -EEXIST, "dyno '%s' already holds CPUs %s", id,
                                 h->list);
        }
        int r = cpu_pool_check(p, n, err, errlen);
        if (r < 0)
                return r;
        struct cpu_bits take = {};
        unsigned k = 0;
        for (unsigned c = 0; c < CPUS_MAX && k < n; c++)
                if (cpubits_test(&p->pool, c) && !cpubits_test(&p->held, c)) {
                        bits_set(&take, c);
                        k++;
                }
        return add_holder(p, id, &take);
}

int cpu_pool_reserve_exact(struct cpu_pool *p, const char *id, const char *list)
{
        struct cpu_bits want;
        if (cpulist_parse(list, &want) < 0 || cpubits_count(&want) == 0 ||
            !bits_subset(&want, &p->pool))
                return -EINVAL;
        const struct holder *h = find_holder(p, id);
        if (h)
                return memcmp(&h->cpus, &want, sizeof want) == 0 ? 0 : -EEXIST;
        if (!bits_disjoint(&want, &p->held))
                return -EBUSY;
        return add_holder(p, id, &want);
}

void cpu_pool_release(struct cpu_pool *p, const char *id)
{
        struct holder *h = find_holder(p, id);
        if (!h)
                return;
        free(h->id);
        free(h->list);
        *h = p->holders[--p->n_holders];
        struct cpu_bits held = {};
        for (size_t i = 0; i < p->n_holders; i++)
                for (size_t j = 0; j < ELEMENTSOF(held.w); j++)
                        held.w[j] |= p->holders[i].cpus.w[j];
        p->held = held;
        changed(p);
}

const char *cpu_pool_held(const struct cpu_pool *p, const char *id)
{
        const struct holder *h = find_holder(p, id);
        return h ? h->list : NULL;
}

const char *cpu_pool_cpus_for(const struct cpu_pool *p, const char *id)
{
        const char *held = cpu_pool_held(p, id);
        return held ?: p->shared_list;
}

int cpu_pool_adopt(struct cpu_pool *p, const char *id, unsigned n)
{
        if (n == 0)
                return 0;
        _cleanup_free_ char *have = NULL;
        int r = p->cg ? cg_get_cpus(p->cg, id, &have) : -EOPNOTSUPP;
        if (r == 0) {
                struct cpu_bits b;
                if (cpulist_parse(have, &b) == 0 && cpubits_count(&b) == n) {
                        r = cpu_pool_reserve_exact(p, id, have);
                        if (r == 0)
                                return 0;
                        log_warning("dyno %s: its CPUs %s are %s; moving it", id, have,
                                    r == -EBUSY ? "another dyno's" : "not in the pool");
                }
        }
        char err[256];
        r = cpu_pool_reserve(p, id, n, err, sizeof err);
        if (r < 0) {
                log_warning("dyno %s: %s; it runs on the shared CPUs", id, err);
                return r;
        }
        if (p->cg) {
                r = cg_set_cpus(p->cg, id, cpu_pool_held(p, id));
                if (r < 0) {
                        log_warning_errno(r, "dyno %s: move to CPUs %s: %m", id,
                                          cpu_pool_held(p, id));
                        cpu_pool_release(p, id);
                        return r;
                }
        }
        log_notice("dyno %s: now on CPUs %s", id, cpu_pool_held(p, id));
        return 0;
}
