"""Sparse blobs and archive members (issue 14, item 9), and 0-byte layer blobs
(item 13), loaded into a store on a 64 MiB tmpfs made here.

A blob, or a member of an archive, that declares more than a layer may hold
(MINIRUN_MAX_LAYER_BYTES) is refused by that declared size before a byte of it
is hashed or stored: one line naming the variable, and the store as it was. One
within the limit is read (its holes as zeros, bounded by the limit) but stored
with its holes kept, so it never fills the store. A 0-byte layer blob is an
empty layer, as Docker takes it.

The loads run with a generous timeout (a hang guard, not a timing assertion):
the old code hashed a declared terabyte in full.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from minirun.layer.tree import snapshot

from . import sparseimages as si
from .conftest import Minirun

TiB = 1 << 40
STORE_FS = "size=64m"


@pytest.fixture
def small_store(tmp_path, fixtures):
    """A Minirun whose store is on a 64 MiB tmpfs, busybox loaded; unmounted after."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", STORE_FS, "tmpfs", str(mount_point)], check=True)
    try:
        cli = Minirun(mount_point / "store", fixtures)
        cli.load("busybox")
        yield cli
        if (cli.root / "containers").is_dir():
            ids = [n for n in os.listdir(cli.root / "containers") if len(n) == 64]
            if ids:
                cli("rm", "-f", *ids)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def store_state(root: Path) -> dict:
    return {path: entry for path, entry in snapshot(str(root)).items() if not path.startswith("/locks")}


def used_bytes(root: Path) -> int:
    st = os.statvfs(root)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def refused_by_the_limit(cli, path: Path, env: dict | None = None, command: tuple = ("load",)) -> str:
    before = store_state(cli.root)
    result = cli(*command, str(path), env=env, timeout=60)
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "MINIRUN_MAX_LAYER_BYTES" in lines[0], lines[0]
    assert store_state(cli.root) == before, "a refused load left something in the store"
    return lines[0]


def base(cli) -> Path:
    return Path(cli.fixture_path("busybox"))


# ---------------------------------------------------------------- over the limit: refused unread

def test_a_terabyte_sparse_blob_in_a_layout_is_refused_by_its_size(small_store, tmp_path):
    image = si.layout(tmp_path / "img", base(small_store), TiB, digest="sha256:" + "ab" * 32)
    line = refused_by_the_limit(small_store, image)
    assert f"is {TiB} bytes" in line


def test_a_sparse_blob_over_a_lowered_limit_is_refused_by_its_size(small_store, tmp_path):
    image = si.layout(tmp_path / "img", base(small_store), 256 << 20, digest="sha256:" + "cd" * 32)
    refused_by_the_limit(small_store, image, env={"MINIRUN_MAX_LAYER_BYTES": str(128 << 20)})


@pytest.mark.parametrize("fmt", ["pax", "gnu"])
def test_an_oci_archive_whose_blob_member_is_a_sparse_terabyte_is_refused(small_store, tmp_path, fmt):
    layout = si.layout(tmp_path / "img", base(small_store), TiB, digest="sha256:" + "ef" * 32)
    archive = si.sparse_tar(layout, tmp_path / "img.tar", fmt)
    assert archive.stat().st_size < 4 << 20
    line = refused_by_the_limit(small_store, archive)
    assert "archive member" in line and str(TiB) in line


@pytest.mark.parametrize("fmt", ["pax", "gnu"])
def test_a_docker_archive_whose_layer_is_a_sparse_terabyte_is_refused(small_store, tmp_path, fmt):
    files = si.docker_dir(tmp_path / "img", base(small_store), TiB, digest="sha256:" + "12" * 32)
    archive = si.sparse_tar(files, tmp_path / "img.tar", fmt)
    line = refused_by_the_limit(small_store, archive)
    assert "sparse/layer.tar" in line and str(TiB) in line


