"""Container use cases behind the CLI: ps, rm, inspect, diff, logs, stop, kill, exec
(run is run/). They return data and never print."""

from __future__ import annotations

import os
import _signal as signal    # the C module: `signal` wraps it in enums, and enum costs a run ~3 ms
import time

from ..errors import Conflict, DamagedRecord, shown, warn_damaged
from ..lib.frozen import asdict, dataclass
from ..linux.procfs import signal_quietly, start_time
from ..store.containers import effective_state
from ..store import ContainerConfig, ContainerState


@dataclass(frozen=True)
class Container:
    """One container as ps lists it: its id, config and (effective) state."""
    id: str
    config: ContainerConfig
    state: ContainerState


def container_records(store) -> list[Container]:
    """Every container: its config and state, newest first. A container whose
    config.json or state.json is damaged is reported once on stderr and listed
    with status "damaged" (it may still run: nothing treats it as stopped), with
    the layers its config still names, so that they are not collected under it."""
    out = []
    for cid in store.containers.ids():
        try:
            config = store.containers.config(cid)
            # settled: running until the runtime has recorded the end (and its code)
            out.append(Container(cid, config, store.containers.settled(cid)))
        except FileNotFoundError:
            continue                                    # removed meanwhile
        except DamagedRecord as err:
            warn_damaged(err)
            out.append(_damaged_record(store, cid, err))
    out.sort(key=lambda c: c.config.created, reverse=True)
    return out


def _damaged_record(store, cid: str, err: DamagedRecord) -> Container:
    try:
        config = store.containers.config(cid)
    except (FileNotFoundError, DamagedRecord):
        from ..store.gc import mentioned_digests
        layers = tuple(sorted(mentioned_digests(store.containers.path(cid, "config.json"))))
        config = ContainerConfig("?", layers, id=cid, image="?")
    return Container(cid, config, ContainerState("damaged", error=err.line()))


def remove(store, name: str, force: bool) -> str:
    """rm: kill it first if running (with force), free what it holds, remove its dir.
    A container whose state.json is damaged is removed too: it names no process to
    kill, and the cgroup minirun would have made for it is found by its id."""
    cid = store.containers.resolve(name)
    try:
        state = effective_state(store.containers.state(cid))
    except DamagedRecord:
        state = None
    if state is not None and state.running:
        if not force:
            raise Conflict(f"container {name} is running", "stop it first, or use `minirun rm -f`")
        _kill(state.pid)
    if store.containers.claimed(cid):
        state = _await_runtime(store, cid, name, force)
    release_leftovers(store, cid, state)
    store.containers.remove(cid)
    return cid


def _await_runtime(store, cid: str, name: str, force: bool, timeout: float = 10.0):
    """A minirun process holds the container: it is recording a run's end (its
    command ended, or was killed just now), or setting the container up. Wait for
    it to let go of the ports, cgroup and address, so that they are free when rm
    returns; with force, kill the command once it has one. The state read last."""
    try:
        recording = store.containers.state(cid).running
    except DamagedRecord:
        recording = True
    if not recording and not force:     # being set up: it is about to run
        raise Conflict(f"container {name} is starting", "stop it first, or use `minirun rm -f`")
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = effective_state(store.containers.state(cid))
        except DamagedRecord:
            state = None
        if state is not None and state.running and force:
            _kill(state.pid)
        if not store.containers.claimed(cid):
            return state
        if time.monotonic() >= deadline:
            raise Conflict(f"container {name} is held by a minirun process that has not let go of it "
                           f"in {timeout:.0f}s", "try again in a moment; see `minirun ps -a`")
        time.sleep(0.01)


def release_leftovers(store, cid: str, state: ContainerState | None) -> None:
    """What a container whose runtime was killed still holds: its cgroup and its address.
    (The kernel removed its veth with its network namespace.) state: None when damaged."""
    from ..linux.cgroups import CgroupHandle
    handles = [CgroupHandle.from_json(state.cgroup)] if state is not None and state.cgroup else []
    handles.append(CgroupHandle.of_container(cid))     # made, but killed before it was recorded
    for handle in handles:
        try:
            handle.remove()
        except Exception:                          # noqa: BLE001 - already gone is fine
            pass
    from ..network.ipam import directory
    if os.path.isdir(directory(store.root)):
        from ..network import ipam
        try:
            ipam.release(store.root, cid)
        except DamagedRecord as err:
            warn_damaged(err)                   # the address goes when fsck --repair drops the file


