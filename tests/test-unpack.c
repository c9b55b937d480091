/* Unit tests for images/unpack.c: one crafted tarball per malicious case, each checked for
 * what it must not have done outside dest, and the happy paths of a stack and a slug. Run as
 * root (CI does): owners are restored only then. */
#include "images.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "util.h"
#include "check.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

/* One entry of a crafted tarball. Zero fields take defaults: a regular file, mode 0644 (0755
 * for a folder), root's, dated T0. */
struct ent {
        const char *name;
        mode_t type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFBLK, AE_IFIFO */
        mode_t perm;
        const char *data;
        int64_t size; /* declared size (zeros) when data is NULL */
        const char *symlink;
        const char *hardlink;
        unsigned major, minor;
        int64_t uid, gid;
        time_t mtime;
};

#define T0 1600000000

static char base[] = "/tmp/test-unpack-XXXXXX";
static char outside[sizeof(base) + 16], sentinel[sizeof(base) + 32];
static struct stat etc_passwd;
static int n_dests, n_tars;

static const struct image_limits big_limits = {
        .max_compressed = 1ULL << 40,
        .max_unpacked = 1ULL << 40,
        .max_files = 1000000,
};

static int write_tar_filter(const char *path, const struct ent *ents, size_t n, int filter)
{
        struct archive *a = archive_write_new();
        static const char zeros[64 * 1024];
        int r = 0;

        if (!a)
                return -ENOMEM;
        archive_write_set_format_pax_restricted(a);
        if (filter != ARCHIVE_FILTER_NONE && archive_write_add_filter(a, filter) != ARCHIVE_OK)
                r = -EIO;
        if (r == 0 && archive_write_open_filename(a, path) != ARCHIVE_OK)
                r = -EIO;
        for (size_t i = 0; r == 0 && i < n; i++) {
                const struct ent *x = &ents[i];
                struct archive_entry *e = archive_entry_new();
                mode_t type = x->type ? x->type : AE_IFREG;
                int64_t size = 0;

                archive_entry_set_pathname(e, x->name);
                archive_entry_set_filetype(e, type);
                archive_entry_set_perm(e, x->perm ? x->perm : type == AE_IFDIR ? 0755 : 0644);
                archive_entry_set_uid(e, x->uid);
                archive_entry_set_gid(e, x->gid);
                archive_entry_set_mtime(e, x->mtime ? x->mtime : T0, 0);
                if (x->symlink)
                        archive_entry_set_symlink(e, x->symlink);
                if (x->hardlink)
                        archive_entry_set_hardlink(e, x->hardlink);
                if (type == AE_IFCHR || type == AE_IFBLK)
                        archive_entry_set_rdev(e, makedev(x->major, x->minor));
                if (type == AE_IFREG && !x->hardlink)
                        size = x->data ? (int64_t)strlen(x->data) : x->size;
                archive_entry_set_size(e, size);
                if (archive_write_header(a, e) != ARCHIVE_OK)
                        r = -EIO;
                if (r == 0 && x->data && size > 0 &&
                    archive_write_data(a, x->data, (size_t)size) != (la_ssize_t)size)
                        r = -EIO;
                for (int64_t left = x->data ? 0 : size; r == 0 && left > 0;) {
                        size_t k = left < (int64_t)sizeof(zeros) ? (size_t)left : sizeof(zeros);
                        if (archive_write_data(a, zeros, k) != (la_ssize_t)k)
                                r = -EIO;
                        left -= (int64_t)k;
                }
                if (r < 0)
                        fprintf(stderr, "crafting %s: %s\n", x->name, archive_error_string(a));
                archive_entry_free(e);
        }
        if (archive_write_close(a) != ARCHIVE_OK && r == 0)
                r = -EIO;
        archive_write_free(a);
        return r;
}

/* A new tarball under base/tars, its path in a static buffer of its own. */
static const char *tar_path(const char *suffix)
{
        static char paths[64][PATH_MAX];
        char *p = paths[n_tars++ % 64];
        snprintf(p, PATH_MAX, "%s/tars/%d%s", base, n_tars, suffix);
        return p;
}

static const char *craft(const struct ent *ents, size_t n, bool gzip)
{
        const char *p = tar_path(gzip ? ".tar.gz" : ".tar");
        int r = write_tar_filter(p, ents, n, gzip ? ARCHIVE_FILTER_GZIP : ARCHIVE_FILTER_NONE);
        CHECK(r == 0);
        return p;
}

static const char *new_dest(void)
{
        static char paths[64][PATH_MAX];
        char *p = paths[n_dests++ % 64];
        snprintf(p, PATH_MAX, "%s/dest-%d", base, n_dests);
        if (mkdir(p, 0755) < 0)
                fprintf(stderr, "mkdir %s: %m\n", p);
        return p;
}

static int unpack(const char *tar, const char *dest, enum image_kind kind,
                  const struct image_limits *limits, uint64_t *bytes, uint64_t *files, char *err,
                  size_t errlen)
{
        _cleanup_close_ int fd = open(tar, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return image_unpack(fd, dest, kind, limits, bytes, files, err, errlen);
}

/* Unpack a crafted tarball into a fresh dest; the error message to err. */
static int unpack_ents(const struct ent *ents, size_t n, enum image_kind kind,
                       const struct image_limits *limits, const char **ret_dest, char *err,
                       size_t errlen)
{
        const char *tar = craft(ents, n, false);
        const char *dest = new_dest();
        if (ret_dest)
                *ret_dest = dest;
        return unpack(tar, dest, kind, limits ? limits : &big_limits, NULL, NULL, err, errlen);
}

static bool exists_in(const char *dest, const char *name)
{
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dest, name);
        return lstat(p, &st) == 0;
}

