/* The commands of dynos: ps, inspect, start, stop, restart, logs. */
#include <inttypes.h>

#include "command.h"
#include "commands.h"
#include "dyno-output.h"
#include "exit-status.h"
#include "output.h"
#include "spec.h"
#include "start-flags.h"

/* hostd's stop grace when a call does not give one (config.h's grace_seconds default). */
#define GRACE_DEFAULT_S 30
#define DEFAULT_LOG_LINES 100

/* The dyno of a reply, or NULL after telling the user hostd left it out. */
static const Hostd__V1__Dyno *reply_dyno(const Hostd__V1__Dyno *d, const char *what)
{
        if (!d)
                fprintf(stderr, "hostctl: %s: hostd's reply has no dyno\n", what);
        return d;
}

/* JSON, every field, or one line. */
static int print_dyno_result(const struct globals *g, const Hostd__V1__Dyno *d, bool one_line)
{
        if (g->json)
                return print_message_json(&d->base);
        if (one_line)
                print_dyno_line(d);
        else
                print_dyno(d);
        return EXIT_OK;
}

/* ---- ps ---- */

static const char ps_help[] =
        "Usage: hostctl ps [--no-trunc]\n"
        "\n"
        "List the dynos on this host: ID, NAME, TYPE, SIZE, STATE, PID, UID, the uptime of a\n"
        "running dyno or how an ended one exited, and its COMMAND.\n"
        "\n"
        "      --no-trunc         do not shorten long commands (they are cut to the\n"
        "                         terminal's width, or to 60 characters when not on one)\n" COMMON_HELP;

struct ps_state {
        bool no_trunc;
};
static const struct ps_state ps_defaults = {};

static int ps_option(struct invocation *inv, int c, const char *arg)
{
        struct ps_state *s = inv->state;
        if (c == OPT_NO_TRUNC)
                s->no_trunc = true;
        return EXIT_OK;
}

static int ps_add_dyno(struct table *t, const Hostd__V1__Dyno *d, int64_t now)
{
        const Hostd__V1__DynoSpec *s = spec_of(d);
        char pid[16] = "-", uid[16] = "-", sb[32], tb[32], up[128];
        const char *upexit;

        if (d->pid)
                snprintf(pid, sizeof pid, "%" PRIu32, d->pid);
        if (d->uid)
                snprintf(uid, sizeof uid, "%" PRIu32, d->uid);
        if (state_is_final(d->state))
                upexit = describe_exit(d->exit, up);
        else if (d->started_usec > 0)
                upexit = format_duration(now - d->started_usec, up);
        else
                upexit = "-";
        if (table_add(t, or_dash(s->id)) < 0 || table_add(t, or_dash(s->name)) < 0 ||
            table_add(t, type_name(s->type, tb)) < 0 || table_add(t, or_dash(s->size)) < 0 ||
            table_add(t, state_name(d->state, sb)) < 0 || table_add(t, pid) < 0 ||
            table_add(t, uid) < 0 || table_add(t, upexit) < 0 ||
            table_add(t, or_dash(s->command)) < 0)
                return -ENOMEM;
        return 0;
}

static int ps_table(struct table *t, const Hostd__V1__ListDynosResponse *reply)
{
        static const char *const header[] = { "ID",  "NAME", "TYPE",        "SIZE",   "STATE",
                                              "PID", "UID",  "UPTIME/EXIT", "COMMAND" };
        int64_t now = now_realtime_usec();
        t->n_cols = ELEMENTSOF(header);
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(t, header[i]) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < reply->n_dynos; i++)
                if (ps_add_dyno(t, reply->dynos[i], now) < 0)
                        return -ENOMEM;
        return 0;
}

/* Commands cut to the rest of the terminal's line after the other columns, or to 60. */
static void ps_truncate_commands(struct table *t)
{
        size_t used = 0;
        for (size_t col = 0; col + 1 < t->n_cols; col++) {
                size_t w = 0;
                for (size_t i = col; i < t->n_cells; i += t->n_cols)
                        if (text_width(t->cells[i]) > w)
                                w = text_width(t->cells[i]);
                used += w + 2;
        }
        size_t cols = terminal_columns();
        size_t max = cols == 0 ? 60 : cols > used + 20 ? cols - used : 20;
        for (size_t i = 2 * t->n_cols - 1; i < t->n_cells; i += t->n_cols)
                truncate_utf8(t->cells[i], max);
}

