"""SubscribeMetrics and the runtime-metrics log lines: every figure a batch carries is checked
against the kernel's own files (the dyno's cgroup files, /proc, the host end of its veth).

Run as root:
HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_metrics_stream.py
"""

import os
import re
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dynoutil import read_cgroup_file, with_sizes  # noqa: E402
from hostd_client import Code, pb  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: subscriptions, intervals and network counters
    pytest.mark.cgroup_independent,
]

MIB = 1024 * 1024


def subscribe(c, interval=None):
    """SubscribeMetrics: a Stream of batches (SubscribeMetricsResponse)."""
    return c.metrics(0 if interval is None else interval)


def next_batch(c, stream, timeout=30):
    resp = stream.next(timeout=timeout)
    assert resp is not None, f"the metrics stream ended: {stream.status}"
    return resp


def dyno_in(batch, dyno_id):
    for d in batch.dynos:
        if d.dyno_id == dyno_id:
            return d
    return None


def wait_batch(c, req_id, pred, timeout=30, what=""):
    """Batches until pred(batch) holds; the last batch."""
    deadline = time.monotonic() + timeout
    while True:
        b = next_batch(c, req_id, timeout=max(1, deadline - time.monotonic()))
        if pred(b):
            return b
        assert time.monotonic() < deadline, f"{what}: last batch {b}"


def memory_stat(h, dyno_id):
    _, text = read_cgroup_file(h, dyno_id, "memory.stat")
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def cgroup_cpu_usec(h, dyno_id):
    name, text = read_cgroup_file(h, dyno_id, "cpuacct.usage", "cpu.stat")
    if name == "cpuacct.usage":
        return int(text) // 1000
    return int(dict(line.split() for line in text.splitlines())["usage_usec"])


def cgroup_swap(h, dyno_id):
    st = memory_stat(h, dyno_id)
    if "total_swap" in st:
        return st["total_swap"]
    try:
        return int(read_cgroup_file(h, dyno_id, "memory.swap.current")[1])
    except AssertionError:
        return 0


@pytest.mark.cgroup  # figures read from cgroup files
def test_batches_match_the_cgroup_files(hostd, make_spec):
    c = hostd.client()
    # 20 MB held by a shell, and a known number of tasks: the init, the shell, two sleeps (the
    # shell waits: a simple last command would replace it, and its memory with it)
    c.start(make_spec("ms-1", app="shop", command="x=$(head -c 20000000 /dev/zero | tr '\\0' a); "
                      "sleep 1000 & sleep 1000 & wait"))
    sub = subscribe(c, 1)
    b = wait_batch(c, sub, lambda b: (d := dyno_in(b, "ms-1")) is not None and d.pids == 4 and
                   d.memory_total > 20e6, what="ms-1 with 4 tasks and 20 MB")
    d = dyno_in(b, "ms-1")
    # read the files right after the batch: counters only grow, gauges stay near
    assert d.pids == int(read_cgroup_file(hostd, "ms-1", "pids.current")[1]) == 4
    _, mem = read_cgroup_file(hostd, "ms-1", "memory.usage_in_bytes", "memory.current")
    total = int(mem) + cgroup_swap(hostd, "ms-1")
    assert abs(d.memory_total - total) < 0.1 * total, (d.memory_total, total)
    st = memory_stat(hostd, "ms-1")
    rss = st.get("total_rss", st.get("anon"))
    cache = st.get("total_cache", st.get("file"))
    assert abs(d.memory_rss - rss) < 0.1 * rss + MIB, (d.memory_rss, rss)
    assert abs(d.memory_cache - cache) < 0.1 * cache + MIB, (d.memory_cache, cache)
    assert d.memory_rss > 20e6  # the shell's 20 MB string is anonymous memory
    if "total_pgpgin" in st:  # v1: pages charged
        assert 0 < d.pgpgin <= st["total_pgpgin"] and 0 < d.pgpgout <= st["total_pgpgout"]
        assert d.pgpgin > 20e6 / 4096  # at least the string's pages
    cpu = cgroup_cpu_usec(hostd, "ms-1")
    assert 0 < d.cpu_usec <= cpu, (d.cpu_usec, cpu)
    assert d.memory_quota == 512 * MIB
    assert d.state == pb.DYNO_STATE_UP and d.name == "worker.1"
    assert abs(d.time_usec / 1e6 - time.time()) < 5
    # the host, from /proc
    with open("/proc/meminfo") as f:
        meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    assert b.host.memory_total == meminfo["MemTotal"]
    assert abs(b.host.memory_available - meminfo["MemAvailable"]) < 0.2 * meminfo["MemTotal"]
    assert b.host.cpus == len(os.sched_getaffinity(0)) or b.host.cpus == os.cpu_count()
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    assert abs(b.host.load_1m - load1) < 2.0
    assert b.host.dynos == 1 and b.host.memory_allocated == 512 * MIB
    # a dyno that ends leaves the batches
    c.stop("ms-1")
    wait_batch(c, sub, lambda b: dyno_in(b, "ms-1") is None, what="ms-1 gone")