static bool stat_in(const char *dest, const char *name, struct stat *st)
{
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dest, name);
        return lstat(p, st) == 0;
}

static bool content_is(const char *path, const char *want)
{
        _cleanup_free_ char *s = NULL;
        size_t len;
        if (read_full_file(path, &s, &len) < 0)
                return false;
        return len == strlen(want) && memcmp(s, want, len) == 0;
}

static bool content_in_is(const char *dest, const char *name, const char *want)
{
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dest, name);
        return content_is(p, want);
}

/* What a user would check after a refused tarball: the files outside dest are as they were,
 * and nothing new appeared beside dest. */
static bool outside_intact(void)
{
        struct stat st, pw;
        bool ok = true;

        if (!content_is(sentinel, "original\n") || lstat(sentinel, &st) < 0 || st.st_nlink != 1 ||
            !S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0644) {
                fprintf(stderr, "  the sentinel outside dest changed\n");
                ok = false;
        }
        if (lstat(outside, &st) < 0 || (st.st_mode & 07777) != 0755 || st.st_uid != 0) {
                fprintf(stderr, "  the folder outside dest changed\n");
                ok = false;
        }
        if (stat("/etc/passwd", &pw) < 0 || pw.st_ino != etc_passwd.st_ino ||
            pw.st_nlink != etc_passwd.st_nlink || pw.st_size != etc_passwd.st_size ||
            pw.st_mtim.tv_sec != etc_passwd.st_mtim.tv_sec ||
            pw.st_mtim.tv_nsec != etc_passwd.st_mtim.tv_nsec) {
                fprintf(stderr, "  /etc/passwd changed\n");
                ok = false;
        }

        DIR *d = opendir(outside);
        int n = 0;
        for (struct dirent *de; d && (de = readdir(d));)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        n++;
        if (d)
                closedir(d);
        if (n != 1) {
                fprintf(stderr, "  new files in the folder outside dest\n");
                ok = false;
        }

        d = opendir(base);
        for (struct dirent *de; d && (de = readdir(d));)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                    strcmp(de->d_name, "outside") != 0 && strcmp(de->d_name, "tars") != 0 &&
                    !startswith(de->d_name, "dest-")) {
                        fprintf(stderr, "  %s appeared beside dest\n", de->d_name);
                        ok = false;
                }
        if (d)
                closedir(d);
        return ok;
}

static bool has(const char *err, const char *part)
{
        if (strstr(err, part))
                return true;
        fprintf(stderr, "  error '%s' lacks '%s'\n", err, part);
        return false;
}

/* A refused tarball: the errno, the message naming the entry and the cause, and nothing
 * written outside dest. */
#define CHECK_REFUSED(r, want, err, entry, cause)                                                  \
        do {                                                                                       \
                CHECK((r) == (want));                                                              \
                CHECK(has(err, "entry '" entry "'"));                                              \
                CHECK(has(err, cause));                                                            \
                CHECK(outside_intact());                                                           \
        } while (0)

