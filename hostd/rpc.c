/* The API server.
 *
 * Every connection is non-blocking and has its own reader and writer; a request is decoded,
 * validated and answered (or handed to the manager, which answers later) without blocking
 * the loop. A peer that sends what is not our protocol is told so once, if it can be, and
 * disconnected; it never takes hostd or another client with it. */
#include "rpc.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <systemd/sd-event.h>

#include "admission.h"
#include "cgroup.h"
#include "cpus.h"
#include "events.h"
#include "exec.h"
#include "frame.h"
#include "images.h"
#include "importer.h"
#include "manager.h"
#include "validate.h"

#include "config-build.h"

/* What a slow reader may leave queued before it is cut off. */
#define CONN_MAX_PENDING (64u << 20)

struct rpc_server {
        struct manager *m;
        int fd;
        sd_event_source *source;
        size_t n_conns;
        gid_t read_gid; /* read-group's; (gid_t)-1: none */
};

struct conn {
        unsigned ref;
        struct rpc_server *srv;
        int fd;
        sd_event_source *source;
        sd_event_source *more; /* frames read but not yet handled, after a full batch */
        struct frame_reader rd;
        struct frame_writer wr;
        bool closed;
        bool close_after_flush;
        bool read_only; /* a read-group member: only the calls that change nothing */
};

struct conn *conn_ref(struct conn *c)
{
        c->ref++;
        return c;
}

void conn_unref(struct conn *c)
{
        if (!c || --c->ref > 0)
                return;
        frame_reader_free(&c->rd);
        frame_writer_free(&c->wr);
        free(c);
}

static void conn_close(struct conn *c)
{
        if (c->closed)
                return;
        c->closed = true;
        c->source = sd_event_source_disable_unref(c->source);
        c->more = sd_event_source_disable_unref(c->more);
        closep(&c->fd), c->fd = -1;
        c->srv->n_conns--;
        conn_unref(c);
}

static void conn_update_events(struct conn *c)
{
        if (c->closed)
                return;
        uint32_t ev = frame_writer_pending(&c->wr) ? EPOLLOUT : 0;
        if (!c->close_after_flush)
                ev |= EPOLLIN;
        sd_event_source_set_io_events(c->source, ev);
}

static void conn_flush(struct conn *c)
{
        if (c->closed)
                return;
        int r = frame_writer_flush(&c->wr, c->fd);
        if (r < 0 && r != -EAGAIN) {
                log_debug("connection: write: %s", strerror(-r));
                conn_close(c);
                return;
        }
        if (r == 0 && c->close_after_flush) {
                conn_close(c);
                return;
        }
        conn_update_events(c);
}

void conn_reply(struct conn *c, Hostd__V1__Response *resp)
{
        if (c->closed)
                return;
        size_t len = hostd__v1__response__get_packed_size(resp);
        uint8_t stackbuf[4096];
        uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
        if (!buf) {
                log_error("connection: out of memory for a %zu-byte reply", len);
                conn_close(c);
                return;
        }
        hostd__v1__response__pack(resp, buf);
        int r = frame_writer_append(&c->wr, buf, len);
        if (buf != stackbuf)
                free(buf);
        if (r < 0) {
                log_warning("connection: %s; disconnecting a client that does not read its replies",
                            strerror(-r));
                conn_close(c);
                return;
        }
        conn_flush(c);
}

void conn_reply_error(struct conn *c, uint64_t id, int code, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        Hostd__V1__Status st = HOSTD__V1__STATUS__INIT;
        st.code = code;
        st.message = msg;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.status = &st;
        conn_reply(c, &resp);
}

/* Tell the peer what was wrong with its stream, then hang up. */
_printf_(3, 4) static void conn_protocol_error(struct conn *c, int code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        log_info("connection: %s; disconnecting", msg);
        conn_reply_error(c, 0, code, "%s", msg);
        c->close_after_flush = true;
        conn_flush(c);
}

/* ---- calls ---- */

