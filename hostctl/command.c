/* Running a command: its options, its words, the connection to hostd, its call. */
#include <getopt.h>

#include "command.h"
#include "exit-status.h"
#include "output.h"

int call_failed(const struct grpc_client *c, int r, const char *what)
{
        /* hostd's message is shown on a terminal: its control characters escaped. */
        _cleanup_free_ char *e = escape_str(c->error);
        fprintf(stderr, "hostctl: %s: %s\n", what, e ? e : c->error);
        return r == -EREMOTEIO ? EXIT_REMOTE : EXIT_UNREACHABLE;
}

/* A connection as the options say: the Unix socket, or TLS with --host. An exit status. */
static int connect_hostd(struct grpc_client *c, const struct globals *g)
{
        int64_t ms = g->timeout_s > 0 ? (int64_t)g->timeout_s * 1000 : -1;
        grpc_client_init(c, ms);
        c->keepalive_s = g->keepalive_s;
        int r;
        if (g->host) {
                if (!g->cert || !g->key || !g->ca) {
                        fprintf(stderr,
                                "hostctl: --host %s needs --cert, --key and --ca (or "
                                "HOSTCTL_CERT, HOSTCTL_KEY and HOSTCTL_CA)\n",
                                g->host);
                        return EXIT_USAGE;
                }
                r = grpc_client_connect_tls(c, g->host, g->cert, g->key, g->ca);
                if (r < 0) {
                        fprintf(stderr, "hostctl: %s\n", c->error);
                        return r == -EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
                }
                return EXIT_OK;
        }
        r = grpc_client_connect_unix(c, g->socket_path);
        if (r < 0) {
                const char *hint = r == -ENOENT || r == -ECONNREFUSED ? " (is hostd running?)" : "";
                fprintf(stderr, "hostctl: %s%s\n", c->error, hint);
                return EXIT_UNREACHABLE;
        }
        return EXIT_OK;
}

static void client_donep(struct grpc_client *c) { grpc_client_done(c); }
#define _cleanup_client_ _cleanup_(client_donep)

/* The common options here, the command's own through its option(); -h prints its help. */
static int command_parse_options(struct invocation *inv, int argc, char **argv, bool *ret_help)
{
        const struct command *cmd = inv->command;
        int c;

        *ret_help = false;
        optind = 0; /* glibc: start over, re-reading the optstring's leading '+' */
        opterr = 0;
        while ((c = getopt_long(argc, argv, cmd->optstring, cmd->options, NULL)) >= 0) {
                if (c == 'h') {
                        fputs(cmd->help, stdout);
                        *ret_help = true;
                        return EXIT_OK;
                }
                if (c == '?' || c == ':')
                        return bad_option(inv->name, c, argv);
                int r = common_option(inv->g, inv->name, c, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                r = cmd->option ? cmd->option(inv, c, optarg) :
                                  usage_error(inv->name, "unknown option");
                if (r != EXIT_OK)
                        return r;
        }
        inv->args = argv + optind;
        inv->n_args = (size_t)(argc - optind);
        inv->dashdash = optind > 0 && strcmp(argv[optind - 1], "--") == 0;
        return EXIT_OK;
}

static int command_run_steps(struct invocation *inv, int argc, char **argv)
{
        const struct command *cmd = inv->command;
        bool help;
        int r = command_parse_options(inv, argc, argv, &help);
        if (r != EXIT_OK || help)
                return r;
        r = cmd->prepare ? cmd->prepare(inv) : EXIT_OK;
        if (r != EXIT_OK)
                return r;
        if (!cmd->connects)
                return cmd->run(inv, NULL);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, inv->g);
        if (r != EXIT_OK)
                return r;
        return cmd->run(inv, &c);
}

int command_invoke(const struct command *cmd, const char *name, struct globals *g, int argc,
                   char **argv)
{
        _cleanup_free_ void *state = NULL;
        if (cmd->state_size > 0) {
                state = malloc(cmd->state_size);
                if (!state) {
                        fprintf(stderr, "hostctl: out of memory\n");
                        return EXIT_REMOTE;
                }
                memcpy(state, cmd->state_init, cmd->state_size);
        }
        struct invocation inv = { .command = cmd, .name = name, .g = g, .state = state };
        int r = command_run_steps(&inv, argc, argv);
        if (cmd->done)
                cmd->done(&inv);
        return r;
}

const struct command *command_find(const struct command *const *table, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(table[i]->name, name) == 0)
                        return table[i];
        return NULL;
}

int command_no_args(struct invocation *inv)
{
        if (inv->n_args > 0)
                return usage_error(inv->name, "unexpected argument '%s'", inv->args[0]);
        return EXIT_OK;
}

int command_dyno_id(struct invocation *inv)
{
        if (inv->n_args == 0)
                return usage_error(inv->name, "missing dyno ID");
        if (inv->n_args > 1)
                return usage_error(inv->name, "unexpected argument '%s'", inv->args[1]);
        if (!*inv->args[0])
                return usage_error(inv->name, "empty dyno ID");
        return EXIT_OK;
}
