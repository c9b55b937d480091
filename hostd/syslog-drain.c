/* See drain.h. One state machine per drain URL:
 *
 *   WAITING --(timer)--> RESOLVING (names only) --> CONNECTING --> HANDSHAKE (TLS) --> UP
 *      ^                                                                              |
 *      +------------------ failure or close: back-off, 1 s doubling ------------------+
 *
 * Lines go into a ring of frames (already formatted), the oldest dropped when it is full. A
 * batch (up to DRAIN_BATCH_LINES frames, or what arrived within DRAIN_BATCH_USEC) is copied out
 * of the ring into one buffer and written with non-blocking writes; a partial write keeps its
 * place and waits for EPOLLOUT. Names are resolved in a short-lived child process (fork, then
 * getaddrinfo), not a thread: hostd clone3()s dyno processes without fork's atfork handlers,
 * and a resolver thread holding malloc's lock at that moment would deadlock the child. */
#include "syslog-drain.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "util.h"

#define DRAIN_CONNECT_USEC (10ULL * 1000000) /* connect, resolve or TLS handshake */
#define DRAIN_BATCH_BYTES (1024 * 1024)      /* a batch stops growing here (one frame at least) */
#define DRAIN_WRITE_ROUNDS 4                 /* batches per wake-up: let the loop serve others */
#define DRAIN_ADDRS_MAX 8
/* A connection that lasted this long starts the back-off again; a peer that accepts and closes
 * at once keeps doubling it. */
#define DRAIN_STABLE_USEC (10ULL * 1000000)
#define DRAIN_PRI 190 /* local7.info, as Heroku's drains */

/* ---- URLs ---- */

static bool label_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-';
}

/* RFC 1123 names: labels of 1..63 letters, digits and '-', not at a label's ends; a last label
 * of digits only would be a mistyped IPv4 address, not a name. */
static bool host_name_valid(const char *h, size_t n)
{
        if (n == 0 || n > DRAIN_HOST_MAX)
                return false;
        if (h[n - 1] == '.')
                n--; /* fully qualified */
        size_t start = 0;
        bool digits_only = true;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && h[i] != '.') {
                        if (!label_char(h[i]))
                                return false;
                        digits_only = digits_only && h[i] >= '0' && h[i] <= '9';
                        continue;
                }
                size_t len = i - start;
                if (len == 0 || len > 63 || h[start] == '-' || h[i - 1] == '-')
                        return false;
                if (i < n) {
                        start = i + 1;
                        digits_only = true;
                }
        }
        return !digits_only;
}

int drain_url_parse(const char *url, struct drain_url *ret, char *why, size_t whylen)
{
        struct drain_url u = {};
        size_t n = strlen(url);
        if (n == 0)
                return snprintf(why, whylen, "empty"), -EINVAL;
        if (n > DRAIN_URL_MAX)
                return snprintf(why, whylen, "longer than %d bytes", DRAIN_URL_MAX), -EINVAL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
                        return snprintf(why, whylen,
                                        "byte %zu is a space, a control character or not ASCII", i),
                               -EINVAL;
        const char *p;
        if (startswith(url, "syslog://"))
                p = url + strlen("syslog://");
        else if (startswith(url, "syslog+tls://")) {
                p = url + strlen("syslog+tls://");
                u.tls = true;
        } else
                return snprintf(why, whylen, "not a syslog:// or syslog+tls:// URL"), -EINVAL;

        const char *host, *host_end, *after;
        if (*p == '[') {
                host = p + 1;
                host_end = strchr(host, ']');
                if (!host_end)
                        return snprintf(why, whylen, "'[' without ']' around an IPv6 address"),
                               -EINVAL;
                after = host_end + 1;
        } else {
                const char *colon = strchr(p, ':');
                if (colon && strchr(colon + 1, ':'))
                        return snprintf(why, whylen,
                                        "an IPv6 address needs brackets: [ADDRESS]:PORT"),
                               -EINVAL;
                host = p;
                host_end = host + strcspn(host, ":/?#@");
                after = host_end;
        }
        if (strchr(p, '@'))
                return snprintf(why, whylen, "a user name or password is not allowed"), -EINVAL;
        size_t hlen = (size_t)(host_end - host);
        if (hlen == 0)
                return snprintf(why, whylen, "no host"), -EINVAL;
        if (hlen > DRAIN_HOST_MAX)
                return snprintf(why, whylen, "host longer than %d bytes", DRAIN_HOST_MAX), -EINVAL;
        memcpy(u.host, host, hlen);
        u.host[hlen] = 0;

        unsigned char buf[sizeof(struct in6_addr)];
        if (*p == '[') {
                if (inet_pton(AF_INET6, u.host, buf) != 1)
                        return snprintf(why, whylen, "host [%s] is not an IPv6 address", u.host),
                               -EINVAL;
                u.literal = true;
        } else if (inet_pton(AF_INET, u.host, buf) == 1)
                u.literal = true;
        else if (!host_name_valid(u.host, hlen))
                return snprintf(why, whylen, "host '%s' is not a host name nor an IPv4 address",
                                u.host),
                       -EINVAL;

        if (*after != ':')
                return snprintf(why, whylen, "%s",
                                *after ? "unexpected text after the host" : "no port (HOST:PORT)"),
                       -EINVAL;
        const char *port = after + 1;
        size_t plen = strspn(port, "0123456789");
        if (plen == 0)
                return snprintf(why, whylen, "no port number after ':'"), -EINVAL;
        if (port[plen] == '/' || port[plen] == '?' || port[plen] == '#')
                return snprintf(why, whylen, "a path, query or fragment is not allowed"), -EINVAL;
        if (port[plen])
                return snprintf(why, whylen, "port '%s' is not a number", port), -EINVAL;
        uint32_t v;
        if (plen > 5 || safe_atou32(port, &v) < 0 || v == 0 || v > 65535)
                return snprintf(why, whylen, "port %s is not in 1..65535", port), -EINVAL;
        u.port = (uint16_t)v;
        *ret = u;
        return 0;
}

