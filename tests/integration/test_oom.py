"""OOM kills as Heroku reports them, whichever process of the dyno the kernel kills: R15 with
the figures in the log, an event, the count in inspect and in metrics. A dyno whose main process
was killed crashes (and restarts with the back-off); one whose child was killed goes on.

The kernel's own counters and notifications tell hostd (v1 memory.oom_control, v2
memory.events), not an exit status: a child killed under a shell exits the shell with 137 or
nothing at all.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_oom.py
"""

import os
import re
import time

import pytest

from dynoutil import platform_lines, wait_log, with_sizes
from hostd_client import pb

# the cgroup v2 tier runs it: OOM kills are read from memory.oom_control on v1, memory.events on v2
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup]

SIZES = {"tiny": {"memory": "32M", "swap": "no", "pids": 64}}

# A child that holds 200 MB in its own memory (the command substitution keeps its text), which
# a 32M dyno cannot: the kernel kills it, and the main shell reports how it ended.
EAT = "sh -c 'x=$(head -c 200000000 /dev/zero | tr \"\\0\" a); echo held'"


def events(c, dyno_id, kind):
    """The kept events of kind for the dyno."""
    return [e for e in c.event_list(since=0) if e.dyno_id == dyno_id and e.kind == kind]


def wait_platform(c, dyno_id, text, timeout=60):
    deadline = time.monotonic() + timeout
    while text not in platform_lines(c, dyno_id):
        assert time.monotonic() < deadline, f"no {text!r} in {platform_lines(c, dyno_id)}"
        time.sleep(0.1)
    return platform_lines(c, dyno_id)


def test_a_child_killed_is_reported_and_the_dyno_goes_on(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    cmd = f'{EAT}; echo "child ended $?"; exec sleep 1000'
    with h.client() as c:
        d = c.start(make_spec("oom-child", size="tiny", command=cmd))
        lines = wait_log(c, "oom-child", lambda ls: any(l.startswith("child ended") for l in ls),
                         timeout=60, what="the child's end")
        assert "child ended 137" in lines, lines
        logs = wait_platform(c, "oom-child", "Error R15 (Memory quota vastly exceeded)")
        mem = [l for l in logs if l.startswith("Process running mem=")]
        assert mem, logs
        m = re.fullmatch(r"Process running mem=(\d+)M\((\d+\.\d)%\)", mem[0])
        assert m and int(m.group(1)) >= 30, mem[0]  # it reached the 32M quota
        # The dyno is still up, its main process the same; the count is in inspect.
        now = c.get("oom-child")
        assert now.state == pb.DYNO_STATE_UP and now.pid == d.pid, now
        assert now.oom_kills >= 1, now
        ev = events(c, "oom-child", pb.EVENT_KIND_OOM)
        assert ev and "R15" in ev[0].message, ev
        c.stop("oom-child", grace=1)


def test_the_count_is_in_the_metrics(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    cmd = f"{EAT}; echo done; exec sleep 1000"
    with h.client() as c:
        c.start(make_spec("oom-met", size="tiny", command=cmd))
        wait_log(c, "oom-met", "done", timeout=60)
        stream = c.metrics(interval=1)
        deadline = time.monotonic() + 30
        while True:
            resp = stream.next(30)
            assert resp is not None, stream.status
            got = [m for m in resp.dynos if m.dyno_id == "oom-met"]
            if got and got[0].oom_kills >= 1:
                break
            assert time.monotonic() < deadline, resp
    with h.client() as c2:
        c2.stop("oom-met", grace=1)


def test_the_main_process_killed_crashes_and_restarts(hostd_factory, make_spec):
    """The app itself (no shell in between) is the OOM killer's victim: R15, exit 137, crashed,
    and a restart after the back-off's first step."""
    h = with_sizes(hostd_factory, SIZES, restart_backoff="0, 1h")
    with h.client() as c:
        c.start(make_spec("oom-main", size="tiny", command=EAT))
        logs = wait_platform(c, "oom-main", "Crashed: restarting now (crash 1 in a row)")
        i = logs.index("Error R15 (Memory quota vastly exceeded)")
        assert "Process exited with status 137" in logs[i:], logs
        assert "State changed from up to crashed" in logs[i:], logs
        # The first run's end as inspect had it is in the event stream: oom_killed and R15.
        ev = [e for e in events(c, "oom-main", pb.EVENT_KIND_STATE) if e.state == pb.DYNO_STATE_CRASHED]
        assert ev and "OOM" in ev[0].message, ev
        d = c.get("oom-main")
        assert d.restarts >= 1, d
        c.stop("oom-main", grace=1)
