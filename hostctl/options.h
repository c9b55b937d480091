/* The options every hostctl command takes (--socket, --host, --json, --timeout...), and the
 * checks of option values, each failure a usage error that names the command and the flag. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "util.h"

#define TIMEOUT_DEFAULT_S 30

struct globals {
        const char *socket_path;
        const char *host; /* ADDR:PORT of listen-tls; NULL: the socket */
        const char *cert, *key, *ca;
        bool json;
        uint32_t timeout_s;   /* 0: wait forever */
        uint32_t keepalive_s; /* HOSTCTL_KEEPALIVE: pings on a quiet follow; 0: none */
};

/* The values getopt_long() returns for long options without a short form, one for each across
 * the commands. */
enum {
        OPT_SOCKET = 0x100,
        OPT_HOST,
        OPT_CERT,
        OPT_KEY,
        OPT_CA,
        OPT_JSON,
        OPT_TIMEOUT,
        OPT_VERSION,
        OPT_GRACE,
        OPT_NO_TRUNC,
        OPT_ID,
        OPT_NAME,
        OPT_APP,
        OPT_TYPE,
        OPT_SIZE,
        OPT_PORT,
        OPT_STACK,
        OPT_SLUG,
        OPT_STACK_DIGEST,
        OPT_SLUG_DIGEST,
        OPT_STACK_URL,
        OPT_SLUG_URL,
        OPT_ENV,
        OPT_LOG_DRAIN,
        OPT_BOOT_TIMEOUT,
        OPT_COMMAND,
        OPT_RELEASE,
        OPT_APP_ID,
        OPT_SLUG_COMMIT,
        OPT_SLUG_DESCRIPTION,
        OPT_RELEASE_CREATED_AT,
        OPT_SPEC,
        OPT_SHA256,
        OPT_KIND,
        OPT_BUDGET,
        OPT_SINCE,
        OPT_DEADLINE,
        OPT_INTERVAL,
};

/* Kept by hand: clang-format cannot tell that this macro is a list of initializers. */
/* clang-format off */
#define COMMON_LONG_OPTIONS                                                                        \
        { "socket", required_argument, NULL, OPT_SOCKET },                                         \
        { "host", required_argument, NULL, OPT_HOST },                                             \
        { "cert", required_argument, NULL, OPT_CERT },                                             \
        { "key", required_argument, NULL, OPT_KEY },                                               \
        { "ca", required_argument, NULL, OPT_CA },                                                 \
        { "json", no_argument, NULL, OPT_JSON },                                                   \
        { "timeout", required_argument, NULL, OPT_TIMEOUT },                                       \
        { "help", no_argument, NULL, 'h' }
/* clang-format on */

#define COMMON_HELP                                                                                \
        "      --socket PATH      hostd's socket (default " HOSTD_SOCKET_PATH_DEFAULT ")\n"        \
        "      --host ADDR:PORT   hostd's TLS listener instead, with --cert, --key, --ca\n"        \
        "      --json             print JSON\n"                                                    \
        "      --timeout SECONDS  wait for hostd this long (default 30; 0: forever)\n"             \
        "  -h, --help             show this help\n"

/* The options of a command that has none of its own. */
extern const struct option common_options[];

/* "hostctl: CMD: message" and "Try 'hostctl CMD --help'." on stderr (no CMD: hostctl's own
 * options). Returns EXIT_USAGE. */
_printf_(2, 3) int usage_error(const char *cmd, const char *fmt, ...);
/* A number of seconds, a port...: digits only, in 0..max, or a usage error naming the flag.
 * EXIT_OK or EXIT_USAGE. */
int parse_uint_flag(const char *cmd, const char *flag, const char *arg, uint32_t max,
                    uint32_t *ret);
/* The usage error for what getopt_long() returned as c, '?' or ':'. */
int bad_option(const char *cmd, int c, char **argv);
/* The options every command takes: 1 when c was one of them, 0 when it was not, -1 after
 * printing a usage error. */
int common_option(struct globals *g, const char *cmd, int c, const char *arg);