static void test_stack(void)
{
        const struct ent ents[] = {
                { "./", AE_IFDIR },
                { "./bin/", AE_IFDIR, .mtime = T0 + 1 },
                { "./bin/busybox", .perm = 0755, .data = "#!busybox\n", .mtime = T0 + 2 },
                { "./bin/sh", AE_IFLNK, .symlink = "/bin/busybox" },
                { "./bin/ls", .hardlink = "./bin/busybox" },
                { "./etc/", AE_IFDIR },
                { "./etc/passwd", .data = "root:x:0:0::/root:/bin/sh\n" },
                { "./etc/ro/", AE_IFDIR, .perm = 0555, .mtime = T0 + 3 },
                { "./etc/ro/file", .perm = 0444, .data = "ro\n" },
                { "./home/dyno/", AE_IFDIR, .perm = 0700, .uid = 1000, .gid = 1001 },
                { "./home/dyno/.profile", .perm = 0600, .data = "x\n", .uid = 1000, .gid = 1001 },
                { "./lib", AE_IFLNK, .symlink = "usr/lib" },
                { "./usr/lib/", AE_IFDIR },
                { "usr//lib///x.so", .data = "elf\n" },
                { "./usr/bin/up", AE_IFLNK, .symlink = "../../bin/busybox" },
                { "./usr/bin/su", .perm = 04755, .data = "su\n" },
                { "./usr/bin/wall", .perm = 02755, .data = "wall\n" },
                { "./tmp/", AE_IFDIR, .perm = 01777 },
                { "./run/fifo", AE_IFIFO, .perm = 0600 },
                { "./dev/null", AE_IFCHR, .perm = 0666, .major = 1, .minor = 3 },
        };
        const char *tar = craft(ents, ELEMENTSOF(ents), true);
        const char *dest = new_dest();
        uint64_t bytes = 0, files = 0;
        char err[512] = "", link[PATH_MAX];
        struct stat st, st2;
        ssize_t n;

        CHECK(unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, &bytes, &files, err, sizeof err) ==
              0);
        CHECK(err[0] == 0);
        CHECK(bytes == strlen("#!busybox\n") + strlen("root:x:0:0::/root:/bin/sh\n") +
                               strlen("ro\n") + strlen("x\n") + strlen("elf\n") + strlen("su\n") +
                               strlen("wall\n"));
        CHECK(files == ELEMENTSOF(ents) - 2); /* not the root, not dev/null */

        CHECK(stat_in(dest, "bin", &st) && S_ISDIR(st.st_mode) && st.st_mtim.tv_sec == T0 + 1);
        CHECK(stat_in(dest, "bin/busybox", &st) && S_ISREG(st.st_mode) &&
              (st.st_mode & 07777) == 0755 && st.st_mtim.tv_sec == T0 + 2 && st.st_nlink == 2);
        CHECK(content_in_is(dest, "bin/busybox", "#!busybox\n"));
        CHECK(stat_in(dest, "bin/ls", &st2) && st2.st_ino == st.st_ino);

        snprintf(link, sizeof link, "%s/bin/sh", dest);
        char target[PATH_MAX];
        n = readlink(link, target, sizeof target - 1);
        CHECK(n == (ssize_t)strlen("/bin/busybox") && memcmp(target, "/bin/busybox", n) == 0);
        snprintf(link, sizeof link, "%s/lib", dest);
        n = readlink(link, target, sizeof target - 1);
        CHECK(n == 7 && memcmp(target, "usr/lib", 7) == 0);
        CHECK(content_in_is(dest, "lib/x.so", "elf\n")); /* through the relative symlink */
        CHECK(content_in_is(dest, "usr/bin/up", "#!busybox\n"));

        CHECK(stat_in(dest, "etc/passwd", &st) && (st.st_mode & 07777) == 0644 &&
              st.st_mtim.tv_sec == T0);
        /* A read-only folder gets its mode after its files were written. */
        CHECK(stat_in(dest, "etc/ro", &st) && (st.st_mode & 07777) == 0555 &&
              st.st_mtim.tv_sec == T0 + 3);
        CHECK(content_in_is(dest, "etc/ro/file", "ro\n"));

        CHECK(stat_in(dest, "home/dyno", &st) && (st.st_mode & 07777) == 0700 &&
              st.st_uid == 1000 && st.st_gid == 1001);
        CHECK(stat_in(dest, "home/dyno/.profile", &st) && (st.st_mode & 07777) == 0600 &&
              st.st_uid == 1000 && st.st_gid == 1001);

        /* setuid and setgid stripped, the sticky bit kept. */
        CHECK(stat_in(dest, "usr/bin/su", &st) && (st.st_mode & 07777) == 0755);
        CHECK(stat_in(dest, "usr/bin/wall", &st) && (st.st_mode & 07777) == 0755);
        CHECK(stat_in(dest, "tmp", &st) && (st.st_mode & 07777) == 01777);

        CHECK(stat_in(dest, "run/fifo", &st) && S_ISFIFO(st.st_mode) &&
              (st.st_mode & 07777) == 0600);
        CHECK(!exists_in(dest, "dev/null"));
        CHECK(outside_intact());
}

static void test_slug(void)
{
        const struct ent ents[] = {
                { "./app/", AE_IFDIR },
                { "./app/Procfile", .data = "web: bin/web\n" },
                { "./app/bin/web", .perm = 0755, .data = "#!/bin/sh\n", .uid = 1000 },
                { "./app/bin/web2", .hardlink = "./app/bin/web" },
                { "./app/public/index.html", .data = "hello\n" },
                { "./app/current", AE_IFLNK, .symlink = "public" },
                { "./app/sh", AE_IFLNK, .symlink = "/bin/sh" },
                { "./app/etc", AE_IFLNK, .symlink = "../etc" },
        };
        const char *tar = craft(ents, ELEMENTSOF(ents), false);
        const char *dest = new_dest();
        uint64_t bytes = 0, files = 0;
        char err[512] = "";
        struct stat st, st2;

        CHECK(unpack(tar, dest, IMAGE_KIND_SLUG, &big_limits, &bytes, &files, err, sizeof err) ==
              0);
        CHECK(err[0] == 0);
        CHECK(bytes == strlen("web: bin/web\n") + strlen("#!/bin/sh\n") + strlen("hello\n"));
        CHECK(files == ELEMENTSOF(ents));
        CHECK(content_in_is(dest, "app/Procfile", "web: bin/web\n"));
        CHECK(stat_in(dest, "app/bin/web", &st) && (st.st_mode & 07777) == 0755 &&
              st.st_uid == 1000);
        CHECK(stat_in(dest, "app/bin/web2", &st2) && st2.st_ino == st.st_ino);
        CHECK(content_in_is(dest, "app/current/index.html", "hello\n"));
        CHECK(stat_in(dest, "app/sh", &st) && S_ISLNK(st.st_mode));
        CHECK(outside_intact());
}

static void test_compressions(void)
{
        static const int filters[] = { ARCHIVE_FILTER_NONE, ARCHIVE_FILTER_GZIP,
                                       ARCHIVE_FILTER_BZIP2, ARCHIVE_FILTER_XZ,
                                       ARCHIVE_FILTER_ZSTD };
        const struct ent ents[] = { { "a/b", .data = "b\n" } };

        for (size_t i = 0; i < ELEMENTSOF(filters); i++) {
                const char *tar = tar_path(".tar.x");
                const char *dest = new_dest();
                char err[512] = "";
                CHECK(write_tar_filter(tar, ents, 1, filters[i]) == 0);
                CHECK(unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err,
                             sizeof err) == 0);
                CHECK(content_in_is(dest, "a/b", "b\n"));
        }
}

