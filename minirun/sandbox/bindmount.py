"""Bind mounts whose flags are set before they are attached.

A bind mount's flags (ro, nodev, nosuid, noexec) cannot be given to mount(2)
with the bind; the classic way is a second call, a remount of the target. But
that call must find the new mount again, and a second lookup of the target
walks through what was just mounted: a symlink in the volume (`b -> /` under a
target the image reaches as /x -> /a/b/..) then takes the remount to another
mount, and the volume stays writable, with devices (an outside review of
minirun found this). So the bind is made with open_tree(2) as a detached copy,
given its flags with mount_setattr(2) (on every mount below it too), and moved
onto the target's fd with move_mount(2): nothing is looked up after the bind.
Where mount_setattr is missing (Linux 5.2-5.11) the remount is made on the new
mount through its own fd, adding to the flags it has; where open_tree is too
(before 5.2) the caller falls back to a bind and a second lookup, allowed only
for a target reached with no symlink, whose second lookup cannot differ (bind()).

Used by sandbox/rootfs.py for -v and by ociruntime/init.py for bind mounts.
"""

from __future__ import annotations

import errno
import os

from .. import linux
from ..linux import procfs
from ..errors import RuntimeFailure
from ..layer.safeopen import fd_path, open_in_root, same_object


MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 0x100, 0x400, 0x800, 0x200000
# per-mount flags and their MOUNT_ATTR_* bits; the atime ones are one choice, set under a mask
_ATTRS = ((linux.MS_RDONLY, linux.MOUNT_ATTR_RDONLY), (linux.MS_NOSUID, linux.MOUNT_ATTR_NOSUID),
          (linux.MS_NODEV, linux.MOUNT_ATTR_NODEV), (linux.MS_NOEXEC, linux.MOUNT_ATTR_NOEXEC),
          (MS_NODIRATIME, linux.MOUNT_ATTR_NODIRATIME), (MS_NOSYMFOLLOW, linux.MOUNT_ATTR_NOSYMFOLLOW))
_ATIME = ((MS_NOATIME, linux.MOUNT_ATTR_NOATIME), (linux.MS_STRICTATIME, linux.MOUNT_ATTR_STRICTATIME),
          (MS_RELATIME, 0))
# flags of a superblock, not of a mount: a bind (and its remount) leaves them as they are
SUPERBLOCK_FLAGS = 0x10 | 0x40 | 0x80 | (1 << 25)      # sync, mand, dirsync, lazytime
_KNOWN = sum(flag for flag, _ in _ATTRS + _ATIME)
_MISSING = (errno.ENOSYS, errno.EPERM)       # EPERM: a seccomp profile that does not know the call


def _mount_attrs(flags: int) -> tuple[int, int]:
    """(attr_set, attr_clr) for mount_setattr: the flags asked for are added to what
    the source has (its nosuid, say, stays), and an atime choice replaces its own."""
    attr_set = sum(attr for flag, attr in _ATTRS if flags & flag)
    for flag, attr in _ATIME:
        if flags & flag:
            return attr_set | attr, linux.MOUNT_ATTR_ATIME_MASK
    return attr_set, 0


def _bind_tree(source: str, point: int, flags: int, recursive: bool, source_fd: int = -100) -> tuple[int, bool]:
    """Bind source (source_fd's object when source is "") on point, with the mount flags
    (ro, nosuid, nodev, noexec, the atime ones, nosymfollow) set on it (and with
    recursive, on every mount below it) before it is attached. Returns an O_PATH fd
    of the new mount (-1 where the kernel has no open_tree, before 5.2: the caller
    falls back) and whether the flags reached the mounts below it too."""
    try:
        tree = linux.open_tree_clone(source, source_fd, recursive)
    except OSError as exc:
        if exc.errno in _MISSING:     # or refused by a seccomp profile that predates it
            return -1, False
        raise
    try:
        done = not flags
        if flags and not flags & ~_KNOWN:
            try:
                attr_set, attr_clr = _mount_attrs(flags)
                linux.mount_setattr(tree, attr_set, recursive, attr_clr)
                done = True
            except OSError as exc:
                # 5.12 and 5.13 know mount_setattr but not MOUNT_ATTR_NOSYMFOLLOW (EINVAL)
                if exc.errno not in _MISSING and not (exc.errno == errno.EINVAL and flags & MS_NOSYMFOLLOW):
                    raise
        linux.move_mount_onto(tree, point)
        if not done:                 # before Linux 5.12: the new mount, reached through its own fd
            _remount(tree, flags)
            return tree, False
        return tree, recursive
    except BaseException:
        os.close(tree)
        raise


