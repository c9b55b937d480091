"""The kernel gives a bridge at most 1023 ports: netd's 1024th attached dyno is refused with
RESOURCE_EXHAUSTED and a message that says so, leaves nothing behind, and fits once another
dyno has gone (docs/INTERNALS.md, Limits at scale)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hostd_client import BUILD_DIR  # noqa: E402
from test_netd import lab  # noqa: E402,F401  (the fixture)

import pytest  # noqa: E402

# Not the cgroup v2 tier: a bridge's ports do not depend on the cgroup version (and 1024
# attaches would outlast the test's time under qemu).
pytestmark = pytest.mark.cgroup_independent

PORTS = 1023
RESOURCE_EXHAUSTED = 8

# Runs in the lab's "host" namespaces: makes COUNT network namespaces (files bind-mounted over
# namespaces no process holds, as bench/netd does), pipelines an Attach of each as a worker,
# then a Detach of the first and a second Attach of the last; prints what netd answered.
HELPER = r"""
import ctypes, json, os, socket, sys
sys.path.insert(0, sys.argv[4])
import netd_pb2 as npb
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
path, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    f = os.path.join(folder, f"full-{i}")
    open(f, "w").close()
    assert libc.unshare(0x40000000) == 0
    assert libc.mount(b"/proc/thread-self/ns/net", f.encode(), None, 0x1000, None) == 0
    assert libc.setns(host, 0x40000000) == 0
s = socket.socket(socket.AF_UNIX)
s.connect(path)
def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
def send(reqs):
    data = b""
    for r in reqs:
        p = r.SerializeToString()
        data += varint(len(p)) + p
    s.sendall(data)
buf = b""
def recv():
    global buf
    while True:
        n = shift = used = 0
        for used, b in enumerate(buf):
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            used = None
        if used is not None and buf and len(buf) >= used + 1 + n:
            r = npb.Response.FromString(buf[used + 1:used + 1 + n])
            buf = buf[used + 1 + n:]
            return r
        buf += s.recv(65536)
def attach(i, rid):
    r = npb.Request(id=rid)
    r.attach.CopyFrom(npb.AttachRequest(dyno_id=f"full-{i}", netns_path=os.path.join(folder, f"full-{i}")))
    return r
send([attach(i, i + 1) for i in range(count)])
codes = {}
for _ in range(count):
    r = recv()
    codes[r.id - 1] = (r.status.code, r.status.message) if r.HasField("status") else (0, "")
d = npb.Request(id=count + 1)
d.detach.CopyFrom(npb.DetachRequest(dyno_id="full-0"))
send([d, attach(count - 1, count + 2)])
after = [recv(), recv()]
print(json.dumps({"ok": sorted(i for i, c in codes.items() if c[0] == 0),
                  "refused": {i: c for i, c in codes.items() if c[0] != 0},
                  "again": [(r.status.code, r.status.message) if r.HasField("status") else (0, "") for r in after]}))
"""


def test_the_1024th_dyno_is_refused_with_the_reason(lab):
    conf = os.path.join(lab.dir, "big.conf")
    with open(lab.config) as f, open(conf, "w") as g:
        g.write(f.read().replace("subnet = 10.217.0.0/24", "subnet = 10.217.0.0/20"))
    c = lab.start_netd(conf)
    c.close()
    out = lab.h("/usr/bin/python3", "-c", HELPER, lab.socket, lab.netns_dir, str(PORTS + 1),
                os.path.join(BUILD_DIR, "proto")).stdout
    got = json.loads(out)
    assert got["ok"] == list(range(PORTS))
    assert list(got["refused"]) == [str(PORTS)]
    code, message = got["refused"][str(PORTS)]
    assert code == RESOURCE_EXHAUSTED and "at most 1023 ports" in message, message
    assert len(lab.dyno_veths()) == PORTS
    # the refused attach left nothing in the way: a port freed is taken by it
    assert got["again"][0][0] == 0 and got["again"][1] == [0, ""], got["again"]
    assert len(lab.dyno_veths()) == PORTS
