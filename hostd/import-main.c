/* hostd-import: one image import for hostd's importer (importer.c), in a process of its own.
 *
 *   hostd-import ROOT KIND DIGEST SOURCE MAX_COMPRESSED MAX_UNPACKED MAX_FILES
 *
 * ROOT is the image store, KIND "stack" or "slug", the limits in bytes and entries (hostd's
 * configuration). Progress and the result go out as struct import_msg records on fd 3
 * (import-msg.h); the exit status is 0 whenever a result was written, the import's outcome
 * being in it.
 *
 * A program of its own, not a fork of hostd, so that hostd does not map libcurl, libarchive
 * and their forty-odd libraries: every start's clone3 copies each mapping hostd has. It is
 * also a process that never held hostd's memory (its TLS keys among it) while it talks to a
 * remote server and unpacks what came from there. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "images.h"
#include "import-msg.h"
#include "util.h"

static void send_msg(const struct import_msg *msg)
{
        (void)!write(IMPORT_MSG_FD, msg, sizeof *msg);
}

static void on_progress(uint64_t done, uint64_t total, void *userdata)
{
        struct import_msg msg = { .type = IMPORT_MSG_PROGRESS, .done = done, .total = total };
        send_msg(&msg);
}

static int parse_u64(const char *s, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || *s == '-')
                return -EINVAL;
        *ret = v;
        return 0;
}

int main(int argc, char **argv)
{
        struct import_msg msg = { .type = IMPORT_MSG_RESULT };
        struct image_limits lim;
        enum image_kind kind = 0;
        if (argc == 8) {
                if (strcmp(argv[2], "stack") == 0)
                        kind = IMAGE_KIND_STACK;
                else if (strcmp(argv[2], "slug") == 0)
                        kind = IMAGE_KIND_SLUG;
        }
        if (argc != 8 || !kind || parse_u64(argv[5], &lim.max_compressed) < 0 ||
            parse_u64(argv[6], &lim.max_unpacked) < 0 || parse_u64(argv[7], &lim.max_files) < 0) {
                fprintf(stderr,
                        "usage: hostd-import ROOT stack|slug DIGEST SOURCE MAX_COMPRESSED "
                        "MAX_UNPACKED MAX_FILES (run by hostd, result on fd %d)\n",
                        IMPORT_MSG_FD);
                return 2;
        }
        /* A hostd that exits leaves its imports to finish on their own (importer_free). */
        signal(SIGPIPE, SIG_DFL);

        struct image_store *store = NULL;
        msg.error = image_store_open(argv[1], &lim, &store);
        if (msg.error < 0)
                snprintf(msg.text, sizeof msg.text, "open the image store %s: %s", argv[1],
                         strerror(-msg.error));
        else
                msg.error = image_import(store, argv[4], argv[3], kind, on_progress, NULL, msg.text,
                                         sizeof msg.text);
        image_store_free(store);
        send_msg(&msg);
        return 0;
}
