/* A client of netd on hostd's event loop. Writes are queued and flushed when the socket is
 * writable, so that netd being slow never blocks hostd; replies are matched to calls by id.
 * The connection itself is proto/frame-conn.c's, as is netd's end of it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "frame-conn.h"
#include "netd-client.h"
#include "util.h"
#include "api-code.h"

struct netd_call {
        int64_t handle; /* also the request id */
        netd_reply_fn fn;
        void *userdata;
        void (*destroy)(void *userdata); /* for a call dropped without its callback */
        uint64_t deadline_usec;          /* CLOCK_MONOTONIC */
        struct netd_call *next;
};

struct netd_client {
        sd_event *event;
        char *path;
        uint64_t timeout_usec;
        netd_connected_fn connected;
        void *userdata;
        struct frame_conn *conn; /* NULL: not connected */
        sd_event_source *timer;
        struct netd_call *calls, **calls_tail; /* in the order sent */
        uint64_t answered_usec;                /* netd's last answer (CLOCK_MONOTONIC) */
        int64_t next_handle;
};

static uint64_t now_mono(struct netd_client *c)
{
        uint64_t t = 0;
        sd_event_now(c->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void calls_append(struct netd_client *c, struct netd_call *call)
{
        call->next = NULL;
        *c->calls_tail = call;
        c->calls_tail = &call->next;
}

static struct netd_call *calls_take(struct netd_client *c, int64_t handle)
{
        for (struct netd_call **pp = &c->calls; *pp; pp = &(*pp)->next) {
                struct netd_call *call = *pp;
                if (call->handle != handle)
                        continue;
                *pp = call->next;
                if (!*pp)
                        c->calls_tail = pp;
                return call;
        }
        return NULL;
}

static void timer_update(struct netd_client *c)
{
        if (!c->calls) {
                if (c->timer)
                        sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return;
        }
        /* Calls are appended with increasing deadlines: the first is the earliest. netd
         * answers in order, one call at a time: behind a thousand Attach calls (as many dynos
         * started at once) the last waits for all of them, so a call fails only when netd has
         * also answered nothing for the timeout, i.e. when it is stuck, not busy. */
        uint64_t idle = c->answered_usec + c->timeout_usec;
        uint64_t when = c->calls->deadline_usec > idle ? c->calls->deadline_usec : idle;
        if (c->timer) {
                sd_event_source_set_time(c->timer, when);
                sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        }
}

/* Close the connection and fail every call waiting on it. Callbacks may call netd_call, which
 * opens a new connection: the list is detached first. */
static void client_reset(struct netd_client *c, int code, const char *why)
{
        frame_conn_free(c->conn);
        c->conn = NULL;

        struct netd_call *calls = c->calls;
        c->calls = NULL;
        c->calls_tail = &c->calls;
        timer_update(c);
        while (calls) {
                struct netd_call *call = calls;
                calls = call->next;
                call->fn(call->userdata, code, why, NULL);
                free(call);
        }
}

static void handle_response(struct netd_client *c, const uint8_t *msg, size_t len)
{
        Netd__V1__Response *resp = netd__v1__response__unpack(NULL, len, msg);
        if (!resp) {
                log_error("netd: undecodable response (%zu bytes); reconnecting", len);
                client_reset(c, API_UNAVAILABLE, "netd sent an undecodable response");
                return;
        }
        c->answered_usec = now_mono(c);
        struct netd_call *call = calls_take(c, (int64_t)resp->id);
        if (!call) {
                /* Cancelled, or timed out already. */
                netd__v1__response__free_unpacked(resp, NULL);
                return;
        }
        timer_update(c);
        int code = resp->status ? (int)resp->status->code : 0;
        const char *message = resp->status && resp->status->message && *resp->status->message ?
                                      resp->status->message :
                                      (code ? "netd refused the request" : "");
        call->fn(call->userdata, code, message, resp);
        free(call);
        netd__v1__response__free_unpacked(resp, NULL);
}

static void on_reply(struct frame_conn *conn, int error, const uint8_t *msg, size_t len,
                     void *userdata)
{
        struct netd_client *c = userdata;
        if (error < 0) {
                log_error_errno(error, "netd: bad frame: %m");
                return client_reset(c, API_UNAVAILABLE, "netd sent a bad frame");
        }
        handle_response(c, msg, len);
}

static void on_closed(struct frame_conn *conn, int error, void *userdata)
{
        struct netd_client *c = userdata;
        if (error == 0 || error == -EPIPE)
                log_warning("netd closed the connection");
        else
                log_warning_errno(error, "netd: connection: %m");
        client_reset(c, API_UNAVAILABLE, "netd closed the connection");
}

/* Requests are small; max_queued bounds what a stalled netd makes us hold. */
static const struct frame_conn_kind netd_conn_kind = {
        .max_frame = FRAME_MAX_DEFAULT,
        .max_queued = 4u << 20,
        .batch = 64,
        .message = on_reply,
        .closed = on_closed,
};

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct netd_client *c = userdata;
        while (c->calls && c->calls->deadline_usec <= usec &&
               c->answered_usec + c->timeout_usec <= usec) {
                struct netd_call *call = calls_take(c, c->calls->handle);
                log_warning("netd: no answer to call %" PRId64 " within %" PRIu64 " ms",
                            call->handle, c->timeout_usec / 1000);
                call->fn(call->userdata, API_DEADLINE_EXCEEDED, "netd did not answer in time",
                         NULL);
                free(call);
        }
        timer_update(c);
        return 0;
}

int netd_client_connect(struct netd_client *c)
{
        if (c->conn)
                return 0;
        _cleanup_close_ int fd = unix_connect(c->path);
        if (fd < 0)
                return fd;
        int r = frame_conn_new(c->event, fd, &netd_conn_kind, c, &c->conn);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        log_debug("netd: connected to %s", c->path);
        if (c->connected)
                c->connected(c, c->userdata);
        return 1;
}

/* A call dropped without its callback (netd_cancel, netd_client_free). */
static void call_drop(struct netd_call *call)
{
        if (call && call->destroy)
                call->destroy(call->userdata);
        free(call);
}

int64_t netd_call(struct netd_client *c, Netd__V1__Request *req, netd_reply_fn fn, void *userdata)
{
        return netd_call_full(c, req, fn, userdata, NULL);
}

int64_t netd_call_full(struct netd_client *c, Netd__V1__Request *req, netd_reply_fn fn,
                       void *userdata, void (*destroy)(void *userdata))
{
        int r = netd_client_connect(c);
        if (r < 0)
                return r;
        _cleanup_free_ struct netd_call *call = calloc(1, sizeof *call);
        if (!call)
                return -ENOMEM;
        call->handle = c->next_handle++;
        call->fn = fn;
        call->userdata = userdata;
        call->destroy = destroy;
        call->deadline_usec = now_mono(c) + c->timeout_usec;
        req->id = (uint64_t)call->handle;

        /* Written from the loop: a reply can never reach fn before netd_call returns. */
        r = frame_conn_send_pb(c->conn, &req->base);
        if (r < 0)
                return r;

        int64_t handle = call->handle;
        calls_append(c, TAKE_PTR(call));
        if (c->calls->handle == handle)
                timer_update(c);
        return handle;
}

void netd_cancel(struct netd_client *c, int64_t handle)
{
        if (!c || handle <= 0)
                return;
        call_drop(calls_take(c, handle));
        timer_update(c);
}

int netd_client_new(sd_event *e, const char *socket_path, uint64_t timeout_usec,
                    netd_connected_fn connected, void *userdata, struct netd_client **ret)
{
        struct netd_client *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->timeout_usec = timeout_usec;
        c->connected = connected;
        c->userdata = userdata;
        c->calls_tail = &c->calls;
        c->next_handle = 1;
        c->path = strdup(socket_path);
        int r = c->path ? sd_event_add_time(e, &c->timer, CLOCK_MONOTONIC, 0, 0, on_timer, c) :
                          -ENOMEM;
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r < 0) {
                netd_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void netd_client_free(struct netd_client *c)
{
        if (!c)
                return;
        frame_conn_free(c->conn);
        c->timer = sd_event_source_disable_unref(c->timer);
        while (c->calls) {
                struct netd_call *call = c->calls;
                c->calls = call->next;
                call_drop(call);
        }
        sd_event_unref(c->event);
        free(c->path);
        free(c);
}
