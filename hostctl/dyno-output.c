/* A dyno as hostctl shows it. */
#include <inttypes.h>
#include <signal.h>

#include "dyno-output.h"
#include "output.h"

static const Hostd__V1__DynoSpec empty_spec = HOSTD__V1__DYNO_SPEC__INIT;

const Hostd__V1__DynoSpec *spec_of(const Hostd__V1__Dyno *d)
{
        return d->spec ? d->spec : &empty_spec;
}

const char *type_name(Hostd__V1__DynoType t, char buf[static 32])
{
        return enum_name(&hostd__v1__dyno_type__descriptor, (int)t, buf);
}

bool state_is_final(Hostd__V1__DynoState s)
{
        return s == HOSTD__V1__DYNO_STATE__DYNO_STATE_CRASHED ||
               s == HOSTD__V1__DYNO_STATE__DYNO_STATE_DOWN ||
               s == HOSTD__V1__DYNO_STATE__DYNO_STATE_COMPLETE;
}

static const char *signal_name(int sig, char buf[static 32])
{
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev)
                snprintf(buf, 32, "SIG%s", abbrev);
        else
                snprintf(buf, 32, "signal %d", sig);
        return buf;
}

/* hostd's own summary when it gave one, else one made from the fields. */
const char *describe_exit(const Hostd__V1__ExitInfo *e, char buf[static 128])
{
        char sb[32];
        if (!e)
                return "-";
        if (e->reason && *e->reason)
                return e->reason;
        if (e->exited)
                snprintf(buf, 128, "exit status %d", e->code);
        else if (e->signal)
                snprintf(buf, 128, "killed by %s", signal_name(e->signal, sb));
        else
                return "-";
        if (e->error && *e->error)
                snprintf(buf + strlen(buf), 128 - strlen(buf), " (%s)", e->error);
        return buf;
}

/* A number, or "-" for 0 (a value hostd did not report). */
static const char *uint_or_dash(uint64_t v, char buf[static 32])
{
        if (v == 0)
                return "-";
        snprintf(buf, 32, "%" PRIu64, v);
        return buf;
}

/* What it is and where it stands. */
static void print_dyno_state(const Hostd__V1__Dyno *d, const Hostd__V1__DynoSpec *s)
{
        char b1[48], b2[32], sb[32];

        kv("id", "%s", or_dash(s->id));
        kv("name", "%s", or_dash(s->name));
        kv("app", "%s", or_dash(s->app));
        kv("type", "%s", type_name(s->type, sb));
        kv("size", "%s", or_dash(s->size));
        kv("state", "%s", state_name(d->state, sb));
        kv("command", "%s", or_dash(s->command));
        kv("release", "%s", or_dash(s->release));
        kv("run_id", "%s", or_dash(d->run_id));
        kv("pid", "%s", uint_or_dash(d->pid, b2));
        kv("uid", "%s", uint_or_dash(d->uid, b2));
        kv("created", "%s", format_time(d->created_usec, b1));
        kv("started", "%s", format_time(d->started_usec, b1));
        kv("finished", "%s", format_time(d->finished_usec, b1));
        if (!state_is_final(d->state) && d->started_usec > 0)
                kv("uptime", "%s", format_duration(now_realtime_usec() - d->started_usec, b1));
        kv("restarts", "%" PRIu32, d->restarts);
}

static void print_dyno_exit(const Hostd__V1__Dyno *d)
{
        char b2[128], sb[32];

        kv("exit", "%s", describe_exit(d->exit, b2));
        if (d->exit) {
                if (d->exit->exited)
                        kv("exit_code", "%d", d->exit->code);
                if (d->exit->signal)
                        kv("exit_signal", "%s (%d)", signal_name(d->exit->signal, sb),
                           d->exit->signal);
                kv("oom_killed", "%s", d->exit->oom_killed ? "yes" : "no");
                kv("error", "%s", or_dash(d->exit->error));
        }
        kv("oom_kills", "%" PRIu64, d->oom_kills);
}

