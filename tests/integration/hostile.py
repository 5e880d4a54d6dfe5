"""The hostile-layer corpus: layer tars built to break an extractor, each with
the one outcome `minirun load` must give it.

    Case(name, entries, refused="...")   exit 1, one line holding this text
                                         (the entry's name, or the limit's variable)
    Case(name, entries, expect={...})    loads; the layer dir is exactly `expect`
                                         (minirun.tree.compare over the whole tree,
                                         parents added by with_parents), plus
                                         `checks` (xattrs, holes, inodes) and `run`:
                                         argv in a container of busybox + this
                                         layer, and the stdout it must print

An entry is an Entry from e(); `raw` edits the finished tar where tarfile will
not write the lie (a wrong size field), `tar` replaces the builder where tarfile
cannot write the format at all, `fmt` and `global_pax` choose tarfile's format
and a global PAX header. CANARY stands for the canary dir's absolute path in
names, link targets, expectations and commands: the planted links point at it,
and it must never change.

build_image(dest, base, case, canary) writes an OCI layout: the base layout's
layers (the busybox fixture), then the hostile layer, named localhost/hostile.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from minirun.lib.fsutil import walk_here
from minirun.layer.tree import describe, directory, file, symlink, whiteout

from .sparsetar import sparse_tar

CANARY = "@CANARY@"
REF = "localhost/hostile:latest"
MTIME = 1700000000
REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
CHR, BLK, FIFO = tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE


# ---------------------------------------------------------------- entries and cases

@dataclass
class Entry:
    name: str
    kind: bytes = REG
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    owner: tuple[int, int] = (0, 0)
    mtime: float = MTIME
    pax: dict = field(default_factory=dict)

    def tarinfo(self, canary: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name.replace(CANARY, canary))
        info.type, info.mode, info.mtime = self.kind, self.mode, self.mtime
        info.linkname = self.link.replace(CANARY, canary)
        info.devmajor, info.devminor = self.dev
        info.uid, info.gid = self.owner
        info.size = len(self.data) if self.kind == REG else 0
        info.pax_headers = dict(self.pax)
        return info


def e(name: str, kind: bytes = REG, data: bytes = b"", mode: int = 0o644, link: str = "",
      xattrs: dict | None = None, pax: dict | None = None, **fields) -> Entry:
    headers = {f"SCHILY.xattr.{k}": v for k, v in (xattrs or {}).items()}
    headers.update(pax or {})
    return Entry(name, kind, data, mode, link, pax=headers, **fields)


@dataclass
class Case:
    name: str
    entries: list = field(default_factory=list)
    refused: str | None = None
    expect: dict | None = None
    checks: list = field(default_factory=list)       # (diff dir, canary) -> None, asserting
    run: tuple[list[str], str] | None = None
    env: dict | None = None
    raw: Callable[[bytes], bytes] | None = None
    tar: Callable[[], bytes] | None = None
    fmt: int = tarfile.PAX_FORMAT
    global_pax: dict | None = None

    def layer(self, canary: str) -> bytes:
        if self.tar is not None:
            return self.tar()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=self.fmt, pax_headers=self.global_pax) as tar:
            for entry in self.entries:
                info = entry.tarinfo(canary)
                tar.addfile(info, io.BytesIO(entry.data) if entry.kind == REG else None)
        data = buf.getvalue()
        return self.raw(data) if self.raw else data


# ---------------------------------------------------------------- raw tricks

def lie_about_size(name: str, size: int) -> Callable[[bytes], bytes]:
    """Rewrite the size field of entry `name`'s ustar header (and its checksum)."""
    def edit(data: bytes) -> bytes:
        raw = bytearray(data)
        for offset in range(0, len(raw), 512):
            if raw[offset:offset + len(name) + 1] == name.encode() + b"\0":
                raw[offset + 124:offset + 136] = f"{size:011o}\0".encode()
                _checksum(raw, offset)
                return bytes(raw)
        raise AssertionError(f"no header for {name}")
    return edit


def _checksum(raw: bytearray, offset: int) -> None:
    raw[offset + 148:offset + 156] = b" " * 8
    raw[offset + 148:offset + 156] = f"{sum(raw[offset:offset + 512]):06o}\0 ".encode()


