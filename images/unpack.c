/* Unpacking a stack or a slug. Our own checks judge every entry before libarchive writes it;
 * the tarball is untrusted: anyone who can name a URL to hostd chooses its bytes, and we unpack
 * as root.
 *
 * The work is done in a child process confined to dest with chroot(): the second line of
 * defence, after our checks, and one that costs nothing per entry. Inside it libarchive is handed
 * names relative to the image's root, and even a symlink or a hard link our checks missed
 * resolves inside the image. libarchive's own defence (ARCHIVE_EXTRACT_SECURE_SYMLINKS) would
 * re-walk every component of every entry's path with open/fstat/close, about a quarter of the
 * unpack's time. Only where chroot() is not allowed (a test run as a user) is that defence used
 * instead, with names made absolute (dest/name).
 *
 * The child also decompresses on a second thread, so that inflating and writing the files share
 * two cores as tar and gzip -d do. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <iconv.h>
#include <inttypes.h>
#include <langinfo.h>
#include <limits.h>
#include <linux/capability.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "images.h"
#include "util.h"

/* Large reads keep the syscalls per byte low: decompression, not I/O, should be the cost. */
#define READ_BLOCK_SIZE (1024 * 1024)
/* Bytes of an entry's name quoted in a message; the rest becomes "...". */
#define QUOTE_MAX 200

/* What we wrote at a path, for the checks that depend on earlier entries (hard links must
 * name one, nothing may be written through a symlink). */
enum node_type {
        NODE_DIR = 1,
        NODE_FILE,    /* a regular file */
        NODE_SYMLINK, /* a symlink, or a hard link to one */
        NODE_FIFO,
        NODE_SKIPPED, /* a device node in a stack: not created, and neither are links to it */
};

struct node {
        char *path; /* normalized, relative to the image's root; NULL in an empty slot */
        size_t len;
        uint64_t hash;
        enum node_type type;
};

/* Open addressing, linear probing, never shrinks: an image only adds paths. */
struct node_table {
        struct node *slots;
        size_t n, cap; /* cap a power of two */
};

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_step(uint64_t h, unsigned char c) { return (h ^ c) * FNV_PRIME; }

static uint64_t fnv_hash(const char *s, size_t len)
{
        uint64_t h = FNV_OFFSET;
        for (size_t i = 0; i < len; i++)
                h = fnv_step(h, (unsigned char)s[i]);
        return h;
}

static struct node *node_slot(struct node *slots, size_t cap, const char *path, size_t len,
                              uint64_t hash)
{
        for (size_t i = hash & (cap - 1);; i = (i + 1) & (cap - 1)) {
                struct node *n = &slots[i];
                if (!n->path ||
                    (n->hash == hash && n->len == len && memcmp(n->path, path, len) == 0))
                        return n;
        }
}

static struct node *node_find(struct node_table *t, const char *path, size_t len, uint64_t hash)
{
        if (t->cap == 0)
                return NULL;
        struct node *n = node_slot(t->slots, t->cap, path, len, hash);
        return n->path ? n : NULL;
}

static int node_set(struct node_table *t, const char *path, enum node_type type)
{
        size_t len = strlen(path);
        uint64_t hash = fnv_hash(path, len);

        if ((t->n + 1) * 4 > t->cap * 3) {
                size_t cap = t->cap ? t->cap * 2 : 1024;
                struct node *slots = calloc(cap, sizeof(*slots));
                if (!slots)
                        return -ENOMEM;
                for (size_t i = 0; i < t->cap; i++)
                        if (t->slots[i].path)
                                *node_slot(slots, cap, t->slots[i].path, t->slots[i].len,
                                           t->slots[i].hash) = t->slots[i];
                free(t->slots);
                t->slots = slots;
                t->cap = cap;
        }

        struct node *n = node_slot(t->slots, t->cap, path, len, hash);
        if (!n->path) {
                n->path = strndup(path, len);
                if (!n->path)
                        return -ENOMEM;
                n->len = len;
                n->hash = hash;
                t->n++;
        }
        /* A later entry of the same name replaces the earlier one on disk, so here too. */
        n->type = type;
        return 0;
}

static void node_table_done(struct node_table *t)
{
        for (size_t i = 0; i < t->cap; i++)
                free(t->slots[i].path);
        free(t->slots);
}

