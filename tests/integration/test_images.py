"""Dynos from images: stacks and slugs by digest, fetched when missing, shared on disk."""

import hashlib
import http.server
import os
import shutil
import subprocess
import threading
import time

import pytest

from hostd_client import Code, HostdError, pb

# not the cgroup v2 tier: the image store: fetch, verify, share
pytestmark = pytest.mark.cgroup_independent


@pytest.fixture(scope="module")
def tarballs(rootfs, tmp_path_factory):
    """The sample stack and slug as tarballs, with their digests (scripts/make-sample-rootfs
    makes them beside the folders)."""
    base = os.path.dirname(rootfs.stack)
    env = dict(l.strip().split("=", 1) for l in open(os.path.join(base, "images.env")))
    return {
        "stack": (os.path.join(base, "stack.tar.gz"), env["STACK_SHA256"]),
        "slug": (os.path.join(base, "slug.tar.gz"), env["SLUG_SHA256"]),
    }


@pytest.fixture
def store_hostd(hostd_factory, tmp_path):
    # a hundred 512M dynos: admission counts them at 1/100, the tests' memory-overcommit
    return hostd_factory(images_dir=str(tmp_path / "images"))


def import_image(c, path, digest, kind):
    """ImportImage: a stream of progress, then the image."""
    return c.import_image(path, digest, kind)


def image_spec(make_spec, dyno_id, tarballs, with_urls=False, **fields):
    spec = make_spec(dyno_id, stack_path="", slug_path="", **fields)
    spec.stack_digest = tarballs["stack"][1]
    spec.slug_digest = tarballs["slug"][1]
    if with_urls:
        spec.stack_url = "file://" + tarballs["stack"][0]
        spec.slug_url = tarballs["slug"][0]  # an absolute path works too
    return spec


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True)
               .stdout.split()[0])


def test_a_dyno_runs_from_images_and_a_hundred_share_one_copy(store_hostd, make_spec, tarballs):
    images_dir = store_hostd.config["images-dir"]
    with store_hostd.client() as c:
        stack = import_image(c, *tarballs["stack"], pb.IMAGE_KIND_STACK)
        slug = import_image(c, *tarballs["slug"], pb.IMAGE_KIND_SLUG)
        assert stack.kind == pb.IMAGE_KIND_STACK and slug.kind == pb.IMAGE_KIND_SLUG
        before = du(images_dir)

        probe = image_spec(make_spec, "img-probe", tarballs,
                           command="cat /app/Procfile; ls /bin/busybox; exec sleep 1000")
        c.start(probe)
        deadline = time.monotonic() + 10
        while not {"web: bin/web", "/bin/busybox"} <= set(c.log_texts("img-probe")):
            assert time.monotonic() < deadline, c.log_texts("img-probe")
            time.sleep(0.05)

        for i in range(99):
            c.start(image_spec(make_spec, f"img-{i}", tarballs))
        users = {i.digest: i.users for i in c.list_images()}
        assert users[stack.digest] == 100 and users[slug.digest] == 100, users
        # One copy on disk: the store did not grow with a hundred dynos running.
        assert du(images_dir) == before
        layers = du(store_hostd.layers_dir)
        print(f"images {before} bytes; 100 dynos' writable layers together {layers} bytes")
        # Each dyno's own layer holds folders, not a copy of the image.
        assert layers / 100 < 64 * 1024
        for i in range(99):
            c.stop(f"img-{i}", grace=1)
        c.stop("img-probe", grace=1)


def test_a_missing_image_without_a_url_is_a_failed_precondition(store_hostd, make_spec, tarballs):
    before = store_hostd.snapshot()
    with store_hostd.client() as c:
        resp = c.start(image_spec(make_spec, "img-missing", tarballs), check=False)
        assert resp.status.code == Code.FAILED_PRECONDITION
        assert tarballs["stack"][1] in resp.status.message and "stack_url" in resp.status.message
        assert c.list() == []
    store_hostd.assert_unchanged(before)


def test_missing_images_are_fetched_then_the_dyno_starts(store_hostd, make_spec, tarballs):
    with store_hostd.client() as c:
        d = c.start(image_spec(make_spec, "img-fetch", tarballs, with_urls=True))
        assert d.state == pb.DYNO_STATE_UP
        logs = c.log_texts("img-fetch")
        assert any(l.startswith("Fetching stack") for l in logs), logs
        assert any(l.startswith("Fetching slug") for l in logs), logs
        # Progress, as the bytes came: the last quarter of the stack's fetch at least.
        size = os.path.getsize(tarballs["stack"][0])
        assert f"Fetching stack {tarballs['stack'][1][:12]}: {size} of {size} bytes" in logs, logs
        assert {i.digest for i in c.list_images()} == {tarballs["stack"][1], tarballs["slug"][1]}
        c.stop("img-fetch", grace=1)


def test_two_starts_needing_one_image_fetch_it_once(store_hostd, make_spec, tarballs):
    with store_hostd.client() as a, store_hostd.client() as b:
        pending = [a.start_async(image_spec(make_spec, "img-two-a", tarballs, with_urls=True)),
                   b.start_async(image_spec(make_spec, "img-two-b", tarballs, with_urls=True))]
        for p in pending:
            resp = p.reply()
            assert resp.status.code == Code.OK, resp.status.message
        log = store_hostd.log_text()
        assert log.count(f"image {tarballs['stack'][1][:12]}: importing") == 1, log
        a.stop("img-two-a", grace=1)
        a.stop("img-two-b", grace=1)


