"""Directory fds inside one root, resolved by the kernel without following a symlink.

The extractor does every write relative to a directory fd from here: the final
component with *at() calls and O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, the parents
through openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
RESOLVE_NO_XDEV) where the kernel has it (Linux 5.6+), else by opening one
component at a time with O_NOFOLLOW | O_DIRECTORY. Either way a symlink, a mount
point or a way out anywhere on the path fails (ELOOP, ENOTDIR, EXDEV) instead of
being followed, whatever the extractor's own bookkeeping believes. Each call
resolves at most CHUNK bytes of path, so a name longer than PATH_MAX works too.

A small cache keeps the most recently used fds open (tar entries come grouped by
directory). get() may close the least recently used one, never one of the last
few it returned; forget() drops a directory and everything below it when the
extractor removes it.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import linux

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
RESOLVE = (linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
           | linux.RESOLVE_NO_XDEV)
CHUNK = 2048                    # bytes of path per lookup, well below PATH_MAX
CACHE = 64                      # directory fds kept open

# openat2 missing (ENOSYS), filtered by seccomp (EPERM) or refusing our flags
# (EINVAL, E2BIG on a kernel that predates one of them): walk instead.
_NO_OPENAT2 = (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG)
_openat2_usable = True


def reopen_regular(pinned: int, flags: int = os.O_RDONLY | os.O_CLOEXEC, seen=None) -> int:
    """pinned, an O_PATH descriptor, opened again with flags (through /proc/self/fd) if
    it is a regular file, and given seen (a stat_result) the same inode; else -1.
    An O_PATH open runs no driver and blocks on nothing, so a FIFO or a device node
    put where a file was (a running container's swap, a layout someone else made)
    is refused before anything opens it."""
    st = os.fstat(pinned)
    if not stat.S_ISREG(st.st_mode) or \
            (seen is not None and (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino)):
        return -1
    return os.open(fd_path(pinned), flags)


def fd_path(fd: int) -> str:
    """What the kernel resolves to exactly the object fd holds, with no lookup of
    the container's paths (mount(2) takes no directory fd)."""
    return f"/proc/self/fd/{fd}"


def same_object(fd: int, other: int) -> bool:
    """Whether two descriptors hold the same inode."""
    a, b = os.fstat(fd), os.fstat(other)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def proc_path(dir_fd: int, name: str) -> str:
    """A path to `name` inside the directory dir_fd, for the few calls that take no
    dir_fd (lsetxattr, remove_tree). The kernel jumps to the directory through the
    magic link and resolves only `name` from there, with the caller's NOFOLLOW."""
    return f"/proc/self/fd/{dir_fd}/{name}"


class DirFds:
    """Open directories below root by relative path ('' is root itself)."""

    def __init__(self, root: str):
        self.root_fd = os.open(root, DIR_FLAGS)
        self.cache: dict[str, int] = {}          # rel -> fd, least recently used first

    def get(self, rel: str) -> int:
        if not rel:
            return self.root_fd
        fd = self.cache.pop(rel, None)
        if fd is None:
            fd = self._open(rel)
        self._keep(rel, fd)
        return fd

    def adopt(self, rel: str, fd: int) -> None:
        """Cache an fd the caller opened (a directory it just made)."""
        old = self.cache.pop(rel, None)
        if old is not None:
            os.close(old)
        self._keep(rel, fd)

    def forget(self, rel: str) -> None:
        """rel is gone (or about to be): close its fd and those of everything below it."""
        prefix = rel + "/"
        for key in [k for k in self.cache if k == rel or k.startswith(prefix)]:
            os.close(self.cache.pop(key))

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()
        os.close(self.root_fd)

    def __enter__(self) -> "DirFds":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ helpers

    def _keep(self, rel: str, fd: int) -> None:
        self.cache[rel] = fd
        if len(self.cache) > CACHE:
            oldest = next(iter(self.cache))
            os.close(self.cache.pop(oldest))

    def _open(self, rel: str) -> int:
        """Resolve rel from its nearest cached ancestor (or root)."""
        ancestor = rel
        while ancestor:
            ancestor = ancestor.rpartition("/")[0]
            if ancestor in self.cache:
                break
        start = self.cache[ancestor] if ancestor else self.root_fd
        return open_beneath(start, rel[len(ancestor) + 1:] if ancestor else rel)


def open_beneath(dir_fd: int, rel: str) -> int:
    """An fd of directory rel below dir_fd, no symlink followed, CHUNK bytes per lookup."""
    return _descend(dir_fd, _pieces(rel), _open_piece)


def _descend(dir_fd: int, steps: list[str], open_step) -> int:
    """Open each step from the fd the last one gave, closing the ones in between
    (never dir_fd itself, which belongs to the caller)."""
    fd, owned = dir_fd, False
    try:
        for step in steps:
            next_fd = open_step(fd, step)
            if owned:
                os.close(fd)
            fd, owned = next_fd, True
    except BaseException:
        if owned:
            os.close(fd)
        raise
    return fd


def _pieces(rel: str) -> list[str]:
    """rel cut at slashes into pieces of at most CHUNK bytes (a piece holds at least one
    component; a component is at most 255 bytes, so none is ever too long)."""
    if len(rel) <= CHUNK:
        return [rel]
    pieces, current = [], []
    size = 0
    for part in rel.split("/"):
        if current and size + len(part) + 1 > CHUNK:
            pieces.append("/".join(current))
            current, size = [], 0
        current.append(part)
        size += len(part) + 1
    pieces.append("/".join(current))
    return pieces


def _open_piece(dir_fd: int, path: str) -> int:
    global _openat2_usable
    if _openat2_usable:
        try:
            return linux.openat2(dir_fd, path, DIR_FLAGS, RESOLVE)
        except OSError as exc:
            if exc.errno in _NO_OPENAT2:
                _openat2_usable = False
            elif exc.errno != errno.EAGAIN:      # EAGAIN: a rename raced the lookup; walk
                raise
    return _walk(dir_fd, path)


def _walk(dir_fd: int, path: str) -> int:
    """The fallback: one O_NOFOLLOW | O_DIRECTORY open per component."""
    return _descend(dir_fd, path.split("/"), _open_component)


def _open_component(dir_fd: int, part: str) -> int:
    if part in ("", ".", ".."):
        raise OSError(errno.EXDEV, f"{part!r} in a path that must stay below its root", part)
    return os.open(part, DIR_FLAGS, dir_fd=dir_fd)


# ---------------------------------------------------------------- inside a container's root

IN_ROOT = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
PATH_FLAGS = os.O_PATH | os.O_CLOEXEC


def open_in_root(root_fd: int, rel: str, follow: bool = True, flags: int = PATH_FLAGS) -> int:
    """An fd (O_PATH by default) of rel inside the tree rooted at root_fd, resolved
    the way a process chrooted there would resolve it: an absolute symlink starts
    again at root_fd and `..` stops there, so nothing outside is ever reached.
    With follow=False, any symlink on the way is refused (ELOOP). Where openat2
    is missing, every symlink is refused: one O_NOFOLLOW open per component."""
    global _openat2_usable
    rel = rel.strip("/") or "."
    if _openat2_usable:
        resolve = IN_ROOT | (0 if follow else linux.RESOLVE_NO_SYMLINKS)
        for _ in range(8):                   # EAGAIN: a rename raced the lookup; try again
            try:
                return linux.openat2(root_fd, rel, flags, resolve)
            except OSError as exc:
                if exc.errno in _NO_OPENAT2:
                    _openat2_usable = False
                    break
                if exc.errno != errno.EAGAIN:
                    raise
    parent, _, name = rel.rpartition("/")
    fd = _walk(root_fd, parent) if parent else os.dup(root_fd)
    try:
        if name == ".":
            return os.open(".", flags | os.O_DIRECTORY, dir_fd=fd)
        if name in ("", ".."):
            raise OSError(errno.EXDEV, f"{name!r} in a path that must stay below its root", name)
        out = os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)
        if (os.fstat(out).st_mode & 0o170000) == 0o120000:          # S_IFLNK
            os.close(out)
            raise OSError(errno.ELOOP, "a symlink, refused without openat2", rel)
        return out
    finally:
        os.close(fd)