struct unpacker {
        enum image_kind kind;
        const struct image_limits *limits;
        char *dest; /* canonical: no symlink, "." or ".." in it */
        size_t dest_len;
        bool in_root; /* chroot()ed into dest: names are handed to libarchive as they are */
        struct node_table nodes;
        uint64_t entries;                /* read, for max_files */
        uint64_t files;                  /* written */
        uint64_t declared;               /* sizes of regular files as their headers say */
        uint64_t written;                /* bytes of data actually written */
        char name[PATH_MAX];             /* the entry's normalized name */
        char link[PATH_MAX];             /* a hard link's normalized target */
        char path[PATH_MAX];             /* dest/name */
        char link_path[PATH_MAX];        /* dest/link */
        char quoted[QUOTE_MAX * 4 + 8];  /* the entry's name as in the archive, escaped */
        char quoted2[QUOTE_MAX * 4 + 8]; /* another name in the message, escaped */
        char *err;
        size_t errlen;
};

static void unpacker_done(struct unpacker *u)
{
        free(u->dest);
        node_table_done(&u->nodes);
}

static int refuse(struct unpacker *u, int r, const char *fmt, ...) _printf_(3, 4);
static int refuse(struct unpacker *u, int r, const char *fmt, ...)
{
        int n = snprintf(u->err, u->errlen, "entry '%s': ", u->quoted);
        if (n >= 0 && (size_t)n < u->errlen) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(u->err + n, u->errlen - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return r;
}

/* A name from the tarball other than the entry's, made safe for a message. */
static const char *quote(struct unpacker *u, const char *s)
{
        return escape_value(s, QUOTE_MAX, u->quoted2, sizeof(u->quoted2));
}

static const char *archive_message(struct archive *a)
{
        const char *s = archive_error_string(a);
        return s ? s : "unknown error";
}

/* The reader fails on damaged or truncated input (libarchive's own codes, not errno values)
 * and, rarely, on a real I/O error or memory. */
static int read_failed(struct unpacker *u, struct archive *in, bool in_entry)
{
        int e = archive_errno(in);
        int r = e == ENOMEM ? -ENOMEM : e == EIO ? -EIO : -EBADMSG;
        if (in_entry)
                return refuse(u, r, "%s", archive_message(in));
        if (u->entries == 0)
                snprintf(u->err, u->errlen, "archive: %s", archive_message(in));
        else
                snprintf(u->err, u->errlen, "after entry '%s': %s", u->quoted, archive_message(in));
        return r;
}

/* The writer fails with an errno (ENOSPC, EACCES...) or, for its own refusals ("Cannot extract
 * through symlink" without chroot, a ".." it finds), with none. */
static int write_failed(struct unpacker *u, struct archive *out)
{
        int e = archive_errno(out);
        return refuse(u, e > 0 ? -e : -EINVAL, "%s", archive_message(out));
}

/* Normalize an entry's name or a hard link's target into out: no leading "./", no empty or "."
 * components, no trailing slash. "" is the image's root. */
static int normalize(struct unpacker *u, const char *what, const char *s, char *out)
{
        size_t o = 0;

        if (!s || !*s)
                return refuse(u, -EINVAL, "empty %s", what);
        if (*s == '/')
                return refuse(u, -EINVAL, "%s is an absolute path", what);

        while (*s) {
                const char *c = s;
                size_t len = strcspn(c, "/");
                s = c + len + strspn(c + len, "/");
                if (len == 0 || (len == 1 && c[0] == '.'))
                        continue;
                if (len == 2 && c[0] == '.' && c[1] == '.')
                        return refuse(u, -EINVAL, "'..' component in %s", what);
                /* Room for the component, its slash and dest/ in front of the whole. */
                if (u->dest_len + 1 + o + 1 + len + 1 > PATH_MAX)
                        return refuse(u, -EINVAL, "%s too long", what);
                if (o > 0)
                        out[o++] = '/';
                memcpy(out + o, c, len);
                o += len;
        }
        out[o] = 0;
        return 0;
}

/* The first component of path that is a symlink we wrote, or NULL: nothing is written through
 * one. Only what we wrote can be a symlink: dest was empty. */
static const struct node *symlink_prefix(struct unpacker *u, const char *path)
{
        uint64_t h = FNV_OFFSET;
        for (size_t i = 0; path[i]; i++) {
                if (path[i] == '/') {
                        const struct node *n = node_find(&u->nodes, path, i, h);
                        if (n && n->type == NODE_SYMLINK)
                                return n;
                }
                h = fnv_step(h, (unsigned char)path[i]);
        }
        return NULL;
}

/* Whether a relative symlink target, resolved from the folder of the symlink at name, stays
 * inside the image. Lexical: the kernel resolves any symlink among the target's components
 * later, and only inside a dyno, whose root is the image. */
static bool symlink_target_inside(const char *name, const char *target)
{
        long depth = 0; /* of the symlink's folder below the image's root */
        for (const char *p = name; *p; p++)
                if (*p == '/')
                        depth++;

        while (*target) {
                size_t len = strcspn(target, "/");
                if (len == 2 && target[0] == '.' && target[1] == '.') {
                        if (--depth < 0)
                                return false;
                } else if (len > 0 && !(len == 1 && target[0] == '.'))
                        depth++;
                target += len + strspn(target + len, "/");
        }
        return true;
}

static void dest_join(struct unpacker *u, const char *name, char *out)
{
        /* normalize() kept the sum under PATH_MAX. */
        memcpy(out, u->dest, u->dest_len);
        out[u->dest_len] = '/';
        strcpy(out + u->dest_len + 1, name);
}

static int copy_data(struct unpacker *u, struct archive *in, struct archive *out)
{
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t offset;
                int r = archive_read_data_block(in, &buf, &size, &offset);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r != ARCHIVE_OK)
                        return read_failed(u, in, true);
                /* The header's size was checked; a sparse or lying entry is counted here. */
                if (size > u->limits->max_unpacked - u->written)
                        return refuse(u, -EFBIG,
                                      "more than %" PRIu64 " bytes of file data (max_unpacked)",
                                      u->limits->max_unpacked);
                u->written += size;
                if (archive_write_data_block(out, buf, size, offset) != ARCHIVE_OK)
                        return write_failed(u, out);
        }
}

