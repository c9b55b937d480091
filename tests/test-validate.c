/* Unit test of the checks on wire input (validate.c) and the text helpers they use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"
#include "api-code.h"
#include "api.h"
#include "manager.h"
#include "validate.h"
#include "check.h"

static struct config cfg;
static char stack[] = "/tmp/hostd-test-validate-XXXXXX";

static void test_ids(void)
{
        static const char *const good[] = {
                "a", "web-1", "A.b_c-9", "0abc",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        };
        static const char *const bad[] = {
                "",     ".",   "..",
                "../x", "a/b", "-a",
                ".a",   "_a",  "a b",
                "a\n",  "é",   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                CHECK(dyno_id_valid(good[i]) && dyno_instance_name_valid(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK(!dyno_id_valid(bad[i]) && !dyno_instance_name_valid(bad[i]));
        /* An instance: the id, or id@n for its n-th replacement. */
        static const char *const good_inst[] = { "web-1@1", "a@4294967295", "A.b_c-9@10" };
        static const char *const bad_inst[] = { "web-1@", "web-1@0",      "web-1@01",      "@1",
                                                "a@1@2",  "a@4294967296", "a@12345678901", "a@-1" };
        for (size_t i = 0; i < ELEMENTSOF(good_inst); i++)
                CHECK(dyno_instance_name_valid(good_inst[i]) && !dyno_id_valid(good_inst[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad_inst); i++)
                CHECK(!dyno_instance_name_valid(bad_inst[i]));
        char msg[256];
        CHECK(validate_id("spec.id", "a/b", msg, sizeof msg) == API_INVALID_ARGUMENT);
        CHECK(strstr(msg, "spec.id") != NULL);
        CHECK(validate_id("spec.id", "", msg, sizeof msg) == API_INVALID_ARGUMENT);
        CHECK(strstr(msg, "required") != NULL);
}

