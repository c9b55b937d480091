"""The control plane's listener: gRPC over mutual TLS 1.3 on TCP (listen-tls, ALPN h2), and
the limits every connection has (max-connections, max-inflight, idle-timeout, max-message,
fairness), from a stock gRPC client (python3-grpcio) and, for what it would never send, from
Python's ssl module.

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
from hostd_client import Code, HostdClient, HostdError, pb

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
        """A gRPC client of the TLS listener (a channel: it connects at its first call)."""
        cert, key = (cert, key) if cert is not None else self.client
        c = HostdClient.tls("127.0.0.1", self.port, cert or None, key, ca or self.server_ca,
                            observer=hostd._observe, **kw)
        hostd._clients.append(c)
        return c

    def handshake(self, alpn=("h2",), max_version=None, cert=True):
        """A TLS handshake from Python's ssl module, for what grpcio never offers (another
        ALPN, none, TLS 1.2): (local address, the exception that ended it or None)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.server_ca)
        if cert:
            ctx.load_cert_chain(*self.client)
        if max_version is not None:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.maximum_version = max_version
        if alpn is not None:
            ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        local = "%s:%d" % raw.getsockname()[:2]
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as k:
                k.sendall(PREFACE)
                got = k.recv(100)  # hostd closes a connection it refuses after the handshake
                return local, None if got else ConnectionResetError("closed")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            return local, e
        finally:
            raw.close()


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


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def refused(c):
    """A call on the client c fails as a refused TLS handshake does for a gRPC client:
    UNAVAILABLE. The HostdError."""
    with pytest.raises(HostdError) as e:
        c.list(timeout=10)
    assert e.value.code == Code.UNAVAILABLE, e.value
    c.close()
    return e.value


# -- accepted ----------------------------------------------------------------------------------


def test_the_right_certificate_speaks_the_protocol(hostd_factory, tls, make_spec):
    hostd = hostd_factory(**tls.settings())
    with tls.connect(hostd) as c:
        d = c.start(make_spec("tls-1"))
        assert d.state == pb.DYNO_STATE_UP and d.pid > 0
        assert [x.spec.id for x in c.list()] == ["tls-1"]
        assert c.host_info().hostname == socket.gethostname()
    line = wait_log(hostd, "TLS 127.0.0.1:")
    assert line.endswith("CN=control-plane connected"), line
    # The Unix socket sees the same host.
    with hostd.client() as u:
        assert u.get("tls-1").pid == d.pid


# -- refused -----------------------------------------------------------------------------------


def refusal_case(name, tls):
    """(client certificate and key, what hostd's log line says) for each way a gRPC client is
    refused."""
    if name == "wrong-ca":
        cert = tls.other.issue("stranger", "control-plane")
        return dict(cert=cert[0], key=cert[1]), "client certificate from an unknown CA"
    if name == "expired":
        cert = tls.pki.issue("expired", "control-plane", start="20200101000000Z",
                             end="20210101000000Z")
        return dict(cert=cert[0], key=cert[1]), "client certificate expired"
    if name == "no-certificate":
        return dict(cert=""), "no client certificate"
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["wrong-ca", "expired", "no-certificate"])
def test_a_bad_client_is_refused_with_a_log_line_and_nothing_changes(hostd_factory, tls,
                                                                     make_spec, case):
    hostd = hostd_factory(**tls.settings())
    with hostd.client() as u:
        pid = u.start(make_spec("keep-1")).pid
    before = hostd.settled_snapshot()
    kw, reason = refusal_case(case, tls)
    mark = len(hostd.log_text())
    refused(tls.connect(hostd, **kw))
    line = wait_log(hostd, "TLS 127.0.0.1:", mark)
    assert ": refused: " + reason in line, line
    hostd.assert_unchanged(before, f"a {case} client")
    with hostd.client() as u:
        assert [(d.spec.id, d.state, d.pid) for d in u.list()] == [("keep-1", pb.DYNO_STATE_UP, pid)]


