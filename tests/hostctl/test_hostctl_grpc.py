"""hostctl as a gRPC client: the real hostctl against a fake hostd (fake_hostd.py, grpcio: a
second gRPC implementation) over its Unix socket and over mutual TLS, checked as an operator
would: what hostctl prints, its exit status, and what the server saw (fake_hostd's call log:
each request and the deadline it arrived with).

No root, no hostd: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/hostctl/
"""

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.abspath(os.environ.get("HOSTD_BUILD_DIR", "build"))
HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
FAKE = os.path.join(HERE, "fake_hostd.py")
PYTHON = "/usr/bin/python3"
FOLLOW_DELAY = 2.0  # the fake's silence in a follow before its last item
DIGEST = "1a2b3c4d5e6f" + "0" * 52


# -- the fake hostd ------------------------------------------------------------------------


class Fake:
    """A fake_hostd.py process, its socket and its call log."""

    def __init__(self, folder, tls=None, follow_delay=FOLLOW_DELAY):
        self.dir = folder
        self.socket = os.path.join(folder, "hostd.sock")
        self.log = os.path.join(folder, "calls.jsonl")
        open(self.log, "w").close()
        args = [PYTHON, FAKE, "--socket", self.socket, "--log", self.log,
                "--follow-delay", str(follow_delay)]
        if tls:
            args += ["--tls", tls.addr, "--cert", tls.server[0], "--key", tls.server[1],
                     "--ca", tls.ca]
        self.stderr = open(os.path.join(folder, "fake.err"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=dict(os.environ, HOSTD_BUILD_DIR=BUILD_DIR))
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", open(os.path.join(folder, "fake.err")).read()

    def mark(self):
        return os.path.getsize(self.log)

    def calls(self, since=0, method=None):
        with open(self.log) as f:
            f.seek(since)
            got = [json.loads(l) for l in f if l.strip()]
        return [c for c in got if method is None or c["method"] == method]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def hostctl(*args, fake=None, input=None, env=None, timeout=60, text=True):
    argv = [HOSTCTL] + (["--socket", fake.socket] if fake else []) + list(args)
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=text, input=input, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    r.elapsed = time.monotonic() - t
    return r


@pytest.fixture(scope="module")
def folder():
    d = tempfile.mkdtemp(prefix="hostctl-grpc-")
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture(scope="module")
def fake(folder):
    d = os.path.join(folder, "unix")
    os.makedirs(d)
    f = Fake(d)
    yield f
    f.stop()


# -- the commands, over the Unix socket ------------------------------------------------------


def test_ps_prints_todays_table(fake):
    r = hostctl("ps", fake=fake)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "TYPE", "SIZE", "STATE", "PID", "UID", "UPTIME/EXIT",
                              "COMMAND"]
    cols = {row.split()[0]: row.split() for row in rows}
    # The enums print as before their prefixes came: "web", "up", "one_off", "complete".
    assert cols["web-1"][1:7] == ["web.1", "web", "standard-1x", "up", "4242", "20001"]
    assert cols["web-1"][8:] == ["bundle", "exec", "puma", "-C", "config/puma.rb"]
    assert cols["worker-1"][2:5] == ["worker", "standard-1x", "crashed"]
    assert "exit status 1" in next(r for r in rows if r.startswith("worker-1"))
    assert cols["run-1"][2] == "one_off" and cols["run-1"][4] == "complete"
    assert [c["method"] for c in fake.calls()][-1] == "ListDynos"


def test_json_keeps_its_shape(fake):
    r = hostctl("--json", "ps", fake=fake)
    assert r.returncode == 0, r.stderr
    dynos = {d["spec"]["id"]: d for d in json.loads(r.stdout)["dynos"]}
    assert dynos["web-1"]["state"] == "up" and dynos["web-1"]["spec"]["type"] == "web"
    assert dynos["run-1"]["spec"]["type"] == "one_off"
    assert dynos["worker-1"]["exit"] == {"exited": True, "code": 1, "signal": 0,
                                         "oom_killed": False, "reason": "exit status 1",
                                         "error": ""}
    r = hostctl("--json", "inspect", "web-1", fake=fake)
    d = json.loads(r.stdout)
    assert d["spec"]["id"] == "web-1" and d["pid"] == 4242 and d["memory_limit"] == 512 << 20
    h = json.loads(hostctl("--json", "host", fake=fake).stdout)
    assert h["hostname"] == "fake-host" and h["sizes"][0]["name"] == "standard-1x"
    e = [json.loads(l) for l in hostctl("--json", "events", fake=fake).stdout.splitlines()]
    assert [(x["seq"], x["kind"], x["state"]) for x in e] == [
        (1, "host", "unspecified"), (2, "state", "starting"), (3, "state", "up")]