static void test_text(void)
{
        CHECK(utf8_valid("plain"));
        CHECK(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
        CHECK(!utf8_valid("\xff"));
        CHECK(!utf8_valid("\xc0\xaf"));         /* overlong '/' */
        CHECK(!utf8_valid("\xed\xa0\x80"));     /* a surrogate */
        CHECK(!utf8_valid("\xf4\x90\x80\x80")); /* past U+10FFFF */
        CHECK(!utf8_valid("\xe2\x82"));         /* cut short */
        uint32_t cp = 0;
        CHECK(utf8_decode((const uint8_t *)"\xe2\x82\xac", 3, &cp) == 3 && cp == 0x20ac);
        CHECK(utf8_decode((const uint8_t *)"\xe2\x82\xac", 2, &cp) == 0); /* n cuts it */
        CHECK(utf8_decode((const uint8_t *)"\x80", 1, &cp) == 0);

        char buf[64];
        CHECK(strcmp(escape_value("ok", 80, buf, sizeof buf), "ok") == 0);
        CHECK(strcmp(escape_value("a\xff\n", 80, buf, sizeof buf), "a\\xff\\x0a") == 0);
        CHECK(strcmp(escape_value("abcdef", 3, buf, sizeof buf), "abc...") == 0);
        /* Never past the buffer, whatever the input. */
        char small[8];
        escape_value("\xff\xff\xff\xff\xff", 80, small, sizeof small);
        CHECK(strlen(small) < sizeof small);
}

static Hostd__V1__DynoSpec spec_good(void)
{
        Hostd__V1__DynoSpec s = HOSTD__V1__DYNO_SPEC__INIT;
        s.id = (char *)"web-1";
        s.type = HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WORKER;
        s.command = (char *)"sleep 1";
        s.stack_path = stack;
        return s;
}

/* The code a spec gets, and that the message names want. */
static void expect(const Hostd__V1__DynoSpec *s, int code, const char *want)
{
        char msg[512] = "";
        const struct size_def *size = NULL;
        int r = validate_spec(s, &cfg, &size, msg, sizeof msg);
        CHECK(r == code);
        if (want)
                CHECK(strstr(msg, want) != NULL);
        if (r != code || (want && !strstr(msg, want)))
                fprintf(stderr, "  got %d '%s', want %d '%s'\n", r, msg, code, want ? want : "");
        if (code == 0)
                CHECK(size && strcmp(size->name, cfg.default_size) == 0);
}

static void test_spec(void)
{
        Hostd__V1__DynoSpec s = spec_good();
        expect(&s, 0, NULL);

        s = spec_good();
        s.size = (char *)"huge";
        expect(&s, API_INVALID_ARGUMENT, "spec.size: unknown size 'huge'");

        s = spec_good();
        s.command = (char *)"";
        expect(&s, API_INVALID_ARGUMENT, "spec.command: required");

        char *big = malloc(cfg.max_command + 2);
        memset(big, 'x', cfg.max_command + 1);
        big[cfg.max_command + 1] = 0;
        s = spec_good();
        s.command = big;
        expect(&s, API_INVALID_ARGUMENT, "spec.command:");
        free(big);

        s = spec_good();
        s.command = (char *)"echo \xff";
        expect(&s, API_INVALID_ARGUMENT, "UTF-8");

        Hostd__V1__EnvVar e1 = HOSTD__V1__ENV_VAR__INIT, e2 = HOSTD__V1__ENV_VAR__INIT;
        Hostd__V1__EnvVar *env[2] = { &e1, &e2 };
        e1.name = (char *)"PORT";
        e1.value = (char *)"1";
        s = spec_good();
        s.n_env = 1;
        s.env = env;
        expect(&s, API_INVALID_ARGUMENT, "PORT is set by hostd");

        e1.name = (char *)"1BAD";
        expect(&s, API_INVALID_ARGUMENT, "spec.env[0].name");

        e1.name = e2.name = (char *)"SAME";
        e2.value = (char *)"2";
        s.n_env = 2;
        expect(&s, API_INVALID_ARGUMENT, "given twice");

        s = spec_good();
        s.type = HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB;
        expect(&s, API_INVALID_ARGUMENT, "spec.port: required for a web dyno");
        s.port = 70000;
        expect(&s, API_INVALID_ARGUMENT, "spec.port");

        s = spec_good();
        s.stack_path = (char *)"relative/path";
        expect(&s, API_INVALID_ARGUMENT, "not an absolute path");
        s.stack_path = (char *)"/nonexistent/stack";
        expect(&s, API_INVALID_ARGUMENT, "No such file");
        s.stack_path = (char *)"/etc/hostname";
        expect(&s, API_INVALID_ARGUMENT, "not a folder");
        s.stack_path = (char *)"/tmp/a,upperdir=/x";
        expect(&s, API_INVALID_ARGUMENT, "overlayfs");

        static char digest[] = "a58f042b6b3d94d52e795ed3aa2bb6883957db58317ff0a046299060e530259b";
        s = spec_good();
        s.stack_digest = digest;
        expect(&s, API_INVALID_ARGUMENT, "give one, not both");
        s.stack_path = (char *)"";
        expect(&s, 0, NULL);
        s.stack_url = (char *)"https://images.example/stack.tar.gz";
        expect(&s, 0, NULL);
        s.stack_url = (char *)"ftp://images.example/stack.tar.gz";
        expect(&s, API_INVALID_ARGUMENT, "spec.stack_url");
        s.stack_url = (char *)"relative/stack.tar.gz";
        expect(&s, API_INVALID_ARGUMENT, "spec.stack_url");
        s.stack_url = (char *)"";
        s.stack_digest = (char *)"ABC";
        expect(&s, API_INVALID_ARGUMENT, "not a sha256");
        s = spec_good();
        s.slug_url = (char *)"/srv/slug.tar.gz";
        expect(&s, API_INVALID_ARGUMENT, "needs spec.slug_digest");
        s = spec_good();
        s.stack_path = (char *)"";
        expect(&s, API_INVALID_ARGUMENT, "spec.stack_digest or spec.stack_path: required");

        s = spec_good();
        s.grace_case = HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS;
        s.grace_seconds = 3601;
        expect(&s, API_INVALID_ARGUMENT, "grace_seconds");
}

/* The dyno metadata, a one-off's TERM, and the names of the variables hostd sets. */
static void test_metadata(void)
{
        Hostd__V1__DynoSpec s = spec_good();
        s.app_id = (char *)"01234567-89ab-4cde-8f01-23456789abcd";
        s.slug_commit = (char *)"2c3a0b2f9d";
        s.slug_description = (char *)"Deploy 2c3a0b2 \xe2\x9c\x93";
        s.release = (char *)"v42";
        s.release_created_at = (char *)"2026-12-07T19:00:00Z";
        expect(&s, 0, NULL);
        static const char *const times[] = { "2026-12-07T19:00:00.123456Z",
                                             "2026-12-07t19:00:00+01:00",
                                             "2026-12-07T19:00:00-05:30" };
        for (size_t i = 0; i < ELEMENTSOF(times); i++) {
                s.release_created_at = (char *)times[i];
                expect(&s, 0, NULL);
        }
        static const char *const bad_times[] = { "yesterday", "2026-12-07", "2026-12-07T19:00:00",
                                                 "2026-12-07T19:00:00Zjunk",
                                                 "2026-12-07T19:00:00+1" };
        for (size_t i = 0; i < ELEMENTSOF(bad_times); i++) {
                s.release_created_at = (char *)bad_times[i];
                expect(&s, API_INVALID_ARGUMENT, "spec.release_created_at");
        }
        s.release_created_at = (char *)"";

        char long_id[66];
        memset(long_id, 'a', 65);
        long_id[65] = 0;
        s.app_id = long_id;
        expect(&s, API_INVALID_ARGUMENT, "spec.app_id: longer than 64 bytes");
        long_id[64] = 0;
        expect(&s, 0, NULL);
        s.slug_commit = (char *)"abc\x7f";
        expect(&s, API_INVALID_ARGUMENT, "spec.slug_commit: 'abc\\x7f' has a character");
        s.app_id = (char *)"my app";
        expect(&s, API_INVALID_ARGUMENT, "spec.app_id: 'my app' has a character");
        s.app_id = (char *)"";
        s.slug_commit = (char *)"";
        s.slug_description = (char *)"\xff";
        expect(&s, API_INVALID_ARGUMENT, "spec.slug_description: not valid UTF-8");
        s.slug_description = (char *)"";

        /* TERM only with a terminal, and only a terminfo name. */
        s.tty_term = (char *)"xterm-256color";
        expect(&s, API_INVALID_ARGUMENT, "spec.tty_term: only a dyno with a terminal");
        s.type = HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF;
        s.tty = true;
        expect(&s, 0, NULL);
        s.tty_term = (char *)"xterm;rm -rf /";
        expect(&s, API_INVALID_ARGUMENT, "spec.tty_term");

        static const char *const reserved[] = { "HEROKU_DYNO_ID",
                                                "HEROKU_APP_ID",
                                                "HEROKU_APP_NAME",
                                                "HEROKU_RELEASE_VERSION",
                                                "HEROKU_RELEASE_CREATED_AT",
                                                "HEROKU_SLUG_COMMIT",
                                                "HEROKU_SLUG_DESCRIPTION" };
        Hostd__V1__EnvVar e = HOSTD__V1__ENV_VAR__INIT;
        Hostd__V1__EnvVar *env[1] = { &e };
        s = spec_good();
        s.n_env = 1;
        s.env = env;
        e.value = (char *)"x";
        for (size_t i = 0; i < ELEMENTSOF(reserved); i++) {
                e.name = (char *)reserved[i];
                expect(&s, API_INVALID_ARGUMENT, "is set by hostd");
        }
        e.name = (char *)"HEROKU_OTHER";
        expect(&s, 0, NULL);
}

/* spec.log_drains: each URL by its index and reason, at most 8, none twice. */
static void test_drains(void)
{
        char *urls[9] = {
                (char *)"syslog://127.0.0.1:514", (char *)"syslog+tls://logs.example.com:6514",
                (char *)"syslog://[::1]:514",     (char *)"syslog://a.example:1",
                (char *)"syslog://b.example:2",   (char *)"syslog://c.example:3",
                (char *)"syslog://d.example:4",   (char *)"syslog://e.example:5",
                (char *)"syslog://f.example:6",
        };
        Hostd__V1__DynoSpec s = spec_good();
        s.log_drains = urls;
        s.n_log_drains = 8;
        expect(&s, 0, NULL);
        s.n_log_drains = 9;
        expect(&s, API_INVALID_ARGUMENT, "spec.log_drains: 9 drains, over the limit of 8");

        char *bad[] = { (char *)"syslog://127.0.0.1:514", (char *)"tcp://127.0.0.1:514" };
        s.log_drains = bad;
        s.n_log_drains = 2;
        expect(&s, API_INVALID_ARGUMENT,
               "spec.log_drains[1]: 'tcp://127.0.0.1:514': not a syslog:// or syslog+tls:// URL");
        bad[1] = (char *)"syslog://127.0.0.1:514";
        expect(&s, API_INVALID_ARGUMENT, "spec.log_drains[1]: the same URL as spec.log_drains[0]");
        /* A value that is not text is quoted safely in the message. */
        bad[1] = (char *)"syslog://\xff:514";
        expect(&s, API_INVALID_ARGUMENT, "spec.log_drains[1]: 'syslog://\\xff:514'");
}

/* validate_request(): each call's checks, as hostd makes them before it looks for a dyno, an
 * image or a stream. */
static struct manager fake; /* the table's checks read only its config */

/* The check api.c's table gives method, on req. */
static void expect_request(const char *method, const ProtobufCMessage *req, int code,
                           const char *want)
{
        const struct grpc_method *m = NULL;
        for (size_t i = 0; i < api_n_methods; i++)
                if (strcmp(api_methods[i].name, method) == 0)
                        m = &api_methods[i];
        CHECK(m != NULL);
        if (!m)
                return;
        CHECK(m->request == req->descriptor);
        char msg[512] = "";
        int r = m->validate ? (int)m->validate(req, &fake, msg, sizeof msg) : 0;
        CHECK(r == code);
        if (want)
                CHECK(strstr(msg, want) != NULL);
        if (r != code || (want && !strstr(msg, want)))
                fprintf(stderr, "  %s: got %d '%s', want %d '%s'\n", method, r, msg, code,
                        want ? want : "");
}

/* Every method of the service has its row, and the row's types are the proto's. */
static void test_table(void)
{
        const ProtobufCServiceDescriptor *sd = &hostd__v1__hostd__descriptor;
        CHECK(api_n_methods == sd->n_methods);
        for (unsigned i = 0; i < sd->n_methods && i < api_n_methods; i++) {
                const ProtobufCMethodDescriptor *pm = &sd->methods[i];
                const struct grpc_method *m = NULL;
                for (size_t k = 0; k < api_n_methods; k++)
                        if (strcmp(api_methods[k].name, pm->name) == 0)
                                m = &api_methods[k];
                CHECK(m != NULL);
                if (!m) {
                        fprintf(stderr, "  no row for %s\n", pm->name);
                        continue;
                }
                CHECK(m->request == pm->input && m->response == pm->output);
                CHECK(m->handle != NULL);
        }
}

static void test_requests(void)
{
        static char digest[] = "a58f042b6b3d94d52e795ed3aa2bb6883957db58317ff0a046299060e530259b";

        Hostd__V1__StartRequest start = HOSTD__V1__START_REQUEST__INIT;
        expect_request("Start", &start.base, API_INVALID_ARGUMENT, "spec: required");
        Hostd__V1__DynoSpec s = spec_good();
        start.spec = &s;
        expect_request("Start", &start.base, 0, NULL);
        s.id = (char *)"../x";
        expect_request("Start", &start.base, API_INVALID_ARGUMENT, "spec.id");

        Hostd__V1__StopRequest stop = HOSTD__V1__STOP_REQUEST__INIT;
        expect_request("Stop", &stop.base, API_INVALID_ARGUMENT, "id: required");
        stop.id = (char *)"web-1";
        stop.grace_case = HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS;
        stop.grace_seconds = 3601;
        expect_request("Stop", &stop.base, API_INVALID_ARGUMENT,
                       "grace_seconds: 3601 is over 3600");
        stop.grace_seconds = 3600;
        expect_request("Stop", &stop.base, 0, NULL);

        Hostd__V1__RestartRequest restart = HOSTD__V1__RESTART_REQUEST__INIT;
        restart.id = (char *)"a b";
        expect_request("Restart", &restart.base, API_INVALID_ARGUMENT, "id: 'a b'");

        Hostd__V1__GetDynoRequest get = HOSTD__V1__GET_DYNO_REQUEST__INIT;
        expect_request("GetDyno", &get.base, API_INVALID_ARGUMENT, "id: required");
        Hostd__V1__LogsRequest logs = HOSTD__V1__LOGS_REQUEST__INIT;
        logs.id = (char *)"web-1";
        expect_request("Logs", &logs.base, 0, NULL);

        Hostd__V1__ExecRequest ex = HOSTD__V1__EXEC_REQUEST__INIT;
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT, "kind: neither start nor input");
        /* The validator sees every message of the stream: input is valid (the handler refuses
         * it as the first one; test_exec.py), a start too (exec.c refuses it as a later one). */
        Hostd__V1__StreamInput in = HOSTD__V1__STREAM_INPUT__INIT;
        ex.kind_case = HOSTD__V1__EXEC_REQUEST__KIND_INPUT;
        ex.input = &in;
        expect_request("Exec", &ex.base, 0, NULL);
        in.rows = 10001;
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT, "input.columns, rows: 0x10001");
        in.rows = 0;
        Hostd__V1__ExecStart es = HOSTD__V1__EXEC_START__INIT;
        ex.kind_case = HOSTD__V1__EXEC_REQUEST__KIND_START;
        ex.start = &es;
        es.id = (char *)"web-1";
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT, "a command is required");
        char *argv[] = { (char *)"ls", (char *)"\xff" };
        es.argv = argv;
        es.n_argv = 2;
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT, "start.argv[1]: not valid UTF-8");
        es.n_argv = 1;
        es.tty_rows = 10001;
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT, "is over 10000");
        es.tty_rows = 24;
        expect_request("Exec", &ex.base, 0, NULL);
        es.term = (char *)"screen";
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT,
                       "start.term: only a process with a terminal");
        es.tty = true;
        expect_request("Exec", &ex.base, 0, NULL);
        es.term = (char *)"screen\n";
        expect_request("Exec", &ex.base, API_INVALID_ARGUMENT, "start.term");

        Hostd__V1__AttachRequest at = HOSTD__V1__ATTACH_REQUEST__INIT;
        expect_request("Attach", &at.base, API_INVALID_ARGUMENT, "kind: neither start nor input");
        at.kind_case = HOSTD__V1__ATTACH_REQUEST__KIND_INPUT;
        at.input = &in;
        expect_request("Attach", &at.base, 0, NULL);
        Hostd__V1__AttachStart ats = HOSTD__V1__ATTACH_START__INIT;
        at.kind_case = HOSTD__V1__ATTACH_REQUEST__KIND_START;
        at.start = &ats;
        ats.id = (char *)"a b";
        expect_request("Attach", &at.base, API_INVALID_ARGUMENT, "start.id");

        Hostd__V1__ImportImageRequest imp = HOSTD__V1__IMPORT_IMAGE_REQUEST__INIT;
        imp.source = (char *)"ftp://x";
        expect_request("ImportImage", &imp.base, API_INVALID_ARGUMENT, "source");
        imp.source = (char *)"/srv/stack.tar.gz";
        imp.sha256 = (char *)"\xff";
        /* The bad bytes are quoted, so the reply stays valid UTF-8. */
        expect_request("ImportImage", &imp.base, API_INVALID_ARGUMENT, "'\\xff' is not a sha256");
        imp.sha256 = digest;
        expect_request("ImportImage", &imp.base, API_INVALID_ARGUMENT, "kind");
        imp.kind = HOSTD__V1__IMAGE_KIND__IMAGE_KIND_SLUG;
        expect_request("ImportImage", &imp.base, 0, NULL);

        Hostd__V1__RemoveImageRequest rm = HOSTD__V1__REMOVE_IMAGE_REQUEST__INIT;
        expect_request("RemoveImage", &rm.base, API_INVALID_ARGUMENT, "digest");

        Hostd__V1__DrainRequest dr = HOSTD__V1__DRAIN_REQUEST__INIT;
        expect_request("Drain", &dr.base, 0, NULL); /* no deadline */
        dr.deadline_case = HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS;
        dr.deadline_seconds = 0;
        expect_request("Drain", &dr.base, API_INVALID_ARGUMENT,
                       "deadline_seconds: 0 is not 1..604800");
        dr.deadline_seconds = 604800;
        expect_request("Drain", &dr.base, 0, NULL);

        Hostd__V1__SubscribeMetricsRequest sm = HOSTD__V1__SUBSCRIBE_METRICS_REQUEST__INIT;
        expect_request("SubscribeMetrics", &sm.base, 0, NULL);
        sm.interval_seconds = 3601;
        expect_request("SubscribeMetrics", &sm.base, API_INVALID_ARGUMENT,
                       "interval_seconds: 3601 is out of range");
}

int main(void)
{
        if (config_init_defaults(&cfg) < 0)
                return 1;
        if (!mkdtemp(stack)) {
                perror("mkdtemp");
                return 1;
        }
        test_ids();
        test_text();
        test_spec();
        test_metadata();
        test_drains();
        fake.config = &cfg;
        test_table();
        test_requests();
        rmdir(stack);
        config_free(&cfg);
        return check_report();
}
