/* The commands that follow the host as it goes: events (the numbered event stream) and top
 * (the running dynos' figures, refreshed). */
#include <inttypes.h>

#include "command.h"
#include "commands.h"
#include "exit-status.h"
#include "output.h"

/* ---- events ---- */

static const char events_help[] =
        "Usage: hostctl events [--since N] [-f|--follow]\n"
        "\n"
        "Show the host's events: every dyno state change and host event, numbered. Numbers\n"
        "never repeat and have no gaps, also across restarts of hostd: a consumer that keeps\n"
        "the last number it saw and asks with --since that number misses nothing and sees\n"
        "nothing twice. hostd keeps the last events-keep of them.\n"
        "\n"
        "      --since N          only the events after number N (default 0: every kept one)\n"
        "  -f, --follow           then keep printing new events until interrupted\n" COMMON_HELP
        "\n"
        "Each line: NUMBER TIME DYNO KIND STATE MESSAGE (\"-\" for a host event's dyno and\n"
        "state); with --json, one JSON object per event.\n";

struct events_state {
        uint64_t since;
        bool follow, json;
};
static const struct events_state events_defaults = {};

static int events_option(struct invocation *inv, int c, const char *arg)
{
        struct events_state *o = inv->state;
        if (c == 'f')
                return o->follow = true, EXIT_OK;
        if (c == OPT_SINCE) {
                uint64_t v;
                if (safe_atou64(arg, &v) < 0)
                        return usage_error("events", "--since: '%s' is not a number", arg);
                o->since = v;
                return EXIT_OK;
        }
        return usage_error("events", "unknown option");
}

static void print_event_line(const Hostd__V1__Event *e)
{
        char tb[48], sb[32], kb[32];
        const char *k = e->kind ? enum_name(&hostd__v1__event_kind__descriptor, (int)e->kind, kb) :
                                  "-";
        _cleanup_free_ char *dyno = escape_str(or_dash(e->dyno_id)), *kind = escape_str(k),
                            *msg = escape_str(or_dash(e->message));
        printf("%" PRIu64 " %s %s %s %s %s\n", e->seq, format_time(e->time_usec, tb),
               dyno ? dyno : "?", kind ? kind : "?", e->state ? state_name(e->state, sb) : "-",
               msg ? msg : "?");
}

static int print_event(const ProtobufCMessage *m, void *userdata)
{
        const struct events_state *o = userdata;
        const Hostd__V1__Event *e = ((const Hostd__V1__SubscribeEventsResponse *)m)->event;
        if (!e)
                return 0;
        if (o->json)
                print_message_json_line(&e->base);
        else
                print_event_line(e);
        return fflush(stdout) != 0 ? -errno : 0;
}

static int events_run(struct invocation *inv, struct grpc_client *c)
{
        struct events_state *o = inv->state;
        o->json = inv->g->json;
        Hostd__V1__SubscribeEventsRequest req = HOSTD__V1__SUBSCRIBE_EVENTS_REQUEST__INIT;
        req.since = o->since;
        req.follow = o->follow;
        /* The kept events end by themselves: a deadline. A follow has none (issue 18): it
         * waits for events as long as it takes, and keepalive pings notice a dead hostd. */
        int r = grpc_server_stream(c, "SubscribeEvents", &req.base,
                                   &hostd__v1__subscribe_events_response__descriptor,
                                   o->follow ? -1 : c->timeout_ms, -1, print_event, o);
        if (r < 0 && !c->error[0]) {
                fprintf(stderr, "hostctl: events: write output: %s\n", strerror(-r));
                return EXIT_REMOTE;
        }
        if (r < 0)
                return call_failed(c, r, "events");
        return EXIT_OK;
}

static const struct option events_options[] = {
        COMMON_LONG_OPTIONS,
        { "since", required_argument, NULL, OPT_SINCE },
        { "follow", no_argument, NULL, 'f' },
        {},
};

const struct command command_events = {
        .name = "events",
        .help = events_help,
        .optstring = ":hf",
        .options = events_options,
        COMMAND_STATE(events_defaults),
        .option = events_option,
        .prepare = command_no_args,
        .run = events_run,
        .connects = true,
};

/* ---- top ---- */

