/* A dyno as hostctl shows it: every field, "key: value" (inspect, start), one line (stop,
 * restart), and the words of ps's table. */
#pragma once

#include <stdbool.h>

#include "hostd.pb-c.h"

/* Its spec, or an empty one when hostd's reply has none. */
const Hostd__V1__DynoSpec *spec_of(const Hostd__V1__Dyno *d);
const char *type_name(Hostd__V1__DynoType t, char buf[static 32]);
/* Crashed, down or complete: the dyno ended, and how is worth showing. */
bool state_is_final(Hostd__V1__DynoState s);
/* hostd's own summary when it gave one, else one made from the fields; "-" for none. */
const char *describe_exit(const Hostd__V1__ExitInfo *e, char buf[static 128]);

/* Every field, one "key: value" line each. */
void print_dyno(const Hostd__V1__Dyno *d);
/* "web.1 (web-1): down, exit status 143" */
void print_dyno_line(const Hostd__V1__Dyno *d);
