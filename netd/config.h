/* netd's configuration: compiled-in defaults, overridden by an INI file with one [netd]
 * section. See docs/NETD.md. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "nft.h"

#define NETD_ALLOW_MAX 64

struct netd_config {
        char *socket_path;
        char *state_dir;
        char *bridge;
        char *subnet; /* a.b.c.d/p, checked by ipam_parse_subnet */
        unsigned mtu;
        uint16_t host_port_min, host_port_max;
        char *table;
        char *netns_dir;
        int log_level;
        struct nft_host_service allow[NETD_ALLOW_MAX];
        size_t n_allow;
};

int netd_config_init_defaults(struct netd_config *c);
/* Load path over the defaults. -EINVAL and err naming the file, line and key. */
int netd_config_load_file(struct netd_config *c, const char *path, char *err, size_t errlen);
void netd_config_free(struct netd_config *c);
