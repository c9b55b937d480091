#include "validate.h"

#include <inttypes.h>
#include <sys/stat.h>

#include "syslog-drain.h"
#include "images.h"
#include "util.h"
#include "api-code.h"

/* A value from the wire, quoted safely: a reply must stay valid UTF-8 whatever came in. */
#define ESC(v) escape_value((v), 80, (char[400]){ 0 }, 400)

#define FAIL(code, ...)                                                                            \
        ({                                                                                         \
                snprintf(msg, len, __VA_ARGS__);                                                   \
                (code);                                                                            \
        })

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

enum api_code validate_id(const char *field, const char *id, char *msg, size_t len)
{
        if (!id || !*id)
                return FAIL(API_INVALID_ARGUMENT, "%s: required", field);
        if (!dyno_id_valid(id))
                return FAIL(API_INVALID_ARGUMENT,
                            "%s: '%s' is not a valid dyno id (1 to 63 of A-Z a-z 0-9 . _ -, "
                            "starting with a letter or digit)",
                            field, ESC(id));
        return 0;
}

static enum api_code validate_label(const char *field, const char *v, char *msg, size_t len)
{
        size_t n = strlen(v);
        if (n > 63)
                return FAIL(API_INVALID_ARGUMENT, "%s: longer than 63 bytes", field);
        for (size_t i = 0; i < n; i++)
                if (!name_char(v[i]))
                        return FAIL(API_INVALID_ARGUMENT,
                                    "%s: '%s' has a character outside A-Z a-z 0-9 . _ -", field,
                                    ESC(v));
        return 0;
}

