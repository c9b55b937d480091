"""The event stream: every dyno state change and host event, numbered without gaps, kept
across kill -9 of hostd; a subscriber that comes back with the last number it saw gets what
followed, nothing twice.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_events.py
"""

import os
import signal
import time

import pytest

from hostd_client import Code, pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: the event log and its numbering
    pytest.mark.cgroup_independent,
]


def replay(c, since=0):
    """Every kept event after since (a stream that ends)."""
    return c.event_list(since)


def states(events, dyno_id):
    return [pb.DynoState.Name(e.state).removeprefix("DYNO_STATE_") for e in events
            if e.dyno_id == dyno_id and e.kind == pb.EVENT_KIND_STATE]


def test_state_changes_in_order_with_contiguous_numbers(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("ev-1"))
    c.stop("ev-1")
    evs = replay(c)
    seqs = [e.seq for e in evs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] == 1, seqs
    assert evs[0].kind == pb.EVENT_KIND_HOST and "started" in evs[0].message
    assert states(evs, "ev-1") == ["STARTING", "UP", "STOPPING", "DOWN"]
    down = [e for e in evs if e.dyno_id == "ev-1"][-1]
    assert down.message.startswith("State changed from stopping to down")
    # since N gives what follows N only
    assert [e.seq for e in replay(c, since=seqs[2])] == seqs[3:]


def test_follow_then_kill9_then_resume_without_gap_or_duplicate(hostd, make_spec):
    c = hostd.client()
    follow = c.events(follow=True)
    c2 = hostd.client()
    c2.start(make_spec("ev-live", command="sleep 1000"))
    c2.start(make_spec("ev-dies", name="worker.2", command="sleep 1000"))
    seen = []
    while states(seen, "ev-dies") != ["STARTING", "UP"]:
        resp = follow.next(timeout=20)
        assert resp is not None, follow.status
        seen.append(resp.event)
    last = seen[-1].seq

    # hostd dies; meanwhile a dyno ends; hostd comes back
    pid = c2.get("ev-dies").pid
    hostd.kill9()
    os.kill(pid, signal.SIGKILL)  # the dyno's init, started by this test's hostd
    hostd.start()
    c3 = hostd.client()
    c3.wait_state("ev-dies", pb.DYNO_STATE_CRASHED, timeout=20)

    after = replay(c3, since=last)
    seqs = [e.seq for e in after]
    assert seqs and seqs[0] == last + 1, (last, seqs)
    assert seqs == list(range(last + 1, last + 1 + len(seqs)))
    assert any(e.kind == pb.EVENT_KIND_HOST and "started" in e.message for e in after)
    assert states(after, "ev-dies")[-1] == "CRASHED"
    assert "UP" not in states(after, "ev-live")  # told once, before the kill
    everything = [e.seq for e in replay(c3)]
    assert everything == list(range(1, everything[-1] + 1))  # kept across the kill
    c3.stop("ev-live")


def test_retention_keeps_the_last_and_the_numbering(hostd_factory, make_spec):
    h = hostd_factory(events_keep=5)
    c = h.client()
    for i in range(4):
        c.start(make_spec(f"ev-r{i}", command="sleep 1000"))
        c.stop(f"ev-r{i}", grace=1)
    evs = replay(c)
    assert len(evs) == 5
    last = evs[-1].seq
    assert last >= 17 and [e.seq for e in evs] == list(range(last - 4, last + 1))
    h.kill9()
    h.start()
    c = h.client()
    evs = replay(c)
    assert evs[-1].seq == last + 1 and evs[-1].kind == pb.EVENT_KIND_HOST


def test_hostctl_events(hostd, make_spec):
    import subprocess
    from test_exec import HOSTCTL
    c = hostd.client()
    c.start(make_spec("ev-h"))
    run = lambda *a: subprocess.run([HOSTCTL, "--socket", hostd.socket_path, "events", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=30)
    r = run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("1 ") and " - host - hostd " in lines[0], lines[0]
    mine = [l for l in lines if " ev-h state " in l]
    assert [l.split()[4] for l in mine] == ["starting", "up"], mine
    last = int(lines[-1].split()[0])
    r = run("--since", str(last - 1), "--json")
    import json
    objs = [json.loads(l) for l in r.stdout.splitlines()]
    assert [o["seq"] for o in objs] == [last] and objs[0]["dyno_id"] == "ev-h"
    assert run("--since", "x").returncode == 2
    c.stop("ev-h")


def test_a_failed_start_is_told_as_removed(hostd, make_spec, tmp_path):
    empty = tmp_path / "empty-stack"
    empty.mkdir()
    empty.chmod(0o755)
    c = hostd.client()
    r = c.start(make_spec("ev-bad", stack_path=str(empty)), check=False)
    assert r.status.code == Code.FAILED_PRECONDITION, r
    evs = [e for e in replay(c) if e.dyno_id == "ev-bad"]
    assert [e.kind for e in evs] == [pb.EVENT_KIND_STATE, pb.EVENT_KIND_REMOVED], evs
    assert c.get("ev-bad", check=False).status.code == Code.NOT_FOUND
