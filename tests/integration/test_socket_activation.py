"""Socket activation (systemd/hostd.socket): hostd serves the listening socket systemd passes
(sd_listen_fds) instead of binding its own, keeps the owner and mode the socket unit gave it,
still applies read-group to the peers, and leaves the socket file to systemd when it stops.

systemd is not PID 1 here, so systemd-socket-activate (Debian's systemd package) plays the
socket unit: it binds the socket, waits for the first connection, then execs hostd with the
socket as fd 3 and LISTEN_FDS=1, as systemd does.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_socket_activation.py
"""

import os
import shutil
import socket
import stat
import subprocess
import time

import pytest

from conftest import HOSTD_BIN
from test_authz import READERS, hostctl_as, open_up

ACTIVATE = shutil.which("systemd-socket-activate")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is missing"),
    # not the cgroup v2 tier: the socket systemd passes
    pytest.mark.cgroup_independent,
]

OTHERS = 47114  # the socket unit's SocketGroup= in this test: not read-group


def activated(h, mode, gid):
    """Run h's hostd under systemd-socket-activate, the socket given mode and gid before hostd
    starts (what SocketMode= and SocketGroup= do)."""
    h.command_prefix = [
        ACTIVATE, "-l", h.socket_path,
        "/bin/sh", "-c", f'chown 0:{gid} "$0" && chmod {mode:o} "$0" && exec "$@"', h.socket_path,
    ]
    return h.start()


def test_hostd_serves_the_passed_socket_as_the_unit_made_it(hostd_factory, make_spec):
    h = hostd_factory(start=False, read_group=str(READERS))
    open_up(h)
    activated(h, 0o666, OTHERS)
    with h.client() as c:
        c.start(make_spec("sa-1", command="sleep 1000"))
        assert [d.spec.id for d in c.list()] == ["sa-1"]
    assert "the socket systemd passed" in h.log_text()
    # hostd made no socket of its own and changed nothing on systemd's
    st = os.stat(h.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o666, 0, OTHERS)
    # read-group still decides what a peer may do: the socket's own mode lets anyone connect
    r = hostctl_as(h, [READERS], "ps")
    assert r.returncode == 0 and "sa-1" in r.stdout, r.stderr
    r = hostctl_as(h, [READERS], "stop", "sa-1")
    assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr
    r = hostctl_as(h, [OTHERS], "ps")
    assert r.returncode != 0 and "sa-1" not in r.stdout
    with h.client() as c:
        c.stop("sa-1")
    # stopping leaves the socket file: under systemd it belongs to hostd.socket
    assert h.stop() == 0
    assert stat.S_ISSOCK(os.stat(h.socket_path).st_mode)


def test_a_socket_at_another_path_is_refused(hostd_factory, tmp_path):
    h = hostd_factory(start=False)
    other = str(tmp_path / "other.sock")
    proc = subprocess.Popen(
        [ACTIVATE, "-l", other, HOSTD_BIN, "--config", h.config_path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(other):
            assert time.monotonic() < deadline, "systemd-socket-activate did not bind"
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(other)  # hostd is started now, with the socket at 'other'
            out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    assert f"is not a listening stream socket at {h.socket_path}" in out, out
    assert not os.path.exists(h.socket_path)  # and it did not fall back to a socket of its own
