/* IP address allocation for netd. See ipam.h for the rules and the file format.
 *
 * In memory: a bitmap of the subnet (a bit set for each address that is reserved, allocated or
 * in quarantine) for the free-address search, and the entries in two sorted arrays of pointers,
 * by address (the file's order) and by dyno id (lookups). A change is a small transaction:
 * each step on the entries is logged, the whole state is written, and a failed write undoes
 * the steps, so that memory never holds what the disk does not. */
#include "ipam.h"
#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>

#define IPAM_MAGIC "netd-ipam"
#define IPAM_VERSION 1
#define IPAM_FILE_MODE 0644

struct entry {
        uint32_t off; /* from the network address */
        bool quarantined;
        char id[DYNO_INSTANCE_NAME_MAX + 1];
};

enum undo_kind {
        UNDO_ADDED,   /* undo: remove and free the entry */
        UNDO_DROPPED, /* undo: put the entry back (kept until commit) */
        UNDO_STATE,   /* undo: restore quarantined */
};

struct undo {
        enum undo_kind kind;
        struct entry *e;
        bool quarantined;
};

struct ipam {
        char *path;
        int lock_fd;
        uint32_t network; /* host byte order */
        unsigned prefix;
        uint32_t size; /* addresses in the subnet, network and broadcast included */

        uint64_t *used;
        struct entry **by_off;
        struct entry **by_id;
        size_t n, cap;
        unsigned n_quarantined;
        uint32_t next; /* where the round-robin search starts */

        ipam_ns_alive_t ns_alive;
        void *userdata;

        struct undo *undo;
        size_t n_undo, cap_undo;
        uint32_t tx_next;

        char *buf; /* the file's text, reused */
        size_t buf_cap;
};

/* A dotted quad exactly as inet_ntop writes it: no leading zeros, no other forms. */
static int parse_ipv4(const char *s, size_t len, uint32_t *ret)
{
        uint32_t v = 0;
        size_t i = 0;
        for (int part = 0; part < 4; part++) {
                if (part > 0) {
                        if (i >= len || s[i] != '.')
                                return -EINVAL;
                        i++;
                }
                size_t start = i;
                unsigned octet = 0;
                while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
                        octet = octet * 10 + (unsigned)(s[i++] - '0');
                if (i == start || octet > 255 || (i - start > 1 && s[start] == '0'))
                        return -EINVAL;
                v = v << 8 | octet;
        }
        if (i != len)
                return -EINVAL;
        *ret = v;
        return 0;
}

static char *format_ipv4(uint32_t a, char *p)
{
        for (int shift = 24; shift >= 0; shift -= 8) {
                unsigned o = (a >> shift) & 0xff;
                if (o >= 100)
                        *p++ = (char)('0' + o / 100);
                if (o >= 10)
                        *p++ = (char)('0' + o / 10 % 10);
                *p++ = (char)('0' + o % 10);
                if (shift > 0)
                        *p++ = '.';
        }
        return p;
}