@pytest.mark.cgroup  # CPU time and runnable tasks from the cgroup
def test_cpu_time_and_load_of_a_busy_dyno(hostd_factory, make_spec):
    h = hostd_factory(**{"runtime-metrics-interval": 1})
    c = h.client()
    c.start(make_spec("busy-1", command="while :; do :; done"))
    c.start(make_spec("idle-1", command="sleep 1000"))
    sub = subscribe(c, 1)
    first = wait_batch(c, sub, lambda b: dyno_in(b, "busy-1") and dyno_in(b, "idle-1"))
    t0 = dyno_in(first, "busy-1").cpu_usec
    time.sleep(6)
    b = wait_batch(c, sub, lambda b: dyno_in(b, "busy-1").load_1m > 0.05, timeout=30,
                   what="busy-1's load")
    busy, idle = dyno_in(b, "busy-1"), dyno_in(b, "idle-1")
    # it ran most of the time: at least a third of a CPU over the seconds between batches
    spent = (busy.time_usec - dyno_in(first, "busy-1").time_usec)
    assert busy.cpu_usec - t0 > spent / 3, (busy.cpu_usec - t0, spent)
    assert busy.cpu_usec <= cgroup_cpu_usec(h, "busy-1")
    # one task always runnable: the averages rise toward 1, the shortest fastest
    assert 0.05 < busy.load_1m <= 1.01 and busy.load_5m < busy.load_1m
    assert busy.load_15m < busy.load_5m
    assert idle.load_1m < 0.05 and idle.cpu_usec < 1e6
    c.stop("busy-1", grace=1)
    c.stop("idle-1", grace=1)


@pytest.mark.cgroup  # the OOM kill count and its notification
def test_oom_kill_is_counted(hostd_factory, make_spec):
    h = with_sizes(hostd_factory, {"tiny": {"memory": "32M", "swap": "no", "pids": 64}})
    c = h.client()
    # a subshell grows past the quota and is killed; the dyno's shell lives on
    c.start(make_spec("oom-1", size="tiny", command="sleep 1000 & sleep 3; "
                      "(x=$(head -c 100000000 /dev/zero | tr '\\0' a)); wait"))
    sub = subscribe(c, 1)
    # counted before the kill as 0, so the kill is seen through the kernel's notification
    # (the count is read again only after one), not at the first read
    assert dyno_in(next_batch(c, sub), "oom-1").oom_kills == 0
    b = wait_batch(c, sub, lambda b: (d := dyno_in(b, "oom-1")) is not None and d.oom_kills > 0,
                   what="an OOM kill in oom-1")
    name, text = read_cgroup_file(h, "oom-1", "memory.oom_control", "memory.events")
    kills = int(dict(line.split() for line in text.splitlines())["oom_kill"])
    assert dyno_in(b, "oom-1").oom_kills == kills >= 1
    assert dyno_in(b, "oom-1").memory_quota == 32 * MIB
    assert c.get("oom-1").state == pb.DYNO_STATE_UP
    c.stop("oom-1", grace=1)


@pytest.mark.parametrize("interval", [3601, 100000])
def test_interval_out_of_range(hostd, interval):
    with hostd.client() as c:
        stream = subscribe(c, interval)
        assert stream.rest(30) == []
        assert stream.status.code == Code.INVALID_ARGUMENT, stream.status
        assert "interval_seconds" in stream.status.message
        assert str(interval) in stream.status.message
        c.list()  # the connection stays usable


