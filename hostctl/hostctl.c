/* hostctl: the operator's command line for hostd, a gRPC client of hostd.v1.Hostd over its Unix
 * socket or its TLS listener. */
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <termios.h>
#include <time.h>

#include "config-build.h"
#include "grpc-client.h"
#include "spec.h"
#include "util.h"

/* The exit statuses the help text promises. */
enum {
        EXIT_OK = 0,
        EXIT_REMOTE = 1,      /* hostd answered with an error */
        EXIT_USAGE = 2,       /* bad command line or input file */
        EXIT_UNREACHABLE = 3, /* no hostd, or the conversation broke */
};

#define TIMEOUT_DEFAULT_S 30
/* hostd's stop grace when a call does not give one (config.h's grace_seconds default). */
#define GRACE_DEFAULT_S 30
#define DEFAULT_LOG_LINES 100

struct globals {
        const char *socket_path;
        const char *host; /* ADDR:PORT of listen-tls; NULL: the socket */
        const char *cert, *key, *ca;
        bool json;
        uint32_t timeout_s;   /* 0: wait forever */
        uint32_t keepalive_s; /* HOSTCTL_KEEPALIVE: pings on a quiet follow; 0: none */
};

static const Hostd__V1__DynoSpec empty_spec = HOSTD__V1__DYNO_SPEC__INIT;

/* ---- messages ---- */

_printf_(2, 3) static int usage_error(const char *cmd, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "hostctl: %s%s", cmd ? cmd : "", cmd ? ": " : "");
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'hostctl %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
        return EXIT_USAGE;
}

static char *escape_str(const char *s);

/* hostd answered with an error status (-EREMOTEIO): 1; anything else means no usable hostd
 * (unreachable, the conversation broke, no reply in time): 3. */
static int call_failed(const struct grpc_client *c, int r, const char *what)
{
        /* hostd's message is shown on a terminal: its control characters escaped. */
        _cleanup_free_ char *e = escape_str(c->error);
        fprintf(stderr, "hostctl: %s: %s\n", what, e ? e : c->error);
        return r == -EREMOTEIO ? EXIT_REMOTE : EXIT_UNREACHABLE;
}

static int connect_hostd(struct grpc_client *c, const struct globals *g)
{
        int64_t ms = g->timeout_s > 0 ? (int64_t)g->timeout_s * 1000 : -1;
        grpc_client_init(c, ms);
        c->keepalive_s = g->keepalive_s;
        int r;
        if (g->host) {
                if (!g->cert || !g->key || !g->ca) {
                        fprintf(stderr,
                                "hostctl: --host %s needs --cert, --key and --ca (or "
                                "HOSTCTL_CERT, HOSTCTL_KEY and HOSTCTL_CA)\n",
                                g->host);
                        return EXIT_USAGE;
                }
                r = grpc_client_connect_tls(c, g->host, g->cert, g->key, g->ca);
                if (r < 0) {
                        fprintf(stderr, "hostctl: %s\n", c->error);
                        return r == -EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
                }
                return EXIT_OK;
        }
        r = grpc_client_connect_unix(c, g->socket_path);
        if (r < 0) {
                const char *hint = r == -ENOENT || r == -ECONNREFUSED ? " (is hostd running?)" : "";
                fprintf(stderr, "hostctl: %s%s\n", c->error, hint);
                return EXIT_UNREACHABLE;
        }
        return EXIT_OK;
}

static void client_donep(struct grpc_client *c) { grpc_client_done(c); }
#define _cleanup_client_ _cleanup_(client_donep)

/* Any unpacked message: Hostd__V1__GetDynoResponse *resp and the like. */
static void message_freep(void *p)
{
        ProtobufCMessage **m = p;
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_message_ _cleanup_(message_freep)

/* A unary call of hostd.v1.Hostd: req is a request message, *ret gets the Response type's. */
#define UNARY(c, method, req, Response, ret)                                                       \
        grpc_unary((c), (method), &(req)->base, &Response##__descriptor, (ProtobufCMessage **)(ret))

static void json_putp(struct json_object **o) { json_object_put(*o); }
#define _cleanup_json_ _cleanup_(json_putp)

/* Output errors (a full disk) must not pass for success. */
static int finish_output(int status)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "hostctl: write output: %m\n");
                return status == EXIT_OK ? EXIT_REMOTE : status;
        }
        return status;
}

/* ---- text helpers ---- */

/* Control characters from hostd's data (a dyno's command, its log lines) are shown escaped:
 * a newline would break a table, and an escape sequence (C0 ESC, or a C1 control such as
 * U+009B, CSI) could drive the operator's terminal. Bytes that are not UTF-8 show as \xNN. */
static char *escape_cntrl(const char *s, size_t n, bool keep_tab)
{
        const uint8_t *p = (const uint8_t *)s;
        char *out = malloc(n * 4 + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_decode(p + i, n - i, &cp);
                if (len == 0) {
                        o += sprintf(o, "\\x%02x", p[i]);
                        i++;
                        continue;
                }
                if (cp == '\t' && keep_tab)
                        *o++ = '\t';
                else if (cp == '\n')
                        o = stpcpy(o, "\\n");
                else if (cp == '\t')
                        o = stpcpy(o, "\\t");
                else if (cp < 0x20 || cp == 0x7f)
                        o += sprintf(o, "\\x%02x", (unsigned)cp);
                else if (cp >= 0x80 && cp <= 0x9f) /* two bytes in, six out */
                        o += sprintf(o, "\\u%04x", (unsigned)cp);
                else {
                        memcpy(o, p + i, len);
                        o += len;
                }
                i += len;
        }
        *o = 0;
        return out;
}

static char *escape_str(const char *s)
{
        return escape_cntrl(s ? s : "", s ? strlen(s) : 0, false);
}

/* Valid UTF-8 with every bad byte replaced by U+FFFD: json-c writes strings byte for byte,
 * and a log line's bytes need not be UTF-8, while a JSON document must be. */
static char *utf8_sanitize(const uint8_t *p, size_t n, size_t *ret_len)
{
        char *out = malloc(n * 3 + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_decode(p + i, n - i, &cp);
                if (len == 0) {
                        o = stpcpy(o, "\xef\xbf\xbd");
                        i++;
                        continue;
                }
                memcpy(o, p + i, len);
                o += len;
                i += len;
        }
        *o = 0;
        if (ret_len)
                *ret_len = (size_t)(o - out);
        return out;
}

/* Cut s to at most max characters (code points), with "..." when cut. */
static void truncate_utf8(char *s, size_t max)
{
        size_t chars = 0, i = 0, cut3 = SIZE_MAX;
        if (max < 4)
                max = 4;
        for (; s[i]; i++) {
                if (((unsigned char)s[i] & 0xc0) == 0x80)
                        continue;
                if (chars == max - 3)
                        cut3 = i;
                if (chars == max)
                        break;
                chars++;
        }
        if (s[i] && cut3 != SIZE_MAX)
                strcpy(s + cut3, "...");
}

/* RFC 3339 with microseconds and the local offset: 2026-11-27T10:00:00.123456+00:00. */
static const char *format_time(int64_t usec, char buf[static 48])
{
        if (usec <= 0)
                return "-";
        time_t sec = (time_t)(usec / 1000000);
        struct tm tm;
        if (!localtime_r(&sec, &tm))
                return "-";
        char base[32];
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
        int off = (int)(tm.tm_gmtoff / 60) % (24 * 60); /* a UTC offset is under a day */
        snprintf(buf, 48, "%s.%06d%c%02d:%02d", base, (int)(usec % 1000000), off < 0 ? '-' : '+',
                 abs(off) / 60, abs(off) % 60);
        return buf;
}

static const char *format_duration(int64_t usec, char buf[static 32])
{
        uint64_t s = usec > 0 ? (uint64_t)usec / 1000000 : 0;
        if (s < 60)
                snprintf(buf, 32, "%" PRIu64 "s", s);
        else if (s < 3600)
                snprintf(buf, 32, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
        else if (s < 86400)
                snprintf(buf, 32, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
        else
                snprintf(buf, 32, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
        return buf;
}

/* The prefix every value name of an enum shares, by protobuf's style: "DYNO_STATE_" (from
 * DYNO_STATE_UNSPECIFIED, the zero value). 0 when the zero value does not show one. */
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *d)
{
        const ProtobufCEnumValue *zero = protobuf_c_enum_descriptor_get_value(d, 0);
        const char *u = zero ? strstr(zero->name, "_UNSPECIFIED") : NULL;
        return u && u[strlen("_UNSPECIFIED")] == 0 ? (size_t)(u - zero->name) + 1 : 0;
}

/* A value as the CLI shows it: lower-case, without the enum's prefix ("up" for
 * DYNO_STATE_UP, "one_off", "stack"); "unspecified" for the zero value; the number for one
 * this build does not know. */
static const char *enum_name(const ProtobufCEnumDescriptor *d, int v, char buf[static 32])
{
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
        if (!ev) {
                snprintf(buf, 32, "%d", v);
                return buf;
        }
        if (strstr(ev->name, "_UNSPECIFIED"))
                return "unspecified";
        const char *name = ev->name;
        size_t skip = enum_prefix_len(d);
        const ProtobufCEnumValue *zero = protobuf_c_enum_descriptor_get_value(d, 0);
        if (skip > 0 && strncmp(name, zero->name, skip) == 0 && strlen(name) > skip)
                name += skip;
        size_t i = 0;
        for (; name[i] && i < 31; i++)
                buf[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        buf[i] = 0;
        return buf;
}

static const char *state_name(Hostd__V1__DynoState s, char buf[static 32])
{
        return enum_name(&hostd__v1__dyno_state__descriptor, (int)s, buf);
}

static const char *type_name(Hostd__V1__DynoType t, char buf[static 32])
{
        return enum_name(&hostd__v1__dyno_type__descriptor, (int)t, buf);
}

static bool state_is_final(Hostd__V1__DynoState s)
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
static const char *describe_exit(const Hostd__V1__ExitInfo *e, char buf[static 128])
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

static const Hostd__V1__DynoSpec *spec_of(const Hostd__V1__Dyno *d)
{
        return d->spec ? d->spec : &empty_spec;
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

/* ---- JSON output: any message, through protobuf-c's descriptors ---- */

static struct json_object *message_to_json(const ProtobufCMessage *m);

static struct json_object *json_string_utf8(const uint8_t *p, size_t n)
{
        size_t len;
        _cleanup_free_ char *s = utf8_sanitize(p, n, &len);
        return s ? json_object_new_string_len(s, (int)len) : NULL;
}

/* Enums as lower-case names ("up", "one_off"), as the CLI shows them; a value this build does
 * not know as its number. */
static struct json_object *enum_to_json(const ProtobufCEnumDescriptor *d, int v)
{
        char buf[32];
        if (!protobuf_c_enum_descriptor_get_value(d, v))
                return json_object_new_int(v);
        return json_object_new_string(enum_name(d, v, buf));
}

static struct json_object *value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32: return json_object_new_int64(*(const int32_t *)p);
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32: return json_object_new_int64(*(const uint32_t *)p);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64: return json_object_new_int64(*(const int64_t *)p);
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: return json_object_new_uint64(*(const uint64_t *)p);
        case PROTOBUF_C_TYPE_FLOAT: return json_object_new_double(*(const float *)p);
        case PROTOBUF_C_TYPE_DOUBLE: return json_object_new_double(*(const double *)p);
        case PROTOBUF_C_TYPE_BOOL: return json_object_new_boolean(*(const protobuf_c_boolean *)p);
        case PROTOBUF_C_TYPE_ENUM: return enum_to_json(f->descriptor, *(const int *)p);
        case PROTOBUF_C_TYPE_STRING: {
                const char *s = *(char *const *)p;
                return s ? json_string_utf8((const uint8_t *)s, strlen(s)) :
                           json_object_new_string("");
        }
        case PROTOBUF_C_TYPE_BYTES: {
                /* Bytes here are log text: shown as text, not base64. */
                const ProtobufCBinaryData *b = p;
                return json_string_utf8(b->data, b->len);
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
                return m ? message_to_json(m) : NULL;
        }
        }
        return NULL;
}

static size_t element_size(ProtobufCType t)
{
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_ENUM: return 4;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE: return 8;
        case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
        }
        return 0;
}

/* Every plain field is written, defaults included, so that scripts find each key; a oneof
 * member only when it is the one set, and an absent sub-message not at all. */
static struct json_object *message_to_json(const ProtobufCMessage *m)
{
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const char *base = (const char *)m;
        struct json_object *o = json_object_new_object();
        if (!o)
                return NULL;

        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const void *member = base + f->offset;
                struct json_object *v = NULL;

                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *)(base + f->quantifier_offset);
                        const char *arr = *(char *const *)member;
                        v = json_object_new_array_ext((int)n);
                        for (size_t k = 0; v && k < n; k++) {
                                struct json_object *e =
                                        value_to_json(f, arr + k * element_size(f->type));
                                json_object_array_add(v, e);
                        }
                } else {
                        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                                uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
                                if (which != f->id)
                                        continue;
                        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                                   f->type != PROTOBUF_C_TYPE_MESSAGE &&
                                   f->type != PROTOBUF_C_TYPE_STRING) {
                                if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                                        continue;
                        }
                        v = value_to_json(f, member);
                        if (!v)
                                continue;
                }
                json_object_object_add(o, f->name, v);
        }
        return o;
}

static int print_json(struct json_object *o, bool pretty)
{
        if (!o) {
                fprintf(stderr, "hostctl: out of memory\n");
                return EXIT_REMOTE;
        }
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                    (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : 0);
        puts(json_object_to_json_string_ext(o, flags));
        return EXIT_OK;
}

