"""A dyno's size is enforced by the kernel: the limits are in the dyno's cgroup files, a dyno
that allocates past its memory limit is OOM-killed and reported so, and a fork bomb stops at
pids.max while hostd keeps answering.

The files are read where a user would look: the dyno's cgroup folder in each hierarchy (cgroup
v1 here: memory.limit_in_bytes, memory.memsw.limit_in_bytes, cpu.shares, cpu.cfs_quota_us,
pids.max; on v2: memory.max, memory.swap.max, cpu.weight, cpu.max, pids.max).
"""

import os
import threading
import time

import pytest

from dynoutil import (
    ENDED_STATES,
    dyno_cgroup_dir,
    platform_lines,
    read_cgroup_file,
    wait_gone,
    with_sizes,
)
from hostd_client import pb

# the cgroup v2 tier runs it: sizes are enforced through cgroup files: limits, OOM kills, pids.max
pytestmark = pytest.mark.cgroup

MiB = 1 << 20

# Custom sizes, added to hostd's configuration as [size NAME] sections.
SIZES = {
    "tiny": {"memory": "32M", "swap": "no", "pids": 64},
    "quota": {"memory": "64M", "cpu-quota": 50, "cpu-weight": 300, "pids": 100},
    # 64 tasks with room to spare in memory: the bomb meets its pids limit, not the OOM killer
    # (64 shells, their page tables and pipes came near 32M, and under load went past it).
    "fewpids": {"memory": "256M", "swap": "no", "pids": 64},
}

# Holds 200 MB in the shell's own memory: the command substitution's text is kept in a
# variable, so the shell's heap grows to its size (a pipe to /dev/null would hold nothing). The
# shell then waits: a simple last command would be executed in its place, memory and all.
HOG = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo "held ${#x} bytes"; sleep 1000 & wait'

# The classic bomb (every sh forks two more), relaunched for ever by awk: a shell exits when a
# fork fails, and without awk (whose system() survives a failed fork) the bomb would die out
# within seconds of reaching pids.max.
BOMB = "awk 'BEGIN { while (1) system(\"b() { b | b & }; b\") }'"


def memory_files(hostd, dyno_id):
    """(memory limit, memory + swap limit or None) in bytes from the kernel's files."""
    name, mem = read_cgroup_file(hostd, dyno_id, "memory.limit_in_bytes", "memory.max")
    if name == "memory.limit_in_bytes":
        d = dyno_cgroup_dir(hostd, dyno_id, "memory.memsw.limit_in_bytes")
        if d is None:
            return int(mem), None  # no swap accounting on this kernel
        with open(os.path.join(d, "memory.memsw.limit_in_bytes")) as f:
            return int(mem), int(f.read())
    _, swap = read_cgroup_file(hostd, dyno_id, "memory.swap.max")
    return int(mem), int(mem) + int(swap)


def cpu_weight_file(hostd, dyno_id):
    """('cpu.shares', shares) on v1 or ('cpu.weight', weight) on v2."""
    name, v = read_cgroup_file(hostd, dyno_id, "cpu.shares", "cpu.weight")
    return name, int(v)


def pids_max(hostd, dyno_id):
    return read_cgroup_file(hostd, dyno_id, "pids.max")[1]


# -- limits in the kernel's files ---------------------------------------------------------------


def test_standard_1x_memory_limit_in_cgroup(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("lim-mem"))
        mem, memsw = memory_files(hostd, "lim-mem")
        assert mem == 536870912, f"memory limit in the kernel {mem}, want 512 MiB"
        assert d.memory_limit == 536870912
        c.stop("lim-mem", grace=1)


def test_standard_1x_swap_allowance_up_to_r15(hostd, make_spec):
    """standard-1x has swap and R15 at 2x quota: memory + swap may reach 1 GiB."""
    with hostd.client() as c:
        d = c.start(make_spec("lim-swap"))
        mem, memsw = memory_files(hostd, "lim-swap")
        if memsw is None:
            pytest.skip("the kernel has no swap accounting (memory.memsw.* missing)")
        assert memsw == 2 * 536870912, f"memory+swap limit {memsw}, want 2 x 512 MiB"
        assert d.swap_limit == 536870912, f"Dyno.swap_limit {d.swap_limit}"
        c.stop("lim-swap", grace=1)


