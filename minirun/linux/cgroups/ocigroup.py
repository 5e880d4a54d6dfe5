"""An OCI container's cgroup on cgroup v1 (minirun-oci): linux.cgroupsPath, the
devices controller (linux.resources.devices), pids.max (linux.resources.pids) and
the cpu and cpuset files of linux.resources.cpu (CPU_FILES).

Where (runtime-spec config-linux.md "Cgroups Path"), per controller C:
    absolute cgroupsPath /P     <root>/C/P
    relative cgroupsPath P      <root>/C/<this process's own cgroup in C>/P
    none                        <root>/C/minirun-oci/<id>
Files (cgroup-v1/devices.rst, pids.rst): devices.deny "a", then each rule in the
config's order to devices.allow or devices.deny ("c 1:3 rwm"), then the devices
every container gets (runtime-spec "Default Devices"); pids.max N or "max".
The process joins every controller's dir (cgroup.procs) before it forks the init.
cgroup v2 needs an eBPF program for device rules, which minirun does not build:
there create() refuses, naming the field.
"""

from __future__ import annotations

import errno
import os
import time

from ...errors import EnvironmentProblem, UsageError
from .files import CGROUP_ROOT, CgroupFS

PARENT = "minirun-oci"
JOINED = ("devices", "pids", "memory", "cpu", "cpuacct", "freezer", "blkio")   # with a cgroupsPath
# (cpuset is joined only when linux.resources.cpu names cpus or mems)
# null, zero, full, random, urandom, tty, console, ptmx and the pts slaves
DEFAULT_ALLOWED = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
                   "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm")


def rule(entry: dict) -> tuple[bool, str]:
    """(allow, the rule's text) of one linux.resources.devices entry."""
    def number(value) -> str:
        return "*" if value is None or value == -1 else str(int(value))
    kind = entry.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device type {kind!r}")
    access = entry.get("access") or "rwm"
    if set(access) - set("rwm"):
        raise ValueError(f"device access {access!r}")
    return bool(entry.get("allow")), f"{kind} {number(entry.get('major'))}:{number(entry.get('minor'))} {access}"


def check_path(path: str) -> None:
    if any(part == ".." for part in path.split("/")):
        raise UsageError(f"config.json: linux.cgroupsPath {path!r} has a '..' component",
                         "give a path without '..'")


def _own(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if controller in names.split(","):
                return path.lstrip("/")
    return ""


def directory(controller: str, container_id: str, cgroups_path: str, root: str = CGROUP_ROOT) -> str:
    if not cgroups_path:
        return os.path.join(root, controller, PARENT, container_id)
    if cgroups_path.startswith("/"):
        return os.path.join(root, controller, cgroups_path.lstrip("/"))
    return os.path.join(root, controller, _own(controller), cgroups_path)


# linux.resources.cpu -> (controller, file), in the order written (a period before its quota
# or runtime: the kernel checks each against the other)
CPU_FILES = (("shares", "cpu", "cpu.shares"), ("period", "cpu", "cpu.cfs_period_us"),
             ("quota", "cpu", "cpu.cfs_quota_us"), ("realtimePeriod", "cpu", "cpu.rt_period_us"),
             ("realtimeRuntime", "cpu", "cpu.rt_runtime_us"), ("cpus", "cpuset", "cpuset.cpus"),
             ("mems", "cpuset", "cpuset.mems"))
SUPPORTED = {"devices": "devices", "pids": "pids", "cpu": "cpu"}     # linux.resources keys


def plan(resources: dict, extra_allowed: list[str]) -> dict[str, list[tuple[str, str]]]:
    """controller -> [(file, value)] for linux.resources (keys outside SUPPORTED are the
    caller's to refuse; so are cpu keys outside CPU_FILES)."""
    out: dict[str, list[tuple[str, str]]] = {}
    rules = resources.get("devices") or []
    if rules:
        out["devices"] = [("devices.deny", "a")] + [
            ("devices.allow" if allow else "devices.deny", text) for allow, text in map(rule, rules)] + [
            ("devices.allow", text) for text in (*DEFAULT_ALLOWED, *extra_allowed)]
    limit = (resources.get("pids") or {}).get("limit")
    if limit is not None:
        out["pids"] = [("pids.max", str(limit) if limit > 0 else "max")]
    cpu = resources.get("cpu") or {}
    for key, controller, name in CPU_FILES:
        if cpu.get(key) not in (None, ""):
            out.setdefault(controller, []).append((name, str(cpu[key])))
    return out


def create(container_id: str, cgroups_path: str, settings: dict[str, list[tuple[str, str]]],
           root: str = CGROUP_ROOT, fs: CgroupFS | None = None) -> tuple[list[str], list[str]]:
    """(the dirs to join, every dir made: what remove() takes back); ([], []) when nothing is asked."""
    fs = fs or CgroupFS()
    present = [c for c in JOINED if os.path.exists(os.path.join(root, c, "cgroup.procs"))]
    if cgroups_path and not present:
        raise EnvironmentProblem(f"config.json: linux.cgroupsPath needs cgroup v1 controllers, which {root} lacks "
                                 "(cgroup v2 is not supported by minirun-oci yet)",
                                 "remove linux.cgroupsPath from config.json, or use runc or crun")
    for controller in settings:
        if not os.path.exists(os.path.join(root, controller, "cgroup.procs")):
            raise EnvironmentProblem(f"config.json: linux.resources needs the cgroup v1 {controller} controller, "
                                     f"which {root} lacks (cgroup v2 is not supported by minirun-oci yet)",
                                     "remove those resources from config.json, or use runc or crun")
    wanted = list(dict.fromkeys([*(present if cgroups_path else []), *settings]))
    made: list[str] = []
    try:
        for controller in wanted:
            path = directory(controller, container_id, cgroups_path, root)
            _makedirs(fs, path, made, controller == "cpuset")
            for name, value in settings.get(controller, []):
                try:
                    fs.write(os.path.join(path, name), value)
                except OSError as exc:
                    raise EnvironmentProblem(f"config.json: linux.resources: cannot write {value!r} to {name}: "
                                             f"{exc.strerror}", "fix the value in config.json") from None
    except BaseException:
        remove(made, fs=fs)
        raise
    return [directory(c, container_id, cgroups_path, root) for c in wanted], made


def _makedirs(fs: CgroupFS, path: str, made: list[str], cpuset: bool = False) -> None:
    """mkdir -p; a new cpuset dir gets its parent's cpus and mems (v1 leaves them empty,
    and a task cannot join a cpuset without both)."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        _makedirs(fs, parent, made, cpuset)
    try:
        fs.mkdir(path)
        made.append(path)
    except FileExistsError:
        return
    if cpuset:
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(os.path.join(parent, name)) as f:
                fs.write(os.path.join(path, name), f.read().strip() or "\n")


def join(dirs: list[str], pid: int, fs: CgroupFS | None = None) -> None:
    for path in dirs:
        (fs or CgroupFS()).write(os.path.join(path, "cgroup.procs"), str(pid))


def remove(made: list[str], timeout: float = 2.0, fs: CgroupFS | None = None) -> None:
    """rmdir what create() made, deepest first, once its tasks are gone (EBUSY until then)."""
    fs = fs or CgroupFS()
    deadline = time.monotonic() + timeout
    for path in sorted(made, key=len, reverse=True):
        while True:
            try:
                fs.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
