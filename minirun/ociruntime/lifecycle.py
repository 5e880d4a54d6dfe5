"""start / kill / delete / run of a container that create (container.py) made.

start opens the exec fifo to read: the init's open for writing returns, and it
execs process.args. kill signals the init (with --all, every process in its
cgroup or PID namespace); signalling a stopped container fails, as runtime-spec
says. delete removes what create made (host mounts, cgroups, the state dir),
after poststop hooks; --force kills a container that still runs first, and
finishes a create that was killed before it wrote state.json (creating.json).
run is create + start, then a wait for the process and a delete.
"""

from __future__ import annotations

import _signal as signal    # the C module: `signal` wraps it in enums, and enum costs every call ~3 ms
import os
import time

from ..errors import Conflict, ContainerNotFound, RuntimeFailure, UsageError
from ..linux import caps, procfs
from . import state


def start(root: str, container_id: str) -> None:
    record = state.load(root, container_id)
    current = state.status(root, record)
    if current != "created":
        raise Conflict(f"container {container_id} is {current}, not created", "only a created container starts")
    if record.get("no_process"):
        procfs.signal_quietly(record["pid"], signal.SIGKILL)
        raise UsageError(f"container {container_id} has no process in its config.json: nothing to start",
                         "delete it, give config.json a process, and create it again")
    import select
    poststart = (record.get("hooks") or {}).get("poststart")
    init_exe = _exe(record["pid"]) if poststart else None      # still our Python: it waits on the fifo
    path = state.fifo_path(root, container_id)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready and os.read(fd, 1):
                break
            if state.status(root, record) == "stopped":
                raise RuntimeFailure(f"container {container_id} ended before it started", "delete it")
        else:
            raise RuntimeFailure(f"container {container_id} did not start", "delete it")
    finally:
        os.close(fd)
    os.unlink(path)
    if poststart:
        from . import hooks
        _wait_exec(record["pid"], init_exe)
        hooks.run(record.get("hooks"), "poststart", hooks.state(record, "running"))


def _exe(pid: int) -> tuple[int, int] | None:
    try:
        found = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None             # ended, or a zombie
    return found.st_dev, found.st_ino


def _wait_exec(pid: int, init_exe: tuple[int, int] | None, timeout: float = 10.0) -> None:
    """Until the init has run its startContainer hooks and exec'd (its exe is no
    longer the one it had while it waited on the fifo), or ended: poststart hooks
    come after the user's process is executed (runtime-spec), not while
    startContainer hooks still run."""
    deadline = time.monotonic() + timeout
    while init_exe is not None and time.monotonic() < deadline:
        now = _exe(pid)
        if now is None or now != init_exe:
            return
        time.sleep(0.001)


def kill(root: str, container_id: str, signum: int, all_processes: bool = False) -> None:
    record = state.load(root, container_id)
    current = state.status(root, record)
    if current == "stopped":       # runtime-spec: signalling a stopped container MUST fail
        raise Conflict(f"container {container_id} is stopped, not created or running", "nothing to signal")
    pids = [record["pid"]]
    if all_processes:           # every process in the container's cgroup; without one, its pid namespace's
        from ..linux.cgroups import ocigroup
        pids = (ocigroup.pids(ocigroup.recorded(record["cgroup_dirs"])) if record.get("cgroup_dirs")
                else [p.pid for p in procfs.in_pid_namespace_of(record["pid"])]) or pids
    for pid in pids:
        procfs.signal_quietly(pid, signum)


def delete(root: str, container_id: str, force: bool = False) -> None:
    try:
        record = state.load(root, container_id)
    except ContainerNotFound:
        # a create killed before it wrote state.json leaves its dir: --force takes it away
        if force and os.path.isdir(state.container_dir(root, container_id)):
            _undo_create(state.load_creating(root, container_id))
            state.remove(root, container_id)
            return
        raise
    current = state.status(root, record)
    if current != "stopped":
        if not force:
            raise Conflict(f"container {container_id} is {current}",
                           f"stop it first, or use: minirun-oci delete --force {container_id}")
        from ..linux.cgroups import ocigroup
        for pid in [record["pid"], *ocigroup.pids(ocigroup.recorded(record.get("cgroup_dirs")))]:
            procfs.signal_quietly(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while state.status(root, record) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.01)
    if record.get("host_mounts"):
        from . import hostmounts
        hostmounts.unmount_beneath(record["rootfs"])
    if (record.get("hooks") or {}).get("poststop"):
        from . import hooks
        hooks.run(record.get("hooks"), "poststop", hooks.state(record, "stopped"))
    if record.get("cgroups_made"):
        from ..linux.cgroups import ocigroup     # noqa: F811 - lazily, as above
        ocigroup.remove(ocigroup.recorded(record["cgroups_made"]))
    state.remove(root, container_id)


def _undo_create(partial: dict) -> None:
    """What a killed create had made (state.creating.json): its init killed (the one
    it recorded: the same start time, checked before every signal), its host mounts
    and the cgroups it made removed. Nothing else is signalled: before start the
    init has no children, and a cgroup a later create reused may hold another
    container's processes."""
    if not partial:
        return
    from ..linux.cgroups import ocigroup
    pid, started = partial.get("pid"), partial.get("start_time")
    if isinstance(pid, int) and pid > 1 and started:
        deadline = time.monotonic() + 10
        while procfs.start_time(pid) == started and time.monotonic() < deadline:
            procfs.signal_quietly(pid, signal.SIGKILL)
            time.sleep(0.01)
    if partial.get("host_mounts") and isinstance(partial.get("rootfs"), str):
        from . import hostmounts
        hostmounts.unmount_beneath(partial["rootfs"])
    ocigroup.remove(ocigroup.recorded(partial.get("cgroups_made")))


def run(root: str, container_id: str, bundle: str, pid_file: str | None, no_pivot: bool = False,
        preserve_fds: int = 0, detach: bool = False, console_socket: str | None = None) -> int:
    """create + start, then wait for the process (this process is its subreaper) and
    delete the container; the process's exit code, 128+N for a signal."""
    caps.set_child_subreaper()
    from .container import create
    pid = create(root, container_id, bundle, pid_file, no_pivot, preserve_fds, console_socket)
    try:
        start(root, container_id)
    except BaseException:
        delete(root, container_id, force=True)
        raise
    if detach:
        return 0
    forward = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    for signum in forward:
        signal.signal(signum, lambda n, _f: procfs.signal_quietly(pid, n))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 255 << 8
            break
    delete(root, container_id)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
