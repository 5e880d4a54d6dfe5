"""`minirun run`, end to end: check the flags, create the container (its init
layer, /etc files, overlay plan), give it a cgroup and a network, start it,
wait, and clean up whatever it held, recording how it ended.

Everything that can be refused is refused before the container exists:
malformed flags, limits, an unknown image. The one exception is a cgroup
controller that turns out missing as the cgroup is made, just after the record
(so that the record always names the cgroup): the container is then removed.
"""

from __future__ import annotations

import os
import sys
from ..lib import jsonio
from ..lib.frozen import dataclass

from ..lib import log
from .. import oci, overlay
from ..errors import MinirunError, RuntimeFailure
from ..network import BRIDGE, needs_netns, parse_mode
from ..sandbox import mounts as mounts_mod
from ..sandbox import program as specs
from ..api.control import require_root, signal_quietly, start_time
from ..store.containers import now


@dataclass(frozen=True)
class RunResult:
    container_id: str
    exit_code: int
    error: str = ""
    oom_killed: bool = False


@dataclass(frozen=True)
class Checked:
    """The flags, parsed and validated, before anything is created."""
    network: str
    mounts: tuple
    caps: frozenset
    ambient: frozenset
    limits: object                    # cgroups.Limits, None when no limit flag was given
    ulimits: tuple
    seccomp: object = None            # sandbox/seccomp.py Filter; None: unconfined


def check_options(opts: specs.RunOptions, store=None) -> Checked:
    from ..linux import caps
    volumes = [mounts_mod.parse_volume(v) for v in opts.volumes]
    tmpfs = [mounts_mod.parse_tmpfs(t) for t in opts.tmpfs]
    mounts_mod.check_no_duplicates(volumes + tmpfs)
    if not opts.privileged:
        mounts_mod.check_tmpfs_dev(tmpfs)
    ulimits, limits = (), None        # the modules for these load only when a flag asks
    if opts.ulimits:
        from ..sandbox import rlimits
        ulimits = rlimits.parse_ulimits(opts.ulimits)
        rlimits.check(ulimits)
    if (opts.memory, opts.cpus, opts.pids_limit) != (None, None, None):
        from ..sandbox import cgroups
        limits = cgroups.Limits.parse(opts.memory, opts.cpus, opts.pids_limit)
    keep = caps.compute(opts.cap_add, opts.cap_drop, opts.privileged)
    if opts.chroot and not opts.privileged:
        # a chroot inside a namespace that still holds the host's tree is escaped
        # with chroot(2) itself; pivot_root (the default) has no such hole
        keep -= {"sys_chroot"}
    seccomp = None
    if store is not None:             # issue 14.5: compiled (or read from the store) before anything exists
        from ..sandbox import seccomp as seccomp_mod
        seccomp = seccomp_mod.for_run(store, opts.seccomp, keep, opts.privileged)
    return Checked(parse_mode(opts.network), tuple(volumes + tmpfs), keep,
                   caps.added(opts.cap_add), limits, ulimits, seccomp)


def run(store, image: str, opts: specs.RunOptions, name: str | None = None, remove: bool = False,
        warn=lambda line: print(line, file=sys.stderr)) -> RunResult:
    """Create a container from image and run it to completion in the foreground.

    In the foreground, containers/<id>/ is written just after the fork, already in
    state running with the child's pid (one state write instead of two); the child
    makes its namespaces and waits for it before it mounts anything. A -d
    container is on disk before its monitor starts, so that the id printed names
    a container that exists."""
    require_root("run")
    checked = check_options(opts, store)
    if name:
        from ..store.containers import check_name
        check_name(name)          # now, not after the fork
    if opts.detach:
        cid, launch, resources = create(store, image, opts, checked, name, remove, warn)
        return _detach(store, cid, launch, resources, remove)
    cid, launch, resources, pending = prepare(store, image, opts, checked, name, remove, warn)
    return start_and_wait(store, cid, launch, resources, remove, interactive=opts.interactive,
                          pending=pending)


