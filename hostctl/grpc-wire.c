/* gRPC's wire details for hostctl: see grpc-wire.h. */
#include "grpc-wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-code.h"

const char *grpc_timeout_format(int64_t ms, char buf[static 16])
{
        /* The largest unit that keeps 8 digits, rounding up: a deadline must never be shorter
         * than the one asked for. */
        static const struct {
                char unit;
                int64_t ms;
        } units[] = { { 'm', 1 }, { 'S', 1000 }, { 'M', 60 * 1000 }, { 'H', 3600 * 1000 } };
        if (ms < 0)
                ms = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
                int64_t v = ms / units[i].ms + (ms % units[i].ms != 0);
                if (v <= 99999999) {
                        snprintf(buf, 16, "%" PRIu32 "%c", (uint32_t)v, units[i].unit);
                        return buf;
                }
        }
        snprintf(buf, 16, "99999999H");
        return buf;
}

void grpc_frame_header(uint8_t out[static GRPC_FRAME_HEADER], uint32_t len)
{
        out[0] = 0;
        out[1] = (uint8_t)(len >> 24);
        out[2] = (uint8_t)(len >> 16);
        out[3] = (uint8_t)(len >> 8);
        out[4] = (uint8_t)len;
}

int grpc_frame_parse(const uint8_t *buf, size_t n, size_t max, size_t *ret_len)
{
        if (n < GRPC_FRAME_HEADER)
                return 0;
        if (buf[0] != 0)
                return -EPROTO;
        size_t len = (size_t)buf[1] << 24 | (size_t)buf[2] << 16 | (size_t)buf[3] << 8 | buf[4];
        if (len > max)
                return -EMSGSIZE;
        if (n - GRPC_FRAME_HEADER < len)
                return 0;
        *ret_len = len;
        return 1;
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

char *grpc_percent_decode(const char *s, size_t n)
{
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;
                if (s[i] == '%' && i + 2 < n && (hi = hex_value(s[i + 1])) >= 0 &&
                    (lo = hex_value(s[i + 2])) >= 0) {
                        *o++ = (char)(hi << 4 | lo);
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = 0;
        return out;
}

const char *grpc_code_name(int code, char buf[static 24])
{
        if (code >= API_OK && code <= API_UNAUTHENTICATED)
                return api_code_name((enum api_code)code);
        snprintf(buf, 24, "CODE_%d", code);
        return buf;
}

int grpc_code_from_http(int http_status)
{
        switch (http_status) {
        case 400: return API_INTERNAL;
        case 401: return API_UNAUTHENTICATED;
        case 403: return API_PERMISSION_DENIED;
        case 404: return API_UNIMPLEMENTED;
        case 429:
        case 502:
        case 503:
        case 504: return API_UNAVAILABLE;
        default: return API_UNKNOWN;
        }
}

int grpc_code_from_h2_error(uint32_t h2_error)
{
        switch (h2_error) {
        case 0x7: /* REFUSED_STREAM: not processed, safe to try again */ return API_UNAVAILABLE;
        case 0x8: /* CANCEL */ return API_CANCELLED;
        case 0xb: /* ENHANCE_YOUR_CALM */ return API_RESOURCE_EXHAUSTED;
        case 0xc: /* INADEQUATE_SECURITY */ return API_PERMISSION_DENIED;
        default: return API_INTERNAL;
        }
}
