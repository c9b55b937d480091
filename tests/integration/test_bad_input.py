"""Bad input on hostd's socket, as a gRPC client can send it: each case gets a clear error
(a gRPC status with a message that names the field), or, for bytes that are not HTTP/2, a
closed connection; hostd keeps serving other clients, and nothing is left behind: no dyno, no
cgroup, no layer folder, no mount, no process.

Every test takes a snapshot of what exists (hostd.snapshot()) before the bad input and checks
after it that hostd still answers a new client and that nothing new exists.
"""

import os
import random
import socket
import struct
import threading
import time

import grpc
import h2.config
import h2.connection
import pytest

from hostd_client import Code, Status, code_name, pb

# not the cgroup v2 tier: protocol validation, before any cgroup is made
pytestmark = pytest.mark.cgroup_independent

LIVE_STATES = (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_UP, pb.DYNO_STATE_STOPPING)
SERVICE = "/hostd.v1.Hostd/"


# -- helpers ------------------------------------------------------------------------------------


def expect_error(resp, code, *words):
    """resp (a Reply) carries status code (or one of codes) with a message naming each of
    words, and no answer."""
    codes = code if isinstance(code, (tuple, list, set)) else (code,)
    got = resp.status.code
    assert got in codes, (
        f"expected {'/'.join(code_name(c) for c in codes)}, got {code_name(got)}: "
        f"{resp.status.message!r}"
    )
    msg = resp.status.message
    assert msg, f"{code_name(got)} without a message"
    for w in words:
        assert w in msg, f"the message {msg!r} does not name {w!r}"
    assert resp.value is None, f"an error reply with an answer: {resp}"


class RawReply:
    __slots__ = ("status", "value")

    def __init__(self, status, value=None):
        self.status, self.value = status, value