static int print_message_json(const ProtobufCMessage *m)
{
        _cleanup_json_ struct json_object *o = message_to_json(m);
        return print_json(o, true);
}

/* ---- readable output ---- */

#define KEY_WIDTH 21

_printf_(2, 3) static void kv(const char *key, const char *fmt, ...)
{
        _cleanup_free_ char *raw = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&raw, fmt, ap) < 0)
                raw = NULL;
        va_end(ap);
        _cleanup_free_ char *v = escape_str(raw);
        printf("%s:%*s%s\n", key, (int)(KEY_WIDTH - strlen(key)), "", v ? v : "?");
}

static void print_dyno(const Hostd__V1__Dyno *d)
{
        const Hostd__V1__DynoSpec *s = spec_of(d);
        char b1[48], b2[128], sb[32];

        kv("id", "%s", or_dash(s->id));
        kv("name", "%s", or_dash(s->name));
        kv("app", "%s", or_dash(s->app));
        kv("type", "%s", type_name(s->type, sb));
        kv("size", "%s", or_dash(s->size));
        kv("state", "%s", state_name(d->state, sb));
        kv("command", "%s", or_dash(s->command));
        kv("release", "%s", or_dash(s->release));
        kv("run_id", "%s", or_dash(d->run_id));
        kv("pid", "%s", d->pid ? (snprintf(b2, sizeof b2, "%" PRIu32, d->pid), b2) : "-");
        kv("uid", "%s", d->uid ? (snprintf(b2, sizeof b2, "%" PRIu32, d->uid), b2) : "-");
        kv("created", "%s", format_time(d->created_usec, b1));
        kv("started", "%s", format_time(d->started_usec, b1));
        kv("finished", "%s", format_time(d->finished_usec, b1));
        if (!state_is_final(d->state) && d->started_usec > 0)
                kv("uptime", "%s", format_duration(now_realtime_usec() - d->started_usec, b1));
        kv("restarts", "%" PRIu32, d->restarts);

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

        kv("cgroup", "%s", or_dash(d->cgroup));
        kv("address", "%s", or_dash(d->address));
        kv("port", "%s", s->port ? (snprintf(b2, sizeof b2, "%" PRIu32, s->port), b2) : "-");
        kv("host_port", "%s",
           d->host_port ? (snprintf(b2, sizeof b2, "%" PRIu32, d->host_port), b2) : "-");
        /* Zero limits are ones hostd did not report; swap 0 under a memory limit means none. */
        kv("memory_limit", "%s", d->memory_limit ? format_bytes_human(d->memory_limit, b1) : "-");
        kv("swap_limit", "%s",
           d->memory_limit || d->swap_limit ? format_bytes_human(d->swap_limit, b1) : "-");
        kv("cpu_weight", "%s",
           d->cpu_weight ? (snprintf(b2, sizeof b2, "%" PRIu32, d->cpu_weight), b2) : "-");
        kv("pids_limit", "%s",
           d->pids_limit ? (snprintf(b2, sizeof b2, "%" PRIu64, d->pids_limit), b2) : "-");
        kv("log_dropped", "%" PRIu64, d->log_dropped);

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

/* "web.1 (web-1): down, exit status 143" */
static void print_dyno_line(const Hostd__V1__Dyno *d)
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

/* A table of text cells; the widths fit the longest cell, the last column is not padded. */
struct table {
        size_t n_cols, n_cells;
        char **cells;
};

static void table_free(struct table *t)
{
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
}

static int table_add(struct table *t, const char *text)
{
        char **n = realloc(t->cells, (t->n_cells + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        t->cells = n;
        char *c = escape_str(text);
        if (!c)
                return -ENOMEM;
        t->cells[t->n_cells++] = c;
        return 0;
}

static size_t text_width(const char *s)
{
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        w++;
        return w;
}

static void table_print(const struct table *t)
{
        size_t widths[16] = { 0 };
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t col = i % t->n_cols, w = text_width(t->cells[i]);
                if (w > widths[col])
                        widths[col] = w;
        }
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t col = i % t->n_cols;
                if (col == t->n_cols - 1)
                        printf("%s\n", t->cells[i]);
                else
                        printf("%s%*s", t->cells[i],
                               (int)(widths[col] - text_width(t->cells[i]) + 2), "");
        }
}

static size_t terminal_columns(void)
{
        struct winsize ws;
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 0;
}

/* ---- option parsing ---- */

enum {
        OPT_SOCKET = 0x100,
        OPT_HOST,
        OPT_CERT,
        OPT_KEY,
        OPT_CA,
        OPT_JSON,
        OPT_TIMEOUT,
        OPT_VERSION,
        OPT_GRACE,
        OPT_LINES,
        OPT_NO_TRUNC,
        OPT_ID,
        OPT_NAME,
        OPT_APP,
        OPT_TYPE,
        OPT_SIZE,
        OPT_PORT,
        OPT_STACK,
        OPT_SLUG,
        OPT_STACK_DIGEST,
        OPT_SLUG_DIGEST,
        OPT_STACK_URL,
        OPT_SLUG_URL,
        OPT_ENV,
        OPT_LOG_DRAIN,
        OPT_BOOT_TIMEOUT,
        OPT_COMMAND,
        OPT_RELEASE,
        OPT_APP_ID,
        OPT_SLUG_COMMIT,
        OPT_SLUG_DESCRIPTION,
        OPT_RELEASE_CREATED_AT,
        OPT_SPEC,
        OPT_SHA256,
        OPT_KIND,
        OPT_BUDGET,
        OPT_SINCE,
        OPT_DEADLINE,
        OPT_INTERVAL,
};

/* Kept by hand: clang-format cannot tell that this macro is a list of initializers. */
/* clang-format off */
#define COMMON_LONG_OPTIONS                                                                        \
        { "socket", required_argument, NULL, OPT_SOCKET },                                         \
        { "host", required_argument, NULL, OPT_HOST },                                             \
        { "cert", required_argument, NULL, OPT_CERT },                                             \
        { "key", required_argument, NULL, OPT_KEY },                                               \
        { "ca", required_argument, NULL, OPT_CA },                                                 \
        { "json", no_argument, NULL, OPT_JSON },                                                   \
        { "timeout", required_argument, NULL, OPT_TIMEOUT },                                       \
        { "help", no_argument, NULL, 'h' }
/* clang-format on */

#define COMMON_HELP                                                                                \
        "      --socket PATH      hostd's socket (default " HOSTD_SOCKET_PATH_DEFAULT ")\n"        \
        "      --host ADDR:PORT   hostd's TLS listener instead, with --cert, --key, --ca\n"        \
        "      --json             print JSON\n"                                                    \
        "      --timeout SECONDS  wait for hostd this long (default 30; 0: forever)\n"             \
        "  -h, --help             show this help\n"

/* A number of seconds, a port...: digits only, in 0..max, or a usage error naming the flag. */
static int parse_uint_flag(const char *cmd, const char *flag, const char *arg, uint32_t max,
                           uint32_t *ret)
{
        uint64_t v;
        int r = safe_atou64(arg, &v);
        if (r == -ERANGE || (r == 0 && v > max))
                return usage_error(cmd, "%s: '%s' is out of range (0..%" PRIu32 ")", flag, arg,
                                   max);
        if (r < 0)
                return usage_error(cmd, "%s: '%s' is not a number (expected 0..%" PRIu32 ")", flag,
                                   arg, max);
        *ret = (uint32_t)v;
        return EXIT_OK;
}

static int bad_option(const char *cmd, int c, char **argv)
{
        const char *opt = argv[optind - 1];
        if (c == ':')
                return usage_error(cmd, "option '%s' needs a value", opt);
        if (optopt && optopt < 0x100)
                return usage_error(cmd, "unknown option '-%c'", optopt);
        return usage_error(cmd, "unknown option '%s'", opt);
}

/* The options every command takes: 1 when c was one of them, 0 when it was not, -1 after
 * printing a usage error. */
static int common_option(struct globals *g, const char *cmd, int c, const char *arg)
{
        switch (c) {
        case OPT_SOCKET:
                if (!*arg)
                        return usage_error(cmd, "--socket: empty path"), -1;
                g->socket_path = arg;
                return 1;
        case OPT_HOST:
        case OPT_CERT:
        case OPT_KEY:
        case OPT_CA: {
                static const char *const names[] = { "--host", "--cert", "--key", "--ca" };
                if (!*arg)
                        return usage_error(cmd, "%s: empty value", names[c - OPT_HOST]), -1;
                const char **field[] = { &g->host, &g->cert, &g->key, &g->ca };
                *field[c - OPT_HOST] = arg;
                return 1;
        }
        case OPT_JSON: g->json = true; return 1;
        case OPT_TIMEOUT:
                if (parse_uint_flag(cmd, "--timeout", arg, 86400 * 365, &g->timeout_s) != EXIT_OK)
                        return -1;
                return 1;
        }
        return 0;
}

/* For commands that take one dyno ID. */
static int take_id(const char *cmd, int argc, char **argv, const char **ret)
{
        if (optind >= argc)
                return usage_error(cmd, "missing dyno ID");
        if (argc - optind > 1)
                return usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
        if (!*argv[optind])
                return usage_error(cmd, "empty dyno ID");
        *ret = argv[optind];
        return EXIT_OK;
}

/* Parse a command's options: common ones here, its own through handle(); -h prints help. */
typedef int (*own_option_t)(int c, const char *arg, void *userdata);

static int parse_options(struct globals *g, int argc, char **argv, const char *optstring,
                         const struct option *longopts, const char *help, own_option_t handle,
                         void *userdata, bool *ret_help)
{
        const char *cmd = argv[0];
        int c;

        *ret_help = false;
        optind = 0; /* glibc: start over, re-reading the optstring's leading '+' */
        opterr = 0;
        while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) >= 0) {
                if (c == 'h') {
                        fputs(help, stdout);
                        *ret_help = true;
                        return EXIT_OK;
                }
                if (c == '?' || c == ':')
                        return bad_option(cmd, c, argv);
                int r = common_option(g, cmd, c, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                r = handle ? handle(c, optarg, userdata) : usage_error(cmd, "unknown option");
                if (r != EXIT_OK)
                        return r;
        }
        return EXIT_OK;
}

/* ---- commands ---- */

static const char ps_help[] =
        "Usage: hostctl ps [--no-trunc]\n"
        "\n"
        "List the dynos on this host: ID, NAME, TYPE, SIZE, STATE, PID, UID, the uptime of a\n"
        "running dyno or how an ended one exited, and its COMMAND.\n"
        "\n"
        "      --no-trunc         do not shorten long commands (they are cut to the\n"
        "                         terminal's width, or to 60 characters when not on one)\n" COMMON_HELP;

static int ps_option(int c, const char *arg, void *userdata)
{
        if (c == OPT_NO_TRUNC)
                *(bool *)userdata = true;
        return EXIT_OK;
}

static int cmd_ps(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                              { "no-trunc", no_argument, NULL, OPT_NO_TRUNC },
                                              {} };
        bool no_trunc = false, help;
        int r = parse_options(g, argc, argv, ":h", opts, ps_help, ps_option, &no_trunc, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error("ps", "unexpected argument '%s'", argv[optind]);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        Hostd__V1__ListDynosRequest req = HOSTD__V1__LIST_DYNOS_REQUEST__INIT;
        _cleanup_message_ Hostd__V1__ListDynosResponse *reply = NULL;
        r = UNARY(&c, "ListDynos", &req, hostd__v1__list_dynos_response, &reply);
        if (r < 0)
                return call_failed(&c, r, "ps");

        if (g->json)
                return print_message_json(&reply->base);

        static const char *const header[] = { "ID",  "NAME", "TYPE",        "SIZE",   "STATE",
                                              "PID", "UID",  "UPTIME/EXIT", "COMMAND" };
        struct table t = { .n_cols = ELEMENTSOF(header) };
        int64_t now = now_realtime_usec();
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(&t, header[i]) < 0)
                        goto oom;
        for (size_t i = 0; i < reply->n_dynos; i++) {
                const Hostd__V1__Dyno *d = reply->dynos[i];
                const Hostd__V1__DynoSpec *s = spec_of(d);
                char pid[16] = "-", uid[16] = "-", sb[32], tb[32], up[128];
                const char *upexit;

                if (d->pid)
                        snprintf(pid, sizeof pid, "%" PRIu32, d->pid);
                if (d->uid)
                        snprintf(uid, sizeof uid, "%" PRIu32, d->uid);
                if (state_is_final(d->state))
                        upexit = describe_exit(d->exit, up);
                else if (d->started_usec > 0)
                        upexit = format_duration(now - d->started_usec, up);
                else
                        upexit = "-";
                if (table_add(&t, or_dash(s->id)) < 0 || table_add(&t, or_dash(s->name)) < 0 ||
                    table_add(&t, type_name(s->type, tb)) < 0 ||
                    table_add(&t, or_dash(s->size)) < 0 ||
                    table_add(&t, state_name(d->state, sb)) < 0 || table_add(&t, pid) < 0 ||
                    table_add(&t, uid) < 0 || table_add(&t, upexit) < 0 ||
                    table_add(&t, or_dash(s->command)) < 0)
                        goto oom;
        }

        if (!no_trunc) {
                /* What the other columns take, to give the command the rest of the line. */
                size_t used = 0;
                for (size_t col = 0; col + 1 < t.n_cols; col++) {
                        size_t w = 0;
                        for (size_t i = col; i < t.n_cells; i += t.n_cols)
                                if (text_width(t.cells[i]) > w)
                                        w = text_width(t.cells[i]);
                        used += w + 2;
                }
                size_t cols = terminal_columns();
                size_t max = cols == 0 ? 60 : cols > used + 20 ? cols - used : 20;
                for (size_t i = 2 * t.n_cols - 1; i < t.n_cells; i += t.n_cols)
                        truncate_utf8(t.cells[i], max);
        }
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
oom:
        table_free(&t);
        fprintf(stderr, "hostctl: ps: out of memory\n");
        return EXIT_REMOTE;
}

