/* The commands that put a process of a dyno on this terminal: exec (a command inside a running
 * dyno) and run (a one-off dyno, attached). */
#include <ctype.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <termios.h>
#include <time.h>

#include "command.h"
#include "commands.h"
#include "exit-status.h"
#include "spec.h"
#include "start-flags.h"

/* ---- the terminal loop of exec and run ---- */

/* Input (and resizes) for an Exec or an Attach: the same StreamInput in each one's message. */
static int stream_input(struct grpc_call *call, bool attach, const void *data, size_t len, bool eof,
                        unsigned columns, unsigned rows)
{
        Hostd__V1__StreamInput in = HOSTD__V1__STREAM_INPUT__INIT;
        in.data.data = (uint8_t *)data;
        in.data.len = len;
        in.eof = eof;
        in.columns = columns;
        in.rows = rows;
        if (attach) {
                Hostd__V1__AttachRequest req = HOSTD__V1__ATTACH_REQUEST__INIT;
                req.kind_case = HOSTD__V1__ATTACH_REQUEST__KIND_INPUT;
                req.input = &in;
                return grpc_call_send(call, &req.base, false);
        }
        Hostd__V1__ExecRequest req = HOSTD__V1__EXEC_REQUEST__INIT;
        req.kind_case = HOSTD__V1__EXEC_REQUEST__KIND_INPUT;
        req.input = &in;
        return grpc_call_send(call, &req.base, false);
}

static const Hostd__V1__StreamOutput *stream_output(const ProtobufCMessage *m, bool attach)
{
        return attach ? ((const Hostd__V1__AttachResponse *)m)->output :
                        ((const Hostd__V1__ExecResponse *)m)->output;
}

static volatile sig_atomic_t exec_resized;
static void on_sigwinch(int sig) { exec_resized = 1; }

static struct termios exec_saved_termios;
static bool exec_raw;
static void exec_restore_terminal(void)
{
        if (exec_raw)
                tcsetattr(STDIN_FILENO, TCSADRAIN, &exec_saved_termios);
        exec_raw = false;
}

/* Standard input read ahead of what hostd took: past this, hostctl stops reading it. */
#define STREAM_INPUT_HIGH (256 * 1024)

/* An Exec or an Attach call, and this terminal while its process runs. */
struct stream {
        struct grpc_client *c;
        struct grpc_call call;
        const char *what; /* "exec web-1": for messages */
        const ProtobufCMessageDescriptor *d;
        bool attach;
        bool input_open;
        bool exited;
        int status;
        sigset_t wait_mask; /* SIGWINCH let in while waiting */
};

static void stream_done(struct stream *s) { grpc_call_done(&s->call); }

/* Open method with its first message; with no input to send, its end at once. */
static int stream_open(struct stream *s, const char *method, const ProtobufCMessage *start)
{
        /* No deadline: the process runs as long as it runs. */
        int r = grpc_call_start(s->c, &s->call, method, -1);
        if (r >= 0)
                r = grpc_call_send(&s->call, start, false);
        if (r >= 0 && !s->input_open)
                r = stream_input(&s->call, s->attach, NULL, 0, true, 0, 0);
        return r;
}

/* SIGWINCH is let in only while ppoll() waits: one that came between the check of
 * exec_resized and the wait would otherwise wait for the next event to be seen. With term,
 * standard input (a terminal) goes raw, and resizes are caught. */
static void terminal_take(bool term, sigset_t *ret_wait_mask)
{
        sigset_t winch;
        sigemptyset(&winch);
        sigaddset(&winch, SIGWINCH);
        sigprocmask(SIG_BLOCK, &winch, ret_wait_mask);
        sigdelset(ret_wait_mask, SIGWINCH);
        if (!term)
                return;
        struct sigaction sa = { .sa_handler = on_sigwinch };
        sigaction(SIGWINCH, &sa, NULL);
        if (tcgetattr(STDIN_FILENO, &exec_saved_termios) == 0) {
                struct termios raw = exec_saved_termios;
                cfmakeraw(&raw);
                if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) == 0) {
                        exec_raw = true;
                        atexit(exec_restore_terminal);
                }
        }
}

