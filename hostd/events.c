/* See events.h. The file is a sequence of varint-delimited hostd.v1.Event messages, appended
 * with one write(2) each (O_APPEND). A crash mid-write leaves a truncated last frame, cut off
 * at the next start. When the file holds twice the kept number, it is rewritten with the kept
 * ones (atomically). */
#include "events.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "frame.h"
#include "rpc.h"
#include "util.h"
#include "api-code.h"

struct subscriber {
        struct conn *conn;
        uint64_t id;
        struct subscriber *next;
};

struct events {
        char *path;
        int fd;
        uint32_t keep;
        Hostd__V1__Event **ring; /* the last keep events, oldest at start */
        size_t n, start;
        size_t in_file;
        uint64_t next_seq;
        struct subscriber *subs;
};

static Hostd__V1__Event *event_at(const struct events *e, size_t i)
{
        return e->ring[(e->start + i) % e->keep];
}

static void ring_push(struct events *e, Hostd__V1__Event *ev)
{
        if (e->n == e->keep) {
                hostd__v1__event__free_unpacked(e->ring[e->start], NULL);
                e->ring[e->start] = ev;
                e->start = (e->start + 1) % e->keep;
        } else
                e->ring[(e->start + e->n++) % e->keep] = ev;
}

static int frame_event(const Hostd__V1__Event *ev, uint8_t **ret, size_t *ret_len)
{
        size_t len = hostd__v1__event__get_packed_size(ev);
        uint8_t *buf = malloc(FRAME_VARINT_MAX + len);
        if (!buf)
                return -ENOMEM;
        size_t h = frame_varint_encode(len, buf);
        hostd__v1__event__pack(ev, buf + h);
        *ret = buf;
        *ret_len = h + len;
        return 0;
}

/* Rewrite the file with the kept events only. */
static int compact(struct events *e)
{
        size_t cap = 4096, len = 0;
        _cleanup_free_ uint8_t *all = malloc(cap);
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < e->n; i++) {
                _cleanup_free_ uint8_t *f = NULL;
                size_t fl;
                if (frame_event(event_at(e, i), &f, &fl) < 0)
                        return -ENOMEM;
                if (len + fl > cap) {
                        cap = (len + fl) * 2;
                        uint8_t *n = realloc(all, cap);
                        if (!n)
                                return -ENOMEM;
                        all = n;
                }
                memcpy(all + len, f, fl);
                len += fl;
        }
        int r = write_file_atomic(e->path, all, len, 0600);
        if (r < 0)
                return r;
        int fd = open(e->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        closep(&e->fd);
        e->fd = fd;
        e->in_file = e->n;
        return 0;
}

