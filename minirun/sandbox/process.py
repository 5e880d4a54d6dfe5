"""Start the container process and wait for it.

The parent unshares only its PID namespace (which affects its children, not
itself) and forks once: the child is PID 1 of the new namespace. The child
unshares the other namespaces, builds the root filesystem, drops privileges
and execs. Parent and child talk over two close-on-exec pipes with a tiny
typed protocol:

    child -> parent  b"R"          namespaces exist: join the cgroup, wire the network
    parent -> child  b"G"          go on (only when the parent had work to do)
    child -> parent  JSON error    {"code", "message"} when setup or exec failed;
                                   EOF with no message means exec succeeded
    trampoline       one byte      the errno of the command's execve, which the
                                   exec trampoline (trampoline.py) saw fail;
                     "I" step errno  a setup step of its --init mode failed

Exit codes follow `docker run`: the command's own, 128+N when killed by
signal N, 126 when it cannot be executed, 127 when it is not found, 125 for
minirun's own failures.
"""

from __future__ import annotations

import os
import _signal as signal    # the C module: `signal` wraps it in enums, and enum costs a run ~3 ms

from ..lib import jsonio
from ..lib.frozen import dataclass

from .. import linux
from ..linux import overlay
from ..linux import caps
# imported here, not in the child: a module imported after the fork costs the
# child ~0.5 ms more than the parent, every page it touches being copied first
from ..network.loopback import loopback_up
from ..errors import MinirunError
from . import command, rootfs, seccomp, trampoline
from .command import EXIT_SETUP, FORWARDED_SIGNALS
from .mounts import Mount
from .program import ProcessSpec

READY, GO = b"R", b"G"


@dataclass(frozen=True)
class Launch:
    process: ProcessSpec
    overlay: overlay.OverlayMount
    merged: str
    strategy: str
    mounts: tuple[Mount, ...] = ()
    privileged: bool = False
    caps: frozenset = frozenset()
    ambient: frozenset = frozenset()
    no_new_privs: bool = True
    netns: bool = True
    ulimits: tuple = ()
    init: bool = False
    sync: bool = False               # the parent must act between unshare and exec
    tty: bool = False                # a terminal from the container's devpts, master sent to us
    interactive: bool = False        # -i: our stdin is fed into its own (run/output.py); else its /dev/null
    seccomp: object = None           # sandbox/seccomp.py Filter, None: unconfined


def namespace_flags(launch: Launch) -> int:
    """The namespaces of linux.NAMESPACES the child unshares: all but PID (the
    parent unshared that) and, with --network host, the network's."""
    flags = 0
    for name, flag in linux.NAMESPACES:
        if name != "pid" and (name != "net" or launch.netns):
            flags |= flag
    return flags


@dataclass
class Started:
    pid: int
    errors: int                      # read end: the child's error report
    ready: int = -1                  # read end: b"R" when namespaces exist
    go: int = -1                     # write end: b"G" to let the child continue
    tty_sock: object = None          # where the child sends the pty master (with Launch.tty)
    command: str = ""                # argv[0], for the messages of a failed exec