def _kill(pid: int) -> None:
    """SIGKILL, then wait up to a second for the process to be gone."""
    signal_quietly(pid, signal.SIGKILL)
    for _ in range(100):
        if start_time(pid) == 0:
            return
        time.sleep(0.01)


def lower_dirs(store, cid: str, config: ContainerConfig) -> list[str]:
    """The container's lower dirs, topmost first: its init layer, then the image's."""
    lowers: list[str] = [store.containers.init(cid)] if config.init_layer else []
    for key in reversed(config.layers):
        path = store.layers.diff_path(key)
        if path not in lowers:
            lowers.append(path)
    return lowers


def state_view(state: ContainerState) -> dict:
    """The state's fields (lower-case keys), as `ps --format json` shows them."""
    return asdict(state)


def docker_state(state: ContainerState) -> dict:
    """The state as stored (lower-case keys, as `ps --format json` shows it) plus
    docker's names for the same facts, so `inspect -f '{{.State.Status}}'` works."""
    return dict(state_view(state), Status=state.status, Running=state.running, Pid=state.pid,
                ExitCode=state.exit_code, OOMKilled=state.oom_killed, Error=state.error or "",
                StartedAt=state.started, FinishedAt=state.finished)


def inspect(store, name: str) -> dict:
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    lowers = lower_dirs(store, cid, config)
    state = store.containers.settled(cid)
    # the merged tree exists only in the container's mount namespace: from the host
    # it is the running container's /proc/<pid>/root
    merged = f"/proc/{state.pid}/root" if state.running and state.pid else ""
    upper, work = store.containers.upper(cid), store.containers.work(cid)
    ports, logs = port_documents(config, state), _log_view(store, cid, config)
    return {
        "Id": cid, "Name": config.name, "Created": config.created,
        "Image": config.image_id, "ImageName": config.image,
        "State": docker_state(state),
        "Config": {"Cmd": list(config.argv), "Env": list(config.env), "WorkingDir": config.cwd,
                   "User": config.user, "Hostname": config.hostname},
        "HostConfig": {**ports["HostConfig"], **logs["HostConfig"]},
        "NetworkSettings": ports["NetworkSettings"], "LogPath": logs["LogPath"],
        "UpperDir": upper, "WorkDir": work, "LowerDirs": lowers, "MergedDir": merged,
        "GraphDriver": {"Name": "overlay", "Data": {
            "UpperDir": upper, "WorkDir": work, "MergedDir": merged, "LowerDir": ":".join(lowers)}},
    }


def _log_view(store, cid: str, config: ContainerConfig) -> dict:
    """docker's LogPath and HostConfig.LogConfig (max-size, max-file as given)."""
    options = config.options or {}
    driver = options.get("log_driver") or "k8s-file"
    driver = "k8s-file" if driver in ("json-file", "local") else driver
    opts = dict(o.partition("=")[::2] for o in options.get("log_opts") or ())
    return {"LogPath": store.containers.log(cid) if driver != "none" else "",
            "HostConfig": {"LogConfig": {"Type": driver, "Config": opts}}}


def port_documents(config: ContainerConfig, state: ContainerState) -> dict:
    """inspect's HostConfig.PortBindings (the -p flags, as asked) and NetworkSettings.Ports
    (what they are bound to while it runs), in docker's shapes."""
    specs = (config.options or {}).get("publish") or ()
    asked, bound = (), ()
    if specs or state.ports:
        from ..errors import UsageError
        from ..network import ports
        try:
            asked = ports.parse_all(specs)
        except UsageError:                  # refused when it was made: not from this minirun
            asked = ()
        if state.running:
            bound = tuple(b for b in map(ports.parse_shown, state.ports) if b is not None)
        asked, bound = ports.docker_map(asked, requested=True), ports.docker_map(bound)
    return {"HostConfig": {"NetworkMode": config.network, "PortBindings": asked or {}},
            "NetworkSettings": {"Ports": bound or {}}}


