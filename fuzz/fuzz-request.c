/* A request as hostd reads it from a gRPC message: the first byte picks a method of the
 * hostd.v1.Hostd table (api.c's api_methods[]), the rest is that method's request, decoded with
 * protobuf-c, refused when it does not pack back to as many bytes (a NUL in a string, a
 * non-canonical encoding) as the transport refuses it, then checked by the method's own
 * validator, the one the daemon runs, against a configuration whose limits are small enough
 * for the fuzzer to reach. Every message an error gets must be valid UTF-8 (it goes back to the
 * client in grpc-message). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "fuzz.h"
#include "manager.h"

static struct config cfg;
static struct manager fake; /* the validators read only its config */

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
        fake.config = &cfg;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        const struct grpc_method *method = &api_methods[data[0] % api_n_methods];
        data++, size--;
        ProtobufCMessage *req = protobuf_c_message_unpack(method->request, NULL, size, data);
        if (!req)
                return 0;
        if (protobuf_c_message_get_packed_size(req) == size) {
                uint8_t *out = malloc(size ? size : 1);
                FUZZ_ASSERT(out);
                FUZZ_ASSERT(protobuf_c_message_pack(req, out) == size);
                free(out);

                if (method->validate) {
                        char msg[1024];
                        memset(msg, 0, sizeof msg);
                        enum api_code code = method->validate(req, &fake, msg, sizeof msg);
                        FUZZ_ASSERT(code >= API_OK && code <= API_UNAUTHENTICATED);
                        if (code)
                                FUZZ_ASSERT(msg[0] && utf8_valid(msg));
                }
        }
        protobuf_c_message_free_unpacked(req, NULL);
        return 0;
}
