/* The pure pieces of gRPC's wire format (hostd/grpc-wire.c): grpc-timeout, the
 * percent-encoding of grpc-message, the 5-byte message prefix, content-types. No root. */
#include "grpc-wire.h"

#include <errno.h>

#include "check.h"

static void test_timeout(void)
{
        uint64_t v = 0;
        CHECK_R(grpc_timeout_parse("1H", 2, &v), 0);
        CHECK_EQ(v, 3600ULL * 1000000);
        CHECK_R(grpc_timeout_parse("2M", 2, &v), 0);
        CHECK_EQ(v, 120ULL * 1000000);
        CHECK_R(grpc_timeout_parse("3S", 2, &v), 0);
        CHECK_EQ(v, 3000000);
        CHECK_R(grpc_timeout_parse("250m", 4, &v), 0);
        CHECK_EQ(v, 250000);
        CHECK_R(grpc_timeout_parse("7u", 2, &v), 0);
        CHECK_EQ(v, 7);
        /* Nanoseconds round up: a deadline is never made shorter. */
        CHECK_R(grpc_timeout_parse("1n", 2, &v), 0);
        CHECK_EQ(v, 1);
        CHECK_R(grpc_timeout_parse("1000n", 5, &v), 0);
        CHECK_EQ(v, 1);
        CHECK_R(grpc_timeout_parse("1001n", 5, &v), 0);
        CHECK_EQ(v, 2);
        CHECK_R(grpc_timeout_parse("0m", 2, &v), 0);
        CHECK_EQ(v, 0);
        /* Eight digits at most, the biggest: 99999999 hours fits in 64 bits. */
        CHECK_R(grpc_timeout_parse("99999999H", 9, &v), 0);
        CHECK_EQ(v, 99999999ULL * 3600 * 1000000);
        CHECK_R(grpc_timeout_parse("123456789S", 10, &v), -EINVAL);
        CHECK_R(grpc_timeout_parse("S", 1, &v), -EINVAL);
        CHECK_R(grpc_timeout_parse("", 0, &v), -EINVAL);
        CHECK_R(grpc_timeout_parse("10", 2, &v), -EINVAL);
        CHECK_R(grpc_timeout_parse("10s", 3, &v), -EINVAL); /* units are case-sensitive */
        CHECK_R(grpc_timeout_parse("1 S", 3, &v), -EINVAL);
        CHECK_R(grpc_timeout_parse("-1S", 3, &v), -EINVAL);
        CHECK_R(grpc_timeout_parse("1x", 2, &v), -EINVAL);
        /* The length given, not the NUL, ends it. */
        CHECK_R(grpc_timeout_parse("5Sjunk", 2, &v), 0);
        CHECK_EQ(v, 5000000);
}

static void test_percent(void)
{
        char buf[64];
        CHECK_STR(grpc_percent_encode("plain text: ok", buf, sizeof buf), "plain text: ok");
        CHECK_STR(grpc_percent_encode("100%", buf, sizeof buf), "100%25");
        CHECK_STR(grpc_percent_encode("a\nb\tc", buf, sizeof buf), "a%0Ab%09c");
        CHECK_STR(grpc_percent_encode("\xc3\xa9t\xc3\xa9", buf, sizeof buf), "%C3%A9t%C3%A9");
        CHECK_STR(grpc_percent_encode("~ \x7f", buf, sizeof buf), "~ %7F");
        CHECK_STR(grpc_percent_encode("", buf, sizeof buf), "");
        /* No whitespace at either end of a field value (RFC 9113 8.2.1); inside, as it is. */
        CHECK_STR(grpc_percent_encode(" a b ", buf, sizeof buf), "%20a b%20");
        CHECK_STR(grpc_percent_encode("a  ", buf, sizeof buf), "a %20");
        CHECK_STR(grpc_percent_encode(" ", buf, sizeof buf), "%20");
        CHECK_STR(grpc_percent_encode("  ", buf, sizeof buf), "%20%20");
        char cut[5];
        CHECK_STR(grpc_percent_encode("ab cd", cut, sizeof cut), "ab c");
        CHECK_STR(grpc_percent_encode("abc de", cut, sizeof cut), "abc");
        CHECK_STR(grpc_percent_encode("a   bc", cut, sizeof cut), "a");
        /* Cut only between whole escapes. */
        char small[6];
        CHECK_STR(grpc_percent_encode("ab\ncd", small, sizeof small), "ab%0A");
        char tiny[5];
        CHECK_STR(grpc_percent_encode("ab\ncd", tiny, sizeof tiny), "ab");

        char s[64];
        snprintf(s, sizeof s, "%s", "a%0Ab%25%C3%A9");
        CHECK_R(grpc_percent_decode(s), 0);
        CHECK_STR(s, "a\nb%\xc3\xa9");
        snprintf(s, sizeof s, "%s", "bad%zz");
        CHECK_R(grpc_percent_decode(s), -EINVAL);
        snprintf(s, sizeof s, "%s", "cut%4");
        CHECK_R(grpc_percent_decode(s), -EINVAL);

        /* Every byte makes the round trip. */
        char all[256], enc[256 * 3 + 1];
        for (int i = 1; i < 256; i++)
                all[i - 1] = (char)i;
        all[255] = 0;
        grpc_percent_encode(all, enc, sizeof enc);
        for (const char *p = enc; *p; p++)
                CHECK(*p >= 0x20 && *p <= 0x7e);
        CHECK_R(grpc_percent_decode(enc), 0);
        CHECK(strcmp(enc, all) == 0);
}

