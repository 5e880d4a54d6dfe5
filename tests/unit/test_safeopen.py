"""safeopen.DirFds against the real kernel, with openat2 and with the O_NOFOLLOW
walk it falls back to (forced here, as on a kernel or seccomp profile without
openat2): neither follows a symlink, leaves its root, or chokes on a path
longer than PATH_MAX. And the extractor refuses a planted symlink either way."""

from __future__ import annotations

import errno
import io
import os
import tarfile

import pytest

from minirun.errors import BadImage
from minirun.lib.fsutil import remove_tree
from minirun.layer import safeopen
from minirun.layer.unpack import unpack_blob


@pytest.fixture(params=["openat2", "walk"])
def mode(request, monkeypatch):
    if request.param == "walk":
        monkeypatch.setattr(safeopen, "_openat2_usable", False)
        monkeypatch.setattr(safeopen.linux, "openat2", _must_not_be_called)
    return request.param


def _must_not_be_called(*args):
    raise AssertionError("openat2 used after the fallback was forced")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(str(tmp_path / "outside"), root / "a" / "abs")
    os.symlink("..", root / "a" / "up")
    os.symlink("b", root / "a" / "rel")
    return root


def where(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_opens_real_directories(tree, mode):
    with safeopen.DirFds(str(tree)) as dirs:
        assert where(dirs.get("a/b")) == str(tree / "a" / "b")
        assert where(dirs.get("a")) == str(tree / "a")
        assert where(dirs.get("")) == str(tree)


@pytest.mark.parametrize("rel", ["a/abs", "a/up", "a/rel", "a/abs/x", "a/rel/."])
def test_never_follows_a_symlink(tree, mode, rel):
    with safeopen.DirFds(str(tree)) as dirs, pytest.raises(OSError) as caught:
        dirs.get(rel)
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV)


def test_dotdot_never_leaves_the_root(tree, mode):
    with safeopen.DirFds(str(tree)) as dirs:
        try:
            fd = safeopen.open_beneath(dirs.root_fd, "a/../../..")
        except OSError as exc:                     # the walk refuses '..' outright
            assert mode == "walk" and exc.errno == errno.EXDEV
        else:                                      # openat2 RESOLVE_IN_ROOT clamps it at the root
            assert mode == "openat2" and where(fd) == str(tree)
            os.close(fd)


def test_paths_longer_than_path_max(tmp_path, mode):
    root = tmp_path / "deep"
    root.mkdir()
    parts = ["d" * 200] * 30                       # 6029 bytes
    fd = os.open(root, os.O_RDONLY)
    for part in parts:
        os.mkdir(part, dir_fd=fd)
        child = os.open(part, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    try:
        with safeopen.DirFds(str(root)) as dirs:
            deep = dirs.get("/".join(parts))
            os.mkdir("leaf", dir_fd=deep)
            assert "leaf" in os.listdir(deep)
    finally:
        remove_tree(str(root))


def test_cache_keeps_at_most_its_size_and_forget_closes_below(tree, mode):
    names = [f"d{i}" for i in range(safeopen.CACHE + 10)]
    for name in names:
        (tree / "a" / "b" / name).mkdir()
    with safeopen.DirFds(str(tree)) as dirs:
        for name in names:
            dirs.get(f"a/b/{name}")
        assert len(dirs.cache) == safeopen.CACHE
        dirs.forget("a")
        assert not [k for k in dirs.cache if k == "a" or k.startswith("a/")]


def _tar(*entries) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link, data in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    buf.seek(0)
    return buf


def test_extractor_refuses_to_write_through_a_planted_link_either_way(tmp_path, mode):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "layer"
    dest.mkdir()
    layer = _tar(("s", tarfile.SYMTYPE, str(outside), b""), ("s/evil", tarfile.REGTYPE, "", b"x"))
    with pytest.raises(BadImage, match="'s/evil'"):
        unpack_blob(layer, "none", str(dest))
    assert os.listdir(outside) == []


def test_the_kernel_refuses_a_link_the_bookkeeping_never_saw(tmp_path, mode):
    """A symlink already in the layer dir (planted by someone else, so the
    extractor's records know nothing of it): the dir fd resolution stops there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "layer"
    dest.mkdir()
    os.symlink(str(outside), dest / "s")
    layer = _tar(("s/evil", tarfile.REGTYPE, "", b"x"))
    with pytest.raises(BadImage, match="'s"):
        unpack_blob(layer, "none", str(dest))
    assert os.listdir(outside) == []