/* ---- framing ---- */

/* An RFC 5424 header field: printable ASCII without spaces, at most max bytes, "-" empty. */
static size_t put_field(char *out, const char *s, size_t max)
{
        size_t k = 0;
        for (; s && s[k] && k < max; k++)
                out[k] = (s[k] > 0x20 && s[k] < 0x7f) ? s[k] : '_';
        if (k == 0)
                out[k++] = '-';
        return k;
}

static size_t format_time(char *out, size_t size, int64_t usec)
{
        time_t sec = (time_t)(usec / 1000000);
        long frac = (long)(usec % 1000000);
        if (frac < 0) {
                frac += 1000000;
                sec--;
        }
        struct tm tm;
        gmtime_r(&sec, &tm);
        size_t k = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
        k += (size_t)snprintf(out + k, size - k, ".%06ld+00:00", frac);
        return k;
}

size_t drain_frame_header(char *hdr, int64_t time_usec, enum log_source source,
                          const char *hostname, const char *procid, size_t len)
{
        char msg[DRAIN_HEADER_MAX];
        size_t k = (size_t)snprintf(msg, sizeof msg, "<%d>1 ", DRAIN_PRI);
        k += format_time(msg + k, 64, time_usec);
        msg[k++] = ' ';
        k += put_field(msg + k, hostname, 255);
        msg[k++] = ' ';
        k += put_field(msg + k, source == LOG_SOURCE_APP ? "app" : "heroku", 48);
        msg[k++] = ' ';
        k += put_field(msg + k, procid, 128);
        memcpy(msg + k, " - - ", 5);
        k += 5;
        int n = snprintf(hdr, DRAIN_HEADER_MAX, "%zu ", k + len);
        memcpy(hdr + n, msg, k);
        return (size_t)n + k;
}

/* ---- objects ---- */

struct dframe {
        size_t len;
        char data[];
};

enum drain_state { DRAIN_WAITING, DRAIN_RESOLVING, DRAIN_CONNECTING, DRAIN_HANDSHAKE, DRAIN_UP };

struct drain {
        struct drain_set *set;
        char *url_text;
        struct drain_url url;
        enum drain_state state;
        int fd;
        SSL *ssl;
        sd_event_source *io, *timer, *batch_timer;
        uint32_t io_events;

        /* a name's resolution: the child, its pidfd and the pipe it answers on */
        pid_t resolver_pid;
        int resolver_pidfd, resolver_pipe;
        sd_event_source *resolver_source;
        struct sockaddr_storage addrs[DRAIN_ADDRS_MAX];
        socklen_t addr_lens[DRAIN_ADDRS_MAX];
        size_t n_addrs, next_addr;

        /* lines waiting: ring[head] the oldest */
        struct dframe **ring;
        size_t head, count, max;

        /* the batch under way: out_ends[i] is where its i-th frame ends */
        char *out;
        size_t out_len, out_off, out_cap;
        size_t out_ends[DRAIN_BATCH_LINES + 1];
        size_t out_n, out_done;
        bool out_l10; /* its first frame is an L10 notice, not a line of the dyno */

        uint64_t sent, dropped, pending_dropped;
        int64_t dropped_since_usec;
        uint32_t connects, failures, attempt;
        uint64_t up_usec; /* CLOCK_MONOTONIC, when the connection came up */
        bool warned;      /* a failure was logged as a warning since the last connection */
        char last_error[256];
        Hostd__V1__DrainStatus status;
};

struct drain_set {
        struct drain_ctx *ctx;
        struct drain **drains;
        size_t n;
        char *dyno_id, *hostname, *procid;
        drain_overflow_cb_t cb;
        void *userdata;
        struct drain *in_cb; /* the drain whose L10 is being logged: it has its own */
        bool closing;
        sd_event_source *linger_timer, *done_check;
        struct drain_set *next; /* in ctx->lingering */
        Hostd__V1__DrainStatus **status;
};

struct drain_ctx {
        sd_event *event;
        struct drain_options o;
        char *ca_file;
        SSL_CTX *ssl;
        struct drain_set *lingering;
};

