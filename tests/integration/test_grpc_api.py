"""What the gRPC API promises a control plane, from stock clients (python3-grpcio's stubs and
the standard health and reflection services) against a real hostd: deadlines, cancelling one
stream of many on a connection, resuming the event stream after a reconnect, health checks
(and NOT_SERVING while hostd shuts down), server reflection, and max-inflight.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_grpc_api.py
"""

import http.server
import os
import re
import threading
import time

import pytest

from conftest import SOURCE_DIR
from dynoutil import wait_log
from hostd_client import Code, HostdError, health_pb2, health_pb2_grpc, pb

import reflection_v1_pb2  # noqa: E402  (hostd_client put $HOSTD_BUILD_DIR/proto on sys.path)
import reflection_v1_pb2_grpc  # noqa: E402
import reflection_v1alpha_pb2  # noqa: E402
import reflection_v1alpha_pb2_grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

# not the cgroup v2 tier: the API as a client sees it
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup_independent]

WAIT = 30.0  # a bound on waits for what must happen, not a measure
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TICKER = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"


def api_table():
    """hostd/api.c's method table: {name: (client streaming, server streaming, read-only)}."""
    with open(os.path.join(SOURCE_DIR, "hostd", "api.c")) as f:
        text = f.read()
    rows = re.findall(r'^\s*METHOD\("(\w+)",\s*\w+,\s*\w+,\s*(true|false),\s*(true|false),\s*'
                      r'(true|false),', text, re.M)
    assert len(rows) >= 17, rows
    return {n: (cs == "true", ss == "true", ro == "true") for n, cs, ss, ro in rows}


# -- deadlines ---------------------------------------------------------------------------------


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """An image server that sends the first bytes of a tarball, then nothing."""
    release = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.write(b"\0" * 1000)
        self.wfile.flush()
        self.release.wait(60)

    def log_message(self, *args):
        pass


def test_a_start_past_its_deadline_is_deadline_exceeded_and_goes_on(hostd_factory, make_spec,
                                                                    tmp_path):
    """A Start that waits for an image that never comes: the client's deadline passes
    (DEADLINE_EXCEEDED, hostd cancels the call), the start goes on without it; a Stop ends it
    and leaves nothing."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    h = hostd_factory(images_dir=str(tmp_path / "images"))
    try:
        spec = make_spec("dl-start", stack_path="")
        spec.stack_digest = "1" * 64
        spec.stack_url = f"http://127.0.0.1:{server.server_address[1]}/stack.tar.gz"
        with h.client() as c:
            t0 = time.monotonic()
            r = c.start(spec, timeout=2, check=False)
            took = time.monotonic() - t0
            assert r.status.code == Code.DEADLINE_EXCEEDED, r
            assert 1.5 < took < 10, took
            # The channel is fine, and the start still waits for its image.
            d = c.get("dl-start")
            assert d.state == pb.DYNO_STATE_STARTING
            assert any(l.startswith("Fetching stack") for l in c.log_texts("dl-start"))
            down = c.stop("dl-start", grace=1)
            assert down.state == pb.DYNO_STATE_DOWN and "before its images" in down.exit.reason
        assert not h.find_cgroups("dl-start")
    finally:
        _StallingHandler.release.set()
        server.shutdown()


def test_a_stop_past_its_deadline_still_stops_the_dyno(hostd, make_spec):
    """A Stop whose grace outlasts the client's deadline: DEADLINE_EXCEEDED for the client,
    the stop goes on (SIGTERM is not taken back) and ends with SIGKILL at the grace's end."""
    c = hostd.client()
    d = c.start(make_spec("dl-stop", command="trap '' TERM; echo ready; exec sleep 1000"))
    wait_log(c, "dl-stop", "ready")
    t0 = time.monotonic()
    r = c.stop("dl-stop", grace=4, timeout=1, check=False)
    assert r.status.code == Code.DEADLINE_EXCEEDED, r
    assert time.monotonic() - t0 < 3.5
    assert c.get("dl-stop").state == pb.DYNO_STATE_STOPPING
    down = c.wait_state("dl-stop", pb.DYNO_STATE_DOWN, timeout=WAIT)
    assert time.monotonic() - t0 >= 3.5, "the stop did not wait for its grace"
    assert down.exit.error == "R12" and down.exit.signal == 9, down.exit
    assert d.pid not in hostd.dyno_inits()
    # And a Stop given enough time is answered as ever.
    c.start(make_spec("dl-stop-2"))
    assert c.stop("dl-stop-2", grace=1, timeout=WAIT).state == pb.DYNO_STATE_DOWN


# -- cancelling one stream -----------------------------------------------------------------------


