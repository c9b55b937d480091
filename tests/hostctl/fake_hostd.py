"""A fake hostd: the hostd.v1.Hostd gRPC service with canned answers, served by grpcio (a second
gRPC implementation) over a Unix socket and, optionally, mutual TLS. hostctl's tests run the
real hostctl against it, before hostd itself serves gRPC.

Every call is logged as a JSON line to --log: the method, the deadline the server saw (seconds
left when the call arrived, or null), the request, and for client streams each later input.

Canned behaviour worth knowing (see each method):
  - dynos web-1 (up), worker-1 (crashed, exit 1), run-1 (one-off, complete);
  - GetDyno "slow" answers only after its deadline (or 5 s);
  - GetDyno "café" fails NOT_FOUND with a message grpcio percent-encodes;
  - GetDyno "big" has a 3 MiB command, "huge" a 5 MiB one;
  - SubscribeEvents/Logs with follow: the kept items, silence for --follow-delay seconds, one
    more, then the end of the stream (OK);
  - Exec argv: ["sh", "-c", "exit N"], ["cat"], ["echo", ...], ["size"] (a terminal's size,
    then each resize), ["refuse"] (FAILED_PRECONDITION after the start);
  - ImportImage: four progress reports, then the image.

Run: fake_hostd.py --socket PATH [--tls 127.0.0.1:PORT --cert C --key K --ca CA] --log FILE
It prints "ready" on stdout once it listens.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent import futures

BUILD_DIR = os.environ.get("HOSTD_BUILD_DIR", "build")
sys.path.insert(0, os.path.join(BUILD_DIR, "proto"))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import hostd_pb2 as pb  # noqa: E402
import hostd_pb2_grpc as pb_grpc  # noqa: E402

NOW_USEC = int(time.time() * 1e6)
DIGEST = "1a2b3c4d5e6f" + "0" * 52


def dyno(id_, name, type_, state, command, pid=0, exit=None, started_ago=90):
    d = pb.Dyno(
        spec=pb.DynoSpec(id=id_, name=name, app="shop", type=type_, size="standard-1x",
                         command=command, release="v7", stack_path="/var/lib/stack"),
        state=state, pid=pid, uid=20001 if pid else 0,
        created_usec=NOW_USEC - started_ago * 1000000 - 500000,
        started_usec=NOW_USEC - started_ago * 1000000,
        cgroup=f"hostd/dynos/{id_}", memory_limit=512 << 20, cpu_weight=100, pids_limit=256,
        run_id="0f0e0d0c-0b0a-4908-8706-050403020100")
    if exit is not None:
        d.exit.CopyFrom(exit)
        d.finished_usec = NOW_USEC - 10 * 1000000
    return d


class Hostd(pb_grpc.HostdServicer):
    def __init__(self, log_path, follow_delay):
        self.log_path = log_path
        self.follow_delay = follow_delay
        self.lock = threading.Lock()
        self.draining = False
        self.dynos = {
            "web-1": dyno("web-1", "web.1", pb.DYNO_TYPE_WEB, pb.DYNO_STATE_UP,
                          "bundle exec puma -C config/puma.rb", pid=4242),
            "worker-1": dyno("worker-1", "worker.1", pb.DYNO_TYPE_WORKER, pb.DYNO_STATE_CRASHED,
                             "bin/worker",
                             exit=pb.ExitInfo(exited=True, code=1, reason="exit status 1")),
            "run-1": dyno("run-1", "run.1234", pb.DYNO_TYPE_ONE_OFF, pb.DYNO_STATE_COMPLETE,
                          "rake db:migrate",
                          exit=pb.ExitInfo(exited=True, code=0, reason="exit status 0")),
        }
        self.events = [
            pb.Event(seq=1, time_usec=NOW_USEC - 3000000, kind=pb.EVENT_KIND_HOST,
                     message="hostd started"),
            pb.Event(seq=2, time_usec=NOW_USEC - 2000000, dyno_id="web-1",
                     kind=pb.EVENT_KIND_STATE, state=pb.DYNO_STATE_STARTING, message="starting"),
            pb.Event(seq=3, time_usec=NOW_USEC - 1000000, dyno_id="web-1",
                     kind=pb.EVENT_KIND_STATE, state=pb.DYNO_STATE_UP, message="up"),
        ]

    # -- the log the tests read -----------------------------------------------------------

    def log(self, method, context, request, **extra):
        remaining = context.time_remaining()
        entry = {
            "method": method,
            # grpcio reports a call without a deadline as a huge number of seconds left
            "timeout": remaining if remaining is not None and remaining < 1e6 else None,
            "metadata": {k: v for k, v in context.invocation_metadata()},
            "request": json_format.MessageToDict(request, preserving_proto_field_name=True),
        }
        entry.update(extra)
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def log_input(self, method, request):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps({"method": method + ".input", "request": json_format.MessageToDict(
                request, preserving_proto_field_name=True)}) + "\n")

    def get(self, id_, context):
        d = self.dynos.get(id_)
        if d is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"dyno '{id_}' not found")
        return d

    # -- dynos ----------------------------------------------------------------------------

    def Start(self, request, context):
        self.log("Start", context, request)
        spec = request.spec
        if spec.id in self.dynos:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"dyno '{spec.id}' already exists")
        if spec.release_created_at == "today":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "spec.release_created_at: 'today' is not RFC 3339")
        if self.draining:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the host is draining")
        d = pb.Dyno(spec=spec, pid=5000 + len(self.dynos), uid=20002,
                    created_usec=int(time.time() * 1e6), started_usec=int(time.time() * 1e6),
                    memory_limit=512 << 20, run_id="1f1e1d1c-1b1a-4918-8716-151413121110")
        d.state = (pb.DYNO_STATE_STARTING if spec.type == pb.DYNO_TYPE_WEB and spec.port
                   else pb.DYNO_STATE_UP)
        if not d.spec.size:
            d.spec.size = "standard-1x"
        self.dynos[spec.id] = d
        return pb.StartResponse(dyno=d)

    def Stop(self, request, context):
        self.log("Stop", context, request)
        d = self.get(request.id, context)
        d.state = pb.DYNO_STATE_DOWN
        d.pid = 0
        d.exit.CopyFrom(pb.ExitInfo(exited=True, code=143, reason="exit status 143"))
        return pb.StopResponse(dyno=d)

    def Restart(self, request, context):
        self.log("Restart", context, request)
        d = self.get(request.id, context)
        d.restarts += 1
        d.state = pb.DYNO_STATE_UP
        return pb.RestartResponse(dyno=d)

    def GetDyno(self, request, context):
        self.log("GetDyno", context, request)
        if request.id == "slow":
            # Answers after the deadline (if any): the client must have given up by then.
            remaining = context.time_remaining()
            time.sleep(min(5.0, (remaining or 5.0) + 1.0))
            return pb.GetDynoResponse(dyno=self.dynos["web-1"])
        if request.id in ("big", "huge"):
            # 3 MiB crosses every HTTP/2 window; 5 MiB is over gRPC's usual 4 MiB limit
            d = pb.Dyno()
            d.CopyFrom(self.dynos["web-1"])
            d.spec.id = request.id
            d.spec.command = "x" * ((3 if request.id == "big" else 5) << 20)
            return pb.GetDynoResponse(dyno=d)
        if request.id == "café":
            context.abort(grpc.StatusCode.NOT_FOUND, "dyno 'café' not found: 100% sure")
        return pb.GetDynoResponse(dyno=self.get(request.id, context))

    def ListDynos(self, request, context):
        self.log("ListDynos", context, request)
        return pb.ListDynosResponse(dynos=list(self.dynos.values()))

    def GetHost(self, request, context):
        self.log("GetHost", context, request)
        return pb.GetHostResponse(host=self.host(sizes=True))

    def host(self, sizes):
        h = pb.Host(hostname="fake-host", version="0.1.0-fake", boot_id="b00t", cgroup_mode="v2",
                    cpus=2, memory_total=4 << 30, memory_available=3 << 30,
                    memory_allocatable=3 << 30, memory_allocated=512 << 20, dynos=1,
                    draining=self.draining, max_dynos=20, load_1m=0.5, load_5m=0.25,
                    load_15m=0.125)
        if sizes:
            h.sizes.append(pb.Size(name="standard-1x", memory_bytes=512 << 20, r15_multiple=2.0,
                                   pids=256, cpu_weight=100))
        return h

    def Drain(self, request, context):
        self.log("Drain", context, request)
        self.draining = True
        return pb.DrainResponse()

    def Undrain(self, request, context):
        self.log("Undrain", context, request)
        self.draining = False
        return pb.UndrainResponse()

    # -- server streams -------------------------------------------------------------------

    def wait_quietly(self, context, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and context.is_active():
            time.sleep(0.05)
        return context.is_active()

    def SubscribeEvents(self, request, context):
        self.log("SubscribeEvents", context, request)
        for e in self.events:
            if e.seq > request.since:
                yield pb.SubscribeEventsResponse(event=e)
        if not request.follow:
            return
        if not self.wait_quietly(context, self.follow_delay):
            return
        yield pb.SubscribeEventsResponse(event=pb.Event(
            seq=4, time_usec=int(time.time() * 1e6), dyno_id="web-1", kind=pb.EVENT_KIND_STATE,
            state=pb.DYNO_STATE_STOPPING, message="stopping"))
        # then hostd ends the stream (say, it shuts down): OK

    def SubscribeMetrics(self, request, context):
        self.log("SubscribeMetrics", context, request)
        interval = request.interval_seconds or 20
        n = 0
        while context.is_active():
            t = int(time.time() * 1e6)
            yield pb.SubscribeMetricsResponse(
                dynos=[pb.DynoMetrics(dyno_id="web-1", name="web.1", state=pb.DYNO_STATE_UP,
                                      time_usec=t, cpu_usec=n * interval * 500000,
                                      memory_total=128 << 20, memory_quota=512 << 20, pids=3,
                                      rx_bytes=2048, tx_bytes=4096, load_1m=0.5)],
                host=self.host(sizes=False))
            n += 1
            if not self.wait_quietly(context, interval):
                return

    def Logs(self, request, context):
        self.log("Logs", context, request)
        self.get(request.id, context)
        t = NOW_USEC
        yield pb.LogsResponse(lines=[
            pb.LogLine(time_usec=t, dyno_id=request.id, source="heroku", process="web.1",
                       text=b"Starting process with command `bundle exec puma`"),
            pb.LogLine(time_usec=t + 1, dyno_id=request.id, source="app", process="web.1",
                       text=b"Listening on 0.0.0.0:5000"),
        ])
        if not request.follow or not self.wait_quietly(context, self.follow_delay):
            return
        yield pb.LogsResponse(lines=[pb.LogLine(time_usec=int(time.time() * 1e6),
                                                dyno_id=request.id, source="app",
                                                process="web.1", text=b"GET / 200")])

    def ImportImage(self, request, context):
        self.log("ImportImage", context, request)
        if request.sha256 != DIGEST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"sha256: the tarball's is {DIGEST}, not {request.sha256}")
        total = 300 << 10
        for done in (0, 100 << 10, 200 << 10, total):
            yield pb.ImportImageResponse(progress=pb.ImportImageProgress(done_bytes=done,
                                                                         total_bytes=total))
            time.sleep(0.05)
        yield pb.ImportImageResponse(image=pb.Image(
            digest=DIGEST, kind=request.kind, size_bytes=1 << 20, imported_usec=NOW_USEC,
            last_used_usec=0, users=0))

    # -- unary images ---------------------------------------------------------------------

    def ListImages(self, request, context):
        self.log("ListImages", context, request)
        return pb.ListImagesResponse(images=[pb.Image(
            digest=DIGEST, kind=pb.IMAGE_KIND_STACK, size_bytes=1 << 20,
            imported_usec=NOW_USEC - 3600 * 1000000, last_used_usec=NOW_USEC - 60 * 1000000,
            users=1)])

    def RemoveImage(self, request, context):
        self.log("RemoveImage", context, request)
        if request.digest == DIGEST:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"image {DIGEST[:12]}: 1 dyno uses it")
        return pb.RemoveImageResponse()

    def PruneImages(self, request, context):
        self.log("PruneImages", context, request)
        return pb.PruneImagesResponse(removed=["ab" * 32], freed_bytes=3 << 20)

    # -- bidirectional --------------------------------------------------------------------

    def Exec(self, request_iterator, context):
        first = next(request_iterator)
        self.log("Exec", context, first)
        if first.WhichOneof("kind") != "start":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message is not start")
        start = first.start
        self.get(start.id, context)
        argv = list(start.argv)
        out = lambda data=b"", **kw: pb.ExecResponse(output=pb.StreamOutput(data=data, **kw))
        if argv[:2] == ["sh", "-c"] and argv[2].startswith("exit "):
            yield out(exited=True, exit_code=int(argv[2].split()[1]))
            return
        if argv[:1] == ["echo"]:
            yield out((" ".join(argv[1:]) + "\n").encode())
            yield out(exited=True, exit_code=0)
            return
        if argv == ["refuse"]:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refuse: no such program")
        if argv == ["size"]:
            yield out(f"size {start.tty_columns}x{start.tty_rows} tty={start.tty} "
                      f"term={start.term}\n".encode())
        for req in request_iterator:
            self.log_input("Exec", req)
            inp = req.input
            if inp.data:
                yield out(inp.data)
            if inp.columns and inp.rows:
                yield out(f"resize {inp.columns}x{inp.rows}\n".encode())
            if argv == ["size"] and b"q" in inp.data:
                # a terminal has no end of input: "q" ends this one
                yield out(exited=True, exit_code=5)
                return
            if inp.eof:
                yield out(exited=True, exit_code=0)
                return

    def Attach(self, request_iterator, context):
        first = next(request_iterator)
        self.log("Attach", context, first)
        self.get(first.start.id, context)
        out = lambda data=b"", **kw: pb.AttachResponse(output=pb.StreamOutput(data=data, **kw))
        yield out(b"attached\n")
        for req in request_iterator:
            self.log_input("Attach", req)
            inp = req.input
            if inp.data:
                yield out(inp.data)
            if inp.eof:
                yield out(exited=True, exit_code=0)
                return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--tls")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--log", required=True)
    ap.add_argument("--follow-delay", type=float, default=2.0)
    args = ap.parse_args()

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            # hostctl's keepalive pings (the tests make them frequent) are welcome
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 100),
            ("grpc.http2.max_ping_strikes", 0),
        ])
    pb_grpc.add_HostdServicer_to_server(Hostd(args.log, args.follow_delay), server)
    server.add_insecure_port("unix:" + args.socket)
    if args.tls:
        with open(args.key, "rb") as k, open(args.cert, "rb") as c, open(args.ca, "rb") as ca:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())],
                                                root_certificates=ca.read(),
                                                require_client_auth=True)
        server.add_secure_port(args.tls, creds)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
