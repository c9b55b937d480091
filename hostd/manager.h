/* The Manager owns everything: configuration, the cgroup driver, the event loop, the dynos. */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <sys/types.h>

#include "cgroup.h"
#include "config.h"
#include "hostd.pb-c.h"
#include "logfile.h"
#include "logs.h"

/* Sources that must never delay a reply or an exit: dynos' log pipes, and a connection's
 * requests beyond its batch (grpc-server.c). Everything else runs at the default 0. */
#define HOSTD_PRIORITY_LOGS 10

struct call;
struct offload;
struct cg_manager;
struct drain_ctx;
struct drain_set;
struct image_store;
struct importer;
struct netd_client;
struct journal;
struct events;
struct exec_session;
struct grpc_server;
struct retiring;
struct metrics;

/* What a call that waits on a dyno waits for (dyno_wake answers it). */
enum dyno_wait {
        WAIT_START_RUNS,   /* Start: the command runs (or a one-off waits for its client) */
        WAIT_RESTART_RUNS, /* Restart: the same, of the replacement */
        WAIT_ENDED,        /* Stop: the dyno's processes are gone */
};

/* A call owed an answer once a dyno reaches a state. */
struct pending {
        struct dyno *d;
        struct call *call;
        enum dyno_wait wait;
        struct pending *next;
};

/* The client attached to a one-off's terminal (exec.c's session): told once, when the dyno
 * ends, with its exit code, or -1 when it goes without one (a failed start, hostd's end). end
 * detaches it (d->attach = NULL). */
struct dyno_attachment {
        void (*end)(struct dyno_attachment *a, int code);
};

/* A client following a dyno's log. */
struct follower {
        struct dyno *d;
        struct call *call;
        uint64_t next_seq; /* the first line it has not been sent */
        struct follower *next;
};

struct dyno {
        struct manager *m;
        char *id;
        Hostd__V1__DynoSpec *spec; /* owned (unpacked copy) */
        const struct size_def *size;
        Hostd__V1__DynoState state;
        uid_t uid;
        pid_t pid;
        uint64_t init_starttime;
        int pidfd;
        int log_fd;
        int sync_fd;
        bool go_sent; /* its first process was let go on (spawn_go) */
        int state_dirfd;
        struct logfile logfile; /* <run>/log: lines kept across restarts of hostd */
        bool adopted;           /* not our child: started by an earlier hostd */
        bool running;           /* its command has been executed (or waits for its client) */
        bool stop_requested;
        bool restart_requested; /* start again once stopped */
        bool stop_timed_out;    /* R12 */
        bool start_failed;
        bool rebooted; /* its record is from an earlier boot of the host */
        int64_t created_usec, started_usec, finished_usec, stop_deadline_usec;
        uint32_t grace_seconds; /* for the stop under way */
        uint32_t restarts;

        /* Exit */
        bool exit_known;
        bool exited;
        int exit_code;
        int exit_signal;
        bool oom_killed; /* the command itself, by the kernel's OOM killer */
        bool killed;     /* hostd sent SIGKILL (R10, R12, R13, R16, a shutdown's deadline) */
        char *exit_reason;
        char *exit_error;

