"""hostctl images: ls, import, rm and gc against a real hostd with its own image store, checked
the way an operator would: what hostctl prints, its exit status, and what is on disk."""

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import time

import pytest

from conftest import BUILD_DIR

# not the cgroup v2 tier: the image store through hostctl
pytestmark = pytest.mark.cgroup_independent

HOSTCTL = os.path.join(BUILD_DIR, "hostctl", "hostctl")
PROGRESS_LINE = re.compile(r"^import [0-9a-f]{12}: \S+ of \S+$", re.M)


def hostctl(h, *args, cwd=None, socket=None, timeout=120):
    return subprocess.run(
        [HOSTCTL, "--socket", socket or h.socket_path, *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _add(tar, name, data=None, mode=0o644):
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))


HELLO = b"#!/bin/sh\necho hello\n"


def make_stack(path, extra=b""):
    """A tiny stack: bin/hello and an empty etc/ (plus extra bytes in var/blob)."""
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "bin")
        _add(tar, "bin/hello", HELLO, 0o755)
        _add(tar, "etc")
        if extra:
            _add(tar, "var")
            _add(tar, "var/blob", extra)
    return str(path), sha256_of(path)


def make_slug(path):
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "app")
        _add(tar, "app/hello.txt", b"hello from the slug\n")
    return str(path), sha256_of(path)


def tar_folder(src, path):
    """A tarball of the folder src, its content at the top (symlinks kept as symlinks)."""
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(os.listdir(src)):
            tar.add(os.path.join(src, name), arcname=name)
    return str(path), sha256_of(path)


@pytest.fixture
def store(hostd_factory, tmp_path):
    """A hostd whose image store is a fresh folder of the test's: (hostd, images folder)."""
    images = tmp_path / "images"
    return hostd_factory(images_dir=str(images)), images


def ls_json(h):
    r = hostctl(h, "--json", "images", "ls")
    assert r.returncode == 0, r.stderr
    return {i["digest"]: i for i in json.loads(r.stdout)["images"]}


def on_disk(images):
    """The store's entries but its lock files (a free lock file is only a name)."""
    if not images.is_dir():
        return set()
    return {n for n in os.listdir(images) if not n.startswith(".lock-")}