def test_default_interval_and_a_second_subscriber(hostd, make_spec):
    c1, c2, c3 = hostd.client(), hostd.client(), hostd.client()
    c1.start(make_spec("two-1"))
    # unset is the default, 20 s: a batch at once, the next not within 5 s
    s3 = subscribe(c3)
    assert dyno_in(next_batch(c3, s3, timeout=5), "two-1")
    s1, s2 = subscribe(c1, 1), subscribe(c2, 1)
    times1 = [next_batch(c1, s1).host.memory_total for _ in range(3)]
    b2 = [next_batch(c2, s2) for _ in range(3)]
    assert all(t > 0 for t in times1) and all(dyno_in(b, "two-1") for b in b2)
    # one leaves: the other goes on
    c1.close()
    after = [next_batch(c2, s2) for _ in range(2)]
    assert after[1].dynos[0].time_usec > after[0].dynos[0].time_usec
    with pytest.raises(TimeoutError):
        s3.next(timeout=4)
    c2.stop("two-1", grace=1)


def runtime_lines(c, dyno_id):
    return [l.text.decode() for l in c.logs(dyno_id).lines if l.source == "heroku"
            and l.text.startswith(b"source=")]


LOAD_LINE = re.compile(r"source=web\.1 dyno=(\S+) sample#load_avg_1m=(\d+\.\d\d) "
                       r"sample#load_avg_5m=(\d+\.\d\d) sample#load_avg_15m=(\d+\.\d\d)")
MEMORY_LINE = re.compile(r"source=web\.1 dyno=(\S+) sample#memory_total=(\d+\.\d\d)MB "
                         r"sample#memory_rss=(\d+\.\d\d)MB sample#memory_cache=(\d+\.\d\d)MB "
                         r"sample#memory_swap=(\d+\.\d\d)MB sample#memory_pgpgin=(\d+)pages "
                         r"sample#memory_pgpgout=(\d+)pages sample#memory_quota=(\d+\.\d\d)MB")


@pytest.mark.cgroup  # memory figures read from cgroup files
def test_runtime_metrics_lines(hostd_factory, make_spec):
    h = hostd_factory(**{"runtime-metrics-interval": 1})
    c = h.client()
    c.start(make_spec("rtm-1", name="web.1", runtime_metrics=True,
                      command="x=$(head -c 10000000 /dev/zero | tr '\\0' a); sleep 1000 & wait"))
    c.start(make_spec("rtm-2", name="web.1", command="sleep 1000"))
    def holds_its_10mb():
        lines = runtime_lines(c, "rtm-1")
        m = MEMORY_LINE.fullmatch(lines[-1]) if len(lines) >= 4 else None
        return m and float(m.group(3)) >= 9.5
    deadline = time.monotonic() + 30
    while not holds_its_10mb():  # the first samples may come before the shell read it all
        assert time.monotonic() < deadline, runtime_lines(c, "rtm-1")
        time.sleep(0.2)
    lines = runtime_lines(c, "rtm-1")
    run_id = c.get("rtm-1").run_id
    # in pairs, load first, then memory, exactly in Heroku's form
    for load, memory in zip(lines[0::2], lines[1::2]):
        ml, mm = LOAD_LINE.fullmatch(load), MEMORY_LINE.fullmatch(memory)
        assert ml, load
        assert mm, memory
        # dyno= is heroku.<app id>.<the run's UUID, which the dyno has as HEROKU_DYNO_ID>; the
        # app's name where the spec gives no app_id
        assert ml.group(1) == mm.group(1) == f"heroku.testapp.{run_id}"
        assert mm.group(8) == "512.00"
        total, rss = float(mm.group(2)), float(mm.group(3))
        assert total >= rss
    # the shell holds 10 MB
    assert float(MEMORY_LINE.fullmatch(lines[-1]).group(3)) >= 9.5
    _, mem = read_cgroup_file(h, "rtm-1", "memory.usage_in_bytes", "memory.current")
    total = float(MEMORY_LINE.fullmatch(lines[-1]).group(2))
    assert abs(total - int(mem) / MIB) < 0.2 * int(mem) / MIB + 1
    # not in hostd's own log (a line per dyno per interval would flood it)
    assert "sample#memory_total" not in h.log_text()
    # a dyno that did not ask gets none
    assert runtime_lines(c, "rtm-2") == []
    c.stop("rtm-1", grace=1)
    c.stop("rtm-2", grace=1)


# -- network counters, with netd -----------------------------------------------------------------


