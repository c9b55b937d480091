"""Memory beyond the quota: with swap, a dyno may go over its quota into swap, which is R14 (a
warning in its log, rate-limited, the dyno keeps running), up to its size's R15 multiple,
where the kernel kills it (R15). Without swap a dyno is killed at its quota (R15, see
test_limits.py).

The R14 tests need a host with swap: this project's qemu tier (tests/vm/run-v2) gives its
guest a zram swap device; a host without swap skips them, since no process can go over its
quota there (the kernel reclaims or OOM-kills at the quota).

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_memory.py
"""

import os
import re
import time

import pytest

from dynoutil import ENDED_STATES, with_sizes
from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # the cgroup v2 tier runs it: R14 and R15 come from the memory controller's events and
    # its swap limit
    pytest.mark.cgroup,
]


def swap_total_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SwapTotal:"):
                return int(line.split()[1])
    return 0


needs_swap = pytest.mark.skipif(
    swap_total_kib() < 200 * 1024,
    reason="needs 200 MiB of swap (the qemu tier has it; this host has not)")

SIZES = {"small": {"memory": "32M", "swap": "yes", "r15-multiple": 4, "pids": 64}}


def hog(mb):
    """Holds mb MB in the shell's own heap, then sleeps."""
    return (f'x=$(head -c {mb * 1000000} /dev/zero | tr "\\0" a); echo "held ${{#x}} bytes"; '
            "sleep 1000")


def platform(c, dyno_id):
    return [l.text.decode() for l in c.logs(dyno_id).lines if l.source == "heroku"]


@needs_swap
def test_over_quota_into_swap_is_r14_and_the_dyno_runs_on(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    c = h.client()
    c.start(make_spec("r14", size="small", command=hog(60)))
    deadline = time.monotonic() + 30
    while "Error R14 (Memory quota exceeded)" not in platform(c, "r14"):
        assert time.monotonic() < deadline, platform(c, "r14")
        time.sleep(0.1)
    lines = platform(c, "r14")
    i = lines.index("Error R14 (Memory quota exceeded)")
    m = re.fullmatch(r"Process running mem=(\d+)M\((\d+\.\d)%\)", lines[i - 1])
    assert m, lines
    mb, pct = int(m.group(1)), float(m.group(2))
    assert 32 <= mb <= 128 and pct > 100.0, lines[i - 1]
    assert abs(pct - mb * 100 / 32) < 5
    assert c.get("r14").state == pb.DYNO_STATE_UP
    # rate-limited: not one pair per notification
    time.sleep(3)
    assert platform(c, "r14").count("Error R14 (Memory quota exceeded)") == 1
    c.stop("r14")


@needs_swap
def test_past_the_r15_multiple_is_r15(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    c = h.client()
    c.start(make_spec("r15", size="small", command=hog(200)))  # 4 x 32M is the end
    d = c.wait_state("r15", ENDED_STATES, timeout=60)
    assert d.state == pb.DYNO_STATE_CRASHED and d.exit.oom_killed and d.exit.error == "R15", d.exit
    assert "Error R15 (Memory quota vastly exceeded)" in platform(c, "r15")


def test_under_the_quota_no_r14(hostd_factory, make_spec):
    """The watch is set up for a size with swap, and stays quiet under the quota."""
    h = with_sizes(hostd_factory, SIZES)
    c = h.client()
    c.start(make_spec("calm", size="small", command=hog(8)))
    deadline = time.monotonic() + 20
    while not any(l.startswith("held ") for l in (x.text.decode() for x in c.logs("calm").lines)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)
    assert not any("R14" in l for l in platform(c, "calm"))
    assert c.get("calm").state == pb.DYNO_STATE_UP
    assert "no memory notifications" not in h.log_text()
    c.stop("calm")
