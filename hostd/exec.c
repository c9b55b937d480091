/* See exec.h. One session per Exec call: the helper process (spawn_exec), its sync socket, and
 * the process's stdio: a pty master from the dyno's own devpts when a terminal is asked for,
 * else one end of a socket pair (stdout and stderr together, as a terminal would show them). */
#include "exec.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

#include "call.h"
#include "cgroup.h"
#include "manager.h"
#include "spawn.h"
#include "util.h"
#include "validate.h"

#define EXEC_MAX_SESSIONS 256
#define EXEC_MAX_INPUT (1u << 20) /* input queued for a process that does not read it */
#define EXEC_READ_CHUNK (64u << 10)

struct exec_session {
        struct manager *m;
        struct call *call; /* the Exec or Attach stream */
        char *dyno_id;
        bool tty;
        pid_t pid;
        int pidfd, sync_fd, io_fd;
        sd_event_source *pid_source, *sync_source, *io_source;
        uint8_t *in; /* input the process has not taken yet */
        size_t in_len;
        bool in_eof;       /* the client's input ended: shut it once `in` is written */
        bool io_ended;     /* no more output */
        struct dyno *dyno; /* attached to this one-off's terminal; NULL: an exec */
        struct dyno_attachment attachment; /* d->attach, while attached */
        struct exec_session *next;
};

static struct exec_session *session_new(struct manager *m, struct call *c, const char *dyno_id);
static void attach_end(struct dyno_attachment *a, int code);

/* SIGKILL the helper and reap it. */
static void session_kill(struct exec_session *s)
{
        s->pid_source = sd_event_source_disable_unref(s->pid_source);
        if (s->pidfd < 0)
                return;
        pidfd_send_signal(s->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED) < 0 && errno == EINTR)
                ;
}

static void session_free(struct exec_session *s)
{
        struct manager *m = s->m;
        for (struct exec_session **pp = &m->execs; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        m->n_execs--;
                        break;
                }
        s->pid_source = sd_event_source_disable_unref(s->pid_source);
        s->sync_source = sd_event_source_disable_unref(s->sync_source);
        s->io_source = sd_event_source_disable_unref(s->io_source);
        if (s->dyno)
                s->dyno->attach = NULL;
        closep(&s->pidfd);
        closep(&s->sync_fd);
        closep(&s->io_fd);
        call_on_cancel(s->call, NULL, NULL);
        call_on_input(s->call, NULL, NULL);
        call_unref(s->call);
        free(s->in);
        free(s->dyno_id);
        free(s);
}

/* Output on the stream, an ExecResponse or an AttachResponse; with exited, the last. */
static void send_output(struct exec_session *s, const uint8_t *data, size_t len, bool exited,
                        int code)
{
        Hostd__V1__StreamOutput out = HOSTD__V1__STREAM_OUTPUT__INIT;
        out.data.data = (uint8_t *)data;
        out.data.len = len;
        out.exited = exited;
        out.exit_code = code;
        Hostd__V1__ExecResponse er = HOSTD__V1__EXEC_RESPONSE__INIT;
        Hostd__V1__AttachResponse ar = HOSTD__V1__ATTACH_RESPONSE__INIT;
        er.output = ar.output = &out;
        (void)call_send(s->call, s->dyno ? &ar.base : &er.base);
        if (exited)
                call_finish(s->call);
}

/* Read what the process wrote. Returns false once there will be no more (EOF; EIO on a
 * master whose terminal every process has closed). */
static bool read_output(struct exec_session *s)
{
        uint8_t buf[EXEC_READ_CHUNK];
        for (int i = 0; i < 16; i++) {
                ssize_t n = read(s->io_fd, buf, sizeof buf);
                if (n > 0) {
                        send_output(s, buf, (size_t)n, false, 0);
                        continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return true;
                return false;
        }
        return true;
}

static void update_io_events(struct exec_session *s)
{
        if (!s->io_source)
                return;
        uint32_t ev = s->io_ended ? 0 : EPOLLIN;
        if (s->in_len)
                ev |= EPOLLOUT;
        if (ev)
                sd_event_source_set_io_events(s->io_source, ev);
        sd_event_source_set_enabled(s->io_source, ev ? SD_EVENT_ON : SD_EVENT_OFF);
}

static void write_input(struct exec_session *s)
{
        while (s->in_len) {
                ssize_t n = write(s->io_fd, s->in, s->in_len);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        s->in_len = 0; /* the process closed its input: what is left is lost */
                        break;
                }
                memmove(s->in, s->in + n, s->in_len - (size_t)n);
                s->in_len -= (size_t)n;
        }
        if (!s->in_len && s->in_eof) {
                s->in_eof = false;
                if (s->tty) {
                        /* A terminal has no end of input: ^D at the start of a line is it. */
                        (void)!write(s->io_fd, "\004", 1);
                } else
                        shutdown(s->io_fd, SHUT_WR);
        }
        update_io_events(s);
}

