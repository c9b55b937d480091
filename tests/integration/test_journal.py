"""Dyno log lines go to the journal too, in journald's native protocol, with the fields an
operator filters on (DYNO, DYNO_ID, APP, SOURCE); a journal that does not read never holds a
dyno or hostd up.

The journal here is a datagram socket the test binds and reads, standing in for journald's.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_journal.py
"""

import os
import socket
import struct
import time

import pytest

from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: journal fields and a journal that does not read
    pytest.mark.cgroup_independent,
]


def parse(datagram):
    """The native protocol: FIELD=value\\n, or FIELD\\n + 64-bit LE length + bytes + \\n."""
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        eq = datagram.find(b"=", i, nl)
        if eq >= 0:
            fields[datagram[i:eq].decode()] = datagram[eq + 1 : nl]
            i = nl + 1
        else:
            name = datagram[i:nl].decode()
            (n,) = struct.unpack("<Q", datagram[nl + 1 : nl + 9])
            fields[name] = datagram[nl + 9 : nl + 9 + n]
            assert datagram[nl + 9 + n : nl + 10 + n] == b"\n"
            i = nl + 10 + n
    return fields


@pytest.fixture
def journal(tmp_path):
    path = str(tmp_path / "journal.socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    yield path, s
    s.close()


def test_lines_reach_the_journal_with_their_fields(hostd_factory, make_spec, journal):
    path, sock = journal
    h = hostd_factory(journal_socket=path)
    c = h.client()
    c.start(make_spec("jr-1", name="worker.3", app="shop", command="echo hello-journal; sleep 100"))
    sock.settimeout(10)
    seen = []
    deadline = time.monotonic() + 10
    while not any(f["MESSAGE"] == b"hello-journal" for f in seen):
        assert time.monotonic() < deadline, seen
        seen.append(parse(sock.recv(65536)))
    app = next(f for f in seen if f["MESSAGE"] == b"hello-journal")
    assert app["DYNO"] == b"worker.3" and app["DYNO_ID"] == b"jr-1" and app["APP"] == b"shop"
    assert app["SOURCE"] == b"app" and app["SYSLOG_IDENTIFIER"] == b"shop"
    assert app["PRIORITY"] == b"6"
    platform = [f for f in seen if f["SOURCE"] == b"heroku"]
    assert any(f["MESSAGE"].startswith(b"Starting process with command") for f in platform)
    # Heroku's own lines name the dyno too.
    assert {f["DYNO"] for f in platform} == {b"worker.3"}
    c.stop("jr-1")


def test_a_journal_that_does_not_read_holds_nothing_up(hostd_factory, make_spec, journal):
    path, sock = journal
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
    h = hostd_factory(journal_socket=path)
    c = h.client()
    c.start(make_spec("jr-flood", command="i=0; while [ $i -lt 20000 ]; do echo line-$i; "
                                          "i=$((i+1)); done; echo flood-done; sleep 100"))
    deadline = time.monotonic() + 60
    while "flood-done" not in c.log_texts("jr-flood", lines=5):
        assert time.monotonic() < deadline, "the dyno was held up"
        t = time.monotonic()
        c.list()
        assert time.monotonic() - t < 5, "hostd was held up"
        time.sleep(0.2)
    assert c.get("jr-flood").state == pb.DYNO_STATE_UP
    c.stop("jr-flood")
    # and the journal gone altogether: still nothing held up
    sock.close()
    os.unlink(path)
    c.start(make_spec("jr-gone", command="echo after; sleep 100"))
    deadline = time.monotonic() + 10
    while "after" not in c.log_texts("jr-gone"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    c.stop("jr-gone")
