"""Fixtures for hostd's integration tests: a sample root filesystem and a real hostd.

Each test that uses `hostd` gets its own daemon: a private folder under $TMPDIR (/tmp) with its config,
socket, run, state and layers folders, and its own cgroup root, `hostd-test-<pid>-<n>`, under
the test's own cgroup in every hierarchy. At teardown the fixture stops the dynos still known
to hostd (through the API), stops hostd, then checks that nothing is left: no process in the
test's cgroups, no cgroup folder, no mount under the private folder. Whatever it finds it
reports as an error of the test, and cleans (killing only processes inside the test's own
cgroups, unmounting only under the private folder).

Run as root: HOSTD_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/
"""

import errno
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostd_client  # noqa: E402
from hostd_client import BUILD_DIR, HostdClient, HostdError, pb  # noqa: E402

SOURCE_DIR = os.path.abspath(
    os.environ.get("HOSTD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
)
HOSTD_BIN = os.path.join(BUILD_DIR, "hostd", "hostd")
HOSTD_INIT_BIN = os.path.join(BUILD_DIR, "hostd", "hostd-init")
MAKE_ROOTFS = os.path.join(SOURCE_DIR, "scripts", "make-sample-rootfs")

READY_TIMEOUT = 30.0  # a wait for readiness, not a measure: the v2 tier under load is slow
STOP_TIMEOUT = 15.0
SERVING = hostd_client.health_pb2.HealthCheckResponse.SERVING

_instance_counter = itertools.count(1)


# -- the cgroup v2 tier ------------------------------------------------------------------------
#
# Every test says whether its outcome depends on the cgroup version, with one of two markers,
# most often for its whole module (`pytestmark = pytest.mark.cgroup`):
#
#   cgroup              it does: it checks what the v1 and v2 drivers do differently (limits,
#                       memory, R14/R15, OOM, pids, cpu, figures read from cgroup files, the
#                       kill of a dyno's processes, exec joining a dyno's cgroup, re-adoption
#                       and the removal of leftovers, dynos-cgroup, a cycle's two cgroups).
#                       tests/vm/run-v2 runs these again on cgroup v2 (`-m cgroup`).
#   cgroup_independent  it does not (the protocol, TLS, hostctl's output, images, netd, logs,
#                       drains, events, ...): the host tier alone runs it. A test of such a
#                       module that depends adds `cgroup` for itself.
#
# A test with neither fails the collection, so that no new test leaves the v2 tier unnoticed;
# `cgroup_independent` on a test of a `cgroup` module too: such a module runs whole there.
CGROUP_MARKERS = ("cgroup", "cgroup_independent")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cgroup: the outcome depends on the cgroup version: the v2 tier runs it too")
    config.addinivalue_line(
        "markers", "cgroup_independent: the outcome does not depend on the cgroup version")


def cgroup_tier_problems(items):
    """What is wrong with the cgroup markers of the collected tests: a list of lines."""
    problems = []
    for item in items:
        names = {m.name for m in item.iter_markers() if m.name in CGROUP_MARKERS}
        module_names = {m.name for m in item.getparent(pytest.Module).iter_markers()}
        if not names:
            problems.append(f"{item.nodeid}: neither marked cgroup nor cgroup_independent")
        elif "cgroup" in module_names and "cgroup_independent" in names:
            problems.append(f"{item.nodeid}: cgroup_independent in a cgroup module")
    return problems


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config, items):
    problems = cgroup_tier_problems(items)
    if problems:
        raise pytest.UsageError(
            "say whether each test's outcome depends on the cgroup version (conftest.py, "
            "the cgroup v2 tier):\n  " + "\n  ".join(problems))
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (cgroups, namespaces, mounts)")
        for item in items:
            item.add_marker(skip)


# -- sanitizers --------------------------------------------------------------------------------

# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print (a build with
# -Db_sanitize=address,undefined): a daemon's log that holds one fails the test, even when the
# daemon went on (UBSan recovers unless told to halt) or its exit status was not looked at.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(text, context=30):
    """The lines of the first sanitizer report in text, or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[max(0, i - 2) : i + context])
    return None


# -- cgroups ----------------------------------------------------------------------------------


def _unescape_mount(s):
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def read_mountinfo():
    """[(mount point, fs type, root, super options)] of this mount namespace."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            mounts.append(
                (_unescape_mount(parts[4]), parts[sep + 1], _unescape_mount(parts[3]), parts[sep + 3])
            )
    return mounts


