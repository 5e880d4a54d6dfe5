"""cp: copy files between a container and the host, as docker cp.

    cp CONTAINER:SRC HOSTDEST     read through the container's merged view
    cp HOSTSRC CONTAINER:DEST     write into it: copy-on-write into its upper
                                  dir, as a write of the container's own would

The container's side is a tree a hostile image or process controls, so every
path in it is resolved inside its root (openat2 RESOLVE_IN_ROOT through
layer/safeopen.py: an absolute symlink starts again at the container's /,
`..` stops there), and the walk below it goes from directory descriptor to
directory descriptor, never following a symlink (a symlink is copied as one).
A running container's root is its PID 1's /proc/PID/root, so a write goes
through its own overlay mount. A stopped one's view is mounted in a child
process with a mount namespace of its own: read-only with the upper dir as a
lower dir to read, or over its upper and work dirs to write.

Like docker cp: a directory is copied whole, into DEST when DEST is a
directory that exists, else as DEST; SRC/. copies what the directory holds;
DEST/ must be a directory that exists. A stopped container being started
while cp writes into its view is not guarded against (no per-container lock).
Regular files, directories and symlinks are copied with their modes (but no
setuid or setgid bit on the host's side); the files belong to root (the
caller), as docker's without -a; hard links stay links. Other kinds (devices,
FIFOs, sockets) are left out and counted. Holes in a sparse file stay holes.
A tree deeper than MAX_DEPTH directories is refused in one line. A stopped
container's view holds no volume and no /etc file of its run's.
"""

from __future__ import annotations

import errno
import os
import stat

from ..lib.frozen import dataclass
from ..lib.fsutil import data_extent
from ..layer.safeopen import fd_path
from ..linux import overlay
from ..errors import Conflict, EnvironmentProblem, NotFound, UsageError
from ..store.containers import effective_state
from .control import lower_dirs

CHUNK = 1 << 20
MAX_DEPTH = 256           # directories inside directories; deeper is refused in one line
MAX_LINKED = 4096         # hard-linked files remembered per copy, to link rather than copy again
                          # (each holds a descriptor: fewer under a low RLIMIT_NOFILE, _link_budget)


@dataclass(frozen=True)
class Copied:
    files: int
    bytes: int
    skipped: int          # devices, FIFOs and sockets, which cp leaves out


def split(text: str) -> tuple[str, str] | None:
    """(container, path) for CONTAINER:PATH; None for a host path (one with a / before
    any colon, or none at all), as docker tells them apart."""
    head, colon, path = text.partition(":")
    if not colon or "/" in head or not head:
        return None
    return head, path


def copy_out(store, name: str, src: str, dest: str) -> Copied:
    cid = store.containers.resolve(name)
    parent, target = _host_target(dest)
    counts = [0, 0, 0]

    def work(root_fd: int) -> None:
        source, top = _container_source(root_fd, src)
        walk = _Walk(counts, to_host=True)
        try:
            walk.entry(source, top, parent, target, contents=src.rstrip("/").endswith("/."))
        finally:
            walk.close()
            os.close(source)
    _with_root(store, cid, False, work, counts)
    return Copied(*counts)


def copy_in(store, src: str, name: str, dest: str) -> Copied:
    cid = store.containers.resolve(name)
    if not os.path.lexists(src):
        raise NotFound(f"{src}: no such file or directory")
    source_parent = os.open(os.path.dirname(os.path.abspath(src)) or "/", os.O_RDONLY | os.O_DIRECTORY)
    top = os.path.basename(os.path.abspath(src))
    counts = [0, 0, 0]

    def work(root_fd: int) -> None:
        parent, target = _container_target(root_fd, dest)
        walk = _Walk(counts, to_host=False)
        try:
            walk.entry(source_parent, top, parent, target, contents=src.rstrip("/").endswith("/."))
        finally:
            walk.close()
            os.close(parent)
    try:
        _with_root(store, cid, True, work, counts)
    finally:
        os.close(source_parent)
    return Copied(*counts)


# ---------------------------------------------------------------- the container's root