def test_import_a_stack_then_list_it_and_import_again(store, tmp_path):
    h, images = store
    src, digest = make_stack(tmp_path / "stack.tar.gz")

    r = hostctl(h, "images", "import", src, "--sha256", digest.upper(), "--kind", "stack")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split()[:4] == ["DIGEST", "KIND", "SIZE", "USERS"]
    assert row.split()[:2] == [digest[:12], "stack"]

    listed = ls_json(h)
    assert list(listed) == [digest]
    img = listed[digest]
    assert img["kind"] == "stack" and img["users"] == 0
    assert img["size_bytes"] >= len(HELLO)
    assert img["imported_usec"] > 0
    # Never used by a dyno: "last used" is 0 or the import (the start of its LRU life).
    assert img["last_used_usec"] in (0, img["imported_usec"])
    # Unpacked into the store, named by its digest.
    assert (images / digest / "rootfs" / "bin" / "hello").read_bytes() == HELLO
    assert (images / digest / "rootfs" / "etc").is_dir()

    # The table: short digest by default, the whole one with --no-trunc.
    r = hostctl(h, "images", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["DIGEST", "KIND", "SIZE", "USERS", "IMPORTED",
                                                "LAST", "USED"]
    assert r.stdout.splitlines()[1].split()[:2] == [digest[:12], "stack"]
    assert digest not in r.stdout
    r = hostctl(h, "images", "ls", "--no-trunc")
    assert r.stdout.splitlines()[1].split()[0] == digest

    # Again: fine, and the same image.
    r = hostctl(h, "--json", "images", "import", src, "--sha256", digest, "--kind", "stack")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["digest"] == digest and again["kind"] == "stack"
    assert again["imported_usec"] == img["imported_usec"]
    assert ls_json(h) == listed


def test_import_a_slug_from_a_relative_path(store, tmp_path):
    h, images = store
    _, digest = make_slug(tmp_path / "slug.tar.gz")
    # hostd does not share our working folder: hostctl sends the absolute path.
    r = hostctl(h, "--json", "images", "import", "slug.tar.gz", "--sha256", digest,
                "--kind", "slug", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "slug"
    assert ls_json(h)[digest]["kind"] == "slug"
    assert (images / digest / "rootfs" / "app" / "hello.txt").read_bytes() == \
        b"hello from the slug\n"


def test_a_wrong_sha256_fails_and_leaves_nothing(store, tmp_path):
    h, images = store
    src, digest = make_stack(tmp_path / "stack.tar.gz")
    _, other = make_slug(tmp_path / "slug.tar.gz")
    before_ls, before_disk = ls_json(h), on_disk(images)

    r = hostctl(h, "images", "import", src, "--sha256", other, "--kind", "stack")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "sha256" in r.stderr.lower(), r.stderr
    assert r.stdout == ""
    assert ls_json(h) == before_ls
    assert on_disk(images) == before_disk
    # The right digest still imports.
    r = hostctl(h, "images", "import", src, "--sha256", digest, "--kind", "stack")
    assert r.returncode == 0, r.stderr


def test_rm_removes_the_image_from_the_list_and_the_disk(store, tmp_path):
    h, images = store
    src, digest = make_stack(tmp_path / "stack.tar.gz")
    assert hostctl(h, "images", "import", src, "--sha256", digest, "--kind", "stack").returncode == 0
    assert (images / digest).is_dir()

    r = hostctl(h, "images", "rm", digest)
    assert r.returncode == 0, r.stderr
    assert digest in r.stdout
    assert digest not in ls_json(h)
    assert not (images / digest).exists()

    # Gone: hostd says so, with exit status 1.
    r = hostctl(h, "images", "rm", digest)
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr, r.stderr
    # A prefix is refused before anything is sent (2), even one that was unique.
    assert hostctl(h, "images", "import", src, "--sha256", digest, "--kind", "stack").returncode == 0
    r = hostctl(h, "images", "rm", digest[:12])
    assert r.returncode == 2 and "64 hex" in r.stderr, r.stderr
    assert digest in ls_json(h)
    r = hostctl(h, "--json", "images", "rm", digest)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"removed": [digest]}
    assert ls_json(h) == {}


def test_gc_with_no_budget_left_removes_unused_images(store, tmp_path):
    h, images = store
    stack, sd = make_stack(tmp_path / "stack.tar.gz")
    slug, ld = make_slug(tmp_path / "slug.tar.gz")
    for src, d, kind in ((stack, sd, "stack"), (slug, ld, "slug")):
        assert hostctl(h, "images", "import", src, "--sha256", d, "--kind", kind).returncode == 0
    sizes = {d: i["size_bytes"] for d, i in ls_json(h).items()}
    assert set(sizes) == {sd, ld}

    r = hostctl(h, "images", "gc", "--budget", "0")
    assert r.returncode == 0, r.stderr
    assert f"removed {sd}" in r.stdout and f"removed {ld}" in r.stdout, r.stdout
    assert "freed" in r.stdout
    assert ls_json(h) == {}
    assert not (images / sd).exists() and not (images / ld).exists()

    # --json: the digests and the bytes; nothing left to remove the second time.
    assert hostctl(h, "images", "import", slug, "--sha256", ld, "--kind", "slug").returncode == 0
    r = hostctl(h, "--json", "images", "gc", "--budget", "0")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"removed": [ld], "freed_bytes": sizes[ld]}
    r = hostctl(h, "--json", "images", "gc", "--budget", "0")
    assert json.loads(r.stdout) == {"removed": [], "freed_bytes": 0}


def test_gc_and_rm_leave_an_image_a_dyno_uses(store, rootfs, tmp_path):
    h, images = store
    stack, sd = tar_folder(rootfs.stack, tmp_path / "busybox-stack.tar.gz")
    slug, ld = tar_folder(rootfs.slug, tmp_path / "web-slug.tar.gz")
    for src, d, kind in ((stack, sd, "stack"), (slug, ld, "slug")):
        r = hostctl(h, "images", "import", src, "--sha256", d, "--kind", kind)
        assert r.returncode == 0, r.stderr
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"id": "img-user", "type": "worker", "command": "exec sleep 1000",
                                "stack_digest": sd, "slug_digest": ld}))
    r = hostctl(h, "start", "--spec", str(spec))
    assert r.returncode == 0, r.stderr

    listed = ls_json(h)
    assert listed[sd]["users"] == 1 and listed[ld]["users"] == 1
    assert listed[sd]["last_used_usec"] > 0
    r = hostctl(h, "images", "rm", sd)
    assert r.returncode == 1 and "FAILED_PRECONDITION" in r.stderr, r.stderr
    r = hostctl(h, "--json", "images", "gc", "--budget", "0")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["removed"] == []
    assert (images / sd / "rootfs" / "bin" / "busybox").exists()

    assert hostctl(h, "stop", "img-user", "--grace", "1").returncode == 0
    assert ls_json(h)[sd]["users"] == 0
    r = hostctl(h, "--json", "images", "gc", "--budget", "0")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)["removed"]) == sorted([sd, ld])
    assert not (images / sd).exists()


