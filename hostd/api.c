/* The hostd.v1.Hostd service: one row per method (api_methods[]), with whether a read-only
 * client may call it, the check of its request (validate.c: the one the fuzzer fuzzes) and its
 * handler. A handler answers at once, or hands the call to whoever answers later (the manager,
 * the event log, an exec session, the importer) through the call handle (call.h): nothing here
 * or there sees a connection. */
#include "api.h"

#include <inttypes.h>

#include "admission.h"
#include "call.h"
#include "events.h"
#include "exec.h"
#include "grpc-server.h"
#include "images.h"
#include "importer.h"
#include "manager.h"
#include "metrics.h"
#include "util.h"
#include "validate.h"

#define REQ(type, msg) ((type *)(msg))

/* ---- dynos ---- */

static void handle_start(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        Hostd__V1__StartRequest *req = REQ(Hostd__V1__StartRequest, msg);
        manager_start(userdata, TAKE_PTR(req->spec), c);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_stop(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__StopRequest *req = REQ(Hostd__V1__StopRequest, msg);
        manager_stop(userdata, req->id,
                     req->grace_case == HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS,
                     req->grace_seconds, c);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_restart(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__RestartRequest *req = REQ(Hostd__V1__RestartRequest, msg);
        manager_restart(userdata, req->id,
                        req->grace_case == HOSTD__V1__RESTART_REQUEST__GRACE_GRACE_SECONDS,
                        req->grace_seconds, c);
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* The dyno the call names, or NULL once the call is answered NOT_FOUND. */
static struct dyno *find_dyno(struct manager *m, struct call *c, const char *id)
{
        struct dyno *d = manager_find(m, id);
        if (!d)
                call_fail(c, API_NOT_FOUND, "dyno '%s' not found", id);
        return d;
}

static void handle_get_dyno(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__GetDynoRequest *req = REQ(Hostd__V1__GetDynoRequest, msg);
        struct dyno *d = find_dyno(userdata, c, req->id);
        if (d) {
                Hostd__V1__Dyno dp;
                Hostd__V1__ExitInfo ei;
                dyno_to_proto(d, &dp, &ei);
                Hostd__V1__GetDynoResponse resp = HOSTD__V1__GET_DYNO_RESPONSE__INIT;
                resp.dyno = &dp;
                call_reply(c, &resp.base);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
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

static void handle_list_dynos(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        size_t n = m->n_dynos ? m->n_dynos : 1;
        struct list_ctx l = {
                .dynos = calloc(n, sizeof(Hostd__V1__Dyno)),
                .exits = calloc(n, sizeof(Hostd__V1__ExitInfo)),
                .ptrs = calloc(n, sizeof(Hostd__V1__Dyno *)),
        };
        if (l.dynos && l.exits && l.ptrs) {
                manager_foreach(m, list_one, &l);
                Hostd__V1__ListDynosResponse resp = HOSTD__V1__LIST_DYNOS_RESPONSE__INIT;
                resp.n_dynos = l.n;
                resp.dynos = l.ptrs;
                call_reply(c, &resp.base);
        } else
                call_fail(c, API_INTERNAL, "out of memory");
        free(l.dynos);
        free(l.exits);
        free(l.ptrs);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_logs(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__LogsRequest *req = REQ(Hostd__V1__LogsRequest, msg);
        struct dyno *d = find_dyno(userdata, c, req->id);
        if (d) {
                size_t total = log_ring_count(d->ring);
                size_t first = req->lines && req->lines < total ? total - req->lines : 0;
                if (dyno_send_logs(d, c, first) == 0) {
                        if (req->follow)
                                dyno_follow_logs(d, c);
                        else
                                call_finish(c);
                }
        }
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_exec(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__ExecRequest *req = REQ(Hostd__V1__ExecRequest, msg);
        if (req->kind_case != HOSTD__V1__EXEC_REQUEST__KIND_START)
                call_fail(c, API_INVALID_ARGUMENT,
                          "start: the first message of an Exec must start the process");
        else
                exec_start(userdata, c, req->start);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_attach(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__AttachRequest *req = REQ(Hostd__V1__AttachRequest, msg);
        if (req->kind_case != HOSTD__V1__ATTACH_REQUEST__KIND_START)
                call_fail(c, API_INVALID_ARGUMENT,
                          "start: the first message of an Attach must name the dyno");
        else
                exec_attach(userdata, c, req->start);
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- the host ---- */

static void handle_get_host(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        const struct config *cfg = m->config;
        Hostd__V1__Host h = HOSTD__V1__HOST__INIT;
        char hostname[256];
        host_info_fill(m, &h, hostname);
        metrics_fill_host(m, &h);

        _cleanup_free_ Hostd__V1__Size *sizes = calloc(cfg->n_sizes + 1, sizeof *sizes);
        _cleanup_free_ Hostd__V1__Size **ptrs = calloc(cfg->n_sizes + 1, sizeof *ptrs);
        if (!sizes || !ptrs) {
                call_fail(c, API_INTERNAL, "out of memory");
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
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
        Hostd__V1__GetHostResponse resp = HOSTD__V1__GET_HOST_RESPONSE__INIT;
        resp.host = &h;
        call_reply(c, &resp.base);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_drain(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        const Hostd__V1__DrainRequest *req = REQ(Hostd__V1__DrainRequest, msg);
        char err[256];
        int r = admission_drain(
                userdata, req->deadline_case == HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS,
                req->deadline_seconds, err, sizeof err);
        if (r < 0)
                call_fail(c, API_INTERNAL, "%s", err);
        else {
                Hostd__V1__DrainResponse resp = HOSTD__V1__DRAIN_RESPONSE__INIT;
                call_reply(c, &resp.base);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_undrain(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        char err[256];
        if (admission_undrain(userdata, err, sizeof err) < 0)
                call_fail(c, API_INTERNAL, "%s", err);
        else {
                Hostd__V1__UndrainResponse resp = HOSTD__V1__UNDRAIN_RESPONSE__INIT;
                call_reply(c, &resp.base);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_subscribe_events(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        const Hostd__V1__SubscribeEventsRequest *req = REQ(Hostd__V1__SubscribeEventsRequest, msg);
        events_subscribe(m->events, c, req->since, req->follow);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_subscribe_metrics(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        metrics_subscribe(userdata, c, REQ(Hostd__V1__SubscribeMetricsRequest, msg));
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- images ---- */

static void image_to_proto(struct manager *m, const struct image_info *info, Hostd__V1__Image *o)
{
        hostd__v1__image__init(o);
        o->digest = (char *)info->digest;
        o->kind = info->kind == IMAGE_KIND_STACK ? HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK :
                                                   HOSTD__V1__IMAGE_KIND__IMAGE_KIND_SLUG;
        o->size_bytes = info->size_bytes;
        o->imported_usec = info->imported_usec;
        o->last_used_usec = info->last_used_usec;
        o->users = manager_image_users(m, info->digest);
}

/* The last message of an ImportImage: the image. */
static void reply_image(struct call *c, struct manager *m, const struct image_info *info)
{
        Hostd__V1__Image img;
        image_to_proto(m, info, &img);
        Hostd__V1__ImportImageResponse resp = HOSTD__V1__IMPORT_IMAGE_RESPONSE__INIT;
        resp.kind_case = HOSTD__V1__IMPORT_IMAGE_RESPONSE__KIND_IMAGE;
        resp.image = &img;
        call_reply(c, &resp.base);
}

/* An ImportImage call that waits for an import job. */
struct import_call {
        struct manager *m;
        struct call *call;
        struct import_watcher *watcher;
};

static void import_progress(void *userdata, uint64_t done, uint64_t total)
{
        struct import_call *ic = userdata;
        Hostd__V1__ImportImageProgress p = HOSTD__V1__IMPORT_IMAGE_PROGRESS__INIT;
        p.done_bytes = done;
        p.total_bytes = total;
        Hostd__V1__ImportImageResponse resp = HOSTD__V1__IMPORT_IMAGE_RESPONSE__INIT;
        resp.kind_case = HOSTD__V1__IMPORT_IMAGE_RESPONSE__KIND_PROGRESS;
        resp.progress = &p;
        (void)call_send(ic->call, &resp.base);
}

static void import_done(void *userdata, int error, const char *msg, const struct image_info *info)
{
        struct import_call *ic = userdata;
        if (error < 0)
                call_fail(ic->call,
                          error == -EBADMSG || error == -EINVAL || error == -EFBIG ?
                                  API_INVALID_ARGUMENT :
                                  API_UNAVAILABLE,
                          "%s", msg);
        else
                reply_image(ic->call, ic->m, info);
}

static void import_free(void *userdata)
{
        struct import_call *ic = userdata;
        call_on_cancel(ic->call, NULL, NULL);
        call_unref(ic->call);
        free(ic);
}

static const struct import_watch_ops import_ops = {
        .progress = import_progress,
        .done = import_done,
        .free = import_free,
};

/* The client went: the job goes on for whoever else waits (a dyno, another client). */
static void on_import_cancel(struct call *c, void *userdata)
{
        struct import_call *ic = userdata;
        importer_unwatch(ic->watcher); /* frees ic */
}

static void handle_import_image(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        const Hostd__V1__ImportImageRequest *req = REQ(Hostd__V1__ImportImageRequest, msg);
        enum image_kind kind = req->kind == HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK ?
                                       IMAGE_KIND_STACK :
                                       IMAGE_KIND_SLUG;
        struct image_info info;
        if (!importer_busy(m->importer, req->sha256) &&
            image_lookup(m->images, req->sha256, &info) == 0) {
                if (info.kind != kind)
                        call_fail(c, API_ALREADY_EXISTS, "image %.12s is here already, as a %s",
                                  req->sha256, info.kind == IMAGE_KIND_STACK ? "stack" : "slug");
                else
                        reply_image(c, m, &info);
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
        }
        struct import_call *ic = calloc(1, sizeof *ic);
        if (!ic) {
                call_fail(c, API_INTERNAL, "out of memory");
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
        }
        ic->m = m;
        ic->call = call_ref(c);
        int r = importer_start(m->importer, req->source, req->sha256, kind, &import_ops, ic,
                               &ic->watcher);
        if (r < 0) {
                call_fail(c, API_INTERNAL, "image %.12s: start the import: %s", req->sha256,
                          strerror(-r));
                import_free(ic);
        } else
                call_on_cancel(c, on_import_cancel, ic);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void handle_list_images(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        protobuf_c_message_free_unpacked(msg, NULL);
        _cleanup_free_ struct image_info *infos = NULL;
        size_t n = 0;
        int r = image_list(m->images, &infos, &n);
        if (r < 0)
                return call_fail(c, API_INTERNAL, "list the images: %s", strerror(-r));
        _cleanup_free_ Hostd__V1__Image *imgs = calloc(n ? n : 1, sizeof *imgs);
        _cleanup_free_ Hostd__V1__Image **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!imgs || !ptrs)
                return call_fail(c, API_INTERNAL, "out of memory");
        for (size_t i = 0; i < n; i++) {
                image_to_proto(m, &infos[i], &imgs[i]);
                ptrs[i] = &imgs[i];
        }
        Hostd__V1__ListImagesResponse resp = HOSTD__V1__LIST_IMAGES_RESPONSE__INIT;
        resp.n_images = n;
        resp.images = ptrs;
        call_reply(c, &resp.base);
}

static void handle_remove_image(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        const Hostd__V1__RemoveImageRequest *req = REQ(Hostd__V1__RemoveImageRequest, msg);
        char err[512] = "";
        if (importer_busy(m->importer, req->digest)) {
                call_fail(c, API_FAILED_PRECONDITION, "image %.12s is being imported", req->digest);
                goto out;
        }
        int r = image_remove(m->images, req->digest, manager_image_in_use, m, err, sizeof err);
        if (r == -ENOENT)
                call_fail(c, API_NOT_FOUND, "image %s not found", req->digest);
        else if (r == -EBUSY)
                call_fail(c, API_FAILED_PRECONDITION, "%s", err);
        else if (r < 0)
                call_fail(c, API_INTERNAL, "%s", *err ? err : strerror(-r));
        else {
                log_info("image %.12s removed", req->digest);
                importer_sweep(m->importer);
                Hostd__V1__RemoveImageResponse resp = HOSTD__V1__REMOVE_IMAGE_RESPONSE__INIT;
                call_reply(c, &resp.base);
        }
out:
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* An image being imported is not in the store yet: pruning cannot see it. */
static void handle_prune_images(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct manager *m = userdata;
        const Hostd__V1__PruneImagesRequest *req = REQ(Hostd__V1__PruneImagesRequest, msg);
        uint64_t budget = req->budget_case == HOSTD__V1__PRUNE_IMAGES_REQUEST__BUDGET_BUDGET_BYTES ?
                                  req->budget_bytes :
                                  m->config->images_budget;
        protobuf_c_message_free_unpacked(msg, NULL);
        _cleanup_strv_free_ char **removed = NULL;
        uint64_t freed = 0;
        int r = image_gc(m->images, budget, manager_image_in_use, m, &removed, &freed);
        if (r < 0)
                return call_fail(c, API_INTERNAL, "prune the images: %s", strerror(-r));
        size_t n = 0;
        while (removed && removed[n])
                n++;
        log_info("images pruned: %zu removed, %" PRIu64 " bytes freed (budget %" PRIu64 ")", n,
                 freed, budget);
        if (n > 0)
                importer_sweep(m->importer);
        Hostd__V1__PruneImagesResponse resp = HOSTD__V1__PRUNE_IMAGES_RESPONSE__INIT;
        resp.n_removed = n;
        resp.removed = removed;
        resp.freed_bytes = freed;
        call_reply(c, &resp.base);
}

/* ---- the checks: validate.c's, with what they need from the manager (its config only) ---- */

#define CFG(u) (((struct manager *)(u))->config)

static enum api_code check_start(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_start(REQ(const Hostd__V1__StartRequest, msg), CFG(u), err, len);
}
static enum api_code check_stop(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_stop(REQ(const Hostd__V1__StopRequest, msg), err, len);
}
static enum api_code check_restart(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_restart(REQ(const Hostd__V1__RestartRequest, msg), err, len);
}
static enum api_code check_get_dyno(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_id("id", REQ(const Hostd__V1__GetDynoRequest, msg)->id, err, len);
}
static enum api_code check_logs(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_id("id", REQ(const Hostd__V1__LogsRequest, msg)->id, err, len);
}
static enum api_code check_drain(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_drain(REQ(const Hostd__V1__DrainRequest, msg), err, len);
}
static enum api_code check_subscribe_metrics(const ProtobufCMessage *msg, void *u, char *err,
                                             size_t len)
{
        return validate_subscribe_metrics(REQ(const Hostd__V1__SubscribeMetricsRequest, msg), err,
                                          len);
}
static enum api_code check_exec(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_exec_request(REQ(const Hostd__V1__ExecRequest, msg), CFG(u), err, len);
}
static enum api_code check_attach(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_attach_request(REQ(const Hostd__V1__AttachRequest, msg), err, len);
}
static enum api_code check_import_image(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_import_image(REQ(const Hostd__V1__ImportImageRequest, msg), err, len);
}
static enum api_code check_remove_image(const ProtobufCMessage *msg, void *u, char *err, size_t len)
{
        return validate_digest("digest", REQ(const Hostd__V1__RemoveImageRequest, msg)->digest, err,
                               len);
}

/* ---- the table ---- */

#define METHOD(n, req, resp, cs, ss, ro, check, handler)                                           \
        {                                                                                          \
                .name = n, .request = &hostd__v1__##req##__descriptor,                             \
                .response = &hostd__v1__##resp##__descriptor, .client_streaming = cs,              \
                .server_streaming = ss, .read_only = ro, .validate = check, .handle = handler,     \
        }

/* clang-format off */
const struct grpc_method api_methods[] = {
        /*     name, request, response, client stream, server stream, read-only, check, handler */
        METHOD("Start", start_request, start_response, false, false, false, check_start, handle_start),
        METHOD("Stop", stop_request, stop_response, false, false, false, check_stop, handle_stop),
        METHOD("Restart", restart_request, restart_response, false, false, false, check_restart, handle_restart),
        METHOD("GetDyno", get_dyno_request, get_dyno_response, false, false, true, check_get_dyno, handle_get_dyno),
        METHOD("ListDynos", list_dynos_request, list_dynos_response, false, false, true, NULL, handle_list_dynos),
        METHOD("GetHost", get_host_request, get_host_response, false, false, true, NULL, handle_get_host),
        METHOD("Drain", drain_request, drain_response, false, false, false, check_drain, handle_drain),
        METHOD("Undrain", undrain_request, undrain_response, false, false, false, NULL, handle_undrain),
        METHOD("SubscribeEvents", subscribe_events_request, subscribe_events_response, false, true, true, NULL, handle_subscribe_events),
        METHOD("SubscribeMetrics", subscribe_metrics_request, subscribe_metrics_response, false, true, true, check_subscribe_metrics, handle_subscribe_metrics),
        METHOD("Logs", logs_request, logs_response, false, true, true, check_logs, handle_logs),
        METHOD("Exec", exec_request, exec_response, true, true, false, check_exec, handle_exec),
        METHOD("Attach", attach_request, attach_response, true, true, false, check_attach, handle_attach),
        METHOD("ImportImage", import_image_request, import_image_response, false, true, false, check_import_image, handle_import_image),
        METHOD("ListImages", list_images_request, list_images_response, false, false, true, NULL, handle_list_images),
        METHOD("RemoveImage", remove_image_request, remove_image_response, false, false, false, check_remove_image, handle_remove_image),
        METHOD("PruneImages", prune_images_request, prune_images_response, false, false, false, NULL, handle_prune_images),
};
/* clang-format on */

const size_t api_n_methods = ELEMENTSOF(api_methods);

struct grpc_service api_service(struct manager *m)
{
        return (struct grpc_service){
                .name = "hostd.v1.Hostd",
                .methods = api_methods,
                .n_methods = ELEMENTSOF(api_methods),
                .userdata = m,
        };
}
