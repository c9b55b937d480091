/* The transport's test server: hostd's gRPC server (grpc-server.c, with health and
 * reflection) serving hostd.test.v1.Test (tests/proto/grpctest.proto) on a Unix socket and,
 * with --tls, on mutual TLS. tests/integration/test_grpc_transport.py drives it.
 *
 * It reports on stdout, one line each, what a test checks that the owner of a call saw:
 * "ready", "cancel METHOD TAG" when a call's on_cancel ran, "end METHOD TAG" when a stream
 * finished by itself. SIGTERM ends it (everything freed, for LeakSanitizer), SIGHUP reloads the
 * TLS files, SIGUSR1 and SIGUSR2 set the health to NOT_SERVING and SERVING. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "grpc-server.h"
#include "grpctest.pb-c.h"
#include "tls.h"

extern const uint8_t grpctest_descriptor_set[];
extern const size_t grpctest_descriptor_set_len;

static struct grpc_server *server;

static void report(const char *what, struct call *c, const char *tag)
{
        printf("%s %s %s\n", what, call_method(c), tag && tag[0] ? tag : "-");
        fflush(stdout);
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
        return API_OK;
}

struct slow {
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
        report("cancel", c, s->req->text);
        slow_free(s);
}

static int slow_due(sd_event_source *t, uint64_t usec, void *userdata)
{
        struct slow *s = userdata;
        call_on_cancel(s->call, NULL, NULL);
        echo_answer(s->call, s->req);
        slow_free(s);
        return 0;
}

static void slow_echo(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        sd_event *e = userdata;
        struct slow *s = calloc(1, sizeof *s);
        if (!s) {
                call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                protobuf_c_message_free_unpacked(msg, NULL);
                return;
        }
        s->req = (Hostd__Test__V1__EchoRequest *)msg;
        s->call = call_ref(c);
        if (sd_event_add_time_relative(e, &s->timer, CLOCK_MONOTONIC,
                                       (uint64_t)s->req->delay_ms * 1000, 1000, slow_due, s) < 0) {
                call_fail(c, API_INTERNAL, "timer");
                slow_free(s);
                return;
        }
        call_on_cancel(c, slow_cancelled, s);
}

/* ---- server stream: Count ---- */

struct counter {
        struct call *call;
        sd_event_source *source; /* a timer, or a defer for "as fast as the loop goes" */
        uint32_t n, size, interval_ms;
        bool ignore_pending;
        uint64_t i, skipped;
        char *tag;
        uint8_t *payload;
};

static void counter_free(struct counter *k)
{
        sd_event_source_disable_unref(k->source);
        call_unref(k->call);
        free(k->tag);
        free(k->payload);
        free(k);
}

