"""`minirun run`, end to end: plan.py checks the flags and plans the container;
here it is started, joined to its cgroup and network, waited for, and whatever
it held is released, recording how it ended. With -d a monitor process of our
own does the waiting.

Everything that can be refused is refused before the container exists:
malformed flags, limits, an unknown image. The one exception is a cgroup
controller that turns out missing as the cgroup is made, just after the record
(so that the record always names the cgroup): the container is then removed.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import MinirunError
from ..lib import jsonio, log
from ..lib.frozen import dataclass
from ..linux.caps import require_root
from ..linux.procfs import signal_quietly, start_time
from ..store.containers import now
from ..store import ContainerState
from .plan import Prepared, RunOptions, check_options, create, prepare, release


@dataclass(frozen=True)
class RunResult:
    container_id: str
    exit_code: int
    error: str = ""
    oom_killed: bool = False


def run(store, image: str, opts: RunOptions, name: str | None = None, remove: bool = False,
        warn=lambda line: print(line, file=sys.stderr)) -> RunResult:
    """Create a container from image and run it to completion in the foreground.

    In the foreground, containers/<id>/ is written just after the fork, already in
    state running with the child's pid (one state write instead of two); the child
    makes its namespaces and waits for it before it mounts anything. A -d
    container is on disk before its monitor starts, so that the id printed names
    a container that exists."""
    require_root("run")
    checked = check_options(opts, store, warn)
    if name:
        from ..store.containers import check_name
        check_name(name)          # now, not after the fork
    if opts.detach:
        return _detached(store, create(store, image, opts, checked, name, remove, warn, claim=True), remove)
    return start_and_wait(store, prepare(store, image, opts, checked, name, remove, warn), remove,
                          interactive=opts.interactive)


def _detach(store, prepared: Prepared, remove: bool) -> RunResult:
    """-d: a monitor process of our own (in a new session, its stdio /dev/null) runs
    the container, copies its output into its log and records its end; we return
    once exec has happened."""
    cid = prepared.cid
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    if os.fork() == 0:  # pragma: no cover - the monitor, exercised by integration tests
        os.close(read_fd)
        log.silence()        # nobody reads its stderr
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(devnull, target)
            os.close(devnull)

            def notify(code: int, error: str) -> None:
                os.write(write_fd, jsonio.dumps({"code": code, "error": error}).encode())
                os.close(write_fd)
            start_and_wait(store, prepared, remove, notify=notify, show=False)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        said = f.read()
    report = jsonio.loads(said) if said else {"code": 125, "error": "the monitor died during start-up"}
    if not report["error"]:
        return RunResult(cid, 0)
    return RunResult(cid, report["code"], report["error"])


def start_and_wait(store, prepared: Prepared, remove: bool, interactive: bool = False,
                   notify=None, show: bool = True) -> RunResult:
    """Start the container and wait for its end. With a pending write (see prepare),
    the container goes on disk now, in state running. Its output goes to its log
    and, with show, to our stdout and stderr too (run/output.py)."""
    from ..sandbox import process
    containers = store.containers
    cid, launch, resources, pending = prepared.cid, prepared.launch, prepared.resources, prepared.pending
    output = _output(store, prepared, show)
    try:
        started = process.start(launch, output.stdio() if output is not None else None)
        # until wait() forwards them: a signal to us ends the run the way Ctrl-C does,
        # giving back what it holds (not killed by the default action half-way)
        signals = process.interrupt_on_signals()
    except BaseException:
        if output is not None:
            output.finish()
        release(store, cid, resources)
        if pending is not None:
            pending.release()
        elif remove:
            containers.remove(cid)
        raise
    running = ContainerState("running", pid=started.pid, started=now(), pid_start=start_time(started.pid),
                             cgroup=resources.cgroup.to_json() if resources.cgroup else None,
                             ports=resources.ports.shown() if resources.ports else ())
    # the runtime's claim (store/containers.py) is held from before the running
    # record until the end is recorded; `start` took it before it prepared
    claim = prepared.claim
    if pending is None:
        try:
            if claim < 0:
                claim = _claim(containers, cid)
            containers.set_state(cid, status=running.status, pid=running.pid, started=running.started,
                                 pid_start=running.pid_start, cgroup=running.cgroup, ports=running.ports)
        except BaseException:       # another minirun claimed it in the moment since `create`
            process.restore_signals(signals)
            _kill(started.pid)
            process.abandon(started)
            if output is not None:
                output.finish()
            raise
    else:
        try:
            written = pending.write(running, claim=claim < 0)
            claim = written if claim < 0 else claim
        except BaseException:           # --name taken meanwhile, no cgroup: the child never mounts
            process.restore_signals(signals)
            _kill(started.pid)
            process.abandon(started)
            release(store, cid, resources)
            if pending.existing:        # started again: it stays, as it was
                containers.set_state(cid, status="exited", pid=0, cgroup=None, ports=())
            else:
                containers.remove(cid)
            if output is not None:
                output.finish()
            raise
    setup_error, outcome, oom = "", None, False
    try:
        try:
            _join(started, resources)
        except Exception as exc:                    # noqa: BLE001 - reported as the run's error
            setup_error = exc.line() if isinstance(exc, MinirunError) else f"container setup: {exc}"
            _kill(started.pid)
        if output is not None:
            # after the child's go-ahead, off its critical path: until the copiers
            # start, its output waits in the pipes
            output.started()
        relay = _terminal_relay(started, interactive, output, show) if launch.tty and not setup_error else None
        try:
            outcome = process.wait(started, on_exec=notify, setup_error=setup_error)
        finally:
            if relay is not None:
                relay.finish()
            if output is not None:
                output.finish()
        oom = bool(resources.cgroup and resources.cgroup.oom_killed())
    finally:
        # Ctrl-C during start-up or a terminal that hangs up must not leak the
        # cgroup, the address or an --rm container; one during this clean-up waits
        # for its end
        noted = process.defer_signals(signals)
        if outcome is None:
            _kill(started.pid)
        release(store, cid, resources)
        code = 125 if setup_error or outcome is None else outcome.exit_code
        error = setup_error or (outcome.error if outcome else "minirun was interrupted")
        try:
            if remove:              # nobody will read how it ended: no state to write first
                containers.remove(cid)
            else:
                containers.set_state(cid, status="exited", exit_code=code, finished=now(), oom_killed=oom,
                                     error=error, pid=0, cgroup=None, ports=())
        finally:
            if claim >= 0:
                os.close(claim)
            process.resume_signals(signals, noted)
    return RunResult(cid, code, error, oom)


def _claim(containers, cid: str) -> int:
    """The runtime's claim on the container (store/containers.py), taken while its
    command still waits for the go-ahead; -1 when it was removed meanwhile (rm -f)."""
    try:
        return containers.claim(cid)
    except FileNotFoundError:
        return -1


def _output(store, prepared: Prepared, show: bool):
    """The container's pipes and log (run/output.py): its stdout and stderr, and our
    stdin fed into its own with -i in the foreground; even with --log-driver none,
    so that it never holds a descriptor of ours. None with a terminal (-t) and no
    log: the pty it opens in its own devpts is then all it has."""
    from ..store import logfile
    policy = prepared.log or logfile.Policy()
    tty = prepared.launch.tty
    if tty and not policy.keeps:
        return None
    from .output import Output
    return Output(store.containers.path(prepared.cid), policy, tee=show, pipes=not tty,
                  stdin=show and prepared.launch.interactive and not tty)


def _terminal_relay(started, interactive: bool, output=None, show: bool = True):
    """The pty master the child opened in its own devpts, relayed to our terminal
    (show) and to the container's log."""
    from ..sandbox import tty
    master = tty.receive_master(started.tty_sock)
    started.tty_sock.close()
    if master is None:
        return None             # the child failed before opening it; wait() reports why
    relay = tty.Relay(master, interactive, log=output.log if output is not None else None, show=show)
    relay.start()
    return relay


