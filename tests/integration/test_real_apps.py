"""Real apps on a real stack: what a Heroku user expects of a Node.js app on express (`npm
start`), a Python app under gunicorn and a Ruby app under puma, on a Debian 12 stack, each a
web dyno of a small size (256M, no swap). The images and fixtures are in realapps.py; the
apps' code is in tests/apps/.

Each test is run for each app (in the qemu tier's guest, for one: see realapps.APPS). A test
that depends on several behaviours gathers what it saw into one dict and compares it with
what a user expects, so a failure shows every difference at once.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_real_apps.py
"""

import os
import time

import pytest

from dynoutil import (app_lines, dyno_cgroup_procs, overlay_mounts_naming, pid_alive,
                      platform_lines, wait_gone)
from hostd_client import Code, code_name, pb
from realapps import (APPS, QUOTA, Request, boot, events_of, get, real_hostd,  # noqa: F401
                      real_images, wait_app_line, web_spec)

# the host only, but for what reads the dyno's cgroup (marked cgroup): its limit, its OOM kills
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup_independent]

GRACE = 30  # Heroku's; every stop here gives it, and checks it was not needed
SHELLS = ("sh", "dash", "bash")
HOOK = "shutdown hook ran"
R15 = "Error R15 (Memory quota vastly exceeded)"
# The request in flight across a restart: longer than the new instance takes to boot, also on
# a loaded machine, and in the qemu tier's guest, where a boot takes seconds.
RESTART_SLOW_MS = 20000 if os.environ.get("HOSTD_V2_GUEST") == "1" else 12000


@pytest.fixture(params=APPS)
def app(request):
    return request.param


def log_tail(c, dyno_id, n=40):
    return "\n".join(c.log_texts(dyno_id)[-n:])


def settle(look, want, timeout=20.0):
    """look() until it returns want or timeout passes; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        got = look()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def init_children(pid):
    """The comm of each child of the dyno's init: its main process."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                try:
                    with open(f"/proc/{child}/comm") as g:
                        out.append(g.read().strip())
                except FileNotFoundError:
                    pass
    return out


def started_slow(c, dyno_id, ms):
    assert wait_app_line(c, dyno_id, lambda l: l == f"slow request started ({ms} ms)"), (
        f"the slow request did not reach the app:\n{log_tail(c, dyno_id)}")


def test_boots_on_port_and_answers(real_hostd, real_images, app):
    c = real_hostd.client()
    spec = web_spec(real_images, app, f"{app}-boot")
    d = boot(c, spec)
    assert get(d.pid, "/") == (200, "ok"), log_tail(c, spec.id)
    lines = platform_lines(c, spec.id)
    assert f"Starting process with command `{spec.command}`" in lines, lines
    assert "State changed from starting to up" in lines, lines
    c.stop(spec.id, grace=GRACE)


def test_stop_finishes_the_request_in_flight_then_the_shutdown_hook(real_hostd, real_images,
                                                                     app):
    c = real_hostd.client()
    dyno_id = f"{app}-stop"
    d = boot(c, web_spec(real_images, app, dyno_id))
    # The Procfile's command is a simple one: it replaced the shell, so SIGTERM reaches it.
    main = init_children(d.pid)
    slow = Request(d.pid, "/slow?ms=3000")
    started_slow(c, dyno_id, 3000)
    t0 = time.monotonic()
    down = c.stop(dyno_id, grace=GRACE, timeout=GRACE + 30)
    took = time.monotonic() - t0
    got = {
        "the main process": "a shell" if set(main) & set(SHELLS) else "the app",
        "answer to the request in flight": slow.result(),
        "shutdown hook in the log": HOOK in app_lines(c, dyno_id),
        "exit": (pb.DynoState.Name(down.state), down.exit.exited, down.exit.code, down.exit.error),
        "'Process exited with status 0' in the log":
            "Process exited with status 0" in platform_lines(c, dyno_id),
        # The app needed 3 s, not the grace (a bound that holds on a loaded machine).
        f"stopped well before the {GRACE} s grace": took < GRACE - 5,
    }
    want = {
        "the main process": "the app",
        "answer to the request in flight": (200, "slow request completed after 3000 ms"),
        "shutdown hook in the log": True,
        "exit": ("DYNO_STATE_DOWN", True, 0, ""),
        "'Process exited with status 0' in the log": True,
        f"stopped well before the {GRACE} s grace": True,
    }
    assert got == want, (f"the init's children: {main}; the stop took {took:.1f} s; "
                         f"the dyno's log:\n{log_tail(c, dyno_id)}")


