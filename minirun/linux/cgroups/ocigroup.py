"""An OCI container's cgroup (minirun-oci), on cgroup v1 or v2: linux.cgroupsPath and
linux.resources (ociresources.plan says which files; the v2 device rules are a BPF
program, linux/bpfdevices.py). Every container gets a cgroup, so that `kill --all`
and `delete` find all of its processes in cgroup.procs.

Where (runtime-spec config-linux.md "Cgroups Path"), per v1 controller C or once on v2:
    absolute cgroupsPath /P     v1 <root>/C/P          v2 <v2root>/P
    relative cgroupsPath P      v1 <root>/C/<own>/P    v2 <v2root>/<own>/P   (own: this process's cgroup)
    none                        v1 <root>/C/minirun-oci/<id>                 v2 <v2root>/minirun-oci/<id>
On v1 the dir is made in every mounted controller of JOINED (cpuset too, as runc
does, even with no cpus or mems set: a new cpuset dir gets its parent's, since v1
leaves them empty); on v2 each ancestor gets the needed controllers in its
cgroup.subtree_control. create writes the init's pid into each cgroup.procs
while the init sets up its mounts (ociruntime/container.py), or, when the config has
a cgroup namespace, hooks or a user namespace, the intermediate process joins
before it forks the init.
A resource the host cannot honour (a controller missing, a field the version
lacks) is an error naming the field, and nothing is left behind.
"""

from __future__ import annotations

import errno
import os
import time

from ...errors import EnvironmentProblem, UsageError
from . import _v2_root, detect, membership
from .files import CGROUP_ROOT, CgroupFS, _words
from .ociresources import Unsupported, device_rules, plan

PARENT = "minirun-oci"
JOINED = ("devices", "pids", "memory", "cpu", "cpuacct", "cpuset", "freezer", "blkio", "net_cls", "perf_event",
          "hugetlb")


def check_path(path: str) -> None:
    if any(part == ".." for part in path.split("/")):
        raise UsageError(f"config.json: linux.cgroupsPath {path!r} has a '..' component",
                         "give a path without '..'")


def _own(controller: str) -> str:
    """This process's cgroup in controller's hierarchy ("" for v2's unified one)."""
    for number, names, path in membership.entries():
        if (controller and controller in names.split(",")) or (not controller and number == "0"):
            return path.lstrip("/")
    return ""


def directory(controller: str, container_id: str, cgroups_path: str, root: str = CGROUP_ROOT) -> str:
    """The dir in v1 controller's hierarchy, or with controller "" the v2 dir below root."""
    base = os.path.join(root, controller) if controller else root
    if not cgroups_path:
        return os.path.join(base, PARENT, container_id)
    if cgroups_path.startswith("/"):
        return os.path.join(base, cgroups_path.lstrip("/"))
    return os.path.join(base, _own(controller), cgroups_path)


class Group:
    """What create() made: version, the dirs to join, the dirs to remove."""

    def __init__(self, version: str | None, dirs: list[str], made: list[str]):
        self.version, self.dirs, self.made = version, dirs, made

    def to_json(self) -> dict:
        return {"version": self.version, "dirs": self.dirs, "made": self.made}


def create(container_id: str, cgroups_path: str, resources: dict, extra_allowed: list[str],
           root: str = CGROUP_ROOT, fs: CgroupFS | None = None) -> Group:
    fs = fs or CgroupFS()
    version = detect(root)
    if version is None:
        if cgroups_path or any(resources.values()):
            raise EnvironmentProblem(f"config.json: linux.cgroupsPath/resources need cgroups, and {root} has none",
                                     "mount the cgroup filesystems, or drop those fields")
        return Group(None, [], [])
    try:
        settings = plan(resources, version, extra_allowed)
    except Unsupported as exc:
        raise EnvironmentProblem(f"config.json: {exc.field}: cannot be honoured on this host's cgroup {version}: "
                                 f"{exc.why}", "remove the field from config.json, or run on a host that has it"
                                 ) from None
    if version == "v1":
        return _create_v1(container_id, cgroups_path, settings, root, fs)
    return _create_v2(container_id, cgroups_path, settings, device_rules(resources, extra_allowed),
                      _v2_root(root), fs)


def _field_of(controller: str) -> str:
    return {"cpuset": "cpu.cpus/mems", "devices": "devices", "hugetlb": "hugepageLimits",
            "net_cls": "network.classID", "net_prio": "network.priorities"}.get(controller, controller)


def _create_v1(container_id: str, cgroups_path: str, settings: dict, root: str, fs: CgroupFS) -> Group:
    for controller in settings:
        if not os.path.exists(os.path.join(root, controller, "cgroup.procs")):
            raise EnvironmentProblem(f"config.json: linux.resources.{_field_of(controller)}: this host has no cgroup "
                                     f"v1 {controller} controller under {root}",
                                     "remove the field from config.json, or mount that controller")
    present = [c for c in JOINED if os.path.exists(os.path.join(root, c, "cgroup.procs"))]
    wanted = list(dict.fromkeys([*present, *settings]))
    made: list[str] = []
    try:
        for controller in wanted:
            path = directory(controller, container_id, cgroups_path, root)
            _makedirs(fs, path, made)
            if controller == "cpuset":
                _fill_cpuset(fs, path, os.path.join(root, "cpuset"))
            _write_all(fs, path, settings.get(controller, []))
    except BaseException:
        remove(made, fs=fs)
        raise
    return Group("v1", [directory(c, container_id, cgroups_path, root) for c in wanted], made)


