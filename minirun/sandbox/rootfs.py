"""The container's root filesystem, set up inside its new mount namespace.

Order: make every mount private (so nothing propagates back to the host),
mount the overlay, then /proc, a minimal /dev and a read-only /sys on it, the
/etc files, volumes and tmpfs mounts, then mask and write-protect what Docker
does, and switch root with pivot_root (or chroot when asked). All mounts live
only in this namespace, so they vanish with the container, however it ends.
Every mount point exists already: the image has it, or the init layer does.
"""

from __future__ import annotations

import os
import stat

from .. import linux, log, overlay
from .mounts import MASKED_PATHS, READONLY_PATHS, Mount

_DEVICES = (  # name, major, minor
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
    ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)
_NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def setup(spec: overlay.OverlaySpec, merged: str, strategy: str, mounts: tuple[Mount, ...] = (),
          privileged: bool = False) -> str:
    """Mount everything under merged; returns the overlay strategy used."""
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    # nodev everywhere the container can create files: it keeps CAP_MKNOD (as with
    # Docker), so a node it makes must not open a host device. The few devices it
    # may use are the host's own nodes, bound into /dev one by one.
    used = overlay.mount(spec, merged, strategy, nodev=not privileged)
    if log.debugging:
        log.debug(f"overlay: {len(spec.lowers)} lower dir(s), upper {spec.upper or '(none: read-only)'}, "
                  f"mounted with the {used} API (asked: {strategy})")
    _mount_files(merged, [m for m in mounts if m.kind == "file"])
    linux.mount("proc", merged + "/proc", "proc", _NOSUID_NODEV_NOEXEC)
    _mount_dev(merged + "/dev", privileged)
    sys_flags = _NOSUID_NODEV_NOEXEC | (0 if privileged else linux.MS_RDONLY)
    linux.mount("sysfs", merged + "/sys", "sysfs", sys_flags)
    for mount in mounts:
        if mount.kind != "file":
            _mount(merged, mount, privileged)
    if not privileged:
        for path in MASKED_PATHS:
            _mask(merged, merged + path)
        for path in READONLY_PATHS:
            _read_only(merged + path)
    return used


def _mount_dev(dev: str, privileged: bool = False) -> None:
    nodev = 0 if privileged else linux.MS_NODEV
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME | nodev, "mode=755,size=65536k")
    for name, major, minor in _DEVICES:
        path = f"{dev}/{name}"
        if privileged:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(path, 0o666)  # mknod honours the umask
        else:
            # a bind mount of the host's node carries no nodev, unlike the tmpfs around it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            linux.mount(f"/dev/{name}", path, None, linux.MS_BIND)
    os.mkdir(f"{dev}/pts", 0o755)
    linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm", 0o1777)
    linux.mount("shm", f"{dev}/shm", "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def _mount_files(merged: str, files: list[Mount]) -> None:
    """Write each file into a small tmpfs and bind it over its target. The tmpfs
    goes on the container's /proc first, before procfs does, and is detached once
    the files are bound: they keep it alive, and it appears nowhere else. So the
    store holds no copy (one inode less to make and delete per file: ~0.2 ms here),
    and the binds take tmpfs's nosuid,nodev,noexec without a remount."""
    if not files:
        return
    stage = merged + "/proc"
    linux.mount("tmpfs", stage, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755,size=256k,nr_inodes=64")
    try:
        for mount in files:
            path = f"{stage}/{mount.target.rsplit('/', 1)[1]}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, mount.content.encode())
            finally:
                os.close(fd)
            linux.mount(path, merged + mount.target, None, linux.MS_BIND)
    finally:
        linux.umount2(stage, linux.MNT_DETACH)


def _mount(merged: str, mount: Mount, privileged: bool = False) -> None:
    target = merged + mount.target
    if mount.kind == "tmpfs":
        linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, mount.options)
        return
    linux.mount(mount.source, target, None, linux.MS_BIND | linux.MS_REC)
    # nodev: the container keeps CAP_MKNOD, so a node it makes in a volume must not
    # open a host device
    flags = (0 if privileged else linux.MS_NODEV) | (linux.MS_RDONLY if mount.readonly else 0)
    if flags:
        linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | flags)


def _mask(merged: str, path: str) -> None:
    """A file gets /dev/null bound over it, a directory an empty read-only tmpfs."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return      # the kernel has no such path: nothing to hide
    if stat.S_ISDIR(st.st_mode):
        linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY | _NOSUID_NODEV_NOEXEC, "size=0")
    else:
        linux.mount(merged + "/dev/null", path, None, linux.MS_BIND)


def _read_only(path: str) -> None:
    if not os.path.lexists(path):
        return
    linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY |
                _NOSUID_NODEV_NOEXEC)


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
