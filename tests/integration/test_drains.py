"""Syslog drains (spec.log_drains): every line of a dyno goes to each drain as RFC 5424 over TCP
or TLS, framed by octet counting (RFC 6587), and a drain that is slow, stalled or gone never
holds up the dyno or hostd: its oldest lines are dropped, counted, and told (L10).

The receiving end is a real rsyslogd (Debian's package), run by the test as its own process
with a private configuration and work folder, listening on a free loopback port and writing
what it parsed of each message as JSON; or, where a test must control reading, a plain Python
socket that parses the frames itself.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q -s tests/integration/test_drains.py
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time

import pytest

from hostd_client import pb

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
L10 = re.compile(r"^Error L10 \(output buffer overflow\): (\d+) messages dropped since (\S+)$")

# What rsyslog parsed of each message, one JSON object a line; raw is the message as received
# (the octet count taken off).
RSYSLOG_TEMPLATE = """
template(name="fields" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timestamp" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}
"""


class Rsyslog:
    """rsyslogd -n with its own configuration, pid file and work folder under folder."""

    def __init__(self, folder, tls=None):
        if not os.access(RSYSLOGD, os.X_OK):
            pytest.skip(f"{RSYSLOGD} not installed (scripts/setup installs rsyslog)")
        self.folder = folder
        work = os.path.join(folder, "work")
        os.makedirs(work, exist_ok=True)
        self.out = os.path.join(folder, "out.jsonl")
        self.port_file = os.path.join(folder, "port")
        self.pid_file = os.path.join(folder, "rsyslogd.pid")
        self.log = os.path.join(folder, "rsyslogd.log")
        conf = os.path.join(folder, "rsyslog.conf")
        glob = f'workDirectory="{work}" maxMessageSize="64k"'
        module = 'module(load="imtcp")'
        if tls:
            glob += (f' DefaultNetstreamDriverCAFile="{tls["ca"]}"'
                     f' DefaultNetstreamDriverCertFile="{tls["cert"]}"'
                     f' DefaultNetstreamDriverKeyFile="{tls["key"]}"')
            module = ('module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1"'
                      ' StreamDriver.AuthMode="anon")')
        with open(conf, "w") as f:
            f.write(f"global({glob})\n{module}\n{RSYSLOG_TEMPLATE}\n")
            f.write(f'input(type="imtcp" address="127.0.0.1" port="0" '
                    f'listenPortFileName="{self.port_file}" ruleset="drain")\n')
            f.write(f'ruleset(name="drain") {{ action(type="omfile" file="{self.out}" '
                    f'template="fields") }}\n')
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", conf, "-i", self.pid_file],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.port_file) and open(self.port_file).read().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"rsyslogd did not start: {open(self.log).read()}")
            time.sleep(0.05)
        self.port = int(open(self.port_file).read())

    def messages(self):
        try:
            with open(self.out, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def wait_for(self, pred, timeout=15.0, what="messages"):
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if pred(msgs):
                return msgs
            assert time.monotonic() < deadline, (
                f"rsyslogd did not receive {what} within {timeout} s; it has "
                f"{[m['msg'][:80] for m in msgs][-20:]}; its log: {open(self.log).read()}")
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def rsyslog(tmp_path):
    started = []

    def start(tls=None):
        r = Rsyslog(str(tmp_path / f"rsyslog-{len(started)}"), tls)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def drained(make_spec, dyno_id, drains, **fields):
    """make_spec with spec.log_drains (a repeated field: extended, not assigned)."""
    spec = make_spec(dyno_id, **fields)
    spec.log_drains.extend(drains)
    return spec


def msgs_of(msgs, app=None):
    return [m for m in msgs if app is None or m["app"] == app]


def check_fields(m, app, t0, t1, hostname="shop", procid="web.1"):
    """The RFC 5424 fields a drain must write, as rsyslog parsed them and as they came."""
    assert m["pri"] == "190", m  # local7.info
    assert m["version"] == "1", m
    assert TIMESTAMP.match(m["timestamp"]), m
    ts = time.mktime(time.strptime(m["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert t0 - 2 <= ts <= t1 + 2, (m["timestamp"], t0, t1)
    assert (m["hostname"], m["app"], m["procid"], m["msgid"], m["sd"]) == (
        hostname, app, procid, "-", "-"), m
    assert m["raw"] == (f"<190>1 {m['timestamp']} {hostname} {app} {procid} - - {m['msg']}"), m


# -- rsyslog over TCP --------------------------------------------------------------------------


def test_lines_reach_rsyslog_framed(hostd, make_spec, rsyslog):
    rs = rsyslog()
    c = hostd.client()
    long_line = "L" * 9990 + "0123456789"  # 10000 bytes: the longest line that is not split
    utf8 = "grüße, ✓ 日本語 🚀"
    cmd = (f"echo hello-drain; echo '{utf8}'; printf '%9990s' '' | tr ' ' L; echo 0123456789; "
           f"echo '  spaced  out  '; sleep 1000")
    t0 = time.time()
    c.start(drained(make_spec, "dr-1", [f"syslog://127.0.0.1:{rs.port}"], name="web.1", app="shop", command=cmd))
    msgs = rs.wait_for(lambda ms: any(m["msg"] == "  spaced  out  " for m in ms),
                       what="the dyno's four lines")
    t1 = time.time()
    app = msgs_of(msgs, "app")
    assert [m["msg"] for m in app] == ["hello-drain", utf8, long_line, "  spaced  out  "]
    for m in app:
        check_fields(m, "app", t0, t1)
    assert len(app[2]["msg"].encode()) == 10000
    heroku = msgs_of(msgs, "heroku")
    assert any(m["msg"].startswith("Starting process with command") for m in heroku), heroku
    for m in heroku:
        check_fields(m, "heroku", t0, t1)

    d = c.get("dr-1")
    assert len(d.drains) == 1
    st = d.drains[0]
    assert st.url == f"syslog://127.0.0.1:{rs.port}" and st.connected and st.connects == 1
    assert st.sent == len(msgs) and st.dropped == 0 and st.buffered == 0, st

    # A restart keeps the drain and its connection; the new process's lines follow.
    c.restart("dr-1", grace=1)
    rs.wait_for(lambda ms: [m["msg"] for m in ms].count("hello-drain") == 2,
                what="the restarted dyno's first line")
    assert c.get("dr-1").drains[0].connects == 1

    # The end of the dyno: its last lines still reach the drain, which then closes.
    c.stop("dr-1", grace=1)
    msgs = rs.wait_for(lambda ms: any(m["msg"] == "State changed from stopping to down" for m in ms[-3:]),
                       what="the dyno's last line")
    assert any(m["msg"].startswith("Process exited with status") for m in msgs)
    assert len(c.get("dr-1").drains) == 0


def test_drains_follow_a_dyno_across_a_restart_of_hostd(hostd, make_spec, rsyslog):
    rs = rsyslog()
    c = hostd.client()
    cmd = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
    c.start(drained(make_spec, "dr-re", [f"syslog://127.0.0.1:{rs.port}"], name="worker.2", app="shop", command=cmd))
    rs.wait_for(lambda ms: any(m["msg"] == "tick-3" for m in ms), what="tick-3")
    hostd.restart()
    c = hostd.client()
    before = len(rs.messages())
    # The re-adopted dyno's drain is opened again: new ticks arrive on a new connection.
    msgs = rs.wait_for(lambda ms: len([m for m in ms[before:] if m["msg"].startswith("tick-")]) >= 5,
                       what="ticks after the restart of hostd")
    for m in msgs_of(msgs, "app"):
        check_fields(m, "app", time.time() - 60, time.time(), procid="worker.2")
    st = c.get("dr-re").drains[0]
    assert st.connected and st.connects == 1, st
    # Nothing was lost meanwhile: the pipe held the ticks, which come in order, without a gap.
    ticks = [int(m["msg"][5:]) for m in msgs if m["msg"].startswith("tick-")]
    assert ticks == list(range(len(ticks))), ticks
    c.stop("dr-re", grace=1)


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url,reason", [
    ("http://127.0.0.1:514", "not a syslog:// or syslog+tls:// URL"),
    ("syslog://127.0.0.1", "no port (HOST:PORT)"),
    ("syslog://127.0.0.1:0", "port 0 is not in 1..65535"),
    ("syslog://127.0.0.1:70000", "port 70000 is not in 1..65535"),
    ("syslog://::1:514", "an IPv6 address needs brackets"),
    ("syslog://[::1:514", "'[' without ']' around an IPv6 address"),
    ("syslog://logs.example.com:514/x", "a path, query or fragment is not allowed"),
    ("syslog://under_score:514", "host 'under_score' is not a host name nor an IPv4 address"),
    ("syslog://user@127.0.0.1:514", "a user name or password is not allowed"),
    ("syslog://127.0.0.1:514\n", "a space, a control character or not ASCII"),
    ("syslog://" + "a" * 600 + ":514", "longer than 512 bytes"),
])
def test_bad_drain_urls_are_refused_by_field(hostd, make_spec, url, reason):
    before = hostd.snapshot()
    c = hostd.client()
    resp = c.start(drained(make_spec, "dr-bad", ["syslog://127.0.0.1:514", url]), check=False)
    assert resp.status.code == pb.INVALID_ARGUMENT, resp
    assert resp.status.message.startswith("spec.log_drains[1]: "), resp.status.message
    assert reason in resp.status.message, resp.status.message
    assert c.list() == []
    hostd.assert_unchanged(before, "a refused drain URL")


def test_drain_count_and_duplicates_are_refused(hostd, make_spec):
    before = hostd.snapshot()
    c = hostd.client()
    urls = [f"syslog://127.0.0.1:{1000 + i}" for i in range(9)]
    resp = c.start(drained(make_spec, "dr-many", urls), check=False)
    assert resp.status.code == pb.INVALID_ARGUMENT
    assert resp.status.message == "spec.log_drains: 9 drains, over the limit of 8"
    resp = c.start(drained(make_spec, "dr-dup", urls[:2] + urls[:1]), check=False)
    assert resp.status.code == pb.INVALID_ARGUMENT
    assert resp.status.message == "spec.log_drains[2]: the same URL as spec.log_drains[0]"
    assert c.list() == []
    hostd.assert_unchanged(before, "refused drain lists")
    # eight are fine
    c.start(drained(make_spec, "dr-eight", urls[:8]))
    assert len(c.get("dr-eight").drains) == 8
    c.stop("dr-eight", grace=1)
