/* Tests of the image store (images/store.c, images/fetch.c, with the real unpack): every
 * source kind, the failures that must leave nothing behind, concurrent imports, an importer
 * killed mid-unpack, and list, touch, remove and gc. HTTP is a tiny server of our own on
 * 127.0.0.1: no traffic leaves the machine. Needs no root. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "images.h"
#include "util.h"
#include "check.h"

static const struct image_limits limits = {
        .max_compressed = 64 << 20,
        .max_unpacked = 256 << 20,
        .max_files = 1000000,
};

static char top[64];     /* the mkdtemp folder of the whole run */
static char served[128]; /* what the HTTP server serves, as /f/NAME */
static int http_port;
static unsigned *http_file_requests; /* shared with the server: file bodies it began */
static pid_t http_pid;

/* ---- tarballs ---- */

static void pattern(char *p, size_t len, unsigned seed, unsigned i)
{
        for (size_t k = 0; k < len; k++)
                p[k] = (char)('a' + (seed * 7 + i * 13 + k) % 26);
}

static void add_entry(struct archive *a, const char *name, mode_t type, mode_t perm,
                      const char *data, size_t len, const char *symlink)
{
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, perm);
        /* Our own ids: chown to them works without root. */
        archive_entry_set_uid(e, geteuid());
        archive_entry_set_gid(e, getegid());
        archive_entry_set_mtime(e, 1700000000, 0);
        if (type == AE_IFREG)
                archive_entry_set_size(e, (la_int64_t)len);
        if (symlink)
                archive_entry_set_symlink(e, symlink);
        if (archive_write_header(a, e) != ARCHIVE_OK) {
                fprintf(stderr, "archive_write_header %s: %s\n", name, archive_error_string(a));
                exit(EXIT_FAILURE);
        }
        if (len > 0 && archive_write_data(a, data, len) != (la_ssize_t)len) {
                fprintf(stderr, "archive_write_data %s: %s\n", name, archive_error_string(a));
                exit(EXIT_FAILURE);
        }
        archive_entry_free(e);
}

/* A slug: app/ with nfiles files of size bytes each (content from seed), gzip'ed; plus an
 * entry named bad, if any, that a slug may not hold. */
static void make_slug(const char *path, unsigned nfiles, size_t size, unsigned seed,
                      const char *bad)
{
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_gzip(a);
        if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
                fprintf(stderr, "open %s: %s\n", path, archive_error_string(a));
                exit(EXIT_FAILURE);
        }
        char *buf = malloc(size + 1);
        if (!buf)
                abort();
        add_entry(a, "app", AE_IFDIR, 0755, NULL, 0, NULL);
        for (unsigned i = 0; i < nfiles; i++) {
                char name[64];
                snprintf(name, sizeof name, "app/f%05u", i);
                pattern(buf, size, seed, i);
                add_entry(a, name, AE_IFREG, 0644, buf, size, NULL);
        }
        if (bad)
                add_entry(a, bad, AE_IFREG, 0644, "x", 1, NULL);
        free(buf);
        archive_write_close(a);
        archive_write_free(a);
}

/* A small stack, uncompressed: bin/sh as a symlink, etc/hostname. */
static void make_stack(const char *path)
{
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        if (archive_write_open_filename(a, path) != ARCHIVE_OK)
                exit(EXIT_FAILURE);
        add_entry(a, "./", AE_IFDIR, 0755, NULL, 0, NULL);
        add_entry(a, "bin", AE_IFDIR, 0755, NULL, 0, NULL);
        add_entry(a, "bin/busybox", AE_IFREG, 0755, "#!busybox\n", 10, NULL);
        add_entry(a, "bin/sh", AE_IFLNK, 0777, NULL, 0, "busybox");
        add_entry(a, "etc", AE_IFDIR, 0755, NULL, 0, NULL);
        add_entry(a, "etc/hostname", AE_IFREG, 0644, "dyno\n", 5, NULL);
        archive_write_close(a);
        archive_write_free(a);
}

