/* The image store: stacks (base root filesystems) and slugs (the app, a tarball of /app),
 * identified by the sha256 of their tarball, unpacked once and shared read-only by every dyno
 * that uses them.
 *
 * Layout under the store's root (default /var/lib/hostd/images):
 *   <digest>/rootfs       the unpacked tree (a slug's holds app/ only)
 *   <digest>/meta         a hostd.store.ImageRecord (protobuf), written last
 *   .tmp-<digest>-<pid>/  an import in progress: removed at open, never renamed unless whole
 *   .lock-<digest>        flock()ed by the one process importing that digest
 * An image exists when <digest>/meta exists: the rename of the whole folder is what makes it
 * appear, so a crash at any point leaves either nothing or a complete image.
 *
 * Functions return 0 or a negative errno; those that can fail for a reason a user must read
 * also fill err (a message that names the image and, for unpacking, the entry). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum image_kind {
        IMAGE_KIND_STACK = 1, /* as hostd.v1.ImageKind */
        IMAGE_KIND_SLUG = 2,
};

struct image_limits {
        uint64_t max_compressed; /* bytes of the tarball as fetched */
        uint64_t max_unpacked;   /* bytes of regular file data once unpacked */
        uint64_t max_files;      /* entries */
};

struct image_info {
        char digest[65]; /* lower-case hex */
        enum image_kind kind;
        uint64_t size_bytes; /* unpacked file data */
        uint64_t files;
        int64_t imported_usec;
        int64_t last_used_usec;
};

struct image_store;

/* Open (creating it if needed) the store at root, and remove what interrupted imports left
 * (.tmp-* folders whose importer is gone). */
int image_store_open(const char *root, const struct image_limits *limits, struct image_store **ret);
void image_store_free(struct image_store *s);
const char *image_store_root(const struct image_store *s);
const struct image_limits *image_store_limits(const struct image_store *s);

/* 64 lower-case hex characters. */
bool image_digest_valid(const char *digest);

/* 0 and *info when the image is in the store, -ENOENT when not. */
int image_lookup(struct image_store *s, const char *digest, struct image_info *info);
/* "<root>/<digest>/rootfs", allocated. */
int image_rootfs_path(struct image_store *s, const char *digest, char **ret);
/* Record that a dyno starts with the image now (for gc's least-recently-used order). */
int image_touch(struct image_store *s, const char *digest);
/* Every image, sorted by digest; *ret is malloc'ed. */
int image_list(struct image_store *s, struct image_info **ret, size_t *ret_n);

/* Deleting an image's files can take seconds (tens of thousands of synced files): a daemon
 * that must not block asks remove and gc only to take images out of the store (an instant
 * rename to .tmp-rm-*), and runs image_store_sweep() elsewhere to delete what they left. */
void image_store_defer_deletes(struct image_store *s, bool defer);
int image_store_sweep(struct image_store *s);

/* Remove an image. in_use(digest, userdata) says whether a dyno (running or starting) uses
 * it: then -EBUSY and nothing changes. */
typedef bool (*image_in_use_t)(const char *digest, void *userdata);
int image_remove(struct image_store *s, const char *digest, image_in_use_t in_use, void *userdata,
                 char *err, size_t errlen);
/* Remove unused images, least recently used first, until the store's images add up to at
 * most budget bytes. The removed digests go to *ret_removed (a NULL-terminated strv), their
 * bytes to *ret_freed. */
int image_gc(struct image_store *s, uint64_t budget, image_in_use_t in_use, void *userdata,
             char ***ret_removed, uint64_t *ret_freed);

/* Import: fetch source (a local path, file://PATH, http:// or https:// URL), check that its
 * sha256 is digest, unpack it safely and add it to the store. Blocking: hostd runs it in a
 * child process. progress (may be NULL) is called as bytes arrive (total 0 when unknown).
 *
 * When another process is importing the same digest, waits for it (flock) and then finds the
 * image there: the work is done once. An image already present returns 0 at once.
 *
 * Refused, with err naming the entry: an absolute path, a ".." component, a symlink whose
 * target leads outside the image, a hard link to a path outside it or not yet unpacked, a
 * device node or FIFO in a slug, a slug entry outside app/, more data, files or compressed
 * bytes than the limits allow. setuid and setgid bits are stripped. A mismatch of the
 * digest, a failed download or a truncated archive leave nothing behind. */
typedef void (*image_progress_t)(uint64_t done, uint64_t total, void *userdata);
int image_import(struct image_store *s, const char *source, const char *digest,
                 enum image_kind kind, image_progress_t progress, void *userdata, char *err,
                 size_t errlen);

/* The parts of an import, for tests and tools. */

/* Copy source into the file fd, computing its sha256 (hex into digest_out); at most
 * max_bytes. -EFBIG past the limit, -EPROTO for an HTTP error status. */
int image_fetch(const char *source, int fd, uint64_t max_bytes, image_progress_t progress,
                void *userdata, char digest_out[65], char *err, size_t errlen);
/* Unpack the tarball (any compression libarchive reads) in archive_fd into the empty folder
 * dest, with the checks above. *ret_bytes and *ret_files count what was unpacked. The work is
 * done by a child process chroot()ed into dest (where the caller may chroot()), reaped before
 * this returns. It dies with the calling thread, and holds the caller's open files other than
 * folders until it ends (a lock the caller holds stays held that long). */
int image_unpack(int archive_fd, const char *dest, enum image_kind kind,
                 const struct image_limits *limits, uint64_t *ret_bytes, uint64_t *ret_files,
                 char *err, size_t errlen);

/* image_unpack()'s work in the calling process, without the child, its chroot() or its
 * dropped capabilities: the same checks of every entry, and libarchive's own check for
 * symlinks along each path (as image_unpack() does where chroot() is not allowed). For the
 * fuzzer, which must see a crash where it happens; never for a tarball from the wire. The
 * caller must ignore SIGPIPE (the decompressing thread writes to a pipe that the reader may
 * close early). */
int image_unpack_unconfined(int archive_fd, const char *dest, enum image_kind kind,
                            const struct image_limits *limits, uint64_t *ret_bytes,
                            uint64_t *ret_files, char *err, size_t errlen);

/* Composition of a dyno's root: the per-dyno writable layer. */

/* Make <layers_dir>/<id>/{upper,work,merged}, with upper/app owned by uid (the app's /app is
 * writable to it). -EEXIST when the folder is there. */
int layer_create(const char *layers_dir, const char *id, unsigned uid, char **ret_dir, char *err,
                 size_t errlen);
/* The overlayfs options for lower layers slug (may be NULL) over stack and the layer dir. */
int layer_mount_options(const char *stack, const char *slug, const char *layer_dir, char **ret);
/* Remove the layer folder (nothing mounted there: the mount lives in the dyno's namespace). */
int layer_remove(const char *layer_dir);
