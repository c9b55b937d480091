/* Fetching a tarball, from a local file or over HTTP(S), into a file. It is hashed while it is
 * copied, so the bytes that are checked are the bytes that are kept: no second read, and no
 * window in which the source could change between hashing and unpacking. */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "images.h"
#include "util.h"

#define FETCH_CHUNK (128 * 1024)
/* Progress at most this often: a bar needs no more, and an event per 16 KiB read would cost
 * more than the copy. */
#define PROGRESS_BYTES (64 * 1024)
#define PROGRESS_USEC (100 * 1000)

static inline void evp_md_ctx_freep(EVP_MD_CTX **c) { EVP_MD_CTX_free(*c); }
static inline void curl_easy_cleanupp(CURL **c) { curl_easy_cleanup(*c); }

struct fetch {
        int fd;
        uint64_t max_bytes;
        uint64_t done;
        uint64_t total; /* 0: unknown */
        EVP_MD_CTX *md;
        image_progress_t progress;
        void *userdata;
        bool reported_once;
        uint64_t reported_bytes;
        uint64_t reported_usec;
        CURL *curl;
        bool total_known;
        int error; /* why the write callback stopped the transfer */
};

/* The source as a message may show it: "user:password@" in a URL is a credential. */
static void source_for_message(const char *source, char *buf, size_t buflen)
{
        const char *host = strstr(source, "://");
        const char *at = NULL;
        char tmp[1024];

        if (host) {
                host += 3;
                size_t authority = strcspn(host, "/?#");
                at = memchr(host, '@', authority);
        }
        if (at) {
                snprintf(tmp, sizeof tmp, "%.*s%s", (int)(host - source), source, at + 1);
                source = tmp;
        }
        escape_value(source, 256, buf, buflen);
}

static void progress_report(struct fetch *f, bool force)
{
        if (!f->progress)
                return;
        uint64_t now = now_monotonic_usec();
        if (!force && f->reported_once && f->done - f->reported_bytes < PROGRESS_BYTES &&
            now - f->reported_usec < PROGRESS_USEC)
                return;
        f->reported_once = true;
        f->reported_bytes = f->done;
        f->reported_usec = now;
        f->progress(f->done, f->total, f->userdata);
}

/* Hash and keep one chunk; -EFBIG, before writing anything, once it would pass the limit. */
static int fetch_consume(struct fetch *f, const void *data, size_t len)
{
        if (len > f->max_bytes - f->done)
                return -EFBIG;
        if (EVP_DigestUpdate(f->md, data, len) != 1)
                return -ENOMEM;
        const char *p = data;
        size_t left = len;
        while (left > 0) {
                ssize_t k = write(f->fd, p, left);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                left -= (size_t)k;
        }
        f->done += len;
        progress_report(f, false);
        return 0;
}

static int fetch_local(struct fetch *f, const char *path, const char *shown, char *err,
                       size_t errlen)
{
        _cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (in < 0) {
                int r = -errno;
                return set_error(err, errlen, r, "open %s: %s", shown, strerror(-r));
        }
        struct stat st;
        if (fstat(in, &st) < 0) {
                int r = -errno;
                return set_error(err, errlen, r, "stat %s: %s", shown, strerror(-r));
        }
        if (S_ISDIR(st.st_mode)) {
                return set_error(err, errlen, -EISDIR, "%s is a directory, not a tarball", shown);
        }
        if (S_ISREG(st.st_mode)) {
                f->total = (uint64_t)st.st_size;
                if (f->total > f->max_bytes) {
                        return set_error(err, errlen, -EFBIG,
                                         "%s: %" PRIu64 " bytes, more than the limit of %" PRIu64,
                                         shown, f->total, f->max_bytes);
                }
        }
        progress_report(f, true);

        _cleanup_free_ char *buf = malloc(FETCH_CHUNK);
        if (!buf) {
                return set_error(err, errlen, -ENOMEM, "read %s: %s", shown, strerror(ENOMEM));
        }
        for (;;) {
                ssize_t n = read(in, buf, FETCH_CHUNK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        return set_error(err, errlen, r, "read %s: %s", shown, strerror(-r));
                }
                if (n == 0)
                        break;
                int r = fetch_consume(f, buf, (size_t)n);
                if (r == -EFBIG) {
                        /* It grew while we read it, or it is a pipe. */
                        return set_error(err, errlen, r,
                                         "%s: more than the limit of %" PRIu64 " bytes", shown,
                                         f->max_bytes);
                }
                if (r < 0) {
                        return set_error(err, errlen, r, "copy %s: %s", shown, strerror(-r));
                }
        }
        progress_report(f, true);
        return 0;
}

