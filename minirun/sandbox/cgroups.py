"""Per-container cgroups: memory, CPU and pids limits, and whether the OOM killer struck.

Each container gets one cgroup, minirun/<container id>, and these files
(kernel docs under Documentation/admin-guide/ unless the path says otherwise):

  cgroup v2 (cgroup-v2.rst). <root> is /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host
    <root>/cgroup.subtree_control            "+memory +pids +cpu", only those not yet enabled
    <root>/minirun/cgroup.subtree_control    the same one level down ("Enabling and Disabling")
    <root>/minirun/<id>/memory.max           bytes                   ("Memory Interface Files")
                        memory.swap.max      0, if present, so swap cannot stretch the limit
                        pids.max             tasks                   ("PID Interface Files")
                        cpu.max              "<quota> 100000"        ("CPU Interface Files")
                        cgroup.procs         the container's pid
    read back: memory.events `oom_kill N`. On removal: cgroup.kill (5.14+), then rmdir

  cgroup v1: one hierarchy per controller, so one directory per controller
    <root>/memory/minirun/<id>/memory.limit_in_bytes        bytes (cgroup-v1/memory.rst)
                               memory.memsw.limit_in_bytes  the same bytes, if present
    <root>/pids/minirun/<id>/pids.max                       tasks (cgroup-v1/pids.rst)
    <root>/cpu/minirun/<id>/cpu.cfs_period_us               100000 (Documentation/scheduler/sched-bwc.rst)
                            cpu.cfs_quota_us                cpus * 100000
    cgroup.procs in each one. Read back: memory.oom_control `oom_kill N`

The memory controller is used even without --memory, because the OOM-kill
count is kept only there. On v1, memory.oom_control's `oom_kill` (4.13+)
counts kills of this group's tasks, and it is the one trustworthy signal.
memory.failcnt counts limit hits that reclaim usually absorbs (and on 6.18 it
stayed 0 through a real OOM kill). under_oom is 1 only while a kill waits with
oom_kill_disable set.

Creating and removing cgroups goes through CgroupFS. On cgroupfs, mkdir fills
in the interface files, and rmdir works despite them (EBUSY while tasks
remain). A plain directory does neither, so unit tests give the drivers a fake
that behaves like the kernel on a tmp_path tree.
"""

from __future__ import annotations

import errno
import math
import os
import re
import signal
import time
from ..lib.frozen import dataclass, field

from ..errors import EnvironmentProblem, RuntimeFailure, UsageError

CGROUP_ROOT = "/sys/fs/cgroup"
PARENT = "minirun"
CFS_PERIOD_US = 100_000
MIN_MEMORY = 6 * 1024 * 1024             # docker's minimum, below which a runtime can hardly start
MIN_CPUS = 0.01                          # the kernel refuses a quota under 1 ms (sched-bwc.rst)
V1_CONTROLLERS = ("memory", "pids", "cpu")

_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?) ?(?:([kmgtp])i?)?b?$", re.IGNORECASE)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
Setting = tuple[str, str, bool]          # (file, value, required); optional ones only if present


# ---------------------------------------------------------------- flags

def parse_memory(text: str) -> int:
    """Bytes from docker's --memory syntax (binary units: 1k = 1024)."""
    match = _MEMORY_RE.match(str(text).strip())
    if not match:
        raise UsageError(f"invalid --memory {text!r}: not a size",
                         "give a number with an optional unit b, k, m or g, e.g. 512m or 1g")
    number, unit = match.groups()
    from decimal import Decimal
    value = int(Decimal(number) * 1024 ** "bkmgtp".index((unit or "b").lower()))
    if value < MIN_MEMORY:
        raise UsageError(f"invalid --memory {text!r}: below the minimum of 6 MiB", "give at least 6m")
    if value >= 2 ** 63:
        raise UsageError(f"invalid --memory {text!r}: too large", "leave --memory out for no limit")
    return value


def host_cpus() -> int:
    """CPUs this process may run on: what docker's runtime.NumCPU counts too."""
    return len(os.sched_getaffinity(0))


def parse_cpus(text: str, available: int | None = None) -> float:
    """CPUs as a decimal (docker's --cpus), from 0.01 up to the host's CPU count."""
    available = host_cpus() if available is None else available
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or not MIN_CPUS <= value <= available:
        raise UsageError(f"invalid --cpus {text!r}: must be a number from {MIN_CPUS} to {available}",
                         f"this host has {available} CPUs; e.g. --cpus 0.5 allows half of one")
    return value


