"""hostd as a program: options, configuration errors, sd_notify, one hostd per socket, and
a SIGTERM that leaves the dynos running."""

import os
import socket
import subprocess
import time

import pytest

from conftest import HOSTD_BIN, SERVING
from hostd_client import pb

# not the cgroup v2 tier: options, configuration, sd_notify, the socket
pytestmark = pytest.mark.cgroup_independent


def run_hostd(*args, timeout=10):
    return subprocess.run([HOSTD_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_help_and_version():
    r = run_hostd("--help")
    assert r.returncode == 0
    for opt in ("--config", "--log-level", "--dump-config", "--help", "--version"):
        assert opt in r.stdout, f"--help does not mention {opt}"
    r = run_hostd("--version")
    assert r.returncode == 0 and r.stdout.startswith("hostd "), r.stdout


def test_unknown_option_and_stray_argument_are_usage_errors():
    r = run_hostd("--no-such-option")
    assert r.returncode == 2 and "--help" in r.stderr
    r = run_hostd("stray")
    assert r.returncode == 2 and "stray" in r.stderr


def test_bad_config_names_the_line_and_key_and_changes_nothing(hostd_factory):
    h = hostd_factory(start=False)
    with open(h.config_path, "a") as f:
        f.write("grace-seconds = soon\n")
    lines = open(h.config_path).read().count("\n")
    r = run_hostd("--config", h.config_path)
    assert r.returncode == 1
    assert f"{h.config_path}:{lines}:" in r.stderr and "grace-seconds" in r.stderr, r.stderr
    assert not os.path.exists(h.socket_path)
    assert not os.path.exists(h.run_dir)
    assert not h.find_cgroups(h.cgroup_root)


def test_missing_config_file_is_an_error():
    r = run_hostd("--config", "/nonexistent/hostd.conf")
    assert r.returncode == 1 and "/nonexistent/hostd.conf" in r.stderr


def test_dump_config_reads_back_as_the_same(hostd_factory, tmp_path):
    h = hostd_factory(start=False)
    first = run_hostd("--config", h.config_path, "--dump-config")
    assert first.returncode == 0, first.stderr
    dumped = tmp_path / "dumped.conf"
    dumped.write_text(first.stdout)
    second = run_hostd("--config", str(dumped), "--dump-config")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert f"socket = {h.socket_path}" in first.stdout
    assert "[size standard-1x]" in first.stdout


def test_sd_notify_ready_then_stopping(hostd_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        h = hostd_factory(start=False)
        h.extra_env = {"NOTIFY_SOCKET": path}
        h.start()
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg.split("\n"), msg
        # Ready means serving: the health service says so, and the API answers.
        with h.client() as c:
            assert c.health("") == SERVING and c.health("hostd.v1.Hostd") == SERVING
            assert c.list() == []
        assert h.stop() == 0
        msg = sock.recv(4096).decode()
        assert "STOPPING=1" in msg.split("\n"), msg
    finally:
        sock.close()


def test_a_second_hostd_on_the_same_socket_is_refused(hostd):
    r = run_hostd("--config", hostd.config_path)
    assert r.returncode == 1
    assert "another hostd" in r.stderr, r.stderr
    hostd.assert_serving()


@pytest.mark.cgroup  # the dyno stays in its cgroup and is re-adopted
def test_sigterm_stops_hostd_and_leaves_dynos_running(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("daemon-term"))
    assert hostd.stop() == 0
    # The dyno's init is alive and still in its cgroup.
    os.kill(d.pid, 0)
    assert "hostd-init" in open(f"/proc/{d.pid}/comm").read()
    hostd.start()
    with hostd.client() as c:
        again = c.get("daemon-term")
        assert again.state == pb.DYNO_STATE_UP and again.pid == d.pid
        down = c.stop("daemon-term", grace=2)
        assert down.exit.signal == 15
    deadline = time.monotonic() + 5
    while alive(d.pid):
        assert time.monotonic() < deadline, "the init outlived its stop"
        time.sleep(0.05)


def alive(pid):
    """Running, not a zombie waiting for whoever inherited it to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
