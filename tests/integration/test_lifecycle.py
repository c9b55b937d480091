"""A dyno's life as its user sees it: stop with SIGTERM and a grace period (R12 when it runs
out), crashes with their exit code, one-off dynos that complete, one dyno per id, starts that
fail without leaving anything behind, and the log ring (1500 lines, split at 10000 bytes).
"""

import os
import shutil
import time

import pytest

from dynoutil import (
    ENDED_STATES,
    LIVE_STATES,
    app_lines,
    dyno_cgroup_procs,
    overlay_mounts_naming,
    platform_lines,
    wait_gone,
    wait_log,
)
from hostd_client import Code, code_name, pb

# the cgroup v2 tier runs it: stop, the SIGKILL of every process after the grace, the
# cleanup of a failed start
pytestmark = pytest.mark.cgroup


def assert_gone(hostd, dyno):
    """Nothing of the dyno is left on the host: no process, no cgroup, no layer folder."""
    dyno_id = dyno.spec.id
    assert wait_gone(dyno.pid, 5), f"dyno {dyno_id}: its init {dyno.pid} still runs"
    assert dyno_cgroup_procs(hostd, dyno_id) == set()
    assert hostd.find_cgroups(dyno_id) == [], f"dyno {dyno_id}: cgroup left"
    assert not os.path.exists(os.path.join(hostd.layers_dir, dyno_id)), f"dyno {dyno_id}: layer left"
    assert overlay_mounts_naming(os.path.join(hostd.layers_dir, dyno_id)) == []


# -- stop ---------------------------------------------------------------------------------------


def test_stop_sends_sigterm_and_reports_143(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("lc-term"))
        t0 = time.monotonic()
        down = c.stop("lc-term", grace=10)
        elapsed = time.monotonic() - t0
        assert down.state == pb.DYNO_STATE_DOWN, pb.DynoState.Name(down.state)
        assert not down.exit.exited and down.exit.signal == 15, down.exit
        assert down.exit.code == 143, down.exit
        assert down.exit.error == "", f"an error code for a clean stop: {down.exit.error}"
        assert elapsed < 10, f"the stop waited the whole grace ({elapsed:.1f} s) for a SIGTERMed sleep"
        logs = platform_lines(c, "lc-term")
        assert "Stopping all processes with SIGTERM" in logs
        assert "Process exited with status 143" in logs
        # Heroku writes "from up to down"; hostd's own STOPPING state may show instead.
        assert any(l in ("State changed from up to down", "State changed from stopping to down") for l in logs), logs
        assert c.get("lc-term").state == pb.DYNO_STATE_DOWN
        assert_gone(hostd, d)


def test_stop_reports_the_trap_exit_code(hostd, make_spec):
    cmd = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    with hostd.client() as c:
        d = c.start(make_spec("lc-trap", command=cmd))
        wait_log(c, "lc-trap", "ready")
        down = c.stop("lc-trap", grace=10)
        assert down.state == pb.DYNO_STATE_DOWN
        assert down.exit.exited and down.exit.code == 7, down.exit
        assert down.exit.error == ""
        assert "got TERM" in app_lines(c, "lc-trap")
        assert "Process exited with status 7" in platform_lines(c, "lc-trap")
        assert_gone(hostd, d)


def test_sigterm_ignored_is_sigkilled_after_grace_r12(hostd, make_spec):
    cmd = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    with hostd.client() as c:
        d = c.start(make_spec("lc-r12", command=cmd))
        wait_log(c, "lc-r12", "ready")
        t0 = time.monotonic()
        down = c.stop("lc-r12", grace=1)
        elapsed = time.monotonic() - t0
        assert down.state == pb.DYNO_STATE_DOWN
        assert elapsed >= 0.9, f"SIGKILL came {elapsed:.2f} s after SIGTERM, before the 1 s grace"
        assert not down.exit.exited and down.exit.signal == 9, down.exit
        assert down.exit.error == "R12", down.exit
        logs = platform_lines(c, "lc-r12")
        r12 = [l for l in logs if l.startswith("Error R12 (Exit timeout)")]
        assert r12, f"no R12 line: {logs}"
        assert "1 second" in r12[0], r12[0]
        assert "Process exited with status 137" in logs
        assert_gone(hostd, d)


# -- exits on its own -------------------------------------------------------------------------


def test_exit_3_is_crashed_with_code_3_and_cleaned(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("lc-exit3", command="sleep 0.3; exit 3"))
        end = c.wait_state("lc-exit3", ENDED_STATES, timeout=20)
        assert end.state == pb.DYNO_STATE_CRASHED, pb.DynoState.Name(end.state)
        assert end.exit.exited and end.exit.code == 3, end.exit
        assert end.exit.reason == "exit status 3"
        logs = platform_lines(c, "lc-exit3")
        assert "Process exited with status 3" in logs
        assert "State changed from up to crashed" in logs
        # Cleaned up when the state says so, not later.
        assert hostd.find_cgroups("lc-exit3") == [], "the crashed dyno's cgroup is still there"
        assert not os.path.exists(os.path.join(hostd.layers_dir, "lc-exit3")), "layer folder left"
        assert_gone(hostd, d)
        # Listed, with its final state.
        assert [(x.spec.id, x.state) for x in c.list()] == [("lc-exit3", pb.DYNO_STATE_CRASHED)]


