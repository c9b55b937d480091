/* Unit tests for hostd/cpus.c: CPU lists, the pool's checks, reserve, release, re-adoption and
 * the shared CPUs. No cgroups (the pool keeps its books only); test-cgroup.c moves real dynos. */
#include "cpus.h"

#include "util.h"

#include "check.h"

static bool streq_null(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* Parse, then format: the kernel's canonical form. */
static bool roundtrip(const char *in, const char *want)
{
        struct cpu_bits b;
        _cleanup_free_ char *out = NULL;
        if (cpulist_parse(in, &b) < 0 || cpulist_format(&b, &out) < 0)
                return false;
        if (strcmp(out, want) != 0) {
                fprintf(stderr, "  '%s' -> '%s', want '%s'\n", in, out, want);
                return false;
        }
        return true;
}

static void test_lists(void)
{
        printf("CPU lists\n");
        CHECK(roundtrip("", ""));
        CHECK(roundtrip("\n", ""));
        CHECK(roundtrip("0", "0"));
        CHECK(roundtrip("0-3\n", "0-3"));
        CHECK(roundtrip("3,1,2", "1-3"));
        CHECK(roundtrip("0-1,5,7-9,8", "0-1,5,7-9"));
        CHECK(roundtrip("4095", "4095"));
        CHECK(roundtrip("0-4095", "0-4095"));
        struct cpu_bits b;
        CHECK(cpulist_parse("1-3,8", &b) == 0 && cpubits_count(&b) == 4 && cpubits_test(&b, 8) &&
              !cpubits_test(&b, 0) && !cpubits_test(&b, 4096));
        static const char *const bad[] = { "a",  "1-", "-1",    "3-1", "1,,2", "1 2",
                                           ",1", "1,", "1-2-3", "+1",  "0x1",  "1;2" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = cpulist_parse(bad[i], &b);
                if (r != -EINVAL)
                        fprintf(stderr, "  '%s': %d, want -EINVAL\n", bad[i], r);
                CHECK(r == -EINVAL);
        }
        CHECK(cpulist_parse("4096", &b) == -ERANGE);
        CHECK(cpulist_parse("0-99999999999999999999", &b) == -ERANGE);

        CHECK(cpu_pool_spec_valid("auto") && cpu_pool_spec_valid("none") &&
              cpu_pool_spec_valid("1-7") && cpu_pool_spec_valid("2,4"));
        CHECK(!cpu_pool_spec_valid("") && !cpu_pool_spec_valid("Auto") &&
              !cpu_pool_spec_valid("1-") && !cpu_pool_spec_valid("all"));
}

static void test_new(void)
{
        printf("pool checks\n");
        char err[256];
        struct cpu_pool *p = NULL;

        /* auto: every CPU but the lowest that hostd may use. */
        CHECK(cpu_pool_new("auto", "0-7", NULL, &p, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_list(p), "1-7") && cpu_pool_size(p) == 7 &&
              cpu_pool_n_free(p) == 7);
        CHECK(streq_null(cpu_pool_cpus_for(p, "x"), "0-7")); /* nothing held: shared has all */
        cpu_pool_free(p);
        CHECK(cpu_pool_new("auto", "2-5,9", NULL, &p, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_list(p), "3-5,9"));
        cpu_pool_free(p);
        /* One CPU: nothing to dedicate, and dynos inherit. */
        CHECK(cpu_pool_new("auto", "0", NULL, &p, err, sizeof err) == 0);
        CHECK(cpu_pool_size(p) == 0 && cpu_pool_cpus_for(p, "x") == NULL);
        cpu_pool_free(p);
        /* No cpuset controller: auto is empty, an explicit list an error. */
        CHECK(cpu_pool_new("auto", NULL, NULL, &p, err, sizeof err) == 0);
        CHECK(cpu_pool_size(p) == 0 && cpu_pool_cpus_for(p, "x") == NULL);
        cpu_pool_free(p);
        CHECK(cpu_pool_new("1", NULL, NULL, &p, err, sizeof err) == -EOPNOTSUPP);
        CHECK(strstr(err, "cpuset") != NULL);
        CHECK(cpu_pool_new("none", "0-7", NULL, &p, err, sizeof err) == 0);
        CHECK(cpu_pool_size(p) == 0 && streq_null(cpu_pool_list(p), "") &&
              cpu_pool_cpus_for(p, "x") == NULL);
        cpu_pool_free(p);

        CHECK(cpu_pool_new("2-3", "0-7", NULL, &p, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_list(p), "2-3") && cpu_pool_size(p) == 2);
        cpu_pool_free(p);

        /* Outside what hostd may use: named. */
        err[0] = 0;
        CHECK(cpu_pool_new("1-7", "0-1", NULL, &p, err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "CPU 2-7 not online") && strstr(err, "0-1"));
        /* Every CPU: none left for hostd and shared dynos. */
        CHECK(cpu_pool_new("0-1", "0-1", NULL, &p, err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "leave at least one") != NULL);
        CHECK(cpu_pool_new("x", "0-1", NULL, &p, err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "'x'") != NULL);
}

static void test_reserve(void)
{
        printf("reserve and release\n");
        char err[256];
        struct cpu_pool *p = NULL;
        CHECK(cpu_pool_new("1-7", "0-7", NULL, &p, err, sizeof err) == 0);
        if (!p)
                return;

        CHECK(cpu_pool_reserve(p, "zero", 0, err, sizeof err) == 0);
        CHECK(cpu_pool_held(p, "zero") == NULL);

        CHECK(cpu_pool_reserve(p, "a", 2, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "a"), "1-2"));
        CHECK(streq_null(cpu_pool_cpus_for(p, "a"), "1-2"));
        CHECK(streq_null(cpu_pool_cpus_for(p, "shared"), "0,3-7"));
        CHECK(cpu_pool_n_free(p) == 5);
        /* Again with the same count: kept; with another: refused. */
        CHECK(cpu_pool_reserve(p, "a", 2, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "a"), "1-2") && cpu_pool_n_free(p) == 5);
        CHECK(cpu_pool_reserve(p, "a", 3, err, sizeof err) == -EEXIST);

        CHECK(cpu_pool_reserve(p, "b", 3, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "b"), "3-5"));
        err[0] = 0;
        CHECK(cpu_pool_reserve(p, "c", 3, err, sizeof err) == -ENOSPC);
        CHECK(strstr(err, "needs 3 dedicated CPUs, 2 of 7 free") != NULL);
        CHECK(cpu_pool_held(p, "c") == NULL);

        /* Released CPUs are reused, the lowest first, even when split. */
        cpu_pool_release(p, "a");
        CHECK(cpu_pool_held(p, "a") == NULL && cpu_pool_n_free(p) == 4);
        CHECK(streq_null(cpu_pool_cpus_for(p, "shared"), "0-2,6-7"));
        CHECK(cpu_pool_reserve(p, "c", 3, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "c"), "1-2,6"));
        CHECK(streq_null(cpu_pool_cpus_for(p, "shared"), "0,7"));
        err[0] = 0;
        CHECK(cpu_pool_reserve(p, "d", 2, err, sizeof err) == -ENOSPC);
        CHECK(strstr(err, "needs 2 dedicated CPUs, 1 of 7 free (dedicated-cpu-pool '1-7')"));
        CHECK(cpu_pool_reserve(p, "d", 1, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "d"), "7") && cpu_pool_n_free(p) == 0);
        CHECK(streq_null(cpu_pool_cpus_for(p, "shared"), "0"));
        /* Releasing what is not held, twice, or an unknown id changes nothing. */
        cpu_pool_release(p, "nobody");
        cpu_pool_release(p, "a");
        CHECK(cpu_pool_n_free(p) == 0);
        cpu_pool_release(p, "b");
        cpu_pool_release(p, "c");
        cpu_pool_release(p, "d");
        CHECK(cpu_pool_n_free(p) == 7 && streq_null(cpu_pool_cpus_for(p, "shared"), "0-7"));
        /* More than the pool has. */
        CHECK(cpu_pool_reserve(p, "big", 8, err, sizeof err) == -ENOSPC);
        CHECK(cpu_pool_reserve(p, "all", 7, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "all"), "1-7"));
        cpu_pool_free(p);
}

