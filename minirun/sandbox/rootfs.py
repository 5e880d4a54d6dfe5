"""The container's root filesystem, set up inside its new mount namespace.

Order: make every mount private (so nothing propagates back to the host),
mount the overlay, then /proc, a minimal /dev and a read-only /sys on it, the
/etc files, volumes and tmpfs mounts, then mask and write-protect what Docker
does, and switch root with pivot_root (or chroot when asked). All mounts live
only in this namespace, so they vanish with the container, however it ends.
Every mount point exists already: the image has it, or the init layer does.

Until pivot_root this process still sees the host's tree, and the image is
someone else's: its /dev may be a symlink to /, its /etc/hosts one to a host
file. So no path under the root is ever handed to the kernel as a string.
Each target is opened from the root's fd with openat2(RESOLVE_IN_ROOT) (a
symlink resolves as it would inside the container, `..` stops at its root;
layer/safeopen.py) and mounted on through /proc/self/fd/N; files are made
with *at() calls from directory fds. /proc, /dev and /sys must be plain
directories: a symlink there is refused. A target that leaves nothing to
mount on gives one line naming the path.
Volumes are bound with their flags set before they are attached
(sandbox/bindmount.py), so no target is looked up again through a volume; none
may land in the container's procfs but lxcfs's files.

The devices are nodes of the container's own (mknod), not the host's: a
chmod inside changes nothing outside. They are made on a tiny staging tmpfs
without nodev and bound one by one into /dev, which like every filesystem the
container can write to stays nodev: the container keeps CAP_MKNOD (as under
Docker), and a node it makes must never open a host device.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import linux
from ..linux import overlay
from ..lib import log
from ..errors import MinirunError, RuntimeFailure
from ..layer.safeopen import PATH_FLAGS, fd_path, open_in_root, same_object
from .bindmount import bind
from .mounts import MASKED_PATHS, PROC_FILES_TO_COVER, READONLY_PATHS, Mount

_DEVICES = (  # name, major, minor
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
    ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))
_NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
_STAGE = ".minirun-devices"           # in /dev, for the moment the nodes are made
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def make_private() -> None:
    """First, in the new mount namespace: no mount made here propagates to the host."""
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)


def setup(spec: overlay.OverlayMount, merged: str, strategy: str, mounts: tuple[Mount, ...] = (),
          privileged: bool = False) -> str:
    """Mount everything under merged (after make_private); returns the overlay
    strategy used."""
    # nodev everywhere the container can create files: it keeps CAP_MKNOD (as with
    # Docker), so a node it makes must not open a host device
    used = overlay.mount(spec, merged, strategy, nodev=not privileged)
    if log.debugging:
        log.debug(f"overlay: {len(spec.lowers)} lower dir(s), upper {spec.upper or '(none: read-only)'}, "
                  f"mounted with the {used} API (asked: {strategy})")
    root = os.open(merged, _DIR)
    try:
        _mount_kernel(root, "proc", "proc", _NOSUID_NODEV_NOEXEC,
                      before=lambda proc: _mount_files(root, proc, [m for m in mounts if m.kind == "file"]))
        _mount_dev(root, privileged)
        _mount_kernel(root, "sys", "sysfs", _NOSUID_NODEV_NOEXEC | (0 if privileged else linux.MS_RDONLY))
        volumes = [m for m in mounts if m.kind != "file"]
        if volumes:
            proc = os.stat("proc", dir_fd=root, follow_symlinks=False).st_dev    # the procfs just mounted
            for mount in volumes:
                _mount(root, mount, privileged, proc)
        if not privileged:
            try:
                null = open_in_root(root, "dev/null", follow=False)
            except OSError as exc:
                raise RuntimeFailure(f"cannot mask the kernel's files with the container's /dev/null: "
                                     f"{os.strerror(exc.errno)}", "do not mount a volume or tmpfs over /dev") from None
            try:
                for path in MASKED_PATHS:
                    _mask(root, path, null)
            finally:
                os.close(null)
            for path in READONLY_PATHS:
                _read_only(root, path)
    finally:
        os.close(root)
    return used


def target(root: int, path: str, kernel: bool = False) -> int:
    """An O_PATH fd of path inside the root, to mount on; one line when there is none.
    kernel: /proc, /dev or /sys, which must be a directory and no symlink."""
    try:
        return open_in_root(root, path, follow=not kernel, flags=_DIR if kernel else PATH_FLAGS)
    except OSError as exc:
        why = {errno.ELOOP: "it is a symlink, and minirun mounts there only on a plain directory"
               if kernel else "a symlink on the way loops, or cannot be followed on this kernel",
               errno.ENOENT: "it does not exist (a symlink in the image may point at nothing)",
               errno.ENOTDIR: "it is not a directory in the image" if kernel else
               "a part of it is not a directory in the image",
               errno.EXDEV: "it leads out of the container's root"}.get(exc.errno, exc.strerror)
        raise RuntimeFailure(f"cannot mount on /{path.strip('/')} in the container: {why}",
                             "fix the image, or choose another path") from None


def _mount_kernel(root: int, name: str, fstype: str, flags: int, before=None) -> None:
    fd = target(root, name, kernel=True)
    try:
        if before is not None:
            before(fd)
        linux.mount(fstype, fd_path(fd), fstype, flags)
    finally:
        os.close(fd)


def _mount_dev(root: int, privileged: bool = False) -> None:
    nodev = 0 if privileged else linux.MS_NODEV
    point = target(root, "dev", kernel=True)
    try:
        linux.mount("tmpfs", fd_path(point), "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME | nodev,
                    "mode=755,size=65536k")
    finally:
        os.close(point)
    dev = open_in_root(root, "dev", follow=False, flags=_DIR)      # the fresh tmpfs: only we write it
    try:
        if privileged:
            _make_nodes(dev)
        else:
            _bind_own_nodes(dev)
        os.mkdir("pts", 0o755, dir_fd=dev)
        _mount_at(dev, "pts", "devpts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5")
        os.mkdir("shm", 0o1777, dir_fd=dev)
        _mount_at(dev, "shm", "shm", "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
        for name, link in _DEV_LINKS:
            os.symlink(link, name, dir_fd=dev)
    finally:
        os.close(dev)


def _make_nodes(dir_fd: int) -> None:
    umask = os.umask(0)                       # mknod honours it: the nodes must be 0666
    try:
        for name, major, minor in _DEVICES:
            os.mknod(name, 0o20666, os.makedev(major, minor), dir_fd=dir_fd)     # S_IFCHR
    finally:
        os.umask(umask)


def _bind_own_nodes(dev: int) -> None:
    """The nodes on a staging tmpfs without nodev, each bound over an empty file in
    /dev; the staging mount is then detached, so the binds are the only way to it."""
    os.mkdir(_STAGE, 0o700, dir_fd=dev)
    _mount_at(dev, _STAGE, "tmpfs", "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=700,size=4k,nr_inodes=16")
    stage = os.open(_STAGE, _DIR | os.O_NOFOLLOW, dir_fd=dev)
    try:
        _make_nodes(stage)
        for name, _, _ in _DEVICES:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o666, dir_fd=dev))
            node = os.open(name, PATH_FLAGS | os.O_NOFOLLOW, dir_fd=stage)
            point = os.open(name, PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dev)
            try:
                linux.mount(fd_path(node), fd_path(point), None, linux.MS_BIND)
            finally:
                os.close(node)
                os.close(point)
        linux.umount2(fd_path(stage), linux.MNT_DETACH)
    finally:
        os.close(stage)
    os.rmdir(_STAGE, dir_fd=dev)


def _mount_at(dir_fd: int, name: str, source: str, fstype: str, flags: int, data: str) -> None:
    fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        linux.mount(source, fd_path(fd), fstype, flags, data)
    finally:
        os.close(fd)


def _mount_files(root: int, proc: int, files: list[Mount]) -> None:
    """Write each file into a small tmpfs and bind it over its target. The tmpfs
    goes on the container's /proc first, before procfs does, and is detached once
    the files are bound: they keep it alive, and it appears nowhere else. So the
    store holds no copy (one inode less to make and delete per file: ~0.2 ms here),
    and the binds take tmpfs's nosuid,nodev,noexec without a remount."""
    if not files:
        return
    linux.mount("tmpfs", fd_path(proc), "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755,size=256k,nr_inodes=64")
    stage = open_in_root(root, "proc", follow=False, flags=_DIR)     # the tmpfs just mounted
    try:
        for mount in files:
            name = mount.target.rsplit("/", 1)[1]
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=stage)
            try:
                os.write(fd, mount.content.encode())
                point = target(root, mount.target)
                try:
                    if stat.S_ISDIR(os.fstat(point).st_mode):   # else the kernel's ENOTDIR about /proc/self/fd/N
                        raise RuntimeFailure(f"cannot mount on {mount.target} in the container: it is a "
                                             f"directory in the image", "fix the image")
                    linux.mount(fd_path(fd), fd_path(point), None, linux.MS_BIND)
                finally:
                    os.close(point)
            finally:
                os.close(fd)
    finally:
        linux.umount2(fd_path(stage), linux.MNT_DETACH)
        os.close(stage)


