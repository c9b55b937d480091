"""Inside a dyno: an unprivileged user with no capabilities, no_new_privs and a seccomp
filter, its own PID, UTS and network namespaces, Heroku's environment, and a throw-away
writable layer over a stack and a slug that stay untouched.

Each test runs a small shell script in a dyno, which prints what it finds as log lines and
then a marker; the test reads the dyno's log through the API, as a user would.
"""

import os
import re
import shutil
import time

import pytest

from dynoutil import (
    app_lines,
    diff_trees,
    dyno_file,
    keyed,
    run_probe,
    tree_state,
    wait_gone,
)
from hostd_client import Code, pb

# not the cgroup v2 tier: namespaces, uid, capabilities, seccomp, the overlay layer
pytestmark = pytest.mark.cgroup_independent

DONE = "PROBE-DONE"


def probe(script):
    """A command that runs script, prints the marker and stays up."""
    return f"{script}\necho {DONE}\nexec sleep 1000"


def stop(c, dyno_id):
    d = c.stop(dyno_id, grace=1)
    assert d.state == pb.DYNO_STATE_DOWN, pb.DynoState.Name(d.state)
    return d


# -- credentials ----------------------------------------------------------------------------------


def test_the_dyno_init_keeps_only_cap_kill(hostd, make_spec):
    """The init runs as root in the dyno's namespaces: all it may do is relay signals."""
    with hostd.client() as c:
        dyno = c.start(make_spec("iso-init-caps"))
        with open(f"/proc/{dyno.pid}/status") as f:
            kv = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        cap_kill = 1 << 5
        for cap in ("CapPrm", "CapEff", "CapBnd"):
            assert int(kv[cap], 16) == cap_kill, f"init {cap} is {kv[cap]}, want CAP_KILL only"
        assert int(kv["CapInh"], 16) == 0 and int(kv["CapAmb"], 16) == 0
        assert kv["NoNewPrivs"].strip() == "1"
        # It still does its job: the stop's SIGTERM reaches the command.
        down = stop(c, "iso-init-caps")
        assert down.exit.signal == 15, down.exit


def test_runs_as_the_unprivileged_uid_hostd_reports(hostd, make_spec):
    with hostd.client() as c:
        dyno, lines = run_probe(c, make_spec("iso-uid", command=probe("echo uid=$(id -u)\necho gid=$(id -g)")))
        kv = keyed(lines)
        assert dyno.uid != 0
        assert kv["uid"] == str(dyno.uid), f"uid inside {kv['uid']}, Dyno.uid {dyno.uid}"
        assert kv["gid"] == str(dyno.uid), f"gid inside {kv['gid']}, want the uid {dyno.uid}"
        # The host agrees: the command's process belongs to that uid.
        with open(f"/proc/{dyno.pid}/task/{dyno.pid}/children") as f:
            children = [int(x) for x in f.read().split()]
        assert children, "the init has no child: where is the command?"
        with open(f"/proc/{children[0]}/status") as f:
            uids = [l.split()[1:] for l in f if l.startswith(("Uid:", "Gid:"))]
        assert uids == [[str(dyno.uid)] * 4] * 2, f"host view of the command's ids: {uids}"
        stop(c, "iso-uid")


def test_no_capabilities_no_new_privs_seccomp(hostd, make_spec):
    script = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t' | sed 's/:/=/'"
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("iso-caps", command=probe(script)))
        kv = keyed(lines)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert cap in kv, f"{cap} missing from /proc/self/status: {lines}"
            assert int(kv[cap], 16) == 0, f"{cap} is {kv[cap]}"
        assert kv.get("NoNewPrivs") == "1", lines
        assert kv.get("Seccomp") == "2", lines
        stop(c, "iso-caps")


def test_mount_fails(hostd, make_spec):
    script = (
        "before=$(wc -l < /proc/self/mountinfo)\n"
        "mount -t tmpfs x /tmp 2>&1; echo mount_rc=$?\n"
        "mount -o remount,rw / 2>&1; echo remount_rc=$?\n"
        "umount /proc 2>&1; echo umount_rc=$?\n"
        "echo before=$before\n"
        "echo after=$(wc -l < /proc/self/mountinfo)\n"
        "touch /tmp/still-the-overlay && echo tmp_file=yes"
    )
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("iso-mount", command=probe(script)))
        kv = keyed(lines)
        assert kv["mount_rc"] != "0", f"mount -t tmpfs succeeded: {lines}"
        assert kv["remount_rc"] != "0", f"remount of / succeeded: {lines}"
        assert kv["umount_rc"] != "0", f"umount /proc succeeded: {lines}"
        assert kv["before"] == kv["after"], f"the mount table changed: {lines}"
        assert kv.get("tmp_file") == "yes"
        stop(c, "iso-mount")