def _detach(store, cid: str, launch, resources, remove: bool) -> RunResult:
    """-d: a monitor process of our own (in a new session, output to the container's
    log) runs the container and records its end; we return once exec has happened."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    log_path = store.containers.log(cid)
    if os.fork() == 0:  # pragma: no cover - the monitor, exercised by integration tests
        os.close(read_fd)
        log.silence()        # its stderr becomes the container's log: keep minirun's lines out of it
        try:
            os.setsid()
            output = _log_writer(log_path)
            devnull = os.open(os.devnull, os.O_RDWR)
            for target, fd in enumerate((devnull, output, output)):
                os.dup2(fd, target)
            os.close(output)
            os.close(devnull)

            def notify(code: int, error: str) -> None:
                os.write(write_fd, jsonio.dumps({"code": code, "error": error}).encode())
                os.close(write_fd)
            start_and_wait(store, cid, launch, resources, remove, notify=notify)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        said = f.read()
    report = jsonio.loads(said) if said else {"code": 125, "error": "the monitor died during start-up"}
    if not report["error"]:
        return RunResult(cid, 0)
    return RunResult(cid, report["code"], report["error"])


def _log_writer(log_path: str) -> int:  # pragma: no cover - in the -d monitor
    """The write end of a pipe that a small relay process copies into the container's
    log until every writer is gone. The container gets the pipe, never the log file:
    through /proc/self/fd/1 it could chmod, chown or reopen a host file."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    if os.fork() == 0:
        os.closerange(0, read_fd)                  # nothing of the monitor's: above all not
        os.closerange(read_fd + 1, 0x7FFFFFFF)     # its report pipe to `run -d`
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        except OSError:
            fd = -1
        while chunk := os.read(read_fd, 65536):
            try:
                while chunk and fd >= 0:
                    chunk = chunk[os.write(fd, chunk):]
            except OSError:          # a full disk: drop the output, never the container
                pass
        os._exit(0)
    os.close(read_fd)
    return write_fd


@dataclass
class Resources:
    """What a running container holds outside its directory, released when it ends."""
    cgroup: object = None
    allocation: object = None


def create(store, image: str, opts: specs.RunOptions, checked: Checked, name, remove, warn):
    """The container on disk, its address and its cgroup; on any failure none of them."""
    cid, launch, resources, pending = prepare(store, image, opts, checked, name, remove, warn)
    try:
        pending.write()
    except BaseException:
        _release(store, cid, resources)
        store.containers.remove(cid)        # written before its cgroup failed, if it was
        raise
    return cid, launch, resources


def prepare(store, image: str, opts: specs.RunOptions, checked: Checked, name, remove, warn):
    """Everything a container needs, planned in memory, with its address and cgroup:
    (id, launch, resources, Pending). On failure nothing is left held."""
    resources = Resources()
    cid = store.containers.new_id()
    gc_lock = store.locks.hold("gc", shared=True)
    gc_lock.__enter__()
    try:
        proc, plan, mounts, write = _plan(store, cid, image, opts, checked, name, remove, warn, resources)
        from ..sandbox import process
        launch = process.Launch(
            proc, plan, store.mount_point, overlay.strategy_from_env(), mounts,
            opts.privileged, checked.caps, checked.ambient, opts.no_new_privs and not opts.privileged,
            needs_netns(checked.network), checked.ulimits, opts.init,
            sync=True,                      # the child waits at least for containers/<id>/
            tty=opts.tty and not opts.detach, interactive=opts.interactive, seccomp=checked.seccomp)
        make_cgroup = None
        if wants_cgroup(checked.limits, opts.detach):
            from ..sandbox import cgroups
            limits = checked.limits or cgroups.Limits()
            driver = cgroups.open_driver(limits=limits)     # refuses missing controllers now
            if driver is not None:
                def make_cgroup():
                    return driver.create(cid, limits)
    except BaseException:
        gc_lock.__exit__(None, None, None)
        _release(store, cid, resources)
        raise
    return cid, launch, resources, Pending(
        write, gc_lock, resources, make_cgroup,
        record=lambda **changes: store.containers.set_state(cid, **changes),
        log_choices=lambda: _log_choices(checked, opts, resources))


class Pending:
    """containers/<id>/ planned but not yet written, and the shared gc lock held
    until it is, so that prune cannot take the image's layers in between."""

    def __init__(self, write, lock, resources: Resources, make_cgroup=None, record=None, log_choices=None):
        self._write, self._lock, self._resources = write, lock, resources
        self._make_cgroup, self._record, self._log_choices = make_cgroup, record, log_choices

    def write(self, state: dict | None = None) -> None:
        """containers/<id>/ on disk, in state (default: created), then its cgroup,
        named in the state: the record exists before the cgroup does, so `rm` of a
        container whose runtime was killed at any point frees it (by its id, if
        need be); the lock goes. On failure the caller removes the container."""
        try:
            self._write(state or {"status": "created"})
            if self._make_cgroup is not None:
                self._resources.cgroup = self._make_cgroup()
                self._record(cgroup=self._resources.cgroup.to_json())
            if log.debugging and self._log_choices is not None:
                self._log_choices()
        finally:
            self.release()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None


