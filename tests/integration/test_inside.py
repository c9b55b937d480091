"""What an app finds inside its dyno, as on Heroku: its own limits at /sys/fs/cgroup (and
nothing else of the host's cgroups), a user with a name, `ulimit -u` that tells the pids limit,
the dyno metadata the spec gives, and the terminal's TERM, COLUMNS and LINES for a process on a
terminal (a one-off's command, an exec -t).

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_inside.py
"""

import os

import pytest

from dynoutil import keyed, run_probe
from hostd_client import Code, pb
from test_exec import Exec
from test_oneoff import Attach, oneoff

# the host only, but for what a dyno sees at /sys/fs/cgroup (marked cgroup): users, limits, metadata
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.cgroup_independent]

DONE = "PROBE-DONE"
QUOTA = 536870912  # standard-1x: 512 MiB


def probe(script):
    return f"{script}\necho {DONE}\nexec sleep 1000"


def host_cgroup_v2():
    with open("/proc/self/mountinfo") as f:
        return any(l.split(" - ")[1].startswith("cgroup2 ") and l.split()[4] == "/sys/fs/cgroup"
                   for l in f)


@pytest.mark.cgroup
def test_the_dyno_reads_its_limits_at_sys_fs_cgroup(hostd, make_spec):
    script = (
        "echo v2mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null)\n"
        "echo v2pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null)\n"
        "echo v1mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null)\n"
        "echo v1pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null)\n"
        "echo self=$(cat /proc/self/cgroup | cut -d: -f3 | sort -u | tr '\\n' ' ')\n"
        "echo subdirs=$(find /sys/fs/cgroup -mindepth 1 -type d | grep -v -E '^/sys/fs/cgroup/[^/]+$' | wc -l)\n"
        "echo tops=$(ls /sys/fs/cgroup | tr '\\n' ' ')\n"
        "if echo 1 > /sys/fs/cgroup/x 2>/dev/null || echo 1 > /sys/fs/cgroup/memory/x 2>/dev/null; then echo wrote=yes; fi\n"
    )
    with hostd.client() as c:
        d, lines = run_probe(c, make_spec("in-cg", command=probe(script)))
        kv = keyed(lines)
        if host_cgroup_v2():
            assert kv["v2mem"] == str(QUOTA), kv
            assert kv["v2pids"] == str(d.pids_limit), kv
        else:
            assert kv["v1mem"] == str(QUOTA), kv
            assert kv["v1pids"] == str(d.pids_limit), kv
            # One folder per hierarchy the dyno has a cgroup in, named as on the host.
            tops = kv["tops"].split()
            assert "memory" in tops and "pids" in tops, tops
            assert "blkio" not in tops and "devices" not in tops, tops
        # The dyno is the root of what it sees: no path of the host's, no other cgroup.
        assert kv["self"].split() == ["/"], kv["self"]
        assert kv["subdirs"] == "0", kv
        assert "wrote" not in kv, "the dyno wrote into its cgroup files"


def test_the_dyno_user_has_a_name(hostd, make_spec, rootfs):
    with open(os.path.join(rootfs.stack, "etc", "passwd"), "rb") as f:
        before = f.read()
    script = (
        "echo whoami=$(whoami)\necho idun=$(id -un)\necho idgn=$(id -gn)\n"
        "echo home=$(grep \"^$(whoami):\" /etc/passwd | cut -d: -f6)\n"
        "echo root=$(stat -c %U /)\n"
    )
    with hostd.client() as c:
        d, lines = run_probe(c, make_spec("in-user", command=probe(script)))
        kv = keyed(lines)
        assert kv["whoami"] == f"u{d.uid}", kv
        assert kv["idun"] == f"u{d.uid}" and kv["idgn"] == f"u{d.uid}", kv
        assert kv["home"] == "/app", kv
        assert kv["root"] == "root", kv
    # The stack image itself is not touched: the entries live in the dyno's own layer.
    with open(os.path.join(rootfs.stack, "etc", "passwd"), "rb") as f:
        assert f.read() == before


def test_links_in_the_image_lead_nowhere_outside(hostd, make_spec, rootfs, tmp_path):
    """A slug (the customer's) with /bin/bash and /etc/group as links to the host's files: hostd
    adds the dyno's user before the root is pivoted, yet follows neither out of the dyno's root.
    The host's files stay as they were, the user's shell is the stack's /bin/sh (the link names
    nothing inside), and the group file, a link, is left alone."""
    host = tmp_path / "host"
    host.mkdir()
    host_bash = host / "bash"
    host_bash.write_text("#!/bin/sh\necho host-bash\n")
    host_bash.chmod(0o755)
    host_group = host / "group"
    host_group.write_text("hostgroup:x:4242:\n")
    before = {p: p.read_bytes() for p in (host_bash, host_group)}

    import shutil
    slug = tmp_path / "slug"
    shutil.copytree(rootfs.slug, slug, symlinks=True)
    (slug / "bin").mkdir(exist_ok=True)
    os.symlink(str(host_bash), slug / "bin" / "bash")
    (slug / "etc").mkdir(exist_ok=True)
    os.symlink(str(host_group), slug / "etc" / "group")
    os.chmod(tmp_path, 0o755)

    script = ("echo shell=$(grep \"^u[0-9]*:\" /etc/passwd | cut -d: -f7)\n"
              "echo group=$(readlink /etc/group)\n")
    with hostd.client() as c:
        d, lines = run_probe(c, make_spec("in-links", slug_path=str(slug), command=probe(script)))
        kv = keyed(lines)
        assert kv["shell"] == "/bin/sh", kv
        assert kv["group"] == str(host_group), kv
        c.stop("in-links", grace=0)
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p} changed"


