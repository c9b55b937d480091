/* A dyno's log lines on disk, so that a restart of hostd keeps the lines it had already
 * read. Lines are buffered and written once per batch; the file is rewritten from the ring
 * when it would hold more than twice the ring, which bounds it, and a batch larger than the
 * ring is never written line by line at all. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logs.h"

struct logfile {
        int fd;       /* open for appending; -1: not kept on disk */
        size_t lines; /* records in the file */
        char *buf;    /* records not yet written */
        size_t len, cap;
        size_t pending; /* records in buf */
        bool rewrite;   /* more came than the ring keeps: rewrite the file from the ring */
};

void logfile_init(struct logfile *f);
void logfile_close(struct logfile *f);
/* Make dirfd/name hold exactly the ring's lines and open it for appending. */
int logfile_open(struct logfile *f, int dirfd, const char *name, const struct log_ring *ring);
/* Open an existing file for appending, knowing it holds lines records. */
int logfile_open_append(struct logfile *f, int dirfd, const char *name, size_t lines);
/* Queue a line (already pushed into the ring) for the next flush. */
void logfile_add(struct logfile *f, int64_t time_usec, enum log_source source, const char *text,
                 size_t len, size_t ring_max);
/* Write what is queued. On error the file is closed (f->fd -1) and the error returned. */
int logfile_flush(struct logfile *f, int dirfd, const char *name, const struct log_ring *ring,
                  size_t ring_max);
/* Push every record of the file at path into ring; *ret_lines counts them. A torn last
 * record (hostd killed mid-write) is ignored. Missing file: 0 lines. */
int logfile_load(const char *path, struct log_ring *ring, size_t *ret_lines);