static const char inspect_help[] =
        "Usage: hostctl inspect ID\n"
        "\n"
        "Show every field of a dyno, one \"key: value\" per line: its spec, state, pid and\n"
        "uid, times, how it exited, its cgroup, address and limits.\n"
        "\n" COMMON_HELP;

static int get_dyno(struct grpc_client *c, const char *id, Hostd__V1__GetDynoResponse **ret)
{
        Hostd__V1__GetDynoRequest req = HOSTD__V1__GET_DYNO_REQUEST__INIT;
        req.id = (char *)id;
        return UNARY(c, "GetDyno", &req, hostd__v1__get_dyno_response, ret);
}

/* The dyno of a reply, or NULL after telling the user hostd left it out. */
static const Hostd__V1__Dyno *reply_dyno(const Hostd__V1__Dyno *d, const char *what)
{
        if (!d)
                fprintf(stderr, "hostctl: %s: hostd's reply has no dyno\n", what);
        return d;
}

static int print_dyno_result(const struct globals *g, const Hostd__V1__Dyno *d, bool one_line)
{
        if (g->json)
                return print_message_json(&d->base);
        if (one_line)
                print_dyno_line(d);
        else
                print_dyno(d);
        return EXIT_OK;
}

static int cmd_inspect(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        const char *id;
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, inspect_help, NULL, NULL, &help);
        if (r != EXIT_OK || help)
                return r;
        r = take_id("inspect", argc, argv, &id);
        if (r != EXIT_OK)
                return r;

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        _cleanup_free_ char *what = strjoin3("inspect ", id, NULL);
        _cleanup_message_ Hostd__V1__GetDynoResponse *resp = NULL;
        r = get_dyno(&c, id, &resp);
        if (r < 0)
                return call_failed(&c, r, what ? what : "inspect");
        const Hostd__V1__Dyno *d = reply_dyno(resp->dyno, "inspect");
        if (!d)
                return EXIT_UNREACHABLE;
        return print_dyno_result(g, d, false);
}

static const char start_help[] =
        "Usage: hostctl start [FLAGS] [-- COMMAND...]\n"
        "       hostctl start --spec FILE [FLAGS] [-- COMMAND...]\n"
        "\n"
        "Start a dyno and show it (as inspect does) once its command runs. A web dyno with a\n"
        "port is then 'starting' until it listens on $PORT on all addresses, and 'up' after\n"
        "(or 'crashed' with R10 when its boot timeout passes first); others are 'up' at once.\n"
        "\n"
        "      --spec FILE          read the spec from a JSON object with DynoSpec's field\n"
        "                           names (id, name, app, type, size, command, env, port,\n"
        "                           stack_path, slug_path, stack_digest, slug_digest,\n"
        "                           stack_url, slug_url, grace_seconds, boot_timeout_seconds,\n"
        "                           release, tty, tty_columns, tty_rows, tty_term,\n"
        "                           runtime_metrics, log_drains, app_id, slug_commit,\n"
        "                           slug_description, release_created_at); env is\n"
        "                           {\"NAME\": \"value\"} or a list of\n"
        "                           {\"name\": ..., \"value\": ...}; \"-\" reads standard input.\n"
        "                           The flags below override the file.\n"
        "      --id ID              the dyno's unique id (required, here or in the spec)\n"
        "      --name NAME          its formation name, $DYNO (e.g. web.1)\n"
        "      --app NAME           the application's name\n"
        "      --type TYPE          web, worker or one-off\n"
        "      --size SIZE          a size of the host's configuration (e.g. standard-1x)\n"
        "      --port N             $PORT (0..65535; 0: none)\n"
        "      --stack PATH         the stack's root filesystem folder\n"
        "      --slug PATH          the app's slug folder\n"
        "      --stack-digest HEX   the stack by image id (sha256), instead of --stack\n"
        "      --slug-digest HEX    the slug by image id, instead of --slug\n"
        "      --stack-url URL      where hostd fetches the stack when it lacks it\n"
        "                           (http://, https://, file:// or an absolute path)\n"
        "      --slug-url URL       the same for the slug\n"
        "      --env NAME=VALUE     a config var (repeatable; replaces one of the same name)\n"
        "      --log-drain URL      a syslog drain, syslog://HOST:PORT or syslog+tls://HOST:PORT\n"
        "                           (repeatable, up to 8; added to the spec file's)\n"
        "      --grace SECONDS      stop grace period (default: the host's)\n"
        "      --boot-timeout SECONDS  R10 boot timeout of a web dyno (default: the host's)\n"
        "      --release VERSION    the release (v42): $HEROKU_RELEASE_VERSION; a new one\n"
        "                           starts the crash back-off again\n"
        "      --app-id ID          $HEROKU_APP_ID, and runtime-metrics lines' dyno=\n"
        "      --slug-commit SHA    $HEROKU_SLUG_COMMIT\n"
        "      --slug-description TEXT  $HEROKU_SLUG_DESCRIPTION\n"
        "      --release-created-at TIME  $HEROKU_RELEASE_CREATED_AT (RFC 3339)\n"
        "      --command STRING     the command: bash -c (the stack's sh without bash) runs\n"
        "                           .profile.d/*.sh, .profile, then it, in place of the\n"
        "                           shell when it is a simple command\n"
        "  -- COMMAND...            the command as words after --, joined with spaces\n"
        "                           (quote shell syntax as one word)\n"
        "\n" COMMON_HELP;

struct start_flags {
        const char *spec_file;
        const char *id, *name, *app, *size, *stack, *slug, *command;
        const char *stack_digest, *slug_digest, *stack_url, *slug_url;
        const char *release, *app_id, *slug_commit, *slug_description, *release_created_at;
        bool have_type, have_port, have_grace, have_boot;
        Hostd__V1__DynoType type;
        uint32_t port, grace, boot;
        char **env; /* "NAME=VALUE", pointers into argv */
        size_t n_env;
        char **drains; /* syslog drain URLs, pointers into argv */
        size_t n_drains;
};

static void start_flags_done(struct start_flags *f)
{
        free(f->env);
        free(f->drains);
}

static int start_option(int c, const char *arg, void *userdata)
{
        struct start_flags *f = userdata;
        switch (c) {
        case OPT_SPEC:
                if (f->spec_file)
                        return usage_error("start", "--spec given twice");
                f->spec_file = arg;
                return EXIT_OK;
        case OPT_ID: f->id = arg; return EXIT_OK;
        case OPT_NAME: f->name = arg; return EXIT_OK;
        case OPT_APP: f->app = arg; return EXIT_OK;
        case OPT_SIZE: f->size = arg; return EXIT_OK;
        case OPT_STACK: f->stack = arg; return EXIT_OK;
        case OPT_SLUG: f->slug = arg; return EXIT_OK;
        case OPT_STACK_DIGEST: f->stack_digest = arg; return EXIT_OK;
        case OPT_SLUG_DIGEST: f->slug_digest = arg; return EXIT_OK;
        case OPT_STACK_URL: f->stack_url = arg; return EXIT_OK;
        case OPT_SLUG_URL: f->slug_url = arg; return EXIT_OK;
        case OPT_COMMAND: f->command = arg; return EXIT_OK;
        case OPT_RELEASE: f->release = arg; return EXIT_OK;
        case OPT_APP_ID: f->app_id = arg; return EXIT_OK;
        case OPT_SLUG_COMMIT: f->slug_commit = arg; return EXIT_OK;
        case OPT_SLUG_DESCRIPTION: f->slug_description = arg; return EXIT_OK;
        case OPT_RELEASE_CREATED_AT: f->release_created_at = arg; return EXIT_OK;
        case OPT_TYPE:
                if (spec_parse_type(arg, &f->type) < 0)
                        return usage_error(
                                "start",
                                "--type: unknown dyno type '%s' (expected web, worker or one-off)",
                                arg);
                f->have_type = true;
                return EXIT_OK;
        case OPT_PORT:
                f->have_port = true;
                return parse_uint_flag("start", "--port", arg, 65535, &f->port);
        case OPT_GRACE:
                f->have_grace = true;
                return parse_uint_flag("start", "--grace", arg, UINT32_MAX, &f->grace);
        case OPT_BOOT_TIMEOUT:
                f->have_boot = true;
                return parse_uint_flag("start", "--boot-timeout", arg, UINT32_MAX, &f->boot);
        case OPT_ENV: {
                const char *eq = strchr(arg, '=');
                if (!eq)
                        return usage_error("start", "--env '%s': expected NAME=VALUE", arg);
                if (eq == arg)
                        return usage_error("start", "--env '%s': empty variable name", arg);
                char **n = realloc(f->env, (f->n_env + 1) * sizeof *n);
                if (!n)
                        return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
                f->env = n;
                f->env[f->n_env++] = (char *)arg;
                return EXIT_OK;
        }
        case OPT_LOG_DRAIN: {
                char **n = realloc(f->drains, (f->n_drains + 1) * sizeof *n);
                if (!n)
                        return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
                f->drains = n;
                f->drains[f->n_drains++] = (char *)arg;
                return EXIT_OK;
        }
        }
        return EXIT_OK;
}

static int load_spec_file(const char *path, Hostd__V1__DynoSpec **ret)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = strcmp(path, "-") == 0 ? read_full_fd(STDIN_FILENO, &text, &len) :
                                         read_full_file(path, &text, &len);
        if (r < 0) {
                errno = -r;
                fprintf(stderr, "hostctl: start: --spec %s: %m\n", path);
                return EXIT_USAGE;
        }
        char err[512];
        r = spec_parse_json(text, len, ret, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "hostctl: start: --spec %s: %s\n",
                        strcmp(path, "-") == 0 ? "(stdin)" : path, err);
                return r == -ENOMEM ? EXIT_REMOTE : EXIT_USAGE;
        }
        return EXIT_OK;
}

/* Flags override the spec file whatever their order on the command line. */
static int apply_start_flags(const struct start_flags *f, Hostd__V1__DynoSpec *s)
{
        const struct {
                const char *value;
                char **field;
        } strs[] = {
                { f->id, &s->id },
                { f->name, &s->name },
                { f->app, &s->app },
                { f->size, &s->size },
                { f->stack, &s->stack_path },
                { f->slug, &s->slug_path },
                { f->stack_digest, &s->stack_digest },
                { f->slug_digest, &s->slug_digest },
                { f->stack_url, &s->stack_url },
                { f->slug_url, &s->slug_url },
                { f->command, &s->command },
                { f->release, &s->release },
                { f->app_id, &s->app_id },
                { f->slug_commit, &s->slug_commit },
                { f->slug_description, &s->slug_description },
                { f->release_created_at, &s->release_created_at },
        };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                if (strs[i].value && spec_set_string(strs[i].field, strs[i].value) < 0)
                        return -ENOMEM;
        if (f->have_type)
                s->type = f->type;
        if (f->have_port)
                s->port = f->port;
        if (f->have_grace) {
                s->grace_case = HOSTD__V1__DYNO_SPEC__GRACE_GRACE_SECONDS;
                s->grace_seconds = f->grace;
        }
        if (f->have_boot) {
                s->boot_case = HOSTD__V1__DYNO_SPEC__BOOT_BOOT_TIMEOUT_SECONDS;
                s->boot_timeout_seconds = f->boot;
        }
        for (size_t i = 0; i < f->n_env; i++) {
                _cleanup_free_ char *name = strdup(f->env[i]);
                if (!name)
                        return -ENOMEM;
                char *eq = strchr(name, '=');
                *eq = 0;
                int r = spec_set_env(s, name, eq + 1);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < f->n_drains; i++)
                if (spec_add_log_drain(s, f->drains[i]) < 0)
                        return -ENOMEM;
        return 0;
}

static char *join_words(char **words, size_t n)
{
        size_t len = 1;
        for (size_t i = 0; i < n; i++)
                len += strlen(words[i]) + 1;
        char *s = malloc(len), *p = s;
        if (!s)
                return NULL;
        *p = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        *p++ = ' ';
                p = stpcpy(p, words[i]);
        }
        return s;
}