static bool env_name_valid(const char *n)
{
        if (!((*n >= 'A' && *n <= 'Z') || (*n >= 'a' && *n <= 'z') || *n == '_'))
                return false;
        for (const char *p = n + 1; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;
        return strlen(n) <= 255;
}

/* A lower layer: overlayfs takes it inside a mount option string, where ',' ':' and '\' are
 * separators or escapes. */
static enum api_code validate_layer(const char *field, const char *path, char *msg, size_t len)
{
        if (!utf8_valid(path))
                return FAIL(API_INVALID_ARGUMENT, "%s: not valid UTF-8", field);
        if (path[0] != '/')
                return FAIL(API_INVALID_ARGUMENT, "%s: '%s' is not an absolute path", field,
                            ESC(path));
        if (strlen(path) > 1024)
                return FAIL(API_INVALID_ARGUMENT, "%s: longer than 1024 bytes", field);
        if (strpbrk(path, ",:\\\n"))
                return FAIL(API_INVALID_ARGUMENT,
                            "%s: '%s' holds a character overlayfs cannot take (, : \\ newline)",
                            field, ESC(path));
        struct stat st;
        if (stat(path, &st) < 0)
                return FAIL(API_INVALID_ARGUMENT, "%s: '%s': %s", field, ESC(path),
                            strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return FAIL(API_INVALID_ARGUMENT, "%s: '%s' is not a folder", field, ESC(path));
        return 0;
}

/* Where an image may be fetched from: http(s), file:// or an absolute path on the host. */
enum api_code validate_image_source(const char *field, const char *url, char *msg, size_t len)
{
        if (!*url)
                return FAIL(API_INVALID_ARGUMENT, "%s: required", field);
        if (strlen(url) > 4096)
                return FAIL(API_INVALID_ARGUMENT, "%s: longer than 4096 bytes", field);
        if (!utf8_valid(url))
                return FAIL(API_INVALID_ARGUMENT, "%s: not valid UTF-8", field);
        for (const char *p = url; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return FAIL(API_INVALID_ARGUMENT, "%s: holds a control character", field);
        if (url[0] == '/' || startswith(url, "file:///") || startswith(url, "http://") ||
            startswith(url, "https://"))
                return 0;
        return FAIL(API_INVALID_ARGUMENT,
                    "%s: '%s' is not an http://, https:// or file:// URL nor an absolute path",
                    field, ESC(url));
}

static enum api_code validate_layer_source(const char *what, const char *path, const char *digest,
                                           const char *url, bool required, char *msg, size_t len)
{
        char field[32];
        enum api_code r;
        if (*path && *digest)
                return FAIL(API_INVALID_ARGUMENT,
                            "spec.%s_path and spec.%s_digest: give one, not both", what, what);
        if (*url && !*digest)
                return FAIL(API_INVALID_ARGUMENT, "spec.%s_url: needs spec.%s_digest", what, what);
        if (*digest) {
                if (!image_digest_valid(digest))
                        return FAIL(
                                API_INVALID_ARGUMENT,
                                "spec.%s_digest: '%s' is not a sha256 (64 lower-case hex digits)",
                                what, ESC(digest));
                snprintf(field, sizeof field, "spec.%s_url", what);
                if (*url && (r = validate_image_source(field, url, msg, len)))
                        return r;
                return 0;
        }
        if (!*path)
                return required ? FAIL(API_INVALID_ARGUMENT,
                                       "spec.%s_digest or spec.%s_path: required", what, what) :
                                  0;
        snprintf(field, sizeof field, "spec.%s_path", what);
        return validate_layer(field, path, msg, len);
}

/* Set by hostd: from the spec's own fields, or for each run. */
static const char *const reserved_env[] = {
        "PORT",
        "DYNO",
        "HOME",
        "HEROKU_DYNO_ID",
        "HEROKU_APP_ID",
        "HEROKU_APP_NAME",
        "HEROKU_RELEASE_VERSION",
        "HEROKU_RELEASE_CREATED_AT",
        "HEROKU_SLUG_COMMIT",
        "HEROKU_SLUG_DESCRIPTION",
};

/* A metadata string: UTF-8 without control characters, at most max bytes. */
static enum api_code validate_text(const char *field, const char *v, size_t max, char *msg,
                                   size_t len)
{
        if (strlen(v) > max)
                return FAIL(API_INVALID_ARGUMENT, "%s: longer than %zu bytes", field, max);
        if (!utf8_valid(v))
                return FAIL(API_INVALID_ARGUMENT, "%s: not valid UTF-8", field);
        for (const char *p = v; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return FAIL(API_INVALID_ARGUMENT, "%s: holds a control character", field);
        return 0;
}

/* An id that goes into log lines as a word (runtime-metrics' dyno=heroku.<app id>.<uuid>): a
 * UUID, a number, a commit's hex. */
static enum api_code validate_token(const char *field, const char *v, char *msg, size_t len)
{
        if (strlen(v) > 64)
                return FAIL(API_INVALID_ARGUMENT, "%s: longer than 64 bytes", field);
        for (const char *p = v; *p; p++)
                if (!name_char(*p))
                        return FAIL(API_INVALID_ARGUMENT,
                                    "%s: '%s' has a character outside A-Z a-z 0-9 . _ -", field,
                                    ESC(v));
        return 0;
}

/* "2026-12-07T19:00:00Z", with optional fractions of a second and an offset instead of Z. */
static bool rfc3339_valid(const char *v)
{
        static const char shape[] = "dddd-dd-ddTdd:dd:dd";
        size_t i = 0;
        for (; shape[i]; i++) {
                char c = v[i];
                if (shape[i] == 'd' ? !(c >= '0' && c <= '9') :
                    shape[i] == 'T' ? !(c == 'T' || c == 't') :
                                      c != shape[i])
                        return false;
        }
        const char *p = v + i;
        if (*p == '.') {
                p++;
                if (!(*p >= '0' && *p <= '9'))
                        return false;
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        if ((*p == 'Z' || *p == 'z') && !p[1])
                return true;
        return (*p == '+' || *p == '-') && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
               p[2] <= '9' && p[3] == ':' && p[4] >= '0' && p[4] <= '9' && p[5] >= '0' &&
               p[5] <= '9' && !p[6];
}

/* $TERM of a client's terminal: a terminfo name. */
static enum api_code validate_term(const char *field, const char *v, char *msg, size_t len)
{
        if (!*v)
                return 0;
        if (strlen(v) > 63)
                return FAIL(API_INVALID_ARGUMENT, "%s: longer than 63 bytes", field);
        for (const char *p = v; *p; p++)
                if (!name_char(*p) && *p != '+')
                        return FAIL(API_INVALID_ARGUMENT,
                                    "%s: '%s' has a character outside A-Z a-z 0-9 . _ - +", field,
                                    ESC(v));
        return 0;
}

enum api_code validate_spec(const Hostd__V1__DynoSpec *s, const struct config *c,
                            const struct size_def **ret_size, char *msg, size_t len)
{
        enum api_code r;
        if (!s)
                return FAIL(API_INVALID_ARGUMENT, "spec: required");
        if ((r = validate_id("spec.id", s->id, msg, len)))
                return r;
        if ((r = validate_label("spec.name", s->name, msg, len)) ||
            (r = validate_label("spec.app", s->app, msg, len)))
                return r;

        switch (s->type) {
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_UNSPECIFIED:
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB:
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WORKER:
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF: break;
        default: return FAIL(API_INVALID_ARGUMENT, "spec.type: unknown type %d", (int)s->type);
        }

        if ((r = validate_text("spec.release", s->release, 256, msg, len)) ||
            (r = validate_token("spec.app_id", s->app_id, msg, len)) ||
            (r = validate_token("spec.slug_commit", s->slug_commit, msg, len)) ||
            (r = validate_text("spec.slug_description", s->slug_description, 256, msg, len)))
                return r;
        if (*s->release_created_at && !rfc3339_valid(s->release_created_at))
                return FAIL(API_INVALID_ARGUMENT,
                            "spec.release_created_at: '%s' is not an RFC 3339 time "
                            "(2026-12-07T19:00:00Z)",
                            ESC(s->release_created_at));

        const char *size_name = *s->size ? s->size : c->default_size;
        const struct size_def *size = config_find_size(c, size_name);
        if (!size) {
                char known[512] = "";
                size_t k = 0;
                for (size_t i = 0; i < c->n_sizes && k < sizeof known; i++)
                        k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "",
                                              c->sizes[i].name);
                return FAIL(API_INVALID_ARGUMENT,
                            "spec.size: unknown size '%s' (this host has: %s)", ESC(size_name),
                            known);
        }

        size_t cmdlen = strlen(s->command);
        if (cmdlen == 0)
                return FAIL(API_INVALID_ARGUMENT, "spec.command: required");
        if (!utf8_valid(s->command))
                return FAIL(API_INVALID_ARGUMENT, "spec.command: not valid UTF-8");
        if (cmdlen > c->max_command)
                return FAIL(API_INVALID_ARGUMENT, "spec.command: %zu bytes, over the limit of %u",
                            cmdlen, c->max_command);

        if (s->n_env > c->max_env)
                return FAIL(API_INVALID_ARGUMENT, "spec.env: %zu variables, over the limit of %u",
                            s->n_env, c->max_env);
        size_t env_bytes = 0;
        for (size_t i = 0; i < s->n_env; i++) {
                const Hostd__V1__EnvVar *e = s->env[i];
                if (!env_name_valid(e->name))
                        return FAIL(API_INVALID_ARGUMENT,
                                    "spec.env[%zu].name: '%s' is not a valid variable name", i,
                                    ESC(e->name));
                for (size_t j = 0; j < ELEMENTSOF(reserved_env); j++)
                        if (strcmp(e->name, reserved_env[j]) == 0)
                                return FAIL(API_INVALID_ARGUMENT,
                                            "spec.env[%zu].name: %s is set by hostd", i, e->name);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(e->name, s->env[j]->name) == 0)
                                return FAIL(API_INVALID_ARGUMENT,
                                            "spec.env[%zu].name: %s given twice", i, e->name);
                if (!utf8_valid(e->value))
                        return FAIL(API_INVALID_ARGUMENT,
                                    "spec.env[%zu].value (%s): not valid UTF-8", i, e->name);
                env_bytes += strlen(e->name) + strlen(e->value) + 2;
        }
        if (env_bytes > c->max_env_bytes)
                return FAIL(API_INVALID_ARGUMENT, "spec.env: %zu bytes, over the limit of %u",
                            env_bytes, c->max_env_bytes);

        if (s->port > 65535)
                return FAIL(API_INVALID_ARGUMENT, "spec.port: %u is not a port (1-65535)", s->port);
        if (s->type == HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB && s->port == 0)
                return FAIL(API_INVALID_ARGUMENT, "spec.port: required for a web dyno");

        if (s->grace_case == HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS && s->grace_seconds > 3600)
                return FAIL(API_INVALID_ARGUMENT, "spec.grace_seconds: %u is over 3600",
                            s->grace_seconds);
        if (s->boot_case == HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS &&
            (s->boot_timeout_seconds == 0 || s->boot_timeout_seconds > 3600))
                return FAIL(API_INVALID_ARGUMENT, "spec.boot_timeout_seconds: %u is not in 1..3600",
                            s->boot_timeout_seconds);

        /* Fields that later work implements: refused by name rather than ignored. */
        if (s->tty && s->type != HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF)
                return FAIL(API_INVALID_ARGUMENT, "spec.tty: only a one-off dyno has a terminal");
        if (s->tty_columns > 10000 || s->tty_rows > 10000)
                return FAIL(API_INVALID_ARGUMENT, "spec.tty_columns, tty_rows: %ux%u is over 10000",
                            s->tty_columns, s->tty_rows);
        if (*s->tty_term && !s->tty)
                return FAIL(API_INVALID_ARGUMENT,
                            "spec.tty_term: only a dyno with a terminal (spec.tty) has one");
        if ((r = validate_term("spec.tty_term", s->tty_term, msg, len)))
                return r;
        if (s->n_log_drains > DRAIN_MAX_PER_DYNO)
                return FAIL(API_INVALID_ARGUMENT,
                            "spec.log_drains: %zu drains, over the limit of %d", s->n_log_drains,
                            DRAIN_MAX_PER_DYNO);
        for (size_t i = 0; i < s->n_log_drains; i++) {
                struct drain_url u;
                char why[256];
                if (drain_url_parse(s->log_drains[i], &u, why, sizeof why) < 0)
                        return FAIL(API_INVALID_ARGUMENT, "spec.log_drains[%zu]: '%s': %s", i,
                                    ESC(s->log_drains[i]), why);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(s->log_drains[i], s->log_drains[j]) == 0)
                                return FAIL(API_INVALID_ARGUMENT,
                                            "spec.log_drains[%zu]: the same URL as "
                                            "spec.log_drains[%zu]",
                                            i, j);
        }

        /* The layers: a stack by image id (and where to fetch it) or by folder; a slug the
         * same way, or none. */
        if ((r = validate_layer_source("stack", s->stack_path, s->stack_digest, s->stack_url, true,
                                       msg, len)) ||
            (r = validate_layer_source("slug", s->slug_path, s->slug_digest, s->slug_url, false,
                                       msg, len)))
                return r;

        if (ret_size)
                *ret_size = size;
        return 0;
}

enum api_code validate_digest(const char *field, const char *digest, char *msg, size_t len)
{
        if (image_digest_valid(digest))
                return 0;
        return FAIL(API_INVALID_ARGUMENT, "%s: '%s' is not a sha256 (64 lower-case hex digits)",
                    field, ESC(digest));
}

enum api_code validate_grace(bool grace_set, uint32_t grace, char *msg, size_t len)
{
        if (grace_set && grace > 3600)
                return FAIL(API_INVALID_ARGUMENT, "grace_seconds: %u is over 3600", grace);
        return 0;
}

enum api_code validate_exec(const Hostd__V1__ExecStart *req, const struct config *c, char *msg,
                            size_t len)
{
        enum api_code code = validate_id("start.id", req->id, msg, len);
        if (code)
                return code;
        if (req->n_argv == 0 || !*req->argv[0])
                return FAIL(API_INVALID_ARGUMENT, "start.argv: a command is required");
        if (req->n_argv > EXEC_MAX_ARGS)
                return FAIL(API_INVALID_ARGUMENT, "start.argv: %zu arguments, more than %d",
                            req->n_argv, EXEC_MAX_ARGS);
        size_t total = 0;
        for (size_t i = 0; i < req->n_argv; i++) {
                if (!utf8_valid(req->argv[i]))
                        return FAIL(API_INVALID_ARGUMENT, "start.argv[%zu]: not valid UTF-8", i);
                total += strlen(req->argv[i]) + 1;
        }
        if (total > c->max_command)
                return FAIL(API_INVALID_ARGUMENT,
                            "start.argv: %zu bytes, more than %" PRIu32 " (max-command)", total,
                            c->max_command);
        if (req->tty_columns > 10000 || req->tty_rows > 10000)
                return FAIL(API_INVALID_ARGUMENT,
                            "start.tty_columns, tty_rows: %" PRIu32 "x%" PRIu32 " is over 10000",
                            req->tty_columns, req->tty_rows);
        if (*req->term && !req->tty)
                return FAIL(API_INVALID_ARGUMENT,
                            "start.term: only a process with a terminal (start.tty) has one");
        return validate_term("start.term", req->term, msg, len);
}

/* ---- one check per method of hostd.v1.Hostd (api.c's table) ---- */

enum api_code validate_start(const Hostd__V1__StartRequest *req, const struct config *c, char *msg,
                             size_t len)
{
        if (!req->spec)
                return FAIL(API_INVALID_ARGUMENT, "spec: required");
        return validate_spec(req->spec, c, NULL, msg, len);
}

enum api_code validate_stop(const Hostd__V1__StopRequest *req, char *msg, size_t len)
{
        enum api_code code = validate_id("id", req->id, msg, len);
        if (code)
                return code;
        return validate_grace(req->grace_case == HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS,
                              req->grace_seconds, msg, len);
}

enum api_code validate_restart(const Hostd__V1__RestartRequest *req, char *msg, size_t len)
{
        enum api_code code = validate_id("id", req->id, msg, len);
        if (code)
                return code;
        return validate_grace(req->grace_case == HOSTD__V1__RESTART_REQUEST__GRACE_GRACE_SECONDS,
                              req->grace_seconds, msg, len);
}

enum api_code validate_drain(const Hostd__V1__DrainRequest *req, char *msg, size_t len)
{
        if (req->deadline_case == HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS &&
            (req->deadline_seconds == 0 || req->deadline_seconds > DRAIN_DEADLINE_MAX))
                return FAIL(API_INVALID_ARGUMENT, "deadline_seconds: %" PRIu32 " is not 1..%d",
                            req->deadline_seconds, DRAIN_DEADLINE_MAX);
        return 0;
}

enum api_code validate_subscribe_metrics(const Hostd__V1__SubscribeMetricsRequest *req, char *msg,
                                         size_t len)
{
        if (req->interval_seconds > METRICS_INTERVAL_MAX)
                return FAIL(API_INVALID_ARGUMENT,
                            "interval_seconds: %" PRIu32 " is out of range (1..%d; 0 or unset: %d)",
                            req->interval_seconds, METRICS_INTERVAL_MAX, METRICS_INTERVAL_DEFAULT);
        return 0;
}

/* A later message of an Exec or Attach stream. */
static enum api_code validate_stream_input(const Hostd__V1__StreamInput *in, char *msg, size_t len)
{
        if (in->columns > 10000 || in->rows > 10000)
                return FAIL(API_INVALID_ARGUMENT,
                            "input.columns, rows: %" PRIu32 "x%" PRIu32 " is over 10000",
                            in->columns, in->rows);
        return 0;
}

/* Every message of the stream comes here, the first (start) and the later ones (input): which
 * kind may come when is exec.c's to say (handle_exec, on_client_input). */
enum api_code validate_exec_request(const Hostd__V1__ExecRequest *req, const struct config *c,
                                    char *msg, size_t len)
{
        if (req->kind_case == HOSTD__V1__EXEC_REQUEST__KIND_START)
                return validate_exec(req->start, c, msg, len);
        if (req->kind_case == HOSTD__V1__EXEC_REQUEST__KIND_INPUT)
                return validate_stream_input(req->input, msg, len);
        return FAIL(API_INVALID_ARGUMENT, "kind: neither start nor input");
}

enum api_code validate_attach_request(const Hostd__V1__AttachRequest *req, char *msg, size_t len)
{
        if (req->kind_case == HOSTD__V1__ATTACH_REQUEST__KIND_START)
                return validate_id("start.id", req->start->id, msg, len);
        if (req->kind_case == HOSTD__V1__ATTACH_REQUEST__KIND_INPUT)
                return validate_stream_input(req->input, msg, len);
        return FAIL(API_INVALID_ARGUMENT, "kind: neither start nor input");
}

enum api_code validate_import_image(const Hostd__V1__ImportImageRequest *req, char *msg, size_t len)
{
        enum api_code code = validate_image_source("source", req->source, msg, len);
        if (code)
                return code;
        if ((code = validate_digest("sha256", req->sha256, msg, len)))
                return code;
        if (req->kind != HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK &&
            req->kind != HOSTD__V1__IMAGE_KIND__IMAGE_KIND_SLUG)
                return FAIL(API_INVALID_ARGUMENT,
                            "kind: IMAGE_KIND_STACK or IMAGE_KIND_SLUG, not %d", (int)req->kind);
        return 0;
}
