/* A dyno's log lines on disk, so that a restart of hostd keeps the lines it had already
 * read. Records are appended; the file is rewritten from the ring when it grows past twice
 * the ring. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "logs.h"

/* Append one line. 0 or negative errno. */
int logfile_append(int fd, int64_t time_usec, enum log_source source, const char *text, size_t len);
/* Push every record of the file at path into ring; *ret_lines counts them. A torn last
 * record (hostd killed mid-write) is ignored. Missing file: 0 lines. */
int logfile_load(const char *path, struct log_ring *ring, size_t *ret_lines);
/* Replace the file name in dirfd by the ring's lines, atomically; returns a new descriptor
 * open for appending to it. */
int logfile_rewrite(int dirfd, const char *name, const struct log_ring *ring);
