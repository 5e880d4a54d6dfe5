"""Processes as the kernel shows them in /proc: the one module that reads
/proc/PID/stat and /proc/self/status, and so the one way minirun tells whether
a process is alive.

A pid alone does not name a process for long: the kernel reuses numbers. A
container's state records the start time of its PID 1 next to the pid, and
start_time() is how every command checks that the two still go together.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: tells a live container from a reused pid. A zombie
    (dead, not yet reaped because its runtime died too) counts as gone: 0."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    try:
        return 0 if fields[0] in ("Z", "X") else int(fields[19])
    except (IndexError, ValueError):
        return 0


def alive(pid: int) -> bool:
    """Whether pid names a process that still runs (a zombie does not)."""
    return start_time(pid) != 0


def status_field(name: str, status: str = "/proc/self/status") -> str | None:
    """The value of one line of /proc/self/status ("CapEff", "Umask"), or None when
    the file or the line is missing."""
    prefix = name + ":"
    try:
        with open(status) as f:
            for line in f:
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
    except OSError:
        pass
    return None


def signal_quietly(pid: int, signum: int) -> None:
    """Send a signal; a process that is already gone is not an error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