#define START_LONG_OPTIONS                                                                         \
        { "spec", required_argument, NULL, OPT_SPEC }, { "id", required_argument, NULL, OPT_ID },  \
                { "name", required_argument, NULL, OPT_NAME },                                     \
                { "app", required_argument, NULL, OPT_APP },                                       \
                { "type", required_argument, NULL, OPT_TYPE },                                     \
                { "size", required_argument, NULL, OPT_SIZE },                                     \
                { "port", required_argument, NULL, OPT_PORT },                                     \
                { "stack", required_argument, NULL, OPT_STACK },                                   \
                { "slug", required_argument, NULL, OPT_SLUG },                                     \
                { "stack-digest", required_argument, NULL, OPT_STACK_DIGEST },                     \
                { "slug-digest", required_argument, NULL, OPT_SLUG_DIGEST },                       \
                { "stack-url", required_argument, NULL, OPT_STACK_URL },                           \
                { "slug-url", required_argument, NULL, OPT_SLUG_URL },                             \
                { "env", required_argument, NULL, OPT_ENV },                                       \
                { "log-drain", required_argument, NULL, OPT_LOG_DRAIN },                           \
                { "grace", required_argument, NULL, OPT_GRACE },                                   \
                { "boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT },                     \
                { "release", required_argument, NULL, OPT_RELEASE },                               \
                { "app-id", required_argument, NULL, OPT_APP_ID },                                 \
                { "slug-commit", required_argument, NULL, OPT_SLUG_COMMIT },                       \
                { "slug-description", required_argument, NULL, OPT_SLUG_DESCRIPTION },             \
                { "release-created-at", required_argument, NULL, OPT_RELEASE_CREATED_AT },         \
        {                                                                                          \
                "command", required_argument, NULL, OPT_COMMAND                                    \
        }

/* The spec of start and run: the --spec file (if any), the flags over it, the words after
 * "--" as the command. */
static int spec_from_args(const char *cmd, struct start_flags *f, int argc, char **argv,
                          Hostd__V1__DynoSpec **ret)
{
        _cleanup_free_ char *words = NULL;
        if (optind < argc) {
                if (strcmp(argv[optind - 1], "--") != 0)
                        return usage_error(cmd,
                                           "unexpected argument '%s' (give the command after --)",
                                           argv[optind]);
                if (f->command)
                        return usage_error(cmd,
                                           "give the command with --command or after --, not both");
                words = join_words(argv + optind, (size_t)(argc - optind));
                if (!words)
                        return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
                f->command = words;
        }

        _cleanup_(spec_freep) Hostd__V1__DynoSpec *spec = NULL;
        if (f->spec_file) {
                int r = load_spec_file(f->spec_file, &spec);
                if (r != EXIT_OK)
                        return r;
        } else if (!(spec = spec_new()))
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        int r = apply_start_flags(f, spec);
        f->command = NULL; /* words goes now */
        if (r < 0)
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        *ret = TAKE_PTR(spec);
        return EXIT_OK;
}

static int start_call(struct grpc_client *c, Hostd__V1__DynoSpec *spec,
                      Hostd__V1__StartResponse **ret)
{
        Hostd__V1__StartRequest req = HOSTD__V1__START_REQUEST__INIT;
        req.spec = spec;
        return UNARY(c, "Start", &req, hostd__v1__start_response, ret);
}

static int cmd_start(struct globals *g, int argc, char **argv)
{
        /* clang-format off */
        static const struct option opts[] = { COMMON_LONG_OPTIONS, START_LONG_OPTIONS, {} };
        /* clang-format on */
        _cleanup_(start_flags_done) struct start_flags f = {};
        bool help;
        /* '+': stop at the first word that is not an option, so that only words after "--"
         * become the command, and a stray word is an error rather than part of it. */
        int r = parse_options(g, argc, argv, "+:h", opts, start_help, start_option, &f, &help);
        if (r != EXIT_OK || help)
                return r;
        _cleanup_(spec_freep) Hostd__V1__DynoSpec *spec = NULL;
        r = spec_from_args("start", &f, argc, argv, &spec);
        if (r != EXIT_OK)
                return r;
        if (!*spec->id)
                return usage_error("start", "--id is required (or \"id\" in the --spec file)");

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        _cleanup_free_ char *what = strjoin3("start ", spec->id, NULL);
        _cleanup_message_ Hostd__V1__StartResponse *resp = NULL;
        r = start_call(&c, spec, &resp);
        if (r < 0)
                return call_failed(&c, r, what ? what : "start");
        const Hostd__V1__Dyno *d = reply_dyno(resp->dyno, "start");
        if (!d)
                return EXIT_UNREACHABLE;
        return print_dyno_result(g, d, false);
}

static const char stop_help[] =
        "Usage: hostctl stop ID [--grace SECONDS]\n"
        "\n"
        "Stop a dyno: SIGTERM to its processes, SIGKILL after the grace period. Prints how\n"
        "it ended, e.g. \"web.1 (web-1): down, exit status 143\".\n"
        "\n"
        "      --grace SECONDS    grace period before SIGKILL (default: the dyno's, or the\n"
        "                         host's). hostctl waits for the reply for --timeout plus the\n"
        "                         grace period (30 s when not given).\n"
        "\n" COMMON_HELP;

static const char restart_help[] =
        "Usage: hostctl restart ID [--grace SECONDS]\n"
        "\n"
        "Stop a dyno and start it again with the same spec; prints its new state.\n"
        "\n"
        "      --grace SECONDS    grace period of the stop before SIGKILL (default: the\n"
        "                         dyno's, or the host's). hostctl waits for the reply for\n"
        "                         --timeout plus the grace period (30 s when not given).\n"
        "\n" COMMON_HELP;

struct grace_opt {
        const char *cmd;
        bool set;
        uint32_t seconds;
};

static int grace_option(int c, const char *arg, void *userdata)
{
        struct grace_opt *o = userdata;
        if (c != OPT_GRACE)
                return EXIT_OK;
        o->set = true;
        return parse_uint_flag(o->cmd, "--grace", arg, UINT32_MAX, &o->seconds);
}

static int cmd_stop_restart(struct globals *g, int argc, char **argv, bool restart)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                              { "grace", required_argument, NULL, OPT_GRACE },
                                              {} };
        const char *cmd = restart ? "restart" : "stop";
        struct grace_opt grace = { .cmd = cmd };
        const char *id;
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, restart ? restart_help : stop_help,
                              grace_option, &grace, &help);
        if (r != EXIT_OK || help)
                return r;
        r = take_id(cmd, argc, argv, &id);
        if (r != EXIT_OK)
                return r;

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        /* hostd answers once the dyno is down, which may take the whole grace period: the
         * deadline (grpc-timeout) is --timeout plus the grace. */
        if (c.timeout_ms >= 0)
                c.timeout_ms += (int64_t)(grace.set ? grace.seconds : GRACE_DEFAULT_S) * 1000;

        _cleanup_free_ char *what = strjoin3(cmd, " ", id);
        const Hostd__V1__Dyno *d;
        if (restart) {
                Hostd__V1__RestartRequest req = HOSTD__V1__RESTART_REQUEST__INIT;
                req.id = (char *)id;
                if (grace.set) {
                        req.grace_case = HOSTD__V1__RESTART_REQUEST__GRACE_GRACE_SECONDS;
                        req.grace_seconds = grace.seconds;
                }
                _cleanup_message_ Hostd__V1__RestartResponse *resp = NULL;
                r = UNARY(&c, "Restart", &req, hostd__v1__restart_response, &resp);
                if (r < 0)
                        return call_failed(&c, r, what ? what : cmd);
                d = resp->dyno;
                if (!reply_dyno(d, cmd))
                        return EXIT_UNREACHABLE;
                return print_dyno_result(g, d, true);
        }
        Hostd__V1__StopRequest req = HOSTD__V1__STOP_REQUEST__INIT;
        req.id = (char *)id;
        if (grace.set) {
                req.grace_case = HOSTD__V1__STOP_REQUEST__GRACE_GRACE_SECONDS;
                req.grace_seconds = grace.seconds;
        }
        _cleanup_message_ Hostd__V1__StopResponse *resp = NULL;
        r = UNARY(&c, "Stop", &req, hostd__v1__stop_response, &resp);
        if (r < 0)
                return call_failed(&c, r, what ? what : cmd);
        d = resp->dyno;
        if (!reply_dyno(d, cmd))
                return EXIT_UNREACHABLE;
        return print_dyno_result(g, d, true);
}

static int cmd_stop(struct globals *g, int argc, char **argv)
{
        return cmd_stop_restart(g, argc, argv, false);
}

static int cmd_restart(struct globals *g, int argc, char **argv)
{
        return cmd_stop_restart(g, argc, argv, true);
}

static const char logs_help[] =
        "Usage: hostctl logs ID [--lines N] [-f|--follow]\n"
        "\n"
        "Show a dyno's recent log lines, as\n"
        "  2026-11-27T10:00:00.123456+00:00 app[web.1]: text\n"
        "(local time; control characters are escaped when writing to a terminal). With --json,\n"
        "one LogLine object per line.\n"
        "\n"
        "  -n, --lines N          at most N recent lines (default 100; 0: all hostd keeps)\n"
        "  -f, --follow           then keep printing new lines until hostd ends the stream\n"
        "                         (--timeout does not apply: a follow waits for lines as\n"
        "                         long as it takes)\n"
        "\n" COMMON_HELP;

struct logs_opts {
        uint32_t lines;
        bool follow;
        bool escape; /* stdout is a terminal */
        bool json;
};

static int logs_option(int c, const char *arg, void *userdata)
{
        struct logs_opts *o = userdata;
        if (c == 'f')
                o->follow = true;
        else if (c == 'n')
                return parse_uint_flag("logs", "--lines", arg, UINT32_MAX, &o->lines);
        return EXIT_OK;
}

static void print_log_line(const Hostd__V1__LogLine *l, const struct logs_opts *o)
{
        if (o->json) {
                _cleanup_json_ struct json_object *j = message_to_json(&l->base);
                if (j)
                        puts(json_object_to_json_string_ext(
                                j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                return;
        }
        char tb[48];
        const char *process = l->process && *l->process ? l->process : l->dyno_id;
        _cleanup_free_ char *source = escape_str(or_dash(l->source)),
                            *proc = escape_str(or_dash(process));
        printf("%s %s[%s]: ", format_time(l->time_usec, tb), source ? source : "?",
               proc ? proc : "?");
        if (o->escape) {
                _cleanup_free_ char *text =
                        escape_cntrl((const char *)l->text.data, l->text.len, true);
                fputs(text ? text : "?", stdout);
        } else
                fwrite(l->text.data, 1, l->text.len, stdout);
        putchar('\n');
}

static int logs_batch(const ProtobufCMessage *msg, void *userdata)
{
        const struct logs_opts *o = userdata;
        const Hostd__V1__LogsResponse *b = (const Hostd__V1__LogsResponse *)msg;
        for (size_t i = 0; b && i < b->n_lines; i++)
                print_log_line(b->lines[i], o);
        /* A follower (| grep) should see each line as it comes, not when a buffer fills. */
        if (fflush(stdout) != 0)
                return -errno;
        return 0;
}

static int cmd_logs(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "lines", required_argument, NULL, 'n' },
                { "follow", no_argument, NULL, 'f' },
                {},
        };
        struct logs_opts o = { .lines = DEFAULT_LOG_LINES };
        const char *id;
        bool help;
        int r = parse_options(g, argc, argv, ":hfn:", opts, logs_help, logs_option, &o, &help);
        if (r != EXIT_OK || help)
                return r;
        r = take_id("logs", argc, argv, &id);
        if (r != EXIT_OK)
                return r;
        o.json = g->json;
        o.escape = isatty(STDOUT_FILENO);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        Hostd__V1__LogsRequest req = HOSTD__V1__LOGS_REQUEST__INIT;
        req.id = (char *)id;
        req.lines = o.lines;
        req.follow = o.follow;
        _cleanup_free_ char *what = strjoin3("logs ", id, NULL);

        /* Without --follow the stream ends by itself: a deadline. A follow has none: it waits
         * for lines as long as it takes (keepalive pings notice a dead connection). */
        r = grpc_server_stream(&c, "Logs", &req.base, &hostd__v1__logs_response__descriptor,
                               o.follow ? -1 : c.timeout_ms, -1, logs_batch, &o);
        if (r < 0 && !c.error[0]) {
                /* The callback failed: writing to stdout. */
                fprintf(stderr, "hostctl: %s: write output: %s\n", what ? what : "logs",
                        strerror(-r));
                return EXIT_REMOTE;
        }
        if (r < 0)
                return call_failed(&c, r, what ? what : "logs");
        return finish_output(EXIT_OK);
}

static const char host_help[] =
        "Usage: hostctl host\n"
        "\n"
        "Show the host: name, hostd's version, boot id, cgroup mode, CPUs, memory (total;\n"
        "available, page cache that can be reclaimed counting as free; reserved for the host;\n"
        "allocatable to dynos, the total less the reserve; allocated to running dynos), the\n"
        "CPUs dedicated sizes may take and how many are free, the dynos running and the\n"
        "most it takes, whether it is draining, and the dyno sizes it offers.\n"
        "\n" COMMON_HELP;

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

static int cmd_host(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, host_help, NULL, NULL, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error("host", "unexpected argument '%s'", argv[optind]);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        _cleanup_message_ Hostd__V1__GetHostResponse *resp = NULL;
        r = get_host(&c, &resp);
        if (r < 0)
                return call_failed(&c, r, "host");
        const Hostd__V1__Host *h = reply_host(resp, "host");
        if (!h)
                return EXIT_UNREACHABLE;
        if (g->json)
                return print_message_json(&h->base);

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
        if (h->n_sizes == 0)
                return EXIT_OK;

        static const char *const header[] = { "SIZE",       "MEMORY",         "R15", "PIDS",
                                              "CPU_WEIGHT", "DEDICATED_CPUS", "SWAP" };
        struct table t = { .n_cols = ELEMENTSOF(header) };
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(&t, header[i]) < 0)
                        goto oom;
        for (size_t i = 0; i < h->n_sizes; i++) {
                const Hostd__V1__Size *s = h->sizes[i];
                char mem[32], r15[32], pids[32], w[32], cpus[32];
                snprintf(r15, sizeof r15, "%gx", s->r15_multiple);
                snprintf(pids, sizeof pids, "%" PRIu64, s->pids);
                snprintf(w, sizeof w, "%" PRIu32, s->cpu_weight);
                snprintf(cpus, sizeof cpus, "%" PRIu32, s->dedicated_cpus);
                if (table_add(&t, or_dash(s->name)) < 0 ||
                    table_add(&t, format_bytes_human(s->memory_bytes, mem)) < 0 ||
                    table_add(&t, r15) < 0 || table_add(&t, pids) < 0 || table_add(&t, w) < 0 ||
                    table_add(&t, s->dedicated_cpus ? cpus : "shared") < 0 ||
                    table_add(&t, s->swap ? "yes" : "no") < 0)
                        goto oom;
        }
        putchar('\n');
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
oom:
        table_free(&t);
        fprintf(stderr, "hostctl: host: out of memory\n");
        return EXIT_REMOTE;
}

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