static int on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        struct exec_session *s = userdata;
        if (revents & EPOLLOUT)
                write_input(s);
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                if (!read_output(s)) {
                        s->io_ended = true;
                        update_io_events(s);
                }
        return 0;
}

/* The helper ended, with the command's status: the last output, then the end of the stream. */
static int on_helper_exit(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        struct exec_session *s = userdata;
        siginfo_t si = {};
        int code = 128 + SIGKILL;
        if (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED | WNOHANG) >= 0 && si.si_pid)
                code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
        if (!s->io_ended)
                read_output(s);
        log_info("dyno %s: exec %d ended with status %d", s->dyno_id, (int)s->pid, code);
        send_output(s, NULL, 0, true, code);
        session_free(s);
        return 0;
}

static int on_sync(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        struct exec_session *s = userdata;
        struct spawn_error err;
        int r = spawn_read_result(s->sync_fd, &err, NULL);
        if (r == -EAGAIN)
                return 0;
        s->sync_source = sd_event_source_disable_unref(s->sync_source);
        closep(&s->sync_fd), s->sync_fd = -1;
        if (r == 0)
                return 0; /* executed: output and exit follow */
        /* The helper exits after reporting; on_exit collects it. The client hears why. */
        if (r > 0)
                call_fail(s->call, API_FAILED_PRECONDITION, "exec in dyno '%s': %s: %s", s->dyno_id,
                          err.where, strerror(err.error));
        else
                call_fail(s->call, API_INTERNAL, "exec in dyno '%s': read the setup result: %s",
                          s->dyno_id, strerror(-r));
        session_kill(s);
        session_free(s);
        return 0;
}

/* A client that went away (it cancelled, its connection closed) leaves a process nobody reads:
 * hang its terminal or socket up, as a closed ssh session would, and let it end. An attached
 * client's one-off dyno is hung up (dyno_detached: SIGHUP, then R16). */
static void on_client_gone(struct call *c, void *userdata)
{
        struct exec_session *s = userdata;
        if (s->dyno) {
                struct dyno *d = s->dyno;
                log_info("dyno %s: its client left", s->dyno_id);
                session_free(s);
                dyno_detached(d);
                return;
        }
        if (s->io_source) {
                log_info("dyno %s: exec %d: its client left; hanging up", s->dyno_id, (int)s->pid);
                s->io_source = sd_event_source_disable_unref(s->io_source);
                closep(&s->io_fd), s->io_fd = -1;
                s->io_ended = true;
        }
}

/* A new pty master in the dyno's own devpts, reached through its init's root without
 * following any link the dyno could have made. */
