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
mount through its own fd; where open_tree is too (before 5.2) the caller falls
back to a bind and a second lookup, allowed only for a target reached with no
symlink, whose second lookup cannot differ (bind()).

Used by sandbox/rootfs.py for -v and by ociruntime/init.py for bind mounts.
"""

from __future__ import annotations

import errno
import os

from .. import linux
from ..errors import RuntimeFailure
from ..layer.safeopen import open_in_root


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _same(fd: int, other: int) -> bool:
    a, b = os.fstat(fd), os.fstat(other)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_ATTRS = ((linux.MS_RDONLY, linux.MOUNT_ATTR_RDONLY), (linux.MS_NOSUID, linux.MOUNT_ATTR_NOSUID),
          (linux.MS_NODEV, linux.MOUNT_ATTR_NODEV), (linux.MS_NOEXEC, linux.MOUNT_ATTR_NOEXEC))


def bind_tree(source: str, point: int, flags: int, recursive: bool, source_fd: int = -100) -> tuple[int, bool]:
    """Bind source (source_fd's object when source is "") on point, with the mount flags
    (ro, nosuid, nodev, noexec) set on it (and with recursive, on every mount below
    it) before it is attached. Returns an O_PATH fd of the new mount (-1 where the
    kernel has no open_tree, before 5.2: the caller falls back) and whether the
    flags reached the mounts below it too."""
    try:
        tree = linux.open_tree_clone(source, source_fd, recursive)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return -1, False
        raise
    try:
        attrs = sum(attr for flag, attr in _ATTRS if flags & flag)
        done = not flags
        if flags and not flags & ~sum(flag for flag, _ in _ATTRS):
            try:
                linux.mount_setattr(tree, attrs, recursive)
                done = True
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    raise
        linux.move_mount_onto(tree, point)
        if not done:
            linux.mount(None, _fd_path(tree), None, linux.MS_BIND | linux.MS_REMOUNT | flags)
            return tree, False
        return tree, recursive
    except BaseException:
        os.close(tree)
        raise


def bind(root: int, path: str, source: str, point: int, flags: int, recursive: bool,
         source_fd: int = -100) -> tuple[int, bool]:
    """bind_tree(), or before Linux 5.2 a bind and a remount found by a second lookup
    of path (in root; point is its fd), refused where a symlink leads there."""
    top, below = bind_tree(source, point, flags, recursive, source_fd)
    if top >= 0:
        return top, below
    if flags:
        _refuse_linked_target(root, path, point)
    linux.mount(source or _fd_path(source_fd), _fd_path(point), None,
                linux.MS_BIND | (linux.MS_REC if recursive else 0))
    top = open_in_root(root, path, follow=not flags)
    try:
        if flags:
            linux.mount(None, _fd_path(top), None, linux.MS_BIND | linux.MS_REMOUNT | flags)
    except BaseException:
        os.close(top)
        raise
    return top, False


def _refuse_linked_target(root: int, path: str, point: int) -> None:
    """Before Linux 5.2, a bind's flags are set by a second lookup of its target: only
    safe when no symlink is on the way, so that lookup cannot differ from the first."""
    try:
        plain = open_in_root(root, path, follow=False)
    except OSError:
        plain = -1
    same = plain >= 0 and _same(plain, point)
    if plain >= 0:
        os.close(plain)
    if not same:
        raise RuntimeFailure(f"cannot mount on {path} in the container: a symlink leads there, and this "
                             "kernel cannot set a bind mount's flags before it is attached",
                             "use Linux 5.2 or later, or a path with no symlink in the image")
