/* The flags of start and run, and the spec they make. */
#include <stddef.h>

#include "command.h"
#include "exit-status.h"
#include "spec.h"
#include "start-flags.h"

void start_flags_done(struct start_flags *f)
{
        free(f->env);
        free(f->drains);
}

/* The flags that set a string of the spec: where each is kept, and the field it sets. */
#define STRING_FLAG(option, flag, field)                                                           \
        {                                                                                          \
                option, offsetof(struct start_flags, flag), offsetof(Hostd__V1__DynoSpec, field)   \
        }
static const struct {
        int option;
        size_t flag, field;
} string_flags[] = {
        STRING_FLAG(OPT_ID, id, id),
        STRING_FLAG(OPT_NAME, name, name),
        STRING_FLAG(OPT_APP, app, app),
        STRING_FLAG(OPT_SIZE, size, size),
        STRING_FLAG(OPT_STACK, stack, stack_path),
        STRING_FLAG(OPT_SLUG, slug, slug_path),
        STRING_FLAG(OPT_STACK_DIGEST, stack_digest, stack_digest),
        STRING_FLAG(OPT_SLUG_DIGEST, slug_digest, slug_digest),
        STRING_FLAG(OPT_STACK_URL, stack_url, stack_url),
        STRING_FLAG(OPT_SLUG_URL, slug_url, slug_url),
        STRING_FLAG(OPT_COMMAND, command, command),
        STRING_FLAG(OPT_RELEASE, release, release),
        STRING_FLAG(OPT_APP_ID, app_id, app_id),
        STRING_FLAG(OPT_SLUG_COMMIT, slug_commit, slug_commit),
        STRING_FLAG(OPT_SLUG_DESCRIPTION, slug_description, slug_description),
        STRING_FLAG(OPT_RELEASE_CREATED_AT, release_created_at, release_created_at),
};

static const char **string_flag(const struct start_flags *f, size_t i)
{
        return (const char **)((char *)f + string_flags[i].flag);
}

static bool start_string_flag(struct start_flags *f, int c, const char *arg)
{
        for (size_t i = 0; i < ELEMENTSOF(string_flags); i++)
                if (string_flags[i].option == c) {
                        *string_flag(f, i) = arg;
                        return true;
                }
        return false;
}

/* Append arg to a list of pointers into argv. */
static int start_flags_append(char ***list, size_t *n, const char *arg)
{
        char **l = realloc(*list, (*n + 1) * sizeof *l);
        if (!l)
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        *list = l;
        (*list)[(*n)++] = (char *)arg;
        return EXIT_OK;
}

static int start_env_flag(struct start_flags *f, const char *arg)
{
        const char *eq = strchr(arg, '=');
        if (!eq)
                return usage_error("start", "--env '%s': expected NAME=VALUE", arg);
        if (eq == arg)
                return usage_error("start", "--env '%s': empty variable name", arg);
        return start_flags_append(&f->env, &f->n_env, arg);
}

int start_option(struct start_flags *f, int c, const char *arg)
{
        if (start_string_flag(f, c, arg))
                return EXIT_OK;
        switch (c) {
        case OPT_SPEC:
                if (f->spec_file)
                        return usage_error("start", "--spec given twice");
                f->spec_file = arg;
                return EXIT_OK;
        case OPT_TYPE:
                if (spec_parse_type(arg, &f->type) < 0)
                        return usage_error(
                                "start",
                                "--type: unknown dyno type '%s' (expected web, worker or one-off)",
                                arg);
                f->have_type = true;
                return EXIT_OK;
        case OPT_PORT:
                f->have_port = true;
                return parse_uint_flag("start", "--port", arg, 65535, &f->port);
        case OPT_GRACE:
                f->have_grace = true;
                return parse_uint_flag("start", "--grace", arg, UINT32_MAX, &f->grace);
        case OPT_BOOT_TIMEOUT:
                f->have_boot = true;
                return parse_uint_flag("start", "--boot-timeout", arg, UINT32_MAX, &f->boot);
        case OPT_ENV: return start_env_flag(f, arg);
        case OPT_LOG_DRAIN: return start_flags_append(&f->drains, &f->n_drains, arg);
        }
        return EXIT_OK;
}