def test_cpu_weight_in_cgroup(hostd, make_spec):
    """standard-1x has weight 1x, standard-2x 2x: v1 cpu.shares = weight * 1024 / 100."""
    with hostd.client() as c:
        d1 = c.start(make_spec("lim-cpu1", size="standard-1x"))
        d2 = c.start(make_spec("lim-cpu2", size="standard-2x"))
        name, w1 = cpu_weight_file(hostd, "lim-cpu1")
        _, w2 = cpu_weight_file(hostd, "lim-cpu2")
        if name == "cpu.shares":
            assert (w1, w2) == (1024, 2048), f"cpu.shares {w1} and {w2}, want 1024 and 2048"
        else:
            assert (w1, w2) == (100, 200), f"cpu.weight {w1} and {w2}, want 100 and 200"
        assert (d1.cpu_weight, d2.cpu_weight) == (100, 200)
        c.stop("lim-cpu1", grace=1)
        c.stop("lim-cpu2", grace=1)


def test_pids_limit_in_cgroup(hostd, make_spec):
    with hostd.client() as c:
        d1 = c.start(make_spec("lim-pids1", size="standard-1x"))
        d2 = c.start(make_spec("lim-pids2", size="standard-2x"))
        assert pids_max(hostd, "lim-pids1") == "256"
        assert pids_max(hostd, "lim-pids2") == "512"
        assert (d1.pids_limit, d2.pids_limit) == (256, 512)
        c.stop("lim-pids1", grace=1)
        c.stop("lim-pids2", grace=1)


def test_custom_size_from_config_in_cgroup(hostd_factory, make_spec):
    """A [size quota] section with cpu-quota = 50 (percent of one CPU): the CFS quota is half
    the period; its memory, weight and pids are in the files too."""
    h = with_sizes(hostd_factory, SIZES)
    with h.client() as c:
        d = c.start(make_spec("lim-quota", size="quota"))
        mem, _ = memory_files(h, "lim-quota")
        assert mem == 64 * MiB
        name, w = cpu_weight_file(h, "lim-quota")
        assert w == (3072 if name == "cpu.shares" else 300)
        assert pids_max(h, "lim-quota") == "100"
        qdir = dyno_cgroup_dir(h, "lim-quota", "cpu.cfs_quota_us")
        if qdir is not None:
            with open(os.path.join(qdir, "cpu.cfs_quota_us")) as f:
                quota = int(f.read())
            with open(os.path.join(qdir, "cpu.cfs_period_us")) as f:
                period = int(f.read())
        else:
            _, cpumax = read_cgroup_file(h, "lim-quota", "cpu.max")
            quota, period = (int(x) for x in cpumax.split())
        assert period > 0 and quota * 100 == 50 * period, (
            f"cfs quota {quota} us per {period} us, want 50% of one CPU"
        )
        assert (d.memory_limit, d.cpu_weight, d.pids_limit) == (64 * MiB, 300, 100)
        c.stop("lim-quota", grace=1)