def _with_root(store, cid: str, writable: bool, work, counts: list) -> None:
    """work(root_fd) with the container's merged view as root_fd: its PID 1's root
    while it runs, else a view mounted in a child process for the length of work."""
    from ..linux.procfs import start_time
    state = effective_state(store.containers.state(cid))
    if state.running and state.pid:
        root = os.open(f"/proc/{state.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if start_time(state.pid) != state.pid_start:
                raise Conflict(f"container {cid[:12]} stopped during the copy", "copy again")
            from ..sandbox.join import still_starting
            if still_starting(state.pid, root):           # its root may still be the host's
                raise Conflict(f"container {cid[:12]} is still starting", "copy again in a moment")
            work(root)
        except OSError as exc:
            if exc.errno == errno.ENOENT and exc.filename is None:
                raise NotFound(exc.strerror) from None
            if exc.errno == errno.ELOOP and exc.filename is None:
                raise Conflict(exc.strerror) from None
            raise
        finally:
            os.close(root)
        return
    _in_mounted_view(store, cid, writable, work, counts)


def _in_mounted_view(store, cid: str, writable: bool, work, counts: list) -> None:
    from .. import linux
    from ..lib.forked import in_child
    config = store.containers.config(cid)
    if config.read_only and writable:
        raise Conflict(f"container {cid[:12]} has a read-only root (--read-only): nothing can be copied in")
    with store.staging("cp") as staged:
        target = os.path.join(staged, "merged")
        os.mkdir(target)
        if writable:                # over its upper and work dirs, as its run mounts it
            lowers = lower_dirs(store, cid, config)
            own = lowers[:1] if config.init_layer else []
            spec = overlay.plan(lowers[len(own):], store.containers.upper(cid), store.containers.work(cid),
                                store.containers.path(cid), own)
        else:
            from .export import read_only_view
            spec = read_only_view(store, cid, config, staged)

        said_r, said_w = os.pipe2(os.O_CLOEXEC)

        def child() -> None:
            os.close(said_r)
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            overlay.mount(spec, target, overlay.strategy_from_env(), nodev=True)   # its nodes open nothing
            root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            work(root)
            os.write(said_w, " ".join(map(str, counts)).encode())   # what the parent reports
        failure = in_child(child)
        os.close(said_w)
        with os.fdopen(said_r, "rb") as said:
            numbers = said.read().split()
        if len(numbers) == 3:
            counts[:] = [int(n) for n in numbers]
    if failure is not None:
        if failure.errno == errno.ENOENT:
            raise NotFound(failure.message)
        if failure.errno == errno.ELOOP:
            raise Conflict(failure.message)
        if failure.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(failure.errno, failure.message)
        raise EnvironmentProblem(f"cp failed: {failure.message}")


def _container_source(root_fd: int, path: str) -> tuple[int, str]:
    """(fd of SRC's parent directory inside the root, SRC's last name)."""
    from ..layer.safeopen import open_in_root
    clean = os.path.normpath("/" + path.rstrip("/").removesuffix("/."))
    if clean == "/":
        return os.dup(root_fd), "."
    parent, name = os.path.split(clean)
    try:
        fd = open_in_root(root_fd, parent, follow=True, flags=os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.lstat(name, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        # an OSError, so that it crosses from the child that mounted a stopped one's view
        raise OSError(errno.ENOENT, f"no such file or directory in the container: {path}") from None
    return fd, name


def _container_target(root_fd: int, path: str) -> tuple[int, str | None]:
    """(fd of the directory to write in, the name to write as; None: SRC's own name),
    resolved inside the root. DEST an existing directory: into it; else DEST's
    parent must exist, and DEST is the new name."""
    from ..layer.safeopen import open_in_root
    clean = os.path.normpath("/" + path)
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        return open_in_root(root_fd, clean, follow=True, flags=dir_flags), None
    except (FileNotFoundError, NotADirectoryError):
        if path.endswith("/"):                # DEST/ must be a directory there
            raise OSError(errno.ENOENT, f"no such directory in the container: {path}") from None
    parent, name = os.path.split(clean)
    try:
        return open_in_root(root_fd, parent, follow=True, flags=dir_flags), name
    except (FileNotFoundError, NotADirectoryError):
        raise OSError(errno.ENOENT, f"no such directory in the container: {parent}") from None


def _host_target(dest: str) -> tuple[int, str | None]:
    if os.path.isdir(dest):
        return os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), None
    if dest.endswith("/") or dest.endswith("/."):
        raise NotFound(f"{dest}: no such directory", "DEST/ must be a directory that exists")
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise NotFound(f"{parent}: no such directory")
    return os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), os.path.basename(dest)


# ---------------------------------------------------------------- the walk

class _Walk:
    """One copy: src_dir/name to dst_dir/(as_name or name), never following a symlink on
    either side below the two directories given. Files hard-linked to each other are
    linked again on the other side (a container's 1 MB linked 100 times is not 100 MB
    on the host); going to the host, setuid and setgid bits are dropped (a copied-out
    setuid-root shell would be a way up for anyone who can reach it)."""

    def __init__(self, counts: list, to_host: bool):
        self.counts, self.to_host = counts, to_host
        self.linked: dict[tuple[int, int], int] = {}     # (dev, ino) -> fd of the first copy
        self.link_budget = _link_budget()

    def close(self) -> None:
        for fd in self.linked.values():
            os.close(fd)
        self.linked.clear()

    def entry(self, src_dir: int, name: str, dst_dir: int, as_name: str | None, contents: bool = False,
              depth: int = 0) -> None:
        st = os.lstat(name, dir_fd=src_dir)
        target = as_name or name
        if stat.S_ISDIR(st.st_mode):
            if depth >= MAX_DEPTH:
                raise OSError(errno.ELOOP, f"directories nested more than {MAX_DEPTH} deep: not copied")
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
            try:
                if as_name is None and (contents or name == "."):
                    out = os.dup(dst_dir)                 # SRC/. into an existing DEST
                else:
                    _make_dir(dst_dir, target, st.st_mode)
                    out = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=dst_dir)
                try:
                    for child in sorted(os.listdir(inner)):
                        self.entry(inner, child, out, None, depth=depth + 1)
                finally:
                    os.close(out)
            finally:
                os.close(inner)
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(name, dir_fd=src_dir)
            _replace(dst_dir, target)
            os.symlink(link, target, dir_fd=dst_dir)
            self.counts[0] += 1
        elif stat.S_ISREG(st.st_mode):
            if not self._link_again(st, dst_dir, target):
                _copy_file(src_dir, name, dst_dir, target, st, self.counts, self._mode(st), self._remember)
        else:
            self.counts[2] += 1

    def _mode(self, st) -> int:
        mode = stat.S_IMODE(st.st_mode)
        return mode & ~(stat.S_ISUID | stat.S_ISGID) if self.to_host else mode

    def _link_again(self, st, dst_dir: int, target: str) -> bool:
        first = self.linked.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is None:
            return False
        _replace(dst_dir, target)
        os.link(fd_path(first), target, dst_dir_fd=dst_dir, follow_symlinks=True)
        self.counts[0] += 1
        return True

    def _remember(self, st, fd_out: int) -> None:
        if st.st_nlink > 1 and len(self.linked) < self.link_budget:
            self.linked[(st.st_dev, st.st_ino)] = os.dup(fd_out)