/* A pipe has no offset to rewind: read from where it is. */
static void test_pipe(void)
{
        const struct ent ents[] = { { "a", .data = "a\n" } };
        const char *tar = craft(ents, 1, true);
        const char *dest = new_dest();
        char err[512] = "";
        int p[2];

        CHECK(pipe2(p, O_CLOEXEC) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                char buf[4096];
                ssize_t n = -1;
                int fd = open(tar, O_RDONLY | O_CLOEXEC);
                close(p[0]);
                while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0)
                        if (write(p[1], buf, (size_t)n) != n)
                                break;
                close(fd);
                close(p[1]);
                _exit(n == 0 ? 0 : 1);
        }
        close(p[1]);
        CHECK(image_unpack(p[0], dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err,
                           sizeof err) == 0);
        /* libarchive may stop before the tarball's last padding: let the writer finish. */
        char buf[4096];
        while (read(p[0], buf, sizeof buf) > 0)
                ;
        close(p[0]);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(content_in_is(dest, "a", "a\n"));
}

static void test_absolute(void)
{
        struct ent ents[] = { { sentinel, .data = "pwned\n" } };
        char err[512] = "", want[PATH_MAX + 16];
        int r = unpack_ents(ents, 1, IMAGE_KIND_STACK, NULL, NULL, err, sizeof err);
        snprintf(want, sizeof want, "entry '%s'", sentinel);
        CHECK(r == -EINVAL);
        CHECK(has(err, want) && has(err, "absolute path"));
        CHECK(outside_intact());
}

static void test_dotdot(void)
{
        const struct ent ents[] = { { "a/", AE_IFDIR },
                                    { "a/../../outside/sentinel", .data = "pwned\n" } };
        const char *dest;
        char err[512] = "";
        int r = unpack_ents(ents, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "a/../../outside/sentinel", "'..' component");
        CHECK(exists_in(dest, "a")); /* what came before stays, for the caller to remove */
}

static void test_symlink_escape(void)
{
        const struct ent ents[] = { { "a/evil", AE_IFLNK, .symlink = "../../outside" } };
        const char *dest;
        char err[512] = "";
        int r = unpack_ents(ents, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "a/evil", "symlink target '../../outside' leads outside");
        CHECK(!exists_in(dest, "a/evil"));

        /* Down and back up, then out: the climb is counted from the symlink's folder. */
        const struct ent ents2[] = { { "x", AE_IFLNK, .symlink = "d/e/../../.." } };
        r = unpack_ents(ents2, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "x", "leads outside the image");
        CHECK(!exists_in(dest, "x"));
}

/* An absolute symlink is allowed; writing through it is not. */
static bool test_write_through_symlink(void)
{
        const struct ent ents[] = { { "link", AE_IFLNK, .symlink = outside },
                                    { "link/sentinel", .data = "pwned\n" } };
        const char *dest;
        char err[512] = "";
        int r = unpack_ents(ents, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "link/sentinel", "through the symlink 'link'");
        CHECK(exists_in(dest, "link"));
        return r == -EINVAL && outside_intact();
}

static void test_write_through_symlink_etc(void)
{
        const struct ent ents[] = { { "link", AE_IFLNK, .symlink = "/etc" },
                                    { "link/passwd", .data = "pwned::0:0::/:/bin/sh\n" } };
        char err[512] = "";
        int r = unpack_ents(ents, 2, IMAGE_KIND_STACK, NULL, NULL, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "link/passwd", "through the symlink 'link'");
}

static void test_hardlinks(void)
{
        const char *dest;
        char err[512] = "";
        int r;

        const struct ent abs[] = { { "h", .hardlink = "/etc/passwd" } };
        r = unpack_ents(abs, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "h", "hard link target is an absolute path");
        CHECK(!exists_in(dest, "h"));

        const struct ent up[] = { { "h", .hardlink = "../outside/sentinel" } };
        r = unpack_ents(up, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "h", "'..' component in hard link target");
        CHECK(!exists_in(dest, "h"));

        const struct ent later[] = { { "h", .hardlink = "later" }, { "later", .data = "x" } };
        r = unpack_ents(later, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "h", "hard link to 'later', not unpacked before it");
        CHECK(!exists_in(dest, "h") && !exists_in(dest, "later"));

        const struct ent via[] = { { "l", AE_IFLNK, .symlink = outside },
                                   { "h", .hardlink = "l/sentinel" } };
        r = unpack_ents(via, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "h", "hard link through the symlink 'l'");
        CHECK(!exists_in(dest, "h"));

        /* A hard link to a symlink is a symlink: nothing is written through it either. */
        const struct ent twin[] = { { "l", AE_IFLNK, .symlink = outside },
                                    { "h", .hardlink = "l" },
                                    { "h/sentinel", .data = "pwned\n" } };
        struct stat st;
        r = unpack_ents(twin, 3, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "h/sentinel", "through the symlink 'h'");
        CHECK(stat_in(dest, "h", &st) && S_ISLNK(st.st_mode));

        const struct ent dir[] = { { "d", AE_IFDIR }, { "h", .hardlink = "d" } };
        r = unpack_ents(dir, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "h", "hard link to a folder");
}

