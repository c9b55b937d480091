"""hostd with netd: a dyno's start attaches it to the network before its command runs, inspect
shows its address and host port, its end detaches it, and hostd's start collects what netd
holds for dynos that no longer run.

Good neighbour: hostd and netd both run inside the private "host" network and mount
namespaces of test_netd.py's Lab (entered with nsenter), so every veth, address and nftables
element lives there and goes with it. The "outside" is one more namespace joined to that host.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_hostd_netd.py
"""

import ipaddress
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hostd_client import Code, pb  # noqa: E402
from test_netd import (  # noqa: E402
    OUTSIDE_HOST_IP, OUTSIDE_IP, PORT_MAX, PORT_MIN, SUBNET, TABLE, attach, connect, lab, listen,
    METADATA_IP, make_outside, npb, ok, run)  # lab: the fixture

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: netd's wiring of a dyno
    pytest.mark.cgroup_independent,
]


def hostd_in(lab, hostd_factory, **overrides):
    """A hostd in the lab's host namespaces, speaking to the lab's netd."""
    h = hostd_factory(start=False, **{"netd-socket": lab.socket, "netns-dir": lab.netns_dir},
                      **overrides)
    h.command_prefix = ["nsenter", "-t", str(lab.host.pid), "-n", "-m"]
    return h.start()


def web_spec(make_spec, dyno_id, name="web.1"):
    return make_spec(dyno_id, name=name, type=pb.DYNO_TYPE_WEB, port=5000, command="/app/bin/web")


HTTP_GET = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    print(data.split(b"\\r\\n\\r\\n", 1)[-1].decode().strip())
except OSError as e:
    print("failed", e)
"""


def fetch(lab, pid, addr, port, want, timeout=15.0):
    """An HTTP GET of / from pid's network namespace, until the body is want (the web server
    may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        got = run("nsenter", "-t", str(pid), "-n", "/usr/bin/python3", "-c", HTTP_GET, addr,
                  str(port)).stdout.strip()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def netd_list(lab):
    c = lab.netd_client
    return {a.dyno_id: a for a in ok(c.call("list", npb.ListRequest())).list.attachments}


def netns_names(lab):
    return sorted(os.listdir(lab.netns_dir))


def netns_mounts(lab):
    return [l for l in lab.h("cat", "/proc/self/mountinfo").stdout.splitlines()
            if lab.netns_dir in l]


