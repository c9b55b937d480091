/* A request as hostd reads it from a frame: decoded with protobuf-c, refused when it does not
 * pack back to as many bytes (a NUL in a string, a non-canonical encoding), then checked
 * field by field as its call is (validate_request(): validate_spec, validate_exec, the ids,
 * digests, image sources and grace periods) against a configuration whose limits are small
 * enough for the fuzzer to reach. Every message an error gets must be valid UTF-8 (it goes
 * back to the client in a protobuf string). */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "hostd.pb-c.h"
#include "validate.h"

static struct config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        char err[256];
        if (config_init_defaults(&cfg) < 0 ||
            config_load_string(&cfg, "fuzz",
                               "[hostd]\nmax-command = 64\nmax-env = 4\nmax-env-bytes = 128\n", err,
                               sizeof err) < 0) {
                fprintf(stderr, "fuzz-request: config: %s\n", err);
                abort();
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Hostd__V1__Request *req = hostd__v1__request__unpack(NULL, size, data);
        if (!req)
                return 0;
        if (hostd__v1__request__get_packed_size(req) == size) {
                uint8_t *out = malloc(size ? size : 1);
                FUZZ_ASSERT(out);
                FUZZ_ASSERT(hostd__v1__request__pack(req, out) == size);
                free(out);

                char msg[1024];
                memset(msg, 0, sizeof msg);
                int code = validate_request(req, &cfg, msg, sizeof msg);
                FUZZ_ASSERT(code >= 0);
                if (code)
                        FUZZ_ASSERT(msg[0] && utf8_valid(msg));
        }
        hostd__v1__request__free_unpacked(req, NULL);
        return 0;
}