/* The dyno a call names, after checking the id; NULL once the error is answered. */
static struct dyno *find_dyno(struct conn *c, uint64_t id, const char *dyno_id)
{
        char msg[256];
        int code = validate_id("id", dyno_id, msg, sizeof msg);
        if (code) {
                conn_reply_error(c, id, code, "%s", msg);
                return NULL;
        }
        struct dyno *d = manager_find(c->srv->m, dyno_id);
        if (!d)
                conn_reply_error(c, id, HOSTD__V1__CODE__NOT_FOUND, "dyno '%s' not found", dyno_id);
        return d;
}

static void call_get(struct conn *c, uint64_t id, const Hostd__V1__GetRequest *req)
{
        struct dyno *d = find_dyno(c, id, req->id);
        if (!d)
                return;
        Hostd__V1__Dyno dp;
        Hostd__V1__ExitInfo ei;
        dyno_to_proto(d, &dp, &ei);
        Hostd__V1__GetReply get = HOSTD__V1__GET_REPLY__INIT;
        get.dyno = &dp;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_GET;
        resp.get = &get;
        conn_reply(c, &resp);
}

struct list_ctx {
        Hostd__V1__Dyno *dynos;
        Hostd__V1__ExitInfo *exits;
        Hostd__V1__Dyno **ptrs;
        size_t n;
};

static void list_one(struct dyno *d, void *userdata)
{
        struct list_ctx *l = userdata;
        dyno_to_proto(d, &l->dynos[l->n], &l->exits[l->n]);
        l->ptrs[l->n] = &l->dynos[l->n];
        l->n++;
}

static void call_list(struct conn *c, uint64_t id)
{
        struct manager *m = c->srv->m;
        size_t n = m->n_dynos ? m->n_dynos : 1;
        struct list_ctx l = {
                .dynos = calloc(n, sizeof(Hostd__V1__Dyno)),
                .exits = calloc(n, sizeof(Hostd__V1__ExitInfo)),
                .ptrs = calloc(n, sizeof(Hostd__V1__Dyno *)),
        };
        if (l.dynos && l.exits && l.ptrs) {
                manager_foreach(m, list_one, &l);
                Hostd__V1__ListReply list = HOSTD__V1__LIST_REPLY__INIT;
                list.n_dynos = l.n;
                list.dynos = l.ptrs;
                Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
                resp.id = id;
                resp.result_case = HOSTD__V1__RESPONSE__RESULT_LIST;
                resp.list = &list;
                conn_reply(c, &resp);
        } else
                conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL, "list: out of memory");
        free(l.dynos);
        free(l.exits);
        free(l.ptrs);
}

/* Live dynos, and the memory given to them: a retiring instance (a daily cycle's old one,
 * still stopping) holds its quota too. */
static void count_live(struct dyno *d, void *userdata)
{
        uint64_t *v = userdata;
        if (!d->size)
                return;
        if (dyno_is_live(d)) {
                v[0]++;
                v[1] += d->size->memory;
        }
        v[1] += dyno_retiring_count(d) * d->size->memory;
}

