/* Exec: an operator's process inside a running dyno (hostctl exec), streamed over the API.
 *
 * The Exec request opens a stream: hostd answers with StreamOutput responses (the process's
 * output, then exited with its code and end_of_stream). The client sends StreamInput requests
 * whose stream_id is the Exec request's id: data for the process's input, eof, and a window
 * size for a terminal. StreamInput gets no response unless it is refused. */
#pragma once

#include "hostd.pb-c.h"

struct conn;
struct manager;

void exec_start(struct manager *m, struct conn *c, uint64_t id, const Hostd__V1__ExecRequest *req);
void exec_input(struct manager *m, struct conn *c, uint64_t id, const Hostd__V1__StreamInput *in);
/* Forget every session (hostd is stopping): their processes get a hangup as their terminal
 * or socket closes. */
void exec_free_all(struct manager *m);
