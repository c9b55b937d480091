/* Unpacking a stack or a slug. Our own checks judge every entry before libarchive writes it;
 * libarchive's secure extraction flags are the second line of defence. The tarball is
 * untrusted: anyone who can name a URL to hostd chooses its bytes, and we unpack as root.
 *
 * Entries are written by absolute path (dest + "/" + the entry's normalized name) rather than
 * relative to a chdir()ed cwd: the cwd is process-wide state we must not depend on. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/stat.h>

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

/* The writer fails with an errno (ENOSPC, EACCES...) or, for its own refusals (the second line
 * of defence: "Cannot extract through symlink"), with none. */
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

/* The first component of path that is a symlink we wrote, or NULL. libarchive refuses to write
 * through one too (ARCHIVE_EXTRACT_SECURE_SYMLINKS); this catches it before any syscall and
 * names it. Only what we wrote can be a symlink: dest was empty. */
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

        dest_join(u, u->name, u->path);
        archive_entry_copy_pathname(e, u->path);
        if (hardlink) {
                dest_join(u, u->link, u->link_path);
                archive_entry_copy_hardlink(e, u->link_path);
        }

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

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
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
        _cleanup_(archive_read_freep) struct archive *in = NULL;
        _cleanup_(archive_write_freep) struct archive *out = NULL;
        int r;

        if (errlen > 0)
                err[0] = 0;
        if (archive_fd < 0 || !dest || !limits ||
            (kind != IMAGE_KIND_STACK && kind != IMAGE_KIND_SLUG)) {
                snprintf(err, errlen, "unpack: invalid arguments");
                return -EINVAL;
        }

        /* Canonical, so that libarchive's check for symlinks along each entry's path (it walks
         * the whole absolute path) does not trip on one above dest, such as /var -> /data. */
        u.dest = realpath(dest, NULL);
        if (!u.dest) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", dest, strerror(-r));
                return r;
        }
        u.dest_len = strlen(u.dest);
        r = dir_is_empty(u.dest);
        if (r == 0)
                r = -ENOTEMPTY;
        if (r < 0) {
                snprintf(err, errlen, "%s: %s", dest, strerror(-r));
                return r;
        }

        /* The whole tarball, whoever read or wrote the fd before (a fetch leaves it at the
         * end); a pipe is read from where it is. */
        if (lseek(archive_fd, 0, SEEK_SET) < 0 && errno != ESPIPE) {
                r = -errno;
                snprintf(err, errlen, "archive: %s", strerror(-r));
                return r;
        }

        in = archive_read_new();
        out = archive_write_disk_new();
        if (!in || !out)
                return -ENOMEM;

        /* The tar family only (ustar, pax, GNU), and only compressions libarchive decodes in
         * process with the libraries it links (Debian's links all of these): filter_all would
         * also run external programs (lrzip, grzip, lzop) on input we do not trust. */
        archive_read_support_format_tar(in);
        archive_read_support_filter_gzip(in);
        archive_read_support_filter_bzip2(in);
        archive_read_support_filter_xz(in);
        archive_read_support_filter_lzma(in);
        archive_read_support_filter_lzip(in);
        archive_read_support_filter_zstd(in);
        archive_read_support_filter_lz4(in);
        archive_read_support_filter_compress(in);

        /* No ACLs, xattrs or file flags: an image is files, modes, owners and times. No
         * SECURE_NOABSOLUTEPATHS: the names we hand libarchive are absolute by construction
         * (dest/...), after normalize() refused every absolute name in the tarball. */
        if (archive_write_disk_set_options(
                    out, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                 ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                 ARCHIVE_EXTRACT_OWNER) != ARCHIVE_OK) {
                snprintf(err, errlen, "unpack: %s", archive_message(out));
                return -EINVAL;
        }

        if (archive_read_open_fd(in, archive_fd, READ_BLOCK_SIZE) != ARCHIVE_OK)
                return read_failed(&u, in, false);

        for (;;) {
                struct archive_entry *e;
                r = archive_read_next_header(in, &e);
                if (r == ARCHIVE_EOF)
                        break;
                /* A warning (an unknown pax keyword, say) leaves the entry whole. */
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                        return read_failed(&u, in, false);
                r = unpack_entry(&u, in, out, e);
                if (r < 0)
                        return r;
        }

        /* Folders' modes and times are set here, last, so that a read-only folder could be
         * filled first. */
        if (archive_write_close(out) != ARCHIVE_OK) {
                r = archive_errno(out);
                snprintf(err, errlen, "unpack: %s", archive_message(out));
                return r > 0 ? -r : -EIO;
        }

        if (ret_bytes)
                *ret_bytes = u.written;
        if (ret_files)
                *ret_files = u.files;
        return 0;
}
