/* A gRPC server's output, checked as HTTP/2: see h2-check.h. */
#include "h2-check.h"

#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FRAME_HEADER_LEN 9
/* SETTINGS_MAX_FRAME_SIZE's initial value; nghttp2 never sends more, whatever the client's. */
#define FRAME_LEN_MAX 16384
#define CLIENT_MAGIC "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

struct stream {
        int32_t id;
        unsigned blocks; /* header blocks sent on it: 1 the headers, 2 the trailers */
        bool ended, reset;
        /* The gRPC message being read from its DATA: the prefix, then what is left of it. */
        uint8_t prefix[5];
        size_t prefix_len;
        uint64_t body_left;
};

struct h2_check {
        nghttp2_hd_inflater *hpack;
        uint8_t *buf; /* the server's bytes not yet a whole frame */
        size_t len, cap;
        size_t frames;
        bool started, http1, failed;
        /* A header block while its CONTINUATIONs come. */
        int32_t block_stream; /* 0: none */
        uint8_t block_flags;  /* of its HEADERS */
        uint8_t *block;
        size_t block_len, block_cap;
        bool goaway;
        uint32_t goaway_last;
        struct stream *streams;
        size_t n_streams, cap_streams;
        int32_t *opened; /* by the client's HEADERS */
        size_t n_opened, cap_opened;
        char why[512];
};

static bool grow(void **p, size_t *cap, size_t want, size_t size)
{
        if (want <= *cap)
                return true;
        size_t cap2 = *cap ? *cap : 16;
        while (cap2 < want)
                cap2 *= 2;
        void *q = realloc(*p, cap2 * size);
        if (!q)
                return false;
        *p = q;
        *cap = cap2;
        return true;
}

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

__attribute__((format(printf, 2, 3))) static const char *fail(struct h2_check *k, const char *fmt,
                                                              ...)
{
        va_list ap;
        size_t n = (size_t)snprintf(k->why, sizeof k->why, "frame %zu: ", k->frames);
        va_start(ap, fmt);
        vsnprintf(k->why + n, sizeof k->why - n, fmt, ap);
        va_end(ap);
        k->failed = true;
        return k->why;
}

struct h2_check *h2_check_new(void)
{
        struct h2_check *k = calloc(1, sizeof *k);
        if (!k)
                return NULL;
        if (nghttp2_hd_inflate_new(&k->hpack) != 0) {
                free(k);
                return NULL;
        }
        return k;
}

void h2_check_free(struct h2_check *k)
{
        if (!k)
                return;
        nghttp2_hd_inflate_del(k->hpack);
        free(k->buf);
        free(k->block);
        free(k->streams);
        free(k->opened);
        free(k);
}

size_t h2_check_frames(const struct h2_check *k) { return k->frames; }

bool h2_check_http1(const struct h2_check *k) { return k->http1; }

void h2_check_client(struct h2_check *k, const uint8_t *p, size_t n)
{
        size_t magic = strlen(CLIENT_MAGIC);
        if (n < magic || memcmp(p, CLIENT_MAGIC, magic) != 0)
                return; /* no HTTP/2 from this client: it opens nothing */
        /* A HEADERS counts once its frame header is there: nghttp2 begins a stream then. */
        for (size_t off = magic; n - off >= FRAME_HEADER_LEN;) {
                size_t len = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 | p[off + 2];
                int32_t id = (int32_t)(be32(p + off + 5) & 0x7fffffff);
                if (p[off + 3] == NGHTTP2_HEADERS && (id & 1) &&
                    grow((void **)&k->opened, &k->cap_opened, k->n_opened + 1, sizeof(int32_t)))
                        k->opened[k->n_opened++] = id;
                if (n - off - FRAME_HEADER_LEN < len)
                        break;
                off += FRAME_HEADER_LEN + len;
        }
}

