/* What hostctl prints: hostd's text made safe for a terminal, times and sizes, "key: value"
 * blocks, tables, and JSON. */
#include <inttypes.h>
#include <sys/ioctl.h>
#include <time.h>

#include "exit-status.h"
#include "output.h"

/* ---- text ---- */

/* Control characters from hostd's data (a dyno's command, its log lines) are shown escaped:
 * a newline would break a table, and an escape sequence (C0 ESC, or a C1 control such as
 * U+009B, CSI) could drive the operator's terminal. Bytes that are not UTF-8 show as \xNN. */
char *escape_cntrl(const char *s, size_t n, bool keep_tab)
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

char *escape_str(const char *s) { return escape_cntrl(s ? s : "", s ? strlen(s) : 0, false); }

/* Valid UTF-8 with every bad byte replaced by U+FFFD: json-c writes strings byte for byte,
 * and a log line's bytes need not be UTF-8, while a JSON document must be. */
char *utf8_sanitize(const uint8_t *p, size_t n, size_t *ret_len)
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
void truncate_utf8(char *s, size_t max)
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
const char *format_time(int64_t usec, char buf[static 48])
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

const char *format_duration(int64_t usec, char buf[static 32])
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
const char *enum_name(const ProtobufCEnumDescriptor *d, int v, char buf[static 32])
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

const char *state_name(Hostd__V1__DynoState s, char buf[static 32])
{
        return enum_name(&hostd__v1__dyno_state__descriptor, (int)s, buf);
}

const char *or_dash(const char *s) { return s && *s ? s : "-"; }

/* Always one decimal, for a counter that moves: "45.2M", "100.0M"; bytes below 1K. */
const char *format_progress_bytes(uint64_t v, char buf[static 32])
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

const char *format_age(int64_t usec, int64_t now, const char *none, char buf[static 48])
{
        char d[32];
        if (usec <= 0)
                return none;
        snprintf(buf, 48, "%s ago", format_duration(now - usec, d));
        return buf;
}

/* ---- "key: value" blocks and tables ---- */

#define KEY_WIDTH 21

void kv(const char *key, const char *fmt, ...)
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

void table_free(struct table *t)
{
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
}

int table_add(struct table *t, const char *text)
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

size_t text_width(const char *s)
{
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        w++;
        return w;
}

void table_print(const struct table *t)
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

size_t terminal_columns(void)
{
        struct winsize ws;
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 0;
}

/* ---- JSON: any message, through protobuf-c's descriptors ---- */

struct json_object *json_string_utf8(const uint8_t *p, size_t n)
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

static struct json_object *repeated_to_json(const ProtobufCFieldDescriptor *f, const char *base)
{
        size_t n = *(const size_t *)(base + f->quantifier_offset);
        const char *arr = *(char *const *)(base + f->offset);
        struct json_object *v = json_object_new_array_ext((int)n);
        for (size_t k = 0; v && k < n; k++)
                json_object_array_add(v, value_to_json(f, arr + k * element_size(f->type)));
        return v;
}

/* A oneof member only when it is the one set; an optional scalar only when it is there. */
static bool field_is_set(const ProtobufCFieldDescriptor *f, const char *base)
{
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
            f->type != PROTOBUF_C_TYPE_STRING)
                return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
        return true;
}

/* Every plain field is written, defaults included, so that scripts find each key; a oneof
 * member only when it is the one set, and an absent sub-message not at all. */
struct json_object *message_to_json(const ProtobufCMessage *m)
{
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const char *base = (const char *)m;
        struct json_object *o = json_object_new_object();
        if (!o)
                return NULL;

        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                struct json_object *v;
                if (f->label == PROTOBUF_C_LABEL_REPEATED)
                        v = repeated_to_json(f, base);
                else if (!field_is_set(f, base) || !(v = value_to_json(f, base + f->offset)))
                        continue;
                json_object_object_add(o, f->name, v);
        }
        return o;
}

int print_json(struct json_object *o, bool pretty)
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

int print_message_json(const ProtobufCMessage *m)
{
        _cleanup_json_ struct json_object *o = message_to_json(m);
        return print_json(o, true);
}

void print_message_json_line(const ProtobufCMessage *m)
{
        _cleanup_json_ struct json_object *j = message_to_json(m);
        if (j)
                puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Output errors (a full disk) must not pass for success. */
int finish_output(int status)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "hostctl: write output: %m\n");
                return status == EXIT_OK ? EXIT_REMOTE : status;
        }
        return status;
}
