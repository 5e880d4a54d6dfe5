"""Filesystem helpers shared by the store and the layer code, written without
recursion: a container may build a tree deeper than Python's stack."""

from __future__ import annotations

import errno
import os
import stat
from .frozen import dataclass, field


class TreeMoved(OSError):
    """A walk's way back up ("..") led to another directory than the one it came
    down from: something moved a directory of the tree meanwhile (a running
    container, renaming dirs in its upper dir). The walk stops there: going on
    from that ".." would read, count or delete outside the tree."""

    def __init__(self):
        super().__init__(errno.ESTALE, "a directory moved while the tree was being read")


def remove_tree(path: str) -> None:
    """Remove a file or a whole tree, however deep, never following symlinks.

    One directory fd at a time, down by name and back up by "..": neither
    Python's stack, the open-file limit nor PATH_MAX bounds the depth (a
    container can nest directories past all three). Each ".." must be the
    directory the walk came down from (TreeMoved otherwise)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    fd = os.open(path, _DIR_FLAGS)
    try:
        _writable(fd)
        # per level: the dir's name in its parent, the names left, and its identity
        stack: list[tuple[str, list[str], tuple]] = [("", os.listdir(fd), _identity(fd))]
        while stack:
            here, names, _ = stack[-1]
            if names:
                name = names.pop()
                try:
                    os.unlink(name, dir_fd=fd)      # most entries are not dirs: no lstat first
                except FileNotFoundError:
                    pass
                except IsADirectoryError:         # Linux's answer for a dir (never a symlink to one)
                    fd = _move(fd, name)
                    _writable(fd)
                    stack.append((name, os.listdir(fd), _identity(fd)))
                continue
            stack.pop()
            if stack:
                fd = _up(fd, stack[-1][2])
                os.rmdir(here, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def _writable(fd: int) -> None:
    """A read-only dir from an image still gets emptied (root needs no such help)."""
    if os.geteuid() != 0:
        mode = os.fstat(fd).st_mode
        if mode & 0o300 != 0o300:
            os.fchmod(fd, stat.S_IMODE(mode) | 0o700)


def walk_here(root: str):
    """(relative path, name, lstat) of every entry below root, parents first,
    siblings sorted by their bytes, never following a symlink.

    It works from inside each directory: the process's working directory moves
    as it goes, and each `name` is relative to it, valid until the next step
    (so path calls on it stay short, whatever the depth). The working directory
    is restored at the end. One directory fd at a time, down by name with
    O_NOFOLLOW and back up by "..", checked, as remove_tree (TreeMoved)."""
    saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fd = os.open(root, _DIR_FLAGS)
    try:
        os.fchdir(fd)
        stack = [(iter(sorted(os.listdir(fd), key=os.fsencode)), "", _identity(fd))]
        while stack:
            names, prefix, _ = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if stack:
                    fd = _up(fd, stack[-1][2])
                    os.fchdir(fd)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue                               # removed meanwhile
            yield prefix + name, name, st
            if stat.S_ISDIR(st.st_mode):
                try:
                    fd = _move(fd, name)
                except (FileNotFoundError, NotADirectoryError, OSError):
                    continue                           # replaced meanwhile (a symlink: ELOOP)
                os.fchdir(fd)
                stack.append((iter(sorted(os.listdir(fd), key=os.fsencode)), prefix + name + "/", _identity(fd)))
    finally:
        os.close(fd)
        os.fchdir(saved)
        os.close(saved)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
HOLE_MIN = 4096          # a run of zeros shorter than a block saves nothing as a hole


def data_extent(fd: int, pos: int, size: int) -> tuple[int, int]:
    """(start, end) of the next data of an open file at or after pos, within its
    first `size` bytes; (size, size) when only a hole is left. What lies between
    pos and start is a hole: zeros that need not be read. A filesystem without
    SEEK_DATA says all is data."""
    try:
        start = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return size, size
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return pos, size
        raise
    if start >= size:
        return size, size
    try:
        end = os.lseek(fd, start, os.SEEK_HOLE)
    except OSError:
        end = size
    return start, min(end, size)


def is_hole(data) -> bool:
    """Whether `data` (bytes or a memoryview) is a run of zeros worth leaving as a
    hole: a writer seeks past it instead, so a sparse source stays sparse. Cheap
    on data that is not: the ends are looked at first."""
    n = len(data)
    return n >= HOLE_MIN and data[0] == 0 and data[-1] == 0 and bytes(data) == bytes(n)


@dataclass
class _Tally:
    total: int = 0
    entries: int = 0
    complete: bool = True
    seen: set = field(default_factory=set)     # (dev, ino) of hard-linked files counted


def tree_size(root: str) -> tuple[int, bool]:
    """Apparent bytes of the regular files under root, each hard-linked inode once;
    and whether every directory could be read. A missing root is empty."""
    total, _entries, complete = tree_stats(root)
    return total, complete


def tree_stats(root: str) -> tuple[int, int, bool]:
    """tree_size's bytes, the number of entries under root, and whether every
    directory could be read: what packing the tree would cost, known from its
    metadata alone (a sparse file counts with its apparent size).

    Walks with one directory fd, down by name and back up by "..", so neither
    Python's stack, the open-file limit nor PATH_MAX bounds the depth; a ".."
    that is not the directory it came from ends the walk, incomplete."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0, True
    except PermissionError:
        return 0, 0, False
    tally = _Tally()
    try:
        ids = [_identity(fd)]                      # per level: the directory's identity
        pending = [_scan(fd, tally)]               # per level: subdirectory names still to visit
        while pending:
            if not pending[-1]:
                pending.pop()
                ids.pop()
                fd = _up(fd, ids[-1]) if pending else fd
                continue
            try:
                fd = _move(fd, pending[-1].pop())
            except OSError as exc:                 # unreadable, or gone meanwhile (a running container)
                tally.complete = tally.complete and not isinstance(exc, PermissionError)
                continue
            ids.append(_identity(fd))
            pending.append(_scan(fd, tally))
    except OSError:                                # ".." failed or moved: a running container changed it
        tally.complete = False
    finally:
        os.close(fd)
    return tally.total, tally.entries, tally.complete


def _move(fd: int, name: str) -> int:
    """The directory `name` relative to fd, opened; fd is closed once it is."""
    new = os.open(name, _DIR_FLAGS, dir_fd=fd)
    os.close(fd)
    return new


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _up(fd: int, expected: tuple[int, int]) -> int:
    """The parent of the directory fd, which must be the one the walk came down from
    (expected: its identity); fd is closed once it is, and left to the caller (as
    by _move) when it is not."""
    new = os.open("..", _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=fd)
    try:
        if _identity(new) != expected:
            raise TreeMoved()
    except BaseException:
        os.close(new)
        raise
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
                tally.entries += 1
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


def umask() -> int:
    """The process's umask, read once (reading it means setting it: os.umask)."""
    global _umask
    if _umask is None:
        _umask = os.umask(0o022)
        os.umask(_umask)
    return _umask


_umask: int | None = None


def make_dir(path: str, mode: int) -> None:
    """mkdir with exactly mode: a chmod follows only when the umask took bits away
    (each file-system call costs a run ~40 us here)."""
    os.mkdir(path, mode)
    if mode & umask():
        os.chmod(path, mode)


def read_into(stream, buf) -> int:
    """stream.readinto(buf), for the streams that have it (no copy through a bytes
    object), else a read() copied into buf: the byte count, 0 at the end."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto(buf) or 0
    data = stream.read(len(buf))
    buf[:len(data)] = data
    return len(data)
