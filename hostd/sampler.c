/* See sampler.h. */
#include "sampler.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "manager.h"
#include "netd-client.h"
#include "util.h"

/* Rounds closer together than this are one. */
#define ROUND_REUSE_USEC (100 * 1000ULL)

struct entry {
        char *id;
        char *cgroup; /* the name the files are open for */
        pid_t pid;    /* the init they were opened for */
        struct cg_stat_files *files;
        struct dyno_sample sample;
        uint64_t round; /* the round of the last good sample */
        bool taken;     /* by the round under way */
        /* The last sample's inputs of the load estimate (where no runnable count exists) */
        bool have_prev;
        uint64_t prev_mono_usec, prev_cpu_usec, prev_cpu_wait_usec, prev_io_wait_usec;
};

struct sampler_listener {
        struct tick_group *group;
        sampler_tick_fn fn;
        void *userdata;
        bool dead;
        struct sampler_listener *next;
};

/* The listeners of one interval, on one timer. */
struct tick_group {
        struct sampler *s;
        uint32_t interval;
        sd_event_source *timer;
        uint64_t next_usec;
        bool dispatching;
        struct sampler_listener *listeners;
        struct tick_group *next;
};

enum host_file {
        HOST_LOADAVG,
        HOST_MEMINFO,
        HOST_CPUS,
        HOST_CPU_PRESSURE,
        HOST_MEMORY_PRESSURE,
        HOST_IO_PRESSURE,
        _HOST_MAX,
};

static const char *const host_paths[_HOST_MAX] = {
        [HOST_LOADAVG] = "/proc/loadavg",
        [HOST_MEMINFO] = "/proc/meminfo",
        [HOST_CPUS] = "/sys/devices/system/cpu/online",
        [HOST_CPU_PRESSURE] = "/proc/pressure/cpu",
        [HOST_MEMORY_PRESSURE] = "/proc/pressure/memory",
        [HOST_IO_PRESSURE] = "/proc/pressure/io",
};

struct sampler {
        struct manager *m;
        struct entry **entries; /* sorted by id */
        size_t n_entries;
        uint64_t round;
        uint64_t round_mono_usec;
        size_t sampled;
        struct host_sample host;
        int host_fd[_HOST_MAX];
        int64_t netd_call; /* the Stats call in flight; 0: none */
        int epoll_fd;      /* the dynos' OOM notifications (cg_stats_oom_fd) */
        struct tick_group *groups;
};

/* ---- parsers ---- */

/* A non-negative decimal number at *p ("0.52", "17"), advanced past it. */
static bool take_number(const char **p, const char *end, double *ret)
{
        const char *s = *p;
        double v = 0, scale = 1;
        bool digits = false, frac = false;
        for (; s < end; s++) {
                if (*s >= '0' && *s <= '9') {
                        digits = true;
                        if (frac)
                                scale /= 10, v += (*s - '0') * scale;
                        else
                                v = v * 10 + (*s - '0');
                } else if (*s == '.' && !frac)
                        frac = true;
                else
                        break;
        }
        if (!digits)
                return false;
        *p = s;
        *ret = v;
        return true;
}

int sampler_parse_loadavg(const char *buf, size_t len, double ret[3])
{
        const char *p = buf, *end = buf + len;
        double v[3];
        for (int i = 0; i < 3; i++) {
                if (!take_number(&p, end, &v[i]))
                        return -EINVAL;
                if (p >= end || *p++ != ' ')
                        return -EINVAL;
        }
        memcpy(ret, v, sizeof v);
        return 0;
}

