"""hostctl, the operator's command line, against a real hostd: what an operator types and reads."""

import json
import os
import subprocess
import time

import pytest

from conftest import BUILD_DIR
from hostd_client import pb

# not the cgroup v2 tier: hostctl's output and exit statuses
pytestmark = pytest.mark.cgroup_independent

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")


def hostctl(hostd, *args, input=None, socket=None):
    return subprocess.run(
        [HOSTCTL, "--socket", socket or hostd.socket_path, *args],
        capture_output=True, text=True, input=input, timeout=60,
    )


def test_start_from_flags_then_ps_inspect_logs_stop(hostd, rootfs):
    r = hostctl(hostd, "start", "--id", "ctl-1", "--name", "worker.1", "--type", "worker",
                "--stack", rootfs.stack, "--slug", rootfs.slug, "--env", "GREETING=hi",
                "--", 'echo "$GREETING from $DYNO"; exec sleep 1000')
    assert r.returncode == 0, r.stderr
    assert "ctl-1" in r.stdout and "up" in r.stdout

    ps = hostctl(hostd, "ps")
    assert ps.returncode == 0
    header, *rows = ps.stdout.splitlines()
    assert header.split()[:5] == ["ID", "NAME", "TYPE", "SIZE", "STATE"]
    row = next(l for l in rows if l.startswith("ctl-1"))
    assert row.split()[1:5] == ["worker.1", "worker", "standard-1x", "up"]

    js = json.loads(hostctl(hostd, "--json", "inspect", "ctl-1").stdout)
    assert js["spec"]["id"] == "ctl-1" and js["state"] == "up"
    assert js["memory_limit"] == 536870912 and js["pid"] > 0

    logs = ""
    for _ in range(100):
        logs = hostctl(hostd, "logs", "ctl-1").stdout
        if "hi from worker.1" in logs:
            break
        time.sleep(0.05)
    assert "app[worker.1]: hi from worker.1" in logs, logs

    stop = hostctl(hostd, "stop", "ctl-1", "--grace", "2")
    assert stop.returncode == 0, stop.stderr
    assert "down" in stop.stdout
    with hostd.client() as c:
        assert c.get("ctl-1").state == pb.DYNO_STATE_DOWN


def test_start_from_a_json_spec_with_flags_overriding(hostd, rootfs, tmp_path):
    spec = {
        "id": "ctl-spec",
        "type": "worker",
        "size": "standard-2x",
        "command": "exec sleep 1000",
        "stack_path": rootfs.stack,
        "slug_path": rootfs.slug,
        "env": {"A": "1"},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    r = hostctl(hostd, "--json", "start", "--spec", str(path), "--name", "worker.7")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["spec"]["name"] == "worker.7" and d["spec"]["size"] == "standard-2x"
    assert d["memory_limit"] == 1 << 30
    # The same spec from standard input, once more: the id exists.
    again = hostctl(hostd, "start", "--spec", "-", input=json.dumps(spec))
    assert again.returncode == 1
    assert "ALREADY_EXISTS" in again.stderr
    assert hostctl(hostd, "stop", "ctl-spec", "--grace", "1").returncode == 0


def test_errors_have_the_documented_exit_status(hostd, tmp_path):
    # 1: hostd said no, and hostctl says what hostd said.
    r = hostctl(hostd, "stop", "no-such-dyno")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr and "no-such-dyno" in r.stderr
    # 2: usage, before anything is sent.
    r = hostctl(hostd, "start", "--port", "70000", "--id", "x")
    assert r.returncode == 2 and "--port" in r.stderr
    r = hostctl(hostd, "start", "--id", "x", "--env", "NOEQUALS")
    assert r.returncode == 2 and "--env" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x", "colour": "red"}')
    r = hostctl(hostd, "start", "--spec", str(bad))
    assert r.returncode == 2 and "colour" in r.stderr
    r = hostctl(hostd, "frobnicate")
    assert r.returncode == 2
    # 3: nobody there.
    r = hostctl(hostd, "ps", socket=str(tmp_path / "nothing.sock"))
    assert r.returncode == 3 and "nothing.sock" in r.stderr
    # None of it started a dyno.
    with hostd.client() as c:
        assert c.list() == []


def test_help_tells_each_command(hostd):
    r = hostctl(hostd, "--help")
    assert r.returncode == 0
    for cmd in ("ps", "inspect", "start", "stop", "logs"):
        assert cmd in r.stdout
        sub = hostctl(hostd, cmd, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"Usage: hostctl {cmd}"), sub.stdout


def test_start_with_the_dyno_metadata_and_inspect_it(hostd, rootfs):
    r = hostctl(hostd, "start", "--id", "ctl-meta", "--app", "shop", "--release", "v7",
                "--app-id", "app-123", "--slug-commit", "abc123", "--slug-description",
                "Deploy abc123", "--release-created-at", "2026-12-07T19:00:00Z",
                "--stack", rootfs.stack, "--slug", rootfs.slug,
                "--", 'env | grep ^HEROKU_ | sort; exec sleep 1000')
    assert r.returncode == 0, r.stderr
    out = hostctl(hostd, "inspect", "ctl-meta").stdout
    fields = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["release"] == "v7" and fields["app_id"] == "app-123", out
    assert fields["slug_commit"] == "abc123" and fields["slug_description"] == "Deploy abc123"
    assert fields["release_created_at"] == "2026-12-07T19:00:00Z"
    assert fields["oom_kills"] == "0"
    run_id = fields["run_id"]
    assert len(run_id) == 36, out
    deadline = time.monotonic() + 20
    while f"HEROKU_DYNO_ID={run_id}" not in hostctl(hostd, "logs", "ctl-meta").stdout:
        assert time.monotonic() < deadline, hostctl(hostd, "logs", "ctl-meta").stdout
        time.sleep(0.1)
    logs = hostctl(hostd, "logs", "ctl-meta").stdout
    for want in ("HEROKU_APP_ID=app-123", "HEROKU_APP_NAME=shop", "HEROKU_RELEASE_VERSION=v7",
                 "HEROKU_SLUG_COMMIT=abc123", "HEROKU_SLUG_DESCRIPTION=Deploy abc123",
                 "HEROKU_RELEASE_CREATED_AT=2026-12-07T19:00:00Z"):
        assert want in logs, logs
    r = hostctl(hostd, "start", "--id", "ctl-meta2", "--release-created-at", "today",
                "--stack", rootfs.stack, "--", "true")
    assert r.returncode != 0 and "spec.release_created_at" in r.stderr, r.stderr
    hostctl(hostd, "stop", "--grace", "1", "ctl-meta")