def _join(started, resources) -> None:
    """Between the child's unshare and its exec: the cgroup, then the network and the
    proxy of its published ports (which takes over their sockets)."""
    from ..sandbox import process
    if not process.wait_ready(started):
        return                  # the child failed before it was ready: wait() reports its own error
    if resources.cgroup is not None:
        resources.cgroup.add(started.pid)
    if resources.allocation is not None:
        from ..network import netlink
        netlink.ensure_bridge(resources.allocation.bridge, resources.allocation.gateway_cidr)
        netlink.attach(started.pid, resources.allocation)
        if resources.ports is not None:
            from ..network import ports
            resources.proxy = ports.start_proxy(resources.ports, resources.allocation.address)
    process.release(started)


def _kill(pid: int) -> None:
    import signal
    signal_quietly(pid, signal.SIGKILL)


# ---------------------------------------------------------------- create, start, restart

def create_container(store, image: str, opts: RunOptions, name: str | None = None, remove: bool = False,
                     warn=lambda line: print(line, file=sys.stderr)) -> str:
    """docker create: the container on disk in state created, its upper dir empty; no
    cgroup, no address (start takes them). Returns its id."""
    require_root("create")
    checked = check_options(opts, store, warn)
    if name:
        from ..store.containers import check_name
        check_name(name)
    prepared = prepare(store, image, opts, checked, name, remove, warn, hold=False)
    try:
        prepared.pending.write()
    finally:
        release(store, prepared.cid, prepared.resources)    # the address it was planned with
    return prepared.cid