def test_inspect_shows_every_field(fake):
    r = hostctl("inspect", "web-1", fake=fake)
    assert r.returncode == 0, r.stderr
    fields = {k: v.strip() for k, v in (l.split(":", 1) for l in r.stdout.splitlines())}
    assert fields["id"] == "web-1" and fields["type"] == "web" and fields["state"] == "up"
    assert fields["run_id"] == "0f0e0d0c-0b0a-4908-8706-050403020100"
    assert fields["memory_limit"] == "512M" and fields["pids_limit"] == "256"
    assert fake.calls(method="GetDyno")[-1]["request"] == {"id": "web-1"}


def test_start_stop_restart(fake):
    mark = fake.mark()
    r = hostctl("start", "--id", "ctl-1", "--name", "worker.1", "--type", "worker",
                "--env", "GREETING=hi", "--grace", "5", "--", "exec sleep 1000", fake=fake)
    assert r.returncode == 0, r.stderr
    assert "id:                   ctl-1" in r.stdout and "state:                up" in r.stdout
    start = fake.calls(mark, "Start")[0]["request"]["spec"]
    assert start["id"] == "ctl-1" and start["type"] == "DYNO_TYPE_WORKER"
    assert start["command"] == "exec sleep 1000" and start["grace_seconds"] == 5
    assert start["env"] == [{"name": "GREETING", "value": "hi"}]

    r = hostctl("stop", "ctl-1", "--grace", "2", fake=fake)
    assert (r.returncode, r.stdout) == (0, "worker.1 (ctl-1): down, exit status 143\n"), r.stderr
    stop = fake.calls(mark, "Stop")[0]
    assert stop["request"] == {"id": "ctl-1", "grace_seconds": 2}
    # hostd answers a stop once the dyno is down: the deadline is --timeout plus the grace.
    assert 30 < stop["timeout"] <= 32

    r = hostctl("restart", "ctl-1", fake=fake)
    assert (r.returncode, r.stdout) == (0, "worker.1 (ctl-1): up\n"), r.stderr
    assert "grace_seconds" not in fake.calls(mark, "Restart")[0]["request"]


def test_an_error_status_is_printed_with_its_code_and_message(fake):
    r = hostctl("inspect", "nope", fake=fake)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "hostctl: inspect nope: NOT_FOUND: dyno 'nope' not found\n"
    # grpc-message is percent-encoded on the wire (grpcio encodes the é and the %).
    r = hostctl("inspect", "café", fake=fake)
    assert r.returncode == 1
    assert r.stderr == "hostctl: inspect café: NOT_FOUND: dyno 'café' not found: 100% sure\n"
    r = hostctl("start", "--id", "web-1", "--", "true", fake=fake)
    assert r.returncode == 1 and "hostctl: start web-1: ALREADY_EXISTS: dyno 'web-1'" in r.stderr
    r = hostctl("start", "--id", "x", "--release-created-at", "today", "--", "true", fake=fake)
    assert r.returncode == 1 and "INVALID_ARGUMENT: spec.release_created_at" in r.stderr
    r = hostctl("images", "rm", DIGEST, fake=fake)
    assert r.returncode == 1 and "FAILED_PRECONDITION: image 1a2b3c4d5e6f: 1 dyno uses it" \
        in r.stderr
    # Usage errors still send nothing.
    mark = fake.mark()
    assert hostctl("start", "--port", "70000", "--id", "x", fake=fake).returncode == 2
    assert fake.calls(mark) == []


