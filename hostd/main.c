/* hostd: the host agent. Parse options and configuration, build the manager, run the loop. */
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "manager.h"
#include "metrics.h"
#include "api.h"
#include "exec.h"
#include "grpc-server.h"
#include "tls.h"
#include "util.h"

#include "config-build.h"

/* The serialized FileDescriptorSet of what hostd serves, for server reflection: made by the
 * build (proto/meson.build, proto/embed-blob). */
extern const uint8_t hostd_descriptor_set[];
extern const size_t hostd_descriptor_set_len;

static void help(void)
{
        printf("Usage: hostd [OPTIONS]\n"
               "\n"
               "Runs and supervises dynos on this host and serves the hostd API, gRPC\n"
               "(hostd.v1.Hostd, with health checks and server reflection), on a Unix socket\n"
               "and, with listen-tls in the configuration, over TCP with mutual TLS 1.3.\n"
               "Dynos keep running when hostd stops; the next hostd re-adopts them.\n"
               "\n"
               "  -c, --config FILE     read settings from FILE (default: none, the built-in\n"
               "                        defaults; see docs/CONFIG.md)\n"
               "      --log-level LVL   err, warning, notice, info or debug (overrides the file)\n"
               "      --dump-config     print the effective configuration and exit\n"
               "  -h, --help            show this help\n"
               "  -V, --version         show the version\n"
               "\n"
               "Signals: SIGTERM and SIGINT stop hostd and leave dynos running, or, with\n"
               "stop-dynos-on-exit, stop them first (within shutdown-timeout); a second signal\n"
               "exits at once. SIGHUP reads the files of tls-cert, tls-key and tls-ca again for\n"
               "new TLS connections.\n");
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager *m = userdata;
        if (m->api)
                grpc_server_reload_tls(m->api);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager **m = userdata;
        log_info("received %s", strsignal((int)si->ssi_signo));
        sd_notify(0, "STOPPING=1");
        if (!*m) /* not yet built */
                return sd_event_exit(sd_event_source_get_event(s), 0);
        /* Health checks say so from now on (grpc-server.h: NOT_SERVING while hostd shuts down):
         * a control plane or load balancer looks elsewhere while the dynos stop. */
        if ((*m)->api)
                grpc_server_set_serving((*m)->api, false);
        return manager_shutdown(*m);
}

/* hostd holds descriptors per dyno (its init's pidfd, the log pipe, memory event sources),
 * about four each, so systemd's default soft limit of 1024 would stop it near 250 dynos.
 * Nothing here uses select(), so the soft limit may go up to the hard one, as systemd
 * advises; the children get the dyno's own limit (rlimit-nofile) before they exec. */
static void raise_nofile_limit(void)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning_errno(errno, "raise RLIMIT_NOFILE from %llu to %llu: %m",
                                  (unsigned long long)was, (unsigned long long)rl.rlim_max);
        else
                log_debug("RLIMIT_NOFILE raised from %llu to %llu", (unsigned long long)was,
                          (unsigned long long)rl.rlim_max);
}

