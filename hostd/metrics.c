/* See metrics.h. The figures come from the dynos' cgroup files (cg_memory_usage,
 * cg_cpu_pids); a dyno whose files cannot be read (it is ending) is left out of that round. */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>

#include "cgroup.h"
#include "manager.h"
#include "util.h"

/* A label value: backslash, double quote and newline escaped, as the format asks. */
static void put_label(FILE *f, const char *s)
{
        for (; s && *s; s++) {
                if (*s == '\\' || *s == '"')
                        fputc('\\', f), fputc(*s, f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

/* One dyno's figures, read once per round. */
struct sample {
        const struct dyno *d;
        uint64_t value[5]; /* in the order of metrics[] */
};

static const struct {
        const char *name, *type, *help;
} metrics[] = {
        { "hostd_dyno_memory_bytes", "gauge", "Memory the dyno uses, swap included." },
        { "hostd_dyno_swap_bytes", "gauge", "Swap the dyno uses." },
        { "hostd_dyno_memory_quota_bytes", "gauge", "The dyno's memory quota." },
        { "hostd_dyno_cpu_seconds_total", "counter", "CPU time the dyno used." },
        { "hostd_dyno_pids", "gauge", "Processes and threads in the dyno." },
};
#define CPU_METRIC 3 /* microseconds, printed as seconds */

struct round {
        struct manager *m;
        struct sample *samples;
        size_t n;
        size_t by_state[16];
};

static void collect(struct dyno *d, void *userdata)
{
        struct round *rd = userdata;
        if ((size_t)d->state < ELEMENTSOF(rd->by_state))
                rd->by_state[d->state]++;
        if (!dyno_is_live(d) || d->pid <= 0)
                return;
        uint64_t mem, swap, cpu, pids;
        if (cg_memory_usage(rd->m->cg, dyno_cgroup_name(d), &mem, &swap) < 0 ||
            cg_cpu_pids(rd->m->cg, dyno_cgroup_name(d), &cpu, &pids) < 0)
                return;
        rd->samples[rd->n++] = (struct sample){
                .d = d,
                .value = { mem + swap, swap, d->size ? d->size->memory : 0, cpu, pids },
        };
}

static void labels(FILE *f, const struct dyno *d)
{
        fputs("{dyno_id=\"", f);
        put_label(f, d->id);
        fputs("\",dyno=\"", f);
        put_label(f, d->spec->name);
        fputs("\",app=\"", f);
        put_label(f, d->spec->app);
        fputs("\"}", f);
}

static int write_round(struct manager *m)
{
        struct round rd = { .m = m, .samples = calloc(m->n_dynos + 1, sizeof(struct sample)) };
        if (!rd.samples)
                return -ENOMEM;
        manager_foreach(m, collect, &rd);

        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f) {
                free(rd.samples);
                return -ENOMEM;
        }
        for (size_t i = 0; i < ELEMENTSOF(metrics); i++) {
                fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metrics[i].name, metrics[i].help,
                        metrics[i].name, metrics[i].type);
                for (size_t k = 0; k < rd.n; k++) {
                        uint64_t v = rd.samples[k].value[i];
                        fputs(metrics[i].name, f);
                        labels(f, rd.samples[k].d);
                        if (i == CPU_METRIC)
                                fprintf(f, " %" PRIu64 ".%06" PRIu64 "\n", v / 1000000,
                                        v % 1000000);
                        else
                                fprintf(f, " %" PRIu64 "\n", v);
                }
        }
        free(rd.samples);
        fputs("# HELP hostd_dynos Dynos this host knows, by state.\n# TYPE hostd_dynos gauge\n", f);
        for (size_t s = 1; s < ELEMENTSOF(rd.by_state); s++) {
                const char *name = dyno_state_name((Hostd__V1__DynoState)s);
                if (name && *name && strcmp(name, "unknown") != 0)
                        fprintf(f, "hostd_dynos{state=\"%s\"} %zu\n", name, rd.by_state[s]);
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        int r = write_file_atomic(m->config->prometheus_file, buf, len, 0644);
        free(buf);
        return r;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        int r = write_round(m);
        if (r < 0)
                log_warning_errno(r, "metrics: write %s: %m", m->config->prometheus_file);
        sd_event_source_set_time_relative(s, (uint64_t)m->config->metrics_interval * 1000000);
        return 0;
}

int metrics_start(struct manager *m)
{
        if (!*m->config->prometheus_file)
                return 0;
        int r = sd_event_add_time_relative(m->event, &m->metrics_timer, CLOCK_MONOTONIC, 0, 0,
                                           on_tick, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->metrics_timer, SD_EVENT_ON);
        return r;
}

void metrics_stop(struct manager *m)
{
        m->metrics_timer = sd_event_source_disable_unref(m->metrics_timer);
}
