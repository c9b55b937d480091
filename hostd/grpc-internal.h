/* Between the transport (grpc-server.c) and the standard services it registers beside the
 * caller's: health (grpc-health.c) and server reflection (grpc-reflection.c). Each is a
 * grpc_service like any other; these are only how the server makes and tells them. */
#pragma once

#include "grpc-server.h"

/* grpc.health.v1.Health for the server as a whole ("") and each of the names (which must
 * outlive it). Serving until told otherwise. */
struct grpc_health;
int grpc_health_new(const char *const *names, size_t n_names, struct grpc_health **ret);
/* The watchers still open are dropped (their calls are the connections' to end). */
void grpc_health_free(struct grpc_health *h);
const struct grpc_service *grpc_health_service(struct grpc_health *h);
/* Changes what Check answers and tells every Watch whose answer changes. */
void grpc_health_set_serving(struct grpc_health *h, bool serving);

/* grpc.reflection.v1alpha and v1 ServerReflection, answered from a serialized
 * FileDescriptorSet (copied) and the names of the services served (which must outlive it).
 * -EINVAL (logged) when the set does not parse. */
struct grpc_reflection;
int grpc_reflection_new(const uint8_t *set, size_t len, const char *const *names, size_t n_names,
                        struct grpc_reflection **ret);
void grpc_reflection_free(struct grpc_reflection *r);
/* Its two services: [0] v1alpha, [1] v1. */
const struct grpc_service *grpc_reflection_services(struct grpc_reflection *r);
/* Whether the set defines this fully qualified service (for the server's check that every
 * service it serves can be reflected). */
bool grpc_reflection_has_symbol(const struct grpc_reflection *r, const char *name);
