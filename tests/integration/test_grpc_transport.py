"""The gRPC transport (hostd/grpc-server.c) from real gRPC clients: python3-grpcio over the
Unix socket and mutual TLS, and, for what grpcio would never send, a raw HTTP/2 client
(python3-h2) or plain bytes.

Each test starts its own tests/grpc-test-server (no hostd, no root but for the read-group
test) with the limits it needs, in a folder of its own. The server reports on stdout what the
owner of a call saw ("cancel METHOD TAG"), so that a test checks the owner was told, and logs
on stderr what hostd would log. At the end of each test the server is stopped with SIGTERM and
must exit 0 with no sanitizer report (an ASan build checks leaks there).

Run: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q --noconftest \
tests/integration/test_grpc_transport.py (or meson test test_grpc_transport)."""

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.path.abspath(os.environ.get("HOSTD_BUILD_DIR", os.path.join(SOURCE_DIR, "build")))
STUBS = [os.path.join(BUILD_DIR, "tests"), os.path.join(BUILD_DIR, "proto")]
sys.path[:0] = STUBS

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

import grpctest_pb2 as tpb  # noqa: E402
import grpctest_pb2_grpc as tgrpc  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
import reflection_v1_pb2  # noqa: E402
import reflection_v1_pb2_grpc  # noqa: E402
import reflection_v1alpha_pb2  # noqa: E402
import reflection_v1alpha_pb2_grpc  # noqa: E402

# not the cgroup v2 tier (whose collection sees this file too): the transport alone
pytestmark = pytest.mark.cgroup_independent

SERVER_BIN = os.path.join(BUILD_DIR, "tests", "grpc-test-server")
SERVICE = "hostd.test.v1.Test"
WAIT = 20.0  # a bound on waits for what must happen, not a measure
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