# statvfs's flags of a mount, and the MS_* flags they stand for (glibc's ST_* values)
_STATVFS = ((0x1, linux.MS_RDONLY), (0x2, linux.MS_NOSUID), (0x4, linux.MS_NODEV), (0x8, linux.MS_NOEXEC),
            (0x400, MS_NOATIME), (0x800, MS_NODIRATIME), (0x1000, MS_RELATIME), (0x2000, MS_NOSYMFOLLOW))
_ATIME_FLAGS = sum(flag for flag, _ in _ATIME)


def _remount(fd: int, flags: int) -> None:
    """The flags added to those the mount at fd has, as mount_setattr adds them: a bind
    remount sets exactly what it is given, and would drop the source's own nosuid."""
    has = os.statvfs(fd_path(fd)).f_flag
    current = sum(flag for bit, flag in _STATVFS if has & bit)
    if flags & _ATIME_FLAGS:
        current &= ~_ATIME_FLAGS
    linux.mount(None, fd_path(fd), None, linux.MS_BIND | linux.MS_REMOUNT | current | flags)


def bind(root: int, path: str, source: str, point: int, flags: int, recursive: bool,
         source_fd: int = -100) -> int:
    """_bind_tree() (an fd of the new mount), or before Linux 5.2 a bind and a remount
    found by a second lookup of path (in root; point is its fd), refused where a
    symlink leads there. Where the flags could not be set on the mounts below it in
    one call (before 5.12), each is remounted in turn."""
    flags &= ~SUPERBLOCK_FLAGS
    top, below = _bind_tree(source, point, flags, recursive, source_fd)
    try:
        if top < 0:
            if flags:
                _refuse_linked_target(root, path, point)
            linux.mount(source or fd_path(source_fd), fd_path(point), None,
                        linux.MS_BIND | (linux.MS_REC if recursive else 0))
            top = open_in_root(root, path, follow=not flags)
            if flags:
                _remount(top, flags)
        if flags and recursive and not below:
            _remount_below(top, flags)
    except BaseException:
        if top >= 0:
            os.close(top)
        raise
    return top


def _remount_below(top: int, flags: int) -> None:
    """The flags on every mount an rbind brought under top, one remount each (a
    remount changes one mount only: a read-only rbind must not leave the source's
    submounts writable). Each is opened from top's fd with no symlink followed."""
    prefix = os.fsencode(os.readlink(fd_path(top)).rstrip("/") + "/")
    for point in procfs.mount_points():
        if not point.startswith(prefix):
            continue
        below = open_in_root(top, os.fsdecode(point[len(prefix):]), follow=False)
        try:
            _remount(below, flags)
        finally:
            os.close(below)


def _refuse_linked_target(root: int, path: str, point: int) -> None:
    """Before Linux 5.2, a bind's flags are set by a second lookup of its target: only
    safe when no symlink is on the way, so that lookup cannot differ from the first."""
    try:
        plain = open_in_root(root, path, follow=False)
    except OSError:
        plain = -1
    same = plain >= 0 and same_object(plain, point)
    if plain >= 0:
        os.close(plain)
    if not same:
        raise RuntimeFailure(f"cannot mount on {path} in the container: a symlink leads there, and this "
                             "kernel cannot set a bind mount's flags before it is attached",
                             "use Linux 5.2 or later, or a path with no symlink in the image")
