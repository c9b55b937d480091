/* The image import's unpack (images/unpack.c) on an arbitrary tarball.
 *
 * image_unpack() does its work in a child that chroot()s into the destination and drops its
 * capabilities: a crash there would be a child's exit status, not a finding, and a fork per input
 * is slow. The target runs the same work in process instead, through
 * image_unpack_unconfined(): every entry goes through the same checks (names, '..', symlinks and
 * hard links, devices, slug layout, limits) and libarchive writes it, with its own symlink check
 * standing in for the chroot. The first byte chooses a stack or a slug; the rest is the tarball,
 * in any compression libarchive reads, given as a memfd.
 *
 * Each input unpacks into base/dest, next to base/outside/canary, and is then checked against
 * what the checks promise, by walking what was written (whether the unpack succeeded or not):
 * nothing outside dest changed; no device node, socket, setuid or setgid file; no FIFO in a
 * slug, whose only top-level entry is app; no symlink whose relative target climbs out of dest;
 * no hard link to anything outside dest. Then dest is removed. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "images.h"

static char base[PATH_MAX], dest[PATH_MAX], outside[PATH_MAX], canary[PATH_MAX];
static struct stat canary_st;

static const struct image_limits limits = {
        .max_compressed = 1 << 20,
        .max_unpacked = 1 << 20,
        .max_files = 256,
};

static int chmod_dir(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        /* Unpacked folders may be mode 0: a user running the fuzzer could not empty them. */
        if (flag == FTW_D)
                (void)chmod(path, 0700);
        return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        if (remove(path) < 0)
                FUZZ_ASSERT(!"remove an unpacked file");
        return 0;
}

static void remove_dest(const char *path)
{
        FUZZ_ASSERT(nftw(path, chmod_dir, 16, FTW_PHYS) == 0);
        FUZZ_ASSERT(nftw(path, remove_one, 16, FTW_PHYS | FTW_DEPTH) == 0);
}

static void cleanup(void)
{
        if (base[0]) {
                struct stat st;
                if (lstat(dest, &st) == 0)
                        remove_dest(dest);
                unlink(canary);
                rmdir(outside);
                rmdir(base);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* The decompressing thread writes to a pipe the reader may close early. */
        signal(SIGPIPE, SIG_IGN);
        const char *tmp = getenv("TMPDIR");
        snprintf(base, sizeof base, "%s/fuzz-unpack-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        FUZZ_ASSERT(mkdtemp(base));
        atexit(cleanup);
        snprintf(dest, sizeof dest, "%s/dest", base);
        snprintf(outside, sizeof outside, "%s/outside", base);
        snprintf(canary, sizeof canary, "%s/canary", outside);
        FUZZ_ASSERT(mkdir(outside, 0755) == 0);
        int fd = open(canary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        FUZZ_ASSERT(fd >= 0);
        FUZZ_ASSERT(write(fd, "canary\n", 7) == 7);
        close(fd);
        FUZZ_ASSERT(lstat(canary, &canary_st) == 0);
        return 0;
}

/* What the walk of dest learns. */
static struct {
        enum image_kind kind;
        size_t dest_len;
        size_t entries;
        struct {
                dev_t dev;
                ino_t ino;
                nlink_t nlink, seen;
        } links[512];
        size_t n_links;
} walk;

/* Whether a relative symlink target stays inside dest, resolved lexically from the folder of
 * the link at rel (relative to dest): an implementation of its own, not unpack.c's. */
static bool target_inside(const char *rel, const char *target)
{
        long depth = 0;
        const char *slash = strrchr(rel, '/');
        if (slash)
                for (const char *p = rel; p < slash; p++)
                        depth += *p == '/';
        if (slash)
                depth++; /* components of the link's folder */
        char *copy = strdup(target), *save = NULL;
        FUZZ_ASSERT(copy);
        bool inside = true;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (strcmp(c, "..") == 0) {
                        if (--depth < 0) {
                                inside = false;
                                break;
                        }
                } else if (strcmp(c, ".") != 0)
                        depth++;
        }
        free(copy);
        return inside;
}

static int check_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        const char *rel = path + walk.dest_len;
        if (*rel == '/')
                rel++;
        if (ftw->level == 0)
                return 0; /* dest itself */
        walk.entries++;
        if (flag == FTW_DNR || flag == FTW_NS) {
                fprintf(stderr, "cannot walk %s\n", path);
                abort();
        }
        if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) || S_ISSOCK(st->st_mode)) {
                fprintf(stderr, "a device node or socket was unpacked: %s\n", rel);
                abort();
        }
        if (st->st_mode & (S_ISUID | S_ISGID) && !S_ISDIR(st->st_mode)) {
                fprintf(stderr, "setuid or setgid kept: %s (0%o)\n", rel, st->st_mode);
                abort();
        }
        if (walk.kind == IMAGE_KIND_SLUG) {
                if (ftw->level == 1 && strcmp(rel, "app") != 0) {
                        fprintf(stderr, "a slug entry outside app/: %s\n", rel);
                        abort();
                }
                FUZZ_ASSERT(!S_ISFIFO(st->st_mode));
        }
        if (S_ISLNK(st->st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlink(path, target, sizeof target - 1);
                FUZZ_ASSERT(n > 0);
                target[n] = 0;
                if (target[0] != '/' && !target_inside(rel, target)) {
                        fprintf(stderr, "symlink %s -> %s leads outside the image\n", rel, target);
                        abort();
                }
        }
        if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
                size_t i = 0;
                while (i < walk.n_links &&
                       !(walk.links[i].dev == st->st_dev && walk.links[i].ino == st->st_ino))
                        i++;
                if (i == walk.n_links) {
                        FUZZ_ASSERT(walk.n_links < ELEMENTSOF(walk.links));
                        walk.links[i].dev = st->st_dev;
                        walk.links[i].ino = st->st_ino;
                        walk.links[i].nlink = st->st_nlink;
                        walk.links[i].seen = 0;
                        walk.n_links++;
                }
                walk.links[i].seen++;
        }
        return 0;
}