/* Its cgroup, address and limits. */
static void print_dyno_resources(const Hostd__V1__Dyno *d, const Hostd__V1__DynoSpec *s)
{
        char b1[48], b2[32];

        kv("cgroup", "%s", or_dash(d->cgroup));
        kv("address", "%s", or_dash(d->address));
        kv("port", "%s", uint_or_dash(s->port, b2));
        kv("host_port", "%s", uint_or_dash(d->host_port, b2));
        /* Zero limits are ones hostd did not report; swap 0 under a memory limit means none. */
        kv("memory_limit", "%s", d->memory_limit ? format_bytes_human(d->memory_limit, b1) : "-");
        kv("swap_limit", "%s",
           d->memory_limit || d->swap_limit ? format_bytes_human(d->swap_limit, b1) : "-");
        kv("cpu_weight", "%s", uint_or_dash(d->cpu_weight, b2));
        kv("pids_limit", "%s", uint_or_dash(d->pids_limit, b2));
        kv("log_dropped", "%" PRIu64, d->log_dropped);
}

/* Where its stack and slug come from, and the rest of its spec. */
static void print_dyno_spec(const Hostd__V1__DynoSpec *s)
{
        kv("stack_path", "%s", or_dash(s->stack_path));
        kv("slug_path", "%s", or_dash(s->slug_path));
        kv("stack_digest", "%s", or_dash(s->stack_digest));
        kv("slug_digest", "%s", or_dash(s->slug_digest));
        kv("stack_url", "%s", or_dash(s->stack_url));
        kv("slug_url", "%s", or_dash(s->slug_url));
        if (s->grace_case == HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS)
                kv("grace", "%" PRIu32 "s", s->grace_seconds);
        else
                kv("grace", "host default");
        if (s->boot_case == HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS)
                kv("boot_timeout", "%" PRIu32 "s", s->boot_timeout_seconds);
        else
                kv("boot_timeout", "host default");
        if (s->tty)
                kv("tty", "yes, %" PRIu32 "x%" PRIu32 "%s%s", s->tty_columns, s->tty_rows,
                   *s->tty_term ? ", TERM=" : "", s->tty_term);
        else
                kv("tty", "no");
        kv("app_id", "%s", or_dash(s->app_id));
        kv("slug_commit", "%s", or_dash(s->slug_commit));
        kv("slug_description", "%s", or_dash(s->slug_description));
        kv("release_created_at", "%s", or_dash(s->release_created_at));
        kv("runtime_metrics", "%s", s->runtime_metrics ? "yes" : "no");
}

/* Its log drains and config vars. */
static void print_dyno_drains_env(const Hostd__V1__Dyno *d, const Hostd__V1__DynoSpec *s)
{
        if (s->n_log_drains == 0)
                kv("log_drain", "-");
        for (size_t i = 0; i < s->n_log_drains; i++)
                kv("log_drain", "%s", s->log_drains[i]);
        /* Each drain as hostd sees it now: connection, lines sent, dropped, waiting. */
        for (size_t i = 0; i < d->n_drains; i++) {
                const Hostd__V1__DrainStatus *ds = d->drains[i];
                kv("drain",
                   "%s %s sent=%" PRIu64 " dropped=%" PRIu64 " buffered=%" PRIu32
                   " connects=%" PRIu32 " failures=%" PRIu32 "%s%s",
                   ds->url, ds->connected ? "connected" : "disconnected", ds->sent, ds->dropped,
                   ds->buffered, ds->connects, ds->failures, *ds->last_error ? " last_error=" : "",
                   ds->last_error);
        }
        if (s->n_env == 0)
                kv("env", "-");
        for (size_t i = 0; i < s->n_env; i++)
                kv("env", "%s=%s", s->env[i]->name, s->env[i]->value);
}

void print_dyno(const Hostd__V1__Dyno *d)
{
        const Hostd__V1__DynoSpec *s = spec_of(d);
        print_dyno_state(d, s);
        print_dyno_exit(d);
        print_dyno_resources(d, s);
        print_dyno_spec(s);
        print_dyno_drains_env(d, s);
}

void print_dyno_line(const Hostd__V1__Dyno *d)
{
        const Hostd__V1__DynoSpec *s = spec_of(d);
        char sb[32], eb[128];
        _cleanup_free_ char *name = escape_str(s->name), *id = escape_str(s->id);

        if (name && *name)
                printf("%s (%s): %s", name, id ? id : "?", state_name(d->state, sb));
        else
                printf("%s: %s", id ? id : "?", state_name(d->state, sb));
        if (state_is_final(d->state) && d->exit) {
                _cleanup_free_ char *e = escape_str(describe_exit(d->exit, eb));
                printf(", %s", e ? e : "?");
        }
        putchar('\n');
}