def test_large_answers_and_one_over_the_limit(fake):
    r = hostctl("--json", "inspect", "big", fake=fake)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["spec"]["command"] == "x" * (3 << 20)
    r = hostctl("inspect", "huge", fake=fake)
    assert (r.returncode, r.stdout) == (3, "")
    # refused from its length, before 5 MiB pile up
    assert re.fullmatch(r"hostctl: inspect huge: hostd sent a message of 52\d{5} bytes, over the "
                        r"limit of 4194304\n", r.stderr), r.stderr


def test_timeout_is_the_deadline_hostd_sees(fake):
    mark = fake.mark()
    assert hostctl("--timeout", "7", "ps", fake=fake).returncode == 0
    assert hostctl("host", fake=fake).returncode == 0
    assert hostctl("--timeout", "0", "version", fake=fake).returncode == 0
    got = [c["timeout"] for c in fake.calls(mark)]
    assert 6 < got[0] <= 7 and 29 < got[1] <= 30 and got[2] is None, got


def test_no_reply_in_time_is_exit_3(fake):
    # The fake answers only after the deadline; hostctl gives up at it.
    r = hostctl("--timeout", "1", "inspect", "slow", fake=fake)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("hostctl: inspect slow: no reply from hostd within 1 s"), r.stderr
    assert r.elapsed < 3
    assert 0.5 < fake.calls(method="GetDyno")[-1]["timeout"] <= 1


def test_a_stream_that_ends_has_a_deadline_and_a_follow_none(fake):
    mark = fake.mark()
    assert hostctl("events", fake=fake).returncode == 0
    assert hostctl("logs", "web-1", fake=fake).returncode == 0
    assert hostctl("images", "ls", fake=fake).returncode == 0
    assert [c["timeout"] is not None and 29 < c["timeout"] <= 30 for c in fake.calls(mark)] == \
        [True, True, True]
    mark = fake.mark()
    assert hostctl("events", "-f", fake=fake).returncode == 0
    assert hostctl("logs", "-f", "web-1", fake=fake).returncode == 0
    assert hostctl("top", "-n", "1", fake=fake).returncode == 0
    assert [c["timeout"] for c in fake.calls(mark)] == [None, None, None]


def test_events_follow_outlasts_the_timeout_and_ends_with_the_stream(fake):
    # Silence longer than --timeout: a follow waits (issue 18), then hostd ends the stream.
    r = hostctl("--timeout", "1", "events", "-f", "--since", "1", fake=fake)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[0] for l in lines] == ["2", "3", "4"], r.stdout
    assert lines[1].split()[2:5] == ["web-1", "state", "up"]
    assert lines[2].split()[2:] == ["web-1", "state", "stopping", "stopping"]
    assert r.elapsed >= FOLLOW_DELAY
    assert fake.calls(method="SubscribeEvents")[-1]["request"] == {"since": "1", "follow": True}


def test_logs_follow(fake):
    r = hostctl("--timeout", "1", "logs", "-f", "-n", "5", "web-1", fake=fake)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and r.elapsed >= FOLLOW_DELAY
    assert lines[0].endswith(" heroku[web.1]: Starting process with command `bundle exec puma`")
    assert lines[2].endswith(" app[web.1]: GET / 200")
    assert fake.calls(method="Logs")[-1]["request"] == {"id": "web-1", "lines": 5, "follow": True}
    r = hostctl("logs", "nope", fake=fake)
    assert r.returncode == 1 and "NOT_FOUND: dyno 'nope' not found" in r.stderr


def test_top_refreshes_then_cancels(fake):
    r = hostctl("top", "--interval", "1", "-n", "2", fake=fake)
    assert r.returncode == 0, r.stderr
    blocks = r.stdout.strip().split("\n\n")
    assert len(blocks) == 4, r.stdout
    assert blocks[0].startswith("fake-host: 1 dynos, load 0.50 0.25 0.12")
    row = blocks[3].splitlines()[1].split()
    assert row[:3] == ["web-1", "web.1", "up"] and row[6] == "25.0%"
    # the fake's CPU time grows half as fast as its clock
    assert row[3].endswith("%") and 40 < float(row[3][:-1]) < 60, row
    assert fake.calls(method="SubscribeMetrics")[-1]["request"] == {"interval_seconds": 1}
    r = hostctl("--json", "top", "-n", "1", fake=fake)
    b = json.loads(r.stdout)
    assert b["dynos"][0]["state"] == "up" and b["host"]["hostname"] == "fake-host"