/* The kB figure of key ("MemTotal:") in /proc/meminfo, in bytes. */
static bool meminfo_value(const char *buf, size_t len, const char *key, uint64_t *ret)
{
        size_t klen = strlen(key);
        const char *p = buf, *end = buf + len;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                if (!eol)
                        eol = end;
                if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0) {
                        const char *v = p + klen;
                        while (v < eol && *v == ' ')
                                v++;
                        uint64_t kb = 0;
                        bool digits = false;
                        for (; v < eol && *v >= '0' && *v <= '9'; v++) {
                                if (kb > UINT64_MAX / 10 / 1024)
                                        return false;
                                kb = kb * 10 + (uint64_t)(*v - '0'), digits = true;
                        }
                        if (!digits || (v < eol && strncmp(v, " kB", (size_t)(eol - v)) != 0))
                                return false;
                        *ret = kb * 1024;
                        return true;
                }
                p = eol + 1;
        }
        return false;
}

int sampler_parse_meminfo(const char *buf, size_t len, uint64_t *ret_total, uint64_t *ret_available)
{
        uint64_t total, avail;
        if (!meminfo_value(buf, len, "MemTotal:", &total) ||
            !meminfo_value(buf, len, "MemAvailable:", &avail))
                return -EINVAL;
        *ret_total = total;
        *ret_available = avail;
        return 0;
}

static bool take_uint(const char **p, const char *end, unsigned long *ret)
{
        const char *s = *p;
        unsigned long v = 0;
        if (s >= end || *s < '0' || *s > '9')
                return false;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (unsigned long)(*s - '0');
                if (v > 1UL << 24)
                        return false;
        }
        *p = s;
        *ret = v;
        return true;
}

int sampler_parse_cpu_count(const char *buf, size_t len, uint32_t *ret)
{
        const char *p = buf, *end = buf + len;
        while (end > p && (end[-1] == '\n' || end[-1] == ' '))
                end--;
        uint32_t n = 0;
        while (p < end) {
                unsigned long a, b;
                if (!take_uint(&p, end, &a))
                        return -EINVAL;
                b = a;
                if (p < end && *p == '-') {
                        p++;
                        if (!take_uint(&p, end, &b) || b < a)
                                return -EINVAL;
                }
                n += (uint32_t)(b - a + 1);
                if (p < end && *p++ != ',')
                        return -EINVAL;
                if (p == end && p[-1] == ',')
                        return -EINVAL;
        }
        if (n == 0)
                return -EINVAL;
        *ret = n;
        return 0;
}

void sampler_load_step(double load[3], double active, double dt_sec)
{
        static const double tau[3] = { 60, 300, 900 };
        if (dt_sec <= 0 || active < 0)
                return;
        for (int i = 0; i < 3; i++) {
                double e = exp(-dt_sec / tau[i]);
                load[i] = load[i] * e + active * (1 - e);
        }
}

double sampler_estimate_active(uint64_t cpu_usec, uint64_t cpu_wait_usec, uint64_t io_wait_usec,
                               uint64_t span_usec)
{
        if (span_usec == 0)
                return 0;
        return ((double)cpu_usec + (double)cpu_wait_usec + (double)io_wait_usec) /
               (double)span_usec;
}

/* ---- entries ---- */

static void entry_close(struct entry *e)
{
        cg_stat_files_free(e->files);
        e->files = NULL;
        e->have_prev = false;
}

static void entry_free(struct entry *e)
{
        if (!e)
                return;
        entry_close(e);
        free(e->id);
        free(e->cgroup);
        free(e);
}

static int entry_cmp(const void *a, const void *b)
{
        return strcmp((*(struct entry *const *)a)->id, (*(struct entry *const *)b)->id);
}

static struct entry *entry_find(struct sampler *s, const char *id)
{
        struct entry key = { .id = (char *)id }, *kp = &key;
        struct entry **e =
                s->entries ? bsearch(&kp, s->entries, s->n_entries, sizeof *s->entries, entry_cmp) :
                             NULL;
        return e ? *e : NULL;
}

/* The load input of a dyno: the kernel's count where it has one (v1, taskstats), else an
 * estimate over the time since the last sample: CPU time used per second (tasks running) plus
 * the share of time some task waited for a CPU (cpu.pressure) or for I/O (io.pressure), the
 * kernel's runnable and uninterruptible tasks. A share counts several waiting tasks as one,
 * so the estimate is a lower bound when more than one waits. */
