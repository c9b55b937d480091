/* hostctl start --spec: the JSON spec parser. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../hostctl/spec.h"
#include "check.h"

static Hostd__V1__DynoSpec *parse_ok(const char *json)
{
        Hostd__V1__DynoSpec *s = NULL;
        char err[512] = "";
        int r = spec_parse_json(json, strlen(json), &s, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "unexpected error %d (%s) for: %s\n", r, err, json);
                n_failed++;
                return NULL;
        }
        return s;
}

/* The parse fails with -EINVAL and a message that contains want. */
static void parse_fails_len(const char *json, size_t len, const char *want, int line)
{
        Hostd__V1__DynoSpec *s = NULL;
        char err[512] = "";
        int r = spec_parse_json(json, len, &s, err, sizeof err);
        if (r != -EINVAL || s) {
                fprintf(stderr, "%s:%d: expected -EINVAL, got %d for: %s\n", __FILE__, line, r,
                        json);
                n_failed++;
                spec_free(s);
                return;
        }
        if (!strstr(err, want)) {
                fprintf(stderr, "%s:%d: error '%s' does not contain '%s'\n", __FILE__, line, err,
                        want);
                n_failed++;
        }
}
#define parse_fails(json, want) parse_fails_len(json, strlen(json), want, __LINE__)

static const char *env_value(const Hostd__V1__DynoSpec *s, const char *name)
{
        for (size_t i = 0; i < s->n_env; i++)
                if (strcmp(s->env[i]->name, name) == 0)
                        return s->env[i]->value;
        return NULL;
}

static void test_full_spec(void)
{
        Hostd__V1__DynoSpec *s = parse_ok(
                "{\n"
                "  \"id\": \"web-1\", \"name\": \"web.1\", \"app\": \"shop\", \"type\": \"web\",\n"
                "  \"size\": \"standard-2x\", \"command\": \"bundle exec puma -C config/puma.rb\",\n"
                "  \"env\": {\"RACK_ENV\": \"production\", \"EMPTY\": \"\"},\n"
                "  \"port\": 5000, \"stack_path\": \"/stacks/heroku-22\", \"slug_path\": \"/slugs/s1\",\n"
                "  \"stack_digest\": \"aa\", \"slug_digest\": \"bb\",\n"
                "  \"stack_url\": \"https://x/stack.tgz\", \"slug_url\": \"https://x/slug.tgz\",\n"
                "  \"grace_seconds\": 20, \"boot_timeout_seconds\": 90, \"release\": \"v42\",\n"
                "  \"tty\": true, \"tty_columns\": 120, \"tty_rows\": 40, \"runtime_metrics\": true,\n"
                "  \"log_drains\": [\"syslog+tls://a:6514\", \"syslog://b:514\"]\n"
                "}\n");
        if (!s)
                return;
        CHECK_STR(s->id, "web-1");
        CHECK_STR(s->name, "web.1");
        CHECK_STR(s->app, "shop");
        CHECK(s->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB);
        CHECK_STR(s->size, "standard-2x");
        CHECK_STR(s->command, "bundle exec puma -C config/puma.rb");
        CHECK(s->n_env == 2);
        CHECK_STR(env_value(s, "RACK_ENV"), "production");
        CHECK_STR(env_value(s, "EMPTY"), "");
        CHECK(s->port == 5000);
        CHECK_STR(s->stack_path, "/stacks/heroku-22");
        CHECK_STR(s->slug_path, "/slugs/s1");
        CHECK_STR(s->stack_digest, "aa");
        CHECK_STR(s->slug_digest, "bb");
        CHECK_STR(s->stack_url, "https://x/stack.tgz");
        CHECK_STR(s->slug_url, "https://x/slug.tgz");
        CHECK(s->grace_case == HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS && s->grace_seconds == 20);
        CHECK(s->boot_case == HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS &&
              s->boot_timeout_seconds == 90);
        CHECK_STR(s->release, "v42");
        CHECK(s->tty && s->tty_columns == 120 && s->tty_rows == 40);
        CHECK(s->runtime_metrics);
        CHECK(s->n_log_drains == 2);
        if (s->n_log_drains == 2) {
                CHECK_STR(s->log_drains[0], "syslog+tls://a:6514");
                CHECK_STR(s->log_drains[1], "syslog://b:514");
        }

        /* It packs: what hostctl sends is a well-formed message. */
        size_t n = hostd__v1__dyno_spec__get_packed_size(s);
        uint8_t *buf = malloc(n);
        CHECK(buf);
        if (buf) {
                hostd__v1__dyno_spec__pack(s, buf);
                Hostd__V1__DynoSpec *back = hostd__v1__dyno_spec__unpack(NULL, n, buf);
                CHECK(back && strcmp(back->command, s->command) == 0 && back->n_env == 2 &&
                      back->grace_seconds == 20);
                if (back)
                        hostd__v1__dyno_spec__free_unpacked(back, NULL);
                free(buf);
        }
        spec_free(s);
}