static int ps_run(struct invocation *inv, struct grpc_client *c)
{
        const struct ps_state *s = inv->state;
        Hostd__V1__ListDynosRequest req = HOSTD__V1__LIST_DYNOS_REQUEST__INIT;
        _cleanup_message_ Hostd__V1__ListDynosResponse *reply = NULL;
        int r = UNARY(c, "ListDynos", &req, hostd__v1__list_dynos_response, &reply);
        if (r < 0)
                return call_failed(c, r, "ps");
        if (inv->g->json)
                return print_message_json(&reply->base);

        struct table t = {};
        if (ps_table(&t, reply) < 0) {
                table_free(&t);
                fprintf(stderr, "hostctl: ps: out of memory\n");
                return EXIT_REMOTE;
        }
        if (!s->no_trunc)
                ps_truncate_commands(&t);
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
}

static const struct option ps_options[] = {
        COMMON_LONG_OPTIONS,
        { "no-trunc", no_argument, NULL, OPT_NO_TRUNC },
        {},
};

const struct command command_ps = {
        .name = "ps",
        .help = ps_help,
        .optstring = ":h",
        .options = ps_options,
        COMMAND_STATE(ps_defaults),
        .option = ps_option,
        .prepare = command_no_args,
        .run = ps_run,
        .connects = true,
};

/* ---- inspect ---- */

static const char inspect_help[] =
        "Usage: hostctl inspect ID\n"
        "\n"
        "Show every field of a dyno, one \"key: value\" per line: its spec, state, pid and\n"
        "uid, times, how it exited, its cgroup, address and limits.\n"
        "\n" COMMON_HELP;

static int get_dyno(struct grpc_client *c, const char *id, Hostd__V1__GetDynoResponse **ret)
{
        Hostd__V1__GetDynoRequest req = HOSTD__V1__GET_DYNO_REQUEST__INIT;
        req.id = (char *)id;
        return UNARY(c, "GetDyno", &req, hostd__v1__get_dyno_response, ret);
}

static int inspect_run(struct invocation *inv, struct grpc_client *c)
{
        const char *id = inv->args[0];
        _cleanup_free_ char *what = strjoin3("inspect ", id, NULL);
        _cleanup_message_ Hostd__V1__GetDynoResponse *resp = NULL;
        int r = get_dyno(c, id, &resp);
        if (r < 0)
                return call_failed(c, r, what ? what : "inspect");
        const Hostd__V1__Dyno *d = reply_dyno(resp->dyno, "inspect");
        if (!d)
                return EXIT_UNREACHABLE;
        return print_dyno_result(inv->g, d, false);
}

const struct command command_inspect = {
        .name = "inspect",
        .help = inspect_help,
        .optstring = ":h",
        .options = common_options,
        .prepare = command_dyno_id,
        .run = inspect_run,
        .connects = true,
};

/* ---- start ---- */