struct deadline_opt {
        bool set;
        uint32_t seconds;
};

static int deadline_option(int c, const char *arg, void *userdata)
{
        struct deadline_opt *o = userdata;
        if (c != OPT_DEADLINE)
                return EXIT_OK;
        o->set = true;
        return parse_uint_flag("drain", "--deadline", arg, UINT32_MAX, &o->seconds);
}

static int cmd_drain_undrain(struct globals *g, int argc, char **argv, bool drain)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                              { "deadline", required_argument, NULL, OPT_DEADLINE },
                                              {} };
        static const struct option undrain_opts[] = { COMMON_LONG_OPTIONS, {} };
        const char *cmd = drain ? "drain" : "undrain";
        struct deadline_opt dl = {};
        bool help;
        int r = parse_options(g, argc, argv, ":h", drain ? opts : undrain_opts,
                              drain ? drain_help : undrain_help, deadline_option, &dl, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error(cmd, "unexpected argument '%s'", argv[optind]);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        if (drain) {
                Hostd__V1__DrainRequest req = HOSTD__V1__DRAIN_REQUEST__INIT;
                if (dl.set) {
                        req.deadline_case = HOSTD__V1__DRAIN_REQUEST__DEADLINE_DEADLINE_SECONDS;
                        req.deadline_seconds = dl.seconds;
                }
                _cleanup_message_ Hostd__V1__DrainResponse *resp = NULL;
                r = UNARY(&c, "Drain", &req, hostd__v1__drain_response, &resp);
        } else {
                Hostd__V1__UndrainRequest req = HOSTD__V1__UNDRAIN_REQUEST__INIT;
                _cleanup_message_ Hostd__V1__UndrainResponse *resp = NULL;
                r = UNARY(&c, "Undrain", &req, hostd__v1__undrain_response, &resp);
        }
        if (r < 0)
                return call_failed(&c, r, cmd);
        if (g->json)
                printf("{\"draining\": %s}\n", drain ? "true" : "false");
        else if (drain && dl.set)
                printf("draining: no new dynos; the running ones stop in %" PRIu32 " s\n",
                       dl.seconds);
        else
                printf(drain ? "draining: no new dynos\n" : "undrained: new dynos are taken\n");
        return EXIT_OK;
}

static int cmd_drain(struct globals *g, int argc, char **argv)
{
        return cmd_drain_undrain(g, argc, argv, true);
}

static int cmd_undrain(struct globals *g, int argc, char **argv)
{
        return cmd_drain_undrain(g, argc, argv, false);
}

static const char version_help[] =
        "Usage: hostctl version\n"
        "\n"
        "Show hostctl's version and the version of the hostd it reaches.\n"
        "\n" COMMON_HELP;

static int cmd_version(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, version_help, NULL, NULL, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error("version", "unexpected argument '%s'", argv[optind]);

        /* The client's own version first: it is worth having when hostd is not there. */
        if (!g->json) {
                printf("hostctl %s\n", HOSTD_VERSION);
                fflush(stdout);
        }

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        _cleanup_message_ Hostd__V1__GetHostResponse *resp = NULL;
        r = get_host(&c, &resp);
        if (r < 0)
                return call_failed(&c, r, "version");
        const Hostd__V1__Host *h = reply_host(resp, "version");
        if (!h)
                return EXIT_UNREACHABLE;

        if (g->json) {
                _cleanup_json_ struct json_object *o = json_object_new_object();
                if (o) {
                        json_object_object_add(o, "hostctl", json_object_new_string(HOSTD_VERSION));
                        const char *v = h->version ? h->version : "";
                        json_object_object_add(o, "hostd",
                                               json_string_utf8((const uint8_t *)v, strlen(v)));
                }
                return print_json(o, true);
        }
        _cleanup_free_ char *v = escape_str(or_dash(h->version));
        printf("hostd %s\n", v ? v : "?");
        return EXIT_OK;
}

/* ---- images ---- */

struct command {
        const char *name;
        int (*run)(struct globals *g, int argc, char **argv);
};

#define DIGEST_SHORT 12
/* How often the progress bar is redrawn at most. */
#define PROGRESS_REDRAW_USEC (100 * 1000)
/* How often a plain progress line is printed at most, besides one per tenth of the total. */
#define PROGRESS_LINE_USEC (1000 * 1000)

static const char images_help[] =
        "Usage: hostctl images COMMAND [ARGS...]\n"
        "\n"
        "Manage hostd's image store: stacks (base root filesystems) and slugs (the app, a\n"
        "tarball of /app), each named by the sha256 of its tarball, its digest.\n"
        "\n"
        "Commands:\n"
        "  ls [--no-trunc]          list the images\n"
        "  import SOURCE --sha256 HEX --kind stack|slug\n"
        "                           fetch, verify and unpack a tarball, with progress\n"
        "  rm DIGEST                remove an image no dyno uses\n"
        "  gc [--budget BYTES]      remove unused images, least recently used first, until\n"
        "                           the store fits the budget\n"
        "\n"
        "\"hostctl images COMMAND --help\" describes each.\n"
        "\n" COMMON_HELP;

static const char images_ls_help[] =
        "Usage: hostctl images ls [--no-trunc]\n"
        "\n"
        "List the images in hostd's store: DIGEST, KIND (stack or slug), SIZE (unpacked),\n"
        "USERS (dynos using it), IMPORTED and LAST USED (how long ago). With --json, an object\n"
        "{\"images\": [...]} of Image objects (digest, kind, size_bytes, imported_usec,\n"
        "last_used_usec, users).\n"
        "\n"
        "      --no-trunc         show whole digests (their first 12 digits otherwise)\n"
        "\n" COMMON_HELP;

static const char images_import_help[] =
        "Usage: hostctl images import SOURCE --sha256 HEX --kind stack|slug\n"
        "\n"
        "Have hostd fetch a stack or slug tarball, check its sha256 and unpack it into its\n"
        "store, then show the image as \"images ls\" does (with --json, the Image object).\n"
        "Importing an image that is there already shows it and changes nothing.\n"
        "\n"
        "SOURCE is an absolute path, or a file:///PATH, http:// or https:// URL. hostd reads\n"
        "it itself, so a relative path is first made absolute against the current folder.\n"
        "\n"
        "      --sha256 HEX       the tarball's sha256: 64 hex digits (required)\n"
        "      --kind KIND        stack (a base root filesystem) or slug (a tarball of\n"
        "                         /app) (required)\n"
        "\n"
        "Progress goes to standard error: a bar on a terminal, else a line at most every\n"
        "tenth of the total or every second (\"import 1a2b3c4d5e6f: 45.2M of 100.0M\").\n"
        "--timeout applies to each wait for hostd's next report, not to the whole import;\n"
        "once the whole tarball is fetched, hostctl waits for the unpacking without a limit.\n"
        "\n" COMMON_HELP;

static const char images_rm_help[] =
        "Usage: hostctl images rm DIGEST\n"
        "\n"
        "Remove an image from hostd's store. DIGEST is its whole sha256, 64 hex digits\n"
        "(\"hostctl images ls --no-trunc\" shows them). An image that a dyno uses, running or\n"
        "starting, stays (FAILED_PRECONDITION). With --json: {\"removed\": [DIGEST]}.\n"
        "\n" COMMON_HELP;

static const char images_gc_help[] =
        "Usage: hostctl images gc [--budget BYTES]\n"
        "\n"
        "Remove images that no dyno uses, least recently used first, until the store's\n"
        "images add up to at most the budget; print each digest removed and the bytes\n"
        "freed. With --json: {\"removed\": [DIGEST...], \"freed_bytes\": N}.\n"
        "\n"
        "      --budget BYTES     the budget, in bytes or with a unit K, M, G or T (binary\n"
        "                         multiples, as in hostd's config: 512M, 2G, 1.5T)\n"
        "                         (default: hostd's images-budget)\n"
        "\n" COMMON_HELP;

static const char *kind_name(Hostd__V1__ImageKind k, char buf[static 32])
{
        return enum_name(&hostd__v1__image_kind__descriptor, (int)k, buf);
}

/* A sha256 as hostd names images: 64 hex digits, lower-cased into out. */
static bool parse_digest(const char *s, char out[static 65])
{
        if (strlen(s) != 64)
                return false;
        for (size_t i = 0; i < 64; i++) {
                char ch = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
                if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
                        return false;
                out[i] = ch;
        }
        out[64] = 0;
        return true;
}

/* Bytes as the config file writes them: digits, or a number (with an optional fraction)
 * and one of the units K, M, G, T (binary multiples): "0", "1048576", "512M", "2.5G".
 * Nothing else: no sign, exponent, hex, space or lower-case unit. */
static int parse_bytes_flag(const char *cmd, const char *flag, const char *arg, uint64_t *ret)
{
        const char *p = arg;
        size_t digits = strspn(p, "0123456789");
        bool fraction = false, unit = false;

        p += digits;
        if (digits > 0 && *p == '.') {
                size_t n = strspn(p + 1, "0123456789");
                fraction = n > 0;
                p += n > 0 ? n + 1 : 0;
        }
        if (digits > 0 && *p && strchr("KMGT", *p)) {
                unit = true;
                p++;
        }
        if (digits == 0 || *p || (fraction && !unit))
                return usage_error(cmd,
                                   "%s: '%s' is not a size (expected bytes, or a number with K, "
                                   "M, G or T: 512M, 2G)",
                                   flag, arg);
        int r = unit ? parse_size(arg, ret) : safe_atou64(arg, ret);
        if (r == -ERANGE)
                return usage_error(cmd, "%s: '%s' is out of range", flag, arg);
        if (r < 0)
                return usage_error(cmd, "%s: '%s' is not a size", flag, arg);
        return EXIT_OK;
}

/* Always one decimal, for a counter that moves: "45.2M", "100.0M"; bytes below 1K. */
static const char *format_progress_bytes(uint64_t v, char buf[static 32])
{
        static const char units[] = "KMGTPE";
        if (v < 1024) {
                snprintf(buf, 32, "%" PRIu64 "B", v);
                return buf;
        }
        double d = (double)v / 1024;
        int u = 0;
        while (u < 5 && d >= 1024) {
                d /= 1024;
                u++;
        }
        snprintf(buf, 32, "%.1f%c", d, units[u]);
        return buf;
}

static const char *format_age(int64_t usec, int64_t now, const char *none, char buf[static 48])
{
        char d[32];
        if (usec <= 0)
                return none;
        snprintf(buf, 48, "%s ago", format_duration(now - usec, d));
        return buf;
}

static int print_images(const char *cmd, Hostd__V1__Image *const *images, size_t n, bool no_trunc)
{
        static const char *const header[] = { "DIGEST", "KIND",     "SIZE",
                                              "USERS",  "IMPORTED", "LAST USED" };
        struct table t = { .n_cols = ELEMENTSOF(header) };
        int64_t now = now_realtime_usec();
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(&t, header[i]) < 0)
                        goto oom;
        for (size_t i = 0; i < n; i++) {
                const Hostd__V1__Image *img = images[i];
                char digest[DIGEST_SHORT + 1], kb[32], sb[32], ub[16], ib[48], lb[48];
                const char *d = or_dash(img->digest);
                if (!no_trunc) {
                        snprintf(digest, sizeof digest, "%s", d);
                        d = digest;
                }
                snprintf(ub, sizeof ub, "%" PRIu32, img->users);
                if (table_add(&t, d) < 0 || table_add(&t, kind_name(img->kind, kb)) < 0 ||
                    table_add(&t, format_bytes_human(img->size_bytes, sb)) < 0 ||
                    table_add(&t, ub) < 0 ||
                    table_add(&t, format_age(img->imported_usec, now, "-", ib)) < 0 ||
                    table_add(&t, format_age(img->last_used_usec, now, "never", lb)) < 0)
                        goto oom;
        }
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
oom:
        table_free(&t);
        fprintf(stderr, "hostctl: %s: out of memory\n", cmd);
        return EXIT_REMOTE;
}

static int no_trunc_option(int c, const char *arg, void *userdata)
{
        if (c == OPT_NO_TRUNC)
                *(bool *)userdata = true;
        return EXIT_OK;
}

static int cmd_images_ls(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                              { "no-trunc", no_argument, NULL, OPT_NO_TRUNC },
                                              {} };
        const char *cmd = argv[0];
        bool no_trunc = false, help;
        int r = parse_options(g, argc, argv, ":h", opts, images_ls_help, no_trunc_option, &no_trunc,
                              &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error(cmd, "unexpected argument '%s'", argv[optind]);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        Hostd__V1__ListImagesRequest req = HOSTD__V1__LIST_IMAGES_REQUEST__INIT;
        _cleanup_message_ Hostd__V1__ListImagesResponse *reply = NULL;
        r = UNARY(&c, "ListImages", &req, hostd__v1__list_images_response, &reply);
        if (r < 0)
                return call_failed(&c, r, cmd);
        if (g->json)
                return print_message_json(&reply->base);
        return print_images(cmd, reply->images, reply->n_images, no_trunc);
}

struct import_opts {
        const char *cmd;
        char sha256[65]; /* empty until --sha256 */
        Hostd__V1__ImageKind kind;
};

static int import_option(int c, const char *arg, void *userdata)
{
        struct import_opts *o = userdata;
        if (c == OPT_SHA256 && !parse_digest(arg, o->sha256))
                return usage_error(o->cmd,
                                   "--sha256: '%s' is not a sha256 (expected 64 hex digits)", arg);
        if (c == OPT_KIND) {
                if (strcasecmp(arg, "stack") == 0)
                        o->kind = HOSTD__V1__IMAGE_KIND__IMAGE_KIND_STACK;
                else if (strcasecmp(arg, "slug") == 0)
                        o->kind = HOSTD__V1__IMAGE_KIND__IMAGE_KIND_SLUG;
                else
                        return usage_error(
                                o->cmd, "--kind: unknown kind '%s' (expected stack or slug)", arg);
        }
        return EXIT_OK;
}

