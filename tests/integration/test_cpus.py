"""Dedicated CPUs: a size with dedicated-cpus gets CPUs of the pool (dedicated-cpu-pool) for
itself, in its cgroup's cpuset.cpus and so in the affinity of every process of the dyno; the
shared dynos leave those CPUs while it holds them; a start that needs more CPUs than are free is
refused with RESOURCE_EXHAUSTED; the CPUs come back when the dyno ends, and a restarted hostd
takes a running dyno's CPUs back from its cgroup.

The pool is set to one CPU (the test's highest), so the second dyno is refused on any host of
two CPUs or more; on this 2-CPU host that is also the default pool (every CPU but the lowest).
"""

import os
import subprocess
import time

import pytest

from conftest import HOSTD_BIN
from dynoutil import dyno_cgroup_procs, read_cgroup_file, with_sizes
from hostd_client import Code, HostdError, pb

SIZES = {
    "ded1": {"memory": "64M", "dedicated-cpus": 1},
}

CPUS = sorted(os.sched_getaffinity(0))


def cpuset_available():
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "cpuset" in f.read().split()
    return os.path.isdir("/sys/fs/cgroup/cpuset")


pytestmark = [
    pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs: one stays shared"),
    pytest.mark.skipif(not cpuset_available(), reason="no cpuset controller"),
    # the cgroup v2 tier runs it: dedicated CPUs are the cgroup's cpuset, read back after a
    # restart
    pytest.mark.cgroup,
]


def cpulist(cpus):
    """The kernel's form of a CPU list: "0-2,5"."""
    out, cpus = [], sorted(cpus)
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def allowed_list(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list in /proc/{pid}/status")


def command_pids(hostd, dyno_id, timeout=10.0):
    """The dyno's processes once its command (sleep) runs: init, and the command."""
    deadline = time.monotonic() + timeout
    while True:
        pids = dyno_cgroup_procs(hostd, dyno_id)
        comms = set()
        for p in pids:
            try:
                with open(f"/proc/{p}/comm") as f:
                    comms.add(f.read().strip())
            except OSError:
                pass
        if "sleep" in comms:
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"dyno {dyno_id}: its command is not running: {comms}")
        time.sleep(0.05)


def assert_on(hostd, dyno_id, want):
    """Every process of the dyno may run on the CPUs want (a kernel CPU list), and only there."""
    pids = command_pids(hostd, dyno_id)
    got = {p: allowed_list(p) for p in pids}
    assert set(got.values()) == {want}, f"dyno {dyno_id}: Cpus_allowed_list {got}, want {want}"


def cpuset_cpus(hostd, dyno_id):
    return read_cgroup_file(hostd, dyno_id, "cpuset.cpus")[1]


def make_hostd(hostd_factory, **overrides):
    return with_sizes(hostd_factory, SIZES, **{"dedicated-cpu-pool": str(CPUS[-1]), **overrides})


def test_dedicated_cpu_refused_when_taken_then_free_again(hostd_factory, make_spec):
    ded = CPUS[-1]
    shared_all = cpulist(CPUS)
    shared_less = cpulist(CPUS[:-1])
    h = make_hostd(hostd_factory)
    with h.client() as c:
        c.start(make_spec("cpu-shared"))
        assert cpuset_cpus(h, "cpu-shared") == shared_all
        assert_on(h, "cpu-shared", shared_all)

        c.start(make_spec("cpu-a", size="ded1"))
        assert cpuset_cpus(h, "cpu-a") == str(ded)
        assert_on(h, "cpu-a", str(ded))
        # The shared dyno left the CPU the moment it was taken.
        assert cpuset_cpus(h, "cpu-shared") == shared_less
        assert_on(h, "cpu-shared", shared_less)

        with pytest.raises(HostdError) as e:
            c.start(make_spec("cpu-b", size="ded1"))
        assert e.value.code == Code.RESOURCE_EXHAUSTED, e.value
        assert "needs 1 dedicated CPU, 0 of 1 free" in e.value.message, e.value.message
        assert not h.find_cgroups("cpu-b"), "a refused start left a cgroup"
        # The refusal changed nothing for the others.
        assert_on(h, "cpu-a", str(ded))

        c.stop("cpu-a", grace=1)
        assert_on(h, "cpu-shared", shared_all)
        c.start(make_spec("cpu-b", size="ded1"))
        assert cpuset_cpus(h, "cpu-b") == str(ded)
        assert_on(h, "cpu-b", str(ded))
        assert_on(h, "cpu-shared", shared_less)
        c.stop("cpu-b", grace=1)
        c.stop("cpu-shared", grace=1)