@pytest.mark.parametrize("case", ["tls-1.2", "alpn-http1", "no-alpn"])
def test_a_client_grpcio_would_not_be_is_refused(hostd_factory, tls, case):
    """TLS 1.2 only, an ALPN without h2, no ALPN at all: refused in (or right after) the
    handshake, with the reason in hostd's log; a good client still gets in."""
    hostd = hostd_factory(**tls.settings())
    mark = len(hostd.log_text())
    kw, reason = {
        "tls-1.2": (dict(max_version=ssl.TLSVersion.TLSv1_2), "the client does not offer TLS 1.3"),
        "alpn-http1": (dict(alpn=("http/1.1",)), "the client does not offer ALPN h2"),
        "no-alpn": (dict(alpn=None), "the client offered no ALPN protocol; gRPC needs h2"),
    }[case]
    local, err = tls.handshake(**kw)
    assert err is not None, "hostd took the client"
    line = wait_log(hostd, f"TLS {local}: refused", mark)
    assert reason in line, line
    with tls.connect(hostd) as c:
        assert c.list() == []


def test_plaintext_protocol_on_the_tls_port_is_refused(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings())
    mark = len(hostd.log_text())
    # What a gRPC client without TLS sends first: the HTTP/2 preface.
    with socket.create_connection(("127.0.0.1", tls.port), timeout=WAIT) as s:
        local = "%s:%d" % s.getsockname()[:2]
        s.sendall(PREFACE)
        assert_closed_unanswered(s)
    line = wait_log(hostd, f"TLS {local}: refused", mark)
    assert "not TLS (the first byte is 0x50" in line, line
    # and a stock client that forgot its credentials
    mark = len(hostd.log_text())
    refused(HostdClient(f"127.0.0.1:{tls.port}", timeout=10))
    wait_log(hostd, "refused: not TLS (the first byte is 0x50", mark)
    hostd.assert_serving()


def test_an_identity_not_on_the_allow_list_is_refused(hostd_factory, tls):
    other = tls.pki.issue("intruder", "intruder", "DNS:intruder.example")
    # Every kind of identity: a CN, a DNS name (any case), a URI.
    hostd = hostd_factory(**tls.settings(
        tls_allow="someone-else, CP.EXAMPLE,spiffe://test/other"))
    mark = len(hostd.log_text())
    with tls.connect(hostd, cert=other[0], key=other[1]) as c:
        # The handshake succeeds (the certificate is good); every call is refused.
        for call in (c.list, c.host_info):
            resp = call(check=False)
            assert resp.status.code == Code.PERMISSION_DENIED, resp
            assert "CN=intruder is not allowed on this host (tls-allow)" in resp.status.message
    line = wait_log(hostd, "TLS 127.0.0.1:", mark)
    assert "refused: CN=intruder is not on the allow-list (tls-allow)" in line, line
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
        assert [(d.spec.id, d.pid, d.state) for d in c.list()] == [("hup-1", pid, pb.DYNO_STATE_UP)]
    # The old client now chains to a CA hostd no longer trusts; it checks the server against
    # the new CA to get that far.
    mark = len(hostd.log_text())
    refused(tls.connect(hostd, cert=old_client[0], key=old_client[1], ca=new.ca))
    line = wait_log(hostd, "TLS 127.0.0.1:", mark)
    assert "refused: client certificate from an unknown CA" in line, line
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
    follow = streaming.events(follow=True)
    assert follow.next(WAIT) is not None  # hostd's start
    idle = tls.connect(hostd)
    assert idle.list() == []
    mark = len(hostd.log_text())
    line = wait_log(hostd, "closed after 2 s without a call (idle-timeout)", mark)
    assert line.split("connection ")[1].startswith("127.0.0.1:"), line
    # The stream was opened before the idle connection and is still served; its connection
    # was not closed, though it carried no call for longer.
    time.sleep(1)
    assert not follow.ended
    assert "pid " not in "".join(l for l in hostd.log_text()[mark:].splitlines()
                                 if "idle-timeout" in l)
    assert streaming.list() == []
    # hostd said goodbye with GOAWAY: a gRPC client just connects again for its next call.
    assert idle.list() == []


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
        stop = c.stop_async("slow-stop", grace=600)
        with hostd.client() as u:
            u.wait_state("slow-stop", pb.DYNO_STATE_STOPPING)
        # One stream is open on the connection, the limit: a second is refused, unary or not.
        follow = c.events(follow=True)
        assert follow.rest(WAIT) == []
        assert follow.status.code == Code.RESOURCE_EXHAUSTED, follow.status
        assert follow.status.message == (
            "/hostd.v1.Hostd/SubscribeEvents: calls in flight on this connection: 1, the limit "
            "(max-inflight); send it again once one has ended")
        r = c.list(check=False)
        assert r.status.code == Code.RESOURCE_EXHAUSTED and "max-inflight" in r.status.message
        assert not stop.done() and pid in hostd.dyno_inits()
        # Another connection has its own count: it ends the stop at once.
        with tls.connect(hostd) as other:
            assert other.stop("slow-stop", grace=0).state == pb.DYNO_STATE_DOWN
        assert stop.result(WAIT).state == pb.DYNO_STATE_DOWN
        # Nothing in flight now: the stream opens.
        follow = c.events(follow=True)
        first = follow.next(WAIT)
        assert first is not None and first.event.seq == 1, follow.status
        follow.cancel()


