/* The flags of "hostctl start", which "hostctl run" takes too: the spec they make (a --spec
 * file, the flags over it, the words after "--" as the command), and the Start call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc-client.h"
#include "hostd.pb-c.h"
#include "options.h"

struct start_flags {
        const char *spec_file;
        const char *id, *name, *app, *size, *stack, *slug, *command;
        const char *stack_digest, *slug_digest, *stack_url, *slug_url;
        const char *release, *app_id, *slug_commit, *slug_description, *release_created_at;
        bool have_type, have_port, have_grace, have_boot;
        Hostd__V1__DynoType type;
        uint32_t port, grace, boot;
        char **env; /* "NAME=VALUE", pointers into argv */
        size_t n_env;
        char **drains; /* syslog drain URLs, pointers into argv */
        size_t n_drains;
};

#define START_LONG_OPTIONS                                                                         \
        { "spec", required_argument, NULL, OPT_SPEC }, { "id", required_argument, NULL, OPT_ID },  \
                { "name", required_argument, NULL, OPT_NAME },                                     \
                { "app", required_argument, NULL, OPT_APP },                                       \
                { "type", required_argument, NULL, OPT_TYPE },                                     \
                { "size", required_argument, NULL, OPT_SIZE },                                     \
                { "port", required_argument, NULL, OPT_PORT },                                     \
                { "stack", required_argument, NULL, OPT_STACK },                                   \
                { "slug", required_argument, NULL, OPT_SLUG },                                     \
                { "stack-digest", required_argument, NULL, OPT_STACK_DIGEST },                     \
                { "slug-digest", required_argument, NULL, OPT_SLUG_DIGEST },                       \
                { "stack-url", required_argument, NULL, OPT_STACK_URL },                           \
                { "slug-url", required_argument, NULL, OPT_SLUG_URL },                             \
                { "env", required_argument, NULL, OPT_ENV },                                       \
                { "log-drain", required_argument, NULL, OPT_LOG_DRAIN },                           \
                { "grace", required_argument, NULL, OPT_GRACE },                                   \
                { "boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT },                     \
                { "release", required_argument, NULL, OPT_RELEASE },                               \
                { "app-id", required_argument, NULL, OPT_APP_ID },                                 \
                { "slug-commit", required_argument, NULL, OPT_SLUG_COMMIT },                       \
                { "slug-description", required_argument, NULL, OPT_SLUG_DESCRIPTION },             \
                { "release-created-at", required_argument, NULL, OPT_RELEASE_CREATED_AT },         \
        {                                                                                          \
                "command", required_argument, NULL, OPT_COMMAND                                    \
        }

void start_flags_done(struct start_flags *f);
/* One of START_LONG_OPTIONS, c as getopt_long() returns it: EXIT_OK, or an exit status after
 * saying what is wrong. */
int start_option(struct start_flags *f, int c, const char *arg);
/* The spec: the --spec file (if any), the flags over it, words (when they came after "--") as
 * the command. EXIT_OK and *ret, or an exit status after saying what is wrong. */
int spec_from_args(const char *cmd, struct start_flags *f, char **words, size_t n_words,
                   bool dashdash, Hostd__V1__DynoSpec **ret);
/* Start a dyno of that spec. A negative errno, with hostd's message in c->error. */
int start_call(struct grpc_client *c, Hostd__V1__DynoSpec *spec, Hostd__V1__StartResponse **ret);
