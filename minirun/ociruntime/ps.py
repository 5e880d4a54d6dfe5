"""`minirun-oci ps [--format table|json] ID [PS_ARGS...]`: the container's processes.

The pids are those in the init's PID namespace when the container has one of its
own (procfs.in_pid_namespace_of), else those in its pids (or memory) cgroup, as
the host numbers them. json prints the list (what containerd reads); table runs
the host's `ps` (PS_ARGS, default -ef) and keeps its header and the rows of
those pids, as runc does.
"""

from __future__ import annotations

import json
import os
import subprocess

from ..errors import Conflict, MinirunError, UsageError
from . import state


def parse(args: list[str]) -> tuple[str, str, list[str]]:
    fmt, i = "table", 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name, eq, value = args[i].partition("=")
        if name not in ("--format", "-f"):
            raise UsageError(f"ps: unknown flag {args[i]}", "minirun-oci ps [--format table|json] ID [PS_ARGS...]")
        if not eq:
            if i + 1 >= len(args):
                raise UsageError(f"ps: flag {name} needs a value", "give --format table or --format json")
            i += 1
            value = args[i]
        fmt = value
        i += 1
    if i < len(args) and args[i] == "--":
        i += 1
    if fmt not in ("table", "json"):
        raise UsageError(f"ps: --format {fmt!r} is unknown", "use table or json")
    if i >= len(args):
        raise UsageError("ps needs a container ID", "minirun-oci ps [--format table|json] ID")
    rest = args[i + 1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return fmt, args[i], rest


def pids(record: dict) -> list[int]:
    from ..linux import procfs
    pid = record["pid"]
    if os.stat(f"/proc/{pid}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino:
        return sorted(p.pid for p in procfs.in_pid_namespace_of(pid))
    from ..linux.cgroups import membership
    own = set(membership.of("self"))
    for directory in membership.of(pid):     # the first cgroup of its own, not the caller's
        if directory not in own:
            return membership.pids(directory)
    return [pid]


def main(root: str, argv: list[str]) -> int:
    fmt, container_id, ps_args = parse(argv)
    record = state.load(root, state.check_id(container_id))
    if state.status(root, record) == "stopped":
        raise Conflict(f"container {container_id} is stopped", "ps lists the processes of a running container")
    try:
        found = pids(record)
    except OSError:
        raise Conflict(f"container {container_id} is stopped", "ps lists the processes of a running container") \
            from None
    if fmt == "json":
        print(json.dumps(found))
        return 0
    try:
        done = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    except OSError as exc:
        raise MinirunError(f"ps: cannot run the host's ps: {exc.strerror}", "install procps, or use --format json")
    if done.returncode != 0:
        raise MinirunError(f"ps {' '.join(ps_args)}: {done.stderr.strip()}", "give ps arguments it takes")
    lines = done.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise UsageError("ps: the ps output has no PID column", "keep the pid in PS_ARGS, e.g. -o pid,cmd")
    column, wanted = header.index("PID"), set(found)
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            print(line)
    return 0
