"""Unpack one layer blob into a directory that overlayfs can use as a lower dir.

Three levels, each testable alone:
    unpack_blob(stream, compression, dest, ...)   decompress + hash + extract
    Extractor.entry(member, data)                 one tar entry, safely
    whiteout.classify / make_whiteout             the OCI -> overlay mapping

Names from the tar are untrusted: they are normalised, and every parent is
checked against what this extraction itself created (the only writer of the
staging dir), so no entry is ever written through a symlink. Final components
are opened with O_NOFOLLOW | O_EXCL.

Limits, against decompression bombs and huge sparse files (a sparse file counts
with its full declared size), read from the environment:
    MINIRUN_MAX_LAYER_BYTES     file bytes in one layer, uncompressed (default 64 GiB)
    MINIRUN_MAX_LAYER_ENTRIES   entries in one layer (default 2,000,000)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import BadImage, DigestMismatch, context
from ..fsutil import remove_tree
from . import whiteout

CHUNK = 1 << 20


@dataclass
class UnpackResult:
    diff_id: str
    files: int = 0
    size: int = 0
    implied_dirs: list[str] = field(default_factory=list)


class Tee:
    """Pass reads through while copying them to a sink (the blob being stored)."""

    def __init__(self, src: BinaryIO, sink):
        self.src, self.sink = src, sink

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data and self.sink is not None:
            self.sink.write(data)
        return data


class _Hasher:
    """Hash the uncompressed stream as tarfile reads it: that hash is the diff_id.
    The last WINDOW bytes read are kept, so the block where tarfile stopped can be
    looked at afterwards (see block_at)."""

    WINDOW = 1 << 16

    def __init__(self, src):
        self.src = src
        self.hash = hashlib.sha256()
        self.position = 0                 # bytes read so far
        self.window = b""                 # the last bytes read, ending at position

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.hash.update(data)
        self.position += len(data)
        self.window = (self.window + data)[-self.WINDOW:]
        return data

    def block_at(self, offset: int) -> bytes | None:
        """The 512 bytes at offset if they were read and are still kept, else None."""
        start = offset - (self.position - len(self.window))
        if start < 0 or start >= len(self.window):
            return None
        return self.window[start:start + 512]

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def decompressor(raw, compression: str):
    """A readable stream of the uncompressed tar ("gzip", "zstd" or "none")."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "none":
        return raw
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise BadImage("zstd layers need the zstandard package",
                           "pip install zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise BadImage(f"unknown compression {compression!r}")


def unpack_blob(stream: BinaryIO, compression: str, dest: str, *, blob_sink=None,
                expected_diff_id: str | None = None, what: str = "layer") -> UnpackResult:
    """Extract a layer blob into dest (an empty dir), verifying the diff_id as it streams.

    blob_sink, if given, receives the raw (compressed) bytes, so a blob can be
    stored and extracted in one pass."""
    tee = Tee(stream, blob_sink)
    hasher = _Hasher(decompressor(tee, compression))
    extractor = Extractor(dest)
    try:
        with tarfile.open(fileobj=hasher, mode="r|", errorlevel=2) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isreg() else None
                extractor.entry(member, data)
            stop = tar.offset
        # tarfile ends quietly at a header it cannot parse; only zeros may stand there
        block = hasher.block_at(stop)
        if block and block.count(0) != len(block):
            raise BadImage(f"{what}: the tar header at byte {stop} is corrupt (an entry before it "
                           "may declare the wrong size)", "rebuild the image; the layer is damaged")
        hasher.drain()
        while tee.read(CHUNK):
            pass
    except BadImage as exc:
        raise context(what, exc)
    except (EOFError, tarfile.TarError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        raise BadImage(f"{what}: truncated or corrupt layer data: {exc}") from exc
    except OSError as exc:
        raise BadImage(f"{what}: read: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("zstandard"):
            raise BadImage(f"{what}: corrupt zstd data: {exc}") from exc
        raise
    extractor.finish()
    diff_id = "sha256:" + hasher.hash.hexdigest()
    if expected_diff_id and diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content has diff_id {diff_id}, "
                             f"but the image config lists {expected_diff_id}")
    return UnpackResult(diff_id, extractor.files, extractor.size, list(extractor.implied))


def _limit(variable: str, default: int) -> int:
    """A size limit from the environment (plain integer), else the default."""
    value = os.environ.get(variable, "").strip()
    return int(value) if value.isdigit() else default


def safe_name(unsafe_name: str) -> str:
    """Normalise a tar entry name to a relative path inside the layer, or raise."""
    parts = []
    for part in unsafe_name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise BadImage(f"entry {unsafe_name!r}: path escapes the layer with '..'")
        parts.append(part)
    return "/".join(parts)


class Extractor:
    """Writes tar entries under root, tracking what it made so parents are never links."""

    def __init__(self, root: str):
        self.root = root
        self.kinds: dict[str, str] = {"": "dir"}   # relative path -> dir/file/link/other
        self.dir_attrs: dict[str, tarfile.TarInfo] = {}
        self.implied: dict[str, None] = {}      # ordered set of dirs the tar never declared
        self.files = 0
        self.size = 0
        self.entries = 0
        self.declared = 0                       # bytes the entries claim, sparse ones in full
        self.max_bytes = _limit("MINIRUN_MAX_LAYER_BYTES", 64 << 30)
        self.max_entries = _limit("MINIRUN_MAX_LAYER_ENTRIES", 2_000_000)

    # ------------------------------------------------------------ entry points

    def entry(self, member: tarfile.TarInfo, data) -> None:
        self._count(member)
        name = safe_name(member.name)
        if not name:
            if member.isdir():
                self.dir_attrs[""] = member
            return
        if any(part.startswith(whiteout.WH_META_PREFIX) and part != whiteout.WH_OPAQUE
               for part in name.split("/")):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): never part of the image
        parent, _, base = name.rpartition("/")
        kind, target = whiteout.classify(base)
        try:
            self._ensure_dir(parent, member.name)
            if kind == "opaque":
                whiteout.mark_opaque(self._abs(parent))
            elif kind == "whiteout":
                self._whiteout(parent, target, member.name)
            else:
                self._plain(name, member, data)
        except OSError as exc:
            raise BadImage(f"entry {member.name!r}: {exc.strerror or exc}") from exc

    def _count(self, member: tarfile.TarInfo) -> None:
        """Refuse a decompression bomb or a huge sparse file before writing it."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise BadImage(f"entry {member.name!r}: the layer has more than {self.max_entries} entries",
                           "raise MINIRUN_MAX_LAYER_ENTRIES if you trust this image")
        if member.isreg():
            self.declared += member.size
            if self.declared > self.max_bytes:
                raise BadImage(f"entry {member.name!r}: the layer's files exceed {self.max_bytes} bytes "
                               "uncompressed", "raise MINIRUN_MAX_LAYER_BYTES if you trust this image")

    def finish(self) -> None:
        """Apply directory attributes last: creating children changes a dir's mtime."""
        for rel in sorted(self.dir_attrs, key=lambda p: p.count("/"), reverse=True):
            member = self.dir_attrs[rel]
            path = self._abs(rel)
            os.lchown(path, member.uid, member.gid)
            os.chmod(path, stat.S_IMODE(member.mode))
            os.utime(path, ns=(int(member.mtime * 1e9),) * 2, follow_symlinks=False)

    # ------------------------------------------------------------ helpers

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def _ensure_dir(self, rel: str, unsafe_name: str) -> None:
        """Make every missing parent (in a loop: names may be thousands of levels deep)."""
        if self.kinds.get(rel) == "dir":
            return
        missing = []
        while self.kinds.get(rel) != "dir":
            kind = self.kinds.get(rel)
            if kind is not None:
                raise BadImage(f"entry {unsafe_name!r}: parent {rel!r} is a {kind}, not a directory")
            missing.append(rel)
            rel = rel.rpartition("/")[0]
        for path in reversed(missing):
            os.mkdir(self._abs(path))
            os.chmod(self._abs(path), 0o755)      # not left to the umask
            self.kinds[path] = "dir"
            self.implied[path] = None

    def _clear(self, rel: str, keep_dir: bool) -> bool:
        """Remove what this layer already put at rel; True if a dir is kept in place."""
        kind = self.kinds.get(rel)
        if kind is None:
            return False
        if kind == "dir" and keep_dir:
            return True
        path = self._abs(rel)
        if kind == "dir":
            remove_tree(path)
            prefix = rel + "/"
            for key in [k for k in self.kinds if k.startswith(prefix)] + [rel]:
                self.kinds.pop(key, None)
                self.dir_attrs.pop(key, None)
                self.implied.pop(key, None)   # a dir that is gone borrows nothing from below
            return False
        else:
            os.unlink(path)
        del self.kinds[rel]
        return False

    def _whiteout(self, parent: str, target: str, unsafe_name: str) -> None:
        if target in ("", ".", "..") or "/" in target:
            raise BadImage(f"entry {unsafe_name!r}: whiteout of an invalid name")
        rel = f"{parent}/{target}" if parent else target
        if rel in self.kinds:
            return  # a whiteout only hides lower layers; this layer's own entry stays
        whiteout.make_whiteout(self._abs(rel))
        self.kinds[rel] = "whiteout"
        self.files += 1

    def _plain(self, rel: str, member: tarfile.TarInfo, data) -> None:
        path = self._abs(rel)
        if member.isdir():
            if not self._clear(rel, keep_dir=True):
                os.mkdir(path, 0o700)
                self.kinds[rel] = "dir"
            else:
                self.implied.pop(rel, None)
            self.dir_attrs[rel] = member
            self._xattrs(path, member)
            return
        self._clear(rel, keep_dir=False)
        if member.isreg():
            self._file(path, member, data)
            self.kinds[rel] = "file"
        elif member.issym():
            os.symlink(member.linkname, path)
            self.kinds[rel] = "link"
        elif member.islnk():
            self._hardlink(path, member)
            self.kinds[rel] = "file"
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            self.kinds[rel] = "other"
        else:
            raise BadImage(f"entry {member.name!r}: unsupported tar entry type {member.type!r}")
        self.files += 1
        if not member.islnk():
            self._attrs(path, member)

    def _file(self, path: str, member: tarfile.TarInfo, data) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            remaining = member.size
            while remaining > 0:
                chunk = data.read(min(CHUNK, remaining))
                if not chunk:
                    raise BadImage(f"entry {member.name!r}: data ends before its declared size")
                _write_all(fd, chunk)
                remaining -= len(chunk)
        finally:
            os.close(fd)
        self.size += member.size

    def _hardlink(self, path: str, member: tarfile.TarInfo) -> None:
        target = safe_name(member.linkname)
        if self.kinds.get(target) not in ("file", "other", "link"):
            raise BadImage(f"entry {member.name!r}: hard link to {member.linkname!r}, "
                           "which is not an earlier file of this layer")
        os.link(self._abs(target), path, follow_symlinks=False)

    def _attrs(self, path: str, member: tarfile.TarInfo) -> None:
        os.lchown(path, member.uid, member.gid)
        if not member.issym():
            os.chmod(path, stat.S_IMODE(member.mode))
        self._xattrs(path, member)
        os.utime(path, ns=(int(member.mtime * 1e9),) * 2, follow_symlinks=False)

    def _xattrs(self, path: str, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith(whiteout.OVERLAY_XATTR_PREFIX):
                continue  # only overlayfs and minirun's whiteout conversion may set these
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
