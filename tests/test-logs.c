/* Unit tests for hostd/logs.c: the line ring and the line splitter. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "logs.h"
#include "util.h"
#include "check.h"

/* ASan reserves terabytes of shadow memory and cannot run under an address-space limit. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

static void log_ring_freep(struct log_ring **r) { log_ring_free(*r); }
#define _cleanup_log_ring_ _cleanup_(log_ring_freep)

static bool line_is(const struct log_line *l, const char *s)
{
        return l && l->len == strlen(s) && memcmp(l->text, s, l->len) == 0;
}

/* What the splitter emitted, in order. */
struct lines {
        char **v;
        size_t *len;
        size_t n;
};

static void collect(void *userdata, const char *line, size_t len)
{
        struct lines *c = userdata;

        c->v = realloc(c->v, (c->n + 1) * sizeof(*c->v));
        c->len = realloc(c->len, (c->n + 1) * sizeof(*c->len));
        if (!c->v || !c->len)
                abort();
        c->v[c->n] = malloc(len + 1);
        if (!c->v[c->n])
                abort();
        memcpy(c->v[c->n], line, len);
        c->v[c->n][len] = '\0';
        c->len[c->n] = len;
        c->n++;
}

static void lines_clear(struct lines *c)
{
        for (size_t i = 0; i < c->n; i++)
                free(c->v[i]);
        free(c->v);
        free(c->len);
        *c = (struct lines){};
}

static bool lines_are(const struct lines *c, const char *const *want, size_t n)
{
        if (c->n != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (c->len[i] != strlen(want[i]) || memcmp(c->v[i], want[i], c->len[i]) != 0)
                        return false;
        return true;
}

static void test_ring_new_invalid(void)
{
        struct log_ring *r = NULL;

        CHECK_EQ(log_ring_new(0, &r), -EINVAL);
        CHECK(r == NULL);
}

static void test_ring_rotation(void)
{
        _cleanup_log_ring_ struct log_ring *r = NULL;
        char text[32];

        CHECK_EQ(log_ring_new(1500, &r), 0);
        if (!r)
                return;
        CHECK_EQ(log_ring_count(r), 0);
        CHECK(log_ring_get(r, 0) == NULL);
        CHECK_EQ(log_ring_next_seq(r), 0);

        for (int i = 0; i < 4000; i++) {
                int n = snprintf(text, sizeof text, "line %d", i);
                CHECK_EQ(log_ring_push(r, 1000 + i, i % 2 ? LOG_SOURCE_PLATFORM : LOG_SOURCE_APP,
                                       text, (size_t)n),
                         0);
                if (i == 9) {
                        /* Not yet full: all kept, first line has seq 0. */
                        CHECK_EQ(log_ring_count(r), 10);
                        CHECK(line_is(log_ring_get(r, 0), "line 0"));
                        CHECK_EQ(log_ring_get(r, 0)->seq, 0);
                }
        }

        /* The last 1500 in order, oldest first, each with its own seq, time and source. */
        CHECK_EQ(log_ring_count(r), 1500);
        CHECK_EQ(log_ring_next_seq(r), 4000);
        CHECK_EQ(log_ring_dropped(r), 0); /* rotation is not loss */
        for (size_t i = 0; i < 1500; i++) {
                const struct log_line *l = log_ring_get(r, i);
                size_t want = 2500 + i;

                snprintf(text, sizeof text, "line %zu", want);
                CHECK(line_is(l, text));
                if (!l)
                        continue;
                if (l->seq != want || l->time_usec != (int64_t)(1000 + want) ||
                    l->source != (want % 2 ? LOG_SOURCE_PLATFORM : LOG_SOURCE_APP))
                        CHECK(!"seq, time or source");
        }
        CHECK(log_ring_get(r, 1500) == NULL);
}

static void test_ring_single_slot(void)
{
        _cleanup_log_ring_ struct log_ring *r = NULL;

        CHECK_EQ(log_ring_new(1, &r), 0);
        if (!r)
                return;
        CHECK_EQ(log_ring_push(r, 1, LOG_SOURCE_APP, "a", 1), 0);
        CHECK_EQ(log_ring_push(r, 2, LOG_SOURCE_APP, "b", 1), 0);
        CHECK_EQ(log_ring_push(r, 3, LOG_SOURCE_APP, "", 0), 0);
        CHECK_EQ(log_ring_count(r), 1);
        CHECK(line_is(log_ring_get(r, 0), ""));
        CHECK_EQ(log_ring_get(r, 0)->seq, 2);
        CHECK(log_ring_get(r, 1) == NULL);
}

/* A line lost to ENOMEM is counted, keeps what the ring had, and leaves a gap in seq. Run in a
 * child with an address-space limit so that the allocation really fails. */
static void test_ring_enomem(void)
{
        const size_t huge = 1u << 30;
        int status;
        pid_t pid;

#ifdef HAVE_ASAN
        printf("  (skipped: built with AddressSanitizer)\n");
        return;
#endif
        fflush(stdout);
        pid = fork();
        if (pid < 0) {
                perror("fork");
                exit(EXIT_FAILURE);
        }
        if (pid == 0) {
                struct log_ring *r = NULL;
                int k, code = 0;

                if (log_ring_new(2, &r) < 0)
                        _exit(10);
                log_ring_push(r, 0, LOG_SOURCE_APP, "a", 1);
                log_ring_push(r, 0, LOG_SOURCE_APP, "b", 1);

                /* Readable source of the claimed length, so a wrong success could not crash. */
                void *src = mmap(NULL, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                                 -1, 0);
                if (src == MAP_FAILED)
                        _exit(11);
                struct rlimit rl = { .rlim_cur = 512u << 20, .rlim_max = 512u << 20 };
                if (setrlimit(RLIMIT_AS, &rl) < 0)
                        _exit(12);

                k = log_ring_push(r, 0, LOG_SOURCE_APP, src, huge);
                if (k != -ENOMEM)
                        code = 1;
                else if (log_ring_dropped(r) != 1)
                        code = 2;
                else if (log_ring_count(r) != 2 || !line_is(log_ring_get(r, 0), "a") ||
                         !line_is(log_ring_get(r, 1), "b"))
                        code = 3;
                else if (log_ring_push(r, 0, LOG_SOURCE_APP, "c", 1) < 0)
                        code = 4;
                else if (log_ring_get(r, 1)->seq != 3) /* seq 2 was the lost line */
                        code = 5;
                log_ring_free(r);
                _exit(code);
        }
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFEXITED(status));
        CHECK_EQ(WEXITSTATUS(status), 0);
}