def parse_pids(value: str | int) -> int | None:
    """Most tasks (processes and threads) at once; -1 or 0 means no limit (returns None), as in docker."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -2
    if number in (0, -1):
        return None
    if number < 0:
        raise UsageError(f"invalid --pids-limit {value!r}: not a positive whole number",
                         "give e.g. --pids-limit 100, or -1 for no limit")
    return number


def cpu_quota(cpus: float) -> int:
    """Microseconds of CPU time per CFS_PERIOD_US period."""
    return round(cpus * CFS_PERIOD_US)


@dataclass(frozen=True)
class Limits:
    memory: int | None = None            # bytes
    cpus: float | None = None
    pids: int | None = None

    @property
    def empty(self) -> bool:
        return self.memory is None and self.cpus is None and self.pids is None

    @classmethod
    def parse(cls, memory: str | None = None, cpus: str | None = None,
              pids: str | int | None = None, available_cpus: int | None = None) -> "Limits":
        """Limits from the raw flag values; None means the flag was not given."""
        return cls(None if memory is None else parse_memory(memory),
                   None if cpus is None else parse_cpus(cpus, available_cpus),
                   None if pids is None else parse_pids(pids))


def plan(limits: Limits, version: str) -> dict[str, list[Setting]]:
    """The controllers a container needs and the files to write for each, in write order.

    Pure, so tests can read it. Memory is always listed, with no settings when there
    is no --memory, because the OOM-kill count is kept there. On v1 the memsw limit
    comes second: the kernel requires memsw >= memory at every step."""
    size, quota = str(limits.memory), cpu_quota(limits.cpus or 0)
    if version == "v2":
        files = {"memory": [("memory.max", size, True), ("memory.swap.max", "0", False)],
                 "pids": [("pids.max", str(limits.pids), True)],
                 "cpu": [("cpu.max", f"{quota} {CFS_PERIOD_US}", True)]}
    else:
        files = {"memory": [("memory.limit_in_bytes", size, True), ("memory.memsw.limit_in_bytes", size, False)],
                 "pids": [("pids.max", str(limits.pids), True)],
                 "cpu": [("cpu.cfs_period_us", str(CFS_PERIOD_US), True), ("cpu.cfs_quota_us", str(quota), True)]}
    asked = {"memory": limits.memory, "pids": limits.pids, "cpu": limits.cpus}
    return {c: files[c] if asked[c] is not None else [] for c in files if c == "memory" or asked[c] is not None}


# ---------------------------------------------------------------- detection

def detect(root: str = CGROUP_ROOT) -> str | None:
    """"v2", "v1" or None (no cgroups to use).

    A hybrid host's `unified` mount counts only when it holds the memory controller.
    Each controller lives in exactly one hierarchy, so an empty unified mount (systemd's
    hybrid default) means the controllers are all on v1."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if "memory" in _words(os.path.join(root, "unified", "cgroup.controllers")):
        return "v2"
    if any(os.path.exists(os.path.join(root, c, "cgroup.procs")) for c in V1_CONTROLLERS):
        return "v1"
    return None


def open_driver(root: str = CGROUP_ROOT, limits: Limits | None = None,
                fs: "CgroupFS | None" = None) -> "V1Driver | V2Driver | None":
    """The driver for this host's cgroups. None when there are none, which is an
    error only if limits were asked for."""
    version = detect(root)
    if version == "v2":
        pure = os.path.exists(os.path.join(root, "cgroup.controllers"))
        return V2Driver(root if pure else os.path.join(root, "unified"), fs)
    if version == "v1":
        return V1Driver(root, fs)
    if limits is not None and not limits.empty:
        raise EnvironmentProblem(f"cannot limit resources: no cgroup controllers under {root}",
                                 "mount cgroup2 at /sys/fs/cgroup, or run without --memory/--cpus/--pids-limit")
    return None


# ---------------------------------------------------------------- files

class CgroupFS:
    """The cgroupfs operations that a plain directory can't imitate. Unit tests swap in a fake."""

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def write(self, path: str, value: str) -> None:
        """A single write(2) without O_CREAT: the kernel parses each write as a whole, and a
        missing file means the controller is off, so it must not be created."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _words(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def _flat_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ("oom_kill 3" per line) as a dict; empty if it is gone."""
    words = _words(path)
    return {k: int(v) for k, v in zip(words[::2], words[1::2]) if v.lstrip("-").isdigit()}


