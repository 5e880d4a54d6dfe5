"""Filesystem helpers shared by the store and the layer code, written without
recursion: a container may build a tree deeper than Python's stack."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field


def remove_tree(path: str) -> None:
    """Remove a file or a whole tree, however deep, never following symlinks."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    stack = [path]
    while stack:
        directory = stack[-1]
        if not os.access(directory, os.W_OK | os.X_OK):
            os.chmod(directory, 0o700)     # a read-only dir from an image still gets emptied
        subdirs = []
        with os.scandir(directory) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)          # empty the children first, then come back
        else:
            os.rmdir(directory)
            stack.pop()


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Tally:
    total: int = 0
    complete: bool = True
    seen: set = field(default_factory=set)     # (dev, ino) of hard-linked files counted


def tree_size(root: str) -> tuple[int, bool]:
    """Apparent bytes of the regular files under root, each hard-linked inode once;
    and whether every directory could be read. A missing root is empty.

    Walks with one directory fd, down by name and back up by "..", so neither
    Python's stack, the open-file limit nor PATH_MAX bounds the depth."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return 0, True
    except PermissionError:
        return 0, False
    tally = _Tally()
    try:
        pending = [_scan(fd, tally)]               # per level: subdirectory names still to visit
        while pending:
            if not pending[-1]:
                pending.pop()
                fd = _move(fd, "..") if pending else fd
                continue
            try:
                fd = _move(fd, pending[-1].pop())
            except OSError as exc:                 # unreadable, or gone meanwhile (a running container)
                tally.complete = tally.complete and not isinstance(exc, PermissionError)
                continue
            pending.append(_scan(fd, tally))
    except OSError:                                # ".." failed: removed under a running container
        tally.complete = False
    finally:
        os.close(fd)
    return tally.total, tally.complete


def _move(fd: int, name: str) -> int:
    """The directory `name` relative to fd, opened; fd is closed once it is."""
    new = os.open(name, _DIR_FLAGS & ~os.O_NOFOLLOW if name == ".." else _DIR_FLAGS, dir_fd=fd)
    os.close(fd)
    return new


def _scan(fd: int, tally: _Tally) -> list[str]:
    """Add up the regular files in this directory; returns its subdirectory names."""
    subdirs = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue                       # removed meanwhile: it uses no space
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
                elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in tally.seen:
                    tally.total += st.st_size
                    if st.st_nlink > 1:
                        tally.seen.add((st.st_dev, st.st_ino))
    except PermissionError:
        tally.complete = False
    return subdirs


def read_xattrs(path: str) -> dict[str, bytes]:
    """Every extended attribute of path (not following a symlink) this process can
    read; a filesystem without xattrs, or an entry gone meanwhile, has none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOENT, errno.EPERM):
            return {}
        raise
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return out
