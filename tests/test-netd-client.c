/* Unit tests for hostd/netd-client.c against a fake netd in the same process and on the same
 * loop: a Unix socket in a temporary folder, its connections proto/frame-conn.c's. No root. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "api-code.h"
#include "frame-conn.h"
#include "netd-client.h"
#include "util.h"
#include "check.h"

#define MS 1000ULL

/* What the fake does with each request. */
enum fake_mode {
        FAKE_ANSWER,    /* answer at once */
        FAKE_HOLD,      /* keep it for fake_answer() */
        FAKE_GARBAGE,   /* answer with bytes that are no netd.v1.Response */
        FAKE_BAD_FRAME, /* answer with a malformed length prefix */
        FAKE_HANG_UP,   /* close the connection */
};

#define FAKE_MAX_REQS 512

static struct fake {
        sd_event *e;
        char dir[64], path[128];
        int listen_fd;
        sd_event_source *accept_source;
        struct frame_conn *conn;
        int raw_fd; /* a duplicate of conn's socket, for bytes the module would not send */
        unsigned n_accepted;
        enum fake_mode mode;
        /* every request seen, in order */
        size_t n_reqs;
        uint64_t ids[FAKE_MAX_REQS];
        Netd__V1__Request__CallCase calls[FAKE_MAX_REQS];
        /* held ones, by id */
        size_t n_held;
        uint64_t held[FAKE_MAX_REQS];
} fake;

/* The answer to request id: an Attach of "fail" is NOT_FOUND with a message, of "fail-quiet"
 * NOT_FOUND without one; anything else a List reply naming the id, so that a reply that
 * reaches the wrong call shows. */
static void fake_reply(uint64_t id, Netd__V1__Request__CallCase call, const char *dyno)
{
        Netd__V1__Response resp = NETD__V1__RESPONSE__INIT;
        Netd__V1__Status st = NETD__V1__STATUS__INIT;
        Netd__V1__ListReply list = NETD__V1__LIST_REPLY__INIT;
        Netd__V1__Attachment a = NETD__V1__ATTACHMENT__INIT, *ap = &a;
        char name[32];
        resp.id = id;
        if (call == NETD__V1__REQUEST__CALL_ATTACH && dyno && startswith(dyno, "fail")) {
                st.code = API_NOT_FOUND;
                st.message = strcmp(dyno, "fail") == 0 ? "dyno fail: not here" : "";
                resp.status = &st;
        } else {
                snprintf(name, sizeof name, "id-%" PRIu64, id);
                a.dyno_id = name;
                list.n_attachments = 1;
                list.attachments = &ap;
                resp.result_case = NETD__V1__RESPONSE__RESULT_LIST;
                resp.list = &list;
        }
        CHECK_R(frame_conn_send_pb(fake.conn, &resp.base), 0);
}

static void fake_on_request(struct frame_conn *c, int error, const uint8_t *msg, size_t len,
                            void *userdata)
{
        CHECK_EQ(error, 0);
        if (error < 0)
                return;
        Netd__V1__Request *req = netd__v1__request__unpack(NULL, len, msg);
        CHECK(req);
        if (!req)
                return;
        if (fake.n_reqs < FAKE_MAX_REQS) {
                fake.ids[fake.n_reqs] = req->id;
                fake.calls[fake.n_reqs] = req->call_case;
                fake.n_reqs++;
        }
        const char *dyno = req->call_case == NETD__V1__REQUEST__CALL_ATTACH ? req->attach->dyno_id :
                                                                              NULL;
        switch (fake.mode) {
        case FAKE_ANSWER: fake_reply(req->id, req->call_case, dyno); break;
        case FAKE_HOLD:
                if (fake.n_held < FAKE_MAX_REQS)
                        fake.held[fake.n_held++] = req->id;
                break;
        case FAKE_GARBAGE: CHECK_R(frame_conn_send(c, "\xff\xff\xff", 3), 0); break;
        case FAKE_BAD_FRAME:
                CHECK_EQ(write(fake.raw_fd, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),
                         11);
                break;
        case FAKE_HANG_UP:
                frame_conn_free(c);
                fake.conn = NULL;
                closep(&fake.raw_fd);
                fake.raw_fd = -1;
                break;
        }
        netd__v1__request__free_unpacked(req, NULL);
}

static void fake_on_closed(struct frame_conn *c, int error, void *userdata)
{
        frame_conn_free(c);
        fake.conn = NULL;
        closep(&fake.raw_fd);
        fake.raw_fd = -1;
}

