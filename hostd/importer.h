/* Image imports, off the event loop: each runs image_import() in a hostd-import process
 * (import-main.c) that reports progress and its result over a pipe. One job per digest: a second request for a
 * digest being imported joins the job already running. */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "images.h"

struct importer;
struct import_watcher;

/* What the owner hears of every job, watched or not (the dynos that wait for an image):
 * progress as bytes arrive, and the end: error 0 (the image is in the store) or a negative
 * errno with msg. The job is gone by the time ready is called. */
struct importer_hooks {
        void (*progress)(void *userdata, const char *digest, uint64_t done, uint64_t total);
        void (*ready)(void *userdata, const char *digest, int error, const char *msg);
};

/* Imports into store, on the loop e, each in a hostd-import process (exe_fd, held open by
 * the caller; -1: every import fails with -ENOENT). hooks (may be NULL) and userdata outlive
 * the importer. */
int importer_new(sd_event *e, struct image_store *store, int exe_fd,
                 const struct importer_hooks *hooks, void *userdata, struct importer **ret);
/* Stop following every job (hostd is exiting; the children finish on their own), their
 * watchers told nothing more but freed. */
void importer_free(struct importer *im);

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
 * ends, the hooks' ready is called with its result too. */
int importer_start(struct importer *im, const char *source, const char *digest,
                   enum image_kind kind, const struct import_watch_ops *ops, void *userdata,
                   struct import_watcher **ret_watcher);
/* The watcher is no longer interested (its client went): ops->free, the job goes on. */
void importer_unwatch(struct import_watcher *w);
/* Whether a job for digest is running. */
bool importer_busy(struct importer *im, const char *digest);
/* Delete, in a child process, the files of images that remove and gc took out of the store
 * (see image_store_defer_deletes()): the loop never waits for a slow disk. */
void importer_sweep(struct importer *im);
