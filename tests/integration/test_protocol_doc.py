"""docs/PROTOCOL.md's two clients, run as the page writes them: its Python block (with the stubs
protoc and grpc_python_plugin make) and its Go block (with Debian's grpc-go, built offline as
test_go_client.py builds its client), each against a real hostd whose image store holds the
sample stack and slug. A page whose code no longer works against hostd fails here.

The blocks are taken from the page, not copied: only the socket's path is replaced by the
test's, and the names the page leaves to the reader (STACK and SLUG; stack, slug and last in
Go) are defined around them. Each block follows the event stream for ever; the test reads what
it prints until the dyno it started is up, then ends it.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_protocol_doc.py
"""

import os
import re
import select
import subprocess
import time

import pytest

from conftest import BUILD_DIR, SOURCE_DIR
from hostd_client import pb
import gobuild

# not the cgroup v2 tier: the API as the page's clients see it
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup_independent]

PAGE = os.path.join(SOURCE_DIR, "docs", "PROTOCOL.md")
DOC_SOCKET = "/run/hostd/hostd.sock"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WAIT = 60.0  # a bound on what must happen, not a measure

GO_MAIN = """package main

import (
	"context"
	"log"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	hostdpb "example/hostdpb"
)

func main() {
	stack, slug := os.Args[1], os.Args[2]
	var last uint64
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
%s
}
"""


def block(language):
    """The page's one code block in language."""
    with open(PAGE) as f:
        blocks = re.findall(rf"^```{language}\n(.*?)^```$", f.read(), re.S | re.M)
    assert len(blocks) == 1, f"{PAGE}: {len(blocks)} {language} blocks, one expected"
    assert DOC_SOCKET in blocks[0], f"the {language} block does not use {DOC_SOCKET}"
    return blocks[0]


@pytest.fixture
def images_hostd(hostd_factory, rootfs, tmp_path):
    """A hostd whose store holds the sample stack and slug: (hostd, stack digest, slug digest)."""
    hostd = hostd_factory(images_dir=str(tmp_path / "images"))
    base = os.path.dirname(rootfs.stack)
    env = dict(l.strip().split("=", 1) for l in open(os.path.join(base, "images.env")))
    with hostd.client() as c:
        c.import_image(os.path.join(base, "stack.tar.gz"), env["STACK_SHA256"], pb.IMAGE_KIND_STACK)
        c.import_image(os.path.join(base, "slug.tar.gz"), env["SLUG_SHA256"], pb.IMAGE_KIND_SLUG)
    return hostd, env["STACK_SHA256"], env["SLUG_SHA256"]


def read_until(proc, done):
    """Lines proc prints until done(lines) holds; then it is ended. Fails with what it printed
    when it exits first or WAIT passes."""
    lines, buf = [], b""
    end = time.monotonic() + WAIT
    try:
        while not done(lines):
            left = end - time.monotonic()
            assert left > 0, f"the client did not get there within {WAIT} s: {lines}"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"the client exited ({proc.wait()}) early: {lines} {buf!r}"
            buf += chunk
            *whole, buf = buf.split(b"\n")
            lines += [l.decode() for l in whole]
    finally:
        proc.kill()
        proc.wait()
    return lines


def check_client(hostd, dyno_id, started_line, lines):
    """The page's client said the dyno started and followed its events, numbered without
    gaps, up to UP; hostd agrees."""
    m = re.fullmatch(started_line, lines[0])
    assert m, lines
    events = [l.split(" ", 3) for l in lines[1:]]
    seqs = [int(e[0]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), lines
    mine = [e[2] for e in events if e[1] == dyno_id]
    assert mine[:1] == ["DYNO_STATE_STARTING"] and mine[-1] == "DYNO_STATE_UP", lines
    with hostd.client() as c:
        d = c.get(dyno_id)
        assert d.state == pb.DYNO_STATE_UP
        c.stop(dyno_id, grace=5)
    return m


def up(dyno_id):
    return lambda lines: any(l.split(" ")[1:3] == [dyno_id, "DYNO_STATE_UP"] for l in lines[1:])


def test_the_python_client_of_the_page(images_hostd, tmp_path):
    hostd, stack, slug = images_hostd
    code = block("python").replace(DOC_SOCKET, hostd.socket_path)
    script = tmp_path / "client.py"
    script.write_text(f"STACK = {stack!r}\nSLUG = {slug!r}\n{code}")
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD_DIR, "proto"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(["/usr/bin/python3", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    lines = read_until(proc, up("web-1"))
    m = check_client(hostd, "web-1", rf"web-1 (DYNO_STATE_STARTING|DYNO_STATE_UP) ({UUID})", lines)
    with hostd.client() as c:
        assert c.get("web-1").run_id == m.group(2)  # the run the page's client printed


@pytest.fixture(scope="module")
def go_doc_client():
    lacking = gobuild.missing()
    if lacking:
        pytest.skip(f"no Go toolchain for the page's Go client: install {' '.join(lacking)} "
                    f"(scripts/setup)")
    top = os.path.join(BUILD_DIR, "tests", "go-doc-client")
    # the socket's path is an argument of the program, so that one build serves every hostd
    code = block("go").replace(f'"{DOC_SOCKET}"', "os.Args[3]")
    indented = "\n".join("\t" + l if l else l for l in code.splitlines())
    binary = os.path.join(top, "hostd-doc-client")
    gobuild.build(SOURCE_DIR, top, "docclient", GO_MAIN % indented, "example/hostdpb", binary)
    return binary


def test_the_go_client_of_the_page(go_doc_client, images_hostd):
    hostd, stack, slug = images_hostd
    proc = subprocess.Popen([go_doc_client, stack, slug, hostd.socket_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = read_until(proc, up("web-2"))
    check_client(hostd, "web-2", r"web-2 is (DYNO_STATE_STARTING|DYNO_STATE_UP)", lines)