/* The source as hostd takes it. hostd opens a path itself, from its own working folder, so a
 * relative one is made absolute here, against ours. */
static int import_source(const char *cmd, const char *arg, char **ret)
{
        _cleanup_free_ char *cwd = NULL;
        if (!*arg)
                return usage_error(cmd, "empty SOURCE");
        bool as_is = (startswith(arg, "http://") && arg[strlen("http://")]) ||
                     (startswith(arg, "https://") && arg[strlen("https://")]) ||
                     startswith(arg, "file:///") || arg[0] == '/';
        if (!as_is) {
                if (strcmp(arg, "http://") == 0 || strcmp(arg, "https://") == 0)
                        return usage_error(cmd, "'%s': the URL names no host", arg);
                if (startswith(arg, "file://"))
                        return usage_error(
                                cmd, "'%s': a file:// URL names an absolute path: file:///PATH",
                                arg);
                /* "ftp://host/x", "s3://bucket/x": a scheme (RFC 3986: a letter, then letters,
                 * digits, '+', '-', '.') before "://" is a URL hostd cannot fetch, not a
                 * relative path. */
                const char *sep = strstr(arg, "://");
                size_t n = sep ? (size_t)(sep - arg) : 0;
                if (n > 0 &&
                    ((arg[0] >= 'a' && arg[0] <= 'z') || (arg[0] >= 'A' && arg[0] <= 'Z')) &&
                    strspn(arg,
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") ==
                            n)
                        return usage_error(cmd,
                                           "'%s': unsupported source (expected a path, or a "
                                           "file:///, http:// or https:// URL)",
                                           arg);
                cwd = get_current_dir_name();
                if (!cwd) {
                        fprintf(stderr, "hostctl: %s: %s: make the path absolute: %m\n", cmd, arg);
                        return EXIT_USAGE;
                }
                while (startswith(arg, "./"))
                        arg += 2;
        }
        *ret = as_is ? strdup(arg) : strjoin3(cwd, strcmp(cwd, "/") == 0 ? "" : "/", arg);
        if (!*ret) {
                fprintf(stderr, "hostctl: out of memory\n");
                return EXIT_REMOTE;
        }
        return EXIT_OK;
}

struct import_progress {
        int64_t *wait_ms; /* the limit of each wait for hostd's next report */
        char digest[DIGEST_SHORT + 1];
        bool tty;            /* draw a bar on stderr, else print lines */
        bool drawn;          /* the bar is on stderr, its line not ended */
        uint64_t shown;      /* bytes in the last line or bar, */
        uint64_t shown_usec; /* and when it was written; 0: nothing yet */
        int shown_tenth;     /* tenths of the total in the last line */
};

static size_t stderr_columns(void)
{
        struct winsize ws;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

/* "[=========>          ] 45.2M/100.0M  45%", or a counter when hostd does not know the
 * total; redrawn in place, one column short of the width so that no terminal wraps it. */
static void progress_draw(struct import_progress *p, uint64_t done, uint64_t total)
{
        char a[32], b[32], text[96];
        if (total == 0) {
                fprintf(stderr, "\rimport %s: %s\033[K", p->digest, format_progress_bytes(done, a));
                p->drawn = true;
                return;
        }
        if (done > total)
                done = total;
        unsigned pct = (unsigned)((double)done * 100 / (double)total);
        snprintf(text, sizeof text, " %s/%s %3u%%", format_progress_bytes(done, a),
                 format_progress_bytes(total, b), pct);
        /* The bar's width is that of the longest text, "TOTAL/TOTAL 100%", so that it stays. */
        size_t cols = stderr_columns(), width = 40, longest = 2 * strlen(b) + 7;
        if (cols < longest + 3 + 10) {
                fprintf(stderr, "\r%s\033[K", text + 1);
                p->drawn = true;
                return;
        }
        if (width > cols - longest - 3)
                width = cols - longest - 3;
        size_t filled = (size_t)((double)done * (double)width / (double)total);
        char bar[64];
        for (size_t i = 0; i < width; i++)
                bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
        bar[width] = 0;
        fprintf(stderr, "\r[%s]%s\033[K", bar, text);
        p->drawn = true;
}

static void progress_end_line(struct import_progress *p)
{
        if (p->drawn)
                fputc('\n', stderr);
        p->drawn = false;
}

static int import_on_progress(struct import_progress *p, const Hostd__V1__ImportImageProgress *ip)
{
        uint64_t done = ip->done_bytes, total = ip->total_bytes, now = now_monotonic_usec();
        bool complete = total > 0 && done >= total;

        /* The tarball is all there: hostd now unpacks it without reporting, for as long as
         * that takes (a vanished hostd or importer still ends the call). */
        if (complete)
                *p->wait_ms = -1;

        if (p->tty) {
                if (p->shown_usec == 0 || complete || now - p->shown_usec >= PROGRESS_REDRAW_USEC) {
                        progress_draw(p, done, total);
                        p->shown = done;
                        p->shown_usec = now;
                }
                return 0;
        }

        int tenth = total > 0 ? (int)((double)(done < total ? done : total) * 10 / (double)total) :
                                -1;
        bool due = p->shown_usec == 0 || (total > 0 && tenth > p->shown_tenth) ||
                   (done != p->shown && now - p->shown_usec >= PROGRESS_LINE_USEC);
        if (!due)
                return 0;
        char a[32], b[32];
        if (total > 0)
                fprintf(stderr, "import %s: %s of %s\n", p->digest, format_progress_bytes(done, a),
                        format_progress_bytes(total, b));
        else
                fprintf(stderr, "import %s: %s\n", p->digest, format_progress_bytes(done, a));
        p->shown = done;
        p->shown_usec = now;
        p->shown_tenth = tenth;
        return 0;
}

static int cmd_images_import(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "sha256", required_argument, NULL, OPT_SHA256 },
                { "kind", required_argument, NULL, OPT_KIND },
                {},
        };
        struct import_opts o = { .cmd = argv[0] };
        const char *cmd = argv[0];
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, images_import_help, import_option, &o,
                              &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind >= argc)
                return usage_error(cmd, "missing SOURCE");
        if (argc - optind > 1)
                return usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
        if (!o.sha256[0])
                return usage_error(cmd, "--sha256 is required");
        if (o.kind == HOSTD__V1__IMAGE_KIND__IMAGE_KIND_UNSPECIFIED)
                return usage_error(cmd, "--kind is required (stack or slug)");
        _cleanup_free_ char *source = NULL;
        r = import_source(cmd, argv[optind], &source);
        if (r != EXIT_OK)
                return r;

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        int64_t wait_ms = c.timeout_ms;
        struct import_progress p = { .wait_ms = &wait_ms, .tty = isatty(STDERR_FILENO) };
        snprintf(p.digest, sizeof p.digest, "%s", o.sha256);
        char what[64];
        snprintf(what, sizeof what, "%s %s", cmd, p.digest);

        Hostd__V1__ImportImageRequest req = HOSTD__V1__IMPORT_IMAGE_REQUEST__INIT;
        req.source = source;
        req.sha256 = o.sha256;
        req.kind = o.kind;
        /* No grpc-timeout: an import takes as long as its tarball does. --timeout bounds each
         * wait for hostd's next report instead. */
        _cleanup_(grpc_call_done) struct grpc_call call = {};
        r = grpc_call_start(&c, &call, "ImportImage", -1);
        if (r >= 0)
                r = grpc_call_send(&call, &req.base, true);
        _cleanup_message_ Hostd__V1__ImportImageResponse *answer = NULL;
        bool reported = false;
        while (r >= 0) {
                Hostd__V1__ImportImageResponse *m = NULL;
                uint64_t until = wait_ms >= 0 ? now_monotonic_usec() + (uint64_t)wait_ms * 1000 :
                                                UINT64_MAX;
                r = grpc_call_recv(&call, &hostd__v1__import_image_response__descriptor, until,
                                   (ProtobufCMessage **)&m);
                if (r == -ETIMEDOUT) {
                        if (reported)
                                snprintf(c.error, sizeof c.error,
                                         "hostd reported no progress for %" PRId64 " s",
                                         (wait_ms + 999) / 1000);
                        else
                                snprintf(c.error, sizeof c.error,
                                         "no reply from hostd within %" PRId64 " s",
                                         (wait_ms + 999) / 1000);
                        break;
                }
                if (r == 0 && !answer) {
                        snprintf(c.error, sizeof c.error,
                                 "hostd ended the import without the image");
                        r = -EPROTO;
                }
                if (r <= 0)
                        break;
                if (m->kind_case == HOSTD__V1__IMPORT_IMAGE_RESPONSE__KIND_PROGRESS && !answer) {
                        import_on_progress(&p, m->progress);
                        reported = true;
                        protobuf_c_message_free_unpacked(&m->base, NULL);
                } else if (m->kind_case == HOSTD__V1__IMPORT_IMAGE_RESPONSE__KIND_IMAGE && !answer)
                        answer = m; /* the last message; the status follows */
                else {
                        protobuf_c_message_free_unpacked(&m->base, NULL);
                        snprintf(c.error, sizeof c.error,
                                 "hostd answered the import with a message after the image, or "
                                 "one of no kind");
                        r = -EPROTO;
                }
        }
        progress_end_line(&p);
        if (r < 0)
                return call_failed(&c, r, what);
        if (g->json)
                return print_message_json(&answer->image->base);
        return print_images(cmd, &answer->image, 1, false);
}

static int cmd_images_rm(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        const char *cmd = argv[0];
        char digest[65];
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, images_rm_help, NULL, NULL, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind >= argc)
                return usage_error(cmd, "missing DIGEST");
        if (argc - optind > 1)
                return usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
        /* No prefixes: removing is not undone, and a prefix that is unique now may not be
         * by the time hostd acts on it. */
        if (!parse_digest(argv[optind], digest))
                return usage_error(cmd,
                                   "'%s' is not a whole digest (64 hex digits; \"hostctl images "
                                   "ls --no-trunc\" shows them)",
                                   argv[optind]);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        Hostd__V1__RemoveImageRequest req = HOSTD__V1__REMOVE_IMAGE_REQUEST__INIT;
        req.digest = digest;
        _cleanup_message_ Hostd__V1__RemoveImageResponse *resp = NULL;
        r = UNARY(&c, "RemoveImage", &req, hostd__v1__remove_image_response, &resp);
        if (r < 0)
                return call_failed(&c, r, cmd);

        if (g->json) {
                /* RemoveImageResponse is empty: say what went, in gc's shape. */
                _cleanup_json_ struct json_object *o = json_object_new_object();
                struct json_object *a = json_object_new_array();
                if (!o || !a) {
                        json_object_put(a);
                        return print_json(NULL, true);
                }
                json_object_array_add(a, json_object_new_string(digest));
                json_object_object_add(o, "removed", a);
                return print_json(o, true);
        }
        printf("removed %s\n", digest);
        return EXIT_OK;
}

struct gc_opts {
        const char *cmd;
        uint64_t budget;
        bool budget_set; /* else hostd's images-budget */
};

static int gc_option(int c, const char *arg, void *userdata)
{
        struct gc_opts *o = userdata;
        if (c == OPT_BUDGET) {
                o->budget_set = true;
                return parse_bytes_flag(o->cmd, "--budget", arg, &o->budget);
        }
        return EXIT_OK;
}

static int cmd_images_gc(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                              { "budget", required_argument, NULL, OPT_BUDGET },
                                              {} };
        struct gc_opts o = { .cmd = argv[0] };
        bool help;
        int r = parse_options(g, argc, argv, ":h", opts, images_gc_help, gc_option, &o, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error(o.cmd, "unexpected argument '%s'", argv[optind]);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        Hostd__V1__PruneImagesRequest req = HOSTD__V1__PRUNE_IMAGES_REQUEST__INIT;
        if (o.budget_set) {
                req.budget_case = HOSTD__V1__PRUNE_IMAGES_REQUEST__BUDGET_BUDGET_BYTES;
                req.budget_bytes = o.budget;
        }
        _cleanup_message_ Hostd__V1__PruneImagesResponse *reply = NULL;
        r = UNARY(&c, "PruneImages", &req, hostd__v1__prune_images_response, &reply);
        if (r < 0)
                return call_failed(&c, r, o.cmd);
        if (g->json)
                return print_message_json(&reply->base);

        char b[32];
        for (size_t i = 0; i < reply->n_removed; i++) {
                _cleanup_free_ char *d = escape_str(reply->removed[i]);
                printf("removed %s\n", d ? d : "?");
        }
        printf("freed %s (%zu image%s)\n", format_bytes_human(reply->freed_bytes, b),
               reply->n_removed, reply->n_removed == 1 ? "" : "s");
        return EXIT_OK;
}

static const struct command images_commands[] = {
        { "ls", cmd_images_ls },
        { "import", cmd_images_import },
        { "rm", cmd_images_rm },
        { "gc", cmd_images_gc },
};

static int cmd_images(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        bool help;
        /* '+': options up to the sub-command are the group's, the rest are the sub-command's. */
        int r = parse_options(g, argc, argv, "+:h", opts, images_help, NULL, NULL, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind >= argc)
                return usage_error("images", "missing command (ls, import, rm or gc)");

        const char *name = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(images_commands); i++) {
                if (strcmp(images_commands[i].name, name) != 0)
                        continue;
                /* The sub-command's argv[0] names it in full, for its messages:
                 * "hostctl: images rm: ...", "Try 'hostctl images rm --help'." */
                char full[32];
                snprintf(full, sizeof full, "images %s", name);
                argv[optind] = full;
                return images_commands[i].run(g, argc - optind, argv + optind);
        }
        return usage_error("images", "unknown command '%s' (expected ls, import, rm or gc)", name);
}