def _apply(fs: CgroupFS, directory: str, settings: list[Setting]) -> None:
    for name, value, required in settings:
        path = os.path.join(directory, name)
        if not required and not os.path.exists(path):
            continue
        try:
            fs.write(path, value)
        except OSError as err:
            raise RuntimeFailure(f"set cgroup limit {path} to {value}: {err.strerror}",
                                 "check the value against this kernel's limits") from err


# ---------------------------------------------------------------- one container's cgroup

@dataclass
class CgroupHandle:
    """A container's cgroup: one directory on v2, one per controller on v1."""
    version: str
    paths: list[str]
    memory: str | None                   # the directory whose OOM counter is read
    fs: CgroupFS = field(default_factory=CgroupFS, repr=False, compare=False)

    def add(self, pid: int) -> None:
        """Move pid into every hierarchy. 0 means the calling process: the kernel reads
        pids in the writer's PID namespace, so a child can join itself after unshare."""
        for path in self.paths:
            try:
                self.fs.write(os.path.join(path, "cgroup.procs"), str(pid))
            except OSError as err:
                raise RuntimeFailure(f"add process {pid} to cgroup {path}: {err.strerror}") from err

    def oom_killed(self) -> bool:
        if self.memory is None:
            return False
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        return _flat_keyed(os.path.join(self.memory, name)).get("oom_kill", 0) > 0

    def remove(self, timeout: float = 2.0) -> None:
        """rmdir every directory, children first. Tolerates ones already gone, and
        kills lingering tasks (EBUSY) and retries until the timeout runs out."""
        deadline = time.monotonic() + timeout
        for path in self.paths:
            _remove_cgroup(self.fs, path, deadline)

    def to_json(self) -> dict:
        return {"version": self.version, "paths": list(self.paths), "memory": self.memory}

    @classmethod
    def of_container(cls, container_id: str, root: str = CGROUP_ROOT) -> "CgroupHandle":
        """Every cgroup minirun could have made for container_id, found by name
        (<root>/<hierarchy>/minirun/<id>, <root>/minirun/<id>): what `rm` frees for a
        container whose runtime was killed before its state named its cgroup."""
        try:
            names = os.listdir(root)
        except OSError:
            names = []
        candidates = [os.path.join(root, PARENT, container_id)]
        candidates += [os.path.join(root, name, PARENT, container_id) for name in sorted(names)]
        return cls("", [path for path in candidates if os.path.isdir(path)], None)

    @classmethod
    def from_json(cls, data: dict, fs: CgroupFS | None = None) -> "CgroupHandle":
        return cls(data["version"], list(data["paths"]), data.get("memory"), fs or CgroupFS())


def _remove_cgroup(fs: CgroupFS, path: str, deadline: float) -> None:
    while True:
        try:
            for directory in [d for d, _, _ in os.walk(path, topdown=False)]:
                try:
                    fs.rmdir(directory)
                except FileNotFoundError:
                    pass
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise RuntimeFailure(f"remove cgroup {path}: {err.strerror}",
                                     f"see the pids in {path}/cgroup.procs") from err
        _kill_tasks(fs, path)
        time.sleep(0.02)


def _kill_tasks(fs: CgroupFS, path: str) -> None:
    """SIGKILL every task under path, using cgroup.kill when the kernel has it (v2, 5.14+).
    cgroup.kill also reaches tasks forked while the kill is in progress."""
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        try:
            fs.write(kill_file, "1")
            return
        except OSError:
            pass
    for directory, _, _ in os.walk(path):
        for pid in _words(os.path.join(directory, "cgroup.procs")):
            fs.kill(int(pid))


# ---------------------------------------------------------------- drivers

