/* The exit statuses hostctl's help promises. */
#pragma once

enum {
        EXIT_OK = 0,
        EXIT_REMOTE = 1,      /* hostd answered with an error */
        EXIT_USAGE = 2,       /* bad command line or input file */
        EXIT_UNREACHABLE = 3, /* no hostd, or the conversation broke */
};