def test_a_crashed_dedicated_dyno_gives_its_cpu_back(hostd_factory, make_spec):
    ded = CPUS[-1]
    h = make_hostd(hostd_factory)
    with h.client() as c:
        c.start(make_spec("cpu-crash", size="ded1", command="sleep 1; exit 3"))
        deadline = time.monotonic() + 20
        while c.get("cpu-crash").state != pb.DYNO_STATE_CRASHED:
            assert time.monotonic() < deadline, "the dyno did not end"
            time.sleep(0.1)
        c.start(make_spec("cpu-next", size="ded1"))
        assert_on(h, "cpu-next", str(ded))
        c.stop("cpu-next", grace=1)


def test_restarted_hostd_keeps_the_running_dynos_cpus(hostd_factory, make_spec):
    ded = CPUS[-1]
    h = make_hostd(hostd_factory)
    with h.client() as c:
        c.start(make_spec("cpu-keep", size="ded1"))
        c.start(make_spec("cpu-shared", size="standard-1x"))
    h.restart()
    with h.client() as c:
        assert c.get("cpu-keep").state == pb.DYNO_STATE_UP
        assert cpuset_cpus(h, "cpu-keep") == str(ded)
        assert_on(h, "cpu-keep", str(ded))
        assert_on(h, "cpu-shared", cpulist(CPUS[:-1]))
        with pytest.raises(HostdError) as e:
            c.start(make_spec("cpu-other", size="ded1"))
        assert e.value.code == Code.RESOURCE_EXHAUSTED, e.value
        c.stop("cpu-keep", grace=1)
        assert_on(h, "cpu-shared", cpulist(CPUS))
        c.start(make_spec("cpu-other", size="ded1"))
        assert_on(h, "cpu-other", str(ded))
        c.stop("cpu-other", grace=1)
        c.stop("cpu-shared", grace=1)


def test_default_pool_is_every_cpu_but_the_lowest(hostd_factory, make_spec):
    """auto: the pool has len(CPUS) - 1 CPUs, so a size that needs them all is refused, and
    one that needs one gets the second lowest."""
    sizes = dict(SIZES, huge={"memory": "64M", "dedicated-cpus": len(CPUS)})
    h = with_sizes(hostd_factory, sizes)
    n = len(CPUS) - 1
    with h.client() as c:
        with pytest.raises(HostdError) as e:
            c.start(make_spec("cpu-huge", size="huge"))
        assert e.value.code == Code.RESOURCE_EXHAUSTED, e.value
        assert f"needs {len(CPUS)} dedicated CPUs, {n} of {n} free" in e.value.message
        c.start(make_spec("cpu-one", size="ded1"))
        assert_on(h, "cpu-one", str(CPUS[1]))
        c.stop("cpu-one", grace=1)


def start_fails(hostd_factory, pool):
    """hostd's stderr when it refuses to start with this pool (it must exit, not serve)."""
    h = hostd_factory(start=False, **{"dedicated-cpu-pool": pool})
    r = subprocess.run([HOSTD_BIN, "--config", h.config_path], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, f"hostd started with dedicated-cpu-pool = {pool}"
    return r.stderr


@pytest.mark.parametrize("pool, words", [
    ("9999", "not 'auto', 'none' or a CPU list"),  # past CPUS_MAX: the config refuses it
    (cpulist(CPUS), "leave at least one"),
])
def test_bad_pool_stops_hostd_with_a_clear_error(hostd_factory, pool, words):
    err = start_fails(hostd_factory, pool)
    assert "dedicated-cpu-pool" in err and words in err, err


def test_pool_cpu_not_online(hostd_factory):
    """A CPU that is not online (or not hostd's) is named."""
    missing = max(CPUS) + 1
    err = start_fails(hostd_factory, str(missing))
    assert f"CPU {missing} not online" in err, err