static void call_host_info(struct conn *c, uint64_t id)
{
        struct manager *m = c->srv->m;
        const struct config *cfg = m->config;
        Hostd__V1__HostInfoReply h = HOSTD__V1__HOST_INFO_REPLY__INIT;
        char hostname[256] = "";
        gethostname(hostname, sizeof hostname - 1);
        h.hostname = hostname;
        h.version = (char *)HOSTD_VERSION;
        h.boot_id = m->boot_id;
        h.cgroup_mode = (char *)cg_mode_name(cg_manager_mode(m->cg));
        h.cpus = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);

        (void)host_memory(&h.memory_total, &h.memory_available);
        uint64_t live[2] = { 0, 0 };
        manager_foreach(m, count_live, live);
        h.dynos = (uint32_t)live[0];
        h.memory_allocated = live[1];
        h.memory_reserved = cfg->reserved_memory;
        h.memory_allocatable = memory_allocatable(cfg, h.memory_total);
        h.memory_committed = memory_committed(m);
        h.draining = m->draining;
        h.drain_deadline_usec = m->drain_deadline_usec;
        h.max_dynos = cfg->max_dynos;
        h.dedicated_cpu_pool = (char *)cpu_pool_list(m->cpus);
        h.dedicated_cpus_free = cpu_pool_n_free(m->cpus);

        Hostd__V1__Size *sizes = calloc(cfg->n_sizes, sizeof *sizes);
        Hostd__V1__Size **ptrs = calloc(cfg->n_sizes, sizeof *ptrs);
        if (!sizes || !ptrs) {
                free(sizes);
                free(ptrs);
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL,
                                        "host_info: out of memory");
        }
        for (size_t i = 0; i < cfg->n_sizes; i++) {
                const struct size_def *s = &cfg->sizes[i];
                hostd__v1__size__init(&sizes[i]);
                sizes[i].name = s->name;
                sizes[i].memory_bytes = s->memory;
                sizes[i].r15_multiple = s->r15_multiple;
                sizes[i].pids = s->pids;
                sizes[i].cpu_weight = s->cpu_weight;
                sizes[i].dedicated_cpus = s->dedicated_cpus;
                sizes[i].swap = s->swap;
                ptrs[i] = &sizes[i];
        }
        h.n_sizes = cfg->n_sizes;
        h.sizes = ptrs;

        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_HOST_INFO;
        resp.host_info = &h;
        conn_reply(c, &resp);
        free(sizes);
        free(ptrs);
}

static void call_drain(struct conn *c, uint64_t id, const Hostd__V1__DrainRequest *req)
{
        char msg[256];
        int r = admission_drain(c->srv->m,
                                req->deadline_case ==
                                        HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS,
                                req->deadline_seconds, msg, sizeof msg);
        if (r < 0)
                return conn_reply_error(c, id,
                                        r == -EINVAL ? HOSTD__V1__CODE__INVALID_ARGUMENT :
                                                       HOSTD__V1__CODE__INTERNAL,
                                        "%s", msg);
        Hostd__V1__DrainReply d = HOSTD__V1__DRAIN_REPLY__INIT;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_DRAIN;
        resp.drain = &d;
        conn_reply(c, &resp);
}

static void call_undrain(struct conn *c, uint64_t id)
{
        char msg[256];
        if (admission_undrain(c->srv->m, msg, sizeof msg) < 0)
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL, "%s", msg);
        Hostd__V1__UndrainReply u = HOSTD__V1__UNDRAIN_REPLY__INIT;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_UNDRAIN;
        resp.undrain = &u;
        conn_reply(c, &resp);
}

static void fill_log_line(Hostd__V1__LogLine *o, const struct dyno *d, const struct log_line *l)
{
        hostd__v1__log_line__init(o);
        o->time_usec = l->time_usec;
        o->dyno_id = d->id;
        o->source = l->source == LOG_SOURCE_PLATFORM ? (char *)"heroku" : (char *)"app";
        o->process = l->source == LOG_SOURCE_PLATFORM ? (char *)"hostd" :
                                                        (*d->spec->name ? d->spec->name : d->id);
        o->text.data = (uint8_t *)l->text;
        o->text.len = l->len;
}

/* One LogBatch response with the ring's lines [from, to). */
static void send_log_batch(struct conn *c, uint64_t id, const struct dyno *d, size_t from,
                           size_t to, bool end)
{
        size_t n = to - from;
        Hostd__V1__LogLine *lines = calloc(n ? n : 1, sizeof *lines);
        Hostd__V1__LogLine **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!lines || !ptrs) {
                free(lines);
                free(ptrs);
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL, "logs: out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                fill_log_line(&lines[i], d, log_ring_get(d->ring, from + i));
                ptrs[i] = &lines[i];
        }
        Hostd__V1__LogBatch batch = HOSTD__V1__LOG_BATCH__INIT;
        batch.n_lines = n;
        batch.lines = ptrs;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_LOGS;
        resp.logs = &batch;
        resp.end_of_stream = end;
        conn_reply(c, &resp);
        free(lines);
        free(ptrs);
}