int main(int argc, char **argv)
{
        enum { OPT_LOG_LEVEL = 256, OPT_DUMP };
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
                { "dump-config", no_argument, NULL, OPT_DUMP },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *config_path = NULL, *level = NULL;
        bool dump = false;
        int c;
        log_set_ident("hostd");
        while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) >= 0) {
                switch (c) {
                case 'c': config_path = optarg; break;
                case OPT_LOG_LEVEL: level = optarg; break;
                case OPT_DUMP: dump = true; break;
                case 'h': help(); return 0;
                case 'V': printf("hostd %s\n", HOSTD_VERSION); return 0;
                default: fprintf(stderr, "Try 'hostd --help'.\n"); return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "hostd: unexpected argument '%s'. Try 'hostd --help'.\n",
                        argv[optind]);
                return 2;
        }

        struct config cfg;
        if (config_init_defaults(&cfg) < 0) {
                log_error("out of memory");
                return 1;
        }
        if (config_path) {
                char err[512];
                if (config_load_file(&cfg, config_path, err, sizeof err) < 0) {
                        log_error("%s", err);
                        config_free(&cfg);
                        return 1;
                }
        }
        if (level) {
                int l = log_parse_level(level);
                if (l < 0) {
                        log_error(
                                "--log-level: '%s' is not one of err, warning, notice, info, debug",
                                level);
                        config_free(&cfg);
                        return 2;
                }
                cfg.log_level = l;
        }
        if (dump) {
                config_dump(&cfg, stdout);
                config_free(&cfg);
                return 0;
        }
        log_set_max_level(cfg.log_level);

        if (geteuid() != 0) {
                log_error("hostd must run as root: it creates namespaces, cgroups and mounts");
                config_free(&cfg);
                return 1;
        }

        raise_nofile_limit();

        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "create the event loop: %m");
                config_free(&cfg);
                return 1;
        }
        /* With WatchdogSec= in the unit, the loop pings systemd at half that interval: a hung
         * loop stops the pings and systemd restarts the daemon. Without it this does nothing. */
        r = sd_event_set_watchdog(event, true);
        if (r < 0)
                log_warning_errno(r, "enable the systemd watchdog: %m");
        /* A dyno's write to a closed client must not kill hostd. */
        signal(SIGPIPE, SIG_IGN);
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        /* The certificates are checked before anything else happens: a bad one stops hostd. */
        struct tls_server *tls = NULL;
        if (cfg.listen_tls[0]) {
                char err[512];
                r = tls_server_new(&cfg, &tls, err, sizeof err);
                if (r < 0) {
                        log_error("%s", err);
                        config_free(&cfg);
                        return 1;
                }
        }

        struct manager *m = NULL;
        sd_event_add_signal(event, NULL, SIGTERM, on_signal, &m);
        sd_event_add_signal(event, NULL, SIGINT, on_signal, &m);

        r = manager_new(&cfg, event, &m);
        if (r < 0)
                goto out;
        r = manager_reconcile(m);
        if (r < 0)
                goto out;
        /* What works on the dynos from above (metrics, exec) starts after them and ends
         * before them: the lifecycle knows nothing of it. */
        int mr = metrics_start(m);
        if (mr < 0)
                log_error_errno(mr, "metrics: %m; no metrics, runtime-metrics lines or textfile");
        const struct grpc_service services[] = { api_service(m) };
        const struct grpc_server_options api_opts = {
                .socket_path = cfg.socket_path,
                .read_group = cfg.read_group,
                .listen_tls = cfg.listen_tls,
                .tls = TAKE_PTR(tls),
                .max_connections = cfg.max_connections,
                .max_inflight = cfg.max_inflight,
                .max_message = cfg.max_message,
                .idle_timeout = cfg.idle_timeout,
                .tls_handshake_timeout = cfg.tls_handshake_timeout,
                .keepalive = cfg.keepalive,
                .descriptors = hostd_descriptor_set,
                .descriptors_len = hostd_descriptor_set_len,
        };
        r = grpc_server_new(event, &api_opts, services, ELEMENTSOF(services), &m->api);
        if (r < 0)
                goto out;
        sd_event_add_signal(event, NULL, SIGHUP, on_sighup, m);

        if (cfg.listen_tls[0])
                log_info("hostd %s ready on %s and, with TLS, on %s", HOSTD_VERSION,
                         cfg.socket_path, cfg.listen_tls);
        else
                log_info("hostd %s ready on %s", HOSTD_VERSION, cfg.socket_path);
        sd_notify(0, "READY=1\nSTATUS=Serving");
        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "event loop: %m");
out:
        if (m) {
                grpc_server_free(m->api);
                exec_free_all(m);
                metrics_stop(m);
        }
        manager_free(m);
        tls_server_free(tls);
        config_free(&cfg);
        return r < 0 ? 1 : 0;
}