def test_progress_lines_when_not_on_a_terminal(store, tmp_path):
    h, images = store
    # Random data does not compress: the tarball is as big as the blob.
    src, digest = make_stack(tmp_path / "big.tar.gz", extra=os.urandom(6 << 20))
    r = hostctl(h, "images", "import", src, "--sha256", digest, "--kind", "stack")
    assert r.returncode == 0, r.stderr
    lines = PROGRESS_LINE.findall(r.stderr)
    assert lines, r.stderr
    assert all(l.startswith(f"import {digest[:12]}: ") for l in lines)
    # A pipe gets plain lines, never a bar redrawn with carriage returns.
    assert "\r" not in r.stderr and "[" not in r.stderr
    # At most one a tenth (and one a second): a few lines, not one a chunk.
    assert len(lines) <= 11 + 10, lines
    assert ls_json(h)[digest]["size_bytes"] >= 6 << 20
    assert (images / digest / "rootfs" / "var" / "blob").stat().st_size == 6 << 20


def test_help_of_each_images_command(hostd):
    r = hostctl(hostd, "--help")
    assert r.returncode == 0
    for words in ("images ls", "images import", "images rm", "images gc"):
        assert words in r.stdout
    r = hostctl(hostd, "images", "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: hostctl images"), r.stdout
    for sub in ("ls", "import", "rm", "gc"):
        r = hostctl(hostd, "images", sub, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"Usage: hostctl images {sub}"), r.stdout
        assert "--json" in r.stdout


def test_usage_errors_send_nothing(tmp_path):
    # No hostd at all: a usage error (2) comes before any attempt to connect (which gives 3).
    class Nowhere:
        socket_path = str(tmp_path / "nothing.sock")

    d = "ab" * 32
    for args, what in (
        (("images",), "missing command"),
        (("images", "frob"), "frob"),
        (("images", "import", "/x.tar", "--kind", "stack"), "--sha256"),
        (("images", "import", "/x.tar", "--sha256", d[:-1], "--kind", "stack"), "--sha256"),
        (("images", "import", "/x.tar", "--sha256", d[:-1] + "g", "--kind", "stack"), "--sha256"),
        (("images", "import", "/x.tar", "--sha256", d), "--kind"),
        (("images", "import", "/x.tar", "--sha256", d, "--kind", "app"), "--kind"),
        (("images", "import", "ftp://host/x.tar", "--sha256", d, "--kind", "slug"), "ftp://"),
        (("images", "import", "--sha256", d, "--kind", "slug"), "SOURCE"),
        (("images", "rm", d[:12]), "64 hex"),
        (("images", "gc", "--budget", "1.5"), "--budget"),
        (("images", "gc", "--budget", "2g"), "--budget"),
        (("images", "gc", "--budget", "1e3"), "--budget"),
        (("images", "gc", "--budget", "-1"), "--budget"),
        (("images", "gc", "--budget", "99999999999999999999"), "--budget"),
        (("images", "ls", "extra"), "extra"),
    ):
        r = hostctl(Nowhere, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert what in r.stderr, (args, r.stderr)
    # Well-formed ones get as far as connecting.
    for args in (("images", "gc", "--budget", "512M"), ("images", "gc", "--budget", "2.5G"),
                 ("images", "import", "rel.tar", "--sha256", d.upper(), "--kind", "SLUG"),
                 ("images", "import", "https://example.com/x.tgz", "--sha256", d, "--kind", "stack")):
        r = hostctl(Nowhere, *args)
        assert r.returncode == 3, (args, r.stderr)
