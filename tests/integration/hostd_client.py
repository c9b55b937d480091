"""A Python client for hostd's API: a second language speaking the protocol.

The wire format is the protobuf "delimited" stream: every message is preceded by its size as a
base-128 varint. The client sends hostd.v1.Request messages and reads hostd.v1.Response
messages; each Response echoes the id of the Request it answers, and a streaming call answers
with several Responses carrying that id until one has end_of_stream set.

The message classes come from hostd_pb2, which meson generates from proto/hostd.proto into
$HOSTD_BUILD_DIR/proto/.
"""

import os
import select
import socket
import ssl
import sys
import time
from collections import deque

_SOURCE_DIR = os.environ.get(
    "HOSTD_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
BUILD_DIR = os.path.abspath(os.environ.get("HOSTD_BUILD_DIR", os.path.join(_SOURCE_DIR, "build")))
_PROTO_DIR = os.path.join(BUILD_DIR, "proto")
if _PROTO_DIR not in sys.path:
    sys.path.insert(0, _PROTO_DIR)

try:
    import hostd_pb2 as pb  # noqa: E402
except ImportError as e:  # pragma: no cover - a missing build is a setup error
    raise ImportError(
        f"hostd_pb2 not found in {_PROTO_DIR}: build first (meson compile -C build) and set "
        f"HOSTD_BUILD_DIR ({e})"
    ) from e

VARINT_MAX = 10
DEFAULT_TIMEOUT = 30.0


def code_name(code):
    """'NOT_FOUND' for 5; the number itself for a code this proto does not know."""
    try:
        return pb.Code.Name(code)
    except ValueError:
        return str(code)


def encode_varint(n):
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf, pos=0):
    """(value, next position) or None when buf ends inside the varint. ValueError when it is
    longer than 10 bytes or does not fit in 64 bits."""
    value = 0
    shift = 0
    for i in range(VARINT_MAX):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value >> 64:
                raise ValueError("varint over 64 bits")
            return value, pos + i + 1
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def frame(payload):
    """payload with its varint length prefix."""
    return encode_varint(len(payload)) + payload


def make_request(call, message=None, req_id=0):
    """A Request with the oneof field `call` ('start', 'list', 'image_list'...) set to message
    (an empty one when None)."""
    req = pb.Request(id=req_id)
    field = getattr(req, call)
    if message is None:
        field.SetInParent()
    else:
        field.CopyFrom(message)
    return req


class ConnectionClosed(Exception):
    """hostd closed the connection (EOF or reset)."""


class ProtocolError(Exception):
    """hostd sent bytes that are not a valid hostd.v1.Response (for example a string field
    that is not UTF-8, which strict parsers such as Python's and Go's refuse)."""


class HostdError(Exception):
    """A Response whose status is not OK."""

    def __init__(self, response):
        self.response = response
        self.code = response.status.code
        self.message = response.status.message
        super().__init__(f"{code_name(self.code)}: {self.message}")


def status_code(response):
    return response.status.code if response.HasField("status") else pb.OK


