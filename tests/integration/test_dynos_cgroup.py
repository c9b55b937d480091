"""dynos-cgroup: the dynos live below a cgroup outside hostd's own (in production
hostd-dynos.service's), which hostd checks at start: a bad one stops hostd with a message that
names the setting; a good one gets the dynos, which a new hostd re-adopts there.

The test makes that cgroup itself, hostd-test-<pid>-dynos-<n>, beside the test's hostd roots
under the test's own cgroup (in the unified hierarchy on v2, in the memory hierarchy on v1,
where hostd requires it; other v1 hierarchies keep hostd's own cgroup), and removes it after.
"""

import itertools
import os
import subprocess

import pytest

from conftest import HOSTD_BIN, kill_in_cgroups, own_cgroup_dirs, remove_cgroup_tree
from dynoutil import pid_alive, wait_gone, wait_log
from hostd_client import pb

# the cgroup v2 tier runs it: dynos-cgroup: checked and used differently on v1 and v2
pytestmark = pytest.mark.cgroup

_n = itertools.count()
V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _primary_own():
    """(folder, path in the hierarchy) of this process's cgroup where hostd needs dynos-cgroup:
    the unified hierarchy on v2, the memory hierarchy on v1."""
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    if V2:
        path = next(p for hid, _c, p in lines if hid == "0")
        folder = "/sys/fs/cgroup" + (path if path != "/" else "")
    else:
        path = next(p for _h, c, p in lines if "memory" in c.split(","))
        folder = "/sys/fs/cgroup/memory" + (path if path != "/" else "")
    assert os.path.isdir(folder), folder
    assert folder in own_cgroup_dirs(), (folder, own_cgroup_dirs())
    return folder, path


@pytest.fixture
def dynos_parent():
    """A fresh cgroup below the test's own, for dynos-cgroup: its path in the hierarchy.
    Requested before hostd_factory, so that it is removed after the hostds are gone."""
    folder, path = _primary_own()
    name = f"hostd-test-{os.getpid()}-dynos-{next(_n)}"
    top = os.path.join(folder, name)
    os.mkdir(top)
    try:
        if V2:
            with open(os.path.join(top, "cgroup.controllers")) as f:
                have = set(f.read().split())
            if not {"memory", "cpu", "pids"} <= have:
                pytest.skip(f"the test's cgroup hands down {sorted(have)}, not memory, cpu and pids")
        yield top, (path.rstrip("/") + "/" + name)
    finally:
        kill_in_cgroups([top])
        left = remove_cgroup_tree(top)
        assert not left, f"cannot remove {left}"


def _start_fails(hostd_factory, value):
    """Start hostd with dynos-cgroup = value; it must exit non-zero. Its log."""
    h = hostd_factory(start=False, dynos_cgroup=value)
    h._write_config()
    p = subprocess.run([HOSTD_BIN, "--config", h.config_path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, f"hostd started with dynos-cgroup = {value!r}"
    return p.stdout + p.stderr


@pytest.mark.parametrize("value", ["relative/path", "/a/../b", "/a//b", "/"])
def test_malformed_dynos_cgroup_is_refused_naming_the_setting(hostd_factory, value):
    out = _start_fails(hostd_factory, value)
    assert "dynos-cgroup" in out, out


def test_missing_dynos_cgroup_is_refused(hostd_factory):
    _folder, path = _primary_own()
    missing = path.rstrip("/") + f"/hostd-test-{os.getpid()}-missing"
    out = _start_fails(hostd_factory, missing)
    assert f"dynos-cgroup {missing}: no such cgroup" in out, out


def test_own_cgroup_or_ancestor_is_refused(hostd_factory):
    _folder, path = _primary_own()
    if path == "/":
        pytest.skip("the test runs in the root cgroup, which has no ancestor to name")
    out = _start_fails(hostd_factory, path)
    assert f"dynos-cgroup {path}: is hostd's own cgroup or one of its ancestors" in out, out
    parent = os.path.dirname(path)
    if parent != "/":
        out = _start_fails(hostd_factory, parent)
        assert "is hostd's own cgroup or one of its ancestors" in out, out


def _cgroup_of(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    if V2:
        return next(p for hid, _c, p in lines if hid == "0")
    return next(p for _h, c, p in lines if "memory" in c.split(","))


def test_dynos_live_below_dynos_cgroup_and_are_readopted(dynos_parent, hostd_factory, make_spec):
    top, rel = dynos_parent
    hostd = hostd_factory(dynos_cgroup=rel)
    own_before = _cgroup_of(hostd.pid)
    with hostd.client() as c:
        d = c.start(make_spec("dc-a", command="echo ready; while :; do sleep 0.1; done"))
        wait_log(c, "dc-a", "ready")
    want = f"{rel}/{hostd.cgroup_root}/dynos/"
    assert _cgroup_of(d.pid).startswith(want), (_cgroup_of(d.pid), want)
    assert os.path.isdir(os.path.join(top, hostd.cgroup_root, "dynos"))
    # hostd itself stays where it was started and, on v2, hands nothing down from there.
    assert _cgroup_of(hostd.pid) == own_before
    if V2:
        with open(f"/sys/fs/cgroup{own_before if own_before != '/' else ''}/cgroup.procs") as f:
            assert str(hostd.pid) in f.read().split()

    hostd.kill9()
    assert pid_alive(d.pid), "the dyno died with hostd"
    hostd.restart()
    with hostd.client() as c:
        listed = {x.spec.id: x for x in c.list()}
        assert "dc-a" in listed and listed["dc-a"].state == pb.DYNO_STATE_UP, listed
        assert listed["dc-a"].pid == d.pid
        down = c.stop("dc-a", grace=1)
        assert down.state == pb.DYNO_STATE_DOWN, pb.DynoState.Name(down.state)
    assert wait_gone(d.pid, 5)
    dynos = os.path.join(top, hostd.cgroup_root, "dynos")
    left = [e for e in os.listdir(dynos) if os.path.isdir(os.path.join(dynos, e))]
    assert left == [], f"dyno cgroups left in {dynos}: {left}"