def test_worker_exit_0_is_crashed(hostd, make_spec):
    """Heroku: any exit of a formation dyno is a crash, exit code 0 included."""
    with hostd.client() as c:
        c.start(make_spec("lc-w0", command="sleep 0.2; exit 0"))
        end = c.wait_state("lc-w0", ENDED_STATES, timeout=20)
        assert end.state == pb.DYNO_STATE_CRASHED, pb.DynoState.Name(end.state)
        assert end.exit.exited and end.exit.code == 0


def test_one_off_exit_0_is_complete(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("lc-run", name="run.1", type=pb.DYNO_TYPE_ONE_OFF, command="echo done; exit 0"))
        end = c.wait_state("lc-run", ENDED_STATES, timeout=20)
        assert end.state == pb.DYNO_STATE_COMPLETE, pb.DynoState.Name(end.state)
        assert end.exit.exited and end.exit.code == 0
        assert "done" in app_lines(c, "lc-run")
        assert_gone(hostd, d)


def test_one_off_exit_1_is_crashed(hostd, make_spec):
    with hostd.client() as c:
        c.start(make_spec("lc-run1", name="run.1", type=pb.DYNO_TYPE_ONE_OFF, command="exit 1"))
        end = c.wait_state("lc-run1", ENDED_STATES, timeout=20)
        assert end.state == pb.DYNO_STATE_CRASHED, pb.DynoState.Name(end.state)
        assert end.exit.exited and end.exit.code == 1


def test_ended_dyno_can_be_started_again(hostd, make_spec):
    with hostd.client() as c:
        first = c.start(make_spec("lc-again", command="exit 4"))
        c.wait_state("lc-again", ENDED_STATES, timeout=20)
        second = c.start(make_spec("lc-again"))
        assert second.state == pb.DYNO_STATE_UP
        assert second.pid != first.pid
        assert hostd.dyno_inits() == [second.pid]
        c.stop("lc-again", grace=1)


# -- one dyno per id ------------------------------------------------------------------------------


def test_same_id_twice_already_exists_one_process_tree(hostd, make_spec):
    with hostd.client() as c:
        d = c.start(make_spec("lc-twice"))
        resp = c.start(make_spec("lc-twice", command="sleep 999"), check=False)
        assert resp.status.code == Code.ALREADY_EXISTS, code_name(resp.status.code)
        assert "lc-twice" in resp.status.message
        assert hostd.dyno_inits() == [d.pid], f"dyno inits: {hostd.dyno_inits()}, want only {d.pid}"
        # Every process hostd runs is in the one dyno's cgroup. The two are read one after
        # the other while the dyno's shell may still fork: compare once they agree.
        for _ in range(50):
            procs, in_dyno = hostd.dyno_procs(), dyno_cgroup_procs(hostd, "lc-twice")
            if procs == in_dyno:
                break
            time.sleep(0.1)
        assert procs == in_dyno
        assert hostd.find_cgroups("lc-twice") and all(
            os.path.basename(os.path.dirname(p)) == "dynos" for p in hostd.find_cgroups("lc-twice")
        )
        again = c.get("lc-twice")
        assert (again.state, again.pid, again.spec.command) == (pb.DYNO_STATE_UP, d.pid, "sleep 1000")
        c.stop("lc-twice", grace=1)
        assert_gone(hostd, d)


def test_same_id_twice_in_flight_one_dyno(hostd, make_spec):
    """Two Starts of one id sent back to back, before the first is answered."""
    with hostd.client() as c:
        pending = [c.start_async(make_spec("lc-race")) for _ in range(2)]
        resps = [p.reply() for p in pending]
        codes = sorted(code_name(r.status.code) for r in resps)
        assert codes == ["ALREADY_EXISTS", "OK"], codes
        assert len(hostd.dyno_inits()) == 1, f"dyno inits: {hostd.dyno_inits()}"
        c.stop("lc-race", grace=1)


# -- a start that fails leaves nothing ------------------------------------------------------------


def assert_failed_start_left_nothing(hostd, c, resp, dyno_id, before):
    assert resp.status.code != Code.OK, f"the start succeeded: {resp}"
    assert resp.status.message, "an error without a message"
    assert all(d.state not in LIVE_STATES for d in c.list())
    hostd.assert_unchanged(before, f"the failed start of {dyno_id}")
    assert hostd.find_cgroups(dyno_id) == []
    assert hostd.dyno_procs() == set()
    assert not os.path.exists(os.path.join(hostd.layers_dir, dyno_id)), "layer folder left"
    assert overlay_mounts_naming(hostd.layers_dir) == [], "overlay mount left"
    assert not os.path.exists(os.path.join(hostd.run_dir, "dynos", dyno_id)), "record left"