static const struct frame_conn_kind fake_kind = {
        .max_frame = 1u << 20,
        .max_queued = 16u << 20,
        .batch = 64,
        .message = fake_on_request,
        .closed = fake_on_closed,
};

static int fake_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        /* one connection at a time, as hostd makes */
        frame_conn_free(fake.conn);
        closep(&fake.raw_fd);
        fake.raw_fd = fcntl(cfd, F_DUPFD_CLOEXEC, 3);
        CHECK_R(frame_conn_new(fake.e, cfd, &fake_kind, NULL, &fake.conn), 0);
        fake.n_accepted++;
        return 0;
}

static void fake_listen(void)
{
        fake.listen_fd = unix_listen(fake.path, "fake netd");
        CHECK(fake.listen_fd >= 0);
        CHECK_R(sd_event_add_io(fake.e, &fake.accept_source, fake.listen_fd, EPOLLIN,
                                fake_on_accept, NULL),
                0);
}

static void fake_stop_listening(void)
{
        fake.accept_source = sd_event_source_disable_unref(fake.accept_source);
        closep(&fake.listen_fd);
        fake.listen_fd = -1;
        unlink(fake.path);
}

static void fake_start(void)
{
        fake = (struct fake){ .listen_fd = -1, .raw_fd = -1 };
        if (sd_event_new(&fake.e) < 0)
                abort();
        strcpy(fake.dir, "/tmp/test-netd-client-XXXXXX");
        if (!mkdtemp(fake.dir))
                abort();
        snprintf(fake.path, sizeof fake.path, "%s/netd.sock", fake.dir);
        fake_listen();
}

static void fake_end(void)
{
        frame_conn_free(fake.conn);
        closep(&fake.raw_fd);
        fake_stop_listening();
        rmdir(fake.dir);
        fake.e = sd_event_unref(fake.e);
}

/* Answer the held requests, the last held first. */
static void fake_answer_held_reversed(void)
{
        while (fake.n_held > 0)
                fake_reply(fake.held[--fake.n_held], NETD__V1__REQUEST__CALL_LIST, NULL);
}

#define RUN_UNTIL(cond)                                                                            \
        do {                                                                                       \
                uint64_t _end = now_monotonic_usec() + 10 * 1000000ULL;                            \
                while (!(cond) && now_monotonic_usec() < _end)                                     \
                        sd_event_run(fake.e, 100 * MS);                                            \
                CHECK(cond);                                                                       \
        } while (0)

/* The outcomes of calls, in the order their callbacks ran. */
struct outcome {
        int64_t handle; /* the call's, set by the test once netd_call returned */
        int code;
        char msg[128];
        char listed[32]; /* the List reply's first attachment */
        uint64_t resp_id;
        unsigned order; /* 1 + how many callbacks ran before this one */
        int n_calls;    /* times the callback ran */
        int n_destroyed;
};

static unsigned n_callbacks;
static bool in_call; /* netd_call runs: no callback may */

static void on_reply(void *userdata, int code, const char *msg, const Netd__V1__Response *resp)
{
        struct outcome *o = userdata;
        CHECK(!in_call);
        o->n_calls++;
        o->code = code;
        o->order = ++n_callbacks;
        snprintf(o->msg, sizeof o->msg, "%s", msg ? msg : "(null)");
        o->resp_id = resp ? resp->id : 0;
        if (resp && resp->result_case == NETD__V1__RESPONSE__RESULT_LIST &&
            resp->list->n_attachments > 0)
                snprintf(o->listed, sizeof o->listed, "%s", resp->list->attachments[0]->dyno_id);
}

static void on_destroy(void *userdata) { ((struct outcome *)userdata)->n_destroyed++; }

static int64_t call_list(struct netd_client *c, struct outcome *o)
{
        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        Netd__V1__ListRequest l = NETD__V1__LIST_REQUEST__INIT;
        req.call_case = NETD__V1__REQUEST__CALL_LIST;
        req.list = &l;
        in_call = true;
        int64_t h = netd_call_full(c, &req, on_reply, o, on_destroy);
        in_call = false;
        o->handle = h;
        return h;
}

