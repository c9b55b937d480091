/* The event stream: every dyno state change and host event, numbered, kept in a file under the
 * state folder so that a hostd killed and started again goes on from the last number, and
 * replayed to a subscriber from any number it names, then followed live.
 *
 * An event is appended to the file before any subscriber sees it, and a dyno's state change is
 * recorded as an event before its record is written: a hostd that dies between the two finds
 * the change in the event log at its next start, never the other way round. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "hostd.pb-c.h"

struct call;
struct events;

/* Open (or create) <state_dir>/events and load the last keep events. */
int events_open(const char *state_dir, uint32_t keep, struct events **ret);
void events_free(struct events *e);

/* Append an event (seq and time are set here) and send it to every subscriber. */
void events_emit(struct events *e, const char *dyno_id, Hostd__V1__EventKind kind,
                 Hostd__V1__DynoState state, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* The state of the last event of the dyno, or -1 when the log holds none. */
int events_last_state(const struct events *e, const char *dyno_id);

/* SubscribeEvents: every kept event after since, then, with follow, the new ones as they
 * come, until the client cancels; without, the end of the stream. */
void events_subscribe(struct events *e, struct call *c, uint64_t since, bool follow);