def test_exec_output_input_and_exit_status(fake):
    r = hostctl("exec", "web-1", "--", "sh", "-c", "exit 7", fake=fake)
    assert (r.returncode, r.stdout, r.stderr) == (7, "", "")
    r = hostctl("exec", "web-1", "echo", "-n", "a", "b", fake=fake)
    assert (r.returncode, r.stdout) == (0, "-n a b\n"), r.stderr
    # -i: standard input goes to the process, then its end
    big = "".join(f"line {i}\n" for i in range(20000))  # 200 KB: more than a window
    mark = fake.mark()
    r = hostctl("exec", "-i", "web-1", "cat", fake=fake, input=big)
    assert r.returncode == 0 and r.stdout == big, r.stderr
    calls = fake.calls(mark)
    assert calls[0]["request"] == {"start": {"id": "web-1", "argv": ["cat"]}}
    assert calls[-1]["request"] == {"input": {"eof": True}}
    # without -i its input is empty at once
    mark = fake.mark()
    r = hostctl("exec", "web-1", "cat", fake=fake, input="ignored")
    assert (r.returncode, r.stdout) == (0, "")
    assert [c["request"] for c in fake.calls(mark)][1:] == [{"input": {"eof": True}}]


def test_exec_refusals(fake):
    r = hostctl("exec", "nope", "true", fake=fake)
    assert (r.returncode, r.stderr) == (1, "hostctl: exec nope: NOT_FOUND: dyno 'nope' not found\n")
    r = hostctl("exec", "web-1", "refuse", fake=fake)
    assert r.returncode == 1
    assert r.stderr == "hostctl: exec web-1: FAILED_PRECONDITION: refuse: no such program\n"
    r = hostctl("exec", "web-1", fake=fake)
    assert r.returncode == 2 and "missing COMMAND" in r.stderr


def test_exec_terminal_size_and_a_resize_reach_hostd(fake):
    mark = fake.mark()
    pid, master = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 90, 0, 0))
            os.execve(HOSTCTL, [HOSTCTL, "--socket", fake.socket, "exec", "-it", "web-1", "size"],
                      dict(os.environ, TERM="vt100"))
        finally:
            os._exit(127)
    out = b""

    def read_until(needle, timeout=20):
        nonlocal out
        deadline = time.monotonic() + timeout
        while needle not in out:
            assert time.monotonic() < deadline, out
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break

    try:
        read_until(b"size 90x20 tty=True term=vt100")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        read_until(b"resize 111x33")
        os.write(master, b"q")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5, (status, out)
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    inputs = [c["request"]["input"] for c in fake.calls(mark, "Exec.input")]
    assert {"columns": 111, "rows": 33} in inputs, inputs
    start = fake.calls(mark, "Exec")[0]["request"]["start"]
    assert start == {"id": "web-1", "argv": ["size"], "tty": True, "tty_columns": 90,
                     "tty_rows": 20, "term": "vt100"}