static size_t log_line_cost(const struct dyno *d, const struct log_line *l)
{
        return l->len + 64 + strlen(d->id) * 2;
}

void rpc_send_logs(struct conn *c, uint64_t id, const struct dyno *d, size_t first, bool follow)
{
        size_t total = log_ring_count(d->ring);
        size_t budget = d->m->config->max_frame - 1024;
        if (!follow) {
                /* One reply, one frame: the newest lines that fit, in order. */
                size_t used = 0, k = total;
                while (k > first) {
                        size_t cost = log_line_cost(d, log_ring_get(d->ring, k - 1));
                        if (used + cost > budget)
                                break;
                        used += cost;
                        k--;
                }
                return send_log_batch(c, id, d, k, total, true);
        }
        /* A stream: every line, in as many frames as it takes. */
        do {
                size_t used = 0, k = first;
                while (k < total) {
                        size_t cost = log_line_cost(d, log_ring_get(d->ring, k));
                        if (k > first && used + cost > budget)
                                break;
                        used += cost;
                        k++;
                }
                send_log_batch(c, id, d, first, k, false);
                first = k;
        } while (first < total && !c->closed);
}

void rpc_end_stream(struct conn *c, uint64_t id)
{
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.end_of_stream = true;
        conn_reply(c, &resp);
}

bool conn_is_closed(const struct conn *c) { return c->closed; }

static void call_logs(struct conn *c, uint64_t id, const Hostd__V1__LogsRequest *req)
{
        struct dyno *d = find_dyno(c, id, req->id);
        if (!d)
                return;

        size_t total = log_ring_count(d->ring);
        size_t first = req->lines && req->lines < total ? total - req->lines : 0;
        rpc_send_logs(c, id, d, first, req->follow);
        if (req->follow)
                dyno_follow_logs(d, c, id);
}

/* ---- images ---- */

static void image_to_proto(struct manager *m, const struct image_info *info, Hostd__V1__Image *o)
{
        hostd__v1__image__init(o);
        o->digest = (char *)info->digest;
        o->kind = info->kind == IMAGE_KIND_STACK ? HOSTD__V1__IMAGE_KIND__STACK :
                                                   HOSTD__V1__IMAGE_KIND__SLUG;
        o->size_bytes = info->size_bytes;
        o->imported_usec = info->imported_usec;
        o->last_used_usec = info->last_used_usec;
        o->users = manager_image_users(m, info->digest);
}

void rpc_reply_image(struct conn *c, uint64_t id, struct manager *m, const struct image_info *info)
{
        Hostd__V1__Image img;
        image_to_proto(m, info, &img);
        Hostd__V1__ImageImportReply reply = HOSTD__V1__IMAGE_IMPORT_REPLY__INIT;
        reply.image = &img;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_IMAGE_IMPORT;
        resp.image_import = &reply;
        resp.end_of_stream = true;
        conn_reply(c, &resp);
}

static bool digest_checked(struct conn *c, uint64_t id, const char *field, const char *digest)
{
        if (image_digest_valid(digest))
                return true;
        char esc[400];
        conn_reply_error(c, id, HOSTD__V1__CODE__INVALID_ARGUMENT,
                         "%s: '%s' is not a sha256 (64 lower-case hex digits)", field,
                         escape_value(digest, 80, esc, sizeof esc));
        return false;
}

