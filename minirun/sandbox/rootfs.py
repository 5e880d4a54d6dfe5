"""The container's root filesystem, set up inside its new mount namespace.

Order: make every mount private (so nothing propagates back to the host),
mount the overlay, then /proc, a minimal /dev and a read-only /sys on it,
and switch root with pivot_root (or chroot when asked). All mounts live only
in this namespace, so they vanish with the container, however it ends.
"""

from __future__ import annotations

import os
import stat

from .. import linux, overlay

# Paths minirun mounts over; created in the upper dir if the image lacks them,
# and hidden from `minirun diff` (container config "runtime_paths").
MOUNT_POINTS = ("/proc", "/dev", "/sys")

_DEVICES = (  # name, major, minor
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
    ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)
_NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def setup(spec: overlay.OverlaySpec, merged: str, strategy: str) -> str:
    """Mount everything under merged; returns the overlay strategy used."""
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    used = overlay.mount(spec, merged, strategy)
    for point in MOUNT_POINTS:
        path = merged + point
        if not os.path.isdir(path) or os.path.islink(path):
            if os.path.lexists(path):
                os.unlink(path)
            os.mkdir(path, 0o755)
    linux.mount("proc", merged + "/proc", "proc", _NOSUID_NODEV_NOEXEC)
    _mount_dev(merged + "/dev")
    linux.mount("sysfs", merged + "/sys", "sysfs", _NOSUID_NODEV_NOEXEC | linux.MS_RDONLY)
    return used


def _mount_dev(dev: str) -> None:
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in _DEVICES:
        path = f"{dev}/{name}"
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)  # mknod honours the umask
    os.mkdir(f"{dev}/pts", 0o755)
    linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm", 0o1777)
    linux.mount("shm", f"{dev}/shm", "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def enter(merged: str, use_chroot: bool) -> None:
    """Make merged the root: pivot_root, so the host's tree is gone, or plain chroot."""
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