def test_a_wrong_digest_fails_the_start_and_leaves_nothing(store_hostd, make_spec, tarballs, tmp_path):
    wrong = hashlib.sha256(b"not the stack").hexdigest()
    before = store_hostd.snapshot()
    spec = image_spec(make_spec, "img-wrong", tarballs, with_urls=True)
    spec.stack_digest = wrong
    spec.slug_digest = spec.slug_url = ""  # only the import that fails
    with store_hostd.client() as c:
        resp = c.start(spec, check=False)
        assert resp.status.code == Code.FAILED_PRECONDITION
        assert "sha256" in resp.status.message, resp.status.message
        images = c.list_images()
        assert wrong not in {i.digest for i in images}
        assert c.list() == []
    leftovers = [n for n in os.listdir(store_hostd.config["images-dir"]) if n.startswith(".tmp")]
    assert leftovers == []
    store_hostd.assert_unchanged(before)


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.write(b"\0" * 1000)
        self.wfile.flush()
        self.release.wait(30)

    def log_message(self, *args):
        pass


def test_stopping_a_dyno_that_waits_for_its_images(store_hostd, make_spec, tarballs):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = image_spec(make_spec, "img-wait", tarballs)
        spec.stack_url = f"http://127.0.0.1:{server.server_address[1]}/stack.tar.gz"
        spec.slug_digest = ""
        with store_hostd.client() as c, store_hostd.client() as s:
            pending = c.start_async(spec)
            deadline = time.monotonic() + 10
            while s.get("img-wait", check=False).status.code != Code.OK or \
                    not any(l.startswith("Fetching stack") for l in s.log_texts("img-wait")):
                assert time.monotonic() < deadline, store_hostd.log_tail()
                time.sleep(0.05)
            down = s.stop("img-wait", grace=1)
            assert down.state == pb.DYNO_STATE_DOWN and "before its images" in down.exit.reason
            resp = pending.reply()
            assert resp.status.code == Code.ABORTED
            assert not os.path.exists(os.path.join(store_hostd.layers_dir, "img-wait"))
            assert not store_hostd.find_cgroups("img-wait")
    finally:
        _StallingHandler.release.set()
        server.shutdown()


def test_hostctl_starts_a_dyno_by_digest_fetching_its_images(store_hostd, tarballs):
    hostctl = os.path.join(os.environ.get("HOSTD_BUILD_DIR", "build"), "hostctl", "hostctl")
    r = subprocess.run(
        [hostctl, "--socket", store_hostd.socket_path, "--json", "start", "--id", "img-ctl",
         "--type", "worker", "--stack-digest", tarballs["stack"][1],
         "--stack-url", "file://" + tarballs["stack"][0], "--slug-digest", tarballs["slug"][1],
         "--slug-url", tarballs["slug"][0], "--", "exec sleep 1000"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"state": "up"' in r.stdout.replace(" ", "").replace('":"', '": "')
    with store_hostd.client() as c:
        assert c.get("img-ctl").spec.stack_digest == tarballs["stack"][1]
        c.stop("img-ctl", grace=1)


def test_removed_images_are_deleted_off_the_loop(store_hostd, tarballs):
    images_dir = store_hostd.config["images-dir"]
    with store_hostd.client() as c:
        img = import_image(c, *tarballs["stack"], pb.IMAGE_KIND_STACK)
        resp = c.remove_image(img.digest, check=False)
        assert resp.status.code == Code.OK, resp.status.message
        # Out of the store at once; its files deleted by a child process soon after.
        assert not os.path.exists(os.path.join(images_dir, img.digest))
        deadline = time.monotonic() + 20
        while [n for n in os.listdir(images_dir) if n.startswith(".tmp-rm-")]:
            assert time.monotonic() < deadline, os.listdir(images_dir)
            time.sleep(0.05)
        assert len(c.list_images()) == 0


def test_imports_run_in_hostd_import_and_hostd_maps_no_fetch_library(store_hostd, tarballs):
    """The fetch and the unpack live in hostd-import: hostd's own process maps neither libcurl
    nor libarchive (a start's clone3 copies every mapping hostd has), yet an import through it
    works, and one whose helper ends on its own (a wrong digest) says why."""
    with open(f"/proc/{store_hostd.proc.pid}/maps") as f:
        maps = f.read()
    for lib in ("libcurl", "libarchive"):
        assert lib not in maps, f"hostd maps {lib}"
    with store_hostd.client() as c:
        img = import_image(c, *tarballs["stack"], pb.IMAGE_KIND_STACK)
        assert img.digest == tarballs["stack"][1]
        bad = "0" * 64
        with pytest.raises(HostdError) as e:
            import_image(c, tarballs["slug"][0], bad, pb.IMAGE_KIND_SLUG)
        assert "sha256 mismatch" in str(e.value), e.value
        assert bad not in [i.digest for i in c.list_images()]