/* The stream a frame of the server's is on: one the client opened. */
static struct stream *stream_of(struct h2_check *k, int32_t id, const char *type)
{
        bool opened = false;
        for (size_t i = 0; i < k->n_opened && !opened; i++)
                opened = k->opened[i] == id;
        if (!opened) {
                fail(k, "%s on stream %d, which the client never opened", type, id);
                return NULL;
        }
        for (size_t i = 0; i < k->n_streams; i++)
                if (k->streams[i].id == id)
                        return &k->streams[i];
        if (!grow((void **)&k->streams, &k->cap_streams, k->n_streams + 1, sizeof *k->streams)) {
                fail(k, "out of memory");
                return NULL;
        }
        struct stream *st = &k->streams[k->n_streams++];
        *st = (struct stream){ .id = id };
        return st;
}

/* gRPC's messages in a stream's DATA: each a flag byte (0: the server never compresses), a
 * length, that many bytes. */
static const char *grpc_messages(struct h2_check *k, struct stream *st, const uint8_t *p, size_t n)
{
        while (n > 0) {
                if (st->prefix_len < sizeof st->prefix) {
                        st->prefix[st->prefix_len++] = *p++;
                        n--;
                        if (st->prefix_len < sizeof st->prefix)
                                continue;
                        if (st->prefix[0] != 0)
                                return fail(k, "stream %d: a message with the flag byte 0x%02x",
                                            st->id, st->prefix[0]);
                        st->body_left = be32(st->prefix + 1);
                } else {
                        size_t take = n < st->body_left ? n : (size_t)st->body_left;
                        st->body_left -= take;
                        p += take;
                        n -= take;
                }
                if (st->body_left == 0)
                        st->prefix_len = 0;
        }
        return NULL;
}

static bool field_is(const nghttp2_nv *nv, const char *name)
{
        return nv->namelen == strlen(name) && memcmp(nv->name, name, nv->namelen) == 0;
}

/* One header field of a response: a valid name and value, and what gRPC says of it. */
static const char *check_field(struct h2_check *k, struct stream *st, const nghttp2_nv *nv,
                               bool *grpc_status)
{
        if (nv->namelen == 0)
                return fail(k, "stream %d: a header with no name", st->id);
        for (size_t i = 0; i < nv->namelen; i++)
                if ((nv->name[i] >= 'A' && nv->name[i] <= 'Z') || nv->name[i] <= ' ' ||
                    nv->name[i] >= 0x7f)
                        return fail(k, "stream %d: header name '%.*s' is not a lowercase token",
                                    st->id, (int)nv->namelen, nv->name);
        for (size_t i = 0; i < nv->valuelen; i++)
                if (nv->value[i] == 0 || nv->value[i] == '\r' || nv->value[i] == '\n')
                        return fail(k, "stream %d: %.*s holds the byte 0x%02x", st->id,
                                    (int)nv->namelen, nv->name, nv->value[i]);
        /* RFC 9113 8.2.1: no leading or trailing whitespace in a value. */
        if (nv->valuelen > 0 &&
            (nv->value[0] == ' ' || nv->value[0] == '\t' || nv->value[nv->valuelen - 1] == ' ' ||
             nv->value[nv->valuelen - 1] == '\t'))
                return fail(k, "stream %d: %.*s '%.*s' begins or ends with whitespace", st->id,
                            (int)nv->namelen, nv->name, (int)nv->valuelen, nv->value);
        if (field_is(nv, "grpc-status")) {
                unsigned code = 0;
                bool ok = nv->valuelen >= 1 && nv->valuelen <= 2;
                for (size_t i = 0; ok && i < nv->valuelen; i++) {
                        ok = nv->value[i] >= '0' && nv->value[i] <= '9';
                        code = code * 10 + (unsigned)(nv->value[i] - '0');
                }
                if (!ok || code > 16)
                        return fail(k, "stream %d: grpc-status '%.*s' is not a code of 0 to 16",
                                    st->id, (int)nv->valuelen, nv->value);
                *grpc_status = true;
        } else if (field_is(nv, "grpc-message")) {
                /* Percent-encoded: printable ASCII, '%' only before two hex digits. */
                for (size_t i = 0; i < nv->valuelen; i++) {
                        uint8_t c = nv->value[i];
                        if (c < 0x20 || c > 0x7e)
                                return fail(k, "stream %d: grpc-message holds the byte 0x%02x",
                                            st->id, c);
                        if (c == '%' && !(i + 2 < nv->valuelen &&
                                          strchr("0123456789ABCDEFabcdef", nv->value[i + 1]) &&
                                          strchr("0123456789ABCDEFabcdef", nv->value[i + 2])))
                                return fail(k,
                                            "stream %d: grpc-message: '%%' without two hex "
                                            "digits",
                                            st->id);
                }
        }
        return NULL;
}