def test_failed_start_stack_without_shell_leaves_nothing(hostd, make_spec, rootfs, tmp_path):
    stack = tmp_path / "stack"
    shutil.copytree(rootfs.stack, stack, symlinks=True)
    os.unlink(stack / "bin" / "sh")
    os.unlink(stack / "bin" / "busybox")
    os.chmod(tmp_path, 0o755)
    with hostd.client() as c:
        before = hostd.snapshot()
        resp = c.start(make_spec("lc-nosh", stack_path=str(stack)), check=False)
        assert_failed_start_left_nothing(hostd, c, resp, "lc-nosh", before)
        assert "sh" in resp.status.message, f"the error does not name the shell: {resp.status.message!r}"
        # hostd still starts a good dyno.
        c.start(make_spec("lc-nosh"))
        c.stop("lc-nosh", grace=1)


def test_failed_start_slug_is_a_file_leaves_nothing(hostd, make_spec, tmp_path):
    slug = tmp_path / "slug.tar"
    slug.write_text("not a folder\n")
    os.chmod(tmp_path, 0o755)
    with hostd.client() as c:
        before = hostd.snapshot()
        resp = c.start(make_spec("lc-slugfile", slug_path=str(slug)), check=False)
        assert resp.status.code == Code.INVALID_ARGUMENT, code_name(resp.status.code)
        assert "slug" in resp.status.message, resp.status.message
        assert_failed_start_left_nothing(hostd, c, resp, "lc-slugfile", before)
        assert slug.read_text() == "not a folder\n"


def test_failed_start_missing_stack_leaves_nothing(hostd, make_spec, tmp_path):
    with hostd.client() as c:
        before = hostd.snapshot()
        resp = c.start(make_spec("lc-nostack", stack_path=str(tmp_path / "nope")), check=False)
        assert "stack" in resp.status.message, resp.status.message
        assert_failed_start_left_nothing(hostd, c, resp, "lc-nostack", before)


# -- logs ------------------------------------------------------------------------------------------


def test_logs_keep_the_last_1500_lines(hostd, make_spec):
    cmd = "i=1; while [ $i -le 2000 ]; do echo line-$i; i=$((i+1)); done; exec sleep 1000"
    with hostd.client() as c:
        c.start(make_spec("lc-ring", command=cmd))
        wait_log(c, "lc-ring", "line-2000")
        lines = [l.text.decode() for l in c.logs("lc-ring").lines]
        assert len(lines) == 1500, f"{len(lines)} lines kept"
        app = [l for l in lines if l.startswith("line-")]
        assert app[-1] == "line-2000"
        first = int(app[0].split("-")[1])
        assert app == [f"line-{i}" for i in range(first, 2001)], "lines missing or out of order"
        assert first >= 501, "more than 1500 lines kept"
        c.stop("lc-ring", grace=1)


def test_long_line_split_at_10000_bytes(hostd, make_spec):
    cmd = (
        "{ head -c 10000 /dev/zero | tr '\\0' A; head -c 10000 /dev/zero | tr '\\0' B;"
        " head -c 5000 /dev/zero | tr '\\0' C; echo; echo after; } ; exec sleep 1000"
    )
    with hostd.client() as c:
        c.start(make_spec("lc-long", command=cmd))
        lines = wait_log(c, "lc-long", "after")
        assert [len(l) for l in lines] == [10000, 10000, 5000, 5], [len(l) for l in lines]
        assert lines[:3] == ["A" * 10000, "B" * 10000, "C" * 5000]
        c.stop("lc-long", grace=1)


def test_line_of_exactly_10000_bytes_not_split(hostd, make_spec):
    cmd = (
        "head -c 10000 /dev/zero | tr '\\0' D; echo;"
        " head -c 10001 /dev/zero | tr '\\0' E; echo; echo after; exec sleep 1000"
    )
    with hostd.client() as c:
        c.start(make_spec("lc-edge", command=cmd))
        lines = wait_log(c, "lc-edge", "after")
        assert lines == ["D" * 10000, "E" * 10000, "E", "after"], [len(l) for l in lines]
        c.stop("lc-edge", grace=1)


def test_a_stop_right_after_the_start_is_not_lost(hostd, make_spec):
    """The dyno init takes its signal handlers after it starts; a SIGTERM sent before that must
    wait for them, not vanish (on a slow machine it did: the stop ran into the grace, R12)."""
    with hostd.client() as c:
        for i in range(10):
            c.start(make_spec(f"lc-race-{i}"))
            down = c.stop(f"lc-race-{i}", grace=20)
            assert down.exit.signal == 15 and down.exit.error != "R12", down.exit
