/* hostctl's JSON dyno spec (hostctl/spec.c, `hostctl start --spec FILE`) from arbitrary bytes.
 * A refusal says why; a spec that parses packs into a DynoSpec that protobuf-c reads back to
 * the same bytes (no string cut by a NUL, nothing half set). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 64 * 1024)
                return 0;
        Hostd__V1__DynoSpec *s = NULL;
        char err[512];
        int r = spec_parse_json((const char *)data, size, &s, err, sizeof err);
        if (r < 0) {
                FUZZ_ASSERT(r == -EINVAL || r == -ENOMEM);
                FUZZ_ASSERT(err[0] && !s);
                return 0;
        }
        FUZZ_ASSERT(s);
        for (size_t i = 0; i < s->n_env; i++) {
                FUZZ_ASSERT(s->env[i]->name[0] && !strchr(s->env[i]->name, '='));
                for (size_t j = 0; j < i; j++)
                        FUZZ_ASSERT(strcmp(s->env[i]->name, s->env[j]->name) != 0);
        }
        size_t n = hostd__v1__dyno_spec__get_packed_size(s);
        uint8_t *buf = malloc(n ? n : 1);
        FUZZ_ASSERT(buf);
        FUZZ_ASSERT(hostd__v1__dyno_spec__pack(s, buf) == n);
        Hostd__V1__DynoSpec *back = hostd__v1__dyno_spec__unpack(NULL, n, buf);
        FUZZ_ASSERT(back);
        FUZZ_ASSERT(hostd__v1__dyno_spec__get_packed_size(back) == n);
        uint8_t *buf2 = malloc(n ? n : 1);
        FUZZ_ASSERT(buf2);
        hostd__v1__dyno_spec__pack(back, buf2);
        FUZZ_ASSERT(n == 0 || memcmp(buf, buf2, n) == 0);
        free(buf);
        free(buf2);
        hostd__v1__dyno_spec__free_unpacked(back, NULL);
        spec_free(s);
        return 0;
}
