/* The commands of the host: host, drain, undrain, version. */
#include <inttypes.h>
#include <time.h>

#include "command.h"
#include "commands.h"
#include "config-build.h"
#include "exit-status.h"
#include "output.h"

static int get_host(struct grpc_client *c, Hostd__V1__GetHostResponse **ret)
{
        Hostd__V1__GetHostRequest req = HOSTD__V1__GET_HOST_REQUEST__INIT;
        return UNARY(c, "GetHost", &req, hostd__v1__get_host_response, ret);
}

/* The Host of a GetHost answer, or NULL after telling the user hostd left it out. */
static const Hostd__V1__Host *reply_host(const Hostd__V1__GetHostResponse *resp, const char *what)
{
        if (!resp->host)
                fprintf(stderr, "hostctl: %s: hostd's reply has no host\n", what);
        return resp->host;
}

/* ---- host ---- */

static const char host_help[] =
        "Usage: hostctl host\n"
        "\n"
        "Show the host: name, hostd's version, boot id, cgroup mode, CPUs, memory (total;\n"
        "available, page cache that can be reclaimed counting as free; reserved for the host;\n"
        "allocatable to dynos, the total less the reserve; allocated to running dynos), the\n"
        "CPUs dedicated sizes may take and how many are free, the dynos running and the\n"
        "most it takes, whether it is draining, and the dyno sizes it offers.\n"
        "\n" COMMON_HELP;

static void print_host(const Hostd__V1__Host *h)
{
        char b[32];
        kv("hostname", "%s", or_dash(h->hostname));
        kv("version", "%s", or_dash(h->version));
        kv("boot_id", "%s", or_dash(h->boot_id));
        kv("cgroup_mode", "%s", or_dash(h->cgroup_mode));
        kv("cpus", "%" PRIu32, h->cpus);
        kv("memory_total", "%s", format_bytes_human(h->memory_total, b));
        kv("memory_available", "%s", format_bytes_human(h->memory_available, b));
        kv("memory_reserved", "%s", format_bytes_human(h->memory_reserved, b));
        kv("memory_allocatable", "%s", format_bytes_human(h->memory_allocatable, b));
        kv("memory_allocated", "%s", format_bytes_human(h->memory_allocated, b));
        kv("dedicated_cpu_pool", "%s", *h->dedicated_cpu_pool ? h->dedicated_cpu_pool : "none");
        kv("dedicated_cpus_free", "%" PRIu32, h->dedicated_cpus_free);
        kv("dynos", "%" PRIu32 " of at most %" PRIu32, h->dynos, h->max_dynos);
        kv("memory_committed", "%s", format_bytes_human(h->memory_committed, b));
        if (h->draining && h->drain_deadline_usec) {
                char when[64];
                time_t t = (time_t)(h->drain_deadline_usec / 1000000);
                struct tm tm;
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
                kv("draining", "yes, the running dynos stop at %s", when);
        } else
                kv("draining", "%s", h->draining ? "yes" : "no");
}

static int sizes_add(struct table *t, const Hostd__V1__Size *s)
{
        char mem[32], r15[32], pids[32], w[32], cpus[32];
        snprintf(r15, sizeof r15, "%gx", s->r15_multiple);
        snprintf(pids, sizeof pids, "%" PRIu64, s->pids);
        snprintf(w, sizeof w, "%" PRIu32, s->cpu_weight);
        snprintf(cpus, sizeof cpus, "%" PRIu32, s->dedicated_cpus);
        if (table_add(t, or_dash(s->name)) < 0 ||
            table_add(t, format_bytes_human(s->memory_bytes, mem)) < 0 || table_add(t, r15) < 0 ||
            table_add(t, pids) < 0 || table_add(t, w) < 0 ||
            table_add(t, s->dedicated_cpus ? cpus : "shared") < 0 ||
            table_add(t, s->swap ? "yes" : "no") < 0)
                return -ENOMEM;
        return 0;
}

/* The dyno sizes the host offers, after a blank line. */
static int print_sizes(const Hostd__V1__Host *h)
{
        static const char *const header[] = { "SIZE",       "MEMORY",         "R15", "PIDS",
                                              "CPU_WEIGHT", "DEDICATED_CPUS", "SWAP" };
        struct table t = { .n_cols = ELEMENTSOF(header) };
        int r = 0;
        for (size_t i = 0; i < ELEMENTSOF(header) && r >= 0; i++)
                r = table_add(&t, header[i]);
        for (size_t i = 0; i < h->n_sizes && r >= 0; i++)
                r = sizes_add(&t, h->sizes[i]);
        if (r < 0) {
                table_free(&t);
                fprintf(stderr, "hostctl: host: out of memory\n");
                return EXIT_REMOTE;
        }
        putchar('\n');
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
}

static int host_run(struct invocation *inv, struct grpc_client *c)
{
        _cleanup_message_ Hostd__V1__GetHostResponse *resp = NULL;
        int r = get_host(c, &resp);
        if (r < 0)
                return call_failed(c, r, "host");
        const Hostd__V1__Host *h = reply_host(resp, "host");
        if (!h)
                return EXIT_UNREACHABLE;
        if (inv->g->json)
                return print_message_json(&h->base);
        print_host(h);
        if (h->n_sizes == 0)
                return EXIT_OK;
        return print_sizes(h);
}