def test_the_root_is_a_volatile_overlay(hostd, make_spec):
    """The dyno's writable layer is thrown away with it: overlayfs is told not to sync it
    (volatile), so that neither its copy-ups nor the app's fsyncs reach the host's disk."""
    script = "awk '$5 == \"/\" { for (i = 7; i <= NF; i++) if ($i == \"-\") print \"root=\" $(i+1), $(i+3) }' /proc/self/mountinfo"
    with hostd.client() as c:
        _, lines = run_probe(c, make_spec("in-volatile", command=probe(script)))
        fstype, opts = keyed(lines)["root"].split(" ", 1)
        assert fstype == "overlay", lines
        # Linux 6.1 shows the option as given; later ones as fsync=volatile.
        assert {"volatile", "fsync=volatile"} & set(opts.split(",")), opts
        c.stop("in-volatile", grace=0)


def test_ulimit_u_is_the_pids_limit(hostd_factory, make_spec):
    from dynoutil import with_sizes

    h = with_sizes(hostd_factory, {"few": {"memory": "64M", "pids": 77}})
    with h.client() as c:
        _, lines = run_probe(c, make_spec("in-nproc", size="few",
                                          command=probe("echo nproc=$(ulimit -u)")))
        assert keyed(lines)["nproc"] == "77"


META = {
    "app_id": "01234567-89ab-4cde-8f01-23456789abcd",
    "slug_commit": "2c3a0b2f9d",
    "slug_description": "Deploy 2c3a0b2",
    "release_created_at": "2026-12-07T19:00:00Z",
    "release": "v42",
}


def test_dyno_metadata_from_the_spec(hostd, make_spec):
    script = "env | grep ^HEROKU_ | sort"
    spec = make_spec("in-meta", app="shop", command=probe(script), **META)
    with hostd.client() as c:
        d, lines = run_probe(c, spec)
        kv = keyed(lines)
        assert kv == {
            "HEROKU_APP_ID": META["app_id"],
            "HEROKU_APP_NAME": "shop",
            "HEROKU_DYNO_ID": c.get("in-meta").run_id,
            "HEROKU_RELEASE_CREATED_AT": META["release_created_at"],
            "HEROKU_RELEASE_VERSION": "v42",
            "HEROKU_SLUG_COMMIT": META["slug_commit"],
            "HEROKU_SLUG_DESCRIPTION": META["slug_description"],
        }, kv
        first = kv["HEROKU_DYNO_ID"]
        # A new UUID for each run.
        c.restart("in-meta", grace=1)
        d2 = c.wait_state("in-meta", (pb.DYNO_STATE_UP,), timeout=30)
        assert d2.run_id and d2.run_id != first


@pytest.mark.parametrize(
    "field,value,why",
    [
        ("release_created_at", "yesterday", "RFC 3339"),
        ("slug_description", "a\nb", "control character"),
        ("app_id", "x" * 65, "longer than 64"),
        ("tty_term", "xterm", "only a dyno with a terminal"),
    ],
)
def test_bad_metadata_is_refused_by_name(hostd, make_spec, field, value, why):
    with hostd.client() as c:
        resp = c.start(make_spec("in-bad", **{field: value}), check=False)
        assert resp.status.code == Code.INVALID_ARGUMENT
        assert f"spec.{field}" in resp.status.message and why in resp.status.message, resp.status
        assert c.get("in-bad", check=False).status.code == Code.NOT_FOUND


@pytest.mark.parametrize("name", ["HEROKU_APP_NAME", "HEROKU_DYNO_ID", "HEROKU_SLUG_COMMIT"])
def test_metadata_names_are_not_config_vars(hostd, make_spec, name):
    with hostd.client() as c:
        resp = c.start(make_spec("in-res", env={name: "x"}), check=False)
        assert resp.status.code == Code.INVALID_ARGUMENT and name in resp.status.message


def test_a_one_off_terminal_has_term_columns_and_lines(hostd, make_spec):
    c = hostd.client()
    spec = oneoff(make_spec, "in-tty", 'echo "T=$TERM C=$COLUMNS L=$LINES"; sleep 1000',
                  columns=132, rows=43)
    spec.tty_term = "screen-256color"
    # A config var of the same name gives way to the terminal's own.
    spec.env.add(name="TERM", value="vt100")
    c.start(spec)
    a = Attach(c, "in-tty")
    a.read_until(lambda o: b"L=43" in o)
    assert b"T=screen-256color C=132 L=43" in a.out, a.out
    c.stop("in-tty", grace=1)


def test_exec_on_a_terminal_has_term(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("in-exec", command="sleep 1000"))
    show = ["sh", "-c", 'echo "T=$TERM C=$COLUMNS L=$LINES"']
    # TERM as ssh and docker exec give it; no COLUMNS and LINES, which a resize would make
    # wrong (the terminal itself has the size).
    e = Exec(c, "in-exec", show, tty=True, columns=90, rows=33, term="tmux-256color")
    assert e.wait() == 0
    assert b"T=tmux-256color C= L=" in e.out, e.out
    # Without a name from the client: xterm.
    e = Exec(c, "in-exec", show, tty=True, columns=90, rows=33)
    assert e.wait() == 0
    assert b"T=xterm C= L=" in e.out, e.out
    # Without a terminal none of the three.
    e = Exec(c, "in-exec", show)
    assert e.wait() == 0
    assert b"T= C= L=" in e.out, e.out
    c.stop("in-exec", grace=1)
