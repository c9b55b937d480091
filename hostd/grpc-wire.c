/* gRPC's wire details: see grpc-wire.h. */
#include "grpc-wire.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

int grpc_timeout_parse(const char *s, size_t len, uint64_t *ret_usec)
{
        /* TimeoutValue: 1 to 8 ASCII digits; TimeoutUnit: one letter. */
        if (len < 2 || len > 9)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i < len - 1; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        switch (s[len - 1]) {
        case 'H': v *= 3600ULL * 1000000; break;
        case 'M': v *= 60ULL * 1000000; break;
        case 'S': v *= 1000000; break;
        case 'm': v *= 1000; break;
        case 'u': break;
        case 'n': v = (v + 999) / 1000; break;
        default: return -EINVAL;
        }
        *ret_usec = v;
        return 0;
}

const char *grpc_percent_encode(const char *text, char *buf, size_t len)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;

        if (len == 0)
                return buf;
        for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
                bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
                /* A field value neither begins nor ends with whitespace (RFC 9113 8.2.1). */
                if (*p == ' ' && (o == 0 || !p[1]))
                        plain = false;
                size_t need = plain ? 1 : 3;
                if (o + need >= len) {
                        while (o > 0 && buf[o - 1] == ' ')
                                o--; /* cut after a space: the value would end with it */
                        break;
                }
                if (plain)
                        buf[o++] = (char)*p;
                else {
                        buf[o++] = '%';
                        buf[o++] = hex[*p >> 4];
                        buf[o++] = hex[*p & 15];
                }
        }
        buf[o] = 0;
        return buf;
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

int grpc_percent_decode(char *s)
{
        char *o = s;
        for (const char *p = s; *p; p++) {
                if (*p != '%') {
                        *o++ = *p;
                        continue;
                }
                int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                *o++ = (char)(hi << 4 | lo);
                p += 2;
        }
        *o = 0;
        return 0;
}

int grpc_prefix_parse(const uint8_t p[GRPC_PREFIX_LEN], bool *ret_compressed, uint32_t *ret_len)
{
        if (p[0] > 1)
                return -EPROTO;
        *ret_compressed = p[0] == 1;
        *ret_len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        return 0;
}

void grpc_prefix_write(uint8_t p[GRPC_PREFIX_LEN], bool compressed, uint32_t len)
{
        p[0] = compressed ? 1 : 0;
        p[1] = (uint8_t)(len >> 24);
        p[2] = (uint8_t)(len >> 16);
        p[3] = (uint8_t)(len >> 8);
        p[4] = (uint8_t)len;
}

enum grpc_content_type grpc_content_type_parse(const char *s, size_t len)
{
        static const char base[] = "application/grpc";
        const size_t n = sizeof base - 1;

        if (len < n || strncasecmp(s, base, n) != 0)
                return GRPC_CONTENT_NOT_GRPC;
        const char *rest = s + n;
        size_t left = len - n;
        if (left == 0 || rest[0] == ';')
                return GRPC_CONTENT_PROTO;
        if (rest[0] != '+')
                return GRPC_CONTENT_NOT_GRPC; /* application/grpcfoo */
        rest++, left--;
        size_t sub = 0;
        while (sub < left && rest[sub] != ';')
                sub++;
        if (sub == 5 && strncasecmp(rest, "proto", 5) == 0)
                return GRPC_CONTENT_PROTO;
        return GRPC_CONTENT_OTHER_SUB;
}
