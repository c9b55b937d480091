/* hostd-init: PID 1 of a dyno's PID namespace.
 *
 * hostd sets the dyno up (namespaces, root filesystem, limits), forks the dyno's command and
 * then executes this program in the namespace's first process. It:
 *   - reaps every orphan that the namespace reparents to it;
 *   - relays the signals hostd sends it to every process of the dyno (kill(-1) from a PID
 *     namespace's init reaches all of the namespace but itself);
 *   - when the command ends, records its exit status in the dyno's state folder, then exits,
 *     which makes the kernel kill whatever is left in the namespace;
 *   - except during a stop (it has relayed SIGTERM): then the dyno lives until every process
 *     has exited, so that an app under a shell, or a master's workers, finish what they were
 *     doing within the grace period. hostd kills the whole cgroup when the grace is over.
 * It keeps a copy of the read end of the dyno's log pipe open, never reading it, so that the
 * pipe outlives a restart of hostd: a new hostd takes the descriptor with pidfd_getfd() and no
 * line written in between is lost.
 *
 * It links only libc, statically (musl, see meson.build), and allocates nothing: a thousand
 * dynos cost a thousand small inits. Every page of the program is in every init's resident
 * set, so it keeps off libc's heavier parts (stdio, strtol's scanner).
 *
 * Descriptors on entry: 0-2 /dev/null, 3 the dyno's state folder (outside the dyno's root),
 * 4 the log pipe's read end. argv[1] is the command's pid in this namespace. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h> /* renameat */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATE_FD 3
#define LOG_FD 4

/* Set once SIGTERM has been relayed: a stop is under way. */
static volatile sig_atomic_t stopping;

static void relay(int sig)
{
        /* From the init of a PID namespace, -1 means every other process in it. */
        int saved = errno;
        if (sig == SIGTERM)
                stopping = 1;
        kill(-1, sig);
        errno = saved;
}

/* The command's status as an exit code: for a parent that waits for us. */
static int status_code(int status)
{
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Append the decimal digits of v (0..255 here) to p; stdio would double the init's memory. */
static char *put_uint(char *p, unsigned v)
{
        char digits[12];
        int n = 0;
        do
                digits[n++] = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        while (n > 0)
                *p++ = digits[--n];
        return p;
}

/* The command's pid, in decimal: > 1 and no more than pid_max's ceiling (2^22); -1 otherwise.
 * Not strtol: its scanner is a page of the program. */
static long parse_pid(const char *s)
{
        long v = 0;
        if (!*s)
                return -1;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (1L << 22))
                        return -1;
                v = v * 10 + (*s - '0');
        }
        return v > 1 && v <= (1L << 22) ? v : -1;
}

static char *put_str(char *p, const char *s)
{
        while (*s)
                *p++ = *s++;
        return p;
}

/* "exited N" or "signaled N", written atomically: hostd reads it even after its own restart. */
static void record_exit(int status)
{
        char buf[64], *p = buf;
        if (WIFEXITED(status)) {
                p = put_str(p, "exited ");
                p = put_uint(p, (unsigned)WEXITSTATUS(status));
        } else {
                p = put_str(p, "signaled ");
                p = put_uint(p, (unsigned)WTERMSIG(status));
                if (WCOREDUMP(status))
                        p = put_str(p, " core");
        }
        *p++ = '\n';
        size_t n = (size_t)(p - buf);
        int fd = openat(STATE_FD, ".exit.tmp",
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return;
        /* Atomic, not durable: the run folder is per-boot, and the page cache outlives a
         * hostd that is away (write_file_replace() in common/util.h). */
        if (write_all(fd, buf, n) < 0) {
                close(fd);
                unlinkat(STATE_FD, ".exit.tmp", 0);
                return;
        }
        close(fd);
        (void)renameat(STATE_FD, ".exit.tmp", STATE_FD, "exit");
}

int main(int argc, char **argv)
{
        if (argc != 2 || getpid() != 1) {
                static const char msg[] =
                        "hostd-init: run by hostd as a dyno's PID 1, not by hand\n";
                write_all(2, msg, sizeof msg - 1);
                return 2;
        }
        long main_pid = parse_pid(argv[1]);
        if (main_pid < 0)
                return 2;

        prctl(PR_SET_NAME, "hostd-init");

        /* A PID namespace's init gets only the signals it has handlers for, from inside or
         * from hostd: these are the ones hostd (or the operator) may want passed on. */
        static const int relayed[] = {
                SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH
        };
        struct sigaction sa = { .sa_handler = relay };
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
                sigaction(relayed[i], &sa, NULL);
        /* hostd started us with these blocked so that none sent before now was lost: take
         * them now. (Keep the list in step with spawn.c.) */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);

        int main_status = -1; /* the command's, once it has ended */
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, 0);
                if (pid < 0) {
                        if (errno == EINTR)
                                continue;
                        /* ECHILD: nobody is left. After a stop, the command's status stands;
                         * without one, the command went without us seeing it. */
                        return main_status >= 0 ? status_code(main_status) : 255;
                }
                if (pid != (pid_t)main_pid)
                        continue; /* an orphan, reaped */

                record_exit(status);
                main_status = status;
                /* Outside a stop the dyno ends with its command: our exit makes the kernel
                 * kill what is left. During one, the others may still be finishing: wait
                 * for them (hostd kills the cgroup when the grace is over). */
                if (!stopping)
                        return status_code(status);
        }
}
