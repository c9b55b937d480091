/* Host ports for web dynos: one port of a configured range per dyno, persisted like ipam.
 *
 * State file (e.g. /var/lib/netd/ports), text, one line per port held, sorted by port:
 *   netd-ports 1
 *   p 20000 web.1-5f3c 5000        host port, owner, the dyno's $PORT
 * Parsed strictly (an error names the line). Every change is written with write_file_whole
 * (fsync of the data, then rename; see ipam.h for why the folder is not fsynced) before the
 * call returns; a call that fails changes nothing. A port outside the configured
 * range (the range was changed) stays held until its owner goes. Not thread-safe. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ipam.h"

struct ports_entry {
        uint16_t host_port;
        uint16_t dyno_port;
        char dyno_id[DYNO_INSTANCE_NAME_MAX + 1];
};

struct ports;

int ports_open(const char *path, uint16_t min, uint16_t max, struct ports **ret, char *err,
               size_t errlen);
void ports_free(struct ports *p);

/* The port held by dyno_id (0, nothing written; *ret updated with its dyno_port if that
 * changed, which is persisted) or a new one (1, once persisted). -ENOSPC when the range is
 * full. */
int ports_allocate(struct ports *p, const char *dyno_id, uint16_t dyno_port, uint16_t *ret);
/* 1 once persisted, 0 when dyno_id held none. *ret_entry (may be NULL) gets what was held. */
int ports_release(struct ports *p, const char *dyno_id, struct ports_entry *ret_entry);
/* 0 and the entry, or -ENOENT. */
int ports_lookup(const struct ports *p, const char *dyno_id, struct ports_entry *ret);
/* Every entry, sorted by port; the array belongs to p, valid until the next change. */
const struct ports_entry *ports_entries(const struct ports *p, size_t *ret_n);