def tmpfs_flags(options: str) -> tuple[int, str]:
    """--tmpfs options as Docker takes them: the mount flags (ro, noexec, nosuid,
    nodev and their opposites; nosuid and nodev by default) and the rest, which
    tmpfs itself reads (size, mode, nr_inodes, uid, gid)."""
    flag_words = {"ro": (linux.MS_RDONLY, True), "rw": (linux.MS_RDONLY, False),
                  "noexec": (linux.MS_NOEXEC, True), "exec": (linux.MS_NOEXEC, False),
                  "nosuid": (linux.MS_NOSUID, True), "suid": (linux.MS_NOSUID, False),
                  "nodev": (linux.MS_NODEV, True), "dev": (linux.MS_NODEV, False)}
    flags, data = linux.MS_NOSUID | linux.MS_NODEV, []
    for option in filter(None, options.split(",")):
        if option in flag_words:
            bit, on = flag_words[option]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(option)
    return flags, ",".join(data)


def _mount(root: int, mount: Mount, privileged: bool = False, proc: int = -1) -> None:
    point = target(root, mount.target)
    try:
        if same_object(point, root):
            raise RuntimeFailure(f"cannot mount on {mount.target} in the container: a symlink in the "
                                 "image makes it the container's root", "fix the image, or choose another path")
        info = os.fstat(point)
        if info.st_dev == proc and mount.target not in PROC_FILES_TO_COVER:
            _refuse_in_proc(mount.target)
        _check_kinds(mount, stat.S_ISDIR(info.st_mode))
        if mount.kind == "tmpfs":
            flags, data = tmpfs_flags(mount.options)
            if not privileged:
                flags |= linux.MS_NODEV
            linux.mount("tmpfs", fd_path(point), "tmpfs", flags, data)
            return
        # nodev: the container keeps CAP_MKNOD, so a node it makes in a volume must not
        # open a host device
        flags = (0 if privileged else linux.MS_NODEV) | (linux.MS_RDONLY if mount.readonly else 0)
        os.close(bind(root, mount.target, mount.source, point, flags, recursive=True))    # sandbox/bindmount.py
    finally:
        os.close(point)