/* Check one entry, point it at dest and write it. Returns 0 also for an entry skipped. */
static int unpack_entry(struct unpacker *u, struct archive *in, struct archive *out,
                        struct archive_entry *e)
{
        const char *pathname = archive_entry_pathname(e);
        const char *hardlink = archive_entry_hardlink(e);
        mode_t type = archive_entry_filetype(e);
        enum node_type node;
        int r;

        escape_value(pathname ? pathname : "", QUOTE_MAX, u->quoted, sizeof(u->quoted));

        if (++u->entries > u->limits->max_files)
                return refuse(u, -EFBIG, "more than %" PRIu64 " entries (max_files)",
                              u->limits->max_files);

        r = normalize(u, "name", pathname, u->name);
        if (r < 0)
                return r;

        if (!u->name[0]) {
                /* The root itself ("." or "./"): dest is already there, and its mode is the
                 * store's business, not the tarball's. */
                if (type != AE_IFDIR || hardlink)
                        return refuse(u, -EINVAL, "the image's root is not a folder");
                return 0;
        }

        if (u->kind == IMAGE_KIND_SLUG) {
                bool is_app = strcmp(u->name, "app") == 0;
                if (!is_app && !startswith(u->name, "app/"))
                        return refuse(u, -EINVAL, "a slug holds app/ only");
                /* The slug's app/ is the dyno's /app: a file or a symlink there makes no app. */
                if (is_app && (type != AE_IFDIR || hardlink))
                        return refuse(u, -EINVAL, "a slug's app is not a folder");
        }

        const struct node *via = symlink_prefix(u, u->name);
        if (via)
                return refuse(u, -EINVAL, "written through the symlink '%s'", quote(u, via->path));