static const char top_help[] =
        "Usage: hostctl top [--interval SECONDS] [-n N] [--json]\n"
        "\n"
        "Show every running dyno's figures, refreshed from hostd's SubscribeMetrics stream:\n"
        "ID, NAME, STATE, CPU (percent of one CPU since the previous refresh; \"-\" on the\n"
        "first), MEM (memory, swap included) against QUOTA and its share, PIDS, the network\n"
        "bytes it received (RX) and sent (TX), and its 1-minute load average, under a line\n"
        "with the host's load and memory. On a terminal the table is redrawn in place;\n"
        "otherwise each refresh is printed after the last, a blank line between them.\n"
        "\n"
        "      --interval SECONDS refresh this often (1..3600, default 2)\n"
        "  -n, --iterations N     stop after N refreshes (default: until interrupted)\n"
        "      --json             one JSON object per refresh, the API's\n"
        "                         SubscribeMetricsResponse\n" COMMON_HELP;

struct top_prev {
        char *id;
        uint64_t cpu_usec;
        int64_t time_usec;
};

struct top_state {
        uint32_t interval, iterations, done;
        bool json, tty;
        struct top_prev *prev;
        size_t n_prev;
};

static const struct top_state top_defaults = { .interval = 2 };

static int top_option(struct invocation *inv, int c, const char *arg)
{
        struct top_state *t = inv->state;
        if (c == OPT_INTERVAL) {
                uint64_t v;
                int r = safe_atou64(arg, &v);
                if (r < 0 && r != -ERANGE)
                        return usage_error("top", "--interval: '%s' is not a number (1..3600)",
                                           arg);
                if (r < 0 || v < 1 || v > 3600)
                        return usage_error("top", "--interval: '%s' is out of range (1..3600)",
                                           arg);
                t->interval = (uint32_t)v;
                return EXIT_OK;
        }
        if (c == 'n') {
                int r = parse_uint_flag("top", "--iterations", arg, UINT32_MAX, &t->iterations);
                if (r != EXIT_OK)
                        return r;
                if (t->iterations == 0)
                        return usage_error("top", "--iterations: '%s' must be at least 1", arg);
                return EXIT_OK;
        }
        return usage_error("top", "unknown option");
}

static void top_prev_free(struct top_prev *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i].id);
        free(v);
}

static const struct top_prev *top_find(const struct top_state *t, const char *id)
{
        for (size_t i = 0; i < t->n_prev; i++)
                if (strcmp(t->prev[i].id, id) == 0)
                        return &t->prev[i];
        return NULL;
}

/* CPU is the share of one CPU since the dyno's figures of the previous refresh. */
static int top_add_dyno(struct table *tb, const struct top_state *t,
                        const Hostd__V1__DynoMetrics *d)
{
        char sb[32], cpu[32] = "-", mem[32], quota[32], pct[32] = "-", pids[32], rx[32], tx[32],
                     load[32];
        const struct top_prev *p = top_find(t, d->dyno_id);
        if (p && d->time_usec > p->time_usec && d->cpu_usec >= p->cpu_usec)
                snprintf(cpu, sizeof cpu, "%.1f%%",
                         100.0 * (double)(d->cpu_usec - p->cpu_usec) /
                                 (double)(d->time_usec - p->time_usec));
        if (d->memory_quota)
                snprintf(pct, sizeof pct, "%.1f%%",
                         100.0 * (double)d->memory_total / (double)d->memory_quota);
        snprintf(pids, sizeof pids, "%" PRIu64, d->pids);
        snprintf(load, sizeof load, "%.2f", d->load_1m);
        if (table_add(tb, d->dyno_id) < 0 || table_add(tb, or_dash(d->name)) < 0 ||
            table_add(tb, state_name(d->state, sb)) < 0 || table_add(tb, cpu) < 0 ||
            table_add(tb, format_bytes_human(d->memory_total, mem)) < 0 ||
            table_add(tb, d->memory_quota ? format_bytes_human(d->memory_quota, quota) : "-") < 0 ||
            table_add(tb, pct) < 0 || table_add(tb, pids) < 0 ||
            table_add(tb, format_bytes_human(d->rx_bytes, rx)) < 0 ||
            table_add(tb, format_bytes_human(d->tx_bytes, tx)) < 0 || table_add(tb, load) < 0)
                return -ENOMEM;
        return 0;
}