def call_raw(c, method, body, timeout=10):
    """A unary call of method with body as the request's bytes, whatever they are (a gRPC
    client with a serializer that does nothing): a reply with .status, and .value the answer's
    bytes."""
    fn = c.channel.unary_unary(method if method.startswith("/") else SERVICE + method,
                               request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    try:
        return RawReply(Status(Code.OK), fn(body, timeout=timeout))
    except grpc.RpcError as e:
        return RawReply(Status.of(e))


def assert_no_dyno(hostd, dyno_id):
    """hostd knows no dyno dyno_id, and no cgroup folder has its name."""
    with hostd.client() as c:
        resp = c.get(dyno_id, check=False)
        expect_error(resp, Code.NOT_FOUND)
        assert all(d.spec.id != dyno_id for d in c.list())
    assert hostd.find_cgroups(dyno_id) == []
    if os.path.isdir(hostd.layers_dir):
        assert not [e for e in os.listdir(hostd.layers_dir) if dyno_id in e]


def assert_healthy(hostd, before, what=""):
    """hostd serves a new client, runs no dyno, and nothing exists that did not before."""
    hostd.assert_serving()
    with hostd.client() as c:
        live = [d.spec.id for d in c.list() if d.state in LIVE_STATES]
    assert live == [], f"dynos running after {what or 'the bad input'}: {live}"
    hostd.assert_unchanged(before, what)


def start_rejected(hostd, spec, code, *words):
    """A Start of spec is refused with code naming words; nothing changes."""
    before = hostd.snapshot()
    with hostd.client() as c:
        resp = c.start(spec, check=False)
        expect_error(resp, code, *words)
        # The channel stays usable after an error.
        c.list()
    assert_healthy(hostd, before, f"a refused start of {spec.id!r}")


def decode_varint(buf, pos=0):
    """(value, next position), None when buf ends inside it; ValueError past 10 bytes."""
    value = shift = 0
    for i in range(10):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def wire_invalid(payload):
    """Why payload cannot be a protobuf message at the wire level (a reason every parser,
    protobuf-c included, agrees on), or None."""
    pos = 0
    while pos < len(payload):
        try:
            v = decode_varint(payload, pos)
        except ValueError:
            return "malformed tag"
        if v is None:
            return "truncated tag"
        tag, pos = v
        field, wire_type = tag >> 3, tag & 7
        if field == 0:
            return "field number 0"
        if wire_type == 0:
            try:
                v = decode_varint(payload, pos)
            except ValueError:
                return "malformed varint"
            if v is None:
                return "truncated varint"
            pos = v[1]
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            try:
                v = decode_varint(payload, pos)
            except ValueError:
                return "malformed length"
            if v is None:
                return "truncated length"
            pos = v[1] + v[0]
        elif wire_type in (6, 7):
            return f"wire type {wire_type}"
        else:
            return None  # groups: parsers differ; not a sure "invalid"
        if pos > len(payload):
            return "truncated field"
    return None


def raw_socket(hostd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.connect(hostd.socket_path)
    return s


def assert_closed(s, timeout=10.0):
    """hostd closes the raw socket s (what it sent before is returned)."""
    s.settimeout(timeout)
    got = b""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return got
            got += data
    except ConnectionResetError:
        return got
    except socket.timeout:
        pytest.fail(f"hostd kept a connection open {timeout} s after bytes that are not HTTP/2")


class RawH2:
    """A raw HTTP/2 client (python3-h2) on hostd's socket, for a request a client library
    would finish: the headers of a gRPC call and part of its message, then nothing."""

    def __init__(self, hostd):
        self.sock = raw_socket(hostd)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def begin(self, method, body, keep):
        """Open a call of method and send the first keep bytes of its gRPC message."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                     (":authority", "localhost"), (":path", SERVICE + method),
                                     ("content-type", "application/grpc"), ("te", "trailers")])
        data = struct.pack(">BI", 0, len(body)) + body
        if keep:
            self.conn.send_data(sid, data[:keep])
        self.flush()
        return sid, len(data)

    def close(self):
        self.sock.close()


# -- dyno specs over the configured limits --------------------------------------------------------


def test_unknown_size(hostd, make_spec):
    start_rejected(hostd, make_spec("size-1", size="galactic-9x"), Code.INVALID_ARGUMENT, "size")
    assert_no_dyno(hostd, "size-1")


def test_command_over_max_command(hostd, make_spec):
    limit = int(hostd.config["max-command"])
    command = "sleep 1000 #"
    command += "x" * (limit + 1 - len(command))
    assert len(command.encode()) == limit + 1
    start_rejected(hostd, make_spec("cmd-1", command=command), Code.INVALID_ARGUMENT, "command")
    assert_no_dyno(hostd, "cmd-1")


def test_env_over_max_env_count(hostd, make_spec):
    limit = int(hostd.config["max-env"])
    env = [(f"VAR_{i}", "1") for i in range(limit + 1)]
    start_rejected(hostd, make_spec("envn-1", env=env), Code.INVALID_ARGUMENT, "env")
    assert_no_dyno(hostd, "envn-1")


def test_env_over_max_env_bytes(hostd, make_spec):
    limit = int(hostd.config["max-env-bytes"])
    assert int(hostd.config["max-env"]) >= 2
    value = "v" * (limit // 2 + 16)
    env = [("BIG_ONE", value), ("BIG_TWO", value)]
    start_rejected(hostd, make_spec("envb-1", env=env), Code.INVALID_ARGUMENT, "env")
    assert_no_dyno(hostd, "envb-1")


# -- dyno ids ------------------------------------------------------------------------------------


BAD_IDS = {
    "slash": "a/b",
    "traversal": "../escape",
    "deep-traversal": "../../../../../tmp/hostd-escape",
    "dotdot": "..",
    "dot": ".",
    # protobuf-c keeps a C string: "bad\0" would read as the valid id "bad" if hostd did not
    # check the string's real length.
    "nul": "bad\x00id",
    "nul-end": "badnul\x00",
    "empty": "",
    "too-long": "a" * 65,
    "space": "has space",
    "newline": "a\nb",
    "non-ascii": "d\u00e9j\u00e0",
}


@pytest.mark.parametrize("dyno_id", list(BAD_IDS.values()), ids=list(BAD_IDS.keys()))
def test_bad_dyno_id(hostd, make_spec, dyno_id):
    # hostd may refuse a string holding a NUL before it knows which field holds it.
    words = () if "\x00" in dyno_id else ("id",)
    start_rejected(hostd, make_spec(dyno_id), Code.INVALID_ARGUMENT, *words)
    # What a bad id could have turned into must not exist either.
    for name in {dyno_id.split("\x00")[0], os.path.basename(dyno_id), "escape", "b"} - {"", ".", ".."}:
        assert hostd.find_cgroups(name) == [], f"a cgroup named {name!r} exists"
    assert not os.path.exists("/tmp/hostd-escape")
    if dyno_id.startswith("badnul") or dyno_id.startswith("bad\x00"):
        assert_no_dyno(hostd, dyno_id.split("\x00")[0])


def test_dyno_id_not_utf8(hostd, make_spec):
    """An id of bytes that are not UTF-8 (Python's protobuf cannot even build it): refused
    INVALID_ARGUMENT, naming the field."""
    placeholder = "PLACEHOLDERID"
    raw = pb.StartRequest(spec=make_spec(placeholder)).SerializeToString()
    assert raw.count(placeholder.encode()) == 1
    raw = raw.replace(placeholder.encode(), b"\xff\xfe\xc0\x80" + b"x" * (len(placeholder) - 4))
    before = hostd.snapshot()
    with hostd.client() as c:
        resp = call_raw(c, "Start", raw)
        expect_error(resp, Code.INVALID_ARGUMENT, "id")
        c.list()
    assert_healthy(hostd, before)


def test_stop_with_bad_id(hostd):
    before = hostd.snapshot()
    with hostd.client() as c:
        expect_error(c.stop("../escape", grace=0, check=False), Code.INVALID_ARGUMENT, "id")
        expect_error(c.stop("", grace=0, check=False), Code.INVALID_ARGUMENT, "id")
    assert_healthy(hostd, before)


# -- root filesystem paths ---------------------------------------------------------------------------


def _bad_path(rootfs, field, kind):
    good = rootfs.stack if field == "stack_path" else rootfs.slug
    if kind == "missing":
        return os.path.join(rootfs.path, "does-not-exist")
    if kind == "file":
        return os.path.join(rootfs.stack, "etc", "passwd")
    if kind == "relative":
        # Relative to hostd's working directory (/) this names the real folder: hostd must
        # refuse it for being relative, not for being missing.
        return os.path.relpath(good, "/")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "file", "relative"])
@pytest.mark.parametrize("field", ["stack_path", "slug_path"])
def test_bad_layer_path(hostd, make_spec, rootfs, field, kind):
    path = _bad_path(rootfs, field, kind)
    if kind == "file":
        assert os.path.isfile(path)
    dyno_id = f"path-{field[:4]}-{kind}"
    start_rejected(hostd, make_spec(dyno_id, **{field: path}), Code.INVALID_ARGUMENT, field)
    assert_no_dyno(hostd, dyno_id)


# -- bytes that are not the method's message ------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 6, 9])
@pytest.mark.parametrize("method", ["Start", "GetDyno", "Stop"])
def test_random_bytes_as_the_request(hostd, method, seed):
    """A gRPC message of random bytes (fixed seed) that no protobuf parser takes: refused
    INVALID_ARGUMENT, naming the message it is not; the channel goes on."""
    rng = random.Random(seed)
    body = rng.randbytes(rng.randrange(16, 4096))
    while not wire_invalid(body):
        body = rng.randbytes(len(body))
    before = hostd.snapshot()
    with hostd.client() as c:
        resp = call_raw(c, method, body)
        expect_error(resp, Code.INVALID_ARGUMENT, f"hostd.v1.{method}Request" if method != "GetDyno"
                     else "hostd.v1.GetDynoRequest")
        assert c.list() == []
    assert_healthy(hostd, before)


@pytest.mark.parametrize("cut", ["one-byte", "half", "all-but-one"])
def test_a_truncated_start_request(hostd, make_spec, cut):
    """Part of a valid StartRequest as the whole message: not a StartRequest, no dyno."""
    raw = pb.StartRequest(spec=make_spec("trunc-1", env=[("PAD", "p" * 300)])).SerializeToString()
    keep = {"one-byte": 1, "half": len(raw) // 2, "all-but-one": len(raw) - 1}[cut]
    assert wire_invalid(raw[:keep]), "a cut that parses: choose another"
    before = hostd.snapshot()
    with hostd.client() as c:
        expect_error(call_raw(c, "Start", raw[:keep]), Code.INVALID_ARGUMENT, "StartRequest")
    assert_healthy(hostd, before)
    assert_no_dyno(hostd, "trunc-1")


def test_an_empty_message(hostd):
    """Zero bytes are a message with every field unset: Start says what is missing, a call that
    needs nothing answers."""
    before = hostd.snapshot()
    with hostd.client() as c:
        expect_error(call_raw(c, "Start", b""), Code.INVALID_ARGUMENT, "spec")
        expect_error(call_raw(c, "GetDyno", b""), Code.INVALID_ARGUMENT, "id")
        resp = call_raw(c, "ListDynos", b"")
        assert resp.status.code == Code.OK and len(pb.ListDynosResponse.FromString(resp.value).dynos) == 0
    assert_healthy(hostd, before)


@pytest.mark.parametrize("field", ["command", "name", "env"])
def test_a_string_with_a_nul_byte(hostd, make_spec, field):
    """protobuf-c keeps C strings: "sleep 1\0; rm -rf /" would read as "sleep 1" if hostd did not
    check the string's real length. Refused, and nothing runs."""
    if field == "env":
        spec = make_spec("nul-1", env=[("A", "x\x00y")])
    else:
        spec = make_spec("nul-1", **{field: {"command": "sleep 1000\x00; echo no",
                                             "name": "worker.1\x00x"}[field]})
    start_rejected(hostd, spec, Code.INVALID_ARGUMENT, "NUL")
    assert_no_dyno(hostd, "nul-1")


def test_unknown_fields_from_a_newer_client_are_ignored(hostd):
    """A request with a field this hostd does not know (a newer hostd.proto): proto3 skips it,
    so the call is the call without it."""
    raw = pb.GetDynoRequest(id="no-such-dyno").SerializeToString()
    raw += bytes([(999 << 3 | 2) & 0x7F | 0x80, (999 << 3 | 2) >> 7]) + b"\x03abc"
    with hostd.client() as c:
        expect_error(call_raw(c, "GetDyno", raw), Code.NOT_FOUND, "no-such-dyno")


@pytest.mark.parametrize("method", ["/hostd.v1.Hostd/Frobnicate", "/hostd.v2.Hostd/Start",
                                    "/hostd.v1.Hostd/start", "/Start"])
def test_an_unknown_method(hostd, method):
    before = hostd.snapshot()
    with hostd.client() as c:
        expect_error(call_raw(c, method, b""), Code.UNIMPLEMENTED, method)
        c.list()
    assert_healthy(hostd, before)


def test_a_message_over_max_message(hostd, make_spec):
    """A request over max-message: RESOURCE_EXHAUSTED, before hostd reads it whole; the channel
    goes on."""
    limit = int(hostd.config["max-message"])
    spec = make_spec("big-1", env=[("BIG", "b" * (limit + 1))])
    before = hostd.snapshot()
    with hostd.client() as c:
        resp = c.start(spec, check=False)
        expect_error(resp, Code.RESOURCE_EXHAUSTED, str(limit))
        assert c.list() == []
    assert_healthy(hostd, before)
    assert_no_dyno(hostd, "big-1")


# -- bytes that are not HTTP/2 ---------------------------------------------------------------------


@pytest.mark.parametrize("what", ["random", "http1", "old-framing"])
def test_garbage_instead_of_http2_closes_that_connection_only(hostd, make_spec, what):
    """A client that sends anything but the HTTP/2 preface is disconnected; a channel open
    meanwhile, and a stream on it, go on."""
    c = hostd.client()
    c.start(make_spec("bystander", command="while :; do echo tick; sleep 0.2; done"))
    follow = c.follow_logs("bystander")
    assert follow.next(10) is not None
    before = hostd.settled_snapshot()
    data = {
        "random": random.Random(7).randbytes(65536),
        "http1": b"POST /hostd.v1.Hostd/ListDynos HTTP/1.1\r\nHost: x\r\n\r\n",
        # what hostd spoke before gRPC: a varint length, then a Request
        "old-framing": b"\x04\x08\x01\x72\x00",
    }[what]
    mark = len(hostd.log_text())
    s = raw_socket(hostd)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert_closed(s)
    s.close()
    if what == "http1":
        assert "refused: an HTTP/1 request; gRPC needs HTTP/2" in hostd.log_text()[mark:]
    else:
        assert "refused: not HTTP/2" in hostd.log_text()[mark:]
    # The stream goes on: new lines come.
    got = [follow.next(10) for _ in range(3)]
    assert all(r is not None for r in got), follow.status
    assert c.get("bystander").state == pb.DYNO_STATE_UP
    follow.cancel()
    c.stop("bystander", grace=1)
    assert_healthy(hostd, before)


@pytest.mark.parametrize("cut", ["headers-only", "half", "all-but-one"])
def test_a_call_cut_off_then_the_client_closes(hostd, make_spec, cut):
    """The headers of a Start and part of its message, then the client closes: no dyno."""
    body = pb.StartRequest(spec=make_spec("trunc-2")).SerializeToString()
    n = len(body) + 5
    keep = {"headers-only": 0, "half": n // 2, "all-but-one": n - 1}[cut]
    before = hostd.snapshot()
    r = RawH2(hostd)
    r.begin("Start", body, keep)
    time.sleep(0.3)
    r.close()
    time.sleep(0.2)
    assert_healthy(hostd, before)
    assert_no_dyno(hostd, "trunc-2")


# -- clients that misbehave --------------------------------------------------------------------------


def test_idle_clients_do_not_block_others(hostd):
    """Clients that connect and send nothing, part of the HTTP/2 preface, or part of a call's
    message, then idle: others are served meanwhile."""
    before = hostd.snapshot()
    idle = raw_socket(hostd)
    partial = raw_socket(hostd)
    partial.sendall(b"PRI * HTTP/2.0\r\n")
    cut = RawH2(hostd)
    cut.begin("GetDyno", pb.GetDynoRequest(id="x").SerializeToString(), 3)
    time.sleep(0.2)
    for _ in range(3):
        t0 = time.monotonic()
        with hostd.client(timeout=5) as other:
            other.list()
        assert time.monotonic() - t0 < 2.0, "a ListDynos took over 2 s while clients idled"
    for s in (idle, partial):
        s.close()
    cut.close()
    assert_healthy(hostd, before)


def test_many_idle_clients(hostd):
    """Fifty clients idle at once, each with part of the preface: hostd still serves."""
    before = hostd.snapshot()
    idlers = [raw_socket(hostd) for _ in range(50)]
    for i, s in enumerate(idlers):
        s.sendall(b"P" if i % 2 else b"PRI * HTTP/2.0\r\n\r\nSM")
    with hostd.client(timeout=5) as other:
        other.list()
    for s in idlers:
        s.close()
    assert_healthy(hostd, before)


def test_client_disconnects_after_start_request(hostd, make_spec):
    """A client sends a whole Start and goes away before the answer (its call is cancelled).
    hostd must not die writing the answer; the dyno, if it started, is a normal dyno that can
    be stopped, and a start given up leaves nothing."""
    before = hostd.snapshot()
    c = hostd.client()
    c.start_async(make_spec("gone-1"))
    # grpcio sends the call once its new channel has connected: wait until hostd has it
    deadline = time.monotonic() + 10
    while "dyno gone-1 (worker.1): Starting process" not in hostd.log_text():
        assert time.monotonic() < deadline, "the Start did not reach hostd"
        time.sleep(0.01)
    c.close()
    with hostd.client() as c2:
        deadline = time.monotonic() + 30
        while True:
            resp = c2.get("gone-1", check=False)
            if resp.status.code == Code.NOT_FOUND:
                dyno = None  # hostd dropped the start with its client: fine too
            else:
                assert resp.status.code == Code.OK, resp.status.message
                dyno = resp.value
            if dyno is None or dyno.state not in (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_STOPPING):
                break
            assert time.monotonic() < deadline, "dyno gone-1 still starting after 30 s"
            time.sleep(0.05)
        if dyno is not None and dyno.state == pb.DYNO_STATE_UP:
            assert len(hostd.dyno_inits()) == 1
            assert c2.stop("gone-1", grace=1).state == pb.DYNO_STATE_DOWN
        elif dyno is not None:
            assert dyno.state in (pb.DYNO_STATE_DOWN, pb.DYNO_STATE_CRASHED), pb.DynoState.Name(dyno.state)
    assert_healthy(hostd, before)


def test_client_disconnects_during_stop(hostd, make_spec):
    """A client asks for a stop with a grace period and goes away while hostd waits: the stop
    completes all the same."""
    before = hostd.snapshot()
    with hostd.client() as c:
        # The shell ignores SIGTERM, so the stop waits out the grace period.
        dyno = c.start(make_spec("gone-2", command="trap '' TERM; while :; do sleep 1; done"))
        assert dyno.state == pb.DYNO_STATE_UP
    c = hostd.client()
    c.stop_async("gone-2", grace=2)
    # grpcio sends the call once its new channel has connected: wait until hostd has it
    deadline = time.monotonic() + 10
    while "Stopping all processes with SIGTERM" not in hostd.log_text():
        assert time.monotonic() < deadline, "the Stop did not reach hostd"
        time.sleep(0.01)
    time.sleep(0.3)
    c.close()
    with hostd.client() as c2:
        deadline = time.monotonic() + 30
        while True:
            resp = c2.get("gone-2", check=False)
            if resp.status.code == Code.NOT_FOUND:
                break  # stopped and forgotten
            assert resp.status.code == Code.OK, resp.status.message
            if resp.value.state not in LIVE_STATES:
                assert resp.value.state == pb.DYNO_STATE_DOWN, pb.DynoState.Name(resp.value.state)
                break
            assert time.monotonic() < deadline, "dyno gone-2 still stopping after 30 s"
            time.sleep(0.1)
    assert_healthy(hostd, before)


# -- the same dyno twice -------------------------------------------------------------------------------


def test_start_same_id_twice(hostd, make_spec):
    before = hostd.snapshot()
    with hostd.client() as c:
        first = c.start(make_spec("twice-1"))
        assert first.state == pb.DYNO_STATE_UP and first.pid > 0
        cgroups = sorted(hostd.find_cgroups("twice-1"))
        assert cgroups, "the dyno has no cgroup named for it"
        assert hostd.dyno_inits() == [first.pid], "the dyno's init is not the one in its record"
        for spec in (make_spec("twice-1"), make_spec("twice-1", command="sleep 2000")):
            resp = c.start(spec, check=False)
            expect_error(resp, Code.ALREADY_EXISTS, "twice-1")
        assert [d.spec.id for d in c.list()].count("twice-1") == 1
        again = c.get("twice-1")
        assert again.state == pb.DYNO_STATE_UP and again.pid == first.pid
        assert sorted(hostd.find_cgroups("twice-1")) == cgroups
        assert hostd.dyno_inits() == [first.pid], "a refused start changed the dyno's init"
        stopped = c.stop("twice-1", grace=1)
        assert stopped.state == pb.DYNO_STATE_DOWN
    assert_healthy(hostd, before)


def test_start_same_id_concurrently(hostd, make_spec):
    """Four clients start the same id at once: one dyno, one OK, the rest ALREADY_EXISTS."""
    before = hostd.snapshot()
    clients = [hostd.client() for _ in range(4)]
    results = [None] * len(clients)
    go = threading.Barrier(len(clients))

    def run(i):
        go.wait()
        results[i] = clients[i].start(make_spec("race-1"), check=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(code_name(r.status.code) for r in results)
    assert codes == ["ALREADY_EXISTS"] * 3 + ["OK"], codes
    for c in clients:
        c.close()
    with hostd.client() as c:
        assert [d.spec.id for d in c.list()].count("race-1") == 1
        assert len(hostd.dyno_inits()) == 1, "more than one dyno init runs"
        assert c.stop("race-1", grace=1).state == pb.DYNO_STATE_DOWN
    assert_healthy(hostd, before)


# -- calls ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 604801])
def test_drain_deadline_out_of_range(hostd, seconds):
    before = hostd.snapshot()
    with hostd.client() as c:
        resp = c.drain(seconds, check=False)
        expect_error(resp, Code.INVALID_ARGUMENT, "deadline_seconds", str(seconds))
        assert not c.host_info().draining  # nothing changed
    assert not os.path.exists(os.path.join(hostd.config["state-dir"], "drain"))
    assert_healthy(hostd, before)


@pytest.mark.parametrize("call", ["stop", "get", "logs"])
def test_unknown_dyno(hostd, call):
    before = hostd.snapshot()
    with hostd.client() as c:
        if call == "stop":
            resp = c.stop("no-such-dyno", grace=0, check=False)
        elif call == "get":
            resp = c.get("no-such-dyno", check=False)
        else:
            resp = c.logs("no-such-dyno", check=False)
        expect_error(resp, Code.NOT_FOUND, "no-such-dyno")
    assert_healthy(hostd, before)
