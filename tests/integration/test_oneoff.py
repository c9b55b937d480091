"""One-off dynos with a terminal: `hostctl run`. The dyno's command gets a PTY sized by the
client, the client attaches to it (input, output, resize) and gets the exit code. Nobody
attaching in time is R13; a client that leaves makes every process get SIGHUP every few
seconds, then R16 if the dyno is still there.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_oneoff.py
"""

import os
import pty
import select
import subprocess
import time

import pytest

from hostd_client import Code, attach_input, pb
from test_exec import HOSTCTL, Exec

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: the attach stream and its terminal
    pytest.mark.cgroup_independent,
]


def oneoff(make_spec, dyno_id, command, columns=80, rows=24):
    return make_spec(dyno_id, name="run.1", type=pb.DYNO_TYPE_ONE_OFF, command=command, tty=True,
                     tty_columns=columns, tty_rows=rows)


class Attach(Exec):
    """An Attach stream: the same messages as an Exec."""

    def __init__(self, client, dyno_id):
        self.c = client
        self.stream = client.attach(dyno_id)
        self.input = attach_input
        self.out = b""
        self.code = None
        self.error = None


def platform(c, dyno_id):
    return [l.text.decode() for l in c.logs(dyno_id).lines if l.source == "heroku"]


def test_attach_is_the_terminal(hostd, make_spec):
    c = hostd.client()
    c.start(oneoff(make_spec, "run-1", "sh", columns=100, rows=30))
    a = Attach(c, "run-1")
    # an interactive shell on a terminal: its banner and prompt (~, the working directory is
    # $HOME, /app) come first
    a.read_until(lambda o: b"~ $ " in o)
    assert b"built-in shell" in a.out
    a.send(b"echo hi-$((1+1)); stty size\r")
    a.read_until(lambda o: b"30 100" in o and b"hi-2" in o)
    # a second client cannot take the terminal
    other = Attach(hostd.client(), "run-1")
    other.wait(5)
    assert other.error.code == Code.ALREADY_EXISTS
    a.send(columns=120, rows=40)
    # The terminal's own size: busybox's stty prefers $COLUMNS and $LINES, which the dyno got
    # at its start (as Heroku gives them), to the kernel's.
    a.send(b"unset COLUMNS LINES; stty size; exit 3\r")
    assert a.wait() == 3
    assert b"40 120" in a.out
    d = c.wait_state("run-1", (pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_COMPLETE))
    assert d.state == pb.DYNO_STATE_CRASHED and d.exit.code == 3 and d.restarts == 0
    # exit 0 is complete
    c.start(oneoff(make_spec, "run-2", "sh"))
    a = Attach(c, "run-2")
    a.send(b"exit\r")
    assert a.wait() == 0
    assert c.wait_state("run-2", (pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_COMPLETE)).state == pb.DYNO_STATE_COMPLETE


@pytest.mark.cgroup  # R13 kills every process of the dyno
def test_no_client_in_time_is_r13(hostd_factory, make_spec):
    h = hostd_factory(attach_timeout=2)
    c = h.client()
    c.start(oneoff(make_spec, "run-13", "sleep 1000"))
    d = c.wait_state("run-13", (pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_COMPLETE), timeout=20)
    assert d.exit.error == "R13", d.exit
    assert "Error R13 (Attach error) -> Failed to attach to process" in platform(c, "run-13")


@pytest.mark.cgroup  # SIGHUP to every process of the cgroup, then R16's kill
def test_client_gone_hangs_up_then_r16(hostd_factory, make_spec):
    h = hostd_factory(hangup_interval=1, hangups=2)
    c = h.client()
    # ignores SIGHUP: hung up twice, then R16
    c.start(oneoff(make_spec, "run-16", "trap '' HUP; while :; do sleep 1; done"))
    c2 = h.client()
    a = Attach(c2, "run-16")
    a.send(b"\r")
    time.sleep(0.5)
    c2.close()
    d = c.wait_state("run-16", (pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_COMPLETE), timeout=30)
    assert d.exit.error == "R16", d.exit
    lines = platform(c, "run-16")
    assert "Client detached; sending SIGHUP to all processes" in lines
    assert any(l.startswith("Error R16 (Detached)") for l in lines)
    # a shell that ends on SIGHUP just ends, no R16
    c.start(oneoff(make_spec, "run-hup", "sh"))
    c3 = h.client()
    Attach(c3, "run-hup")
    time.sleep(0.5)
    c3.close()
    d = c.wait_state("run-hup", (pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_COMPLETE), timeout=30)
    assert d.exit.error == "" and (d.exit.code == 129 or d.exit.signal == 1), d.exit


def test_refusals(hostd, make_spec):
    c = hostd.client()
    r = c.start(make_spec("tty-worker", tty=True), check=False)
    assert r.status.code == Code.INVALID_ARGUMENT and "spec.tty" in r.status.message
    c.start(make_spec("no-tty", name="run.9", type=pb.DYNO_TYPE_ONE_OFF, command="sleep 100"))
    a = Attach(c, "no-tty")
    a.wait(5)
    assert a.error.code == Code.FAILED_PRECONDITION and "no terminal" in a.error.message
    a = Attach(c, "nope")
    a.wait(5)
    assert a.error.code == Code.NOT_FOUND


def test_hostctl_run(hostd, rootfs):
    base = [HOSTCTL, "--socket", hostd.socket_path, "run", "--stack", rootfs.stack, "--slug",
            rootfs.slug]
    # not on a terminal: output and exit code come back
    r = subprocess.run(base + ["--", "echo hello; exit 4"], capture_output=True, timeout=60)
    assert r.returncode == 4, r.stderr
    assert b"hello" in r.stdout
    # -it on a real terminal
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execv(HOSTCTL, base + ["-it", "--id", "run-it", "--", "sh"])
        finally:
            os._exit(127)
    out = b""
    try:
        deadline = time.monotonic() + 20
        os.write(master, b"echo run-$((2*21)); exit 5\r")
        while b"run-42" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        assert b"run-42" in out, out
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5, (status, out)
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(master)
    with hostd.client() as c:
        d = c.get("run-it")
        assert d.spec.type == pb.DYNO_TYPE_ONE_OFF and d.exit.code == 5