static const char start_help[] =
        "Usage: hostctl start [FLAGS] [-- COMMAND...]\n"
        "       hostctl start --spec FILE [FLAGS] [-- COMMAND...]\n"
        "\n"
        "Start a dyno and show it (as inspect does) once its command runs. A web dyno with a\n"
        "port is then 'starting' until it listens on $PORT on all addresses, and 'up' after\n"
        "(or 'crashed' with R10 when its boot timeout passes first); others are 'up' at once.\n"
        "\n"
        "      --spec FILE          read the spec from a JSON object with DynoSpec's field\n"
        "                           names (id, name, app, type, size, command, env, port,\n"
        "                           stack_path, slug_path, stack_digest, slug_digest,\n"
        "                           stack_url, slug_url, grace_seconds, boot_timeout_seconds,\n"
        "                           release, tty, tty_columns, tty_rows, tty_term,\n"
        "                           runtime_metrics, log_drains, app_id, slug_commit,\n"
        "                           slug_description, release_created_at); env is\n"
        "                           {\"NAME\": \"value\"} or a list of\n"
        "                           {\"name\": ..., \"value\": ...}; \"-\" reads standard input.\n"
        "                           The flags below override the file.\n"
        "      --id ID              the dyno's unique id (required, here or in the spec)\n"
        "      --name NAME          its formation name, $DYNO (e.g. web.1)\n"
        "      --app NAME           the application's name\n"
        "      --type TYPE          web, worker or one-off\n"
        "      --size SIZE          a size of the host's configuration (e.g. standard-1x)\n"
        "      --port N             $PORT (0..65535; 0: none)\n"
        "      --stack PATH         the stack's root filesystem folder\n"
        "      --slug PATH          the app's slug folder\n"
        "      --stack-digest HEX   the stack by image id (sha256), instead of --stack\n"
        "      --slug-digest HEX    the slug by image id, instead of --slug\n"
        "      --stack-url URL      where hostd fetches the stack when it lacks it\n"
        "                           (http://, https://, file:// or an absolute path)\n"
        "      --slug-url URL       the same for the slug\n"
        "      --env NAME=VALUE     a config var (repeatable; replaces one of the same name)\n"
        "      --log-drain URL      a syslog drain, syslog://HOST:PORT or syslog+tls://HOST:PORT\n"
        "                           (repeatable, up to 8; added to the spec file's)\n"
        "      --grace SECONDS      stop grace period (default: the host's)\n"
        "      --boot-timeout SECONDS  R10 boot timeout of a web dyno (default: the host's)\n"
        "      --release VERSION    the release (v42): $HEROKU_RELEASE_VERSION; a new one\n"
        "                           starts the crash back-off again\n"
        "      --app-id ID          $HEROKU_APP_ID, and runtime-metrics lines' dyno=\n"
        "      --slug-commit SHA    $HEROKU_SLUG_COMMIT\n"
        "      --slug-description TEXT  $HEROKU_SLUG_DESCRIPTION\n"
        "      --release-created-at TIME  $HEROKU_RELEASE_CREATED_AT (RFC 3339)\n"
        "      --command STRING     the command: bash -c (the stack's sh without bash) runs\n"
        "                           .profile.d/*.sh, .profile, then it, in place of the\n"
        "                           shell when it is a simple command\n"
        "  -- COMMAND...            the command as words after --, joined with spaces\n"
        "                           (quote shell syntax as one word)\n"
        "\n" COMMON_HELP;

struct start_state {
        struct start_flags flags;
        Hostd__V1__DynoSpec *spec;
};
static const struct start_state start_defaults = {};

static int start_state_option(struct invocation *inv, int c, const char *arg)
{
        struct start_state *s = inv->state;
        return start_option(&s->flags, c, arg);
}

static int start_prepare(struct invocation *inv)
{
        struct start_state *s = inv->state;
        int r = spec_from_args("start", &s->flags, inv->args, inv->n_args, inv->dashdash, &s->spec);
        if (r != EXIT_OK)
                return r;
        if (!*s->spec->id)
                return usage_error("start", "--id is required (or \"id\" in the --spec file)");
        return EXIT_OK;
}

static int start_run(struct invocation *inv, struct grpc_client *c)
{
        const struct start_state *s = inv->state;
        _cleanup_free_ char *what = strjoin3("start ", s->spec->id, NULL);
        _cleanup_message_ Hostd__V1__StartResponse *resp = NULL;
        int r = start_call(c, s->spec, &resp);
        if (r < 0)
                return call_failed(c, r, what ? what : "start");
        const Hostd__V1__Dyno *d = reply_dyno(resp->dyno, "start");
        if (!d)
                return EXIT_UNREACHABLE;
        return print_dyno_result(inv->g, d, false);
}

static void start_done(struct invocation *inv)
{
        struct start_state *s = inv->state;
        start_flags_done(&s->flags);
        spec_free(s->spec);
}

/* clang-format off */
static const struct option start_options[] = { COMMON_LONG_OPTIONS, START_LONG_OPTIONS, {} };
/* clang-format on */

const struct command command_start = {
        .name = "start",
        .help = start_help,
        /* '+': stop at the first word that is not an option, so that only words after "--"
         * become the command, and a stray word is an error rather than part of it. */
        .optstring = "+:h",
        .options = start_options,
        COMMAND_STATE(start_defaults),
        .option = start_state_option,
        .prepare = start_prepare,
        .run = start_run,
        .done = start_done,
        .connects = true,
};

/* ---- stop, restart ---- */