def gnu_sparse_cut_short() -> bytes:
    """An old GNU sparse header ('S') that promises an extension block, then the end."""
    raw = bytearray(512)
    raw[0:16] = b"sparse-cut-short"
    for offset, text in ((100, "0000644"), (108, "0000000"), (116, "0000000"),
                         (124, "00000000000"), (136, f"{MTIME:011o}")):
        raw[offset:offset + len(text) + 1] = text.encode() + b"\0"
    raw[156:157] = b"S"
    raw[257:265] = b"ustar  \0"
    raw[482] = 1                                         # isextended
    raw[483:495] = b"00000100000\0"                       # realsize
    _checksum(raw, 0)
    return bytes(raw)


def sparse(name: str, real_size: int, at: int = 0, data: bytes = b"x") -> Entry:
    """A GNU 1.0 (PAX) sparse file: `data` at offset `at`, real_size declared."""
    sparse_map = f"1\n{at}\n{len(data)}\n".encode().ljust(512, b"\0")
    return Entry(f"GNUSparseFile.0/{name}", data=sparse_map + data,
                 pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                      "GNU.sparse.realsize": str(real_size)})


def sparse_map_bomb() -> Entry:
    """A GNU 1.0 sparse map that promises a billion segments: tarfile reads them all first."""
    body = b"1000000000\n" + b"0\n0\n" * 400_000
    return Entry("GNUSparseFile.0/bomb", data=body,
                 pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "bomb",
                      "GNU.sparse.realsize": "1"})


# ---------------------------------------------------------------- expectations and checks

def char(major: int, minor: int, **fields) -> dict:
    return {"type": "char", "rdev": [major, minor], **fields}


def block(major: int, minor: int, **fields) -> dict:
    return {"type": "block", "rdev": [major, minor], **fields}


def fifo(**fields) -> dict:
    return {"type": "fifo", **fields}


def with_parents(expect: dict) -> dict:
    """Every ancestor of an expected path is expected too, as a directory."""
    out = dict(expect)
    for path in expect:
        parent = path.rpartition("/")[0]
        while parent and parent not in out:
            out[parent] = {"type": "dir"}
            parent = parent.rpartition("/")[0]
    return out


