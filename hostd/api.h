/* The hostd.v1.Hostd service: its methods as a table for the transport (grpc-server.h). */
#pragma once

#include <stddef.h>

#include "grpc-server.h"

struct manager;

/* Every method of the service, in the proto's order; tests and the fuzzer walk it. The
 * validators read only the manager's config. */
extern const struct grpc_method api_methods[];
extern const size_t api_n_methods;

/* The service as the transport registers it, its handlers working on m. */
struct grpc_service api_service(struct manager *m);
