"""A Python client for hostd's API: the gRPC stubs that protoc makes of proto/hostd.proto
(hostd_pb2, hostd_pb2_grpc; meson writes them to $HOSTD_BUILD_DIR/proto), with the
conveniences the integration tests share. A second language speaking the API, through the
stock python3-grpcio.

How a test reads an error, everywhere:
  - a call made with check=True (the default) returns its answer or raises HostdError, whose
    .code is the gRPC status code's number (compare with Code.NOT_FOUND ...) and .message the
    message hostd sent;
  - the same call with check=False returns a Reply: .status.code and .status.message say how
    the call ended (Code.OK on success, when .value is the answer);
  - a stream (Stream) yields its messages; .status says how it ended once it has, and
    iterating over it raises HostdError when it ended with an error.
Unary calls carry a deadline (the client's timeout unless one is given); follows have none.
"""

import enum
import os
import queue
import sys
import threading
import time

_SOURCE_DIR = os.environ.get(
    "HOSTD_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
BUILD_DIR = os.path.abspath(os.environ.get("HOSTD_BUILD_DIR", os.path.join(_SOURCE_DIR, "build")))
_PROTO_DIR = os.path.join(BUILD_DIR, "proto")
if _PROTO_DIR not in sys.path:
    sys.path.insert(0, _PROTO_DIR)

import grpc  # noqa: E402

try:
    import health_pb2  # noqa: E402
    import health_pb2_grpc  # noqa: E402
    import hostd_pb2 as pb  # noqa: E402
    import hostd_pb2_grpc as pb_grpc  # noqa: E402
except ImportError as e:  # pragma: no cover - a missing build is a setup error
    raise ImportError(
        f"hostd's gRPC stubs not found in {_PROTO_DIR}: build first (ninja -C build) and set "
        f"HOSTD_BUILD_DIR ({e})"
    ) from e

DEFAULT_TIMEOUT = 30.0
# No proxy from the environment between a test and its hostd; answers as large as hostd sends;
# each client its own connection (grpcio shares one between channels to the same target
# otherwise), as the tests count connections and what is in flight on one.
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]
SERVICE = "hostd.v1.Hostd"


class Code(enum.IntEnum):
    """gRPC's status codes (hostd.proto has no enum for them: they are the transport's)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def code_name(code):
    """'NOT_FOUND' for 5; the number itself for a code gRPC does not define."""
    try:
        return Code(code).name
    except ValueError:
        return str(code)


class Status:
    """How a call ended: code (a Code) and hostd's message."""

    __slots__ = ("code", "message")

    def __init__(self, code, message=""):
        try:
            self.code = Code(code)
        except ValueError:
            self.code = code
        self.message = message

    @classmethod
    def of(cls, err):
        """The Status of a grpc.RpcError (which is also a grpc.Call)."""
        return cls(err.code().value[0], err.details() or "")

    @property
    def ok(self):
        return self.code == Code.OK

    def __eq__(self, other):
        return isinstance(other, Status) and (self.code, self.message) == (other.code, other.message)

    def __repr__(self):
        return f"Status({code_name(self.code)}, {self.message!r})"


class HostdError(Exception):
    """A call that ended with an error status."""

    def __init__(self, status, method=""):
        self.status = status
        self.code = status.code
        self.message = status.message
        self.method = method
        super().__init__(f"{method + ': ' if method else ''}{code_name(self.code)}: {self.message}")


class Reply:
    """What a call made with check=False returns: its status and, when OK, its answer."""

    __slots__ = ("status", "value")

    def __init__(self, status, value=None):
        self.status = status
        self.value = value

    @property
    def ok(self):
        return self.status.ok

    def __repr__(self):
        return f"Reply({self.status!r}, {self.value!r})"


_END = object()


