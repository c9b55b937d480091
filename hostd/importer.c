#include "importer.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "import-msg.h"
#include "spawn.h"
#include "util.h"

struct import_watcher {
        struct import_job *job;
        const struct import_watch_ops *ops;
        void *userdata;
        struct import_watcher *next;
};

struct importer {
        sd_event *event;
        struct image_store *store;
        int exe_fd; /* hostd-import, held open */
        const struct importer_hooks *hooks;
        void *userdata;
        struct import_job *jobs;
};

struct import_job {
        struct importer *im;
        char digest[65];
        enum image_kind kind;
        pid_t pid;
        int pidfd, pipe_fd;
        sd_event_source *pid_source, *pipe_source;
        bool have_result;
        int error;
        char msg[480];
        uint64_t done, total;
        struct import_watcher *watchers;
        struct import_job *next;
};

int importer_new(sd_event *e, struct image_store *store, int exe_fd,
                 const struct importer_hooks *hooks, void *userdata, struct importer **ret)
{
        struct importer *im = calloc(1, sizeof *im);
        if (!im)
                return -ENOMEM;
        im->event = sd_event_ref(e);
        im->store = store;
        im->exe_fd = exe_fd;
        im->hooks = hooks;
        im->userdata = userdata;
        *ret = im;
        return 0;
}

static struct import_job *job_find(struct importer *im, const char *digest)
{
        for (struct import_job *j = im->jobs; j; j = j->next)
                if (strcmp(j->digest, digest) == 0)
                        return j;
        return NULL;
}

bool importer_busy(struct importer *im, const char *digest) { return job_find(im, digest) != NULL; }

static void job_unlink(struct import_job *j)
{
        for (struct import_job **pp = &j->im->jobs; *pp; pp = &(*pp)->next)
                if (*pp == j) {
                        *pp = j->next;
                        return;
                }
}

static void watcher_free(struct import_watcher *w)
{
        if (w->ops->free)
                w->ops->free(w->userdata);
        free(w);
}

static void job_free(struct import_job *j)
{
        while (j->watchers) {
                struct import_watcher *w = j->watchers;
                j->watchers = w->next;
                watcher_free(w);
        }
        sd_event_source_disable_unref(j->pid_source);
        sd_event_source_disable_unref(j->pipe_source);
        closep(&j->pidfd);
        closep(&j->pipe_fd);
        free(j);
}

static int job_watch(struct import_job *j, const struct import_watch_ops *ops, void *userdata,
                     struct import_watcher **ret)
{
        if (!ops)
                return 0;
        struct import_watcher *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->job = j;
        w->ops = ops;
        w->userdata = userdata;
        w->next = j->watchers;
        j->watchers = w;
        if (ret)
                *ret = w;
        return 0;
}

void importer_unwatch(struct import_watcher *w)
{
        if (!w)
                return;
        for (struct import_watcher **pp = &w->job->watchers; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        watcher_free(w);
                        return;
                }
}

static void send_progress(struct import_job *j)
{
        for (struct import_watcher *w = j->watchers; w; w = w->next)
                if (w->ops->progress)
                        w->ops->progress(w->userdata, j->done, j->total);
}

static void read_messages(struct import_job *j)
{
        struct import_msg msg;
        for (;;) {
                ssize_t n = read(j->pipe_fd, &msg, sizeof msg);
                if (n != (ssize_t)sizeof msg)
                        return; /* EAGAIN, EOF or a torn record: the exit handler decides */
                msg.text[sizeof msg.text - 1] = 0;
                if (msg.type == IMPORT_MSG_PROGRESS) {
                        j->done = msg.done;
                        j->total = msg.total;
                        send_progress(j);
                        const struct importer_hooks *h = j->im->hooks;
                        if (h && h->progress)
                                h->progress(j->im->userdata, j->digest, j->done, j->total);
                } else if (msg.type == IMPORT_MSG_RESULT) {
                        j->have_result = true;
                        j->error = msg.error;
                        snprintf(j->msg, sizeof j->msg, "%s", msg.text);
                }
        }
}

static int on_pipe(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        read_messages(userdata);
        return 0;
}

static int on_job_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct import_job *j = userdata;
        struct importer *im = j->im;
        siginfo_t si = {};
        waitid(P_PIDFD, (id_t)j->pidfd, &si, WEXITED | WNOHANG);
        read_messages(j);
        if (!j->have_result) {
                j->error = -EIO;
                snprintf(j->msg, sizeof j->msg, "image %.12s: the import process died (%s %d)",
                         j->digest, si.si_code == CLD_EXITED ? "status" : "signal", si.si_status);
        }
        job_unlink(j);

        struct image_info info;
        int r = j->error ? j->error : image_lookup(im->store, j->digest, &info);
        if (j->error == 0 && r < 0)
                snprintf(j->msg, sizeof j->msg, "image %.12s: imported but not found: %s",
                         j->digest, strerror(-r));
        if (r < 0)
                log_warning("%s", j->msg);
        else
                log_info("image %.12s imported (%llu bytes, %llu files)", j->digest,
                         (unsigned long long)info.size_bytes, (unsigned long long)info.files);
        for (struct import_watcher *w = j->watchers; w; w = w->next)
                w->ops->done(w->userdata, r < 0 ? r : 0, j->msg, r < 0 ? NULL : &info);
        char digest[65];
        memcpy(digest, j->digest, sizeof digest);
        int error = r < 0 ? r : 0;
        char msg[480];
        snprintf(msg, sizeof msg, "%s", j->msg);
        job_free(j);
        if (im->hooks && im->hooks->ready)
                im->hooks->ready(im->userdata, digest, error, msg);
        return 0;
}

