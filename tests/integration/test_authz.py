"""Who may use hostd's socket: root may do everything; members of read-group may connect and
read (ps, inspect, logs, events, host, images) but not act; anyone else cannot connect. The
peer is told by the kernel (SO_PEERCRED, SO_PEERGROUPS), not by anything the client says.

The test runs hostctl as uid 65534 with a supplementary group that exists nowhere else (a
number: read-group takes one), so no user or group is added to the machine.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_authz.py
"""

import os
import stat
import subprocess

import pytest

from conftest import BUILD_DIR
from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: peer credentials on the socket
    pytest.mark.cgroup_independent,
]

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
NOBODY = 65534
READERS = 47113  # the test's read-group


def hostctl_as(h, groups, *args):
    def drop():
        os.setgroups(groups)
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    return subprocess.run([HOSTCTL, "--socket", h.socket_path, *args], capture_output=True,
                          text=True, timeout=60, preexec_fn=drop)


def open_up(h):
    """The test's folder is 0700; the socket's own mode is what is tested."""
    d = os.path.dirname(h.socket_path)
    while d.startswith(h.tmp):
        os.chmod(d, 0o711)
        d = os.path.dirname(d)


def test_readers_read_and_may_not_act(hostd_factory, make_spec):
    h = hostd_factory(read_group=str(READERS))
    open_up(h)
    st = os.stat(h.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == READERS and st.st_uid == 0
    c = h.client()
    d = c.start(make_spec("authz-1", command="echo hello; sleep 1000"))
    c.wait_state("authz-1", pb.UP)

    for args in (["ps"], ["inspect", "authz-1"], ["logs", "authz-1"], ["host"],
                 ["events"], ["images", "ls"]):
        r = hostctl_as(h, [READERS], *args)
        assert r.returncode == 0, (args, r.stderr)
    assert "authz-1" in hostctl_as(h, [READERS], "ps").stdout

    for args in (["stop", "authz-1"], ["restart", "authz-1"],
                 ["exec", "authz-1", "--", "true"]):
        r = hostctl_as(h, [READERS], *args)
        assert r.returncode != 0 and "permission denied" in r.stderr, (args, r.stderr)
    # nothing changed, and hostd says why it refused
    got = c.get("authz-1")
    assert got.state == pb.UP and got.pid == d.pid and got.restarts == 0
    assert "refused stop from a read-only client" in h.log_text()
    c.stop("authz-1")


def test_others_cannot_connect(hostd_factory):
    h = hostd_factory(read_group=str(READERS))
    open_up(h)
    r = hostctl_as(h, [], "ps")
    assert r.returncode != 0 and "ermission denied" in r.stderr, r.stderr


def test_without_a_read_group_only_root(hostd_factory):
    h = hostd_factory(read_group="")
    open_up(h)
    st = os.stat(h.socket_path)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0 and st.st_uid == 0
    r = hostctl_as(h, [READERS], "ps")
    assert r.returncode != 0, r.stdout
    assert h.client().list() is not None  # root still may
