/* The port probe, for a web dyno's boot: is a process of the dyno listening on $PORT on all addresses?
 * Asked of the kernel with netlink sock_diag inside the dyno's network namespace: binary
 * answers about listening sockets only, no text, no process of the dyno involved. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/* A sock_diag socket in the network namespace of pid, opened from hostd's own namespace
 * (own_netns_fd) and back. Returns the socket, or a negative errno. */
int port_probe_open(pid_t pid, int own_netns_fd);

/* 1 when a TCP socket listens on port at 0.0.0.0 or ::, 0 when none does, or a negative
 * errno. A socket bound to one address only (127.0.0.1) does not count. */
int port_probe_listening(int fd, uint16_t port);
