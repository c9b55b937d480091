/* hostd's configuration file (hostd/config.c) from arbitrary text, over the defaults. A file
 * that loads must dump (config_dump) into a file that loads back into the same configuration:
 * hostd --dump-config promises that, and it catches a value stored in a way it cannot be
 * written. A file that does not load leaves the configuration as it was and says why. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

static char *dump(const struct config *c)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        FUZZ_ASSERT(f);
        config_dump(c, f);
        FUZZ_ASSERT(fclose(f) == 0);
        return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 64 * 1024)
                return 0;
        char *text = malloc(size + 1);
        FUZZ_ASSERT(text);
        memcpy(text, data, size);
        text[size] = 0;

        struct config c;
        char err[512];
        FUZZ_ASSERT(config_init_defaults(&c) == 0);
        char *before = dump(&c);
        int r = config_load_string(&c, "fuzz.conf", text, err, sizeof err);
        char *after = dump(&c);
        if (r < 0) {
                FUZZ_ASSERT(err[0]);
                FUZZ_ASSERT(strcmp(before, after) == 0); /* unchanged */
        } else {
                struct config back;
                FUZZ_ASSERT(config_init_defaults(&back) == 0);
                r = config_load_string(&back, "dump", after, err, sizeof err);
                if (r < 0) {
                        fprintf(stderr, "the dump does not load: %s\n--- dump:\n%s", err, after);
                        abort();
                }
                char *again = dump(&back);
                if (strcmp(again, after) != 0) {
                        fprintf(stderr, "the dump loads differently\n--- dump:\n%s--- again:\n%s",
                                after, again);
                        abort();
                }
                free(again);
                config_free(&back);
        }
        free(before);
        free(after);
        config_free(&c);
        free(text);
        return 0;
}
