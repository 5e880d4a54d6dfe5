"""A file manifest: the facts of every entry of a directory tree, recorded when a
layer is installed so that `minirun fsck` can tell later whether its diff/
changed. Also what `minirun diff A B` reads two upper dirs into.

    build(root)            '/path' -> facts for root ('/') and everything under it
    walk(root)             the same pairs one by one, in the walk's order (diff A B)
    encode(entries)        the compact on-disk form (gzip'd JSON lines)
    decode(data)           back again; ValueError when the data is damaged
    verify(root, recorded) what differs now (minirun.layer.compare.Difference)

Facts per entry: type (file, dir, symlink, char, block, fifo, socket), mode,
uid, gid; size and a content hash for files, "sha256" up to 64 KiB and "pieces"
above (contenthash.py: its cost follows the data a file holds, not the size it
declares, so a sparse terabyte costs nothing); target for symlinks; rdev [major, minor]
for devices; opaque (trusted.overlay.opaque=y) for dirs; xattrs {name: base64}
other than overlayfs's own trusted.overlay.*. An overlay whiteout is what it is
on disk, a char device 0:0. Not recorded: times, nlink, inode numbers.

The walk is iterative (trees deeper than Python's recursion limit exist), never
follows symlinks, hashes a hard-linked inode once, and skips entries that
vanish while it runs (a running container may delete them).

Known hashes. The extractor hashes each file's data as it writes it, and the
importer hands those hashes over (remember_hashes) for the layer it is about to
install, so build() need not read the files back. A hash is keyed by the inode
and used only while the file's size and ctime are what they were right after the
extractor's last change to it: any later write, truncate, chmod or chown moves
the ctime, and the file is then read and hashed as usual (the stat cache `git`
keeps for its index works the same way).

Format 1 (before "pieces") recorded the sha256 of every file; decode() reads it
still, and verify() hashes the big files of such a manifest the same way (the
layer was bounded when it was installed).
"""

from __future__ import annotations

import base64
import errno
import gzip
import json
import os
import stat
import zlib

from ..lib.fsutil import read_xattrs, walk_here
from . import whiteout
from .compare import Difference, compare
from .contenthash import field, file_hash
from .safeopen import reopen_regular

FORMAT = {"format": "minirun-file-manifest", "version": 2}
READABLE = (1, 2)         # format versions decode() takes

_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
          stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# root (absolute path) -> {(st_dev, st_ino): (st_size, st_ctime_ns, sha256 hex)}
_known: dict[str, dict[tuple[int, int], tuple[int, int, str]]] = {}


def remember_hashes(root: str, known: dict[tuple[int, int], tuple[int, int, str]]) -> None:
    """Content hashes of files under root, computed as they were written (see above)."""
    _known[os.path.abspath(root)] = known


def forget_hashes(root: str) -> None:
    _known.pop(os.path.abspath(root), None)


