/* Dedicated CPUs: the pool of CPUs that sizes with dedicated-cpus take for themselves, which
 * dyno holds which, and the CPUs every other (shared) dyno runs on.
 *
 * A dyno that holds CPUs runs on them alone (its cgroup's cpuset.cpus). Shared dynos run on
 * every CPU hostd may use but those held right now: each change of the held set rewrites
 * their cpuset.cpus, so an idle pool CPU still serves shared dynos and a held one serves only
 * its holder. CPUs outside the pool are never dedicated (hostd, the host, shared dynos). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_manager;
struct config;

#define CPUS_MAX 4096

/* A set of CPU numbers 0..CPUS_MAX-1. */
struct cpu_bits {
        uint64_t w[CPUS_MAX / 64];
};

/* A CPU list as the kernel writes it ("0-3,8", trailing newline allowed; "" is the empty
 * set). -EINVAL: syntax; -ERANGE: a CPU >= CPUS_MAX. */
int cpulist_parse(const char *s, struct cpu_bits *ret);
/* The kernel's form, ranges folded ("" for the empty set). Allocated. */
int cpulist_format(const struct cpu_bits *b, char **ret);
unsigned cpubits_count(const struct cpu_bits *b);
static inline bool cpubits_test(const struct cpu_bits *b, unsigned cpu)
{
        return cpu < CPUS_MAX && (b->w[cpu / 64] >> (cpu % 64)) & 1;
}
/* Syntax check of a dedicated-cpu-pool value: "auto", "none" or a CPU list. */
bool cpu_pool_spec_valid(const char *spec);

struct cpu_pool;

/* spec: dedicated-cpu-pool ("auto": every CPU of available but the lowest; "none"; or a CPU
 * list, which must lie in available and leave at least one CPU of it out). available: the CPUs
 * hostd may use (NULL: no cpuset controller, so the pool must be "auto" (then empty) or
 * "none"). cg: the driver used to move dynos; NULL keeps the books only (tests). On error err
 * says why, naming the CPUs. */
int cpu_pool_new(const char *spec, const char *available, struct cg_manager *cg,
                 struct cpu_pool **ret, char *err, size_t errlen);
/* For hostd: cpu_pool_new with the configuration's dedicated-cpu-pool and, as available, the
 * CPUs of hostd's cgroup (cg_cpus_available) that are online. */
int cpus_setup(const struct config *c, struct cg_manager *cg, struct cpu_pool **ret, char *err,
               size_t errlen);
void cpu_pool_free(struct cpu_pool *p);

const char *cpu_pool_list(const struct cpu_pool *p); /* the pool, "" when empty */
unsigned cpu_pool_size(const struct cpu_pool *p);
unsigned cpu_pool_n_free(const struct cpu_pool *p);

/* Admission: 0 when n CPUs of the pool are free, else -ENOSPC with err ("needs 2 dedicated
 * CPUs, 1 of 3 free (dedicated-cpu-pool '1-3')"). */
int cpu_pool_check(const struct cpu_pool *p, unsigned n, char *err, size_t errlen);
/* Reserve n CPUs of the pool for dyno id, the lowest free first, and take them from the
 * shared dynos. n == 0 does nothing. Idempotent: an id that already holds n CPUs keeps them.
 * -ENOSPC with err ("needs 2 dedicated CPUs, 1 of 3 free (dedicated-cpu-pool 1-3)") when not
 * enough are free; -EEXIST when id holds a different number. */
int cpu_pool_reserve(struct cpu_pool *p, const char *id, unsigned n, char *err, size_t errlen);
/* Reserve exactly the CPUs of list for id (re-adoption). -EINVAL: not a list, empty, or
 * outside the pool; -EBUSY: one of them is held by another dyno; -EEXIST: id holds others. */
int cpu_pool_reserve_exact(struct cpu_pool *p, const char *id, const char *list);
/* Give back what id holds (nothing held is fine), and return the CPUs to the shared dynos. */
void cpu_pool_release(struct cpu_pool *p, const char *id);
/* What id holds, NULL when nothing. */
const char *cpu_pool_held(const struct cpu_pool *p, const char *id);
/* The cpuset for a dyno's cgroup (struct cg_limits.cpus): the CPUs it holds, else the shared
 * CPUs; NULL (inherit) when the pool is empty. Valid until the next change of the pool. */
const char *cpu_pool_cpus_for(const struct cpu_pool *p, const char *id);

/* After a restart of hostd, for a re-adopted running dyno of a size with n dedicated CPUs:
 * take back the CPUs its cgroup has (cg_get_cpus) when they are n free CPUs of the pool; else
 * reserve n others and move it there. 0, or a negative errno when it could not have its own
 * CPUs (it then runs on the shared ones once cpu_pool_sync runs). n == 0 does nothing. */
int cpu_pool_adopt(struct cpu_pool *p, const char *id, unsigned n);
/* Write the shared CPUs into every dyno cgroup that holds none. Until its first call (at the
 * end of reconciliation) reservations change only the books, so that a dyno not yet
 * re-adopted is never mistaken for a shared one. */
void cpu_pool_sync(struct cpu_pool *p);
