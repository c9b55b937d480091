/* The image store: content-addressed folders under one root, each made whole in a temporary
 * folder and renamed into place, so that an image is either entirely there or not at all.
 *
 * Every name read from the store is opened relative to the root's descriptor with O_NOFOLLOW
 * (or looked at with AT_SYMLINK_NOFOLLOW): a symlink planted in the store never leads the
 * store, running as root, to read, change or delete anything outside it.
 *
 * Locking: an import of digest D holds an exclusive flock on .lock-D for its whole run, and
 * whatever is removed on D's behalf at open (a dead importer's .tmp-D-PID, a D without meta)
 * is removed under that lock too. Lock files are unlinked by whoever holds them when done;
 * store_lock_take() checks after flock() that the name still leads to the locked file, which is what
 * makes that unlink safe. Removal (remove, gc) takes no lock: one rename makes the image
 * disappear at once, and the files go afterwards under a name nobody else looks for. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "images.h"
#include "store-internal.h"
#include "store.pb-c.h"
#include "util.h"

/* A record is a few hundred bytes; anything much larger is not one of ours. */
#define META_MAX (64 * 1024)

static inline void image_store_freep(struct image_store **s) { image_store_free(*s); }

static inline void image_record_freep(Hostd__Store__ImageRecord **r)
{
        if (*r)
                hostd__store__image_record__free_unpacked(*r, NULL);
}

bool image_digest_valid(const char *digest)
{
        if (!digest)
                return false;
        size_t i = 0;
        for (; digest[i]; i++)
                if (!((digest[i] >= '0' && digest[i] <= '9') ||
                      (digest[i] >= 'a' && digest[i] <= 'f')))
                        return false;
        return i == DIGEST_LEN;
}

/* "image <first 12 hex>: " before a message a lower part (fetch, unpack) wrote. */
void store_err_prefix(char *err, size_t errlen, const char *digest)
{
        if (!err || errlen == 0)
                return;
        _cleanup_free_ char *inner = strdup(err);
        if (!inner)
                return;
        (void)set_error(err, errlen, 0, "image %.12s: %s", digest, inner);
}

int store_digest_invalid(const char *digest, char *err, size_t errlen)
{
        char shown[100];
        return set_error(err, errlen, -EINVAL,
                         "image %s: not a sha256 digest (64 lower-case hex characters)",
                         escape_value(digest ? digest : "", 70, shown, sizeof shown));
}

/* The source as the record keeps it: without "user:password@", which is a credential, and
 * without a query, which is often one too (a signed URL's token). */
char *store_source_for_record(const char *source)
{
        const char *host = strstr(source, "://");
        if (!host)
                return strdup(source);
        host += 3;
        size_t authority = strcspn(host, "/?#");
        const char *at = memchr(host, '@', authority);
        const char *from = at ? at + 1 : host;
        char *r = NULL;
        if (asprintf_safe(&r, "%.*s%.*s", (int)(host - source), source, (int)strcspn(from, "?#"),
                          from) < 0)
                return NULL;
        return r;
}

static int lock_name(const char *digest, char name[static 8 + DIGEST_LEN])
{
        return snprintf(name, 8 + DIGEST_LEN, ".lock-%s", digest) < 8 + DIGEST_LEN ? 0 : -EINVAL;
}