/* A whole header block: the response's headers, its trailers, or a trailers-only answer. */
static const char *header_block(struct h2_check *k)
{
        struct stream *st = stream_of(k, k->block_stream, "HEADERS");
        if (!st)
                return k->why;
        bool end_stream = k->block_flags & NGHTTP2_FLAG_END_STREAM;
        bool first = true, regular_seen = false, status = false, grpc_status = false;
        bool grpc_content = false;
        unsigned http_status = 0;
        const uint8_t *in = k->block;
        size_t left = k->block_len;

        for (;;) {
                nghttp2_nv nv;
                int flags = 0;
                ssize_t r = nghttp2_hd_inflate_hd2(k->hpack, &nv, &flags, in, left, 1);
                if (r < 0)
                        return fail(k, "stream %d: the header block does not decode: %s", st->id,
                                    nghttp2_strerror((int)r));
                in += r;
                left -= (size_t)r;
                if (flags & NGHTTP2_HD_INFLATE_EMIT) {
                        if (check_field(k, st, &nv, &grpc_status))
                                return k->why;
                        if (nv.namelen > 0 && nv.name[0] == ':') {
                                if (!field_is(&nv, ":status") || !first || regular_seen)
                                        return fail(k,
                                                    "stream %d: pseudo-header %.*s (only "
                                                    ":status, first, in a response)",
                                                    st->id, (int)nv.namelen, nv.name);
                                status = true;
                                bool digits = nv.valuelen == 3;
                                for (size_t i = 0; digits && i < nv.valuelen; i++) {
                                        digits = nv.value[i] >= '0' && nv.value[i] <= '9';
                                        http_status = http_status * 10 + (nv.value[i] - '0');
                                }
                                if (!digits || http_status < 100 || http_status > 599)
                                        return fail(k, "stream %d: :status '%.*s'", st->id,
                                                    (int)nv.valuelen, nv.value);
                        } else
                                regular_seen = true;
                        if (field_is(&nv, "content-type"))
                                grpc_content = nv.valuelen >= 16 &&
                                               memcmp(nv.value, "application/grpc", 16) == 0;
                        first = false;
                }
                if (flags & NGHTTP2_HD_INFLATE_FINAL) {
                        nghttp2_hd_inflate_end_headers(k->hpack);
                        break;
                }
                if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0)
                        return fail(k, "stream %d: the header block ends within a field", st->id);
        }

        if (st->blocks == 0) {
                if (!status)
                        return fail(k, "stream %d: a response without :status", st->id);
                if (!grpc_content)
                        return fail(k,
                                    "stream %d: a response whose content-type is not "
                                    "application/grpc",
                                    st->id);
                if (end_stream && !grpc_status)
                        return fail(k, "stream %d: a trailers-only response without grpc-status",
                                    st->id);
                if (!end_stream && http_status != 200)
                        return fail(k, "stream %d: HTTP status %u, and messages to follow", st->id,
                                    http_status);
        } else {
                if (status)
                        return fail(k, "stream %d: trailers with :status", st->id);
                if (!end_stream)
                        return fail(k, "stream %d: a third header block is to follow", st->id);
                if (!grpc_status)
                        return fail(k, "stream %d: trailers without grpc-status", st->id);
                if (st->prefix_len > 0)
                        return fail(k, "stream %d: trailers within a message", st->id);
        }
        st->blocks++;
        st->ended = end_stream;
        k->block_stream = 0;
        k->block_len = 0;
        return NULL;
}

static const char *block_append(struct h2_check *k, const uint8_t *p, size_t n)
{
        if (!grow((void **)&k->block, &k->block_cap, k->block_len + n, 1))
                return fail(k, "out of memory");
        memcpy(k->block + k->block_len, p, n);
        k->block_len += n;
        return NULL;
}

