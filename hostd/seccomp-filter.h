#pragma once

#include <seccomp.h>

/* The filter every dyno process runs under: everything allowed except what Docker's default
 * profile denies an unprivileged container (and a little more), answered with EPERM. Built
 * once; loaded in each dyno. */
int dyno_seccomp_new(scmp_filter_ctx *ret);