static int64_t call_attach(struct netd_client *c, const char *dyno, struct outcome *o)
{
        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        Netd__V1__AttachRequest a = NETD__V1__ATTACH_REQUEST__INIT;
        a.dyno_id = (char *)dyno;
        req.call_case = NETD__V1__REQUEST__CALL_ATTACH;
        req.attach = &a;
        in_call = true;
        int64_t h = netd_call(c, &req, on_reply, o);
        in_call = false;
        o->handle = h;
        return h;
}

/* hostd's connected callback sends a Gc first on each new connection: the same here. */
static unsigned n_connected;
static struct outcome gc_outcome;

static void on_connected(struct netd_client *c, void *userdata)
{
        n_connected++;
        Netd__V1__Request req = NETD__V1__REQUEST__INIT;
        Netd__V1__GcRequest gc = NETD__V1__GC_REQUEST__INIT;
        req.call_case = NETD__V1__REQUEST__CALL_GC;
        req.gc = &gc;
        gc_outcome = (struct outcome){ 0 };
        gc_outcome.handle = netd_call(c, &req, on_reply, &gc_outcome);
        CHECK(gc_outcome.handle > 0);
}

static struct netd_client *client_new(uint64_t timeout_usec)
{
        struct netd_client *c = NULL;
        n_connected = 0;
        n_callbacks = 0;
        CHECK_R(netd_client_new(fake.e, fake.path, timeout_usec, on_connected, NULL, &c), 0);
        if (!c)
                abort();
        return c;
}

/* Ids are the handles, 1, 2, 3...; the connected callback's Gc goes out before the call that
 * connected; answers come in order, and never from within netd_call. */
static void test_ids_in_order(void)
{
        fake_start();
        struct netd_client *c = client_new(5000 * MS);
        struct outcome o[3] = { 0 };
        CHECK_EQ(call_list(c, &o[0]), 2); /* the Gc was 1 */
        CHECK_EQ(call_attach(c, "web.1", &o[1]), 3);
        CHECK_EQ(call_list(c, &o[2]), 4);
        CHECK_EQ(n_connected, 1);
        CHECK_EQ(n_callbacks, 0);
        RUN_UNTIL(o[2].n_calls == 1);
        CHECK_EQ(fake.n_reqs, 4);
        CHECK_EQ(fake.calls[0], NETD__V1__REQUEST__CALL_GC);
        for (size_t i = 0; i < 4; i++)
                CHECK_EQ(fake.ids[i], i + 1);
        CHECK_EQ(gc_outcome.order, 1);
        for (int i = 0; i < 3; i++) {
                CHECK_EQ(o[i].n_calls, 1);
                CHECK_EQ(o[i].code, 0);
                CHECK_EQ(o[i].order, i + 2);
                CHECK_EQ(o[i].resp_id, o[i].handle);
        }
        CHECK_STR(o[1].listed, "id-3");
        CHECK_EQ(fake.n_accepted, 1);
        netd_client_free(c);
        fake_end();
}

/* Answers out of order still reach their own calls: matched by id. */
static void test_matched_by_id(void)
{
        fake_start();
        struct netd_client *c = client_new(5000 * MS);
        fake.mode = FAKE_HOLD;
        struct outcome o[5] = { 0 };
        for (int i = 0; i < 5; i++)
                CHECK(call_list(c, &o[i]) > 0);
        RUN_UNTIL(fake.n_held == 6);
        fake_answer_held_reversed();
        RUN_UNTIL(o[0].n_calls == 1);
        for (int i = 0; i < 5; i++) {
                char want[32];
                snprintf(want, sizeof want, "id-%" PRId64, o[i].handle);
                CHECK_STR(o[i].listed, want);
                CHECK_EQ(o[i].order, 5 - i); /* the last one held came first */
        }
        CHECK_EQ(gc_outcome.order, 6);
        netd_client_free(c);
        fake_end();
}

/* netd's own errors: its code and message, or a message of ours when it gave none. */
static void test_netd_errors(void)
{
        fake_start();
        struct netd_client *c = client_new(5000 * MS);
        struct outcome a = { 0 }, b = { 0 };
        call_attach(c, "fail", &a);
        call_attach(c, "fail-quiet", &b);
        RUN_UNTIL(b.n_calls == 1);
        CHECK_EQ(a.code, API_NOT_FOUND);
        CHECK_STR(a.msg, "dyno fail: not here");
        CHECK_EQ(b.code, API_NOT_FOUND);
        CHECK_STR(b.msg, "netd refused the request");
        netd_client_free(c);
        fake_end();
}

/* A cancelled call never sees its answer; its destroy runs once. netd_client_free drops the
 * calls still waiting the same way. */
