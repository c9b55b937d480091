/* Syslog drains: a dyno's log lines sent to the URLs of its spec (log_drains) as RFC 5424
 * messages over TCP or TLS, framed by octet counting (RFC 6587), on hostd's loop and never
 * blocking it. Each drain has one connection and a bounded buffer of lines: when the peer is
 * slow or gone the oldest lines are dropped and counted, and an L10 line tells the drain (and
 * the dyno's own log) how many once the drain can send again. See docs/INTERNALS.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "hostd.pb-c.h"
#include "logs.h"

#define DRAIN_MAX_PER_DYNO 8
#define DRAIN_URL_MAX 512
#define DRAIN_HOST_MAX 253
/* The longest header drain_frame_header() writes: octet count, PRI, version, timestamp,
 * HOSTNAME (255), APP-NAME, PROCID (128), MSGID and SD, with their spaces. */
#define DRAIN_HEADER_MAX 512
/* A batch: this many lines, or what arrived in this long, whichever comes first. */
#define DRAIN_BATCH_LINES 500
#define DRAIN_BATCH_USEC (250ULL * 1000)

struct drain_url {
        bool tls;                      /* syslog+tls:// */
        bool literal;                  /* host is an IPv4 or IPv6 address */
        char host[DRAIN_HOST_MAX + 1]; /* without the brackets of an IPv6 literal */
        uint16_t port;
};

/* syslog://HOST:PORT or syslog+tls://HOST:PORT; HOST a DNS name, an IPv4 address or an IPv6
 * address in brackets; PORT 1..65535; nothing else (no user, path, query). Returns 0, or
 * -EINVAL with why saying what is wrong (for a message that names the field). */
int drain_url_parse(const char *url, struct drain_url *ret, char *why, size_t whylen);

/* The frame's header for a message of len bytes: "LEN <PRI>1 TIMESTAMP HOSTNAME APP-NAME
 * PROCID - - ", LEN counting from '<' to the message's end. APP-NAME is "app" or "heroku" by
 * source; hostname and procid are made valid RFC 5424 fields (printable ASCII, "-" when
 * empty). hdr holds DRAIN_HEADER_MAX bytes. Returns the header's length. */
size_t drain_frame_header(char *hdr, int64_t time_usec, enum log_source source,
                          const char *hostname, const char *procid, size_t len);

struct drain_options {
        uint32_t buffer_lines;    /* lines kept per drain while it cannot send (1024) */
        uint32_t backoff_max_sec; /* reconnects wait 1 s doubling to this (60), jittered */
        const char *ca_file;      /* "" or NULL: the system's CA store */
        uint32_t linger_sec;      /* a closed set's last try to send, at most this long */
};

/* What all drains share: the loop, the options, the TLS context (made at the first TLS
 * drain), and the sets that were closed but still try to send their last lines. */
struct drain_ctx;
int drain_ctx_new(sd_event *e, const struct drain_options *o, struct drain_ctx **ret);
/* Frees every lingering set too (hostd is exiting: what they hold is lost). */
void drain_ctx_free(struct drain_ctx *c);

/* The drains of one dyno. */
struct drain_set;

/* Told of an L10 overflow line this set's drain is about to send, so that the dyno's own log
 * has it too. Lines logged from inside reach every drain of the set but that one (which sends
 * its own first). */
typedef void (*drain_overflow_cb_t)(void *userdata, const char *text);

/* One drain per URL (each already valid: drain_url_parse). hostname and procid are the
 * frame's HOSTNAME and PROCID (the app, the dyno's name), dyno_id names the dyno in hostd's
 * own log; all copied. -ENOMEM, -EINVAL. Connecting
 * begins on the loop. */
int drain_set_new(struct drain_ctx *c, char *const *urls, size_t n_urls, const char *dyno_id,
                  const char *hostname, const char *procid, drain_overflow_cb_t cb, void *userdata,
                  struct drain_set **ret);
/* Frees at once: buffered lines are lost. NULL is fine. */
void drain_set_free(struct drain_set *s);
/* Closes the set: it keeps trying to send what it buffers for at most linger_sec, never
 * blocking, then frees itself. The callback is not called any more. NULL is fine. */
void drain_set_close(struct drain_set *s);

/* Queue a line for every drain of the set (dropping a drain's oldest when its buffer is full). */
void drain_set_push(struct drain_set *s, int64_t time_usec, enum log_source source,
                    const char *text, size_t len);

/* Each drain's figures, for Dyno.drains: *ret points into the set, valid until it changes. */
void drain_set_status(struct drain_set *s, Hostd__V1__DrainStatus ***ret, size_t *n);