const struct command command_host = {
        .name = "host",
        .help = host_help,
        .optstring = ":h",
        .options = common_options,
        .prepare = command_no_args,
        .run = host_run,
        .connects = true,
};

/* ---- drain, undrain ---- */

static const char drain_help[] =
        "Usage: hostctl drain [--deadline SECONDS]\n"
        "\n"
        "Drain the host: hostd takes no new dynos (a start is refused with FAILED_PRECONDITION),\n"
        "and says so in 'hostctl host' and the event stream; the dynos running go on, restarts\n"
        "and crash restarts included. The drain lasts across restarts of hostd, until\n"
        "'hostctl undrain'.\n"
        "\n"
        "      --deadline SECONDS   then stop the dynos still running, each with its grace\n"
        "                           period, once SECONDS (1..604800) have passed\n"
        "\n" COMMON_HELP;

static const char undrain_help[] =
        "Usage: hostctl undrain\n"
        "\n"
        "End a drain: new dynos are taken again, and a pending deadline is cancelled.\n"
        "\n" COMMON_HELP;

struct deadline_state {
        bool set;
        uint32_t seconds;
};
static const struct deadline_state deadline_defaults = {};

static int deadline_option(struct invocation *inv, int c, const char *arg)
{
        struct deadline_state *o = inv->state;
        if (c != OPT_DEADLINE)
                return EXIT_OK;
        o->set = true;
        return parse_uint_flag("drain", "--deadline", arg, UINT32_MAX, &o->seconds);
}

static int drain_run(struct invocation *inv, struct grpc_client *c)
{
        const struct deadline_state *dl = inv->state;
        Hostd__V1__DrainRequest req = HOSTD__V1__DRAIN_REQUEST__INIT;
        if (dl->set) {
                req.deadline_case = HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS;
                req.deadline_seconds = dl->seconds;
        }
        _cleanup_message_ Hostd__V1__DrainResponse *resp = NULL;
        int r = UNARY(c, "Drain", &req, hostd__v1__drain_response, &resp);
        if (r < 0)
                return call_failed(c, r, "drain");
        if (inv->g->json)
                printf("{\"draining\": true}\n");
        else if (dl->set)
                printf("draining: no new dynos; the running ones stop in %" PRIu32 " s\n",
                       dl->seconds);
        else
                printf("draining: no new dynos\n");
        return EXIT_OK;
}

static int undrain_run(struct invocation *inv, struct grpc_client *c)
{
        Hostd__V1__UndrainRequest req = HOSTD__V1__UNDRAIN_REQUEST__INIT;
        _cleanup_message_ Hostd__V1__UndrainResponse *resp = NULL;
        int r = UNARY(c, "Undrain", &req, hostd__v1__undrain_response, &resp);
        if (r < 0)
                return call_failed(c, r, "undrain");
        if (inv->g->json)
                printf("{\"draining\": false}\n");
        else
                printf("undrained: new dynos are taken\n");
        return EXIT_OK;
}

static const struct option drain_options[] = {
        COMMON_LONG_OPTIONS,
        { "deadline", required_argument, NULL, OPT_DEADLINE },
        {},
};

const struct command command_drain = {
        .name = "drain",
        .help = drain_help,
        .optstring = ":h",
        .options = drain_options,
        COMMAND_STATE(deadline_defaults),
        .option = deadline_option,
        .prepare = command_no_args,
        .run = drain_run,
        .connects = true,
};

const struct command command_undrain = {
        .name = "undrain",
        .help = undrain_help,
        .optstring = ":h",
        .options = common_options,
        .prepare = command_no_args,
        .run = undrain_run,
        .connects = true,
};

/* ---- version ---- */

static const char version_help[] =
        "Usage: hostctl version\n"
        "\n"
        "Show hostctl's version and the version of the hostd it reaches.\n"
        "\n" COMMON_HELP;

/* The client's own version first: it is worth having when hostd is not there. */
static int version_prepare(struct invocation *inv)
{
        int r = command_no_args(inv);
        if (r != EXIT_OK)
                return r;
        if (!inv->g->json) {
                printf("hostctl %s\n", HOSTD_VERSION);
                fflush(stdout);
        }
        return EXIT_OK;
}

static int print_versions_json(const Hostd__V1__Host *h)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        if (o) {
                json_object_object_add(o, "hostctl", json_object_new_string(HOSTD_VERSION));
                const char *v = h->version ? h->version : "";
                json_object_object_add(o, "hostd", json_string_utf8((const uint8_t *)v, strlen(v)));
        }
        return print_json(o, true);
}

static int version_run(struct invocation *inv, struct grpc_client *c)
{
        _cleanup_message_ Hostd__V1__GetHostResponse *resp = NULL;
        int r = get_host(c, &resp);
        if (r < 0)
                return call_failed(c, r, "version");
        const Hostd__V1__Host *h = reply_host(resp, "version");
        if (!h)
                return EXIT_UNREACHABLE;
        if (inv->g->json)
                return print_versions_json(h);
        _cleanup_free_ char *v = escape_str(or_dash(h->version));
        printf("hostd %s\n", v ? v : "?");
        return EXIT_OK;
}

const struct command command_version = {
        .name = "version",
        .help = version_help,
        .optstring = ":h",
        .options = common_options,
        .prepare = version_prepare,
        .run = version_run,
        .connects = true,
};
