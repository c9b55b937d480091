/* The options every command takes, and the checks of option values. */
#include <inttypes.h>

#include "exit-status.h"
#include "options.h"

const struct option common_options[] = { COMMON_LONG_OPTIONS, {} };

int usage_error(const char *cmd, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "hostctl: %s%s", cmd ? cmd : "", cmd ? ": " : "");
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'hostctl %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
        return EXIT_USAGE;
}

/* A number of seconds, a port...: digits only, in 0..max, or a usage error naming the flag. */
int parse_uint_flag(const char *cmd, const char *flag, const char *arg, uint32_t max, uint32_t *ret)
{
        uint64_t v;
        int r = safe_atou64(arg, &v);
        if (r == -ERANGE || (r == 0 && v > max))
                return usage_error(cmd, "%s: '%s' is out of range (0..%" PRIu32 ")", flag, arg,
                                   max);
        if (r < 0)
                return usage_error(cmd, "%s: '%s' is not a number (expected 0..%" PRIu32 ")", flag,
                                   arg, max);
        *ret = (uint32_t)v;
        return EXIT_OK;
}

int bad_option(const char *cmd, int c, char **argv)
{
        const char *opt = argv[optind - 1];
        if (c == ':')
                return usage_error(cmd, "option '%s' needs a value", opt);
        if (optopt && optopt < 0x100)
                return usage_error(cmd, "unknown option '-%c'", optopt);
        return usage_error(cmd, "unknown option '%s'", opt);
}

/* The options every command takes: 1 when c was one of them, 0 when it was not, -1 after
 * printing a usage error. */
int common_option(struct globals *g, const char *cmd, int c, const char *arg)
{
        switch (c) {
        case OPT_SOCKET:
                if (!*arg)
                        return usage_error(cmd, "--socket: empty path"), -1;
                g->socket_path = arg;
                return 1;
        case OPT_HOST:
        case OPT_CERT:
        case OPT_KEY:
        case OPT_CA: {
                static const char *const names[] = { "--host", "--cert", "--key", "--ca" };
                if (!*arg)
                        return usage_error(cmd, "%s: empty value", names[c - OPT_HOST]), -1;
                const char **field[] = { &g->host, &g->cert, &g->key, &g->ca };
                *field[c - OPT_HOST] = arg;
                return 1;
        }
        case OPT_JSON: g->json = true; return 1;
        case OPT_TIMEOUT:
                if (parse_uint_flag(cmd, "--timeout", arg, 86400 * 365, &g->timeout_s) != EXIT_OK)
                        return -1;
                return 1;
        }
        return 0;
}