static const char stop_help[] =
        "Usage: hostctl stop ID [--grace SECONDS]\n"
        "\n"
        "Stop a dyno: SIGTERM to its processes, SIGKILL after the grace period. Prints how\n"
        "it ended, e.g. \"web.1 (web-1): down, exit status 143\".\n"
        "\n"
        "      --grace SECONDS    grace period before SIGKILL (default: the dyno's, or the\n"
        "                         host's). hostctl waits for the reply for --timeout plus the\n"
        "                         grace period (30 s when not given).\n"
        "\n" COMMON_HELP;

static const char restart_help[] =
        "Usage: hostctl restart ID [--grace SECONDS]\n"
        "\n"
        "Stop a dyno and start it again with the same spec; prints its new state.\n"
        "\n"
        "      --grace SECONDS    grace period of the stop before SIGKILL (default: the\n"
        "                         dyno's, or the host's). hostctl waits for the reply for\n"
        "                         --timeout plus the grace period (30 s when not given).\n"
        "\n" COMMON_HELP;

struct grace_state {
        bool set;
        uint32_t seconds;
};
static const struct grace_state grace_defaults = {};

static int grace_option(struct invocation *inv, int c, const char *arg)
{
        struct grace_state *s = inv->state;
        if (c != OPT_GRACE)
                return EXIT_OK;
        s->set = true;
        return parse_uint_flag(inv->name, "--grace", arg, UINT32_MAX, &s->seconds);
}

/* hostd answers once the dyno is down, which may take the whole grace period: the deadline
 * (grpc-timeout) is --timeout plus the grace. */
static void add_grace_to_deadline(struct grpc_client *c, const struct grace_state *s)
{
        if (c->timeout_ms >= 0)
                c->timeout_ms += (int64_t)(s->set ? s->seconds : GRACE_DEFAULT_S) * 1000;
}

static int stop_run(struct invocation *inv, struct grpc_client *c)
{
        const struct grace_state *s = inv->state;
        const char *id = inv->args[0];
        add_grace_to_deadline(c, s);

        Hostd__V1__StopRequest req = HOSTD__V1__STOP_REQUEST__INIT;
        req.id = (char *)id;
        if (s->set) {
                req.grace_case = HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS;
                req.grace_seconds = s->seconds;
        }
        _cleanup_free_ char *what = strjoin3("stop ", id, NULL);
        _cleanup_message_ Hostd__V1__StopResponse *resp = NULL;
        int r = UNARY(c, "Stop", &req, hostd__v1__stop_response, &resp);
        if (r < 0)
                return call_failed(c, r, what ? what : "stop");
        if (!reply_dyno(resp->dyno, "stop"))
                return EXIT_UNREACHABLE;
        return print_dyno_result(inv->g, resp->dyno, true);
}

static int restart_run(struct invocation *inv, struct grpc_client *c)
{
        const struct grace_state *s = inv->state;
        const char *id = inv->args[0];
        add_grace_to_deadline(c, s);

        Hostd__V1__RestartRequest req = HOSTD__V1__RESTART_REQUEST__INIT;
        req.id = (char *)id;
        if (s->set) {
                req.grace_case = HOSTD__V1__RESTART_REQUEST__GRACE_GRACE_SECONDS;
                req.grace_seconds = s->seconds;
        }
        _cleanup_free_ char *what = strjoin3("restart ", id, NULL);
        _cleanup_message_ Hostd__V1__RestartResponse *resp = NULL;
        int r = UNARY(c, "Restart", &req, hostd__v1__restart_response, &resp);
        if (r < 0)
                return call_failed(c, r, what ? what : "restart");
        if (!reply_dyno(resp->dyno, "restart"))
                return EXIT_UNREACHABLE;
        return print_dyno_result(inv->g, resp->dyno, true);
}

static const struct option grace_options[] = {
        COMMON_LONG_OPTIONS,
        { "grace", required_argument, NULL, OPT_GRACE },
        {},
};

const struct command command_stop = {
        .name = "stop",
        .help = stop_help,
        .optstring = ":h",
        .options = grace_options,
        COMMAND_STATE(grace_defaults),
        .option = grace_option,
        .prepare = command_dyno_id,
        .run = stop_run,
        .connects = true,
};

const struct command command_restart = {
        .name = "restart",
        .help = restart_help,
        .optstring = ":h",
        .options = grace_options,
        COMMAND_STATE(grace_defaults),
        .option = grace_option,
        .prepare = command_dyno_id,
        .run = restart_run,
        .connects = true,
};

