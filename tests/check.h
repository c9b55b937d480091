/* The check of the unit tests that count only failures: CHECK(cond) reports a false cond with
 * its place and goes on; main() returns failures != 0. */
#pragma once

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)