/* Take D's lock: wait for it, or -EAGAIN when busy and !wait. */
int store_lock_take(int root_fd, const char *digest, bool wait, int *ret_fd)
{
        char name[8 + DIGEST_LEN];
        int r = lock_name(digest, name);
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_close_ int fd = openat(
                        root_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                if (fd < 0)
                        return -errno;
                if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                }
                /* The holder before us may have unlinked the file while we waited: a lock on
                 * a file no longer under that name excludes nobody who opens the name now. */
                struct stat held, named;
                if (fstat(fd, &held) < 0)
                        return -errno;
                if (fstatat(root_fd, name, &named, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                if (held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
        }
}

/* Unlinked while still held: see store_lock_take() for why that is safe. */
void store_lock_release(int root_fd, const char *digest, int fd)
{
        char name[8 + DIGEST_LEN];
        if (lock_name(digest, name) == 0)
                (void)unlinkat(root_fd, name, 0);
        if (fd >= 0)
                close(fd);
}

static int image_dir_open(struct image_store *s, const char *digest)
{
        int fd = openat(s->root_fd, digest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                /* A symlink or a file under a digest's name is not an image. */
                return errno == ENOTDIR || errno == ELOOP ? -ENOENT : -errno;
        return fd;
}

/* An image exists when its folder holds meta: the rename that makes it appear comes last. */
static bool image_dir_complete(int dfd)
{
        struct stat st;
        return fstatat(dfd, "meta", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

bool store_image_present(struct image_store *s, const char *digest)
{
        _cleanup_close_ int dfd = image_dir_open(s, digest);
        return dfd >= 0 && image_dir_complete(dfd);
}

static int meta_read(int dfd, const char *digest, Hostd__Store__ImageRecord **ret)
{
        _cleanup_close_ int fd = openat(dfd, "meta", O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ELOOP ? -EBADMSG : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size > META_MAX)
                return -EBADMSG;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_full_fd(fd, &buf, &len);
        if (r < 0)
                return r;
        Hostd__Store__ImageRecord *rec =
                hostd__store__image_record__unpack(NULL, len, (const uint8_t *)buf);
        if (!rec)
                return -EBADMSG;
        if (!rec->digest || strcmp(rec->digest, digest) != 0) {
                hostd__store__image_record__free_unpacked(rec, NULL);
                return -EBADMSG;
        }
        *ret = rec;
        return 0;
}

int store_meta_write(int dfd, const Hostd__Store__ImageRecord *rec)
{
        size_t len = hostd__store__image_record__get_packed_size(rec);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        hostd__store__image_record__pack(rec, buf);
        return write_file_atomic_at(dfd, "meta", buf, len, 0644);
}

static void info_from_record(const Hostd__Store__ImageRecord *rec, struct image_info *info)
{
        *info = (struct image_info){
                .kind = (enum image_kind)rec->kind,
                .size_bytes = rec->size_bytes,
                .files = rec->files,
                .imported_usec = rec->imported_usec,
                .last_used_usec = rec->last_used_usec,
        };
        snprintf(info->digest, sizeof info->digest, "%s", rec->digest);
}

int store_root_dir_open(struct image_store *s, DIR **ret)
{
        int fd = openat(s->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = d;
        return 0;
}

/* Delete an image's folder, whole or not, by its name under the root. */
int store_rm_rf_at_root(struct image_store *s, const char *name)
{
        /* The top of rootfs has no write bits (see import_build): give them back so that the
         * deletion also works when the store does not run as root. */
        _cleanup_close_ int dfd =
                openat(s->root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0) {
                _cleanup_close_ int rfd =
                        openat(dfd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                struct stat st;
                if (rfd >= 0 && fstat(rfd, &st) == 0)
                        (void)fchmod(rfd, (st.st_mode & 07777) | 0700);
        }
        _cleanup_free_ char *path = strjoin3(s->root, "/", name);
        if (!path)
                return -ENOMEM;
        return rm_rf(path);
}

/* "PREFIX<digest>-<pid>": the digest and pid, or false. */
static bool parse_tmp_name(const char *name, const char *prefix, char digest[65], pid_t *ret_pid)
{
        if (!startswith(name, prefix))
                return false;
        const char *p = name + strlen(prefix);
        if (strlen(p) < DIGEST_LEN + 2 || p[DIGEST_LEN] != '-')
                return false;
        memcpy(digest, p, DIGEST_LEN);
        digest[DIGEST_LEN] = 0;
        uint32_t pid;
        if (!image_digest_valid(digest) || safe_atou32(p + DIGEST_LEN + 1, &pid) < 0 || pid == 0 ||
            pid > INT_MAX)
                return false;
        *ret_pid = (pid_t)pid;
        return true;
}

/* What interrupted imports and removals left. Best effort: what cannot go now goes at the next
 * open, and nothing here keeps the store from opening. */
static void store_clean(struct image_store *s)
{
        _cleanup_closedir_ DIR *d = NULL;
        if (store_root_dir_open(s, &d) < 0)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                const char *name = de->d_name;
                char digest[65];
                pid_t pid;
                int lock_fd = -1;

                if (image_digest_valid(name)) {
                        struct stat st;
                        if (fstatat(s->root_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        if (!S_ISDIR(st.st_mode)) {
                                (void)unlinkat(s->root_fd, name, 0); /* never one of ours */
                                continue;
                        }
                        if (store_image_present(s, name))
                                continue;
                        /* Under the lock: an importer of the digest may be about to rename a
                         * whole image to that name. */
                        if (store_lock_take(s->root_fd, name, false, &lock_fd) < 0)
                                continue;
                        if (!store_image_present(s, name))
                                (void)store_rm_rf_at_root(s, name);
                        store_lock_release(s->root_fd, name, lock_fd);
                } else if (parse_tmp_name(name, ".tmp-rm-", digest, &pid)) {
                        /* No lock for removals: the name is dead with its remover. */
                        if (kill(pid, 0) < 0 && errno == ESRCH)
                                (void)store_rm_rf_at_root(s, name);
                } else if (parse_tmp_name(name, ".tmp-", digest, &pid)) {
                        /* The lock free means its importer is gone, whatever its pid now is. */
                        if (store_lock_take(s->root_fd, digest, false, &lock_fd) < 0)
                                continue;
                        (void)store_rm_rf_at_root(s, name);
                        store_lock_release(s->root_fd, digest, lock_fd);
                } else if (startswith(name, ".lock-") && image_digest_valid(name + 6)) {
                        /* Left by a killed importer; a free lock file is just a name. */
                        if (store_lock_take(s->root_fd, name + 6, false, &lock_fd) == 0)
                                store_lock_release(s->root_fd, name + 6, lock_fd);
                }
        }
}

int image_store_open(const char *root, const struct image_limits *limits, struct image_store **ret)
{
        if (!root || !*root || !limits || !ret)
                return -EINVAL;
        int r = mkdir_p(root, 0755);
        if (r < 0)
                return r;

        _cleanup_(image_store_freep) struct image_store *s = NULL;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->root_fd = -1;
        s->limits = *limits;
        s->root = realpath(root, NULL);
        if (!s->root)
                return -errno;
        s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->root_fd < 0)
                return -errno;

        store_clean(s);
        *ret = TAKE_PTR(s);
        return 0;
}

void image_store_free(struct image_store *s)
{
        if (!s)
                return;
        if (s->root_fd >= 0)
                close(s->root_fd);
        free(s->root);
        free(s);
}

const char *image_store_root(const struct image_store *s) { return s->root; }

const struct image_limits *image_store_limits(const struct image_store *s) { return &s->limits; }

int image_lookup(struct image_store *s, const char *digest, struct image_info *info)
{
        if (!image_digest_valid(digest))
                return -EINVAL;
        _cleanup_close_ int dfd = image_dir_open(s, digest);
        if (dfd < 0)
                return dfd;
        _cleanup_(image_record_freep) Hostd__Store__ImageRecord *rec = NULL;
        int r = meta_read(dfd, digest, &rec);
        if (r < 0)
                return r;
        if (info)
                info_from_record(rec, info);
        return 0;
}

int image_rootfs_path(struct image_store *s, const char *digest, char **ret)
{
        if (!image_digest_valid(digest))
                return -EINVAL;
        return asprintf_safe(ret, "%s/%s/rootfs", s->root, digest);
}

int image_touch(struct image_store *s, const char *digest)
{
        if (!image_digest_valid(digest))
                return -EINVAL;
        _cleanup_close_ int dfd = image_dir_open(s, digest);
        if (dfd < 0)
                return dfd;
        _cleanup_(image_record_freep) Hostd__Store__ImageRecord *rec = NULL;
        int r = meta_read(dfd, digest, &rec);
        if (r < 0)
                return r;
        rec->last_used_usec = now_realtime_usec();
        /* Written through the folder's descriptor: if the image is removed meanwhile, the
         * record goes with it rather than landing in a new folder of the same name. */
        return store_meta_write(dfd, rec);
}

static int info_cmp_digest(const void *a, const void *b)
{
        return strcmp(((const struct image_info *)a)->digest,
                      ((const struct image_info *)b)->digest);
}

int image_list(struct image_store *s, struct image_info **ret, size_t *ret_n)
{
        _cleanup_closedir_ DIR *d = NULL;
        int r = store_root_dir_open(s, &d);
        if (r < 0)
                return r;
        _cleanup_free_ struct image_info *v = NULL;
        size_t n = 0, cap = 0;
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return -errno;
                        break;
                }
                if (!image_digest_valid(de->d_name))
                        continue;
                struct image_info info;
                /* Removed meanwhile, or a folder without a readable record: not an image. */
                if (image_lookup(s, de->d_name, &info) < 0)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        struct image_info *nv = reallocarray(v, ncap, sizeof *v);
                        if (!nv)
                                return -ENOMEM;
                        v = nv;
                        cap = ncap;
                }
                v[n++] = info;
        }
        if (n > 0)
                qsort(v, n, sizeof *v, info_cmp_digest);
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

/* Take an image out of the store: after the rename it is gone for everyone, whatever happens
 * to its files. *ret_cleanup says whether they could be deleted now (else: at the next open). */
int store_image_delete(struct image_store *s, const char *digest, int *ret_cleanup)
{
        char name[16 + DIGEST_LEN + 12];
        snprintf(name, sizeof name, ".tmp-rm-%s-%d", digest, (int)getpid());
        /* Ours by pid: an earlier removal of ours whose deletion failed. */
        (void)store_rm_rf_at_root(s, name);
        if (renameat(s->root_fd, digest, s->root_fd, name) < 0)
                return -errno;
        *ret_cleanup = s->defer_deletes ? 0 : store_rm_rf_at_root(s, name);
        return 0;
}

void image_store_defer_deletes(struct image_store *s, bool defer) { s->defer_deletes = defer; }

int image_store_sweep(struct image_store *s)
{
        /* A descriptor of its own: a dup would share the root's directory offset. */
        int fd = openat(s->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        int ret = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!startswith(de->d_name, ".tmp-rm-"))
                        continue;
                int r = store_rm_rf_at_root(s, de->d_name);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

int image_remove(struct image_store *s, const char *digest, image_in_use_t in_use, void *userdata,
                 char *err, size_t errlen)
{
        if (!image_digest_valid(digest))
                return store_digest_invalid(digest, err, errlen);
        int r = image_lookup(s, digest, NULL);
        if (r == -ENOENT) {
                return set_error(err, errlen, r, "image %.12s: not in the store", digest);
        }
        if (r < 0) {
                return set_error(err, errlen, r, "image %.12s: read its record: %s", digest,
                                 strerror(-r));
        }
        if (in_use && in_use(digest, userdata)) {
                return set_error(err, errlen, -EBUSY, "image %.12s is used by a dyno", digest);
        }
        int cleanup = 0;
        r = store_image_delete(s, digest, &cleanup);
        if (r == -ENOENT) {
                return set_error(err, errlen, r, "image %.12s: not in the store", digest);
        }
        if (r < 0) {
                return set_error(err, errlen, r, "image %.12s: remove: %s", digest, strerror(-r));
        }
        if (cleanup < 0) {
                return set_error(
                        err, errlen, cleanup,
                        "image %.12s: removed from the store, but deleting its files failed (%s); "
                        "retried when the store is next opened",
                        digest, strerror(-cleanup));
        }
        return 0;
}

static int info_cmp_lru(const void *a, const void *b)
{
        const struct image_info *x = *(struct image_info *const *)a,
                                *y = *(struct image_info *const *)b;
        if (x->last_used_usec != y->last_used_usec)
                return x->last_used_usec < y->last_used_usec ? -1 : 1;
        return strcmp(x->digest, y->digest);
}

int image_gc(struct image_store *s, uint64_t budget, image_in_use_t in_use, void *userdata,
             char ***ret_removed, uint64_t *ret_freed)
{
        _cleanup_free_ struct image_info *v = NULL;
        size_t n = 0;
        int r = image_list(s, &v, &n);
        if (r < 0)
                return r;

        uint64_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += v[i].size_bytes;

        _cleanup_free_ struct image_info **lru = calloc(n + 1, sizeof *lru);
        _cleanup_strv_free_ char **removed = calloc(n + 1, sizeof *removed);
        if (!lru || !removed)
                return -ENOMEM;
        size_t nc = 0, nr = 0;
        for (size_t i = 0; i < n; i++)
                if (!in_use || !in_use(v[i].digest, userdata))
                        lru[nc++] = &v[i];
        if (nc > 0)
                qsort(lru, nc, sizeof *lru, info_cmp_lru);

        uint64_t freed = 0;
        for (size_t i = 0; i < nc && total > budget; i++) {
                int cleanup;
                r = store_image_delete(s, lru[i]->digest, &cleanup);
                if (r == -ENOENT) {
                        /* Removed by someone else since the listing. */
                        total -= lru[i]->size_bytes;
                        continue;
                }
                if (r < 0)
                        continue; /* it stays; the others may still bring the total down */
                removed[nr] = strdup(lru[i]->digest);
                if (!removed[nr])
                        return -ENOMEM;
                nr++;
                total -= lru[i]->size_bytes;
                freed += lru[i]->size_bytes;
        }
        if (ret_removed)
                *ret_removed = TAKE_PTR(removed);
        if (ret_freed)
                *ret_freed = freed;
        return 0;
}