/* ---- the helper ---- */

struct helper_args {
        int exe_fd, pipe_fd;
        char **argv;
};

/* In the new process (it shares hostd's memory until its execve): the pipe at
 * IMPORT_MSG_FD, nothing else of hostd's, signals as a new program has them. */
static int helper_start(void *userdata)
{
        const struct helper_args *a = userdata;
        /* The program's descriptor just past the pipe, closed on exec: execveat needs it only
         * until the program is loaded. */
        const int exe = IMPORT_MSG_FD + 1;
        const int want[] = { a->pipe_fd, a->exe_fd }, at[] = { IMPORT_MSG_FD, exe };
        spawn_keep_fds(want, at, ELEMENTSOF(want), exe + 1);
        if (fcntl(exe, F_SETFD, FD_CLOEXEC) < 0)
                _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *envp[] = { NULL };
        syscall(SYS_execveat, exe, "", a->argv, envp, AT_EMPTY_PATH);
        _exit(127);
}

/* hostd-import for one job, its pid in *ret; the pipe's write end is its fd 3. */
static int helper_spawn(struct importer *im, int pipe_fd, const char *source, const char *digest,
                        enum image_kind kind, pid_t *ret)
{
        if (im->exe_fd < 0)
                return -ENOENT;
        const struct image_limits *lim = image_store_limits(im->store);
        char c[24], u[24], f[24];
        snprintf(c, sizeof c, "%" PRIu64, lim->max_compressed);
        snprintf(u, sizeof u, "%" PRIu64, lim->max_unpacked);
        snprintf(f, sizeof f, "%" PRIu64, lim->max_files);
        char *argv[] = { (char *)"hostd-import",
                         (char *)image_store_root(im->store),
                         (char *)(kind == IMAGE_KIND_SLUG ? "slug" : "stack"),
                         (char *)digest,
                         (char *)source,
                         c,
                         u,
                         f,
                         NULL };
        struct helper_args a = { .exe_fd = im->exe_fd, .pipe_fd = pipe_fd, .argv = argv };
        pid_t pid = spawn_vfork(helper_start, &a);
        if (pid < 0)
                return -errno;
        *ret = pid;
        return 0;
}

int importer_start(struct importer *im, const char *source, const char *digest,
                   enum image_kind kind, const struct import_watch_ops *ops, void *userdata,
                   struct import_watcher **ret_watcher)
{
        struct import_job *j = job_find(im, digest);
        if (j)
                return job_watch(j, ops, userdata, ret_watcher);

        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->im = im;
        j->pidfd = j->pipe_fd = -1;
        snprintf(j->digest, sizeof j->digest, "%s", digest);
        j->kind = kind;
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                free(j);
                return -errno;
        }
        pid_t pid = -1;
        int r = helper_spawn(im, p[1], source, digest, kind, &pid);
        if (r < 0) {
                close(p[0]);
                close(p[1]);
                free(j);
                return r;
        }
        close(p[1]);
        j->pipe_fd = p[0];
        j->pid = pid;
        (void)fcntl(j->pipe_fd, F_SETFL, O_NONBLOCK);
        j->pidfd = pidfd_open(pid, 0);
        r = j->pidfd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_io(im->event, &j->pipe_source, j->pipe_fd, EPOLLIN, on_pipe, j);
        if (r >= 0)
                r = sd_event_add_io(im->event, &j->pid_source, j->pidfd, EPOLLIN, on_job_exit, j);
        if (r >= 0)
                r = job_watch(j, ops, userdata, ret_watcher);
        if (r < 0) {
                kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                job_free(j);
                return r;
        }
        j->next = im->jobs;
        im->jobs = j;
        log_info("image %.12s: importing from %s", digest, source);
        return 0;
}

void importer_free(struct importer *im)
{
        if (!im)
                return;
        while (im->jobs) {
                struct import_job *j = im->jobs;
                im->jobs = j->next;
                job_free(j);
        }
        sd_event_unref(im->event);
        free(im);
}

struct sweep {
        int pidfd;
        sd_event_source *source;
};

static int on_sweep_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct sweep *sw = userdata;
        siginfo_t si = {};
        waitid(P_PIDFD, (id_t)sw->pidfd, &si, WEXITED | WNOHANG);
        if (si.si_code != CLD_EXITED || si.si_status != 0)
                log_warning("image store: deleting removed images failed (%s %d); the next start "
                            "of hostd retries",
                            si.si_code == CLD_EXITED ? "status" : "signal", si.si_status);
        sd_event_source_disable_unref(sw->source);
        close(sw->pidfd);
        free(sw);
        return 0;
}

void importer_sweep(struct importer *im)
{
        struct sweep *sw = calloc(1, sizeof *sw);
        if (!sw)
                return;
        pid_t pid = fork();
        if (pid < 0) {
                log_warning_errno(errno, "image store: fork to delete removed images: %m");
                free(sw);
                return;
        }
        if (pid == 0) {
                prctl(PR_SET_NAME, "hostd-sweep");
                _exit(image_store_sweep(im->store) < 0 ? 1 : 0);
        }
        sw->pidfd = pidfd_open(pid, 0);
        if (sw->pidfd < 0 ||
            sd_event_add_io(im->event, &sw->source, sw->pidfd, EPOLLIN, on_sweep_exit, sw) < 0) {
                /* Unwatched, it would stay a zombie: wait for it here, once. */
                (void)waitpid(pid, NULL, 0);
                closep(&sw->pidfd);
                free(sw);
        }
}