def diff(store, name: str):
    """The container's changes (layer/changes.py), an iterator: the upper dir is
    walked as the caller reads, never held whole. A bad name fails here, at once."""
    from ..layer.changes import changes, scan_upper
    from ..layer.lowerview import LowerView
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    if config.read_only:
        return iter(())
    view = LowerView(lower_dirs(store, cid, config))
    return unmoved(changes(scan_upper(store.containers.upper(cid)), view.exists), name)


def unmoved(walk, name: str):
    """walk's items, with fsutil's TreeMoved (a running container moved a directory
    while it was walked) raised as the Conflict moved() names."""
    from ..lib.fsutil import TreeMoved
    try:
        yield from walk
    except TreeMoved:
        raise moved(name) from None


def moved(name: str) -> Conflict:
    """A running container moved a directory while its upper dir was walked (lib/fsutil.py)."""
    return Conflict(f"container {shown(name, 64)} moved its files while they were read",
                    "try again, or stop the container first")


# ---------------------------------------------------------------- signals and logs

def running_pid(store, name: str) -> tuple[str, int]:
    cid = store.containers.resolve(name)
    state = effective_state(store.containers.state(cid))
    if not state.running:
        raise Conflict(f"container {name} is not running", "start one with `minirun run -d`")
    return cid, state.pid


def _pid_if_running(store, name: str) -> tuple[str, int]:
    """(id, PID 1's pid), the pid 0 when the container is not running."""
    cid = store.containers.resolve(name)
    state = effective_state(store.containers.state(cid))
    return cid, state.pid if state.running else 0


def send_signal(store, name: str, signum: int) -> str:
    """The signal to PID 1; a container already stopped is left as it is."""
    cid, pid = _pid_if_running(store, name)
    if pid:
        signal_quietly(pid, signum)
    return cid


def stop(store, name: str, timeout: float) -> str:
    """SIGTERM, then SIGKILL after the grace period, as docker stop. A PID 1 with no
    SIGTERM handler ignores it (the kernel protects a namespace's init), hence the kill.
    A container already stopped is left as it is, as docker's is."""
    cid, pid = _pid_if_running(store, name)
    if not pid:
        _wait_gone(store, cid, 10)         # ended just now: until its end is recorded
        return cid
    signal_quietly(pid, signal.SIGTERM)
    if not _wait_gone(store, cid, timeout):
        if effective_state(store.containers.state(cid)).running:     # never a pid already reaped
            signal_quietly(pid, signal.SIGKILL)
        _wait_gone(store, cid, 10)
    return cid


def _wait_gone(store, cid: str, timeout: float) -> bool:
    """Until the runtime has recorded the exit, or died without recording it: then
    its cgroup, ports and address are free, and the exit code is known."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not store.containers.settled(cid).running:
            return True
        time.sleep(0.02)
    return False


def exec_in(store, name: str, argv: tuple[str, ...], env: tuple[str, ...], user: str | None,
            workdir: str | None, tty: bool, interactive: bool):
    """docker exec: the container's env, cwd, user and capabilities, overridable."""
    from ..sandbox import join, program as spec
    if not argv:
        from ..errors import UsageError
        raise UsageError("exec needs a command", "e.g. minirun exec NAME sh")
    cid, pid = running_pid(store, name)
    config = store.containers.config(cid)
    state = store.containers.state(cid)
    merged_env = spec.merge_env(config.env, env, dict(os.environ))
    if tty:
        merged_env = spec.with_defaults(merged_env, {"TERM": "xterm"})   # as docker exec -t
    proc = spec.ProcessSpec(tuple(argv), tuple(merged_env), workdir or config.cwd,
                            user or config.user, config.hostname, False)
    cgroup = None
    if state.cgroup:
        from ..linux.cgroups import CgroupHandle
        cgroup = CgroupHandle.from_json(state.cgroup)
    caps = frozenset(config.capabilities)
    from ..sandbox import seccomp
    request = join.Join(pid, proc, caps, frozenset(config.ambient),
                        config.no_new_privs, tty, cgroup, interactive,
                        pid_start=state.pid_start, name=name,
                        seccomp=seccomp.for_exec(store, cid, config))
    output = None
    if not tty:                 # its stdio: pipes copied onto ours, never ours (docker exec's)
        from ..run.output import Output
        from ..store.logfile import Policy
        output = Output(store.containers.path(cid), Policy("none"), tee=True, stdin=interactive)
    return join.run(request, interactive, output)
