"""Per-container cgroups: memory, CPU and pids limits, and whether the OOM killer struck.

The package: limits.py (the flags and the plan of files to write), files.py
(cgroupfs operations, a container's handle, the drivers' common part), v1.py
and v2.py (one driver each); detect() and open_driver() below pick one.

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

import os

__all__ = ["CFS_PERIOD_US", "CGROUP_ROOT", "MIN_CPUS", "MIN_MEMORY", "PARENT", "V1_CONTROLLERS",
           "CgroupFS", "CgroupHandle", "Limits", "Setting", "V1Driver", "V2Driver", "controllers",
           "cpu_quota", "detect", "host_cpus", "open_driver", "parse_cpus", "parse_memory", "parse_pids", "plan"]

# Each name below loads its module on first use (PEP 562): importing one module of
# the package (membership, ocigroup) must not cost the others' imports on every
# minirun-oci call.
_LAZY = {"CGROUP_ROOT": "files", "PARENT": "files", "CgroupFS": "files", "CgroupHandle": "files",
         "_words": "files", "CFS_PERIOD_US": "limits", "MIN_CPUS": "limits", "MIN_MEMORY": "limits",
         "Limits": "limits", "Setting": "limits", "cpu_quota": "limits", "host_cpus": "limits",
         "parse_cpus": "limits", "parse_memory": "limits", "parse_pids": "limits", "plan": "limits",
         "V1_CONTROLLERS": "v1", "V1Driver": "v1", "V2Driver": "v2"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def detect(root: str = "/sys/fs/cgroup") -> str | None:
    """"v2", "v1" or None (no cgroups to use).

    A hybrid host's `unified` mount counts only when it holds the memory controller.
    Each controller lives in exactly one hierarchy, so an empty unified mount (systemd's
    hybrid default) means the controllers are all on v1."""
    from .files import _words  # noqa: F401
    from .v1 import V1_CONTROLLERS, V1Driver  # noqa: F401
    from .v2 import V2Driver  # noqa: F401
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if "memory" in _words(os.path.join(root, "unified", "cgroup.controllers")):
        return "v2"
    if any(os.path.exists(os.path.join(root, c, "cgroup.procs")) for c in V1_CONTROLLERS):
        return "v1"
    return None


def open_driver(root: str = "/sys/fs/cgroup", limits: Limits | None = None,
                fs: "CgroupFS | None" = None) -> "V1Driver | V2Driver | None":
    """The driver for this host's cgroups. None when there are none, which is an
    error only if limits were asked for."""
    from .files import _words  # noqa: F401
    from .v1 import V1_CONTROLLERS, V1Driver  # noqa: F401
    from .v2 import V2Driver  # noqa: F401
    version = detect(root)
    if version == "v2":
        return V2Driver(_v2_root(root), fs)
    if version == "v1":
        return V1Driver(root, fs)
    if limits is not None and not limits.empty:
        from ...errors import EnvironmentProblem
        raise EnvironmentProblem(f"cannot limit resources: no cgroup controllers under {root}",
                                 "mount cgroup2 at /sys/fs/cgroup, or run without --memory/--cpus/--pids-limit")
    return None


def controllers(root: str = "/sys/fs/cgroup") -> tuple[str | None, set[str]]:
    """(detect()'s answer, the controllers of V1_CONTROLLERS there), for doctor."""
    from .files import _words  # noqa: F401
    from .v1 import V1_CONTROLLERS, V1Driver  # noqa: F401
    from .v2 import V2Driver  # noqa: F401
    version = detect(root)
    if version == "v2":
        return version, set(_words(os.path.join(_v2_root(root), "cgroup.controllers"))) & set(V1_CONTROLLERS)
    if version == "v1":
        return version, {c for c in V1_CONTROLLERS if os.path.exists(os.path.join(root, c, "cgroup.procs"))}
    return None, set()


def _v2_root(root: str) -> str:
    """root itself on a pure v2 host, its `unified` mount on a hybrid one."""
    return root if os.path.exists(os.path.join(root, "cgroup.controllers")) else os.path.join(root, "unified")
