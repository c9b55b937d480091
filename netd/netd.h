/* netd's manager: the ipam, the host ports, the bridge, the firewall, and the calls of the
 * netd API over them. Each call either completes or undoes what it did. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "api-code.h"
#include "config.h"
#include "ipam.h"
#include "link.h"

struct netd;

struct netd_attach_reply {
        struct in_addr address, gateway;
        uint8_t mac[6];
        uint16_t host_port; /* 0: not a web dyno */
};

/* Open the state, check the subnet against the host's routes, make the bridge, reconcile with
 * what an earlier run left, install the firewall. Logs its errors. */
int netd_new(const struct netd_config *cfg, struct netd **ret);
void netd_free(struct netd *n);

/* The calls return an api_code (gRPC's codes, which netd.v1.Status carries) and, unless OK, a
 * message in msg naming the field or dyno. */
/* size: the dyno's size ("" for none), which picks its egress rate limit. */
enum api_code netd_attach(struct netd *n, const char *dyno_id, const char *netns_path, bool web,
                          uint32_t port, const char *size, struct netd_attach_reply *ret, char *msg,
                          size_t msglen);
enum api_code netd_detach(struct netd *n, const char *dyno_id, char *msg, size_t msglen);
/* Detach every dyno not in live (NULL-terminated), whose namespace file is gone, and every
 * link or firewall element that belongs to no attachment. *ret_freed: a strv. */
enum api_code netd_gc(struct netd *n, char *const *live, char ***ret_freed, char *msg,
                      size_t msglen);

struct netd_attachment {
        char dyno_id[DYNO_INSTANCE_NAME_MAX + 1];
        struct in_addr address;
        uint16_t host_port;
};
/* Whether dyno_id is attached (in the records; its veth may be on its way out otherwise). */
bool netd_attached(struct netd *n, const char *dyno_id);
/* Every attachment, sorted by address. *ret is malloc'ed. */
int netd_list(struct netd *n, struct netd_attachment **ret, size_t *ret_n);