static int parse_subnet(const char *s, size_t len, uint32_t *ret_net, unsigned *ret_prefix,
                        char *err, size_t errlen)
{
        /* Ranges that can never hold dynos: "this network", loopback, link-local (where the
         * cloud metadata address lives), multicast and the reserved class E and broadcast. */
        static const struct {
                uint32_t net;
                unsigned prefix;
                const char *what;
        } forbidden[] = {
                { 0x00000000, 8, "0.0.0.0/8 (this network)" },
                { 0x7f000000, 8, "127.0.0.0/8 (loopback)" },
                { 0xa9fe0000, 16, "169.254.0.0/16 (link-local, the cloud metadata address)" },
                { 0xe0000000, 3, "224.0.0.0/3 (multicast and reserved)" },
        };
        const char *slash = memchr(s, '/', len);
        if (memchr(s, ':', len)) {
                (void)set_error(err, errlen, 0,
                                "subnet '%.*s': IPv6 is not supported yet (IPv4 only)", (int)len,
                                s);
                return -EINVAL;
        }
        uint32_t net;
        if (!slash || parse_ipv4(s, (size_t)(slash - s), &net) < 0) {
                (void)set_error(err, errlen, 0,
                                "subnet '%.*s': not an IPv4 CIDR like 10.217.0.0/16", (int)len, s);
                return -EINVAL;
        }
        const char *p = slash + 1, *end = s + len;
        unsigned prefix = 0;
        if (p == end || end - p > 2 || (end - p == 2 && *p == '0')) {
                (void)set_error(err, errlen, 0,
                                "subnet '%.*s': not an IPv4 CIDR like 10.217.0.0/16", (int)len, s);
                return -EINVAL;
        }
        for (; p < end; p++) {
                if (*p < '0' || *p > '9') {
                        (void)set_error(err, errlen, 0,
                                        "subnet '%.*s': not an IPv4 CIDR like 10.217.0.0/16",
                                        (int)len, s);
                        return -EINVAL;
                }
                prefix = prefix * 10 + (unsigned)(*p - '0');
        }
        if (prefix < IPAM_PREFIX_MIN || prefix > IPAM_PREFIX_MAX) {
                (void)set_error(err, errlen, 0,
                                "subnet '%.*s': prefix /%u out of range: netd takes /%d (16777213 "
                                "dynos) to /%d (1 dyno)",
                                (int)len, s, prefix, IPAM_PREFIX_MIN, IPAM_PREFIX_MAX);
                return -EINVAL;
        }
        uint32_t mask = ~0u << (32 - prefix);
        if (net & ~mask) {
                char buf[16];
                *format_ipv4(net & mask, buf) = 0;
                (void)set_error(err, errlen, 0,
                                "subnet '%.*s': host bits set (the network is %s/%u)", (int)len, s,
                                buf, prefix);
                return -EINVAL;
        }
        for (size_t i = 0; i < ELEMENTSOF(forbidden); i++) {
                uint32_t fmask = ~0u << (32 - forbidden[i].prefix);
                uint32_t m = prefix < forbidden[i].prefix ? mask : fmask;
                if ((net & m) == (forbidden[i].net & m)) {
                        (void)set_error(err, errlen, 0, "subnet '%.*s': overlaps %s", (int)len, s,
                                        forbidden[i].what);
                        return -EINVAL;
                }
        }
        *ret_net = net;
        *ret_prefix = prefix;
        return 0;
}

int ipam_parse_subnet(const char *s, struct in_addr *ret_network, unsigned *ret_prefix, char *err,
                      size_t errlen)
{
        uint32_t net;
        unsigned prefix;
        int r = parse_subnet(s, strlen(s), &net, &prefix, err, errlen);
        if (r < 0)
                return r;
        if (ret_network)
                ret_network->s_addr = htonl(net);
        if (ret_prefix)
                *ret_prefix = prefix;
        return 0;
}

static bool bit_test(const struct ipam *m, uint32_t off)
{
        return m->used[off / 64] >> (off % 64) & 1;
}

static void bit_set(struct ipam *m, uint32_t off, bool v)
{
        if (v)
                m->used[off / 64] |= UINT64_C(1) << (off % 64);
        else
                m->used[off / 64] &= ~(UINT64_C(1) << (off % 64));
}

/* The first clear bit in [from, to), or -1. */
static int64_t bit_find_clear(const struct ipam *m, uint32_t from, uint32_t to)
{
        for (uint32_t w = from / 64; (uint64_t)w * 64 < to; w++) {
                uint64_t clear = ~m->used[w];
                if (w == from / 64)
                        clear &= ~UINT64_C(0) << (from % 64);
                if (!clear)
                        continue;
                uint32_t off = w * 64 + (uint32_t)__builtin_ctzll(clear);
                return off < to ? (int64_t)off : -1;
        }
        return -1;
}

/* Round-robin: the first free address at or after next, wrapping round. */
static int64_t find_free(const struct ipam *m)
{
        int64_t off = bit_find_clear(m, m->next, m->size);
        if (off < 0)
                off = bit_find_clear(m, 0, m->next);
        return off;
}

static struct in_addr addr_of(const struct ipam *m, uint32_t off)
{
        return (struct in_addr){ .s_addr = htonl(m->network + off) };
}

