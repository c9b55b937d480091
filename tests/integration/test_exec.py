"""Exec: an operator's process inside a running dyno. It sees the dyno's files and processes,
runs in its cgroup with its uid, no capability and the seccomp filter, streams its output,
takes input, gets a terminal when asked (with a window size that follows the client), and
reports its exit code.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_exec.py
"""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from hostd_client import BidiStream, Code, exec_input, pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # the cgroup v2 tier runs it: an exec joins the dyno's cgroup
    pytest.mark.cgroup,
]


class Exec:
    """One Exec stream (a bidirectional gRPC stream) on a client."""

    def __init__(self, client, dyno_id, argv, tty=False, columns=0, rows=0, term=""):
        self.c = client
        self.stream = client.exec(dyno_id, argv, tty=tty, columns=columns, rows=rows, term=term)
        self.input = exec_input
        self.out = b""
        self.code = None
        self.error = None

    def send(self, data=b"", eof=False, columns=0, rows=0):
        self.input(self.stream, data, eof=eof, columns=columns, rows=rows)

    def read_until(self, pred, timeout=20.0):
        """Collect output until pred(output) or the end; returns the output."""
        deadline = time.monotonic() + timeout
        while self.code is None and self.error is None and not pred(self.out):
            resp = self.stream.next(max(0.1, deadline - time.monotonic()))
            if resp is None:
                if not self.stream.status.ok:
                    self.error = self.stream.status
                else:
                    assert self.code is not None, "the stream ended without an exit"
                break
            self.out += resp.output.data
            if resp.output.exited:
                self.code = resp.output.exit_code
                # the last message: the stream then ends OK
                assert self.stream.wait_end(10).ok, self.stream.status
        return self.out

    def wait(self, timeout=20.0):
        self.read_until(lambda _: False, timeout)
        return self.code


@pytest.fixture
def running(hostd, make_spec):
    """A dyno whose command has become `sleep` (the shell execs it)."""
    c = hostd.client()
    d = c.start(make_spec("exec-1", command="echo in-the-dyno > /app/marker; exec sleep 1000"))
    deadline = time.monotonic() + 10
    while "sleep" not in comms(hostd.dyno_procs()):
        assert time.monotonic() < deadline, "the dyno's sleep did not start"
        time.sleep(0.05)
    return c, d