static size_t curl_write(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct fetch *f = userdata;

        /* Only the final response's body comes here, so its Content-Length is the total. */
        if (!f->total_known) {
                curl_off_t cl = -1;
                CURLcode c = curl_easy_getinfo(f->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
                if (c == CURLE_OK && cl > 0)
                        f->total = (uint64_t)cl;
                f->total_known = true;
                progress_report(f, true);
        }
        int r = fetch_consume(f, data, size * nmemb);
        if (r < 0) {
                f->error = r;
                return 0; /* short of the length: curl stops with CURLE_WRITE_ERROR */
        }
        return size * nmemb;
}

static int curl_error_to_errno(CURLcode c)
{
        switch (c) {
        case CURLE_OUT_OF_MEMORY: return -ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL: return -EPROTONOSUPPORT;
        case CURLE_URL_MALFORMAT: return -EINVAL;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
        case CURLE_FILESIZE_EXCEEDED: return -EFBIG;
        case CURLE_HTTP_RETURNED_ERROR: return -EPROTO;
        case CURLE_TOO_MANY_REDIRECTS: return -ELOOP;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE: return -EPROTO;
        default: return -EIO;
        }
}

static int fetch_http(struct fetch *f, const char *url, const char *shown, char *err, size_t errlen)
{
        /* Once per process, never cleaned up: hostd imports in a single-threaded child of
         * its own, and libcurl's global state lives as long as that process. */
        static bool curl_ready;
        if (!curl_ready) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                        return set_error(err, errlen, -ENOMEM,
                                         "download %s: cannot initialize libcurl", shown);
                }
                curl_ready = true;
        }

        _cleanup_(curl_easy_cleanupp) CURL *curl = curl_easy_init();
        if (!curl) {
                return set_error(err, errlen, -ENOMEM, "download %s: %s", shown, strerror(ENOMEM));
        }
        f->curl = curl;
        char curl_err[CURL_ERROR_SIZE] = "";
        /* http and https only, for the URL and for every redirect: file://, ftp:// and the
         * rest would reach what the caller never named. */
        if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L) != CURLE_OK ||
            /* A stalled server is given up after a minute under 1 KiB/s, rather than holding
             * the import, and every importer waiting on its lock, forever. */
            curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
                             (curl_off_t)(f->max_bytes > INT64_MAX ? INT64_MAX : f->max_bytes)) !=
                    CURLE_OK ||
            /* No SIGALRM for DNS timeouts: signals belong to the caller. */
            curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_USERAGENT, "hostd") != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, curl_write) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_WRITEDATA, f) != CURLE_OK) {
                return set_error(err, errlen, -ENOMEM, "download %s: cannot set up libcurl", shown);
        }

        CURLcode c = curl_easy_perform(curl);
        f->curl = NULL;
        if (c == CURLE_WRITE_ERROR && f->error < 0) {
                if (f->error == -EFBIG)
                        (void)set_error(err, errlen, 0,
                                        "download %s: more than the limit of %" PRIu64 " bytes",
                                        shown, f->max_bytes);
                else
                        (void)set_error(err, errlen, 0, "download %s: write it: %s", shown,
                                        strerror(-f->error));
                return f->error;
        }
        if (c == CURLE_HTTP_RETURNED_ERROR) {
                long status = 0;
                (void)curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
                return set_error(err, errlen, -EPROTO, "download %s: HTTP status %ld", shown,
                                 status);
        }
        if (c == CURLE_FILESIZE_EXCEEDED) {
                return set_error(err, errlen, -EFBIG,
                                 "download %s: more than the limit of %" PRIu64 " bytes", shown,
                                 f->max_bytes);
        }
        if (c != CURLE_OK) {
                (void)set_error(err, errlen, 0, "download %s: %s", shown,
                                curl_err[0] ? curl_err : curl_easy_strerror(c));
                return curl_error_to_errno(c);
        }
        progress_report(f, true);
        return 0;
}

