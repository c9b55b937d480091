/* See events.h. The file is a sequence of varint-delimited hostd.v1.Event messages, appended
 * with one write(2) each (O_APPEND). A crash mid-write leaves a truncated last frame, cut off
 * at the next start. When the file holds twice the kept number, it is rewritten with the kept
 * ones (atomically). */
#include "events.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "call.h"
#include "frame.h"
#include "util.h"

struct subscriber {
        struct events *e;
        struct call *call;
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

/* An event written before EventKind had its kind as a string in field 4 (reserved now):
 * protobuf-c keeps it among the unknown fields, where it is read back. */
static void event_upgrade(Hostd__V1__Event *ev)
{
        static const struct {
                const char *name;
                Hostd__V1__EventKind kind;
        } kinds[] = {
                { "state", HOSTD__V1__EVENT_KIND__EVENT_KIND_STATE },
                { "oom", HOSTD__V1__EVENT_KIND__EVENT_KIND_OOM },
                { "removed", HOSTD__V1__EVENT_KIND__EVENT_KIND_REMOVED },
                { "host", HOSTD__V1__EVENT_KIND__EVENT_KIND_HOST },
        };
        if (ev->kind != HOSTD__V1__EVENT_KIND__EVENT_KIND_UNSPECIFIED)
                return;
        for (unsigned i = 0; i < ev->base.n_unknown_fields; i++) {
                const ProtobufCMessageUnknownField *f = &ev->base.unknown_fields[i];
                if (f->tag != 4 || f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
                        continue;
                for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                        if (f->len == strlen(kinds[k].name) &&
                            memcmp(f->data, kinds[k].name, f->len) == 0)
                                ev->kind = kinds[k].kind;
        }
}

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
                event_upgrade(ev);
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
                call_on_cancel(s->call, NULL, NULL);
                call_unref(s->call);
                free(s);
        }
        for (size_t i = 0; i < e->n; i++)
                hostd__v1__event__free_unpacked(event_at(e, i), NULL);
        free(e->ring);
        closep(&e->fd);
        free(e->path);
        free(e);
}

static int send_event(struct call *c, Hostd__V1__Event *ev)
{
        Hostd__V1__SubscribeEventsResponse resp = HOSTD__V1__SUBSCRIBE_EVENTS_RESPONSE__INIT;
        resp.event = ev;
        return call_send(c, &resp.base);
}

/* An event is made as protobuf-c's unpack would make it, so that one free serves both. */
static Hostd__V1__Event *event_new(uint64_t seq, const char *dyno_id, Hostd__V1__EventKind kind,
                                   Hostd__V1__DynoState state, const char *message)
{
        Hostd__V1__Event tmp = HOSTD__V1__EVENT__INIT;
        tmp.seq = seq;
        tmp.time_usec = now_realtime_usec();
        tmp.dyno_id = (char *)(dyno_id ? dyno_id : "");
        tmp.kind = kind;
        tmp.state = state;
        tmp.message = (char *)message;
        size_t len = hostd__v1__event__get_packed_size(&tmp);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return NULL;
        hostd__v1__event__pack(&tmp, buf);
        return hostd__v1__event__unpack(NULL, len, buf);
}

void events_emit(struct events *e, const char *dyno_id, Hostd__V1__EventKind kind,
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

        /* A subscriber whose call ended is gone already (on_cancel). */
        for (struct subscriber *s = e->subs; s; s = s->next)
                (void)send_event(s->call, ev);
}

int events_last_state(const struct events *e, const char *dyno_id)
{
        for (size_t i = e->n; i-- > 0;) {
                const Hostd__V1__Event *ev = event_at(e, i);
                if (ev->kind == HOSTD__V1__EVENT_KIND__EVENT_KIND_STATE &&
                    strcmp(ev->dyno_id, dyno_id) == 0)
                        return (int)ev->state;
        }
        return -1;
}

/* The client went: forget it. */
static void on_subscriber_cancel(struct call *c, void *userdata)
{
        struct subscriber *gone = userdata;
        struct events *e = gone->e;
        for (struct subscriber **pp = &e->subs; *pp; pp = &(*pp)->next)
                if (*pp == gone) {
                        *pp = gone->next;
                        call_unref(gone->call);
                        free(gone);
                        return;
                }
}

void events_subscribe(struct events *e, struct call *c, uint64_t since, bool follow)
{
        for (size_t i = 0; i < e->n; i++)
                if (event_at(e, i)->seq > since && send_event(c, event_at(e, i)) < 0)
                        return; /* the client went while it was sent the kept ones */
        if (!follow) {
                call_finish(c);
                return;
        }
        struct subscriber *s = calloc(1, sizeof *s);
        if (!s) {
                call_fail(c, API_INTERNAL, "subscribe_events: out of memory");
                return;
        }
        s->e = e;
        s->call = call_ref(c);
        s->next = e->subs;
        e->subs = s;
        call_on_cancel(c, on_subscriber_cancel, s);
}