static void drain_connect_next(struct drain *d);
static void drain_fail(struct drain *d, const char *fmt, ...) _printf_(2, 3);
static void drain_write(struct drain *d, bool force);
static void set_check_done(struct drain_set *s);

static const char *drain_state_name(enum drain_state s)
{
        static const char *const names[] = { "waiting", "resolving", "connecting", "handshake",
                                             "up" };
        return names[s];
}

/* ---- the TLS context ---- */

int drain_ctx_new(sd_event *e, const struct drain_options *o, struct drain_ctx **ret)
{
        struct drain_ctx *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->o = *o;
        c->ca_file = strdup(o->ca_file ? o->ca_file : "");
        c->o.ca_file = c->ca_file;
        c->ssl = SSL_CTX_new(TLS_client_method());
        int r = 0;
        if (!c->ca_file || !c->ssl)
                r = -ENOMEM;
        else if (!SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION))
                r = -EPROTO;
        else if (!*c->ca_file && !SSL_CTX_set_default_verify_paths(c->ssl))
                r = -ENOMEM;
        else if (*c->ca_file && !SSL_CTX_load_verify_locations(c->ssl, c->ca_file, NULL))
                /* The caller names the file: unreadable, or not PEM certificates. */
                r = access(c->ca_file, R_OK) < 0 ? -errno : -EBADMSG;
        if (r < 0) {
                ERR_clear_error();
                drain_ctx_free(c);
                return r;
        }
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(c->ssl,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        *ret = c;
        return 0;
}

void drain_ctx_free(struct drain_ctx *c)
{
        if (!c)
                return;
        while (c->lingering)
                drain_set_free(c->lingering); /* unlinks itself */
        SSL_CTX_free(c->ssl);
        sd_event_unref(c->event);
        free(c->ca_file);
        free(c);
}

/* ---- connections ---- */