static void entry_update_load(struct entry *e, uint64_t mono_usec, double dt_sec)
{
        const struct cg_stats *st = &e->sample.cg;
        if (st->runnable >= 0) {
                if (e->have_prev)
                        sampler_load_step(e->sample.load, (double)st->runnable, dt_sec);
        } else if (e->have_prev && mono_usec > e->prev_mono_usec) {
                /* A counter that went back (it cannot, short of a new cgroup) counts 0. */
#define DELTA(now, before) ((now) >= (before) ? (now) - (before) : 0)
                double active = sampler_estimate_active(
                        DELTA(st->cpu_usec, e->prev_cpu_usec),
                        st->cpu_psi.present ?
                                DELTA(st->cpu_psi.some_total_usec, e->prev_cpu_wait_usec) :
                                0,
                        st->io_psi.present ?
                                DELTA(st->io_psi.some_total_usec, e->prev_io_wait_usec) :
                                0,
                        mono_usec - e->prev_mono_usec);
#undef DELTA
                sampler_load_step(e->sample.load, active, dt_sec);
        }
        e->have_prev = true;
        e->prev_mono_usec = mono_usec;
        e->prev_cpu_usec = st->cpu_usec;
        e->prev_cpu_wait_usec = st->cpu_psi.some_total_usec;
        e->prev_io_wait_usec = st->io_psi.some_total_usec;
}