def comms(pids):
    names = []
    for p in pids:
        try:
            with open(f"/proc/{p}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def test_exec_runs_inside_the_dyno_unprivileged(running):
    c, d = running
    script = ("id -u; id -g; cat /app/marker; hostname; ps -o comm; "
              "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "
              "/proc/self/status; cat /proc/self/cgroup; echo DYNO=$DYNO; pwd")
    e = Exec(c, "exec-1", ["sh", "-c", script])
    assert e.wait() == 0, (e.error, e.out)
    out = e.out.decode()
    lines = out.splitlines()
    assert lines[0] == str(d.uid) and lines[1] == str(d.uid)
    assert "in-the-dyno" in lines  # the dyno's own writable layer
    assert "exec-1" in lines  # its hostname
    assert "sleep" in out and "hostd-init" in out  # its processes: it is in its PID namespace
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert re.search(rf"^{cap}:\s+0+$", out, re.M), f"{cap} not empty:\n{out}"
    assert re.search(r"^NoNewPrivs:\s+1$", out, re.M)
    assert re.search(r"^Seccomp:\s+2$", out, re.M)
    # in the dyno's cgroup, and its cgroup namespace: every path reads "/"
    cg = [l for l in lines if re.match(r"^\d+:", l)]
    assert cg and all(l.endswith(":/") for l in cg), cg
    assert "DYNO=worker.1" in lines and lines[-1] == "/app"


def test_exit_code_and_input(running):
    c, _ = running
    assert Exec(c, "exec-1", ["sh", "-c", "exit 7"]).wait() == 7
    e = Exec(c, "exec-1", ["cat"])
    e.send(b"hello ")
    e.send(b"world\n", eof=True)
    assert e.wait() == 0
    assert e.out == b"hello world\n"
    # stdout and stderr both come back
    e = Exec(c, "exec-1", ["sh", "-c", "echo out; echo err >&2"])
    assert e.wait() == 0 and sorted(e.out.split()) == [b"err", b"out"]


def test_terminal_with_size_and_resize(running):
    c, _ = running
    e = Exec(c, "exec-1", ["sh", "-c", "tty; stty size; read x; stty size; echo TERM=$TERM"],
             tty=True, columns=100, rows=30)
    e.read_until(lambda o: b"30 100" in o)
    assert re.search(rb"/dev/pts/\d+", e.out), e.out
    e.send(columns=132, rows=43)
    e.send(b"\n")
    assert e.wait() == 0, e.out
    assert b"43 132" in e.out and b"TERM=xterm" in e.out


def test_refusals(hostd, running, make_spec):
    c, _ = running

    def code(dyno_id, argv, **kw):
        e = Exec(c, dyno_id, argv, **kw)
        e.wait()
        return e.error.code if e.error else None, e.error.message if e.error else e.out

    assert code("nope", ["true"])[0] == Code.NOT_FOUND
    assert code("exec-1", [])[0] == Code.INVALID_ARGUMENT
    assert code("exec-1", [""])[0] == Code.INVALID_ARGUMENT
    assert code("exec-1", ["true"], tty=True, columns=20000, rows=1)[0] == Code.INVALID_ARGUMENT
    got, msg = code("exec-1", ["/no/such/program"])
    assert got == Code.FAILED_PRECONDITION and "/no/such/program" in msg, msg
    c.start(make_spec("exec-done", command="true"))
    c.wait_state("exec-done", pb.DYNO_STATE_CRASHED)
    got, msg = code("exec-done", ["true"])
    assert got == Code.FAILED_PRECONDITION and "not running" in msg
    # input before the process was started: the first message must be `start`
    s = BidiStream(c.stub.Exec, pb.ExecRequest(input=pb.StreamInput(data=b"x")), "Exec")
    assert s.rest(20) == [] and s.status.code == Code.INVALID_ARGUMENT, s.status
    assert "first message" in s.status.message, s.status
    hostd.assert_serving()


def test_stop_ends_the_exec_and_a_gone_client_hangs_it_up(hostd, running):
    c, d = running
    e = Exec(c, "exec-1", ["sleep", "1000"])
    time.sleep(0.5)
    c2 = hostd.client()
    c2.stop("exec-1", grace=2)
    assert e.wait() in (128 + 9, 128 + 15), e.code  # SIGTERM relayed, or SIGKILL at the end
    # a client that leaves: its process is hung up and ends
    c3 = hostd.client()
    c3.start(pb.DynoSpec(id="exec-2", name="worker.2", app="a", type=pb.DYNO_TYPE_WORKER,
                         size="standard-1x", command="sleep 1000", stack_path=d.spec.stack_path,
                         slug_path=d.spec.slug_path))
    e = Exec(c3, "exec-2", ["sh", "-c", "sleep 1000"], tty=True)
    time.sleep(1.0)
    procs_before = len(hostd.dyno_procs())
    c3.close()
    deadline = time.monotonic() + 15
    while len(hostd.dyno_procs()) >= procs_before:
        assert time.monotonic() < deadline, "the exec's processes did not end"
        time.sleep(0.1)
    assert "its client left; hanging up" in hostd.log_text()


# -- hostctl exec ------------------------------------------------------------------------------

HOSTCTL = os.path.join(os.environ.get("HOSTD_BUILD_DIR", "build"), "hostctl", "hostctl")


def hostctl(hostd, *args, input=None):
    return subprocess.run([HOSTCTL, "--socket", hostd.socket_path, *args], capture_output=True,
                          input=input, timeout=60)


def test_hostctl_exec_output_input_and_status(hostd, running):
    r = hostctl(hostd, "exec", "exec-1", "--", "sh", "-c", "echo hi; ls -d /app; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == b"hi\n/app\n"
    r = hostctl(hostd, "exec", "-i", "exec-1", "cat", input=b"from stdin\n")
    assert r.returncode == 0 and r.stdout == b"from stdin\n", r.stderr
    # without -i the command's input is empty
    r = hostctl(hostd, "exec", "exec-1", "cat", input=b"ignored")
    assert r.returncode == 0 and r.stdout == b""
    # COMMAND's own options are its own
    r = hostctl(hostd, "exec", "exec-1", "ls", "-d", "/app")
    assert r.returncode == 0 and r.stdout == b"/app\n", r.stderr
    # refusals: hostd's error, and usage
    r = hostctl(hostd, "exec", "nope", "true")
    assert r.returncode == 1 and b"NOT_FOUND" in r.stderr
    r = hostctl(hostd, "exec", "exec-1")
    assert r.returncode == 2 and b"missing COMMAND" in r.stderr
    r = hostctl(hostd, "exec", "--help")
    assert r.returncode == 0 and r.stdout.startswith(b"Usage: hostctl exec")


def test_hostctl_exec_interactive_terminal(hostd, running):
    """hostctl -it on a real terminal: the size follows it, a resize too, and the exit code
    comes back."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 90, 0, 0))
            os.execv(HOSTCTL, [HOSTCTL, "--socket", hostd.socket_path, "exec", "-it", "exec-1",
                               "sh"])
        finally:
            os._exit(127)
    out = b""

    def read_until(needle, timeout=20):
        nonlocal out
        deadline = time.monotonic() + timeout
        while needle not in out:
            assert time.monotonic() < deadline, out
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        return out

    try:
        os.write(master, b"stty size; echo mark-$((6*7))\r")
        read_until(b"mark-42")
        assert b"20 90" in out
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        time.sleep(0.5)  # hostctl's SIGWINCH, then its resize message, reach the dyno
        os.write(master, b"stty size; exit 5\r")
        read_until(b"33 111")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5, status
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(master)
