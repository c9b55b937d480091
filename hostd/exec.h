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
/* Attach: the client becomes a one-off dyno's terminal (spec.tty), on the same stream messages
 * as an exec. One client at a time; when it leaves, the dyno is hung up (dyno_detached). */
void exec_attach(struct manager *m, struct conn *c, uint64_t id,
                 const Hostd__V1__AttachRequest *req);
struct dyno;
/* The dyno ended (code: its exit status) or is going away (code < 0): end its client's
 * stream with the last output and the code. */
void exec_attach_end(struct dyno *d, int code);
void exec_input(struct manager *m, struct conn *c, uint64_t id, const Hostd__V1__StreamInput *in);
/* Forget every session (hostd is stopping): their processes get a hangup as their terminal
 * or socket closes. */
void exec_free_all(struct manager *m);
