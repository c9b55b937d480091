/* The gRPC server (libgrpcserver: hostd/grpc-server.c and its health and reflection services)
 * on the bytes a client sends on a connection: what an attacker on the Unix socket, or on the
 * TLS listener once its handshake is done, controls most. Each input gets a server of its own
 * with no listener, serving the transport's test service (tests/grpc-test-service.c: unary,
 * server-streaming, client-streaming and bidi methods) beside health and reflection, with one
 * connection adopted from a socketpair (grpc_server_adopt()). The bytes are written to the
 * other end piece by piece, the server's sd-event loop turning after each piece until it has
 * nothing left to do (or a bound), and what the server writes is read all along, so that it
 * never blocks, and checked as HTTP/2 and gRPC (h2-check.c). Then everything is freed, with
 * calls still open or not: LeakSanitizer sees what was not.
 *
 * The first byte: bits 0-2 the size of the pieces (whole, 1, 2, 3, 7, 64, 512 or 2048 bytes),
 * bit 3 the client half-closes once all is sent, bit 4 the client is a read-group member
 * (read-only), bit 5 health turns NOT_SERVING at the end (its Watch streams are told).
 *
 * Besides what the sanitizers report, it checks: the server's output is HTTP/2 as h2-check.h
 * says, whole frames whenever the server has nothing more to do; an HTTP/1 answer only to a
 * client that sent no HTTP/2 preface; the loop goes idle unless the test service streams as
 * fast as it goes (a server that spins does not); a client that half-closed is disconnected. */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "grpc-server.h"
#include "grpc-test-service.h"
#include "h2-check.h"

/* Turns of the loop after a piece, at most, and for the whole input: the test service may
 * stream for ever, as fast as the loop goes. */
#define TURNS_PER_PIECE 512
#define TURNS_PER_INPUT 16384

#define FLAG_HALF_CLOSE 0x08
#define FLAG_READ_ONLY 0x10
#define FLAG_NOT_SERVING 0x20

static const char client_magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/* FUZZ_GRPC_OUTPUT=FILE: what the server wrote is appended there, to read a finding by. */
static FILE *output;

struct run {
        sd_event *event;
        struct grpc_server *server;
        struct grpc_test_service service;
        struct h2_check *check;
        int fd;         /* the client's end */
        bool eof;       /* the server closed the connection */
        unsigned turns; /* left for this input */
};

static void check(struct run *r, const char *why)
{
        if (why) {
                fprintf(stderr, "the server's output is not HTTP/2: %s\n", why);
                abort();
        }
}

/* Read what the server wrote, all of it, and check it. */
static void drain(struct run *r)
{
        uint8_t buf[16384];
        while (!r->eof) {
                ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0) {
                        if (output)
                                fwrite(buf, 1, (size_t)n, output), fflush(output);
                        check(r, h2_check_server(r->check, buf, (size_t)n));
                } else if (n == 0 || errno == ECONNRESET)
                        r->eof = true; /* ECONNRESET: it closed with our bytes unread */
                else {
                        FUZZ_ASSERT(errno == EAGAIN || errno == EINTR);
                        return;
                }
        }
}

/* Turn the loop until nothing is due: true; false at the bound. */
static bool settle(struct run *r)
{
        for (unsigned i = 0; i < TURNS_PER_PIECE && r->turns > 0; i++, r->turns--) {
                drain(r);
                int k = sd_event_run(r->event, 0);
                FUZZ_ASSERT(k >= 0);
                if (k == 0) {
                        drain(r);
                        return true;
                }
        }
        drain(r);
        return false;
}

/* Whether settling ended idle is checked: only the test service's own streams may keep the
 * loop busy. */
static void settle_checked(struct run *r)
{
        bool idle = settle(r);
        if (!idle && r->service.busy == 0 && r->turns > 0) {
                fprintf(stderr,
                        "the loop was still busy after %u turns, with no stream of the "
                        "test service running: the server spins\n",
                        TURNS_PER_PIECE);
                abort();
        }
        if (idle && !r->eof)
                check(r, h2_check_between_frames(r->check));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* Quiet: the server logs every refused request. FUZZ_GRPC_LOG=debug to see it. */
        const char *level = getenv("FUZZ_GRPC_LOG");
        int l = level ? log_parse_level(level) : -EINVAL;
        log_set_max_level(l >= 0 ? l : LOG_LEVEL_ERR);
        const char *path = getenv("FUZZ_GRPC_OUTPUT");
        if (path && !(output = fopen(path, "ae"))) {
                fprintf(stderr, "fuzz-grpc: %s: %m\n", path);
                exit(1);
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const size_t pieces[] = { 0, 1, 2, 3, 7, 64, 512, 2048 };
        if (size < 1)
                return 0;
        uint8_t mode = data[0];
        size_t piece = pieces[mode & 7];
        data++, size--;

        struct run r = { .turns = TURNS_PER_INPUT };
        FUZZ_ASSERT(sd_event_new(&r.event) >= 0);
        r.service.event = r.event;
        /* Small limits, so that an input of a few KiB reaches each. */
        const struct grpc_server_options opts = {
                .max_connections = 1,
                .max_inflight = 4,
                .max_message = 16384,
                .idle_timeout = 5,
                .keepalive = 5,
                .max_pending_stream = 32768,
                .max_pending_conn = 65536,
                .descriptors = grpctest_descriptor_set,
                .descriptors_len = grpctest_descriptor_set_len,
        };
        const struct grpc_service services[] = { grpc_test_service(&r.service) };
        FUZZ_ASSERT(grpc_server_new(r.event, &opts, services, ELEMENTSOF(services), &r.server) ==
                    0);
        int sv[2];
        FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
        r.fd = sv[1];
        FUZZ_ASSERT(grpc_server_adopt(r.server, sv[0], "fuzz", mode & FLAG_READ_ONLY) == 0);
        FUZZ_ASSERT((r.check = h2_check_new()));
        h2_check_client(r.check, data, size);

        size_t off = 0;
        while (off < size && !r.eof && r.turns > 0) {
                size_t n = piece && piece < size - off ? piece : size - off;
                ssize_t k = send(r.fd, data + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        /* EAGAIN: the server reads on its next turns; EPIPE: it closed. */
                        FUZZ_ASSERT(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
                        if (errno != EAGAIN)
                                break;
                        k = 0;
                }
                off += (size_t)k;
                settle_checked(&r);
        }
        if (mode & FLAG_HALF_CLOSE) {
                FUZZ_ASSERT(shutdown(r.fd, SHUT_WR) == 0 || errno == ENOTCONN);
                bool idle = settle(&r);
                /* A client that has gone is disconnected, its calls cancelled. */
                FUZZ_ASSERT(!idle || r.eof);
        }
        if (mode & FLAG_NOT_SERVING) {
                grpc_server_set_serving(r.server, false);
                settle_checked(&r);
        }

        /* What came out: HTTP/1 only for a client that did not begin with HTTP/2's preface. */
        size_t magic = strlen(client_magic);
        FUZZ_ASSERT(!h2_check_http1(r.check) ||
                    memcmp(data, client_magic, size < magic ? size : magic) != 0);

        grpc_server_free(r.server);
        drain(&r); /* the server closed the connection: its last bytes */
        FUZZ_ASSERT(r.eof);
        FUZZ_ASSERT(r.service.busy == 0);
        close(r.fd);
        h2_check_free(r.check);
        /* Every source of the loop is gone with the server and the service's calls: the loop
         * is freed here, or LeakSanitizer says what holds it. */
        sd_event_unref(r.event);
        return 0;
}
