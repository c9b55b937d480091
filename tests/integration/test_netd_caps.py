"""netd under the capabilities netd.service leaves it (CapabilityBoundingSet=, read from
systemd/netd.service.in): attach, detach, traffic through NAT and the port mapping, isolation
and the egress qdisc all work with them; and each of them is needed: without CAP_SYS_ADMIN
netd cannot enter a dyno's network namespace, without CAP_NET_ADMIN it cannot start.

netd runs through setpriv with that bounding set (as systemd does for the unit: a root process
whose bounding set holds only these gets only these), in test_netd.py's private "host"
namespaces, whose tests are run again here.

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_netd_caps.py
"""

import os
import re
import shutil
import stat

import pytest

import test_netd as tn
from conftest import SOURCE_DIR

SETPRIV = shutil.which("setpriv")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is missing"),
    # not the cgroup v2 tier: netd's capabilities do not depend on the cgroup version
    pytest.mark.cgroup_independent,
]


def unit_capabilities():
    with open(os.path.join(SOURCE_DIR, "systemd", "netd.service.in")) as f:
        m = re.search(r"^CapabilityBoundingSet=(.*)$", f.read(), re.M)
    assert m, "netd.service.in has no CapabilityBoundingSet="
    caps = m.group(1).split()
    assert caps and all(re.fullmatch(r"CAP_[A-Z_]+", c) for c in caps), caps
    return [c[len("CAP_"):].lower() for c in caps]


@pytest.fixture
def netd_with(tmp_path, monkeypatch):
    """netd_with(caps) -> a test_netd Lab whose netd runs with only caps in its bounding set."""
    labs = []

    def make(caps):
        wrapper = tmp_path / f"netd-{'-'.join(caps) or 'none'}"
        bounding = ",".join(["-all"] + [f"+{c}" for c in caps])
        wrapper.write_text(f'#!/bin/sh\nexec {SETPRIV} --bounding-set {bounding} '
                           f'--inh-caps -all -- {tn.NETD_BIN} "$@"\n')
        wrapper.chmod(stat.S_IRWXU)
        monkeypatch.setattr(tn, "NETD_BIN", str(wrapper))
        lab = tn.Lab()
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.cleanup()


def test_the_unit_names_net_admin_and_sys_admin_only():
    assert sorted(unit_capabilities()) == ["net_admin", "sys_admin"]


def test_attach_detach_with_the_units_capabilities(netd_with):
    tn.test_attach_detach_idempotent(netd_with(unit_capabilities()))


def test_traffic_and_isolation_with_the_units_capabilities(netd_with):
    tn.test_traffic(netd_with(unit_capabilities()))


def test_egress_rate_with_the_units_capabilities(netd_with):
    tn.test_egress_rate(netd_with(unit_capabilities()))


def test_without_sys_admin_netd_cannot_enter_a_dynos_namespace(netd_with):
    lab = netd_with([c for c in unit_capabilities() if c != "sys_admin"])
    c = lab.start_netd()
    lab.make_dyno("web.1")
    r = tn.attach(c, "web.1", lab, web=True, port=5000)
    assert r.status.code == 13 and "Operation not permitted" in r.status.message, r  # INTERNAL
    assert lab.dyno_veths() == []  # and the failed attach left nothing
    c.close()


def test_without_net_admin_netd_does_not_start(netd_with):
    lab = netd_with([c for c in unit_capabilities() if c != "net_admin"])
    with pytest.raises(AssertionError, match="Operation not permitted"):
        lab.start_netd()
