"""Pack a directory tree into a layer tar: the reverse of unpack.py.

The tree is either a layer in overlay form (an upper dir, or its copy in the
cache), where a char device 0:0 is a whiteout and `trusted.overlay.opaque=y`
marks an opaque dir, or a plain root filesystem (export). Whiteouts become
empty `.wh.NAME` files; an opaque dir is followed at once by its
`.wh..wh..opq`, before any of its other entries. No trusted.overlay.* xattr
reaches the tar; other xattrs (security.capability, user.*) travel as PAX
`SCHILY.xattr.` records.

The output is reproducible: entries sorted by name, parents first; owners by
number only (no user or group names); mtimes clamped to `epoch` when given
(SOURCE_DATE_EPOCH); a gzip header with no name and mtime 0. The same tree
therefore always gives the same diff_id and the same blob digest.

A sparse file is written whole, as Docker writes it (a plain member, which every
reader takes, and the same tar whatever the file's holes), but its holes are not
read: _FileData finds the data with SEEK_DATA and gives zeros for the rest. What
that costs is bounded by the caller's `guard`, called with the bytes and entries
so far before each entry's data (commit and export check the same from metadata
before packing: limits.check_tree). A file is opened without blocking and read
to the size its header says: a running container cannot make it a FIFO that
hangs the read, or grow it past that size.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from ..lib.frozen import dataclass
from typing import BinaryIO, Callable, Iterator

from ..errors import Conflict
from ..lib.fsutil import data_extent, read_xattrs, walk_here
from . import whiteout

COPY_BUFFER = 1 << 20
GZIP_LEVEL = 6          # docker's and the gzip tool's default


@dataclass(frozen=True)
class Packed:
    diff_id: str         # sha256 of the uncompressed tar
    files: int           # entries written (whiteout and opaque markers included)
    size: int            # bytes of file content


class _Sink:
    """A write-only stream that hashes the uncompressed tar on its way to `out`."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.hash = hashlib.sha256()
        self.offset = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.out.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


def pack(root: str, out: BinaryIO, *, gzip_level: int | None = GZIP_LEVEL,
         epoch: int | None = None, guard: Callable[[int, int], None] | None = None) -> Packed:
    """Write the tar of `root` to `out` (gzip-compressed unless gzip_level is None).
    guard(bytes, entries), when given, raises to stop before an entry past a limit."""
    compressor = None
    stream: BinaryIO = out
    if gzip_level is not None:
        compressor = gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                                   compresslevel=gzip_level)
        stream = compressor
    sink = _Sink(stream)
    tar = tarfile.TarFile(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFFER)
    files = size = 0
    links: dict[tuple[int, int], str] = {}
    try:
        for rel, full, st in walk(root):
            for info in _entries(rel, full, st, epoch, links):
                if guard is not None:
                    guard(size + info.size, files + 1)
                if info.isreg() and info.size:
                    with _FileData.open(full, info.size) as data:
                        tar.addfile(info, data)
                    size += info.size
                else:
                    tar.addfile(info)
                files += 1
        tar.close()
        if compressor is not None:
            compressor.close()
    except BaseException:
        if compressor is not None:
            compressor.fileobj = None    # nothing more to write: `out` may be gone (ENOSPC)
        raise
    return Packed("sha256:" + sink.hash.hexdigest(), files, size)


walk = walk_here     # (rel, name relative to the working directory, lstat); see fsutil


class _FileData:
    """The first `size` bytes of a regular file, for tarfile, which reads them in
    pieces of exactly the size it asks: data extents are read, holes are zeros
    that are never read, and a file that shrank (or is no longer a regular file)
    reads as zeros to the size its header promised."""

    def __init__(self, fd: int, size: int, regular: bool):
        self.fd, self.size, self.pos = fd, size, 0
        self.start = self.end = 0 if regular else size     # the current data extent

    @classmethod
    def open(cls, name: str, size: int) -> "_FileData":
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return cls(fd, size, stat.S_ISREG(os.fstat(fd).st_mode))
        except BaseException:
            os.close(fd)
            raise

    def read(self, n: int) -> bytes:
        n = min(n, self.size - self.pos)
        parts = []
        while n > 0:
            if self.pos >= self.end and self.end < self.size:
                self.start, self.end = data_extent(self.fd, self.pos, self.size)
            if self.pos < self.start or self.pos >= self.end:
                take = min(n, (self.start if self.pos < self.start else self.size) - self.pos)
                parts.append(bytes(take))
            else:
                chunk = os.pread(self.fd, min(n, self.end - self.pos), self.pos)
                if not chunk:                      # shrank meanwhile: zeros from here
                    self.start = self.end = self.size
                    continue
                take = len(chunk)
                parts.append(chunk)
            self.pos += take
            n -= take
        return b"".join(parts)

    def __enter__(self) -> "_FileData":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _entries(rel: str, full: str, st: os.stat_result, epoch: int | None,
             links: dict[tuple[int, int], str]) -> Iterator[tarfile.TarInfo]:
    mtime = int(st.st_mtime)
    if epoch is not None:
        mtime = min(mtime, epoch)
    if whiteout.is_whiteout_stat(st):
        parent, _, name = rel.rpartition("/")
        yield _marker(f"{parent}/{whiteout.WH_PREFIX}{name}" if parent
                      else whiteout.WH_PREFIX + name, mtime)
        return
    if rel.rpartition("/")[2].startswith(whiteout.WH_PREFIX):
        # In a tar this name means "delete"; packed as a file it would turn into a
        # whiteout wherever the layer is loaded, and the cache would disagree with it.
        raise Conflict(f"/{rel} is named like an OCI whiteout (.wh.*), which no layer can hold "
                       "as a file", "rename or remove it, then try again")
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = mtime
    xattrs = _xattrs(full)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(xattrs.items())}
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        yield info
        if whiteout.is_opaque(full):
            yield _marker(f"{rel}/{whiteout.WH_OPAQUE}", mtime)
        return
    if stat.S_ISREG(st.st_mode):
        first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None:
            info.type, info.linkname = tarfile.LNKTYPE, first
        else:
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = rel
            info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        return          # a socket has no tar form; docker skips them too
    yield info


def _marker(name: str, mtime: int) -> tarfile.TarInfo:
    """An empty regular file standing for a whiteout or an opaque marker."""
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    return info


def _xattrs(path: str) -> dict[str, bytes]:
    """The entry's xattrs minus overlayfs's own (whiteout.OVERLAY_XATTR_PREFIX)."""
    return {name: value for name, value in read_xattrs(path).items()
            if not name.startswith(whiteout.OVERLAY_XATTR_PREFIX)}
