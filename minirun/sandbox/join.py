"""`minirun exec`: run one more process inside a running container.

The container's processes must never see a process of ours that still has the
host's root, the host's mounts or capabilities they lack: with CAP_SYS_PTRACE
(or a dumpable process) /proc/PID/root, /proc/PID/mountinfo and ptrace would
open the host to them. A process cannot enter a PID namespace itself, only
its children can, so exec forks twice:

    minirun exec (host)          pins the container's PID 1 with a pidfd, so a
      |                          recycled pid can never name a host process;
      |                          becomes a child subreaper
      +- first child             non-dumpable at once, in the host's PID
      |    (host PID ns)         namespace, where the container cannot see it:
      |                          joins the cgroup, the namespaces (setns on the
      |                          pidfd), the container's root; drops to the
      |                          container's user and capabilities; forks, exits
      +- second child            born inside the root with its final
           (container PID ns)    credentials, still non-dumpable; reparented to
                                 us when the first child exits, it waits for
                                 our word, then execs the command

The parent waits for the command and returns its exit code, like `docker exec`.
"""

from __future__ import annotations

import errno
import os
import signal
from ..lib.frozen import dataclass

from .. import linux
from ..linux import caps
from ..errors import Conflict
from . import process, seccomp, trampoline
from .program import ProcessSpec

GO = b"G"


@dataclass(frozen=True)
class Join:
    pid: int                       # the container's PID 1, as the host sees it
    process: ProcessSpec
    caps: frozenset
    ambient: frozenset
    no_new_privs: bool
    tty: bool = False
    cgroup: object = None
    interactive: bool = False
    pid_start: int = 0             # its start time, to tell it from a recycled pid
    name: str = ""                 # for messages
    seccomp: object = None         # sandbox/seccomp.py Filter, None: unconfined


def not_running(join: Join) -> Conflict:
    return Conflict(f"container {join.name or join.pid} is not running", "start one with `minirun run -d`")