def test_unshare_and_setns_fail(hostd, make_spec):
    script = (
        "unshare -U true 2>&1; echo userns_rc=$?\n"
        "unshare -m true 2>&1; echo mntns_rc=$?\n"
        "unshare -n true 2>&1; echo netns_rc=$?\n"
        "nsenter -t 1 -m true 2>&1; echo setns_rc=$?\n"
        "chroot / true 2>&1; echo chroot_rc=$?"
    )
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("iso-unshare", command=probe(script)))
        kv = keyed(lines)
        for k in ("userns_rc", "mntns_rc", "netns_rc", "setns_rc", "chroot_rc"):
            assert kv[k] != "0", f"{k.split('_')[0]} succeeded inside the dyno: {lines}"
        stop(c, "iso-unshare")


# -- namespaces -----------------------------------------------------------------------------------


def test_no_host_process_visible_init_is_pid_1(hostd, make_spec):
    script = (
        "for p in /proc/[0-9]*; do echo \"proc ${p#/proc/} $(cat $p/comm)\"; done\n"
        "echo one=$(cat /proc/1/comm)"
    )
    with hostd.client() as c:
        dyno, lines = run_probe(c, make_spec("iso-pids", command=probe(script)))
        procs = {int(l.split()[1]): l.split(" ", 2)[2] for l in lines if l.startswith("proc ")}
        assert keyed(lines)["one"] == "hostd-init", f"pid 1 is {keyed(lines)['one']!r}"
        assert procs.get(1) == "hostd-init"
        # Only the init, the command's shell and the probe's own children.
        assert len(procs) <= 5, f"the dyno sees {len(procs)} processes: {procs}"
        assert set(procs.values()) <= {"hostd-init", "sh", "cat", "busybox"}, procs
        assert max(procs) < 100, f"host-sized pids visible: {procs}"
        host_pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        assert len(host_pids) > len(procs) + 5  # the host has more to hide
        assert dyno.pid in hostd.dyno_procs()
        stop(c, "iso-pids")


def test_hostname_is_the_dyno_id(hostd, make_spec):
    script = "echo hostname=$(hostname)\necho uts=$(cat /proc/sys/kernel/hostname)"
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("iso-host.1", command=probe(script)))
        kv = keyed(lines)
        assert kv["hostname"] == "iso-host.1"
        assert kv["uts"] == "iso-host.1"
        with open("/proc/sys/kernel/hostname") as f:
            assert f.read().strip() != "iso-host.1", "the host's own hostname changed"
        stop(c, "iso-host.1")


def test_network_only_loopback(hostd, make_spec):
    script = (
        "echo sys=$(ls /sys/class/net | tr '\\n' ' ')\n"
        "echo dev=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\n"
        "echo lo=$(ip -o link show lo | sed 's/.*<\\(.*\\)>.*/\\1/')"
    )
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("iso-net", command=probe(script)))
        kv = keyed(lines)
        assert kv["dev"].split() == ["lo"], f"/proc/net/dev lists {kv['dev']!r}"
        assert kv["sys"].split() == ["lo"], f"/sys/class/net lists {kv['sys']!r}"
        assert "UP" in kv["lo"].split(","), f"lo is not up: flags {kv['lo']!r}"
        stop(c, "iso-net")


def test_two_running_dynos_have_different_uids(hostd, make_spec):
    with hostd.client() as c:
        d1, l1 = run_probe(c, make_spec("iso-two-a", command=probe("echo uid=$(id -u)")))
        d2, l2 = run_probe(c, make_spec("iso-two-b", command=probe("echo uid=$(id -u)")))
        u1, u2 = keyed(l1)["uid"], keyed(l2)["uid"]
        assert u1 != u2, f"both dynos run as uid {u1}"
        assert {d1.uid, d2.uid} == {int(u1), int(u2)}
        assert 0 not in (d1.uid, d2.uid)
        stop(c, "iso-two-a")
        stop(c, "iso-two-b")