        /* A daily cycle starts the replacement while the dyno's processes still stop, so the
         * kernel objects and files of one run of the dyno, an instance, have names of their
         * own: the dyno's id for instance 0, "<id>@<n>" for the n-th replacement. */
        uint32_t instance;
        char *cg_name;   /* the instance's cgroup, layer, network namespace and netd name */
        char *inst_dir;  /* where its init writes its exit status: run_dir, or run_dir/<n> */
        char *layer_dir; /* <layers-dir>/<cg_name> */
        char *run_dir;   /* <run-dir>/dynos/<id>: the record and the log file */
        char *cgroup_path;
        struct retiring *retiring; /* earlier instances still stopping after a daily cycle */
        char *stack_root;          /* the stack's folder: a spec path or an image's rootfs */
        char *slug_root;           /* the slug's, or NULL */
        bool waiting_images;       /* STARTING, waiting for imports before it can launch */
        char *address;             /* netd's answer to the Attach; NULL without one */
        uint32_t host_port;        /* web dynos: the host port netd maps to $PORT */
        int64_t netd_attach;       /* the Attach in flight (its first process waits); 0: none */
        bool booting;              /* a web dyno's command runs; STARTING until it binds $PORT */
        bool boot_timed_out;       /* R10 */
        int64_t boot_deadline_usec;
        int boot_fd;             /* sock_diag in the dyno's network namespace, while booting */
        int64_t up_usec;         /* when it last became up */
        uint32_t crashes;        /* in a row: the restart back-off's position */
        int64_t restart_at_usec; /* CRASHED, restarting then (CLOCK_REALTIME); 0: not */
        int memory_fd;           /* the kernel's memory notification (cg_memory_watch) */
        struct cg_event_reg memory_reg; /* v1: its threshold, registered once it ran a while */
        int oom_fd;                     /* its OOM notification (cg_oom_watch) */
        uint64_t oom_kills;             /* OOM kills in this run told so far (R15 lines, events) */
        int64_t oom_last_usec;          /* when the last one was seen */
        unsigned oom_rechecks;          /* looks at the count still due after a notification */
        char run_id[37];                /* a UUID for this run: $HEROKU_DYNO_ID */
        int tty_fd;                     /* a one-off's terminal (pty master); -1: none */
        struct dyno_attachment *attach; /* the client attached to it */
        bool attached_once;             /* R13 is for a terminal nobody ever attached to */
        bool awaiting_attach;           /* its command runs once a client attaches (spawn_go) */
        unsigned hangups;               /* SIGHUPs sent since its client left (R16 after) */
        bool r13, r16;
        int64_t cycle_at_usec;     /* daily cycling (CLOCK_REALTIME); 0: not set */
        int event_state;           /* the state the event stream last said; -1: none */
        int64_t r14_last_usec;     /* the last R14 lines, for their rate limit */
        unsigned fetch_quarter[2]; /* the last quarter of each fetch (stack, slug) it logged */
        sd_event_source *pid_source, *log_source, *sync_source, *timer_source, *boot_source,
                *restart_source, *memory_source, *memory_timer, *attach_timer, *cycle_source,
                *oom_source, *oom_timer, *memory_reg_timer;
        struct line_splitter splitter;
        struct log_ring *ring;
        struct drain_set *drains; /* spec.log_drains; kept across restarts, closed at the end */
        struct pending *pending;
        struct follower *followers;
};

struct manager {
        struct config *config;
        sd_event *event;
        struct cg_manager *cg;
        struct offload *offload; /* the worker thread for kernel calls that wait (offload.h) */
        struct cpu_pool *cpus;   /* dedicated CPUs (cpus.h) */
        struct grpc_server *api;
        struct image_store *images;
        struct importer *importer; /* image imports (importer.c) */
        struct netd_client *netd;  /* NULL: no netd configured, dynos have loopback only */
        struct journal *journal;   /* NULL: no journal-socket */
        struct drain_ctx *drains;  /* syslog drains: the TLS context, closed sets still sending */
        struct events *events;
        struct metrics *metrics;    /* metrics.c: the sampler and its consumers */
        struct exec_session *execs; /* processes started in dynos by Exec, streaming */
        size_t n_execs;
        bool reconciled; /* every record is loaded: netd may be told what is live */
        struct sock_fprog seccomp;
        int init_exe_fd;
        int import_exe_fd; /* hostd-import; -1: not found, imports fail */
        int netns_fd;      /* hostd's own network namespace, to come back to (port-probe.c) */
        char *boot_id;
        char *dynos_run_dir; /* <run-dir>/dynos */
        void *dynos;         /* tsearch tree of struct dyno *, by id */
        size_t n_dynos;
        size_t n_live;
        size_t n_retiring;           /* instances stopping after a daily cycle, over all dynos */
        bool draining;               /* admission.c: no new dynos */
        int64_t drain_deadline_usec; /* CLOCK_REALTIME: the running dynos stop then; 0: never */
        sd_event_source *drain_timer;
        bool shutting_down, shutdown_killed;
        int64_t shutdown_deadline_usec;
        sd_event_source *shutdown_timer;
};

