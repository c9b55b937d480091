"""How a dyno's command runs and how it stops, as Heroku does it, for commands written as real
Procfiles write them: without `exec` in front.

The command is the last line of the shell's script (after .profile.d/*.sh and .profile), so a
simple command replaces the shell and is the dyno's main process: the app itself gets the stop's
SIGTERM. A compound command keeps its shell, and the stop still waits for the app: SIGTERM goes to
every process of the dyno, and the dyno lives until all of them have exited or the grace period
has passed (then R12 and SIGKILL to what is left). The reported status is the main process's.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_stop.py
"""

import os
import shutil
import time

import pytest

from dynoutil import app_lines, platform_lines, pid_alive, wait_gone, wait_log
from hostd_client import pb

# the cgroup v2 tier runs it: the stop ends with a kill of the whole cgroup (cgroup.kill on v2)
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup]

# An app that needs time to shut down: on SIGTERM it says so, works for a while, cleans up and
# exits 0. Its loop's sleep gets the SIGTERM too (it goes to every process), so the trap runs
# at once.
GRACEFUL = """#!/bin/sh
trap 'echo "got TERM"; sleep 1; echo "cleanup done"; exit 0' TERM
echo ready
while :; do sleep 0.1; done
"""

# A process that ignores SIGTERM and must be killed.
STUBBORN = """#!/bin/sh
trap '' TERM
echo stubborn
while :; do sleep 0.1; done
"""


@pytest.fixture
def slug(rootfs, tmp_path):
    """The sample slug with the two apps in /app/bin."""
    path = tmp_path / "slug"
    shutil.copytree(rootfs.slug, path, symlinks=True)
    for name, text in (("graceful", GRACEFUL), ("stubborn", STUBBORN)):
        f = path / "app" / "bin" / name
        f.write_text(text)
        f.chmod(0o755)
    os.chmod(tmp_path, 0o755)
    return str(path)


def children(pid):
    """The pids of pid's children (the dyno init's: the main process and reaped orphans)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


@pytest.mark.parametrize("command", ["sleep 1000", "FOO=1 sleep 1000"])
def test_a_simple_command_replaces_the_shell(hostd, make_spec, command):
    """No `exec` in front, and still the command is the init's only child: no shell between."""
    with hostd.client() as c:
        d = c.start(make_spec("st-simple", command=command))
        # The shell may still be reading the prelude when Start answers: wait for it to
        # replace itself. A shell that forks the command instead stays /bin/sh, and fails.
        deadline = time.monotonic() + 30
        while True:
            kids = children(d.pid)
            assert len(kids) == 1, kids
            argv = cmdline(kids[0])
            if (argv and argv[0] != "/bin/sh") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert argv == ["sleep", "1000"], argv
        down = c.stop("st-simple", grace=5)
        assert down.exit.signal == 15, down.exit


def test_an_app_without_exec_finishes_its_shutdown(hostd, make_spec, slug):
    """The issue's case: a Procfile command without exec, an app that traps TERM and needs a
    moment to clean up. It must run to its end and report its own status."""
    with hostd.client() as c:
        d = c.start(make_spec("st-app", slug_path=slug, command="bin/graceful"))
        wait_log(c, "st-app", "ready")
        assert cmdline(children(d.pid)[0])[-1] == "bin/graceful"
        down = c.stop("st-app", grace=20)
        assert down.state == pb.DYNO_STATE_DOWN
        lines = app_lines(c, "st-app")
        assert "got TERM" in lines and "cleanup done" in lines, lines
        assert down.exit.exited and down.exit.code == 0, down.exit
        assert down.exit.error == "", down.exit
        logs = platform_lines(c, "st-app")
        assert "Stopping all processes with SIGTERM" in logs
        assert "Process exited with status 0" in logs, logs
        assert not any(l.startswith("Error R12") for l in logs), logs
        assert wait_gone(d.pid, 5)


def test_a_compound_command_keeps_its_shell_and_the_app_still_finishes(hostd, make_spec, slug):
    """`a; b` keeps the shell as the main process. The stop's SIGTERM ends that shell at once,
    but the dyno lives on until the app under it has finished; the status is the shell's."""
    with hostd.client() as c:
        d = c.start(make_spec("st-compound", slug_path=slug, command="bin/graceful; echo after"))
        wait_log(c, "st-compound", "ready")
        main = children(d.pid)
        assert len(main) == 1 and "bin/graceful; echo after" in cmdline(main[0])[-1], main
        down = c.stop("st-compound", grace=20)
        assert down.state == pb.DYNO_STATE_DOWN
        lines = app_lines(c, "st-compound")
        assert "cleanup done" in lines, f"the app under the shell was killed early: {lines}"
        assert "after" not in lines
        assert not down.exit.exited and down.exit.signal == 15, down.exit
        logs = platform_lines(c, "st-compound")
        assert "Process exited with status 143" in logs, logs
        assert not any(l.startswith("Error R12") for l in logs), logs


def test_a_process_that_ignores_sigterm_is_killed_at_the_grace_r12(hostd, make_spec, slug):
    """The main process exits at SIGTERM, a second one ignores it: the dyno stays until the
    grace is over, then R12 and SIGKILL, in that order; the status is the main process's."""
    cmd = "bin/stubborn & sleep 1000"
    with hostd.client() as c:
        d = c.start(make_spec("st-r12", slug_path=slug, command=cmd))
        wait_log(c, "st-r12", "stubborn")
        down = c.stop("st-r12", grace=2)
        assert down.state == pb.DYNO_STATE_DOWN
        assert down.exit.error == "R12", down.exit
        assert not down.exit.exited and down.exit.signal == 15, down.exit
        logs = platform_lines(c, "st-r12")
        r12 = [i for i, l in enumerate(logs) if l.startswith("Error R12 (Exit timeout)")]
        assert r12, logs
        assert logs[r12[0]] == (
            "Error R12 (Exit timeout) -> At least one process failed to exit within 2 seconds "
            "of SIGTERM"
        )
        assert logs[r12[0] + 1] == "Stopping process with SIGKILL", logs
        assert "Process exited with status 143" in logs[r12[0] :], logs
        assert wait_gone(d.pid, 5)
        assert hostd.find_cgroups("st-r12") == []


def test_a_crash_does_not_wait_for_the_other_processes(hostd, make_spec):
    """Outside a stop the dyno ends with its main process: what it leaves is killed at once."""
    cmd = "sleep 1000 & echo bg=$!; sleep 0.2; exit 3"
    with hostd.client() as c:
        d = c.start(make_spec("st-crash", command=cmd))
        d = c.wait_state("st-crash", (pb.DYNO_STATE_CRASHED,), timeout=30)
        assert d.exit.exited and d.exit.code == 3, d.exit
        assert hostd.find_cgroups("st-crash") == []


def test_a_stop_after_the_main_process_left_a_child(hostd, make_spec, slug):
    """The main process is gone and its child, reparented to the init, keeps running: still one
    dyno, which a stop ends gracefully."""
    with hostd.client() as c:
        d = c.start(make_spec("st-orphan", slug_path=slug, command="(bin/graceful &); sleep 1000"))
        wait_log(c, "st-orphan", "ready")
        kids = children(d.pid)
        # The subshell that started the app has gone; the app is the init's child now.
        assert any(cmdline(k)[-1:] == ["bin/graceful"] for k in kids), [cmdline(k) for k in kids]
        down = c.stop("st-orphan", grace=20)
        assert "cleanup done" in app_lines(c, "st-orphan")
        assert down.exit.signal == 15, down.exit
        assert not any(pid_alive(k) for k in kids)
