"""Who may use hostd's socket: root may do everything; members of read-group may connect and
call the methods that change nothing (api.c's table marks them read-only: GetDyno, ListDynos,
GetHost, SubscribeEvents, SubscribeMetrics, Logs, ListImages) and get PERMISSION_DENIED for
the others; anyone else cannot connect. The peer is told by the kernel (SO_PEERCRED,
SO_PEERGROUPS), not by anything the client says.

The tests run hostctl, and a stock gRPC client (python3-grpcio), as uid 65534 with a
supplementary group that exists nowhere else (a number: read-group takes one), so no user or
group is added to the machine.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_authz.py
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import BUILD_DIR
from hostd_client import Code, pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: peer credentials on the socket
    pytest.mark.cgroup_independent,
]

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
NOBODY = 65534
READERS = 47113  # the test's read-group


def hostctl_as(h, groups, *args):
    def drop():
        os.setgroups(groups)
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    return subprocess.run([HOSTCTL, "--socket", h.socket_path, *args], capture_output=True,
                          text=True, timeout=60, preexec_fn=drop)


def open_up(h):
    """The test's folder is 0700; the socket's own mode is what is tested."""
    d = os.path.dirname(h.socket_path)
    while d.startswith(h.tmp):
        os.chmod(d, 0o711)
        d = os.path.dirname(d)


def test_readers_read_and_may_not_act(hostd_factory, make_spec):
    h = hostd_factory(read_group=str(READERS))
    open_up(h)
    st = os.stat(h.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == READERS and st.st_uid == 0
    c = h.client()
    d = c.start(make_spec("authz-1", command="echo hello; sleep 1000"))
    c.wait_state("authz-1", pb.DYNO_STATE_UP)

    for args in (["ps"], ["inspect", "authz-1"], ["logs", "authz-1"], ["host"],
                 ["events"], ["images", "ls"]):
        r = hostctl_as(h, [READERS], *args)
        assert r.returncode == 0, (args, r.stderr)
    assert "authz-1" in hostctl_as(h, [READERS], "ps").stdout

    for args in (["stop", "authz-1"], ["restart", "authz-1"],
                 ["exec", "authz-1", "--", "true"]):
        r = hostctl_as(h, [READERS], *args)
        assert r.returncode != 0 and "permission denied" in r.stderr, (args, r.stderr)
    # nothing changed, and hostd says why it refused
    got = c.get("authz-1")
    assert got.state == pb.DYNO_STATE_UP and got.pid == d.pid and got.restarts == 0
    assert "refused /hostd.v1.Hostd/Stop from a read-only client" in h.log_text()
    c.stop("authz-1")


# api.c's table: the methods a member of read-group may call.
READ_ONLY = {"GetDyno", "ListDynos", "GetHost", "SubscribeEvents", "SubscribeMetrics", "Logs",
             "ListImages"}

# Every method of hostd.v1.Hostd, called once by a read-group member through the stubs; prints
# {method: [code number, message]} as JSON. A server stream counts as answered (OK) once its
# first message came, then it is cancelled.
READER = textwrap.dedent("""\
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import grpc
    import hostd_pb2 as pb
    import hostd_pb2_grpc as pbg
    sock, dyno, stack, slug = sys.argv[1], sys.argv[3], sys.argv[4], sys.argv[5]
    digest = "0" * 64
    spec = pb.DynoSpec(id="authz-new", name="worker.2", type=pb.DYNO_TYPE_WORKER,
                       size="standard-1x", command="sleep 1000", stack_path=stack, slug_path=slug)
    calls = {
        "Start": pb.StartRequest(spec=spec),
        "Stop": pb.StopRequest(id=dyno, grace_seconds=0),
        "Restart": pb.RestartRequest(id=dyno, grace_seconds=0),
        "GetDyno": pb.GetDynoRequest(id=dyno),
        "ListDynos": pb.ListDynosRequest(),
        "GetHost": pb.GetHostRequest(),
        "Drain": pb.DrainRequest(),
        "Undrain": pb.UndrainRequest(),
        "SubscribeEvents": pb.SubscribeEventsRequest(follow=True),
        "SubscribeMetrics": pb.SubscribeMetricsRequest(interval_seconds=1),
        "Logs": pb.LogsRequest(id=dyno, follow=True),
        "Exec": iter([pb.ExecRequest(start=pb.ExecStart(id=dyno, argv=["true"]))]),
        "Attach": iter([pb.AttachRequest(start=pb.AttachStart(id=dyno))]),
        "ImportImage": pb.ImportImageRequest(source=stack, sha256=digest,
                                             kind=pb.IMAGE_KIND_STACK),
        "ListImages": pb.ListImagesRequest(),
        "RemoveImage": pb.RemoveImageRequest(digest=digest),
        "PruneImages": pb.PruneImagesRequest(budget_bytes=0),
    }
    out = {}
    with grpc.insecure_channel("unix:" + sock, options=[("grpc.enable_http_proxy", 0)]) as ch:
        stub = pbg.HostdStub(ch)
        for name, req in calls.items():
            try:
                r = getattr(stub, name)(req, timeout=20)
                if not isinstance(r, pb.__dict__.get(name + "Response", ())):
                    next(r)  # a stream: its first message
                    r.cancel()
                out[name] = [0, ""]
            except grpc.RpcError as e:
                out[name] = [e.code().value[0], e.details()]
    print(json.dumps(out))
""")


def test_a_grpc_client_in_read_group_reads_and_may_not_act(hostd_factory, make_spec, rootfs,
                                                            tmp_path):
    h = hostd_factory(read_group=str(READERS), images_dir=str(tmp_path / "images"))
    open_up(h)
    c = h.client()
    d = c.start(make_spec("authz-2", command="echo hello; sleep 1000"))
    c.wait_state("authz-2", pb.DYNO_STATE_UP)
    # the reader covers every method of the service, no more
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Hostd"].methods}
    assert methods == READ_ONLY | {"Start", "Stop", "Restart", "Drain", "Undrain", "Exec",
                                   "Attach", "ImportImage", "RemoveImage", "PruneImages"}

    def drop():
        os.setgroups([READERS])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    r = subprocess.run([sys.executable, "-c", READER, h.socket_path,
                        os.path.join(BUILD_DIR, "proto"), "authz-2", rootfs.stack, rootfs.slug],
                       capture_output=True, text=True, timeout=120, preexec_fn=drop)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert set(got) == methods
    for name in sorted(methods):
        code, message = got[name]
        if name in READ_ONLY:
            assert code == Code.OK, (name, code, message)
        else:
            assert code == Code.PERMISSION_DENIED, (name, code, message)
            assert f"/hostd.v1.Hostd/{name}: permission denied" in message, (name, message)
            assert "read-group" in message
    # nothing changed
    got = c.get("authz-2")
    assert (got.state, got.pid, got.restarts) == (pb.DYNO_STATE_UP, d.pid, 0)
    assert [x.spec.id for x in c.list()] == ["authz-2"]
    assert not c.host_info().draining
    c.stop("authz-2")


def test_others_cannot_connect(hostd_factory):
    h = hostd_factory(read_group=str(READERS))
    open_up(h)
    r = hostctl_as(h, [], "ps")
    assert r.returncode != 0 and "ermission denied" in r.stderr, r.stderr


def test_without_a_read_group_only_root(hostd_factory):
    h = hostd_factory(read_group="")
    open_up(h)
    st = os.stat(h.socket_path)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0 and st.st_uid == 0
    r = hostctl_as(h, [READERS], "ps")
    assert r.returncode != 0, r.stdout
    assert h.client().list() is not None  # root still may