static const char *settings(struct h2_check *k, const uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i += 6) {
                unsigned id = (unsigned)p[i] << 8 | p[i + 1];
                uint32_t v = be32(p + i + 2);
                bool ok = true;
                switch (id) {
                case NGHTTP2_SETTINGS_ENABLE_PUSH: ok = v == 0; break; /* a server: never 1 */
                case NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE: ok = v <= 0x7fffffff; break;
                case NGHTTP2_SETTINGS_MAX_FRAME_SIZE: ok = v >= 16384 && v <= 16777215; break;
                case NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL:
                case NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES: ok = v <= 1; break;
                default: break;
                }
                if (!ok)
                        return fail(k, "SETTINGS: setting %u = %u", id, v);
        }
        return NULL;
}

/* One whole frame of the server's. */
static const char *frame(struct h2_check *k, const uint8_t *h, const uint8_t *p)
{
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        uint8_t type = h[3], flags = h[4];
        uint32_t raw = be32(h + 5);
        int32_t id = (int32_t)(raw & 0x7fffffff);
        struct stream *st;

        k->frames++;
        if (raw & 0x80000000)
                return fail(k, "the reserved bit of the stream id is set");
        if (!k->started) {
                if (type != NGHTTP2_SETTINGS || (flags & NGHTTP2_FLAG_ACK))
                        return fail(k, "the server's first frame is of type %u, not SETTINGS",
                                    type);
                k->started = true;
        }
        if (k->block_stream && type != NGHTTP2_CONTINUATION)
                return fail(k, "a frame of type %u within the header block of stream %d", type,
                            k->block_stream);
        if (type != NGHTTP2_SETTINGS && type != NGHTTP2_PING && type != NGHTTP2_GOAWAY &&
            type != NGHTTP2_WINDOW_UPDATE && (id == 0 || !(id & 1)))
                return fail(k, "a frame of type %u on stream %d", type, id);

        switch (type) {
        case NGHTTP2_DATA:
                if (flags & ~NGHTTP2_FLAG_END_STREAM)
                        return fail(k, "DATA with flags 0x%02x", flags);
                if (!(st = stream_of(k, id, "DATA")))
                        return k->why;
                if (st->ended || st->reset)
                        return fail(k, "DATA on stream %d after its end", id);
                if (st->blocks != 1)
                        return fail(k, "DATA on stream %d before its headers", id);
                if (flags & NGHTTP2_FLAG_END_STREAM)
                        return fail(k, "DATA ends stream %d: gRPC ends it with trailers", id);
                return grpc_messages(k, st, p, len);
        case NGHTTP2_HEADERS:
                if (flags & ~(NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS))
                        return fail(k, "HEADERS with flags 0x%02x (padded or priority)", flags);
                if (!(st = stream_of(k, id, "HEADERS")))
                        return k->why;
                if (st->ended || st->reset)
                        return fail(k, "HEADERS on stream %d after its end", id);
                k->block_stream = id;
                k->block_flags = flags;
                k->block_len = 0;
                if (block_append(k, p, len))
                        return k->why;
                return flags & NGHTTP2_FLAG_END_HEADERS ? header_block(k) : NULL;
        case NGHTTP2_CONTINUATION:
                if (id != k->block_stream)
                        return fail(k, "CONTINUATION on stream %d, not within a header block", id);
                if (flags & ~NGHTTP2_FLAG_END_HEADERS)
                        return fail(k, "CONTINUATION with flags 0x%02x", flags);
                if (block_append(k, p, len))
                        return k->why;
                return flags & NGHTTP2_FLAG_END_HEADERS ? header_block(k) : NULL;
        case NGHTTP2_RST_STREAM:
                if (len != 4 || flags)
                        return fail(k, "RST_STREAM of %zu bytes, flags 0x%02x", len, flags);
                if (!(st = stream_of(k, id, "RST_STREAM")))
                        return k->why;
                st->reset = true;
                return NULL;
        case NGHTTP2_SETTINGS:
                if (id != 0)
                        return fail(k, "SETTINGS on stream %d", id);
                if (flags & NGHTTP2_FLAG_ACK)
                        return len == 0 && flags == NGHTTP2_FLAG_ACK ?
                                       NULL :
                                       fail(k, "SETTINGS ACK of %zu bytes", len);
                if (len % 6 != 0 || flags)
                        return fail(k, "SETTINGS of %zu bytes, flags 0x%02x", len, flags);
                return settings(k, p, len);
        case NGHTTP2_PING:
                if (id != 0 || len != 8 || (flags & ~NGHTTP2_FLAG_ACK))
                        return fail(k, "PING on stream %d, %zu bytes, flags 0x%02x", id, len,
                                    flags);
                return NULL;
        case NGHTTP2_GOAWAY: {
                if (id != 0 || len < 8 || flags)
                        return fail(k, "GOAWAY on stream %d, %zu bytes, flags 0x%02x", id, len,
                                    flags);
                uint32_t last = be32(p) & 0x7fffffff;
                if (k->goaway && last > k->goaway_last)
                        return fail(k, "a GOAWAY's last stream id grew from %u to %u",
                                    k->goaway_last, last);
                k->goaway = true;
                k->goaway_last = last;
                return NULL;
        }
        case NGHTTP2_WINDOW_UPDATE:
                if (len != 4 || flags)
                        return fail(k, "WINDOW_UPDATE of %zu bytes, flags 0x%02x", len, flags);
                if ((be32(p) & 0x7fffffff) == 0)
                        return fail(k, "WINDOW_UPDATE of 0");
                if (id != 0 && !stream_of(k, id, "WINDOW_UPDATE"))
                        return k->why;
                return NULL;
        default: return fail(k, "a frame of type %u (the server sends no such)", type);
        }
}

