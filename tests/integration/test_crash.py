"""Crash restarts: a formation dyno restarts after any exit, exit 0 included, with the restart
back-off of the config (the clock is scaled down here: seconds for Heroku's minutes); a good
boot, an explicit restart and a stop end the series; one-off dynos never restart.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_crash.py
"""

import os
import time

import pytest

from hostd_client import pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    # not the cgroup v2 tier: the back-off's arithmetic and its log lines
    pytest.mark.cgroup_independent,
]


def lines_with_time(c, dyno_id):
    return [(l.time_usec / 1e6, l.text.decode()) for l in c.logs(dyno_id).lines]


def exits(c, dyno_id):
    return [t for t, text in lines_with_time(c, dyno_id) if text.startswith("Process exited")]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_back_off_follows_the_configured_delays(hostd_factory, make_spec):
    h = hostd_factory(restart_backoff="0, 2s, 4s")
    c = h.client()
    c.start(make_spec("crashy", command="exit 0"))  # exit 0 is a crash too
    wait_for(lambda: len(exits(c, "crashy")) >= 5, 40, "five exits")
    t = exits(c, "crashy")
    gaps = [b - a for a, b in zip(t, t[1:])]
    # at once, then 2 s, then 4 s, and 4 s again (the last delay repeats); a start takes
    # some milliseconds on top, never less than the delay
    assert gaps[0] < 1.5, gaps
    assert 2.0 <= gaps[1] < 4.0, gaps
    assert 4.0 <= gaps[2] < 6.0, gaps
    assert 4.0 <= gaps[3] < 6.0, gaps
    texts = [x for _, x in lines_with_time(c, "crashy")]
    assert "Crashed: restarting now (crash 1 in a row)" in texts
    assert "Crashed: restarting in 2 seconds (crash 2 in a row)" in texts
    assert "Crashed: restarting in 4 seconds (crash 4 in a row)" in texts
    d = c.get("crashy")
    assert d.restarts >= 4
    assert d.exit.exited and d.exit.code == 0

    # a stop while it waits: down, and it stays down
    c.wait_state("crashy", pb.DYNO_STATE_CRASHED, timeout=10)
    stopped = c.stop("crashy")
    assert stopped.state == pb.DYNO_STATE_DOWN
    restarts = stopped.restarts
    time.sleep(5)  # longer than the 4 s the next restart would have waited
    d = c.get("crashy")
    assert d.state == pb.DYNO_STATE_DOWN and d.restarts == restarts
    assert not h.dyno_procs()


@pytest.mark.cgroup  # removes and makes the same cgroup in a tight loop
def test_no_back_off_restarts_continuously(hostd_factory, make_spec):
    h = hostd_factory(restart_backoff="0")
    c = h.client()
    c.start(make_spec("loop", command="exit 1"))
    wait_for(lambda: c.get("loop").restarts >= 5, 30, "five restarts")
    assert not any("restarting in" in x for _, x in lines_with_time(c, "loop"))
    c.stop("loop")


def test_one_off_dynos_never_restart(hostd_factory, make_spec):
    h = hostd_factory(restart_backoff="0")
    c = h.client()
    c.start(make_spec("run-fail", name="run.1", type=pb.DYNO_TYPE_ONE_OFF, command="exit 3"))
    c.start(make_spec("run-ok", name="run.2", type=pb.DYNO_TYPE_ONE_OFF, command="exit 0"))
    failed = c.wait_state("run-fail", pb.DYNO_STATE_CRASHED, timeout=10)
    done = c.wait_state("run-ok", pb.DYNO_STATE_COMPLETE, timeout=10)
    assert failed.exit.code == 3 and done.exit.code == 0
    time.sleep(1.5)
    for dyno_id, state in (("run-fail", pb.DYNO_STATE_CRASHED), ("run-ok", pb.DYNO_STATE_COMPLETE)):
        d = c.get(dyno_id)
        assert d.state == state and d.restarts == 0


def test_explicit_restart_resets_the_back_off(hostd_factory, make_spec):
    h = hostd_factory(restart_backoff="0, 1h")
    c = h.client()
    c.start(make_spec("reset", command="exit 1"))
    texts = lambda: [x for _, x in lines_with_time(c, "reset")]  # noqa: E731
    wait_for(lambda: "Crashed: restarting in 3600 seconds (crash 2 in a row)" in texts(), 20,
             "the second crash")
    assert c.get("reset").state == pb.DYNO_STATE_CRASHED
    c.restart("reset")
    wait_for(lambda: texts().count("Crashed: restarting now (crash 1 in a row)") == 2, 20,
             "a first crash again")
    c.stop("reset")


def test_a_good_boot_resets_the_back_off(hostd_factory, make_spec):
    h = hostd_factory(restart_backoff="0, 1h")
    c = h.client()
    # binds $PORT (busybox httpd goes to the background), stays a second, then crashes
    spec = make_spec("boots", name="web.1", type=pb.DYNO_TYPE_WEB, port=5000,
                     command="mkdir -p /tmp/w && busybox httpd -p $PORT -h /tmp/w && sleep 1 "
                             "&& exit 1")
    c.start(spec)
    texts = lambda: [x for _, x in lines_with_time(c, "boots")]  # noqa: E731
    wait_for(lambda: texts().count("Crashed: restarting now (crash 1 in a row)") >= 3, 30,
             "three crashes after good boots")
    assert not any("restarting in" in x for x in texts())
    assert texts().count("State changed from starting to up") >= 3
    c.stop("boots")


@pytest.mark.cgroup  # re-adoption of a restarted dyno
def test_back_off_survives_a_hostd_restart(hostd_factory, make_spec):
    h = hostd_factory(restart_backoff="0, 4s")
    c = h.client()
    c.start(make_spec("durable", command="exit 1"))
    texts = lambda: [x for _, x in lines_with_time(c, "durable")]  # noqa: E731
    wait_for(lambda: "Crashed: restarting in 4 seconds (crash 2 in a row)" in texts(), 20,
             "the second crash")
    before = c.get("durable")
    assert before.state == pb.DYNO_STATE_CRASHED
    h.kill9()
    h.start()
    c = h.client()
    assert c.get("durable").state == pb.DYNO_STATE_CRASHED
    wait_for(lambda: c.get("durable").restarts > before.restarts, 15, "the restart after 4 s")
    c.stop("durable")