        if (hardlink) {
                /* Only to a file this tarball already put inside the image: anything else
                 * would give the image, shared read-only by dynos, a name for a host file. */
                r = normalize(u, "hard link target", hardlink, u->link);
                if (r < 0)
                        return r;
                via = symlink_prefix(u, u->link);
                if (via)
                        return refuse(u, -EINVAL, "hard link through the symlink '%s'",
                                      quote(u, via->path));
                size_t len = strlen(u->link);
                const struct node *target =
                        node_find(&u->nodes, u->link, len, fnv_hash(u->link, len));
                if (!target)
                        return refuse(u, -EINVAL, "hard link to '%s', not unpacked before it",
                                      quote(u, u->link));
                if (target->type == NODE_DIR)
                        return refuse(u, -EINVAL, "hard link to a folder");
                if (target->type == NODE_SKIPPED)
                        return node_set(&u->nodes, u->name, NODE_SKIPPED);
                if (target->type != NODE_FILE && archive_entry_size(e) > 0)
                        return refuse(u, -EINVAL, "hard link with data to a file not regular");
                node = target->type;
        } else {
                switch (type) {
                case AE_IFDIR: node = NODE_DIR; break;
                case AE_IFREG: node = NODE_FILE; break;
                case AE_IFLNK: {
                        const char *target = archive_entry_symlink(e);
                        if (!target || !*target)
                                return refuse(u, -EINVAL, "empty symlink target");
                        /* An absolute target is allowed: a stack's /bin/sh -> /bin/busybox.
                         * It resolves inside the dyno's root, where the image is mounted; on
                         * the host, the store's own walks (rm_rf) do not follow symlinks. */
                        if (*target != '/' && !symlink_target_inside(u->name, target))
                                return refuse(u, -EINVAL,
                                              "symlink target '%s' leads outside the image",
                                              quote(u, target));
                        node = NODE_SYMLINK;
                        break;
                }
                case AE_IFCHR:
                case AE_IFBLK:
                        if (u->kind == IMAGE_KIND_SLUG)
                                return refuse(u, -EINVAL, "device node in a slug");
                        /* A dyno gets its own /dev and its root is mounted nodev: a stack's
                         * device nodes would be useless, so they are left out, not refused. */
                        return node_set(&u->nodes, u->name, NODE_SKIPPED);
                case AE_IFIFO:
                        if (u->kind == IMAGE_KIND_SLUG)
                                return refuse(u, -EINVAL, "FIFO in a slug");
                        node = NODE_FIFO;
                        break;
                case AE_IFSOCK:
                        /* A socket is only meaningful to a process listening on it. */
                        return node_set(&u->nodes, u->name, NODE_SKIPPED);
                default: return refuse(u, -EINVAL, "unknown file type 0%o", (unsigned)type);
                }
        }

        if (node == NODE_FILE && archive_entry_size_is_set(e) && archive_entry_size(e) > 0) {
                uint64_t size = (uint64_t)archive_entry_size(e);
                if (size > u->limits->max_unpacked - u->declared)
                        return refuse(u, -EFBIG,
                                      "%" PRIu64 " bytes make more than %" PRIu64
                                      " bytes of file data (max_unpacked)",
                                      size, u->limits->max_unpacked);
                u->declared += size;
        }

        /* Owners are kept (numeric: we set no lookup, so the host's passwd has no say), the
         * setuid and setgid bits are not: no file in an image gains privileges. */
        archive_entry_set_perm(e, archive_entry_perm(e) & ~(mode_t)(S_ISUID | S_ISGID));

        const char *path = u->name, *link_path = u->link;
        if (!u->in_root) {
                dest_join(u, u->name, u->path);
                path = u->path;
                if (hardlink) {
                        dest_join(u, u->link, u->link_path);
                        link_path = u->link_path;
                }
        }

        /* An earlier entry of this name that is a symlink goes first: libarchive's writer would
         * stat() through it, find the folder it points to and keep the symlink where this entry
         * says a folder is, behind our table's back. */
        size_t len = strlen(u->name);
        const struct node *old = node_find(&u->nodes, u->name, len, fnv_hash(u->name, len));
        if (old && old->type == NODE_SYMLINK && unlink(path) < 0 && errno != ENOENT) {
                r = -errno;
                return refuse(u, r, "remove the symlink it replaces: %s", strerror(-r));
        }

        archive_entry_copy_pathname(e, path);
        if (hardlink)
                archive_entry_copy_hardlink(e, link_path);

        /* A warning is a failure too: an image unpacks exactly or not at all. */
        if (archive_write_header(out, e) != ARCHIVE_OK)
                return write_failed(u, out);
        if (node == NODE_FILE) {
                r = copy_data(u, in, out);
                if (r < 0)
                        return r;
        }
        if (archive_write_finish_entry(out) != ARCHIVE_OK)
                return write_failed(u, out);

        u->files++;
        return node_set(&u->nodes, u->name, node);
}

static void archive_read_freep(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

static void archive_write_freep(struct archive **a)
{
        if (*a)
                archive_write_free(*a);
}

static int dir_is_empty(const char *path)
{
        _cleanup_(closedirp) DIR *d = NULL;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de)
                        return errno ? -errno : 1;
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        return 0;
        }
}

/* Write all of buf; -errno on failure (EPIPE once the reader has gone). */
static int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Read up to len bytes, fewer only at EOF; the count or -errno. */
static ssize_t read_all(int fd, void *buf, size_t len)
{
        char *p = buf;
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, p + got, len - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        return (ssize_t)got;
}

