/* The image store's import: fetch a tarball, check its digest, unpack it into a temporary
 * folder of the store and rename that into place (store.c has the layout and the locking).
 * Only the hostd-import helper links this, with libcurl and libarchive: hostd itself maps
 * neither, nor their libraries. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "images.h"
#include "store-internal.h"
#include "util.h"

/* Remove what a dead importer of digest left: called under its lock, so every .tmp-<digest>-*
 * is dead, and a <digest> without meta is a broken leftover in the way of the rename. */
static void import_clean(struct image_store *s, const char *digest)
{
        char prefix[8 + DIGEST_LEN];
        snprintf(prefix, sizeof prefix, ".tmp-%s-", digest);
        _cleanup_closedir_ DIR *d = NULL;
        if (store_root_dir_open(s, &d) == 0) {
                struct dirent *de;
                while ((de = readdir(d)))
                        if (startswith(de->d_name, prefix))
                                (void)store_rm_rf_at_root(s, de->d_name);
        }
        struct stat st;
        if (fstatat(s->root_fd, digest, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (S_ISDIR(st.st_mode))
                        (void)store_rm_rf_at_root(s, digest);
                else
                        (void)unlinkat(s->root_fd, digest, 0);
        }
}

/* The tarball's file: unnamed, so that it goes away with its descriptor whatever happens. */
static int archive_open(int dfd)
{
        int fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
                return fd >= 0 ? fd : -errno;
        fd = openat(dfd, "archive", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        (void)unlinkat(dfd, "archive", 0);
        return fd;
}

/* Fetch, check, unpack and record into the folder tmp, then rename it to digest. */
static int import_build(struct image_store *s, const char *tmp, const char *source,
                        const char *digest, enum image_kind kind, image_progress_t progress,
                        void *userdata, char *err, size_t errlen)
{
        _cleanup_close_ int dfd =
                openat(s->root_fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
                int r = -errno;
                return set_error(err, errlen, r, "image %.12s: open %s: %s", digest, tmp,
                                 strerror(-r));
        }
        _cleanup_close_ int afd = archive_open(dfd);
        if (afd < 0) {
                return set_error(err, errlen, afd,
                                 "image %.12s: create the download file in %s/%s: %s", digest,
                                 s->root, tmp, strerror(-afd));
        }

        char got[65];
        int r = image_fetch(source, afd, s->limits.max_compressed, progress, userdata, got, err,
                            errlen);
        if (r < 0) {
                store_err_prefix(err, errlen, digest);
                return r;
        }
        if (strcmp(got, digest) != 0) {
                return set_error(err, errlen, -EBADMSG,
                                 "image %.12s: sha256 mismatch: expected %s, got %s", digest,
                                 digest, got);
        }

        if (lseek(afd, 0, SEEK_SET) < 0 || mkdirat(dfd, "rootfs", 0755) < 0) {
                r = -errno;
                return set_error(err, errlen, r, "image %.12s: prepare %s/%s/rootfs: %s", digest,
                                 s->root, tmp, strerror(-r));
        }
        _cleanup_free_ char *rootfs = NULL;
        r = asprintf_safe(&rootfs, "%s/%s/rootfs", s->root, tmp);
        if (r < 0) {
                return set_error(err, errlen, r, "image %.12s: %s", digest, strerror(-r));
        }
        uint64_t bytes = 0, files = 0;
        r = image_unpack(afd, rootfs, kind, &s->limits, &bytes, &files, err, errlen);
        if (r < 0) {
                store_err_prefix(err, errlen, digest);
                return r;
        }
        close(TAKE_FD(afd)); /* the tarball's space back before the rename */

        /* Nothing writes under rootfs once it is unpacked: dynos see it only as an overlay
         * lower layer, and the store itself only reads it. Taking the write bits off its top is
         * a guard against stray writes by anything not running as root, and a sign to a
         * reader; root passes it, so the guarantee is the code, not the mode. */
        {
                _cleanup_close_ int rfd =
                        openat(dfd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                struct stat st;
                if (rfd < 0 || fstat(rfd, &st) < 0 || fchmod(rfd, st.st_mode & 07555) < 0) {
                        r = -errno;
                        return set_error(err, errlen, r, "image %.12s: make rootfs read-only: %s",
                                         digest, strerror(-r));
                }
        }

        _cleanup_free_ char *recorded = store_source_for_record(source);
        if (!recorded) {
                return set_error(err, errlen, -ENOMEM, "image %.12s: %s", digest, strerror(ENOMEM));
        }
        Hostd__Store__ImageRecord rec = HOSTD__STORE__IMAGE_RECORD__INIT;
        rec.digest = (char *)digest;
        rec.kind = (uint32_t)kind;
        rec.size_bytes = bytes;
        rec.files = files;
        rec.imported_usec = now_realtime_usec();
        rec.last_used_usec = rec.imported_usec;
        rec.source = recorded;
        r = store_meta_write(dfd, &rec);
        if (r < 0) {
                return set_error(err, errlen, r, "image %.12s: write its record: %s", digest,
                                 strerror(-r));
        }

        /* The tree must be on disk before the rename is: after a crash the image is either
         * whole or absent. One syncfs() rather than an fsync() per unpacked file. */
        if (syncfs(dfd) < 0) {
                r = -errno;
                return set_error(err, errlen, r, "image %.12s: sync: %s", digest, strerror(-r));
        }
        if (renameat(s->root_fd, tmp, s->root_fd, digest) < 0) {
                r = -errno;
                return set_error(err, errlen, r, "image %.12s: rename %s into place: %s", digest,
                                 tmp, strerror(-r));
        }
        if (fsync(s->root_fd) < 0) {
                r = -errno;
                int cleanup;
                (void)store_image_delete(s, digest, &cleanup);
                return set_error(err, errlen, r, "image %.12s: sync %s: %s", digest, s->root,
                                 strerror(-r));
        }
        return 0;
}

int image_import(struct image_store *s, const char *source, const char *digest,
                 enum image_kind kind, image_progress_t progress, void *userdata, char *err,
                 size_t errlen)
{
        if (!image_digest_valid(digest))
                return store_digest_invalid(digest, err, errlen);
        if (kind != IMAGE_KIND_STACK && kind != IMAGE_KIND_SLUG) {
                return set_error(err, errlen, -EINVAL, "image %.12s: unknown kind %d", digest,
                                 (int)kind);
        }
        if (!source || !*source) {
                return set_error(err, errlen, -EINVAL, "image %.12s: no source to import it from",
                                 digest);
        }
        if (store_image_present(s, digest))
                return 0;

        int lock_fd = -1;
        int r = store_lock_take(s->root_fd, digest, true, &lock_fd);
        if (r < 0) {
                return set_error(err, errlen, r, "image %.12s: lock %s/.lock-%s: %s", digest,
                                 s->root, digest, strerror(-r));
        }
        /* Whoever held the lock before us may have imported it. */
        if (store_image_present(s, digest)) {
                store_lock_release(s->root_fd, digest, lock_fd);
                return 0;
        }
        import_clean(s, digest);

        char tmp[8 + DIGEST_LEN + 12];
        snprintf(tmp, sizeof tmp, ".tmp-%s-%d", digest, (int)getpid());
        if (mkdirat(s->root_fd, tmp, 0755) < 0) {
                r = -errno;
                (void)set_error(err, errlen, 0, "image %.12s: create %s/%s: %s", digest, s->root,
                                tmp, strerror(-r));
        } else {
                r = import_build(s, tmp, source, digest, kind, progress, userdata, err, errlen);
                if (r < 0)
                        (void)store_rm_rf_at_root(s, tmp);
        }
        store_lock_release(s->root_fd, digest, lock_fd);
        return r;
}
