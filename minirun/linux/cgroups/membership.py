"""A process's cgroup membership: the cgroups a pid is in, read from /proc/PID/cgroup
and placed on this host's cgroup mounts (/proc/self/mountinfo), and moving a process
into them (each dir's cgroup.procs). minirun-oci exec puts its process in the
container's cgroups this way before it joins the namespaces, as runc does.

    /proc/PID/cgroup      "ID:CONTROLLERS:PATH" per hierarchy; CONTROLLERS is empty
                          for cgroup v2 and "name=X" for a named v1 hierarchy
    mountinfo             field 4 the mount's root, field 5 its point; after " - "
                          the type (cgroup, cgroup2) and the super options, which
                          name a v1 hierarchy's controllers

Only the caller's view counts: run it in the host's cgroup namespace.
"""

from __future__ import annotations

import os

from .. import procfs


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> tuple[list[tuple[set, str, str]], str | None]:
    """([(v1 controllers, mount root, mount point)], the cgroup2 mount point or None)."""
    v1, v2 = [], None
    for root, point, kind, options in procfs.mounts(mountinfo):
        if kind == "cgroup2" and v2 is None:
            v2 = point
        elif kind == "cgroup":
            v1.append((set(options.split(",")), root, point))
    return v1, v2


def entries(pid: int | str = "self", proc: str = "/proc") -> list[list[str]]:
    """/proc/PID/cgroup as [hierarchy id, controllers, path] per line, paths decoded as
    os.fsdecode does: a cgroup's name, like a mount point's, need not be UTF-8."""
    with open(f"{proc}/{pid}/cgroup", errors="surrogateescape") as f:
        return [line.rstrip("\n").split(":", 2) for line in f if line.strip()]


def of(pid: int | str, mountinfo: str = "/proc/self/mountinfo", proc: str = "/proc") -> list[str]:
    """The host dirs of every cgroup pid is in (v1: one per mounted hierarchy; v2: one),
    skipping hierarchies that are not mounted here."""
    lines = entries(pid, proc)
    v1, v2 = _mounts(mountinfo)
    dirs = []
    for _, names, path in lines:
        if not names:
            if v2 is not None:
                dirs.append(os.path.join(v2, path.lstrip("/")))
            continue
        wanted = set(names.split(","))
        for options, root, point in v1:
            if wanted <= options:
                rel = path[len(root):] if root != "/" and path.startswith(root) else path
                dirs.append(os.path.join(point, rel.lstrip("/")))
                break
    return [d.rstrip("/") for d in dirs]


def join(dirs: list[str], pid: int = 0) -> None:
    """Move pid (0: the caller) into every dir of dirs (cgroup.procs)."""
    for path in dirs:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def move_in_place() -> None:
    """Move this process into the cgroup it is already in: a move that changes nothing.

    Every cgroup.procs write takes one lock shared by all hierarchies
    (cgroup_threadgroup_rwsem), and the first writer after a quiet spell waits out
    an RCU grace period, 0.1 to 20 ms measured here. minirun-oci create makes that
    wait while its init sets up, so that the init's real move right after finds the
    lock warm. Any failure is ignored: the real move reports its own."""
    me = os.getpid()
    try:
        paths = of("self")
    except OSError:
        return
    for path in paths:
        try:
            if me not in pids(path):
                continue                # a view this mount does not match: move nothing
            join([path], me)
            return
        except OSError:
            continue


def pids(directory: str) -> list[int]:
    """The processes in one cgroup dir (cgroup.procs), sorted."""
    with open(os.path.join(directory, "cgroup.procs")) as f:
        return sorted(int(line) for line in f if line.strip())