/* Before any HTTP/2: an HTTP/1.1 505 answer, whole, and nothing after it. */
static const char *http1_answer(struct h2_check *k, bool complete)
{
        static const char status[] = "HTTP/1.1 505 ";
        size_t n = k->len < strlen(status) ? k->len : strlen(status);
        if (memcmp(k->buf, status, n) != 0)
                return fail(k, "an HTTP/1 answer that is not 505");
        const uint8_t *end = memmem(k->buf, k->len, "\r\n\r\n", 4);
        if (!end)
                return complete ? fail(k, "an HTTP/1 answer cut within its header") : NULL;
        size_t head = (size_t)(end - k->buf) + 4, length = 0;
        const char *cl = memmem(k->buf, head, "\r\nContent-Length: ", 18);
        if (!cl)
                return fail(k, "an HTTP/1 answer without Content-Length");
        for (cl += 18; *cl >= '0' && *cl <= '9'; cl++)
                length = length * 10 + (size_t)(*cl - '0');
        if (k->len > head + length)
                return fail(k, "%zu bytes after the HTTP/1 answer", k->len - head - length);
        if (complete && k->len < head + length)
                return fail(k, "the HTTP/1 answer's body is cut");
        return NULL;
}

const char *h2_check_server(struct h2_check *k, const uint8_t *p, size_t n)
{
        if (k->failed)
                return k->why;
        if (n == 0)
                return NULL;
        if (!grow((void **)&k->buf, &k->cap, k->len + n, 1))
                return fail(k, "out of memory");
        memcpy(k->buf + k->len, p, n);
        k->len += n;
        /* A frame begins with its length, under 2^24: an 'H' can only be HTTP/1. */
        if (!k->started && k->frames == 0 && k->buf[0] == 'H')
                k->http1 = true;
        if (k->http1)
                return http1_answer(k, false);

        size_t off = 0;
        while (k->len - off >= FRAME_HEADER_LEN) {
                const uint8_t *h = k->buf + off;
                size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
                if (len > FRAME_LEN_MAX)
                        return fail(k, "a frame of %zu bytes (type %u)", len, h[3]);
                if (k->len - off - FRAME_HEADER_LEN < len)
                        break;
                if (frame(k, h, h + FRAME_HEADER_LEN))
                        return k->why;
                off += FRAME_HEADER_LEN + len;
        }
        memmove(k->buf, k->buf + off, k->len - off);
        k->len -= off;
        return NULL;
}

const char *h2_check_between_frames(struct h2_check *k)
{
        if (k->failed)
                return k->why;
        if (k->http1)
                return k->len > 0 ? http1_answer(k, true) : NULL;
        if (k->len > 0)
                return fail(k, "the server stopped within a frame (%zu bytes of it)", k->len);
        if (k->block_stream)
                return fail(k, "the server stopped within the header block of stream %d",
                            k->block_stream);
        return NULL;
}
