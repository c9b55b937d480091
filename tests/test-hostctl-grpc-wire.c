/* hostctl's gRPC wire details: grpc-timeout, the message prefix, grpc-message's decoding, the
 * status names and what HTTP and HTTP/2 errors stand for. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../hostctl/grpc-wire.h"
#include "check.h"

static void test_timeout(void)
{
        char b[16];
        CHECK_STR(grpc_timeout_format(0, b), "0m");
        CHECK_STR(grpc_timeout_format(1000, b), "1000m");
        CHECK_STR(grpc_timeout_format(30000, b), "30000m");
        CHECK_STR(grpc_timeout_format(99999999, b), "99999999m");
        /* Past 8 digits of milliseconds: seconds, rounded up, never down. */
        CHECK_STR(grpc_timeout_format(100000000, b), "100000S");
        CHECK_STR(grpc_timeout_format(100000001, b), "100001S");
        /* hostctl's largest: --timeout of a year plus a stop's grace. */
        CHECK_STR(grpc_timeout_format((int64_t)(86400 * 365 + 4294967295LL) * 1000, b),
                  "72108389M");
        CHECK(strlen(grpc_timeout_format(INT64_MAX, b)) <= 9);
        CHECK_STR(grpc_timeout_format(-5, b), "0m");
}

static void test_timeout_units_never_shorten(void)
{
        /* Whatever the unit, the value read back is at least the one asked for. */
        static const int64_t ms[] = {
                1, 999, 1001, 99999999, 100000000, 123456789012, (int64_t)1 << 45
        };
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
                char b[16];
                const char *s = grpc_timeout_format(ms[i], b);
                size_t n = strlen(s);
                CHECK(n >= 2 && n <= 9);
                int64_t v = strtoll(s, NULL, 10), unit = 0;
                switch (s[n - 1]) {
                case 'm': unit = 1; break;
                case 'S': unit = 1000; break;
                case 'M': unit = 60000; break;
                case 'H': unit = 3600000; break;
                }
                CHECK(unit > 0 && v * unit >= ms[i]);
        }
}

static void test_frames(void)
{
        uint8_t buf[16] = { 0 };
        size_t len = 99;
        grpc_frame_header(buf, 0x01020304);
        CHECK(buf[0] == 0 && buf[1] == 1 && buf[2] == 2 && buf[3] == 3 && buf[4] == 4);

        /* Not enough for the prefix, then for the message: wait. */
        CHECK_R(grpc_frame_parse(buf, 4, 1 << 30, &len), 0);
        grpc_frame_header(buf, 3);
        memcpy(buf + 5, "abc", 3);
        CHECK_R(grpc_frame_parse(buf, 7, 100, &len), 0);
        CHECK_R(grpc_frame_parse(buf, 8, 100, &len), 1);
        CHECK_EQ(len, 3);
        /* An empty message is a message. */
        grpc_frame_header(buf, 0);
        CHECK_R(grpc_frame_parse(buf, 5, 100, &len), 1);
        CHECK_EQ(len, 0);
        /* Over the limit: known from the prefix alone. */
        grpc_frame_header(buf, 101);
        CHECK_R(grpc_frame_parse(buf, 5, 100, &len), -EMSGSIZE);
        grpc_frame_header(buf, 0xffffffff);
        CHECK_R(grpc_frame_parse(buf, 5, 4 << 20, &len), -EMSGSIZE);
        /* Compressed: hostctl asks for none. */
        grpc_frame_header(buf, 1);
        buf[0] = 1;
        CHECK_R(grpc_frame_parse(buf, 6, 100, &len), -EPROTO);
}

static void decoded(const char *in, const char *want, int line)
{
        char *got = grpc_percent_decode(in, strlen(in));
        check_record(got && strcmp(got, want) == 0, __FILE__, line, "'%s' -> '%s', want '%s'", in,
                     got ? got : "(null)", want);
        free(got);
}

static void test_percent_decode(void)
{
        decoded("dyno 'web-1' not found", "dyno 'web-1' not found", __LINE__);
        decoded("caf%C3%A9", "café", __LINE__);
        decoded("100%25 sure", "100% sure", __LINE__);
        decoded("line%0Anext", "line\nnext", __LINE__);
        /* What is not an escape stays as it is. */
        decoded("100% sure", "100% sure", __LINE__);
        decoded("50%", "50%", __LINE__);
        decoded("%4", "%4", __LINE__);
        decoded("%zz", "%zz", __LINE__);
        decoded("%e9%E9", "\xe9\xe9", __LINE__);
        decoded("", "", __LINE__);
        /* Only the bytes given are read. */
        char *s = grpc_percent_decode("ab%41cd", 4);
        CHECK_STR(s, "ab%4");
        free(s);
}

static void test_codes(void)
{
        char b[24];
        CHECK_STR(grpc_code_name(0, b), "OK");
        CHECK_STR(grpc_code_name(5, b), "NOT_FOUND");
        CHECK_STR(grpc_code_name(16, b), "UNAUTHENTICATED");
        CHECK_STR(grpc_code_name(17, b), "CODE_17");
        CHECK_STR(grpc_code_name(-1, b), "CODE_-1");

        CHECK_EQ(grpc_code_from_http(400), 13); /* INTERNAL */
        CHECK_EQ(grpc_code_from_http(401), 16); /* UNAUTHENTICATED */
        CHECK_EQ(grpc_code_from_http(403), 7);  /* PERMISSION_DENIED */
        CHECK_EQ(grpc_code_from_http(404), 12); /* UNIMPLEMENTED */
        CHECK_EQ(grpc_code_from_http(503), 14); /* UNAVAILABLE */
        CHECK_EQ(grpc_code_from_http(500), 2);  /* UNKNOWN */

        CHECK_EQ(grpc_code_from_h2_error(0x7), 14); /* REFUSED_STREAM: UNAVAILABLE */
        CHECK_EQ(grpc_code_from_h2_error(0x8), 1);  /* CANCEL: CANCELLED */
        CHECK_EQ(grpc_code_from_h2_error(0xb), 8);  /* ENHANCE_YOUR_CALM */
        CHECK_EQ(grpc_code_from_h2_error(0x2), 13); /* INTERNAL_ERROR */
}

int main(void)
{
        test_timeout();
        test_timeout_units_never_shorten();
        test_frames();
        test_percent_decode();
        test_codes();
        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return 1;
        }
        printf("ok\n");
        return 0;
}