static void counter_cancelled(struct call *c, void *userdata)
{
        struct counter *k = userdata;
        report("cancel", c, k->tag);
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
                report("end", k->call, k->tag);
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

static int counter_defer(sd_event_source *s, void *userdata)
{
        struct counter *k = userdata;
        for (int i = 0; i < 16; i++)
                if (!counter_step(k))
                        break;
        return 0;
}

static void count(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        sd_event *e = userdata;
        Hostd__Test__V1__CountRequest *req = (Hostd__Test__V1__CountRequest *)msg;
        struct counter *k = calloc(1, sizeof *k);
        int r = -ENOMEM;
        if (k && (k->tag = strdup(req->tag)) && (k->payload = calloc(1, req->size + 1))) {
                k->call = call_ref(c);
                k->n = req->n;
                k->size = req->size;
                k->interval_ms = req->interval_ms;
                k->ignore_pending = req->ignore_pending;
                if (k->interval_ms)
                        r = sd_event_add_time_relative(e, &k->source, CLOCK_MONOTONIC, 0, 1000,
                                                       counter_timer, k);
                else
                        r = sd_event_add_defer(e, &k->source, counter_defer, k);
                /* A timer re-armed by each step; a defer (oneshot when made) on every turn. */
                if (r >= 0)
                        r = sd_event_source_set_enabled(k->source, k->interval_ms
                                                                           ? SD_EVENT_ONESHOT
                                                                           : SD_EVENT_ON);
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
        report("cancel", c, "concat");
        concat_free(userdata);
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
                if (!concat_add(k, (const Hostd__Test__V1__EchoRequest *)msg))
                        call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
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
                k->call = call_ref(c);
                call_on_cancel(c, concat_cancelled, k);
                call_on_input(c, concat_input, k);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void bidi_cancelled(struct call *c, void *userdata)
{
        report("cancel", c, "bidi");
        call_unref(c);
}

static void bidi_input(struct call *c, const ProtobufCMessage *msg, void *userdata)
{
        if (!msg) {
                call_on_cancel(c, NULL, NULL);
                call_finish(c);
                call_unref(c);
                return;
        }
        const Hostd__Test__V1__EchoRequest *req = (const Hostd__Test__V1__EchoRequest *)msg;
        if (req->fail_code) {
                call_on_cancel(c, NULL, NULL);
                call_fail(c, (enum api_code)req->fail_code, "%s", req->fail_message);
                call_unref(c);
                return;
        }
        Hostd__Test__V1__EchoResponse resp = HOSTD__TEST__V1__ECHO_RESPONSE__INIT;
        resp.text = req->text;
        resp.method = (char *)call_method(c);
        (void)call_send(c, &resp.base);
}

struct later {
        struct call *call;
        sd_event_source *timer;
};

static int bidi_later(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct later *l = userdata;
        call_on_input(l->call, bidi_input, NULL);
        call_unref(l->call);
        sd_event_source_disable_unref(l->timer); /* sd-event frees it after this returns */
        free(l);
        return 0;
}

static void bidi_echo(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        call_ref(c);
        call_on_cancel(c, bidi_cancelled, NULL);
        /* "wait-input": the owner asks for the rest only a second later (held input). */
        bool wait = strcmp(((Hostd__Test__V1__EchoRequest *)msg)->text, "wait-input") == 0;
        bidi_input(c, msg, NULL);
        protobuf_c_message_free_unpacked(msg, NULL);
        if (call_is_done(c))
                return;
        if (!wait) {
                call_on_input(c, bidi_input, NULL);
                return;
        }
        struct later *l = calloc(1, sizeof *l);
        if (!l || sd_event_add_time_relative(userdata, &l->timer, CLOCK_MONOTONIC, 1000000, 1000,
                                             bidi_later, l) < 0) {
                free(l);
                call_fail(c, API_INTERNAL, "timer");
                return;
        }
        l->call = call_ref(c);
}

/* ---- the server ---- */

static sd_event *event;

#define METHOD(n, req, resp, fn, ...)                                                              \
        {                                                                                          \
                .name = n, .request = &hostd__test__v1__##req##__descriptor,                       \
                .response = &hostd__test__v1__##resp##__descriptor, .handle = fn, __VA_ARGS__      \
        }

static const struct grpc_method test_methods[] = {
        METHOD("Echo", echo_request, echo_response, echo, .read_only = true,
               .validate = echo_validate),
        METHOD("SlowEcho", echo_request, echo_response, slow_echo, .read_only = true),
        METHOD("Write", echo_request, echo_response, echo),
        METHOD("Count", count_request, count_response, count, .read_only = true,
               .server_streaming = true),
        METHOD("Concat", echo_request, echo_response, concat, .read_only = true,
               .client_streaming = true),
        METHOD("BidiEcho", echo_request, echo_response, bidi_echo, .read_only = true,
               .client_streaming = true, .server_streaming = true),
};

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        switch (si->ssi_signo) {
        case SIGHUP: grpc_server_reload_tls(server); break;
        case SIGUSR1: grpc_server_set_serving(server, false); break;
        case SIGUSR2: grpc_server_set_serving(server, true); break;
        default: sd_event_exit(event, 0);
        }
        return 0;
}

static void usage(void)
{
        fprintf(stderr,
                "usage: grpc-test-server --socket PATH [--read-group G] [--tls ADDR:PORT --cert F "
                "--key F --ca F [--allow IDS]] [--max-inflight N] [--max-message N] "
                "[--max-connections N] [--idle-timeout S] [--keepalive S] [--keepalive-timeout S] "
                "[--max-pending-stream N] [--max-pending-conn N] [--handshake-timeout S]\n");
}

int main(int argc, char **argv)
{
        struct grpc_server_options o = {
                .socket_path = "",
                .read_group = "",
                .listen_tls = "",
                .max_connections = 64,
                .max_inflight = 64,
                .max_message = 4 << 20,
                .idle_timeout = 600,
                .tls_handshake_timeout = 10,
                .descriptors = grpctest_descriptor_set,
                .descriptors_len = grpctest_descriptor_set_len,
        };
        struct config cfg = { .tls_allow = (char *)"" };
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, 's' },
                { "read-group", required_argument, NULL, 'g' },
                { "tls", required_argument, NULL, 't' },
                { "cert", required_argument, NULL, 'c' },
                { "key", required_argument, NULL, 'k' },
                { "ca", required_argument, NULL, 'a' },
                { "allow", required_argument, NULL, 'A' },
                { "max-inflight", required_argument, NULL, 'i' },
                { "max-message", required_argument, NULL, 'm' },
                { "max-connections", required_argument, NULL, 'C' },
                { "idle-timeout", required_argument, NULL, 'I' },
                { "keepalive", required_argument, NULL, 'K' },
                { "keepalive-timeout", required_argument, NULL, 'T' },
                { "max-pending-stream", required_argument, NULL, 'p' },
                { "max-pending-conn", required_argument, NULL, 'P' },
                { "handshake-timeout", required_argument, NULL, 'H' },
                { "debug", no_argument, NULL, 'd' },
                {},
        };
        int ch;
        while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                uint32_t v = 0;
                if (strchr("imCIKTpPH", ch) && safe_atou32(optarg, &v) < 0) {
                        fprintf(stderr, "grpc-test-server: %s: not a number\n", optarg);
                        return 2;
                }
                switch (ch) {
                case 's': o.socket_path = optarg; break;
                case 'g': o.read_group = optarg; break;
                case 't': o.listen_tls = optarg; break;
                case 'c': cfg.tls_cert = optarg; break;
                case 'k': cfg.tls_key = optarg; break;
                case 'a': cfg.tls_ca = optarg; break;
                case 'A': cfg.tls_allow = optarg; break;
                case 'i': o.max_inflight = v; break;
                case 'm': o.max_message = v; break;
                case 'C': o.max_connections = v; break;
                case 'I': o.idle_timeout = v; break;
                case 'K': o.keepalive = v; break;
                case 'T': o.keepalive_timeout = v; break;
                case 'p': o.max_pending_stream = v; break;
                case 'P': o.max_pending_conn = v; break;
                case 'H': o.tls_handshake_timeout = v; break;
                case 'd': log_set_max_level(LOG_LEVEL_DEBUG); break;
                default: usage(); return 2;
                }
        }
        if (!o.socket_path[0] && !o.listen_tls[0]) {
                usage();
                return 2;
        }
        log_set_ident("grpc-test-server");

        sigset_t mask;
        sigemptyset(&mask);
        for (int sig = 1; sig < 32; sig++)
                if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGUSR1 ||
                    sig == SIGUSR2)
                        sigaddset(&mask, sig);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        int r = sd_event_new(&event);
        if (r < 0)
                return log_error_errno(r, "sd_event_new: %m"), 1;
        sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGHUP, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGUSR1, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGUSR2, on_signal, NULL);

        if (o.listen_tls[0]) {
                char err[512];
                if (!cfg.tls_cert || !cfg.tls_key || !cfg.tls_ca) {
                        usage();
                        return 2;
                }
                r = tls_server_new(&cfg, &o.tls, err, sizeof err);
                if (r < 0) {
                        log_error("%s", err);
                        return 1;
                }
        }
        const struct grpc_service services[] = { {
                .name = "hostd.test.v1.Test",
                .methods = test_methods,
                .n_methods = ELEMENTSOF(test_methods),
                .userdata = event,
        } };
        r = grpc_server_new(event, &o, services, ELEMENTSOF(services), &server);
        if (r < 0) {
                sd_event_unref(event);
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        r = sd_event_loop(event);
        grpc_server_free(server);
        sd_event_unref(event);
        return r < 0 ? 1 : 0;
}