def _link_budget() -> int:
    """How many first copies of hard-linked files a copy may hold open: MAX_LINKED,
    or what the soft RLIMIT_NOFILE leaves after two descriptors per directory level
    and a margin (3,000 links under the usual 1024 ran cp out of descriptors,
    half-way, an outside review). Past it, a further link is copied as a file."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_LINKED
    return max(0, min(MAX_LINKED, soft - 2 * MAX_DEPTH - 64))


def _make_dir(dir_fd: int, name: str, mode: int) -> None:
    try:
        os.mkdir(name, stat.S_IMODE(mode) | 0o700, dir_fd=dir_fd)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise UsageError(f"cannot copy a directory over the non-directory {name!r}") from None


def _replace(dir_fd: int, name: str) -> None:
    """Make room for name in dir_fd: a file or symlink there goes; a directory stays
    and is refused."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot copy a file over the directory {name!r}")
    os.unlink(name, dir_fd=dir_fd)


def _copy_file(src_dir: int, name: str, dst_dir: int, target: str, st, counts: list, mode: int,
               remember) -> None:
    fd_in = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):        # swapped since the lstat
            counts[2] += 1
            return
        _replace(dst_dir, target)
        fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=dst_dir)
        try:
            size = os.fstat(fd_in).st_size
            pos = 0
            while pos < size:
                start, end = data_extent(fd_in, pos, size)   # holes stay holes
                while start < end:
                    data = os.pread(fd_in, min(CHUNK, end - start), start)
                    if not data:
                        break
                    view = memoryview(data)
                    while view:
                        wrote = os.pwrite(fd_out, view, start)
                        view, start = view[wrote:], start + wrote
                        counts[1] += wrote
                pos = end
            os.ftruncate(fd_out, size)
            os.fchmod(fd_out, mode)
            remember(st, fd_out)
        finally:
            os.close(fd_out)
        counts[0] += 1
    finally:
        os.close(fd_in)