@pytest.mark.cgroup
def test_an_oom_killed_child_is_reported_and_the_app_stays_up(real_hostd, real_images, app):
    c = real_hostd.client()
    dyno_id = f"{app}-oom"
    d = boot(c, web_spec(real_images, app, dyno_id))
    status, body = get(d.pid, "/oom")
    assert status == 202, (status, body)
    # The app's own view: its child was killed (by the kernel: nobody else sends SIGKILL).
    end = wait_app_line(c, dyno_id, lambda l: l.startswith("oom child") and " ended: " in l,
                        timeout=60)
    assert end and end.endswith("killed by SIGKILL"), f"{end!r}\n{log_tail(c, dyno_id)}"

    def look():
        dyno = c.get(dyno_id)
        lines = platform_lines(c, dyno_id)
        oom_kills = getattr(dyno, "oom_kills", None)  # hostd.proto: the kernel's count
        return {
            "R15 in the log": R15 in lines,
            "'Process running mem=' in the log":
                any(l.startswith("Process running mem=") for l in lines),
            "an event tells the OOM kill":
                any("R15" in e.message or "oom" in e.message.lower()
                    for e in events_of(c, dyno_id)),
            "Dyno.oom_kills":
                "no such field" if oom_kills is None else ">= 1" if oom_kills >= 1 else oom_kills,
            "state": pb.DynoState.Name(dyno.state),
            "same instance": dyno.pid == d.pid,
            "GET /": get(dyno.pid, "/") if dyno.pid else "no process",
        }

    want = {
        "R15 in the log": True,
        "'Process running mem=' in the log": True,
        "an event tells the OOM kill": True,
        "Dyno.oom_kills": ">= 1",
        "state": "DYNO_STATE_UP",
        "same instance": True,
        "GET /": (200, "ok"),
    }
    got = settle(look, want)
    assert got == want, f"the dyno's log:\n{log_tail(c, dyno_id)}"
    c.stop(dyno_id, grace=GRACE)


@pytest.mark.cgroup
def test_the_app_reads_its_memory_limit_from_its_cgroup(real_hostd, real_images, app):
    c = real_hostd.client()
    dyno_id = f"{app}-limit"
    d = boot(c, web_spec(real_images, app, dyno_id))
    assert d.memory_limit == QUOTA
    assert get(d.pid, "/limit") == (200, str(QUOTA)), log_tail(c, dyno_id)
    c.stop(dyno_id, grace=GRACE)


def test_the_user_has_a_name(real_hostd, real_images, app):
    c = real_hostd.client()
    dyno_id = f"{app}-whoami"
    d = boot(c, web_spec(real_images, app, dyno_id))
    assert get(d.pid, "/whoami") == (200, f"u{d.uid}"), log_tail(c, dyno_id)
    c.stop(dyno_id, grace=GRACE)


