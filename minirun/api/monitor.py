"""top and stats: what a running container's processes are and what they use.

top lists the processes of the container's PID namespace (exec's waiters stay
outside it, so they are not listed), read from /proc (linux/procfs.py). stats
reads the container's cgroup (linux/cgroups/) when it has one, and adds up its
processes from /proc when it has none (a foreground run without limits); CPU %
is the CPU time used between two samples over the time between them, in
percent of one CPU, as docker's.
"""

from __future__ import annotations

import os
import time

from ..lib.frozen import dataclass
from ..linux import procfs
from .control import running_pid


@dataclass(frozen=True)
class TopRow:
    uid: int
    pid: int
    ppid: int
    cpu_percent: int          # over the process's life, as ps's C
    started: float            # seconds since the epoch
    tty: str
    cpu_seconds: int
    command: str


def top(store, name: str) -> list[TopRow]:
    _, pid1 = running_pid(store, name)
    ticks = os.sysconf("SC_CLK_TCK")
    booted = procfs.boot_time()
    now = time.time()
    rows = []
    for proc in procfs.in_pid_namespace_of(pid1):
        started = booted + proc.start / ticks
        life = max(now - started, 1e-9)
        rows.append(TopRow(proc.uid, proc.pid, proc.ppid, int(proc.cpu / ticks / life * 100), started,
                           _tty_name(proc.tty), proc.cpu // ticks, proc.command))
    return rows


def _tty_name(number: int) -> str:
    """tty_nr as ps shows it: pts/N for the pseudo-terminals, ? for none."""
    major, minor = (number >> 8) & 0xFFF, (number & 0xFF) | ((number >> 12) & 0xFFF00)
    if number == 0:
        return "?"
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    return f"{major}:{minor}"


@dataclass(frozen=True)
class StatsRow:
    id: str
    name: str
    cpu_percent: float
    memory: int
    memory_limit: int
    pids: int
    net_in: int
    net_out: int


def stats(store, names: list[str], interval: float = 0.5) -> list[StatsRow]:
    """One row per container: its usage, CPU measured over interval seconds."""
    targets = [_target(store, name) for name in names]
    first = [_cpu_ns(t) for t in targets]
    started = time.monotonic()
    time.sleep(interval)
    elapsed = time.monotonic() - started
    rows = []
    for target, before in zip(targets, first):
        cid, name, pid1, cgroup = target
        usage = cgroup.usage() if cgroup is not None else {}
        procs = procfs.in_pid_namespace_of(pid1)
        memory = usage.get("memory")
        if memory is None:
            memory = sum(p.rss for p in procs)
        limit = usage.get("memory_limit") or procfs.memory_total()
        pids = usage.get("pids")
        received, sent = procfs.net_bytes(pid1)
        cpu = (_cpu_ns(target) - before) / 1e9 / elapsed * 100 if elapsed > 0 else 0.0
        rows.append(StatsRow(cid, name, max(cpu, 0.0), memory, limit, len(procs) if pids is None else pids,
                             received, sent))
    return rows


def _target(store, name: str):
    from ..linux.cgroups import CgroupHandle
    cid, pid1 = running_pid(store, name)
    state = store.containers.state(cid)
    cgroup = CgroupHandle.from_json(state.cgroup) if state.cgroup else None
    return cid, store.containers.config(cid).name, pid1, cgroup


def _cpu_ns(target) -> int:
    _, _, pid1, cgroup = target
    if cgroup is not None:
        used = cgroup.usage().get("cpu_ns")
        if used is not None:
            return used
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(p.cpu for p in procfs.in_pid_namespace_of(pid1)) * 1_000_000_000 // ticks


def running_names(store) -> list[str]:
    """The ids of every running container, for stats without names."""
    from .control import container_records
    return [c.id for c in container_records(store) if c.state.running]
