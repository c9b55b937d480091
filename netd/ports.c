/* Host ports for web dynos; see ports.h. */
#include "ports.h"

#include "util.h"

struct ports {
        char *path;
        uint16_t min, max;
        uint16_t next; /* round-robin hint, not persisted */
        struct ports_entry *e;
        size_t n;
};

void ports_free(struct ports *p)
{
        if (!p)
                return;
        free(p->path);
        free(p->e);
        free(p);
}

static int entry_cmp(const void *a, const void *b)
{
        const struct ports_entry *x = a, *y = b;
        return (int)x->host_port - (int)y->host_port;
}

static int ports_save(const struct ports *p, const struct ports_entry *e, size_t n)
{
        size_t cap = 32 + n * (DYNO_INSTANCE_NAME_MAX + 24);
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        size_t len = (size_t)snprintf(buf, cap, "netd-ports 1\n");
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(buf + len, cap - len, "p %u %s %u\n", e[i].host_port,
                                        e[i].dyno_id, e[i].dyno_port);
        return write_file_whole(p->path, buf, len, 0600);
}

static int parse_port(const char *s, uint16_t *ret)
{
        uint32_t u;
        if (safe_atou32(s, &u) < 0 || u < 1 || u > 65535)
                return -EINVAL;
        *ret = (uint16_t)u;
        return 0;
}

int ports_open(const char *path, uint16_t min, uint16_t max, struct ports **ret, char *err,
               size_t errlen)
{
        struct ports *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->min = min;
        p->max = max;
        p->next = min;
        p->path = strdup(path);
        if (!p->path) {
                ports_free(p);
                return -ENOMEM;
        }
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, &text, &len);
        if (r == -ENOENT) {
                r = ports_save(p, NULL, 0);
                if (r < 0) {
                        (void)set_error(err, errlen, 0, "%s: create: %s", path, strerror(-r));
                        ports_free(p);
                        return r;
                }
                *ret = p;
                return 0;
        }
        if (r < 0) {
                (void)set_error(err, errlen, 0, "%s: %s", path, strerror(-r));
                ports_free(p);
                return r;
        }
        if (strlen(text) != len) {
                (void)set_error(err, errlen, 0, "%s: holds a NUL byte", path);
                ports_free(p);
                return -EINVAL;
        }
        unsigned lineno = 0;
        char *save = NULL;
        r = 0;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                lineno++;
                if (lineno == 1) {
                        if (strcmp(line, "netd-ports 1") != 0) {
                                (void)set_error(err, errlen, 0, "%s:1: not a netd-ports 1 file",
                                                path);
                                r = -EINVAL;
                                break;
                        }
                        continue;
                }
                char hp[8], id[DYNO_INSTANCE_NAME_MAX + 2], dp[8], extra[2];
                /* One more than a name may hold, so that a longer one is seen and refused. */
                _Static_assert(sizeof id == 76, "the %75s below reads sizeof id - 1");
                struct ports_entry e = {};
                if (sscanf(line, "p %7s %75s %7s %1s", hp, id, dp, extra) != 3 ||
                    parse_port(hp, &e.host_port) < 0 || parse_port(dp, &e.dyno_port) < 0 ||
                    !dyno_instance_name_valid(id)) {
                        (void)set_error(err, errlen, 0, "%s:%u: malformed line", path, lineno);
                        r = -EINVAL;
                        break;
                }
                strcpy(e.dyno_id, id);
                for (size_t i = 0; i < p->n; i++)
                        if (p->e[i].host_port == e.host_port || strcmp(p->e[i].dyno_id, id) == 0) {
                                (void)set_error(err, errlen, 0, "%s:%u: port or dyno listed twice",
                                                path, lineno);
                                r = -EINVAL;
                        }
                if (r < 0)
                        break;
                struct ports_entry *ne = realloc(p->e, (p->n + 1) * sizeof *ne);
                if (!ne) {
                        r = -ENOMEM;
                        break;
                }
                p->e = ne;
                p->e[p->n++] = e;
        }
        if (r == 0 && lineno == 0) {
                (void)set_error(err, errlen, 0, "%s: empty file", path);
                r = -EINVAL;
        }
        if (r < 0) {
                ports_free(p);
                return r;
        }
        if (p->n > 0) /* qsort() and bsearch() take no NULL array, even of 0 elements */
                qsort(p->e, p->n, sizeof *p->e, entry_cmp);
        if (p->n > 0 && p->e[p->n - 1].host_port >= min && p->e[p->n - 1].host_port < max)
                p->next = p->e[p->n - 1].host_port + 1;
        *ret = p;
        return 0;
}