class _Driver:
    version = ""

    def __init__(self, root: str, fs: CgroupFS | None = None, parent: str = PARENT):
        self.root = root
        self.fs = fs or CgroupFS()
        self.parent = parent

    def create(self, container_id: str, limits: Limits) -> CgroupHandle:
        """Make the container's cgroup(s) and write its limits. If anything fails,
        whatever was made is removed again."""
        if not _ID_RE.match(container_id):
            raise ValueError(f"not a usable cgroup name: {container_id!r}")
        made: list[str] = []
        try:
            return self._create(container_id, limits, made)
        except BaseException:
            for path in reversed(made):
                try:
                    self.fs.rmdir(path)
                except OSError:
                    pass
            raise

    def _make(self, base: str, container_id: str, made: list[str]) -> str:
        """base/minirun/<id>; minirun/ itself stays, shared by every container."""
        path = os.path.join(base, self.parent, container_id)
        self._ensure(os.path.dirname(path))
        if self._ensure(path):
            made.append(path)
        return path

    def _ensure(self, path: str) -> bool:
        """mkdir; True if this call made the directory."""
        try:
            self.fs.mkdir(path)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            raise RuntimeFailure(f"create cgroup {path}: {err.strerror}",
                                 "minirun must run as root with cgroupfs mounted read-write") from err

    def _create(self, container_id: str, limits: Limits, made: list[str]) -> CgroupHandle:
        raise NotImplementedError


class V1Driver(_Driver):
    """One directory per controller: <root>/<controller>/minirun/<id>."""
    version = "v1"

    def _create(self, container_id: str, limits: Limits, made: list[str]) -> CgroupHandle:
        paths, memory = [], None
        for controller, settings in plan(limits, "v1").items():
            hierarchy = os.path.join(self.root, controller)
            if not os.path.exists(os.path.join(hierarchy, "cgroup.procs")):
                if settings:
                    raise _missing(controller, "v1")
                continue
            path = self._make(hierarchy, container_id, made)
            _apply(self.fs, path, settings)
            paths.append(path)
            memory = path if controller == "memory" else memory
        return CgroupHandle("v1", paths, memory, self.fs)


class V2Driver(_Driver):
    """One directory, <root>/minirun/<id>, below parents that pass the controllers down."""
    version = "v2"

    def _create(self, container_id: str, limits: Limits, made: list[str]) -> CgroupHandle:
        wanted = plan(limits, "v2")
        available = _words(os.path.join(self.root, "cgroup.controllers"))
        for controller, settings in wanted.items():
            if settings and controller not in available:
                raise _missing(controller, "v2")
        controllers = [c for c in wanted if c in available]
        self._enable(self.root, controllers)
        self._ensure(os.path.join(self.root, self.parent))
        self._enable(os.path.join(self.root, self.parent), controllers)
        path = self._make(self.root, container_id, made)
        for settings in wanted.values():
            _apply(self.fs, path, settings)
        return CgroupHandle("v2", [path], path if "memory" in controllers else None, self.fs)

    def _enable(self, directory: str, controllers: list[str]) -> None:
        """Pass controllers down to directory's children. A cgroup can only use the ones
        its parent enabled in cgroup.subtree_control (cgroup-v2.rst, "Top-down Constraint")."""
        control = os.path.join(directory, "cgroup.subtree_control")
        enabled = _words(control)
        missing = " ".join(f"+{c}" for c in controllers if c not in enabled)
        if not missing:
            return
        try:
            self.fs.write(control, missing)
        except OSError as err:
            raise EnvironmentProblem(f"cannot enable cgroup controllers {missing} in {control}: {err.strerror}",
                                     "another manager may own this cgroup tree; check its cgroup.subtree_control"
                                     ) from err


def _missing(controller: str, version: str) -> EnvironmentProblem:
    where = "is not mounted" if version == "v1" else "is not available in cgroup.controllers"
    return EnvironmentProblem(f"cannot limit resources: the {version} cgroup {controller} controller {where}",
                              "enable the controller, or run without the matching limit flag")


# ---------------------------------------------------------------- after a crash

def cleanup_stale(root: str, live_ids: set[str], fs: CgroupFS | None = None,
                  parent: str = PARENT) -> list[str]:
    """Remove the minirun/<id> cgroups in every hierarchy under root whose id is not live
    (left by a runtime that died before remove()); returns their paths. Ones with tasks
    are skipped, as another store on this host may own them: CgroupHandle.remove() kills."""
    fs = fs or CgroupFS()
    removed, seen = [], set()
    patterns = (os.path.join(root, parent, "*"), os.path.join(root, "*", parent, "*"))
    import glob
    for path in sorted(p for pattern in patterns for p in glob.glob(pattern)):
        real = os.path.realpath(path)
        if not os.path.isdir(path) or os.path.basename(path) in live_ids or real in seen:
            continue
        seen.add(real)
        if any(_words(os.path.join(d, "cgroup.procs")) for d, _, _ in os.walk(path)):
            continue
        try:
            _remove_cgroup(fs, path, time.monotonic())
            removed.append(path)
        except RuntimeFailure:
            pass
    return removed
