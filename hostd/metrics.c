/* See metrics.h. The textfile and the runtime-metrics lines; SubscribeMetrics is in
 * metrics-stream.c. */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>

#include "manager.h"
#include "sampler.h"
#include "util.h"

/* ---- Prometheus textfile ---- */

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

enum unit { U_COUNT, U_USEC_AS_SECONDS, U_LOAD };

/* Each metric reads one figure of a sample. */
struct metric {
        const char *name, *type, *help;
        enum unit unit;
        double (*get)(const struct dyno *d, const struct dyno_sample *ds);
};

#define FIELD(f) ((double)ds->f)
static double m_memory(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.memory) + FIELD(cg.swap);
}
static double m_rss(const struct dyno *d, const struct dyno_sample *ds) { return FIELD(cg.rss); }
static double m_cache(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.cache);
}
static double m_swap(const struct dyno *d, const struct dyno_sample *ds) { return FIELD(cg.swap); }
static double m_quota(const struct dyno *d, const struct dyno_sample *ds)
{
        return d->size ? (double)d->size->memory : 0;
}
static double m_pgpgin(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.pgpgin);
}
static double m_pgpgout(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.pgpgout);
}
static double m_cpu(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.cpu_usec);
}
static double m_throttled(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.throttled_usec);
}
static double m_pids(const struct dyno *d, const struct dyno_sample *ds) { return FIELD(cg.pids); }
static double m_oom(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(cg.oom_kills);
}
static double m_load1(const struct dyno *d, const struct dyno_sample *ds) { return ds->load[0]; }
static double m_load5(const struct dyno *d, const struct dyno_sample *ds) { return ds->load[1]; }
static double m_load15(const struct dyno *d, const struct dyno_sample *ds) { return ds->load[2]; }
static double m_rxb(const struct dyno *d, const struct dyno_sample *ds) { return FIELD(rx_bytes); }
static double m_txb(const struct dyno *d, const struct dyno_sample *ds) { return FIELD(tx_bytes); }
static double m_rxp(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(rx_packets);
}
static double m_txp(const struct dyno *d, const struct dyno_sample *ds)
{
        return FIELD(tx_packets);
}
#undef FIELD

static const struct metric metrics[] = {
        { "hostd_dyno_memory_bytes", "gauge", "Memory the dyno uses, swap included.", U_COUNT,
          m_memory },
        { "hostd_dyno_memory_rss_bytes", "gauge", "Anonymous memory of the dyno.", U_COUNT, m_rss },
        { "hostd_dyno_memory_cache_bytes", "gauge", "Page cache charged to the dyno.", U_COUNT,
          m_cache },
        { "hostd_dyno_swap_bytes", "gauge", "Swap the dyno uses.", U_COUNT, m_swap },
        { "hostd_dyno_memory_quota_bytes", "gauge", "The dyno's memory quota.", U_COUNT, m_quota },
        { "hostd_dyno_memory_pgpgin_total", "counter", "Pages paged in (see docs/INTERNALS.md).",
          U_COUNT, m_pgpgin },
        { "hostd_dyno_memory_pgpgout_total", "counter", "Pages paged out (see docs/INTERNALS.md).",
          U_COUNT, m_pgpgout },
        { "hostd_dyno_cpu_seconds_total", "counter", "CPU time the dyno used.", U_USEC_AS_SECONDS,
          m_cpu },
        { "hostd_dyno_cpu_throttled_seconds_total", "counter",
          "Time the dyno's CPU quota held it back.", U_USEC_AS_SECONDS, m_throttled },
        { "hostd_dyno_pids", "gauge", "Processes and threads in the dyno.", U_COUNT, m_pids },
        { "hostd_dyno_oom_kills_total", "counter", "Processes of the dyno the OOM killer killed.",
          U_COUNT, m_oom },
        { "hostd_dyno_load1", "gauge", "The dyno's load average over 1 minute.", U_LOAD, m_load1 },
        { "hostd_dyno_load5", "gauge", "The dyno's load average over 5 minutes.", U_LOAD, m_load5 },
        { "hostd_dyno_load15", "gauge", "The dyno's load average over 15 minutes.", U_LOAD,
          m_load15 },
        { "hostd_dyno_network_receive_bytes_total", "counter", "Bytes the dyno received.", U_COUNT,
          m_rxb },
        { "hostd_dyno_network_transmit_bytes_total", "counter", "Bytes the dyno sent.", U_COUNT,
          m_txb },
        { "hostd_dyno_network_receive_packets_total", "counter", "Packets the dyno received.",
          U_COUNT, m_rxp },
        { "hostd_dyno_network_transmit_packets_total", "counter", "Packets the dyno sent.", U_COUNT,
          m_txp },
};