/* Decompression on a second thread: a reader of its own, in raw format, turns the tarball,
 * however it is compressed, into the plain tar that the main reader reads from a pipe. */
struct feeder {
        struct archive *raw;
        pthread_t thread;
        bool running; /* started and not joined */
        int pipe_out; /* the thread's, which closes it when it stops */
        int pipe_in;  /* the main reader's */
        char *buf;    /* the main reader's block */
        bool failed;  /* the thread's verdict, read after joining it */
        int error;    /* archive_errno() of the raw reader */
        char message[512];
};

static void feeder_fail(struct feeder *f, int error, const char *message)
{
        f->failed = true;
        f->error = error;
        snprintf(f->message, sizeof f->message, "%s", message);
}

/* It returns rather than calling pthread_exit(), which would load libgcc_s for unwinding: nothing
 * may be loaded inside the image (see confine()). */
static void *feeder_run(void *userdata)
{
        struct feeder *f = userdata;
        struct archive_entry *e;

        int r = archive_read_next_header(f->raw, &e);
        while (r == ARCHIVE_OK) {
                const void *buf;
                size_t size;
                la_int64_t offset;
                r = archive_read_data_block(f->raw, &buf, &size, &offset);
                if (r == ARCHIVE_OK && write_all(f->pipe_out, buf, size) < 0)
                        r = ARCHIVE_EOF; /* the main reader is done: EPIPE */
        }
        if (r != ARCHIVE_EOF)
                feeder_fail(f, archive_errno(f->raw), archive_message(f->raw));
        close(TAKE_FD(f->pipe_out));
        return NULL;
}

static void feeder_join(struct feeder *f)
{
        if (!f->running)
                return;
        /* A thread still writing gets EPIPE (SIGPIPE is ignored in the child) and stops. */
        closep(&f->pipe_in);
        f->pipe_in = -1;
        pthread_join(f->thread, NULL);
        f->running = false;
}

static void feeder_done(struct feeder *f)
{
        feeder_join(f);
        closep(&f->pipe_in);
        closep(&f->pipe_out);
        if (f->raw)
                archive_read_free(f->raw);
        free(f->buf);
}

/* The main reader's input. At the end of the pipe the thread has stopped: whether the tarball
 * ended or its decompression failed is its word, and a failure is passed on with the raw
 * reader's message and errno, where the main reader would have met it reading the tarball
 * itself. */
static la_ssize_t feeder_read(struct archive *a, void *userdata, const void **ret)
{
        struct feeder *f = userdata;
        for (;;) {
                ssize_t n = f->pipe_in >= 0 ? read(f->pipe_in, f->buf, READ_BLOCK_SIZE) : 0;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        archive_set_error(a, errno, "read the decompressed tarball: %s",
                                          strerror(errno));
                        return -1;
                }
                if (n > 0) {
                        *ret = f->buf;
                        return n;
                }
                feeder_join(f);
                if (f->failed) {
                        archive_set_error(a, f->error, "%s", f->message);
                        return -1;
                }
                return 0;
        }
}

/* The compressions an image may use, for the raw reader: only those libarchive decodes in
 * process with the libraries it links (Debian's links all of these). With one missing it would
 * run an external program, inside the image one the tarball chose; filter_all would also run
 * lrzip, grzip or lzop on input we do not trust. */
static int read_support_filters(struct archive *a)
{
        int (*const filters[])(struct archive *) = {
                archive_read_support_filter_gzip, archive_read_support_filter_bzip2,
                archive_read_support_filter_xz,   archive_read_support_filter_lzma,
                archive_read_support_filter_lzip, archive_read_support_filter_zstd,
                archive_read_support_filter_lz4,  archive_read_support_filter_compress,
        };
        for (size_t i = 0; i < ELEMENTSOF(filters); i++)
                if (filters[i](a) != ARCHIVE_OK)
                        return -EOPNOTSUPP;
        return 0;
}

