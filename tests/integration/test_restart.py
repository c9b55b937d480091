"""kill -9 of hostd with dynos running, then a new hostd: the dynos never notice, the new
hostd supervises them (list, stop, the right exit code), learns the real exit status of those
that ended meanwhile, keeps the lines they printed meanwhile, and removes leftovers that belong
to no dyno.
"""

import os
import re
import signal
import time

import pytest

from dynoutil import (
    app_lines,
    dyno_cgroup_procs,
    dyno_file,
    pid_alive,
    platform_lines,
    signal_dyno_init,
    wait_gone,
    wait_log,
)
from hostd_client import pb

# the cgroup v2 tier runs it: re-adoption checks each init against its cgroup, and leftover
# cgroups are removed
pytestmark = pytest.mark.cgroup

TRAP7 = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"


def test_running_dynos_survive_kill9_and_are_supervised_after_restart(hostd, make_spec):
    ids = ["rs-a", "rs-b", "rs-c"]
    with hostd.client() as c:
        before = {i: c.start(make_spec(i, command=TRAP7)) for i in ids}
        for i in ids:
            wait_log(c, i, "ready")
    old_pid = hostd.pid
    hostd.kill9()
    time.sleep(0.5)
    for i, d in before.items():
        assert pid_alive(d.pid), f"dyno {i} (init {d.pid}) died with hostd"
    hostd.restart()
    assert hostd.pid != old_pid
    with hostd.client() as c:
        listed = {d.spec.id: d for d in c.list()}
        for i, d in before.items():
            assert pid_alive(d.pid), f"dyno {i} (init {d.pid}) died at the restart"
            assert i in listed, f"dyno {i} is not listed after the restart: {sorted(listed)}"
            assert listed[i].state == pb.DYNO_STATE_UP, f"dyno {i} is {pb.DynoState.Name(listed[i].state)}"
            assert listed[i].pid == d.pid and listed[i].uid == d.uid
            # Nobody signalled it.
            assert "got TERM" not in app_lines(c, i)
        # A new dyno does not get a uid the adopted ones hold.
        new = c.start(make_spec("rs-new"))
        assert new.uid not in {d.uid for d in before.values()}, f"uid {new.uid} given twice"
        c.stop("rs-new", grace=1)
        for i, d in before.items():
            down = c.stop(i, grace=10)
            assert down.state == pb.DYNO_STATE_DOWN, pb.DynoState.Name(down.state)
            assert down.exit.exited and down.exit.code == 7, f"dyno {i}: {down.exit}"
            assert "got TERM" in app_lines(c, i)
            assert "Process exited with status 7" in platform_lines(c, i)
            assert wait_gone(d.pid, 5), f"dyno {i}: init {d.pid} still runs after the stop"
            assert hostd.find_cgroups(i) == [], f"dyno {i}: cgroup left"
            assert not os.path.exists(os.path.join(hostd.layers_dir, i)), f"dyno {i}: layer left"


def test_grace_ignored_dyno_still_r12_after_restart(hostd, make_spec):
    """The SIGKILL after the grace works on an adopted dyno too."""
    with hostd.client() as c:
        d = c.start(make_spec("rs-r12", command="trap '' TERM; echo ready; while :; do sleep 0.1; done"))
        wait_log(c, "rs-r12", "ready")
    hostd.kill9()
    hostd.restart()
    with hostd.client() as c:
        down = c.stop("rs-r12", grace=1)
        assert down.state == pb.DYNO_STATE_DOWN
        assert down.exit.error == "R12" and down.exit.signal == 9, down.exit
        assert wait_gone(d.pid, 5)
        assert hostd.find_cgroups("rs-r12") == []


def test_dyno_that_exits_while_hostd_is_down_is_reported_with_its_code(hostd, make_spec):
    cmd = "trap 'exit 5' USR1; echo ready; while :; do sleep 0.1; done"
    with hostd.client() as c:
        d = c.start(make_spec("rs-exit5", command=cmd))
        wait_log(c, "rs-exit5", "ready")
    hostd.kill9()
    # The init relays SIGUSR1 to the dyno's processes: the command exits 5, hostd is away.
    signal_dyno_init(hostd, d, signal.SIGUSR1)
    assert wait_gone(d.pid, 10), "the dyno did not end"
    hostd.restart()
    with hostd.client() as c:
        end = c.get("rs-exit5")
        assert end.state == pb.DYNO_STATE_CRASHED, pb.DynoState.Name(end.state)
        assert end.exit.exited and end.exit.code == 5, end.exit
        assert end.exit.reason == "exit status 5", end.exit.reason
        logs = platform_lines(c, "rs-exit5")
        assert "Process exited with status 5" in logs, logs
        assert "State changed from up to crashed" in logs, logs
        assert [x.state for x in c.list() if x.spec.id == "rs-exit5"] == [pb.DYNO_STATE_CRASHED]
    assert hostd.find_cgroups("rs-exit5") == [], "the ended dyno's cgroup is still there"
    assert not os.path.exists(os.path.join(hostd.layers_dir, "rs-exit5")), "its layer is still there"
    assert hostd.dyno_procs() == set()


