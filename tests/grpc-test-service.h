/* hostd.test.v1.Test (tests/proto/grpctest.proto): every shape of call hostd's API has, unary,
 * server stream, client stream and both, with knobs to make a call slow, fail, stream forever
 * or flood. Served by grpc-test-server (the integration tests of the transport) and by
 * fuzz-grpc, both on libgrpcserver alone.
 *
 * What the owner of a call saw, for the tests to check, goes to report, one line each:
 * "start METHOD TAG" when a SlowEcho is waiting, "cancel METHOD TAG" when a call's on_cancel
 * ran, "end METHOD TAG" when a stream finished by itself. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-event.h>

#include "grpc-server.h"

struct grpc_test_service {
        sd_event *event; /* the server's: SlowEcho's, Count's and BidiEcho's timers */
        FILE *report;    /* NULL: no reports */
        /* Count streams in progress "as fast as the loop goes" (interval_ms 0): the loop is
         * never idle while one is (fuzz-grpc tells that from a server that spins). */
        unsigned busy;
};

/* The service to give grpc_server_new(), with t as its methods' userdata (t must outlive the
 * server). Whatever the service holds of a call when the server is freed is freed by the
 * call's on_cancel. */
struct grpc_service grpc_test_service(struct grpc_test_service *t);

/* The FileDescriptorSet of grpctest.proto and all it imports, for reflection. */
extern const uint8_t grpctest_descriptor_set[];
extern const size_t grpctest_descriptor_set_len;
