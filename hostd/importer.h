/* Image imports, off the event loop: each runs image_import() in a child process that
 * reports progress and its result over a pipe. One job per digest: a second request for a
 * digest being imported joins the job already running. */
#pragma once

#include <stdint.h>

#include "images.h"

struct manager;
struct import_watcher;

/* Whoever waits for a job (an ImportImage call): progress as bytes arrive, then done, once, with
 * error 0 and the image, or a negative errno (-EBADMSG, -EINVAL, -EFBIG: the source is bad) and
 * msg; free, when the watcher goes (after done, or at importer_unwatch, or hostd's end). */
struct import_watch_ops {
        void (*progress)(void *userdata, uint64_t done, uint64_t total);
        void (*done)(void *userdata, int error, const char *msg, const struct image_info *info);
        void (*free)(void *userdata);
};

/* Import source as digest unless a job for it runs already, which this joins. ops (may be
 * NULL) watch it; *ret_watcher (may be NULL) is the watcher, for importer_unwatch. When the job
 * ends, manager_image_ready() is called with its result too. */
int importer_start(struct manager *m, const char *source, const char *digest, enum image_kind kind,
                   const struct import_watch_ops *ops, void *userdata,
                   struct import_watcher **ret_watcher);
/* The watcher is no longer interested (its client went): ops->free, the job goes on. */
void importer_unwatch(struct import_watcher *w);
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