static void test_defaults_and_null(void)
{
        Hostd__V1__DynoSpec *s = parse_ok("{}");
        if (s) {
                CHECK_STR(s->id, "");
                CHECK(s->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_UNSPECIFIED);
                CHECK(s->grace_case == HOSTD__V1__DYNO_SPEC__GRACE__NOT_SET);
                CHECK(s->boot_case == HOSTD__V1__DYNO_SPEC__BOOT__NOT_SET);
                CHECK(s->n_env == 0 && s->n_log_drains == 0);
                spec_free(s);
        }
        /* null is "not given": grace stays unset, so hostd's default applies. */
        s = parse_ok("{\"id\": \"a\", \"grace_seconds\": null, \"env\": null, \"command\": null}");
        if (s) {
                CHECK(s->grace_case == HOSTD__V1__DYNO_SPEC__GRACE__NOT_SET);
                CHECK_STR(s->command, "");
                spec_free(s);
        }
        /* grace 0 is a value (kill at once), not "unset". */
        s = parse_ok("{\"grace_seconds\": 0, \"port\": 65535}");
        if (s) {
                CHECK(s->grace_case == HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS &&
                      s->grace_seconds == 0);
                CHECK(s->port == 65535);
                spec_free(s);
        }
        /* A whole number written as a float is that number. */
        s = parse_ok("{\"grace_seconds\": 30.0, \"port\": 5e3}");
        if (s) {
                CHECK(s->grace_seconds == 30 && s->port == 5000);
                spec_free(s);
        }
}