def build(root: str, plain: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Facts of root and every entry under it (walk()), as one mapping."""
    return dict(walk(root, plain))


def walk(root: str, plain: frozenset[str] = frozenset()):
    """('/path', facts) for root and every entry under it, depth first, names sorted.
    The walk opens each directory by name with O_NOFOLLOW from the one above
    (fsutil.walk_here), so an upper dir changed under it by a running container
    cannot lead it outside. Files at the paths in `plain` get a sha256 whatever
    their size (format 1)."""
    hashes: dict = {}
    known = _known.get(os.path.abspath(root))
    if known:
        hashes[_KNOWN] = known
    yield "/", describe(root, os.lstat(root), hashes)
    for rel, name, st in walk_here(root):
        try:
            facts = describe(name, st, hashes, ("/" + rel) in plain)
        except FileNotFoundError:
            continue                              # removed while we walked
        yield "/" + rel, facts


def describe(path: str, st: os.stat_result, hashes: dict | None = None, plain: bool = False) -> dict:
    """One entry's facts. `hashes` caches content hashes by inode across hard links."""
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
    entry: dict = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind == "file":
        entry["size"] = st.st_size
        name = "sha256" if plain else field(st.st_size)
        entry[name] = _content_hash(path, st, hashes if hashes is not None else {}, plain)
    elif kind == "symlink":
        entry["target"] = os.readlink(path)
    elif kind in ("char", "block"):
        entry["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    raw = read_xattrs(path)
    if kind == "dir":
        entry["opaque"] = raw.get(whiteout.OPAQUE_XATTR) == whiteout.OPAQUE_VALUE
    kept = {name: base64.b64encode(value).decode() for name, value in sorted(raw.items())
            if not name.startswith(whiteout.OVERLAY_XATTR_PREFIX)}
    if kept:
        entry["xattrs"] = kept
    return entry


def verify(root: str, recorded: dict[str, dict]) -> list[Difference]:
    """How the tree differs from its recorded manifest: only="A" is an entry
    removed since, only="B" one added, fields (recorded, now) a changed one."""
    legacy = frozenset(path for path, entry in recorded.items()
                       if "sha256" in entry and field(entry.get("size", 0)) != "sha256")
    return compare(recorded, build(root, legacy))


# ---------------------------------------------------------------- on disk

def encode(entries: dict[str, dict]) -> bytes:
    """A header line, then one compact JSON line [path, facts] per entry, gzip'd."""
    lines = [json.dumps(FORMAT, sort_keys=True)]
    line = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
    lines.extend(line([path, entry]) for path, entry in entries.items())
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1, mtime=0)


def decode(data: bytes) -> dict[str, dict]:
    """The entries of an encoded manifest; ValueError naming what is wrong."""
    try:
        text = gzip.decompress(data).decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a gzip'd file manifest: {exc}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        header = json.loads(lines[0]) if lines else None
        if not isinstance(header, dict) or header.get("version") not in READABLE or \
                header != dict(FORMAT, version=header.get("version")):
            raise ValueError(f"unknown header {lines[0][:80] if lines else ''!r}")
        entries = {}
        for number, line in enumerate(lines[1:], start=2):
            path, entry = json.loads(line)
            if not isinstance(path, str) or not isinstance(entry, dict):
                raise ValueError(f"line {number} is not [path, facts]")
            entries[path] = entry
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"damaged file manifest: {exc}") from None
    return entries


# ---------------------------------------------------------------- helpers

_KNOWN = "known"          # the key in `hashes` that holds the remembered hashes


def _content_hash(path: str, st: os.stat_result, hashes: dict, plain: bool = False) -> str:
    """The hash field(st.st_size) names (a sha256 when plain), of the first st_size
    bytes: a file a running container grows meanwhile is read no further."""
    key = (st.st_dev, st.st_ino, plain)
    known = hashes.get(_KNOWN)
    if known is not None and not plain:
        hint = known.get(key[:2])
        if hint is not None and hint[0] == st.st_size and hint[1] == st.st_ctime_ns:
            return hint[2]
    if st.st_nlink > 1 and key in hashes:
        return hashes[key]
    fd = _open_quietly(path)
    try:
        digest = file_hash(fd, st.st_size, plain)
    finally:
        os.close(fd)
    if st.st_nlink > 1:
        hashes[key] = digest
    return digest


def _open_quietly(path: str) -> int:
    """path, a regular file, opened for reading without updating its access time where
    we may (we own it, or are root), and checked before it is opened (safeopen.py
    reopen_regular): a running container can swap a file of its upper dir for a
    device node it made, whose open would be the host's driver's (the upper dir is
    not nodev), or a FIFO. FileNotFoundError if it is no longer a regular file."""
    pinned = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        flags = _OPEN_FLAGS & ~os.O_NOFOLLOW          # the magic link is followed to pinned itself
        try:
            fd = reopen_regular(pinned, flags | os.O_NOATIME)
        except PermissionError:
            fd = reopen_regular(pinned, flags)
    finally:
        os.close(pinned)
    if fd < 0:                                        # replaced by something else meanwhile
        raise FileNotFoundError(errno.ENOENT, "no longer a regular file", path)
    return fd