static void drain_resolve_end(struct drain *d)
{
        d->resolver_source = sd_event_source_disable_unref(d->resolver_source);
        if (d->resolver_pid > 0) {
                /* A resolver still running is killed; either way it is reaped here (a killed
                 * process is gone within moments). */
                kill(d->resolver_pid, SIGKILL);
                while (waitpid(d->resolver_pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                d->resolver_pid = 0;
        }
        closep(&d->resolver_pidfd), d->resolver_pidfd = -1;
        closep(&d->resolver_pipe), d->resolver_pipe = -1;
}

static void drain_disconnect(struct drain *d)
{
        d->io = sd_event_source_disable_unref(d->io);
        d->timer = sd_event_source_disable_unref(d->timer);
        d->batch_timer = sd_event_source_disable_unref(d->batch_timer);
        drain_resolve_end(d);
        if (d->ssl) {
                SSL_free(d->ssl);
                d->ssl = NULL;
        }
        closep(&d->fd), d->fd = -1;
        d->io_events = 0;
        /* The frame a write stopped in goes again, whole, on the next connection: the peer
         * throws a cut frame away with its connection. */
        if (d->out_off > 0 && d->out_off < d->out_len) {
                size_t start = d->out_done ? d->out_ends[d->out_done - 1] : 0;
                memmove(d->out, d->out + start, d->out_len - start);
                for (size_t i = d->out_done; i < d->out_n; i++)
                        d->out_ends[i - d->out_done] = d->out_ends[i] - start;
                d->out_l10 = d->out_l10 && d->out_done == 0;
                d->out_n -= d->out_done;
                d->out_len -= start;
                d->out_done = 0;
                d->out_off = 0;
        }
}

static uint64_t backoff_usec(struct drain *d)
{
        /* 1 s doubling to the maximum; the wait is a random point of its second half, so that
         * the drains of many dynos that lost one server do not come back in step. */
        uint64_t max = (uint64_t)d->set->ctx->o.backoff_max_sec * 1000000;
        uint64_t delay = 1000000;
        for (uint32_t i = 0; i < d->attempt && delay < max; i++)
                delay *= 2;
        if (delay > max)
                delay = max;
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                rnd = now_monotonic_usec();
        return delay / 2 + rnd % (delay / 2 + 1);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void drain_arm_timer(struct drain *d, uint64_t usec)
{
        int r;
        if (!d->timer)
                r = sd_event_add_time_relative(d->set->ctx->event, &d->timer, CLOCK_MONOTONIC, usec,
                                               0, on_timer, d);
        else {
                r = sd_event_source_set_time_relative(d->timer, usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "dyno %s: drain %s: timer: %m; it stays as it is",
                                d->set->dyno_id, d->url_text);
}

static void drain_fail(struct drain *d, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->last_error, sizeof d->last_error, fmt, ap);
        va_end(ap);
        bool was_up = d->state == DRAIN_UP;
        drain_disconnect(d);
        d->state = DRAIN_WAITING;
        d->failures++;
        if (was_up && now_monotonic_usec() - d->up_usec >= DRAIN_STABLE_USEC)
                d->attempt = 0;
        uint64_t wait = backoff_usec(d);
        if (d->attempt < 32)
                d->attempt++;
        /* Once as a warning, then quietly until it connects again: a drain that is down for
         * hours must not fill hostd's log. */
        log_msg(was_up || !d->warned ? LOG_LEVEL_WARNING : LOG_LEVEL_DEBUG, 0,
                "dyno %s: drain %s: %s; connecting again in %.1f s", d->set->dyno_id, d->url_text,
                d->last_error, (double)wait / 1e6);
        d->warned = true;
        drain_arm_timer(d, wait);
}

static void drain_set_events(struct drain *d, uint32_t events)
{
        if (d->io_events == events)
                return;
        int r = sd_event_source_set_io_events(d->io, events);
        if (r < 0) {
                drain_fail(d, "watch the connection: %s", strerror(-r));
                return;
        }
        d->io_events = events;
}

static const char *ssl_reason(const SSL *ssl, char *buf, size_t len)
{
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        unsigned long e = ERR_get_error();
        if (v != X509_V_OK)
                snprintf(buf, len, "certificate verification: %s",
                         X509_verify_cert_error_string(v));
        else if (e)
                ERR_error_string_n(e, buf, len);
        else
                snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
        ERR_clear_error();
        return buf;
}

static void drain_up(struct drain *d)
{
        d->state = DRAIN_UP;
        d->connects++;
        d->up_usec = now_monotonic_usec();
        d->warned = false;
        d->last_error[0] = 0;
        d->timer = sd_event_source_disable_unref(d->timer);
        log_info("dyno %s: drain %s: connected%s", d->set->dyno_id, d->url_text,
                 d->ssl ? " (TLS)" : "");
        drain_set_events(d, EPOLLIN);
        if (d->state == DRAIN_UP)
                drain_write(d, true); /* what waited while it was down */
}

static void drain_handshake(struct drain *d)
{
        char why[256];
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(d->ssl);
        if (r == 1) {
                drain_up(d);
                return;
        }
        int e = SSL_get_error(d->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
                drain_set_events(d, EPOLLIN);
        else if (e == SSL_ERROR_WANT_WRITE)
                drain_set_events(d, EPOLLIN | EPOLLOUT);
        else
                drain_fail(d, "TLS handshake: %s", ssl_reason(d->ssl, why, sizeof why));
}

static int drain_tls_begin(struct drain *d)
{
        d->ssl = SSL_new(d->set->ctx->ssl);
        if (!d->ssl || !SSL_set_fd(d->ssl, d->fd))
                return -ENOMEM;
        if (d->url.literal) {
                /* An address: checked against the certificate's IP entries; no SNI (RFC 6066
                 * names hosts only). */
                if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(d->ssl), d->url.host))
                        return -EINVAL;
        } else if (!SSL_set_tlsext_host_name(d->ssl, d->url.host) ||
                   !SSL_set1_host(d->ssl, d->url.host))
                return -ENOMEM;
        SSL_set_connect_state(d->ssl);
        d->state = DRAIN_HANDSHAKE;
        drain_handshake(d);
        return 0;
}

/* The peer sends nothing a drain wants (TLS aside: tickets, alerts), but its close shows here.
 * Returns false when the connection failed (and was dropped). */
static bool drain_read(struct drain *d)
{
        char buf[4096], why[256];
        for (int i = 0; i < 16; i++) {
                if (d->ssl) {
                        ERR_clear_error();
                        errno = 0;
                        int n = SSL_read(d->ssl, buf, sizeof buf);
                        if (n > 0)
                                continue;
                        int e = SSL_get_error(d->ssl, n);
                        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                return true;
                        if (e == SSL_ERROR_ZERO_RETURN)
                                drain_fail(d, "closed by the peer");
                        else
                                drain_fail(d, "TLS: %s", ssl_reason(d->ssl, why, sizeof why));
                        return false;
                }
                ssize_t n = recv(d->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return true;
                if (n == 0)
                        drain_fail(d, "closed by the peer");
                else
                        drain_fail(d, "%s", strerror(errno));
                return false;
        }
        return true;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct drain *d = userdata;
        char why[256];
        switch (d->state) {
        case DRAIN_CONNECTING: {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err) {
                        snprintf(why, sizeof why, "connect: %s", strerror(err));
                        if (d->next_addr + 1 < d->n_addrs) {
                                /* the name's next address, at once */
                                drain_disconnect(d);
                                d->next_addr++;
                                drain_connect_next(d);
                        } else
                                drain_fail(d, "%s", why);
                        return 0;
                }
                if (d->url.tls) {
                        int r = drain_tls_begin(d);
                        if (r < 0)
                                drain_fail(d, "TLS setup: %s", ssl_reason(NULL, why, sizeof why));
                } else
                        drain_up(d);
                return 0;
        }
        case DRAIN_HANDSHAKE: drain_handshake(d); return 0;
        case DRAIN_UP:
                if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !drain_read(d))
                        return 0;
                if (d->state == DRAIN_UP && ((revents & EPOLLOUT) || d->out_off < d->out_len))
                        drain_write(d, false);
                return 0;
        default: return 0;
        }
}

static void drain_connect_next(struct drain *d)
{
        if (d->next_addr >= d->n_addrs) {
                drain_fail(d, "no address to connect to");
                return;
        }
        const struct sockaddr *sa = (const struct sockaddr *)&d->addrs[d->next_addr];
        d->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (d->fd < 0) {
                drain_fail(d, "socket: %s", strerror(errno));
                return;
        }
        /* A peer that vanished while nothing was being written shows up within minutes. */
        int one = 1, idle = 60, intvl = 10, cnt = 6;
        (void)setsockopt(d->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        (void)setsockopt(d->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        (void)setsockopt(d->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        (void)setsockopt(d->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        d->state = DRAIN_CONNECTING;
        if (connect(d->fd, sa, d->addr_lens[d->next_addr]) < 0 && errno != EINPROGRESS) {
                int err = errno;
                if (d->next_addr + 1 < d->n_addrs) {
                        drain_disconnect(d);
                        d->next_addr++;
                        drain_connect_next(d);
                } else
                        drain_fail(d, "connect: %s", strerror(err));
                return;
        }
        int r = sd_event_add_io(d->set->ctx->event, &d->io, d->fd, EPOLLOUT, on_io, d);
        if (r < 0) {
                drain_fail(d, "watch the connection: %s", strerror(-r));
                return;
        }
        d->io_events = EPOLLOUT;
        drain_arm_timer(d, DRAIN_CONNECT_USEC);
}

struct resolve_msg {
        int32_t error; /* getaddrinfo's EAI_* */
        uint32_t n;
        socklen_t lens[DRAIN_ADDRS_MAX];
        struct sockaddr_storage addrs[DRAIN_ADDRS_MAX];
};

static _Noreturn void resolver_child(const struct drain *d, int fd)
{
        prctl(PR_SET_NAME, "hostd-resolve");
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* Keep nothing of hostd's open: a client's connection or a dyno's pipe held here would
         * not close when hostd closes it. */
        if (fd != 3) {
                if (dup2(fd, 3) < 0)
                        _exit(1);
                fd = 3;
        }
        if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0)
                _exit(1);
        struct resolve_msg msg = {};
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
        struct addrinfo *res = NULL;
        char port[8];
        snprintf(port, sizeof port, "%u", d->url.port);
        msg.error = getaddrinfo(d->url.host, port, &hints, &res);
        for (struct addrinfo *a = res; a && msg.n < DRAIN_ADDRS_MAX; a = a->ai_next)
                if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
                    a->ai_addrlen <= sizeof msg.addrs[0]) {
                        memcpy(&msg.addrs[msg.n], a->ai_addr, a->ai_addrlen);
                        msg.lens[msg.n++] = a->ai_addrlen;
                }
        /* One write under PIPE_BUF into an empty pipe: whole, and never blocking. */
        ssize_t w = write(fd, &msg, sizeof msg);
        _exit(w == (ssize_t)sizeof msg ? 0 : 1);
}

static int on_resolved(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct drain *d = userdata;
        struct resolve_msg msg;
        ssize_t n = read(d->resolver_pipe, &msg, sizeof msg);
        siginfo_t si = {};
        waitid(P_PIDFD, (id_t)d->resolver_pidfd, &si, WEXITED | WNOHANG);
        d->resolver_pid = 0; /* reaped */
        drain_resolve_end(d);
        d->timer = sd_event_source_disable_unref(d->timer);
        if (n != (ssize_t)sizeof msg) {
                drain_fail(d, "resolve %s: the resolver ended without an answer", d->url.host);
                return 0;
        }
        if (msg.error || msg.n == 0) {
                drain_fail(d, "resolve %s: %s", d->url.host,
                           msg.error ? gai_strerror(msg.error) : "no IPv4 or IPv6 address");
                return 0;
        }
        d->n_addrs = msg.n > DRAIN_ADDRS_MAX ? DRAIN_ADDRS_MAX : msg.n;
        for (size_t i = 0; i < d->n_addrs; i++) {
                d->addrs[i] = msg.addrs[i];
                d->addr_lens[i] = msg.lens[i];
        }
        d->next_addr = 0;
        drain_connect_next(d);
        return 0;
}

static void drain_resolve(struct drain *d)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
                drain_fail(d, "resolve %s: pipe: %s", d->url.host, strerror(errno));
                return;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int err = errno;
                close(p[0]);
                close(p[1]);
                drain_fail(d, "resolve %s: fork: %s", d->url.host, strerror(err));
                return;
        }
        if (pid == 0) {
                close(p[0]);
                resolver_child(d, p[1]);
        }
        close(p[1]);
        d->resolver_pid = pid;
        d->resolver_pipe = p[0];
        d->state = DRAIN_RESOLVING;
        /* The pidfd says when it is gone, answer written or not. */
        d->resolver_pidfd = pidfd_open(pid, 0);
        int r = d->resolver_pidfd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_io(d->set->ctx->event, &d->resolver_source, d->resolver_pidfd,
                                    EPOLLIN, on_resolved, d);
        if (r < 0) {
                drain_fail(d, "resolve %s: watch the resolver: %s", d->url.host, strerror(-r));
                return;
        }
        drain_arm_timer(d, DRAIN_CONNECT_USEC);
}

static void drain_connect(struct drain *d)
{
        d->n_addrs = d->next_addr = 0;
        if (!d->url.literal) {
                drain_resolve(d);
                return;
        }
        struct sockaddr_in *in = (struct sockaddr_in *)&d->addrs[0];
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&d->addrs[0];
        memset(&d->addrs[0], 0, sizeof d->addrs[0]);
        if (inet_pton(AF_INET, d->url.host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(d->url.port);
                d->addr_lens[0] = sizeof *in;
        } else {
                inet_pton(AF_INET6, d->url.host, &in6->sin6_addr);
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(d->url.port);
                d->addr_lens[0] = sizeof *in6;
        }
        d->n_addrs = 1;
        drain_connect_next(d);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct drain *d = userdata;
        switch (d->state) {
        case DRAIN_WAITING: drain_connect(d); break;
        case DRAIN_RESOLVING:
                drain_fail(d, "resolve %s: no answer within %llu s", d->url.host,
                           DRAIN_CONNECT_USEC / 1000000);
                break;
        case DRAIN_CONNECTING:
        case DRAIN_HANDSHAKE:
                drain_fail(d, "%s: no answer within %llu s",
                           d->state == DRAIN_CONNECTING ? "connect" : "TLS handshake",
                           DRAIN_CONNECT_USEC / 1000000);
                break;
        case DRAIN_UP: break;
        }
        return 0;
}

/* ---- lines ---- */

static void ring_pop(struct drain *d)
{
        free(d->ring[d->head]);
        d->ring[d->head] = NULL;
        d->head = (d->head + 1) % d->max;
        d->count--;
}

static int on_batch_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct drain *d = userdata;
        if (d->state == DRAIN_UP)
                drain_write(d, true);
        return 0;
}

static void drain_arm_batch(struct drain *d)
{
        int r;
        if (!d->batch_timer)
                r = sd_event_add_time_relative(d->set->ctx->event, &d->batch_timer, CLOCK_MONOTONIC,
                                               DRAIN_BATCH_USEC, 0, on_batch_timer, d);
        else if (sd_event_source_get_enabled(d->batch_timer, NULL) > 0)
                return; /* armed already: the oldest waiting line set it */
        else {
                r = sd_event_source_set_time_relative(d->batch_timer, DRAIN_BATCH_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(d->batch_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                drain_write(d, true); /* no timer: no batching, but no line held either */
}

static bool add_out(struct drain *d, const char *hdr, size_t hlen, const char *text, size_t len)
{
        size_t need = d->out_len + hlen + len;
        if (need > d->out_cap) {
                size_t cap = d->out_cap ? d->out_cap : 65536;
                while (cap < need)
                        cap *= 2;
                char *p = realloc(d->out, cap);
                if (!p)
                        return false;
                d->out = p;
                d->out_cap = cap;
        }
        memcpy(d->out + d->out_len, hdr, hlen);
        memcpy(d->out + d->out_len + hlen, text, len);
        d->out_len += hlen + len;
        d->out_ends[d->out_n++] = d->out_len;
        return true;
}

/* Move the next batch out of the ring, an L10 notice first when lines were dropped. */
static void drain_fill(struct drain *d)
{
        d->out_len = d->out_off = d->out_n = d->out_done = 0;
        d->out_l10 = false;
        char l10[256] = "";
        if (d->pending_dropped) {
                char hdr[DRAIN_HEADER_MAX], since[64];
                format_time(since, sizeof since, d->dropped_since_usec);
                int n = snprintf(l10, sizeof l10,
                                 "Error L10 (output buffer overflow): %" PRIu64
                                 " messages dropped since %s",
                                 d->pending_dropped, since);
                size_t h = drain_frame_header(hdr, now_realtime_usec(), LOG_SOURCE_PLATFORM,
                                              d->set->hostname, d->set->procid, (size_t)n);
                if (!add_out(d, hdr, h, l10, (size_t)n))
                        return; /* out of memory: the next try tells it */
                d->out_l10 = true;
                d->pending_dropped = 0;
        }
        while (d->count > 0 && d->out_n < DRAIN_BATCH_LINES + (d->out_l10 ? 1 : 0)) {
                struct dframe *f = d->ring[d->head];
                if (d->out_n > 0 && d->out_len + f->len > DRAIN_BATCH_BYTES)
                        break;
                if (!add_out(d, f->data, f->len, "", 0))
                        break;
                ring_pop(d);
        }
        if (*l10 && d->set->cb && !d->set->closing) {
                /* The dyno's own log has it too; the lines that logs go to the other drains. */
                struct drain *outer = d->set->in_cb; /* another drain's L10 under way */
                d->set->in_cb = d;
                d->set->cb(d->set->userdata, l10);
                d->set->in_cb = outer;
        }
}

/* Write what the connection takes. force: start a batch even below DRAIN_BATCH_LINES. */
static void drain_write(struct drain *d, bool force)
{
        char why[256];
        for (int round = 0; round < DRAIN_WRITE_ROUNDS;) {
                if (d->out_off == d->out_len) {
                        if (d->count == 0 && !d->pending_dropped) {
                                drain_set_events(d, EPOLLIN);
                                set_check_done(d->set);
                                return;
                        }
                        if (!force && d->count < DRAIN_BATCH_LINES && !d->set->closing) {
                                drain_set_events(d, EPOLLIN);
                                drain_arm_batch(d);
                                return;
                        }
                        drain_fill(d);
                        if (d->state != DRAIN_UP)
                                return; /* the L10's logging can fail this drain, in theory */
                        round++;
                        if (d->out_len == 0) {
                                drain_set_events(d, EPOLLIN);
                                return;
                        }
                }
                ssize_t n;
                if (d->ssl) {
                        ERR_clear_error();
                        errno = 0;
                        int k = SSL_write(d->ssl, d->out + d->out_off,
                                          (int)(d->out_len - d->out_off));
                        if (k <= 0) {
                                int e = SSL_get_error(d->ssl, k);
                                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                                        drain_set_events(d, EPOLLIN | EPOLLOUT);
                                        return;
                                }
                                drain_fail(d, "TLS write: %s", ssl_reason(d->ssl, why, sizeof why));
                                return;
                        }
                        n = k;
                } else {
                        n = send(d->fd, d->out + d->out_off, d->out_len - d->out_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno == EAGAIN) {
                                        drain_set_events(d, EPOLLIN | EPOLLOUT);
                                        return;
                                }
                                drain_fail(d, "write: %s", strerror(errno));
                                return;
                        }
                }
                d->out_off += (size_t)n;
                while (d->out_done < d->out_n && d->out_ends[d->out_done] <= d->out_off) {
                        if (!(d->out_done == 0 && d->out_l10))
                                d->sent++;
                        d->out_done++;
                }
                force = false;
        }
        /* More to write: come back when the loop has served the others. */
        drain_set_events(d, EPOLLIN | EPOLLOUT);
}

static void drain_push(struct drain *d, int64_t time_usec, enum log_source source, const char *text,
                       size_t len)
{
        char hdr[DRAIN_HEADER_MAX];
        size_t h =
                drain_frame_header(hdr, time_usec, source, d->set->hostname, d->set->procid, len);
        struct dframe *f = malloc(sizeof *f + h + len);
        if (!f) {
                if (!d->pending_dropped)
                        d->dropped_since_usec = time_usec;
                d->dropped++;
                d->pending_dropped++;
                return;
        }
        f->len = h + len;
        memcpy(f->data, hdr, h);
        memcpy(f->data + h, text, len);
        if (d->count == d->max) {
                /* Full: the oldest goes, and is counted for the L10 notice. */
                ring_pop(d);
                if (!d->pending_dropped)
                        d->dropped_since_usec = now_realtime_usec();
                d->dropped++;
                d->pending_dropped++;
        }
        d->ring[(d->head + d->count) % d->max] = f;
        d->count++;
        if (d->state == DRAIN_UP && d->out_off == d->out_len)
                drain_write(d, false);
}

void drain_set_push(struct drain_set *s, int64_t time_usec, enum log_source source,
                    const char *text, size_t len)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                if (s->drains[i] != s->in_cb)
                        drain_push(s->drains[i], time_usec, source, text, len);
}

/* ---- sets ---- */

static void drain_free(struct drain *d)
{
        if (!d)
                return;
        if (d->state == DRAIN_UP) {
                /* One last try, as far as the connection takes it without waiting: the lines
                 * of a batch not yet due, or of a set whose linger is over. */
                drain_write(d, true);
                size_t left = d->count + (d->out_n - d->out_done);
                if (left)
                        log_warning("dyno %s: drain %s: %zu lines not sent", d->set->dyno_id,
                                    d->url_text, left);
                if (d->ssl && d->state == DRAIN_UP) {
                        ERR_clear_error();
                        (void)SSL_shutdown(d->ssl); /* close_notify, if it fits */
                }
        }
        drain_disconnect(d);
        while (d->count > 0)
                ring_pop(d);
        free(d->ring);
        free(d->out);
        free(d->url_text);
        free(d);
}

static int drain_new(struct drain_set *s, const char *url, struct drain **ret)
{
        char why[256];
        struct drain *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->set = s;
        d->fd = d->resolver_pidfd = d->resolver_pipe = -1;
        d->max = s->ctx->o.buffer_lines ? s->ctx->o.buffer_lines : 1;
        d->ring = calloc(d->max, sizeof *d->ring);
        d->url_text = strdup(url);
        if (!d->ring || !d->url_text) {
                drain_free(d);
                return -ENOMEM;
        }
        if (drain_url_parse(url, &d->url, why, sizeof why) < 0) {
                drain_free(d);
                return -EINVAL;
        }
        hostd__v1__drain_status__init(&d->status);
        *ret = d;
        return 0;
}

int drain_set_new(struct drain_ctx *c, char *const *urls, size_t n_urls, const char *dyno_id,
                  const char *hostname, const char *procid, drain_overflow_cb_t cb, void *userdata,
                  struct drain_set **ret)
{
        struct drain_set *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->ctx = c;
        s->cb = cb;
        s->userdata = userdata;
        s->dyno_id = strdup(dyno_id);
        s->hostname = strdup(hostname);
        s->procid = strdup(procid);
        s->drains = calloc(n_urls ? n_urls : 1, sizeof *s->drains);
        s->status = calloc(n_urls ? n_urls : 1, sizeof *s->status);
        int r = 0;
        if (!s->dyno_id || !s->hostname || !s->procid || !s->drains || !s->status)
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n_urls; i++) {
                r = drain_new(s, urls[i], &s->drains[i]);
                if (r >= 0)
                        s->n++;
        }
        if (r < 0) {
                drain_set_free(s);
                return r;
        }
        /* Connect from the loop, not from inside the caller. */
        for (size_t i = 0; i < s->n; i++)
                drain_arm_timer(s->drains[i], 0);
        *ret = s;
        return 0;
}