def test_cancelling_one_stream_leaves_the_others_on_the_connection(hostd, make_spec):
    """Two log follows and an event follow on one channel: cancelling one log follow ends it
    (CANCELLED) and nothing else: the other follow gets every new line, the events go on, and
    the channel takes new calls."""
    c = hostd.client()
    c.start(make_spec("cx-1", command=TICKER))
    events = c.events(follow=True)
    a, b = c.follow_logs("cx-1"), c.follow_logs("cx-1")
    assert a.next(WAIT) is not None and b.next(WAIT) is not None
    a.cancel()
    assert a.wait_end(WAIT).code == Code.CANCELLED
    # b goes on, with lines written after the cancel, in order
    seen = []
    deadline = time.monotonic() + WAIT
    while len([t for t in seen if t.startswith("tick ")]) < 10:
        r = b.next(max(0.1, deadline - time.monotonic()))
        assert r is not None, b.status
        seen += [l.text.decode() for l in r.lines]
    ticks = [int(t.split()[1]) for t in seen if t.startswith("tick ")]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), ticks
    # the channel takes new calls, and the event follow sees a new dyno
    c.start(make_spec("cx-2", name="worker.2"))
    want = {(pb.DYNO_STATE_STARTING, "cx-2"), (pb.DYNO_STATE_UP, "cx-2")}
    got = set()
    while not want <= got:
        r = events.next(WAIT)
        assert r is not None, events.status
        got.add((r.event.state, r.event.dyno_id))
    assert not b.ended and not events.ended
    # hostd dropped the cancelled follower and nothing else: the dyno runs on
    assert c.get("cx-1").state == pb.DYNO_STATE_UP
    b.cancel()
    events.cancel()
    c.stop("cx-1", grace=1)
    c.stop("cx-2", grace=1)
    hostd.assert_serving()


# -- resuming the event stream -------------------------------------------------------------------


def test_events_resume_after_a_reconnect_each_exactly_once(hostd, make_spec):
    """A follower disconnects; events happen while it is away; it comes back with the last
    seq it saw as `since` and gets every event after it exactly once, then the live ones."""
    seen = []
    c = hostd.client()
    follow = c.events(follow=True)
    c.start(make_spec("rs-1"))
    while not any(e.dyno_id == "rs-1" and e.state == pb.DYNO_STATE_UP for e in seen):
        r = follow.next(WAIT)
        assert r is not None, follow.status
        seen.append(r.event)
    c.close()  # gone: the connection closes with the stream open
    assert follow.wait_end(WAIT).code == Code.CANCELLED
    with hostd.client() as other:  # meanwhile
        other.stop("rs-1", grace=1)
        other.start(make_spec("rs-2", name="worker.2"))
    c = hostd.client()
    follow = c.events(since=seen[-1].seq, follow=True)
    c.start(make_spec("rs-3", name="worker.3"))
    while not any(e.dyno_id == "rs-3" and e.state == pb.DYNO_STATE_UP for e in seen):
        r = follow.next(WAIT)
        assert r is not None, follow.status
        seen.append(r.event)
    seqs = [e.seq for e in seen]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # from 1, no gap, no repeat
    everything = c.event_list(since=0)
    assert [(e.seq, e.dyno_id, e.state, e.kind) for e in everything[:len(seen)]] == \
        [(e.seq, e.dyno_id, e.state, e.kind) for e in seen]
    states = [(e.dyno_id, pb.DynoState.Name(e.state)) for e in seen if e.dyno_id]
    for dyno, want in (("rs-1", ["STARTING", "UP", "STOPPING", "DOWN"]),
                       ("rs-2", ["STARTING", "UP"]), ("rs-3", ["STARTING", "UP"])):
        assert [s.removeprefix("DYNO_STATE_") for d, s in states if d == dyno] == want, states
    follow.cancel()
    c.stop("rs-2", grace=1)
    c.stop("rs-3", grace=1)


# -- health --------------------------------------------------------------------------------------


def test_health_check_and_watch(hostd):
    c = hostd.client()
    h = health_pb2_grpc.HealthStub(c.channel)
    for name in ("", "hostd.v1.Hostd"):
        assert h.Check(health_pb2.HealthCheckRequest(service=name), timeout=WAIT).status == SERVING
    assert c.health("grpc.health.v1.Health") == SERVING
    with pytest.raises(HostdError) as e:
        c.health("hostd.v2.Hostd")
    assert e.value.code == Code.NOT_FOUND
    w = h.Watch(health_pb2.HealthCheckRequest(service=""))
    w2 = h.Watch(health_pb2.HealthCheckRequest(service="hostd.v1.Hostd"))
    assert next(w).status == SERVING and next(w2).status == SERVING
    w.cancel()
    w2.cancel()