def veth_counters(lab, dyno_id):
    """(rx_bytes, tx_bytes, rx_packets, tx_packets) of the dyno as the host end of its veth
    counts them (what the host end sends, the dyno receives)."""
    import json
    from test_netd import run
    veths = lab.dyno_veths()
    assert len(veths) == 1, veths
    name = veths[0].split(":")[1].strip().split("@")[0]
    out = run("nsenter", "-t", str(lab.host.pid), "-n", "ip", "-j", "-s", "link", "show",
              "dev", name).stdout
    st = json.loads(out)[0]["stats64"]
    return (st["tx"]["bytes"], st["rx"]["bytes"], st["tx"]["packets"], st["rx"]["packets"])


from test_netd import lab  # noqa: E402,F401  (the fixture: a private host for netd)


def test_network_counters_match_the_veth(lab, hostd_factory, make_spec):
    from test_hostd_netd import fetch, hostd_in, web_spec
    from test_netd import OUTSIDE_HOST_IP, make_outside
    lab.netd_client = lab.start_netd()
    h = hostd_in(lab, hostd_factory)
    outside = make_outside(lab)
    c = h.client()
    d = c.start(web_spec(make_spec, "net-1"))
    c.wait_state("net-1", pb.DYNO_STATE_UP)
    for _ in range(5):
        assert fetch(lab, outside.pid, OUTSIDE_HOST_IP, d.host_port, "hello from web.1") == \
            "hello from web.1"
    sub = subscribe(c, 1)
    deadline = time.monotonic() + 20
    while True:
        b = next_batch(c, sub)
        m = dyno_in(b, "net-1")
        got = (m.rx_bytes, m.tx_bytes, m.rx_packets, m.tx_packets)
        want = veth_counters(lab, "net-1")
        # five requests and answers went through: more than their payload each way
        if got == want and m.rx_bytes > 5 * 40 and m.tx_bytes > 5 * 16:
            break
        assert time.monotonic() < deadline, f"batch {got}, veth {want}"
    assert m.rx_packets >= 5 * 3 and m.tx_packets >= 5 * 3  # a TCP exchange each
    c.stop("net-1", grace=1)


def test_network_counters_are_zero_without_netd(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("nonet-1"))
    sub = subscribe(c, 1)
    for _ in range(2):
        m = dyno_in(next_batch(c, sub), "nonet-1")
        assert (m.rx_bytes, m.tx_bytes, m.rx_packets, m.tx_packets) == (0, 0, 0, 0)
    c.stop("nonet-1", grace=1)


def test_a_slow_subscriber_gets_fewer_batches_not_more_memory(hostd_factory, make_spec):
    """A client that stops reading: hostd queues a batch only when the previous one has left
    its queue, so what waits for the client is bounded by the socket's buffer; the batches
    made meanwhile are dropped for it (the next carries the same counters), and once it
    reads again the stream goes on."""
    hostd = hostd_factory()  # fifty idle 512M dynos fit: the tests overcommit memory
    c = hostd.client()
    for i in range(50):
        c.start(make_spec(f"slow-{i}"))
    # A stock client that stops reading: grpcio reads a message when asked for one, and its
    # HTTP/2 window stays at the initial 64 KiB without the BDP probe.
    slow = hostd.client(options=[("grpc.http2.bdp_probe", 0)])
    call = slow.stub.SubscribeMetrics(pb.SubscribeMetricsRequest(interval_seconds=1))
    first = next(call)
    size = len(first.SerializeToString())
    with open("/proc/sys/net/core/wmem_default") as f:
        wmem = int(f.read())
    fill = wmem // size + 1  # batches the socket can hold, at most
    idle = fill + 12
    if idle > 100:
        pytest.skip(f"batches of {size} bytes: {idle} s to fill a {wmem}-byte socket buffer")
    time.sleep(idle)
    drain_start = time.time()
    times = []
    while True:
        b = next(call)
        times.append(b.dynos[0].time_usec / 1e6)
        if times[-1] > drain_start + 2:
            break  # caught up: batches made after the client read again
    queued = [t for t in times if t < drain_start]
    # without the policy every one of the ~idle batches would have waited in hostd's queue
    assert len(queued) <= fill + 3 and len(queued) < idle - 5, (len(queued), fill, idle)
    gaps = [b - a for a, b in zip(queued, queued[1:])]
    assert max(gaps + [drain_start - queued[-1]]) >= 3, gaps
    # the stream goes on, a batch a second
    a, b = next(call), next(call)
    assert 0.5 < (b.dynos[0].time_usec - a.dynos[0].time_usec) / 1e6 < 3
    slow.close()
    for i in range(50):
        c.stop(f"slow-{i}", grace=1)
