/* The small pure pieces of gRPC's wire format (PROTOCOL-HTTP2), apart from the server so that
 * a unit test checks each: the grpc-timeout header, the percent-encoding of grpc-message, the
 * 5-byte prefix of a length-prefixed message, and which content-types are gRPC's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The 5-byte prefix of every message on a stream: a compressed flag, then the length, big
 * endian. */
#define GRPC_PREFIX_LEN 5

/* "100m", "3S", "1H": grpc-timeout's value in microseconds (nanoseconds rounded up), at most 8
 * digits then one unit of H M S m u n. 0, or -EINVAL. */
int grpc_timeout_parse(const char *s, size_t len, uint64_t *ret_usec);

/* grpc-message's encoding of text: bytes outside printable ASCII, '%', and a space at either
 * end (no field value begins or ends with whitespace), as %XX. Writes at most len bytes with
 * the NUL, cutting only between whole escapes and never just after a space; returns buf. */
const char *grpc_percent_encode(const char *text, char *buf, size_t len);
/* The reverse, in place (what a client does; the tests use it). -EINVAL for a bad escape. */
int grpc_percent_decode(char *s);

/* The prefix at p: 0 with the flag and the length, or -EPROTO when the flag byte is neither 0
 * nor 1. */
int grpc_prefix_parse(const uint8_t p[GRPC_PREFIX_LEN], bool *ret_compressed, uint32_t *ret_len);
void grpc_prefix_write(uint8_t p[GRPC_PREFIX_LEN], bool compressed, uint32_t len);

enum grpc_content_type {
        GRPC_CONTENT_PROTO,     /* application/grpc, application/grpc+proto, with parameters */
        GRPC_CONTENT_OTHER_SUB, /* application/grpc+json and other encodings: not served */
        GRPC_CONTENT_NOT_GRPC,  /* anything else, or none */
};
enum grpc_content_type grpc_content_type_parse(const char *s, size_t len);
