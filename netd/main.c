/* netd: per-dyno networking. Parse options and configuration, build the manager, run the
 * loop. SIGTERM leaves every link, address and rule in place: dynos keep their network, and
 * the next netd takes them over from its state files. */
#include <getopt.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "netd.h"
#include "server.h"
#include "util.h"

#include "config-build.h"

static void help(void)
{
        printf("Usage: netd [OPTIONS]\n"
               "\n"
               "Per-dyno networking for hostd: a host bridge, one veth pair per dyno, addresses,\n"
               "NAT, host port mapping and isolation (nftables). Serves the netd API on a Unix\n"
               "socket.\n"
               "\n"
               "  -c, --config FILE     read settings from FILE (default: built-in defaults; see\n"
               "                        docs/NETD.md)\n"
               "  -h, --help            show this help\n"
               "  -V, --version         show the version\n"
               "\n"
               "Signals: SIGTERM and SIGINT stop netd and leave dynos' networks in place.\n");
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        log_info("received %s, stopping (dynos keep their network)", strsignal((int)si->ssi_signo));
        sd_notify(0, "STOPPING=1");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *config_path = NULL;
        int c;
        log_set_ident("netd");
        while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) >= 0) {
                switch (c) {
                case 'c': config_path = optarg; break;
                case 'h': help(); return 0;
                case 'V': printf("netd %s\n", HOSTD_VERSION); return 0;
                default: fprintf(stderr, "Try 'netd --help'.\n"); return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "netd: unexpected argument '%s'. Try 'netd --help'.\n",
                        argv[optind]);
                return 2;
        }

        struct netd_config cfg;
        if (netd_config_init_defaults(&cfg) < 0) {
                log_error("out of memory");
                return 1;
        }
        if (config_path) {
                char err[512];
                if (netd_config_load_file(&cfg, config_path, err, sizeof err) < 0) {
                        log_error("%s", err);
                        netd_config_free(&cfg);
                        return 1;
                }
        }
        log_set_max_level(cfg.log_level);
        if (geteuid() != 0) {
                log_error("netd must run as root: it creates links and firewall rules");
                netd_config_free(&cfg);
                return 1;
        }

        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        struct netd *n = NULL;
        struct server *srv = NULL;
        int r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "create the event loop: %m");
                goto out;
        }
        /* With WatchdogSec= in the unit, the loop pings systemd at half that interval: a hung
         * loop stops the pings and systemd restarts the daemon. Without it this does nothing. */
        r = sd_event_set_watchdog(event, true);
        if (r < 0)
                log_warning_errno(r, "enable the systemd watchdog: %m");
        signal(SIGPIPE, SIG_IGN);
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL);

        r = netd_new(&cfg, &n);
        if (r < 0)
                goto out;
        r = server_new(n, event, cfg.socket_path, &srv);
        if (r < 0)
                goto out;
        log_info("netd %s ready on %s (bridge %s, subnet %s)", HOSTD_VERSION, cfg.socket_path,
                 cfg.bridge, cfg.subnet);
        sd_notify(0, "READY=1\nSTATUS=Serving");
        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "event loop: %m");
out:
        server_free(srv);
        netd_free(n);
        netd_config_free(&cfg);
        return r < 0 ? 1 : 0;
}
