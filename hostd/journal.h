/* Dyno log lines to the systemd journal, in its native protocol, never blocking: a journald
 * that is slow, stalled or gone costs lines (counted), never a wait. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct journal;

/* path: journald's socket (/run/systemd/journal/socket). -ENOMEM, or a socket error. */
int journal_new(const char *path, struct journal **ret);
void journal_free(struct journal *j);

/* One line with the fields MESSAGE, DYNO (the process name, web.1), DYNO_ID, APP, SOURCE (app
 * or heroku), PRIORITY and SYSLOG_IDENTIFIER (the app). Returns 0, or -EAGAIN and friends
 * when the line was dropped. */
int journal_send_line(struct journal *j, const char *process, const char *dyno_id, const char *app,
                      const char *source, const char *text, size_t len);