def test_profile_d_then_profile(real_hostd, real_images, app):
    """.profile.d/web-concurrency.sh sets MEMORY_AVAILABLE from the cgroup's limit and
    WEB_CONCURRENCY from it (2 for 256M); .profile, sourced after, sets WEB_CONCURRENCY=1."""
    c = real_hostd.client()
    dyno_id = f"{app}-profile"
    d = boot(c, web_spec(real_images, app, dyno_id))
    got = {n: get(d.pid, f"/env?name={n}") for n in ("MEMORY_AVAILABLE", "WEB_CONCURRENCY")}
    want = {"MEMORY_AVAILABLE": (200, str(QUOTA >> 20)), "WEB_CONCURRENCY": (200, "1")}
    assert got == want, log_tail(c, dyno_id)
    c.stop(dyno_id, grace=GRACE)


def test_restart_starts_the_new_instance_while_the_old_one_finishes(real_hostd, real_images,
                                                                    app):
    c = real_hostd.client()
    dyno_id = f"{app}-restart"
    old = boot(c, web_spec(real_images, app, dyno_id))
    slow = Request(old.pid, f"/slow?ms={RESTART_SLOW_MS}")
    started_slow(c, dyno_id, RESTART_SLOW_MS)
    c2 = real_hostd.client(timeout=GRACE + 60)
    pending = c2.call_async("Restart", pb.RestartRequest(id=dyno_id, grace_seconds=GRACE),
                            timeout=GRACE + 60)

    # The new instance: up and answering while the old one still serves its request.
    overlap = "no new instance up before the request in flight ended"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not slow.done():
        cur = c.get(dyno_id)
        if cur.state == pb.DYNO_STATE_UP and cur.pid and cur.pid != old.pid:
            answer = get(cur.pid, "/")
            overlap = {"new instance answers": answer, "old instance runs": pid_alive(old.pid),
                       "request still in flight": not slow.done()}
            break
        time.sleep(0.1)
    reply = pending.reply()
    answer = slow.result()
    wait_app_line(c, dyno_id, lambda l: l == HOOK, timeout=20)
    # The hook is the app's last word; hostd's line about its end follows once the old
    # instance's processes have all gone.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            l.startswith("Process exited with status") for l in platform_lines(c, dyno_id)):
        time.sleep(0.1)
    got = {
        "overlap": overlap,
        "restart reply": code_name(reply.status.code),
        "answer to the request in flight": answer,
        "old instance's shutdown hook in the log": HOOK in app_lines(c, dyno_id),
        "'Process exited with status 0' in the log":
            "Process exited with status 0" in platform_lines(c, dyno_id),
        "state": pb.DynoState.Name(c.get(dyno_id).state),
    }
    want = {
        "overlap": {"new instance answers": (200, "ok"), "old instance runs": True,
                    "request still in flight": True},
        "restart reply": "OK",
        "answer to the request in flight":
            (200, f"slow request completed after {RESTART_SLOW_MS} ms"),
        "old instance's shutdown hook in the log": True,
        "'Process exited with status 0' in the log": True,
        "state": "DYNO_STATE_UP",
    }
    assert got == want, f"the dyno's log:\n{log_tail(c, dyno_id, 60)}"
    c.stop(dyno_id, grace=GRACE)


def test_nothing_is_left_after_a_stop(real_hostd, real_images, app):
    h = real_hostd
    c = h.client()
    dyno_id = f"{app}-gone"
    before = h.settled_snapshot()
    d = boot(c, web_spec(real_images, app, dyno_id))
    assert get(d.pid, "/") == (200, "ok")
    pids = dyno_cgroup_procs(h, dyno_id)
    assert d.pid in pids and len(pids) >= 2, pids  # the init and the app's processes
    down = c.stop(dyno_id, grace=GRACE, timeout=GRACE + 30)
    assert down.state == pb.DYNO_STATE_DOWN, down
    left = sorted(p for p in pids if not wait_gone(p, 10))
    assert left == [], f"processes of the dyno still running after its stop: {left}"
    assert h.find_cgroups(dyno_id) == []
    assert not os.path.exists(os.path.join(h.layers_dir, dyno_id))
    assert overlay_mounts_naming(dyno_id) == []
    h.assert_unchanged(before, "the stopped dyno")