static void test_env_forms(void)
{
        Hostd__V1__DynoSpec *s = parse_ok(
                "{\"env\": [{\"name\": \"A\", \"value\": \"1\"}, {\"value\": \"x=y\", \"name\": \"B\"},"
                " {\"name\": \"C\"}]}");
        if (s) {
                CHECK(s->n_env == 3);
                CHECK_STR(env_value(s, "A"), "1");
                CHECK_STR(env_value(s, "B"), "x=y");
                CHECK_STR(env_value(s, "C"), "");
                /* Order is kept: the list's order is what hostd gets. */
                if (s->n_env == 3) {
                        CHECK_STR(s->env[0]->name, "A");
                        CHECK_STR(s->env[2]->name, "C");
                }
                spec_free(s);
        }
        s = parse_ok("{\"env\": {\"A\": \"1\", \"B\": \"\\u00e9t\\u00e9\"}}");
        if (s) {
                CHECK(s->n_env == 2);
                CHECK_STR(env_value(s, "A"), "1");
                CHECK_STR(env_value(s, "B"), "\xc3\xa9t\xc3\xa9");
                spec_free(s);
        }
        s = parse_ok("{\"env\": {}}");
        if (s) {
                CHECK(s->n_env == 0);
                spec_free(s);
        }

        parse_fails("{\"env\": \"A=1\"}",
                    "key 'env': expected an object or an array, not a string");
        parse_fails("{\"env\": {\"A\": 1}}", "key 'env.A': expected a string, not a number");
        parse_fails("{\"env\": {\"\": \"x\"}}", "empty variable name");
        parse_fails("{\"env\": {\"A=B\": \"x\"}}", "contains '='");
        parse_fails("{\"env\": [\"A=1\"]}", "key 'env[0]': expected an object");
        parse_fails("{\"env\": [{\"name\": \"A\", \"val\": \"1\"}]}",
                    "key 'env[0].val': unknown key");
        parse_fails("{\"env\": [{\"value\": \"1\"}]}", "key 'env[0].name': missing");
        parse_fails("{\"env\": [{\"name\": 5}]}",
                    "key 'env[0].name': expected a string, not a number");
        parse_fails("{\"env\": [{\"name\": \"A\", \"value\": true}]}",
                    "key 'env[0].value': expected a string, not a boolean");
        parse_fails("{\"env\": [{\"name\": \"A\"}, {\"name\": \"A\", \"value\": \"2\"}]}",
                    "key 'env[1].name': variable 'A' is given twice");
        parse_fails("{\"env\": [{\"name\": \"\"}]}", "key 'env[0].name': empty variable name");
}

static void test_unknown_and_wrong_types(void)
{
        parse_fails("{\"id\": \"a\", \"grace\": 5}", "key 'grace': unknown key");
        parse_fails("{\"Command\": \"x\"}", "key 'Command': unknown key");
        parse_fails("{\"port\": \"5000\"}", "key 'port': expected a number, not a string");
        parse_fails("{\"id\": 7}", "key 'id': expected a string, not a number");
        parse_fails("{\"command\": [\"sh\", \"-c\"]}",
                    "key 'command': expected a string, not an array");
        parse_fails("{\"tty\": 1}", "key 'tty': expected true or false, not a number");
        parse_fails("{\"runtime_metrics\": \"yes\"}",
                    "key 'runtime_metrics': expected true or false");
        parse_fails("{\"log_drains\": \"syslog://a\"}",
                    "key 'log_drains': expected an array of strings");
        parse_fails("{\"log_drains\": [\"syslog://a\", 3]}",
                    "key 'log_drains[1]': expected a string, not a number");
        parse_fails("{\"id\": \"a\\u0000b\"}", "key 'id': contains a NUL character");
}

static void test_type(void)
{
        static const struct {
                const char *text;
                Hostd__V1__DynoType want;
        } ok[] = {
                { "web", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB },
                { "WEB", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB },
                { "worker", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WORKER },
                { "one_off", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF },
                { "ONE_OFF", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF },
                { "one-off", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF },
                { "DYNO_TYPE_UNSPECIFIED", HOSTD__V1__DYNO_TYPE__DYNO_TYPE_UNSPECIFIED },
        };
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                char json[128];
                snprintf(json, sizeof json, "{\"type\": \"%s\"}", ok[i].text);
                Hostd__V1__DynoSpec *s = parse_ok(json);
                if (s) {
                        CHECK(s->type == ok[i].want);
                        spec_free(s);
                }
        }
        parse_fails("{\"type\": \"daemon\"}",
                    "key 'type': unknown dyno type 'daemon' (expected web, worker or one_off)");
        parse_fails("{\"type\": \"\"}", "key 'type': unknown dyno type ''");
        parse_fails("{\"type\": 1}", "key 'type': expected a string");

        Hostd__V1__DynoType t;
        CHECK(spec_parse_type("one-off", &t) == 0 && t == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF);
        CHECK(spec_parse_type("web ", &t) == -EINVAL);
        CHECK_STR(spec_type_name(HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF), "one_off");
        CHECK(spec_type_name((Hostd__V1__DynoType)42) == NULL);
}