def start(launch: Launch, stdio: tuple[int, int, int] | None = None) -> Started:
    """Fork the container's child. It closes every descriptor of ours at once, a
    store lock's among them: a flock lives while any copy of its descriptor does.
    stdio: the fds its command gets as stdin, stdout and stderr (run/output.py's
    pipes; see use_stdio); None with a terminal (Launch.tty), which gives all three."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC) if launch.sync else (-1, -1)
    go_r, go_w = os.pipe2(os.O_CLOEXEC) if launch.sync else (-1, -1)
    ours, theirs = _socketpair() if launch.tty else (None, None)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    linux.unshare(linux.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, measured by integration tests
        # before any path in the container is resolved: a descriptor of the caller's
        # (a directory, say) reached as /proc/self/fd/N would lead out of it
        command.close_fds(keep=(err_w, ready_w, go_r, theirs.fileno() if theirs is not None else -1,
                                *(stdio or ())))
        _child(launch, err_w, ready_w, go_r, theirs, stdio)
    # Back to our own PID namespace for later children: the kernel refuses new
    # threads (pyroute2, downloads) while pid_ns_for_children differs from ours.
    linux.setns(own_pid_ns, linux.CLONE_NEWPID)
    os.close(own_pid_ns)
    for fd in (err_w, ready_w, go_r):
        if fd >= 0:
            os.close(fd)
    if theirs is not None:
        theirs.close()
    return Started(pid, err_r, ready_r, go_w, ours, launch.process.argv[0])


def _socketpair():
    import socket
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def wait_ready(started: Started) -> bool:
    """Block until the child has its namespaces (only with Launch.sync); False when it
    failed before (wait() reads its report: nothing else must be tried on it)."""
    if started.ready < 0:
        return True
    got = os.read(started.ready, 1)
    os.close(started.ready)
    started.ready = -1
    return got == READY


def release(started: Started) -> None:
    if started.go >= 0:
        try:
            os.write(started.go, GO)
        except BrokenPipeError:
            pass
        os.close(started.go)
        started.go = -1


def abandon(started: Started) -> None:
    """After the child was killed before its exec: close our ends, reap it."""
    for fd in (started.errors, started.ready, started.go):
        if fd >= 0:
            os.close(fd)
    started.errors = started.ready = started.go = -1
    if started.tty_sock is not None:
        started.tty_sock.close()
    os.waitpid(started.pid, 0)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    signal: int = 0
    error: str = ""          # minirun's or exec's message when the command never ran


def forward_signals(pid: int) -> dict:
    """From now on SIGINT, SIGTERM and the like go to pid; what restore_signals() needs."""
    return {signum: signal.signal(signum, lambda s, _f: command.forward(pid, s)) for signum in FORWARDED_SIGNALS}


def interrupt_on_signals() -> dict:
    """Until wait(): SIGINT, SIGTERM and the like raise KeyboardInterrupt here, so a
    run stopped while it sets up gives back what it holds; forwarded, they would be
    lost (the child is its PID namespace's init, with no handler yet). A signal our
    caller ignores (nohup's SIGHUP) stays ignored."""
    previous = {}
    for signum in FORWARDED_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _interrupt)
    return previous


def defer_signals(previous: dict) -> list:
    """While a run gives back what it holds: a signal (of those previous names) is
    noted, not acted on in the middle of the clean-up; resume_signals() then
    restores previous and raises the first noted."""
    noted: list = []
    for signum in previous:
        signal.signal(signum, lambda s, _f: noted.append(s))
    return noted


def resume_signals(previous: dict, noted: list) -> None:
    restore_signals(previous)
    if noted:
        signal.raise_signal(noted[0])


def _interrupt(signum, _frame):
    raise KeyboardInterrupt


def restore_signals(previous: dict) -> None:
    for signum, old in previous.items():
        signal.signal(signum, old)


def wait(started: Started, on_exec=None, setup_error: str = "") -> Outcome:
    """Forward signals while the container runs; return how it ended. on_exec(error)
    is called once it is known whether the command started ("" when it did)."""
    previous = forward_signals(started.pid)     # before the go-ahead: the command may trap at once
    try:
        release(started)
        message = _read_all(started.errors)
        if on_exec is not None:
            report = _report(message, started.command)
            on_exec(EXIT_SETUP if setup_error else report.get("code", 0),
                    setup_error or report.get("message", ""))
        _, status = os.waitpid(started.pid, 0)
    finally:
        restore_signals(previous)
    return outcome(status, message, started.command)


def _report(message: bytes, command: str) -> dict:
    """The child's report: its JSON, or the exec trampoline's errno byte."""
    failed = trampoline.setup_failure(message)
    if failed:
        return {"code": EXIT_SETUP, "message": failed}
    number = trampoline.decode(message)
    if number:
        code, text = trampoline.failure(command, number)
        return {"code": code, "message": text}
    return jsonio.loads(message) if message else {}


def outcome(status: int, message: bytes = b"", command: str = "") -> Outcome:
    if message:
        report = _report(message, command)
        return Outcome(report["code"], 0, report["message"])
    if os.WIFSIGNALED(status):
        return Outcome(128 + os.WTERMSIG(status), os.WTERMSIG(status))
    return Outcome(os.WEXITSTATUS(status))


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


# ---------------------------------------------------------------- the child

def _child(launch: Launch, pipe: int, ready: int, go: int, tty_sock=None,
           stdio: tuple[int, int] | None = None) -> None:  # pragma: no cover
    """Never returns: execs the command or exits with a reported failure."""
    code, message = EXIT_SETUP, "unknown failure"
    step = "start"
    try:
        caps.set_pdeathsig(signal.SIGKILL)
        # until its exec it is the host's python: no ptrace, no /proc/1/mem or
        # /proc/1/fd for processes of the container without CAP_SYS_PTRACE
        caps.set_dumpable(False)
        command.default_signals()
        linux.join_session_keyring()            # issue 14.5: never the caller's keyring
        step = "prepare the exec trampoline"
        exe = trampoline.prepare()              # before any seccomp filter: it may forbid memfd_create
        detach_from_our_terminal(launch.tty)
        step = "create namespaces"
        linux.unshare(namespace_flags(launch))
        if launch.netns:
            loopback_up()
        # what needs none of the container's files goes before the wait for the
        # parent, which meanwhile writes the container's dir (~2 ms): off the
        # critical path of every run
        step = "set the hostname"
        linux.sethostname(launch.process.hostname)
        step = "limit the capability bounding set"
        if not launch.privileged:
            caps.limit_bounding(launch.caps)
        step = "make the mounts private"
        rootfs.make_private()
        if ready >= 0:
            os.write(ready, READY)
            os.close(ready)
            if os.read(go, 1) != GO:
                os._exit(EXIT_SETUP)      # the parent gave up; it reports why
            os.close(go)
        step = "set up the root filesystem"
        rootfs.setup(launch.overlay, launch.merged, launch.strategy, launch.mounts, launch.privileged)
        if tty_sock is not None:
            step = "open the terminal"
            _terminal(launch.merged, tty_sock)
        step = "set ulimits"
        if launch.ulimits:
            from . import rlimits
            rlimits.apply(launch.ulimits)
        step = "switch root"
        rootfs.enter(launch.merged, launch.process.chroot)
        step = "load the seccomp filter"
        if not launch.no_new_privs:             # issue 14.5: needs CAP_SYS_ADMIN then: before the user switch
            seccomp.install(launch.seccomp)
        step = "switch user"
        env, uid = command.become(launch.process)
        step = "set capabilities"
        caps.apply(launch.caps, launch.ambient if uid != 0 else frozenset(), launch.no_new_privs)
        step = "load the seccomp filter"
        if launch.no_new_privs:                 # issue 14.5: as late as possible
            seccomp.install(launch.seccomp)
        step = "exec"
        use_stdio(stdio)                        # only now: setup's own lines stay ours
        command.close_fds((pipe, exe))
        if launch.init and exe < 0:             # no trampoline on this machine
            code, message = command.supervise(launch.process.argv, env, pipe, exe, own_session=False)
        else:
            mode = trampoline.INIT if launch.init else trampoline.ARGV0
            code, message = command.exec_command(launch.process.argv, env, pipe, exe, mode)
    except MinirunError as exc:
        code, message = EXIT_SETUP, exc.line()
    except OSError as exc:
        code, message = EXIT_SETUP, f"container setup: {step}: {exc.strerror or exc}" + \
            (f" ({exc.filename})" if exc.filename else "")
    except BaseException as exc:  # noqa: BLE001 - the child must never fall back into the CLI
        code, message = EXIT_SETUP, f"container setup: {step}: {type(exc).__name__}: {exc}"
    try:
        os.write(pipe, jsonio.dumps({"code": code, "message": message}).encode())
    finally:
        os._exit(code)


def detach_from_our_terminal(tty: bool) -> None:  # pragma: no cover
    """A session of its own, so our terminal is never the container's controlling tty
    (TIOCSTI on it would type into the user's shell). With -t the container gets
    its own terminal later."""
    if not tty:
        os.setsid()


def use_stdio(stdio: tuple[int, int, int] | None) -> None:  # pragma: no cover
    """Just before the exec, in the container's root: its stdin, stdout and stderr,
    each a pipe of run/output.py's or, where -1, its own /dev/null (no -i). Never a
    descriptor of ours: through /proc/self/fd/N its root could reopen, rewrite or
    chmod what it names (our /dev/null, a file our output was redirected to, our
    terminal). None: the terminal of its own it has already (-t)."""
    if stdio is None:
        return
    for target, fd in zip((0, 1, 2), stdio):
        if fd < 0:
            fd = os.open("/dev/null", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            os.dup2(fd, target)
            os.close(fd)
        else:
            os.dup2(fd, target)


def _terminal(root: str, sock) -> None:  # pragma: no cover
    """Open a pty in the container's devpts, hand the master to the parent, and make
    the slave this process's controlling terminal and stdio."""
    from . import tty
    master, slave = tty.open_in(root)
    tty.copy_window_size(master)
    tty.send_master(sock, master)
    os.close(master)
    sock.close()
    tty.become_controlling(slave)
