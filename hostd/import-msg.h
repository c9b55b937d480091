/* What hostd-import writes on its pipe (fd 3) to hostd's importer: records under PIPE_BUF, so
 * that each arrives whole. Progress any number of times, then one result. */
#pragma once

#include <stdint.h>

struct import_msg {
        uint8_t type; /* IMPORT_MSG_* */
        int32_t error;
        uint64_t done, total;
        char text[480];
};
enum { IMPORT_MSG_PROGRESS = 1, IMPORT_MSG_RESULT = 2 };

/* The pipe's number in hostd-import. */
#define IMPORT_MSG_FD 3
