"""More requests in one write than a connection's batch (64 per wake-up of the loop): every one
is answered, by hostd and by netd. Before, what one read brought beyond the batch waited in the
reader for more bytes that never came, and bench/scale's hundred Detach calls timed out."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostd_client  # noqa: E402
from hostd_client import frame, make_request, pb  # noqa: E402
from test_netd import lab, npb  # noqa: E402,F401  (lab: the fixture)

# not the cgroup v2 tier: request batching on the sockets
pytestmark = pytest.mark.cgroup_independent

CALLS = 200  # well past the batch of 64, and small enough for one read


def test_hostd_answers_every_pipelined_request(hostd):
    c = hostd.client(timeout=10)
    data = b"".join(frame(make_request("get", pb.GetRequest(id=f"nope-{i}"), req_id=i + 1)
                          .SerializeToString()) for i in range(CALLS))
    assert len(data) < 16384
    c.send_raw(data)
    ids = [c.recv(timeout=10).id for _ in range(CALLS)]
    assert ids == list(range(1, CALLS + 1))


def test_netd_answers_every_pipelined_request(lab):
    c = lab.start_netd()
    data = b""
    for i in range(CALLS):
        req = npb.Request(id=i + 1)
        req.list.CopyFrom(npb.ListRequest())
        data += hostd_client.frame(req.SerializeToString())
    c.sock.settimeout(10)
    c.sock.sendall(data)
    got = []
    while len(got) < CALLS:
        d = hostd_client.decode_varint(c.buf) if c.buf else None
        if d and len(c.buf) >= d[1] + d[0]:
            got.append(npb.Response.FromString(c.buf[d[1]:d[1] + d[0]]).id)
            c.buf = c.buf[d[1] + d[0]:]
            continue
        chunk = c.sock.recv(65536)  # socket.timeout here is the bug
        assert chunk, "netd closed the connection"
        c.buf += chunk
    assert got == list(range(1, CALLS + 1))
    c.close()