def _plan(store, cid: str, image: str, opts: specs.RunOptions, checked: Checked, name,
          remove, warn, resources: Resources):
    """Resolve the image and plan the overlay and mounts: (process spec, overlay plan,
    mounts, write(state) that puts containers/<id>/ on disk)."""
    from ..network import files as etc_files
    containers = store.containers
    image_id, record = store.images.resolve(image)
    config = oci.parse_config(store.blobs.read(image_id))
    lowers = _lower_dirs(store, record)
    _warn_platform(config, warn)
    proc = specs.build(config, opts, cid)
    if checked.network == BRIDGE:
        resources.allocation = _allocate(store, cid)
    address = resources.allocation.address if resources.allocation else None
    files = etc_files.render_etc_files(proc.hostname, address, checked.network)
    mounts = tuple(mounts_mod.etc_mounts(files)) + checked.mounts
    init = mounts_mod.init_entries(mounts_mod.image_lookup(lowers), mounts_mod.mount_points(list(mounts)))
    own = [containers.init(cid)] if init or opts.read_only else []
    upper, work = ("", "") if opts.read_only else (containers.upper(cid), containers.work(cid))
    plan = overlay.plan(lowers, upper, work, containers.path(cid), own, volatile=remove)
    container_config = {
        "name": name, "image": image, "image_id": image_id,
        "layers": [layer["key"] for layer in record["layers"]],
        "argv": list(proc.argv), "env": list(proc.env), "cwd": proc.cwd, "user": proc.user,
        "hostname": proc.hostname, "chroot": proc.chroot, "auto_remove": remove,
        "network": checked.network, "read_only": opts.read_only, "privileged": opts.privileged,
        "capabilities": sorted(checked.caps), "init_layer": bool(init or opts.read_only),
        "ambient": sorted(checked.ambient), "no_new_privs": opts.no_new_privs and not opts.privileged,
        "detached": opts.detach, "seccomp": checked.seccomp.name if checked.seccomp else "unconfined",
    }
    links = overlay.links_to_make(plan, overlay.strategy_from_env())

    def write(state: dict) -> None:
        containers.create(cid, container_config, links, init, state=state)
    return proc, plan, mounts, write


def wants_cgroup(limits, detach: bool = False) -> bool:
    """A cgroup when a limit asks for one, for every -d container (it outlives the
    shell that started it and must not stay in that shell's cgroup, a session scope
    systemd may kill), or with MINIRUN_CGROUPS=always. Joining one is the dearest
    step of a foreground start: the kernel waits for an RCU grace period
    (cgroup_threadgroup_rwsem), ~9 ms here. Without one, the PID namespace still
    ends every process with the container, and an OOM kill shows as signal 9."""
    return (detach or (limits is not None and not limits.empty)
            or os.environ.get("MINIRUN_CGROUPS") == "always")


def _log_choices(checked: Checked, opts: specs.RunOptions, resources: Resources) -> None:
    if resources.cgroup is not None:
        log.debug(f"cgroup {resources.cgroup.version}: {', '.join(resources.cgroup.paths)}")
    else:
        log.debug("no cgroup: not -d, no --memory, --cpus or --pids-limit (MINIRUN_CGROUPS=always makes one)")
    log.debug(f"capabilities kept: {', '.join(sorted(checked.caps)) or 'none'}; ambient: "
              f"{', '.join(sorted(checked.ambient)) or 'none'}; no_new_privs: "
              f"{opts.no_new_privs and not opts.privileged}; network: {checked.network}")


def _allocate(store, cid: str):
    from ..network import ipam
    from ..api.control import release_stale_addresses
    release_stale_addresses(store)
    from .. import config
    return ipam.allocate(store.root, cid, config.get("network.subnet"), config.get("network.bridge"))