static void test_split_long_line(void)
{
        struct line_splitter s;
        struct lines c = {};
        const size_t n = 25000;
        _cleanup_free_ char *data = malloc(n + 1);

        CHECK(data != NULL);
        if (!data)
                return;
        for (size_t i = 0; i < n; i++)
                data[i] = (char)('a' + i % 26);
        data[n] = '\n';

        CHECK_EQ(line_splitter_init(&s, 10000), 0);
        line_splitter_feed(&s, data, n + 1, collect, &c);
        CHECK_EQ(c.n, 3);
        if (c.n == 3) {
                CHECK_EQ(c.len[0], 10000);
                CHECK_EQ(c.len[1], 10000);
                CHECK_EQ(c.len[2], 5000);
                CHECK(memcmp(c.v[0], data, 10000) == 0);
                CHECK(memcmp(c.v[1], data + 10000, 10000) == 0);
                CHECK(memcmp(c.v[2], data + 20000, 5000) == 0);
        }
        line_splitter_flush(&s, collect, &c);
        CHECK_EQ(c.n, 3);
        lines_clear(&c);

        /* Without the newline: two pieces now, the rest only at flush. */
        line_splitter_feed(&s, data, n, collect, &c);
        CHECK_EQ(c.n, 2);
        line_splitter_flush(&s, collect, &c);
        CHECK_EQ(c.n, 3);
        if (c.n == 3)
                CHECK(c.len[2] == 5000 && memcmp(c.v[2], data + 20000, 5000) == 0);
        lines_clear(&c);

        /* Exactly two pieces long: no empty third line after the newline. */
        line_splitter_feed(&s, data, 20000, collect, &c);
        line_splitter_feed(&s, "\n", 1, collect, &c);
        CHECK_EQ(c.n, 2);
        if (c.n == 2)
                CHECK(c.len[0] == 10000 && c.len[1] == 10000);
        lines_clear(&c);

        /* The same long line a byte at a time gives the same pieces. */
        for (size_t i = 0; i <= n; i++)
                line_splitter_feed(&s, data + i, 1, collect, &c);
        CHECK_EQ(c.n, 3);
        if (c.n == 3)
                CHECK(c.len[0] == 10000 && c.len[1] == 10000 && c.len[2] == 5000 &&
                      memcmp(c.v[2], data + 20000, 5000) == 0);
        lines_clear(&c);
        line_splitter_free(&s);
}

static void test_split_across_feeds(void)
{
        static const char *const want[] = { "hello", "world", "x" };
        static const char text[] = "hello\nworld\nx\n";
        struct line_splitter s;
        struct lines c = {};

        CHECK_EQ(line_splitter_init(&s, 100), 0);
        line_splitter_feed(&s, "hel", 3, collect, &c);
        CHECK_EQ(c.n, 0);
        line_splitter_feed(&s, "lo\nwor", 6, collect, &c);
        CHECK_EQ(c.n, 1);
        line_splitter_feed(&s, "ld\nx\n", 5, collect, &c);
        CHECK(lines_are(&c, want, ELEMENTSOF(want)));
        lines_clear(&c);

        /* Every split point of the same text gives the same lines. */
        for (size_t cut = 0; cut <= sizeof text - 1; cut++) {
                line_splitter_feed(&s, text, cut, collect, &c);
                line_splitter_feed(&s, text + cut, sizeof text - 1 - cut, collect, &c);
                if (!lines_are(&c, want, ELEMENTSOF(want)))
                        CHECK(!"split point changes the lines");
                lines_clear(&c);
        }
        line_splitter_free(&s);
}