int events_open(const char *state_dir, uint32_t keep, struct events **ret)
{
        struct events *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->fd = -1;
        e->keep = keep ? keep : 1;
        e->next_seq = 1;
        e->path = strjoin3(state_dir, "/events", NULL);
        e->ring = calloc(e->keep, sizeof *e->ring);
        /* Before the first goto: the cleanup at the label must not free an uninitialised
         * pointer (clang refuses the jump; gcc compiled it). */
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = 0;
        if (!e->path || !e->ring) {
                r = -ENOMEM;
                goto fail;
        }

        r = read_full_file(e->path, &buf, &len);
        if (r < 0 && r != -ENOENT)
                goto fail;
        size_t off = 0;
        while (buf && off < len) {
                uint64_t n;
                size_t used;
                if (frame_varint_decode((uint8_t *)buf + off, len - off, &n, &used) != 1 ||
                    n > len - off - used)
                        break; /* a frame cut short by a crash: dropped below */
                Hostd__V1__Event *ev =
                        hostd__v1__event__unpack(NULL, n, (uint8_t *)buf + off + used);
                if (!ev)
                        break;
                if (ev->seq >= e->next_seq)
                        e->next_seq = ev->seq + 1;
                ring_push(e, ev);
                e->in_file++;
                off += used + n;
        }
        e->fd = open(e->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (e->fd < 0) {
                r = -errno;
                goto fail;
        }
        if (off < len) {
                log_warning("%s: %zu bytes after the last whole event (cut by a crash); dropped",
                            e->path, len - off);
                if (ftruncate(e->fd, (off_t)off) < 0) {
                        r = -errno;
                        goto fail;
                }
        }
        *ret = e;
        return 0;
fail:
        events_free(e);
        return r;
}

void events_free(struct events *e)
{
        if (!e)
                return;
        while (e->subs) {
                struct subscriber *s = e->subs;
                e->subs = s->next;
                conn_unref(s->conn);
                free(s);
        }
        for (size_t i = 0; i < e->n; i++)
                hostd__v1__event__free_unpacked(event_at(e, i), NULL);
        free(e->ring);
        closep(&e->fd);
        free(e->path);
        free(e);
}

static void send_event(struct conn *c, uint64_t id, Hostd__V1__Event *ev)
{
        conn_reply_result(c, id, EVENT, event, ev);
}

/* An event is made as protobuf-c's unpack would make it, so that one free serves both. */
static Hostd__V1__Event *event_new(uint64_t seq, const char *dyno_id, const char *kind,
                                   Hostd__V1__DynoState state, const char *message)
{
        Hostd__V1__Event tmp = HOSTD__V1__EVENT__INIT;
        tmp.seq = seq;
        tmp.time_usec = now_realtime_usec();
        tmp.dyno_id = (char *)(dyno_id ? dyno_id : "");
        tmp.kind = (char *)kind;
        tmp.state = state;
        tmp.message = (char *)message;
        size_t len = hostd__v1__event__get_packed_size(&tmp);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return NULL;
        hostd__v1__event__pack(&tmp, buf);
        return hostd__v1__event__unpack(NULL, len, buf);
}

void events_emit(struct events *e, const char *dyno_id, const char *kind,
                 Hostd__V1__DynoState state, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (!utf8_valid(msg))
                snprintf(msg, sizeof msg, "(a message that is not UTF-8)");

        Hostd__V1__Event *ev = event_new(e->next_seq, dyno_id, kind, state, msg);
        if (!ev) {
                log_error("events: out of memory; event %" PRIu64 " lost", e->next_seq);
                return;
        }
        e->next_seq++;
        _cleanup_free_ uint8_t *f = NULL;
        size_t fl;
        if (frame_event(ev, &f, &fl) < 0 || write(e->fd, f, fl) != (ssize_t)fl)
                log_error_errno(errno, "events: write %s: %m", e->path);
        else
                e->in_file++;
        ring_push(e, ev);
        if (e->in_file >= 2 * (size_t)e->keep) {
                int r = compact(e);
                if (r < 0)
                        log_error_errno(r, "events: compact %s: %m", e->path);
        }

        for (struct subscriber **pp = &e->subs; *pp;) {
                struct subscriber *s = *pp;
                if (conn_is_closed(s->conn)) {
                        *pp = s->next;
                        conn_unref(s->conn);
                        free(s);
                        continue;
                }
                send_event(s->conn, s->id, ev);
                pp = &s->next;
        }
}

int events_last_state(const struct events *e, const char *dyno_id)
{
        for (size_t i = e->n; i-- > 0;) {
                const Hostd__V1__Event *ev = event_at(e, i);
                if (strcmp(ev->kind, "state") == 0 && strcmp(ev->dyno_id, dyno_id) == 0)
                        return (int)ev->state;
        }
        return -1;
}

void events_subscribe(struct events *e, struct conn *c, uint64_t id, uint64_t since, bool follow)
{
        for (size_t i = 0; i < e->n; i++)
                if (event_at(e, i)->seq > since)
                        send_event(c, id, event_at(e, i));
        if (!follow) {
                rpc_end_stream(c, id);
                return;
        }
        struct subscriber *s = calloc(1, sizeof *s);
        if (!s) {
                conn_reply_error(c, id, API_INTERNAL, "out of memory");
                return;
        }
        s->conn = conn_ref(c);
        s->id = id;
        s->next = e->subs;
        e->subs = s;
}

uint64_t events_last_seq(const struct events *e) { return e->next_seq - 1; }