def test_max_connections_counts_both_listeners(hostd_factory, tls):
    hostd = hostd_factory(**tls.settings(max_connections=2))
    a = hostd.client()
    b = tls.connect(hostd)
    assert a.list() == [] and b.list() == []
    mark = len(hostd.log_text())
    refused(tls.connect(hostd))
    wait_log(hostd, "refusing a connection from 127.0.0.1:", mark)
    refused(hostd.client(timeout=10))
    wait_log(hostd, "refusing a connection from pid ", mark)
    b.close()
    # A place is free again once hostd has seen the close.
    deadline = time.monotonic() + WAIT
    while True:
        with tls.connect(hostd) as c:
            r = c.list(check=False)
        if r.ok:
            assert r.value == []
            break
        assert r.status.code == Code.UNAVAILABLE and time.monotonic() < deadline, r
        time.sleep(0.1)
    assert a.list() == []


def test_max_message_applies_to_tls(hostd_factory, tls, make_spec):
    hostd = hostd_factory(**tls.settings(max_message="64K"))
    with tls.connect(hostd) as c:
        resp = c.start(make_spec("big-1", env=[("BIG", "b" * 70000)]), check=False)
        assert resp.status.code == Code.RESOURCE_EXHAUSTED, resp
        assert "65536" in resp.status.message, resp.status.message
        assert c.list() == []  # the connection goes on
    hostd.assert_serving()


# -- fairness ----------------------------------------------------------------------------------

FLOODER = textwrap.dedent("""\
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from hostd_client import HostdClient, pb
    host, port, cert, key, ca, seconds = sys.argv[2:8]
    c = HostdClient.tls(host, int(port), cert, key, ca)
    c.list()
    inflight = []
    answered = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        # as many calls in flight on the one connection as max-inflight (64) lets it have
        while len(inflight) < 60:
            inflight.append(c.call_async("ListDynos", pb.ListDynosRequest()))
        inflight.pop(0).result()
        answered += 1
    for p in inflight:
        p.result()
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
        print(f"\n[fairness] well-behaved client: {len(latencies)} GetHost calls answered, "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, while a flooding client had "
              f"{flooded} ListDynos calls answered (alone: p50 {a50:.2f} ms, p99 {a99:.2f} ms)")
    hostd.assert_serving()
