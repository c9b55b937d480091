"""The host's capacity as the control plane and the operator see it (HostInfo, `hostctl host`):
memory figures from the kernel, the reserve of the configuration, what is allocated to the
dynos that run, and the dedicated CPUs.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_host.py
"""

import json
import os
import subprocess

import pytest

from conftest import BUILD_DIR
from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: HostInfo's memory comes from /proc/meminfo and the config
    pytest.mark.cgroup_independent,
]

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
MIB = 1024 * 1024


def meminfo():
    with open("/proc/meminfo") as f:
        return {l.split(":")[0]: int(l.split()[1]) * 1024 for l in f}


def hostctl(h, *args):
    return subprocess.run([HOSTCTL, "--socket", h.socket_path, *args], capture_output=True,
                          text=True, timeout=60)


def test_capacity_reserve_and_allocation(hostd_factory, make_spec):
    reserve = meminfo()["MemTotal"] // 4 // MIB * MIB  # a quarter, in whole MiB
    h = hostd_factory(reserved_memory=f"{reserve // MIB}M")
    c = h.client()
    info = c.host_info()
    mi = meminfo()
    assert info.memory_total == mi["MemTotal"]
    # available moves with the host; it must be the kernel's estimate, not free memory
    assert abs(info.memory_available - mi["MemAvailable"]) < 512 * MIB
    assert info.memory_reserved == reserve
    assert info.memory_allocatable == mi["MemTotal"] - reserve
    assert info.memory_allocated == 0 and info.dynos == 0 and info.max_dynos == 1000
    assert info.cpus == os.cpu_count()

    c.start(make_spec("host-a", command="sleep 1000"))
    c.start(make_spec("host-b", command="sleep 1000", size="standard-2x"))
    info = c.host_info()
    assert info.dynos == 2
    assert info.memory_allocated == (512 + 1024) * MIB
    c.stop("host-b")
    info = c.host_info()
    assert info.dynos == 1 and info.memory_allocated == 512 * MIB

    # the operator's view says the same, as text and as JSON
    r = hostctl(h, "host")
    assert r.returncode == 0, r.stderr
    kv = dict(l.split(":", 1) for l in r.stdout.splitlines() if ":" in l and l[0].isalpha())
    assert kv["memory_reserved"].strip() == f"{reserve // MIB}M" or \
        kv["memory_reserved"].strip().endswith("G"), r.stdout
    assert kv["dynos"].strip() == "1 of at most 1000", r.stdout
    j = json.loads(hostctl(h, "host", "--json").stdout)
    assert int(j["memory_allocatable"]) == mi["MemTotal"] - reserve
    assert int(j["memory_reserved"]) == reserve
    assert int(j["memory_allocated"]) == 512 * MIB and j["dynos"] == 1
    c.stop("host-a")


def test_a_reserve_over_the_total_leaves_nothing_allocatable(hostd_factory):
    h = hostd_factory(reserved_memory="16T")
    info = h.client().host_info()
    assert info.memory_allocatable == 0 and info.memory_reserved == 16 * 1024 ** 4


def test_bad_reserve_is_refused_at_start(hostd_factory):
    h = hostd_factory(start=False)
    with open(h.config_path, "a") as f:
        f.write("reserved-memory = lots\n")
    r = subprocess.run([os.path.join(BUILD_DIR, "hostd", "hostd"), "--config", h.config_path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "reserved-memory" in r.stderr and "not a size" in r.stderr, r.stderr
    assert not os.path.exists(h.socket_path)