static int unhex(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* The path of "file:///abs/path" or "file://localhost/abs/path", %XX decoded. -EINVAL for
 * another host, a relative path or an encoded NUL. */
static int file_url_path(const char *url, char **ret)
{
        const char *p = url + strlen("file://");
        if (startswith(p, "localhost/"))
                p += strlen("localhost");
        if (*p != '/')
                return -EINVAL;
        _cleanup_free_ char *path = malloc(strlen(p) + 1);
        if (!path)
                return -ENOMEM;
        char *o = path;
        for (; *p; p++) {
                if (*p == '?' || *p == '#')
                        return -EINVAL; /* no meaning for a file: refuse, not guess */
                if (*p != '%') {
                        *o++ = *p;
                        continue;
                }
                int hi = unhex(p[1]), lo = hi < 0 ? -1 : unhex(p[2]);
                if (lo < 0 || (hi == 0 && lo == 0))
                        return -EINVAL;
                *o++ = (char)(hi << 4 | lo);
                p += 2;
        }
        *o = 0;
        *ret = TAKE_PTR(path);
        return 0;
}

int image_fetch(const char *source, int fd, uint64_t max_bytes, image_progress_t progress,
                void *userdata, char digest_out[65], char *err, size_t errlen)
{
        char shown[300];
        int r;

        if (!source || fd < 0) {
                return set_error(err, errlen, -EINVAL, "fetch: no source or file");
        }
        source_for_message(source, shown, sizeof shown);

        _cleanup_(evp_md_ctx_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
                return set_error(err, errlen, -ENOMEM, "fetch %s: cannot set up sha256", shown);
        }
        struct fetch f = {
                .fd = fd,
                .max_bytes = max_bytes,
                .md = md,
                .progress = progress,
                .userdata = userdata,
        };

        if (source[0] == '/')
                r = fetch_local(&f, source, shown, err, errlen);
        else if (startswith(source, "file://")) {
                _cleanup_free_ char *path = NULL;
                r = file_url_path(source, &path);
                if (r == -EINVAL) {
                        return set_error(
                                err, errlen, r,
                                "%s: not a file URL of an absolute local path (file:///PATH)",
                                shown);
                }
                if (r < 0) {
                        return set_error(err, errlen, r, "%s: %s", shown, strerror(-r));
                }
                r = fetch_local(&f, path, shown, err, errlen);
        } else if (startswith(source, "http://") || startswith(source, "https://"))
                r = fetch_http(&f, source, shown, err, errlen);
        else {
                return set_error(err, errlen, -EINVAL,
                                 "%s: not an absolute path, a file://, http:// or https:// URL",
                                 shown);
        }
        if (r < 0)
                return r;

        unsigned char md_value[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        if (EVP_DigestFinal_ex(md, md_value, &md_len) != 1 || md_len != 32) {
                return set_error(err, errlen, -EIO, "fetch %s: sha256 failed", shown);
        }
        for (unsigned i = 0; i < md_len; i++)
                snprintf(digest_out + 2 * i, 3, "%02x", md_value[i]);
        return 0;
}