void drain_set_free(struct drain_set *s)
{
        if (!s)
                return;
        if (s->closing)
                for (struct drain_set **pp = &s->ctx->lingering; *pp; pp = &(*pp)->next)
                        if (*pp == s) {
                                *pp = s->next;
                                break;
                        }
        /* From here on: no callback, and every drain writes what it has, batch or not. */
        s->cb = NULL;
        s->closing = true;
        s->done_check = sd_event_source_disable_unref(s->done_check);
        for (size_t i = 0; i < s->n; i++)
                drain_free(s->drains[i]);
        sd_event_source_disable_unref(s->linger_timer);
        free(s->drains);
        free(s->status);
        free(s->dyno_id);
        free(s->hostname);
        free(s->procid);
        free(s);
}

static int on_linger_over(sd_event_source *es, uint64_t usec, void *userdata)
{
        struct drain_set *s = userdata;
        for (size_t i = 0; i < s->n; i++) {
                struct drain *d = s->drains[i];
                size_t left = d->count + (d->out_n - d->out_done);
                if (left && d->state != DRAIN_UP)
                        log_warning("dyno %s: drain %s: %zu lines not sent when the dyno ended "
                                    "(%s: %s)",
                                    s->dyno_id, d->url_text, left, drain_state_name(d->state),
                                    *d->last_error ? d->last_error : "not connected yet");
        }
        drain_set_free(s); /* tells of what connected drains could not send */
        return 0;
}