@pytest.mark.parametrize("source", ["/dev/zero", "sparse", "gzip-bomb"])
def test_import_refuses_a_tar_bigger_than_a_layer(small_store, tmp_path, source):
    """`minirun import` stores the tar as a layer blob: bounded like one, by its size
    when it has one, else as it is read, and its uncompressed size too."""
    import gzip
    env = {"MINIRUN_MAX_LAYER_BYTES": str(32 << 20)}
    if source == "sparse":
        path = tmp_path / "rootfs.tar"
        si.sparse_file(path, TiB)
        env = None
    elif source == "gzip-bomb":
        path = tmp_path / "rootfs.tar.gz"
        with gzip.open(path, "wb", compresslevel=9) as f:
            for _ in range(48):
                f.write(bytes(1 << 20))
    else:
        path = Path(source)
    refused_by_the_limit(small_store, path, env=env, command=("import",))


# ---------------------------------------------------------------- within the limit: holes stay holes

SIZE = 512 << 20          # eight times the store's filesystem


def loads_without_filling_the_store(cli, path: Path) -> None:
    before = used_bytes(cli.root)
    result = cli("load", str(path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert used_bytes(cli.root) - before < 8 << 20
    blobs = [cli.root / "blobs" / "sha256" / d[7:] for d in [si.zeros_digest(SIZE)]]
    st = blobs[0].stat()
    assert st.st_size == SIZE and st.st_blocks * 512 < 1 << 20, (st.st_size, st.st_blocks)
    assert cli.ok("run", "--rm", si.REF, "echo", "ok").stdout == "ok\n"
    assert cli.ok("fsck").returncode == 0


def test_a_sparse_blob_within_the_limit_is_stored_sparse(small_store, tmp_path):
    loads_without_filling_the_store(small_store, si.layout(tmp_path / "img", base(small_store), SIZE))


@pytest.mark.parametrize("fmt", ["pax", "gnu"])
def test_a_sparse_archive_member_within_the_limit_is_stored_sparse(small_store, tmp_path, fmt):
    layout = si.layout(tmp_path / "img", base(small_store), SIZE)
    loads_without_filling_the_store(small_store, si.sparse_tar(layout, tmp_path / "img.tar", fmt))


def test_a_sparse_docker_archive_layer_within_the_limit_is_stored_sparse(small_store, tmp_path):
    files = si.docker_dir(tmp_path / "img", base(small_store), SIZE)
    loads_without_filling_the_store(small_store, si.sparse_tar(files, tmp_path / "img.tar", "gnu"))


# ---------------------------------------------------------------- 0-byte layer blobs (item 13)

def empty_layer_loads(mr, path: Path) -> None:
    mr.ok("load", mr.fixture_path("busybox"))
    layers_before = set(mr.layer_dirs())
    mr.ok("load", str(path))
    new = set(mr.layer_dirs()) - layers_before
    assert new == {si.EMPTY_SHA[7:]}
    assert os.listdir(mr.root / "layers" / "sha256" / si.EMPTY_SHA[7:] / "diff") == []
    assert mr.ok("run", "--rm", si.REF, "echo", "ok").stdout == "ok\n"
    assert mr.ok("fsck").returncode == 0


@pytest.mark.parametrize("media_type", [si.OCI_GZIP, si.OCI_TAR])
def test_a_zero_byte_layer_blob_in_a_layout_is_an_empty_layer(mr, tmp_path, media_type):
    empty_layer_loads(mr, si.empty_blob_layout(tmp_path / "img", Path(mr.fixture_path("busybox")), media_type))


def test_a_zero_byte_layer_blob_in_an_oci_archive_is_an_empty_layer(mr, tmp_path):
    layout = si.empty_blob_layout(tmp_path / "img", Path(mr.fixture_path("busybox")))
    empty_layer_loads(mr, si.plain_tar(layout, tmp_path / "img.tar"))


def test_a_zero_byte_layer_file_in_a_docker_archive_is_an_empty_layer(mr, tmp_path):
    files = si.empty_blob_docker_dir(tmp_path / "img", Path(mr.fixture_path("busybox")))
    empty_layer_loads(mr, si.plain_tar(files, tmp_path / "img.tar"))


def test_a_zero_byte_blob_must_still_match_its_digest_and_diff_id(mr, tmp_path):
    """Empty is a content like any other: a diff_id other than sha256 of nothing is refused."""
    bad = si.layout(tmp_path / "img", Path(mr.fixture_path("busybox")), 0, si.EMPTY_SHA, si.OCI_GZIP,
                    diff_id="sha256:" + "5f" * 32)
    result = mr("load", str(bad))
    assert result.returncode == 1 and "diff_id" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