/* Make e's files those of d's cgroup now, opening them when its cgroup changed. */
static int entry_prepare(struct sampler *s, struct entry *e, struct dyno *d)
{
        const char *cgroup = dyno_cgroup_name(d);
        if (e->files && (e->pid != d->pid || strcmp(e->cgroup, cgroup) != 0)) {
                /* A new cgroup, or a new instance: its counters start again. */
                entry_close(e);
                memset(e->sample.load, 0, sizeof e->sample.load);
        }
        if (e->files)
                return 0;
        char *name = strdup(cgroup);
        if (!name)
                return -ENOMEM;
        free(e->cgroup);
        e->cgroup = name;
        e->pid = d->pid;
        int r = cg_stats_open(s->m->cg, cgroup, &e->files);
        if (r < 0)
                return r;
        uint32_t events;
        int fd = cg_stats_oom_fd(e->files, &events);
        struct epoll_event ev = { .events = events, .data.ptr = e };
        /* Without the watch the count is read every sample (cg_stats_oom_fd's -1). */
        if (fd >= 0 && s->epoll_fd >= 0 && epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                log_msg(LOG_LEVEL_DEBUG, errno, "metrics: dyno %s: watch its OOM kills: %m", e->id);
        return 0;
}

/* The kernel said these dynos' OOM kill counts may have changed: their next samples read
 * them. */
static void take_oom_events(struct sampler *s)
{
        struct epoll_event ev[64];
        int n;
        do {
                n = s->epoll_fd >= 0 ? epoll_wait(s->epoll_fd, ev, ELEMENTSOF(ev), 0) : 0;
                for (int i = 0; i < n; i++) {
                        struct entry *e = ev[i].data.ptr;
                        if (e->files)
                                cg_stats_oom_event(e->files);
                }
        } while (n == (int)ELEMENTSOF(ev));
}

struct collect {
        struct sampler *s;
        struct entry **v;
        size_t n;
};

static void collect_one(struct dyno *d, void *userdata)
{
        struct collect *c = userdata;
        if (!dyno_is_live(d) || d->pid <= 0)
                return;
        struct entry *e = entry_find(c->s, d->id);
        if (e)
                e->taken = true; /* not freed below */
        else {
                e = calloc(1, sizeof *e);
                if (!e || !(e->id = strdup(d->id))) {
                        free(e);
                        log_error("metrics: dyno %s: out of memory", d->id);
                        return;
                }
        }
        c->v[c->n++] = e;
        int r = entry_prepare(c->s, e, d);
        if (r < 0 && r != -ENOENT)
                log_debug("metrics: dyno %s: open its cgroup %s: %s", d->id, e->cgroup,
                          strerror(-r));
}

/* Read every prepared entry, the kernel answering for many at once where it can. */
static void read_all(struct sampler *s, struct entry **v, size_t n, uint64_t mono_usec,
                     int64_t real_usec)
{
        enum { CHUNK = 256 };
        struct cg_stat_files *f[CHUNK];
        struct cg_stats st[CHUNK];
        struct entry *which[CHUNK];
        int r[CHUNK];
        for (size_t i = 0; i < n;) {
                size_t k = 0;
                for (; i < n && k < CHUNK; i++)
                        if (v[i]->files) {
                                which[k] = v[i];
                                f[k++] = v[i]->files;
                        }
                cg_stats_read_many(s->m->cg, f, st, r, k);
                for (size_t j = 0; j < k; j++) {
                        struct entry *e = which[j];
                        if (r[j] < 0) {
                                if (r[j] != -ENODEV && r[j] != -ENOENT)
                                        log_debug("metrics: dyno %s: read its cgroup %s: %s", e->id,
                                                  e->cgroup, strerror(-r[j]));
                                entry_close(e); /* gone: opened again if it comes back */
                                continue;
                        }
                        double dt = e->have_prev ? (double)(mono_usec - e->prev_mono_usec) / 1e6 :
                                                   0;
                        e->sample.cg = st[j];
                        e->sample.time_usec = real_usec;
                        entry_update_load(e, mono_usec, dt);
                        e->round = s->round;
                        s->sampled++;
                }
        }
}

/* ---- host ---- */

static void host_sample(struct sampler *s, int64_t real_usec)
{
        char buf[8192];
        struct host_sample *h = &s->host;
        h->time_usec = real_usec;
        for (int i = 0; i < _HOST_MAX; i++) {
                if (s->host_fd[i] < 0)
                        continue;
                ssize_t n = cg_pread(s->host_fd[i], buf, sizeof buf);
                if (n < 0)
                        continue;
                switch (i) {
                case HOST_LOADAVG: (void)sampler_parse_loadavg(buf, (size_t)n, h->load); break;
                case HOST_MEMINFO:
                        (void)sampler_parse_meminfo(buf, (size_t)n, &h->memory_total,
                                                    &h->memory_available);
                        break;
                case HOST_CPUS: (void)sampler_parse_cpu_count(buf, (size_t)n, &h->cpus); break;
                case HOST_CPU_PRESSURE:
                        if (cg_parse_psi(buf, (size_t)n, &h->cpu_psi) < 0)
                                h->cpu_psi.present = false;
                        break;
                case HOST_MEMORY_PRESSURE:
                        if (cg_parse_psi(buf, (size_t)n, &h->memory_psi) < 0)
                                h->memory_psi.present = false;
                        break;
                case HOST_IO_PRESSURE:
                        if (cg_parse_psi(buf, (size_t)n, &h->io_psi) < 0)
                                h->io_psi.present = false;
                        break;
                }
        }
}

/* ---- netd ---- */

static void on_stats(void *userdata, int code, const char *msg, const Netd__V1__Response *resp)
{
        struct sampler *s = userdata;
        s->netd_call = 0;
        if (code != 0 || !resp || resp->result_case != NETD__V1__RESPONSE__RESULT_STATS) {
                log_debug("metrics: netd Stats: %s", msg ? msg : "no answer");
                return;
        }
        /* A dyno netd does not name has no link (any more): its counters are 0. */
        for (size_t i = 0; i < s->n_entries; i++) {
                struct dyno_sample *ds = &s->entries[i]->sample;
                ds->rx_bytes = ds->tx_bytes = ds->rx_packets = ds->tx_packets = 0;
        }
        for (size_t i = 0; i < resp->stats->n_stats; i++) {
                const Netd__V1__LinkStats *ls = resp->stats->stats[i];
                struct entry *e = entry_find(s, ls->dyno_id);
                if (!e)
                        continue;
                e->sample.rx_bytes = ls->rx_bytes;
                e->sample.tx_bytes = ls->tx_bytes;
                e->sample.rx_packets = ls->rx_packets;
                e->sample.tx_packets = ls->tx_packets;
        }
}

static void ask_netd(struct sampler *s)
{
        if (!s->m->netd || s->netd_call > 0 || s->n_entries == 0)
                return;
        /* No ids: every attached dyno, which netd answers with one link dump. */
        Netd__V1__StatsRequest st = NETD__V1__STATS_REQUEST__INIT;
        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        req.call_case = NETD__V1__REQUEST__CALL_STATS;
        req.stats = &st;
        int64_t h = netd_call(s->m->netd, &req, on_stats, s);
        if (h < 0)
                log_debug("metrics: netd Stats: %s", strerror((int)-h));
        else
                s->netd_call = h;
}

/* ---- rounds ---- */

void sampler_round(struct sampler *s)
{
        uint64_t mono = now_monotonic_usec();
        if (s->round > 0 && mono - s->round_mono_usec < ROUND_REUSE_USEC)
                return;
        int64_t real = now_realtime_usec();
        s->round++;
        s->round_mono_usec = mono;
        s->sampled = 0;
        host_sample(s, real);

        struct collect c = { .s = s };
        c.v = calloc(s->m->n_dynos + 1, sizeof *c.v);
        if (!c.v) {
                log_error("metrics: out of memory for a round of %zu dynos", s->m->n_dynos);
                return;
        }
        take_oom_events(s);
        manager_foreach(s->m, collect_one, &c);
        read_all(s, c.v, c.n, mono, real);
        /* Those not taken are gone. */
        for (size_t i = 0; i < s->n_entries; i++)
                if (!s->entries[i]->taken)
                        entry_free(s->entries[i]);
        free(s->entries);
        s->entries = c.v;
        s->n_entries = c.n;
        for (size_t i = 0; i < c.n; i++)
                c.v[i]->taken = false;
        /* manager_foreach goes in the tree's order; bsearch needs strcmp's. */
        qsort(s->entries, s->n_entries, sizeof *s->entries, entry_cmp);
        ask_netd(s);
}

struct foreach_ctx {
        struct sampler *s;
        sampler_dyno_fn fn;
        void *userdata;
};

static void foreach_one(struct dyno *d, void *userdata)
{
        struct foreach_ctx *f = userdata;
        if (!dyno_is_live(d) || d->pid <= 0)
                return;
        struct entry *e = entry_find(f->s, d->id);
        if (e && e->round == f->s->round && e->pid == d->pid)
                f->fn(d, &e->sample, f->userdata);
}

void sampler_foreach(struct sampler *s, sampler_dyno_fn fn, void *userdata)
{
        struct foreach_ctx f = { s, fn, userdata };
        manager_foreach(s->m, foreach_one, &f);
}

const struct host_sample *sampler_host(const struct sampler *s) { return &s->host; }

size_t sampler_count(const struct sampler *s) { return s->sampled; }

/* ---- timers ---- */

static void group_free(struct tick_group *g)
{
        struct sampler *s = g->s;
        for (struct tick_group **pp = &s->groups; *pp; pp = &(*pp)->next)
                if (*pp == g) {
                        *pp = g->next;
                        break;
                }
        while (g->listeners) {
                struct sampler_listener *l = g->listeners;
                g->listeners = l->next;
                free(l);
        }
        g->timer = sd_event_source_disable_unref(g->timer);
        free(g);
}

/* Drop the listeners marked dead; the group too when none is left. Returns false then. */
static bool group_sweep(struct tick_group *g)
{
        for (struct sampler_listener **pp = &g->listeners; *pp;) {
                struct sampler_listener *l = *pp;
                if (l->dead) {
                        *pp = l->next;
                        free(l);
                } else
                        pp = &l->next;
        }
        if (g->listeners)
                return true;
        group_free(g);
        return false;
}

static int on_tick(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct tick_group *g = userdata;
        sampler_round(g->s);
        g->dispatching = true;
        for (struct sampler_listener *l = g->listeners; l; l = l->next)
                if (!l->dead)
                        l->fn(g->s, l->userdata);
        g->dispatching = false;
        if (!group_sweep(g))
                return 0;
        /* On a fixed grid, so that a slow round does not make every later one late. */
        uint64_t step = (uint64_t)g->interval * 1000000;
        uint64_t now = now_monotonic_usec();
        g->next_usec += step;
        if (g->next_usec <= now)
                g->next_usec = now + step;
        sd_event_source_set_time(src, g->next_usec);
        sd_event_source_set_enabled(src, SD_EVENT_ON);
        return 0;
}

int sampler_listen(struct sampler *s, uint32_t interval, bool now, sampler_tick_fn fn,
                   void *userdata, struct sampler_listener **ret)
{
        if (interval == 0)
                return -EINVAL;
        struct tick_group *g = s->groups;
        while (g && g->interval != interval)
                g = g->next;
        bool new_group = !g;
        if (new_group) {
                g = calloc(1, sizeof *g);
                if (!g)
                        return -ENOMEM;
                g->s = s;
                g->interval = interval;
                g->next_usec = now_monotonic_usec() + (uint64_t)interval * 1000000;
                /* A millisecond's accuracy: rounds of different intervals then meet. */
                int r = sd_event_add_time(s->m->event, &g->timer, CLOCK_MONOTONIC, g->next_usec,
                                          1000, on_tick, g);
                if (r < 0) {
                        free(g);
                        return r;
                }
                g->next = s->groups;
                s->groups = g;
        }
        struct sampler_listener *l = calloc(1, sizeof *l);
        if (!l) {
                if (new_group)
                        group_free(g);
                return -ENOMEM;
        }
        l->group = g;
        l->fn = fn;
        l->userdata = userdata;
        l->next = g->listeners;
        g->listeners = l;
        if (now) {
                sampler_round(s);
                fn(s, userdata);
        }
        if (ret)
                *ret = l;
        return 0;
}

void sampler_unlisten(struct sampler *s, struct sampler_listener *l)
{
        if (!l)
                return;
        l->dead = true;
        if (!l->group->dispatching)
                group_sweep(l->group);
}

/* ---- life ---- */

int sampler_new(struct manager *m, struct sampler **ret)
{
        struct sampler *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->m = m;
        s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epoll_fd < 0)
                log_warning_errno(errno, "metrics: epoll: %m; OOM kill counts read every round");
        for (int i = 0; i < _HOST_MAX; i++) {
                s->host_fd[i] = open(host_paths[i], O_RDONLY | O_CLOEXEC);
                /* /proc/pressure is there only with PSI; the rest always is. */
                if (s->host_fd[i] < 0 && i < HOST_CPU_PRESSURE)
                        log_warning_errno(errno, "metrics: open %s: %m; host figures without it",
                                          host_paths[i]);
        }
        *ret = s;
        return 0;
}

void sampler_free(struct sampler *s)
{
        if (!s)
                return;
        if (s->netd_call > 0 && s->m->netd)
                netd_cancel(s->m->netd, s->netd_call);
        while (s->groups)
                group_free(s->groups);
        for (size_t i = 0; i < s->n_entries; i++)
                entry_free(s->entries[i]);
        free(s->entries);
        for (int i = 0; i < _HOST_MAX; i++)
                closep(&s->host_fd[i]);
        closep(&s->epoll_fd);
        free(s);
}
