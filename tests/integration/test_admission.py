"""Admission and drain: a start that would pass the memory allocatable to dynos (the total less
reserved-memory; shared sizes at quota / memory-overcommit) or max-dynos is refused with
RESOURCE_EXHAUSTED and the numbers, and taken again once a dyno stopped; a draining host takes
no new dynos, says so, and with a deadline stops the running ones gracefully; the drain lasts
across a restart of hostd.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_admission.py
"""

import os
import subprocess
import time

import pytest

from conftest import BUILD_DIR
from hostd_client import Code, pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: admission weighs the config's sizes against /proc/meminfo
    pytest.mark.cgroup_independent,
]

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
MIB = 1024 * 1024


def mem_total():
    with open("/proc/meminfo") as f:
        for l in f:
            if l.startswith("MemTotal:"):
                return int(l.split()[1]) * 1024


def reserve_leaving(mib):
    """A reserved-memory that leaves mib MiB allocatable (in K, as the config takes it)."""
    return f"{(mem_total() - mib * MIB) // 1024}K"


def hostctl(h, *args):
    return subprocess.run([HOSTCTL, "--socket", h.socket_path, *args], capture_output=True,
                          text=True, timeout=60)


def c_events(c):
    return c.event_list()


def test_memory_admission_refuses_at_the_limit_and_takes_again(hostd_factory, make_spec):
    h = hostd_factory(reserved_memory=reserve_leaving(1300), memory_overcommit="1")
    c = h.client()
    c.start(make_spec("adm-1", command="sleep 1000"))
    c.start(make_spec("adm-2", command="sleep 1000"))
    resp = c.start(make_spec("adm-3", command="sleep 1000"), check=False)
    assert resp.status.code == Code.RESOURCE_EXHAUSTED
    msg = resp.status.message
    assert "adm-3" in msg and "needs 512M" in msg and "1G of the" in msg, msg
    assert "reserved-memory" in msg, msg
    # nothing of the refused one
    assert not h.find_cgroups("adm-3")
    assert c.get("adm-3", check=False).status.code == Code.NOT_FOUND
    info = c.host_info()
    assert info.memory_committed == 1024 * MIB and info.dynos == 2
    c.stop("adm-1")
    c.start(make_spec("adm-3", command="sleep 1000"))
    assert c.get("adm-3").state == pb.DYNO_STATE_UP
    c.stop("adm-2")
    c.stop("adm-3")


def test_overcommit_counts_shared_sizes_at_a_fraction(hostd_factory, make_spec):
    h = hostd_factory(reserved_memory=reserve_leaving(1100), memory_overcommit="2")
    c = h.client()
    for i in range(4):  # 4 x 512M at 1/2 = 1G <= 1100M; a fifth would be 1.25G
        c.start(make_spec(f"ovc-{i}", command="sleep 1000"))
    resp = c.start(make_spec("ovc-4", command="sleep 1000"), check=False)
    assert resp.status.code == Code.RESOURCE_EXHAUSTED, resp
    assert "memory-overcommit" in resp.status.message
    assert c.host_info().memory_committed == 1024 * MIB
    for i in range(4):
        c.stop(f"ovc-{i}")


def test_max_dynos(hostd_factory, make_spec):
    h = hostd_factory(max_dynos=1)
    c = h.client()
    c.start(make_spec("max-1", command="sleep 1000"))
    resp = c.start(make_spec("max-2", command="sleep 1000"), check=False)
    assert resp.status.code == Code.RESOURCE_EXHAUSTED and "max-dynos" in resp.status.message
    c.stop("max-1")
    c.start(make_spec("max-2", command="sleep 1000"))
    c.stop("max-2")


def test_drain_refuses_new_dynos_and_lasts_across_a_restart(hostd_factory, make_spec):
    h = hostd_factory()
    c = h.client()
    d = c.start(make_spec("drn-1", command="sleep 1000"))
    r = hostctl(h, "drain")
    assert r.returncode == 0 and "draining" in r.stdout, r.stderr
    resp = c.start(make_spec("drn-2", command="sleep 1000"), check=False)
    assert resp.status.code == Code.FAILED_PRECONDITION and "draining" in resp.status.message
    assert not h.find_cgroups("drn-2")
    info = c.host_info()
    assert info.draining and info.drain_deadline_usec == 0
    assert "draining:" in hostctl(h, "host").stdout
    # the running dyno goes on, a restart of it included
    c.restart("drn-1")
    assert c.wait_state("drn-1", pb.DYNO_STATE_UP).pid != d.pid
    h.kill9()
    h.restart()
    c = h.client()
    assert c.host_info().draining
    assert c.start(make_spec("drn-2", command="sleep 1000"), check=False).status.code == \
        Code.FAILED_PRECONDITION
    evs = [e.message for e in c_events(c) if e.kind == pb.EVENT_KIND_HOST]
    assert any(m.startswith("draining") for m in evs), evs
    r = hostctl(h, "undrain")
    assert r.returncode == 0, r.stderr
    assert not c.host_info().draining
    c.start(make_spec("drn-2", command="sleep 1000"))
    assert any(e.message.startswith("undrained") for e in c_events(c))
    c.stop("drn-1")
    c.stop("drn-2")


def test_drain_deadline_stops_the_running_dynos_gracefully(hostd_factory, make_spec):
    h = hostd_factory()
    c = h.client()
    c.start(make_spec("dl-1", command="trap 'echo got TERM; exit 0' TERM; sleep 1000 & wait"))
    c.start(make_spec("dl-2", command="sleep 1000"))
    assert hostctl(h, "drain", "--deadline", "0").returncode != 0  # 1..604800
    r = hostctl(h, "drain", "--deadline", "2")
    assert r.returncode == 0, r.stderr
    assert c.host_info().drain_deadline_usec > time.time() * 1e6
    assert c.get("dl-1").state == pb.DYNO_STATE_UP  # not before the deadline
    d1 = c.wait_state("dl-1", (pb.DYNO_STATE_DOWN, pb.DYNO_STATE_CRASHED), timeout=20)
    d2 = c.wait_state("dl-2", (pb.DYNO_STATE_DOWN, pb.DYNO_STATE_CRASHED), timeout=20)
    assert d1.state == pb.DYNO_STATE_DOWN and d2.state == pb.DYNO_STATE_DOWN
    assert d1.exit.code == 0 and "got TERM" in c.log_texts("dl-1")  # graceful: SIGTERM first
    assert "Stopping all processes with SIGTERM" in c.log_texts("dl-2")
    assert h.dyno_inits() == []
    hostctl(h, "undrain")
