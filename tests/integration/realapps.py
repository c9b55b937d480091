"""Real apps on a real stack, for tests/integration/test_real_apps.py.

The images: the Debian 12 stack of scripts/make-debian-stack (about 250 MB unpacked) and the
three slugs of scripts/make-real-apps (node, python, ruby), built once per session (the
scripts cache them under /var/cache/hostd-test, so a session after the first builds nothing),
skipped with the scripts' reason when they cannot be built here (no Debian archive, no npm
registry). Every test gets its own hostd (the usual fixture, with its teardown checks), but
they share one image store for the session: the stack is unpacked by the first import and
found there by the others.

Web dynos are reached as in the other tests, from inside their network namespace: the dyno's
loopback, with nsenter and Debian's python3.
"""

import json
import os
import subprocess
import tarfile
import tempfile
import time

import pytest

from conftest import SOURCE_DIR, remove_tree
from dynoutil import app_lines, with_sizes
from hostd_client import Code, pb

BUILT = ("node", "python", "ruby")  # what scripts/make-real-apps makes
# The apps the tests run: all three, but one in the qemu tier's guest (HOSTD_V2_GUEST), where
# everything runs over a 9p root on two emulated CPUs, ten times slower (a boot test takes 5
# to 25 s there, against 0.5 to 1.5 s here); one is enough there for what differs on cgroup
# v2 (the cgroup files the app reads, the kernel's OOM counters). HOSTD_REAL_APPS=node,ruby
# chooses.
APPS = tuple(a for a in os.environ.get(
    "HOSTD_REAL_APPS", "python" if os.environ.get("HOSTD_V2_GUEST") == "1" else ",".join(BUILT)
).split(",") if a)
assert APPS and set(APPS) <= set(BUILT), f"HOSTD_REAL_APPS: one or more of {BUILT}"
PORT = 5123  # not the apps' fallback (5000): they listen where $PORT says
SIZE = "realapp"
QUOTA = 256 << 20
# Small enough for an OOM in a second, big enough for npm and node (130 MB between them).
# No swap: the kernel kills at the quota.
SIZES = {SIZE: {"memory": "256M", "swap": "no"}}
BOOT_TIMEOUT = 60  # Heroku's R10

MAKE_STACK = os.path.join(SOURCE_DIR, "scripts", "make-debian-stack")
MAKE_APPS = os.path.join(SOURCE_DIR, "scripts", "make-real-apps")
IMPORT_TIMEOUT = 600  # the first import unpacks the stack: seconds on an idle machine


class RealImages:
    """The tarballs, their digests and the web commands of the apps' Procfiles, and the
    session's image store."""

    def __init__(self, dest, images_dir):
        self.dest = dest
        self.images_dir = images_dir
        self.stack = self._image("debian-stack.tar.gz")
        self.slugs = {a: self._image(f"{a}-slug.tar.gz") for a in BUILT}
        self.web = {a: self._procfile_web(self.slugs[a][0]) for a in BUILT}
        self.import_seconds = {}  # digest -> seconds its first import took

    def _image(self, name):
        path = os.path.join(self.dest, name)
        with open(path + ".sha256") as f:
            return path, f.read().split()[0]

    @staticmethod
    def _procfile_web(slug):
        with tarfile.open(slug) as t:
            procfile = t.extractfile("./app/Procfile").read().decode()
        for line in procfile.splitlines():
            if line.startswith("web:"):
                return line[len("web:"):].strip()
        raise AssertionError(f"{slug}: no web process in its Procfile:\n{procfile}")