# -- environment ----------------------------------------------------------------------------------


def test_heroku_environment_and_working_directory(hostd, make_spec):
    script = (
        "echo PORT=$PORT\necho DYNO=$DYNO\necho HOME=$HOME\necho HEROKU_DYNO_ID=$HEROKU_DYNO_ID\n"
        "echo MY_VAR=$MY_VAR\necho URLISH=$URLISH\necho cwd=$(pwd)"
    )
    spec = make_spec(
        "iso-env",
        name="web.1",
        type=pb.DYNO_TYPE_WEB,
        port=5123,
        command=probe(script),
        env={"MY_VAR": "hello world", "URLISH": "postgres://u:p@h:5432/d?x=1&y=2"},
    )
    with hostd.client() as c:
        dyno, lines = run_probe(c, spec)
        kv = keyed(lines)
        assert kv["PORT"] == "5123"
        assert kv["DYNO"] == "web.1"
        assert kv["HOME"] == "/app"
        # A UUID for this run of the dyno, which hostd reports too (Heroku's dyno metadata).
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            kv["HEROKU_DYNO_ID"]), kv["HEROKU_DYNO_ID"]
        assert kv["HEROKU_DYNO_ID"] == c.get("iso-env").run_id
        assert kv["MY_VAR"] == "hello world"
        assert kv["URLISH"] == "postgres://u:p@h:5432/d?x=1&y=2"
        assert kv["cwd"] == "/app"
        stop(c, "iso-env")


def test_no_port_without_one_in_the_spec(hostd, make_spec):
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("iso-noport", command=probe('echo "port=${PORT-unset}"')))
        assert keyed(lines)["port"] == "unset"
        stop(c, "iso-noport")


def test_profile_and_profile_d_sourced_in_order(hostd, make_spec, rootfs, tmp_path):
    """As Heroku: /app/.profile.d/*.sh in lexical order (buildpacks' defaults), then
    /app/.profile (the app's own overrides), after the config vars are set, all before the
    command (the sample slug's 10-sample.sh sets SAMPLE_PROFILE=1)."""
    slug = tmp_path / "slug"
    shutil.copytree(rootfs.slug, slug, symlinks=True)
    app = slug / "app"
    (app / ".profile").write_text('ORDER="$ORDER:profile"\n')
    (app / ".profile.d" / "20-b.sh").write_text('ORDER="$ORDER:20"\n')
    (app / ".profile.d" / "05-a.sh").write_text('ORDER="05"\nexport FROM_CONFIG="got-$MY_VAR"\n')
    (app / ".profile.d" / "not-a-script.txt").write_text('ORDER="$ORDER:txt"\n')
    os.chmod(tmp_path, 0o755)
    script = "echo ORDER=$ORDER\necho FROM_CONFIG=$FROM_CONFIG\necho SAMPLE_PROFILE=$SAMPLE_PROFILE"
    spec = make_spec("iso-profile", slug_path=str(slug), env={"MY_VAR": "v1"}, command=probe(script))
    with hostd.client() as c:
        _, lines = run_probe(c, spec)
        kv = keyed(lines)
        assert kv["ORDER"] == "05:20:profile", kv["ORDER"]
        assert kv["FROM_CONFIG"] == "got-v1"
        assert kv["SAMPLE_PROFILE"] == "1"
        stop(c, "iso-profile")


# -- the filesystem -------------------------------------------------------------------------------


WRITE_OUTSIDE_SLUG = (
    "for f in /tmp/x /app/x /var/tmp/x /dev/shm/x; do\n"
    "  if echo written > $f 2>/dev/null; then echo wrote=$f; fi\n"
    "done\n"
    "mkdir -p /tmp/dir/sub && echo deep > /tmp/dir/sub/y && echo wrote=/tmp/dir/sub/y"
)
LOOK = "for f in /tmp/x /app/x /var/tmp/x /dev/shm/x /tmp/dir/sub/y; do [ -e $f ] && echo found=$f; done"


