/* The transport's test server: hostd's gRPC server (grpc-server.c, with health and
 * reflection) serving hostd.test.v1.Test (grpc-test-service.c) on a Unix socket and, with
 * --tls, on mutual TLS. tests/integration/test_grpc_transport.py drives it.
 *
 * It reports on stdout, one line each, what a test checks that the owner of a call saw (see
 * grpc-test-service.h), after "ready". SIGTERM ends it (everything freed, for LeakSanitizer),
 * SIGHUP reloads the TLS files, SIGUSR1 and SIGUSR2 set the health to NOT_SERVING and
 * SERVING. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "grpc-server.h"
#include "grpc-test-service.h"
#include "tls.h"

static struct grpc_server *server;
static sd_event *event;

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        switch (si->ssi_signo) {
        case SIGHUP: grpc_server_reload_tls(server); break;
        case SIGUSR1: grpc_server_set_serving(server, false); break;
        case SIGUSR2: grpc_server_set_serving(server, true); break;
        default: sd_event_exit(event, 0);
        }
        return 0;
}

static void usage(void)
{
        fprintf(stderr,
                "usage: grpc-test-server --socket PATH [--read-group G] [--tls ADDR:PORT --cert F "
                "--key F --ca F [--allow IDS]] [--max-inflight N] [--max-message N] "
                "[--max-connections N] [--idle-timeout S] [--keepalive S] [--keepalive-timeout S] "
                "[--max-pending-stream N] [--max-pending-conn N] [--handshake-timeout S]\n");
}

int main(int argc, char **argv)
{
        struct grpc_server_options o = {
                .socket_path = "",
                .read_group = "",
                .listen_tls = "",
                .max_connections = 64,
                .max_inflight = 64,
                .max_message = 4 << 20,
                .idle_timeout = 600,
                .tls_handshake_timeout = 10,
                .descriptors = grpctest_descriptor_set,
                .descriptors_len = grpctest_descriptor_set_len,
        };
        struct config cfg = { .tls_allow = (char *)"" };
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, 's' },
                { "read-group", required_argument, NULL, 'g' },
                { "tls", required_argument, NULL, 't' },
                { "cert", required_argument, NULL, 'c' },
                { "key", required_argument, NULL, 'k' },
                { "ca", required_argument, NULL, 'a' },
                { "allow", required_argument, NULL, 'A' },
                { "max-inflight", required_argument, NULL, 'i' },
                { "max-message", required_argument, NULL, 'm' },
                { "max-connections", required_argument, NULL, 'C' },
                { "idle-timeout", required_argument, NULL, 'I' },
                { "keepalive", required_argument, NULL, 'K' },
                { "keepalive-timeout", required_argument, NULL, 'T' },
                { "max-pending-stream", required_argument, NULL, 'p' },
                { "max-pending-conn", required_argument, NULL, 'P' },
                { "handshake-timeout", required_argument, NULL, 'H' },
                { "debug", no_argument, NULL, 'd' },
                {},
        };
        int ch;
        while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                uint32_t v = 0;
                if (strchr("imCIKTpPH", ch) && safe_atou32(optarg, &v) < 0) {
                        fprintf(stderr, "grpc-test-server: %s: not a number\n", optarg);
                        return 2;
                }
                switch (ch) {
                case 's': o.socket_path = optarg; break;
                case 'g': o.read_group = optarg; break;
                case 't': o.listen_tls = optarg; break;
                case 'c': cfg.tls_cert = optarg; break;
                case 'k': cfg.tls_key = optarg; break;
                case 'a': cfg.tls_ca = optarg; break;
                case 'A': cfg.tls_allow = optarg; break;
                case 'i': o.max_inflight = v; break;
                case 'm': o.max_message = v; break;
                case 'C': o.max_connections = v; break;
                case 'I': o.idle_timeout = v; break;
                case 'K': o.keepalive = v; break;
                case 'T': o.keepalive_timeout = v; break;
                case 'p': o.max_pending_stream = v; break;
                case 'P': o.max_pending_conn = v; break;
                case 'H': o.tls_handshake_timeout = v; break;
                case 'd': log_set_max_level(LOG_LEVEL_DEBUG); break;
                default: usage(); return 2;
                }
        }
        if (!o.socket_path[0] && !o.listen_tls[0]) {
                usage();
                return 2;
        }
        log_set_ident("grpc-test-server");

        sigset_t mask;
        sigemptyset(&mask);
        for (int sig = 1; sig < 32; sig++)
                if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGUSR1 ||
                    sig == SIGUSR2)
                        sigaddset(&mask, sig);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        int r = sd_event_new(&event);
        if (r < 0)
                return log_error_errno(r, "sd_event_new: %m"), 1;
        sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGHUP, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGUSR1, on_signal, NULL);
        sd_event_add_signal(event, NULL, SIGUSR2, on_signal, NULL);

        if (o.listen_tls[0]) {
                char err[512];
                if (!cfg.tls_cert || !cfg.tls_key || !cfg.tls_ca) {
                        usage();
                        return 2;
                }
                r = tls_server_new(&cfg, &o.tls, err, sizeof err);
                if (r < 0) {
                        log_error("%s", err);
                        return 1;
                }
        }
        struct grpc_test_service test = { .event = event, .report = stdout };
        const struct grpc_service services[] = { grpc_test_service(&test) };
        r = grpc_server_new(event, &o, services, ELEMENTSOF(services), &server);
        if (r < 0) {
                sd_event_unref(event);
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        r = sd_event_loop(event);
        grpc_server_free(server);
        sd_event_unref(event);
        return r < 0 ? 1 : 0;
}