static void test_devices(void)
{
        const char *dest;
        char err[512] = "";
        int r;

        const struct ent chr[] = { { "app/", AE_IFDIR },
                                   { "app/null", AE_IFCHR, .major = 1, .minor = 3 } };
        r = unpack_ents(chr, 2, IMAGE_KIND_SLUG, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "app/null", "device node in a slug");
        CHECK(!exists_in(dest, "app/null"));

        const struct ent blk[] = { { "app/sda", AE_IFBLK, .major = 8, .minor = 0 } };
        r = unpack_ents(blk, 1, IMAGE_KIND_SLUG, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "app/sda", "device node in a slug");
        CHECK(!exists_in(dest, "app/sda"));

        const struct ent fifo[] = { { "app/fifo", AE_IFIFO } };
        r = unpack_ents(fifo, 1, IMAGE_KIND_SLUG, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "app/fifo", "FIFO in a slug");
        CHECK(!exists_in(dest, "app/fifo"));

        /* In a stack, device nodes are left out, and links to them too. */
        const struct ent stack[] = { { "dev/", AE_IFDIR },
                                     { "dev/null", AE_IFCHR, .major = 1, .minor = 3 },
                                     { "dev/sda", AE_IFBLK, .major = 8, .minor = 0 },
                                     { "dev/disk", .hardlink = "dev/sda" },
                                     { "etc/hostname", .data = "h\n" } };
        uint64_t files = 0;
        const char *tar = craft(stack, ELEMENTSOF(stack), false);
        dest = new_dest();
        CHECK(unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, &files, err, sizeof err) == 0);
        CHECK(files == 2);
        CHECK(exists_in(dest, "dev") && !exists_in(dest, "dev/null") &&
              !exists_in(dest, "dev/sda") && !exists_in(dest, "dev/disk"));
        CHECK(content_in_is(dest, "etc/hostname", "h\n"));
}

static void test_slug_outside_app(void)
{
        const struct ent ents[] = { { "./app/", AE_IFDIR }, { "etc/passwd", .data = "x" } };
        const char *dest;
        char err[512] = "";
        int r = unpack_ents(ents, 2, IMAGE_KIND_SLUG, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "etc/passwd", "a slug holds app/ only");
        CHECK(exists_in(dest, "app") && !exists_in(dest, "etc"));

        const struct ent apps[] = { { "apps/x", .data = "x" } };
        r = unpack_ents(apps, 1, IMAGE_KIND_SLUG, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "apps/x", "a slug holds app/ only");

        const struct ent app_link[] = { { "app", AE_IFLNK, .symlink = "/etc" } };
        r = unpack_ents(app_link, 1, IMAGE_KIND_SLUG, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "app", "a slug's app is not a folder");
        CHECK(!exists_in(dest, "app"));
}

static void test_setuid(void)
{
        const struct ent ents[] = { { "bin/", AE_IFDIR, .perm = 02755 },
                                    { "bin/root-shell", .perm = 06755, .data = "sh\n" },
                                    { "bin/sticky", .perm = 01755, .data = "st\n" } };
        const char *dest;
        char err[512] = "";
        struct stat st;
        CHECK(unpack_ents(ents, 3, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err) == 0);
        CHECK(stat_in(dest, "bin/root-shell", &st) && (st.st_mode & 07777) == 0755);
        CHECK(stat_in(dest, "bin", &st) && (st.st_mode & 07777) == 0755);
        CHECK(stat_in(dest, "bin/sticky", &st) && (st.st_mode & 07777) == 01755);
}

static void test_limits(void)
{
        const struct ent four[] = { { "a", .data = "a" },
                                    { "b", .data = "b" },
                                    { "c", .data = "c" },
                                    { "d", .data = "d" } };
        struct image_limits l = big_limits;
        const char *dest;
        char err[512] = "";
        uint64_t files = 0;
        int r;

        l.max_files = 4;
        const char *tar = craft(four, 4, false);
        dest = new_dest();
        CHECK(unpack(tar, dest, IMAGE_KIND_STACK, &l, NULL, &files, err, sizeof err) == 0);
        CHECK(files == 4);
        l.max_files = 3;
        r = unpack_ents(four, 4, IMAGE_KIND_STACK, &l, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EFBIG, err, "d", "more than 3 entries (max_files)");
        CHECK(exists_in(dest, "c") && !exists_in(dest, "d"));

        /* Declared too big: refused before a byte is written. */
        l = big_limits;
        l.max_unpacked = 1 * MiB;
        const struct ent big[] = { { "big", .size = 2 * MiB } };
        r = unpack_ents(big, 1, IMAGE_KIND_STACK, &l, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EFBIG, err, "big", "(max_unpacked)");
        CHECK(!exists_in(dest, "big"));

        /* The sum counts: the second file crosses the limit. */
        const struct ent two[] = { { "one", .size = 600 * KiB }, { "two", .size = 600 * KiB } };
        r = unpack_ents(two, 2, IMAGE_KIND_STACK, &l, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EFBIG, err, "two", "more than 1048576 bytes of file data");
        CHECK(exists_in(dest, "one") && !exists_in(dest, "two"));

        const struct ent exact[] = { { "one", .size = 512 * KiB }, { "two", .size = 512 * KiB } };
        uint64_t bytes = 0;
        tar = craft(exact, 2, false);
        dest = new_dest();
        CHECK(unpack(tar, dest, IMAGE_KIND_STACK, &l, &bytes, NULL, err, sizeof err) == 0);
        CHECK(bytes == 1 * MiB);
}