static void test_ranges(void)
{
        parse_fails("{\"port\": 65536}", "key 'port': 65536 is out of range (0..65535)");
        parse_fails("{\"port\": -1}", "key 'port': -1 is out of range (0..65535)");
        parse_fails("{\"tty_columns\": 70000}",
                    "key 'tty_columns': 70000 is out of range (0..65535)");
        parse_fails("{\"grace_seconds\": 4294967296}",
                    "key 'grace_seconds': 4294967296 is out of range (0..4294967295)");
        parse_fails("{\"boot_timeout_seconds\": -5}",
                    "key 'boot_timeout_seconds': -5 is out of range");
        parse_fails("{\"grace_seconds\": 18446744073709551616}", "key 'grace_seconds':");
        parse_fails("{\"grace_seconds\": 99999999999999999999999}", "key 'grace_seconds':");
        parse_fails("{\"grace_seconds\": 1.5}", "key 'grace_seconds': 1.5 is not a whole number");
        parse_fails("{\"port\": 1e30}", "key 'port':");

        Hostd__V1__DynoSpec *s = parse_ok("{\"grace_seconds\": 4294967295}");
        if (s) {
                CHECK(s->grace_seconds == 4294967295u);
                spec_free(s);
        }
}

static void test_not_an_object(void)
{
        parse_fails("[]", "expected a JSON object, not an array");
        parse_fails("\"web\"", "expected a JSON object, not a string");
        parse_fails("42", "expected a JSON object, not a number");
        parse_fails("null", "expected a JSON object");
        parse_fails("", "invalid JSON");
        parse_fails("   \n", "invalid JSON");
        parse_fails("{\"id\": \"a\"", "unexpected end of input");
        parse_fails("{\"id\": \"a\",}", "invalid JSON at line 1");
        parse_fails("{\n\n  \"id\" \"a\"}", "invalid JSON at line 3, column 8");
        parse_fails("{\"id\": \"a\"} {\"id\": \"b\"}", "unexpected data after the object");
        parse_fails("{\"id\": \"a\xff\"}", "invalid JSON");
        /* A NUL byte inside the given length is not the end of the input. */
        parse_fails_len("{\"id\": \"a\"}\0junk", 16, "unexpected data after the object", __LINE__);

        Hostd__V1__DynoSpec *s = parse_ok("\n  {\"id\": \"a\"}  \n\n");
        if (s) {
                CHECK_STR(s->id, "a");
                spec_free(s);
        }
}

static void test_setters(void)
{
        Hostd__V1__DynoSpec *s = spec_new();
        CHECK(s);
        if (!s)
                return;
        CHECK(spec_set_env(s, "A", "1") == 0);
        CHECK(spec_set_env(s, "B", "2") == 0);
        CHECK(spec_set_env(s, "A", "3") == 0); /* replaces, keeps the place */
        CHECK(s->n_env == 2);
        CHECK_STR(s->env[0]->name, "A");
        CHECK_STR(s->env[0]->value, "3");
        CHECK(spec_set_env(s, "", "x") == -EINVAL);
        CHECK(spec_set_env(s, "X=Y", "x") == -EINVAL);
        CHECK(spec_set_string(&s->id, "one") == 0);
        CHECK(spec_set_string(&s->id, "two") == 0); /* the old value is freed (ASan/valgrind) */
        CHECK_STR(s->id, "two");
        CHECK(spec_add_log_drain(s, "syslog://a") == 0);
        CHECK(s->n_log_drains == 1);
        spec_free(s);
        spec_free(NULL);
}

int main(void)
{
        test_full_spec();
        test_defaults_and_null();
        test_env_forms();
        test_unknown_and_wrong_types();
        test_type();
        test_ranges();
        test_not_an_object();
        test_setters();
        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return 1;
        }
        printf("ok\n");
        return 0;
}
