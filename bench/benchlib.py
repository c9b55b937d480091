"""What every bench of this folder does alike, so that its figures can be trusted (issue 16).

- The conditions of a run: the kernel release and the 1-minute load average before and after
  the measures. A run whose load average exceeded LOAD_LIMIT at either end is not judged: its
  goal lines say "not judged: load X > 1.5" instead of MET / NOT MET, and its JSON carries
  "load_ok": false, so that no verdict is ever drawn from it.
- Private folders only: a bench refuses to start (a clear message, exit status 2, nothing
  created) when a folder it would give hostd resolves to or under a real hostd's own
  (/var/lib/hostd, /run/hostd), and every hostd configuration it writes names all of hostd's
  folders and sockets itself, with no journal.

Imported by bench/start-stop, bench/metrics, bench/images, bench/netd, bench/api and bench/scale (each puts bench/ on
sys.path and writes no bytecode into the source tree).
"""

import os
import platform
import sys

LOAD_LIMIT = 1.5

# A host's real hostd (and netd) keep their state and sockets here: no bench goes near them.
HOST_DIRS = ("/var/lib/hostd", "/run/hostd")
NETD_HOST_DIRS = ("/var/lib/netd", "/run/netd")

# The settings of hostd's that name a folder, a file or a socket, with the default that points
# at the host's own (hostd/config.c): a bench's configuration sets each of them.
HOSTD_PATH_SETTINGS = ("socket", "run-dir", "state-dir", "layers-dir", "images-dir", "netns-dir")


class Conditions:
    """The machine around one run: built just before the measures, end() just after."""

    def __init__(self):
        self.kernel = platform.release()
        self.before = os.getloadavg()
        self.after = None

    def end(self):
        self.after = os.getloadavg()

    @property
    def worst(self):
        return max(self.before[0], self.after[0] if self.after else 0.0)

    @property
    def load_ok(self):
        return self.worst <= LOAD_LIMIT

    def verdict(self, met, yes="MET", no="NOT MET"):
        """yes or no, or why the run is not judged."""
        if not self.load_ok:
            return f"not judged: load {self.worst:.2f} > {LOAD_LIMIT:g}"
        return yes if met else no

    def started(self):
        """One line for the log as the measures begin."""
        return f"kernel {self.kernel}; load average (1 min) before: {self.before[0]:.2f}"

    def summary(self):
        after = f"{self.after[0]:.2f}" if self.after else "?"
        judged = ("judged" if self.load_ok else
                  f"NOT JUDGED (a load average above {LOAD_LIMIT:g}: other work shared the CPUs)")
        return (f"conditions: kernel {self.kernel}; load average (1 min) before {self.before[0]:.2f}, "
                f"after {after}; limit {LOAD_LIMIT:g} -> {judged}")

    def as_json(self):
        return {"kernel": self.kernel, "load_before": list(self.before),
                "load_after": list(self.after) if self.after else None, "load_limit": LOAD_LIMIT,
                "load_ok": self.load_ok}


def host_dir_of(path, host_dirs=HOST_DIRS):
    """The host folder that path is, or lies under, once both are resolved; None if none."""
    real = os.path.realpath(path)
    for h in host_dirs:
        for base in {h, os.path.realpath(h)}:
            if real == base or real.startswith(base.rstrip("/") + "/"):
                return h
    return None


def refuse_host_dirs(prog, paths, host_dirs=HOST_DIRS):
    """Exit with status 2 before anything is made when one of paths resolves to or under a
    real hostd's folders."""
    bad = [(p, h) for p in paths if (h := host_dir_of(p, host_dirs))]
    if not bad:
        return
    for p, h in bad:
        print(f"{prog}: refusing to run: {p} resolves to {os.path.realpath(p)}, in {h}, a real "
              f"hostd's state; benches use private folders only (check TMPDIR and symlinks)",
              file=sys.stderr)
    sys.exit(2)


def write_hostd_conf(prog, path, settings):
    """Write a hostd configuration after checking that it names every one of hostd's folders
    and sockets, none of them the host's, and sends nothing to the host's journal."""
    problems = [f"{k} unset" for k in HOSTD_PATH_SETTINGS if not settings.get(k)]
    if settings.get("journal-socket") != "":
        problems.append('journal-socket not ""')
    if problems:
        raise RuntimeError(f"{prog}: hostd configuration {path}: {', '.join(problems)} (a bench names "
                           f"every folder itself)")
    refuse_host_dirs(prog, [settings[k] for k in HOSTD_PATH_SETTINGS] +
                     [v for k, v in settings.items() if k == "prometheus-file" and v])
    with open(path, "w") as f:
        f.write(f"# written by {prog}\n[hostd]\n")
        for k, v in settings.items():
            f.write(f"{k} = {v}\n")