def own_cgroup_dirs(pid="self"):
    """The folder of the process's own cgroup in every mounted hierarchy (v1 controllers,
    named v1 hierarchies, and the unified v2 one), deduplicated."""
    mounts = read_mountinfo()
    dirs = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            wanted = set(c for c in controllers.split(",") if c)
            for mp, fstype, root, opts in mounts:
                if hid == "0" and not wanted:
                    if fstype != "cgroup2":
                        continue
                elif fstype != "cgroup" or not wanted <= set(opts.split(",")):
                    continue
                if root != "/" and not (path == root or path.startswith(root + "/")):
                    continue
                rel = path[len(root) :] if root != "/" else path
                d = os.path.normpath(mp + "/" + rel.lstrip("/"))
                if os.path.isdir(d) and d not in dirs:
                    dirs.append(d)
                break
    return dirs


def cgroup_procs(top):
    """Every pid in the cgroup folder top and its descendants."""
    pids = set()
    for dirpath, _dirnames, _files in os.walk(top):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids.update(int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
        except OSError as e:
            if e.errno not in (errno.ENODEV, errno.EINVAL):
                raise
    return pids


def _pid_in_tree(pid, tops):
    """True when /proc/pid/cgroup puts pid under one of the cgroup folders tops (by path)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            paths = [line.rstrip("\n").split(":", 2)[2] for line in f]
    except (FileNotFoundError, ProcessLookupError):
        return False
    names = {os.path.basename(t) for t in tops}
    return any(any(seg in names for seg in p.split("/")) for p in paths)


def kill_in_cgroups(tops, rounds=50):
    """SIGKILL every process in the cgroup trees tops (they are this test's: the trees are
    named for it). Returns the pids found. Each pid is checked, through a pidfd, to be still in
    one of the trees when it is signalled."""
    seen = set()
    for _ in range(rounds):
        pids = set()
        for t in tops:
            pids |= cgroup_procs(t)
        if not pids:
            break
        seen |= pids
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except (ProcessLookupError, OSError):
                continue
            try:
                if _pid_in_tree(pid, tops):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.1)
    return seen


def remove_cgroup_tree(top):
    """rmdir top and everything below it, leaves first. Returns the folders that would not go."""
    left = []
    if not os.path.isdir(top):
        return left
    for attempt in range(20):
        left = []
        for dirpath, _dirnames, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(dirpath)
        if not left:
            return []
        time.sleep(0.1)
    return left


# -- mounts -----------------------------------------------------------------------------------


def mounts_under(path):
    path = os.path.realpath(path)
    return [mp for mp, *_ in read_mountinfo() if mp == path or mp.startswith(path + "/")]


def unmount_under(path):
    """Lazily unmount everything under path, deepest first. Returns the mount points found."""
    found = mounts_under(path)
    for mp in sorted(set(found), key=lambda m: m.count("/"), reverse=True):
        subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return found


def remove_tree(path):
    """rm -rf path once nothing is mounted under it."""
    if not os.path.exists(path):
        return
    unmount_under(path)
    if mounts_under(path):
        raise RuntimeError(f"still mounted under {path}: {mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)


# -- the sample root filesystem -----------------------------------------------------------------


class Rootfs:
    def __init__(self, path):
        self.path = path
        self.stack = os.path.join(path, "stack")
        self.slug = os.path.join(path, "slug")


@pytest.fixture(scope="session")
def rootfs():
    """scripts/make-sample-rootfs into a fresh folder: .stack and .slug are the two layers."""
    path = tempfile.mkdtemp(prefix="hostd-rootfs-")
    os.chmod(path, 0o755)
    r = subprocess.run(
        [MAKE_ROOTFS, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if r.returncode != 0:
        remove_tree(path)
        pytest.fail(f"{MAKE_ROOTFS} {path} failed ({r.returncode}):\n{r.stdout}")
    yield Rootfs(path)
    remove_tree(path)


@pytest.fixture
def make_spec(rootfs):
    """make_spec(id, **fields) -> DynoSpec of a worker running `sleep 1000` on the sample
    root filesystem; fields override (env may be a dict or a list of (name, value))."""

    def make(dyno_id, **fields):
        env = fields.pop("env", None)
        spec = pb.DynoSpec(
            id=dyno_id,
            name=fields.pop("name", "worker.1"),
            app=fields.pop("app", "testapp"),
            type=fields.pop("type", pb.DYNO_TYPE_WORKER),
            size=fields.pop("size", "standard-1x"),
            command=fields.pop("command", "sleep 1000"),
            stack_path=fields.pop("stack_path", rootfs.stack),
            slug_path=fields.pop("slug_path", rootfs.slug),
        )
        for k, v in fields.items():
            setattr(spec, k, v)
        if env:
            items = env.items() if isinstance(env, dict) else env
            for name, value in items:
                spec.env.add(name=name, value=value)
        return spec

    return make


# -- hostd --------------------------------------------------------------------------------------


class Hostd:
    """One hostd daemon with a private configuration, run as a subprocess of the test."""

    def __init__(self, overrides=None):
        self.n = next(_instance_counter)
        self.tmp = tempfile.mkdtemp(prefix="hostd-test-")
        os.chmod(self.tmp, 0o755)
        self.socket_path = os.path.join(self.tmp, "hostd.sock")
        self.run_dir = os.path.join(self.tmp, "run")
        self.state_dir = os.path.join(self.tmp, "state")
        self.layers_dir = os.path.join(self.tmp, "layers")
        self.cgroup_root = f"hostd-test-{os.getpid()}-{self.n}"
        self.config_path = os.path.join(self.tmp, "hostd.conf")
        self.log_path = os.path.join(self.tmp, "hostd.log")
        uid_min = 300000 + ((os.getpid() % 10000) * 16 + self.n % 16) * 100
        self.config = {
            "socket": self.socket_path,
            "run-dir": self.run_dir,
            "state-dir": self.state_dir,
            "layers-dir": self.layers_dir,
            "init": HOSTD_INIT_BIN,
            "cgroup-root": self.cgroup_root,
            "log-level": "debug",
            "grace-seconds": 5,
            "uid-min": uid_min,
            "uid-max": uid_min + 99,
            "max-message": 1 << 20,
            "max-command": 4096,
            "max-env": 32,
            "max-env-bytes": 16384,
            # No automatic restarts: most tests look at how a dyno ended. test_crash.py sets
            # its own back-off.
            "restart-backoff": "",
            # The host's journal is not the tests' to fill; test_journal.py gives its own.
            "journal-socket": "",
            # Admission is test_admission.py's: elsewhere idle 512M dynos must fit, also in the
            # qemu guest of the v2 tier, which has 2G of memory.
            "reserved-memory": "0",
            "memory-overcommit": 100,
        }
        for k, v in (overrides or {}).items():
            if v is None:
                self.config.pop(k, None)
            else:
                self.config[k] = v
        self.own_cgroups = own_cgroup_dirs()
        self.extra_env = {}  # added to hostd's environment at each start
        self.command_prefix = []  # e.g. nsenter into a test's network and mount namespaces
        self.proc = None
        self.pids = []  # every hostd pid this instance started
        self.dyno_pids = set()  # init pids seen in replies
        self._clients = []
        self._expect_exit = False
        self.unexpected_exits = []
        self._write_config()

    # -- lifecycle ----------------------------------------------------------------------------
    def _write_config(self):
        with open(self.config_path, "w") as f:
            f.write("# written by tests/integration/conftest.py\n[hostd]\n")
            for k, v in self.config.items():
                f.write(f"{k} = {v}\n")

    def _observe(self, dyno):
        """Every Dyno in an answer of hostd (HostdClient's observer)."""
        if dyno.pid:
            self.dyno_pids.add(dyno.pid)

    def start(self, timeout=READY_TIMEOUT):
        """Start hostd and wait until it answers a health check on its socket."""
        if self.alive():
            raise RuntimeError("hostd is already running")
        self._note_exit()
        if not os.access(HOSTD_BIN, os.X_OK):
            raise RuntimeError(f"{HOSTD_BIN} missing: build first (meson compile -C build)")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.extra_env)
        with open(self.log_path, "a") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} starting {HOSTD_BIN} --config {self.config_path}\n")
            log.flush()
            self.proc = subprocess.Popen(
                [*self.command_prefix, HOSTD_BIN, "--config", self.config_path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd="/",
                start_new_session=True,
            )
        self._expect_exit = False
        self.pids.append(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"hostd exited with status {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            if os.path.exists(self.socket_path):
                with HostdClient(self.socket_path, timeout=2) as c:
                    try:
                        if c.health() == SERVING:
                            return self
                    except HostdError:
                        pass
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"hostd's socket did not accept within {timeout} s:\n" + self.log_tail())
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _note_exit(self):
        """Remember a hostd that died without being asked to (a crash)."""
        if self.proc is not None and self.proc.poll() is not None and not self._expect_exit:
            self.unexpected_exits.append((self.proc.pid, self.proc.returncode))
            self._expect_exit = True

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; SIGKILL after timeout. Returns the exit status."""
        if self.proc is None:
            return None
        self._note_exit()
        self._expect_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"hostd did not exit within {timeout} s of SIGTERM")
        return self.proc.returncode

    def terminate(self):
        """SIGTERM without waiting: hostd is expected to exit (wait with self.proc.wait())."""
        self._note_exit()
        self._expect_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill9(self):
        if self.proc is None:
            return
        self._note_exit()
        self._expect_exit = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def restart(self, timeout=READY_TIMEOUT):
        """Start hostd again with the same configuration (stopping it first if it runs)."""
        if self.alive():
            self.stop()
        return self.start(timeout)

    def client(self, timeout=30.0, **kw):
        """A HostdClient on the Unix socket (closed at teardown); kw: HostdClient's."""
        c = HostdClient(self.socket_path, timeout=timeout, observer=self._observe, **kw)
        self._clients.append(c)
        return c

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- what exists --------------------------------------------------------------------------
    def cgroup_dirs(self):
        """The test's cgroup root folder in every hierarchy where it exists."""
        return [os.path.join(o, self.cgroup_root) for o in self.own_cgroups
                if os.path.isdir(os.path.join(o, self.cgroup_root))]

    def find_cgroups(self, name):
        """Cgroup folders named name anywhere under the test's roots."""
        found = []
        for top in self.cgroup_dirs():
            for dirpath, dirnames, _ in os.walk(top):
                found += [os.path.join(dirpath, d) for d in dirnames if d == name]
        return found

    def dyno_procs(self):
        """Pids in the test's cgroups other than hostd's own."""
        pids = set()
        for top in self.cgroup_dirs():
            pids |= cgroup_procs(top)
        return pids - set(self.pids)

    def dyno_inits(self):
        """Pids in the test's cgroups that are PID 1 of their own PID namespace: one per
        running dyno."""
        inits = []
        for pid in sorted(self.dyno_procs()):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            ns = line.split()[1:]
                            if len(ns) >= 2 and ns[-1] == "1":
                                inits.append(pid)
                            break
            except (FileNotFoundError, ProcessLookupError):
                pass
        return inits

    def snapshot(self):
        """What a request could leave behind: cgroup folders under the test's roots, new
        children of the own cgroups, entries of the layers folder, mounts under the private
        folder, processes in the test's cgroups."""
        cg = set()
        for top in self.cgroup_dirs():
            for dirpath, _, _ in os.walk(top):
                # The folders that hold the dynos' cgroups and hostd's own may appear lazily.
                if os.path.basename(dirpath) not in ("dynos", "supervisor"):
                    cg.add(dirpath)
        own_children = set()
        for o in self.own_cgroups:
            try:
                own_children |= {
                    os.path.join(o, d) for d in os.listdir(o)
                    if os.path.isdir(os.path.join(o, d)) and not d.startswith("hostd-test-")
                }
            except OSError:
                pass
        layers = set()
        if os.path.isdir(self.layers_dir):
            for dirpath, dirnames, files in os.walk(self.layers_dir):
                depth = dirpath[len(self.layers_dir):].count("/")
                layers |= {os.path.join(dirpath, x) for x in dirnames + files}
                if depth >= 1:
                    dirnames[:] = []
        return {
            "cgroups": cg,
            "own-cgroup children": own_children,
            "layers": layers,
            "mounts": set(mounts_under(self.tmp)),
            "processes": self.dyno_procs(),
        }

    def settled_snapshot(self, quiet=0.3, timeout=30.0):
        """A snapshot once two taken `quiet` seconds apart agree: a dyno that was just started
        may still be forking its command (the shell, then the command) when start returns."""
        deadline = time.monotonic() + timeout
        snap = self.snapshot()
        while True:
            time.sleep(quiet)
            again = self.snapshot()
            if again == snap or time.monotonic() > deadline:
                return again
            snap = again

    def diff_snapshot(self, before):
        after = self.snapshot()
        problems = []
        for key in after:
            new = after[key] - before.get(key, set())
            if new:
                problems.append(f"new {key}: {sorted(new)}")
        return problems

    def assert_unchanged(self, before, what=""):
        problems = self.diff_snapshot(before)
        assert not problems, f"left behind{(' by ' + what) if what else ''}: " + "; ".join(problems)

    def assert_serving(self, timeout=5.0):
        """hostd still runs and answers a new client."""
        assert self.alive(), f"hostd died (status {self.proc.returncode}):\n{self.log_tail()}"
        with self.client(timeout=timeout) as c:
            c.list()

    # -- teardown -----------------------------------------------------------------------------
    def teardown(self):
        problems = []
        for c in self._clients:
            try:
                c.close()
            except OSError:
                pass
        self._note_exit()
        for pid, rc in self.unexpected_exits:
            problems.append(f"hostd (pid {pid}) exited on its own with status {rc}")
        if self.alive():
            try:
                with HostdClient(self.socket_path, timeout=10) as c:
                    for d in c.list():
                        if d.state in (pb.DYNO_STATE_STARTING, pb.DYNO_STATE_UP,
                                       pb.DYNO_STATE_STOPPING):
                            c.stop(d.spec.id, grace=1, timeout=40, check=False)
            except Exception as e:  # noqa: BLE001 - report, then clean by force
                problems.append(f"stopping the remaining dynos through the API: {e!r}")
            try:
                rc = self.stop()
                if rc != 0:
                    problems.append(f"hostd exited with status {rc} on SIGTERM")
            except RuntimeError as e:
                problems.append(str(e))
        # Whatever is left in the test's cgroups was started by this test.
        tops = [os.path.join(o, self.cgroup_root) for o in self.own_cgroups]
        tops = [t for t in tops if os.path.isdir(t)]
        leaked = kill_in_cgroups(tops)
        if leaked:
            problems.append(f"processes left in the test's cgroups (killed): {sorted(leaked)}")
        for pid in sorted(self.dyno_pids):
            # A dyno init outside the test's cgroups: report it, but signal nothing there.
            try:
                if os.readlink(f"/proc/{pid}/exe") == HOSTD_INIT_BIN:
                    problems.append(f"dyno init {pid} still runs, outside the test's cgroups")
            except OSError:
                pass
        dyno_dirs = []
        for t in tops:
            for dirpath, dirnames, _ in os.walk(t):
                if os.path.basename(dirpath) == "dynos":
                    dyno_dirs += [os.path.join(dirpath, d) for d in dirnames]
        if dyno_dirs:
            problems.append(f"dyno cgroups left: {dyno_dirs}")
        for t in tops:
            for d in remove_cgroup_tree(t):
                problems.append(f"cannot remove cgroup {d}")
        mounted = unmount_under(self.tmp)
        if mounted:
            problems.append(f"mounts left under {self.tmp} (unmounted): {mounted}")
        report = sanitizer_report(self.log_text())
        if report:
            problems.append(f"a sanitizer report in hostd's log:\n{report}")
        if not problems:
            remove_tree(self.tmp)
        else:
            problems.append(f"hostd's log is kept in {self.log_path}; its end:\n{self.log_tail(40)}")
            # Keep the log, drop the rest.
            for name in os.listdir(self.tmp):
                p = os.path.join(self.tmp, name)
                if p != self.log_path and p != self.config_path:
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        try:
                            os.unlink(p)
                        except OSError:
                            pass
        return problems


@pytest.fixture
def hostd_factory():
    """hostd_factory(**config overrides) -> a started Hostd (keys as in the config file, e.g.
    max_env=4 or **{"max-env": 4}; None removes a key). All are torn down after the test."""
    instances = []

    def make(start=True, **overrides):
        h = Hostd({k.replace("_", "-"): v for k, v in overrides.items()})
        instances.append(h)
        if start:
            h.start()
        return h

    yield make
    problems = []
    for h in instances:
        problems += h.teardown()
    if problems:
        pytest.fail("teardown: " + "\n".join(problems), pytrace=False)


@pytest.fixture
def hostd(hostd_factory):
    """A started hostd with the test configuration (Hostd above)."""
    return hostd_factory()
