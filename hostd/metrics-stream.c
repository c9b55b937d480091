/* SubscribeMetrics: subscribers of one interval share one timer, one round of the sampler and
 * one encoded batch. The batch is packed once without the request id; each subscriber's
 * frame is its id field followed by those bytes (a protobuf message may hold its fields in
 * any order), so a thousand dynos cost one encoding per interval, not one per subscriber.
 *
 * A slow subscriber: a batch is queued for a client only when everything sent to it before
 * has left hostd (the connection's queue is empty). Otherwise the batch is dropped for that
 * client and counted (logged when it next gets one). The figures are gauges and counters
 * since the dyno's start, so a dropped batch loses resolution, not data, and hostd holds at
 * most one batch per client, however slowly it reads. */
#include "metrics.h"

#include <inttypes.h>

#include "config-build.h"
#include "admission.h"
#include "cgroup.h"
#include "manager.h"
#include "rpc.h"
#include "sampler.h"
#include "util.h"
#include "api-code.h"
#include "validate.h"

#define INTERVAL_DEFAULT 20
#define INTERVAL_MAX 3600

struct subscriber {
        struct conn *conn;
        uint64_t id;
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

/* The batch of the last round, packed as a Response without its id. */
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

        Hostd__V1__MetricsBatch mb = HOSTD__V1__METRICS_BATCH__INIT;
        mb.n_dynos = b.n;
        mb.dynos = b.ptrs;
        mb.host = &h;
        Hostd__V1__Response resp = HOSTD__V1__RESPONSE__INIT;
        resp.result_case = HOSTD__V1__RESPONSE__RESULT_METRICS;
        resp.metrics = &mb;
        size_t len = hostd__v1__response__get_packed_size(&resp);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf)
                hostd__v1__response__pack(&resp, buf);
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
        conn_unref(sub->conn);
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
                if (conn_is_closed(sub->conn))
                        continue;
                if (conn_pending(sub->conn) > 0) {
                        sub->dropped++;
                        continue;
                }
                if (sub->dropped > 0)
                        log_debug("metrics: a subscriber (request %" PRIu64 ") missed %" PRIu64
                                  " batches: it had not read the one before",
                                  sub->id, sub->dropped);
                sub->dropped = 0;
                conn_reply_packed(sub->conn, sub->id, buf, len);
        }
}

static void on_stream_tick(struct sampler *s, void *userdata)
{
        struct metrics_stream *st = userdata;
        for (struct subscriber **pp = &st->subs; *pp;) {
                struct subscriber *sub = *pp;
                if (conn_is_closed(sub->conn)) {
                        *pp = sub->next;
                        subscriber_free(sub);
                } else
                        pp = &sub->next;
        }
        if (!st->subs) {
                stream_free(st); /* every client left: the timer goes too */
                return;
        }
        stream_send(st, NULL);
}

void metrics_subscribe(struct manager *m, struct conn *c, uint64_t id,
                       const Hostd__V1__SubscribeMetricsRequest *req)
{
        uint32_t interval = req->interval_seconds ? req->interval_seconds : INTERVAL_DEFAULT;
        if (interval > INTERVAL_MAX)
                return conn_reply_error(c, id, API_INVALID_ARGUMENT,
                                        "subscribe_metrics.interval_seconds: %" PRIu32
                                        " is out of range (1..%d; 0 or unset: %d)",
                                        req->interval_seconds, INTERVAL_MAX, INTERVAL_DEFAULT);
        struct metrics *mt = m->metrics;
        if (!mt)
                return conn_reply_error(c, id, API_UNAVAILABLE,
                                        "subscribe_metrics: hostd is still starting");
        struct metrics_stream *st = mt->streams;
        while (st && st->interval != interval)
                st = st->next;
        bool new_stream = !st;
        if (new_stream) {
                st = calloc(1, sizeof *st);
                if (!st)
                        return conn_reply_error(c, id, API_INTERNAL,
                                                "subscribe_metrics: out of memory");
                st->mt = mt;
                st->interval = interval;
                int r = sampler_listen(mt->sampler, interval, false, on_stream_tick, st,
                                       &st->listener);
                if (r < 0) {
                        free(st);
                        return conn_reply_error(c, id, API_INTERNAL,
                                                "subscribe_metrics: a timer: %s", strerror(-r));
                }
                st->next = mt->streams;
                mt->streams = st;
        }
        struct subscriber *sub = calloc(1, sizeof *sub);
        if (!sub) {
                if (new_stream)
                        stream_free(st);
                return conn_reply_error(c, id, API_INTERNAL,
                                        "subscribe_metrics: out of memory");
        }
        sub->conn = conn_ref(c);
        sub->id = id;
        sub->next = st->subs;
        st->subs = sub;
        /* The first batch at once, from a fresh round (or one of the last 100 ms). */
        sampler_round(mt->sampler);
        stream_send(st, sub);
}

void metrics_streams_free(struct metrics *mt)
{
        while (mt->streams)
                stream_free(mt->streams);
}