static void call_image_import(struct conn *c, uint64_t id, const Hostd__V1__ImageImportRequest *req)
{
        struct manager *m = c->srv->m;
        char msg[512];
        int code = validate_image_source("image_import.source", req->source, msg, sizeof msg);
        if (code)
                return conn_reply_error(c, id, code, "%s", msg);
        if (!digest_checked(c, id, "image_import.sha256", req->sha256))
                return;
        if (req->kind != HOSTD__V1__IMAGE_KIND__STACK && req->kind != HOSTD__V1__IMAGE_KIND__SLUG)
                return conn_reply_error(c, id, HOSTD__V1__CODE__INVALID_ARGUMENT,
                                        "image_import.kind: stack or slug");
        enum image_kind kind = req->kind == HOSTD__V1__IMAGE_KIND__STACK ? IMAGE_KIND_STACK :
                                                                           IMAGE_KIND_SLUG;
        struct image_info info;
        if (!importer_busy(m, req->sha256) && image_lookup(m->images, req->sha256, &info) == 0) {
                if (info.kind != kind)
                        return conn_reply_error(c, id, HOSTD__V1__CODE__ALREADY_EXISTS,
                                                "image %.12s is here already, as a %s", req->sha256,
                                                info.kind == IMAGE_KIND_STACK ? "stack" : "slug");
                return rpc_reply_image(c, id, m, &info);
        }
        int r = importer_start(m, req->source, req->sha256, kind, c, id);
        if (r < 0)
                conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL,
                                 "image %.12s: start the import: %s", req->sha256, strerror(-r));
}

static void call_image_list(struct conn *c, uint64_t id)
{
        struct manager *m = c->srv->m;
        _cleanup_free_ struct image_info *infos = NULL;
        size_t n = 0;
        int r = image_list(m->images, &infos, &n);
        if (r < 0)
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL, "image_list: %s",
                                        strerror(-r));
        _cleanup_free_ Hostd__V1__Image *imgs = calloc(n ? n : 1, sizeof *imgs);
        _cleanup_free_ Hostd__V1__Image **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!imgs || !ptrs)
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL,
                                        "image_list: out of memory");
        for (size_t i = 0; i < n; i++) {
                image_to_proto(m, &infos[i], &imgs[i]);
                ptrs[i] = &imgs[i];
        }
        Hostd__V1__ImageListReply reply = HOSTD__V1__IMAGE_LIST_REPLY__INIT;
        reply.n_images = n;
        reply.images = ptrs;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_IMAGE_LIST;
        resp.image_list = &reply;
        conn_reply(c, &resp);
}

static void call_image_remove(struct conn *c, uint64_t id, const Hostd__V1__ImageRemoveRequest *req)
{
        struct manager *m = c->srv->m;
        if (!digest_checked(c, id, "image_remove.digest", req->digest))
                return;
        if (importer_busy(m, req->digest))
                return conn_reply_error(c, id, HOSTD__V1__CODE__FAILED_PRECONDITION,
                                        "image %.12s is being imported", req->digest);
        char err[512] = "";
        int r = image_remove(m->images, req->digest, manager_image_in_use, m, err, sizeof err);
        if (r == -ENOENT)
                return conn_reply_error(c, id, HOSTD__V1__CODE__NOT_FOUND, "image %s not found",
                                        req->digest);
        if (r == -EBUSY)
                return conn_reply_error(c, id, HOSTD__V1__CODE__FAILED_PRECONDITION, "%s", err);
        if (r < 0)
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL, "%s",
                                        *err ? err : strerror(-r));
        log_info("image %.12s removed", req->digest);
        importer_sweep(m);
        Hostd__V1__ImageRemoveReply reply = HOSTD__V1__IMAGE_REMOVE_REPLY__INIT;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_IMAGE_REMOVE;
        resp.image_remove = &reply;
        conn_reply(c, &resp);
}

