/* What a gRPC server writes on a connection, checked as a client reads it: HTTP/2's frames
 * (RFC 9113) and gRPC's use of them (PROTOCOL-HTTP2), byte by byte as it comes. For fuzz-grpc,
 * which feeds a server hostile bytes and must know that whatever it answers is still HTTP/2.
 *
 * The rules, for a server that neither pushes nor pads nor compresses (hostd's):
 *   - the first frame is SETTINGS; or, only before any HTTP/2, one HTTP/1.1 505 answer, and
 *     nothing after it;
 *   - every frame is one of DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE,
 *     CONTINUATION, on the stream its type allows, of the length its type has, no longer
 *     than 16384 bytes, with no flag the server has no use for;
 *   - a header block is HEADERS then CONTINUATIONs of the same stream, nothing between, and
 *     it decodes with HPACK (nghttp2's inflater);
 *   - a stream is one the client opened (a HEADERS in what it sent); the server answers it
 *     with headers (:status first, content-type application/grpc), messages in DATA (each
 *     with its 5-byte prefix, never compressed), then trailers with grpc-status, which end
 *     the stream; or with one trailers-only HEADERS; nothing on it after END_STREAM or
 *     RST_STREAM but another RST_STREAM;
 *   - grpc-status is a code of 0 to 16, grpc-message percent-encoded printable ASCII, no
 *     header value holds NUL, CR or LF;
 *   - a GOAWAY's last stream id never grows. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h2_check;

struct h2_check *h2_check_new(void);
void h2_check_free(struct h2_check *k);
/* What the client sent (the whole of it): the streams it opened, to check the server's
 * against. A superset is fine: bytes nghttp2 never took are counted too. */
void h2_check_client(struct h2_check *k, const uint8_t *p, size_t n);
/* The server's next bytes. NULL, or what is wrong (the check is over then). */
const char *h2_check_server(struct h2_check *k, const uint8_t *p, size_t n);
/* The server has nothing more to write for now: NULL when it stopped between frames and
 * not within a header block, else what is wrong. */
const char *h2_check_between_frames(struct h2_check *k);
/* Counts, for the fuzzer's own checks. */
size_t h2_check_frames(const struct h2_check *k);
bool h2_check_http1(const struct h2_check *k); /* the server answered with HTTP/1.1 505 */
