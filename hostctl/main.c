/* hostctl: the operator's command line for hostd, a gRPC client of hostd.v1.Hostd over its Unix
 * socket or its TLS listener. Here: hostctl's own options and the table of commands. */
#include <getopt.h>

#include "command.h"
#include "commands.h"
#include "config-build.h"
#include "exit-status.h"
#include "options.h"
#include "output.h"

/* In the order of the help. */
static const struct command *const commands[] = {
        &command_ps,   &command_inspect, &command_start,   &command_stop,    &command_restart,
        &command_logs, &command_run,     &command_exec,    &command_events,  &command_top,
        &command_host, &command_drain,   &command_undrain, &command_version, &command_images,
};

static const char main_help[] =
        "Usage: hostctl [OPTIONS] COMMAND [ARGS...]\n"
        "\n"
        "Operate the dynos of a host through hostd's API, the gRPC service hostd.v1.Hostd:\n"
        "on hostd's Unix socket, or with --host on its TLS listener.\n"
        "\n"
        "Commands:\n"
        "  ps                       list the dynos\n"
        "  inspect ID               show every field of a dyno\n"
        "  start [FLAGS] [-- COMMAND...]\n"
        "                           start a dyno (from flags and/or --spec FILE)\n"
        "  stop ID [--grace SECONDS]\n"
        "                           stop a dyno and show how it ended\n"
        "  restart ID [--grace SECONDS]\n"
        "                           restart a dyno\n"
        "  logs ID [--lines N] [-f] show (or follow) a dyno's log lines\n"
        "  run [-i] [-t] [FLAGS] -- COMMAND...\n"
        "                           run a one-off dyno attached to this terminal\n"
        "  exec [-i] [-t] ID -- COMMAND...\n"
        "                           run a command inside a running dyno\n"
        "  events [--since N] [-f]  show (or follow) the host's numbered events\n"
        "  top [--interval N] [-n N]\n"
        "                           show the running dynos' CPU, memory, pids and network,\n"
        "                           refreshed\n"
        "  host                     show the host's capacity and dyno sizes\n"
        "  drain [--deadline S]     take no new dynos (then stop the running ones after S)\n"
        "  undrain                  take new dynos again\n"
        "  version                  show the versions of hostctl and hostd\n"
        "  images ls [--no-trunc]   list the stacks and slugs in hostd's image store\n"
        "  images import SOURCE --sha256 HEX --kind stack|slug\n"
        "                           fetch, verify and unpack a stack or slug tarball\n"
        "  images rm DIGEST         remove an image no dyno uses\n"
        "  images gc [--budget BYTES]\n"
        "                           remove unused images, least recently used first\n"
        "\n"
        "Options (also accepted after the command):\n"
        "      --socket PATH        hostd's socket (default " HOSTD_SOCKET_PATH_DEFAULT ";\n"
        "                           the environment variable HOSTCTL_SOCKET sets it too)\n"
        "      --host ADDR:PORT     talk to hostd's TLS listener (listen-tls) instead of the\n"
        "                           socket: TLS 1.3 with ALPN h2, this client's certificate\n"
        "                           --cert FILE and its key --key FILE (PEM), hostd's\n"
        "                           certificate checked against the CAs of --ca FILE and\n"
        "                           against ADDR (an IP address or a DNS name it must\n"
        "                           carry). The environment variables HOSTCTL_HOST,\n"
        "                           HOSTCTL_CERT, HOSTCTL_KEY and HOSTCTL_CA set the same;\n"
        "                           the options win\n"
        "      --json               print JSON mirroring the API's messages (field names in\n"
        "                           snake_case, enums as lower-case strings without their\n"
        "                           prefix, \"up\" for DYNO_STATE_UP, times as microseconds\n"
        "                           since the epoch)\n"
        "      --timeout SECONDS    wait this long to connect, and for each reply: the\n"
        "                           deadline (grpc-timeout) of each call that expects one\n"
        "                           (default 30; 0: forever). Follows (events -f, logs -f,\n"
        "                           exec, run, top after its first refresh) have none: they\n"
        "                           wait as long as it takes, and hostctl pings a quiet hostd\n"
        "                           (every HOSTCTL_KEEPALIVE seconds, default 300; 0: never)\n"
        "                           to notice one that is gone\n"
        "  -h, --help               show this help; \"hostctl COMMAND --help\" for a command\n"
        "      --version            show hostctl's version\n"
        "\n"
        "Exit status: 0 success; 1 hostd answered with an error (or writing the output\n"
        "failed); 2 usage error; 3 hostd could not be reached, the connection broke, or no\n"
        "reply came in time.\n";

/* The defaults, and HOSTCTL_* from the environment. EXIT_OK or EXIT_USAGE. */
static int globals_from_environment(struct globals *g)
{
        *g = (struct globals){ .socket_path = HOSTD_SOCKET_PATH_DEFAULT,
                               .timeout_s = TIMEOUT_DEFAULT_S,
                               .keepalive_s = GRPC_KEEPALIVE_DEFAULT_S };
        const char *env[] = { "HOSTCTL_SOCKET", "HOSTCTL_HOST", "HOSTCTL_CERT", "HOSTCTL_KEY",
                              "HOSTCTL_CA" };
        const char **field[] = { &g->socket_path, &g->host, &g->cert, &g->key, &g->ca };
        for (size_t i = 0; i < ELEMENTSOF(env); i++) {
                const char *v = getenv(env[i]);
                if (v && *v)
                        *field[i] = v;
        }
        const char *ka = getenv("HOSTCTL_KEEPALIVE");
        if (ka && *ka && safe_atou32(ka, &g->keepalive_s) < 0) {
                fprintf(stderr, "hostctl: HOSTCTL_KEEPALIVE '%s': expected seconds (0: no pings)\n",
                        ka);
                return EXIT_USAGE;
        }
        return EXIT_OK;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        struct globals g;
        int c, r = globals_from_environment(&g);
        if (r != EXIT_OK)
                return r;

        opterr = 0;
        /* '+': the first word that is not an option is the command; what follows is its. */
        while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) >= 0) {
                if (c == 'h') {
                        fputs(main_help, stdout);
                        return finish_output(EXIT_OK);
                }
                if (c == OPT_VERSION) {
                        printf("hostctl %s\n", HOSTD_VERSION);
                        return finish_output(EXIT_OK);
                }
                if (c == '?' || c == ':')
                        return bad_option(NULL, c, argv);
                if (common_option(&g, NULL, c, optarg) < 0)
                        return EXIT_USAGE;
        }
        if (optind >= argc)
                return usage_error(NULL, "missing command");

        const char *name = argv[optind];
        const struct command *cmd = command_find(commands, ELEMENTSOF(commands), name);
        if (!cmd)
                return usage_error(NULL, "unknown command '%s'", name);
        return finish_output(command_invoke(cmd, name, &g, argc - optind, argv + optind));
}