/* An image being imported is not in the store yet: gc cannot see it. */
static void call_image_gc(struct conn *c, uint64_t id, const Hostd__V1__ImageGcRequest *req)
{
        struct manager *m = c->srv->m;
        uint64_t budget = req->budget_case == HOSTD__V1__IMAGE_GC_REQUEST__BUDGET_BUDGET_BYTES ?
                                  req->budget_bytes :
                                  m->config->images_budget;
        _cleanup_strv_free_ char **removed = NULL;
        uint64_t freed = 0;
        int r = image_gc(m->images, budget, manager_image_in_use, m, &removed, &freed);
        if (r < 0)
                return conn_reply_error(c, id, HOSTD__V1__CODE__INTERNAL, "image_gc: %s",
                                        strerror(-r));
        size_t n = 0;
        while (removed && removed[n])
                n++;
        log_info("image gc: %zu removed, %llu bytes freed (budget %llu)", n,
                 (unsigned long long)freed, (unsigned long long)budget);
        if (n > 0)
                importer_sweep(m);
        Hostd__V1__ImageGcReply reply = HOSTD__V1__IMAGE_GC_REPLY__INIT;
        reply.n_removed = n;
        reply.removed = removed;
        reply.freed_bytes = freed;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.id = id;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_IMAGE_GC;
        resp.image_gc = &reply;
        conn_reply(c, &resp);
}

static const char *call_name(Hostd__V1__Request__CallCase cc)
{
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
                &hostd__v1__request__descriptor, (unsigned)cc);
        return f ? f->name : "unknown";
}

/* The calls a read-group member may make: they show, and change nothing. */
static bool call_reads_only(Hostd__V1__Request__CallCase cc)
{
        switch (cc) {
        case HOSTD__V1__REQUEST__CALL_GET:
        case HOSTD__V1__REQUEST__CALL_LIST:
        case HOSTD__V1__REQUEST__CALL_HOST_INFO:
        case HOSTD__V1__REQUEST__CALL_LOGS:
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_EVENTS:
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_METRICS:
        case HOSTD__V1__REQUEST__CALL_IMAGE_LIST: return true;
        default: return false;
        }
}

static void conn_handle(struct conn *c, const uint8_t *msg, size_t len)
{
        struct manager *m = c->srv->m;
        Hostd__V1__Request *req = hostd__v1__request__unpack(NULL, len, msg);
        if (!req)
                return conn_protocol_error(c, HOSTD__V1__CODE__INVALID_ARGUMENT,
                                           "a %zu-byte frame that is not a hostd.v1.Request", len);
        /* protobuf-c keeps strings NUL-terminated and silently cuts one holding a NUL byte:
         * such a request packs back smaller than it came. */
        if (hostd__v1__request__get_packed_size(req) != len) {
                conn_reply_error(
                        c, req->id, HOSTD__V1__CODE__INVALID_ARGUMENT,
                        "request: a string holds a NUL byte, or the encoding is not canonical");
                hostd__v1__request__free_unpacked(req, NULL);
                return;
        }

        uint64_t id = req->id;
        if (c->read_only && !call_reads_only(req->call_case)) {
                log_notice("refused %s from a read-only client (read-group): it needs root",
                           call_name(req->call_case));
                conn_reply_error(c, id, HOSTD__V1__CODE__PERMISSION_DENIED,
                                 "%s: permission denied: this client may only read (it is in "
                                 "read-group, not root)",
                                 call_name(req->call_case));
                hostd__v1__request__free_unpacked(req, NULL);
                return;
        }
        switch (req->call_case) {
        case HOSTD__V1__REQUEST__CALL_START:
                if (!req->start->spec) {
                        conn_reply_error(c, id, HOSTD__V1__CODE__INVALID_ARGUMENT,
                                         "start.spec: required");
                        break;
                }
                manager_start(m, TAKE_PTR(req->start->spec), c, id);
                break;
        case HOSTD__V1__REQUEST__CALL_STOP:
                manager_stop(m, req->stop->id,
                             req->stop->grace_case == HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS,
                             req->stop->grace_seconds, c, id);
                break;
        case HOSTD__V1__REQUEST__CALL_RESTART:
                manager_restart(m, req->restart->id,
                                req->restart->grace_case ==
                                        HOSTD__V1__RESTART_REQUEST__GRACE_GRACE_SECONDS,
                                req->restart->grace_seconds, c, id);
                break;
        case HOSTD__V1__REQUEST__CALL_GET: call_get(c, id, req->get); break;
        case HOSTD__V1__REQUEST__CALL_LIST: call_list(c, id); break;
        case HOSTD__V1__REQUEST__CALL_HOST_INFO: call_host_info(c, id); break;
        case HOSTD__V1__REQUEST__CALL_DRAIN: call_drain(c, id, req->drain); break;
        case HOSTD__V1__REQUEST__CALL_UNDRAIN: call_undrain(c, id); break;
        case HOSTD__V1__REQUEST__CALL_LOGS: call_logs(c, id, req->logs); break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_IMPORT:
                call_image_import(c, id, req->image_import);
                break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_LIST: call_image_list(c, id); break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_REMOVE:
                call_image_remove(c, id, req->image_remove);
                break;
        case HOSTD__V1__REQUEST__CALL_IMAGE_GC: call_image_gc(c, id, req->image_gc); break;
        case HOSTD__V1__REQUEST__CALL_EXEC: exec_start(m, c, id, req->exec); break;
        case HOSTD__V1__REQUEST__CALL_SUBSCRIBE_EVENTS:
                events_subscribe(m->events, c, id, req->subscribe_events->since,
                                 req->subscribe_events->follow);
                break;
        case HOSTD__V1__REQUEST__CALL_ATTACH: exec_attach(m, c, id, req->attach); break;
        case HOSTD__V1__REQUEST__CALL_STREAM_INPUT: exec_input(m, c, id, req->stream_input); break;
        case HOSTD__V1__REQUEST__CALL__NOT_SET:
                conn_reply_error(c, id, HOSTD__V1__CODE__INVALID_ARGUMENT, "request: no call set");
                break;
        default:
                conn_reply_error(c, id, HOSTD__V1__CODE__UNIMPLEMENTED,
                                 "%s: not implemented by hostd %s", call_name(req->call_case),
                                 HOSTD_VERSION);
                break;
        }
        hostd__v1__request__free_unpacked(req, NULL);
}

