"""Processes as the kernel shows them in /proc: the one module that reads
/proc/PID/stat and /proc/self/status, and so the one way minirun tells whether
a process is alive; and the mounts in /proc/self/mountinfo, read as bytes
(a mount point need not be UTF-8 text) with the kernel's escapes undone.

A pid alone does not name a process for long: the kernel reuses numbers. A
container's state records the start time of its PID 1 next to the pid, and
start_time() is how every command checks that the two still go together.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: tells a live container from a reused pid. A zombie
    (dead, not yet reaped because its runtime died too) counts as gone: 0."""
    # os.open and bytes: open() in text mode costs `run` ~0.3 ms more on the first call
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    finally:
        os.close(fd)
    try:
        return 0 if fields[0] in (b"Z", b"X") else int(fields[19])
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
        with open(status, errors="surrogateescape") as f:       # Name: is any bytes a process likes
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


# ---------------------------------------------------------------- a container's processes

CMDLINE_MAX = 4096          # what top shows of a command line, as ps cuts it


class Proc:
    """One process as top and stats show it, read from /proc/PID/stat, status and
    cmdline; times in clock ticks (os.sysconf("SC_CLK_TCK") per second)."""
    __slots__ = ("pid", "ppid", "uid", "tty", "start", "cpu", "rss", "command")

    def __init__(self, pid: int, ppid: int, uid: int, tty: int, start: int, cpu: int, rss: int, command: str):
        self.pid, self.ppid, self.uid, self.tty = pid, ppid, uid, tty
        self.start, self.cpu, self.rss, self.command = start, cpu, rss, command


def in_pid_namespace_of(pid1: int) -> list[Proc]:
    """Every live process in the PID namespace of pid1 (the container's PID 1), pid1
    first: the processes `docker top` lists. Processes that end meanwhile are skipped."""
    try:
        namespace = os.stat(f"/proc/{pid1}/ns/pid").st_ino
    except OSError:
        return []
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}/ns/pid").st_ino != namespace:
                continue
            proc = _read_proc(int(name))
        except (OSError, ValueError, IndexError):
            continue
        if proc is not None:
            found.append(proc)
    return sorted(found, key=lambda p: (p.pid != pid1, p.pid))


def _read_proc(pid: int) -> Proc | None:
    # comm is any bytes the process likes: a strict decode's ValueError skipped it, and a
    # container could hide a process from `top` by its name
    with open(f"/proc/{pid}/stat", errors="surrogateescape") as f:
        head, _, rest = f.read().rpartition(")")
    fields = rest.split()
    if fields[0] in ("Z", "X"):
        return None
    uid = status_field("Uid", f"/proc/{pid}/status")
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        raw = f.read(CMDLINE_MAX)
    command = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    if not command:
        command = "[" + head.partition("(")[2] + "]"
    return Proc(pid, int(fields[1]), int(uid.split()[0]) if uid else -1, int(fields[4]),
                int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE"),
                command)


def boot_time() -> float:
    """Seconds since the epoch at which the machine booted (btime of /proc/stat)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def net_bytes(pid: int) -> tuple[int, int]:
    """(received, sent) bytes over every interface but lo, in pid's network namespace."""
    received = sent = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        values = counters.split()
        if name.strip() != "lo" and len(values) >= 9:
            received += int(values[0])
            sent += int(values[8])
    return received, sent


def memory_total() -> int:
    value = status_field("MemTotal", "/proc/meminfo")
    return int(value.split()[0]) * 1024 if value else 0


def mount_points() -> list[bytes]:
    """Every mount point in /proc/self/mountinfo, as bytes (a path need not be text),
    with the kernel's escapes undone: it writes space, tab, newline and backslash
    as \\ooo (a decode as text garbled every other non-ASCII byte)."""
    return [point for _, point, _, _ in _mountinfo("/proc/self/mountinfo")]


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str, str, str]]:
    """Each mount in a mountinfo file: (the mount's root, its point, the filesystem
    type, the super options), the paths decoded as os.fsdecode does, so that any
    byte comes back as it was with os.fsencode (a host's mount point in Latin-1
    once ended cgroup look-ups in a UnicodeDecodeError)."""
    return [(os.fsdecode(root), os.fsdecode(point), os.fsdecode(kind), os.fsdecode(options))
            for root, point, kind, options in _mountinfo(mountinfo)]


def _mountinfo(path: str) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """Fields 4 and 5 of each line, then the two after the " - " separator but one;
    only spaces separate fields, and a line too short to have them is skipped."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            head, _, tail = line.rstrip(b"\n").partition(b" - ")
            fields, extra = head.split(b" "), tail.split(b" ")
            if len(fields) >= 5 and len(extra) >= 3:
                out.append((_unescape(fields[3]), _unescape(fields[4]), extra[0], extra[2]))
    return out


def _unescape(field: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out += field[i:i + 1]
            i += 1
    return bytes(out)
