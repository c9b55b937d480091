"""The control plane's listener: mutual TLS 1.3 on TCP (listen-tls), and the limits every
connection has (max-connections, max-inflight, idle-timeout, max-frame, fairness).

Certificates come from the openssl command line, made fresh for each test in a folder of its
own that goes with it: a
CA, a server certificate for 127.0.0.1, client certificates (a good one, one from another CA,
an expired one, one with another name)."""

import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from conftest import BUILD_DIR, HOSTD_BIN
from dynoutil import wait_log as wait_app_log
from hostd_client import ConnectionClosed, HostdClient, TlsHostdClient, frame, make_request, pb

# not the cgroup v2 tier: the TLS listener and connection limits
pytestmark = pytest.mark.cgroup_independent

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
WAIT = 30.0  # a bound on waits for what must happen, not a measure


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


class Pki:
    """A CA in folder, and certificates it signs."""

    def __init__(self, folder, name):
        self.dir = os.path.join(folder, name)
        os.makedirs(os.path.join(self.dir, "db"))
        open(os.path.join(self.dir, "db", "index.txt"), "w").close()
        with open(os.path.join(self.dir, "db", "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "ca.cnf"), "w") as f:
            f.write(textwrap.dedent("""\
                [ca]
                default_ca = test
                [test]
                database = db/index.txt
                serial = db/serial
                new_certs_dir = db
                default_md = sha256
                policy = any
                copy_extensions = copy
                unique_subject = no
                [any]
                commonName = supplied
                """))
        self.ca = self.path("ca.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", f"/CN={name}",
                cwd=self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def issue(self, name, cn, san=None, server=False, start=None, end=None):
        """(cert, key) for cn, with subjectAltName san ("IP:127.0.0.1,URI:..."); start and end
        (YYYYMMDDHHMMSSZ) make its validity, else 30 days from now."""
        ext = ["-addext", f"subjectAltName={san}"] if san else []
        ext += ["-addext", "extendedKeyUsage=" + ("serverAuth" if server else "clientAuth")]
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", *ext,
                cwd=self.dir)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "30"]
        openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext", *dates, cwd=self.dir)
        return self.path(f"{name}.pem"), self.path(f"{name}.key")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tls:
    """A PKI and the hostd settings that use it. The server's files are copies at fixed paths
    (server.pem, server.key, clients-ca.pem), so that a test can swap them and SIGHUP."""

    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.pki = Pki(self.tmp, "test-ca")
        self.other = Pki(self.tmp, "other-ca")
        self.port = free_port()
        cert, key = self.pki.issue("server", "hostd-test", "IP:127.0.0.1", server=True)
        self.install(cert, key, self.pki.ca)
        self.client = self.pki.issue("client", "control-plane",
                                     "URI:spiffe://test/control-plane,DNS:cp.example")

    def install(self, cert, key, ca):
        for src, dst in ((cert, "server.pem"), (key, "server.key"), (ca, "clients-ca.pem")):
            shutil.copyfile(src, os.path.join(self.tmp, dst + ".new"))
            os.rename(os.path.join(self.tmp, dst + ".new"), os.path.join(self.tmp, dst))

    @property
    def server_ca(self):
        return self.pki.ca

    def settings(self, **extra):
        s = {
            "listen-tls": f"127.0.0.1:{self.port}",
            "tls-cert": os.path.join(self.tmp, "server.pem"),
            "tls-key": os.path.join(self.tmp, "server.key"),
            "tls-ca": os.path.join(self.tmp, "clients-ca.pem"),
        }
        s.update({k.replace("_", "-"): v for k, v in extra.items()})
        return s

    def connect(self, hostd, cert=None, key=None, ca=None, **kw):
        cert, key = (cert, key) if cert is not None else self.client
        c = TlsHostdClient("127.0.0.1", self.port, cert or None, key, ca or self.server_ca,
                           observer=hostd._observe, **kw)
        hostd._clients.append(c)
        return c


@pytest.fixture
def tls():
    """Its folder, private keys included, goes with the test (pytest keeps tmp_path)."""
    tmp = tempfile.mkdtemp(prefix="hostd-tls-")
    try:
        yield Tls(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_log(hostd, text, since=0):
    """The first line of hostd's log after offset since that holds text."""
    deadline = time.monotonic() + WAIT
    while True:
        for line in hostd.log_text()[since:].splitlines():
            if text in line:
                return line
        assert time.monotonic() < deadline, f"no '{text}' in hostd's log:\n{hostd.log_tail()}"
        time.sleep(0.05)


def assert_closed_unanswered(s):
    """hostd closes the socket s without a byte for it (a reset when our bytes are unread)."""
    s.settimeout(WAIT)
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass


def refused(connect, call="list"):
    """Run connect() and a call on what it returns; the exception that ends it."""
    c = None
    try:
        c = connect()
        c.request(call)
    except (ssl.SSLError, ConnectionClosed, ConnectionResetError, BrokenPipeError) as e:
        return e
    finally:
        if c is not None:
            c.close()
    pytest.fail("hostd answered a client it should have refused")


# -- accepted ----------------------------------------------------------------------------------


def test_the_right_certificate_speaks_the_protocol(hostd_factory, tls, make_spec):
    hostd = hostd_factory(**tls.settings())
    with tls.connect(hostd) as c:
        d = c.start(make_spec("tls-1"))
        assert d.state == pb.UP and d.pid > 0
        assert [x.spec.id for x in c.list()] == ["tls-1"]
        assert c.host_info().hostname == socket.gethostname()
        local = c.local
    line = wait_log(hostd, f"TLS {local}: ")
    assert "CN=control-plane connected" in line
    # The Unix socket sees the same host.
    with hostd.client() as u:
        assert u.get("tls-1").pid == d.pid


# -- refused -----------------------------------------------------------------------------------


def refusal_case(name, tls):
    """(connect function, what hostd's log line says) for each way a client is refused."""
    if name == "wrong-ca":
        cert = tls.other.issue("stranger", "control-plane")
        return dict(cert=cert[0], key=cert[1]), "client certificate from an unknown CA"
    if name == "expired":
        cert = tls.pki.issue("expired", "control-plane", start="20200101000000Z",
                             end="20210101000000Z")
        return dict(cert=cert[0], key=cert[1]), "client certificate expired"
    if name == "no-certificate":
        return dict(cert=""), "no client certificate"
    if name == "tls-1.2":
        return dict(max_version=ssl.TLSVersion.TLSv1_2), "the client does not offer TLS 1.3"
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["wrong-ca", "expired", "no-certificate", "tls-1.2"])
def test_a_bad_client_is_refused_with_a_log_line_and_nothing_changes(hostd_factory, tls,
                                                                     make_spec, case):
    hostd = hostd_factory(**tls.settings())
    with hostd.client() as u:
        pid = u.start(make_spec("keep-1")).pid
    before = hostd.settled_snapshot()
    kw, reason = refusal_case(case, tls)
    mark = len(hostd.log_text())
    local = []

    def connect():
        c = tls.connect(hostd, **kw)
        local.append(c.local)
        return c

    try:
        refused(connect)
    except ssl.SSLError:
        pass  # the TLS 1.2 client fails its own handshake: hostd's alert says why
    if not local:  # the handshake failed on our side before connect() returned
        line = wait_log(hostd, "TLS 127.0.0.1:", mark)
    else:
        line = wait_log(hostd, f"TLS {local[0]}: refused", mark)
    assert "refused: " + reason in line, line
    hostd.assert_unchanged(before, f"a {case} client")
    with hostd.client() as u:
        assert [(d.spec.id, d.state, d.pid) for d in u.list()] == [("keep-1", pb.UP, pid)]


def test_plaintext_protocol_on_the_tls_port_is_refused(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings())
    mark = len(hostd.log_text())
    with socket.create_connection(("127.0.0.1", tls.port), timeout=WAIT) as s:
        local = "%s:%d" % s.getsockname()[:2]
        data = frame(make_request("list", req_id=1).SerializeToString())
        s.sendall(data)
        assert_closed_unanswered(s)
    line = wait_log(hostd, f"TLS {local}: refused", mark)
    assert f"not TLS (the first byte is 0x{data[0]:02x}" in line, line
    hostd.assert_serving()


def test_an_identity_not_on_the_allow_list_is_refused(hostd_factory, tls):
    other = tls.pki.issue("intruder", "intruder", "DNS:intruder.example")
    # Every kind of identity: a CN, a DNS name (any case), a URI.
    hostd = hostd_factory(**tls.settings(
        tls_allow="someone-else, CP.EXAMPLE,spiffe://test/other"))
    mark = len(hostd.log_text())
    with tls.connect(hostd, cert=other[0], key=other[1]) as c:
        resp = c.wait_closed(WAIT)
        local = c.local
    assert [(r.id, r.status.code) for r in resp] == [(0, pb.PERMISSION_DENIED)]
    assert "CN=intruder is not allowed" in resp[0].status.message
    line = wait_log(hostd, f"TLS {local}: refused", mark)
    assert "CN=intruder is not on the allow-list (tls-allow)" in line, line
    # The good client is allowed by its DNS name, whose case does not matter.
    with tls.connect(hostd) as c:
        assert c.list() == []


@pytest.mark.parametrize("allow", ["control-plane", "spiffe://test/control-plane", "cp.example"])
def test_the_allow_list_matches_a_cn_a_uri_or_a_dns_name(hostd_factory, tls, allow):
    hostd = hostd_factory(**tls.settings(tls_allow=allow))
    with tls.connect(hostd) as c:
        assert c.list() == []


# -- reload ------------------------------------------------------------------------------------


def test_sighup_swaps_the_certificates_and_keeps_dynos_and_connections(hostd_factory, tls,
                                                                       make_spec):
    hostd = hostd_factory(**tls.settings())
    with tls.connect(hostd) as c:
        pid = c.start(make_spec("hup-1")).pid
    old_client = tls.client
    kept = tls.connect(hostd)  # open across the reload
    assert kept.list()[0].pid == pid

    new = Pki(tls.tmp, "new-ca")
    cert, key = new.issue("server2", "hostd-test-2", "IP:127.0.0.1", server=True)
    new_client = new.issue("client2", "control-plane")
    tls.install(cert, key, new.ca)
    mark = len(hostd.log_text())
    os.kill(hostd.pid, signal.SIGHUP)
    line = wait_log(hostd, "TLS: reload", mark)
    assert "reloaded tls-cert" in line, line

    with tls.connect(hostd, cert=new_client[0], key=new_client[1], ca=new.ca) as c:
        assert [(d.spec.id, d.pid, d.state) for d in c.list()] == [("hup-1", pid, pb.UP)]
    # The old client now chains to a CA hostd no longer trusts; it checks the server against
    # the new CA to get that far.
    mark = len(hostd.log_text())
    local = []

    def connect_old():
        c = tls.connect(hostd, cert=old_client[0], key=old_client[1], ca=new.ca)
        local.append(c.local)
        return c

    refused(connect_old)
    line = wait_log(hostd, f"TLS {local[0]}: refused", mark)
    assert "unknown CA" in line, line
    # The connection made before the reload carries on.
    assert kept.list()[0].pid == pid
    kept.close()
    assert pid in hostd.dyno_inits()


def test_a_failed_reload_keeps_the_certificates_in_use(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings())
    with open(os.path.join(tls.tmp, "server.key"), "w") as f:
        f.write("not a key\n")
    mark = len(hostd.log_text())
    os.kill(hostd.pid, signal.SIGHUP)
    line = wait_log(hostd, "TLS: reload", mark)
    assert "reload failed" in line and "tls-key " + os.path.join(tls.tmp, "server.key") in line
    with tls.connect(hostd) as c:
        assert c.list() == []


# -- start-time checks -------------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["mismatched-key", "missing-ca", "not-a-certificate"])
def test_bad_tls_files_stop_hostd_at_start_naming_key_and_file(hostd_factory, tls, broken):
    s = tls.settings()
    if broken == "mismatched-key":
        s["tls-key"] = tls.client[1]
        key, path, why = "tls-key", tls.client[1], "does not match the certificate"
    elif broken == "missing-ca":
        s["tls-ca"] = os.path.join(tls.tmp, "nowhere.pem")
        key, path, why = "tls-ca", s["tls-ca"], "No such file or directory"
    else:
        s["tls-cert"] = tls.pki.path("ca.key")
        key, path, why = "tls-cert", s["tls-cert"], "no PEM certificate"
    hostd = hostd_factory(start=False, **s)
    r = subprocess.run([HOSTD_BIN, "--config", hostd.config_path], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    line = next((l for l in r.stderr.splitlines() if f"{key} {path}" in l), None)
    assert line is not None and why in line, r.stderr
    assert not os.path.exists(hostd.socket_path)


# -- hostctl -----------------------------------------------------------------------------------


def hostctl_tls(tls, *args, ca=None, cert=None):
    cert, key = cert or tls.client
    return subprocess.run(
        [HOSTCTL, "--host", f"127.0.0.1:{tls.port}", "--cert", cert, "--key", key,
         "--ca", ca or tls.server_ca, *args],
        capture_output=True, text=True, timeout=60,
    )


def test_hostctl_over_tls(hostd_factory, tls, make_spec):
    hostd = hostd_factory(**tls.settings())
    with hostd.client() as u:
        u.start(make_spec("ctl-tls-1"))
    r = hostctl_tls(tls, "ps")
    assert r.returncode == 0, r.stderr
    assert any(l.split()[:5] == ["ctl-tls-1", "worker.1", "worker", "standard-1x", "up"]
               for l in r.stdout.splitlines()), r.stdout
    # The environment names the same settings.
    env = dict(os.environ, HOSTCTL_HOST=f"127.0.0.1:{tls.port}", HOSTCTL_CERT=tls.client[0],
               HOSTCTL_KEY=tls.client[1], HOSTCTL_CA=tls.server_ca)
    r = subprocess.run([HOSTCTL, "--json", "inspect", "ctl-tls-1"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert '"state": "up"' in r.stdout or '"state":"up"' in r.stdout
    # A stream that ends: the events so far, the dyno's start among them.
    r = hostctl_tls(tls, "events", "--since", "0")
    assert r.returncode == 0, r.stderr
    assert any("ctl-tls-1" in l and " up " in f" {l} " for l in r.stdout.splitlines()), r.stdout
    # A stream over TLS: exec's output and exit status.
    r = hostctl_tls(tls, "exec", "ctl-tls-1", "--", "sh", "-c", "echo hello over tls; exit 7")
    assert (r.returncode, r.stdout) == (7, "hello over tls\n"), r.stderr


def test_hostctl_with_the_wrong_ca_fails_clearly(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings())
    mark = len(hostd.log_text())
    r = hostctl_tls(tls, "ps", ca=tls.other.ca)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert f"127.0.0.1:{tls.port}" in r.stderr
    assert "server certificate not trusted" in r.stderr and tls.other.ca in r.stderr, r.stderr
    # hostd's side says that the client refused, not that the client was refused.
    line = wait_log(hostd, "refused: ", mark)
    assert "the client ended the handshake with an alert (tlsv1 alert unknown ca)" in line
    # The right CA, but a name the server's certificate (IP:127.0.0.1 only) does not carry.
    r = subprocess.run(
        [HOSTCTL, "--host", f"localhost:{tls.port}", "--cert", tls.client[0], "--key",
         tls.client[1], "--ca", tls.server_ca, "ps"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "server certificate not trusted: hostname mismatch" in r.stderr, r.stderr
    hostd.assert_serving()


def test_hostctl_refused_by_hostd_says_so(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings())
    stranger = tls.other.issue("stranger", "control-plane")
    r = hostctl_tls(tls, "ps", cert=stranger)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "hostctl: ps: hostd refused this client over TLS: tlsv1 alert unknown ca" \
        in r.stderr, r.stderr


# -- limits ------------------------------------------------------------------------------------


def test_an_idle_connection_is_closed_and_a_stream_is_not(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings(idle_timeout=2))
    streaming = hostd.client()
    streaming.send(make_request("subscribe_events", pb.SubscribeEventsRequest(follow=True)))
    idle = tls.connect(hostd)
    assert idle.list() == []
    mark = len(hostd.log_text())
    got = idle.wait_closed(WAIT)
    assert [(r.id, r.status.code) for r in got] == [(0, pb.UNAVAILABLE)]
    assert "idle-timeout" in got[0].status.message
    line = wait_log(hostd, f"connection {idle.local}: closed after 2 s without a request", mark)
    assert "(idle-timeout)" in line
    # The stream was opened before the idle connection and is still served.
    assert streaming.is_open()
    assert streaming.list() == []


def test_a_silent_tls_client_is_cut_at_the_handshake_timeout(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings(tls_handshake_timeout=1))
    mark = len(hostd.log_text())
    with socket.create_connection(("127.0.0.1", tls.port), timeout=WAIT) as s:
        local = "%s:%d" % s.getsockname()[:2]
        assert_closed_unanswered(s)
    line = wait_log(hostd, f"TLS {local}: refused", mark)
    assert "no TLS handshake within 1 s (tls-handshake-timeout)" in line, line


def test_max_inflight_refuses_more_calls_in_flight_and_answers_the_rest(hostd_factory, tls,
                                                                          make_spec):
    hostd = hostd_factory(**tls.settings(max_inflight=1))
    with tls.connect(hostd) as c:
        # A dyno that ignores SIGTERM: its stop is in flight until the grace period ends, or
        # until another stop (below) cuts it short.
        pid = c.start(make_spec("slow-stop", command="trap '' TERM; echo ready; exec sleep 1000")).pid
        # the stop below must find TERM ignored: a slow host may still be starting the shell
        wait_app_log(c, "slow-stop", "ready", timeout=WAIT)
        stop_id = c.send(make_request("stop", pb.StopRequest(id="slow-stop", grace_seconds=600)))
        follow = c.request("subscribe_events", pb.SubscribeEventsRequest(follow=True),
                           check=False)
        assert follow.status.code == pb.RESOURCE_EXHAUSTED
        assert follow.status.message == (
            "subscribe_events: calls and streams in flight on this connection: 1, the limit "
            "(max-inflight); send it again once one has ended")
        # A call answered at once is not limited, and the stop is still pending.
        assert [d.state for d in c.list()] == [pb.STOPPING]
        assert pid in hostd.dyno_inits()
        # Another connection has its own count: it ends the stop at once.
        with tls.connect(hostd) as other:
            assert other.stop("slow-stop", grace=0).state == pb.DOWN
        assert c.recv_for(stop_id).stop.dyno.state == pb.DOWN
        # Nothing in flight now: the stream opens.
        first = next(c.stream(make_request("subscribe_events",
                                           pb.SubscribeEventsRequest(follow=True))))
        assert first.status.code == pb.OK and first.HasField("event")


def test_max_connections_counts_both_listeners(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings(max_connections=2))
    a = hostd.client()
    b = tls.connect(hostd)
    assert a.list() == [] and b.list() == []
    mark = len(hostd.log_text())
    with pytest.raises((ConnectionClosed, ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        c = tls.connect(hostd)
        c.list()
    wait_log(hostd, "refusing a connection from 127.0.0.1:", mark)
    with pytest.raises((ConnectionClosed, ConnectionResetError, BrokenPipeError)):
        u = hostd.client()
        u.list()
    wait_log(hostd, "refusing a connection from pid ", mark)
    b.close()
    # A place is free again once hostd has seen the close.
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with tls.connect(hostd) as c:
                assert c.list() == []
                break
        except (ConnectionClosed, ssl.SSLError, ConnectionResetError, BrokenPipeError):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_max_frame_applies_to_tls(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings(max_frame="64K"))
    with tls.connect(hostd) as c:
        c.send_raw(b"\x80\x80\x08")  # a length of 128 KiB, and nothing else
        got = c.wait_closed(WAIT)
    assert [(r.id, r.status.code) for r in got] == [(0, pb.RESOURCE_EXHAUSTED)]
    assert "over the limit of 65536 bytes" in got[0].status.message
    hostd.assert_serving()


# -- fairness ----------------------------------------------------------------------------------

FLOODER = textwrap.dedent("""\
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from hostd_client import TlsHostdClient, frame, make_request, decode_varint
    host, port, cert, key, ca, seconds = sys.argv[2:8]
    c = TlsHostdClient(host, int(port), cert, key, ca)
    batch = b"".join(frame(make_request("list", req_id=i + 1).SerializeToString())
                     for i in range(64))
    sent = answered = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        c.send_raw(batch)
        sent += 64
        while sent - answered > 512:   # keep 512 to 576 requests in flight, pipelined
            c.recv_frame()
            answered += 1
    while answered < sent:
        c.recv_frame()
        answered += 1
    print(answered, flush=True)
""")


def test_a_flooding_client_does_not_starve_another(hostd_factory, tls, capsys):
    hostd = hostd_factory(**tls.settings(log_level="info"))
    here = os.path.dirname(os.path.abspath(__file__))
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOODER, here, "127.0.0.1", str(tls.port), tls.client[0],
         tls.client[1], tls.server_ca, "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", "")),
    )
    def percentiles(lat):
        lat = sorted(lat)
        return statistics.median(lat) * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000

    with tls.connect(hostd) as c:
        alone = []
        for _ in range(300):
            t = time.monotonic()
            c.host_info()
            alone.append(time.monotonic() - t)
    try:
        latencies = []
        with tls.connect(hostd) as c:
            # Once the flood is under way (its requests are answered), measure.
            time.sleep(1.0)
            while flood.poll() is None and len(latencies) < 2000:
                t = time.monotonic()
                info = c.host_info()
                latencies.append(time.monotonic() - t)
                assert info.hostname == socket.gethostname() and info.cpus > 0
        out, err = flood.communicate(timeout=120)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    assert flood.returncode == 0, err
    flooded = int(out.strip())
    assert len(latencies) > 0
    p50, p99 = percentiles(latencies)
    a50, a99 = percentiles(alone)
    with capsys.disabled():
        print(f"\n[fairness] well-behaved client: {len(latencies)} host_info calls answered, "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, while a flooding client had "
              f"{flooded} list calls answered (alone: p50 {a50:.2f} ms, p99 {a99:.2f} ms)")
    hostd.assert_serving()
