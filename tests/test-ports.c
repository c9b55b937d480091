/* Unit tests for netd/ports.c: host ports for web dynos, from an empty table (no file, or a
 * file with only its header), persisted, released, and the range running out. No root.
 * Under UBSan (the CI's sanitizer build) the first allocation in an empty table caught
 * bsearch() and qsort() handed a NULL array. */
#include "ports.h"

#include <sys/stat.h>

#include "util.h"

#include "check.h"

static char tmpdir[] = "/tmp/hostd-test-ports-XXXXXX";

static void test_empty_table(const char *path, bool with_header)
{
        if (with_header) {
                FILE *f = fopen(path, "we");
                if (!f || fputs("netd-ports 1\n", f) < 0 || fclose(f) != 0)
                        abort();
        }
        struct ports *p = NULL;
        char err[256] = "";
        CHECK(ports_open(path, 20000, 20002, &p, err, sizeof err) == 0);
        if (!p) {
                fprintf(stderr, "ports_open: %s\n", err);
                n_failed++;
                return;
        }
        size_t n = 99;
        ports_entries(p, &n);
        CHECK(n == 0);

        uint16_t a = 0, b = 0, c = 0, again = 0;
        CHECK(ports_allocate(p, "web-1", 5000, &a) == 1);
        CHECK(a >= 20000 && a <= 20002);
        CHECK(ports_allocate(p, "web-1", 5000, &again) == 0 && again == a);
        CHECK(ports_allocate(p, "web-2", 5000, &b) == 1 && b != a);
        CHECK(ports_allocate(p, "web-3", 5000, &c) == 1 && c != a && c != b);
        uint16_t none = 0;
        CHECK(ports_allocate(p, "web-4", 5000, &none) == -ENOSPC);
        ports_free(p);

        /* What was held comes back from the file. */
        p = NULL;
        CHECK(ports_open(path, 20000, 20002, &p, err, sizeof err) == 0);
        struct ports_entry e;
        CHECK(p && ports_lookup(p, "web-2", &e) == 0 && e.host_port == b && e.dyno_port == 5000);

        /* Released to the last one, then allocated again. */
        CHECK(ports_release(p, "web-1", NULL) == 1);
        CHECK(ports_release(p, "web-2", NULL) == 1);
        CHECK(ports_release(p, "web-3", &e) == 1 && e.host_port == c);
        CHECK(ports_release(p, "web-3", NULL) == 0);
        ports_entries(p, &n);
        CHECK(n == 0);
        CHECK(ports_allocate(p, "web-5", 8080, &a) == 1);
        ports_free(p);
        unlink(path);
}

int main(void)
{
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        _cleanup_free_ char *path = strjoin3(tmpdir, "/", "ports");
        if (!path)
                return EXIT_FAILURE;
        test_empty_table(path, false);
        test_empty_table(path, true);
        rmdir(tmpdir);
        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return EXIT_FAILURE;
        }
        printf("all passed\n");
        return EXIT_SUCCESS;
}
