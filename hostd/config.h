/* hostd's configuration: compiled-in defaults for every setting, overridden by an INI file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct size_def {
        char *name;
        uint64_t memory;     /* quota, bytes */
        double r15_multiple; /* memory + swap kill point, in quotas */
        uint64_t pids;
        uint32_t cpu_weight;     /* 100 = one share */
        uint32_t cpu_quota_pct;  /* percent of one CPU; 0: none */
        uint32_t dedicated_cpus; /* 0: shared */
        bool swap;               /* swap allowed up to the R15 multiple */
};

#define RESTART_BACKOFF_MAX 16

/* Seconds to wait before the restarts of a crashing dyno: the n-th crash in a row waits the
 * n-th, the last repeats. { 0 }: restart at once, always (no back-off). */
struct backoff {
        uint32_t seconds[RESTART_BACKOFF_MAX];
        uint32_t n;
};

struct config {
        char *socket_path; /* /run/hostd/hostd.sock */
        char *read_group;  /* members may connect and read (ps, logs, events...); "" none */
        char *run_dir;     /* /run/hostd: per-boot records */
        char *state_dir;   /* /var/lib/hostd */
        char *layers_dir;  /* /var/lib/hostd/layers: per-dyno writable layers */
        char *init_path;   /* the dyno init binary */
        char *cgroup_root; /* relative to dynos_cgroup, or hostd's own cgroup when that is "" */
        char *dynos_cgroup; /* absolute in the hierarchy ("/system.slice/hostd-dynos.service"), or "" */
        char *default_size; /* standard-1x */
        int log_level;
        uint32_t grace_seconds;    /* 30 */
        bool stop_dynos_on_exit;   /* SIGTERM stops the dynos first (no: they keep running) */
        uint32_t shutdown_timeout; /* seconds that stop may take; then SIGKILL */
        uint32_t boot_timeout;     /* 60 */
        uint32_t attach_timeout;   /* 30: a one-off's terminal waits this long for a client (R13) */
        uint32_t hangup_interval;  /* 5: SIGHUP this often once a one-off's client left */
        uint32_t hangups;          /* 3: then R16 and the end */
        uint32_t events_keep;      /* 10000: events kept for replay */
        uint32_t metrics_interval; /* 20 s: how often prometheus-file is written */
        /* 20 s: runtime-metrics log lines, and the sampler's own pace */
        uint32_t runtime_metrics_interval;
        uint32_t cycle_after;      /* 24 h: daily cycling of every dyno; 0: never */
        uint32_t cycle_jitter;     /* 216 min: a random part added to cycle_after */
        uint32_t uid_min, uid_max; /* dyno uids (gid = uid) */
        uint32_t max_message;      /* bytes of one request message */
        uint32_t max_connections;
        uint32_t max_command;   /* bytes */
        uint32_t max_env;       /* variables */
        uint32_t max_env_bytes; /* all names and values together */
        uint32_t max_dynos;
        uint64_t reserved_memory;      /* for the host itself: not allocatable to dynos */
        double memory_overcommit;      /* shared sizes count at quota / this against allocatable */
        uint32_t log_lines;            /* ring per dyno, 1500 */
        uint32_t log_line_max;         /* split longer lines, 10000 */
        uint64_t rlimit_nofile;        /* 10000 */
        uint64_t shm_size;             /* /dev/shm tmpfs size inside a dyno */
        char *images_dir;              /* /var/lib/hostd/images: the image store */
        uint64_t image_max_compressed; /* a tarball as fetched */
        uint64_t image_max_unpacked;   /* its files' data once unpacked */
        uint64_t image_max_files;      /* its entries */
        uint64_t images_budget;        /* gc keeps unused images within this many bytes */
        char *prometheus_file; /* metrics for node_exporter's textfile collector; "": none */
        char *journal_socket;  /* journald's native socket; "": lines stay out of the journal */
        char *netd_socket;     /* netd's API socket; "": no netd, dynos get loopback only */
        char *netns_dir;       /* where dynos' network namespaces are bind-mounted for netd */
        struct backoff restart_backoff; /* 0, 20m, 40m, 60m, 180m, 320m */
        char *dedicated_cpu_pool;       /* "auto", "none" or a CPU list ("1-7"): cpus.h */
        uint32_t drain_buffer;          /* 1024: lines a syslog drain keeps while it cannot send */
        uint32_t drain_backoff_max;     /* 60 s: a drain reconnects 1 s doubling to this */
        char *drain_ca_file;            /* CAs for syslog+tls:// drains; "": the system's store */
        /* The control plane's listener: mutual TLS 1.3 on TCP (tls.h). */
        char *listen_tls; /* "ADDR:PORT" (IPv4, or [IPv6]); "": none */
        char *tls_cert;   /* PEM: the server's certificate (and its chain) */
        char *tls_key;    /* PEM: its private key */
        char *tls_ca;     /* PEM: the CAs a client certificate must chain to */
        char *tls_allow;  /* identities allowed, separated by commas; "": any that chains */
        uint32_t tls_handshake_timeout; /* 10 s */
        uint32_t idle_timeout;          /* 600 s without a request or a stream: closed; 0: never */
        uint32_t max_inflight;          /* 64 calls (gRPC streams) open per connection */
        uint32_t keepalive; /* 60 s: a quiet connection is pinged this often; 0: never */
        struct size_def *sizes;
        size_t n_sizes;
};

/* Fill c with the compiled-in defaults (the sizes of HEROKU.md). -ENOMEM. */
int config_init_defaults(struct config *c);
/* Apply the file at path over the current values. On error returns a negative errno and
 * writes "PATH:LINE: key 'x': reason" into err (errlen bytes); c is left unchanged. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);
/* Same, from a string (for tests and fuzzing); name is used in messages. */
int config_load_string(struct config *c, const char *name, const char *text, char *err,
                       size_t errlen);
void config_free(struct config *c);
const struct size_def *config_find_size(const struct config *c, const char *name);
/* "127.0.0.1:7443" or "[::1]:7443" into an address. -EINVAL. */
struct sockaddr_storage;
int config_parse_listen(const char *s, struct sockaddr_storage *ret, unsigned *ret_len);
/* Print the effective configuration as a file that config_load_file reads back. */
void config_dump(const struct config *c, FILE *f);
