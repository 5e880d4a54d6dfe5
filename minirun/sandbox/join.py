"""`minirun exec`: run one more process inside a running container.

The container's processes must never see a process of ours that still has the
host's root, the host's mounts, capabilities they lack, or the host's Python
as its /proc/PID/exe: with CAP_SYS_PTRACE (or a dumpable process) those would
open the host to them. A process cannot enter a PID namespace itself, only
its children can, so exec forks once and lets the trampoline fork again:

    minirun exec (host)          pins the container's PID 1 with a pidfd, so a
      |                          recycled pid can never name a host process
      +- waiter (host PID ns)    non-dumpable at once, where the container cannot
      |                          see it: joins the cgroup, the namespaces (setns
      |                          on the pidfd), the container's root; drops to the
      |                          container's user, capabilities and seccomp filter;
      |                          execs the trampoline (WAIT mode, a sealed memfd),
      |                          which drops every capability and stays to wait
      +- command                 forked by the trampoline, so born inside the
           (container PID ns)    container with its final credentials: a session
                                 of its own (the terminal's, with -t), then the
                                 trampoline's exec of the command

No process the container can see ever runs this interpreter. The waiter
forwards signals to the command and exits as it did; minirun exec waits for
the waiter and returns that code, like `docker exec`.
"""

from __future__ import annotations

import errno
import os
import signal
from ..lib.frozen import dataclass

from .. import linux
from ..linux import caps
from ..errors import Conflict
from . import command, process, seccomp, trampoline
from .program import ProcessSpec


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
        if still_starting(join.pid, root):
            os.close(root)
            raise Conflict(f"container {join.name or join.pid} is still starting",
                           "run the exec again in a moment")
    except FileNotFoundError:
        if pidfd >= 0:
            os.close(pidfd)
        raise not_running(join) from None
    except BaseException:
        if pidfd >= 0:
            os.close(pidfd)
        raise
    return pidfd, root


def still_starting(pid: int, root: int) -> bool:
    """Whether the container's PID 1 is still minirun's own child, before its exec: its
    state says running from the fork on. Until it has left the host's mount namespace
    and root, joining would run the command on the host's files; until its exec, it
    is the host's python with the capabilities it has yet to drop, and a process
    joined to the container could reach that host file as /proc/1/exe."""
    import sys
    ours = os.stat("/")
    theirs = os.fstat(root)
    if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
        return True
    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
        return True
    exe, python = os.stat(f"/proc/{pid}/exe"), os.stat(sys.executable)
    return (exe.st_dev, exe.st_ino) == (python.st_dev, python.st_ino)


def run(join: Join, interactive: bool = False, output=None) -> process.Outcome:
    """output: the command's pipes (run/output.py Output: stdio(), started(),
    finish()), None with a terminal; it never gets a descriptor of ours."""
    pidfd, root = pin(join)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = process._socketpair() if join.tty else (None, None)
    stdio = output.stdio() if output is not None else None
    waiter = os.fork()
    if waiter == 0:  # pragma: no cover - measured by integration tests
        caps.set_dumpable(False)
        command.close_fds(keep=(pidfd, root, err_w, theirs.fileno() if theirs else -1, *(stdio or ())))
        _waiter(join, pidfd, root, err_w, theirs, stdio)
    for fd in (pidfd, root, err_w):
        if fd >= 0:
            os.close(fd)
    if theirs is not None:
        theirs.close()
    if output is not None:
        output.started()
    relay = None
    if ours is not None:
        from . import tty
        master = tty.receive_master(ours)        # None: the waiter failed first
        ours.close()
        if master is not None:
            relay = tty.Relay(master, interactive)
            relay.start()
    try:
        outcome = process.wait(process.Started(waiter, err_r, command=join.process.argv[0]))
    finally:
        if relay is not None:
            relay.finish()
        if output is not None:
            output.finish(grace=None)      # what it left running in the background, too
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


def _waiter(join: Join, pidfd: int, root: int, pipe: int, tty_sock=None,
            stdio: tuple[int, int, int] | None = None) -> None:  # pragma: no cover
    """The waiter: enter the container (all but its PID namespace, which only its
    children can), become its user, then exec the trampoline as the command's
    waiter, or fail with a report."""
    import fcntl  # noqa: F401 - imported before the chroot hides them (supervise)
    import termios  # noqa: F401
    from ..errors import MinirunError
    from . import tty
    code, message = command.EXIT_SETUP, "unknown failure"
    try:
        caps.set_pdeathsig(signal.SIGKILL)
        command.default_signals()
        linux.join_session_keyring()            # issue 14.5: never the caller's keyring
        exe = trampoline.prepare()              # before the seccomp filter: it may forbid memfd_create
        caps.preload()
        caps.last_cap()
        _enter(join, pidfd, root)
        caps.limit_bounding(join.caps)
        if not join.no_new_privs:               # issue 14.5: needs CAP_SYS_ADMIN then: before the user switch
            seccomp.install(join.seccomp)
        env, uid = command.become(join.process, create_cwd=False)
        caps.apply(join.caps, join.ambient if uid != 0 else frozenset(), join.no_new_privs)
        process.detach_from_our_terminal(join.tty)
        if tty_sock is not None:
            # the command makes the slave its controlling terminal, in a session of its
            # own (trampoline WAIT mode): the waiter never holds it, so ^Z stops only
            # the command, whose group the kernel then sees as orphaned (docker exec)
            master, slave = tty.open_in("")
            tty.copy_window_size(master)
            tty.send_master(tty_sock, master)
            os.close(master)
            tty_sock.close()
            for target in (0, 1, 2):
                os.dup2(slave, target)
            if slave > 2:
                os.close(slave)
        process.use_stdio(stdio)                # pipes, or the container's /dev/null: never ours
        if join.no_new_privs:                   # issue 14.5: as late as possible
            seccomp.install(join.seccomp)
        if exe >= 0:
            code, message = command.exec_command(join.process.argv, env, pipe, exe, trampoline.WAIT)
        else:
            code, message = command.supervise(join.process.argv, env, pipe, own_session=True)
    except MinirunError as exc:
        code, message = command.EXIT_SETUP, exc.line()
    except OSError as exc:
        code, message = command.EXIT_SETUP, f"exec setup: {exc.strerror or exc}"
    except BaseException as exc:  # noqa: BLE001
        code, message = command.EXIT_SETUP, f"exec setup: {exc}"
    _report(pipe, code, message)


def _report(pipe: int, code: int, message: str) -> None:  # pragma: no cover
    from ..lib import jsonio
    try:
        os.write(pipe, jsonio.dumps({"code": code, "message": message}).encode())
    finally:
        os._exit(code)
