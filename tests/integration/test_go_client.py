"""A third language: tests/go/main.go, a Go client whose stubs protoc generates here (with
Debian's protoc-gen-go and protoc-gen-go-grpc, never committed), built offline from Debian's Go
packages in GOPATH mode (GO111MODULE=off, GOPATH with /usr/share/gocode, GOPROXY=off), run
against a real hostd. It starts a dyno, follows the events, disconnects and resumes with
`since`, cancels one of two log follows on a connection, and stops the dyno; this test checks
the JSON report it prints and what hostd says afterwards.

Skipped, with the reason, when Go or the generators are missing (scripts/setup installs them).

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_go_client.py
"""

import json
import os
import subprocess

import pytest

import gobuild
from conftest import BUILD_DIR, SOURCE_DIR
from hostd_client import pb

# not the cgroup v2 tier: the API as a client sees it
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup_independent]

IMPORT = "hostdtest/hostdpb"  # the stubs' Go import path (hostd.proto has no go_package)


@pytest.fixture(scope="module")
def go_client():
    """The built client. Its GOPATH is in the build folder, so that Go's build cache makes
    later runs quick; the stubs and the program are laid there afresh each time."""
    lacking = gobuild.missing()
    if lacking:
        pytest.skip(f"no Go toolchain for the Go client: install {' '.join(lacking)} "
                    f"(scripts/setup)")
    top = os.path.join(BUILD_DIR, "tests", "go-client")
    binary = os.path.join(top, "hostd-go-client")
    with open(os.path.join(SOURCE_DIR, "tests", "go", "main.go")) as f:
        gobuild.build(SOURCE_DIR, top, "hostdgo", f.read(), IMPORT, binary)
    return binary


def test_a_go_client_follows_resumes_cancels_and_stops(go_client, hostd, rootfs):
    r = subprocess.run([go_client, "-socket", hostd.socket_path, "-id", "go-1",
                        "-stack", rootfs.stack, "-slug", rootfs.slug],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"the Go client failed:\n{r.stderr}"
    rep = json.loads(r.stdout)

    assert rep["started"] == "DYNO_STATE_UP"
    # Every event exactly once, in order, across the disconnect: the resumed stream began
    # right after the last number seen before it.
    seqs = [e["seq"] for e in rep["events"]]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert rep["first_after"] == rep["last_before"] + 1
    states = [(e["dyno"], e["state"]) for e in rep["events"] if e["dyno"]]
    assert states == [("go-1", "DYNO_STATE_STARTING"), ("go-1", "DYNO_STATE_UP"),
                      ("go-1-away", "DYNO_STATE_STARTING"), ("go-1-away", "DYNO_STATE_UP"),
                      ("go-1-away", "DYNO_STATE_STOPPING"), ("go-1-away", "DYNO_STATE_DOWN")]
    # what hostd kept is what the Go client saw
    with hostd.client() as c:
        kept = [(e.seq, e.dyno_id, pb.DynoState.Name(e.state)) for e in c.event_list()]
    assert kept[:len(seqs)] == [(e["seq"], e["dyno"], e["state"]) for e in rep["events"]]

    # The cancelled follow ended Canceled on the Go side; the other went on, in order, and the
    # connection still took a call.
    assert rep["cancelled"] == "Canceled"
    ticks = rep["other_ticks"]
    assert len(ticks) >= 10 and ticks == list(range(ticks[0], ticks[0] + len(ticks))), ticks
    assert rep["list_after"] == 2
    assert (rep["not_found"], rep["not_found_msg"]) == ("NotFound", "dyno 'no-such-go-1' not found")

    # Stopped: the shell ends on SIGTERM.
    assert rep["stopped"] == "DYNO_STATE_DOWN" and rep["stop_signal"] == 15
    with hostd.client() as c:
        states = {d.spec.id: d.state for d in c.list()}
    assert states == {"go-1": pb.DYNO_STATE_DOWN, "go-1-away": pb.DYNO_STATE_DOWN}
    assert hostd.dyno_inits() == []
    assert not [g for g in hostd.find_cgroups("go-1") + hostd.find_cgroups("go-1-away")]