def start_container(store, name: str, attach: bool = False, interactive: bool = False,
                    warn=lambda line: print(line, file=sys.stderr)) -> RunResult:
    """docker start: run a created or stopped container again, with the flags it was
    made with, on its own upper dir (what earlier runs wrote is still there). Detached
    unless attach; a running container is left as it is."""
    from ..errors import Conflict
    from ..lib.frozen import replace
    from .plan import options_from_record
    require_root("start")
    containers = store.containers
    cid = containers.resolve(name)
    config = containers.config(cid)
    if config.options is None:
        raise Conflict(f"container {name} was made by an older minirun, which kept no record of its flags",
                       f"run a new container from its image: minirun run {config.image}")
    if not _wait_unclaimed(containers, cid):
        return RunResult(cid, 0)            # running, as docker start leaves it
    claim = containers.claim(cid)           # a Conflict if another `start` took it just now
    try:
        opts = replace(options_from_record(config.options, containers.path(cid, "config.json")),
                       detach=not attach, interactive=interactive and attach)
        checked = check_options(opts, store)
        prepared = replace(prepare(store, config.image_id, opts, checked, config.name, config.auto_remove,
                                   warn, existing=cid), claim=claim)
    except BaseException:
        os.close(claim)
        raise
    if attach:
        return start_and_wait(store, prepared, config.auto_remove, interactive=opts.interactive)
    return _detached(store, prepared, config.auto_remove)


def _wait_unclaimed(containers, cid: str, timeout: float = 10.0) -> bool:
    """Until no minirun process holds the container: False when it runs (or another
    `start` has just started it); True when it is free to start. A runtime still
    recording how the last run ended is waited for (`restart` meets its own stop)."""
    from ..errors import Conflict
    from ..store.containers import effective_state
    deadline = time.monotonic() + timeout
    while True:
        if effective_state(containers.state(cid)).running:
            return False
        if not containers.claimed(cid):
            return True
        if time.monotonic() >= deadline:
            raise Conflict(f"container {cid[:12]} is held by another minirun process that has not "
                           "finished with it", "try again in a moment; if it stays, see `minirun ps -a`")
        time.sleep(0.01)


def _detached(store, prepared: Prepared, remove: bool) -> RunResult:
    """_detach(), then our copies of the published ports' sockets and of the claim
    closed: the monitor holds its own, and the port must be free once the container
    ends (the claim is the monitor's until then)."""
    try:
        return _detach(store, prepared, remove)
    finally:
        if prepared.resources.ports is not None:
            prepared.resources.ports.close()
        if prepared.claim >= 0:
            os.close(prepared.claim)
