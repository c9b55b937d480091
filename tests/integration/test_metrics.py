"""Metrics for node_exporter's textfile collector: prometheus-file is rewritten atomically every
metrics-interval with each running dyno's memory, swap, quota, CPU time, pids and the rest of
the sampler's figures, checked against its cgroup files, the dyno count by state and the
host's memory.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_metrics.py
"""

import os
import re
import time

import pytest

from dynoutil import read_cgroup_file

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # the cgroup v2 tier runs it: every figure is checked against the dyno's cgroup files
    pytest.mark.cgroup,
]

LINE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


def samples(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line.strip())
            if m:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
                out[(m.group(1), labels.get("dyno_id", labels.get("state")))] = float(m.group(3))
    return out


def test_dyno_figures_match_the_cgroup_files(hostd_factory, make_spec, tmp_path):
    path = str(tmp_path / "hostd.prom")
    h = hostd_factory(prometheus_file=path, metrics_interval=1)
    c = h.client()
    # a little memory held, and a known number of tasks: the init, the shell and two sleeps
    # (the shell waits: a simple last command would replace it, and its memory with it)
    c.start(make_spec("met-1", app="shop", command="x=$(head -c 20000000 /dev/zero | tr '\\0' a); "
                      "sleep 1000 & sleep 1000 & wait"))
    deadline = time.monotonic() + 30
    while True:
        s = samples(path) if os.path.exists(path) else {}
        if s.get(("hostd_dyno_pids", "met-1")) == 4 and \
                s.get(("hostd_dyno_memory_bytes", "met-1"), 0) > 20e6:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.2)
    _, pids = read_cgroup_file(h, "met-1", "pids.current")
    assert s[("hostd_dyno_pids", "met-1")] == int(pids) == 4
    _, mem = read_cgroup_file(h, "met-1", "memory.usage_in_bytes", "memory.current")
    assert abs(s[("hostd_dyno_memory_bytes", "met-1")] - int(mem)) < 0.2 * int(mem)
    assert s[("hostd_dyno_memory_quota_bytes", "met-1")] == 512 * 1024 * 1024
    assert s[("hostd_dyno_cpu_seconds_total", "met-1")] > 0
    assert s[("hostd_dynos", "up")] == 1
    # the figures the sampler added: rss and cache as memory.stat has them, the dyno's own
    # load, no OOM kill, no network without netd, and the host's memory from /proc/meminfo
    _, stat = read_cgroup_file(h, "met-1", "memory.stat")
    st = {k: int(v) for k, v in (line.split() for line in stat.splitlines())}
    rss = st.get("total_rss", st.get("anon"))
    assert abs(s[("hostd_dyno_memory_rss_bytes", "met-1")] - rss) < 0.1 * rss
    assert s[("hostd_dyno_memory_rss_bytes", "met-1")] > 20e6
    assert 0 <= s[("hostd_dyno_load1", "met-1")] < 1
    assert s[("hostd_dyno_oom_kills_total", "met-1")] == 0
    assert s[("hostd_dyno_network_receive_bytes_total", "met-1")] == 0
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    with open(path) as f:
        host = dict(line.split() for line in f if line.startswith("hostd_host_"))
    assert int(host["hostd_host_memory_bytes"]) == total
    assert 0 < int(host["hostd_host_memory_available_bytes"]) <= total
    with open(path) as f:
        text = f.read()
    assert 'hostd_dyno_pids{dyno_id="met-1",dyno="worker.1",app="shop"} 4' in text
    assert "# TYPE hostd_dyno_cpu_seconds_total counter" in text
    # rewritten each interval, atomically: never a half file
    c.stop("met-1")
    deadline = time.monotonic() + 10
    while ("hostd_dyno_pids", "met-1") in samples(path):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert samples(path)[("hostd_dynos", "down")] == 1
