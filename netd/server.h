/* netd's API server on its Unix socket: non-blocking connections, one framed
 * netd.v1.Request at a time, each answered at once (every call is a few netlink and nftables
 * transactions). */
#pragma once

#include <systemd/sd-event.h>

struct netd;
struct server;

int server_new(struct netd *n, sd_event *event, const char *path, struct server **ret);
void server_free(struct server *s);
