"""A corpus of hostile layers, each loaded through the real CLI.

Every case either extracts safely inside its layer dir (and the test says what
must be true there) or is refused with one line naming the entry, leaving the
store as it was. In every case a canary directory beside the store, which the
planted links point at, is left exactly as it was (contents, modes, times).
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from typing import Callable

import pytest

from minirun.tree import snapshot

from .imagebuild import write_layout

CANARY = "@CANARY@"          # replaced by the canary's absolute path when a case is built


def e(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, link: str = "",
      xattrs: dict | None = None, dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 1700000000
    info.linkname = link
    info.devmajor, info.devminor = dev
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info, data


def tar_of(entries, canary: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.name = info.name.replace(CANARY, canary)
            info.linkname = info.linkname.replace(CANARY, canary)
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


@dataclass
class Case:
    name: str
    entries: list
    refused: str | None = None                      # a word of the one-line error
    check: Callable[[dict, str], bool] | None = None  # (snapshot of diff/, diff path) -> ok
    raw: Callable[[bytes], bytes] | None = None       # edit the tar bytes (headers that lie)
    env: dict | None = None                            # limits for this load


def only(*paths):
    return lambda snap, _: set(snap) == set(paths)


def _sparse(name: str, real_size: int) -> tuple[tarfile.TarInfo, bytes]:
    """A PAX (GNU 1.0) sparse file: one byte of data, real_size declared."""
    data = b"1\n0\n1\n".ljust(512, b"\0") + b"x"
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    info.type, info.mode, info.mtime, info.size = tarfile.REGTYPE, 0o644, 1700000000, len(data)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(real_size)}
    return info, data


DIR, SYM, LNK = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

CASES = [
    Case("dotdot", [e("../escape", data=b"x")], refused="escape"),
    Case("dotdot-nested", [e("a/../../escape", data=b"x")], refused="escape"),
    Case("absolute-name", [e("/abs/file", data=b"x")],
         check=lambda s, _: s["/abs/file"]["type"] == "file"),
    Case("write-through-symlink-to-root", [e("s", SYM, link="/"), e("s/evil", data=b"x")], refused="s/evil"),
    Case("write-through-symlink-to-dotdot", [e("up", SYM, link=".."), e("up/evil", data=b"x")],
         refused="up/evil"),
    Case("write-through-symlink-to-canary", [e("c", SYM, link=CANARY), e("c/evil", data=b"x")],
         refused="c/evil"),
    Case("symlink-chain", [e("a", SYM, link="b"), e("b", SYM, link=CANARY), e("a/evil", data=b"x")],
         refused="a/evil"),
    Case("mkdir-through-symlink", [e("c", SYM, link=CANARY), e("c/newdir", DIR, mode=0o755)],
         refused="c/newdir"),
    Case("symlink-then-directory", [e("s", SYM, link=CANARY), e("s", DIR, mode=0o755), e("s/f", data=b"in")],
         check=lambda s, _: s["/s"]["type"] == "dir" and s["/s/f"]["type"] == "file"),
    Case("directory-then-symlink-then-write", [e("d", DIR, mode=0o755), e("d", SYM, link=CANARY),
                                               e("d/f", data=b"x")], refused="d/f"),
    Case("hardlink-outside", [e("h", LNK, link="../../etc/passwd")], refused="h"),
    Case("hardlink-absolute", [e("h", LNK, link=CANARY + "/secret")], refused="h"),
    Case("hardlink-to-later-entry", [e("h", LNK, link="later"), e("later", data=b"x")], refused="h"),
    Case("hardlink-to-symlink", [e("s", SYM, link=CANARY + "/secret"), e("h", LNK, link="s")],
         check=lambda s, _: s["/h"]["type"] == "symlink" and s["/h"]["target"].endswith("/secret")),
    Case("hardlink-through-symlinked-parent", [e("c", SYM, link=CANARY), e("h", LNK, link="c/secret")],
         refused="h"),
    Case("whiteout-empty-name", [e(".wh.", data=b"")], refused=".wh."),
    Case("whiteout-of-dot", [e(".wh..", data=b"")], refused=".wh.."),
    Case("whiteout-of-dotdot", [e(".wh...", data=b"")], refused=".wh..."),
    Case("whiteout-through-symlink", [e("c", SYM, link=CANARY), e("c/.wh.secret", data=b"")],
         refused="c/.wh.secret"),
    Case("whiteout-inside-whited-out-dir", [e(".wh.d", data=b""), e("d/.wh.x", data=b"")],
         refused="d/.wh.x"),
    Case("file-becomes-dir", [e("p", data=b"file"), e("p", DIR, mode=0o755), e("p/q", data=b"x")],
         check=lambda s, _: s["/p"]["type"] == "dir" and s["/p/q"]["type"] == "file"),
    Case("dir-becomes-file", [e("p", DIR, mode=0o755), e("p/q", data=b"x"), e("p", data=b"file")],
         check=lambda s, _: s["/p"]["type"] == "file" and "/p/q" not in s),
    Case("duplicate-entries-last-wins", [e("f", data=b"first"), e("f", data=b"second!")],
         check=lambda s, _: s["/f"]["size"] == 7),
    Case("declared-size-larger-than-data", [e("f", data=b"x" * 600)], refused="truncated",
         raw=lambda t: _lie_about_size(t, "f", 100_000)),
    Case("header-size-smaller-than-data", [e("f", data=b"y" * 2000), e("g", data=b"z")], refused="corrupt",
         raw=lambda t: _lie_about_size(t, "f", 10)),
    Case("char-device-stays-data", [e("dev/mynull", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))],
         check=lambda s, _: s["/dev/mynull"] == {**s["/dev/mynull"], "type": "char", "rdev": [1, 3]}),
    Case("block-device-stays-data", [e("dev/disk", tarfile.BLKTYPE, mode=0o660, dev=(8, 0))],
         check=lambda s, _: s["/dev/disk"]["type"] == "block" and s["/dev/disk"]["rdev"] == [8, 0]),
    Case("fifo", [e("pipe", tarfile.FIFOTYPE, mode=0o644)], check=lambda s, _: s["/pipe"]["type"] == "fifo"),
    Case("setuid-setgid-kept", [e("bin/su", data=b"#!/bin/sh\n", mode=0o6755)],
         check=lambda s, _: s["/bin/su"]["mode"] == 0o6755),
    Case("pax-long-name", [e("l/" + "n" * 250 + "/" + "m" * 200, data=b"deep")],
         check=lambda s, _: any(p.endswith("m" * 200) for p in s)),
    Case("xattr-trusted-overlay-refused", [e("d", DIR, mode=0o755, xattrs={"trusted.overlay.opaque": "y",
                                                                         "trusted.overlay.redirect": "/x"})],
         check=lambda s, path: s["/d"]["opaque"] is False and
         not any(n.startswith("trusted.overlay.") for n in os.listxattr(os.path.join(path, "d")))),
    Case("xattr-user-kept", [e("f", data=b"x", xattrs={"user.note": "hi"})],
         check=lambda s, path: os.getxattr(os.path.join(path, "f"), "user.note") == b"hi"),
    Case("hardlink-to-directory", [e("d", DIR, mode=0o755), e("h", LNK, link="d")], refused="h"),
    Case("sparse-file-of-a-terabyte", [_sparse("sparse", 1 << 40)], refused="MINIRUN_MAX_LAYER_BYTES"),
    Case("decompression-bomb", [e("zeros", data=bytes(30_000_000))], refused="MINIRUN_MAX_LAYER_BYTES",
         env={"MINIRUN_MAX_LAYER_BYTES": "10000000"}),
    Case("too-many-entries", [e(f"f{i}", data=b"") for i in range(60)], refused="MINIRUN_MAX_LAYER_ENTRIES",
         env={"MINIRUN_MAX_LAYER_ENTRIES": "50"}),
    Case("within-the-limits", [e("zeros", data=bytes(2_000_000))],
         env={"MINIRUN_MAX_LAYER_BYTES": "10000000"}, check=lambda s, _: s["/zeros"]["size"] == 2_000_000),
]


def _lie_about_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the size field of entry `name`'s ustar header (and its checksum)."""
    raw = bytearray(data)
    offset = 0
    while offset < len(raw):
        header = raw[offset:offset + 512]
        if header[:len(name) + 1] == name.encode() + b"\0":
            raw[offset + 124:offset + 136] = f"{size:011o}\0".encode()
            raw[offset + 148:offset + 156] = b" " * 8
            checksum = sum(raw[offset:offset + 512])
            raw[offset + 148:offset + 156] = f"{checksum:06o}\0 ".encode()
            return bytes(raw)
        offset += 512
    raise AssertionError(f"no header for {name}")