static void test_cancel_and_free(void)
{
        fake_start();
        struct netd_client *c = client_new(5000 * MS);
        fake.mode = FAKE_HOLD;
        struct outcome o[3] = { 0 };
        for (int i = 0; i < 3; i++)
                call_list(c, &o[i]);
        RUN_UNTIL(fake.n_held == 4);
        netd_cancel(c, o[1].handle);
        CHECK_EQ(o[1].n_destroyed, 1);
        fake_answer_held_reversed();
        RUN_UNTIL(o[0].n_calls == 1 && o[2].n_calls == 1);
        while (sd_event_run(fake.e, 0) > 0)
                ;
        CHECK_EQ(o[1].n_calls, 0);
        CHECK_EQ(o[1].n_destroyed, 1);

        struct outcome w[2] = { 0 };
        call_list(c, &w[0]);
        call_list(c, &w[1]);
        RUN_UNTIL(fake.n_held == 2);
        netd_client_free(c);
        CHECK_EQ(w[0].n_calls + w[1].n_calls, 0);
        CHECK_EQ(w[0].n_destroyed + w[1].n_destroyed, 2);
        fake_end();
}

/* No answer within the timeout: DEADLINE_EXCEEDED, not before it. */
static void test_timeout(void)
{
        fake_start();
        struct netd_client *c = client_new(200 * MS);
        fake.mode = FAKE_HOLD;
        struct outcome o = { 0 };
        uint64_t start = now_monotonic_usec();
        call_list(c, &o);
        RUN_UNTIL(o.n_calls == 1);
        uint64_t took = now_monotonic_usec() - start;
        CHECK_EQ(o.code, API_DEADLINE_EXCEEDED);
        CHECK_STR(o.msg, "netd did not answer in time");
        CHECK(took >= 200 * MS);
        CHECK(took < 2000 * MS);
        /* the answer, late, is dropped */
        fake_answer_held_reversed();
        for (int i = 0; i < 5; i++)
                sd_event_run(fake.e, 20 * MS);
        CHECK_EQ(o.n_calls, 1);
        netd_client_free(c);
        fake_end();
}

/* netd busy, not stuck: six calls queued at once, answered one every 120 ms with a timeout of
 * 300 ms. The last waits some 700 ms, and none fails, since netd answers all along. */
static int answer_one(sd_event_source *s, uint64_t usec, void *userdata)
{
        if (fake.n_held > 0) {
                fake_reply(fake.held[0], NETD__V1__REQUEST__CALL_LIST, NULL);
                memmove(fake.held, fake.held + 1, --fake.n_held * sizeof fake.held[0]);
        }
        sd_event_source_set_time_relative(s, 120 * MS);
        return 0;
}

static void test_busy_not_stuck(void)
{
        fake_start();
        struct netd_client *c = client_new(300 * MS);
        fake.mode = FAKE_HOLD;
        struct outcome o[6] = { 0 };
        uint64_t start = now_monotonic_usec();
        for (int i = 0; i < 6; i++)
                call_list(c, &o[i]);
        sd_event_source *t = NULL;
        CHECK_R(sd_event_add_time_relative(fake.e, &t, CLOCK_MONOTONIC, 120 * MS, 0, answer_one,
                                           NULL),
                0);
        CHECK_R(sd_event_source_set_enabled(t, SD_EVENT_ON), 0);
        RUN_UNTIL(o[5].n_calls == 1);
        CHECK(now_monotonic_usec() - start > 600 * MS);
        for (int i = 0; i < 6; i++)
                CHECK_EQ(o[i].code, 0);
        sd_event_source_disable_unref(t);
        netd_client_free(c);
        fake_end();
}

/* netd goes away: the calls waiting fail UNAVAILABLE at once; the next call connects again
 * (a new Gc first). With nobody listening, netd_call fails and no callback runs. */
