/* Image imports, off the event loop: each runs image_import() in a child process that
 * reports progress and its result over a pipe. One job per digest: a second request for a
 * digest being imported joins the job already running. */
#pragma once

#include <stdint.h>

#include "images.h"

struct manager;
struct conn;

/* Import source as digest unless the store has it. conn/req_id (conn may be NULL) get
 * ImageImportProgress responses and, at the end, an ImageImportReply or an error. When the
 * job ends, manager_image_ready() is called with its result. */
int importer_start(struct manager *m, const char *source, const char *digest, enum image_kind kind,
                   struct conn *conn, uint64_t req_id);
/* Whether a job for digest is running. */
bool importer_busy(struct manager *m, const char *digest);
/* Delete, in a child process, the files of images that remove and gc took out of the store
 * (see image_store_defer_deletes()): the loop never waits for a slow disk. */
void importer_sweep(struct manager *m);

/* Stop following every job (hostd is exiting); the children finish on their own. */
void importer_free_all(struct manager *m);

/* Called by the importer as bytes arrive, for the dynos that wait for the image. */
void manager_image_progress(struct manager *m, const char *digest, uint64_t done, uint64_t total);

/* Called by the importer when a job ends: error 0 (the image is in the store) or a negative
 * errno with msg. */
void manager_image_ready(struct manager *m, const char *digest, int error, const char *msg);
