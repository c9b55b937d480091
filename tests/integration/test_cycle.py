"""Daily cycling: every dyno is restarted cycle-after plus a random part of cycle-jitter after
it started (Heroku's 24 h + 0..216 min; seconds here), on a fresh filesystem layer, with
`Cycling` in its log; an explicit restart sets a new time; a one-off dyno ends instead.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_cycle.py
"""

import os
import time

import pytest

from dynoutil import pid_alive
from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # the cgroup v2 tier runs it: a cycle's replacement gets a second cgroup beside the old one
    pytest.mark.cgroup,
]

# Marks its layer, and says so when it finds the mark of an earlier run: a fresh layer never has it.
MARKER = "test -e /app/.cycled && echo STALE-LAYER; touch /app/.cycled; sleep 1000"


def texts(c, dyno_id):
    return [(l.time_usec / 1e6, l.text.decode()) for l in c.logs(dyno_id).lines]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_dyno_cycles_on_a_fresh_layer(hostd_factory, make_spec):
    h = hostd_factory(cycle_after="2s", cycle_jitter="0")
    c = h.client()
    first = c.start(make_spec("cyc", command=MARKER))
    wait_for(lambda: c.get("cyc").restarts >= 2, 30, "two cycles")
    d = c.wait_state("cyc", pb.DYNO_STATE_UP)
    assert d.pid != first.pid
    lines = texts(c, "cyc")
    cycles = [t for t, x in lines if x == "Cycling"]
    starts = [t for t, x in lines if x.startswith("Starting process with command")]
    assert len(cycles) >= 2
    # about 2 s after each start, never before
    assert cycles[0] - starts[0] >= 1.9 and cycles[1] - starts[1] >= 1.9, (starts, cycles)
    assert "STALE-LAYER" not in [x for _, x in lines], lines  # (the command line names it)
    assert d.exit.error == "" and d.state == pb.DYNO_STATE_UP  # a cycle is not a crash
    c.stop("cyc")


# Names itself with a fresh uuid, and takes 3 s to stop after SIGTERM.
SLOW_STOP = ("u=$(cat /proc/sys/kernel/random/uuid); echo \"run $u\"; "
             "trap 'echo \"term $u\"; sleep 3; echo \"done $u\"; exit 0' TERM; "
             "sleep 1000 & wait")


def index_of(lines, text):
    return [x for _, x in lines].index(text)


def test_the_replacement_runs_while_the_old_one_stops(hostd_factory, make_spec):
    h = hostd_factory(cycle_after="4s", cycle_jitter="0")
    c = h.client()
    before = h.snapshot()
    c.start(make_spec("cyc-o", command=SLOW_STOP))
    wait_for(lambda: sum(x.startswith("run ") for _, x in texts(c, "cyc-o")) >= 2, 30,
             "the replacement's command")
    # Both run now: the old instance has 3 s to go, each in a cgroup of its own.
    assert len(h.dyno_inits()) == 2
    assert h.find_cgroups("cyc-o") and h.find_cgroups("cyc-o@1")
    assert c.get("cyc-o").cgroup.endswith("/cyc-o@1")
    wait_for(lambda: any(x.startswith("done ") for _, x in texts(c, "cyc-o")), 20,
             "the old instance's end")
    wait_for(lambda: not h.find_cgroups("cyc-o"), 10, "the old cgroup's removal")
    lines = texts(c, "cyc-o")
    first, second = [x.split()[1] for _, x in lines if x.startswith("run ")][:2]
    assert first != second
    # SIGTERM went to the old one as the replacement started, which ran before the old had gone
    assert index_of(lines, "Cycling") < index_of(lines, f"term {first}") < \
        index_of(lines, f"done {first}")
    assert index_of(lines, f"run {second}") < index_of(lines, f"done {first}")
    assert "Process exited with status 0" in [x for _, x in lines[index_of(lines, f"done {first}"):]]
    d = c.get("cyc-o")
    assert d.state == pb.DYNO_STATE_UP and d.restarts == 1
    assert len(h.dyno_inits()) == 1
    assert not os.path.exists(os.path.join(h.layers_dir, "cyc-o"))
    c.stop("cyc-o", timeout=20)
    h.assert_unchanged(before, "after the cycled dyno stopped")


def test_hostd_killed_while_the_old_one_stops(hostd_factory, make_spec):
    h = hostd_factory(cycle_after="6s", cycle_jitter="0")
    c = h.client()
    before = h.snapshot()
    c.start(make_spec("cyc-k", command=SLOW_STOP))
    wait_for(lambda: sum(x.startswith("run ") for _, x in texts(c, "cyc-k")) >= 2, 30,
             "the replacement's command")
    h.kill9()
    h.restart()
    c = h.client()
    # the new hostd watches the old instance to its end: its last line, its status, its cgroup
    wait_for(lambda: any(x.startswith("done ") for _, x in texts(c, "cyc-k")), 20,
             "the old instance's end")
    wait_for(lambda: "Process exited with status 0" in [x for _, x in texts(c, "cyc-k")], 10,
             "its exit status")
    wait_for(lambda: not h.find_cgroups("cyc-k"), 10, "the old cgroup's removal")
    assert c.get("cyc-k").state == pb.DYNO_STATE_UP
    assert len(h.dyno_inits()) == 1
    c.stop("cyc-k", timeout=20)
    h.assert_unchanged(before, "after the cycled dyno stopped")