static void stream_send_resize(struct stream *s)
{
        struct winsize ws;
        if (!exec_resized)
                return;
        exec_resized = 0;
        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
                stream_input(&s->call, s->attach, NULL, 0, false, ws.ws_col, ws.ws_row);
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
        for (size_t done = 0; done < n;) {
                ssize_t w = write(fd, p + done, n - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break; /* nobody reads our output: the rest is lost */
                done += (size_t)w;
        }
}

/* The output that has come, to standard output, up to the exit status: the last result of
 * grpc_call_try_recv() (-EAGAIN: nothing more for now). */
static int stream_write_output(struct stream *s)
{
        ProtobufCMessage *m;
        int r = -EAGAIN;
        while (!s->exited && (r = grpc_call_try_recv(&s->call, s->d, &m)) > 0) {
                const Hostd__V1__StreamOutput *out = stream_output(m, s->attach);
                if (out)
                        write_all(STDOUT_FILENO, out->data.data, out->data.len);
                if (out && out->exited) {
                        s->exited = true;
                        s->status = out->exit_code;
                }
                protobuf_c_message_free_unpacked(m, NULL);
        }
        return r;
}

/* Standard input to the call; its end as an `eof` message. */
static void stream_forward_input(struct stream *s)
{
        char buf[32768];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
                return;
        if (n <= 0) {
                s->input_open = false;
                stream_input(&s->call, s->attach, NULL, 0, true, 0, 0);
        } else
                stream_input(&s->call, s->attach, buf, (size_t)n, false, 0, 0);
}

/* Wait for hostd, standard input (unless hostd is behind with it) or a resize. A negative
 * errno when poll fails. */
static int stream_wait(struct stream *s)
{
        bool reading = s->input_open && grpc_call_pending(&s->call) < STREAM_INPUT_HIGH;
        struct pollfd pfd[2] = {
                { .fd = grpc_client_fd(s->c), .events = grpc_client_poll_events(s->c) },
                { .fd = reading ? STDIN_FILENO : -1, .events = POLLIN },
        };
        int ms = grpc_client_poll_timeout(s->c);
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        if (ppoll(pfd, 2, ms < 0 ? NULL : &ts, &s->wait_mask) < 0)
                return errno == EINTR ? 0 : -errno; /* EINTR: SIGWINCH */
        if (pfd[1].revents)
                stream_forward_input(s);
        return 0;
}

/* The exit status is the last message; hostd's status follows it at once. An error there is
 * still hostd's word; one that does not come does not hide the status. */
static int stream_finish(struct stream *s)
{
        struct grpc_client *c = s->c;
        uint64_t until = c->timeout_ms >= 0 ?
                                 now_monotonic_usec() + (uint64_t)c->timeout_ms * 1000 :
                                 UINT64_MAX;
        ProtobufCMessage *m;
        int r;
        while ((r = grpc_call_recv(&s->call, s->d, until, &m)) > 0)
                protobuf_c_message_free_unpacked(m, NULL);
        if (r == -EREMOTEIO)
                return call_failed(c, r, s->what);
        return s->status > 255 ? 255 : s->status < 0 ? 255 : s->status;
}

/* Open method (Exec or Attach) with its first message, start, and be the process's terminal:
 * standard input to the stream (with interactive; else its end at once), its output to
 * standard output, a resize on SIGWINCH when term (standard input, a terminal, is then raw).
 * Returns the command's exit status, or EXIT_REMOTE / EXIT_UNREACHABLE after saying why on
 * standard error.
 *
 * The end of input is an `eof` message, never a half-close of the stream: a resize may still
 * follow it, and hostd's side ends the call once the process is gone. */
static int stream_loop(struct grpc_client *c, const char *what, const char *method,
                       const ProtobufCMessage *start, bool attach, bool interactive, bool term)
{
        _cleanup_(stream_done) struct stream s = {
                .c = c,
                .what = what,
                .d = attach ? &hostd__v1__attach_response__descriptor :
                              &hostd__v1__exec_response__descriptor,
                .attach = attach,
                .input_open = interactive,
        };
        int r = stream_open(&s, method, start);
        if (r < 0)
                return call_failed(c, r, what);

        terminal_take(term, &s.wait_mask);
        while (!s.exited) {
                stream_send_resize(&s);
                /* Send what is queued, take what has come; a failure shows below. */
                grpc_client_process(c, 0);
                r = stream_write_output(&s);
                if (s.exited)
                        break;
                if (r == 0) {
                        exec_restore_terminal();
                        fprintf(stderr,
                                "hostctl: %s: hostd ended the call without the exit status\n",
                                what);
                        return EXIT_UNREACHABLE;
                }
                if (r != -EAGAIN) {
                        exec_restore_terminal();
                        return call_failed(c, r, what);
                }
                r = stream_wait(&s);
                if (r < 0) {
                        exec_restore_terminal();
                        fprintf(stderr, "hostctl: %s: poll: %s\n", what, strerror(-r));
                        return EXIT_UNREACHABLE;
                }
        }
        exec_restore_terminal();
        return stream_finish(&s);
}

/* $TERM of hostctl's own terminal, for a process on a terminal in the dyno: "" when unset or
 * not a name hostd takes (it then says xterm). */
static const char *client_term(void)
{
        const char *t = getenv("TERM");
        if (!t || !*t || strlen(t) > 63)
                return "";
        for (const char *p = t; *p; p++)
                if (!isalnum((unsigned char)*p) && !strchr("._-+", *p))
                        return "";
        return t;
}

/* ---- exec ---- */

static const char exec_help[] =
        "Usage: hostctl exec [-i] [-t] ID [--] COMMAND [ARG...]\n"
        "\n"
        "Run COMMAND inside the running dyno ID: in its namespaces (it sees the dyno's files\n"
        "and processes) and its cgroup, as the dyno's user, with no capability and the dyno's\n"
        "seccomp filter, in /app, with the dyno's environment. COMMAND is looked up in the\n"
        "dyno's PATH. Its output, stdout and stderr together, is written to standard output.\n"
        "hostctl exits with COMMAND's exit status (128 + the signal when it was killed).\n"
        "\n"
        "  -i, --interactive      send standard input to COMMAND (without it COMMAND's input\n"
        "                         is empty)\n"
        "  -t, --tty              give COMMAND a terminal, of the size of hostctl's own when\n"
        "                         standard input is one (it is then put in raw mode while\n"
        "                         COMMAND runs, and a resize follows)\n" COMMON_HELP "\n"
        "When hostd refuses or cannot be reached, hostctl says so on standard error and exits\n"
        "1 or 3 as every command does.\n";

struct exec_state {
        bool interactive, tty;
        bool term; /* standard input is a terminal, of size ws */
        struct winsize ws;
        const char *id;
        char **argv;
        size_t n_argv;
};
static const struct exec_state exec_defaults = {};

static int exec_option(struct invocation *inv, int c, const char *arg)
{
        struct exec_state *o = inv->state;
        if (c == 'i')
                o->interactive = true;
        else if (c == 't')
                o->tty = true;
        else
                return usage_error("exec", "unknown option");
        return EXIT_OK;
}

/* ID [--] COMMAND [ARG...] */
static int exec_prepare(struct invocation *inv)
{
        struct exec_state *o = inv->state;
        char **args = inv->args;
        size_t n = inv->n_args, i = 0;
        if (i >= n || !*args[i])
                return usage_error("exec", "missing dyno ID");
        o->id = args[i++];
        if (i < n && strcmp(args[i], "--") == 0)
                i++;
        if (i >= n || !*args[i])
                return usage_error("exec", "missing COMMAND (give it after the ID)");
        o->argv = args + i;
        o->n_argv = n - i;
        o->term = o->tty && isatty(STDIN_FILENO) && ioctl(STDIN_FILENO, TIOCGWINSZ, &o->ws) == 0;
        return EXIT_OK;
}

static int exec_run(struct invocation *inv, struct grpc_client *c)
{
        const struct exec_state *o = inv->state;
        Hostd__V1__ExecStart es = HOSTD__V1__EXEC_START__INIT;
        es.id = (char *)o->id;
        es.argv = o->argv;
        es.n_argv = o->n_argv;
        es.tty = o->tty;
        es.tty_columns = o->term ? o->ws.ws_col : 0;
        es.tty_rows = o->term ? o->ws.ws_row : 0;
        es.term = (char *)(o->tty ? client_term() : "");
        Hostd__V1__ExecRequest req = HOSTD__V1__EXEC_REQUEST__INIT;
        req.kind_case = HOSTD__V1__EXEC_REQUEST__KIND_START;
        req.start = &es;
        _cleanup_free_ char *what = strjoin3("exec ", o->id, NULL);
        return stream_loop(c, what ? what : "exec", "Exec", &req.base, false, o->interactive,
                           o->term);
}

static const struct option exec_options[] = {
        COMMON_LONG_OPTIONS,
        { "interactive", no_argument, NULL, 'i' },
        { "tty", no_argument, NULL, 't' },
        {},
};

const struct command command_exec = {
        .name = "exec",
        .help = exec_help,
        /* '+': options end at the ID, so that COMMAND's own options are left alone. */
        .optstring = "+:hit",
        .options = exec_options,
        COMMAND_STATE(exec_defaults),
        .option = exec_option,
        .prepare = exec_prepare,
        .run = exec_run,
        .connects = true,
};

/* ---- run ---- */

static const char run_help[] =
        "Usage: hostctl run [-i] [-t] [FLAGS] -- COMMAND...\n"
        "       hostctl run [-i] [-t] --spec FILE [FLAGS] [-- COMMAND...]\n"
        "\n"
        "Start a one-off dyno running COMMAND with a terminal, and attach to it: its output\n"
        "is written to standard output, and hostctl exits with COMMAND's exit status when\n"
        "the dyno ends. The terminal has hostctl's own size when standard input is one, else\n"
        "80x24. A one-off dyno is never restarted. If hostctl goes away, the dyno's processes\n"
        "get SIGHUP every few seconds and then the dyno ends (R16).\n"
        "\n"
        "  -i, --interactive      send standard input to the dyno's terminal\n"
        "  -t, --tty              put hostctl's own terminal in raw mode while attached, and\n"
        "                         pass its resizes on (standard input must be a terminal)\n"
        "\n"
        "The flags are those of \"hostctl start\" (see hostctl start --help); the type is\n"
        "one-off. Without --id the dyno's id is run-<8 hex digits>; without --name, its name\n"
        "is run.<4 digits>.\n"
        "\n" COMMON_HELP;

struct run_state {
        struct start_flags flags;
        bool interactive, tty;
        bool term; /* standard input is a terminal */
        Hostd__V1__DynoSpec *spec;
};
static const struct run_state run_defaults = {};

static int run_option(struct invocation *inv, int c, const char *arg)
{
        struct run_state *rs = inv->state;
        if (c == 'i')
                return rs->interactive = true, EXIT_OK;
        if (c == 't')
                return rs->tty = true, EXIT_OK;
        return start_option(&rs->flags, c, arg);
}

/* Without --id, run-<8 hex digits>; without --name, run.<4 digits>. -ENOMEM. */
static int run_name_dyno(Hostd__V1__DynoSpec *spec)
{
        uint32_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                rnd = (uint32_t)time(NULL) ^ (uint32_t)getpid();
        char idbuf[32], namebuf[32];
        snprintf(idbuf, sizeof idbuf, "run-%08" PRIx32, rnd);
        snprintf(namebuf, sizeof namebuf, "run.%04" PRIu32, rnd % 10000);
        if ((!*spec->id && spec_set_string(&spec->id, idbuf) < 0) ||
            (!*spec->name && spec_set_string(&spec->name, namebuf) < 0))
                return -ENOMEM;
        return 0;
}

/* A one-off on a terminal of this one's size (80x24 when it is none) and $TERM. -ENOMEM. */
static int run_set_terminal(struct run_state *rs)
{
        Hostd__V1__DynoSpec *spec = rs->spec;
        struct winsize ws = {};
        rs->term = rs->tty && isatty(STDIN_FILENO) && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0;
        spec->type = HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF;
        spec->tty = true;
        spec->tty_columns = rs->term ? ws.ws_col : 80;
        spec->tty_rows = rs->term ? ws.ws_row : 24;
        if (!*spec->tty_term && *client_term() &&
            spec_set_string(&spec->tty_term, client_term()) < 0)
                return -ENOMEM;
        return 0;
}

static int run_prepare(struct invocation *inv)
{
        struct run_state *rs = inv->state;
        int r = spec_from_args("run", &rs->flags, inv->args, inv->n_args, inv->dashdash, &rs->spec);
        if (r != EXIT_OK)
                return r;
        if (!*rs->spec->command)
                return usage_error("run", "missing COMMAND (give it after --)");
        if (run_name_dyno(rs->spec) < 0 || run_set_terminal(rs) < 0)
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        return EXIT_OK;
}

static int run_run(struct invocation *inv, struct grpc_client *c)
{
        const struct run_state *rs = inv->state;
        Hostd__V1__DynoSpec *spec = rs->spec;
        _cleanup_free_ char *what = strjoin3("run ", spec->id, NULL);
        _cleanup_message_ Hostd__V1__StartResponse *resp = NULL;
        int r = start_call(c, spec, &resp);
        if (r < 0)
                return call_failed(c, r, what ? what : "run");
        if (!rs->term)
                fprintf(stderr, "Running `%s` attached to terminal... up, %s\n", spec->command,
                        spec->name);

        Hostd__V1__AttachStart as = HOSTD__V1__ATTACH_START__INIT;
        as.id = spec->id;
        Hostd__V1__AttachRequest req = HOSTD__V1__ATTACH_REQUEST__INIT;
        req.kind_case = HOSTD__V1__ATTACH_REQUEST__KIND_START;
        req.start = &as;
        return stream_loop(c, what ? what : "run", "Attach", &req.base, true, rs->interactive,
                           rs->term);
}

static void run_done(struct invocation *inv)
{
        struct run_state *rs = inv->state;
        start_flags_done(&rs->flags);
        spec_free(rs->spec);
}

/* clang-format off */
static const struct option run_options[] = {
        COMMON_LONG_OPTIONS, START_LONG_OPTIONS,
        { "interactive", no_argument, NULL, 'i' },
        { "tty", no_argument, NULL, 't' },
        {},
};
/* clang-format on */

const struct command command_run = {
        .name = "run",
        .help = run_help,
        .optstring = "+:hit",
        .options = run_options,
        COMMAND_STATE(run_defaults),
        .option = run_option,
        .prepare = run_prepare,
        .run = run_run,
        .done = run_done,
        .connects = true,
};