static ssize_t find_id(const struct ports *p, const char *dyno_id)
{
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->e[i].dyno_id, dyno_id) == 0)
                        return (ssize_t)i;
        return -1;
}

static bool port_held(const struct ports *p, uint16_t port)
{
        struct ports_entry key = { .host_port = port };
        return p->n > 0 && bsearch(&key, p->e, p->n, sizeof *p->e, entry_cmp) != NULL;
}

int ports_lookup(const struct ports *p, const char *dyno_id, struct ports_entry *ret)
{
        ssize_t i = find_id(p, dyno_id);
        if (i < 0)
                return -ENOENT;
        if (ret)
                *ret = p->e[i];
        return 0;
}

const struct ports_entry *ports_entries(const struct ports *p, size_t *ret_n)
{
        *ret_n = p->n;
        return p->e;
}

int ports_allocate(struct ports *p, const char *dyno_id, uint16_t dyno_port, uint16_t *ret)
{
        if (!dyno_instance_name_valid(dyno_id) || dyno_port == 0)
                return -EINVAL;
        ssize_t i = find_id(p, dyno_id);
        if (i >= 0) {
                if (p->e[i].dyno_port != dyno_port) {
                        uint16_t old = p->e[i].dyno_port;
                        p->e[i].dyno_port = dyno_port;
                        int r = ports_save(p, p->e, p->n);
                        if (r < 0) {
                                p->e[i].dyno_port = old;
                                return r;
                        }
                }
                *ret = p->e[i].host_port;
                return 0;
        }
        unsigned span = (unsigned)p->max - p->min + 1;
        uint16_t port = 0;
        for (unsigned k = 0; k < span; k++) {
                unsigned c = p->min + ((unsigned)(p->next - p->min) + k) % span;
                if (!port_held(p, (uint16_t)c)) {
                        port = (uint16_t)c;
                        break;
                }
        }
        if (port == 0)
                return -ENOSPC;
        struct ports_entry *ne = malloc((p->n + 1) * sizeof *ne);
        if (!ne)
                return -ENOMEM;
        if (p->n)
                memcpy(ne, p->e, p->n * sizeof *ne);
        ne[p->n] = (struct ports_entry){ .host_port = port, .dyno_port = dyno_port };
        strcpy(ne[p->n].dyno_id, dyno_id);
        qsort(ne, p->n + 1, sizeof *ne, entry_cmp);
        int r = ports_save(p, ne, p->n + 1);
        if (r < 0) {
                free(ne);
                return r;
        }
        free(p->e);
        p->e = ne;
        p->n++;
        p->next = port == p->max ? p->min : port + 1;
        *ret = port;
        return 1;
}

int ports_release(struct ports *p, const char *dyno_id, struct ports_entry *ret_entry)
{
        ssize_t i = find_id(p, dyno_id);
        if (i < 0)
                return 0;
        struct ports_entry gone = p->e[i];
        memmove(p->e + i, p->e + i + 1, (p->n - (size_t)i - 1) * sizeof *p->e);
        int r = ports_save(p, p->e, p->n - 1);
        if (r < 0) {
                memmove(p->e + i + 1, p->e + i, (p->n - (size_t)i - 1) * sizeof *p->e);
                p->e[i] = gone;
                return r;
        }
        p->n--;
        if (ret_entry)
                *ret_entry = gone;
        return 1;
}
