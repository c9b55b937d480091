/* hostd's side of the netd API (proto/netd.proto): one connection to netd's socket, opened
 * when first needed and again after netd went away, with calls answered asynchronously on
 * hostd's event loop. netd answers the requests of one connection in order, so a Detach sent
 * before an Attach of the same dyno is done first. */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "netd.pb-c.h"

struct netd_client;

/* The outcome of one call. code is 0 with resp netd's answer, or a hostd.v1 code with msg:
 * netd's own error (resp set), UNAVAILABLE when netd could not be reached or closed the
 * connection, DEADLINE_EXCEEDED when it did not answer in time (resp NULL). resp and msg are
 * valid during the callback only. */
typedef void (*netd_reply_fn)(void *userdata, int code, const char *msg,
                              const Netd__V1__Response *resp);

/* Called each time a new connection is made, before the call that made it is sent: the place
 * for requests that must precede every other on a new connection (hostd's Gc). */
typedef void (*netd_connected_fn)(struct netd_client *c, void *userdata);

int netd_client_new(sd_event *e, const char *socket_path, uint64_t timeout_usec,
                    netd_connected_fn connected, void *userdata, struct netd_client **ret);
/* Calls still waiting are dropped without their callbacks. */
void netd_client_free(struct netd_client *c);

/* Connect now if not connected: 1 when it made a new connection (the connected callback has
 * run), 0 when one was open, or a negative errno. */
int netd_client_connect(struct netd_client *c);

/* Send req (its id is set here) and call fn once with the outcome, never from within
 * netd_call itself. Returns a call handle > 0 for netd_cancel, or a negative errno when the
 * request could not be sent (fn is then never called). */
int64_t netd_call(struct netd_client *c, Netd__V1__Request *req, netd_reply_fn fn, void *userdata);

/* netd_call, with destroy(userdata) run instead of fn when the call is dropped without its
 * callback (netd_cancel, netd_client_free): for userdata that fn frees. */
int64_t netd_call_full(struct netd_client *c, Netd__V1__Request *req, netd_reply_fn fn,
                       void *userdata, void (*destroy)(void *userdata));

/* Forget a call: its callback will not run. */
void netd_cancel(struct netd_client *c, int64_t handle);
