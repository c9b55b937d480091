"""Syslog drains (spec.log_drains): every line of a dyno goes to each drain as RFC 5424 over TCP
or TLS, framed by octet counting (RFC 6587), and a drain that is slow, stalled or gone never
holds up the dyno or hostd: its oldest lines are dropped, counted, and told (L10).

The receiving end is a real rsyslogd (Debian's package), run by the test as its own process
with a private configuration and work folder, listening on a free loopback port and writing
what it parsed of each message as JSON; or, where a test must control reading, a plain Python
socket that parses the frames itself.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q -s tests/integration/test_drains.py
"""

import calendar
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

from conftest import HOSTD_BIN
from hostd_client import Code, pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: syslog drains: framing, TLS, back-off, overflow
    pytest.mark.cgroup_independent,
]

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
    ts = calendar.timegm(time.strptime(m["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
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
    c.start(drained(make_spec, "dr-1", [f"syslog://127.0.0.1:{rs.port}"], name="web.1",
                    app="shop", command=cmd))
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
    last = "State changed from stopping to down"
    msgs = rs.wait_for(lambda ms: any(m["msg"] == last for m in ms[-3:]),
                       what="the dyno's last line")
    assert any(m["msg"].startswith("Process exited with status") for m in msgs)
    assert len(c.get("dr-1").drains) == 0


def test_drains_follow_a_dyno_across_a_restart_of_hostd(hostd, make_spec, rsyslog):
    rs = rsyslog()
    c = hostd.client()
    cmd = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
    c.start(drained(make_spec, "dr-re", [f"syslog://127.0.0.1:{rs.port}"], name="worker.2",
                    app="shop", command=cmd))
    rs.wait_for(lambda ms: any(m["msg"] == "tick-3" for m in ms), what="tick-3")
    hostd.restart()
    c = hostd.client()
    before = len(rs.messages())
    # The re-adopted dyno's drain is opened again: new ticks arrive on a new connection.
    msgs = rs.wait_for(
        lambda ms: len([m for m in ms[before:] if m["msg"].startswith("tick-")]) >= 5,
        what="ticks after the restart of hostd")
    for m in msgs_of(msgs, "app"):
        check_fields(m, "app", time.time() - 60, time.time(), procid="worker.2")
    st = c.get("dr-re").drains[0]
    assert st.connected and st.connects == 1, st
    # Nothing was lost meanwhile: the old hostd wrote what its drain held as it stopped, the
    # dyno's pipe held the ticks while no hostd ran, and they come in order, without a gap.
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
    assert resp.status.code == Code.INVALID_ARGUMENT, resp
    assert resp.status.message.startswith("spec.log_drains[1]: "), resp.status.message
    assert reason in resp.status.message, resp.status.message
    assert c.list() == []
    hostd.assert_unchanged(before, "a refused drain URL")


def test_drain_count_and_duplicates_are_refused(hostd, make_spec):
    before = hostd.snapshot()
    c = hostd.client()
    urls = [f"syslog://127.0.0.1:{1000 + i}" for i in range(9)]
    resp = c.start(drained(make_spec, "dr-many", urls), check=False)
    assert resp.status.code == Code.INVALID_ARGUMENT
    assert resp.status.message == "spec.log_drains: 9 drains, over the limit of 8"
    resp = c.start(drained(make_spec, "dr-dup", urls[:2] + urls[:1]), check=False)
    assert resp.status.code == Code.INVALID_ARGUMENT
    assert resp.status.message == "spec.log_drains[2]: the same URL as spec.log_drains[0]"
    assert c.list() == []
    hostd.assert_unchanged(before, "refused drain lists")
    # eight are fine
    c.start(drained(make_spec, "dr-eight", urls[:8]))
    assert len(c.get("dr-eight").drains) == 8
    c.stop("dr-eight", grace=1)


# -- TLS -------------------------------------------------------------------------------------------


def make_certs(folder, san):
    """A test CA and a server certificate for san (openssl's subjectAltName syntax), made with
    the openssl command. Returns {ca, cert, key} paths."""
    os.makedirs(folder, exist_ok=True)
    p = {k: os.path.join(folder, v) for k, v in
         (("ca", "ca.pem"), ("ca_key", "ca.key"), ("cert", "server.pem"), ("key", "server.key"),
          ("csr", "server.csr"), ("ext", "server.ext"))}
    def run(*args):
        r = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        assert r.returncode == 0, r.stdout
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2",
        "-subj", "/CN=hostd drain test CA")
    run("req", *ec, "-keyout", p["key"], "-out", p["csr"], "-subj", "/CN=drain test server")
    with open(p["ext"], "w") as f:
        f.write(f"subjectAltName={san}\n")
    run("x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca_key"],
        "-CAcreateserial", "-out", p["cert"], "-days", "2", "-extfile", p["ext"])
    return p


def test_tls_drain_verified_by_name(hostd_factory, make_spec, rsyslog, tmp_path):
    certs = make_certs(str(tmp_path / "pki"), "DNS:localhost")
    rs = rsyslog(tls=certs)
    h = hostd_factory(drain_ca_file=certs["ca"])
    c = h.client()
    good = f"syslog+tls://localhost:{rs.port}"
    # The certificate names localhost only: the same server by address must be refused.
    wrong = f"syslog+tls://127.0.0.1:{rs.port}"
    t0 = time.time()
    c.start(drained(make_spec, "dr-tls", [good, wrong], name="web.1", app="shop",
                    command="echo over-tls-✓; sleep 1000"))
    msgs = rs.wait_for(lambda ms: any(m["msg"] == "over-tls-✓" for m in ms),
                       what="the line over TLS")
    app = msgs_of(msgs, "app")
    assert [m["msg"] for m in app] == ["over-tls-✓"]
    check_fields(app[0], "app", t0, time.time())
    deadline = time.monotonic() + 10
    while True:
        st = {s.url: s for s in c.get("dr-tls").drains}
        if st[wrong].failures >= 1:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert st[good].connected and st[good].connects == 1 and st[good].sent >= 1, st[good]
    assert not st[wrong].connected and st[wrong].connects == 0 and st[wrong].sent == 0
    assert "certificate verification" in st[wrong].last_error, st[wrong]
    assert "mismatch" in st[wrong].last_error, st[wrong]
    # Each line went over TLS once: only the verified drain delivered.
    assert len(msgs) == st[good].sent
    c.stop("dr-tls", grace=1)


def test_tls_drain_refuses_an_unknown_ca(hostd, make_spec, rsyslog, tmp_path):
    """Without drain-ca-file, the system's store: a test CA is not in it."""
    certs = make_certs(str(tmp_path / "pki"), "DNS:localhost")
    rs = rsyslog(tls=certs)
    c = hostd.client()
    c.start(drained(make_spec, "dr-tls-ca", [f"syslog+tls://localhost:{rs.port}"],
                    command="echo secret; sleep 1000"))
    deadline = time.monotonic() + 10
    while c.get("dr-tls-ca").drains[0].failures == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    st = c.get("dr-tls-ca").drains[0]
    assert not st.connected and st.sent == 0
    assert "certificate verification" in st.last_error, st
    time.sleep(0.5)
    assert rs.messages() == []
    c.stop("dr-tls-ca", grace=1)


def test_an_unusable_drain_ca_file_stops_hostd_with_its_name(hostd_factory, tmp_path):
    missing, garbage = str(tmp_path / "missing.pem"), str(tmp_path / "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    for path, why in ((missing, "cannot be read: No such file or directory"),
                      (garbage, "no PEM certificate in it")):
        h = hostd_factory(start=False, drain_ca_file=path)
        r = subprocess.run([HOSTD_BIN, "--config", h.config_path], capture_output=True,
                           text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert r.returncode == 1
        assert f"drain-ca-file '{path}': {why}" in r.stderr, r.stderr
        assert not os.path.exists(h.socket_path) and not os.path.exists(h.run_dir)
        assert not h.cgroup_dirs(), "hostd made cgroups before it stopped"


def tls_server(certs, max_version=None):
    """A TLS listener of the test's (Python's ssl): (listening socket, context, SNI names)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])
    if max_version is not None:
        import warnings
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the point of the test
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = max_version
    names = []
    ctx.sni_callback = lambda sslobj, name, c: names.append(name)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    return lst, ctx, names


def test_tls_drain_sends_sni_and_needs_tls_1_2(hostd_factory, make_spec, tmp_path):
    import ssl
    certs = make_certs(str(tmp_path / "pki"), "DNS:localhost")
    h = hostd_factory(drain_ca_file=certs["ca"])
    c = h.client()
    lst, ctx, names = tls_server(certs)
    c.start(drained(make_spec, "dr-sni", [f"syslog+tls://localhost:{lst.getsockname()[1]}"],
                    command="echo sni-checked; sleep 1000"))
    raw, _ = lst.accept()
    conn = ctx.wrap_socket(raw, server_side=True)
    assert names == ["localhost"], names
    assert conn.version() in ("TLSv1.2", "TLSv1.3"), conn.version()
    data = b""
    deadline = time.monotonic() + 10
    while b"sni-checked" not in data:
        assert time.monotonic() < deadline, data
        data += conn.recv(65536)
    conn.close()
    lst.close()
    c.stop("dr-sni", grace=1)

    # A server that offers TLS 1.1 at most is refused: no line goes out.
    lst, ctx, names = tls_server(certs, max_version=ssl.TLSVersion.TLSv1_1)
    c.start(drained(make_spec, "dr-old", [f"syslog+tls://localhost:{lst.getsockname()[1]}"],
                    command="echo never-sent; sleep 1000"))
    raw, _ = lst.accept()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_side=True)
    deadline = time.monotonic() + 10
    while c.get("dr-old").drains[0].failures == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    st = c.get("dr-old").drains[0]
    assert not st.connected and st.sent == 0 and st.connects == 0, st
    assert st.last_error.startswith("TLS handshake: "), st
    print(f"\nTLS 1.1 server: {st.last_error}")
    raw.close()
    lst.close()
    c.stop("dr-old", grace=1)


# -- a stalled drain -----------------------------------------------------------------------------


def read_frames(sock, buf):
    """Read what the socket has now (non-blocking) and split octet-counted frames off buf.
    Returns the messages (bytes) complete so far."""
    while True:
        try:
            data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not data:
            break
        buf += data
    out = []
    while True:
        sp = buf.find(b" ")
        if sp < 0:
            break
        n = int(buf[:sp])
        if len(buf) < sp + 1 + n:
            break
        out.append(bytes(buf[sp + 1: sp + 1 + n]))
        del buf[: sp + 1 + n]
    return out


def frame_msg(frame):
    """(APP-NAME, MSG) of an RFC 5424 message as a drain writes it."""
    parts = frame.split(b" ", 7)
    assert parts[0] == b"<190>1" and parts[5:7] == [b"-", b"-"], frame[:120]
    return parts[3].decode(), parts[7].decode("utf-8", "replace")


def percentile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def test_a_stalled_drain_holds_nothing_up_and_counts_what_it_dropped(hostd_factory, make_spec):
    # A listener that accepts and does not read, with small buffers so that it stalls soon.
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    n_lines = 300000
    h = hostd_factory()
    c = h.client()
    pad = "x" * 150
    cmd = f"seq 1 {n_lines} | sed 's/.*/flood-& {pad}/'; echo flood-done; sleep 1000"
    c.start(drained(make_spec, "dr-stall", [f"syslog://127.0.0.1:{port}"], command=cmd))
    lst.settimeout(10)
    conn, _ = lst.accept()
    # Meanwhile hostd answers, and the dyno's output keeps growing in hostd's log.
    lat, last_seen, grew = [], 0, 0
    deadline = time.monotonic() + 120
    while True:
        t = time.monotonic()
        d = c.get("dr-stall")
        lat.append(time.monotonic() - t)
        t = time.monotonic()
        c.list()
        lat.append(time.monotonic() - t)
        last = c.log_texts("dr-stall", lines=1)
        if last and last[0].startswith("flood-"):
            k = last[0].split()[0]
            if k == "flood-done":
                break
            if int(k[6:]) > last_seen:
                grew += 1
                last_seen = int(k[6:])
        assert d.state == pb.DYNO_STATE_UP, d
        assert time.monotonic() < deadline, f"the dyno did not finish its output ({last})"
        time.sleep(0.005)
    st = c.get("dr-stall").drains[0]
    print(f"\nstalled drain: {len(lat)} RPCs (Get, List) during the flood: "
          f"p50 {percentile(lat, 50) * 1000:.2f} ms, p99 {percentile(lat, 99) * 1000:.2f} ms, "
          f"max {max(lat) * 1000:.2f} ms; drain: sent {st.sent}, dropped {st.dropped}, "
          f"buffered {st.buffered}")
    assert percentile(lat, 99) < 0.5 and max(lat) < 2.0, "hostd was held up by the stalled drain"
    assert grew >= 2, "the dyno's output did not grow while the drain was stalled"
    assert st.connected and st.dropped > 0 and st.buffered <= 1024 + 501, st

    # The listener reads now: everything left comes, the L10 notice first among what was held.
    buf, frames = bytearray(), []
    deadline = time.monotonic() + 60
    while True:
        frames += read_frames(conn, buf)
        st = c.get("dr-stall").drains[0]
        done = any(frame_msg(f)[1].startswith("flood-done") for f in frames)
        if done and st.buffered == 0 and not buf:
            frames += read_frames(conn, buf)
            break
        assert time.monotonic() < deadline, (len(frames), st)
        time.sleep(0.05)
    msgs = [frame_msg(f) for f in frames]
    l10 = [(app, m) for app, m in msgs if L10.match(m)]
    assert l10 and all(app == "heroku" for app, _ in l10), l10
    dropped = sum(int(L10.match(m).group(1)) for _, m in l10)
    received = [(app, m) for app, m in msgs if not L10.match(m)]

    # What the dyno logged: its n_lines + 1 lines (seq's, then flood-done: none split, none
    # lost by hostd), and hostd's own lines for it, which hostd's log repeats, the L10 notices
    # aside (a drain does not get its own notice as a line: it sends it first instead).
    d = c.get("dr-stall")
    assert d.log_dropped == 0
    platform = [l for l in h.log_text().splitlines()
                if "dyno dr-stall (worker.1): " in l and "Error L10" not in l]
    logged = n_lines + 1 + len(platform)
    floods = [int(m.split()[0][6:]) for _, m in received if m.startswith("flood-") and
              m.split()[0] != "flood-done"]
    print(f"stalled drain: dyno logged {logged} lines, drain received {len(received)}, "
          f"L10 notices {len(l10)} counting {dropped} dropped")
    assert len(received) + dropped == logged
    assert st.sent == len(received) and st.dropped == dropped, st
    assert floods == sorted(floods) and len(set(floods)) == len(floods), "reordered or twice"
    # The same notices are in the dyno's own log, as heroku lines (hostd's log repeats them all;
    # the last is recent enough to be in the dyno's ring).
    own = [l.split("dyno dr-stall (worker.1): ", 1)[1] for l in h.log_text().splitlines()
           if "dyno dr-stall (worker.1): Error L10" in l]
    assert own == [m for _, m in l10]
    recent = [l for l in c.logs("dr-stall", lines=100).lines if l.text.startswith(b"Error L10")]
    assert recent and recent[-1].source == "heroku" and recent[-1].text.decode() == l10[-1][1]
    conn.close()
    lst.close()
    c.stop("dr-stall", grace=1)


# -- a dead drain --------------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_dead_drain_is_retried_with_backoff(hostd_factory, make_spec):
    port = free_port()
    backoff_max = 4
    h = hostd_factory(drain_backoff_max=backoff_max)
    c = h.client()
    c.start(drained(make_spec, "dr-dead", [f"syslog://127.0.0.1:{port}"],
                    command="i=0; while true; do echo beat-$i; i=$((i+1)); sleep 0.2; done"))
    time.sleep(6)
    d = c.get("dr-dead")
    assert d.state == pb.DYNO_STATE_UP
    assert any(t.startswith("beat-2") for t in c.log_texts("dr-dead")), "the dyno is held up"
    st = d.drains[0]
    assert not st.connected and st.connects == 0, st
    assert "Connection refused" in st.last_error, st
    # Back-off, not a busy loop: 1 s doubling, each wait a random point of its second half.
    waits = [float(w) for w in re.findall(
        rf"drain syslog://127.0.0.1:{port}: connect: Connection refused; connecting again in "
        r"([0-9.]+) s", h.log_text())]
    print(f"\ndead drain: {st.failures} failed attempts in 6 s, waits {waits}")
    # the log is read after the Get: an attempt may have failed in between
    assert 2 <= st.failures <= 6 and st.failures <= len(waits) <= st.failures + 1, (st, waits)
    for i, w in enumerate(waits):
        bound = min(2 ** i, backoff_max)
        assert bound / 2 - 0.05 <= w <= bound + 0.05, (i, w, waits)

    # A listener comes up: the drain connects within the back-off bound, and what the dyno
    # logged meanwhile (up to the buffer) arrives, oldest first.
    lst = socket.socket()
    lst.bind(("127.0.0.1", port))
    lst.listen(4)
    lst.settimeout(backoff_max + 2)
    t = time.monotonic()
    conn, _ = lst.accept()
    waited = time.monotonic() - t
    print(f"dead drain: connected {waited:.2f} s after the listener came up "
          f"(bound {backoff_max} s)")
    assert waited <= backoff_max + 0.5
    buf, frames = bytearray(), []
    deadline = time.monotonic() + 5
    while not any(frame_msg(f)[1] == "beat-20" for f in frames):
        assert time.monotonic() < deadline, [frame_msg(f) for f in frames][:5]
        frames += read_frames(conn, buf)
        time.sleep(0.05)
    msgs = [frame_msg(f) for f in frames]
    assert msgs[0][0] == "heroku" and msgs[0][1].startswith("Starting process"), msgs[:3]
    beats = [int(m[5:]) for app, m in msgs if app == "app"]
    assert beats[: beats.index(20) + 1] == list(range(21))
    st = c.get("dr-dead").drains[0]
    assert st.connected and st.connects == 1 and st.dropped == 0, st
    conn.close()
    lst.close()
    c.stop("dr-dead", grace=1)


def test_a_drain_whose_server_closes_connects_again(hostd, make_spec):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    port = lst.getsockname()[1]
    c = hostd.client()
    c.start(drained(make_spec, "dr-close", [f"syslog://127.0.0.1:{port}"],
                    command="i=0; while true; do echo beat-$i; i=$((i+1)); sleep 0.2; done"))

    def read_until(conn, beat, timeout=10):
        buf, msgs = bytearray(), []
        deadline = time.monotonic() + timeout
        while not any(m == f"beat-{beat}" for _, m in msgs):
            assert time.monotonic() < deadline, msgs[-5:]
            msgs += [frame_msg(f) for f in read_frames(conn, buf)]
            time.sleep(0.02)
        return [int(m[5:]) for app, m in msgs if app == "app"]

    conn, _ = lst.accept()
    first = read_until(conn, 5)
    conn.close()  # everything read: a plain close (FIN), as a server restarting would
    t = time.monotonic()
    conn, _ = lst.accept()
    # The connection lasted under 10 s: the back-off goes on from its first step (0.5..1 s).
    assert time.monotonic() - t <= 1.5
    second = read_until(conn, first[-1] + 10)
    st = c.get("dr-close").drains[0]
    assert st.connected and st.connects == 2 and st.failures == 1, st
    assert st.last_error == "", st  # cleared by the new connection; hostd's log tells of it
    assert f"drain syslog://127.0.0.1:{port}: closed by the peer; connecting again in" in \
        hostd.log_text()
    # The lines logged while it was away were kept and came on the new connection, in order.
    beats = first + second
    assert beats == list(range(len(beats))), beats
    conn.close()
    lst.close()
    c.stop("dr-close", grace=1)


def test_hostctl_starts_with_drains_and_shows_their_figures(hostd, rootfs):
    hostctl = os.path.join(os.path.dirname(HOSTD_BIN), "..", "hostctl", "hostctl")
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    url = f"syslog://127.0.0.1:{lst.getsockname()[1]}"
    dead = f"syslog://127.0.0.1:{free_port()}"

    def run(*args):
        return subprocess.run([hostctl, "--socket", hostd.socket_path, *args],
                              capture_output=True, text=True, timeout=60)

    r = run("start", "--id", "dr-ctl", "--name", "worker.1", "--stack", rootfs.stack,
            "--slug", rootfs.slug, "--log-drain", url, "--log-drain", dead,
            "--", "echo via-hostctl; exec sleep 1000")
    assert r.returncode == 0, r.stderr
    conn, _ = lst.accept()
    buf, msgs = bytearray(), []
    deadline = time.monotonic() + 10
    while ("app", "via-hostctl") not in msgs:
        assert time.monotonic() < deadline, msgs
        msgs += [frame_msg(f) for f in read_frames(conn, buf)]
        time.sleep(0.05)
    out = run("inspect", "dr-ctl").stdout
    drains = [l.split(None, 1)[1] for l in out.splitlines() if l.startswith("drain:")]
    assert len(drains) == 2, out
    assert drains[0].startswith(f"{url} connected sent={len(msgs)} dropped=0 buffered=0 "
                                "connects=1 failures=0"), drains[0]
    assert drains[1].startswith(f"{dead} disconnected sent=0 dropped=0 "), drains[1]
    assert "last_error=connect: Connection refused" in drains[1], drains[1]
    r = run("start", "--id", "dr-ctl-bad", "--stack", rootfs.stack, "--log-drain",
            "syslog://nowhere", "--", "true")
    assert r.returncode != 0
    assert "spec.log_drains[0]: 'syslog://nowhere': no port (HOST:PORT)" in r.stderr, r.stderr
    conn.close()
    lst.close()
    assert run("stop", "dr-ctl", "--grace", "1").returncode == 0


def test_a_daily_cycle_keeps_the_drain(hostd_factory, make_spec, rsyslog):
    rs = rsyslog()
    h = hostd_factory(cycle_after="3s", cycle_jitter="0")
    c = h.client()
    c.start(drained(make_spec, "dr-cyc", [f"syslog://127.0.0.1:{rs.port}"],
                    command="echo started-$$; exec sleep 1000"))
    msgs = rs.wait_for(lambda ms: [m["msg"] for m in ms].count("Cycling") >= 1 and
                       len([m for m in ms if m["msg"].startswith("started-")]) >= 2,
                       timeout=30, what="a cycle and the replacement's first line")
    texts = [m["msg"] for m in msgs]
    assert texts.index("Cycling") < max(i for i, t in enumerate(texts) if t.startswith("started-"))
    st = c.get("dr-cyc").drains[0]
    assert st.connected and st.connects == 1 and st.dropped == 0, st
    c.stop("dr-cyc", grace=1)
