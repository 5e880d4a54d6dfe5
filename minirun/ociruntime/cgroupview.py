"""A config mount of type "cgroup": the container sees its own cgroup there, as with runc.

cgroup v2: the container's cgroup dir bound on the destination. cgroup v1: a tmpfs
on the destination and, in it, for each hierarchy mounted under /sys/fs/cgroup
that the container's cgroup has a dir in, that dir bound on a dir of the
hierarchy's name (and the host's symlinks such as cpu,cpuacct -> cpu); a hierarchy
the container was not put in is left out. The mount's flags (ro, nosuid, ...) are
then applied to each of those mounts. Binds work in a user namespace too, where a
fresh v1 cgroup mount is not allowed. Without any cgroup (a host with none) the
host's /sys/fs/cgroup is bound as it is.
"""

from __future__ import annotations

import os

from .. import linux
from ..linux import procfs
from ..layer.safeopen import fd_path

HOST = "/sys/fs/cgroup"
_KEEP = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def _hierarchies() -> list[str]:
    """Names of the v1 hierarchies mounted right under /sys/fs/cgroup."""
    return [os.path.basename(point) for _, point, kind, _ in procfs.mounts()
            if kind == "cgroup" and os.path.dirname(point) == HOST]


def mount(reopen, flags: int, group: dict) -> None:
    """The view on the destination; reopen() gives a new O_PATH fd of it, looked up
    beneath the rootfs (so it is the topmost mount there)."""
    dirs, version = group.get("dirs") or [], group.get("version")
    keep = flags & _KEEP
    if version == "v2" and dirs:
        _bind(dirs[0], reopen, keep)
        return
    if version != "v1" or not dirs:
        _bind(HOST, reopen, keep, recursive=True)
        return
    point = reopen()
    try:
        linux.mount("tmpfs", fd_path(point), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                    "mode=755")
    finally:
        os.close(point)
    point = reopen()                                 # the tmpfs just mounted
    try:
        top = os.open(fd_path(point), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(point)
    try:
        for name in _hierarchies():
            mine = next((d for d in dirs if d.startswith(f"{HOST}/{name}/")), None)
            if mine is None:
                continue
            os.mkdir(name, 0o755, dir_fd=top)
            _bind(mine, lambda: os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                        dir_fd=top), keep)
        for entry in os.scandir(HOST):
            if entry.is_symlink():
                try:
                    os.symlink(os.readlink(entry.path), entry.name, dir_fd=top)
                except FileExistsError:
                    pass
        if keep:
            linux.mount(None, fd_path(top), None, linux.MS_REMOUNT | linux.MS_BIND | keep)
    finally:
        os.close(top)


def _bind(source: str, reopen, keep: int, recursive: bool = False) -> None:
    point = reopen()
    try:
        linux.mount(source, fd_path(point), None, linux.MS_BIND | (linux.MS_REC if recursive else 0))
    finally:
        os.close(point)
    if keep:
        top = reopen()                                                       # the bind just made
        try:
            linux.mount(None, fd_path(top), None, linux.MS_REMOUNT | linux.MS_BIND | keep)
        finally:
            os.close(top)
