"""Bad input on hostd's socket: each case gets a clear error (or, for garbage, a closed
connection), hostd keeps serving other clients, and nothing is left behind: no dyno, no
cgroup, no layer folder, no mount, no process.

Every test takes a snapshot of what exists (hostd.snapshot()) before the bad input and checks
after it that hostd still answers a new client and that nothing new exists.
"""

import os
import random
import socket
import threading
import time

import pytest

from hostd_client import (
    ConnectionClosed,
    HostdClient,
    code_name,
    decode_varint,
    encode_varint,
    frame,
    make_request,
    pb,
    status_code,
)

# not the cgroup v2 tier: protocol validation, before any cgroup is made
pytestmark = pytest.mark.cgroup_independent

LIVE_STATES = (pb.STARTING, pb.UP, pb.STOPPING)


# -- helpers ------------------------------------------------------------------------------------


def expect_error(resp, code, *words):
    """resp carries status code (or one of codes) with a message naming each of words."""
    codes = code if isinstance(code, (tuple, list, set)) else (code,)
    got = status_code(resp)
    assert got in codes, (
        f"expected {'/'.join(code_name(c) for c in codes)}, got {code_name(got)}: "
        f"{resp.status.message!r}"
    )
    msg = resp.status.message
    assert msg, f"{code_name(got)} without a message"
    for w in words:
        assert w in msg, f"the message {msg!r} does not name {w!r}"
    assert resp.WhichOneof("result") is None, f"an error reply with a result: {resp}"


def assert_no_dyno(hostd, dyno_id):
    """hostd knows no dyno dyno_id, and no cgroup folder has its name."""
    with hostd.client() as c:
        resp = c.get(dyno_id, check=False)
        expect_error(resp, pb.NOT_FOUND)
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
        # The connection stays usable after an error.
        c.list()
    assert_healthy(hostd, before, f"a refused start of {spec.id!r}")


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


def expect_closed_or_error(c, codes, timeout=10.0):
    """hostd either closes the connection or answers with one of codes (then may close)."""
    try:
        resp = c.recv(timeout)
    except ConnectionClosed:
        return None
    except TimeoutError:
        pytest.fail(f"hostd neither answered nor closed the connection within {timeout} s")
    expect_error(resp, codes)
    return resp


# -- dyno specs over the configured limits --------------------------------------------------------


def test_unknown_size(hostd, make_spec):
    start_rejected(hostd, make_spec("size-1", size="galactic-9x"), pb.INVALID_ARGUMENT, "size")
    assert_no_dyno(hostd, "size-1")


def test_command_over_max_command(hostd, make_spec):
    limit = int(hostd.config["max-command"])
    command = "sleep 1000 #"
    command += "x" * (limit + 1 - len(command))
    assert len(command.encode()) == limit + 1
    start_rejected(hostd, make_spec("cmd-1", command=command), pb.INVALID_ARGUMENT, "command")
    assert_no_dyno(hostd, "cmd-1")


def test_env_over_max_env_count(hostd, make_spec):
    limit = int(hostd.config["max-env"])
    env = [(f"VAR_{i}", "1") for i in range(limit + 1)]
    start_rejected(hostd, make_spec("envn-1", env=env), pb.INVALID_ARGUMENT, "env")
    assert_no_dyno(hostd, "envn-1")