static void sha256_file(const char *path, char hex[65])
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (read_full_file(path, &data, &len) < 0) {
                fprintf(stderr, "read %s\n", path);
                exit(EXIT_FAILURE);
        }
        unsigned char md[32];
        unsigned mdlen = 0;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        EVP_DigestInit_ex(c, EVP_sha256(), NULL);
        EVP_DigestUpdate(c, data, len);
        EVP_DigestFinal_ex(c, md, &mdlen);
        EVP_MD_CTX_free(c);
        for (unsigned i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static uint64_t file_size(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* A tarball in the served folder, and its digest. */
static void served_slug(const char *name, unsigned nfiles, size_t size, unsigned seed,
                        char path[256], char digest[65])
{
        snprintf(path, 256, "%s/%s", served, name);
        make_slug(path, nfiles, size, seed, NULL);
        sha256_file(path, digest);
}

/* ---- a store per case ---- */

static struct image_store *store_new(const char *name, char root[256])
{
        snprintf(root, 256, "%s/%s", top, name);
        struct image_store *s = NULL;
        int r = image_store_open(root, &limits, &s);
        if (r < 0) {
                fprintf(stderr, "image_store_open %s: %s\n", root, strerror(-r));
                exit(EXIT_FAILURE);
        }
        return s;
}

static int count_entries(const char *path)
{
        DIR *d = opendir(path);
        if (!d)
                return -1;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        n++;
        closedir(d);
        return n;
}

static bool exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static bool exists_at(const char *root, const char *name)
{
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", root, name);
        return exists(p);
}

static bool contains(const char *s, const char *what) { return s && strstr(s, what) != NULL; }

struct progress {
        unsigned calls;
        uint64_t done, total;
        bool backwards;
};

static void progress_record(uint64_t done, uint64_t total, void *userdata)
{
        struct progress *p = userdata;
        if (done < p->done)
                p->backwards = true;
        p->calls++;
        p->done = done;
        p->total = total;
}

/* ---- the HTTP server ---- */

static void http_send(int fd, const void *data, size_t len)
{
        const char *p = data;
        while (len > 0) {
                ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
                if (k <= 0)
                        return;
                p += k;
                len -= (size_t)k;
        }
}

static void http_status(int fd, const char *status, const char *extra)
{
        char hdr[512];
        int n = snprintf(hdr, sizeof hdr, "HTTP/1.0 %s\r\n%sContent-Length: 0\r\n\r\n", status,
                         extra);
        http_send(fd, hdr, (size_t)n);
}

/* One request: GET /f/NAME (the file), /slow/NAME (after 500 ms), /cut/NAME (half of it, with
 * the full length announced), /nolen/NAME (no Content-Length), /redirect/NAME (302 to
 * /f/NAME), /ftp (302 to ftp://), anything else 404. */
static void http_handle(int fd)
{
        char req[4096];
        size_t n = 0;
        while (n < sizeof req - 1) {
                ssize_t k = recv(fd, req + n, sizeof req - 1 - n, 0);
                if (k <= 0)
                        return;
                n += (size_t)k;
                req[n] = 0;
                if (strstr(req, "\r\n\r\n"))
                        break;
        }
        char path[1024];
        if (sscanf(req, "GET %1023s ", path) != 1)
                return;

        const char *name = NULL;
        enum { PLAIN, SLOW, CUT, NOLEN } how = PLAIN;
        if (startswith(path, "/f/"))
                name = path + 3;
        else if (startswith(path, "/slow/"))
                name = path + 6, how = SLOW;
        else if (startswith(path, "/cut/"))
                name = path + 5, how = CUT;
        else if (startswith(path, "/nolen/"))
                name = path + 7, how = NOLEN;
        else if (startswith(path, "/redirect/")) {
                char loc[1200];
                snprintf(loc, sizeof loc, "Location: /f/%s\r\n", path + 10);
                http_status(fd, "302 Found", loc);
                return;
        } else if (strcmp(path, "/ftp") == 0) {
                http_status(fd, "302 Found", "Location: ftp://127.0.0.1:1/x\r\n");
                return;
        }
        char file[1200];
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        if (!name || strchr(name, '/') ||
            (snprintf(file, sizeof file, "%s/%s", served, name),
             read_full_file(file, &body, &len) < 0)) {
                http_status(fd, "404 Not Found", "");
                return;
        }
        __atomic_add_fetch(http_file_requests, 1, __ATOMIC_SEQ_CST);
        if (how == SLOW)
                usleep(500 * 1000);
        char hdr[256];
        int h = how == NOLEN ? snprintf(hdr, sizeof hdr, "HTTP/1.0 200 OK\r\n\r\n") :
                               snprintf(hdr, sizeof hdr,
                                        "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
        http_send(fd, hdr, (size_t)h);
        http_send(fd, body, how == CUT ? len / 2 : len);
}

static void http_start(void)
{
        http_file_requests = mmap(NULL, sizeof *http_file_requests, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (http_file_requests == MAP_FAILED)
                exit(EXIT_FAILURE);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 16) < 0 ||
            getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
                perror("http server");
                exit(EXIT_FAILURE);
        }
        http_port = ntohs(sa.sin_port);
        fflush(NULL);
        http_pid = fork();
        if (http_pid < 0)
                exit(EXIT_FAILURE);
        if (http_pid == 0) {
                /* One connection at a time is enough: concurrent importers wait on a lock,
                 * not on the server. */
                for (;;) {
                        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd < 0)
                                continue;
                        http_handle(fd);
                        close(fd);
                }
        }
        close(lfd);
}

static void http_stop(void)
{
        if (http_pid > 0) {
                kill(http_pid, SIGKILL);
                waitpid(http_pid, NULL, 0);
        }
}

static void url(char out[256], const char *route, const char *name)
{
        snprintf(out, 256, "http://127.0.0.1:%d%s%s", http_port, route, name ? name : "");
}

/* ---- cases ---- */

static void test_fetch_sources(void)
{
        char path[256], digest[65], got[65], err[512], u[256], furl[300];
        served_slug("fetch.tar.gz", 50, 10000, 1, path, digest);
        uint64_t size = file_size(path);
        char out[300];
        snprintf(out, sizeof out, "%s/fetch.out", top);

        struct {
                const char *source;
        } ok[3];
        snprintf(furl, sizeof furl, "file://%s", path);
        url(u, "/f/", "fetch.tar.gz");
        ok[0].source = path;
        ok[1].source = furl;
        ok[2].source = u;
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                struct progress p = { 0 };
                CHECK_R(image_fetch(ok[i].source, fd, limits.max_compressed, progress_record, &p,
                                    got, err, sizeof err),
                        0);
                CHECK(strcmp(got, digest) == 0);
                CHECK(file_size(out) == size);
                CHECK(p.calls >= 1 && p.done == size && p.total == size && !p.backwards);
        }

        /* A redirect is followed; one to another scheme is not. */
        {
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                url(u, "/redirect/", "fetch.tar.gz");
                CHECK_R(image_fetch(u, fd, limits.max_compressed, NULL, NULL, got, err, sizeof err),
                        0);
                CHECK(strcmp(got, digest) == 0);
                url(u, "/ftp", NULL);
                CHECK(image_fetch(u, fd, limits.max_compressed, NULL, NULL, got, err, sizeof err) <
                      0);
        }

        /* A file URL's %XX escapes are decoded. */
        {
                char spaced[300], surl[400];
                snprintf(spaced, sizeof spaced, "%s/with space.tar.gz", served);
                CHECK(link(path, spaced) == 0);
                snprintf(surl, sizeof surl, "file://%s/with%%20space.tar.gz", served);
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                CHECK_R(image_fetch(surl, fd, limits.max_compressed, NULL, NULL, got, err,
                                    sizeof err),
                        0);
                CHECK(strcmp(got, digest) == 0);
                snprintf(surl, sizeof surl, "file://%s/x%%00y", served);
                CHECK_R(image_fetch(surl, fd, limits.max_compressed, NULL, NULL, got, err,
                                    sizeof err),
                        -EINVAL);
        }

        /* Refused forms name the source. */
        static const char *const refused[] = { "relative/path.tar", "ftp://127.0.0.1/x",
                                               "file://relative", "file://otherhost/x",
                                               "gopher://127.0.0.1/" };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                err[0] = 0;
                CHECK_R(image_fetch(refused[i], fd, limits.max_compressed, NULL, NULL, got, err,
                                    sizeof err),
                        -EINVAL);
                CHECK(contains(err, refused[i]));
        }

        /* HTTP errors, with the status in the message; a credential never in it. */
        {
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                char cu[300];
                snprintf(cu, sizeof cu, "http://user:secret@127.0.0.1:%d/missing", http_port);
                CHECK_R(image_fetch(cu, fd, limits.max_compressed, NULL, NULL, got, err,
                                    sizeof err),
                        -EPROTO);
                CHECK(contains(err, "404"));
                CHECK(!contains(err, "secret"));
                url(u, "/cut/", "fetch.tar.gz");
                CHECK(image_fetch(u, fd, limits.max_compressed, NULL, NULL, got, err, sizeof err) <
                      0);
                CHECK(contains(err, "/cut/fetch.tar.gz"));
        }

        /* max_bytes, for every kind of source, with or without a length announced. */
        const char *big[] = { path, furl, NULL, NULL };
        char u1[256], u2[256];
        url(u1, "/f/", "fetch.tar.gz");
        url(u2, "/nolen/", "fetch.tar.gz");
        big[2] = u1;
        big[3] = u2;
        for (size_t i = 0; i < ELEMENTSOF(big); i++) {
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                CHECK_R(image_fetch(big[i], fd, size - 1, NULL, NULL, got, err, sizeof err),
                        -EFBIG);
                CHECK(file_size(out) < size);
        }
        /* Exactly at the limit is fine. */
        {
                _cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                CHECK_R(image_fetch(u2, fd, size, NULL, NULL, got, err, sizeof err), 0);
                CHECK(strcmp(got, digest) == 0);
        }
        unlink(out);
}