/* Binary searches: the position of the match, or where it would go. */
static size_t pos_by_id(const struct ipam *m, const char *id, bool *found)
{
        size_t lo = 0, hi = m->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(m->by_id[mid]->id, id);
                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

static size_t pos_by_off(const struct ipam *m, uint32_t off, bool *found)
{
        size_t lo = 0, hi = m->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (m->by_off[mid]->off == off) {
                        *found = true;
                        return mid;
                }
                if (m->by_off[mid]->off < off)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

static struct entry *find_by_id(const struct ipam *m, const char *id)
{
        bool found;
        size_t i = pos_by_id(m, id, &found);
        return found ? m->by_id[i] : NULL;
}

/* Room for extra more entries and extra_undo more undo records. Done before any change, so
 * that a change, and its undo, never fails half-way. */
static int reserve(struct ipam *m, size_t extra, size_t extra_undo)
{
        if (m->n + extra > m->cap) {
                size_t cap = m->cap ? m->cap : 64;
                while (cap < m->n + extra)
                        cap *= 2;
                struct entry **a = realloc(m->by_off, cap * sizeof *a);
                if (!a)
                        return -ENOMEM;
                m->by_off = a;
                a = realloc(m->by_id, cap * sizeof *a);
                if (!a)
                        return -ENOMEM;
                m->by_id = a;
                m->cap = cap;
        }
        if (m->n_undo + extra_undo > m->cap_undo) {
                size_t cap = m->cap_undo ? m->cap_undo : 16;
                while (cap < m->n_undo + extra_undo)
                        cap *= 2;
                struct undo *u = realloc(m->undo, cap * sizeof *u);
                if (!u)
                        return -ENOMEM;
                m->undo = u;
                m->cap_undo = cap;
        }
        return 0;
}

/* Raw changes, no log; capacity reserved by the caller. */
static void entry_link(struct ipam *m, struct entry *e)
{
        bool found;
        size_t i = pos_by_off(m, e->off, &found);
        memmove(m->by_off + i + 1, m->by_off + i, (m->n - i) * sizeof *m->by_off);
        m->by_off[i] = e;
        i = pos_by_id(m, e->id, &found);
        memmove(m->by_id + i + 1, m->by_id + i, (m->n - i) * sizeof *m->by_id);
        m->by_id[i] = e;
        m->n++;
        bit_set(m, e->off, true);
        if (e->quarantined)
                m->n_quarantined++;
}

static void entry_unlink(struct ipam *m, struct entry *e)
{
        bool found;
        size_t i = pos_by_off(m, e->off, &found);
        memmove(m->by_off + i, m->by_off + i + 1, (m->n - i - 1) * sizeof *m->by_off);
        i = pos_by_id(m, e->id, &found);
        memmove(m->by_id + i, m->by_id + i + 1, (m->n - i - 1) * sizeof *m->by_id);
        m->n--;
        bit_set(m, e->off, false);
        if (e->quarantined)
                m->n_quarantined--;
}

static void entry_set_quarantined(struct ipam *m, struct entry *e, bool q)
{
        if (e->quarantined == q)
                return;
        e->quarantined = q;
        if (q)
                m->n_quarantined++;
        else
                m->n_quarantined--;
}

/* Logged changes, inside a transaction. */
static void tx_begin(struct ipam *m)
{
        m->n_undo = 0;
        m->tx_next = m->next;
}

static int tx_add(struct ipam *m, uint32_t off, const char *id, bool q)
{
        int r = reserve(m, 1, 1);
        if (r < 0)
                return r;
        struct entry *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->off = off;
        e->quarantined = q;
        snprintf(e->id, sizeof e->id, "%s", id);
        entry_link(m, e);
        m->undo[m->n_undo++] = (struct undo){ .kind = UNDO_ADDED, .e = e };
        return 0;
}

static int tx_drop(struct ipam *m, struct entry *e)
{
        int r = reserve(m, 0, 1);
        if (r < 0)
                return r;
        entry_unlink(m, e);
        m->undo[m->n_undo++] = (struct undo){ .kind = UNDO_DROPPED, .e = e };
        return 0;
}

static int tx_set_quarantined(struct ipam *m, struct entry *e, bool q)
{
        int r = reserve(m, 0, 1);
        if (r < 0)
                return r;
        m->undo[m->n_undo++] =
                (struct undo){ .kind = UNDO_STATE, .e = e, .quarantined = e->quarantined };
        entry_set_quarantined(m, e, q);
        return 0;
}

static void tx_rollback(struct ipam *m)
{
        /* In reverse, the entry count passes through the values it had: capacity suffices. */
        while (m->n_undo > 0) {
                struct undo *u = &m->undo[--m->n_undo];
                switch (u->kind) {
                case UNDO_ADDED:
                        entry_unlink(m, u->e);
                        free(u->e);
                        break;
                case UNDO_DROPPED: entry_link(m, u->e); break;
                case UNDO_STATE: entry_set_quarantined(m, u->e, u->quarantined); break;
                }
        }
        m->next = m->tx_next;
}

/* The whole state as the file's text, in m->buf. */
static int format_state(struct ipam *m, size_t *ret_len)
{
        /* "a " + address + " " + id + "\n" */
        size_t need = 64 + m->n * (2 + 15 + 1 + DYNO_INSTANCE_NAME_MAX + 1);
        if (need > m->buf_cap) {
                char *b = realloc(m->buf, need);
                if (!b)
                        return -ENOMEM;
                m->buf = b;
                m->buf_cap = need;
        }
        char *p = m->buf;
        p += sprintf(p, "%s %d ", IPAM_MAGIC, IPAM_VERSION);
        p = format_ipv4(m->network, p);
        p += sprintf(p, "/%u\n", m->prefix);
        for (size_t i = 0; i < m->n; i++) {
                const struct entry *e = m->by_off[i];
                *p++ = e->quarantined ? 'q' : 'a';
                *p++ = ' ';
                p = format_ipv4(m->network + e->off, p);
                *p++ = ' ';
                size_t l = strlen(e->id);
                memcpy(p, e->id, l);
                p += l;
                *p++ = '\n';
        }
        *ret_len = (size_t)(p - m->buf);
        return 0;
}

/* The round-robin position, a hint kept in the lock file: "<address>", padded to 16 bytes and
 * not fsynced. It only has to survive a restart of netd (the page cache does); after a reboot
 * no namespace and no ARP entry is left to avoid. Kept out of the state file, so that file
 * depends only on what is allocated. */
#define HINT_LEN 16

static void save_next_hint(struct ipam *m)
{
        char buf[HINT_LEN + 1];
        char *p = format_ipv4(m->network + m->next, buf);
        memset(p, ' ', (size_t)(buf + HINT_LEN - 1 - p));
        buf[HINT_LEN - 1] = '\n';
        (void)!pwrite(m->lock_fd, buf, HINT_LEN, 0);
}

static bool load_next_hint(struct ipam *m)
{
        char buf[HINT_LEN];
        ssize_t k = pread(m->lock_fd, buf, sizeof buf, 0);
        if (k != HINT_LEN || buf[HINT_LEN - 1] != '\n')
                return false;
        size_t len = strcspn(buf, " \n");
        uint32_t a;
        if (parse_ipv4(buf, len, &a) < 0 || a - m->network < 2 || a - m->network >= m->size)
                return false;
        m->next = a - m->network;
        return true;
}

static int write_state(struct ipam *m)
{
        size_t len;
        int r = format_state(m, &len);
        if (r < 0)
                return r;
        return write_file_whole(m->path, m->buf, len, IPAM_FILE_MODE);
}

/* Persist, then forget the undo log; or undo everything and return the error. */
static int tx_commit(struct ipam *m)
{
        int r = write_state(m);
        if (r < 0) {
                tx_rollback(m);
                return r;
        }
        for (size_t i = 0; i < m->n_undo; i++)
                if (m->undo[i].kind == UNDO_DROPPED)
                        free(m->undo[i].e);
        m->n_undo = 0;
        return 0;
}

/* Drop the quarantine entries whose previous owner's namespace is gone. Returns how many. */
static int tx_sweep(struct ipam *m)
{
        int n = 0;
        if (m->n_quarantined == 0)
                return 0;
        /* Backwards: a drop moves only the entries after it. */
        for (size_t i = m->n; i > 0; i--) {
                struct entry *e = m->by_off[i - 1];
                if (!e->quarantined || (m->ns_alive && m->ns_alive(e->id, m->userdata)))
                        continue;
                int r = tx_drop(m, e);
                if (r < 0)
                        return r;
                n++;
        }
        return n;
}

int ipam_allocate(struct ipam *m, const char *dyno_id, struct in_addr *ret)
{
        if (!dyno_instance_name_valid(dyno_id))
                return -EINVAL;
        struct entry *e = find_by_id(m, dyno_id);
        if (e && !e->quarantined) {
                if (ret)
                        *ret = addr_of(m, e->off);
                return 0;
        }

        tx_begin(m);
        int r;
        uint32_t off = 0;
        if (e) {
                /* Its own old address, still in quarantine: the namespace there is its own. */
                r = tx_set_quarantined(m, e, false);
                if (r < 0)
                        goto fail;
                off = e->off;
        }
        r = tx_sweep(m);
        if (r < 0)
                goto fail;
        if (!e) {
                int64_t f = find_free(m);
                if (f < 0) {
                        r = -ENOSPC;
                        goto fail;
                }
                off = (uint32_t)f;
                r = tx_add(m, off, dyno_id, false);
                if (r < 0)
                        goto fail;
                m->next = off + 1; /* at most the broadcast's offset: find_free skips it */
        }
        r = tx_commit(m);
        if (r < 0)
                return r;
        if (!e)
                save_next_hint(m);
        if (ret)
                *ret = addr_of(m, off);
        return 1;
fail:
        tx_rollback(m);
        return r;
}

int ipam_release(struct ipam *m, const char *dyno_id)
{
        if (!dyno_instance_name_valid(dyno_id))
                return -EINVAL;
        struct entry *e = find_by_id(m, dyno_id);
        if (!e || e->quarantined)
                return 0;
        tx_begin(m);
        int r = tx_set_quarantined(m, e, true);
        if (r >= 0)
                r = tx_sweep(m); /* leaves at once when the namespace is already gone */
        if (r < 0) {
                tx_rollback(m);
                return r;
        }
        r = tx_commit(m);
        return r < 0 ? r : 1;
}

int ipam_lookup(struct ipam *m, const char *dyno_id, struct in_addr *ret)
{
        if (!dyno_instance_name_valid(dyno_id))
                return -EINVAL;
        struct entry *e = find_by_id(m, dyno_id);
        if (!e || e->quarantined)
                return -ENOENT;
        if (ret)
                *ret = addr_of(m, e->off);
        return 0;
}

int ipam_list(struct ipam *m, bool include_quarantined, struct ipam_entry **ret, size_t *ret_n)
{
        size_t n = include_quarantined ? m->n : m->n - m->n_quarantined, k = 0;
        struct ipam_entry *v = NULL;
        if (n > 0) {
                v = calloc(n, sizeof *v);
                if (!v)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < m->n; i++) {
                const struct entry *e = m->by_off[i];
                if (e->quarantined && !include_quarantined)
                        continue;
                memcpy(v[k].dyno_id, e->id, sizeof v[k].dyno_id);
                v[k].addr = addr_of(m, e->off);
                v[k].quarantined = e->quarantined;
                k++;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cmp_strp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int ipam_gc(struct ipam *m, char *const *live, char ***ret_freed)
{
        size_t n_live = 0;
        for (char *const *p = live; p && *p; p++)
                n_live++;
        _cleanup_free_ char **sorted = NULL;
        if (n_live > 0) {
                sorted = malloc(n_live * sizeof *sorted);
                if (!sorted)
                        return -ENOMEM;
                memcpy(sorted, live, n_live * sizeof *sorted);
                qsort(sorted, n_live, sizeof *sorted, cmp_strp);
        }

        /* by_id is sorted: the freed list comes out sorted. */
        _cleanup_strv_free_ char **freed = calloc(m->n + 1, sizeof *freed);
        if (!freed)
                return -ENOMEM;
        size_t n_freed = 0;
        int r = 0;
        tx_begin(m);
        for (size_t i = 0; i < m->n; i++) {
                struct entry *e = m->by_id[i];
                if (e->quarantined)
                        continue;
                const char *key = e->id;
                if (n_live > 0 && bsearch(&key, sorted, n_live, sizeof *sorted, cmp_strp))
                        continue;
                freed[n_freed] = strdup(e->id);
                if (!freed[n_freed]) {
                        r = -ENOMEM;
                        break;
                }
                n_freed++;
                r = tx_set_quarantined(m, e, true);
                if (r < 0)
                        break;
        }
        if (r >= 0)
                r = tx_sweep(m);
        if (r < 0) {
                tx_rollback(m);
                return r;
        }
        if (m->n_undo > 0) {
                r = tx_commit(m);
                if (r < 0)
                        return r;
        }
        if (ret_freed)
                *ret_freed = TAKE_PTR(freed);
        return (int)n_freed;
}

int ipam_sweep(struct ipam *m)
{
        tx_begin(m);
        int n = tx_sweep(m);
        if (n < 0) {
                tx_rollback(m);
                return n;
        }
        if (n == 0)
                return 0;
        int r = tx_commit(m);
        return r < 0 ? r : n;
}

struct in_addr ipam_gateway(const struct ipam *m) { return addr_of(m, 1); }

struct in_addr ipam_broadcast(const struct ipam *m) { return addr_of(m, m->size - 1); }

void ipam_usage(const struct ipam *m, struct ipam_usage *ret)
{
        *ret = (struct ipam_usage){
                .capacity = m->size - 3,
                .allocated = (unsigned)(m->n - m->n_quarantined),
                .quarantined = m->n_quarantined,
        };
}

void ipam_free(struct ipam *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->n; i++)
                free(m->by_off[i]);
        free(m->by_off);
        free(m->by_id);
        free(m->undo);
        free(m->used);
        free(m->buf);
        free(m->path);
        if (m->lock_fd >= 0)
                close(m->lock_fd); /* releases the flock */
        free(m);
}

/* Split a line into exactly n fields separated by single spaces. */
static bool split_fields(const char *line, size_t len, size_t n, const char **f, size_t *flen)
{
        size_t k = 0, start = 0;
        for (size_t i = 0; i <= len; i++) {
                if (i < len && line[i] != ' ')
                        continue;
                if (i == start || k == n)
                        return false;
                f[k] = line + start;
                flen[k] = i - start;
                k++;
                start = i + 1;
        }
        return k == n;
}

static int parse_entry(struct ipam *m, const char *line, size_t len, char *err, size_t errlen)
{
        const char *f[3];
        size_t fl[3];
        if (!split_fields(line, len, 3, f, fl) || fl[0] != 1 ||
            (f[0][0] != 'a' && f[0][0] != 'q')) {
                (void)set_error(err, errlen, 0,
                                "expected 'a ADDRESS DYNO-ID' or 'q ADDRESS DYNO-ID'");
                return -EINVAL;
        }
        uint32_t a;
        if (parse_ipv4(f[1], fl[1], &a) < 0) {
                (void)set_error(err, errlen, 0, "'%.*s' is not an IPv4 address", (int)fl[1], f[1]);
                return -EINVAL;
        }
        if ((a & (~0u << (32 - m->prefix))) != m->network) {
                (void)set_error(err, errlen, 0, "address %.*s is outside the subnet", (int)fl[1],
                                f[1]);
                return -EINVAL;
        }
        uint32_t off = a - m->network;
        if (off < 2 || off == m->size - 1) {
                (void)set_error(err, errlen, 0, "address %.*s is the subnet's %s", (int)fl[1], f[1],
                                off == 0 ? "network address" :
                                off == 1 ? "gateway" :
                                           "broadcast address");
                return -EINVAL;
        }
        char id[DYNO_INSTANCE_NAME_MAX + 1] = {}; /* zero-padded, as every entry's */
        if (fl[2] > DYNO_INSTANCE_NAME_MAX) {
                (void)set_error(err, errlen, 0, "dyno id longer than %d characters",
                                DYNO_INSTANCE_NAME_MAX);
                return -EINVAL;
        }
        memcpy(id, f[2], fl[2]);
        id[fl[2]] = 0;
        if (!dyno_instance_name_valid(id)) {
                char esc[DYNO_INSTANCE_NAME_MAX * 4 + 8];
                (void)set_error(err, errlen, 0, "'%s' is not a valid dyno id",
                                escape_value(id, DYNO_INSTANCE_NAME_MAX, esc, sizeof esc));
                return -EINVAL;
        }
        if (bit_test(m, off)) {
                (void)set_error(err, errlen, 0, "address %.*s appears twice", (int)fl[1], f[1]);
                return -EINVAL;
        }
        if (find_by_id(m, id)) {
                (void)set_error(err, errlen, 0, "dyno id %s appears twice", id);
                return -EINVAL;
        }
        int r = reserve(m, 1, 0);
        if (r < 0)
                return r;
        struct entry *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->off = off;
        e->quarantined = f[0][0] == 'q';
        memcpy(e->id, id, sizeof e->id);
        entry_link(m, e);
        return 0;
}

/* Load the file's text. *ret_rewrite is set when the file records another subnet but holds no
 * address: it is then to be written anew. */
static int parse_state(struct ipam *m, const char *text, size_t len, bool *ret_rewrite, char *err,
                       size_t errlen)
{
        char why[256];
        unsigned line = 0;
        const char *p = text, *end = text + len;
        *ret_rewrite = false;
        if (len == 0) {
                (void)set_error(err, errlen, 0,
                                "%s:1: empty file, expected the header '%s %d SUBNET'", m->path,
                                IPAM_MAGIC, IPAM_VERSION);
                return -EINVAL;
        }
        while (p < end) {
                line++;
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl) {
                        (void)set_error(err, errlen, 0,
                                        "%s:%u: last line not terminated (truncated file?)",
                                        m->path, line);
                        return -EINVAL;
                }
                size_t l = (size_t)(nl - p);
                if (memchr(p, 0, l) || memchr(p, '\r', l)) {
                        (void)set_error(err, errlen, 0, "%s:%u: NUL or carriage return in line",
                                        m->path, line);
                        return -EINVAL;
                }
                int r;
                if (line == 1) {
                        const char *f[3];
                        size_t fl[3];
                        if (!split_fields(p, l, 3, f, fl) || fl[0] != strlen(IPAM_MAGIC) ||
                            memcmp(f[0], IPAM_MAGIC, fl[0]) != 0) {
                                (void)set_error(
                                        err, errlen, 0,
                                        "%s:1: not a netd-ipam file: expected the header '%s %d "
                                        "SUBNET'",
                                        m->path, IPAM_MAGIC, IPAM_VERSION);
                                return -EINVAL;
                        }
                        if (fl[1] != 1 || f[1][0] != '0' + IPAM_VERSION) {
                                (void)set_error(
                                        err, errlen, 0,
                                        "%s:1: format version '%.*s', this netd reads version %d",
                                        m->path, (int)fl[1], f[1], IPAM_VERSION);
                                return -EINVAL;
                        }
                        uint32_t net;
                        unsigned prefix;
                        r = parse_subnet(f[2], fl[2], &net, &prefix, why, sizeof why);
                        if (r < 0) {
                                (void)set_error(err, errlen, 0, "%s:1: %s", m->path, why);
                                return r;
                        }
                        if (net != m->network || prefix != m->prefix) {
                                if (nl + 1 == end) {
                                        *ret_rewrite = true;
                                        return 0;
                                }
                                unsigned n = 0;
                                for (const char *q = nl + 1; q < end; q++)
                                        n += *q == '\n';
                                char cur[16];
                                *format_ipv4(m->network, cur) = 0;
                                (void)set_error(
                                        err, errlen, 0,
                                        "%s records subnet %.*s with %u address%s in use, not the "
                                        "configured %s/%u: changing the subnet under live dynos "
                                        "must be deliberate (stop every dyno, then remove the "
                                        "file)",
                                        m->path, (int)fl[2], f[2], n, n == 1 ? "" : "es", cur,
                                        m->prefix);
                                return -EINVAL;
                        }
                } else {
                        r = parse_entry(m, p, l, why, sizeof why);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                (void)set_error(err, errlen, 0, "%s:%u: %s", m->path, line, why);
                                return r;
                        }
                }
                p = nl + 1;
        }
        return 0;
}

/* write_file_whole's temporary files, ".#<name>.<pid>", that a crash left. Only a holder of
 * the lock writes the file, so any that is there now is a leftover. */
static void remove_stale_temporaries(const char *path)
{
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return;
        char *slash = strrchr(dir, '/');
        const char *name = slash ? path + (slash - dir) + 1 : path;
        if (!slash)
                strcpy(dir, ".");
        else if (slash == dir)
                slash[1] = 0;
        else
                *slash = 0;
        _cleanup_free_ char *prefix = strjoin3(".#", name, ".");
        if (!prefix)
                return;
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!startswith(de->d_name, prefix))
                        continue;
                const char *pid = de->d_name + strlen(prefix);
                if (*pid && strspn(pid, "0123456789") == strlen(pid))
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
}