def _build(script, dest):
    t0 = time.monotonic()
    r = subprocess.run([script, dest], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    took = time.monotonic() - t0
    if r.returncode == 77:
        lines = r.stdout.strip().splitlines()
        pytest.skip(f"{os.path.basename(script)}: {lines[-1] if lines else 'skipped'}")
    if r.returncode != 0:
        pytest.fail(f"{script} {dest} failed ({r.returncode}):\n{r.stdout}", pytrace=False)
    print(f"\n{os.path.basename(script)}: {took:.1f} s")
    return took


@pytest.fixture(scope="session")
def real_images():
    dest = tempfile.mkdtemp(prefix="hostd-real-images-")
    images_dir = tempfile.mkdtemp(prefix="hostd-real-store-")
    os.chmod(dest, 0o755)
    os.chmod(images_dir, 0o755)
    try:
        _build(MAKE_STACK, dest)
        _build(MAKE_APPS, dest)
        images = RealImages(dest, images_dir)
        yield images
    finally:
        remove_tree(dest)
        remove_tree(images_dir)
    if images.import_seconds:
        print(f"\nreal images: first imports {images.import_seconds}")


def import_image(c, images, path, digest, kind):
    """ImageImport of the tarball; the first one of the session unpacks it, later ones find it
    in the shared store."""
    t0 = time.monotonic()
    resp = c.import_image(path, digest, kind, timeout=IMPORT_TIMEOUT, check=False)
    assert resp.status.code == Code.OK, f"import of {path}: {resp.status.message}"
    images.import_seconds.setdefault(digest[:12], round(time.monotonic() - t0, 2))


@pytest.fixture
def real_hostd(hostd_factory, real_images):
    """A started hostd with the `realapp` size (256M, no swap) and the session's image store,
    the stack and the slugs of APPS imported."""
    h = with_sizes(hostd_factory, SIZES, images_dir=real_images.images_dir)
    with h.client(timeout=IMPORT_TIMEOUT) as c:
        import_image(c, real_images, *real_images.stack, pb.IMAGE_KIND_STACK)
        for a in APPS:
            import_image(c, real_images, *real_images.slugs[a], pb.IMAGE_KIND_SLUG)
    return h


def web_spec(images, app, dyno_id, **fields):
    """A web dyno of app, its command the Procfile's, on the `realapp` size."""
    spec = pb.DynoSpec(
        id=dyno_id,
        name="web.1",
        app=f"real-{app}",
        type=pb.DYNO_TYPE_WEB,
        size=SIZE,
        command=images.web[app],
        port=PORT,
        stack_digest=images.stack[1],
        slug_digest=images.slugs[app][1],
        boot_timeout_seconds=BOOT_TIMEOUT,
    )
    for k, v in fields.items():
        setattr(spec, k, v)
    return spec


def boot(c, spec):
    """Start spec and wait until it is up (it listens on $PORT)."""
    c.start(spec)
    try:
        return c.wait_state(spec.id, pb.DYNO_STATE_UP, timeout=BOOT_TIMEOUT + 10)
    except TimeoutError as e:
        tail = "\n".join(c.log_texts(spec.id)[-30:])
        raise AssertionError(f"{e}; its log:\n{tail}") from None


# -- HTTP from inside a dyno's network namespace ------------------------------------------------

_GET = """
import http.client, json, sys
host, port, path, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    out = {"status": r.status, "body": r.read().decode("utf-8", "replace")}
except Exception as e:
    out = {"status": None, "body": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""


class Request:
    """GET path from the dyno whose init is pid, in a child process: in flight until result()."""

    def __init__(self, pid, path, timeout=60.0):
        self.path = path
        self.timeout = timeout
        self.proc = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-n", "/usr/bin/python3", "-c", _GET, "127.0.0.1",
             str(PORT), path, str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def done(self):
        return self.proc.poll() is not None

    def result(self):
        """(HTTP status or None, body or the error)."""
        out, err = self.proc.communicate(timeout=self.timeout + 30)
        try:
            got = json.loads(out)
        except ValueError:
            return None, f"nsenter: {err.strip() or out.strip()}"
        return got["status"], got["body"]


def get(pid, path, timeout=30.0):
    return Request(pid, path, timeout).result()


def events_of(c, dyno_id):
    """The kept events of dyno_id (a stream that ends)."""
    return [e for e in c.event_list(since=0) if e.dyno_id == dyno_id]


def wait_app_line(c, dyno_id, pred, timeout=30.0):
    """The first app line for which pred is true, waiting for it; None after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for line in app_lines(c, dyno_id):
            if pred(line):
                return line
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)