static int load_spec_file(const char *path, Hostd__V1__DynoSpec **ret)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = strcmp(path, "-") == 0 ? read_full_fd(STDIN_FILENO, &text, &len) :
                                         read_full_file(path, &text, &len);
        if (r < 0) {
                errno = -r;
                fprintf(stderr, "hostctl: start: --spec %s: %m\n", path);
                return EXIT_USAGE;
        }
        char err[512];
        r = spec_parse_json(text, len, ret, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "hostctl: start: --spec %s: %s\n",
                        strcmp(path, "-") == 0 ? "(stdin)" : path, err);
                return r == -ENOMEM ? EXIT_REMOTE : EXIT_USAGE;
        }
        return EXIT_OK;
}

static int apply_string_flags(const struct start_flags *f, Hostd__V1__DynoSpec *s)
{
        for (size_t i = 0; i < ELEMENTSOF(string_flags); i++) {
                const char *value = *string_flag(f, i);
                char **field = (char **)((char *)s + string_flags[i].field);
                if (value && spec_set_string(field, value) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Each --env NAME=VALUE replaces a variable of that name, or is added. */
static int apply_env_flags(const struct start_flags *f, Hostd__V1__DynoSpec *s)
{
        for (size_t i = 0; i < f->n_env; i++) {
                _cleanup_free_ char *name = strdup(f->env[i]);
                if (!name)
                        return -ENOMEM;
                char *eq = strchr(name, '=');
                *eq = 0;
                int r = spec_set_env(s, name, eq + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Flags override the spec file whatever their order on the command line. */
static int apply_start_flags(const struct start_flags *f, Hostd__V1__DynoSpec *s)
{
        int r = apply_string_flags(f, s);
        if (r < 0)
                return r;
        if (f->have_type)
                s->type = f->type;
        if (f->have_port)
                s->port = f->port;
        if (f->have_grace) {
                s->grace_case = HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS;
                s->grace_seconds = f->grace;
        }
        if (f->have_boot) {
                s->boot_case = HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS;
                s->boot_timeout_seconds = f->boot;
        }
        r = apply_env_flags(f, s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < f->n_drains; i++)
                if (spec_add_log_drain(s, f->drains[i]) < 0)
                        return -ENOMEM;
        return 0;
}

static char *join_words(char **words, size_t n)
{
        size_t len = 1;
        for (size_t i = 0; i < n; i++)
                len += strlen(words[i]) + 1;
        char *s = malloc(len), *p = s;
        if (!s)
                return NULL;
        *p = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        *p++ = ' ';
                p = stpcpy(p, words[i]);
        }
        return s;
}

int spec_from_args(const char *cmd, struct start_flags *f, char **words, size_t n_words,
                   bool dashdash, Hostd__V1__DynoSpec **ret)
{
        _cleanup_free_ char *joined = NULL;
        if (n_words > 0) {
                if (!dashdash)
                        return usage_error(cmd,
                                           "unexpected argument '%s' (give the command after --)",
                                           words[0]);
                if (f->command)
                        return usage_error(cmd,
                                           "give the command with --command or after --, not both");
                joined = join_words(words, n_words);
                if (!joined)
                        return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
                f->command = joined;
        }

        _cleanup_(spec_freep) Hostd__V1__DynoSpec *spec = NULL;
        if (f->spec_file) {
                int r = load_spec_file(f->spec_file, &spec);
                if (r != EXIT_OK)
                        return r;
        } else if (!(spec = spec_new()))
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        int r = apply_start_flags(f, spec);
        f->command = NULL; /* joined goes now */
        if (r < 0)
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        *ret = TAKE_PTR(spec);
        return EXIT_OK;
}

int start_call(struct grpc_client *c, Hostd__V1__DynoSpec *spec, Hostd__V1__StartResponse **ret)
{
        Hostd__V1__StartRequest req = HOSTD__V1__START_REQUEST__INIT;
        req.spec = spec;
        return UNARY(c, "Start", &req, hostd__v1__start_response, ret);
}
