/* The statistics part of the cgroup driver: kept-open control files (cg_stats_*) and the
 * parsers of their formats. Each sample is a pread per file into a stack buffer, parsed in
 * place: no allocation, no path lookup. The version-specific parts are the drivers'
 * stats_open and stats_read. */
#include "cgroup-internal.h"
#include "util.h"

#include <unistd.h>

int cg_stats_open(struct cg_manager *m, const char *id, struct cg_stat_files **ret)
{
        int r = cg_validate_id(id);
        if (r < 0)
                return r;
        struct cg_stat_files *f = malloc(sizeof *f);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < _CG_STAT_MAX; i++)
                f->fd[i] = -1;
        f->oom_event_fd = -1;
        f->oom_reads_due = 1;
        r = m->ops->stats_open(m, id, f);
        if (r < 0) {
                cg_stat_files_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

void cg_stat_files_free(struct cg_stat_files *f)
{
        if (!f)
                return;
        if (f->oom_event_fd != f->fd[CG_STAT_OOM])
                closep(&f->oom_event_fd);
        for (size_t i = 0; i < _CG_STAT_MAX; i++)
                closep(&f->fd[i]);
        free(f);
}

int cg_stats_read(struct cg_manager *m, struct cg_stat_files *f, struct cg_stats *ret)
{
        int r;
        cg_stats_read_many(m, &f, ret, &r, 1);
        return r;
}

void cg_stats_read_many(struct cg_manager *m, struct cg_stat_files **f, struct cg_stats *ret,
                        int *ret_r, size_t n)
{
        struct cg_stat_files *batch_f[64];
        struct cg_stats *batch_st[64];
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                ret[i] = (struct cg_stats){ .runnable = -1 };
                ret_r[i] = m->ops->stats_read(m, f[i], &ret[i]);
                if (ret_r[i] < 0 || !m->ops->stats_tasks)
                        continue;
                batch_f[k] = f[i];
                batch_st[k++] = &ret[i];
                if (k == ELEMENTSOF(batch_f)) {
                        m->ops->stats_tasks(m, batch_f, batch_st, k);
                        k = 0;
                }
        }
        if (k > 0)
                m->ops->stats_tasks(m, batch_f, batch_st, k);
}

int cg_stats_oom_fd(const struct cg_stat_files *f, uint32_t *ret_events)
{
        *ret_events = f->oom_epoll_events;
        return f->oom_event_fd;
}

void cg_stats_oom_event(struct cg_stat_files *f)
{
        /* The notification may come just before the kill is counted: read it twice. */
        f->oom_reads_due = 2;
        if (f->oom_event_fd >= 0 && f->oom_event_fd != f->fd[CG_STAT_OOM]) {
                uint64_t v;
                (void)!read(f->oom_event_fd, &v, sizeof v); /* the v1 eventfd */
        }
}

/* Whether this sample reads the OOM count (the driver then calls cg_stats_oom_read). */
bool cg_stats_oom_due(struct cg_stat_files *f)
{
        if (f->oom_event_fd < 0)
                return true;
        if (f->oom_reads_due == 0)
                return false;
        f->oom_reads_due--;
        return true;
}

ssize_t cg_pread(int fd, char *buf, size_t len)
{
        if (fd < 0 || len == 0)
                return -EBADF;
        ssize_t n = pread(fd, buf, len - 1, 0);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return n;
}

/* The digits at *p (advanced past them); false when there are none or they overflow. */
static bool take_u64(const char **p, const char *end, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;
        if (s >= end || *s < '0' || *s > '9')
                return false;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *p = s;
        *ret = v;
        return true;
}

int cg_parse_u64(const char *buf, size_t len, uint64_t *ret)
{
        const char *p = buf, *end = buf + len;
        uint64_t v;
        if (!take_u64(&p, end, &v))
                return -EINVAL;
        if (p < end && *p == '\n')
                p++;
        if (p != end)
                return -EINVAL;
        *ret = v;
        return 0;
}

size_t cg_parse_keyed(const char *buf, size_t len, const struct cg_key *keys, size_t n_keys)
{
        const char *p = buf, *end = buf + len;
        size_t found = 0;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                if (!eol)
                        eol = end;
                const char *sp = memchr(p, ' ', (size_t)(eol - p));
                if (sp) {
                        size_t klen = (size_t)(sp - p);
                        for (size_t i = 0; i < n_keys; i++) {
                                if (strncmp(keys[i].key, p, klen) != 0 || keys[i].key[klen])
                                        continue;
                                const char *v = sp + 1;
                                uint64_t x;
                                if (take_u64(&v, eol, &x) && v == eol) {
                                        *keys[i].dst = x;
                                        found++;
                                }
                                break;
                        }
                }
                p = eol + 1;
        }
        return found;
}

/* "12.34" (a share in percent, two decimals as the kernel prints it). */
static bool take_decimal(const char **p, const char *end, double *ret)
{
        uint64_t whole, frac = 0;
        if (!take_u64(p, end, &whole))
                return false;
        double scale = 1;
        if (*p < end && **p == '.') {
                (*p)++;
                const char *s = *p;
                if (!take_u64(p, end, &frac) || *p - s > 18)
                        return false;
                for (const char *q = s; q < *p; q++)
                        scale *= 10;
        }
        *ret = (double)whole + (double)frac / scale;
        return true;
}

static bool take_literal(const char **p, const char *end, const char *lit)
{
        size_t n = strlen(lit);
        if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
                return false;
        *p += n;
        return true;
}

int cg_parse_psi(const char *buf, size_t len, struct cg_psi *ret)
{
        struct cg_psi psi = { .present = true };
        const char *p = buf, *end = buf + len;
        bool some = false;
        while (p < end) {
                double *avg;
                uint64_t *total;
                if (take_literal(&p, end, "some "))
                        avg = psi.some_avg, total = &psi.some_total_usec, some = true;
                else if (take_literal(&p, end, "full "))
                        avg = psi.full_avg, total = &psi.full_total_usec;
                else
                        return -EINVAL;
                if (!take_literal(&p, end, "avg10=") || !take_decimal(&p, end, &avg[0]) ||
                    !take_literal(&p, end, " avg60=") || !take_decimal(&p, end, &avg[1]) ||
                    !take_literal(&p, end, " avg300=") || !take_decimal(&p, end, &avg[2]) ||
                    !take_literal(&p, end, " total=") || !take_u64(&p, end, total))
                        return -EINVAL;
                if (p < end && *p++ != '\n')
                        return -EINVAL;
        }
        if (!some)
                return -EINVAL;
        *ret = psi;
        return 0;
}