static void test_prefix(void)
{
        uint8_t p[GRPC_PREFIX_LEN];
        bool compressed = true;
        uint32_t len = 0;

        grpc_prefix_write(p, false, 0x01020304);
        CHECK_EQ(p[0], 0);
        CHECK_EQ(p[1], 1);
        CHECK_EQ(p[4], 4);
        CHECK_R(grpc_prefix_parse(p, &compressed, &len), 0);
        CHECK(!compressed);
        CHECK_EQ(len, 0x01020304);

        grpc_prefix_write(p, true, 0xffffffff);
        CHECK_R(grpc_prefix_parse(p, &compressed, &len), 0);
        CHECK(compressed);
        CHECK_EQ(len, 0xffffffffu);

        const uint8_t empty[] = { 0, 0, 0, 0, 0 };
        CHECK_R(grpc_prefix_parse(empty, &compressed, &len), 0);
        CHECK_EQ(len, 0);
        const uint8_t bad[] = { 2, 0, 0, 0, 1 };
        CHECK_R(grpc_prefix_parse(bad, &compressed, &len), -EPROTO);
        const uint8_t worse[] = { 0x80, 0, 0, 0, 1 };
        CHECK_R(grpc_prefix_parse(worse, &compressed, &len), -EPROTO);
}

#define CT(s) grpc_content_type_parse(s, strlen(s))

static void test_content_type(void)
{
        CHECK_EQ(CT("application/grpc"), GRPC_CONTENT_PROTO);
        CHECK_EQ(CT("application/grpc+proto"), GRPC_CONTENT_PROTO);
        CHECK_EQ(CT("Application/GRPC+Proto"), GRPC_CONTENT_PROTO);
        CHECK_EQ(CT("application/grpc;charset=utf-8"), GRPC_CONTENT_PROTO);
        CHECK_EQ(CT("application/grpc+proto;x=y"), GRPC_CONTENT_PROTO);
        CHECK_EQ(CT("application/grpc+json"), GRPC_CONTENT_OTHER_SUB);
        CHECK_EQ(CT("application/grpc+protobuf"), GRPC_CONTENT_OTHER_SUB);
        CHECK_EQ(CT("application/grpcx"), GRPC_CONTENT_NOT_GRPC);
        CHECK_EQ(CT("application/json"), GRPC_CONTENT_NOT_GRPC);
        CHECK_EQ(CT("text/html"), GRPC_CONTENT_NOT_GRPC);
        CHECK_EQ(CT(""), GRPC_CONTENT_NOT_GRPC);
        CHECK_EQ(grpc_content_type_parse("application/grpc+json", 16), GRPC_CONTENT_PROTO);
}

int main(void)
{
        test_timeout();
        test_percent();
        test_prefix();
        test_content_type();
        return check_report();
}
