/* Syslog drains (hostd/drain.c) without a network: the URLs a spec may name, and the frames a
 * drain writes (RFC 5424 with RFC 6587 octet counting). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "syslog-drain.h"
#include "util.h"

static void test_urls_accepted(void)
{
        static const struct {
                const char *url;
                bool tls, literal;
                const char *host;
                unsigned port;
        } ok[] = {
                { "syslog://127.0.0.1:514", false, true, "127.0.0.1", 514 },
                { "syslog+tls://logs.example.com:6514", true, false, "logs.example.com", 6514 },
                { "syslog://[::1]:1", false, true, "::1", 1 },
                { "syslog+tls://[2001:db8::7]:65535", true, true, "2001:db8::7", 65535 },
                { "syslog://localhost:10514", false, false, "localhost", 10514 },
                { "syslog://a-b.c9.example.:514", false, false, "a-b.c9.example.", 514 },
                { "syslog://1host.example:514", false, false, "1host.example", 514 },
        };
        printf("drain URLs accepted\n");
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                struct drain_url u;
                char why[256] = "";
                int r = drain_url_parse(ok[i].url, &u, why, sizeof why);
                if (r < 0)
                        fprintf(stderr, "  %s: %s\n", ok[i].url, why);
                CHECK(r == 0);
                if (r < 0)
                        continue;
                CHECK(u.tls == ok[i].tls);
                CHECK(u.literal == ok[i].literal);
                CHECK(strcmp(u.host, ok[i].host) == 0);
                CHECK(u.port == ok[i].port);
        }
}

static void test_urls_refused(void)
{
        static const struct {
                const char *url;
                const char *why; /* a part of the reason */
        } bad[] = {
                { "", "empty" },
                { "http://127.0.0.1:514", "not a syslog://" },
                { "syslog+udp://127.0.0.1:514", "not a syslog://" },
                { "SYSLOG://127.0.0.1:514", "not a syslog://" },
                { "syslog://127.0.0.1", "no port" },
                { "syslog://127.0.0.1:", "no port number" },
                { "syslog://127.0.0.1:0", "not in 1..65535" },
                { "syslog://127.0.0.1:65536", "not in 1..65535" },
                { "syslog://127.0.0.1:0000514", "not in 1..65535" },
                { "syslog://127.0.0.1:51x", "not a number" },
                { "syslog://127.0.0.1:514/path", "path" },
                { "syslog://127.0.0.1:514?x=1", "path, query" },
                { "syslog://:514", "no host" },
                { "syslog://user@host:514", "user name" },
                { "syslog://::1:514", "brackets" },
                { "syslog://[::1:514", "without ']'" },
                { "syslog://[fe80::1%eth0]:514", "not an IPv6 address" },
                { "syslog://[127.0.0.1]:514", "not an IPv6 address" },
                { "syslog://[::1]514", "unexpected text" },
                { "syslog://256.1.1.1:514", "not a host name nor an IPv4" },
                { "syslog://1.2.3:514", "not a host name nor an IPv4" },
                { "syslog://-bad.example:514", "not a host name" },
                { "syslog://bad-.example:514", "not a host name" },
                { "syslog://a..b:514", "not a host name" },
                { "syslog://under_score.example:514", "not a host name" },
                { "syslog://h\xc3\xa9.example:514", "not ASCII" },
                { "syslog://ho st:514", "space" },
                { "syslog://host:514\n", "control character" },
        };
        printf("drain URLs refused\n");
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct drain_url u;
                char why[256] = "";
                int r = drain_url_parse(bad[i].url, &u, why, sizeof why);
                if (r != -EINVAL || !strstr(why, bad[i].why))
                        fprintf(stderr, "  '%s': %d '%s', wanted '%s'\n", bad[i].url, r, why,
                                bad[i].why);
                CHECK(r == -EINVAL);
                CHECK(strstr(why, bad[i].why) != NULL);
        }

        /* a label of 64 bytes, and a URL over the limit */
        char url[1024];
        snprintf(url, sizeof url, "syslog://%064d.example:514", 1);
        struct drain_url u;
        char why[256];
        CHECK(drain_url_parse(url, &u, why, sizeof why) == -EINVAL);
        snprintf(url, sizeof url, "syslog://%063d.example:514", 1);
        CHECK(drain_url_parse(url, &u, why, sizeof why) == 0);
        memset(url, 'a', sizeof url);
        memcpy(url, "syslog://", 9);
        url[DRAIN_URL_MAX + 1] = 0;
        CHECK(drain_url_parse(url, &u, why, sizeof why) == -EINVAL);
        CHECK(strstr(why, "longer than") != NULL);
}

