/* Creating a dyno's processes: the namespaces, the root filesystem, the dyno init and the
 * command, with every privilege dropped. */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct cg_manager;
struct cg_view;

struct spawn_params {
        const char *id;              /* the dyno's id: its hostname */
        const char *cgroup;          /* the cgroup's name (cg_create): the instance's */
        const char *layer_dir;       /* holds upper/, work/ and merged/ (layer_create) */
        const char *overlay_options; /* slug over stack, under the layer (layer_mount_options) */
        uid_t uid;                   /* the dyno's uid and gid: "u<uid>" in its passwd and group */
        char **argv;                 /* the command, run in the new root */
        const char *argv0_fallback;  /* run instead of argv[0] where the stack has no argv[0] */
        char **envp;
        int state_dirfd;                  /* the instance's folder: the init writes "exit" there */
        int log_read_fd;                  /* kept open by the init */
        int log_write_fd;                 /* the command's stdout and stderr */
        int init_exe_fd;                  /* the hostd-init binary, executed by descriptor */
        const struct sock_fprog *seccomp; /* loaded last, after no_new_privs */
        uint64_t rlimit_nofile;
        uint64_t rlimit_nproc; /* the size's pids: what `ulimit -u` says; 0: unlimited */
        uint64_t shm_size;
        const struct cg_view *cgroup_view; /* what the dyno sees at /sys/fs/cgroup */
        bool tty; /* a one-off's terminal as the command's stdio, handed to hostd; the first
                    * process then waits for a second spawn_go() before it forks the command */
        uint32_t tty_columns, tty_rows;
};

/* A process spawn_dyno or spawn_exec started. */
struct spawn_child {
        pid_t pid;
        int pidfd;
        int sync_fd; /* hostd's end of the sync socket */
};

/* Start the dyno init in new PID, mount, UTS, IPC, network and cgroup namespaces inside the
 * dyno's cgroup (born there on v2; on v1 it moves itself in first). The first process mounts
 * the root filesystem, then waits for spawn_go(): the caller sends it once whatever must come
 * first is done (netd's wiring). Then the socket reports a setup error as a struct
 * spawn_error, or SPAWN_STARTED once the command has been executed, as the first process
 * goes on to execute the init (should that fail, the process ends: the dyno's end, status
 * 127). On failure nothing is left running. */
int spawn_dyno(const struct spawn_params *p, struct cg_manager *cg, struct spawn_child *ret);

/* In a new process: put want[i] at at[i] (without FD_CLOEXEC) and close every other
 * descriptor from 3 on, since a clone holds copies of all of hostd's. at[] lies in
 * [3, first_free); at most 8. _exit(127) when it cannot. Async-signal-safe. */
void spawn_keep_fds(const int *want, const int *at, size_t n, int first_free);

/* Start fn(arg) in a new process that shares the caller's memory, on a stack of its own, and
 * return its pid once it has executed a program or ended (CLONE_VM | CLONE_VFORK, as
 * posix_spawn does; SIGCHLD at its end). fn must end in execve or _exit. It may allocate only
 * where the caller is single-threaded (a dyno's first process; libcap allocates): in hostd,
 * whose worker thread shares the allocator, it may not. -1 with errno on failure. */
pid_t spawn_vfork(int (*fn)(void *), void *arg);

/* Let a waiting first process go on: it enters its cgroup namespace, pivots into its root
 * and runs the command. */
int spawn_go(int sync_fd);

struct spawn_error {
        int32_t error;   /* positive errno */
        char where[200]; /* the step that failed, e.g. "mount overlay on /var/lib/..." */
};

/* What the first process says once the command runs, just before it executes the init (a
 * struct spawn_error of error 0 with this where). */
#define SPAWN_STARTED "started"

/* Read what the sync socket says: 0 for started (SPAWN_STARTED, or EOF: an exec helper's
 * command runs), 1 with *err filled for an error, 2 with *ret_fd the dyno's terminal (a pty
 * master; more follows), -EAGAIN when nothing is there yet, another negative errno. */
int spawn_read_result(int sync_fd, struct spawn_error *err, int *ret_fd);
/* A process started inside a running dyno (hostctl exec): its namespaces, its cgroup, its uid
 * and every restriction of its command. */
struct exec_params {
        int dyno_pidfd; /* the dyno's init: whose namespaces to join */
        uid_t uid;
        char **argv; /* argv[0] is looked up in the dyno's PATH (envp) */
        char **envp;
        uint64_t rlimit_nofile;
        uint64_t rlimit_nproc;
        const struct sock_fprog *seccomp;
        int io_fd; /* with tty: a pty master of the dyno's devpts; else a socket: the stdio */
        bool tty;
};

/* Start p->argv in the dyno whose cgroup is dyno_id's. A helper process joins the dyno's
 * cgroup (as spawn_dyno's first process does) and, once spawn_go() says so, its namespaces;
 * it forks the command (which is then inside the dyno's PID namespace), drops its own
 * privileges, waits for the command and exits with its status (128 + the signal when it was
 * killed). Then the sync socket says a struct spawn_error, or EOF once the command is
 * executed (spawn_read_result). */
int spawn_exec(const struct exec_params *p, struct cg_manager *cg, const char *dyno_id,
               struct spawn_child *ret);