def pin(join: Join) -> tuple[int, int]:
    """(pidfd, root fd) of the container's PID 1, checked to be that process and not
    one that reused its number; the pidfd keeps it so until closed."""
    from ..linux.procfs import start_time
    try:
        pidfd = linux.pidfd_open(join.pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise not_running(join) from None
        pidfd = -1                 # before Linux 5.3: the start-time check alone
    try:
        if join.pid_start and start_time(join.pid) != join.pid_start:
            raise not_running(join)
        root = os.open(f"/proc/{join.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if pidfd >= 0:
            os.close(pidfd)
        raise not_running(join) from None
    except BaseException:
        if pidfd >= 0:
            os.close(pidfd)
        raise
    return pidfd, root


def run(join: Join, interactive: bool = False) -> process.Outcome:
    pidfd, root = pin(join)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = process._socketpair() if join.tty else (None, None)
    caps.set_child_subreaper()
    first = os.fork()
    if first == 0:  # pragma: no cover - measured by integration tests
        caps.set_dumpable(False)
        process.close_fds(keep=(pidfd, root, err_w, pid_w, go_r, theirs.fileno() if theirs else -1))
        _first(join, pidfd, root, err_w, pid_w, go_r, theirs)
    for fd in (pidfd, root, err_w, pid_w, go_r):
        if fd >= 0:
            os.close(fd)
    if theirs is not None:
        theirs.close()
    _, status = os.waitpid(first, 0)
    said = process._read_all(pid_r)
    if not said:              # the first child failed; its report is on the error pipe
        os.close(go_w)
        if ours is not None:
            ours.close()
        return process.outcome(status, process._read_all(err_r))
    command = int(said)
    os.write(go_w, GO)         # it is ours now: the first child has been reaped
    os.close(go_w)
    relay = None
    if ours is not None:
        from . import tty
        master = tty.receive_master(ours)
        ours.close()
        if master is not None:
            relay = tty.Relay(master, interactive)
            relay.start()
    outcome = process.wait(process.Started(command, err_r, command=join.process.argv[0]))
    if relay is not None:
        relay.finish()
    return outcome


def _enter(join: Join, pidfd: int, root: int) -> None:  # pragma: no cover
    """The container's cgroup, namespaces and root, in that order: the cgroup files
    are host paths, gone once the mount namespace changes."""
    if join.cgroup is not None:
        join.cgroup.add(0)
    flags = 0
    for _, flag in linux.NAMESPACES:
        flags |= flag
    try:
        linux.setns(pidfd, flags)                 # all at once, on the pinned process (5.8+)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise not_running(join) from None
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
        for name, flag in linux.NAMESPACES:             # older kernels: one descriptor each
            try:
                fd = os.open(f"/proc/{join.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise not_running(join) from None
            linux.setns(fd, flag)
            os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    if pidfd >= 0:
        os.close(pidfd)


def _first(join: Join, pidfd: int, root: int, pipe: int, pid_w: int, go_r: int,
           tty_sock=None) -> None:  # pragma: no cover
    from ..errors import MinirunError
    from ..linux import caps  # noqa: F401 - imported before the chroot hides them
    from . import tty, users
    code, message = process.EXIT_SETUP, "unknown failure"
    try:
        caps.set_pdeathsig(signal.SIGKILL)
        process.default_signals()
        linux.join_session_keyring()            # issue 14.5: never the caller's keyring
        exe = trampoline.prepare()              # before the seccomp filter; the second child inherits it
        caps.preload()
        caps.last_cap()
        _enter(join, pidfd, root)
        caps.limit_bounding(join.caps)
        if not join.no_new_privs:               # issue 14.5: needs CAP_SYS_ADMIN then: before the user switch
            seccomp.install(join.seccomp)
        env, uid = process._become(join.process, create_cwd=False)
        caps.apply(join.caps, join.ambient if uid != 0 else frozenset(), join.no_new_privs)
        if join.no_new_privs:                   # issue 14.5: as late as possible; inherited by the fork
            seccomp.install(join.seccomp)
        command = os.fork()
        if command == 0:
            os.close(pid_w)
            _second(join, env, pipe, go_r, tty_sock, exe)
        os.write(pid_w, str(command).encode())
        os._exit(0)
    except MinirunError as exc:
        code, message = process.EXIT_SETUP, exc.line()
    except OSError as exc:
        code, message = process.EXIT_SETUP, f"exec setup: {exc.strerror or exc}"
    except BaseException as exc:  # noqa: BLE001
        code, message = process.EXIT_SETUP, f"exec setup: {exc}"
    _report(pipe, code, message)


def _second(join: Join, env: list[str], pipe: int, go_r: int, tty_sock=None,
            exe: int = -1) -> None:  # pragma: no cover
    """In the container's PID namespace, inside its root, with its credentials."""
    from ..errors import MinirunError
    code, message = process.EXIT_SETUP, "unknown failure"
    try:
        if os.read(go_r, 1) != GO:
            os._exit(process.EXIT_SETUP)          # minirun exec is gone
        os.close(go_r)
        caps.set_pdeathsig(signal.SIGKILL)       # the parent is minirun exec now
        process.detach_from_our_terminal(join.tty, join.interactive)
        if tty_sock is not None:
            process._terminal("", tty_sock)
        code, message = process._exec(join.process.argv, env, pipe, exe)
    except MinirunError as exc:
        code, message = process.EXIT_SETUP, exc.line()
    except BaseException as exc:  # noqa: BLE001
        code, message = process.EXIT_SETUP, f"exec setup: {exc}"
    _report(pipe, code, message)


def _report(pipe: int, code: int, message: str) -> None:  # pragma: no cover
    from ..lib import jsonio
    try:
        os.write(pipe, jsonio.dumps({"code": code, "message": message}).encode())
    finally:
        os._exit(code)
