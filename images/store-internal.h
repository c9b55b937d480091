/* What the image store's import (import.c, in the hostd-import helper) shares with the rest of
 * the store (store.c, in hostd). See store.c for the layout and the locking. */
#pragma once

#include <dirent.h>
#include <stdbool.h>

#include "images.h"
#include "store.pb-c.h"

#define DIGEST_LEN 64

struct image_store {
        char *root; /* absolute, symlinks resolved: it ends up in overlayfs options */
        int root_fd;
        struct image_limits limits;
        bool defer_deletes; /* remove and gc only rename; image_store_sweep() deletes */
};

/* "image <digest>: " in front of what err says. */
void store_err_prefix(char *err, size_t errlen, const char *digest);
int store_digest_invalid(const char *digest, char *err, size_t errlen);
/* The source as the record keeps it (a URL's credentials and query left out). */
char *store_source_for_record(const char *source);
int store_lock_take(int root_fd, const char *digest, bool wait, int *ret_fd);
void store_lock_release(int root_fd, const char *digest, int fd);
bool store_image_present(struct image_store *s, const char *digest);
int store_meta_write(int dfd, const Hostd__Store__ImageRecord *rec);
int store_root_dir_open(struct image_store *s, DIR **ret);
int store_rm_rf_at_root(struct image_store *s, const char *name);
int store_image_delete(struct image_store *s, const char *digest, int *ret_cleanup);
