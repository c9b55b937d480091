/* SubscribeMetrics: subscribers of one interval share one timer, one round of the sampler and
 * one encoded batch, packed once and sent as it is to each (call_send_packed), so a thousand
 * dynos cost one encoding per interval, not one per subscriber.
 *
 * A slow subscriber: a batch is queued for a client only when everything sent to it before
 * has left hostd (call_pending is 0). Otherwise the batch is dropped for that
 * client and counted (logged when it next gets one). The figures are gauges and counters
 * since the dyno's start, so a dropped batch loses resolution, not data, and hostd holds at
 * most one batch per client, however slowly it reads. */
#include "metrics.h"

#include <inttypes.h>

#include "config-build.h"
#include "admission.h"
#include "cgroup.h"
#include "call.h"
#include "manager.h"
#include "sampler.h"
#include "util.h"
#include "validate.h"

struct metrics_stream;

struct subscriber {
        struct metrics_stream *st;
        struct call *call;
        uint64_t dropped; /* batches skipped since the last one sent */
        struct subscriber *next;
};

struct metrics_stream {
        struct metrics *mt;
        uint32_t interval;
        struct sampler_listener *listener;
        struct subscriber *subs;
        struct metrics_stream *next;
};

struct batch {
        Hostd__V1__DynoMetrics *items;
        Hostd__V1__DynoMetrics **ptrs;
        size_t n, cap;
};

static void add_dyno(struct dyno *d, const struct dyno_sample *ds, void *userdata)
{
        struct batch *b = userdata;
        if (b->n == b->cap)
                return;
        Hostd__V1__DynoMetrics *o = &b->items[b->n];
        hostd__v1__dyno_metrics__init(o);
        const struct cg_stats *st = &ds->cg;
        o->dyno_id = d->id;
        o->name = d->spec && d->spec->name ? d->spec->name : (char *)"";
        o->state = d->state;
        o->time_usec = ds->time_usec;
        o->memory_total = st->memory + st->swap;
        o->memory_rss = st->rss;
        o->memory_cache = st->cache;
        o->memory_swap = st->swap;
        o->memory_quota = d->size ? d->size->memory : 0;
        o->pgpgin = st->pgpgin;
        o->pgpgout = st->pgpgout;
        o->cpu_usec = st->cpu_usec;
        o->throttled_usec = st->throttled_usec;
        o->pids = st->pids;
        o->load_1m = ds->load[0];
        o->load_5m = ds->load[1];
        o->load_15m = ds->load[2];
        o->oom_kills = st->oom_kills;
        o->rx_bytes = ds->rx_bytes;
        o->tx_bytes = ds->tx_bytes;
        o->rx_packets = ds->rx_packets;
        o->tx_packets = ds->tx_packets;
        o->cpu_pressure_some = st->cpu_psi.some_avg[0];
        o->memory_pressure_some = st->memory_psi.some_avg[0];
        o->memory_pressure_full = st->memory_psi.full_avg[0];
        o->io_pressure_some = st->io_psi.some_avg[0];
        o->io_pressure_full = st->io_psi.full_avg[0];
        b->ptrs[b->n++] = o;
}

void metrics_fill_host(struct manager *m, Hostd__V1__Host *h)
{
        if (!m->metrics)
                return;
        const struct host_sample *hs = sampler_host(m->metrics->sampler);
        h->load_1m = hs->load[0];
        h->load_5m = hs->load[1];
        h->load_15m = hs->load[2];
        h->cpu_pressure_some = hs->cpu_psi.some_avg[0];
        h->memory_pressure_some = hs->memory_psi.some_avg[0];
        h->memory_pressure_full = hs->memory_psi.full_avg[0];
        h->io_pressure_some = hs->io_psi.some_avg[0];
        h->io_pressure_full = hs->io_psi.full_avg[0];
}

/* The batch of the last round, packed: a SubscribeMetricsResponse. */
static int pack_batch(struct metrics *mt, uint8_t **ret, size_t *ret_len)
{
        struct manager *m = mt->m;
        struct sampler *s = mt->sampler;
        struct batch b = { .cap = sampler_count(s) };
        b.items = calloc(b.cap + 1, sizeof *b.items);
        b.ptrs = calloc(b.cap + 1, sizeof *b.ptrs);
        if (!b.items || !b.ptrs) {
                free(b.items);
                free(b.ptrs);
                return -ENOMEM;
        }
        sampler_foreach(s, add_dyno, &b);

        Hostd__V1__Host h = HOSTD__V1__HOST__INIT;
        char hostname[256];
        host_info_fill(m, &h, hostname);
        metrics_fill_host(m, &h);

        Hostd__V1__SubscribeMetricsResponse mb = HOSTD__V1__SUBSCRIBE_METRICS_RESPONSE__INIT;
        mb.n_dynos = b.n;
        mb.dynos = b.ptrs;
        mb.host = &h;
        size_t len = hostd__v1__subscribe_metrics_response__get_packed_size(&mb);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf)
                hostd__v1__subscribe_metrics_response__pack(&mb, buf);
        free(b.items);
        free(b.ptrs);
        if (!buf)
                return -ENOMEM;
        *ret = buf;
        *ret_len = len;
        return 0;
}