def test_files_written_outside_the_slug_are_gone_after_stop_and_start(hostd, make_spec):
    with hostd.client() as c:
        dyno, lines = run_probe(c, make_spec("iso-fs", command=probe(LOOK + "\n" + WRITE_OUTSIDE_SLUG)))
        wrote = [l.split("=", 1)[1] for l in lines if l.startswith("wrote=")]
        assert not [l for l in lines if l.startswith("found=")], f"files before the first write: {lines}"
        # What a Heroku app writes: its /tmp and its /app (the app's own folder).
        assert "/tmp/x" in wrote and "/tmp/dir/sub/y" in wrote, lines
        assert "/app/x" in wrote, f"the app cannot write into /app: {lines}"
        with open(dyno_file(dyno, "/tmp/x")) as f:
            assert f.read() == "written\n"  # really written, as the host sees it
        stop(c, "iso-fs")
        assert not os.path.exists(os.path.join(hostd.layers_dir, "iso-fs")), "the writable layer survived the stop"

        dyno2, lines2 = run_probe(c, make_spec("iso-fs", command=probe(LOOK)))
        assert dyno2.pid != dyno.pid
        found = [l.split("=", 1)[1] for l in lines2 if l.startswith("found=")]
        assert found == [], f"files from the previous run survived a stop and start: {found}"
        stop(c, "iso-fs")


def test_files_written_are_gone_after_restart(hostd, make_spec):
    with hostd.client() as c:
        dyno, lines = run_probe(c, make_spec("iso-rs", command=probe(LOOK + "\n" + WRITE_OUTSIDE_SLUG)))
        assert "/tmp/x" in [l.split("=", 1)[1] for l in lines if l.startswith("wrote=")]
        resp = c.restart("iso-rs", grace=1, check=False)
        assert resp.status.code == Code.OK, resp.status
        assert wait_gone(dyno.pid), "the first run's init still runs after Restart"
        deadline = time.monotonic() + 20
        while True:
            lines2 = app_lines(c, "iso-rs")
            if lines2.count(DONE) >= 2:
                break
            assert time.monotonic() < deadline, f"the restarted dyno did not run its probe: {lines2}"
            time.sleep(0.05)
        after_first = lines2[lines2.index(DONE) + 1 :]
        found = [l for l in after_first if l.startswith("found=")]
        assert found == [], f"files from before the restart survived it: {found}"
        again = c.get("iso-rs")
        assert again.state == pb.DYNO_STATE_UP and again.pid != dyno.pid
        stop(c, "iso-rs")


def test_stack_and_slug_on_the_host_unchanged(hostd, make_spec, rootfs, tmp_path):
    """A dyno that writes, deletes, renames and chmods everything it can leaves the stack and
    the slug folders on the host exactly as they were (names, modes, owners, sizes, mtimes)."""
    # Private copies, so that no other test's dyno can touch them meanwhile.
    stack, slug = tmp_path / "stack", tmp_path / "slug"
    shutil.copytree(rootfs.stack, stack, symlinks=True)
    shutil.copytree(rootfs.slug, slug, symlinks=True)
    os.chmod(tmp_path, 0o755)
    before_stack, before_slug = tree_state(stack), tree_state(slug)
    vandal = (
        "for d in $(find / -xdev -type d 2>/dev/null); do\n"
        "  touch $d/.vandal 2>/dev/null && echo created=$d/.vandal\n"
        "done\n"
        "for f in $(find / -xdev -type f 2>/dev/null); do\n"
        "  echo junk >> $f 2>/dev/null && echo appended=$f\n"
        "  chmod 777 $f 2>/dev/null\n"
        "  touch -d '2001-01-01 00:00' $f 2>/dev/null\n"
        "done\n"
        "rm -f /app/Procfile /app/bin/web 2>/dev/null\n"
        "mv /app/.profile.d /app/moved 2>/dev/null\n"
        "rm -rf /tmp /var/tmp 2>/dev/null\n"
        "ln -s /etc/passwd /app/link 2>/dev/null\n"
        "echo vandal done"
    )
    spec = make_spec("iso-vandal", stack_path=str(stack), slug_path=str(slug), command=probe(vandal))
    with hostd.client() as c:
        dyno, lines = run_probe(c, spec, timeout=60)
        assert "vandal done" in lines
        assert any(l.startswith("created=") for l in lines), f"the dyno could write nowhere: {lines[-20:]}"
        # While it runs, and after it stopped.
        assert diff_trees(before_stack, tree_state(stack)) == []
        assert diff_trees(before_slug, tree_state(slug)) == []
        stop(c, "iso-vandal")
    assert diff_trees(before_stack, tree_state(stack)) == []
    assert diff_trees(before_slug, tree_state(slug)) == []