static void check_outside(void)
{
        struct stat st;
        FUZZ_ASSERT(lstat(canary, &st) == 0);
        if (st.st_nlink != 1 || st.st_size != canary_st.st_size ||
            st.st_mode != canary_st.st_mode || st.st_uid != canary_st.st_uid ||
            st.st_mtim.tv_sec != canary_st.st_mtim.tv_sec ||
            st.st_mtim.tv_nsec != canary_st.st_mtim.tv_nsec) {
                fprintf(stderr, "the canary outside the image changed\n");
                abort();
        }
        /* base holds dest and outside, outside the canary: nothing else appeared. */
        static const char *const dirs[] = { base, outside };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                DIR *d = opendir(dirs[i]);
                FUZZ_ASSERT(d);
                for (struct dirent *de; (de = readdir(d));) {
                        const char *n = de->d_name;
                        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
                                continue;
                        if (i == 0 ? strcmp(n, "dest") == 0 || strcmp(n, "outside") == 0 :
                                     strcmp(n, "canary") == 0)
                                continue;
                        fprintf(stderr, "%s/%s appeared outside the image\n", dirs[i], n);
                        abort();
                }
                closedir(d);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > limits.max_compressed)
                return 0;
        enum image_kind kind = data[0] & 1 ? IMAGE_KIND_SLUG : IMAGE_KIND_STACK;
        data++, size--;

        int fd = memfd_create("tarball", MFD_CLOEXEC);
        FUZZ_ASSERT(fd >= 0);
        for (size_t off = 0; off < size;) {
                ssize_t n = write(fd, data + off, size - off);
                FUZZ_ASSERT(n > 0);
                off += (size_t)n;
        }
        FUZZ_ASSERT(mkdir(dest, 0755) == 0);

        char err[1024] = "";
        uint64_t bytes = 0, files = 0;
        int r = image_unpack_unconfined(fd, dest, kind, &limits, &bytes, &files, err, sizeof err);
        close(fd);
        if (r < 0)
                FUZZ_ASSERT(err[0]);
        else {
                FUZZ_ASSERT(bytes <= limits.max_unpacked);
                FUZZ_ASSERT(files <= limits.max_files);
        }

        memset(&walk, 0, sizeof walk);
        walk.kind = kind;
        walk.dest_len = strlen(dest);
        FUZZ_ASSERT(nftw(dest, check_one, 16, FTW_PHYS) == 0);
        for (size_t i = 0; i < walk.n_links; i++)
                if (walk.links[i].seen != walk.links[i].nlink) {
                        fprintf(stderr, "a file has %ju links, %ju of them in the image\n",
                                (uintmax_t)walk.links[i].nlink, (uintmax_t)walk.links[i].seen);
                        abort();
                }
        if (r == 0)
                FUZZ_ASSERT(walk.entries <= limits.max_files);
        check_outside();
        remove_dest(dest);
        return 0;
}