static void test_exact(void)
{
        printf("reserve exact (re-adoption)\n");
        char err[256];
        struct cpu_pool *p = NULL;
        CHECK(cpu_pool_new("1-7", "0-7", NULL, &p, err, sizeof err) == 0);
        if (!p)
                return;
        CHECK(cpu_pool_reserve_exact(p, "a", "4-5\n") == 0);
        CHECK(streq_null(cpu_pool_held(p, "a"), "4-5"));
        CHECK(cpu_pool_reserve_exact(p, "a", "4-5") == 0);     /* the same: fine */
        CHECK(cpu_pool_reserve_exact(p, "a", "4") == -EEXIST); /* other CPUs */
        CHECK(cpu_pool_reserve_exact(p, "b", "5-6") == -EBUSY);
        CHECK(cpu_pool_reserve_exact(p, "b", "0") == -EINVAL);   /* not in the pool */
        CHECK(cpu_pool_reserve_exact(p, "b", "6-8") == -EINVAL); /* partly outside */
        CHECK(cpu_pool_reserve_exact(p, "b", "") == -EINVAL);
        CHECK(cpu_pool_reserve_exact(p, "b", "junk") == -EINVAL);
        CHECK(cpu_pool_held(p, "b") == NULL);
        /* A fresh reservation goes around the adopted CPUs. */
        CHECK(cpu_pool_reserve(p, "c", 4, err, sizeof err) == 0);
        CHECK(streq_null(cpu_pool_held(p, "c"), "1-3,6"));
        /* Without a cgroup, adopt cannot read the CPUs back: it reserves fresh ones. */
        CHECK(cpu_pool_adopt(p, "d", 1) == 0 && streq_null(cpu_pool_held(p, "d"), "7"));
        CHECK(cpu_pool_adopt(p, "e", 1) == -ENOSPC && cpu_pool_held(p, "e") == NULL);
        CHECK(cpu_pool_adopt(p, "f", 0) == 0 && cpu_pool_held(p, "f") == NULL);
        /* Sync without a cgroup is only a flag. */
        cpu_pool_sync(p);
        cpu_pool_release(p, "a");
        CHECK(streq_null(cpu_pool_cpus_for(p, "shared"), "0,4-5"));
        cpu_pool_free(p);
}

int main(void)
{
        log_set_max_level(LOG_LEVEL_ERR);
        test_lists();
        test_new();
        test_reserve();
        test_exact();
        if (n_failed) {
                fprintf(stderr, "%d check(s) failed\n", n_failed);
                return 1;
        }
        printf("all passed\n");
        return 0;
}
