"""hostctl top: the SubscribeMetrics stream as a table or JSON lines, for a number of
refreshes, with its options checked.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_hostctl_top.py
"""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import BUILD_DIR
from dynoutil import read_cgroup_file

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # the cgroup v2 tier runs it: its figures are checked against the dyno's cgroup files
    pytest.mark.cgroup,
]

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")


def top(hostd, *args, timeout=60):
    return subprocess.run([HOSTCTL, "--socket", hostd.socket_path, "top", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_json_batches_match_the_cgroup(hostd, make_spec):
    c = hostd.client()
    # the init, the shell and two sleeps (the shell waits for them)
    c.start(make_spec("top-1", command="sleep 1000 & sleep 1000 & wait"))
    deadline = time.monotonic() + 20
    while int(read_cgroup_file(hostd, "top-1", "pids.current")[1]) != 4:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    t0 = time.monotonic()
    p = top(hostd, "--json", "--interval", "1", "-n", "3")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 3  # -n 3: three batches, then it ends
    assert time.monotonic() - t0 >= 1.5  # the first at once, then one a second
    batches = [json.loads(line) for line in lines]
    d = [x for x in batches[-1]["dynos"] if x["dyno_id"] == "top-1"][0]
    assert int(d["pids"]) == int(read_cgroup_file(hostd, "top-1", "pids.current")[1]) == 4
    assert int(d["memory_quota"]) == 512 << 20
    assert d["state"] == "up" and d["name"] == "worker.1"
    assert int(batches[-1]["host"]["dynos"]) == 1
    assert [int(b["dynos"][0]["time_usec"]) for b in batches] == \
        sorted(int(b["dynos"][0]["time_usec"]) for b in batches)
    c.stop("top-1", grace=1)


def test_table(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("top-busy", command="while :; do :; done"))
    p = top(hostd, "--interval", "1", "--iterations", "2")
    assert p.returncode == 0, p.stderr
    # not a terminal: two tables one after the other, each under the host's line
    blocks = p.stdout.strip().split("\n\n")
    assert len(blocks) == 4, p.stdout
    assert re.match(r"\S+: 1 dynos, load [\d.]+ [\d.]+ [\d.]+, memory \S+ available of \S+, "
                    r"\d+ CPUs$", blocks[2])
    header, row = blocks[3].splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "CPU", "MEM", "QUOTA", "MEM%", "PIDS", "RX",
                              "TX", "LOAD"]
    cols = row.split()
    assert cols[0] == "top-busy" and cols[2] == "up" and cols[5] == "512M"
    # a busy loop: most of one CPU between the two refreshes
    assert cols[3].endswith("%") and float(cols[3][:-1]) > 30, row
    assert blocks[1].splitlines()[1].split()[3] == "-"  # no CPU figure on the first refresh
    c.stop("top-busy", grace=1)


@pytest.mark.parametrize("args,message", [
    (["--interval", "0"], "--interval: '0' is out of range (1..3600)"),
    (["--interval", "3601"], "--interval: '3601' is out of range (1..3600)"),
    (["-n", "0"], "--iterations: '0' must be at least 1"),
    (["--interval", "x"], "--interval: 'x' is not a number"),
    (["extra"], "unexpected argument 'extra'"),
])
def test_bad_options(hostd, args, message):
    p = top(hostd, *args)
    assert p.returncode == 2 and message in p.stderr, (p.returncode, p.stderr)


def test_help_is_truthful():
    p = subprocess.run([HOSTCTL, "top", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for opt in ("--interval SECONDS", "-n, --iterations N", "--json", "1..3600, default 2"):
        assert opt in p.stdout
