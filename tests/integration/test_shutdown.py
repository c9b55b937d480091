"""What hostd does when it stops and when the host rebooted.

SIGTERM leaves the dynos running for the next hostd (restarts and upgrades), unless
stop-dynos-on-exit: then it stops them gracefully first and exits once they are gone, killing
what still runs after shutdown-timeout; either way the log and the event stream say which. After
a reboot (simulated: the records carry another boot id, and the dynos' processes are gone) each
record is reported once as down, "host rebooted", then forgotten.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_shutdown.py
"""

import os
import signal
import sys
import time

import pytest

from hostd_client import Code, pb
from conftest import BUILD_DIR
from dynoutil import wait_log

sys.path.insert(0, os.path.join(BUILD_DIR, "proto"))
import store_pb2  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # the cgroup v2 tier runs it: the kill of what does not stop goes through the cgroup driver
    pytest.mark.cgroup,
]

TRAP = "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 1000 & wait"


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def host_events(c):
    return [e.message for e in c.event_list() if e.kind == pb.EVENT_KIND_HOST]


def test_by_default_the_dynos_keep_running(hostd_factory, make_spec):
    h = hostd_factory()
    c = h.client()
    d = c.start(make_spec("sd-keep", command="sleep 1000"))
    assert h.stop() == 0
    assert alive(d.pid)
    assert "1 dynos keep running" in h.log_text()
    h.start()
    c = h.client()
    assert c.get("sd-keep").pid == d.pid  # re-adopted
    assert any("keep running" in m for m in host_events(c))
    c.stop("sd-keep")


def test_stop_dynos_on_exit_stops_them_gracefully_first(hostd_factory, make_spec):
    h = hostd_factory(stop_dynos_on_exit="yes")
    c = h.client()
    d = c.start(make_spec("sd-stop", command=TRAP))
    wait_log(c, "sd-stop", "ready", timeout=30.0)  # the trap is set: a SIGTERM now is caught
    inits = h.dyno_inits()
    assert h.stop() == 0
    assert not alive(d.pid) and not any(alive(p) for p in inits)
    assert not h.find_cgroups("sd-stop")
    assert "stopping its 1 dynos first" in h.log_text() or "first the 1 dynos" in h.log_text()
    h.start()
    c = h.client()
    got = c.get("sd-stop")
    assert got.state == pb.DYNO_STATE_DOWN and got.exit.code == 0
    assert "got TERM" in c.log_texts("sd-stop")


def test_shutdown_timeout_kills_what_does_not_stop(hostd_factory, make_spec):
    h = hostd_factory(stop_dynos_on_exit="yes", shutdown_timeout="1s", grace_seconds=60)
    c = h.client()
    d = c.start(make_spec("sd-stubborn",
                          command="trap '' TERM; echo ready; while :; do sleep 1; done"))
    wait_log(c, "sd-stubborn", "ready", timeout=30.0)  # TERM ignored from here on
    assert h.stop() == 0
    assert not alive(d.pid)
    assert not h.find_cgroups("sd-stubborn")
    assert "shutdown-timeout passed" in h.log_text()


def test_records_of_an_earlier_boot_are_reported_once_then_forgotten(hostd_factory, make_spec):
    h = hostd_factory()
    c = h.client()
    d = c.start(make_spec("sd-boot", command="sleep 1000"))
    c.start(make_spec("sd-boot-down", command="sleep 1000"))
    c.stop("sd-boot-down")
    h.kill9()
    # the reboot: the processes are gone, and the records are another boot's
    for pid in h.dyno_inits():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(d.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for name in ("sd-boot", "sd-boot-down"):
        path = os.path.join(h.run_dir, "dynos", name, "record")
        rec = store_pb2.DynoRecord()
        with open(path, "rb") as f:
            rec.ParseFromString(f.read())
        rec.boot_id = "00000000-0000-0000-0000-000000000000"
        with open(path, "wb") as f:
            f.write(rec.SerializeToString())
    h.start()
    c = h.client()
    for name in ("sd-boot", "sd-boot-down"):
        assert c.get(name, check=False).status.code == Code.NOT_FOUND
        assert not os.path.exists(os.path.join(h.run_dir, "dynos", name))
    assert not os.path.exists(os.path.join(h.layers_dir, "sd-boot"))
    assert not h.find_cgroups("sd-boot")
    evs = c.event_list()
    rebooted = [e for e in evs if e.message.endswith("host rebooted")]
    assert [e.dyno_id for e in rebooted] == ["sd-boot"], [e.message for e in evs]
    assert rebooted[0].state == pb.DYNO_STATE_DOWN
    # once: another restart tells nothing more of it
    h.restart()
    c = h.client()
    evs2 = c.event_list()
    assert len([e for e in evs2 if e.message.endswith("host rebooted")]) == 1
