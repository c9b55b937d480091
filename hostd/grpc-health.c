/* grpc.health.v1.Health: what a load balancer or an orchestrator asks before it sends work.
 *
 * The server as a whole ("") and every service it registered are SERVING until
 * grpc_server_set_serving(false) (hostd shutting down), then NOT_SERVING. Check answers a name
 * it does not serve with NOT_FOUND; Watch answers it SERVICE_UNKNOWN and stays open, as the
 * protocol says, and tells each watcher every change of its answer. */
#include "grpc-internal.h"

#include "health.pb-c.h"

struct watcher {
        struct grpc_health *h;
        struct call *call;
        char *service;
        struct watcher *prev, *next;
};

struct grpc_health {
        struct grpc_service service;
        const char *const *names;
        size_t n_names;
        bool serving;
        struct watcher *watchers;
};

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

static serving_status status_of(const struct grpc_health *h, const char *name)
{
        bool known = !name[0];
        for (size_t i = 0; !known && i < h->n_names; i++)
                known = strcmp(h->names[i], name) == 0;
        if (!known)
                return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
        return h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static int send_status(struct call *c, serving_status st)
{
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = st;
        return call_send(c, &resp.base);
}

static enum api_code check_request(const ProtobufCMessage *msg, void *userdata, char *err,
                                   size_t len)
{
        const Grpc__Health__V1__HealthCheckRequest *req =
                (const Grpc__Health__V1__HealthCheckRequest *)msg;
        if (strlen(req->service) > 256) {
                snprintf(err, len, "service: %zu bytes, over 256", strlen(req->service));
                return API_INVALID_ARGUMENT;
        }
        return API_OK;
}

static void health_check(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct grpc_health *h = userdata;
        Grpc__Health__V1__HealthCheckRequest *req = (Grpc__Health__V1__HealthCheckRequest *)msg;
        serving_status st = status_of(h, req->service);
        if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
                char esc[300];
                call_fail(c, API_NOT_FOUND, "service '%s': not served here",
                          escape_value(req->service, 256, esc, sizeof esc));
        } else if (send_status(c, st) >= 0)
                call_finish(c);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void watcher_free(struct watcher *w)
{
        struct grpc_health *h = w->h;
        if (w->prev)
                w->prev->next = w->next;
        else
                h->watchers = w->next;
        if (w->next)
                w->next->prev = w->prev;
        call_unref(w->call);
        free(w->service);
        free(w);
}

static void watcher_cancelled(struct call *c, void *userdata)
{
        watcher_free(userdata);
}

static void health_watch(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct grpc_health *h = userdata;
        Grpc__Health__V1__HealthCheckRequest *req = (Grpc__Health__V1__HealthCheckRequest *)msg;
        struct watcher *w = calloc(1, sizeof *w);
        if (!w || !(w->service = strdup(req->service))) {
                free(w);
                call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        if (send_status(c, status_of(h, w->service)) < 0) {
                free(w->service);
                free(w);
                return;
        }
        w->h = h;
        w->call = call_ref(c);
        w->next = h->watchers;
        if (w->next)
                w->next->prev = w;
        h->watchers = w;
        call_on_cancel(c, watcher_cancelled, w);
}

static const struct grpc_method health_methods[] = {
        {
                .name = "Check",
                .request = &grpc__health__v1__health_check_request__descriptor,
                .response = &grpc__health__v1__health_check_response__descriptor,
                .read_only = true,
                .validate = check_request,
                .handle = health_check,
        },
        {
                .name = "Watch",
                .request = &grpc__health__v1__health_check_request__descriptor,
                .response = &grpc__health__v1__health_check_response__descriptor,
                .server_streaming = true,
                .read_only = true,
                .validate = check_request,
                .handle = health_watch,
        },
};

int grpc_health_new(const char *const *names, size_t n_names, struct grpc_health **ret)
{
        struct grpc_health *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->names = names;
        h->n_names = n_names;
        h->serving = true;
        h->service = (struct grpc_service){
                .name = "grpc.health.v1.Health",
                .methods = health_methods,
                .n_methods = ELEMENTSOF(health_methods),
                .userdata = h,
        };
        *ret = h;
        return 0;
}

void grpc_health_free(struct grpc_health *h)
{
        if (!h)
                return;
        while (h->watchers) {
                call_on_cancel(h->watchers->call, NULL, NULL);
                watcher_free(h->watchers);
        }
        free(h);
}

const struct grpc_service *grpc_health_service(struct grpc_health *h) { return &h->service; }

void grpc_health_set_serving(struct grpc_health *h, bool serving)
{
        if (h->serving == serving)
                return;
        h->serving = serving;
        log_info("health: %s", serving ? "SERVING" : "NOT_SERVING");
        /* A watcher whose send fails stays until its on_cancel, which is on its way. */
        for (struct watcher *w = h->watchers; w; w = w->next) {
                serving_status st = status_of(h, w->service);
                if (st != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN)
                        (void)send_status(w->call, st);
        }
}
