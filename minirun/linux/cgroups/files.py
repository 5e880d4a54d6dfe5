"""One container's cgroup on cgroupfs: the file operations (CgroupFS, which unit
tests replace with a fake), the handle a container keeps (add a task, read the
OOM-kill count, remove with its tasks), and what the v1 and v2 drivers share."""

from __future__ import annotations

import errno
import os
import _signal as signal    # the C module: `signal` imports enum
import time
from ...lib.frozen import dataclass, field

from ...errors import EnvironmentProblem, RuntimeFailure
from .limits import Limits, Setting

CGROUP_ROOT = "/sys/fs/cgroup"
PARENT = "minirun"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")        # ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ without re (and enum)


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

    def usage(self) -> dict[str, int | None]:
        """What stats shows, read from the interface files: cpu_ns (CPU time used),
        memory and memory_limit (bytes; None when unlimited), pids. A key is None
        when this hierarchy does not keep it (the controller is off)."""
        read = self._first_number
        if self.version == "v2":
            cpu = _flat_keyed(os.path.join(self.paths[0], "cpu.stat")).get("usage_usec") if self.paths else None
            return {"cpu_ns": None if cpu is None else cpu * 1000, "memory": read("memory.current"),
                    "memory_limit": read("memory.max"), "pids": read("pids.current")}
        limit = read("memory.limit_in_bytes")
        return {"cpu_ns": read("cpuacct.usage"), "memory": read("memory.usage_in_bytes"),
                "memory_limit": None if limit is None or limit >= 1 << 62 else limit,
                "pids": read("pids.current")}

    def _first_number(self, name: str) -> int | None:
        """The number in the first of this cgroup's directories that has name ("max": None)."""
        for path in self.paths:
            words = _words(os.path.join(path, name))
            if words:
                return int(words[0]) if words[0].isdigit() else None
        return None

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
        if not (0 < len(container_id) <= 128 and container_id[0] in _ALNUM and _ID_CHARS.issuperset(container_id)):
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


def _missing(controller: str, version: str) -> EnvironmentProblem:
    where = "is not mounted" if version == "v1" else "is not available in cgroup.controllers"
    return EnvironmentProblem(f"cannot limit resources: the {version} cgroup {controller} controller {where}",
                              "enable the controller, or run without the matching limit flag")