/* A valid .tar.gz of incompressible data, so that half the file is half the data. */
static const char *craft_random_tgz(void)
{
        static char data[256 * 1024 + 1];
        unsigned x = 12345;
        for (size_t i = 0; i < sizeof data - 1; i++) {
                x = x * 1103515245 + 12345;
                data[i] = (char)(' ' + (x >> 16) % 94);
        }
        const struct ent ents[] = { { "small", .data = "s\n" }, { "rand.bin", .data = data } };
        return craft(ents, 2, true);
}

static void test_truncated(void)
{
        const char *tar = craft_random_tgz();
        const char *dest = new_dest();
        struct stat st;
        char err[512] = "";

        CHECK(stat(tar, &st) == 0 && truncate(tar, st.st_size / 2) == 0);
        int r = unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err);
        CHECK(r == -EBADMSG);
        CHECK(has(err, "entry 'rand.bin'"));
        CHECK(outside_intact());
}

static void test_corrupt(void)
{
        const char *tar = craft_random_tgz();
        const char *dest = new_dest();
        struct stat st;
        char err[512] = "", junk[64];
        int r;

        memset(junk, 0xa5, sizeof junk);
        _cleanup_close_ int fd = open(tar, O_WRONLY | O_CLOEXEC);
        CHECK(fd >= 0 && fstat(fd, &st) == 0);
        CHECK(pwrite(fd, junk, sizeof junk, st.st_size / 2) == (ssize_t)sizeof junk);
        r = unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err);
        CHECK(r == -EBADMSG);
        CHECK(has(err, "entry 'rand.bin'"));
        CHECK(outside_intact());

        /* Not an archive at all. */
        const char *bad = tar_path(".tar");
        _cleanup_close_ int fd2 = open(bad, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        for (int i = 0; i < 64; i++)
                CHECK(write(fd2, junk, sizeof junk) == (ssize_t)sizeof junk);
        r = unpack(bad, new_dest(), IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err);
        CHECK(r == -EBADMSG);
        CHECK(has(err, "archive: "));

        /* Another format libarchive could read, but an image is a tarball. */
        const char *zip = tar_path(".zip");
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();
        archive_write_set_format_zip(a);
        CHECK(archive_write_open_filename(a, zip) == ARCHIVE_OK);
        archive_entry_set_pathname(e, "x");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, 2);
        CHECK(archive_write_header(a, e) == ARCHIVE_OK && archive_write_data(a, "x\n", 2) == 2);
        archive_entry_free(e);
        archive_write_close(a);
        archive_write_free(a);
        dest = new_dest();
        r = unpack(zip, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err);
        CHECK(r == -EBADMSG);
        CHECK(!exists_in(dest, "x"));
}

static void test_names(void)
{
        const char *dest;
        char err[512] = "";
        int r;

        /* Non-printable bytes are escaped in the message. */
        const struct ent ctl[] = { { "bad\x01\x1b[2J/../../x", .data = "x" } };
        r = unpack_ents(ctl, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "bad\\x01\\x1b[2J/../../x", "'..' component");
        CHECK(!strchr(err, '\x1b'));

        /* An empty name: libarchive's writer refuses one, so blank the name of a valid header
         * and fix its checksum. */
        const struct ent one[] = { { "x", .data = "x" } };
        const char *tar = craft(one, 1, false);
        _cleanup_close_ int fd = open(tar, O_RDWR | O_CLOEXEC);
        unsigned char h[512];
        CHECK(fd >= 0 && pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h);
        memset(h, 0, 100);
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (size_t i = 0; i < sizeof h; i++)
                sum += h[i];
        snprintf((char *)h + 148, 8, "%06o", sum);
        CHECK(pwrite(fd, h, sizeof h, 0) == (ssize_t)sizeof h);
        dest = new_dest();
        r = unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "", "empty name");

        /* The root may be in the tarball, but only as a folder. */
        const struct ent root_file[] = { { ".", .data = "x" } };
        r = unpack_ents(root_file, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, ".", "the image's root is not a folder");
}

/* A folder replaced by a symlink must not have the folder's mode applied, at the end, to where
 * the symlink points. */
static void test_dir_then_symlink(void)
{
        const struct ent ents[] = { { "d/", AE_IFDIR, .perm = 0700, .mtime = T0 },
                                    { "d", AE_IFLNK, .symlink = outside } };
        const char *dest;
        char err[512] = "";
        struct stat st;
        int r = unpack_ents(ents, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK(r == 0);
        CHECK(stat_in(dest, "d", &st) && S_ISLNK(st.st_mode));
        CHECK(outside_intact());
        CHECK(stat(outside, &st) == 0 && st.st_mtim.tv_sec != T0);
}

static void test_dest(void)
{
        const struct ent ents[] = { { "a", .data = "a" } };
        const char *tar = craft(ents, 1, false);
        const char *dest = new_dest();
        char err[512] = "", p[PATH_MAX];

        snprintf(p, sizeof p, "%s/old", dest);
        CHECK(mkdir(p, 0755) == 0);
        CHECK(unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err) ==
              -ENOTEMPTY);
        CHECK(!exists_in(dest, "a"));

        snprintf(p, sizeof p, "%s/missing", base);
        CHECK(unpack(tar, p, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err) ==
              -ENOENT);

        /* A dest reached through a symlink is unpacked into where it points. */
        dest = new_dest();
        snprintf(p, sizeof p, "%s/tars/dest-link", base);
        CHECK(symlink(dest, p) == 0);
        CHECK(unpack(tar, p, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err) == 0);
        CHECK(content_in_is(dest, "a", "a"));

        /* The fd's offset does not matter: a fetch leaves it at the end. */
        _cleanup_close_ int fd = open(tar, O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0 && lseek(fd, 0, SEEK_END) > 0);
        dest = new_dest();
        CHECK(image_unpack(fd, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err) ==
              0);
        CHECK(content_in_is(dest, "a", "a"));
}