static int feeder_start(struct feeder *f, int archive_fd)
{
        int p[2];
        f->raw = archive_read_new();
        f->buf = malloc(READ_BLOCK_SIZE);
        if (!f->raw || !f->buf)
                return -ENOMEM;
        int r = read_support_filters(f->raw);
        if (r < 0)
                return r;
        if (archive_read_support_format_raw(f->raw) != ARCHIVE_OK)
                return -ENOMEM;
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        f->pipe_in = p[0];
        f->pipe_out = p[1];
        /* Room for the thread to run a block ahead; the default (64 KiB) is fine too. */
        (void)fcntl(f->pipe_out, F_SETPIPE_SZ, READ_BLOCK_SIZE);
        /* The raw reader's own opening reads the first block: its errors too come out at the
         * main reader's first read. */
        if (archive_read_open_fd(f->raw, archive_fd, READ_BLOCK_SIZE) != ARCHIVE_OK) {
                feeder_fail(f, archive_errno(f->raw), archive_message(f->raw));
                close(TAKE_FD(f->pipe_out));
                return 0;
        }
        r = -pthread_create(&f->thread, NULL, feeder_run, f);
        if (r < 0)
                return r;
        f->running = true;
        return 0;
}

/* Read the tarball in archive_fd and write its entries under the current root (in_root) or dest:
 * the child's work. */
static int unpack_archive(struct unpacker *u, int archive_fd)
{
        _cleanup_(feeder_done) struct feeder f = { .pipe_in = -1, .pipe_out = -1 };
        _cleanup_(archive_read_freep) struct archive *in = NULL;
        _cleanup_(archive_write_freep) struct archive *out = NULL;
        char *err = u->err;
        size_t errlen = u->errlen;
        int r;

        in = archive_read_new();
        out = archive_write_disk_new();
        if (!in || !out)
                return -ENOMEM;
        /* The tar family only (ustar, pax, GNU): an image is a tarball. Its compression is the
         * feeder's business: what comes through the pipe is plain. */
        if (archive_read_support_format_tar(in) != ARCHIVE_OK) {
                return set_error(err, errlen, -ENOMEM, "unpack: %s", archive_message(in));
        }

        /* No ACLs, xattrs or file flags: an image is files, modes, owners and times. In the
         * chroot the names are relative, by construction (normalize() refused every absolute
         * one); without it they are absolute (dest/...), and libarchive checks for symlinks
         * along each of them. */
        int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                    ARCHIVE_EXTRACT_OWNER;
        flags |= u->in_root ? ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS :
                              ARCHIVE_EXTRACT_SECURE_SYMLINKS;
        if (archive_write_disk_set_options(out, flags) != ARCHIVE_OK) {
                return set_error(err, errlen, -EINVAL, "unpack: %s", archive_message(out));
        }

        r = feeder_start(&f, archive_fd);
        if (r < 0) {
                return set_error(err, errlen, r, "unpack: start decompressing: %s",
                                 f.raw && r == -EOPNOTSUPP ? archive_message(f.raw) : strerror(-r));
        }
        if (archive_read_open(in, &f, NULL, feeder_read, NULL) != ARCHIVE_OK)
                return read_failed(u, in, false);

        for (;;) {
                struct archive_entry *e;
                r = archive_read_next_header(in, &e);
                if (r == ARCHIVE_EOF)
                        break;
                /* A warning (an unknown pax keyword, say) leaves the entry whole. */
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                        return read_failed(u, in, false);
                r = unpack_entry(u, in, out, e);
                if (r < 0)
                        return r;
        }

        /* Folders' modes and times are set here, last, so that a read-only folder could be
         * filled first. */
        if (archive_write_close(out) != ARCHIVE_OK) {
                r = archive_errno(out);
                (void)set_error(err, errlen, 0, "unpack: %s", archive_message(out));
                return r > 0 ? -r : -EIO;
        }
        return 0;
}

/* Close the directories open in this process, but for the image's: with one (or a cwd) outside
 * it, a chroot() is no boundary. Other files stay open: the store's lock among them, held until
 * this child is gone too. Directories among 0-2 become /dev/null rather than free numbers. */
static int close_directories(int devnull)
{
        _cleanup_(closedirp) DIR *d = opendir("/proc/self/fd");
        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d));) {
                int fd = atoi(de->d_name);
                struct stat st;
                if (de->d_name[0] == '.' || fd == dirfd(d) || fd == devnull || fstat(fd, &st) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                if (fd <= STDERR_FILENO ? dup2(devnull, fd) < 0 : close(fd) < 0)
                        return -errno;
        }
        return 0;
}

/* Root keeps only what writing files with their owners, modes and times takes. A chroot() holds
 * only against a process that cannot chroot() again, open a file by handle, mount, trace or load
 * a module: were the tarball ever to run code here (a bug in a decompressor, say), it should
 * find no way out of the image. No new privileges either, by executing a program of its own. */