class Stream:
    """The responses of a streaming call, read by a thread into a queue: a test waits for the
    next one with a bound (next(timeout)), and learns how the stream ended (.status).
    Iterating yields every message and raises HostdError if the stream ends with an error."""

    def __init__(self, call, method="", observer=None):
        self.call = call  # the grpc.Call: cancel(), code(), details(), initial_metadata()
        self.method = method
        self.status = None  # set when the stream has ended
        self._observer = observer
        self._q = queue.Queue()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True,
                                        name=f"hostd-stream-{method}")
        self._thread.start()

    def _pump(self):
        try:
            for msg in self.call:
                if self._observer is not None:
                    self._observer(msg)
                self._q.put(msg)
            status = Status(Code.OK)
        except grpc.RpcError as e:
            status = Status.of(e)
        except Exception as e:  # noqa: BLE001 - a response that does not parse, say
            status = Status(Code.INTERNAL, f"client: {e!r}")
        self.status = status
        self._ended.set()
        self._q.put(_END)
        self._after_end()

    def _after_end(self):
        pass

    def next(self, timeout=DEFAULT_TIMEOUT):
        """The next message, or None once the stream has ended (then .status says how).
        TimeoutError when neither happens within timeout seconds (None: wait for ever)."""
        try:
            msg = self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.method}: no message within {timeout} s") from None
        if msg is _END:
            self._q.put(_END)  # every later next() sees the end too
            return None
        return msg

    def __iter__(self):
        while True:
            msg = self.next(timeout=None)
            if msg is None:
                if not self.status.ok:
                    raise HostdError(self.status, self.method)
                return
            yield msg

    def rest(self, timeout=DEFAULT_TIMEOUT):
        """Every message until the end, which must come within timeout seconds (None: no
        bound); the status is in .status (no exception)."""
        out = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            msg = self.next(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if msg is None:
                return out
            out.append(msg)

    def wait_end(self, timeout=DEFAULT_TIMEOUT):
        """The Status once the stream has ended (messages not read yet are left queued)."""
        if not self._ended.wait(timeout):
            raise TimeoutError(f"{self.method}: still open after {timeout} s")
        return self.status

    @property
    def ended(self):
        return self._ended.is_set()

    def cancel(self):
        """Cancel the call (RST_STREAM): the stream ends CANCELLED on this side."""
        self.call.cancel()


class BidiStream(Stream):
    """Exec and Attach: the first request (`start`) is sent at once; send() adds `input`
    messages; close_send() half-closes the client's side."""

    def __init__(self, method_callable, first, method="", observer=None):
        self._in = queue.Queue()
        self._in.put(first)
        self._make_input = None
        super().__init__(method_callable(self._requests()), method, observer)

    def _requests(self):
        while True:
            msg = self._in.get()
            if msg is None:
                return
            yield msg

    def _after_end(self):
        self._in.put(None)  # ends grpc's thread that reads the requests

    def send_message(self, msg):
        self._in.put(msg)

    def close_send(self):
        self._in.put(None)


class Pending:
    """A unary call sent and not answered yet (HostdClient.call_async)."""

    def __init__(self, future, method, unwrap, observe):
        self.future = future
        self.method = method
        self._unwrap = unwrap
        self._observe = observe

    def reply(self, timeout=None):
        """The Reply once the call has ended (its deadline bounds the wait)."""
        try:
            resp = self.future.result(timeout=timeout)
        except grpc.RpcError as e:
            return Reply(Status.of(e))
        self._observe(resp)
        return Reply(Status(Code.OK), self._unwrap(resp) if self._unwrap else resp)

    def result(self, timeout=None):
        """The answer, or HostdError."""
        r = self.reply(timeout)
        if not r.ok:
            raise HostdError(r.status, self.method)
        return r.value

    def done(self):
        return self.future.done()

    def cancel(self):
        return self.future.cancel()


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def dynos_in(msg):
    """The Dyno messages in an answer of hostd (to learn the pids of the dynos a test has)."""
    if isinstance(msg, pb.Dyno):
        return [msg]
    if isinstance(msg, pb.ListDynosResponse):
        return list(msg.dynos)
    if hasattr(msg, "dyno") and isinstance(getattr(msg, "dyno"), pb.Dyno):
        return [msg.dyno]
    return []


class HostdClient:
    """One gRPC channel to hostd: its Unix socket (a path) or, with credentials, its TLS
    listener ("127.0.0.1:PORT"). Thread-safe, as grpcio's channels are; each has its own
    connection, made at its first call.

    observer, when given, is called with every Dyno in an answer (the fixtures use it to learn
    the pids of the dynos a test started)."""

    def __init__(self, target, timeout=DEFAULT_TIMEOUT, observer=None, credentials=None,
                 options=()):
        self.target = target
        self.timeout = timeout
        self.observer = observer
        opts = CHANNEL_OPTIONS + list(options)
        if credentials is None:
            # a path is the Unix socket; "HOST:PORT", plain TCP (hostd serves none: tests)
            addr = "unix:" + target if target.startswith("/") else target
            self.channel = grpc.insecure_channel(addr, options=opts)
        else:
            self.channel = grpc.secure_channel(target, credentials, options=opts)
        self.stub = pb_grpc.HostdStub(self.channel)
        self._connected = False

    @classmethod
    def tls(cls, host, port, cert, key, ca, server_name=None, **kw):
        """A client of hostd's TLS listener with the client certificate cert/key (None: none),
        checking the server against the CA file ca and, when given, the name server_name
        instead of host."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(ca),
            private_key=read_file(key) if cert else None,
            certificate_chain=read_file(cert) if cert else None,
        )
        options = list(kw.pop("options", ()))
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        return cls(f"{host}:{port}", credentials=creds, options=options, **kw)

    # -- the channel ----------------------------------------------------------------------------
    def close(self):
        """Close the channel: every call still open on it is cancelled."""
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _observe(self, msg):
        if self.observer is not None:
            for d in dynos_in(msg):
                self.observer(d)

    # -- generic calls --------------------------------------------------------------------------
    def call(self, method, request, timeout=None, check=True, unwrap=None):
        """A unary call of method ("GetDyno") with request. Returns the response (unwrap(response)
        when given), or, with check=False, a Reply."""
        fn = getattr(self.stub, method)
        try:
            resp = fn(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            status = Status.of(e)
            if check:
                raise HostdError(status, method) from None
            return Reply(status)
        self._observe(resp)
        value = unwrap(resp) if unwrap else resp
        return value if check else Reply(Status(Code.OK), value)

    def call_async(self, method, request, timeout=None, unwrap=None):
        """Send a unary call and return at once: a Pending whose reply() waits for it.

        A new channel is connected first (a health check): grpcio sends a call on a channel
        that is still connecting only once some thread polls it, and none may until reply()."""
        if not self._connected:
            self.health()
            self._connected = True
        fn = getattr(self.stub, method)
        fut = fn.future(request, timeout=self.timeout if timeout is None else timeout)
        return Pending(fut, method, unwrap, self._observe)

    def stream(self, method, request, timeout=None):
        """A server-streaming call: a Stream. No deadline unless timeout is given."""
        fn = getattr(self.stub, method)
        return Stream(fn(request, timeout=timeout), method, self._observe)

    # -- dynos ----------------------------------------------------------------------------------
    def start(self, spec, timeout=None, check=True):
        """Start spec: the Dyno (check=False: a Reply whose value is the Dyno)."""
        return self.call("Start", pb.StartRequest(spec=spec), timeout, check, lambda r: r.dyno)

    def start_async(self, spec, timeout=None):
        """Start without waiting for the answer: a Pending whose value is the Dyno."""
        return self.call_async("Start", pb.StartRequest(spec=spec), timeout, lambda r: r.dyno)

    def stop_async(self, dyno_id, grace=None, timeout=None):
        req = pb.StopRequest(id=dyno_id)
        if grace is not None:
            req.grace_seconds = grace
        return self.call_async("Stop", req, self._grace_timeout(grace, timeout), lambda r: r.dyno)

    def _grace_timeout(self, grace, timeout):
        if timeout is not None:
            return timeout
        return self.timeout + (grace if grace is not None else 30)

    def stop(self, dyno_id, grace=None, timeout=None, check=True):
        req = pb.StopRequest(id=dyno_id)
        if grace is not None:
            req.grace_seconds = grace
        return self.call("Stop", req, self._grace_timeout(grace, timeout), check,
                         lambda r: r.dyno)

    def restart(self, dyno_id, grace=None, timeout=None, check=True):
        req = pb.RestartRequest(id=dyno_id)
        if grace is not None:
            req.grace_seconds = grace
        return self.call("Restart", req, self._grace_timeout(grace, timeout), check,
                         lambda r: r.dyno)

    def get(self, dyno_id, timeout=None, check=True):
        return self.call("GetDyno", pb.GetDynoRequest(id=dyno_id), timeout, check,
                         lambda r: r.dyno)

    def list(self, timeout=None, check=True):
        return self.call("ListDynos", pb.ListDynosRequest(), timeout, check,
                         lambda r: list(r.dynos))

    def host_info(self, timeout=None, check=True):
        return self.call("GetHost", pb.GetHostRequest(), timeout, check, lambda r: r.host)

    def drain(self, deadline=None, timeout=None, check=True):
        req = pb.DrainRequest()
        if deadline is not None:
            req.deadline_seconds = deadline
        return self.call("Drain", req, timeout, check)

    def undrain(self, timeout=None, check=True):
        return self.call("Undrain", pb.UndrainRequest(), timeout, check)

    # -- logs -----------------------------------------------------------------------------------
    def logs(self, dyno_id, lines=0, timeout=None, check=True):
        """A dyno's recent lines (no follow), gathered in one LogsResponse."""
        s = self.stream("Logs", pb.LogsRequest(id=dyno_id, lines=lines),
                        timeout=self.timeout if timeout is None else timeout)
        out = pb.LogsResponse()
        for batch in s.rest(self.timeout if timeout is None else timeout):
            out.lines.extend(batch.lines)
        if not s.ended:
            s.cancel()
            raise TimeoutError(f"Logs of {dyno_id}: no end")
        if check:
            if not s.status.ok:
                raise HostdError(s.status, "Logs")
            return out
        return Reply(s.status, out if s.status.ok else None)

    def log_texts(self, dyno_id, lines=0, timeout=None):
        """The dyno's recent lines as str (undecodable bytes replaced)."""
        return [l.text.decode("utf-8", "replace") for l in self.logs(dyno_id, lines, timeout).lines]

    def follow_logs(self, dyno_id, lines=0):
        """Logs with follow: a Stream of LogsResponse, with no deadline."""
        return self.stream("Logs", pb.LogsRequest(id=dyno_id, lines=lines, follow=True))

    # -- events and metrics ---------------------------------------------------------------------
    def events(self, since=0, follow=False, timeout=None):
        """SubscribeEvents: a Stream of SubscribeEventsResponse."""
        return self.stream("SubscribeEvents",
                           pb.SubscribeEventsRequest(since=since, follow=follow), timeout)

    def event_list(self, since=0, timeout=None):
        """The kept events after since (no follow), as Event messages."""
        s = self.events(since, timeout=self.timeout if timeout is None else timeout)
        return [r.event for r in s]

    def metrics(self, interval=0):
        """SubscribeMetrics: a Stream of SubscribeMetricsResponse, with no deadline."""
        return self.stream("SubscribeMetrics",
                           pb.SubscribeMetricsRequest(interval_seconds=interval))

    # -- processes in dynos ---------------------------------------------------------------------
    def exec(self, dyno_id, argv, tty=False, columns=0, rows=0, term=""):
        """Exec: a BidiStream of ExecResponse (send input with exec_input())."""
        first = pb.ExecRequest(start=pb.ExecStart(id=dyno_id, argv=argv, tty=tty,
                                                  tty_columns=columns, tty_rows=rows,
                                                  term=term))
        return BidiStream(self.stub.Exec, first, "Exec")

    def attach(self, dyno_id):
        """Attach: a BidiStream of AttachResponse."""
        return BidiStream(self.stub.Attach, pb.AttachRequest(start=pb.AttachStart(id=dyno_id)),
                          "Attach")

    # -- images ---------------------------------------------------------------------------------
    def import_image(self, source, sha256, kind, timeout=None, check=True):
        """ImportImage to its end: the Image (check=False: a Reply). The progress messages
        before it are kept in self.last_progress."""
        s = self.stream("ImportImage", pb.ImportImageRequest(source=source, sha256=sha256,
                                                             kind=kind),
                        timeout=self.timeout if timeout is None else timeout)
        msgs = s.rest(None)
        self.last_progress = [m.progress for m in msgs if m.HasField("progress")]
        images = [m.image for m in msgs if m.HasField("image")]
        if s.status.ok and len(images) != 1:
            s.status = Status(Code.INTERNAL, f"client: {len(images)} images in ImportImage's answer")
        if check:
            if not s.status.ok:
                raise HostdError(s.status, "ImportImage")
            return images[0]
        return Reply(s.status, images[0] if s.status.ok else None)

    def list_images(self, timeout=None, check=True):
        return self.call("ListImages", pb.ListImagesRequest(), timeout, check,
                         lambda r: list(r.images))

    def remove_image(self, digest, timeout=None, check=True):
        return self.call("RemoveImage", pb.RemoveImageRequest(digest=digest), timeout, check)

    def prune_images(self, budget=None, timeout=None, check=True):
        req = pb.PruneImagesRequest()
        if budget is not None:
            req.budget_bytes = budget
        return self.call("PruneImages", req, timeout, check)

    # -- health -----------------------------------------------------------------------------------
    def health(self, service="", timeout=None):
        """grpc.health.v1 Check: the ServingStatus number (HostdError on an error)."""
        h = health_pb2_grpc.HealthStub(self.channel)
        try:
            return h.Check(health_pb2.HealthCheckRequest(service=service),
                           timeout=self.timeout if timeout is None else timeout).status
        except grpc.RpcError as e:
            raise HostdError(Status.of(e), "Check") from None

    # -- polling --------------------------------------------------------------------------------
    def wait_state(self, dyno_id, states, timeout=30.0, interval=0.05):
        """Poll GetDyno until the dyno is in one of states (DynoState numbers); the Dyno."""
        if isinstance(states, int):
            states = (states,)
        deadline = time.monotonic() + timeout
        while True:
            dyno = self.get(dyno_id)
            if dyno.state in states:
                return dyno
            if time.monotonic() > deadline:
                want = ", ".join(pb.DynoState.Name(s) for s in states)
                raise TimeoutError(
                    f"dyno {dyno_id} is {pb.DynoState.Name(dyno.state)}, not {want}, after {timeout} s"
                )
            time.sleep(interval)


def exec_input(stream, data=b"", eof=False, columns=0, rows=0):
    """Send an `input` message on an Exec stream."""
    stream.send_message(pb.ExecRequest(input=pb.StreamInput(data=data, eof=eof, columns=columns,
                                                            rows=rows)))


def attach_input(stream, data=b"", eof=False, columns=0, rows=0):
    """Send an `input` message on an Attach stream."""
    stream.send_message(pb.AttachRequest(input=pb.StreamInput(data=data, eof=eof,
                                                              columns=columns, rows=rows)))


def connect(socket_path, timeout=DEFAULT_TIMEOUT, **kw):
    return HostdClient(socket_path, timeout=timeout, **kw)
