/* Every hostctl command, by the file that holds it. main.c lists them. */
#pragma once

#include "command.h"

/* cmd-dynos.c */
extern const struct command command_ps, command_inspect, command_start, command_stop,
        command_restart, command_logs;
/* cmd-run.c */
extern const struct command command_run, command_exec;
/* cmd-events.c */
extern const struct command command_events, command_top;
/* cmd-host.c */
extern const struct command command_host, command_drain, command_undrain, command_version;
/* cmd-images.c: images ls, import, rm and gc */
extern const struct command command_images;
