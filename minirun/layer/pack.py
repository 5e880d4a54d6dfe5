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
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from ..record import dataclass
from typing import BinaryIO, Iterator

from ..errors import Conflict
from ..fsutil import read_xattrs, walk_here
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
         epoch: int | None = None) -> Packed:
    """Write the tar of `root` to `out` (gzip-compressed unless gzip_level is None)."""
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
                if info.isreg() and info.size:
                    with os.fdopen(os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
                        tar.addfile(info, f)
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