def test_explicit_restart_resets_the_clock_and_one_offs_end(hostd_factory, make_spec):
    h = hostd_factory(cycle_after="3s", cycle_jitter="0")
    c = h.client()
    c.start(make_spec("cyc-r", command="sleep 1000"))
    time.sleep(2)
    c.restart("cyc-r")
    restarted = time.monotonic()
    wait_for(lambda: any(x == "Cycling" for _, x in texts(c, "cyc-r")), 20, "a cycle")
    assert time.monotonic() - restarted >= 2.5  # from the restart, not from the first start
    c.start(make_spec("cyc-run", name="run.1", type=pb.DYNO_TYPE_ONE_OFF, command="sleep 1000"))
    d = c.wait_state("cyc-run", (pb.DYNO_STATE_DOWN, pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_COMPLETE), timeout=20)
    assert d.state == pb.DYNO_STATE_DOWN and d.restarts == 0
    assert "Cycling" in [x for _, x in texts(c, "cyc-run")]
    c.stop("cyc-r")


def test_never_when_off(hostd_factory, make_spec):
    h = hostd_factory(cycle_after="0")
    c = h.client()
    d = c.start(make_spec("cyc-off", command="sleep 1000"))
    time.sleep(2)
    assert c.get("cyc-off").pid == d.pid
    assert "Cycling" not in [x for _, x in texts(c, "cyc-off")]
    c.stop("cyc-off")


# Says its run's id, and after SIGTERM waits for the test's go (a file in its own /tmp) before
# it finishes: the old instance's end is the test's to choose, whatever the machine's speed.
WAIT_FOR_GO = ("echo \"run $HEROKU_DYNO_ID\"; "
               "trap 'echo \"term $HEROKU_DYNO_ID\"; while [ ! -e /tmp/go ]; do sleep 0.1; done; "
               "echo \"done $HEROKU_DYNO_ID\"; exit 0' TERM; "
               "while :; do sleep 0.1; done")


def test_restart_starts_the_replacement_as_the_old_one_stops(hostd_factory, make_spec):
    """An explicit Restart, as Heroku does it: SIGTERM to the running instance and the
    replacement started at once beside it, on its own layer and cgroup; the reply comes when
    the replacement runs, while the old one still finishes."""
    h = hostd_factory(cycle_after="0")
    c = h.client()
    before = h.snapshot()
    old = c.start(make_spec("rst-o", command=WAIT_FOR_GO))
    wait_for(lambda: f"run {old.run_id}" in [x for _, x in texts(c, "rst-o")], 20, "its first run")
    new = c.restart("rst-o", grace=60)
    assert new.pid != old.pid and new.run_id != old.run_id
    wait_for(lambda: f"run {new.run_id}" in [x for _, x in texts(c, "rst-o")], 20,
             "the replacement's command")
    # Both run: the old one waits for its go, in its own cgroup.
    lines = [x for _, x in texts(c, "rst-o")]
    assert f"term {old.run_id}" in lines and f"done {old.run_id}" not in lines, lines
    assert len(h.dyno_inits()) == 2
    assert h.find_cgroups("rst-o") and h.find_cgroups("rst-o@1")
    assert index_of(texts(c, "rst-o"), "Restarting") < index_of(texts(c, "rst-o"), "Stopping all processes with SIGTERM")
    with open(f"/proc/{old.pid}/root/tmp/go", "w"):
        pass
    wait_for(lambda: f"done {old.run_id}" in [x for _, x in texts(c, "rst-o")], 20,
             "the old instance's end")
    wait_for(lambda: not h.find_cgroups("rst-o"), 10, "the old cgroup's removal")
    lines = [x for _, x in texts(c, "rst-o")]
    assert "Process exited with status 0" in lines[lines.index(f"done {old.run_id}"):]
    d = c.get("rst-o")
    assert d.state == pb.DYNO_STATE_UP and d.pid == new.pid and d.restarts == 1
    assert len(h.dyno_inits()) == 1
    c.stop("rst-o", timeout=20, grace=1)
    h.assert_unchanged(before, "after the restarted dyno stopped")


def test_restart_of_a_dyno_that_is_not_up_waits_for_the_stop(hostd_factory, make_spec):
    """A web dyno still booting has nothing to serve yet: it stops, then starts again."""
    h = hostd_factory(cycle_after="0")
    c = h.client()
    old = c.start(make_spec("rst-b", type=pb.DYNO_TYPE_WEB, name="web.1", port=5000, command="sleep 1000"))
    assert old.state == pb.DYNO_STATE_STARTING
    new = c.restart("rst-b", grace=5)
    assert new.pid != old.pid
    assert not pid_alive(old.pid), "the old instance still runs"
    c.stop("rst-b", grace=1)
