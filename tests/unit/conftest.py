"""Shared helpers for the unit tests.

Unit tests need no root and no kernel features: no mounts, no char devices,
no trusted.* xattrs. Tar entries are owned by the current uid/gid, because
the extractor lchown()s every entry to the owner the tar names.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile

import pytest
from hypothesis import configuration as _hypothesis_configuration

from minirun import linux
from minirun.store import root as store_root

MTIME = 1_600_000_000

# Keep hypothesis's example database and caches out of the source tree (which
# may not even be writable when the suite runs as an unprivileged user).
_hypothesis_configuration.set_hypothesis_home_dir(
    os.path.join(tempfile.gettempdir(), f"minirun-unit-hypothesis-{os.getuid()}"))


def sha(data: bytes) -> str:
    """The sha256 digest string of some bytes, computed with hashlib directly."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexdigest(char: str) -> str:
    """A well-formed digest made of one repeated hex digit."""
    return "sha256:" + char * 64


class TarBuilder:
    """Build a layer tar in memory, every entry owned by the current user."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = os.getuid(), os.getgid()
        info.mtime = MTIME
        return info

    def file(self, name: str, data: bytes = b"", mode: int = 0o644) -> "TarBuilder":
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755) -> "TarBuilder":
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))
        return self

    def symlink(self, name: str, target: str) -> "TarBuilder":
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> "TarBuilder":
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def json_bytes(doc) -> bytes:
    return json.dumps(doc).encode()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh store under tmp_path.

    ensure() refuses a store on overlayfs (it cannot hold upper dirs); when the
    unit tests themselves run inside a container whose /tmp is overlayfs, that
    check is irrelevant to what these tests exercise, so it is skipped there."""
    root = tmp_path / "store"
    root.mkdir()
    if linux.statfs_type(str(root)) == linux.OVERLAYFS_SUPER_MAGIC:
        monkeypatch.setattr(store_root, "check_filesystem", lambda _root: None)
    return store_root.Store(str(root)).ensure()