class HostdClient:
    """One connection to hostd. Not thread-safe.

    observer, when given, is called with every Response read (the fixtures use it to learn the
    pids of the dynos a test started)."""

    def __init__(self, socket_path, timeout=DEFAULT_TIMEOUT, max_frame=64 << 20, observer=None):
        self._setup(timeout, max_frame, observer)
        self.socket_path = socket_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(socket_path)
        except BaseException:
            self.sock.close()
            raise

    def _setup(self, timeout, max_frame, observer):
        self.timeout = timeout
        self.max_frame = max_frame
        self.observer = observer
        self._next_id = 1
        self._buf = bytearray()
        self._pending = {}  # id -> deque of Responses read while waiting for another id
        self._eof = False

    # -- connection -----------------------------------------------------------------------
    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        return self.sock.fileno()

    def shutdown_write(self):
        """Half-close: hostd sees EOF on its side of the connection."""
        self.sock.shutdown(socket.SHUT_WR)

    # -- sending --------------------------------------------------------------------------
    def send_raw(self, data):
        """Write bytes as they are (for malformed-input tests). ConnectionClosed when hostd
        closed the connection meanwhile."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
            raise ConnectionClosed(str(e)) from e

    def new_id(self):
        i = self._next_id
        self._next_id += 1
        return i

    def send(self, request):
        """Frame and send a Request; gives it a fresh id when its id is 0. Returns the id."""
        if request.id == 0:
            request.id = self.new_id()
        self.send_raw(frame(request.SerializeToString()))
        return request.id

    # -- receiving ------------------------------------------------------------------------
    def _read_some(self, deadline):
        if self._eof:
            raise ConnectionClosed("EOF")
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(f"no reply from hostd within {self.timeout} s")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no reply from hostd in time") from e
        except (ConnectionResetError, ssl.SSLError) as e:
            # TLS: an alert (a refused certificate) ends the connection as a reset does.
            self._eof = True
            raise ConnectionClosed(str(e)) from e
        if not data:
            self._eof = True
            if self._buf:
                raise ConnectionClosed(f"EOF after {len(self._buf)} bytes of an incomplete frame")
            raise ConnectionClosed("EOF")
        self._buf += data

    def recv_frame(self, timeout=None):
        """The next frame's payload as bytes."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            v = decode_varint(self._buf)
            if v is not None:
                n, start = v
                if n > self.max_frame:
                    raise ValueError(f"hostd sent a frame of {n} bytes (over {self.max_frame})")
                if len(self._buf) >= start + n:
                    payload = bytes(self._buf[start : start + n])
                    del self._buf[: start + n]
                    return payload
            self._read_some(deadline)

    def recv(self, timeout=None):
        """The next Response, whatever its id."""
        payload = self.recv_frame(timeout)
        try:
            resp = pb.Response.FromString(payload)
        except Exception as e:  # google.protobuf.message.DecodeError and friends
            raise ProtocolError(
                f"hostd sent a {len(payload)}-byte frame that is not a valid hostd.v1.Response "
                f"({e}): {payload[:200]!r}"
            ) from e
        if self.observer is not None:
            self.observer(resp)
        return resp

    def recv_for(self, req_id, timeout=None):
        """The next Response for req_id; others are kept for their own callers."""
        q = self._pending.get(req_id)
        if q:
            return q.popleft()
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            resp = self.recv(max(0.0, deadline - time.monotonic()))
            if resp.id == req_id:
                return resp
            self._pending.setdefault(resp.id, deque()).append(resp)

    def wait_closed(self, timeout=10.0):
        """Read until hostd closes the connection. Returns the Responses it sent before
        closing (undecodable frames are skipped); raises TimeoutError if the connection is
        still open after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            try:
                self._read_some(deadline)
            except ConnectionClosed:
                break
            except TimeoutError as e:
                raise TimeoutError(f"hostd kept the connection open for {timeout} s") from e
        got = []
        while True:
            try:
                v = decode_varint(self._buf)
            except ValueError:
                break
            if v is None or len(self._buf) < v[1] + v[0]:
                break
            n, start = v
            try:
                got.append(pb.Response.FromString(bytes(self._buf[start : start + n])))
            except Exception:
                pass
            del self._buf[: start + n]
        return got

    def is_open(self, wait=0.0):
        """True when hostd has not closed the connection (no EOF readable within wait s)."""
        if self._eof:
            return False
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return True
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, BrokenPipeError):
            return False
        return bool(data)

    # -- calls ----------------------------------------------------------------------------
    def call(self, request, timeout=None):
        """Send a Request and return the Response with its id (whatever its status)."""
        req_id = self.send(request)
        return self.recv_for(req_id, timeout)

    def call_ok(self, request, timeout=None):
        """call() that raises HostdError unless the status is OK."""
        resp = self.call(request, timeout)
        if status_code(resp) != pb.OK:
            raise HostdError(resp)
        return resp

    def stream(self, request, timeout=None):
        """Send a streaming Request and yield its Responses up to and including the one with
        end_of_stream (or the first error)."""
        req_id = self.send(request)
        while True:
            resp = self.recv_for(req_id, timeout)
            yield resp
            if resp.end_of_stream or status_code(resp) != pb.OK:
                return

    def request(self, call, message=None, timeout=None, check=True):
        req = make_request(call, message)
        return self.call_ok(req, timeout) if check else self.call(req, timeout)

    # -- typed helpers (check=False returns the Response even when it carries an error) ---------
    def start(self, spec, timeout=None, check=True):
        resp = self.request("start", pb.StartRequest(spec=spec), timeout, check)
        return resp.start.dyno if check else resp

    def stop(self, dyno_id, grace=None, timeout=None, check=True):
        msg = pb.StopRequest(id=dyno_id)
        if grace is not None:
            msg.grace_seconds = grace
        if timeout is None:
            timeout = self.timeout + (grace or 0)
        resp = self.request("stop", msg, timeout, check)
        return resp.stop.dyno if check else resp

    def restart(self, dyno_id, grace=None, timeout=None, check=True):
        msg = pb.RestartRequest(id=dyno_id)
        if grace is not None:
            msg.grace_seconds = grace
        if timeout is None:
            timeout = self.timeout + (grace or 0)
        resp = self.request("restart", msg, timeout, check)
        return resp.restart.dyno if check else resp

    def get(self, dyno_id, timeout=None, check=True):
        resp = self.request("get", pb.GetRequest(id=dyno_id), timeout, check)
        return resp.get.dyno if check else resp

    def list(self, timeout=None, check=True):
        resp = self.request("list", None, timeout, check)
        return list(resp.list.dynos) if check else resp

    def host_info(self, timeout=None, check=True):
        resp = self.request("host_info", None, timeout, check)
        return resp.host_info if check else resp

    def logs(self, dyno_id, lines=0, timeout=None, check=True):
        """The LogBatch of a dyno's recent lines (no follow)."""
        resp = self.request("logs", pb.LogsRequest(id=dyno_id, lines=lines), timeout, check)
        return resp.logs if check else resp

    def log_texts(self, dyno_id, lines=0, timeout=None):
        """The dyno's recent lines as str (undecodable bytes replaced)."""
        return [l.text.decode("utf-8", "replace") for l in self.logs(dyno_id, lines, timeout).lines]

    def wait_state(self, dyno_id, states, timeout=30.0, interval=0.05):
        """Poll Get until the dyno is in one of states (DynoState numbers); returns the Dyno."""
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


class TlsHostdClient(HostdClient):
    """One connection to hostd's TLS listener (listen-tls): the same protocol, over TLS 1.3
    with a client certificate, the server's checked against ca and its IP or name.

    cert=None sends no client certificate; max_version (an ssl.TLSVersion) makes a client that
    offers older versions only. The local address ("127.0.0.1:40000", as hostd logs the peer)
    is known before the handshake: self.local."""

    def __init__(self, host, port, cert, key, ca, timeout=DEFAULT_TIMEOUT, max_frame=64 << 20,
                 observer=None, max_version=None):
        self._setup(timeout, max_frame, observer)
        self.socket_path = f"{host}:{port}"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if max_version is not None:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.maximum_version = max_version
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = socket.create_connection((host, port), timeout=timeout)
        self.local = "%s:%d" % raw.getsockname()[:2]
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise

    def is_open(self, wait=0.0):
        raise NotImplementedError("MSG_PEEK does not apply to TLS: use wait_closed()")


def connect(socket_path, timeout=DEFAULT_TIMEOUT, **kw):
    return HostdClient(socket_path, timeout=timeout, **kw)