def canary_state(path) -> dict:
    state = snapshot(str(path))
    for rel in [""] + list(state):
        st = os.lstat(str(path) + rel)
        state.setdefault(rel or "/", {})["times"] = (st.st_mtime_ns, st.st_ctime_ns)
    return state


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    path.mkdir()
    (path / "secret").write_text("do not touch\n")
    (path / "sub").mkdir()
    (path / "sub" / "file").write_text("x\n")
    return path


def store_files(mr) -> list[str]:
    out = []
    for sub in ("blobs", "layers", "tmp"):
        base = mr.root / sub
        if base.exists():
            out += sorted(str(p.relative_to(mr.root)) for p in base.rglob("*"))
    return out


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_layer(mr, tmp_path, canary, case):
    layer = tar_of(case.entries, str(canary))
    if case.raw:
        layer = case.raw(layer)
    image = tmp_path / "image"
    write_layout(image, [layer], ref="hostile")
    mr.ok("load", mr.fixture_path("busybox"))             # something in the store to keep intact
    before_store = store_files(mr)
    before_canary = canary_state(canary)
    result = mr("load", str(image), env=case.env)
    assert canary_state(canary) == before_canary, "the canary beside the store changed"
    if case.refused is not None:
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert case.refused in lines[0], lines[0]
        assert store_files(mr) == before_store, "a refused layer left something in the store"
        return
    assert result.returncode == 0, result.stderr
    new = [d for d in mr.layer_dirs() if f"layers/sha256/{d}" not in before_store]
    assert len(new) == 1
    diff = str(mr.root / "layers" / "sha256" / new[0] / "diff")
    assert case.check(snapshot(diff), diff), snapshot(diff)