static void top_print_host(const Hostd__V1__Host *h)
{
        char avail[32], total[32];
        printf("%s: %" PRIu32 " dynos, load %.2f %.2f %.2f, memory %s available of %s, "
               "%" PRIu32 " CPUs\n\n",
               or_dash(h->hostname), h->dynos, h->load_1m, h->load_5m, h->load_15m,
               format_bytes_human(h->memory_available, avail),
               format_bytes_human(h->memory_total, total), h->cpus);
}

/* One refresh: the host's line and the table, redrawn in place on a terminal; the figures
 * kept for the next one's CPU. */
static int top_table(struct top_state *t, const Hostd__V1__SubscribeMetricsResponse *b)
{
        static const char *const header[] = { "ID",   "NAME", "STATE", "CPU", "MEM", "QUOTA",
                                              "MEM%", "PIDS", "RX",    "TX",  "LOAD" };
        struct table tb = { .n_cols = ELEMENTSOF(header) };
        struct top_prev *now = calloc(b->n_dynos + 1, sizeof *now);
        if (!now)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; i < ELEMENTSOF(header) && r >= 0; i++)
                r = table_add(&tb, header[i]);
        for (size_t i = 0; i < b->n_dynos && r >= 0; i++) {
                const Hostd__V1__DynoMetrics *d = b->dynos[i];
                now[i] = (struct top_prev){ strdup(d->dyno_id), d->cpu_usec, d->time_usec };
                r = now[i].id ? top_add_dyno(&tb, t, d) : -ENOMEM;
        }
        if (r < 0) {
                table_free(&tb);
                top_prev_free(now, b->n_dynos);
                return r;
        }
        if (t->tty)
                fputs("\033[H\033[2J", stdout); /* home, clear: redrawn in place */
        else if (t->done > 0)
                putchar('\n');
        if (b->host)
                top_print_host(b->host);
        table_print(&tb);
        table_free(&tb);
        top_prev_free(t->prev, t->n_prev);
        t->prev = now;
        t->n_prev = b->n_dynos;
        return 0;
}

static int top_batch(const ProtobufCMessage *msg, void *userdata)
{
        struct top_state *t = userdata;
        const Hostd__V1__SubscribeMetricsResponse *b =
                (const Hostd__V1__SubscribeMetricsResponse *)msg;
        if (t->json)
                print_message_json_line(&b->base);
        else {
                int r = top_table(t, b);
                if (r < 0)
                        return r;
        }
        if (fflush(stdout) != 0)
                return -errno;
        t->done++;
        return t->iterations && t->done >= t->iterations ? -ECANCELED : 0;
}

static int top_run(struct invocation *inv, struct grpc_client *c)
{
        struct top_state *t = inv->state;
        t->json = inv->g->json;
        t->tty = isatty(STDOUT_FILENO);
        Hostd__V1__SubscribeMetricsRequest req = HOSTD__V1__SUBSCRIBE_METRICS_REQUEST__INIT;
        req.interval_seconds = t->interval;
        /* A subscription has no deadline; its first batch comes at once, and --timeout is how
         * long hostctl waits for it. */
        int r = grpc_server_stream(c, "SubscribeMetrics", &req.base,
                                   &hostd__v1__subscribe_metrics_response__descriptor, -1,
                                   c->timeout_ms, top_batch, t);
        if (r == -ECANCELED && t->iterations && t->done >= t->iterations)
                return EXIT_OK;
        if (r < 0 && !c->error[0]) {
                fprintf(stderr, "hostctl: top: write output: %s\n", strerror(-r));
                return EXIT_REMOTE;
        }
        if (r < 0)
                return call_failed(c, r, "top");
        return EXIT_OK;
}

static void top_done(struct invocation *inv)
{
        struct top_state *t = inv->state;
        top_prev_free(t->prev, t->n_prev);
}

static const struct option top_options[] = {
        COMMON_LONG_OPTIONS,
        { "interval", required_argument, NULL, OPT_INTERVAL },
        { "iterations", required_argument, NULL, 'n' },
        {},
};

const struct command command_top = {
        .name = "top",
        .help = top_help,
        .optstring = ":hn:",
        .options = top_options,
        COMMAND_STATE(top_defaults),
        .option = top_option,
        .prepare = command_no_args,
        .run = top_run,
        .done = top_done,
        .connects = true,
};
