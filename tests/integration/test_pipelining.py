"""Many calls at once on one connection: every one is answered, each with its own answer,
whatever the order the answers come in; by hostd (gRPC: concurrent streams on one HTTP/2
connection) and by netd (its framed protocol: more requests in one write than a connection's
batch of 64 per wake-up of the loop). Before, what one read brought beyond the batch waited in
the reader for more bytes that never came, and bench/scale's hundred Detach calls timed out."""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hostd_client import Code, pb  # noqa: E402
from test_netd import decode_varint, encode_varint, lab, npb  # noqa: E402,F401  (lab: the fixture)

# not the cgroup v2 tier: request batching on the sockets
pytestmark = pytest.mark.cgroup_independent

CALLS = 200  # well past netd's batch of 64


def test_hostd_answers_every_concurrent_call_on_one_channel(hostd_factory, make_spec):
    # all of them may be in flight at once: max-inflight (64 by default) is test_grpc_api's
    hostd = hostd_factory(max_inflight=CALLS + 8)
    c = hostd.client(timeout=30)
    c.start(make_spec("pipe-1", command="sleep 1000"))
    c.start(make_spec("pipe-2", name="worker.2", command="sleep 1000"))
    # Sent together, before any is answered: GetDyno of dynos that exist and of ones that do
    # not, ListDynos and GetHost, interleaved.
    pending = []
    for i in range(CALLS):
        kind = i % 4
        if kind == 0:
            pending.append((kind, i, c.call_async("GetDyno", pb.GetDynoRequest(id=f"nope-{i}"))))
        elif kind == 1:
            want = f"pipe-{1 + (i // 4) % 2}"
            pending.append((kind, want, c.call_async("GetDyno", pb.GetDynoRequest(id=want))))
        elif kind == 2:
            pending.append((kind, i, c.call_async("ListDynos", pb.ListDynosRequest())))
        else:
            pending.append((kind, i, c.call_async("GetHost", pb.GetHostRequest())))
    for kind, arg, p in pending:
        r = p.reply(timeout=30)
        if kind == 0:
            assert r.status.code == Code.NOT_FOUND, r
            assert f"nope-{arg}" in r.status.message, (arg, r.status)  # its own id, no other
        elif kind == 1:
            assert r.ok and r.value.dyno.spec.id == arg, (arg, r)
        elif kind == 2:
            assert r.ok and sorted(d.spec.id for d in r.value.dynos) == ["pipe-1", "pipe-2"]
        else:
            assert r.ok and r.value.host.dynos == 2, r
    c.stop("pipe-1", grace=1)
    c.stop("pipe-2", grace=1)


def test_a_slow_call_does_not_hold_up_the_ones_after_it(hostd, make_spec):
    """A Stop that waits for its grace, and calls sent after it on the same channel: they are
    answered first, and the Stop's answer still comes, to its own call."""
    c = hostd.client(timeout=30)
    c.start(make_spec("pipe-slow", command="trap '' TERM; echo ready; exec sleep 1000"))
    deadline = time.monotonic() + 20
    while "ready" not in c.log_texts("pipe-slow"):
        assert time.monotonic() < deadline, c.log_texts("pipe-slow")
        time.sleep(0.05)
    t0 = time.monotonic()
    stop = c.stop_async("pipe-slow", grace=3)
    quick = [c.call_async("GetDyno", pb.GetDynoRequest(id="pipe-slow")) for _ in range(50)]
    states = [p.result(timeout=10).dyno.state for p in quick]
    assert time.monotonic() - t0 < 2.5, "quick calls waited for the stop's grace"
    assert not stop.done()
    assert set(states) == {pb.DYNO_STATE_STOPPING}, states
    down = stop.result(timeout=30)
    assert down.spec.id == "pipe-slow" and down.state == pb.DYNO_STATE_DOWN
    assert down.exit.error == "R12" and time.monotonic() - t0 >= 3


def test_netd_answers_every_pipelined_request(lab):
    c = lab.start_netd()
    data = b""
    for i in range(CALLS):
        req = npb.Request(id=i + 1)
        req.list.CopyFrom(npb.ListRequest())
        payload = req.SerializeToString()
        data += encode_varint(len(payload)) + payload
    assert len(data) < 16384  # one write, one read
    c.sock.settimeout(10)
    c.sock.sendall(data)
    got = []
    while len(got) < CALLS:
        d = decode_varint(c.buf) if c.buf else None
        if d and len(c.buf) >= d[1] + d[0]:
            got.append(npb.Response.FromString(c.buf[d[1]:d[1] + d[0]]).id)
            c.buf = c.buf[d[1] + d[0]:]
            continue
        chunk = c.sock.recv(65536)  # socket.timeout here is the bug
        assert chunk, "netd closed the connection"
        c.buf += chunk
    assert got == list(range(1, CALLS + 1))
    c.close()