def test_health_is_not_serving_while_hostd_stops_its_dynos(hostd_factory, make_spec):
    """stop-dynos-on-exit: between SIGTERM and its exit hostd stops its dynos (up to
    shutdown-timeout) and takes no new one; a health watcher is told NOT_SERVING at once, and
    a Check says so, so that a load balancer or control plane looks elsewhere."""
    h = hostd_factory(stop_dynos_on_exit="yes", shutdown_timeout="30s")
    c = h.client()
    c.start(make_spec("hs-1", command="trap '' TERM; echo ready; exec sleep 1000", grace_seconds=3))
    wait_log(c, "hs-1", "ready")
    stub = health_pb2_grpc.HealthStub(c.channel)
    watch = {name: stub.Watch(health_pb2.HealthCheckRequest(service=name))
             for name in ("", "hostd.v1.Hostd")}
    for w in watch.values():
        assert next(w).status == SERVING
    h.terminate()
    for name, w in watch.items():
        assert next(w).status == NOT_SERVING, name
    assert c.health("") == NOT_SERVING
    assert c.get("hs-1").state == pb.DYNO_STATE_STOPPING  # still at it
    r = c.start(make_spec("hs-2", name="worker.2"), check=False)
    assert r.status.code == Code.FAILED_PRECONDITION, r
    assert h.proc.wait(WAIT) == 0


# -- reflection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_describes_the_service_as_api_c_has_it(hostd, version):
    rpb = {"v1": reflection_v1_pb2, "v1alpha": reflection_v1alpha_pb2}[version]
    rgrpc = {"v1": reflection_v1_pb2_grpc, "v1alpha": reflection_v1alpha_pb2_grpc}[version]
    c = hostd.client()
    stub = rgrpc.ServerReflectionStub(c.channel)
    answers = list(stub.ServerReflectionInfo(iter([
        rpb.ServerReflectionRequest(list_services=""),
        rpb.ServerReflectionRequest(file_containing_symbol="hostd.v1.Hostd"),
        rpb.ServerReflectionRequest(file_containing_symbol="hostd.v1.Hostd.Start"),
        rpb.ServerReflectionRequest(file_containing_symbol="hostd.v1.NoSuchThing"),
    ]), timeout=WAIT))
    assert len(answers) == 4
    names = {s.name for s in answers[0].list_services_response.service}
    assert names == {"hostd.v1.Hostd", "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection"}
    for a in answers[1:3]:
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in a.file_descriptor_response.file_descriptor_proto]
        hostd_file = [f for f in files if f.package == "hostd.v1"]
        assert len(hostd_file) == 1 and hostd_file[0].name == "hostd.proto", [f.name for f in files]
        services = {s.name: s for s in hostd_file[0].service}
        assert set(services) == {"Hostd"}
        methods = {m.name: (m.client_streaming, m.server_streaming) for m in services["Hostd"].method}
        table = api_table()
        assert methods == {n: (cs, ss) for n, (cs, ss, _) in table.items()}
        # the descriptor is the one the stubs were made from
        mine = pb.DESCRIPTOR.services_by_name["Hostd"]
        assert [m.name for m in services["Hostd"].method] == [m.name for m in mine.methods]
    assert answers[3].error_response.error_code == Code.NOT_FOUND
    assert "hostd.v1.NoSuchThing" in answers[3].error_response.error_message


# -- max-inflight ---------------------------------------------------------------------------------


def test_more_streams_than_max_inflight_on_one_connection(hostd_factory, make_spec):
    """max-inflight 4: four follows open on one connection; a fifth stream, and a unary call
    meanwhile, are RESOURCE_EXHAUSTED; the four go on; another connection has its own count;
    once one ends, a new one opens."""
    h = hostd_factory(max_inflight=4)
    c = h.client()
    c.start(make_spec("mi-1", command=TICKER))
    streams = [c.events(follow=True) for _ in range(2)] + [c.follow_logs("mi-1") for _ in range(2)]
    for s in streams:
        assert s.next(WAIT) is not None, s.status
    extra = c.follow_logs("mi-1")
    assert extra.rest(WAIT) == []
    assert extra.status.code == Code.RESOURCE_EXHAUSTED, extra.status
    assert extra.status.message == (
        "/hostd.v1.Hostd/Logs: calls in flight on this connection: 4, the limit (max-inflight); "
        "send it again once one has ended")
    r = c.list(check=False)
    assert r.status.code == Code.RESOURCE_EXHAUSTED and "max-inflight" in r.status.message
    # the four are fine: new lines and new events come
    with h.client() as other:
        assert [d.spec.id for d in other.list()] == ["mi-1"]
        other.start(make_spec("mi-2", name="worker.2"))
    for s in streams[:2]:
        deadline = time.monotonic() + WAIT
        while True:
            r = s.next(max(0.1, deadline - time.monotonic()))
            assert r is not None, s.status
            if r.event.dyno_id == "mi-2" and r.event.state == pb.DYNO_STATE_UP:
                break
    for s in streams[2:]:
        assert s.next(WAIT).lines
    assert not any(s.ended for s in streams)
    # one ends: there is room for one more
    streams[0].cancel()
    assert streams[0].wait_end(WAIT).code == Code.CANCELLED
    deadline = time.monotonic() + WAIT
    while True:
        r = c.list(check=False)
        if r.ok:
            break
        assert r.status.code == Code.RESOURCE_EXHAUSTED and time.monotonic() < deadline
        time.sleep(0.05)
    assert sorted(d.spec.id for d in r.value) == ["mi-1", "mi-2"]
    for s in streams[1:]:
        s.cancel()
    c.stop("mi-1", grace=1)
    c.stop("mi-2", grace=1)