static void subscriber_free(struct subscriber *sub)
{
        call_on_cancel(sub->call, NULL, NULL);
        call_unref(sub->call);
        free(sub);
}

static void stream_free(struct metrics_stream *st)
{
        for (struct metrics_stream **pp = &st->mt->streams; *pp; pp = &(*pp)->next)
                if (*pp == st) {
                        *pp = st->next;
                        break;
                }
        while (st->subs) {
                struct subscriber *sub = st->subs;
                st->subs = sub->next;
                subscriber_free(sub);
        }
        sampler_unlisten(st->mt->sampler, st->listener);
        free(st);
}

/* Send the last round's batch to sub, or to every subscriber of st (sub NULL). */
static void stream_send(struct metrics_stream *st, struct subscriber *only)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;
        int r = pack_batch(st->mt, &buf, &len);
        if (r < 0) {
                log_error_errno(r, "metrics: a batch of %zu dynos: %m",
                                sampler_count(st->mt->sampler));
                return;
        }
        for (struct subscriber *sub = only ? only : st->subs; sub; sub = only ? NULL : sub->next) {
                if (call_pending(sub->call) > 0) {
                        sub->dropped++;
                        continue;
                }
                if (sub->dropped > 0)
                        log_debug("metrics: %s missed %" PRIu64
                                  " batches: it had not read the one before",
                                  call_peer(sub->call), sub->dropped);
                sub->dropped = 0;
                (void)call_send_packed(sub->call, buf, len);
        }
}

static void on_stream_tick(struct sampler *s, void *userdata) { stream_send(userdata, NULL); }

/* A subscriber's client went: forget it, and the stream with its last one. */
static void on_subscriber_cancel(struct call *c, void *userdata)
{
        struct subscriber *gone = userdata;
        struct metrics_stream *st = gone->st;
        for (struct subscriber **pp = &st->subs; *pp; pp = &(*pp)->next)
                if (*pp == gone) {
                        *pp = gone->next;
                        subscriber_free(gone);
                        break;
                }
        if (!st->subs)
                stream_free(st); /* every client left: the timer goes too */
}

void metrics_subscribe(struct manager *m, struct call *c,
                       const Hostd__V1__SubscribeMetricsRequest *req)
{
        /* validate_subscribe_metrics checked the interval. */
        uint32_t interval = req->interval_seconds ? req->interval_seconds :
                                                    METRICS_INTERVAL_DEFAULT;
        struct metrics *mt = m->metrics;
        if (!mt)
                return call_fail(c, API_UNAVAILABLE, "subscribe_metrics: hostd is still starting");
        struct metrics_stream *st = mt->streams;
        while (st && st->interval != interval)
                st = st->next;
        bool new_stream = !st;
        if (new_stream) {
                st = calloc(1, sizeof *st);
                if (!st)
                        return call_fail(c, API_INTERNAL, "subscribe_metrics: out of memory");
                st->mt = mt;
                st->interval = interval;
                int r = sampler_listen(mt->sampler, interval, false, on_stream_tick, st,
                                       &st->listener);
                if (r < 0) {
                        free(st);
                        return call_fail(c, API_INTERNAL, "subscribe_metrics: a timer: %s",
                                         strerror(-r));
                }
                st->next = mt->streams;
                mt->streams = st;
        }
        struct subscriber *sub = calloc(1, sizeof *sub);
        if (!sub) {
                if (new_stream)
                        stream_free(st);
                return call_fail(c, API_INTERNAL, "subscribe_metrics: out of memory");
        }
        sub->st = st;
        sub->call = call_ref(c);
        sub->next = st->subs;
        st->subs = sub;
        call_on_cancel(c, on_subscriber_cancel, sub);
        /* The first batch at once, from a fresh round (or one of the last 100 ms). */
        sampler_round(mt->sampler);
        stream_send(st, sub);
}

void metrics_streams_free(struct metrics *mt)
{
        while (mt->streams)
                stream_free(mt->streams);
}
