/* Checks on everything that arrives from the wire, before anything acts on it. Each returns
 * an api_code (API_OK is 0) and writes a message that names the field and the reason. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api-code.h"
#include "config.h"
#include "hostd.pb-c.h"

enum api_code validate_id(const char *field, const char *id, char *msg, size_t len);
/* An image source: http(s)://, file:// or an absolute path. */
enum api_code validate_image_source(const char *field, const char *url, char *msg, size_t len);
enum api_code validate_spec(const Hostd__V1__DynoSpec *s, const struct config *c,
                            const struct size_def **ret_size, char *msg, size_t len);
/* 64 lower-case hex digits, the id of an image. */
enum api_code validate_digest(const char *field, const char *digest, char *msg, size_t len);
/* A stop's or restart's grace period, when the request sets one. */
enum api_code validate_grace(bool grace_set, uint32_t grace, char *msg, size_t len);
/* Exec's first message. */
enum api_code validate_exec(const Hostd__V1__ExecStart *req, const struct config *c, char *msg,
                            size_t len);

#define EXEC_MAX_ARGS 1024
#define DRAIN_DEADLINE_MAX (7 * 24 * 3600)
/* SubscribeMetrics' interval_seconds: 0 (unset) means the default. */
#define METRICS_INTERVAL_DEFAULT 20
#define METRICS_INTERVAL_MAX 3600

/* The checks of each method's request, in api.c's table: the transport runs them before a
 * handler sees the request, and fuzz-request runs them on what it makes up. */
enum api_code validate_start(const Hostd__V1__StartRequest *req, const struct config *c, char *msg,
                             size_t len);
enum api_code validate_stop(const Hostd__V1__StopRequest *req, char *msg, size_t len);
enum api_code validate_restart(const Hostd__V1__RestartRequest *req, char *msg, size_t len);
enum api_code validate_drain(const Hostd__V1__DrainRequest *req, char *msg, size_t len);
enum api_code validate_subscribe_metrics(const Hostd__V1__SubscribeMetricsRequest *req, char *msg,
                                         size_t len);
enum api_code validate_exec_request(const Hostd__V1__ExecRequest *req, const struct config *c,
                                    char *msg, size_t len);
enum api_code validate_attach_request(const Hostd__V1__AttachRequest *req, char *msg, size_t len);
enum api_code validate_import_image(const Hostd__V1__ImportImageRequest *req, char *msg,
                                    size_t len);
