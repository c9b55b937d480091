/* hostd.test.v1.Test: see grpc-test-service.h. */
#include "grpc-test-service.h"

#include <inttypes.h>

#include "grpctest.pb-c.h"

/* Count's payload per item at most: the tests' floods use 16 KiB; a fuzzer's request must not
 * make the service allocate gigabytes. */
#define COUNT_SIZE_MAX (1u << 20)

static void report(const struct grpc_test_service *t, const char *what, struct call *c,
                   const char *tag)
{
        if (!t->report)
                return;
        fprintf(t->report, "%s %s %s\n", what, call_method(c), tag && tag[0] ? tag : "-");
        fflush(t->report);
}

/* fail_code is sent as grpc-status: one of gRPC's codes. */
static enum api_code fail_code_validate(const Hostd__Test__V1__EchoRequest *req, char *err,
                                        size_t len)
{
        if (req->fail_code > API_UNAUTHENTICATED) {
                snprintf(err, len, "fail_code: %" PRIu32 " is not a gRPC status code (0 to 16)",
                         req->fail_code);
                return API_INVALID_ARGUMENT;
        }
        return API_OK;
}

static enum api_code echo_request_validate(const ProtobufCMessage *msg, void *userdata, char *err,
                                           size_t len)
{
        return fail_code_validate((const Hostd__Test__V1__EchoRequest *)msg, err, len);
}

/* ---- unary: Echo, Write, SlowEcho ---- */

static void echo_answer(struct call *c, const Hostd__Test__V1__EchoRequest *req)
{
        if (req->fail_code) {
                call_fail(c, (enum api_code)req->fail_code, "%s", req->fail_message);
                return;
        }
        Hostd__Test__V1__EchoResponse resp = HOSTD__TEST__V1__ECHO_RESPONSE__INIT;
        resp.text = req->text;
        resp.peer = (char *)call_peer(c);
        resp.method = (char *)call_method(c);
        call_reply(c, &resp.base);
}

static void echo(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        echo_answer(c, (Hostd__Test__V1__EchoRequest *)msg);
        protobuf_c_message_free_unpacked(msg, NULL);
}

static enum api_code echo_validate(const ProtobufCMessage *msg, void *userdata, char *err,
                                   size_t len)
{
        const Hostd__Test__V1__EchoRequest *req = (const Hostd__Test__V1__EchoRequest *)msg;
        if (strcmp(req->text, "invalid") == 0) {
                snprintf(err, len, "text: 'invalid' is refused by the validator");
                return API_INVALID_ARGUMENT;
        }
        return fail_code_validate(req, err, len);
}

struct slow {
        struct grpc_test_service *t;
        struct call *call;
        Hostd__Test__V1__EchoRequest *req;
        sd_event_source *timer;
};

static void slow_free(struct slow *s)
{
        sd_event_source_disable_unref(s->timer);
        protobuf_c_message_free_unpacked(&s->req->base, NULL);
        call_unref(s->call);
        free(s);
}

static void slow_cancelled(struct call *c, void *userdata)
{
        struct slow *s = userdata;
        report(s->t, "cancel", c, s->req->text);
        slow_free(s);
}

static int slow_due(sd_event_source *timer, uint64_t usec, void *userdata)
{
        struct slow *s = userdata;
        call_on_cancel(s->call, NULL, NULL);
        echo_answer(s->call, s->req);
        slow_free(s);
        return 0;
}

static void slow_echo(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct grpc_test_service *t = userdata;
        struct slow *s = calloc(1, sizeof *s);
        if (!s) {
                call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
        }
        s->t = t;
        s->req = (Hostd__Test__V1__EchoRequest *)msg;
        s->call = call_ref(c);
        if (sd_event_add_time_relative(t->event, &s->timer, CLOCK_MONOTONIC,
                                       (uint64_t)s->req->delay_ms * 1000, 1000, slow_due, s) < 0) {
                call_fail(c, API_INTERNAL, "timer");
                slow_free(s);
                return;
        }
        call_on_cancel(c, slow_cancelled, s);
        report(t, "start", c, s->req->text);
}

/* ---- server stream: Count ---- */

struct counter {
        struct grpc_test_service *t;
        struct call *call;
        sd_event_source *source; /* a timer, or one always due for "as fast as the loop goes" */
        uint32_t n, size, interval_ms;
        bool ignore_pending;
        bool busy; /* counted in t->busy */
        uint64_t i, skipped;
        char *tag;
        uint8_t *payload;
};

static void counter_free(struct counter *k)
{
        if (k->busy)
                k->t->busy--;
        sd_event_source_disable_unref(k->source);
        call_unref(k->call);
        free(k->tag);
        free(k->payload);
        free(k);
}