/* ---- exec ---- */

static const char exec_help[] =
        "Usage: hostctl exec [-i] [-t] ID [--] COMMAND [ARG...]\n"
        "\n"
        "Run COMMAND inside the running dyno ID: in its namespaces (it sees the dyno's files\n"
        "and processes) and its cgroup, as the dyno's user, with no capability and the dyno's\n"
        "seccomp filter, in /app, with the dyno's environment. COMMAND is looked up in the\n"
        "dyno's PATH. Its output, stdout and stderr together, is written to standard output.\n"
        "hostctl exits with COMMAND's exit status (128 + the signal when it was killed).\n"
        "\n"
        "  -i, --interactive      send standard input to COMMAND (without it COMMAND's input\n"
        "                         is empty)\n"
        "  -t, --tty              give COMMAND a terminal, of the size of hostctl's own when\n"
        "                         standard input is one (it is then put in raw mode while\n"
        "                         COMMAND runs, and a resize follows)\n" COMMON_HELP "\n"
        "When hostd refuses or cannot be reached, hostctl says so on standard error and exits\n"
        "1 or 3 as every command does.\n";

struct exec_opts {
        bool interactive, tty;
};

static int exec_option(int c, const char *arg, void *userdata)
{
        struct exec_opts *o = userdata;
        if (c == 'i')
                o->interactive = true;
        else if (c == 't')
                o->tty = true;
        else
                return usage_error("exec", "unknown option");
        return EXIT_OK;
}

/* Input (and resizes) for an Exec or an Attach: the same StreamInput in each one's message. */
static int stream_input(struct grpc_call *call, bool attach, const void *data, size_t len, bool eof,
                        unsigned columns, unsigned rows)
{
        Hostd__V1__StreamInput in = HOSTD__V1__STREAM_INPUT__INIT;
        in.data.data = (uint8_t *)data;
        in.data.len = len;
        in.eof = eof;
        in.columns = columns;
        in.rows = rows;
        if (attach) {
                Hostd__V1__AttachRequest req = HOSTD__V1__ATTACH_REQUEST__INIT;
                req.kind_case = HOSTD__V1__ATTACH_REQUEST__KIND_INPUT;
                req.input = &in;
                return grpc_call_send(call, &req.base, false);
        }
        Hostd__V1__ExecRequest req = HOSTD__V1__EXEC_REQUEST__INIT;
        req.kind_case = HOSTD__V1__EXEC_REQUEST__KIND_INPUT;
        req.input = &in;
        return grpc_call_send(call, &req.base, false);
}

static const Hostd__V1__StreamOutput *stream_output(const ProtobufCMessage *m, bool attach)
{
        return attach ? ((const Hostd__V1__AttachResponse *)m)->output :
                        ((const Hostd__V1__ExecResponse *)m)->output;
}

static volatile sig_atomic_t exec_resized;
static void on_sigwinch(int sig) { exec_resized = 1; }

static struct termios exec_saved_termios;
static bool exec_raw;
static void exec_restore_terminal(void)
{
        if (exec_raw)
                tcsetattr(STDIN_FILENO, TCSADRAIN, &exec_saved_termios);
        exec_raw = false;
}

/* Standard input read ahead of what hostd took: past this, hostctl stops reading it. */
#define STREAM_INPUT_HIGH (256 * 1024)

/* Open method (Exec or Attach) with its first message, start, and be the process's terminal:
 * standard input to the stream (with interactive; else its end at once), its output to
 * standard output, a resize on SIGWINCH when term (standard input, a terminal, is then raw).
 * Returns the command's exit status, or EXIT_REMOTE / EXIT_UNREACHABLE after saying why on
 * standard error.
 *
 * The end of input is an `eof` message, never a half-close of the stream: a resize may still
 * follow it, and hostd's side ends the call once the process is gone. */
static int stream_loop(struct grpc_client *c, const char *what, const char *method,
                       const ProtobufCMessage *start, bool attach, bool interactive, bool term)
{
        const ProtobufCMessageDescriptor *d = attach ? &hostd__v1__attach_response__descriptor :
                                                       &hostd__v1__exec_response__descriptor;
        _cleanup_(grpc_call_done) struct grpc_call call = {};
        /* No deadline: the process runs as long as it runs. */
        int r = grpc_call_start(c, &call, method, -1);
        if (r >= 0)
                r = grpc_call_send(&call, start, false);
        if (r >= 0 && !interactive)
                r = stream_input(&call, attach, NULL, 0, true, 0, 0);
        if (r < 0)
                return call_failed(c, r, what);

        /* SIGWINCH is let in only while ppoll() waits: one that came between the check of
         * exec_resized and the wait would otherwise wait for the next event to be seen. */
        struct winsize ws;
        sigset_t winch, wait_mask;
        sigemptyset(&winch);
        sigaddset(&winch, SIGWINCH);
        sigprocmask(SIG_BLOCK, &winch, &wait_mask);
        sigdelset(&wait_mask, SIGWINCH);
        if (term) {
                struct sigaction sa = { .sa_handler = on_sigwinch };
                sigaction(SIGWINCH, &sa, NULL);
                if (tcgetattr(STDIN_FILENO, &exec_saved_termios) == 0) {
                        struct termios raw = exec_saved_termios;
                        cfmakeraw(&raw);
                        if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) == 0) {
                                exec_raw = true;
                                atexit(exec_restore_terminal);
                        }
                }
        }

        bool input_open = interactive, exited = false;
        int status = 0;
        while (!exited) {
                if (exec_resized) {
                        exec_resized = 0;
                        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
                                stream_input(&call, attach, NULL, 0, false, ws.ws_col, ws.ws_row);
                }
                /* Send what is queued, take what has come; a failure shows below. */
                grpc_client_process(c, 0);
                ProtobufCMessage *m;
                while (!exited && (r = grpc_call_try_recv(&call, d, &m)) > 0) {
                        const Hostd__V1__StreamOutput *out = stream_output(m, attach);
                        for (size_t done = 0; out && done < out->data.len;) {
                                ssize_t w = write(STDOUT_FILENO, out->data.data + done,
                                                  out->data.len - done);
                                if (w < 0 && errno == EINTR)
                                        continue;
                                if (w <= 0)
                                        break; /* nobody reads our output: the rest is lost */
                                done += (size_t)w;
                        }
                        if (out && out->exited) {
                                exited = true;
                                status = out->exit_code;
                        }
                        protobuf_c_message_free_unpacked(m, NULL);
                }
                if (exited)
                        break;
                if (r == 0) {
                        exec_restore_terminal();
                        fprintf(stderr,
                                "hostctl: %s: hostd ended the call without the exit status\n",
                                what);
                        return EXIT_UNREACHABLE;
                }
                if (r != -EAGAIN) {
                        exec_restore_terminal();
                        return call_failed(c, r, what);
                }

                bool reading = input_open && grpc_call_pending(&call) < STREAM_INPUT_HIGH;
                struct pollfd pfd[2] = {
                        { .fd = grpc_client_fd(c), .events = grpc_client_poll_events(c) },
                        { .fd = reading ? STDIN_FILENO : -1, .events = POLLIN },
                };
                int ms = grpc_client_poll_timeout(c);
                struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
                if (ppoll(pfd, 2, ms < 0 ? NULL : &ts, &wait_mask) < 0) {
                        if (errno == EINTR)
                                continue; /* SIGWINCH */
                        exec_restore_terminal();
                        fprintf(stderr, "hostctl: %s: poll: %m\n", what);
                        return EXIT_UNREACHABLE;
                }
                if (pfd[1].revents) {
                        char buf[32768];
                        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                input_open = false;
                                stream_input(&call, attach, NULL, 0, true, 0, 0);
                        } else
                                stream_input(&call, attach, buf, (size_t)n, false, 0, 0);
                }
        }
        exec_restore_terminal();

        /* The exit status is the last message; hostd's status follows it at once. An error
         * there is still hostd's word; one that does not come does not hide the status. */
        uint64_t until = c->timeout_ms >= 0 ?
                                 now_monotonic_usec() + (uint64_t)c->timeout_ms * 1000 :
                                 UINT64_MAX;
        ProtobufCMessage *m;
        while ((r = grpc_call_recv(&call, d, until, &m)) > 0)
                protobuf_c_message_free_unpacked(m, NULL);
        if (r == -EREMOTEIO)
                return call_failed(c, r, what);
        return status > 255 ? 255 : status < 0 ? 255 : status;
}

/* $TERM of hostctl's own terminal, for a process on a terminal in the dyno: "" when unset or
 * not a name hostd takes (it then says xterm). */
static const char *client_term(void)
{
        const char *t = getenv("TERM");
        if (!t || !*t || strlen(t) > 63)
                return "";
        for (const char *p = t; *p; p++)
                if (!isalnum((unsigned char)*p) && !strchr("._-+", *p))
                        return "";
        return t;
}

static int cmd_exec(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "interactive", no_argument, NULL, 'i' },
                { "tty", no_argument, NULL, 't' },
                {},
        };
        struct exec_opts o = {};
        bool help;
        /* '+': options end at the ID, so that COMMAND's own options are left alone. */
        int r = parse_options(g, argc, argv, "+:hit", opts, exec_help, exec_option, &o, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind >= argc || !*argv[optind])
                return usage_error("exec", "missing dyno ID");
        const char *id = argv[optind++];
        if (optind < argc && strcmp(argv[optind], "--") == 0)
                optind++;
        if (optind >= argc || !*argv[optind])
                return usage_error("exec", "missing COMMAND (give it after the ID)");

        struct winsize ws = {};
        bool term = o.tty && isatty(STDIN_FILENO) && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0;

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;

        Hostd__V1__ExecStart es = HOSTD__V1__EXEC_START__INIT;
        es.id = (char *)id;
        es.argv = argv + optind;
        es.n_argv = (size_t)(argc - optind);
        es.tty = o.tty;
        es.tty_columns = term ? ws.ws_col : 0;
        es.tty_rows = term ? ws.ws_row : 0;
        es.term = (char *)(o.tty ? client_term() : "");
        Hostd__V1__ExecRequest req = HOSTD__V1__EXEC_REQUEST__INIT;
        req.kind_case = HOSTD__V1__EXEC_REQUEST__KIND_START;
        req.start = &es;
        _cleanup_free_ char *what = strjoin3("exec ", id, NULL);
        return stream_loop(&c, what ? what : "exec", "Exec", &req.base, false, o.interactive, term);
}

/* ---- run ---- */

static const char run_help[] =
        "Usage: hostctl run [-i] [-t] [FLAGS] -- COMMAND...\n"
        "       hostctl run [-i] [-t] --spec FILE [FLAGS] [-- COMMAND...]\n"
        "\n"
        "Start a one-off dyno running COMMAND with a terminal, and attach to it: its output\n"
        "is written to standard output, and hostctl exits with COMMAND's exit status when\n"
        "the dyno ends. The terminal has hostctl's own size when standard input is one, else\n"
        "80x24. A one-off dyno is never restarted. If hostctl goes away, the dyno's processes\n"
        "get SIGHUP every few seconds and then the dyno ends (R16).\n"
        "\n"
        "  -i, --interactive      send standard input to the dyno's terminal\n"
        "  -t, --tty              put hostctl's own terminal in raw mode while attached, and\n"
        "                         pass its resizes on (standard input must be a terminal)\n"
        "\n"
        "The flags are those of \"hostctl start\" (see hostctl start --help); the type is\n"
        "one-off. Without --id the dyno's id is run-<8 hex digits>; without --name, its name\n"
        "is run.<4 digits>.\n"
        "\n" COMMON_HELP;

struct run_flags {
        struct start_flags f;
        bool interactive, tty;
};

static int run_option(int c, const char *arg, void *userdata)
{
        struct run_flags *rf = userdata;
        if (c == 'i')
                return rf->interactive = true, EXIT_OK;
        if (c == 't')
                return rf->tty = true, EXIT_OK;
        return start_option(c, arg, &rf->f);
}

static int cmd_run(struct globals *g, int argc, char **argv)
{
        /* clang-format off */
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS, START_LONG_OPTIONS,
                { "interactive", no_argument, NULL, 'i' },
                { "tty", no_argument, NULL, 't' },
                {},
        };
        /* clang-format on */
        struct run_flags rf = {};
        bool help;
        int r = parse_options(g, argc, argv, "+:hit", opts, run_help, run_option, &rf, &help);
        if (r != EXIT_OK || help) {
                start_flags_done(&rf.f);
                return r;
        }
        _cleanup_(spec_freep) Hostd__V1__DynoSpec *spec = NULL;
        r = spec_from_args("run", &rf.f, argc, argv, &spec);
        start_flags_done(&rf.f);
        if (r != EXIT_OK)
                return r;
        if (!*spec->command)
                return usage_error("run", "missing COMMAND (give it after --)");

        uint32_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                rnd = (uint32_t)time(NULL) ^ (uint32_t)getpid();
        char idbuf[32], namebuf[32];
        snprintf(idbuf, sizeof idbuf, "run-%08" PRIx32, rnd);
        snprintf(namebuf, sizeof namebuf, "run.%04" PRIu32, rnd % 10000);
        if ((!*spec->id && spec_set_string(&spec->id, idbuf) < 0) ||
            (!*spec->name && spec_set_string(&spec->name, namebuf) < 0))
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;
        struct winsize ws = {};
        bool term = rf.tty && isatty(STDIN_FILENO) && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0;
        spec->type = HOSTD__V1__DYNO_TYPE__DYNO_TYPE_ONE_OFF;
        spec->tty = true;
        spec->tty_columns = term ? ws.ws_col : 80;
        spec->tty_rows = term ? ws.ws_row : 24;
        if (!*spec->tty_term && *client_term() &&
            spec_set_string(&spec->tty_term, client_term()) < 0)
                return fprintf(stderr, "hostctl: out of memory\n"), EXIT_REMOTE;

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        _cleanup_free_ char *what = strjoin3("run ", spec->id, NULL);
        _cleanup_message_ Hostd__V1__StartResponse *resp = NULL;
        r = start_call(&c, spec, &resp);
        if (r < 0)
                return call_failed(&c, r, what ? what : "run");
        if (!term)
                fprintf(stderr, "Running `%s` attached to terminal... up, %s\n", spec->command,
                        spec->name);

        Hostd__V1__AttachStart as = HOSTD__V1__ATTACH_START__INIT;
        as.id = spec->id;
        Hostd__V1__AttachRequest req = HOSTD__V1__ATTACH_REQUEST__INIT;
        req.kind_case = HOSTD__V1__ATTACH_REQUEST__KIND_START;
        req.start = &as;
        return stream_loop(&c, what ? what : "run", "Attach", &req.base, true, rf.interactive,
                           term);
}

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