def wait_detached(lab, dyno_id, timeout=10.0):
    """Until netd holds nothing for the dyno: no attachment, no veth, no nftables element (the
    detach is sent when the dyno's processes are gone and answered soon after)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        if dyno_id in netd_list(lab):
            left.append("attachment")
        if lab.dyno_veths():
            left.append(f"veths {lab.dyno_veths()}")
        if not left:
            # read after the attachment is gone: netd removes a dyno's elements first, so a
            # table read before could still hold them
            return lab.h("nft", "list", "table", "inet", TABLE).stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"dyno {dyno_id} still has {left}")
        time.sleep(0.05)


def test_web_dyno_is_wired_reachable_and_walled_off(lab, hostd_factory, make_spec):
    lab.netd_client = lab.start_netd()
    h = hostd_in(lab, hostd_factory)
    outside = make_outside(lab)
    c = h.client()

    d = c.start(web_spec(make_spec, "web-1"))
    assert d.state in (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_UP)  # up once it listens on $PORT
    assert c.wait_state("web-1", pb.DYNO_STATE_UP).address == d.address
    assert ipaddress.ip_address(d.address) in ipaddress.ip_network(SUBNET)
    assert PORT_MIN <= d.host_port <= PORT_MAX
    # inspect says the same as netd
    got = c.get("web-1")
    assert (got.address, got.host_port) == (d.address, d.host_port)
    a = netd_list(lab)["web-1"]
    assert (a.address, a.host_port) == (d.address, d.host_port)
    # the command found eth0 wired when it started: its address is in the dyno's namespace
    ip = run("nsenter", "-t", str(d.pid), "-n", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"inet {d.address}/" in ip
    assert netns_names(lab) == ["web-1"]

    # inbound: the host port reaches the command on $PORT
    assert fetch(lab, outside.pid, OUTSIDE_HOST_IP, d.host_port, "hello from web.1") == \
        "hello from web.1"

    # a worker: an address and outbound access, no host port
    w = c.start(make_spec("worker-1", name="worker.1"))
    assert ipaddress.ip_address(w.address) in ipaddress.ip_network(SUBNET)
    assert w.address != d.address and w.host_port == 0
    srv = listen(lab, outside.pid, 8080, "outside", seconds=120)  # ended below
    assert connect(lab, w.pid, OUTSIDE_IP, 8080) == "hello from outside"
    srv.kill()
    srv.communicate()

    # walled off: the worker reaches neither the web dyno nor the metadata address, which
    # a listener in the outside namespace holds (and a control address there is reachable)
    # (make_outside holds METADATA_IP there, routed from the host)
    meta = listen(lab, outside.pid, 80, "metadata", seconds=5)
    assert connect(lab, w.pid, METADATA_IP, 80).startswith("failed")
    assert connect(lab, w.pid, d.address, 5000).startswith("failed")
    out, _ = meta.communicate()
    assert out.strip() == "", f"the metadata listener saw {out!r}"
    # the control: the same listener, the outside's own address, is reachable
    ctl = listen(lab, outside.pid, 80, "control", seconds=120)  # ended below
    assert connect(lab, w.pid, OUTSIDE_IP, 80) == "hello from control"
    ctl.kill()
    ctl.communicate()

    # stop: after the last process, nothing of the dyno's network is left
    c.stop("web-1")
    c.stop("worker-1")
    wait_detached(lab, "web-1")
    nft = wait_detached(lab, "worker-1")
    assert d.address not in nft and w.address not in nft and str(d.host_port) not in nft
    assert netns_names(lab) == [] and netns_mounts(lab) == []
    # inspect no longer names an address that is free again
    assert c.get("web-1").address == "" and c.get("web-1").host_port == 0
    with open(os.path.join(lab.state_dir, "ipam")) as f:
        assert "web-1" not in f.read()


def test_restart_rewires_the_dyno(lab, hostd_factory, make_spec):
    lab.netd_client = lab.start_netd()
    h = hostd_in(lab, hostd_factory)
    outside = make_outside(lab)
    c = h.client()
    c.start(web_spec(make_spec, "web-1"))
    # up (listening on $PORT): a restart overlaps (a STARTING dyno would stop first)
    d = c.wait_state("web-1", pb.DYNO_STATE_UP)
    r = c.restart("web-1", grace=2)
    assert r.state in (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_UP) and r.pid != d.pid and r.address and r.host_port
    c.wait_state("web-1", pb.DYNO_STATE_UP)
    # A restart of an up dyno overlaps as daily cycling does: the replacement is wired beside
    # the old instance, as web-1@1, and the old one's network goes with it.
    deadline = time.monotonic() + 15
    while list(netd_list(lab)) != ["web-1@1"] or len(lab.dyno_veths()) != 1:
        assert time.monotonic() < deadline, (netd_list(lab), lab.dyno_veths())
        time.sleep(0.05)
    assert fetch(lab, outside.pid, OUTSIDE_HOST_IP, r.host_port, "hello from web.1") == \
        "hello from web.1"
    c.stop("web-1")
    wait_detached(lab, "web-1@1")


@pytest.mark.cgroup  # a cycle's two cgroups
def test_daily_cycle_wires_the_replacement_beside_the_old_one(lab, hostd_factory, make_spec):
    lab.netd_client = lab.start_netd()
    h = hostd_in(lab, hostd_factory, cycle_after="8s", cycle_jitter="0")
    outside = make_outside(lab)
    c = h.client()
    spec = web_spec(make_spec, "web-c")
    spec.command = "trap 'sleep 3; exit 0' TERM; /app/bin/web & wait"
    d = c.start(spec)
    c.wait_state("web-c", pb.DYNO_STATE_UP)
    deadline = time.monotonic() + 20
    while "web-c@1" not in netd_list(lab):
        assert time.monotonic() < deadline, netd_list(lab)
        time.sleep(0.05)
    # the old instance still stops: both are attached, each with its own veth
    assert set(netd_list(lab)) == {"web-c", "web-c@1"}
    assert len(lab.dyno_veths()) == 2
    assert sorted(netns_names(lab)) == ["web-c", "web-c@1"]
    r = c.wait_state("web-c", pb.DYNO_STATE_UP)
    assert r.host_port and r.address and r.address != d.address
    assert fetch(lab, outside.pid, OUTSIDE_HOST_IP, r.host_port, "hello from web.1") == \
        "hello from web.1"
    # then the old one is gone, and its network with it
    deadline = time.monotonic() + 15
    while "web-c" in netd_list(lab) or len(lab.dyno_veths()) != 1:
        assert time.monotonic() < deadline, (netd_list(lab), lab.dyno_veths())
        time.sleep(0.05)
    assert netns_names(lab) == ["web-c@1"]
    c.stop("web-c")
    wait_detached(lab, "web-c@1")
    assert netns_names(lab) == [] and netns_mounts(lab) == []


def test_no_netd_fails_the_start_and_leaves_nothing(lab, hostd_factory, make_spec):
    h = hostd_in(lab, hostd_factory)  # netd is not running
    c = h.client()
    before = h.snapshot()
    resp = c.start(make_spec("worker-1"), check=False)
    assert resp.status.code == Code.UNAVAILABLE, resp
    assert "netd" in resp.status.message and lab.socket in resp.status.message
    h.assert_unchanged(before, "a start without netd")
    assert netns_names(lab) == [] and netns_mounts(lab) == []
    assert c.get("worker-1", check=False).status.code == Code.NOT_FOUND

    # netd comes up: the next start connects
    lab.netd_client = lab.start_netd()
    d = c.start(make_spec("worker-1"))
    assert d.state == pb.DYNO_STATE_UP and d.address
    c.stop("worker-1")
    wait_detached(lab, "worker-1")


@pytest.mark.cgroup  # re-adoption and leftovers
def test_hostd_restart_keeps_addresses_and_collects_the_gone(lab, hostd_factory, make_spec):
    lab.netd_client = lab.start_netd()
    h = hostd_in(lab, hostd_factory)
    c = h.client()
    keep = c.start(make_spec("keep-1"))
    gone = c.start(make_spec("gone-1", name="worker.2"))
    # netd also holds a dyno hostd never had (a namespace file hostd did not make)
    lab.make_dyno("ghost-1")
    ok(attach(lab.netd_client, "ghost-1", lab))
    assert sorted(netd_list(lab)) == ["ghost-1", "gone-1", "keep-1"]

    h.kill9()
    os.kill(gone.pid, 9)  # the dyno's init, started by this test's hostd
    h.start()
    c = h.client()
    got = c.get("keep-1")
    assert got.state == pb.DYNO_STATE_UP and got.pid == keep.pid
    assert (got.address, got.host_port) == (keep.address, keep.host_port)
    assert c.get("gone-1").state == pb.DYNO_STATE_CRASHED

    deadline = time.monotonic() + 10
    while sorted(netd_list(lab)) != ["keep-1"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(netd_list(lab)) == ["keep-1"]
    assert netns_names(lab) == ["keep-1"]
    assert len(lab.dyno_veths()) == 1
    c.stop("keep-1")
    wait_detached(lab, "keep-1")
    assert netns_names(lab) == []