def _create_v2(container_id: str, cgroups_path: str, settings: dict, rules, root: str, fs: CgroupFS) -> Group:
    available = _words(os.path.join(root, "cgroup.controllers"))
    for controller in settings:
        if controller not in available:
            raise EnvironmentProblem(f"config.json: linux.resources.{_field_of(controller)}: the cgroup v2 "
                                     f"{controller} controller is not available in {root}",
                                     "remove the field from config.json, or enable the controller")
    path = directory("", container_id, cgroups_path, root)
    made: list[str] = []
    try:
        _makedirs(fs, path, made)
        rel = os.path.relpath(path, root).split("/")
        for depth in range(len(rel)):               # each ancestor passes the controllers down
            parent = os.path.join(root, *rel[:depth])
            control = os.path.join(parent, "cgroup.subtree_control")
            missing = [c for c in settings if c not in _words(control)]
            if missing:
                try:
                    fs.write(control, " ".join(f"+{c}" for c in missing))
                except OSError as exc:
                    raise EnvironmentProblem(f"config.json: linux.resources: cannot enable {' '.join(missing)} in "
                                             f"{control}: {exc.strerror}",
                                             "another manager may own that cgroup; use another cgroupsPath") from None
        _write_all(fs, path, [item for c in settings for item in settings[c]])
        if rules:
            from .. import bpfdevices
            bpfdevices.attach(path, rules)
    except BaseException:
        remove(made, fs=fs)
        raise
    return Group("v2", [path], made)


def _write_all(fs: CgroupFS, path: str, items: list[tuple[str, str]]) -> None:
    for name, value in items:
        try:
            fs.write(os.path.join(path, name), value)
        except OSError as exc:
            raise EnvironmentProblem(f"config.json: linux.resources: cannot write {value!r} to {name}: "
                                     f"{exc.strerror}", "fix the value in config.json") from None


def _makedirs(fs: CgroupFS, path: str, made: list[str]) -> None:
    """mkdir -p, recording what it made."""
    parent = os.path.dirname(path)
    for attempt in range(5):
        if not os.path.isdir(parent):
            _makedirs(fs, parent, made)
        try:
            fs.mkdir(path)
            made.append(path)
            break
        except FileExistsError:
            return
        except FileNotFoundError:       # another container's delete took the shared parent away meanwhile
            if attempt == 4:
                raise


def _fill_cpuset(fs: CgroupFS, path: str, top: str) -> None:
    """Each v1 cpuset dir from top down to path that has no cpus or mems gets its
    parent's: v1 leaves a new cpuset empty, and no task can join one without both.
    Dirs that were there already too: another create may have made the shared parent
    and not filled it yet, or a killed one left it empty."""
    parent = top
    for part in os.path.relpath(path, top).split("/"):
        here = os.path.join(parent, part)
        for name in ("cpuset.cpus", "cpuset.mems"):
            try:
                if not _read(os.path.join(here, name)):
                    fs.write(os.path.join(here, name), _read(os.path.join(parent, name)) or "\n")
            except OSError as exc:
                raise EnvironmentProblem(f"cannot give the cgroup {here} its parent's {name}: {exc.strerror}",
                                         "check the cpuset hierarchy, or give linux.resources.cpu.cpus "
                                         "and mems") from None
        parent = here


def _read(path: str) -> str:
    with open(path) as f:
        return f.read(1 << 16).strip()


def join(dirs: list[str], pid: int, fs: CgroupFS | None = None) -> None:
    for path in dirs:
        (fs or CgroupFS()).write(os.path.join(path, "cgroup.procs"), str(pid))


def pids(dirs: list[str]) -> list[int]:
    """Every process in the container's cgroup (the first dir's cgroup.procs: on v1 each
    joined hierarchy holds the same processes)."""
    for path in dirs:
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                return [int(line) for line in f if line.strip()]
        except (OSError, ValueError):       # gone, or not a cgroup at all (a damaged record)
            continue
    return []


def recorded(paths) -> list[str]:
    """The cgroup dirs of a state record that may be touched: absolute, without '..',
    below the cgroup root and not a hierarchy's own root (a mount point, also through
    a symlink such as v1's cpu -> cpu,cpuacct). A damaged
    or planted record can then not make delete kill or rmdir a cgroup such as the
    whole hierarchy."""
    out = []
    for path in paths if isinstance(paths, list) else []:
        if (isinstance(path, str) and path.startswith(CGROUP_ROOT + "/") and ".." not in path.split("/")
                and os.path.normpath(path) == path and not os.path.ismount(os.path.realpath(path))):
            out.append(path)
    return out


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
                if exc.errno != errno.EBUSY or time.monotonic() > deadline or _has_children(path):
                    break           # a shared parent (minirun-oci/) that other containers still use
                time.sleep(0.01)


    for parent in {os.path.dirname(p) for p in made if os.path.basename(os.path.dirname(p)) == PARENT}:
        try:
            fs.rmdir(parent)            # the shared minirun-oci/ dir, once no container uses it
        except OSError:
            pass


def _has_children(path: str) -> bool:
    try:
        return any(entry.is_dir() for entry in os.scandir(path))
    except OSError:
        return False