static void conn_handle_batch(struct conn *c);

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;
        conn_ref(c);
        if (revents & EPOLLOUT)
                conn_flush(c);
        if (!c->closed && !c->close_after_flush && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t n = frame_reader_fill(&c->rd, c->fd);
                if (n == 0 || (n < 0 && n != -EAGAIN && n != -ENOBUFS)) {
                        if (frame_reader_partial(&c->rd))
                                log_debug("connection: peer closed in the middle of a frame");
                        conn_close(c);
                } else
                        conn_handle_batch(c);
        }
        conn_unref(c);
        return 0;
}

static int on_more(sd_event_source *s, void *userdata)
{
        struct conn *c = conn_ref(userdata);
        if (!c->closed && !c->close_after_flush)
                conn_handle_batch(c);
        conn_unref(c);
        return 0;
}

/* A bounded batch per wake-up: one busy client cannot hold the loop. What one read brought
 * beyond it (a control plane that pipelines a hundred Starts) waits in the reader, where no
 * readiness of the socket would call us again: a oneshot defer source takes it up on the
 * next iteration. */
static void conn_handle_batch(struct conn *c)
{
        int i;
        for (i = 0; i < 64 && !c->closed && !c->close_after_flush; i++) {
                const uint8_t *msg;
                size_t len;
                int r = frame_reader_next(&c->rd, &msg, &len);
                if (r == 0)
                        break;
                if (r == -EMSGSIZE) {
                        conn_protocol_error(c, HOSTD__V1__CODE__RESOURCE_EXHAUSTED,
                                            "frame over the limit of %zu bytes", c->rd.max);
                        break;
                }
                if (r < 0) {
                        conn_protocol_error(c, HOSTD__V1__CODE__INVALID_ARGUMENT,
                                            "malformed frame length");
                        break;
                }
                conn_handle(c, msg, len);
        }
        if (i == 64 && !c->closed && frame_reader_partial(&c->rd)) {
                int r = c->more ? 0 : sd_event_add_defer(c->srv->m->event, &c->more, on_more, c);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->more, SD_EVENT_ONESHOT);
                if (r < 0) {
                        log_warning_errno(r, "connection: cannot schedule its next requests: %m");
                        conn_close(c);
                }
        }
}

