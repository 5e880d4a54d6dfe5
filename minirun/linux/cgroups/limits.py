"""Resource limits for a container's cgroup: docker's --memory, --cpus and
--pids-limit parsed, and the plan of which interface files to write for them
on cgroup v1 and v2. Pure: no I/O but the CPU count."""

from __future__ import annotations

import math
import os
from ...lib.frozen import dataclass

from ...errors import UsageError

CFS_PERIOD_US = 100_000
MIN_MEMORY = 6 * 1024 * 1024             # docker's minimum, below which a runtime can hardly start
MIN_CPUS = 0.01                          # the kernel refuses a quota under 1 ms (sched-bwc.rst)
_MEMORY_PATTERN = r"^(\d+(?:\.\d+)?) ?(?:([kmgtp])i?)?b?$"   # compiled on first use: re costs ~5 ms
Setting = tuple[str, str, bool]          # (file, value, required); optional ones only if present


def parse_memory(text: str) -> int:
    """Bytes from docker's --memory syntax (binary units: 1k = 1024)."""
    import re
    match = re.match(_MEMORY_PATTERN, str(text).strip(), re.IGNORECASE)
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
