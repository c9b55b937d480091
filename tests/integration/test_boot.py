"""Boot detection: a web dyno is `starting` until a process in it listens on $PORT on all
addresses, then `up`; one that does not within its boot timeout is killed with R10 and
`crashed`. A worker is `up` as soon as its command runs.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_boot.py
"""

import os
import time

import pytest

from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: boot detection reads listening sockets in the dyno's network namespace
    pytest.mark.cgroup_independent,
]

R10_LINE = ("Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} seconds "
            "of launch")


def web(make_spec, dyno_id, command, boot=None):
    spec = make_spec(dyno_id, name="web.1", type=pb.DYNO_TYPE_WEB, port=5000, command=command)
    if boot is not None:
        spec.boot_timeout_seconds = boot
    return spec


def listening(pid, port):
    """Whether a socket listens on port in pid's network namespace (the test's own view,
    from /proc, independent of hostd's sock_diag)."""
    hexport = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{name}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(hexport) and fields[3] == "0A":
                    return True
    return False


def test_web_dyno_is_up_only_once_it_binds(hostd, make_spec):
    c = hostd.client()
    d = c.start(web(make_spec, "web-late", "sleep 5; exec /app/bin/web", boot=30))
    # the command runs, but nothing listens yet
    assert d.state == pb.DYNO_STATE_STARTING and d.pid
    assert not listening(d.pid, 5000)
    assert c.get("web-late").state == pb.DYNO_STATE_STARTING
    up = c.wait_state("web-late", pb.DYNO_STATE_UP, timeout=20)
    assert listening(up.pid, 5000)
    lines = c.log_texts("web-late")
    assert "State changed from starting to up" in lines
    assert not any("R10" in l for l in lines)
    c.stop("web-late")


@pytest.mark.cgroup  # R10 kills every process of the dyno
def test_web_dyno_that_never_binds_gets_r10(hostd, make_spec):
    c = hostd.client()
    d = c.start(web(make_spec, "web-never", "sleep 1000", boot=2))
    assert d.state == pb.DYNO_STATE_STARTING
    started = time.monotonic()
    got = c.wait_state("web-never", pb.DYNO_STATE_CRASHED, timeout=20)
    assert time.monotonic() - started >= 1.5  # not before its timeout
    assert got.exit.error == "R10"
    assert got.exit.signal == 9 and not got.exit.exited
    assert got.pid == 0
    lines = c.log_texts("web-never")
    assert R10_LINE.format(2) in lines
    assert "Process exited with status 137" in lines
    assert lines[-1] == "State changed from starting to crashed"
    assert not hostd.dyno_procs()


def test_web_dyno_bound_to_loopback_only_gets_r10(hostd, make_spec):
    c = hostd.client()
    d = c.start(web(make_spec, "web-lo",
                    "mkdir -p /tmp/w && exec busybox httpd -f -p 127.0.0.1:$PORT -h /tmp/w",
                    boot=3))
    # it does listen, on 127.0.0.1 only: that is not a boot
    deadline = time.monotonic() + 2
    while not listening(d.pid, 5000) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listening(d.pid, 5000)
    got = c.wait_state("web-lo", pb.DYNO_STATE_CRASHED, timeout=20)
    assert got.exit.error == "R10"
    assert R10_LINE.format(3) in c.log_texts("web-lo")


def test_default_boot_timeout_comes_from_the_config(hostd_factory, make_spec):
    h = hostd_factory(boot_timeout=2)
    c = h.client()
    c.start(web(make_spec, "web-cfg", "sleep 1000"))
    got = c.wait_state("web-cfg", pb.DYNO_STATE_CRASHED, timeout=20)
    assert got.exit.error == "R10"
    assert R10_LINE.format(2) in c.log_texts("web-cfg")


def test_stop_while_booting_is_a_plain_stop(hostd, make_spec):
    c = hostd.client()
    c.start(web(make_spec, "web-stop", "sleep 1000", boot=60))
    got = c.stop("web-stop", grace=5)
    assert got.state == pb.DYNO_STATE_DOWN and got.exit.error == ""
    assert not any("R10" in l for l in c.log_texts("web-stop"))


def test_worker_is_up_when_its_command_runs(hostd, make_spec):
    c = hostd.client()
    d = c.start(make_spec("worker-up", command="sleep 1000"))
    assert d.state == pb.DYNO_STATE_UP
    c.stop("worker-up")


@pytest.mark.cgroup  # re-adoption of a booting dyno
def test_booting_dyno_survives_hostd_restart_and_still_boots(hostd, make_spec):
    c = hostd.client()
    d = c.start(web(make_spec, "web-re", "sleep 3; exec /app/bin/web", boot=30))
    assert d.state == pb.DYNO_STATE_STARTING
    hostd.kill9()
    hostd.start()
    c = hostd.client()
    got = c.get("web-re")
    assert got.pid == d.pid and got.state in (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_UP)
    up = c.wait_state("web-re", pb.DYNO_STATE_UP, timeout=20)
    assert up.pid == d.pid
    c.stop("web-re")