static bool peer_in_group(int fd, gid_t primary, gid_t want)
{
        if (primary == want)
                return true;
        gid_t groups[256];
        socklen_t len = sizeof groups;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false; /* more than 256 groups, or an old kernel: primary only */
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == want)
                        return true;
        return false;
}

/* Root may do everything, a read-group member may read; anyone else is refused (the socket's
 * mode keeps them out already: this holds should its folder be opened up). */
static bool peer_allowed(struct rpc_server *srv, int fd, bool *ret_read_only)
{
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(errno, "refusing a connection: its credentials: %m");
                return false;
        }
        *ret_read_only = cred.uid != 0;
        if (cred.uid == 0)
                return true;
        if (srv->read_gid != (gid_t)-1 && peer_in_group(fd, cred.gid, srv->read_gid))
                return true;
        log_notice("refusing a connection from uid %u (pid %d): neither root nor in read-group "
                   "'%s'",
                   (unsigned)cred.uid, (int)cred.pid, srv->m->config->read_group);
        return false;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct rpc_server *srv = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accept: %m");
                return 0;
        }
        if (srv->n_conns >= srv->m->config->max_connections) {
                log_warning("refusing a connection: %zu open, the limit (max-connections)",
                            srv->n_conns);
                close(cfd);
                return 0;
        }
        bool read_only;
        if (!peer_allowed(srv, cfd, &read_only)) {
                close(cfd);
                return 0;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
                close(cfd);
                return 0;
        }
        c->read_only = read_only;
        c->ref = 1;
        c->srv = srv;
        c->fd = cfd;
        frame_reader_init(&c->rd, srv->m->config->max_frame);
        frame_writer_init(&c->wr, CONN_MAX_PENDING);
        int r = sd_event_add_io(srv->m->event, &c->source, cfd, EPOLLIN, on_conn, c);
        if (r < 0) {
                log_error_errno(r, "watch a connection: %m");
                close(cfd);
                conn_unref(c);
                return 0;
        }
        srv->n_conns++;
        return 0;
}

/* Give the socket to read-group: its members may connect (and then only read). */
static int read_group_setup(const struct config *c, const char *path, gid_t *ret)
{
        const char *g = c->read_group;
        if (!*g)
                return 0;
        uint64_t n;
        gid_t gid;
        if (safe_atou64(g, &n) == 0 && n < (gid_t)-1)
                gid = (gid_t)n;
        else {
                struct group *gr = getgrnam(g);
                if (!gr) {
                        log_notice("read-group '%s' is not a group here: only root may use %s", g,
                                   path);
                        return 0;
                }
                gid = gr->gr_gid;
        }
        if (chown(path, 0, gid) < 0 || chmod(path, 0660) < 0)
                return log_error_errno(errno, "give %s to group %s: %m", path, g);
        *ret = gid;
        return 0;
}

int rpc_server_new(struct manager *m, struct rpc_server **ret)
{
        const char *path = m->config->socket_path;
        _cleanup_close_ int fd = unix_listen(path, "hostd");
        if (fd < 0)
                return fd;

        struct rpc_server *srv = calloc(1, sizeof *srv);
        if (!srv)
                return -ENOMEM;
        srv->m = m;
        srv->read_gid = (gid_t)-1;
        int r = read_group_setup(m->config, path, &srv->read_gid);
        if (r < 0) {
                free(srv);
                return r;
        }
        r = sd_event_add_io(m->event, &srv->source, fd, EPOLLIN, on_accept, srv);
        if (r < 0) {
                free(srv);
                return log_error_errno(r, "watch %s: %m", path);
        }
        srv->fd = TAKE_FD(fd);
        *ret = srv;
        return 0;
}

void rpc_server_free(struct rpc_server *s)
{
        if (!s)
                return;
        s->source = sd_event_source_disable_unref(s->source);
        closep(&s->fd);
        free(s);
}