def wait_for(pred, timeout=WAIT, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """A grpc-test-server in folder, with args; stdout and stderr in files there."""

    def __init__(self, folder, *args, socket_name="s.sock", tls=None, wrap=None):
        self.dir = folder
        self.sock = os.path.join(folder, socket_name)
        self.out_path = os.path.join(folder, f"out-{time.monotonic_ns()}.txt")
        self.err_path = self.out_path.replace("out-", "err-")
        argv = [SERVER_BIN, "--socket", self.sock, *args]
        if tls:
            argv += tls
        if wrap:
            argv = wrap + argv
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.err)
        wait_for(lambda: "ready" in self.stdout() or self.proc.poll() is not None,
                 what="the server's ready")
        assert self.proc.poll() is None, f"server exited:\n{self.log()}"

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def log(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_out(self, text, timeout=WAIT):
        return wait_for(lambda: text in self.stdout(), timeout, f"'{text}' on stdout")

    def wait_log(self, text, timeout=WAIT):
        return wait_for(lambda: text in self.log(), timeout, f"'{text}' in the log:\n{self.log()}")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the server did not stop on SIGTERM:\n{self.log()}")
        self.out.close()
        self.err.close()
        log = self.log()
        for m in SANITIZER_MARKERS:
            assert m not in log, f"sanitizer report:\n{log}"
        assert self.proc.returncode == 0, f"server exit status {self.proc.returncode}:\n{log}"

    def channel(self, **options):
        return grpc.insecure_channel(f"unix:{self.sock}",
                                     options=CHANNEL_OPTIONS + list(options.items()))


@pytest.fixture
def folder():
    d = tempfile.mkdtemp(prefix="test-grpc-")
    os.chmod(d, 0o755)  # a read-group client of another uid reaches the socket in it
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start(folder):
    servers = []

    def start_server(*args, **kw):
        s = Server(folder, *args, **kw)
        servers.append(s)
        return s

    yield start_server
    for s in servers:
        s.stop()


def stub(ch):
    return tgrpc.TestStub(ch)


def echo(text="hi", **kw):
    return tpb.EchoRequest(text=text, **kw)


# -- a raw HTTP/2 client, for what grpcio never sends ------------------------------------------


def grpc_frame(msg, compressed=False):
    body = msg if isinstance(msg, bytes) else msg.SerializeToString()
    return struct.pack(">BI", 1 if compressed else 0, len(body)) + body


class RawH2:
    """python3-h2 over the Unix socket; it answers pings as any client library does."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}
        self.closed = False
        self.goaway = None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.settimeout(WAIT)  # pump() leaves a short one
            self.sock.sendall(data)

    def request(self, method, body=b"", extra=(), te=True, content_type="application/grpc",
                end=True):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
                   (":path", method)]
        if content_type:
            headers.append(("content-type", content_type))
        if te:
            headers.append(("te", "trailers"))
        headers += list(extra)
        self.conn.send_headers(sid, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        self.streams[sid] = {"headers": None, "data": b"", "trailers": None, "reset": None,
                             "ended": False}
        return sid

    def reset(self, sid):
        self.conn.reset_stream(sid)
        self.flush()

    def pump(self, timeout):
        """Read what came within timeout; False once the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                st["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                st["data"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                st["trailers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                st["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st["reset"] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
        self.flush()
        return True

    def wait(self, sid, timeout=WAIT):
        end = time.monotonic() + timeout
        st = self.streams[sid]
        while not (st["ended"] or st["reset"] is not None) and time.monotonic() < end:
            if not self.pump(0.2):
                break
        return st

    def status(self, sid, timeout=WAIT):
        """(grpc-status, grpc-message, :status) of a stream, from trailers or trailers-only."""
        st = self.wait(sid, timeout)
        t = st["trailers"] or st["headers"] or {}
        h = st["headers"] or {}
        code = t.get("grpc-status")
        return (int(code) if code is not None else None, t.get("grpc-message", ""),
                h.get(":status"), h)

    def close(self):
        self.sock.close()


def percent_decode(s):
    out, i = bytearray(), 0
    b = s.encode()
    while i < len(b):
        if b[i:i + 1] == b"%":
            out.append(int(b[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return out.decode()


def read_frames(sock, timeout):
    """HTTP/2 frames (type, flags, stream, payload) read from a raw socket until it closes or
    timeout passes; and whether it closed."""
    frames, buf = [], b""
    end = time.monotonic() + timeout
    closed = False
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            data = b""
        if not data:
            closed = True
            break
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF,
                           buf[9:9 + length]))
            buf = buf[9 + length:]
    return frames, closed


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


# -- calls ------------------------------------------------------------------------------------


def test_unary_peer_and_method(start):
    s = start()
    with s.channel() as ch:
        r = stub(ch).Echo(echo("hello"), timeout=WAIT)
    assert r.text == "hello"
    assert r.peer == f"pid {os.getpid()} uid {os.geteuid()}"
    assert r.method == f"/{SERVICE}/Echo"


def test_errors_carry_status_and_message(start):
    s = start()
    text = "dyno 'web.1' not found: 100% gone\nsecond line, é"
    with s.channel() as ch:
        t = stub(ch)
        with pytest.raises(grpc.RpcError) as e:
            t.Echo(echo(fail_code=grpc.StatusCode.NOT_FOUND.value[0], fail_message=text),
                   timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert e.value.details() == text
        # The method's validator runs before the handler.
        with pytest.raises(grpc.RpcError) as e:
            t.Echo(echo("invalid"), timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "text: 'invalid' is refused by the validator"
        # Unknown method of a known service, and an unknown service.
        call = ch.unary_unary(f"/{SERVICE}/Nope")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert f"/{SERVICE}/Nope" in e.value.details()
        assert "no method Nope" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/no.such.Service/Get")(b"", timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "/no.such.Service/Get" in e.value.details()
        # Bytes that are not the request message.
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(f"/{SERVICE}/Echo")(b"\xff\xff\xff", timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "hostd.test.v1.EchoRequest" in e.value.details()
        # A string with a NUL byte (protobuf-c would cut it): refused, not cut.
        with pytest.raises(grpc.RpcError) as e:
            t.Echo(echo("a\x00b"), timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "NUL" in e.value.details()
        # The connection is fine after all that.
        assert t.Echo(echo("still here"), timeout=WAIT).text == "still here"


def test_streams_every_shape(start):
    s = start()
    with s.channel() as ch:
        t = stub(ch)
        got = [r.i for r in t.Count(tpb.CountRequest(n=50, size=100, tag="n50"), timeout=WAIT)]
        assert got == list(range(50))
        s.wait_out(f"end /{SERVICE}/Count n50")
        # A producer that never waits (it skips while call_pending() is high) does not keep
        # the loop from reading the client's WINDOW_UPDATEs: the stream goes to its end.
        got = [r.i for r in t.Count(tpb.CountRequest(n=3000, size=1000, tag="busy"),
                                    timeout=WAIT)]
        assert got == list(range(3000))
        r = t.Concat(iter([echo("a"), echo("b"), echo("c")]), timeout=WAIT)
        assert r.text == "3:abc"
        out = [r.text for r in t.BidiEcho(iter([echo(str(i)) for i in range(20)]),
                                          timeout=WAIT)]
        assert out == [str(i) for i in range(20)]
        # A bidi call whose owner fails it midway: the client sees its status.
        with pytest.raises(grpc.RpcError) as e:
            list(t.BidiEcho(iter([echo("x"), echo(fail_code=9, fail_message="stop here"),
                                  echo("never")]), timeout=WAIT))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert e.value.details() == "stop here"
        # The owner asks for input a second later: what the client sent waits, then comes.
        start_t = time.monotonic()
        out = [r.text for r in t.BidiEcho(iter([echo("wait-input")] +
                                               [echo(f"m{i}") for i in range(5)]), timeout=WAIT)]
        assert out == ["wait-input"] + [f"m{i}" for i in range(5)]
        assert time.monotonic() - start_t >= 0.9


def test_deadline_cancels_the_call(start):
    s = start()
    with s.channel() as ch:
        t = stub(ch)
        begin = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            t.SlowEcho(echo("late", delay_ms=5000), timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - begin < 3
        s.wait_out(f"cancel /{SERVICE}/SlowEcho late")
        # Within its deadline it answers.
        assert t.SlowEcho(echo("soon", delay_ms=100), timeout=WAIT).text == "soon"


def test_server_enforces_grpc_timeout(start):
    """A client that does not enforce its own deadline (grpcio does) still gets
    DEADLINE_EXCEEDED from the server, and the owner is told."""
    s = start()
    c = RawH2(s.sock)
    sid = c.request(f"/{SERVICE}/SlowEcho", grpc_frame(echo("raw", delay_ms=10000)),
                    extra=[("grpc-timeout", "200m")])
    begin = time.monotonic()
    code, msg, status, _ = c.status(sid)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], msg
    assert "deadline exceeded (200 ms, grpc-timeout)" in percent_decode(msg)
    assert time.monotonic() - begin < 3
    s.wait_out(f"cancel /{SERVICE}/SlowEcho raw")
    c.close()


def test_cancel_one_stream_others_go_on(start):
    s = start()
    with s.channel() as ch:
        t = stub(ch)
        a = t.Count(tpb.CountRequest(interval_ms=20, tag="a"), timeout=60)
        b = t.Count(tpb.CountRequest(interval_ms=20, tag="b"), timeout=60)
        assert [next(a).i for _ in range(3)] == [0, 1, 2]
        assert [next(b).i for _ in range(3)] == [0, 1, 2]
        a.cancel()
        s.wait_out(f"cancel /{SERVICE}/Count a")
        got = [next(b).i for _ in range(20)]
        assert got == list(range(3, 23))
        assert f"/{SERVICE}/Count b" not in s.stdout()
        # Unary calls on the same connection meanwhile.
        assert t.Echo(echo("beside"), timeout=WAIT).text == "beside"
        b.cancel()
        s.wait_out(f"cancel /{SERVICE}/Count b")


def test_message_over_max_message(start):
    s = start("--max-message", "65536")
    with s.channel() as ch:
        t = stub(ch)
        with pytest.raises(grpc.RpcError) as e:
            t.Echo(echo(blob=b"x" * 100000), timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over the limit of 65536 (max-message)" in e.value.details()
        assert t.Echo(echo(blob=b"x" * 60000), timeout=WAIT).text == "hi"


def test_more_streams_than_max_inflight(start):
    s = start("--max-inflight", "4")
    with s.channel() as ch:
        t = stub(ch)
        slow = [t.SlowEcho.future(echo(f"s{i}", delay_ms=1500), timeout=WAIT) for i in range(4)]
        for i in range(4):
            s.wait_out(f"start /{SERVICE}/SlowEcho s{i}")
        with pytest.raises(grpc.RpcError) as e:
            t.Echo(echo("one too many"), timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max-inflight" in e.value.details()
        assert [f.result().text for f in slow] == [f"s{i}" for i in range(4)]
        # Once they ended, there is room again.
        assert t.Echo(echo("room"), timeout=WAIT).text == "room"


def test_max_connections(start):
    s = start("--max-connections", "3")
    socks = []
    for _ in range(3):
        k = socket.socket(socket.AF_UNIX)
        k.connect(s.sock)
        k.sendall(PREFACE + EMPTY_SETTINGS)
        socks.append(k)
    frames, _ = read_frames(socks[0], 0.5)
    assert frames and frames[0][0] == 4  # the server's SETTINGS: it is served
    extra = socket.socket(socket.AF_UNIX)
    extra.connect(s.sock)
    extra.settimeout(WAIT)
    assert extra.recv(100) == b""  # closed at once
    s.wait_log("3 open, the limit (max-connections)")
    for k in socks + [extra]:
        k.close()
    time.sleep(0.2)
    with s.channel() as ch:
        assert stub(ch).Echo(echo("after"), timeout=WAIT).text == "after"


def test_read_group_member_may_only_read(start, folder):
    if os.geteuid() != 0:
        pytest.skip("needs root: a group to create and a client of another uid")
    group = f"test-grpcro-{os.getpid()}"
    subprocess.run(["groupadd", "--system", group], check=True)
    try:
        gid = grp.getgrnam(group).gr_gid
        uid = next(u for u in range(61000, 62000) if not _uid_exists(u))
        s = start("--read-group", group)
        st = os.stat(s.sock)
        assert (st.st_gid, st.st_mode & 0o777) == (gid, 0o660)
        member = _run_as(uid, [gid], s.sock)
        assert member["echo"] == "ok"
        assert member["write"][0] == "PERMISSION_DENIED"
        assert f"/{SERVICE}/Write: permission denied" in member["write"][1]
        assert "read-group" in member["write"][1]
        s.wait_log(f"refused /{SERVICE}/Write from a read-only client (read-group)")
        # Another uid, not in the group: refused at accept (the socket's mode lets it
        # connect only because it keeps the group here).
        outsider = _run_as(uid + 1, [gid], s.sock, keep_group=False)
        assert outsider["echo"] == "UNAVAILABLE"
        s.wait_log(f"refusing a connection from uid {uid + 1}")
    finally:
        subprocess.run(["groupdel", group], check=False)


def _uid_exists(uid):
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


CLIENT_AS = textwrap.dedent("""\
    import json, sys
    sys.path[:0] = json.loads(sys.argv[2])
    import grpc, grpctest_pb2 as t, grpctest_pb2_grpc as tg
    out = {}
    with grpc.insecure_channel("unix:" + sys.argv[1], options=[("grpc.enable_http_proxy", 0)]) as ch:
        s = tg.TestStub(ch)
        for name, fn in (("echo", s.Echo), ("write", s.Write)):
            try:
                fn(t.EchoRequest(text="x"), timeout=10)
                out[name] = "ok"
            except grpc.RpcError as e:
                out[name] = [e.code().name, e.details()] if name == "write" else e.code().name
    print(json.dumps(out))
    """)


def _run_as(uid, groups, sock, keep_group=True):
    """A Python gRPC client as uid; with keep_group, groups are its supplementary groups (so
    it reaches the socket); else it gets them only to open the socket... which it cannot
    keep: it runs with a primary group of its own and no supplementary ones."""
    def demote():
        if keep_group:
            os.setgroups(groups)
            os.setgid(groups[0])
        else:
            os.setgroups([])
            os.setgid(uid)
        os.setuid(uid)

    if not keep_group:
        # To reach the socket at all it must pass its mode: open it up for this test only.
        os.chmod(sock, 0o666)
    r = subprocess.run([sys.executable if sys.executable else "/usr/bin/python3", "-c",
                        CLIENT_AS, sock, json.dumps(STUBS)],
                       preexec_fn=demote, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- slow readers ------------------------------------------------------------------------------


def test_slow_reader_flooded_is_cut_off(start):
    """A client that stops reading a stream the server keeps writing: the server's memory
    stays bounded, the stream ends RESOURCE_EXHAUSTED and the owner is told."""
    s = start("--max-pending-stream", str(1 << 20), "--max-pending-conn", str(4 << 20))
    base = s.rss_kib()
    with s.channel(**{"grpc.http2.bdp_probe": 0}) as ch:
        t = stub(ch)
        flood = t.Count(tpb.CountRequest(size=16384, ignore_pending=True, tag="flood"),
                        timeout=60)
        next(flood)
        s.wait_out(f"cancel /{SERVICE}/Count flood")
        s.wait_log("the client does not read its responses")
        assert s.rss_kib() - base < 64 * 1024, (base, s.rss_kib())
        with pytest.raises(grpc.RpcError) as e:
            for _ in flood:
                pass
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The connection serves on.
        assert t.Echo(echo("after"), timeout=WAIT).text == "after"


def test_slow_reader_with_a_producer_that_skips(start):
    """A producer that looks at call_pending() skips items rather than queue them: the
    stream goes on, bounded, and the client sees what was skipped."""
    s = start()
    base = s.rss_kib()
    with s.channel(**{"grpc.http2.bdp_probe": 0}) as ch:
        t = stub(ch)
        it = t.Count(tpb.CountRequest(size=16384, interval_ms=1, tag="skip"), timeout=60)
        next(it)
        time.sleep(3)  # not reading
        assert s.rss_kib() - base < 64 * 1024, (base, s.rss_kib())
        last = None
        for _ in range(200):
            last = next(it)
        assert last.skipped > 0
        assert "cancel" not in s.stdout()
        it.cancel()
        s.wait_out(f"cancel /{SERVICE}/Count skip")


# -- keepalive and idle ------------------------------------------------------------------------


def test_keepalive_closes_a_peer_that_does_not_answer(start):
    s = start("--keepalive", "1", "--keepalive-timeout", "1")
    k = socket.socket(socket.AF_UNIX)
    k.connect(s.sock)
    k.sendall(PREFACE + EMPTY_SETTINGS)
    frames, closed = read_frames(k, 6)
    assert any(f[0] == 6 and not f[1] & 1 for f in frames), frames  # a PING, not an ACK
    assert closed
    s.wait_log("no answer to a keepalive ping within 1 s; closing")
    k.close()


def test_keepalive_answered_keeps_the_connection(start):
    s = start("--keepalive", "1", "--keepalive-timeout", "1", "--idle-timeout", "0")
    c = RawH2(s.sock)  # answers pings
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        assert c.pump(0.2), "closed though it answered the pings"
    sid = c.request(f"/{SERVICE}/Echo", grpc_frame(echo("alive")))
    assert c.status(sid)[0] == 0
    assert "no answer to a keepalive ping" not in s.log()
    c.close()


def test_idle_timeout_closes_a_connection_without_calls(start):
    s = start("--idle-timeout", "1")
    c = RawH2(s.sock)
    sid = c.request(f"/{SERVICE}/Echo", grpc_frame(echo("once")))
    assert c.status(sid)[0] == 0
    end = time.monotonic() + 5
    while time.monotonic() < end and c.pump(0.2):
        pass
    assert c.closed
    assert c.goaway is not None and c.goaway.error_code == 0
    s.wait_log("closed after 1 s without a call (idle-timeout)")
    # A connection with a stream open is not idle.
    with s.channel() as ch:
        it = stub(ch).Count(tpb.CountRequest(interval_ms=200, tag="busy"), timeout=60)
        got = [next(it).i for _ in range(15)]  # about 3 s
        assert got == list(range(15))
        it.cancel()


# -- what is not gRPC -------------------------------------------------------------------------


def test_http1_and_garbage_are_refused_without_harm(start):
    s = start()
    with s.channel() as ch:
        it = stub(ch).Count(tpb.CountRequest(interval_ms=20, tag="bystander"), timeout=60)
        next(it)
        k = socket.socket(socket.AF_UNIX)
        k.connect(s.sock)
        k.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        k.settimeout(WAIT)
        answer = b""
        while True:
            d = k.recv(4096)
            if not d:
                break
            answer += d
        assert answer.startswith(b"HTTP/1.1 505 ")
        s.wait_log("refused: an HTTP/1 request; gRPC needs HTTP/2")
        k.close()
        k = socket.socket(socket.AF_UNIX)
        k.connect(s.sock)
        k.sendall(os.urandom(4096))
        k.settimeout(WAIT)
        assert k.recv(4096) == b""
        s.wait_log("refused: not HTTP/2")
        k.close()
        # A real HTTP/2 client that breaks the protocol (DATA on stream 0) gets GOAWAY.
        k = socket.socket(socket.AF_UNIX)
        k.connect(s.sock)
        k.sendall(PREFACE + EMPTY_SETTINGS + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        frames, closed = read_frames(k, 5)
        assert closed and any(f[0] == 7 for f in frames)  # GOAWAY
        k.close()
        got = [next(it).i for _ in range(10)]
        assert got == list(range(1, 11))
        it.cancel()


def test_raw_requests_the_client_libraries_never_send(start):
    s = start()
    c = RawH2(s.sock)
    body = grpc_frame(echo("raw"))
    cases = [
        (dict(te=False), 3, "te: trailers"),
        (dict(extra=[("grpc-encoding", "gzip")]), 12, "grpc-encoding 'gzip'"),
        (dict(extra=[("grpc-timeout", "soon")]), 3, "grpc-timeout 'soon'"),
        (dict(content_type="application/grpc+json"), 12, "application/grpc+proto only"),
    ]
    for kw, code, text in cases:
        sid = c.request(f"/{SERVICE}/Echo", body, **kw)
        got, msg, _, headers = c.status(sid)
        assert got == code and text in percent_decode(msg), (kw, got, msg)
    sid = c.request(f"/{SERVICE}/Echo", grpc_frame(echo("z"), compressed=True))
    got, msg, _, headers = c.status(sid)
    assert got == 12 and "compressed" in percent_decode(msg)
    assert headers.get("grpc-accept-encoding") == "identity"
    # Not gRPC at all: HTTP's own status too.
    sid = c.request(f"/{SERVICE}/Echo", body, content_type="text/plain")
    got, msg, status, _ = c.status(sid)
    assert status == "415" and got == 3
    # A unary call takes one message.
    sid = c.request(f"/{SERVICE}/Echo", body + body)
    got, msg, _, _ = c.status(sid)
    assert got == 3 and "a second came" in percent_decode(msg)
    # None at all.
    sid = c.request(f"/{SERVICE}/Echo", b"")
    got, msg, _, _ = c.status(sid)
    assert got == 3 and "no request message" in percent_decode(msg)
    # A half-close within a message.
    sid = c.request(f"/{SERVICE}/Echo", body[:-1])
    got, msg, _, _ = c.status(sid)
    assert got == 3 and "within a message" in percent_decode(msg)
    # A RST_STREAM cancels that call only; its owner is told.
    sid = c.request(f"/{SERVICE}/SlowEcho", grpc_frame(echo("reset", delay_ms=10000)))
    other = c.request(f"/{SERVICE}/SlowEcho", grpc_frame(echo("kept", delay_ms=500)))
    c.pump(0.2)
    c.reset(sid)
    s.wait_out(f"cancel /{SERVICE}/SlowEcho reset")
    got, msg, _, _ = c.status(other)
    assert got == 0
    assert f"cancel /{SERVICE}/SlowEcho kept" not in s.stdout()
    c.close()


def test_closed_connection_cancels_its_calls_only(start):
    s = start()
    c = RawH2(s.sock)
    for tag in ("gone1", "gone2"):
        c.request(f"/{SERVICE}/SlowEcho", grpc_frame(echo(tag, delay_ms=10000)))
    c.request(f"/{SERVICE}/Count", grpc_frame(tpb.CountRequest(interval_ms=50, tag="gone3")))
    with s.channel() as ch:
        it = stub(ch).Count(tpb.CountRequest(interval_ms=50, tag="stays"), timeout=60)
        next(it)
        c.pump(0.3)
        c.close()
        for tag in ("gone1", "gone2"):
            s.wait_out(f"cancel /{SERVICE}/SlowEcho {tag}")
        s.wait_out(f"cancel /{SERVICE}/Count gone3")
        assert [next(it).i for _ in range(5)] == list(range(1, 6))
        assert "stays" not in s.stdout()
        it.cancel()


def test_a_flooding_client_does_not_starve_others(start):
    """One connection streams 100000 small messages as fast as flow control lets it;
    another's calls are answered meanwhile (a connection's wake-up feeds a bounded batch),
    and the flood's answer is whole."""
    s = start()
    n = 100000
    c = RawH2(s.sock)
    sid = c.request(f"/{SERVICE}/Concat", b"", end=False)
    payload = grpc_frame(echo("x")) * n
    latencies = []
    stop = threading.Event()

    def bystander():
        with s.channel() as ch:
            t = stub(ch)
            while not stop.is_set():
                begin = time.monotonic()
                assert t.Echo(echo("me"), timeout=WAIT).text == "me"
                latencies.append(time.monotonic() - begin)
                time.sleep(0.01)

    th = threading.Thread(target=bystander)
    th.start()
    try:
        off = 0
        while off < len(payload):
            room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
            if room == 0:
                assert c.pump(0.1)
                continue
            c.conn.send_data(sid, payload[off:off + room])
            off += room
            c.flush()
        c.conn.end_stream(sid)
        c.flush()
        code, msg, _, _ = c.status(sid, timeout=60)
    finally:
        stop.set()
        th.join()
    assert code == 0, msg
    reply = tpb.EchoResponse.FromString(c.streams[sid]["data"][5:])
    assert reply.text == f"{n}:" + "x" * n
    assert latencies and max(latencies) < 2.0, max(latencies)
    c.close()


# -- health and reflection ---------------------------------------------------------------------


def test_health_check_and_watch(start):
    s = start()
    with s.channel() as ch:
        h = health_pb2_grpc.HealthStub(ch)
        SERVING = health_pb2.HealthCheckResponse.SERVING
        NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE, "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection"):
            assert h.Check(health_pb2.HealthCheckRequest(service=name),
                           timeout=WAIT).status == SERVING
        with pytest.raises(grpc.RpcError) as e:
            h.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        w = h.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        unknown = h.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=60)
        assert next(w).status == SERVING
        assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        s.signal(signal.SIGUSR1)
        assert next(w).status == NOT_SERVING
        assert h.Check(health_pb2.HealthCheckRequest(service=SERVICE),
                       timeout=WAIT).status == NOT_SERVING
        s.signal(signal.SIGUSR2)
        assert next(w).status == SERVING
        w.cancel()
        unknown.cancel()


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection(start, version):
    pb = {"v1alpha": reflection_v1alpha_pb2, "v1": reflection_v1_pb2}[version]
    pbg = {"v1alpha": reflection_v1alpha_pb2_grpc, "v1": reflection_v1_pb2_grpc}[version]
    s = start()
    reqs = [
        pb.ServerReflectionRequest(host="h", list_services=""),
        pb.ServerReflectionRequest(file_containing_symbol=SERVICE),
        pb.ServerReflectionRequest(file_containing_symbol=f"{SERVICE}.Count"),
        pb.ServerReflectionRequest(file_containing_symbol="hostd.test.v1.EchoRequest.text"),
        pb.ServerReflectionRequest(
            file_containing_symbol="grpc.health.v1.HealthCheckResponse.ServingStatus"),
        pb.ServerReflectionRequest(file_by_filename="grpc/health/v1/health.proto"),
        pb.ServerReflectionRequest(file_containing_symbol="no.such.Thing"),
        pb.ServerReflectionRequest(file_containing_extension=pb.ExtensionRequest(
            containing_type="hostd.test.v1.EchoRequest", extension_number=100)),
        pb.ServerReflectionRequest(all_extension_numbers_of_type="hostd.test.v1.EchoRequest"),
    ]
    with s.channel() as ch:
        answers = list(pbg.ServerReflectionStub(ch).ServerReflectionInfo(iter(reqs),
                                                                          timeout=WAIT))
    assert len(answers) == len(reqs)
    for q, a in zip(reqs, answers):
        assert a.original_request == q
    assert answers[0].valid_host == "h"
    names = {x.name for x in answers[0].list_services_response.service}
    assert names == {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection"}

    def files(a):
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in a.file_descriptor_response.file_descriptor_proto]

    for a in answers[1:4]:
        f = files(a)[0]
        assert f.name == "grpctest.proto" and f.package == "hostd.test.v1"
        svc = {x.name: x for x in f.service}["Test"]
        methods = {m.name: m for m in svc.method}
        assert set(methods) == {"Echo", "SlowEcho", "Write", "Count", "Concat", "BidiEcho"}
        assert methods["Count"].server_streaming and not methods["Count"].client_streaming
        assert methods["BidiEcho"].client_streaming and methods["BidiEcho"].server_streaming
        assert methods["Echo"].input_type == ".hostd.test.v1.EchoRequest"
    for a in answers[4:6]:
        f = files(a)
        assert f[0].name == "grpc/health/v1/health.proto"
        assert [x.name for x in f[0].service] == ["Health"]
    for a in answers[6:8]:
        assert a.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no.such.Thing" in answers[6].error_response.error_message
    ext = answers[8].all_extension_numbers_response
    assert ext.base_type_name == "hostd.test.v1.EchoRequest" and not ext.extension_number


def test_reflection_returns_dependencies(start):
    """A file comes with what it imports, first the file asked for, so that a client builds
    every type from one answer."""
    s = start()
    with s.channel() as ch:
        st = reflection_v1_pb2_grpc.ServerReflectionStub(ch)
        answers = list(st.ServerReflectionInfo(iter([
            reflection_v1_pb2.ServerReflectionRequest(file_by_filename="grpctest.proto"),
            reflection_v1_pb2.ServerReflectionRequest(file_containing_symbol="hostd.test.v1.Meta"),
        ]), timeout=WAIT))
    fs = [descriptor_pb2.FileDescriptorProto.FromString(b)
          for b in answers[0].file_descriptor_response.file_descriptor_proto]
    assert [f.name for f in fs] == ["grpctest.proto", "grpctest_types.proto"]
    assert list(fs[0].dependency) == ["grpctest_types.proto"]
    fs = [descriptor_pb2.FileDescriptorProto.FromString(b)
          for b in answers[1].file_descriptor_response.file_descriptor_proto]
    assert [f.name for f in fs] == ["grpctest_types.proto"]


# -- TLS ---------------------------------------------------------------------------------------


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


class Pki:
    """A CA in folder/name and the certificates it signs (the openssl command line)."""

    def __init__(self, folder, name):
        self.dir = os.path.join(folder, name)
        os.makedirs(self.dir)
        self.ca = os.path.join(self.dir, "ca.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj",
                f"/CN={name}", cwd=self.dir)

    def issue(self, name, cn, san, server=False):
        eku = "serverAuth" if server else "clientAuth"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                cwd=self.dir)
        with open(os.path.join(self.dir, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nextendedKeyUsage={eku}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile",
                f"{name}.ext", cwd=self.dir)
        return os.path.join(self.dir, f"{name}.pem"), os.path.join(self.dir, f"{name}.key")


def free_port():
    with socket.socket() as k:
        k.bind(("127.0.0.1", 0))
        return k.getsockname()[1]


@pytest.fixture
def pki(folder):
    p = Pki(folder, "test-ca")
    other = Pki(folder, "other-ca")
    server = p.issue("server", "hostd-test", "IP:127.0.0.1", server=True)
    client = p.issue("client", "control-plane", "DNS:cp.example")
    stranger = other.issue("stranger", "control-plane", "DNS:cp.example")
    return {"ca": p.ca, "server": server, "client": client, "stranger": stranger}


def tls_args(pki, port, *extra):
    return ["--tls", f"127.0.0.1:{port}", "--cert", pki["server"][0], "--key", pki["server"][1],
            "--ca", pki["ca"], *extra]


def tls_channel(pki, port, cert="client"):
    def read(p):
        with open(p, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=read(pki["ca"]),
                                         private_key=read(pki[cert][1]),
                                         certificate_chain=read(pki[cert][0]))
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=CHANNEL_OPTIONS)


def test_tls_mutual_unary_and_stream(start, pki):
    port = free_port()
    s = start(tls=tls_args(pki, port))
    with tls_channel(pki, port) as ch:
        t = stub(ch)
        r = t.Echo(echo("over tls"), timeout=WAIT)
        assert r.text == "over tls"
        assert r.peer.startswith("127.0.0.1:") and r.peer.endswith(" CN=control-plane")
        assert [x.i for x in t.Count(tpb.CountRequest(n=5), timeout=WAIT)] == list(range(5))
    s.wait_log("CN=control-plane connected")


def test_tls_refusals(start, pki):
    port = free_port()
    s = start(tls=tls_args(pki, port))
    # A certificate from another CA.
    with tls_channel(pki, port, cert="stranger") as ch:
        with pytest.raises(grpc.RpcError) as e:
            stub(ch).Echo(echo(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    s.wait_log("client certificate from an unknown CA")

    def handshake(alpn):
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.load_cert_chain(*pki["client"])
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        try:
            k = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            k.sendall(PREFACE + EMPTY_SETTINGS)
            return k.recv(100)
        except (ssl.SSLError, ConnectionResetError) as err:
            return err
        finally:
            raw.close()

    # ALPN without h2: refused in the handshake.
    assert isinstance(handshake(["http/1.1"]), ssl.SSLError)
    s.wait_log("the client does not offer ALPN h2")
    # No ALPN at all: refused after it.
    got = handshake(None)
    assert got == b"" or isinstance(got, (ssl.SSLError, ConnectionResetError))
    s.wait_log("the client offered no ALPN protocol; gRPC needs h2")
    # Not TLS.
    k = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    k.sendall(PREFACE)
    try:
        assert k.recv(100) == b""
    except ConnectionResetError:
        pass  # closed with the preface unread
    k.close()
    s.wait_log("refused: not TLS (the first byte is 0x50")
    # And the good client still gets in.
    with tls_channel(pki, port) as ch:
        assert stub(ch).Echo(echo("fine"), timeout=WAIT).text == "fine"


def test_tls_allow_list(start, pki):
    port = free_port()
    s = start(tls=tls_args(pki, port, "--allow", "someone-else"))
    with tls_channel(pki, port) as ch:
        with pytest.raises(grpc.RpcError) as e:
            stub(ch).Echo(echo(), timeout=WAIT)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "CN=control-plane is not allowed on this host (tls-allow)" in e.value.details()
    s.wait_log("refused: CN=control-plane is not on the allow-list (tls-allow)")
    s.signal(signal.SIGHUP)
    s.wait_log("TLS: reloaded tls-cert")


def test_tls_handshake_timeout(start, pki):
    port = free_port()
    s = start("--handshake-timeout", "1", tls=tls_args(pki, port))
    k = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    assert k.recv(100) == b""
    k.close()
    s.wait_log("no TLS handshake within 1 s (tls-handshake-timeout)")


# -- the socket ---------------------------------------------------------------------------------


def test_socket_activation(folder):
    if not shutil.which("systemd-socket-activate"):
        pytest.skip("no systemd-socket-activate")
    path = os.path.join(folder, "act.sock")
    out = open(os.path.join(folder, "act-out.txt"), "w")
    err_path = os.path.join(folder, "act-err.txt")
    err = open(err_path, "w")
    # systemd-socket-activate listens, and starts the server at the first connection with
    # the socket passed (LISTEN_FDS).
    proc = subprocess.Popen(["systemd-socket-activate", "-l", path, SERVER_BIN, "--socket",
                             path], stdout=out, stderr=err)
    try:
        wait_for(lambda: os.path.exists(path), what="the socket")
        with grpc.insecure_channel(f"unix:{path}", options=CHANNEL_OPTIONS) as ch:
            assert stub(ch).Echo(echo("activated"), timeout=WAIT).text == "activated"
        wait_for(lambda: f"serving {path}, the socket systemd passed" in open(err_path).read(),
                 what="the log line")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
        out.close()
        err.close()
    assert proc.returncode == 0, open(err_path).read()


def test_second_server_on_the_socket_is_refused(start, folder):
    s = start()
    r = subprocess.run([SERVER_BIN, "--socket", s.sock], capture_output=True, text=True,
                       timeout=WAIT)
    assert r.returncode == 1
    assert "another hostd is listening there" in r.stderr
    with s.channel() as ch:
        assert stub(ch).Echo(echo(), timeout=WAIT).text == "hi"


# -- many clients at once ------------------------------------------------------------------------


def test_many_concurrent_clients(start):
    s = start()
    errors = []

    def client(n):
        try:
            with s.channel() as ch:
                t = stub(ch)
                for i in range(50):
                    assert t.Echo(echo(f"{n}-{i}"), timeout=WAIT).text == f"{n}-{i}"
                got = [r.i for r in t.Count(tpb.CountRequest(n=100, size=1000), timeout=WAIT)]
                assert got == list(range(100))
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