static void test_split_empty_lines(void)
{
        static const char *const want[] = { "a", "", "", "b", "" };
        struct line_splitter s;
        struct lines c = {};

        CHECK_EQ(line_splitter_init(&s, 100), 0);
        line_splitter_feed(&s, "a\n\n\nb\n\n", 7, collect, &c);
        CHECK(lines_are(&c, want, ELEMENTSOF(want)));
        line_splitter_flush(&s, collect, &c);
        CHECK_EQ(c.n, ELEMENTSOF(want)); /* nothing buffered, nothing emitted */
        lines_clear(&c);
        line_splitter_free(&s);
}

static void test_split_crlf(void)
{
        static const char *const want[] = { "x\r", "y\r", "\r" };
        struct line_splitter s;
        struct lines c = {};

        CHECK_EQ(line_splitter_init(&s, 100), 0);
        line_splitter_feed(&s, "x\r\ny\r", 5, collect, &c);
        line_splitter_feed(&s, "\n\r\n", 3, collect, &c);
        CHECK(lines_are(&c, want, ELEMENTSOF(want)));
        lines_clear(&c);
        line_splitter_free(&s);
}

static void test_split_flush(void)
{
        static const char *const want[] = { "first", "tail" };
        struct line_splitter s;
        struct lines c = {};

        CHECK_EQ(line_splitter_init(&s, 100), 0);
        line_splitter_flush(&s, collect, &c);
        CHECK_EQ(c.n, 0); /* nothing at all: no line */
        line_splitter_feed(&s, "first\nta", 8, collect, &c);
        line_splitter_feed(&s, "il", 2, collect, &c);
        CHECK_EQ(c.n, 1);
        line_splitter_flush(&s, collect, &c);
        CHECK(lines_are(&c, want, ELEMENTSOF(want)));
        line_splitter_flush(&s, collect, &c);
        CHECK_EQ(c.n, 2); /* flushed once only */
        lines_clear(&c);

        /* The splitter is usable again after a flush. */
        line_splitter_feed(&s, "again\n", 6, collect, &c);
        CHECK(c.n == 1 && strcmp(c.v[0], "again") == 0);
        lines_clear(&c);
        line_splitter_free(&s);
        line_splitter_free(&s);

        CHECK_EQ(line_splitter_init(&s, 0), -EINVAL);
}

/* The way hostd uses them together: pipe bytes through the splitter into the ring. */
struct to_ring {
        struct log_ring *ring;
        int64_t now;
};

static void push_line(void *userdata, const char *line, size_t len)
{
        struct to_ring *t = userdata;

        if (log_ring_push(t->ring, t->now++, LOG_SOURCE_APP, line, len) < 0)
                abort();
}

static void test_splitter_into_ring(void)
{
        _cleanup_log_ring_ struct log_ring *r = NULL;
        struct line_splitter s;
        struct to_ring t = {};

        CHECK_EQ(log_ring_new(3, &r), 0);
        if (!r)
                return;
        t.ring = r;
        CHECK_EQ(line_splitter_init(&s, 4), 0);
        line_splitter_feed(&s, "one\ntwo\nthree\nfo", 16, push_line, &t);
        line_splitter_flush(&s, push_line, &t);
        /* "three" was cut into "thre" + "e"; the ring keeps the last three lines. */
        CHECK_EQ(log_ring_next_seq(r), 5);
        CHECK_EQ(log_ring_count(r), 3);
        CHECK(line_is(log_ring_get(r, 0), "thre"));
        CHECK(line_is(log_ring_get(r, 1), "e"));
        CHECK(line_is(log_ring_get(r, 2), "fo"));
        CHECK_EQ(log_ring_get(r, 2)->seq, 4);
        line_splitter_free(&s);
}

int main(void)
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } cases[] = {
                { "ring: 0 lines is invalid", test_ring_new_invalid },
                { "ring: rotation at 1500 keeps the last 1500", test_ring_rotation },
                { "ring: single slot", test_ring_single_slot },
                { "ring: ENOMEM counts as dropped", test_ring_enomem },
                { "splitter: 25000-byte line at max 10000", test_split_long_line },
                { "splitter: lines split across feeds", test_split_across_feeds },
                { "splitter: empty lines kept", test_split_empty_lines },
                { "splitter: CRLF keeps the \\r", test_split_crlf },
                { "splitter: flush emits the partial line", test_split_flush },
                { "splitter into ring", test_splitter_into_ring },
        };
        int failed = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                case_failures = 0;
                cases[i].fn();
                printf("%s: %s\n", case_failures ? "FAIL" : "ok  ", cases[i].name);
                fflush(stdout);
                if (case_failures)
                        failed++;
        }
        if (failed) {
                printf("%d of %zu cases failed\n", failed, ELEMENTSOF(cases));
                return EXIT_FAILURE;
        }
        printf("all %zu cases passed\n", ELEMENTSOF(cases));
        return EXIT_SUCCESS;
}
