/* JSON dyno specs for "hostctl start --spec": checked key by key, so that a typo or a wrong
 * type is reported with the key's name instead of being sent to hostd or silently dropped. */
#include "spec.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static void json_putp(struct json_object **o) { json_object_put(*o); }

static void tokener_freep(struct json_tokener **t)
{
        if (*t)
                json_tokener_free(*t);
}

Hostd__V1__DynoSpec *spec_new(void)
{
        Hostd__V1__DynoSpec *s = malloc(sizeof *s);
        if (s)
                hostd__v1__dyno_spec__init(s);
        return s;
}

void spec_free(Hostd__V1__DynoSpec *s)
{
        /* Everything in a spec made here is malloc'ed and the defaults are protobuf-c's own
         * empty string, which free_unpacked knows not to free. */
        if (s)
                hostd__v1__dyno_spec__free_unpacked(s, NULL);
}

int spec_set_string(char **field, const char *value)
{
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        if (*field && *field != protobuf_c_empty_string)
                free(*field);
        *field = v;
        return 0;
}

int spec_set_env(Hostd__V1__DynoSpec *s, const char *name, const char *value)
{
        if (!*name || strchr(name, '='))
                return -EINVAL;

        for (size_t i = 0; i < s->n_env; i++)
                if (strcmp(s->env[i]->name, name) == 0)
                        return spec_set_string(&s->env[i]->value, value);

        Hostd__V1__EnvVar **n = realloc(s->env, (s->n_env + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        s->env = n;

        Hostd__V1__EnvVar *e = malloc(sizeof *e);
        if (!e)
                return -ENOMEM;
        hostd__v1__env_var__init(e);
        if (spec_set_string(&e->name, name) < 0 || spec_set_string(&e->value, value) < 0) {
                hostd__v1__env_var__free_unpacked(e, NULL);
                return -ENOMEM;
        }
        s->env[s->n_env++] = e;
        return 0;
}

int spec_add_log_drain(Hostd__V1__DynoSpec *s, const char *url)
{
        char **n = realloc(s->log_drains, (s->n_log_drains + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        s->log_drains = n;
        char *u = strdup(url);
        if (!u)
                return -ENOMEM;
        s->log_drains[s->n_log_drains++] = u;
        return 0;
}

int spec_parse_type(const char *s, Hostd__V1__DynoType *ret)
{
        /* The command line spells it one-off (as Heroku does); proto names use one_off. */
        if (strcasecmp(s, "one-off") == 0) {
                *ret = HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF;
                return 0;
        }
        /* The enum's names ("DYNO_TYPE_WEB"), or without their prefix ("web"), as every
         * value but the zero one has it. */
        static const char prefix[] = "DYNO_TYPE_";
        const ProtobufCEnumDescriptor *d = &hostd__v1__dyno_type__descriptor;
        for (unsigned i = 0; i < d->n_values; i++) {
                const char *name = d->values[i].name;
                bool short_ok = d->values[i].value != 0 &&
                                strncmp(name, prefix, strlen(prefix)) == 0;
                if (strcasecmp(s, name) == 0 ||
                    (short_ok && strcasecmp(s, name + strlen(prefix)) == 0)) {
                        *ret = (Hostd__V1__DynoType)d->values[i].value;
                        return 0;
                }
        }
        return -EINVAL;
}

const char *spec_type_name(Hostd__V1__DynoType t)
{
        switch (t) {
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_UNSPECIFIED: return "unspecified";
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WEB: return "web";
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_WORKER: return "worker";
        case HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF: return "one_off";
        default: return NULL;
        }
}

struct parse_ctx {
        char *err;
        size_t errlen;
};

_printf_(3, 4) static int parse_fail(struct parse_ctx *p, int r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
        return r;
}

static const char *json_type_label(struct json_object *v)
{
        switch (json_object_get_type(v)) {
        case json_type_null: return "null";
        case json_type_boolean: return "a boolean";
        case json_type_double:
        case json_type_int: return "a number";
        case json_type_object: return "an object";
        case json_type_array: return "an array";
        case json_type_string: return "a string";
        }
        return "something else";
}

static int get_string(struct parse_ctx *p, const char *key, struct json_object *v, char **field)
{
        if (!json_object_is_type(v, json_type_string))
                return parse_fail(p, -EINVAL, "key '%s': expected a string, not %s", key,
                                  json_type_label(v));
        /* A "\u0000" would cut the C string short and send hostd something else than what
         * the file says. */
        const char *s = json_object_get_string(v);
        if (strlen(s) != (size_t)json_object_get_string_len(v))
                return parse_fail(p, -EINVAL, "key '%s': contains a NUL character", key);
        if (spec_set_string(field, s) < 0)
                return parse_fail(p, -ENOMEM, "out of memory");
        return 0;
}

static int get_uint(struct parse_ctx *p, const char *key, struct json_object *v, uint32_t max,
                    uint32_t *ret)
{
        if (json_object_is_type(v, json_type_int)) {
                /* json-c keeps integers over INT64_MAX as uint64; get_int64 clamps them, which
                 * is still over any max here. */
                int64_t i = json_object_get_int64(v);
                if (i < 0 || (uint64_t)i > max)
                        return parse_fail(p, -EINVAL,
                                          "key '%s': %s is out of range (0..%" PRIu32 ")", key,
                                          json_object_to_json_string(v), max);
                *ret = (uint32_t)i;
                return 0;
        }
        if (json_object_is_type(v, json_type_double)) {
                /* 30.0 or 3e1 is the number 30 (as protobuf's JSON mapping reads it); 1.5 is not
                 * a whole number of anything. */
                double d = json_object_get_double(v);
                if (!isfinite(d))
                        return parse_fail(p, -EINVAL, "key '%s': %s is not a whole number", key,
                                          json_object_to_json_string(v));
                if (d < 0 || d > (double)max)
                        return parse_fail(p, -EINVAL,
                                          "key '%s': %s is out of range (0..%" PRIu32 ")", key,
                                          json_object_to_json_string(v), max);
                if (d != (double)(uint32_t)d)
                        return parse_fail(p, -EINVAL, "key '%s': %s is not a whole number", key,
                                          json_object_to_json_string(v));
                *ret = (uint32_t)d;
                return 0;
        }
        return parse_fail(p, -EINVAL, "key '%s': expected a number, not %s", key,
                          json_type_label(v));
}

static int get_bool(struct parse_ctx *p, const char *key, struct json_object *v,
                    protobuf_c_boolean *ret)
{
        if (!json_object_is_type(v, json_type_boolean))
                return parse_fail(p, -EINVAL, "key '%s': expected true or false, not %s", key,
                                  json_type_label(v));
        *ret = json_object_get_boolean(v);
        return 0;
}

static int get_type(struct parse_ctx *p, const char *key, struct json_object *v,
                    Hostd__V1__DynoType *ret)
{
        if (!json_object_is_type(v, json_type_string))
                return parse_fail(p, -EINVAL,
                                  "key '%s': expected a string (web, worker or one_off), not %s",
                                  key, json_type_label(v));
        const char *s = json_object_get_string(v);
        if (strlen(s) != (size_t)json_object_get_string_len(v) || spec_parse_type(s, ret) < 0)
                return parse_fail(
                        p, -EINVAL,
                        "key '%s': unknown dyno type '%s' (expected web, worker or one_off)", key,
                        s);
        return 0;
}

static int env_add(struct parse_ctx *p, Hostd__V1__DynoSpec *s, const char *key, const char *name,
                   size_t name_len, const char *value)
{
        if (name_len == 0)
                return parse_fail(p, -EINVAL, "key '%s': empty variable name", key);
        if (strlen(name) != name_len)
                return parse_fail(p, -EINVAL, "key '%s': variable name contains a NUL character",
                                  key);
        if (strchr(name, '='))
                return parse_fail(p, -EINVAL, "key '%s': variable name '%s' contains '='", key,
                                  name);
        int r = spec_set_env(s, name, value);
        if (r < 0)
                return parse_fail(p, r, "out of memory");
        return 0;
}

static int get_env_object(struct parse_ctx *p, struct json_object *v, Hostd__V1__DynoSpec *s)
{
        struct json_object_iterator it = json_object_iter_begin(v), end = json_object_iter_end(v);
        for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
                const char *name = json_object_iter_peek_name(&it);
                struct json_object *val = json_object_iter_peek_value(&it);
                _cleanup_free_ char *key = NULL;
                if (asprintf_safe(&key, "env.%s", name) < 0)
                        return parse_fail(p, -ENOMEM, "out of memory");

                if (!json_object_is_type(val, json_type_string))
                        return parse_fail(p, -EINVAL, "key '%s': expected a string, not %s", key,
                                          json_type_label(val));
                const char *value = json_object_get_string(val);
                if (strlen(value) != (size_t)json_object_get_string_len(val))
                        return parse_fail(p, -EINVAL, "key '%s': contains a NUL character", key);
                /* json-c's object keys are C strings: a NUL in a name is cut there; the name
                 * itself is checked like the list form's. */
                int r = env_add(p, s, key, name, strlen(name), value);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_env_list(struct parse_ctx *p, struct json_object *v, Hostd__V1__DynoSpec *s)
{
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                char key[64];

                snprintf(key, sizeof key, "env[%zu]", i);
                if (!json_object_is_type(e, json_type_object))
                        return parse_fail(
                                p, -EINVAL,
                                "key '%s': expected an object {\"name\": ..., \"value\": ...}, not %s",
                                key, json_type_label(e));

                struct json_object *name = NULL, *value = NULL;
                json_object_object_foreach(e, k, val)
                {
                        if (strcmp(k, "name") == 0)
                                name = val;
                        else if (strcmp(k, "value") == 0)
                                value = val;
                        else
                                return parse_fail(
                                        p, -EINVAL,
                                        "key '%s.%s': unknown key (expected name and value)", key,
                                        k);
                }

                snprintf(key, sizeof key, "env[%zu].name", i);
                if (!name)
                        return parse_fail(p, -EINVAL, "key '%s': missing", key);
                if (!json_object_is_type(name, json_type_string))
                        return parse_fail(p, -EINVAL, "key '%s': expected a string, not %s", key,
                                          json_type_label(name));
                const char *nm = json_object_get_string(name);
                size_t nm_len = (size_t)json_object_get_string_len(name);

                /* In the object form the JSON parser already merged duplicates; in a list a
                 * name given twice is most likely a mistake, so say so. */
                for (size_t j = 0; j < s->n_env; j++)
                        if (strlen(nm) == nm_len && strcmp(s->env[j]->name, nm) == 0)
                                return parse_fail(p, -EINVAL,
                                                  "key '%s': variable '%s' is given twice", key,
                                                  nm);

                const char *vl = "";
                char vkey[64];
                snprintf(vkey, sizeof vkey, "env[%zu].value", i);
                if (value && !json_object_is_type(value, json_type_null)) {
                        if (!json_object_is_type(value, json_type_string))
                                return parse_fail(p, -EINVAL, "key '%s': expected a string, not %s",
                                                  vkey, json_type_label(value));
                        vl = json_object_get_string(value);
                        if (strlen(vl) != (size_t)json_object_get_string_len(value))
                                return parse_fail(p, -EINVAL, "key '%s': contains a NUL character",
                                                  vkey);
                }
                int r = env_add(p, s, key, nm, nm_len, vl);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_drains(struct parse_ctx *p, const char *key, struct json_object *v,
                      Hostd__V1__DynoSpec *s)
{
        if (!json_object_is_type(v, json_type_array))
                return parse_fail(p, -EINVAL, "key '%s': expected an array of strings, not %s", key,
                                  json_type_label(v));
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                char k[64];
                snprintf(k, sizeof k, "%s[%zu]", key, i);
                char *url = (char *)protobuf_c_empty_string;
                int r = get_string(p, k, e, &url);
                if (r < 0)
                        return r;
                r = spec_add_log_drain(s, url);
                free(url);
                if (r < 0)
                        return parse_fail(p, r, "out of memory");
        }
        return 0;
}

enum key_kind {
        KEY_STRING,
        KEY_UINT32,
        KEY_BOOL,
        KEY_TYPE,
        KEY_GRACE,
        KEY_BOOT,
        KEY_ENV,
        KEY_DRAINS,
};

static const struct spec_key {
        const char *name;
        enum key_kind kind;
        size_t offset;
        uint32_t max; /* KEY_UINT32 */
} spec_keys[] = {
#define STR(f)                                                                                     \
        {                                                                                          \
#f, KEY_STRING, offsetof(Hostd__V1__DynoSpec, f), 0                                \
        }
#define U32(f, m)                                                                                  \
        {                                                                                          \
#f, KEY_UINT32, offsetof(Hostd__V1__DynoSpec, f), m                                \
        }
#define BOOL(f)                                                                                    \
        {                                                                                          \
#f, KEY_BOOL, offsetof(Hostd__V1__DynoSpec, f), 0                                  \
        }
        STR(id),
        STR(name),
        STR(app),
        { "type", KEY_TYPE, 0, 0 },
        STR(size),
        STR(command),
        { "env", KEY_ENV, 0, 0 },
        U32(port, 65535),
        STR(stack_path),
        STR(slug_path),
        STR(stack_digest),
        STR(slug_digest),
        STR(stack_url),
        STR(slug_url),
        { "grace_seconds", KEY_GRACE, 0, UINT32_MAX },
        { "boot_timeout_seconds", KEY_BOOT, 0, UINT32_MAX },
        STR(release),
        BOOL(tty),
        /* A terminal's size is a struct winsize of unsigned shorts. */
        U32(tty_columns, 65535),
        U32(tty_rows, 65535),
        BOOL(runtime_metrics),
        { "log_drains", KEY_DRAINS, 0, 0 },
        STR(app_id),
        STR(slug_commit),
        STR(slug_description),
        STR(release_created_at),
        STR(tty_term),
#undef STR
#undef U32
#undef BOOL
};

static int parse_key(struct parse_ctx *p, const struct spec_key *k, struct json_object *v,
                     Hostd__V1__DynoSpec *s)
{
        char *base = (char *)s;
        uint32_t u;
        int r;

        switch (k->kind) {
        case KEY_STRING: return get_string(p, k->name, v, (char **)(base + k->offset));
        case KEY_UINT32: return get_uint(p, k->name, v, k->max, (uint32_t *)(base + k->offset));
        case KEY_BOOL: return get_bool(p, k->name, v, (protobuf_c_boolean *)(base + k->offset));
        case KEY_TYPE: return get_type(p, k->name, v, &s->type);
        case KEY_GRACE:
                r = get_uint(p, k->name, v, k->max, &u);
                if (r < 0)
                        return r;
                s->grace_case = HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS;
                s->grace_seconds = u;
                return 0;
        case KEY_BOOT:
                r = get_uint(p, k->name, v, k->max, &u);
                if (r < 0)
                        return r;
                s->boot_case = HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS;
                s->boot_timeout_seconds = u;
                return 0;
        case KEY_ENV:
                if (json_object_is_type(v, json_type_object))
                        return get_env_object(p, v, s);
                if (json_object_is_type(v, json_type_array))
                        return get_env_list(p, v, s);
                return parse_fail(p, -EINVAL, "key 'env': expected an object or an array, not %s",
                                  json_type_label(v));
        case KEY_DRAINS: return get_drains(p, k->name, v, s);
        }
        return parse_fail(p, -EINVAL, "key '%s': cannot be parsed", k->name);
}

/* Line and column (from 1) of a byte offset, for syntax errors in a file of many lines. */
static void offset_to_line(const char *text, size_t off, unsigned *line, unsigned *col)
{
        *line = 1;
        *col = 1;
        for (size_t i = 0; i < off; i++) {
                if (text[i] == '\n') {
                        (*line)++;
                        *col = 1;
                } else
                        (*col)++;
        }
}

int spec_parse_json(const char *text, size_t len, Hostd__V1__DynoSpec **ret, char *err,
                    size_t errlen)
{
        struct parse_ctx p = { .err = err, .errlen = errlen };
        unsigned line, col;

        if (errlen > 0)
                err[0] = 0;

        _cleanup_(tokener_freep) struct json_tokener *tok =
                json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
        if (!tok)
                return parse_fail(&p, -ENOMEM, "out of memory");
        /* Strict: no trailing commas, no NaN; strings must be UTF-8, as protobuf strings are.
         * Trailing data is checked below, for a clearer message. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                            JSON_TOKENER_VALIDATE_UTF8);

        if (len > INT32_MAX - 1)
                return parse_fail(&p, -EINVAL, "spec is too large");
        _cleanup_(json_putp) struct json_object *root = json_tokener_parse_ex(tok, text, (int)len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t end = json_tokener_get_parse_end(tok);
        if (jerr == json_tokener_continue) {
                /* The input ends here: json-c needs to see a NUL to finish a value that has no
                 * closing character of its own (a bare number). */
                root = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                end = len;
        }
        if (jerr == json_tokener_continue || jerr == json_tokener_error_parse_eof)
                return parse_fail(&p, -EINVAL, "invalid JSON: unexpected end of input");
        if (jerr != json_tokener_success) {
                offset_to_line(text, end, &line, &col);
                return parse_fail(&p, -EINVAL, "invalid JSON at line %u, column %u: %s", line, col,
                                  json_tokener_error_desc(jerr));
        }
        for (size_t i = end; i < len; i++)
                if (!strchr(" \t\r\n", text[i]) || text[i] == 0) {
                        offset_to_line(text, i, &line, &col);
                        return parse_fail(
                                &p, -EINVAL,
                                "invalid JSON at line %u, column %u: unexpected data after the object",
                                line, col);
                }
        if (!root)
                return parse_fail(&p, -EINVAL, "expected a JSON object, not null");

        if (!json_object_is_type(root, json_type_object))
                return parse_fail(&p, -EINVAL, "expected a JSON object, not %s",
                                  json_type_label(root));

        _cleanup_(spec_freep) Hostd__V1__DynoSpec *s = spec_new();
        if (!s)
                return parse_fail(&p, -ENOMEM, "out of memory");

        json_object_object_foreach(root, key, val)
        {
                const struct spec_key *k = NULL;
                for (size_t i = 0; i < ELEMENTSOF(spec_keys); i++)
                        if (strcmp(spec_keys[i].name, key) == 0) {
                                k = &spec_keys[i];
                                break;
                        }
                if (!k)
                        return parse_fail(&p, -EINVAL, "key '%s': unknown key", key);
                if (json_object_is_type(val, json_type_null))
                        continue; /* null: as if the key were absent */
                int r = parse_key(&p, k, val, s);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(s);
        return 0;
}