int manager_new(struct config *c, sd_event *e, struct manager **ret);
void manager_free(struct manager *m);
/* Re-adopt running dynos, record those that ended while hostd was away, remove leftovers. */
int manager_reconcile(struct manager *m);

struct dyno *manager_find(struct manager *m, const char *id);
/* Calls fn for every dyno, in id order. */
void manager_foreach(struct manager *m, void (*fn)(struct dyno *d, void *userdata), void *userdata);
bool dyno_is_live(const struct dyno *d);
/* Its earlier instances still stopping after a daily cycle. */
size_t dyno_retiring_count(const struct dyno *d);

/* The calls' own checks (validate.c, run by the transport before these) have passed. */

/* Begin a start (spec is taken over); the call is answered when the dyno runs or has failed.
 * The host's own refusals (the size, admission, an id in use) are answered at once. */
void manager_start(struct manager *m, Hostd__V1__DynoSpec *spec, struct call *call);
/* Begin a stop; the call is answered when the dyno is gone. */
void manager_stop(struct manager *m, const char *id, bool grace_set, uint32_t grace,
                  struct call *call);
/* SIGTERM to the running instance and its replacement started beside it (an up dyno), else a
 * stop and a start again; the call is answered when the new process runs. */
void manager_restart(struct manager *m, const char *id, bool grace_set, uint32_t grace,
                     struct call *call);

/* Send the call the dyno's kept lines from ring index first on, as LogsResponses of a bounded
 * size. 0, or -ECANCELED when the client went meanwhile. */
int dyno_send_logs(struct dyno *d, struct call *call, size_t first);
/* Then every line the dyno logs from now on, until the dyno ends for good (a restart goes
 * on); without more to come, the call ends at once. */
void dyno_follow_logs(struct dyno *d, struct call *call);

/* Whether a running or starting dyno uses the image; how many do. */
bool manager_image_in_use(const char *digest, void *userdata /* struct manager * */);
unsigned manager_image_users(struct manager *m, const char *digest);

/* exec.c tells: a client attached to the dyno's terminal, or the one attached left. */
void dyno_attached(struct dyno *d);
void dyno_detached(struct dyno *d);

/* A terminal's description for the environment of a process on it. */
struct dyno_tty {
        const char *term;       /* "" or NULL: xterm */
        uint32_t columns, rows; /* 0: no COLUMNS, LINES */
};
/* The environment of a process of the dyno: config vars, PATH, HOME, DYNO, PORT, the dyno
 * metadata ($HEROKU_DYNO_ID, this run's UUID; the others where the spec has them), and with
 * tty, TERM, COLUMNS and LINES (instead of config vars of those names). A NULL-terminated
 * strv, or NULL (out of memory). */
char **dyno_build_env(const struct dyno *d, const struct dyno_tty *tty);

/* Stop every running dyno gracefully (its grace), and keep crashed ones from restarting: a
 * drain's deadline. */
void manager_stop_all(struct manager *m);
/* SIGTERM: exit leaving the dynos running, or, with stop-dynos-on-exit, stop them first (within
 * shutdown-timeout, then SIGKILL) and exit once they are gone. A second call exits now. */
int manager_shutdown(struct manager *m);

/* Fill out from the dyno. out borrows d's strings and spec: valid until d changes. */
void dyno_to_proto(const struct dyno *d, Hostd__V1__Dyno *out, Hostd__V1__ExitInfo *exit);
const char *dyno_state_name(Hostd__V1__DynoState s);

/* The name of the dyno's cgroup under <base>/dynos now: its current instance's (the sampler
 * opens its files again when it changes). */
const char *dyno_cgroup_name(const struct dyno *d);
/* A runtime-metrics line (source heroku) in the dyno's log, its followers and the journal,
 * but not in hostd's own log: every such dyno says one every runtime-metrics-interval. */
void dyno_log_metrics(struct dyno *d, const char *line);