struct events_opts {
        uint64_t since;
        bool follow, json;
};

static int events_option(int c, const char *arg, void *userdata)
{
        struct events_opts *o = userdata;
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

static int print_event(const ProtobufCMessage *m, void *userdata)
{
        const struct events_opts *o = userdata;
        const Hostd__V1__Event *e = ((const Hostd__V1__SubscribeEventsResponse *)m)->event;
        if (!e)
                return 0;
        if (o->json) {
                _cleanup_json_ struct json_object *j = message_to_json(&e->base);
                if (j)
                        puts(json_object_to_json_string_ext(
                                j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        } else {
                char tb[48], sb[32], kb[32];
                const char *k =
                        e->kind ? enum_name(&hostd__v1__event_kind__descriptor, (int)e->kind, kb) :
                                  "-";
                _cleanup_free_ char *dyno = escape_str(or_dash(e->dyno_id)), *kind = escape_str(k),
                                    *msg = escape_str(or_dash(e->message));
                printf("%" PRIu64 " %s %s %s %s %s\n", e->seq, format_time(e->time_usec, tb),
                       dyno ? dyno : "?", kind ? kind : "?",
                       e->state ? state_name(e->state, sb) : "-", msg ? msg : "?");
        }
        return fflush(stdout) != 0 ? -errno : 0;
}

static int cmd_events(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "since", required_argument, NULL, OPT_SINCE },
                { "follow", no_argument, NULL, 'f' },
                {},
        };
        struct events_opts o = {};
        bool help;
        int r = parse_options(g, argc, argv, ":hf", opts, events_help, events_option, &o, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error("events", "unexpected argument '%s'", argv[optind]);
        o.json = g->json;

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        Hostd__V1__SubscribeEventsRequest req = HOSTD__V1__SUBSCRIBE_EVENTS_REQUEST__INIT;
        req.since = o.since;
        req.follow = o.follow;
        /* The kept events end by themselves: a deadline. A follow has none (issue 18): it
         * waits for events as long as it takes, and keepalive pings notice a dead hostd. */
        r = grpc_server_stream(&c, "SubscribeEvents", &req.base,
                               &hostd__v1__subscribe_events_response__descriptor,
                               o.follow ? -1 : c.timeout_ms, -1, print_event, &o);
        if (r < 0 && !c.error[0]) {
                fprintf(stderr, "hostctl: events: write output: %s\n", strerror(-r));
                return EXIT_REMOTE;
        }
        if (r < 0)
                return call_failed(&c, r, "events");
        return EXIT_OK;
}

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

static int top_option(int c, const char *arg, void *userdata)
{
        struct top_state *t = userdata;
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
                char sb[32], cpu[32] = "-", mem[32], quota[32], pct[32] = "-", pids[32], rx[32],
                             tx[32], load[32];
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
                now[i] = (struct top_prev){ strdup(d->dyno_id), d->cpu_usec, d->time_usec };
                if (!now[i].id)
                        r = -ENOMEM;
                if (r >= 0)
                        r = table_add(&tb, d->dyno_id);
                if (r >= 0)
                        r = table_add(&tb, or_dash(d->name));
                if (r >= 0)
                        r = table_add(&tb, state_name(d->state, sb));
                if (r >= 0)
                        r = table_add(&tb, cpu);
                if (r >= 0)
                        r = table_add(&tb, format_bytes_human(d->memory_total, mem));
                if (r >= 0)
                        r = table_add(&tb, d->memory_quota ?
                                                   format_bytes_human(d->memory_quota, quota) :
                                                   "-");
                if (r >= 0)
                        r = table_add(&tb, pct);
                if (r >= 0)
                        r = table_add(&tb, pids);
                if (r >= 0)
                        r = table_add(&tb, format_bytes_human(d->rx_bytes, rx));
                if (r >= 0)
                        r = table_add(&tb, format_bytes_human(d->tx_bytes, tx));
                if (r >= 0)
                        r = table_add(&tb, load);
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
        const Hostd__V1__Host *h = b->host;
        if (h) {
                char avail[32], total[32];
                printf("%s: %" PRIu32 " dynos, load %.2f %.2f %.2f, memory %s available of %s, "
                       "%" PRIu32 " CPUs\n\n",
                       or_dash(h->hostname), h->dynos, h->load_1m, h->load_5m, h->load_15m,
                       format_bytes_human(h->memory_available, avail),
                       format_bytes_human(h->memory_total, total), h->cpus);
        }
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
        if (t->json) {
                _cleanup_json_ struct json_object *j = message_to_json(&b->base);
                if (j)
                        puts(json_object_to_json_string_ext(
                                j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        } else {
                int r = top_table(t, b);
                if (r < 0)
                        return r;
        }
        if (fflush(stdout) != 0)
                return -errno;
        t->done++;
        return t->iterations && t->done >= t->iterations ? -ECANCELED : 0;
}

static int cmd_top(struct globals *g, int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "interval", required_argument, NULL, OPT_INTERVAL },
                { "iterations", required_argument, NULL, 'n' },
                {},
        };
        struct top_state t = { .interval = 2 };
        bool help;
        int r = parse_options(g, argc, argv, ":hn:", opts, top_help, top_option, &t, &help);
        if (r != EXIT_OK || help)
                return r;
        if (optind < argc)
                return usage_error("top", "unexpected argument '%s'", argv[optind]);
        t.json = g->json;
        t.tty = isatty(STDOUT_FILENO);

        _cleanup_client_ struct grpc_client c;
        r = connect_hostd(&c, g);
        if (r != EXIT_OK)
                return r;
        Hostd__V1__SubscribeMetricsRequest req = HOSTD__V1__SUBSCRIBE_METRICS_REQUEST__INIT;
        req.interval_seconds = t.interval;
        /* A subscription has no deadline; its first batch comes at once, and --timeout is how
         * long hostctl waits for it. */
        r = grpc_server_stream(&c, "SubscribeMetrics", &req.base,
                               &hostd__v1__subscribe_metrics_response__descriptor, -1, c.timeout_ms,
                               top_batch, &t);
        top_prev_free(t.prev, t.n_prev);
        if (r == -ECANCELED && t.iterations && t.done >= t.iterations)
                return EXIT_OK;
        if (r < 0 && !c.error[0]) {
                fprintf(stderr, "hostctl: top: write output: %s\n", strerror(-r));
                return EXIT_REMOTE;
        }
        if (r < 0)
                return call_failed(&c, r, "top");
        return EXIT_OK;
}

/* ---- main ---- */

static const struct command commands[] = {
        { "ps", cmd_ps },           { "inspect", cmd_inspect }, { "start", cmd_start },
        { "stop", cmd_stop },       { "restart", cmd_restart }, { "logs", cmd_logs },
        { "host", cmd_host },       { "drain", cmd_drain },     { "undrain", cmd_undrain },
        { "version", cmd_version }, { "images", cmd_images },   { "exec", cmd_exec },
        { "run", cmd_run },         { "events", cmd_events },   { "top", cmd_top },
};

static const char main_help[] =
        "Usage: hostctl [OPTIONS] COMMAND [ARGS...]\n"
        "\n"
        "Operate the dynos of a host through hostd's API, the gRPC service hostd.v1.Hostd:\n"
        "on hostd's Unix socket, or with --host on its TLS listener.\n"
        "\n"
        "Commands:\n"
        "  ps                       list the dynos\n"
        "  inspect ID               show every field of a dyno\n"
        "  start [FLAGS] [-- COMMAND...]\n"
        "                           start a dyno (from flags and/or --spec FILE)\n"
        "  stop ID [--grace SECONDS]\n"
        "                           stop a dyno and show how it ended\n"
        "  restart ID [--grace SECONDS]\n"
        "                           restart a dyno\n"
        "  logs ID [--lines N] [-f] show (or follow) a dyno's log lines\n"
        "  run [-i] [-t] [FLAGS] -- COMMAND...\n"
        "                           run a one-off dyno attached to this terminal\n"
        "  exec [-i] [-t] ID -- COMMAND...\n"
        "                           run a command inside a running dyno\n"
        "  events [--since N] [-f]  show (or follow) the host's numbered events\n"
        "  top [--interval N] [-n N]\n"
        "                           show the running dynos' CPU, memory, pids and network,\n"
        "                           refreshed\n"
        "  host                     show the host's capacity and dyno sizes\n"
        "  drain [--deadline S]     take no new dynos (then stop the running ones after S)\n"
        "  undrain                  take new dynos again\n"
        "  version                  show the versions of hostctl and hostd\n"
        "  images ls [--no-trunc]   list the stacks and slugs in hostd's image store\n"
        "  images import SOURCE --sha256 HEX --kind stack|slug\n"
        "                           fetch, verify and unpack a stack or slug tarball\n"
        "  images rm DIGEST         remove an image no dyno uses\n"
        "  images gc [--budget BYTES]\n"
        "                           remove unused images, least recently used first\n"
        "\n"
        "Options (also accepted after the command):\n"
        "      --socket PATH        hostd's socket (default " HOSTD_SOCKET_PATH_DEFAULT ";\n"
        "                           the environment variable HOSTCTL_SOCKET sets it too)\n"
        "      --host ADDR:PORT     talk to hostd's TLS listener (listen-tls) instead of the\n"
        "                           socket: TLS 1.3 with ALPN h2, this client's certificate\n"
        "                           --cert FILE and its key --key FILE (PEM), hostd's\n"
        "                           certificate checked against the CAs of --ca FILE and\n"
        "                           against ADDR (an IP address or a DNS name it must\n"
        "                           carry). The environment variables HOSTCTL_HOST,\n"
        "                           HOSTCTL_CERT, HOSTCTL_KEY and HOSTCTL_CA set the same;\n"
        "                           the options win\n"
        "      --json               print JSON mirroring the API's messages (field names in\n"
        "                           snake_case, enums as lower-case strings without their\n"
        "                           prefix, \"up\" for DYNO_STATE_UP, times as microseconds\n"
        "                           since the epoch)\n"
        "      --timeout SECONDS    wait this long to connect, and for each reply: the\n"
        "                           deadline (grpc-timeout) of each call that expects one\n"
        "                           (default 30; 0: forever). Follows (events -f, logs -f,\n"
        "                           exec, run, top after its first refresh) have none: they\n"
        "                           wait as long as it takes, and hostctl pings a quiet hostd\n"
        "                           (every HOSTCTL_KEEPALIVE seconds, default 300; 0: never)\n"
        "                           to notice one that is gone\n"
        "  -h, --help               show this help; \"hostctl COMMAND --help\" for a command\n"
        "      --version            show hostctl's version\n"
        "\n"
        "Exit status: 0 success; 1 hostd answered with an error (or writing the output\n"
        "failed); 2 usage error; 3 hostd could not be reached, the connection broke, or no\n"
        "reply came in time.\n";

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        struct globals g = { .socket_path = HOSTD_SOCKET_PATH_DEFAULT,
                             .timeout_s = TIMEOUT_DEFAULT_S,
                             .keepalive_s = GRPC_KEEPALIVE_DEFAULT_S };
        const char *env[] = { "HOSTCTL_SOCKET", "HOSTCTL_HOST", "HOSTCTL_CERT", "HOSTCTL_KEY",
                              "HOSTCTL_CA" };
        const char **field[] = { &g.socket_path, &g.host, &g.cert, &g.key, &g.ca };
        for (size_t i = 0; i < ELEMENTSOF(env); i++) {
                const char *v = getenv(env[i]);
                if (v && *v)
                        *field[i] = v;
        }
        const char *ka = getenv("HOSTCTL_KEEPALIVE");
        if (ka && *ka && safe_atou32(ka, &g.keepalive_s) < 0) {
                fprintf(stderr, "hostctl: HOSTCTL_KEEPALIVE '%s': expected seconds (0: no pings)\n",
                        ka);
                return EXIT_USAGE;
        }
        int c;

        opterr = 0;
        /* '+': the first word that is not an option is the command; what follows is its. */
        while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) >= 0) {
                if (c == 'h') {
                        fputs(main_help, stdout);
                        return finish_output(EXIT_OK);
                }
                if (c == OPT_VERSION) {
                        printf("hostctl %s\n", HOSTD_VERSION);
                        return finish_output(EXIT_OK);
                }
                if (c == '?' || c == ':')
                        return bad_option(NULL, c, argv);
                if (common_option(&g, NULL, c, optarg) < 0)
                        return EXIT_USAGE;
        }
        if (optind >= argc)
                return usage_error(NULL, "missing command");

        const char *name = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return finish_output(commands[i].run(&g, argc - optind, argv + optind));
        return usage_error(NULL, "unknown command '%s'", name);
}