static void counter_cancelled(struct call *c, void *userdata)
{
        struct counter *k = userdata;
        report(k->t, "cancel", c, k->tag);
        counter_free(k);
}

/* One item; false when the stream is over. */
static bool counter_step(struct counter *k)
{
        if (!k->ignore_pending && call_pending(k->call) > (256u << 10)) {
                k->skipped++; /* a gauge's producer skips an item for a slow reader */
                return true;
        }
        Hostd__Test__V1__CountResponse resp = HOSTD__TEST__V1__COUNT_RESPONSE__INIT;
        resp.i = k->i;
        resp.skipped = k->skipped;
        resp.payload.len = k->size;
        resp.payload.data = k->payload;
        if (call_send(k->call, &resp.base) < 0)
                return false; /* ended: its on_cancel comes from the loop */
        k->i++;
        if (k->n && k->i == k->n) {
                call_on_cancel(k->call, NULL, NULL);
                report(k->t, "end", k->call, k->tag);
                call_finish(k->call);
                counter_free(k);
                return false;
        }
        return true;
}

static int counter_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct counter *k = userdata;
        if (counter_step(k)) {
                sd_event_source_set_time_relative(s, (uint64_t)k->interval_ms * 1000);
                sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

/* "As fast as the loop goes": a timer always due, enabled again after each turn (a defer
 * source would stay pending from its first iteration and starve every I/O source). */
static int counter_now(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct counter *k = userdata;
        for (int i = 0; i < 16; i++)
                if (!counter_step(k))
                        return 0;
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static enum api_code count_validate(const ProtobufCMessage *msg, void *userdata, char *err,
                                    size_t len)
{
        const Hostd__Test__V1__CountRequest *req = (const Hostd__Test__V1__CountRequest *)msg;
        if (req->size > COUNT_SIZE_MAX) {
                snprintf(err, len, "size: %" PRIu32 " bytes, over %u", req->size, COUNT_SIZE_MAX);
                return API_INVALID_ARGUMENT;
        }
        return API_OK;
}

static void count(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct grpc_test_service *t = userdata;
        Hostd__Test__V1__CountRequest *req = (Hostd__Test__V1__CountRequest *)msg;
        struct counter *k = calloc(1, sizeof *k);
        int r = -ENOMEM;
        if (k && (k->tag = strdup(req->tag)) && (k->payload = calloc(1, req->size + 1))) {
                k->t = t;
                k->call = call_ref(c);
                k->n = req->n;
                k->size = req->size;
                k->interval_ms = req->interval_ms;
                k->ignore_pending = req->ignore_pending;
                if (k->interval_ms)
                        r = sd_event_add_time_relative(t->event, &k->source, CLOCK_MONOTONIC, 0,
                                                       1000, counter_timer, k);
                else if ((r = sd_event_add_time(t->event, &k->source, CLOCK_MONOTONIC, 1, 0,
                                                counter_now, k)) >= 0) {
                        k->busy = true;
                        t->busy++;
                }
                /* A timer re-armed by each step, or one always due enabled again each turn. */
                if (r >= 0)
                        r = sd_event_source_set_enabled(k->source, SD_EVENT_ONESHOT);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        if (r < 0) {
                call_fail(c, API_INTERNAL, "count: %s", strerror(-r));
                if (k)
                        counter_free(k);
                return;
        }
        call_on_cancel(c, counter_cancelled, k);
}

/* ---- client streams: Concat, BidiEcho ---- */

struct concat {
        struct grpc_test_service *t;
        struct call *call;
        char *text;
        size_t len;
        unsigned n;
};

static void concat_free(struct concat *k)
{
        call_unref(k->call);
        free(k->text);
        free(k);
}

static void concat_cancelled(struct call *c, void *userdata)
{
        struct concat *k = userdata;
        report(k->t, "cancel", c, "concat");
        concat_free(k);
}

static bool concat_add(struct concat *k, const Hostd__Test__V1__EchoRequest *req)
{
        size_t n = strlen(req->text);
        char *t = realloc(k->text, k->len + n + 1);
        if (!t)
                return false;
        memcpy(t + k->len, req->text, n + 1);
        k->text = t;
        k->len += n;
        k->n++;
        return true;
}

static void concat_input(struct call *c, const ProtobufCMessage *msg, void *userdata)
{
        struct concat *k = userdata;
        if (msg) {
                if (!concat_add(k, (const Hostd__Test__V1__EchoRequest *)msg)) {
                        call_on_cancel(c, NULL, NULL);
                        call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                        concat_free(k);
                }
                return;
        }
        Hostd__Test__V1__EchoResponse resp = HOSTD__TEST__V1__ECHO_RESPONSE__INIT;
        char text[64];
        snprintf(text, sizeof text, "%u:", k->n);
        _cleanup_free_ char *all = strjoin3(text, k->text, "");
        resp.text = all ? all : (char *)"";
        resp.method = (char *)call_method(c);
        call_on_cancel(c, NULL, NULL);
        call_reply(c, &resp.base);
        concat_free(k);
}

static void concat(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct concat *k = calloc(1, sizeof *k);
        if (!k || !concat_add(k, (Hostd__Test__V1__EchoRequest *)msg)) {
                free(k);
                call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
        } else {
                k->t = userdata;
                k->call = call_ref(c);
                call_on_cancel(c, concat_cancelled, k);
                call_on_input(c, concat_input, k);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* A BidiEcho in progress: its own reference, and the timer of "wait-input" while it runs, so
 * that a cancellation frees both. */
struct bidi {
        struct grpc_test_service *t;
        struct call *call;
        sd_event_source *later;
};

static void bidi_free(struct bidi *b)
{
        sd_event_source_disable_unref(b->later);
        call_unref(b->call);
        free(b);
}

static void bidi_cancelled(struct call *c, void *userdata)
{
        struct bidi *b = userdata;
        report(b->t, "cancel", c, "bidi");
        bidi_free(b);
}

static void bidi_input(struct call *c, const ProtobufCMessage *msg, void *userdata)
{
        struct bidi *b = userdata;
        if (!msg) {
                call_on_cancel(c, NULL, NULL);
                call_finish(c);
                bidi_free(b);
                return;
        }
        const Hostd__Test__V1__EchoRequest *req = (const Hostd__Test__V1__EchoRequest *)msg;
        if (req->fail_code) {
                call_on_cancel(c, NULL, NULL);
                call_fail(c, (enum api_code)req->fail_code, "%s", req->fail_message);
                bidi_free(b);
                return;
        }
        Hostd__Test__V1__EchoResponse resp = HOSTD__TEST__V1__ECHO_RESPONSE__INIT;
        resp.text = req->text;
        resp.method = (char *)call_method(c);
        (void)call_send(c, &resp.base);
}

static int bidi_later(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct bidi *b = userdata;
        b->later = sd_event_source_disable_unref(b->later); /* freed once this returns */
        call_on_input(b->call, bidi_input, b);
        return 0;
}

static void bidi_echo(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        struct grpc_test_service *t = userdata;
        struct bidi *b = calloc(1, sizeof *b);
        if (!b) {
                call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
        }
        b->t = t;
        b->call = call_ref(c);
        call_on_cancel(c, bidi_cancelled, b);
        /* "wait-input": the owner asks for the rest only a second later (held input). */
        bool wait = strcmp(((Hostd__Test__V1__EchoRequest *)msg)->text, "wait-input") == 0;
        bidi_input(c, msg, b); /* may end the call and free b */
        protobuf_c_message_free_unpacked(msg, NULL);
        if (call_is_done(c))
                return; /* b is freed, or its on_cancel is on its way */
        if (!wait) {
                call_on_input(c, bidi_input, b);
                return;
        }
        if (sd_event_add_time_relative(t->event, &b->later, CLOCK_MONOTONIC, 1000000, 1000,
                                       bidi_later, b) < 0) {
                call_on_cancel(c, NULL, NULL);
                call_fail(c, API_INTERNAL, "timer");
                bidi_free(b);
        }
}

#define METHOD(n, req, resp, fn, ...)                                                              \
        {                                                                                          \
                .name = n, .request = &hostd__test__v1__##req##__descriptor,                       \
                .response = &hostd__test__v1__##resp##__descriptor, .handle = fn, __VA_ARGS__      \
        }

static const struct grpc_method test_methods[] = {
        METHOD("Echo", echo_request, echo_response, echo, .read_only = true,
               .validate = echo_validate),
        METHOD("SlowEcho", echo_request, echo_response, slow_echo, .read_only = true,
               .validate = echo_request_validate),
        METHOD("Write", echo_request, echo_response, echo, .validate = echo_request_validate),
        METHOD("Count", count_request, count_response, count, .read_only = true,
               .server_streaming = true, .validate = count_validate),
        METHOD("Concat", echo_request, echo_response, concat, .read_only = true,
               .client_streaming = true, .validate = echo_request_validate),
        METHOD("BidiEcho", echo_request, echo_response, bidi_echo, .read_only = true,
               .client_streaming = true, .server_streaming = true,
               .validate = echo_request_validate),
};

struct grpc_service grpc_test_service(struct grpc_test_service *t)
{
        return (struct grpc_service){
                .name = "hostd.test.v1.Test",
                .methods = test_methods,
                .n_methods = ELEMENTSOF(test_methods),
                .userdata = t,
        };
}
