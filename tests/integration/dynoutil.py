"""Helpers shared by the dyno integration tests (limits, isolation, lifecycle, restart).

Only reading helpers and helpers that act on what the test itself started: nothing here
signals a process outside the test's own dynos.
"""

import os
import signal
import time

from hostd_client import pb

LIVE_STATES = (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_UP, pb.DYNO_STATE_STOPPING)
ENDED_STATES = (pb.DYNO_STATE_CRASHED, pb.DYNO_STATE_DOWN, pb.DYNO_STATE_COMPLETE)


def with_sizes(hostd_factory, sizes, **overrides):
    """A started Hostd whose configuration also has a [size NAME] section for every entry of
    sizes ({"name": {"memory": "32M", "swap": "no", ...}}). The fixture writes only the
    [hostd] section, so the sections are appended to its file before hostd starts (restart()
    keeps them: it does not rewrite the file)."""
    h = hostd_factory(start=False, **overrides)
    with open(h.config_path, "a") as f:
        for name, keys in sizes.items():
            f.write(f"\n[size {name}]\n")
            for k, v in keys.items():
                f.write(f"{k} = {v}\n")
    h.start()
    return h


# -- cgroups --------------------------------------------------------------------------------------


def dyno_cgroup_dir(hostd, dyno_id, control_file):
    """The dyno's cgroup folder in the hierarchy that has control_file (e.g.
    "memory.limit_in_bytes"), or None."""
    for d in hostd.find_cgroups(dyno_id):
        if os.path.basename(os.path.dirname(d)) != "dynos":
            continue
        if os.path.exists(os.path.join(d, control_file)):
            return d
    return None


def read_cgroup_file(hostd, dyno_id, *names):
    """(name, stripped content) of the first of names that exists in one of the dyno's cgroup
    folders (the v1 name first, then the v2 one). AssertionError when none does."""
    for name in names:
        d = dyno_cgroup_dir(hostd, dyno_id, name)
        if d is not None:
            with open(os.path.join(d, name)) as f:
                return name, f.read().strip()
    raise AssertionError(
        f"none of {names} in the cgroups of dyno {dyno_id}: {hostd.find_cgroups(dyno_id)}"
    )


def dyno_cgroup_procs(hostd, dyno_id):
    """Every pid in the dyno's cgroup folders (all hierarchies)."""
    pids = set()
    for d in hostd.find_cgroups(dyno_id):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids |= {int(x) for x in f.read().split()}
        except FileNotFoundError:
            pass
    return pids


# -- processes ------------------------------------------------------------------------------------


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return state not in ("Z", "X")


def wait_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def signal_dyno_init(hostd, dyno, sig):
    """Send sig to the dyno's init (which relays SIGTERM/INT/HUP/QUIT/USR1/USR2/WINCH to every
    process of the dyno), after checking through a pidfd that the pid is still in the dyno's
    cgroup: never a stranger's process."""
    fd = os.pidfd_open(dyno.pid)
    try:
        assert dyno.pid in dyno_cgroup_procs(hostd, dyno.spec.id), (
            f"pid {dyno.pid} is not in the cgroup of dyno {dyno.spec.id}"
        )
        signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


def dyno_file(dyno, path):
    """A path inside a running dyno's root filesystem, seen from the host."""
    return f"/proc/{dyno.pid}/root/{path.lstrip('/')}"


# -- logs -----------------------------------------------------------------------------------------


def app_lines(client, dyno_id):
    """The dyno's own output lines (source other than "heroku"), as str."""
    return [
        l.text.decode("utf-8", "replace")
        for l in client.logs(dyno_id).lines
        if l.source != "heroku"
    ]


def platform_lines(client, dyno_id):
    return [
        l.text.decode("utf-8", "replace")
        for l in client.logs(dyno_id).lines
        if l.source == "heroku"
    ]


def wait_log(client, dyno_id, predicate, timeout=20.0, what="the expected line"):
    """Poll Logs until predicate(app lines) is true; returns the app lines."""
    if isinstance(predicate, str):
        marker = predicate
        predicate = lambda lines: marker in lines  # noqa: E731
        what = repr(marker)
    deadline = time.monotonic() + timeout
    while True:
        lines = app_lines(client, dyno_id)
        if predicate(lines):
            return lines
        if time.monotonic() > deadline:
            tail = "\n".join(lines[-20:])
            platform = "\n".join(platform_lines(client, dyno_id)[-10:])
            raise AssertionError(f"dyno {dyno_id}: no {what} in its log within {timeout} s:\n"
                                 f"{tail}\nits platform lines:\n{platform}")
        time.sleep(0.05)


def run_probe(client, spec, marker="PROBE-DONE", timeout=20.0):
    """Start spec (whose command prints its findings, then marker, then sleeps) and return
    (Dyno, the app lines before marker)."""
    dyno = client.start(spec)
    lines = wait_log(client, spec.id, marker, timeout)
    return dyno, lines[: lines.index(marker)]


def keyed(lines):
    """{key: value} of the "key=value" lines (the first "=" splits)."""
    out = {}
    for l in lines:
        if "=" in l:
            k, v = l.split("=", 1)
            out[k] = v
    return out


# -- files ----------------------------------------------------------------------------------------


def tree_state(top):
    """{relative path: (type and mode, uid, gid, size, mtime_ns, link target)} of every entry
    under top (top itself included as "."), without following symlinks."""
    state = {}

    def one(path, rel):
        st = os.lstat(path)
        target = os.readlink(path) if os.path.islink(path) else None
        state[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, target)

    one(top, ".")
    for dirpath, dirnames, files in os.walk(top):
        for name in dirnames + files:
            p = os.path.join(dirpath, name)
            one(p, os.path.relpath(p, top))
    return state


def diff_trees(before, after):
    """Human lines for what differs between two tree_state() results."""
    out = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            out.append(f"removed {k}")
        elif k not in before:
            out.append(f"added {k}")
        elif before[k] != after[k]:
            out.append(f"changed {k}: {before[k]} -> {after[k]}")
    return out


def overlay_mounts_naming(text):
    """Lines of /proc/self/mountinfo (hostd's mount namespace is the test's) of overlay mounts
    whose options or mount point contain text."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if " - overlay " in line and text in line:
                out.append(line.rstrip("\n"))
    return out