def test_env_over_max_env_bytes(hostd, make_spec):
    limit = int(hostd.config["max-env-bytes"])
    assert int(hostd.config["max-env"]) >= 2
    value = "v" * (limit // 2 + 16)
    env = [("BIG_ONE", value), ("BIG_TWO", value)]
    start_rejected(hostd, make_spec("envb-1", env=env), pb.INVALID_ARGUMENT, "env")
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
    start_rejected(hostd, make_spec(dyno_id), pb.INVALID_ARGUMENT, *words)
    # What a bad id could have turned into must not exist either.
    for name in {dyno_id.split("\x00")[0], os.path.basename(dyno_id), "escape", "b"} - {"", ".", ".."}:
        assert hostd.find_cgroups(name) == [], f"a cgroup named {name!r} exists"
    assert not os.path.exists("/tmp/hostd-escape")
    if dyno_id.startswith("badnul") or dyno_id.startswith("bad\x00"):
        assert_no_dyno(hostd, dyno_id.split("\x00")[0])


def test_dyno_id_not_utf8(hostd, make_spec):
    """An id of bytes that are not UTF-8 (Python's protobuf cannot even build it): refused, or
    the connection closed as garbage."""
    placeholder = "PLACEHOLDERID"
    req = make_request("start", pb.StartRequest(spec=make_spec(placeholder)), req_id=7)
    raw = req.SerializeToString()
    assert raw.count(placeholder.encode()) == 1
    raw = raw.replace(placeholder.encode(), b"\xff\xfe\xc0\x80" + b"x" * (len(placeholder) - 4))
    before = hostd.snapshot()
    c = hostd.client()
    c.send_raw(frame(raw))
    resp = expect_closed_or_error(c, (pb.INVALID_ARGUMENT,))
    if resp is not None:
        assert resp.id == 7
    c.close()
    assert_healthy(hostd, before)


def test_stop_with_bad_id(hostd):
    before = hostd.snapshot()
    with hostd.client() as c:
        expect_error(c.stop("../escape", grace=0, check=False), pb.INVALID_ARGUMENT, "id")
        expect_error(c.stop("", grace=0, check=False), pb.INVALID_ARGUMENT, "id")
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
    start_rejected(hostd, make_spec(dyno_id, **{field: path}), pb.INVALID_ARGUMENT, field)
    assert_no_dyno(hostd, dyno_id)


# -- framing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("announced", ["max-plus-one", "huge"])
def test_frame_over_max_frame(hostd, announced):
    """A length prefix over max-frame: hostd refuses it before reading (or allocating) the
    body: it closes the connection or answers RESOURCE_EXHAUSTED / INVALID_ARGUMENT."""
    limit = int(hostd.config["max-frame"])
    n = limit + 1 if announced == "max-plus-one" else (1 << 62)
    before = hostd.snapshot()
    c = hostd.client()
    try:
        c.send_raw(encode_varint(n) + b"\x08\x01" + b"\x00" * 4096)
    except ConnectionClosed:
        pass
    expect_closed_or_error(c, (pb.RESOURCE_EXHAUSTED, pb.INVALID_ARGUMENT))
    c.close()
    assert_healthy(hostd, before)


def test_malformed_length_prefix(hostd):
    """Eleven bytes with the continuation bit: no varint is that long."""
    before = hostd.snapshot()
    c = hostd.client()
    try:
        c.send_raw(b"\xff" * 11 + b"\x01")
    except ConnectionClosed:
        pass
    c.wait_closed(10)
    c.close()
    assert_healthy(hostd, before)


@pytest.mark.parametrize("cut", ["in-prefix", "after-prefix", "half", "all-but-one"])
def test_truncated_frame_then_close(hostd, make_spec, cut):
    """Part of a valid Start, then the client closes: no dyno starts."""
    spec = make_spec("trunc-1", env=[("PAD", "p" * 300)])  # over 127 bytes: a 2-byte prefix
    data = frame(make_request("start", pb.StartRequest(spec=spec), req_id=1).SerializeToString())
    v = decode_varint(data)
    assert v is not None and v[1] == 2
    keep = {"in-prefix": 1, "after-prefix": 2, "half": len(data) // 2, "all-but-one": len(data) - 1}[cut]
    before = hostd.snapshot()
    c = hostd.client()
    c.send_raw(data[:keep])
    time.sleep(0.2)
    c.close()
    time.sleep(0.2)
    assert_healthy(hostd, before)
    assert_no_dyno(hostd, "trunc-1")


@pytest.mark.parametrize("seed", [1, 2, 6, 9])
def test_random_bytes(hostd, seed):
    """64 KiB of random bytes (fixed seed): hostd closes the connection."""
    limit = int(hostd.config["max-frame"])
    rng = random.Random(seed)
    data = rng.randbytes(65536)
    # Make sure the bytes are garbage to any parser: a first frame over the limit, or a
    # complete first frame that is not a protobuf message at the wire level.
    n, start = decode_varint(data)
    if n <= limit:
        if start + n > len(data):
            data += rng.randbytes(start + n - len(data))
        why = wire_invalid(data[start : start + n])
        assert why, f"seed {seed} makes a frame that may parse: choose another seed"
    before = hostd.snapshot()
    c = hostd.client()
    try:
        c.send_raw(data)
    except ConnectionClosed:
        pass
    replies = c.wait_closed(10)
    for r in replies:
        assert status_code(r) != pb.OK, f"garbage got an OK reply: {r}"
    c.close()
    assert_healthy(hostd, before)


def test_zero_length_frame(hostd):
    """A zero-length frame is an empty Request: no call. hostd answers with an error (id 0)
    or closes the connection; it does not crash or act."""
    before = hostd.snapshot()
    c = hostd.client()
    c.send_raw(b"\x00")
    expect_closed_or_error(c, (pb.INVALID_ARGUMENT, pb.UNIMPLEMENTED))
    c.close()
    assert_healthy(hostd, before)


@pytest.mark.parametrize("what", ["no-call", "unknown-call"])
def test_request_without_known_call(hostd, what):
    """A Request with no call set, or with a call from a newer API (an unknown field): an
    error that echoes the id, and the connection stays usable."""
    before = hostd.snapshot()
    raw = pb.Request(id=41).SerializeToString()
    if what == "unknown-call":
        raw += encode_varint((999 << 3) | 2) + b"\x00"  # field 999, an empty message
    with hostd.client() as c:
        c.send_raw(frame(raw))
        resp = c.recv_for(41)
        expect_error(resp, (pb.INVALID_ARGUMENT, pb.UNIMPLEMENTED))
        c.list()
    assert_healthy(hostd, before)


# -- clients that misbehave --------------------------------------------------------------------------


def test_idle_clients_do_not_block_others(hostd):
    """Clients that connect and send nothing, or part of a frame, then idle: others are served
    meanwhile, and the idle ones are served when they finish their frames."""
    before = hostd.snapshot()
    idle = hostd.client()
    partial = hostd.client()
    req = make_request("list", req_id=5)
    data = frame(req.SerializeToString())
    partial.send_raw(data[:1])
    time.sleep(0.2)
    for _ in range(3):
        t0 = time.monotonic()
        with hostd.client(timeout=5) as other:
            other.list()
        assert time.monotonic() - t0 < 2.0, "a List took over 2 s while clients idled"
    # The idle clients are still connected and still served.
    partial.send_raw(data[1:])
    assert status_code(partial.recv_for(5, 5)) == pb.OK
    idle.list(timeout=5)
    idle.close()
    partial.close()
    assert_healthy(hostd, before)


def test_many_idle_clients(hostd):
    """Fifty clients idle at once, each with a partial frame: hostd still serves."""
    before = hostd.snapshot()
    idlers = [hostd.client() for _ in range(50)]
    for i, c in enumerate(idlers):
        c.send_raw(b"\x80" if i % 2 else b"\x05\x08")
    with hostd.client(timeout=5) as other:
        other.list()
    for c in idlers:
        c.close()
    assert_healthy(hostd, before)


def test_client_disconnects_after_start_request(hostd, make_spec):
    """A client sends a whole Start and goes away before the reply. hostd must not die writing
    the reply (EPIPE, SIGPIPE); the dyno it started is a normal dyno that can be stopped."""
    before = hostd.snapshot()
    c = hostd.client()
    c.send(make_request("start", pb.StartRequest(spec=make_spec("gone-1"))))
    c.close()
    with hostd.client() as c2:
        deadline = time.monotonic() + 30
        while True:
            resp = c2.get("gone-1", check=False)
            if status_code(resp) == pb.NOT_FOUND:
                dyno = None  # hostd dropped the start with its client: fine too
            else:
                assert status_code(resp) == pb.OK, resp.status.message
                dyno = resp.get.dyno
            if dyno is None or dyno.state not in (pb.STARTING, pb.STOPPING):
                break
            assert time.monotonic() < deadline, "dyno gone-1 still starting after 30 s"
            time.sleep(0.05)
        if dyno is not None and dyno.state == pb.UP:
            assert len(hostd.dyno_inits()) == 1
            assert c2.stop("gone-1", grace=1).state == pb.DOWN
        elif dyno is not None:
            assert dyno.state in (pb.DOWN, pb.CRASHED), pb.DynoState.Name(dyno.state)
    assert_healthy(hostd, before)


def test_client_disconnects_during_stop(hostd, make_spec):
    """A client asks for a stop with a grace period and goes away while hostd waits: the stop
    completes all the same."""
    before = hostd.snapshot()
    with hostd.client() as c:
        # The shell ignores SIGTERM, so the stop waits out the grace period.
        dyno = c.start(make_spec("gone-2", command="trap '' TERM; while :; do sleep 1; done"))
        assert dyno.state == pb.UP
    c = hostd.client()
    c.send(make_request("stop", pb.StopRequest(id="gone-2", grace_seconds=2)))
    time.sleep(0.3)
    c.close()
    with hostd.client() as c2:
        deadline = time.monotonic() + 30
        while True:
            resp = c2.get("gone-2", check=False)
            if status_code(resp) == pb.NOT_FOUND:
                break  # stopped and forgotten
            assert status_code(resp) == pb.OK, resp.status.message
            if resp.get.dyno.state not in LIVE_STATES:
                assert resp.get.dyno.state == pb.DOWN, pb.DynoState.Name(resp.get.dyno.state)
                break
            assert time.monotonic() < deadline, "dyno gone-2 still stopping after 30 s"
            time.sleep(0.1)
    assert_healthy(hostd, before)


# -- the same dyno twice -------------------------------------------------------------------------------


def test_start_same_id_twice(hostd, make_spec):
    before = hostd.snapshot()
    with hostd.client() as c:
        first = c.start(make_spec("twice-1"))
        assert first.state == pb.UP and first.pid > 0
        cgroups = sorted(hostd.find_cgroups("twice-1"))
        assert cgroups, "the dyno has no cgroup named for it"
        assert hostd.dyno_inits() == [first.pid], "the dyno's init is not the one in its record"
        for spec in (make_spec("twice-1"), make_spec("twice-1", command="sleep 2000")):
            resp = c.start(spec, check=False)
            expect_error(resp, pb.ALREADY_EXISTS, "twice-1")
        assert [d.spec.id for d in c.list()].count("twice-1") == 1
        again = c.get("twice-1")
        assert again.state == pb.UP and again.pid == first.pid
        assert sorted(hostd.find_cgroups("twice-1")) == cgroups
        assert hostd.dyno_inits() == [first.pid], "a refused start changed the dyno's init"
        stopped = c.stop("twice-1", grace=1)
        assert stopped.state == pb.DOWN
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
    codes = sorted(code_name(status_code(r)) for r in results)
    assert codes == ["ALREADY_EXISTS"] * 3 + ["OK"], codes
    for c in clients:
        c.close()
    with hostd.client() as c:
        assert [d.spec.id for d in c.list()].count("race-1") == 1
        assert len(hostd.dyno_inits()) == 1, "more than one dyno init runs"
        assert c.stop("race-1", grace=1).state == pb.DOWN
    assert_healthy(hostd, before)


# -- calls ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 604801])
def test_drain_deadline_out_of_range(hostd, seconds):
    before = hostd.snapshot()
    with hostd.client() as c:
        resp = c.request("drain", pb.DrainRequest(deadline_seconds=seconds), check=False)
        expect_error(resp, pb.INVALID_ARGUMENT, "drain.deadline_seconds", str(seconds))
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
        expect_error(resp, pb.NOT_FOUND, "no-such-dyno")
    assert_healthy(hostd, before)