/* ---- logs ---- */

static const char logs_help[] =
        "Usage: hostctl logs ID [--lines N] [-f|--follow]\n"
        "\n"
        "Show a dyno's recent log lines, as\n"
        "  2026-11-27T10:00:00.123456+00:00 app[web.1]: text\n"
        "(local time; control characters are escaped when writing to a terminal). With --json,\n"
        "one LogLine object per line.\n"
        "\n"
        "  -n, --lines N          at most N recent lines (default 100; 0: all hostd keeps)\n"
        "  -f, --follow           then keep printing new lines until hostd ends the stream\n"
        "                         (--timeout does not apply: a follow waits for lines as\n"
        "                         long as it takes)\n"
        "\n" COMMON_HELP;

struct logs_state {
        uint32_t lines;
        bool follow;
        bool escape; /* stdout is a terminal */
        bool json;
};
static const struct logs_state logs_defaults = { .lines = DEFAULT_LOG_LINES };

static int logs_option(struct invocation *inv, int c, const char *arg)
{
        struct logs_state *o = inv->state;
        if (c == 'f')
                o->follow = true;
        else if (c == 'n')
                return parse_uint_flag("logs", "--lines", arg, UINT32_MAX, &o->lines);
        return EXIT_OK;
}

static void print_log_line(const Hostd__V1__LogLine *l, const struct logs_state *o)
{
        if (o->json) {
                print_message_json_line(&l->base);
                return;
        }
        char tb[48];
        const char *process = l->process && *l->process ? l->process : l->dyno_id;
        _cleanup_free_ char *source = escape_str(or_dash(l->source)),
                            *proc = escape_str(or_dash(process));
        printf("%s %s[%s]: ", format_time(l->time_usec, tb), source ? source : "?",
               proc ? proc : "?");
        if (o->escape) {
                _cleanup_free_ char *text =
                        escape_cntrl((const char *)l->text.data, l->text.len, true);
                fputs(text ? text : "?", stdout);
        } else
                fwrite(l->text.data, 1, l->text.len, stdout);
        putchar('\n');
}

static int logs_batch(const ProtobufCMessage *msg, void *userdata)
{
        const struct logs_state *o = userdata;
        const Hostd__V1__LogsResponse *b = (const Hostd__V1__LogsResponse *)msg;
        for (size_t i = 0; b && i < b->n_lines; i++)
                print_log_line(b->lines[i], o);
        /* A follower (| grep) should see each line as it comes, not when a buffer fills. */
        if (fflush(stdout) != 0)
                return -errno;
        return 0;
}

static int logs_run(struct invocation *inv, struct grpc_client *c)
{
        struct logs_state *o = inv->state;
        const char *id = inv->args[0];
        o->json = inv->g->json;
        o->escape = isatty(STDOUT_FILENO);

        Hostd__V1__LogsRequest req = HOSTD__V1__LOGS_REQUEST__INIT;
        req.id = (char *)id;
        req.lines = o->lines;
        req.follow = o->follow;
        _cleanup_free_ char *what = strjoin3("logs ", id, NULL);

        /* Without --follow the stream ends by itself: a deadline. A follow has none: it waits
         * for lines as long as it takes (keepalive pings notice a dead connection). */
        int r = grpc_server_stream(c, "Logs", &req.base, &hostd__v1__logs_response__descriptor,
                                   o->follow ? -1 : c->timeout_ms, -1, logs_batch, o);
        if (r < 0 && !c->error[0]) {
                /* The callback failed: writing to stdout. */
                fprintf(stderr, "hostctl: %s: write output: %s\n", what ? what : "logs",
                        strerror(-r));
                return EXIT_REMOTE;
        }
        if (r < 0)
                return call_failed(c, r, what ? what : "logs");
        return finish_output(EXIT_OK);
}

static const struct option logs_options[] = {
        COMMON_LONG_OPTIONS,
        { "lines", required_argument, NULL, 'n' },
        { "follow", no_argument, NULL, 'f' },
        {},
};

const struct command command_logs = {
        .name = "logs",
        .help = logs_help,
        .optstring = ":hfn:",
        .options = logs_options,
        COMMAND_STATE(logs_defaults),
        .option = logs_option,
        .prepare = command_dyno_id,
        .run = logs_run,
        .connects = true,
};