def test_size_without_swap_gets_no_swap(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    with h.client() as c:
        d = c.start(make_spec("lim-noswap", size="tiny"))
        mem, memsw = memory_files(h, "lim-noswap")
        assert mem == 32 * MiB
        if memsw is not None:
            assert memsw == mem, f"memory+swap limit {memsw} for a size without swap"
        assert d.swap_limit == 0
        c.stop("lim-noswap", grace=1)


# -- memory: the OOM killer ----------------------------------------------------------------------


def test_allocation_past_limit_is_oom_killed_and_reported(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    with h.client() as c:
        d = c.start(make_spec("oom", size="tiny", command=HOG))
        d = c.wait_state("oom", ENDED_STATES, timeout=60)
        assert d.state == pb.DYNO_STATE_CRASHED, pb.DynoState.Name(d.state)
        assert d.exit.oom_killed, f"exit info without oom_killed: {d.exit}"
        assert not d.exit.exited and d.exit.signal == 9, f"not killed by SIGKILL: {d.exit}"
        assert "oom" in d.exit.reason.lower(), f"the reason {d.exit.reason!r} does not say OOM"
        assert d.exit.error == "R15", d.exit
        logs = platform_lines(c, "oom")
        assert any("oom" in l.lower() for l in logs), f"no OOM line in the log: {logs}"
        assert "Error R15 (Memory quota vastly exceeded)" in logs, logs
        assert not any(l.startswith("held ") for l in c.log_texts("oom")), "the allocation succeeded"
        assert wait_gone(d.pid, 5), f"the dyno's init {d.pid} still runs"
        assert h.find_cgroups("oom") == [], "the OOM-killed dyno's cgroup is still there"


def test_same_allocation_fits_a_larger_size(hostd, make_spec):
    """The control: HOG really holds its 200 MB and lives within 512 MiB."""
    with hostd.client() as c:
        c.start(make_spec("no-oom", command=HOG))
        deadline = time.monotonic() + 90  # a wait, not a measure: the VM tier under load is slow
        while not any(l.startswith("held ") for l in c.log_texts("no-oom")):
            assert c.get("no-oom").state == pb.DYNO_STATE_UP, c.get("no-oom").exit
            assert time.monotonic() < deadline, "the allocation did not finish in 90 s"
            time.sleep(0.1)
        _, usage = read_cgroup_file(hostd, "no-oom", "memory.usage_in_bytes", "memory.current")
        assert int(usage) >= 200_000_000, f"the dyno uses only {usage} bytes"
        c.stop("no-oom", grace=1)


# -- pids: a fork bomb ---------------------------------------------------------------------------


def test_fork_bomb_stops_at_pids_max_and_hostd_answers(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, SIZES)
    with h.client() as c:
        d = c.start(make_spec("bomb", size="fewpids", command=BOMB))
        pdir = dyno_cgroup_dir(h, "bomb", "pids.current")
        assert pdir is not None, "no pids cgroup for the dyno"

        peak, peak_tasks, latencies = 0, 0, []
        stop_sampling = threading.Event()
        tasks_file = os.path.join(pdir, "cgroup.threads" if os.path.exists(
            os.path.join(pdir, "cgroup.threads")) else "tasks")

        def sample():
            nonlocal peak, peak_tasks
            while not stop_sampling.is_set():
                try:
                    with open(os.path.join(pdir, "pids.current")) as f:
                        peak = max(peak, int(f.read()))
                    with open(tasks_file) as f:
                        peak_tasks = max(peak_tasks, len(f.read().split()))
                except OSError:
                    return
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                with h.client(timeout=20) as other:
                    dynos = other.list()
                latencies.append(time.monotonic() - t0)
                assert [x.spec.id for x in dynos] == ["bomb"]
                time.sleep(0.2)
        finally:
            stop_sampling.set()
            sampler.join()
        print(
            f"list() while the bomb runs: {len(latencies)} calls, "
            f"max {max(latencies) * 1000:.1f} ms, "
            f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms; pids peak {peak}, "
            f"tasks peak {peak_tasks}"
        )
        # The bomb goes on: on a slow machine (the v2 tier's emulated guest) its 64th task may
        # come after the window above, so the kernel's refusal is waited for, within a bound.
        def pids_events():
            with open(os.path.join(pdir, "pids.events")) as f:
                return dict(l.split() for l in f.read().splitlines())
        deadline = time.monotonic() + 30
        while int(pids_events().get("max", 0)) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        events = pids_events()
        assert c.get("bomb").state == pb.DYNO_STATE_UP
        # The tasks in the cgroup never pass the limit. pids.current may, for a moment: the
        # kernel charges a fork first and takes the charge back when it is over the limit, so a
        # refused fork on each CPU can show as one more.
        assert peak_tasks <= 64, f"the dyno had {peak_tasks} tasks, over pids.max 64"
        assert peak <= 64 + os.cpu_count(), f"pids.current reached {peak}, over pids.max 64"
        assert peak >= 60, f"the bomb reached only {peak} pids: did it run?"
        assert int(events.get("max", 0)) > 0, f"the kernel refused no fork: pids.events {events}"

        # Stopping the bomb leaves nothing.
        stopped = c.stop("bomb", grace=1, timeout=60)
        assert stopped.state == pb.DYNO_STATE_DOWN
        assert wait_gone(d.pid, 5), f"the bomb's init {d.pid} still runs"
        assert h.dyno_procs() == set(), f"processes left: {sorted(h.dyno_procs())}"
        assert h.find_cgroups("bomb") == []
        assert not os.path.exists(os.path.join(h.layers_dir, "bomb"))
