/* A hostctl command as a row of a table, and the one way every command is run: its options
 * (the common ones and its own), a look at the words after them, the connection to hostd when
 * it needs one, then its call. A command file holds its rows, their help texts and handlers;
 * main.c lists the commands.
 *
 * The handlers return an exit status (exit-status.h), after saying on stderr what failed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "grpc-client.h"
#include "options.h"

struct command;

/* One run of a command. */
struct invocation {
        const struct command *command;
        const char *name; /* "ps", "images rm": for messages */
        struct globals *g;
        char **args; /* the words after the options */
        size_t n_args;
        bool dashdash; /* the words came after "--" */
        void *state;   /* the command's own: a copy of its state_init */
};

struct command {
        const char *name;
        const char *help; /* for -h, --help */
        /* getopt_long()'s: ":h" and the command's short options; with a '+' first, options
         * end at the first word (for a command that takes a command line of its own). */
        const char *optstring;
        const struct option *options; /* COMMON_LONG_OPTIONS, then the command's own */
        const void *state_init;
        size_t state_size;
        /* One of the command's own options. */
        int (*option)(struct invocation *inv, int c, const char *arg);
        /* The words after the options, and whatever comes before hostd is reached. */
        int (*prepare)(struct invocation *inv);
        /* The work: c is connected to hostd when connects, NULL otherwise. */
        int (*run)(struct invocation *inv, struct grpc_client *c);
        /* Free what the state holds. */
        void (*done)(struct invocation *inv);
        bool connects;
};

#define COMMAND_STATE(init) .state_init = &(init), .state_size = sizeof(init)

/* The command of that name in table, or NULL. */
const struct command *command_find(const struct command *const *table, size_t n, const char *name);
/* Run cmd with argv (argv[0]: its name as typed), as name in messages. */
int command_invoke(const struct command *cmd, const char *name, struct globals *g, int argc,
                   char **argv);

/* prepare() of a command that takes no words. */
int command_no_args(struct invocation *inv);
/* prepare() of a command that takes one dyno ID: then inv->args[0]. */
int command_dyno_id(struct invocation *inv);

/* After a call failed: hostd's message (escaped) on stderr, and the exit status: 1 when hostd
 * answered with an error status (-EREMOTEIO), else 3 (unreachable, the conversation broke, no
 * reply in time). */
int call_failed(const struct grpc_client *c, int r, const char *what);

/* Any unpacked message: Hostd__V1__GetDynoResponse *resp and the like. */
static inline void message_freep(void *p)
{
        ProtobufCMessage **m = p;
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_message_ _cleanup_(message_freep)

/* A unary call of hostd.v1.Hostd: req is a request message, *ret gets the Response type's. */
#define UNARY(c, method, req, Response, ret)                                                       \
        grpc_unary((c), (method), &(req)->base, &Response##__descriptor, (ProtobufCMessage **)(ret))