static int drop_capabilities(void)
{
        const uint64_t keep = 1ULL << CAP_CHOWN | 1ULL << CAP_DAC_OVERRIDE | 1ULL << CAP_FOWNER;

        for (int c = 0; c < 64; c++)
                if (!(keep & 1ULL << c) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
                    errno != EINVAL) /* EINVAL: beyond the kernel's last capability */
                        return -errno;
        struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {
                { .effective = (uint32_t)keep, .permitted = (uint32_t)keep },
                { .effective = (uint32_t)(keep >> 32), .permitted = (uint32_t)(keep >> 32) },
        };
        if (syscall(SYS_capset, &header, data) < 0)
                return -errno;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        return 0;
}

/* Confine this (child) process to dest before the first entry is read. Inside, every file is the
 * tarball's: nothing may be loaded from the filesystem after the chroot(), or the tarball would
 * choose what we load, as root. What could be:
 * - users and groups (NSS modules): the writer has no lookup set, owners are numeric;
 * - compression programs: read_support_filters() refuses a filter libarchive would run as one;
 * - message catalogs and locale files: the C locale needs none (strerror() translates nothing);
 * - iconv: libarchive's tar reader converts the names in pax headers from UTF-8 to the locale's
 *   charset (ANSI_X3.4-1968 in the C locale) with iconv_open(); the first iconv_open() of a
 *   process reads glibc's gconv-modules configuration, which names the modules to dlopen().
 *   Opening the same conversion here, before the chroot(), reads the host's; after it, UTF-8 to
 *   ASCII is built into glibc and iconv_open() opens no file. The ACL conversion libarchive
 *   also has is the same pair.
 * Then it drops the capabilities a way out of the chroot() would need. Without the privilege to
 * chroot() (a test run as a user) it returns 0 with in_root false: the unpack then uses
 * libarchive's own symlink check, as hostd did before. */
static int confine(struct unpacker *u)
{
        if (!setlocale(LC_ALL, "C"))
                return -EINVAL;
        iconv_t cd = iconv_open(nl_langinfo(CODESET), "UTF-8");
        if (cd == (iconv_t)-1)
                return -errno;
        iconv_close(cd);

        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return -errno;
        int r = close_directories(devnull);
        if (r < 0)
                return r;

        if (chroot(u->dest) < 0) {
                if (errno != EPERM)
                        return -errno;
                u->in_root = false;
                return 0;
        }
        if (chdir("/") < 0)
                return -errno;
        u->in_root = true;
        return drop_capabilities();
}

/* What the child reports, followed by the message until EOF. */
struct unpack_result {
        int32_t r;
        uint64_t bytes, files;
};

static _Noreturn void unpack_child(struct unpacker *u, pid_t parent, int archive_fd, int result_fd)
{
        struct unpack_result res = {};

        /* Never outlive the caller, who is waiting: a killed importer takes its unpack along. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(EXIT_FAILURE);
        /* The feeder's pipe says EPIPE when the main reader has stopped early. */
        signal(SIGPIPE, SIG_IGN);

        res.r = confine(u);
        if (res.r < 0)
                snprintf(u->err, u->errlen, "unpack: confine to %s: %s", u->dest, strerror(-res.r));
        else
                res.r = unpack_archive(u, archive_fd);
        if (res.r >= 0) {
                res.bytes = u->written;
                res.files = u->files;
        }
        if (write_all(result_fd, &res, sizeof res) < 0 ||
            write_all(result_fd, u->err, u->errlen > 0 ? strnlen(u->err, u->errlen) : 0) < 0)
                _exit(EXIT_FAILURE);
        _exit(EXIT_SUCCESS);
}

/* Wait for the child's report and its end: it is reaped on every path. */
static int unpack_wait(pid_t pid, int result_fd, uint64_t *ret_bytes, uint64_t *ret_files,
                       char *err, size_t errlen)
{
        struct unpack_result res;
        ssize_t n = read_all(result_fd, &res, sizeof res);
        ssize_t m = 0;
        if (n == (ssize_t)sizeof res && errlen > 0) {
                m = read_all(result_fd, err, errlen - 1);
                err[m > 0 ? m : 0] = 0;
        }
        if (n < 0 || m < 0)
                (void)kill(pid, SIGKILL); /* cannot happen; but never leave it running */

        int status = 0;
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
                ;
        /* ECHILD: the caller ignores SIGCHLD and the kernel reaped it; its report is whole. */
        bool reported = n == (ssize_t)sizeof res && m >= 0;
        if (w < 0 && errno == ECHILD && reported)
                status = 0;
        else if (w < 0) {
                int r = -errno;
                return set_error(err, errlen, r, "unpack: wait for the unpacking process: %s",
                                 strerror(-r));
        }
        if (WIFSIGNALED(status)) {
                return set_error(err, errlen, -EIO,
                                 "unpack: the unpacking process was killed by signal %d (%s)",
                                 WTERMSIG(status), strsignal(WTERMSIG(status)));
        }
        if (!reported || WEXITSTATUS(status) != 0) {
                return set_error(err, errlen, -EIO,
                                 "unpack: the unpacking process failed (exit status %d)",
                                 WEXITSTATUS(status));
        }
        if (res.r < 0)
                return res.r;
        if (ret_bytes)
                *ret_bytes = res.bytes;
        if (ret_files)
                *ret_files = res.files;
        return 0;
}

