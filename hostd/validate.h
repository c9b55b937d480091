/* Checks on everything that arrives from the wire, before anything acts on it. Each returns
 * a hostd.v1.Code (OK is 0) and writes a message that names the field and the reason. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hostd.pb-c.h"

/* [A-Za-z0-9][A-Za-z0-9._-]{0,62}: safe as a file name, a cgroup name and a hostname. */
bool dyno_id_valid(const char *id);
int validate_id(const char *field, const char *id, char *msg, size_t len);
/* An image source: http(s)://, file:// or an absolute path. */
int validate_image_source(const char *field, const char *url, char *msg, size_t len);
int validate_spec(const Hostd__V1__DynoSpec *s, const struct config *c,
                  const struct size_def **ret_size, char *msg, size_t len);
/* 64 lower-case hex digits, the id of an image. */
int validate_digest(const char *field, const char *digest, char *msg, size_t len);
/* A stop's or restart's grace period, when the request sets one. */
int validate_grace(bool grace_set, uint32_t grace, char *msg, size_t len);
int validate_exec(const Hostd__V1__ExecRequest *req, const struct config *c, char *msg, size_t len);
int validate_image_import(const Hostd__V1__ImageImportRequest *req, char *msg, size_t len);

#define EXEC_MAX_ARGS 1024

/* Every check a request gets before hostd looks at its state (a dyno, an image, a stream),
 * in the order the calls make them: the checks above, as rpc.c, manager.c and exec.c apply
 * them to each call. For the fuzzer and the tests; hostd calls the parts where they belong. */
int validate_request(const Hostd__V1__Request *req, const struct config *c, char *msg, size_t len);