/* What an imported slug from make_slug(path, 3, 1000, seed) must look like. */
static void check_imported_slug(struct image_store *s, const char *root, const char *digest,
                                unsigned seed)
{
        struct image_info info;
        CHECK_R(image_lookup(s, digest, &info), 0);
        CHECK(strcmp(info.digest, digest) == 0);
        CHECK(info.kind == IMAGE_KIND_SLUG);
        CHECK(info.size_bytes == 3000);
        CHECK(info.files == 4); /* app/ and three files */
        CHECK(info.imported_usec > 0 && info.last_used_usec == info.imported_usec);

        _cleanup_free_ char *rootfs = NULL;
        CHECK_R(image_rootfs_path(s, digest, &rootfs), 0);
        char expect[512];
        snprintf(expect, sizeof expect, "%s/%s/rootfs", root, digest);
        CHECK(rootfs && strcmp(rootfs, expect) == 0);

        char p[600], want[1000];
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        snprintf(p, sizeof p, "%s/app/f00002", rootfs);
        CHECK_R(read_full_file(p, &data, &len), 0);
        pattern(want, 1000, seed, 2);
        CHECK(len == 1000 && data && memcmp(data, want, 1000) == 0);

        /* The top of the tree lost its write bits. */
        struct stat st;
        CHECK(stat(rootfs, &st) == 0 && (st.st_mode & 0222) == 0);
        /* The store holds the image and nothing else: no .tmp, no archive, no lock. */
        CHECK(count_entries(root) == 1);
        snprintf(p, sizeof p, "%s/%s", root, digest);
        CHECK(count_entries(p) == 2); /* meta, rootfs */
}

