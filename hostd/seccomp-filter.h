#pragma once

#include <linux/filter.h>

/* The filter every dyno process runs under: everything allowed except what Docker's default
 * profile denies an unprivileged container (and a little more), answered with EPERM.
 *
 * libseccomp builds it once, at start, into a BPF program; each dyno then loads the program
 * with one prctl. (seccomp_load() in every child recompiled it each time: 2.5 ms of every
 * start, as bench/start-stop showed.) */
int dyno_seccomp_new(struct sock_fprog *ret);
void dyno_seccomp_free(struct sock_fprog *prog);