/* Split a frame as a receiver does: the octet count, then the message it counts. */
static void test_frames(void)
{
        char hdr[DRAIN_HEADER_MAX];
        printf("frames\n");

        /* 2026-11-27T06:30:00.000042 UTC */
        int64_t t = 1795761000LL * 1000000 + 42;
        const char *text = "hello, w\xc3\xb6rld";
        size_t len = strlen(text);
        size_t h = drain_frame_header(hdr, t, LOG_SOURCE_APP, "shop", "web.1", len);
        char frame[1024];
        memcpy(frame, hdr, h);
        memcpy(frame + h, text, len);
        frame[h + len] = 0;
        const char *want_msg = "<190>1 2026-11-27T06:30:00.000042+00:00 shop app web.1 - - hello, "
                               "w\xc3\xb6rld";
        char want[1024];
        snprintf(want, sizeof want, "%zu %s", strlen(want_msg), want_msg);
        if (strcmp(frame, want) != 0)
                fprintf(stderr, "  got  '%s'\n  want '%s'\n", frame, want);
        CHECK(strcmp(frame, want) == 0);

        /* The count is the bytes after its space, to the end of the message. */
        unsigned long n = strtoul(frame, NULL, 10);
        const char *sp = strchr(frame, ' ');
        CHECK(sp && n == strlen(sp + 1));

        /* heroku's lines, empty fields, fields that RFC 5424 would not take */
        h = drain_frame_header(hdr, t, LOG_SOURCE_PLATFORM, "", "we b.1\x01", 0);
        hdr[h] = 0;
        CHECK(strcmp(hdr, "61 <190>1 2026-11-27T06:30:00.000042+00:00 - heroku we_b.1_ - - ") == 0);
        CHECK(strtoul(hdr, NULL, 10) == strlen(strchr(hdr, ' ') + 1));

        /* A 10000-byte line: a five-digit count, exact. */
        h = drain_frame_header(hdr, t, LOG_SOURCE_APP, "shop", "web.1", 10000);
        hdr[h] = 0;
        CHECK(strtoul(hdr, NULL, 10) == strlen(strchr(hdr, ' ') + 1) + 10000);

        /* Longest fields: cut at RFC 5424's limits, and within DRAIN_HEADER_MAX. */
        char longname[400];
        memset(longname, 'x', sizeof longname - 1);
        longname[sizeof longname - 1] = 0;
        h = drain_frame_header(hdr, t, LOG_SOURCE_APP, longname, longname, 1);
        CHECK(h < DRAIN_HEADER_MAX);
        hdr[h] = 0;
        char *f = strchr(hdr, ' ') + 1; /* "<190>1" */
        f = strchr(f, ' ') + 1;         /* the timestamp */
        f = strchr(f, ' ') + 1;         /* HOSTNAME */
        CHECK(strcspn(f, " ") == 255);
        f = strchr(f, ' ') + 1; /* APP-NAME */
        f = strchr(f, ' ') + 1; /* PROCID */
        CHECK(strcspn(f, " ") == 128);

        /* Before 1970 and at a second's edge: microseconds stay in 0..999999. */
        h = drain_frame_header(hdr, -1, LOG_SOURCE_APP, "a", "b", 0);
        hdr[h] = 0;
        CHECK(strstr(hdr, "1969-12-31T23:59:59.999999+00:00") != NULL);
}

int main(void)
{
        test_urls_accepted();
        test_urls_refused();
        test_frames();
        if (n_failed)
                fprintf(stderr, "%d check(s) failed\n", n_failed);
        return n_failed != 0;
}