/* What image_unpack() checks before any work: the arguments, dest (made canonical into u, and
 * empty) and the tarball's fd (rewound). */
static int unpack_prepare(struct unpacker *u, int archive_fd, const char *dest, char *err,
                          size_t errlen)
{
        struct stat st;
        int r = 0;

        if (errlen > 0)
                err[0] = 0;
        if (archive_fd < 0 || !dest || !u->limits ||
            (u->kind != IMAGE_KIND_STACK && u->kind != IMAGE_KIND_SLUG)) {
                return set_error(err, errlen, -EINVAL, "unpack: invalid arguments");
        }

        /* Canonical: the child chroot()s into it, and without that, libarchive's check for
         * symlinks along each entry's absolute path must not trip on one above dest, such as
         * /var -> /data. */
        u->dest = realpath(dest, NULL);
        if (!u->dest) {
                r = -errno;
                return set_error(err, errlen, r, "%s: %s", dest, strerror(-r));
        }
        u->dest_len = strlen(u->dest);
        r = dir_is_empty(u->dest);
        if (r == 0)
                r = -ENOTEMPTY;
        if (r < 0) {
                return set_error(err, errlen, r, "%s: %s", dest, strerror(-r));
        }

        /* The whole tarball, whoever read or wrote the fd before (a fetch leaves it at the
         * end); a pipe is read from where it is. A folder is no tarball, and would be a way out
         * of the child's chroot. */
        if (fstat(archive_fd, &st) < 0)
                r = -errno;
        else if (S_ISDIR(st.st_mode))
                r = -EISDIR;
        else if (lseek(archive_fd, 0, SEEK_SET) < 0 && errno != ESPIPE)
                r = -errno;
        if (r < 0) {
                return set_error(err, errlen, r, "archive: %s", strerror(-r));
        }
        return 0;
}

/* On failure, what was written stays in dest: the caller unpacks into a temporary folder and
 * removes it whole, which is simpler and surer than undoing entry by entry. */
int image_unpack(int archive_fd, const char *dest, enum image_kind kind,
                 const struct image_limits *limits, uint64_t *ret_bytes, uint64_t *ret_files,
                 char *err, size_t errlen)
{
        _cleanup_(unpacker_done) struct unpacker u = {
                .kind = kind,
                .limits = limits,
                .err = err,
                .errlen = errlen,
        };
        int r = unpack_prepare(&u, archive_fd, dest, err, errlen);
        if (r < 0)
                return r;

        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                r = -errno;
                return set_error(err, errlen, r, "unpack: %s", strerror(-r));
        }
        _cleanup_close_ int result_fd = p[0];
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                close(p[1]);
                return set_error(err, errlen, r, "unpack: fork: %s", strerror(-r));
        }
        if (pid == 0) {
                close(p[0]);
                unpack_child(&u, parent, archive_fd, p[1]);
        }
        close(p[1]);
        return unpack_wait(pid, result_fd, ret_bytes, ret_files, err, errlen);
}

int image_unpack_unconfined(int archive_fd, const char *dest, enum image_kind kind,
                            const struct image_limits *limits, uint64_t *ret_bytes,
                            uint64_t *ret_files, char *err, size_t errlen)
{
        _cleanup_(unpacker_done) struct unpacker u = {
                .kind = kind,
                .limits = limits,
                .err = err,
                .errlen = errlen,
        };
        int r = unpack_prepare(&u, archive_fd, dest, err, errlen);
        if (r < 0)
                return r;
        u.in_root = false;
        r = unpack_archive(&u, archive_fd);
        if (r < 0)
                return r;
        if (ret_bytes)
                *ret_bytes = u.written;
        if (ret_files)
                *ret_files = u.files;
        return 0;
}