static int on_done_check(sd_event_source *es, void *userdata)
{
        struct drain_set *s = userdata;
        for (size_t i = 0; i < s->n; i++) {
                struct drain *d = s->drains[i];
                if (d->count || d->out_off < d->out_len || d->pending_dropped)
                        return 0;
        }
        drain_set_free(s);
        return 0;
}

/* A closing set whose drains have sent everything frees itself, from the loop (the caller may
 * be one of its drains). */
static void set_check_done(struct drain_set *s)
{
        if (s->closing && s->done_check)
                sd_event_source_set_enabled(s->done_check, SD_EVENT_ONESHOT);
}

void drain_set_close(struct drain_set *s)
{
        if (!s)
                return;
        s->cb = NULL;
        s->closing = true;
        s->next = s->ctx->lingering;
        s->ctx->lingering = s;
        int r = sd_event_add_time_relative(s->ctx->event, &s->linger_timer, CLOCK_MONOTONIC,
                                           (uint64_t)s->ctx->o.linger_sec * 1000000, 0,
                                           on_linger_over, s);
        if (r >= 0)
                r = sd_event_add_defer(s->ctx->event, &s->done_check, on_done_check, s);
        if (r < 0) {
                log_warning_errno(r, "dyno %s: drains: timer: %m; what they hold is dropped",
                                  s->dyno_id);
                drain_set_free(s);
                return;
        }
        /* Send what waits now, batch or not. */
        for (size_t i = 0; i < s->n; i++)
                if (s->drains[i]->state == DRAIN_UP)
                        drain_write(s->drains[i], true);
}

void drain_set_status(struct drain_set *s, Hostd__V1__DrainStatus ***ret, size_t *n)
{
        if (!s) {
                *ret = NULL;
                *n = 0;
                return;
        }
        for (size_t i = 0; i < s->n; i++) {
                struct drain *d = s->drains[i];
                Hostd__V1__DrainStatus *st = &d->status;
                st->url = d->url_text;
                st->connected = d->state == DRAIN_UP;
                st->sent = d->sent;
                st->dropped = d->dropped;
                st->buffered = (uint32_t)(d->count + (d->out_n - d->out_done));
                st->connects = d->connects;
                st->failures = d->failures;
                st->last_error = d->last_error;
                s->status[i] = st;
        }
        *ret = s->status;
        *n = s->n;
}
