/* What hostctl prints: hostd's text made safe for a terminal, times, durations and sizes,
 * "key: value" blocks, tables, and any API message as JSON. No calls to hostd here. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostd.pb-c.h"
#include "util.h"

/* ---- text ---- */

/* Control characters escaped (\n, \t, \xNN, \u0080..\u009f; a tab kept with keep_tab), bytes
 * that are not UTF-8 as \xNN. NULL on ENOMEM. */
char *escape_cntrl(const char *s, size_t n, bool keep_tab);
/* The same for a string; NULL counts as "". */
char *escape_str(const char *s);
/* Valid UTF-8, every bad byte replaced by U+FFFD; its length in *ret_len. NULL on ENOMEM. */
char *utf8_sanitize(const uint8_t *p, size_t n, size_t *ret_len);
/* Cut s to at most max characters (code points), with "..." when cut. */
void truncate_utf8(char *s, size_t max);
/* Characters (code points) of s: its width on a terminal, as the tables count it. */
size_t text_width(const char *s);
/* "-" for NULL or "". */
const char *or_dash(const char *s);

/* RFC 3339 with microseconds and the local offset; "-" for none (usec <= 0). */
const char *format_time(int64_t usec, char buf[static 48]);
/* "45s", "3m05s", "2h10m", "4d03h". */
const char *format_duration(int64_t usec, char buf[static 32]);
/* "3m05s ago" from usec to now; none when usec is not set. */
const char *format_age(int64_t usec, int64_t now, const char *none, char buf[static 48]);
/* Always one decimal, for a counter that moves: "45.2M", "100.0M"; bytes below 1K. */
const char *format_progress_bytes(uint64_t v, char buf[static 32]);

/* An enum's value as the CLI shows it: lower-case, without the enum's prefix ("up" for
 * DYNO_STATE_UP, "one_off"); "unspecified" for the zero value; the number for one this build
 * does not know. */
const char *enum_name(const ProtobufCEnumDescriptor *d, int v, char buf[static 32]);
const char *state_name(Hostd__V1__DynoState s, char buf[static 32]);

/* ---- "key: value" blocks and tables ---- */

/* One line "key:   value", the values in one column, the value escaped. */
_printf_(2, 3) void kv(const char *key, const char *fmt, ...);

/* A table of text cells; the widths fit the longest cell, the last column is not padded. */
struct table {
        size_t n_cols, n_cells;
        char **cells;
};
/* Append a cell (escaped) to the last row, or start the next one. -ENOMEM. */
int table_add(struct table *t, const char *text);
void table_print(const struct table *t);
void table_free(struct table *t);
/* The width of the terminal on standard output; 0 when it is not one. */
size_t terminal_columns(void);

/* ---- JSON ---- */

static inline void json_putp(struct json_object **o) { json_object_put(*o); }
#define _cleanup_json_ _cleanup_(json_putp)

/* Any message, through protobuf-c's descriptors: field names as in the .proto, enums as
 * enum_name() shows them, bytes as text; NULL on ENOMEM. */
struct json_object *message_to_json(const ProtobufCMessage *m);
/* A string of bytes that need not be UTF-8, made valid. NULL on ENOMEM. */
struct json_object *json_string_utf8(const uint8_t *p, size_t n);
/* Print o (NULL: out of memory, EXIT_REMOTE), pretty or on one line. */
int print_json(struct json_object *o, bool pretty);
/* A reply, pretty: EXIT_OK, or EXIT_REMOTE when out of memory. */
int print_message_json(const ProtobufCMessage *m);
/* A message of a stream, one line each; nothing when out of memory. */
void print_message_json_line(const ProtobufCMessage *m);

/* The exit status once output is done: writing it must not fail silently (a full disk). */
int finish_output(int status);
