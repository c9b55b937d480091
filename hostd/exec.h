/* Exec: an operator's process inside a running dyno (hostctl exec), on a bidirectional stream.
 *
 * The first message of an Exec call starts the process; hostd answers with StreamOutput (the
 * process's output, then exited with its code, the end of the call). The client's later
 * messages are StreamInput: data for the process's input, eof, and a window size for a
 * terminal; its half-close is the end of input too. A client that goes away hangs the process
 * up, as a closed ssh session would. */
#pragma once

#include "hostd.pb-c.h"

struct call;
struct manager;

/* The call's first message's start (checked: validate_exec). */
void exec_start(struct manager *m, struct call *c, const Hostd__V1__ExecStart *req);
/* Attach: the client becomes a one-off dyno's terminal (spec.tty), with the same messages as
 * an exec. One client at a time; when it leaves, the dyno is hung up (dyno_detached). */
void exec_attach(struct manager *m, struct call *c, const Hostd__V1__AttachStart *req);
/* Forget every session (hostd is stopping; before manager_free): their processes get a
 * hangup as their terminal or socket closes. */
void exec_free_all(struct manager *m);