static void test_import_each_source(void)
{
        char root[256], path[256], digest[65], err[512], u[256], furl[300];

        struct image_store *s = store_new("local", root);
        served_slug("local.tar.gz", 3, 1000, 11, path, digest);
        struct progress p = { 0 };
        CHECK_R(image_import(s, path, digest, IMAGE_KIND_SLUG, progress_record, &p, err,
                             sizeof err),
                0);
        CHECK(p.calls >= 1 && p.done == file_size(path));
        check_imported_slug(s, root, digest, 11);
        image_store_free(s);

        s = store_new("fileurl", root);
        served_slug("fileurl.tar.gz", 3, 1000, 12, path, digest);
        snprintf(furl, sizeof furl, "file://%s", path);
        CHECK_R(image_import(s, furl, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        check_imported_slug(s, root, digest, 12);
        image_store_free(s);

        s = store_new("http", root);
        served_slug("http.tar.gz", 3, 1000, 13, path, digest);
        url(u, "/f/", "http.tar.gz");
        p = (struct progress){ 0 };
        CHECK_R(image_import(s, u, digest, IMAGE_KIND_SLUG, progress_record, &p, err, sizeof err),
                0);
        CHECK(p.done == file_size(path) && p.total == file_size(path));
        check_imported_slug(s, root, digest, 13);
        image_store_free(s);

        /* A stack: symlinks inside it are kept as symlinks. */
        s = store_new("stack", root);
        snprintf(path, sizeof path, "%s/stack.tar", served);
        make_stack(path);
        sha256_file(path, digest);
        CHECK_R(image_import(s, path, digest, IMAGE_KIND_STACK, NULL, NULL, err, sizeof err), 0);
        struct image_info info;
        CHECK_R(image_lookup(s, digest, &info), 0);
        CHECK(info.kind == IMAGE_KIND_STACK && info.size_bytes == 15);
        char lp[600], target[64] = "";
        snprintf(lp, sizeof lp, "%s/%s/rootfs/bin/sh", root, digest);
        CHECK(readlink(lp, target, sizeof target - 1) == 7 && strcmp(target, "busybox") == 0);
        image_store_free(s);
}

static void test_refusals_leave_nothing(void)
{
        char root[256], path[256], digest[65], other[65], err[512], u[256];
        struct image_store *s = store_new("refusals", root);
        served_slug("refuse.tar.gz", 3, 1000, 21, path, digest);

        /* Arguments. */
        CHECK_R(image_import(s, path, "ABC", IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                -EINVAL);
        CHECK(contains(err, "ABC"));
        CHECK_R(image_import(s, path, digest, (enum image_kind)7, NULL, NULL, err, sizeof err),
                -EINVAL);
        CHECK_R(image_import(s, "rel/path", digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                -EINVAL);
        CHECK(contains(err, "rel/path"));
        CHECK(count_entries(root) == 0);

        /* Wrong digest: the mismatch names both. */
        memcpy(other, digest, 65);
        other[0] = other[0] == '0' ? '1' : '0';
        CHECK_R(image_import(s, path, other, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                -EBADMSG);
        char want[200];
        snprintf(want, sizeof want, "sha256 mismatch: expected %s, got %s", other, digest);
        CHECK(contains(err, want));
        snprintf(want, sizeof want, "image %.12s: ", other);
        CHECK(startswith(err, want));
        CHECK(count_entries(root) == 0);
        CHECK_R(image_lookup(s, other, NULL), -ENOENT);

        /* Failed downloads. */
        url(u, "/missing/", "refuse.tar.gz");
        CHECK_R(image_import(s, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), -EPROTO);
        CHECK(contains(err, "404"));
        snprintf(want, sizeof want, "image %.12s: ", digest);
        CHECK(startswith(err, want));
        CHECK(count_entries(root) == 0);
        url(u, "/cut/", "refuse.tar.gz");
        CHECK(image_import(s, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err) < 0);
        CHECK(count_entries(root) == 0);
        CHECK_R(image_import(s, "/nonexistent/x.tar", digest, IMAGE_KIND_SLUG, NULL, NULL, err,
                             sizeof err),
                -ENOENT);
        CHECK(count_entries(root) == 0);

        /* Over max_compressed. */
        struct image_limits small = limits;
        small.max_compressed = file_size(path) - 1;
        struct image_store *t = NULL;
        char sroot[300];
        snprintf(sroot, sizeof sroot, "%s/small", top);
        CHECK_R(image_store_open(sroot, &small, &t), 0);
        CHECK_R(image_import(t, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                -EFBIG);
        url(u, "/f/", "refuse.tar.gz");
        CHECK_R(image_import(t, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), -EFBIG);
        url(u, "/nolen/", "refuse.tar.gz");
        CHECK_R(image_import(t, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), -EFBIG);
        CHECK(count_entries(sroot) == 0);
        /* And over max_unpacked: unpack's error, with the image named in front. */
        image_store_free(t);
        small = limits;
        small.max_unpacked = 2999;
        CHECK_R(image_store_open(sroot, &small, &t), 0);
        CHECK_R(image_import(t, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                -EFBIG);
        CHECK(startswith(err, want) && contains(err, "max_unpacked"));
        CHECK(count_entries(sroot) == 0);
        image_store_free(t);

        /* A truncated archive, with the digest of what was truncated: unpack fails. */
        char cut[300];
        snprintf(cut, sizeof cut, "%s/truncated.tar.gz", served);
        {
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                CHECK_R(read_full_file(path, &data, &len), 0);
                CHECK_R(write_file_atomic(cut, data, len / 2, 0644), 0);
        }
        sha256_file(cut, other);
        CHECK(image_import(s, cut, other, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err) < 0);
        CHECK(count_entries(root) == 0);

        /* A slug entry outside app/: the entry is named, after the image. */
        char bad[300], bad_digest[65];
        snprintf(bad, sizeof bad, "%s/bad.tar.gz", served);
        make_slug(bad, 2, 100, 22, "etc/passwd");
        sha256_file(bad, bad_digest);
        CHECK_R(image_import(s, bad, bad_digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                -EINVAL);
        snprintf(want, sizeof want, "image %.12s: ", bad_digest);
        CHECK(startswith(err, want) && contains(err, "etc/passwd"));
        CHECK(count_entries(root) == 0);

        image_store_free(s);
}

static void test_already_present(void)
{
        char root[256], path[256], digest[65], err[512], u[256];
        struct image_store *s = store_new("present", root);
        served_slug("present.tar.gz", 3, 1000, 31, path, digest);
        url(u, "/f/", "present.tar.gz");
        unsigned before = __atomic_load_n(http_file_requests, __ATOMIC_SEQ_CST);
        CHECK_R(image_import(s, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        CHECK(__atomic_load_n(http_file_requests, __ATOMIC_SEQ_CST) == before + 1);
        struct image_info a, b;
        CHECK_R(image_lookup(s, digest, &a), 0);

        /* Not fetched again: a source that does not exist, or the server, is not read. */
        CHECK_R(image_import(s, "/nonexistent/x.tar", digest, IMAGE_KIND_SLUG, NULL, NULL, err,
                             sizeof err),
                0);
        CHECK_R(image_import(s, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        CHECK(__atomic_load_n(http_file_requests, __ATOMIC_SEQ_CST) == before + 1);
        CHECK_R(image_lookup(s, digest, &b), 0);
        CHECK(a.imported_usec == b.imported_usec);
        CHECK(count_entries(root) == 1);
        image_store_free(s);
}

static void test_concurrent_imports(void)
{
        char root[256], path[256], digest[65], u[256];
        struct image_store *s = store_new("concurrent", root);
        served_slug("concurrent.tar.gz", 3, 1000, 41, path, digest);
        url(u, "/slow/", "concurrent.tar.gz");
        unsigned before = __atomic_load_n(http_file_requests, __ATOMIC_SEQ_CST);

        int gate[2];
        CHECK(pipe2(gate, O_CLOEXEC) == 0);
        pid_t kids[4];
        fflush(NULL);
        for (size_t i = 0; i < ELEMENTSOF(kids); i++) {
                kids[i] = fork();
                if (kids[i] == 0) {
                        char c, err[512];
                        close(gate[1]);
                        (void)!read(gate[0], &c, 1); /* EOF when the parent opens the gate */
                        int r = image_import(s, u, digest, IMAGE_KIND_SLUG, NULL, NULL, err,
                                             sizeof err);
                        if (r < 0)
                                fprintf(stderr, "  child: %s\n", err);
                        _exit(r < 0 ? 1 : 0);
                }
        }
        close(gate[0]);
        close(gate[1]);
        for (size_t i = 0; i < ELEMENTSOF(kids); i++) {
                int status = 0;
                CHECK(waitpid(kids[i], &status, 0) == kids[i]);
                CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        /* One download, so one unpack: the others waited for the lock and found it there. */
        CHECK(__atomic_load_n(http_file_requests, __ATOMIC_SEQ_CST) == before + 1);
        _cleanup_free_ struct image_info *v = NULL;
        size_t n = 0;
        CHECK_R(image_list(s, &v, &n), 0);
        CHECK(n == 1 && v && strcmp(v[0].digest, digest) == 0);
        CHECK(count_entries(root) == 1);
        image_store_free(s);
}

static void test_kill_mid_unpack(void)
{
        char root[256], path[256], digest[65], err[512];
        struct image_store *s = store_new("killed", root);
        /* Many small files: the unpack takes long enough to be caught in the middle. */
        served_slug("big.tar.gz", 5000, 256, 51, path, digest);

        fflush(NULL);
        pid_t kid = fork();
        if (kid == 0) {
                int r = image_import(s, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err);
                _exit(r < 0 ? 1 : 0);
        }
        char probe[512];
        snprintf(probe, sizeof probe, "%s/.tmp-%s-%d/rootfs/app/f00050", root, digest, (int)kid);
        bool seen = false;
        for (int i = 0; i < 200000 && !seen; i++) {
                struct stat st;
                if (lstat(probe, &st) == 0)
                        seen = true;
                else
                        usleep(50);
        }
        kill(kid, SIGKILL);
        int status = 0;
        CHECK(waitpid(kid, &status, 0) == kid);
        CHECK(seen);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        char tmp[300];
        snprintf(tmp, sizeof tmp, ".tmp-%s-%d", digest, (int)kid);
        CHECK(exists_at(root, tmp));
        CHECK_R(image_lookup(s, digest, NULL), -ENOENT);
        image_store_free(s);

        /* The unpack runs in a child of the importer, killed with it (PR_SET_PDEATHSIG) but a
         * moment later, and holding the import's lock until it is gone: it must go, and then
         * nothing writes in the half image. */
        char lock[PATH_MAX];
        snprintf(lock, sizeof lock, "%s/.lock-%s", root, digest);
        _cleanup_close_ int lfd = open(lock, O_RDONLY | O_CLOEXEC);
        bool freed = false;
        for (int i = 0; lfd >= 0 && i < 10000 && !freed; i++) {
                if (flock(lfd, LOCK_EX | LOCK_NB) == 0)
                        freed = true;
                else
                        usleep(1000);
        }
        CHECK(freed);
        closep(&lfd);
        lfd = -1;

        /* Opening the store again takes the half image away, and its lock file. */
        s = store_new("killed", root);
        CHECK(!exists_at(root, tmp));
        CHECK(count_entries(root) == 0);
        CHECK_R(image_lookup(s, digest, NULL), -ENOENT);
        CHECK_R(image_import(s, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        struct image_info info;
        CHECK_R(image_lookup(s, digest, &info), 0);
        CHECK(info.files == 5001 && info.size_bytes == 5000 * 256);
        image_store_free(s);
}

static void test_list_lookup_touch(void)
{
        char root[256], p1[256], p2[256], d1[65], d2[65], err[512];
        struct image_store *s = store_new("list", root);
        _cleanup_free_ struct image_info *v = NULL;
        size_t n = 99;
        CHECK_R(image_list(s, &v, &n), 0);
        CHECK(n == 0);
        free(TAKE_PTR(v));

        served_slug("list1.tar.gz", 3, 1000, 61, p1, d1);
        served_slug("list2.tar.gz", 3, 1000, 62, p2, d2);
        CHECK_R(image_import(s, p1, d1, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        CHECK_R(image_import(s, p2, d2, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        /* Not images: ignored by list. */
        char junk[300];
        snprintf(junk, sizeof junk, "%s/not-a-digest", root);
        CHECK(mkdir(junk, 0755) == 0);

        CHECK_R(image_list(s, &v, &n), 0);
        CHECK(n == 2);
        if (n == 2) {
                CHECK(strcmp(v[0].digest, v[1].digest) < 0);
                CHECK(strcmp(v[0].digest, d1) == 0 || strcmp(v[0].digest, d2) == 0);
                CHECK(v[0].size_bytes == 3000 && v[1].files == 4);
        }

        struct image_info before, after;
        CHECK_R(image_lookup(s, d1, &before), 0);
        usleep(2000);
        CHECK_R(image_touch(s, d1), 0);
        CHECK_R(image_lookup(s, d1, &after), 0);
        CHECK(after.last_used_usec > before.last_used_usec);
        CHECK(after.imported_usec == before.imported_usec);
        CHECK(after.size_bytes == before.size_bytes && after.kind == before.kind);

        char absent[65];
        memset(absent, 'e', 64);
        absent[64] = 0;
        CHECK_R(image_lookup(s, absent, NULL), -ENOENT);
        CHECK_R(image_touch(s, absent), -ENOENT);
        CHECK_R(image_lookup(s, "nope", NULL), -EINVAL);
        CHECK_R(image_lookup(s, "../../etc/passwd", NULL), -EINVAL);
        char upper[65];
        memcpy(upper, d1, 65);
        for (int i = 0; i < 64; i++)
                if (upper[i] >= 'a')
                        upper[i] = (char)(upper[i] - 'a' + 'A');
        CHECK(!image_digest_valid(upper));
        CHECK(image_digest_valid(d1));

        CHECK(strcmp(image_store_root(s), root) == 0);
        image_store_free(s);
}

static bool in_use_of(const char *digest, void *userdata)
{
        for (char **d = userdata; d && *d; d++)
                if (strcmp(*d, digest) == 0)
                        return true;
        return false;
}

static void test_remove(void)
{
        char root[256], path[256], digest[65], err[512];
        struct image_store *s = store_new("remove", root);
        served_slug("remove.tar.gz", 3, 1000, 71, path, digest);
        CHECK_R(image_import(s, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);

        char *used[] = { digest, NULL };
        CHECK_R(image_remove(s, digest, in_use_of, used, err, sizeof err), -EBUSY);
        char want[100];
        snprintf(want, sizeof want, "image %.12s is used by a dyno", digest);
        CHECK(contains(err, want));
        CHECK_R(image_lookup(s, digest, NULL), 0);
        char f[600];
        snprintf(f, sizeof f, "%s/%s/rootfs/app/f00000", root, digest);
        CHECK(exists(f));

        CHECK_R(image_remove(s, digest, in_use_of, NULL, err, sizeof err), 0);
        CHECK_R(image_lookup(s, digest, NULL), -ENOENT);
        CHECK(count_entries(root) == 0);
        CHECK_R(image_remove(s, digest, NULL, NULL, err, sizeof err), -ENOENT);
        CHECK_R(image_remove(s, "zz", NULL, NULL, err, sizeof err), -EINVAL);

        /* And it can come back. */
        CHECK_R(image_import(s, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        CHECK_R(image_lookup(s, digest, NULL), 0);
        image_store_free(s);
}

static void test_gc(void)
{
        char root[256], p[3][256], d[3][65], err[512];
        struct image_store *s = store_new("gc", root);
        for (int i = 0; i < 3; i++) {
                char name[32];
                snprintf(name, sizeof name, "gc%d.tar.gz", i);
                served_slug(name, 3, 1000, 80 + (unsigned)i, p[i], d[i]);
                CHECK_R(image_import(s, p[i], d[i], IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                        0);
        }
        /* Used in the order 0, 1, 2: 0 is the least recently used. */
        for (int i = 0; i < 3; i++) {
                usleep(2000);
                CHECK_R(image_touch(s, d[i]), 0);
        }

        /* Within the budget: nothing goes. */
        char **removed = NULL;
        uint64_t freed = 99;
        CHECK_R(image_gc(s, 9000, NULL, NULL, &removed, &freed), 0);
        CHECK(removed && !removed[0] && freed == 0);
        strv_free(removed);

        /* 0 is the oldest but in use: 1 goes, which brings 9000 down to 6000. */
        char *used[] = { d[0], NULL };
        CHECK_R(image_gc(s, 6000, in_use_of, used, &removed, &freed), 0);
        CHECK(removed && removed[0] && strcmp(removed[0], d[1]) == 0 && !removed[1]);
        CHECK(freed == 3000);
        strv_free(removed);
        CHECK_R(image_lookup(s, d[0], NULL), 0);
        CHECK_R(image_lookup(s, d[1], NULL), -ENOENT);
        CHECK_R(image_lookup(s, d[2], NULL), 0);

        /* A budget nothing unused can meet: the in-use one stays whatever it costs. */
        CHECK_R(image_gc(s, 0, in_use_of, used, &removed, &freed), 0);
        CHECK(removed && removed[0] && strcmp(removed[0], d[2]) == 0 && !removed[1]);
        CHECK(freed == 3000);
        strv_free(removed);
        CHECK_R(image_lookup(s, d[0], NULL), 0);
        CHECK(count_entries(root) == 1);

        /* Three again, none in use, room for one: the most recently used one stays. */
        for (int i = 1; i < 3; i++)
                CHECK_R(image_import(s, p[i], d[i], IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err),
                        0);
        for (int i = 0; i < 3; i++) {
                usleep(2000);
                CHECK_R(image_touch(s, d[i]), 0);
        }
        CHECK_R(image_gc(s, 3000, NULL, NULL, &removed, &freed), 0);
        CHECK(removed && removed[0] && removed[1] && !removed[2]);
        if (removed && removed[0] && removed[1]) {
                CHECK(strcmp(removed[0], d[0]) == 0);
                CHECK(strcmp(removed[1], d[1]) == 0);
        }
        CHECK(freed == 6000);
        strv_free(removed);
        CHECK_R(image_lookup(s, d[2], NULL), 0);
        CHECK(count_entries(root) == 1);
        image_store_free(s);
}

/* Leftovers of crashes at open, and symlinks planted in the store. */
static void test_open_cleans_and_no_symlinks(void)
{
        char root[256], path[256], digest[65], err[512], p[600];
        struct image_store *s = store_new("open", root);
        served_slug("open.tar.gz", 3, 1000, 91, path, digest);
        image_store_free(s);

        char d[4][65];
        for (int i = 0; i < 4; i++) {
                memset(d[i], "abcd"[i], 64);
                d[i][64] = 0;
        }
        /* A dead importer's folder (its lock free). */
        snprintf(p, sizeof p, "%s/.tmp-%s-%d/rootfs/app", root, d[0], 999999);
        CHECK_R(mkdir_p(p, 0755), 0);
        /* A live importer's folder: we hold its lock. */
        snprintf(p, sizeof p, "%s/.tmp-%s-%d/rootfs", root, d[1], 1);
        CHECK_R(mkdir_p(p, 0755), 0);
        snprintf(p, sizeof p, "%s/.lock-%s", root, d[1]);
        _cleanup_close_ int lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        CHECK(lock >= 0 && flock(lock, LOCK_EX) == 0);
        /* An image folder without meta, a removal cut short, a stale lock file. */
        snprintf(p, sizeof p, "%s/%s/rootfs", root, d[2]);
        CHECK_R(mkdir_p(p, 0755), 0);
        snprintf(p, sizeof p, "%s/.tmp-rm-%s-%d", root, d[2], 999999);
        CHECK_R(mkdir_p(p, 0755), 0);
        snprintf(p, sizeof p, "%s/.lock-%s", root, d[3]);
        CHECK_R(write_file_atomic(p, "", 0, 0600), 0);
        /* Not ours: stays. */
        snprintf(p, sizeof p, "%s/README", root);
        CHECK_R(write_file_atomic(p, "hi\n", 3, 0644), 0);

        /* A symlink named as an image, to a real image's folder outside the store. */
        char outside[400], outside_root[300];
        struct image_store *o = NULL;
        snprintf(outside_root, sizeof outside_root, "%s/outside", top);
        CHECK_R(image_store_open(outside_root, &limits, &o), 0);
        CHECK_R(image_import(o, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        image_store_free(o);
        snprintf(outside, sizeof outside, "%s/%s", outside_root, digest);
        snprintf(p, sizeof p, "%s/%s", root, digest);
        CHECK(symlink(outside, p) == 0);

        s = store_new("open", root);
        CHECK(!exists_at(root, digest)); /* removed, not followed */
        snprintf(p, sizeof p, "%s/meta", outside);
        CHECK(exists(p));
        snprintf(p, sizeof p, ".tmp-%s-%d", d[0], 999999);
        CHECK(!exists_at(root, p));
        snprintf(p, sizeof p, ".tmp-%s-%d", d[1], 1);
        CHECK(exists_at(root, p)); /* its lock is held */
        snprintf(p, sizeof p, ".lock-%s", d[1]);
        CHECK(exists_at(root, p));
        CHECK(!exists_at(root, d[2]));
        snprintf(p, sizeof p, ".tmp-rm-%s-%d", d[2], 999999);
        CHECK(!exists_at(root, p));
        snprintf(p, sizeof p, ".lock-%s", d[3]);
        CHECK(!exists_at(root, p));
        CHECK(exists_at(root, "README"));
        CHECK(count_entries(root) == 3);

        /* A symlink planted while the store is open: lookup, touch, list, remove and import
         * all refuse to go through it, and the outside image stays whole. */
        snprintf(p, sizeof p, "%s/%s", root, digest);
        CHECK(symlink(outside, p) == 0);
        CHECK_R(image_lookup(s, digest, NULL), -ENOENT);
        CHECK_R(image_touch(s, digest), -ENOENT);
        _cleanup_free_ struct image_info *v = NULL;
        size_t n = 9;
        CHECK_R(image_list(s, &v, &n), 0);
        CHECK(n == 0);
        CHECK_R(image_remove(s, digest, NULL, NULL, err, sizeof err), -ENOENT);
        snprintf(p, sizeof p, "%s/meta", outside);
        CHECK(exists(p));
        /* The import replaces the symlink with the image, leaving its target alone. */
        CHECK_R(image_import(s, path, digest, IMAGE_KIND_SLUG, NULL, NULL, err, sizeof err), 0);
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", root, digest);
        CHECK(lstat(p, &st) == 0 && S_ISDIR(st.st_mode));
        snprintf(p, sizeof p, "%s/meta", outside);
        CHECK(exists(p));
        snprintf(p, sizeof p, "%s/rootfs/app/f00000", outside);
        CHECK(exists(p));

        /* The live importer finishes (its lock goes): the next open takes its folder. */
        close(TAKE_FD(lock));
        image_store_free(s);
        s = store_new("open", root);
        snprintf(p, sizeof p, ".tmp-%s-%d", d[1], 1);
        CHECK(!exists_at(root, p));
        image_store_free(s);
}

int main(void)
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "fetch: path, file://, http://, redirects, refusals, limits",
                  test_fetch_sources },
                { "import from each kind of source", test_import_each_source },
                { "refused or failed imports leave nothing", test_refusals_leave_nothing },
                { "an image already there is not fetched again", test_already_present },
                { "concurrent imports of one digest: one download, one folder",
                  test_concurrent_imports },
                { "kill -9 mid-unpack, then open cleans and import works", test_kill_mid_unpack },
                { "list, lookup, touch", test_list_lookup_touch },
                { "remove: busy when in use, gone otherwise", test_remove },
                { "gc: least recently used first, never one in use", test_gc },
                { "open cleans leftovers; symlinks are never followed",
                  test_open_cleans_and_no_symlinks },
        };
        int passed = 0, failed = 0;

        /* SIGPIPE would kill the test when a peer goes away; errors are checked instead. */
        signal(SIGPIPE, SIG_IGN);
        /* Our server is on 127.0.0.1: a proxy from the environment must not see the requests. */
        static const char *const proxies[] = { "http_proxy", "https_proxy", "HTTPS_PROXY",
                                               "all_proxy", "ALL_PROXY" };
        for (size_t i = 0; i < ELEMENTSOF(proxies); i++)
                unsetenv(proxies[i]);
        snprintf(top, sizeof top, "/tmp/test-images-XXXXXX");
        if (!mkdtemp(top)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        snprintf(served, sizeof served, "%s/served", top);
        if (mkdir(served, 0755) < 0) {
                perror("mkdir");
                return EXIT_FAILURE;
        }
        http_start();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                case_failures = 0;
                cases[i].fn();
                printf("%s: %s\n", case_failures ? "FAIL" : "ok  ", cases[i].name);
                fflush(stdout);
                if (case_failures)
                        failed++;
                else
                        passed++;
        }

        http_stop();
        /* Stores left read-only tops: rm_rf as root passes them, as another user it may not,
         * so give the write bits back first. */
        char cmd[128];
        snprintf(cmd, sizeof cmd, "chmod -R u+w %s 2>/dev/null", top);
        (void)!system(cmd);
        int r = rm_rf(top);
        if (r < 0)
                fprintf(stderr, "remove %s: %s\n", top, strerror(-r));
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