static void test_reconnect(void)
{
        fake_start();
        struct netd_client *c = client_new(5000 * MS);
        fake.mode = FAKE_HOLD;
        struct outcome o[2] = { 0 };
        call_list(c, &o[0]);
        call_list(c, &o[1]);
        RUN_UNTIL(fake.n_held == 3);
        frame_conn_free(fake.conn);
        fake.conn = NULL;
        closep(&fake.raw_fd);
        fake.raw_fd = -1;
        /* sent before the loop saw the end: queued, and failed from the loop with the rest */
        struct outcome late = { 0 };
        CHECK(call_list(c, &late) > 0);
        RUN_UNTIL(o[1].n_calls == 1 && late.n_calls == 1);
        CHECK_EQ(late.code, API_UNAVAILABLE);
        CHECK_EQ(gc_outcome.code, API_UNAVAILABLE);
        for (int i = 0; i < 2; i++) {
                CHECK_EQ(o[i].code, API_UNAVAILABLE);
                CHECK_STR(o[i].msg, "netd closed the connection");
        }

        fake_stop_listening();
        struct outcome gone = { 0 };
        CHECK(call_list(c, &gone) < 0);
        CHECK_EQ(netd_client_connect(c) < 0, 1);
        while (sd_event_run(fake.e, 0) > 0)
                ;
        CHECK_EQ(gone.n_calls + gone.n_destroyed, 0);

        fake_listen();
        fake.mode = FAKE_ANSWER;
        struct outcome back = { 0 };
        CHECK(call_list(c, &back) > 0);
        CHECK_EQ(n_connected, 2);
        RUN_UNTIL(back.n_calls == 1);
        CHECK_EQ(back.code, 0);
        CHECK_EQ(gc_outcome.code, 0);
        CHECK_EQ(fake.n_accepted, 2);
        CHECK_EQ(netd_client_connect(c), 0); /* connected already */
        netd_client_free(c);
        fake_end();
}

/* netd answers something else than a framed Response, or closes while answering: the calls
 * fail UNAVAILABLE with what happened, and the client connects again. */
static void test_bad_answers(void)
{
        static const struct {
                enum fake_mode mode;
                const char *msg;
        } cases[] = {
                { FAKE_GARBAGE, "netd sent an undecodable response" },
                { FAKE_BAD_FRAME, "netd sent a bad frame" },
                { FAKE_HANG_UP, "netd closed the connection" },
        };
        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                fake_start();
                struct netd_client *c = client_new(5000 * MS);
                fake.mode = cases[k].mode;
                struct outcome o = { 0 };
                call_list(c, &o);
                RUN_UNTIL(o.n_calls == 1);
                CHECK_EQ(gc_outcome.code, API_UNAVAILABLE);
                CHECK_EQ(o.code, API_UNAVAILABLE);
                CHECK_STR(o.msg, cases[k].msg);

                fake.mode = FAKE_ANSWER;
                struct outcome again = { 0 };
                call_list(c, &again);
                RUN_UNTIL(again.n_calls == 1);
                CHECK_EQ(again.code, 0);
                CHECK_EQ(n_connected, 2);
                netd_client_free(c);
                fake_end();
        }
}

/* 300 calls at once, past a batch of 64 both ways: every one answered, in order. */
static void test_pipelined(void)
{
        fake_start();
        struct netd_client *c = client_new(5000 * MS);
        static struct outcome o[300];
        memset(o, 0, sizeof o);
        for (int i = 0; i < 300; i++)
                CHECK(call_list(c, &o[i]) > 0);
        RUN_UNTIL(o[299].n_calls == 1);
        unsigned bad = 0;
        for (int i = 0; i < 300; i++)
                if (o[i].n_calls != 1 || o[i].code != 0 || o[i].order != (unsigned)i + 2)
                        bad++;
        CHECK_EQ(bad, 0);
        netd_client_free(c);
        fake_end();
}

int main(void)
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "ids are handles, Gc first, answers in order", test_ids_in_order },
                { "answers out of order matched by id", test_matched_by_id },
                { "netd's errors", test_netd_errors },
                { "cancel, and free with calls waiting", test_cancel_and_free },
                { "no answer: DEADLINE_EXCEEDED", test_timeout },
                { "netd busy, not stuck: no timeout", test_busy_not_stuck },
                { "netd gone and back: UNAVAILABLE, reconnect", test_reconnect },
                { "undecodable answer, bad frame, hang-up", test_bad_answers },
                { "300 calls pipelined", test_pipelined },
        };
        int failed = 0;

        signal(SIGPIPE, SIG_IGN);
        log_set_max_level(getenv("TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERR - 1);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                case_failures = 0;
                cases[i].fn();
                printf("%s: %s\n", case_failures ? "FAIL" : "ok  ", cases[i].name);
                fflush(stdout);
                if (case_failures)
                        failed++;
        }
        printf("%d of %zu cases failed\n", failed, ELEMENTSOF(cases));
        return check_report();
}