def substitute(value, canary: str):
    """CANARY replaced by the canary's path in every string of a nested value."""
    if isinstance(value, str):
        return value.replace(CANARY, canary)
    if isinstance(value, dict):
        return {substitute(k, canary): substitute(v, canary) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(substitute(v, canary) for v in value)
    return value


HASHED_UP_TO = 1 << 30      # a bigger file is described without its sha256 (a sparse TiB)


def layer_snapshot(root: str) -> dict[str, dict]:
    """minirun.tree.snapshot, walking by dir fd so paths longer than PATH_MAX work."""
    return {"/" + rel: _describe(name, st) for rel, name, st in walk_here(root)}


def _describe(name: str, st: os.stat_result) -> dict:
    if st.st_size <= HASHED_UP_TO or not stat.S_ISREG(st.st_mode):
        return describe(name, st)
    return {"type": "file", "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            "size": st.st_size, "nlink": st.st_nlink}


def xattr_is(rel: str, name: str, value: bytes):
    def check(diff: str, canary: str) -> None:
        path = os.path.join(diff, rel.replace(CANARY, canary).lstrip("/"))
        assert os.getxattr(path, name, follow_symlinks=False) == value, (rel, name)
    return check


def no_overlay_xattrs(rel: str):
    def check(diff: str, canary: str) -> None:
        names = os.listxattr(os.path.join(diff, rel.lstrip("/")), follow_symlinks=False)
        assert not [n for n in names if n.startswith("trusted.overlay.")], names
    return check


def same_inode(a: str, b: str):
    def check(diff: str, canary: str) -> None:
        sa, sb = (os.lstat(os.path.join(diff, p.lstrip("/"))) for p in (a, b))
        assert (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino), (a, b)
    return check


def holes(rel: str, max_allocated: int):
    def check(diff: str, canary: str) -> None:
        st = os.lstat(os.path.join(diff, rel.lstrip("/")))
        assert st.st_blocks * 512 <= max_allocated, (st.st_size, st.st_blocks)
    return check


# ---------------------------------------------------------------- the image

def build_image(dest: Path, base: Path, case: Case, canary: str) -> None:
    """An OCI layout: base's layers, then the case's layer (gzip), as localhost/hostile."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (base / "blobs" / "sha256").iterdir():
        shutil.copyfile(blob, blobs / blob.name)

    def read(desc: dict) -> dict:
        return json.loads((blobs / desc["digest"].split(":", 1)[1]).read_bytes())

    def put(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    manifest = read(json.loads((base / "index.json").read_text())["manifests"][0])
    config = read(manifest["config"])
    layer = case.layer(canary)
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(layer).hexdigest())
    config.setdefault("history", []).append({"created": "2024-01-01T00:00:00Z",
                                             "created_by": f"hostile layer {case.name}"})
    manifest["layers"].append(put(gzip.compress(layer, compresslevel=1, mtime=0),
                                  "application/vnd.oci.image.layer.v1.tar+gzip"))
    manifest["config"] = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    desc = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"org.opencontainers.image.ref.name": REF}
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))


# ---------------------------------------------------------------- the corpus

DEEP = "/".join(["p" * 200] * 25)                    # 5024 bytes: past PATH_MAX (4096)
CAP = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")   # cap_net_bind_service
SPARSE_AT = 32 << 20


TiB = 1 << 40
SPARSE_FORMATS = ("0.0", "0.1", "1.0", "old")
SPARSE_SEGMENTS = [(0, b"head"), (32 << 20, b"middle" * 1000), ((64 << 20) - 4, b"tail")]
MANY_SEGMENTS = [(i << 20, bytes([65 + i % 26]) * 100) for i in range(30)]


def _segments_content(size: int, segments: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(size)
    for offset, data in segments:
        out[offset:offset + len(data)] = data
    return bytes(out)


def _sparse_content() -> bytes:
    return bytes(SPARSE_AT) + b"x" + bytes((64 << 20) - SPARSE_AT - 1)


CASES = [
    # ---- names: traversal, absolute, odd spellings
    Case("dotdot", [e("../escape", data=b"x")], refused="'../escape'"),
    Case("dotdot-nested", [e("a/../../escape", data=b"x")], refused="'a/../../escape'"),
    Case("dotdot-in-pax-path", [e("../" + "q" * 120, data=b"x")], refused="path escapes the layer"),
    Case("dotdot-in-gnu-long-name", [e("../" + "g" * 120, data=b"x")], fmt=tarfile.GNU_FORMAT,
         refused="path escapes the layer"),
    Case("dotdot-in-global-pax-header", [e("innocent", data=b"x")], global_pax={"path": "../global"},
         refused="'../global'"),
    Case("nul-in-pax-name", [e("n" * 120 + "\0evil", data=b"x")], refused="NUL byte"),
    Case("absolute-name", [e("/abs/file", data=b"x")],
         expect={"/abs": directory(mode=0o755), "/abs/file": file(b"x", mode=0o644)},
         run=(["cat", "/abs/file"], "x")),
    Case("absolute-name-of-the-canary", [e(CANARY + "/evil", data=b"inside\n")],
         expect={CANARY + "/evil": file(b"inside\n")}, run=(["cat", CANARY + "/evil"], "inside\n")),
    Case("dots-and-slashes", [e("./a//b/./c", data=b"c"), e("/./d/", DIR, mode=0o750)],
         expect={"/a/b/c": file(b"c"), "/d": directory(mode=0o750)}),
    Case("root-entry-is-a-symlink", [e(".", SYM, link=CANARY), e("f", data=b"in")],
         expect={"/f": file(b"in")}),
    Case("dotdot-after-a-path-longer-than-path-max", [e(DEEP + "/../../../x", data=b"x")],
         refused="path escapes the layer"),          # the error line shows the name cut short
    Case("name-component-too-long", [e("n" * 300, data=b"x")], refused="File name too long"),
    Case("path-longer-than-path-max", [e(DEEP + "/f", data=b"deep\n")],
         expect={"/" + DEEP + "/f": file(b"deep\n")}),
    Case("pax-long-name", [e("l/" + "n" * 250 + "/" + "m" * 200, data=b"deep")],
         expect={"/l/" + "n" * 250 + "/" + "m" * 200: file(b"deep")},
         run=(["cat", "/l/" + "n" * 250 + "/" + "m" * 200], "deep")),
    Case("gnu-long-name-and-link", [e("g/" + "n" * 150, data=b"gnu"), e("s", SYM, link="t" * 150)],
         fmt=tarfile.GNU_FORMAT, expect={"/g/" + "n" * 150: file(b"gnu"), "/s": symlink("t" * 150)}),
    Case("pax-long-symlink-target", [e("s", SYM, link="a/" * 1500)], expect={"/s": symlink("a/" * 1500)}),
    Case("symlink-target-too-long", [e("s", SYM, link="x" * 5000)], refused="'s': File name too long"),

    # ---- writing through a symlink an earlier entry planted
    Case("write-through-symlink-to-root", [e("s", SYM, link="/"), e("s/evil", data=b"x")],
         refused="'s/evil'"),
    Case("write-through-symlink-to-dotdot", [e("up", SYM, link=".."), e("up/evil", data=b"x")],
         refused="'up/evil'"),
    Case("write-through-symlink-to-canary", [e("c", SYM, link=CANARY), e("c/evil", data=b"x")],
         refused="'c/evil'"),
    Case("write-through-relative-link-from-staging", [e("r", SYM, link="../../../../canary"),
                                                      e("r/evil", data=b"x")], refused="'r/evil'"),
    Case("write-through-relative-link-from-layer-dir", [e("r", SYM, link="../../../../../canary"),
                                                        e("r/sub/evil", data=b"x")], refused="'r/sub/evil'"),
    Case("write-through-symlink-chain", [e("a", SYM, link="b"), e("b", SYM, link=CANARY),
                                         e("a/evil", data=b"x")], refused="'a/evil'"),
    Case("mkdir-through-symlink", [e("c", SYM, link=CANARY), e("c/newdir", DIR, mode=0o777)],
         refused="'c/newdir'"),
    Case("symlink-over-a-dir-then-write", [e("d/x", data=b"x"), e("d", SYM, link=CANARY),
                                           e("d/y", data=b"y")], refused="'d/y'"),
    Case("whiteout-through-symlink", [e("c", SYM, link=CANARY), e("c/.wh.secret")],
         refused="'c/.wh.secret'"),
    Case("opaque-through-symlink", [e("c", SYM, link=CANARY), e("c/.wh..wh..opq")],
         refused="'c/.wh..wh..opq'"),
    Case("file-over-symlink", [e("s", SYM, link=CANARY + "/secret"), e("s", data=b"mine")],
         expect={"/s": file(b"mine")}),
    Case("device-over-symlink", [e("s", SYM, link=CANARY + "/secret"), e("s", CHR, mode=0o600, dev=(1, 3))],
         expect={"/s": char(1, 3, mode=0o600)}),
    Case("symlink-attrs-stay-on-the-link",
         [e("s", SYM, link=CANARY + "/secret", mode=0o600, owner=(4242, 4243), mtime=0,
            xattrs={"trusted.note": "on the link"})],
         expect={"/s": symlink(CANARY + "/secret", uid=4242, gid=4243)},
         checks=[xattr_is("/s", "trusted.note", b"on the link")]),

    # ---- a symlink replaced by a directory, and back
    Case("symlink-then-directory", [e("s", SYM, link=CANARY), e("s", DIR, mode=0o755), e("s/f", data=b"in")],
         expect={"/s": directory(), "/s/f": file(b"in")}),
    Case("symlink-directory-symlink", [e("s", SYM, link=CANARY), e("s", DIR), e("s/secret", data=b"mine"),
                                       e("s", SYM, link=CANARY)],
         expect={"/s": symlink(CANARY)}),
    Case("directory-becomes-symlink", [e("d", DIR), e("d/x", data=b"x"), e("d", SYM, link=CANARY)],
         expect={"/d": symlink(CANARY)}),

    # ---- hard links
    Case("hardlink-outside", [e("h", LNK, link="../../etc/passwd")], refused="'h'"),
    Case("hardlink-absolute", [e("h", LNK, link=CANARY + "/secret")], refused="'h'"),
    Case("hardlink-to-later-entry", [e("h", LNK, link="later"), e("later", data=b"x")], refused="'h'"),
    Case("hardlink-to-directory", [e("d", DIR), e("h", LNK, link="d")], refused="'h'"),
    Case("hardlink-to-whiteout", [e(".wh.x"), e("h", LNK, link="x")], refused="'h'"),
    Case("hardlink-through-symlinked-parent", [e("c", SYM, link=CANARY), e("h", LNK, link="c/secret")],
         refused="'h'"),
    Case("hardlink-into-the-dir-it-replaces", [e("d/f", data=b"x"), e("d", LNK, link="d/f")],
         refused="'d'"),
    Case("hardlink-to-symlink", [e("s", SYM, link=CANARY + "/secret"), e("h", LNK, link="s")],
         expect={"/s": symlink(CANARY + "/secret"), "/h": symlink(CANARY + "/secret")},
         checks=[same_inode("/s", "/h")]),
    Case("hardlink-to-itself", [e("f", data=b"one"), e("f", LNK, link="f")],
         expect={"/f": file(b"one", nlink=1)}),
    Case("hardlink-to-device", [e("null2", CHR, mode=0o666, dev=(1, 3)), e("h", LNK, link="null2")],
         expect={"/null2": char(1, 3), "/h": char(1, 3)}, checks=[same_inode("/null2", "/h")]),
    Case("hardlink-over-symlink", [e("f", data=b"data"), e("s", SYM, link=CANARY + "/secret"),
                                   e("s", LNK, link="f")],
         expect={"/f": file(b"data", nlink=2), "/s": file(b"data", nlink=2)}),
    Case("hardlink-target-replaced-later", [e("f", data=b"one"), e("h", LNK, link="f"), e("f", data=b"two")],
         expect={"/f": file(b"two", nlink=1), "/h": file(b"one", nlink=1)}),

    # ---- whiteout edge names
    Case("whiteout-empty-name", [e(".wh.")], refused="'.wh.'"),
    Case("whiteout-of-dot", [e(".wh..")], refused="'.wh..'"),
    Case("whiteout-of-dotdot", [e(".wh...")], refused="'.wh...'"),
    Case("whiteout-of-dotdot-nested", [e("d/.wh...")], refused="'d/.wh...'"),
    Case("whiteout-inside-whited-out-dir", [e(".wh.d"), e("d/.wh.x")], refused="'d/.wh.x'"),
    Case("whiteout-name-as-a-directory", [e(".wh.d/x", data=b"x")], refused="'.wh.d/x'"),
    Case("whiteout-hides-a-lower-file", [e("etc/.wh.group")],
         expect={"/etc": directory(mode=0o755), "/etc/group": whiteout()},
         run=(["sh", "-c", "cat /etc/group 2>/dev/null || echo gone"], "gone\n")),
    Case("opaque-dir-hides-lower", [e("home/.wh..wh..opq"), e("home/new", data=b"n")],
         expect={"/home": directory(opaque=True), "/home/new": file(b"n")},
         run=(["ls", "-a", "/home"], ".\n..\nnew\n")),
    Case("whiteout-then-same-name", [e(".wh.x"), e("x", data=b"back")], expect={"/x": file(b"back")}),
    Case("whiteout-of-own-entry", [e("x", data=b"kept"), e(".wh.x")], expect={"/x": file(b"kept")}),
    Case("aufs-metadata-skipped", [e(".wh..wh.plnk/1234.5678", data=b"x"), e(".wh..wh.aufs")], expect={}),

    # ---- an entry that changes the type of a path, duplicates
    Case("file-becomes-dir", [e("p", data=b"file"), e("p", DIR, mode=0o755), e("p/q", data=b"x")],
         expect={"/p": directory(), "/p/q": file(b"x")}, run=(["cat", "/p/q"], "x")),
    Case("dir-becomes-file", [e("p", DIR, mode=0o755), e("p/q", data=b"x"), e("p", data=b"file")],
         expect={"/p": file(b"file")}),
    Case("file-becomes-fifo", [e("p", data=b"file"), e("p", FIFO, mode=0o640)], expect={"/p": fifo(mode=0o640)}),
    Case("duplicate-files-last-wins", [e("f", data=b"first"), e("f", data=b"second!")],
         expect={"/f": file(b"second!")}),
    Case("duplicate-dir-keeps-children", [e("d", DIR, mode=0o700), e("d/f", data=b"f"), e("d", DIR, mode=0o750)],
         expect={"/d": directory(mode=0o750), "/d/f": file(b"f")}),

    # ---- sizes that lie, sparse files and bombs
    Case("declared-size-larger-than-data", [e("f", data=b"x" * 600)], raw=lie_about_size("f", 100_000),
         refused="truncated"),
    Case("declared-size-smaller-than-data", [e("f", data=b"y" * 2000), e("g", data=b"z")],
         raw=lie_about_size("f", 10), refused="corrupt"),
    Case("gnu-sparse-header-cut-short", tar=gnu_sparse_cut_short, refused="truncated or corrupt"),
    Case("sparse-file-of-a-terabyte", [sparse("sparse", 1 << 40)], refused="MINIRUN_MAX_LAYER_BYTES"),
    Case("sparse-file-counts-its-full-size", [sparse("sparse", 64 << 20)], refused="'GNUSparseFile.0/sparse'"
         if False else "MINIRUN_MAX_LAYER_BYTES", env={"MINIRUN_MAX_LAYER_BYTES": "10000000"}),
    Case("sparse-file-keeps-its-holes", [sparse("sparse", 64 << 20, at=SPARSE_AT)],
         expect={"/sparse": file(_sparse_content())}, checks=[holes("/sparse", 1 << 20)]),
    Case("sparse-map-bomb", [sparse_map_bomb()], refused="1048576 bytes"),
    *[Case(f"sparse-{fmt}-all-holes-of-a-terabyte", tar=sparse_tar(fmt, "holes", TiB, []),
           refused="MINIRUN_MAX_LAYER_BYTES") for fmt in SPARSE_FORMATS],
    *[Case(f"sparse-{fmt}-all-holes-within-a-raised-limit", tar=sparse_tar(fmt, "holes", TiB, []),
           env={"MINIRUN_MAX_LAYER_BYTES": str(2 * TiB)},
           expect={"/holes": {"type": "file", "size": TiB, "mode": 0o644}}, checks=[holes("/holes", 0)],
           run=(["stat", "-c", "%s", "/holes"], f"{TiB}\n")) for fmt in SPARSE_FORMATS],
    *[Case(f"sparse-{fmt}-data-between-holes", tar=sparse_tar(fmt, "f", 64 << 20, SPARSE_SEGMENTS),
           expect={"/f": file(_segments_content(64 << 20, SPARSE_SEGMENTS))},
           checks=[holes("/f", 1 << 20)]) for fmt in SPARSE_FORMATS],
    Case("sparse-old-with-extension-blocks", tar=sparse_tar("old", "f", 64 << 20, MANY_SEGMENTS),
         expect={"/f": file(_segments_content(64 << 20, MANY_SEGMENTS))}, checks=[holes("/f", 1 << 20)]),
    Case("sparse-segment-past-its-size", tar=sparse_tar("0.1", "f", 4096, [(8192, b"x")]),
         refused="runs past its size"),
    Case("sparse-segments-out-of-order", tar=sparse_tar("0.0", "f", 1 << 20, [(8192, b"b"), (0, b"a")]),
         refused="out of order"),
    Case("pax-header-bomb", [e("f", data=b"x", pax={"comment": "c" * 3_000_000})], refused="1048576 bytes"),
    Case("gnu-long-name-bomb", [e("n/" * 1_500_000, DIR)], fmt=tarfile.GNU_FORMAT, refused="1048576 bytes"),
    Case("decompression-bomb", [e("zeros", data=bytes(30_000_000))], refused="MINIRUN_MAX_LAYER_BYTES",
         env={"MINIRUN_MAX_LAYER_BYTES": "10000000"}),
    Case("too-many-entries", [e(f"f{i}") for i in range(60)], refused="MINIRUN_MAX_LAYER_ENTRIES",
         env={"MINIRUN_MAX_LAYER_ENTRIES": "50"}),
    Case("within-the-limits", [e("zeros", data=bytes(2_000_000))], env={"MINIRUN_MAX_LAYER_BYTES": "10000000",
                                                                        "MINIRUN_MAX_LAYER_ENTRIES": "50"},
         expect={"/zeros": file(bytes(2_000_000))}),

    # ---- device nodes stay data; owners, modes and setuid bits are kept
    Case("char-device-stays-data", [e("srv/mynull", CHR, mode=0o666, dev=(1, 3))],
         expect={"/srv/mynull": char(1, 3, mode=0o666)},
         run=(["sh", "-c", "stat -c %t:%T /srv/mynull; echo x 2>/dev/null >/srv/mynull && echo opened "
               "|| echo refused"], "1:3\nrefused\n")),
    Case("block-device-stays-data", [e("srv/disk", BLK, mode=0o660, dev=(8, 0))],
         expect={"/srv/disk": block(8, 0, mode=0o660)},
         run=(["sh", "-c", "cat /srv/disk 2>/dev/null >/dev/null && echo opened || echo refused"],
              "refused\n")),
    Case("fifo-with-attributes-is-never-opened",
         [e("pipe", FIFO, mode=0o640, owner=(7, 8), xattrs={"trusted.note": "fifo"})],
         expect={"/pipe": fifo(mode=0o640, uid=7, gid=8)}, checks=[xattr_is("/pipe", "trusted.note", b"fifo")]),
    Case("device-number-out-of-range", [e("dev/big", CHR, dev=(5000, 1))], refused="'dev/big'"),
    Case("setuid-setgid-kept", [e("bin/su", data=b"#!/bin/sh\n", mode=0o6755, owner=(0, 42))],
         expect={"/bin/su": file(b"#!/bin/sh\n", mode=0o6755, gid=42)},
         run=(["stat", "-c", "%a %g", "/bin/su"], "6755 42\n")),
    Case("setgid-and-sticky-dirs", [e("shared", DIR, mode=0o2775), e("shared/f", data=b"f"),
                                    e("scratch", DIR, mode=0o1777)],
         expect={"/shared": directory(mode=0o2775), "/shared/f": file(b"f"), "/scratch": directory(mode=0o1777)}),
    Case("unreadable-dir-and-file", [e("locked", DIR, mode=0o000), e("locked/secret", data=b"s", mode=0o000)],
         expect={"/locked": directory(mode=0o000), "/locked/secret": file(b"s", mode=0o000)}),
    Case("foreign-owners", [e("d", DIR, mode=0o755, owner=(42, 43)), e("d/f", data=b"f", owner=(1234, 5678))],
         expect={"/d": directory(uid=42, gid=43), "/d/f": file(b"f", uid=1234, gid=5678)}),
    Case("owner-out-of-range", [e("f", data=b"x", owner=(1 << 40, 0))], refused="'f': uid"),
    Case("mtime-infinite", [e("f", data=b"x", pax={"mtime": "inf"})], refused="'f': mtime"),

    # ---- xattrs from PAX SCHILY.xattr records
    Case("xattrs-trusted-overlay-never-applied",
         [e("d", DIR, mode=0o755, xattrs={"trusted.overlay.opaque": "y", "trusted.overlay.redirect": "/x",
                                          "trusted.overlay.overlay.opaque": "y"}),
          e("f", data=b"x", xattrs={"trusted.overlay.metacopy": "", "trusted.overlay.origin": "o"})],
         expect={"/d": directory(opaque=False), "/f": file(b"x")},
         checks=[no_overlay_xattrs("/d"), no_overlay_xattrs("/f")]),
    Case("xattrs-user-and-capability-kept",
         [e("f", data=b"x", mode=0o755, xattrs={"user.note": "hi",
                                                "security.capability": CAP.decode("utf-8", "surrogateescape")})],
         expect={"/f": file(b"x", mode=0o755)},
         checks=[xattr_is("/f", "user.note", b"hi"), xattr_is("/f", "security.capability", CAP)]),
    Case("xattr-of-no-namespace", [e("f", data=b"x", xattrs={"bogus.name": "1"})], refused="'bogus.name'"),
]
