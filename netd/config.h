/* netd's configuration: compiled-in defaults, overridden by an INI file with one [netd]
 * section. See docs/NETD.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nft.h"

#define NETD_ALLOW_MAX 64
#define NETD_EGRESS_RATE_MAX 64
#define NETD_SIZE_NAME_MAX 63 /* as hostd's [size NAME]: a-z, 0-9 and - */
/* Rates a tbf qdisc takes through libnl (bytes per second in an int): 8kbit to 17gbit. */
#define NETD_EGRESS_RATE_MIN_BITS UINT64_C(8000)
#define NETD_EGRESS_RATE_MAX_BITS UINT64_C(17000000000)

/* The egress rate limit of the dynos of one size. */
struct netd_egress_rate {
        char size[NETD_SIZE_NAME_MAX + 1];
        uint64_t bits_per_second;
};

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
        struct netd_egress_rate egress_rate[NETD_EGRESS_RATE_MAX];
        size_t n_egress_rate;
};

int netd_config_init_defaults(struct netd_config *c);
/* Load path over the defaults. -EINVAL and err naming the file, line and key. */
int netd_config_load_file(struct netd_config *c, const char *path, char *err, size_t errlen);
/* The same from len bytes of text (for tests and fuzzing); name is used in messages. */
int netd_config_load_string(struct netd_config *c, const char *name, const char *text, size_t len,
                            char *err, size_t errlen);
void netd_config_free(struct netd_config *c);

/* Whether s is a size name: 1 to NETD_SIZE_NAME_MAX of a-z, 0-9 and -. */
bool netd_size_name_valid(const char *s);
/* A rate: an integer and a unit, bits per second (bit, kbit, mbit, gbit) or bytes per second
 * (B/s, kB/s, MB/s, GB/s), decimal multiples, units in any case: "100mbit", "10MB/s".
 * -EINVAL if it is not one; -ERANGE outside NETD_EGRESS_RATE_{MIN,MAX}_BITS. */
int netd_parse_rate(const char *s, uint64_t *ret_bits_per_second);
/* The egress rate of a size's dynos in bits per second, 0 for none (no limit). */
uint64_t netd_config_egress_rate(const struct netd_config *c, const char *size);
