/* netd's configuration file (netd/config.c) from arbitrary bytes, over the defaults. A refusal
 * says why; whatever loads stays within the limits the rest of netd relies on. */
#include <string.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 64 * 1024)
                return 0;
        struct netd_config c;
        char err[512] = "";
        FUZZ_ASSERT(netd_config_init_defaults(&c) == 0);
        int r = netd_config_load_string(&c, "fuzz.conf", (const char *)data, size, err, sizeof err);
        if (r < 0)
                FUZZ_ASSERT(err[0]);
        else {
                FUZZ_ASSERT(c.n_allow <= NETD_ALLOW_MAX);
                FUZZ_ASSERT(c.n_egress_rate <= NETD_EGRESS_RATE_MAX);
                FUZZ_ASSERT(c.host_port_min >= 1 && c.host_port_min <= c.host_port_max);
                FUZZ_ASSERT(c.mtu >= 68 && c.mtu <= 65535);
                FUZZ_ASSERT(c.socket_path[0] == '/' && c.state_dir[0] == '/');
                for (size_t i = 0; i < c.n_egress_rate; i++) {
                        FUZZ_ASSERT(netd_size_name_valid(c.egress_rate[i].size));
                        FUZZ_ASSERT(netd_config_egress_rate(&c, c.egress_rate[i].size) ==
                                    c.egress_rate[i].bits_per_second);
                }
        }
        netd_config_free(&c);
        return 0;
}
