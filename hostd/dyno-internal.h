/* What the files of the dyno lifecycle share: manager.c (the dynos by id, the calls' entry
 * points, uids, shutdown), dyno.c (one dyno's objects, logs, waiting calls and state, launch,
 * stop and end), dyno-record.c, dyno-network.c (netd), dyno-memory.c (R14, R15),
 * dyno-cycle.c (daily cycling, overlapping restarts), dyno-boot.c (a web dyno's bind, R10) and
 * reconcile.c (hostd's start). The API (api.c) uses manager.h only. */
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "admission.h"
#include "port-probe.h"
#include "call.h"
#include "cgroup.h"
#include "cpus.h"
#include "syslog-drain.h"
#include "events.h"
#include "images.h"
#include "importer.h"
#include "journal.h"
#include "logfile.h"
#include "manager.h"
#include "netd-client.h"
#include "seccomp-filter.h"
#include "spawn.h"
#include "store.pb-c.h"
#include "util.h"

#include "config-build.h"

#define DRAIN_LINGER_SEC 10 /* an ended dyno's drains try this long to send what they hold */

/* hostd-init holds the log pipe's read end at this descriptor (see init.c), and a one-off's
 * terminal at the next (spawn.c). */
#define INIT_LOG_FD 4
#define INIT_TTY_FD 5

/* An earlier instance of a dyno that a daily cycle replaced: SIGTERM was sent, the
 * replacement runs, and this one is watched until it is gone (or killed at its deadline),
 * then its cgroup, layer and network are removed. Its lines go on into the dyno's log. */
struct retiring {
        struct dyno *d;
        uint32_t instance;
        char *name; /* its cg_name */
        char *inst_dir;
        char *layer_dir;
        pid_t pid;
        uint64_t init_starttime;
        uid_t uid;
        bool adopted; /* not our child */
        int pidfd, log_fd;
        int64_t deadline_usec; /* CLOCK_REALTIME: SIGKILL then */
        uint32_t grace_seconds;
        uint64_t oom_kills; /* told while it was the dyno's current instance, or since */
        struct line_splitter splitter;
        sd_event_source *pid_source, *log_source, *timer_source;
        struct retiring *next;
};

/* netd's answers come fast (milliseconds); this only bounds a hung netd. */
#define NETD_TIMEOUT_USEC (30ULL * 1000000)

/* manager.c: the manager: the dynos by id, the API's entry points (start, stop, restart), uids, images waited for, shutdown, and setting up */
struct dyno *manager_find_instance(struct manager *m, const char *name);
int manager_add(struct manager *m, struct dyno *d);
void manager_remove(struct manager *m, struct dyno *d);
uid_t manager_pick_uid(struct manager *m, int *error);

/* dyno.c: one dyno: its objects, logs and followers, the calls that wait on it and its state, the launch, the stop, the end and crash restarts, a one-off's terminal */
char *instance_name(const char *id, uint32_t n);
char *instance_dir(const char *run_dir, uint32_t n);
int dyno_set_instance(struct dyno *d, uint32_t n);
void dyno_flush_followers(struct dyno *d);
void dyno_close_sources(struct dyno *d);
void dyno_free(struct dyno *d);
int dyno_new(struct manager *m, const char *id, struct dyno **ret);
void dyno_flush_logfile(struct dyno *d);
void dyno_push_line(void *userdata, const char *line, size_t len);
void dyno_drains_open(struct dyno *d);
_printf_(2, 3) void dyno_log_platform(struct dyno *d, const char *fmt, ...);
int read_log_pipe(struct dyno *d, int fd, struct line_splitter *sp);
void reply_dyno(struct call *c, enum dyno_wait wait, const struct dyno *d);
void dyno_set_state(struct dyno *d, Hostd__V1__DynoState state, bool log);
void dyno_add_pending(struct dyno *d, struct call *c, enum dyno_wait wait);
void dyno_finish(struct dyno *d);
void dyno_arm_restart(struct dyno *d);
void dyno_stop_begin(struct dyno *d, uint32_t grace);
void dyno_cancel_waiting(struct dyno *d);
void dyno_stop_crashed(struct dyno *d);
uint32_t dyno_default_grace(const struct dyno *d);
uint64_t proc_starttime(pid_t pid);
void dyno_kill_now(struct dyno *d);
void dyno_attach_wait(struct dyno *d);
int dyno_watch(struct dyno *d);
void dyno_fail_start(struct dyno *d, enum api_code code, const char *msg);
void dyno_begin(struct dyno *d);
void dyno_reset_run(struct dyno *d);
void dyno_relaunch(struct dyno *d);

/* dyno-record.c: its record */
int dyno_save(struct dyno *d);
int dyno_load(struct manager *m, const char *id, struct dyno **ret);

/* dyno-network.c: netd */
void netns_unbind(struct manager *m, const char *id);
void net_release_name(struct manager *m, const char *name);
void dyno_net_release(struct dyno *d);
int dyno_net_attach(struct dyno *d, char *errbuf, size_t errlen);
void netd_sync(struct manager *m);
void on_netd_connected(struct netd_client *c, void *userdata);

/* dyno-memory.c: memory watches (R14, R15) */
void dyno_memory_watch(struct dyno *d);
void dyno_tell_oom(struct dyno *d, const char *name, uint64_t told, uint64_t now);
void dyno_oom_check(struct dyno *d);
void dyno_oom_watch(struct dyno *d);

/* dyno-cycle.c: daily cycling and overlapping restarts */
struct retiring *retiring_new(struct dyno *d, uint32_t instance);
void retiring_link(struct retiring *r);
void retiring_free_all(struct dyno *d);
void retiring_kill_all(struct dyno *d);
void retiring_readopt(struct retiring *r);
int dyno_cycle_overlap(struct dyno *d, uint32_t grace, const char *what);
void dyno_cycle_arm(struct dyno *d);

/* dyno-boot.c: the boot of a web dyno (R10) */
bool dyno_needs_boot(const struct dyno *d);
uint32_t dyno_boot_timeout(const struct dyno *d);
void dyno_set_up(struct dyno *d);
void dyno_boot_begin(struct dyno *d);