int ipam_open(const char *path, const char *subnet, ipam_ns_alive_t ns_alive, void *userdata,
              struct ipam **ret, char *err, size_t errlen)
{
        uint32_t net;
        unsigned prefix;
        int r = parse_subnet(subnet, strlen(subnet), &net, &prefix, err, errlen);
        if (r < 0)
                return r;

        _cleanup_ipam_ struct ipam *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->lock_fd = -1;
        m->network = net;
        m->prefix = prefix;
        m->size = UINT32_C(1) << (32 - prefix);
        m->ns_alive = ns_alive;
        m->userdata = userdata;
        m->path = strdup(path);
        size_t words = (m->size + 63) / 64;
        m->used = calloc(words, sizeof *m->used);
        if (!m->path || !m->used)
                return -ENOMEM;
        /* Network, gateway, broadcast, and the bits past the end are never free. */
        bit_set(m, 0, true);
        bit_set(m, 1, true);
        bit_set(m, m->size - 1, true);
        for (uint64_t b = m->size; b < words * 64; b++)
                bit_set(m, (uint32_t)b, true);

        _cleanup_free_ char *lock_path = strjoin3(path, ".lock", NULL);
        if (!lock_path)
                return -ENOMEM;
        m->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (m->lock_fd < 0) {
                r = -errno;
                (void)set_error(err, errlen, 0, "open %s: %s", lock_path, strerror(-r));
                return r;
        }
        if (flock(m->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                (void)set_error(err, errlen, 0, "lock %s: %s", lock_path,
                                r == -EBUSY ? "held by another process (is another netd running?)" :
                                              strerror(-r));
                return r;
        }
        remove_stale_temporaries(path);

        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        bool rewrite = false;
        r = read_full_file(path, &text, &len);
        if (r == -ENOENT)
                rewrite = true;
        else if (r < 0) {
                (void)set_error(err, errlen, 0, "read %s: %s", path, strerror(-r));
                return r;
        } else {
                r = parse_state(m, text, len, &rewrite, err, errlen);
                if (r == -ENOMEM)
                        (void)set_error(err, errlen, 0, "load %s: %s", path, strerror(-r));
                if (r < 0)
                        return r;
        }
        if (rewrite) {
                r = write_state(m);
                if (r < 0) {
                        (void)set_error(err, errlen, 0, "write %s: %s", path, strerror(-r));
                        return r;
                }
        }
        /* Without the hint, continue after the highest address in use, as if it had been
         * handed out last. */
        if (!load_next_hint(m))
                m->next = m->n > 0 ? m->by_off[m->n - 1]->off + 1 : 2;
        *ret = TAKE_PTR(m);
        return 0;
}
