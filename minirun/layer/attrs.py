"""Owner, mode, xattrs and times of one extracted entry, applied without
following a symlink and without opening a device node or fifo.

    check(member)                    refuse owners, times and device numbers the kernel
                                     would reject or silently truncate, before anything
                                     of the entry is written
    apply_fd(fd, member)             a regular file or directory held open
    apply_at(dir_fd, name, member)   a symlink, device node or fifo: fchownat and
                                     fchmodat with AT_SYMLINK_NOFOLLOW (glibc does the
                                     latter through an O_PATH fd, which opens no device),
                                     lsetxattr through /proc/self/fd, utimensat
    xattrs(member)                   the SCHILY.xattr.* records a layer may set: never
                                     trusted.overlay.* (overlayfs's own, including its
                                     escaped trusted.overlay.overlay.* form)

The order is owner, mode, xattrs, times: chown clears setuid and setgid bits and
security.capability, and every change but the last moves the times.
"""

from __future__ import annotations

import math
import os
import stat
import tarfile

from ..errors import BadImage, named
from . import whiteout
from .safeopen import proc_path

MAX_ID = 2**32 - 2                       # (uid_t)-1 would mean "leave unchanged"
MAX_MAJOR, MAX_MINOR = 2**12 - 1, 2**20 - 1   # what mknod(2)'s 32-bit dev_t can hold
MAX_SECONDS = 2**62
XATTR_PREFIX = "SCHILY.xattr."


def check(member: tarfile.TarInfo) -> None:
    name = member.name
    for what, value in (("uid", member.uid), ("gid", member.gid)):
        if not isinstance(value, int) or not 0 <= value <= MAX_ID:
            raise BadImage(f"entry {named(name)}: {what} {value!r} is out of range (0 to {MAX_ID})",
                           "rebuild the image; the layer's tar headers are damaged or hostile")
    mtime = member.mtime
    if not (isinstance(mtime, (int, float)) and math.isfinite(mtime) and abs(mtime) < MAX_SECONDS):
        raise BadImage(f"entry {named(name)}: mtime {mtime!r} is out of range",
                       "rebuild the image; the layer's tar headers are damaged or hostile")
    if (member.ischr() or member.isblk()) and not (
            0 <= member.devmajor <= MAX_MAJOR and 0 <= member.devminor <= MAX_MINOR):
        raise BadImage(f"entry {named(name)}: device number {member.devmajor}:{member.devminor} is out of "
                       f"range (major up to {MAX_MAJOR}, minor up to {MAX_MINOR})",
                       "rebuild the image; the layer's tar headers are damaged or hostile")


def mtime_ns(member: tarfile.TarInfo) -> int:
    mtime = member.mtime
    return mtime * 1_000_000_000 if isinstance(mtime, int) else int(mtime * 1e9)


def xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PREFIX):
            name = key[len(XATTR_PREFIX):]
            if not name.startswith(whiteout.OVERLAY_XATTR_PREFIX):
                out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def apply_fd(fd: int, member: tarfile.TarInfo, *, owned: bool = False, moded: bool = False) -> None:
    """owned / moded: the file was created with the entry's owner / mode already
    (the caller checks that afterwards, see extract.Extractor._file_attrs)."""
    if not owned:
        os.fchown(fd, member.uid, member.gid)
    if not moded:
        os.fchmod(fd, stat.S_IMODE(member.mode))
    if member.pax_headers:
        set_xattrs(fd, member)
    os.utime(fd, ns=(mtime_ns(member),) * 2)


def apply_at(dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
    os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
    if not member.issym():                   # a symlink's own mode means nothing on Linux
        os.chmod(name, stat.S_IMODE(member.mode), dir_fd=dir_fd, follow_symlinks=False)
    if member.pax_headers:
        set_xattrs(proc_path(dir_fd, name), member)
    os.utime(name, ns=(mtime_ns(member),) * 2, dir_fd=dir_fd, follow_symlinks=False)


def set_xattrs(target: int | str, member: tarfile.TarInfo) -> None:
    """target: an open fd, or a path whose last component is never followed."""
    for name, value in xattrs(member):
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as exc:
            raise BadImage(f"entry {named(member.name)}: xattr {named(name)}: {exc.strerror}",
                           "the store's filesystem cannot hold this attribute; rebuild the image "
                           "without it") from exc
