/* The small pieces of gRPC's wire format over HTTP/2 that a client needs, kept apart from the
 * connection so that tests can check them alone: the grpc-timeout header, the length-prefixed
 * message, grpc-message's percent-encoding, the status codes and what an HTTP status means
 * when a server answers without one. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPC_FRAME_HEADER 5 /* compressed flag, then the length, big-endian */

/* grpc-timeout's value for a timeout of ms milliseconds (>= 0): at most 8 digits and a unit,
 * "30000m", "31536000S"; rounded up, never down, when a coarser unit is needed. */
const char *grpc_timeout_format(int64_t ms, char buf[static 16]);

/* Write the 5-byte prefix of an uncompressed message of len bytes. */
void grpc_frame_header(uint8_t out[static GRPC_FRAME_HEADER], uint32_t len);

/* Look at the start of buf[0..n): 1 when a whole message is there (*ret_len bytes after the
 * prefix), 0 when more bytes are needed, -EMSGSIZE when its length is over max, -EPROTO when
 * it is compressed (hostctl asks for none: grpc-accept-encoding identity). The length is known
 * once the prefix is, so -EMSGSIZE comes before the bytes do. */
int grpc_frame_parse(const uint8_t *buf, size_t n, size_t max, size_t *ret_len);

/* Decode grpc-message's percent-encoding ("%C3%A9" is "é"). A '%' not followed by two hex
 * digits stays as it is, as gRPC says a client must not lose a message for that. NULL on
 * ENOMEM; the result is NUL-terminated (a "%00" ends it early). */
char *grpc_percent_decode(const char *s, size_t n);

/* "NOT_FOUND" for 5; "CODE_<n>" for numbers gRPC does not define (the buffer is used then). */
const char *grpc_code_name(int code, char buf[static 24]);

/* The status to report for a response whose HTTP status is not 200 and that carries no
 * grpc-status (gRPC's "HTTP to gRPC status code mapping"). */
int grpc_code_from_http(int http_status);

/* The gRPC code that an HTTP/2 RST_STREAM error code stands for, as gRPC maps them. */
int grpc_code_from_h2_error(uint32_t h2_error);