def start_and_wait(store, cid: str, launch, resources: Resources, remove: bool,
                   interactive: bool = False, notify=None, pending: Pending | None = None) -> RunResult:
    """Start the container and wait for its end. With pending (see prepare), the
    container goes on disk now, in state running."""
    from ..sandbox import process
    containers = store.containers
    try:
        started = process.start(launch)
    except BaseException:
        _release(store, cid, resources)
        if pending is not None:
            pending.release()
        elif remove:
            containers.remove(cid)
        raise
    running = {"status": "running", "pid": started.pid, "started": now(),
               "pid_start": start_time(started.pid),
               "cgroup": resources.cgroup.to_json() if resources.cgroup else None}
    if pending is None:
        containers.set_state(cid, **running)
    else:
        try:
            pending.write(running)
        except BaseException:           # --name taken meanwhile, no cgroup: the child never mounts
            _kill(started.pid)
            process.abandon(started)
            _release(store, cid, resources)
            containers.remove(cid)
            raise
    setup_error, outcome, oom = "", None, False
    try:
        try:
            _join(started, resources)
        except Exception as exc:                    # noqa: BLE001 - reported as the run's error
            setup_error = exc.line() if isinstance(exc, MinirunError) else f"container setup: {exc}"
            _kill(started.pid)
        relay = _terminal_relay(started, interactive) if launch.tty and not setup_error else None
        try:
            outcome = process.wait(started, on_exec=notify, setup_error=setup_error)
        finally:
            if relay is not None:
                relay.finish()
        oom = bool(resources.cgroup and resources.cgroup.oom_killed())
    finally:
        # Ctrl-C during start-up or a terminal that hangs up must not leak the
        # cgroup, the address or an --rm container
        if outcome is None:
            _kill(started.pid)
        _release(store, cid, resources)
        code = 125 if setup_error or outcome is None else outcome.exit_code
        error = setup_error or (outcome.error if outcome else "minirun was interrupted")
        if remove:              # nobody will read how it ended: no state to write first
            containers.remove(cid)
        else:
            containers.set_state(cid, status="exited", exit_code=code, finished=now(), oom_killed=oom,
                                 error=error, pid=0, cgroup=None)
    return RunResult(cid, code, error, oom)


def _terminal_relay(started, interactive: bool):
    """The pty master the child opened in its own devpts, relayed to our terminal."""
    from ..sandbox import tty
    master = tty.receive_master(started.tty_sock)
    started.tty_sock.close()
    if master is None:
        return None             # the child failed before opening it; wait() reports why
    relay = tty.Relay(master, interactive)
    relay.start()
    return relay


def _join(started, resources: Resources) -> None:
    """Between the child's unshare and its exec: the cgroup, then the network."""
    from ..sandbox import process
    process.wait_ready(started)
    if resources.cgroup is not None:
        resources.cgroup.add(started.pid)
    if resources.allocation is not None:
        from ..network import netlink
        netlink.ensure_bridge(resources.allocation.bridge, resources.allocation.gateway_cidr)
        netlink.attach(started.pid, resources.allocation)
    process.release(started)


def _release(store, cid: str, resources: Resources) -> None:
    """Give back the cgroup, the veth and the address; each may already be gone."""
    if resources.cgroup is not None:
        try:
            resources.cgroup.remove()
        except Exception:                          # noqa: BLE001 - cleanup must go on
            pass
        resources.cgroup = None
    if resources.allocation is not None:
        from ..network import ipam
        try:
            from ..network import netlink
            netlink.detach(resources.allocation)
        except Exception:                          # noqa: BLE001
            pass
        ipam.release(store.root, cid)
        resources.allocation = None


def _kill(pid: int) -> None:
    import signal
    signal_quietly(pid, signal.SIGKILL)


def _warn_platform(config, warn) -> None:
    host = oci.host_platform()
    if config.platform.architecture and config.platform.architecture != host.architecture:
        from ..errors import shown        # the image's words, not escape sequences
        warn(f"WARNING: The requested image's platform ({shown(str(config.platform), 80)}) does not "
             f"match the detected host platform ({host})")


def _lower_dirs(store, record: dict) -> list[str]:
    """Layer dirs topmost first. A layer listed twice (repeated empty layers are common)
    appears once, at its topmost place: overlayfs refuses a dir stacked twice, and the
    lower copy could only show what the upper copy already shows."""
    lowers: list[str] = []
    seen: set[str] = set()            # a set: 500 layers made the list check quadratic
    for layer in reversed(record["layers"]):
        path = store.layers.diff_path(layer["key"])
        if path in seen:
            continue
        seen.add(path)
        if not store.layers.has(layer["key"]):
            raise RuntimeFailure(f"layer {layer['key']} of this image is missing from the store",
                                 "load or pull the image again")
        lowers.append(path)
    overlay.check_layer_count(len(lowers))     # before the init layer's lookups in them
    return lowers