def _check_kinds(mount: Mount, onto_dir: bool) -> None:
    """A directory (or tmpfs) goes on a directory, anything else on a non-directory:
    one line rather than the kernel's ENOTDIR about /proc/self/fd/N."""
    if mount.kind != "tmpfs" and not os.path.exists(mount.source):
        raise RuntimeFailure(f"cannot mount {mount.source} on {mount.target}: it does not exist on the host",
                             "create it first, or fix the -v path")
    from_dir = mount.kind == "tmpfs" or os.path.isdir(mount.source)
    if from_dir != onto_dir:
        what = "a tmpfs" if mount.kind == "tmpfs" else mount.source
        raise RuntimeFailure(f"cannot mount {what} on {mount.target} in the container: "
                             f"{'it is' if from_dir else 'it is not'} a directory and the target "
                             f"{'is not' if from_dir else 'is'}",
                             "mount a directory on a directory and a file on a file")


def _refuse_in_proc(path: str) -> None:
    """A volume or tmpfs in the container's procfs could stand in for a file the
    runtime or the kernel's users rely on there (/proc/self/fd, /proc/PID/attr:
    runc's CVE-2019-16884 and CVE-2019-19921), so, like runc, minirun mounts
    there only over the files lxcfs provides, named as such."""
    how = "it is inside /proc" if path == "/proc" or path.startswith("/proc/") else \
        "a symlink on the way leads it into /proc"
    raise RuntimeFailure(f"cannot mount on {path} in the container: {how}, where only "
                         f"{', '.join(PROC_FILES_TO_COVER)} may be mounted over",
                         "choose another path, or fix the image")


