"""The v1 devices controller for an OCI container's linux.resources.devices
(cgroup-v1/devices.rst): <root>/devices/minirun-oci/<id>/devices.deny and
devices.allow, one rule per write ("c 1:3 rwm", "a *:* rwm"), in the config's
order, then the devices every container gets (runtime-spec "Default Devices").
v2 does this with an eBPF program, which minirun does not build: there
create() refuses, naming the field.
"""

from __future__ import annotations

import errno
import os
import time

from ...errors import EnvironmentProblem
from .files import CGROUP_ROOT, CgroupFS

PARENT = "minirun-oci"
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
    if not access or set(access) - set("rwm"):
        raise ValueError(f"device access {access!r}")
    return bool(entry.get("allow")), f"{kind} {number(entry.get('major'))}:{number(entry.get('minor'))} {access}"


def directory(container_id: str, root: str = CGROUP_ROOT) -> str:
    return os.path.join(root, "devices", PARENT, container_id)


def create(container_id: str, rules: list[dict], extra_allowed: list[str],
           root: str = CGROUP_ROOT, fs: CgroupFS | None = None) -> str:
    """The container's devices cgroup with its rules; its path. Join it with join()."""
    fs = fs or CgroupFS()
    if not os.path.exists(os.path.join(root, "devices", "devices.allow")):
        raise EnvironmentProblem("config.json: linux.resources.devices needs the cgroup v1 devices controller, "
                                 f"which {root} lacks (cgroup v2 device rules are not supported)",
                                 "remove linux.resources.devices from config.json, or use runc or crun")
    parent = os.path.join(root, "devices", PARENT)
    try:
        fs.mkdir(parent)
    except FileExistsError:
        pass
    path = directory(container_id, root)
    fs.mkdir(path)
    try:
        fs.write(os.path.join(path, "devices.deny"), "a")
        for allow, text in (rule(entry) for entry in rules):
            fs.write(os.path.join(path, "devices.allow" if allow else "devices.deny"), text)
        for text in (*DEFAULT_ALLOWED, *extra_allowed):
            fs.write(os.path.join(path, "devices.allow"), text)
    except BaseException:
        fs.rmdir(path)
        raise
    return path


def join(path: str, pid: int, fs: CgroupFS | None = None) -> None:
    (fs or CgroupFS()).write(os.path.join(path, "cgroup.procs"), str(pid))


def remove(path: str, timeout: float = 2.0, fs: CgroupFS | None = None) -> None:
    """rmdir once its tasks are gone (EBUSY until then); a missing dir is fine."""
    fs = fs or CgroupFS()
    deadline = time.monotonic() + timeout
    while True:
        try:
            fs.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return
            time.sleep(0.01)
