/* The checks of the C unit tests. Each CHECK* counts a pass or a failure; a failure prints its
 * place and what was seen, and the test goes on. n_failed counts every failed check of the
 * program, case_failures those since a runner last set it to 0 (the tests made of cases
 * report each case). main() returns n_failed != 0. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int n_passed, n_failed, case_failures;

__attribute__((format(printf, 4, 5))) static inline void
check_record(bool ok, const char *file, int line, const char *fmt, ...)
{
        if (ok) {
                n_passed++;
                return;
        }
        n_failed++;
        case_failures++;
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  %s:%d: CHECK failed: ", file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

#define CHECK(cond) check_record(!!(cond), __FILE__, __LINE__, "%s", #cond)

/* A return code (0 or -errno) against the one wanted. */
#define CHECK_R(expr, want)                                                                        \
        do {                                                                                       \
                int _r = (expr), _w = (want);                                                      \
                check_record(_r == _w, __FILE__, __LINE__, "%s = %d (%s), want %d (%s)", #expr,    \
                             _r, _r < 0 ? strerror(-_r) : "", _w, _w < 0 ? strerror(-_w) : "");    \
        } while (0)

#define CHECK_EQ(a, b)                                                                             \
        do {                                                                                       \
                long long _a = (long long)(a), _b = (long long)(b);                                \
                check_record(_a == _b, __FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, _a,  \
                             _b);                                                                  \
        } while (0)

#define CHECK_STR(a, b)                                                                            \
        do {                                                                                       \
                const char *_a = (a), *_b = (b);                                                   \
                check_record(_a &&strcmp(_a, _b) == 0, __FILE__, __LINE__,                         \
                             "%s is '%s', expected '%s'", #a, _a ? _a : "(null)", _b);             \
        } while (0)

/* The last line of a test program: "N passed, N failed"; its exit status. */
static inline int check_report(void)
{
        printf("%d passed, %d failed\n", n_passed, n_failed);
        return n_failed ? 1 : 0;
}

/* Message bytes that depend on the message's index (seed), so that a message lost, repeated,
 * reordered or mixed with another shows: msg_pattern() fills, msg_pattern_ok() checks. */
static inline void msg_pattern(uint8_t *p, size_t len, unsigned seed)
{
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(seed * 31 + i * 7);
}

static inline bool msg_pattern_ok(const uint8_t *p, size_t len, unsigned seed)
{
        for (size_t i = 0; i < len; i++)
                if (p[i] != (uint8_t)(seed * 31 + i * 7))
                        return false;
        return true;
}