/* A symlink the tarball wrote, replaced by a later entry of the same name, is replaced, never
 * followed: libarchive writes into the chroot without its own symlink check, so unpack.c
 * removes it first. */
static void test_replace_symlink(void)
{
        const struct ent ents[] = {
                { "l", AE_IFLNK, .symlink = outside },
                { "l/", AE_IFDIR, .perm = 0700, .mtime = T0 },
                { "l/x", .data = "x\n" },
                { "f", AE_IFLNK, .symlink = sentinel },
                { "f", .data = "new\n" },
                { "s", AE_IFLNK, .symlink = "a" },
                { "s", AE_IFLNK, .symlink = "b" },
        };
        const char *dest;
        char err[512] = "", target[16] = "", p[PATH_MAX];
        struct stat st;
        int r = unpack_ents(ents, ELEMENTSOF(ents), IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK(r == 0);
        CHECK(stat_in(dest, "l", &st) && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
        CHECK(content_in_is(dest, "l/x", "x\n"));
        CHECK(stat_in(dest, "f", &st) && S_ISREG(st.st_mode));
        CHECK(content_in_is(dest, "f", "new\n"));
        snprintf(p, sizeof p, "%s/s", dest);
        CHECK(readlink(p, target, sizeof target - 1) == 1 && target[0] == 'b');
        CHECK(outside_intact());
        CHECK(stat(outside, &st) == 0 && st.st_mtim.tv_sec != T0);
}

/* The unpack runs in a child process: none is left once image_unpack() returns, whatever the
 * outcome, and a refusal reads as it did when the unpack ran in the caller. */
static void test_no_child_left(void)
{
        const struct ent good[] = { { "a", .data = "a\n" } };
        const struct ent trick[] = { { "link", AE_IFLNK, .symlink = outside },
                                     { "link/sentinel", .data = "pwned\n" } };
        const char *dest;
        char err[512] = "";

        CHECK(unpack_ents(good, 1, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err) == 0);
        CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);

        int r = unpack_ents(trick, 2, IMAGE_KIND_STACK, NULL, &dest, err, sizeof err);
        CHECK_REFUSED(r, -EINVAL, err, "link/sentinel", "written through the symlink 'link'");
        CHECK(strcmp(err, "entry 'link/sentinel': written through the symlink 'link'") == 0);
        CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

/* A caller killed mid-unpack takes the unpacking child along (it would otherwise go on writing
 * where the caller's successor cleans). As the subreaper, this test inherits the orphan and sees
 * it die. */
static void test_killed_caller(void)
{
        enum { N = 4000 };
        static struct ent ents[N];
        static char names[N][16];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof names[i], "f%05d", i);
                ents[i] = (struct ent){ names[i], .size = 4096 };
        }
        const char *tar = craft(ents, N, true);
        const char *dest = new_dest();
        char probe[PATH_MAX];
        snprintf(probe, sizeof probe, "%s/f00100", dest);

        CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
        fflush(NULL);
        pid_t kid = fork();
        if (kid == 0) {
                char err[512];
                int r = unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err,
                               sizeof err);
                _exit(r == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
        }
        bool seen = false;
        struct stat st;
        for (int i = 0; i < 200000 && !seen; i++) {
                if (lstat(probe, &st) == 0)
                        seen = true;
                else
                        usleep(50);
        }
        CHECK(seen);
        kill(kid, SIGKILL);
        int status = 0;
        CHECK(waitpid(kid, &status, 0) == kid && WIFSIGNALED(status));

        /* The orphan, reparented to us, ends by SIGKILL within moments. */
        bool reaped = false;
        for (int i = 0; i < 10000 && !reaped; i++) {
                pid_t w = waitpid(-1, &status, WNOHANG);
                if (w > 0)
                        reaped = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
                else if (w < 0)
                        break;
                else
                        usleep(1000);
        }
        CHECK(reaped);
        CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
        CHECK(prctl(PR_SET_CHILD_SUBREAPER, 0) == 0);
        CHECK(outside_intact());
}

/* The unpacking child killed (here by a helper that finds it among this test's children): an
 * error, not a success or a hang, and the child reaped. */