static int open_dyno_ptmx(pid_t init_pid, uint32_t columns, uint32_t rows)
{
        char root_path[64];
        snprintf(root_path, sizeof root_path, "/proc/%d/root", (int)init_pid);
        _cleanup_close_ int root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return -errno;
        struct open_how how = {
                .flags = O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK,
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, root, "dev/pts/ptmx", &how, sizeof how);
        if (fd < 0)
                return -errno;
        int unlock = 0;
        struct winsize ws = { .ws_row = (unsigned short)(rows ? rows : 24),
                              .ws_col = (unsigned short)(columns ? columns : 80) };
        if (ioctl(fd, TIOCSPTLCK, &unlock) < 0 || ioctl(fd, TIOCSWINSZ, &ws) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Output to read; input, resizes and the client's going from the stream. */
static void on_client_input(struct call *c, const ProtobufCMessage *msg, void *userdata);

static int session_watch(struct exec_session *s)
{
        int r = sd_event_add_io(s->m->event, &s->io_source, s->io_fd, EPOLLIN, on_io, s);
        if (r < 0)
                return r;
        call_on_cancel(s->call, on_client_gone, s);
        call_on_input(s->call, on_client_input, s);
        return 0;
}

void exec_start(struct manager *m, struct call *c, const Hostd__V1__ExecStart *req)
{
        struct dyno *d = manager_find(m, req->id);
        if (!d) {
                call_fail(c, API_NOT_FOUND, "dyno '%s' not found", req->id);
                return;
        }
        if ((d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_UP &&
             d->state != HOSTD__V1__DYNO_STATE__DYNO_STATE_STARTING) ||
            d->pidfd < 0 || d->sync_fd >= 0) {
                call_fail(c, API_FAILED_PRECONDITION, "dyno '%s' is not running (%s)", req->id,
                          dyno_state_name(d->state));
                return;
        }
        struct exec_session *s = session_new(m, c, d->id);
        if (!s)
                return;
        s->tty = req->tty;

        int r, child_io = -1;
        const char *step;
        _cleanup_free_ char **argv = NULL;
        /* TERM, as ssh and docker exec give; not COLUMNS and LINES, which would outlive a
         * resize (busybox prefers them to the terminal's own size). */
        const struct dyno_tty tty = { req->term, 0, 0 };
        _cleanup_strv_free_ char **env = dyno_build_env(d, s->tty ? &tty : NULL);
        if (!env) {
                r = -ENOMEM, step = "prepare";
                goto fail;
        }
        if (s->tty) {
                s->io_fd = open_dyno_ptmx(d->pid, req->tty_columns, req->tty_rows);
                r = s->io_fd, step = "open a terminal in the dyno";
                if (r < 0)
                        goto fail;
        } else {
                int sv[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                        r = -errno, step = "create the stdio socket";
                        goto fail;
                }
                s->io_fd = sv[0];
                child_io = sv[1];
                fcntl(s->io_fd, F_SETFL, O_NONBLOCK);
        }

        /* protobuf-c's repeated strings have a count, not a NULL at the end. */
        argv = calloc(req->n_argv + 1, sizeof *argv);
        if (!argv) {
                r = -ENOMEM, step = "prepare";
                goto fail;
        }
        memcpy(argv, req->argv, req->n_argv * sizeof *argv);
        struct exec_params p = {
                .dyno_pidfd = d->pidfd,
                .uid = d->uid,
                .argv = argv,
                .envp = env,
                .rlimit_nofile = m->config->rlimit_nofile,
                .rlimit_nproc = d->size ? d->size->pids : 0,
                .seccomp = &m->seccomp,
                .io_fd = s->tty ? s->io_fd : child_io,
                .tty = s->tty,
        };
        struct spawn_child child;
        r = spawn_exec(&p, m->cg, dyno_cgroup_name(d), &child);
        closep(&child_io);
        step = "start the process";
        if (r < 0)
                goto fail;
        s->pid = child.pid;
        s->pidfd = child.pidfd;
        s->sync_fd = child.sync_fd;
        step = "watch the process";
        if ((r = sd_event_add_io(m->event, &s->sync_source, s->sync_fd, EPOLLIN, on_sync, s)) < 0 ||
            (r = sd_event_add_io(m->event, &s->pid_source, s->pidfd, EPOLLIN, on_helper_exit, s)) <
                    0 ||
            (r = session_watch(s)) < 0 || (r = spawn_go(s->sync_fd)) < 0) {
                session_kill(s);
                goto fail;
        }
        log_info("dyno %s: exec %d: %s%s", d->id, (int)s->pid, req->argv[0],
                 s->tty ? " (terminal)" : "");
        return;
fail:
        closep(&child_io);
        call_fail(c, r == -ENOMEM ? API_INTERNAL : API_FAILED_PRECONDITION,
                  "exec in dyno '%s': %s: %s", req->id, step, strerror(-r));
        session_free(s);
}

/* The next message of the stream: input, its end, a resize; NULL: the client has sent all it
 * will (as the end of input). */
static void on_client_input(struct call *c, const ProtobufCMessage *msg, void *userdata)
{
        struct exec_session *s = userdata;
        const Hostd__V1__StreamInput *in = NULL;
        bool again = false;
        if (msg && msg->descriptor == &hostd__v1__exec_request__descriptor) {
                const Hostd__V1__ExecRequest *r = (const Hostd__V1__ExecRequest *)msg;
                in = r->input;
                again = r->kind_case == HOSTD__V1__EXEC_REQUEST__KIND_START;
        } else if (msg && msg->descriptor == &hostd__v1__attach_request__descriptor) {
                const Hostd__V1__AttachRequest *r = (const Hostd__V1__AttachRequest *)msg;
                in = r->input;
                again = r->kind_case == HOSTD__V1__ATTACH_REQUEST__KIND_START;
        }
        if (again) {
                call_fail(c, API_INVALID_ARGUMENT,
                          "start: only the first message of the stream starts; the others are "
                          "input");
                on_client_gone(c, s);
                return;
        }
        if (!msg) {
                s->in_eof = true;
        } else if (in) {
                if (in->columns && in->rows && s->tty && s->io_fd >= 0) {
                        struct winsize ws = {
                                .ws_row = (unsigned short)(in->rows > 10000 ? 10000 : in->rows),
                                .ws_col =
                                        (unsigned short)(in->columns > 10000 ? 10000 : in->columns)
                        };
                        /* The kernel sends SIGWINCH to the terminal's foreground group. */
                        (void)ioctl(s->io_fd, TIOCSWINSZ, &ws);
                }
                if (in->data.len) {
                        if (in->data.len > EXEC_MAX_INPUT - s->in_len) {
                                call_fail(c, API_RESOURCE_EXHAUSTED,
                                          "input.data: the process has %zu bytes of input it "
                                          "has not read",
                                          s->in_len);
                                on_client_gone(c, s);
                                return;
                        }
                        uint8_t *b = realloc(s->in, s->in_len + in->data.len);
                        if (!b) {
                                call_fail(c, API_INTERNAL, "input: out of memory");
                                on_client_gone(c, s);
                                return;
                        }
                        memcpy(b + s->in_len, in->data.data, in->data.len);
                        s->in = b;
                        s->in_len += in->data.len;
                }
                if (in->eof)
                        s->in_eof = true;
        }
        if (s->io_fd >= 0)
                write_input(s);
}

/* A session for the call, or NULL after answering why not. */
static struct exec_session *session_new(struct manager *m, struct call *c, const char *dyno_id)
{
        if (m->n_execs >= EXEC_MAX_SESSIONS) {
                call_fail(c, API_RESOURCE_EXHAUSTED,
                          "%zu exec and attach sessions are open, the limit", m->n_execs);
                return NULL;
        }
        struct exec_session *s = calloc(1, sizeof *s);
        if (!s) {
                call_fail(c, API_INTERNAL, "out of memory");
                return NULL;
        }
        s->m = m;
        s->call = call_ref(c);
        s->pidfd = s->sync_fd = s->io_fd = -1;
        s->dyno_id = strdup(dyno_id);
        s->next = m->execs;
        m->execs = s;
        m->n_execs++;
        if (!s->dyno_id) {
                call_fail(c, API_INTERNAL, "out of memory");
                session_free(s);
                return NULL;
        }
        return s;
}

void exec_attach(struct manager *m, struct call *c, const Hostd__V1__AttachStart *req)
{
        struct dyno *d = manager_find(m, req->id);
        if (!d) {
                call_fail(c, API_NOT_FOUND, "dyno '%s' not found", req->id);
                return;
        }
        if (!d->spec->tty) {
                call_fail(c, API_FAILED_PRECONDITION,
                          "dyno '%s' has no terminal (spec.tty): follow its logs instead", req->id);
                return;
        }
        if (!dyno_is_live(d) || d->tty_fd < 0 || d->hangups > 0 || d->r13) {
                call_fail(c, API_FAILED_PRECONDITION,
                          "dyno '%s' is not running with its terminal (%s%s)", req->id,
                          dyno_state_name(d->state), d->hangups ? ", detached" : "");
                return;
        }
        if (d->attach) {
                call_fail(c, API_ALREADY_EXISTS,
                          "dyno '%s': a client is attached to its terminal already", req->id);
                return;
        }
        struct exec_session *s = session_new(m, c, d->id);
        if (!s)
                return;
        s->tty = true;
        s->dyno = d;
        s->attachment.end = attach_end;
        d->attach = &s->attachment;
        int r = 0;
        s->io_fd = fcntl(d->tty_fd, F_DUPFD_CLOEXEC, 3);
        if (s->io_fd < 0)
                r = -errno;
        if (r >= 0)
                r = session_watch(s);
        if (r < 0) {
                call_fail(c, API_INTERNAL, "attach to '%s': %s", req->id, strerror(-r));
                session_free(s);
                return;
        }
        log_info("dyno %s: a client attached to its terminal", d->id);
        dyno_attached(d);
}

/* The dyno ended (code: its exit status) or is going away (code < 0): end its client's
 * stream with the last output and the code. */
static void attach_end(struct dyno_attachment *a, int code)
{
        struct exec_session *s = container_of(a, struct exec_session, attachment);
        if (code >= 0) {
                if (!s->io_ended && s->io_fd >= 0)
                        read_output(s);
                send_output(s, NULL, 0, true, code);
        } else
                call_fail(s->call, API_ABORTED, "dyno '%s' went away", s->dyno_id);
        session_free(s);
}

void exec_free_all(struct manager *m)
{
        while (m->execs)
                session_free(m->execs);
}