def test_run_starts_a_one_off_and_attaches(fake):
    mark = fake.mark()
    r = hostctl("run", "-i", "--id", "run-t", "--", "bash", fake=fake, input="hello\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "attached\nhello\n"
    assert "Running `bash` attached to terminal... up, run." in r.stderr
    spec = fake.calls(mark, "Start")[0]["request"]["spec"]
    assert spec["type"] == "DYNO_TYPE_ONE_OFF" and spec["tty"] is True
    assert (spec["tty_columns"], spec["tty_rows"]) == (80, 24)
    assert fake.calls(mark, "Attach")[0]["request"] == {"start": {"id": "run-t"}}


def test_images(fake, tmp_path):
    r = hostctl("images", "ls", fake=fake)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[:4] == ["1a2b3c4d5e6f", "stack", "1M", "1"]
    mark = fake.mark()
    r = hostctl("images", "import", "stack.tar.gz", "--sha256", DIGEST, "--kind", "stack",
                fake=fake)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[:2] == ["1a2b3c4d5e6f", "stack"]
    # progress, one line a report when not on a terminal
    assert r.stderr.splitlines() == [f"import 1a2b3c4d5e6f: {x} of 300.0K"
                                     for x in ("0B", "100.0K", "200.0K", "300.0K")]
    call = fake.calls(mark, "ImportImage")[0]
    assert call["timeout"] is None  # --timeout is per report, not the whole import
    assert call["request"] == {"source": os.path.join(os.getcwd(), "stack.tar.gz"),
                               "sha256": DIGEST, "kind": "IMAGE_KIND_STACK"}
    r = hostctl("--json", "images", "import", "/x.tgz", "--sha256", DIGEST, "--kind", "slug",
                fake=fake)
    assert json.loads(r.stdout)["kind"] == "slug"
    r = hostctl("images", "import", "/x.tgz", "--sha256", "ab" * 32, "--kind", "slug",
                fake=fake)
    assert r.returncode == 1 and "INVALID_ARGUMENT: sha256: the tarball's is" in r.stderr
    assert r.stdout == ""
    r = hostctl("--json", "images", "gc", "--budget", "0", fake=fake)
    assert json.loads(r.stdout) == {"removed": ["ab" * 32], "freed_bytes": 3 << 20}
    assert fake.calls(method="PruneImages")[-1]["request"] == {"budget_bytes": "0"}
    r = hostctl("--json", "images", "rm", "cd" * 32, fake=fake)
    assert json.loads(r.stdout) == {"removed": ["cd" * 32]}


def test_drain_undrain_version_host(fake):
    mark = fake.mark()
    r = hostctl("drain", "--deadline", "60", fake=fake)
    assert r.stdout == "draining: no new dynos; the running ones stop in 60 s\n", r.stderr
    assert "draining:             yes" in hostctl("host", fake=fake).stdout
    r = hostctl("start", "--id", "refused", "--", "true", fake=fake)
    assert r.returncode == 1 and "FAILED_PRECONDITION: the host is draining" in r.stderr
    assert hostctl("undrain", fake=fake).stdout == "undrained: new dynos are taken\n"
    assert fake.calls(mark, "Drain")[0]["request"] == {"deadline_seconds": 60}
    r = hostctl("version", fake=fake)
    assert r.stdout.splitlines()[1] == "hostd 0.1.0-fake"


def test_socket_from_the_environment(fake):
    r = hostctl("ps", env={"HOSTCTL_SOCKET": fake.socket})
    assert r.returncode == 0 and "web-1" in r.stdout, r.stderr


# -- keepalive ---------------------------------------------------------------------------------


def test_a_follow_pings_a_quiet_hostd_and_carries_on(folder):
    f = Fake(tempfile.mkdtemp(dir=folder), follow_delay=3)
    try:
        r = hostctl("--timeout", "1", "events", "-f", "--since", "3", fake=f,
                    env={"HOSTCTL_KEEPALIVE": "1"})
        assert r.returncode == 0, r.stderr
        assert [l.split()[0] for l in r.stdout.splitlines()] == ["4"]
    finally:
        f.stop()


def test_a_follow_gives_up_on_a_hostd_that_does_not_answer_pings(folder):
    f = Fake(tempfile.mkdtemp(dir=folder), follow_delay=60)
    p = subprocess.Popen([HOSTCTL, "--socket", f.socket, "events", "-f"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, HOSTCTL_KEEPALIVE="1"))
    try:
        assert p.stdout.readline().startswith("1 ")
        f.proc.send_signal(signal.SIGSTOP)  # alive, connected, and silent
        t = time.monotonic()
        out, err = p.communicate(timeout=20)
        assert p.returncode == 3, err
        assert "hostd did not answer a ping within 1 s" in err, err
        assert time.monotonic() - t < 5
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        f.stop()


# -- TLS ---------------------------------------------------------------------------------------


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


class Pki:
    """A CA, hostd's certificate for 127.0.0.1, a client's, and a stranger's from another CA."""

    def __init__(self, folder):
        self.dir = folder
        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "30",
                    "-subj", f"/CN={ca}", cwd=folder)
        self.ca = os.path.join(folder, "ca.pem")
        self.other_ca = os.path.join(folder, "other-ca.pem")
        self.server = self.issue("server", "hostd-test", "ca",
                                 "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self.client = self.issue("client", "control-plane", "ca", "extendedKeyUsage=clientAuth\n")
        self.stranger = self.issue("stranger", "control-plane", "other-ca",
                                   "extendedKeyUsage=clientAuth\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"

    def issue(self, name, cn, ca, ext):
        with open(os.path.join(self.dir, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile",
                f"{name}.ext", cwd=self.dir)
        return os.path.join(self.dir, f"{name}.pem"), os.path.join(self.dir, f"{name}.key")


@pytest.fixture(scope="module")
def pki(folder):
    d = os.path.join(folder, "pki")
    os.makedirs(d)
    return Pki(d)


@pytest.fixture(scope="module")
def tls_fake(folder, pki):
    d = os.path.join(folder, "tls")
    os.makedirs(d)
    f = Fake(d, tls=pki)
    yield f
    f.stop()


def hostctl_tls(pki, *args, cert=None, ca=None, addr=None, **kw):
    cert = cert or pki.client
    return hostctl("--host", addr or pki.addr, "--cert", cert[0], "--key", cert[1],
                   "--ca", ca or pki.ca, *args, **kw)


def test_tls_with_a_good_certificate(tls_fake, pki):
    r = hostctl_tls(pki, "ps")
    assert r.returncode == 0, r.stderr
    assert any(l.split()[:5] == ["web-1", "web.1", "web", "standard-1x", "up"]
               for l in r.stdout.splitlines()), r.stdout
    env = {"HOSTCTL_HOST": pki.addr, "HOSTCTL_CERT": pki.client[0], "HOSTCTL_KEY": pki.client[1],
           "HOSTCTL_CA": pki.ca}
    r = hostctl("--json", "inspect", "web-1", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "up", r.stderr
    # the grpc-timeout crosses TLS too
    assert 29 < tls_fake.calls(method="GetDyno")[-1]["timeout"] <= 30
    r = hostctl_tls(pki, "events")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, r.stderr
    r = hostctl_tls(pki, "exec", "web-1", "--", "echo", "hello", "over", "tls")
    assert (r.returncode, r.stdout) == (0, "hello over tls\n"), r.stderr
    r = hostctl_tls(pki, "exec", "-i", "web-1", "cat", input="x" * 100000)
    assert (r.returncode, len(r.stdout)) == (0, 100000), r.stderr
    r = hostctl_tls(pki, "inspect", "nope")
    assert (r.returncode, r.stderr) == (1, "hostctl: inspect nope: NOT_FOUND: dyno 'nope' not found\n")


def test_tls_server_certificate_not_trusted(tls_fake, pki):
    r = hostctl_tls(pki, "ps", ca=pki.other_ca)
    assert (r.returncode, r.stdout) == (3, ""), r.stderr
    assert f"TLS {pki.addr}: server certificate not trusted" in r.stderr
    assert pki.other_ca in r.stderr
    # the right CA, but a name hostd's certificate does not carry
    r = hostctl_tls(pki, "ps", addr=f"localhost:{pki.port}")
    assert r.returncode == 3 and "server certificate not trusted: hostname mismatch" in r.stderr


def test_tls_client_certificate_refused(tls_fake, pki):
    mark = tls_fake.mark()
    r = hostctl_tls(pki, "ps", cert=pki.stranger)
    assert (r.returncode, r.stdout) == (3, ""), r.stderr
    # grpcio closes without a TLS alert: hostctl says what it can
    assert r.stderr.startswith("hostctl: ps: hostd closed the TLS connection before it said "
                               "anything (did it refuse this client's certificate?"), r.stderr
    assert tls_fake.calls(mark) == []


def test_tls_a_refusal_with_an_alert_is_named(pki, folder):
    """A server that refuses the client's certificate with an alert, as hostd does."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(*pki.server)
    ctx.load_verify_locations(pki.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    with Listener(tls=ctx) as l:
        r = hostctl_tls(pki, "ps", cert=pki.stranger, addr=l.addr)
    assert r.returncode == 3, r.stderr
    assert "hostctl: ps: hostd refused this client over TLS: tlsv1 alert unknown ca" in r.stderr


# -- not HTTP/2 ----------------------------------------------------------------------------------


class Listener:
    """A server that does not speak gRPC: on a Unix socket (path) or TLS (addr). It answers
    each connection with reply (or nothing), then closes it (or holds it open)."""

    def __init__(self, path=None, tls=None, reply=b"", hold=False):
        self.tls, self.reply, self.hold = tls, reply, hold
        if path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(path)
            self.addr = path
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(4)
        self.held = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            try:
                if self.tls:
                    s = self.tls.wrap_socket(s, server_side=True)
                s.settimeout(2)
                try:
                    s.recv(4096)
                    if self.reply:
                        s.sendall(self.reply)
                        s.recv(4096)
                except (OSError, ssl.SSLError):
                    pass
            except (OSError, ssl.SSLError):
                pass
            if self.hold:
                self.held.append(s)
            else:
                s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()
        for s in self.held:
            s.close()


def test_a_unix_socket_that_does_not_speak_h2(tmp_path):
    path = str(tmp_path / "http1.sock")
    with Listener(path=path, reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"):
        r = hostctl("--socket", path, "ps")
    assert (r.returncode, r.stdout) == (3, ""), r.stderr
    assert r.stderr == (f'hostctl: ps: {path} does not speak gRPC: its first bytes are not '
                        f'HTTP/2: "HTTP/1.1 "; is it hostd\'s API socket?\n')
    # hostd before gRPC: a framed Response (a varint length, then protobuf)
    path = str(tmp_path / "framed.sock")
    with Listener(path=path, reply=b"\x05\x12\x03\x08\x03\x00"):
        r = hostctl("--socket", path, "ps")
    assert r.returncode == 3, r.stderr
    assert r.stderr == (f'hostctl: ps: {path} does not speak gRPC: it sent '
                        f'"\\x05\\x12\\x03\\x08\\x03\\x00" and closed the connection; is it '
                        f'hostd\'s API socket?\n')
    # one that closes at once
    path = str(tmp_path / "mute.sock")
    with Listener(path=path):
        r = hostctl("--socket", path, "ps")
    assert (r.returncode, r.stderr) == (3, "hostctl: ps: hostd closed the connection\n")
    # one that reads and says nothing: the deadline
    path = str(tmp_path / "silent.sock")
    with Listener(path=path, hold=True):
        r = hostctl("--socket", path, "--timeout", "1", "ps")
    assert (r.returncode, r.stderr) == (3, "hostctl: ps: no reply from hostd within 1 s\n")


def test_a_tls_listener_that_does_not_choose_h2(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki.server)
    ctx.set_alpn_protocols(["http/1.1"])
    with Listener(tls=ctx) as l:
        r = hostctl_tls(pki, "ps", addr=l.addr)
    assert (r.returncode, r.stdout) == (3, ""), r.stderr
    assert (f"hostctl: TLS {l.addr}: the server chose no protocol in ALPN where h2 (HTTP/2, "
            "for gRPC) was offered") in r.stderr, r.stderr


def test_no_hostd_at_all(tmp_path):
    r = hostctl("--socket", str(tmp_path / "nothing.sock"), "ps")
    assert r.returncode == 3 and "nothing.sock" in r.stderr and "is hostd running?" in r.stderr


# -- what hostctl says about itself ---------------------------------------------------------


def test_help_and_man_page_name_the_transport():
    r = hostctl("--help")
    assert r.returncode == 0 and "gRPC" in r.stdout
    for env in ("HOSTCTL_SOCKET", "HOSTCTL_HOST", "HOSTCTL_KEEPALIVE"):
        assert env in r.stdout
    man = open(os.path.join(HERE, "..", "..", "man", "hostctl.1")).read()
    assert "gRPC" in man and "HOSTCTL_KEEPALIVE" in man and "HOSTCTL_CA" in man
