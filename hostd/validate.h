/* Checks on everything that arrives from the wire, before anything acts on it. Each returns
 * a hostd.v1.Code (OK is 0) and writes a message that names the field and the reason. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "hostd.pb-c.h"

/* [A-Za-z0-9][A-Za-z0-9._-]{0,62}: safe as a file name, a cgroup name and a hostname. */
bool dyno_id_valid(const char *id);
int validate_id(const char *field, const char *id, char *msg, size_t len);
/* An image source: http(s)://, file:// or an absolute path. */
int validate_image_source(const char *field, const char *url, char *msg, size_t len);
int validate_spec(const Hostd__V1__DynoSpec *s, const struct config *c,
                  const struct size_def **ret_size, char *msg, size_t len);