static void test_child_killed(void)
{
        enum { N = 4000 };
        static struct ent ents[N];
        static char names[N][16];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof names[i], "g%05d", i);
                ents[i] = (struct ent){ names[i], .size = 4096 };
        }
        const char *tar = craft(ents, N, true);
        const char *dest = new_dest();
        char probe[PATH_MAX], err[512] = "";
        snprintf(probe, sizeof probe, "%s/g00100", dest);

        fflush(NULL);
        pid_t me = getpid();
        pid_t killer = fork();
        if (killer == 0) {
                struct stat st;
                for (int i = 0; i < 200000 && lstat(probe, &st) < 0; i++)
                        usleep(50);
                DIR *d = opendir("/proc");
                for (struct dirent *de; d && (de = readdir(d));) {
                        char p[64], buf[512];
                        int pid = atoi(de->d_name), ppid = 0;
                        if (pid <= 0 || pid == getpid())
                                continue;
                        snprintf(p, sizeof p, "/proc/%d/stat", pid);
                        _cleanup_fclose_ FILE *f = fopen(p, "re");
                        char *paren = f && fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
                        if (paren && sscanf(paren, ") %*c %d", &ppid) == 1 && ppid == me)
                                kill(pid, SIGKILL);
                }
                if (d)
                        closedir(d);
                _exit(0);
        }
        int r = unpack(tar, dest, IMAGE_KIND_STACK, &big_limits, NULL, NULL, err, sizeof err);
        CHECK(r == -EIO);
        CHECK(has(err, "unpack: the unpacking process was killed by signal 9"));
        int status;
        CHECK(waitpid(killer, &status, 0) == killer && WIFEXITED(status));
        CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
        CHECK(outside_intact());
}

/* After the chroot every file is the tarball's: the unpack must load none. The first pax header
 * makes libarchive open an iconv conversion; were glibc to read its gconv configuration only
 * then, it would open these FIFOs inside the image and block (and a real attack would name a
 * module for it to load). The same goes for a locale's files. This process has read that
 * configuration already (crafting pax headers), so the unpack runs in a fresh one: this program
 * executed again with "unpack-stack TARBALL DEST". */
static void test_loads_nothing_inside(void)
{
        const struct ent ents[] = {
                { "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", AE_IFIFO },
                { "usr/lib/x86_64-linux-gnu/gconv/gconv-modules", AE_IFIFO },
                { "usr/lib/aarch64-linux-gnu/gconv/gconv-modules.cache", AE_IFIFO },
                { "usr/lib/aarch64-linux-gnu/gconv/gconv-modules", AE_IFIFO },
                { "usr/lib/locale/locale-archive", AE_IFIFO },
                { "caf\xc3\xa9", .data = "pax\n" },
                { "d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5\xe6\x9c\xac", .data = "pax\n" },
        };
        /* UTF-8 names go into pax headers as they are only from a UTF-8 locale. */
        CHECK(setlocale(LC_ALL, "C.UTF-8"));
        const char *tar = craft(ents, ELEMENTSOF(ents), true);
        CHECK(setlocale(LC_ALL, "C"));
        const char *dest = new_dest();

        fflush(NULL);
        pid_t kid = fork();
        if (kid == 0) {
                execl("/proc/self/exe", "test-unpack", "unpack-stack", tar, dest, (char *)NULL);
                _exit(127);
        }
        int status = -1;
        pid_t w = 0;
        for (int i = 0; i < 20000 && w == 0; i++) {
                w = waitpid(kid, &status, WNOHANG);
                if (w == 0)
                        usleep(1000);
        }
        if (w == 0) {
                fprintf(stderr, "  the unpack blocked: it opened a file inside the image\n");
                kill(kid, SIGKILL);
                (void)waitpid(kid, NULL, 0);
        }
        CHECK(w == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(content_in_is(dest, "caf\xc3\xa9", "pax\n"));
        CHECK(content_in_is(dest, "d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5\xe6\x9c\xac", "pax\n"));
}

static int setup(void)
{
        char p[PATH_MAX];
        if (!mkdtemp(base))
                return -errno;
        snprintf(outside, sizeof outside, "%s/outside", base);
        snprintf(sentinel, sizeof sentinel, "%s/sentinel", outside);
        snprintf(p, sizeof p, "%s/tars", base);
        if (mkdir(outside, 0755) < 0 || chmod(outside, 0755) < 0 || mkdir(p, 0755) < 0)
                return -errno;
        int fd = open(sentinel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        bool ok = write(fd, "original\n", 9) == 9 && fchmod(fd, 0644) == 0;
        close(fd);
        if (!ok || stat("/etc/passwd", &etc_passwd) < 0)
                return -EIO;
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 4 && strcmp(argv[1], "unpack-stack") == 0) {
                char err[512] = "";
                int r = unpack(argv[2], argv[3], IMAGE_KIND_STACK, &big_limits, NULL, NULL, err,
                               sizeof err);
                if (r < 0)
                        fprintf(stderr, "  unpack %s: %s\n", argv[2], err);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        if (geteuid() != 0) {
                fprintf(stderr,
                        "test-unpack: needs root (owners are restored only then); skipped\n");
                return 77;
        }
        int r = setup();
        if (r < 0) {
                fprintf(stderr, "setup: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        test_stack();
        test_slug();
        test_compressions();
        test_pipe();
        test_absolute();
        test_dotdot();
        test_symlink_escape();
        /* Only if writing through a symlink to a folder of ours was refused do we try /etc. */
        if (test_write_through_symlink())
                test_write_through_symlink_etc();
        else
                CHECK(!"skipped the /etc case");
        test_hardlinks();
        test_devices();
        test_slug_outside_app();
        test_setuid();
        test_limits();
        test_truncated();
        test_corrupt();
        test_names();
        test_dir_then_symlink();
        test_dest();
        test_replace_symlink();
        test_no_child_left();
        test_killed_caller();
        test_child_killed();
        test_loads_nothing_inside();

        if (n_failed == 0)
                (void)rm_rf(base);
        else
                fprintf(stderr, "left %s for a look\n", base);
        return check_report();
}
