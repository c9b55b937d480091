"""hostd keeps descriptors per dyno, so it raises its own RLIMIT_NOFILE soft limit to the hard
one at start: under systemd's default soft limit of 1024 it would otherwise stop starting
dynos near 250 (issue 9, bench/scale)."""

import os

import pytest

from hostd_client import pb

# not the cgroup v2 tier: hostd's RLIMIT_NOFILE
pytestmark = pytest.mark.cgroup_independent

SOFT, HARD = 48, 4096
DYNOS = 20  # a few descriptors each: well past SOFT without the raise


def nofile_limits(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


def test_hostd_raises_its_soft_nofile_limit_and_holds_more_dynos(hostd_factory, make_spec):
    # the dynos' own limit must fit under the hard one hostd passes on
    h = hostd_factory(start=False, rlimit_nofile=1024)
    # prlimit execs hostd with the low soft limit, as a service manager would start it
    h.command_prefix = ["prlimit", f"--nofile={SOFT}:{HARD}", "--"]
    h.start()
    assert nofile_limits(h.pid) == (HARD, HARD)

    c = h.client()
    for i in range(DYNOS):
        d = c.start(make_spec(f"nofile-{i}", name=f"worker.{i + 1}"))
        assert d.state == pb.DYNO_STATE_UP, d
    held = len(os.listdir(f"/proc/{h.pid}/fd"))
    assert held > SOFT, f"hostd holds only {held} descriptors with {DYNOS} dynos"
    assert sorted(x.spec.id for x in c.list() if x.state == pb.DYNO_STATE_UP) == \
        sorted(f"nofile-{i}" for i in range(DYNOS))
    for i in range(DYNOS):
        c.stop(f"nofile-{i}", grace=2)