def test_dyno_stopped_while_hostd_down_then_started_again(hostd, make_spec):
    """After the restart the id of a dyno that ended meanwhile can be started again."""
    with hostd.client() as c:
        d = c.start(make_spec("rs-again", command="trap 'exit 5' USR1; echo ready; while :; do sleep 0.1; done"))
        wait_log(c, "rs-again", "ready")
    hostd.kill9()
    signal_dyno_init(hostd, d, signal.SIGUSR1)
    assert wait_gone(d.pid, 10)
    hostd.restart()
    with hostd.client() as c:
        again = c.start(make_spec("rs-again"))
        assert again.state == pb.DYNO_STATE_UP and again.pid != d.pid
        assert hostd.dyno_inits() == [again.pid]
        c.stop("rs-again", grace=1)


TICKER = 'i=0; while :; do i=$((i+1)); echo "tick $i"; echo $i > /tmp/tick; sleep 0.1; done'


def ticks(lines):
    return [int(m.group(1)) for m in (re.fullmatch(r"tick (\d+)", l) for l in lines) if m]


def read_tick(dyno):
    with open(dyno_file(dyno, "/tmp/tick")) as f:
        return int(f.read().strip() or 0)


def test_lines_printed_while_hostd_down_are_in_the_log(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("rs-log", command=TICKER))
        wait_log(c, "rs-log", lambda l: len(ticks(l)) >= 5, what="five ticks")
        seen_before = ticks(app_lines(c, "rs-log"))
    hostd.kill9()
    # Tick k is on the pipe before /tmp/tick says k: every tick after this one was printed
    # with no hostd reading.
    first_unread = read_tick(d) + 1
    time.sleep(1.5)
    last_down = read_tick(d)
    assert last_down >= first_unread + 5, "the dyno printed nothing while hostd was down"
    hostd.restart()
    with hostd.client() as c:
        lines = wait_log(c, "rs-log", lambda l: ticks(l) and max(ticks(l)) >= last_down + 5, what="new ticks")
        got = ticks(lines)
        missing = sorted(set(range(first_unread, last_down + 1)) - set(got))
        print(
            f"old hostd showed ticks {seen_before[0]}..{seen_before[-1]}; printed while down "
            f"{first_unread}..{last_down}; the new log has {got[0]}..{got[-1]} ({len(got)} lines)"
        )
        assert missing == [], f"ticks printed while hostd was down are not in the log: {missing}"
        # Nothing lost or repeated from the downtime on.
        tail = got[got.index(first_unread) :]
        assert tail == list(range(first_unread, tail[-1] + 1)), "gap or repeat in the ticks after the restart"
        assert len(got) == len(set(got)), "ticks repeated in the log"
        c.stop("rs-log", grace=1)


def test_leftovers_removed_at_start(hostd, make_spec):
    with hostd.client() as c:
        keep = c.start(make_spec("rs-keep"))
    hostd.kill9()
    keep_cgroups = hostd.find_cgroups("rs-keep")
    assert keep_cgroups, "the running dyno has no cgroup"
    # A cgroup with no record in every hierarchy where hostd keeps dynos (cpuset included,
    # which a dyno joins only with dedicated CPUs), and a layer folder.
    leftover_cgroups = [
        os.path.join(top, "dynos", "leftover-x")
        for top in hostd.cgroup_dirs()
        if os.path.isdir(os.path.join(top, "dynos"))
    ]
    assert {os.path.dirname(p) for p in keep_cgroups} <= {os.path.dirname(p) for p in leftover_cgroups}
    for p in leftover_cgroups:
        os.mkdir(p)
    layer = os.path.join(hostd.layers_dir, "leftover-x")
    for sub in ("upper/tmp", "work", "merged"):
        os.makedirs(os.path.join(layer, sub))
    with open(os.path.join(layer, "upper", "tmp", "junk"), "w") as f:
        f.write("junk\n")

    hostd.restart()
    with hostd.client() as c:
        listed = {d.spec.id: d.state for d in c.list()}
    left = [p for p in leftover_cgroups if os.path.exists(p)]
    assert left == [], f"leftover cgroups not removed: {left}"
    assert not os.path.exists(layer), "leftover layer folder not removed"
    assert "leftover-x" not in listed
    # The running dyno is no leftover.
    assert listed.get("rs-keep") == pb.DYNO_STATE_UP
    assert pid_alive(keep.pid)
    assert sorted(hostd.find_cgroups("rs-keep")) == sorted(keep_cgroups)
    assert keep.pid in dyno_cgroup_procs(hostd, "rs-keep")
    assert os.path.isdir(os.path.join(hostd.layers_dir, "rs-keep"))
    with hostd.client() as c:
        c.stop("rs-keep", grace=1)
