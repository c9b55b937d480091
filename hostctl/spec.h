/* Dyno specs for "hostctl start": a JSON object mirroring the DynoSpec message, with proto
 * field names (snake_case), and the helpers that command-line flags use to override it.
 *
 * Every DynoSpec made here owns its strings and arrays (malloc), so spec_free() (protobuf-c's
 * free_unpacked) releases all of it. */
#pragma once

#include <stddef.h>

#include "hostd.pb-c.h"

/* An empty spec, every field at its default. NULL on ENOMEM. */
Hostd__V1__DynoSpec *spec_new(void);
void spec_free(Hostd__V1__DynoSpec *s);
static inline void spec_freep(Hostd__V1__DynoSpec **s) { spec_free(*s); }

/* Parse len bytes of JSON. Keys: id, name, app, type, size, command, env, port, stack_path,
 * slug_path, stack_digest, slug_digest, stack_url, slug_url, grace_seconds,
 * boot_timeout_seconds, release, tty, tty_columns, tty_rows, runtime_metrics, log_drains.
 * "env" is an object {"NAME": "value"} or a list of {"name": ..., "value": ...}; "type" is
 * web, worker or one_off (or the enum's names). A null value counts as absent.
 * Returns 0 and *ret, or -EINVAL with a message naming the key in err ("key 'port': 70000 is
 * out of range (0..65535)"), or -ENOMEM. */
int spec_parse_json(const char *text, size_t len, Hostd__V1__DynoSpec **ret, char *err,
                    size_t errlen);

/* "web", "worker", "one_off" or "one-off", or the enum's value names ("DYNO_TYPE_ONE_OFF"),
 * any case.
 * -EINVAL. */
int spec_parse_type(const char *s, Hostd__V1__DynoType *ret);
/* "web", "worker", "one_off", "unspecified"; NULL for a value this build does not know. */
const char *spec_type_name(Hostd__V1__DynoType t);

/* Replace a string field of a spec (freeing the old value). -ENOMEM. */
int spec_set_string(char **field, const char *value);
/* Set a config var: replace the value of the variable with that name or append one.
 * -EINVAL for an empty name or one that contains '=', -ENOMEM. */
int spec_set_env(Hostd__V1__DynoSpec *s, const char *name, const char *value);
/* Append a syslog drain URL. -ENOMEM. */
int spec_add_log_drain(Hostd__V1__DynoSpec *s, const char *url);