def _remount(root: int, path: str, flags: int) -> None:
    """Change the flags of the bind mount now at path (opened again: the fd used to
    mount holds what lies under the new mount, not the mount itself)."""
    top = target(root, path)
    try:
        linux.mount(None, fd_path(top), None, linux.MS_BIND | linux.MS_REMOUNT | flags)
    finally:
        os.close(top)


def _optional(root: int, path: str) -> int | None:
    """An fd of a kernel path that may not exist on this kernel, or None."""
    try:
        return open_in_root(root, path, follow=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _mask(root: int, path: str, null: int) -> None:
    """A file gets /dev/null bound over it, a directory an empty read-only tmpfs."""
    fd = _optional(root, path)
    if fd is None:
        return      # the kernel has no such path: nothing to hide
    try:
        if (os.fstat(fd).st_mode & 0o170000) == 0o040000:        # S_IFDIR
            linux.mount("tmpfs", fd_path(fd), "tmpfs", linux.MS_RDONLY | _NOSUID_NODEV_NOEXEC, "size=0")
        else:
            linux.mount(fd_path(null), fd_path(fd), None, linux.MS_BIND)
    finally:
        os.close(fd)


def _read_only(root: int, path: str) -> None:
    fd = _optional(root, path)
    if fd is None:
        return
    try:
        linux.mount(fd_path(fd), fd_path(fd), None, linux.MS_BIND | linux.MS_REC)
    finally:
        os.close(fd)
    _remount(root, path, linux.MS_RDONLY | _NOSUID_NODEV_NOEXEC)


def mask(root: int, path: str, null: int) -> None:
    """Hide path inside the root (fd) as the masked paths are; missing ones are skipped."""
    _mask(root, path, null)


def read_only(root: int, path: str) -> None:
    """Bind path inside the root read-only onto itself; missing ones are skipped."""
    _read_only(root, path)


def enter(merged: str, use_chroot: bool) -> None:
    """Make merged the root: pivot_root, so the host's tree is gone, or plain chroot."""
    if log.debugging:
        log.debug(f"enter the root {merged} with {'chroot' if use_chroot else 'pivot_root'}")
    if use_chroot:
        os.chroot(merged)
        os.chdir("/")
        return
    os.chdir(merged)
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching
    # it leaves only the new root, with no put_old directory in the image.
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def enter_cwd(cwd: str, create: bool = True) -> None:  # pragma: no cover
    """chdir into the working dir, made if missing (as Docker's run does), then check
    that it lies under the container's root: a magic link such as /proc/self/fd/N or
    /proc/N/cwd can name a directory outside it (CVE-2024-21626), and getcwd(2)
    marks such a directory "(unreachable)", which os.getcwd refuses (ENOENT)."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        if not create:
            raise MinirunError(f"working directory {cwd} does not exist in the container",
                               "give an existing directory with -w") from None
        try:
            os.makedirs(cwd, 0o755)
            os.chdir(cwd)
        except OSError as exc:
            raise MinirunError(f"working directory {cwd} cannot be made in the container: {exc.strerror}",
                               "give an existing directory with -w (or fix the image's WorkingDir)") from None
    try:
        where = os.getcwd()
    except OSError:
        where = ""
    if not where.startswith("/"):
        os.chdir("/")
        raise MinirunError(f"working directory {cwd} is outside the container",
                           "give a directory inside the container with -w (or the image's WorkingDir)")
