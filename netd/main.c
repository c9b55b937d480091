/* netd: per-dyno networking. Until its issue lands it only answers --help and --version;
 * dynos get a network namespace with loopback alone. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config-build.h"

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "hV", opts, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        printf("Usage: %s [--help] [--version]\n\n"
                               "Per-dyno networking for hostd. Not implemented yet: dynos run\n"
                               "with a private network namespace holding only loopback.\n",
                               argv[0]);
                        return 0;
                case 'V': printf("netd %s\n", HOSTD_VERSION); return 0;
                default: return 2;
                }
        }
        fprintf(stderr, "netd: not implemented yet\n");
        return 1;
}