struct textfile {
        FILE *f;
        const struct metric *metric;
        size_t by_state[16];
};

static void put_sample(struct dyno *d, const struct dyno_sample *ds, void *userdata)
{
        struct textfile *t = userdata;
        FILE *f = t->f;
        fputs(t->metric->name, f);
        fputs("{dyno_id=\"", f);
        put_label(f, d->id);
        fputs("\",dyno=\"", f);
        put_label(f, d->spec->name);
        fputs("\",app=\"", f);
        put_label(f, d->spec->app);
        fputs("\"}", f);
        double v = t->metric->get(d, ds);
        if (t->metric->unit == U_USEC_AS_SECONDS) {
                uint64_t u = (uint64_t)v;
                fprintf(f, " %" PRIu64 ".%06" PRIu64 "\n", u / 1000000, u % 1000000);
        } else if (t->metric->unit == U_LOAD)
                fprintf(f, " %.4f\n", v);
        else
                fprintf(f, " %" PRIu64 "\n", (uint64_t)v);
}

static void count_state(struct dyno *d, void *userdata)
{
        struct textfile *t = userdata;
        if ((size_t)d->state < ELEMENTSOF(t->by_state))
                t->by_state[d->state]++;
}

static int textfile_write(struct metrics *mt)
{
        struct manager *m = mt->m;
        char *buf = NULL;
        size_t len = 0;
        struct textfile t = { .f = open_memstream(&buf, &len) };
        if (!t.f)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(metrics); i++) {
                fprintf(t.f, "# HELP %s %s\n# TYPE %s %s\n", metrics[i].name, metrics[i].help,
                        metrics[i].name, metrics[i].type);
                t.metric = &metrics[i];
                sampler_foreach(mt->sampler, put_sample, &t);
        }
        manager_foreach(m, count_state, &t);
        fputs("# HELP hostd_dynos Dynos this host knows, by state.\n# TYPE hostd_dynos gauge\n",
              t.f);
        for (size_t s = 1; s < ELEMENTSOF(t.by_state); s++) {
                const char *name = dyno_state_name((Hostd__V1__DynoState)s);
                if (name && *name && strcmp(name, "unknown") != 0)
                        fprintf(t.f, "hostd_dynos{state=\"%s\"} %zu\n", name, t.by_state[s]);
        }
        const struct host_sample *h = sampler_host(mt->sampler);
        fprintf(t.f,
                "# HELP hostd_host_memory_bytes The host's memory.\n"
                "# TYPE hostd_host_memory_bytes gauge\n"
                "hostd_host_memory_bytes %" PRIu64 "\n"
                "# HELP hostd_host_memory_available_bytes Memory available for new work "
                "(MemAvailable).\n"
                "# TYPE hostd_host_memory_available_bytes gauge\n"
                "hostd_host_memory_available_bytes %" PRIu64 "\n"
                "# HELP hostd_host_cpus Online CPUs.\n"
                "# TYPE hostd_host_cpus gauge\n"
                "hostd_host_cpus %" PRIu32 "\n",
                h->memory_total, h->memory_available, h->cpus);
        if (fclose(t.f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        int r = write_file_atomic(m->config->prometheus_file, buf, len, 0644);
        free(buf);
        return r;
}

static void on_textfile(struct sampler *s, void *userdata)
{
        struct metrics *mt = userdata;
        int r = textfile_write(mt);
        if (r < 0)
                log_warning_errno(r, "metrics: write %s: %m", mt->m->config->prometheus_file);
}

/* ---- runtime-metrics lines ---- */

#define MB(x) ((double)(x) / (1024.0 * 1024.0))

void metrics_runtime_lines(const struct dyno *d, const struct dyno_sample *ds, char *load,
                           size_t load_len, char *memory, size_t memory_len)
{
        const char *name = d->spec && *d->spec->name ? d->spec->name : d->id;
        /* dyno= is Heroku's heroku.<app id>.<the run's UUID, $HEROKU_DYNO_ID>; the app's
         * name stands in for an id the spec does not give. */
        const char *app = !d->spec         ? "" :
                          *d->spec->app_id ? d->spec->app_id :
                          *d->spec->app    ? d->spec->app :
                                             d->id;
        char dyno[160];
        snprintf(dyno, sizeof dyno, "heroku.%s.%s", app, *d->run_id ? d->run_id : d->id);
        snprintf(load, load_len,
                 "source=%s dyno=%s sample#load_avg_1m=%.2f sample#load_avg_5m=%.2f "
                 "sample#load_avg_15m=%.2f",
                 name, dyno, ds->load[0], ds->load[1], ds->load[2]);
        snprintf(memory, memory_len,
                 "source=%s dyno=%s sample#memory_total=%.2fMB sample#memory_rss=%.2fMB "
                 "sample#memory_cache=%.2fMB sample#memory_swap=%.2fMB "
                 "sample#memory_pgpgin=%" PRIu64 "pages sample#memory_pgpgout=%" PRIu64 "pages "
                 "sample#memory_quota=%.2fMB",
                 name, dyno, MB(ds->cg.memory + ds->cg.swap), MB(ds->cg.rss), MB(ds->cg.cache),
                 MB(ds->cg.swap), ds->cg.pgpgin, ds->cg.pgpgout, MB(d->size ? d->size->memory : 0));
}

static void runtime_one(struct dyno *d, const struct dyno_sample *ds, void *userdata)
{
        if (!d->spec || !d->spec->runtime_metrics)
                return;
        char load[512], memory[1024];
        metrics_runtime_lines(d, ds, load, sizeof load, memory, sizeof memory);
        dyno_log_metrics(d, load);
        dyno_log_metrics(d, memory);
}

static void on_runtime(struct sampler *s, void *userdata) { sampler_foreach(s, runtime_one, NULL); }

/* ---- start and stop ---- */

int metrics_start(struct manager *m)
{
        struct metrics *mt = calloc(1, sizeof *mt);
        if (!mt)
                return -ENOMEM;
        mt->m = m;
        int r = sampler_new(m, &mt->sampler);
        if (r < 0) {
                free(mt);
                return r;
        }
        m->metrics = mt;
        /* Always on: the sampler's own pace, so that load averages have a steady input. */
        r = sampler_listen(mt->sampler, m->config->runtime_metrics_interval, false, on_runtime, mt,
                           &mt->runtime);
        if (r >= 0 && *m->config->prometheus_file)
                r = sampler_listen(mt->sampler, m->config->metrics_interval, true, on_textfile, mt,
                                   &mt->textfile);
        if (r < 0)
                metrics_stop(m);
        return r;
}

void metrics_stop(struct manager *m)
{
        struct metrics *mt = m->metrics;
        if (!mt)
                return;
        metrics_streams_free(mt);
        sampler_free(mt->sampler); /* and its listeners */
        free(mt);
        m->metrics = NULL;
}
