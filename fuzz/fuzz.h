/* Shared by the fuzz targets: libFuzzer's entry points, and an assertion that stays on in
 * every build (a broken promise is a finding, as a sanitizer's report is). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n", __FILE__, __LINE__,  \
                                #cond);                                                            \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)
