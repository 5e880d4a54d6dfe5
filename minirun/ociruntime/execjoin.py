"""exec's processes (see exec.py): pin the init, fork the joiner, which enters the
container and forks the process; wait for it, or write the pid file and return.

The pipe back carries the joiner's {"pid": N} line, then either nothing (EOF: the
trampoline's exec of process.args happened, every copy of the pipe being
close-on-exec), a {"error", "hint"} line from the process's setup, or the one
errno byte the trampoline writes when that exec fails.
"""

from __future__ import annotations

import json
import os
import signal

from .. import linux
from ..errors import Conflict, RuntimeFailure, UsageError
from ..linux import caps, procfs
from ..linux.cgroups import membership
from ..sandbox import command, join, trampoline, tty  # noqa: F401 - tty: init._terminal's, before the chroot
from . import container, init

_NAMESPACES = linux.CLONE_NEWCGROUP
for _name, _flag in linux.NAMESPACES:
    _NAMESPACES |= _flag


def run(root: str, record: dict, cfg: dict, process: dict, detach: bool, pid_file: str | None,
        console_socket: str | None) -> int:
    console = None
    if process["terminal"] or console_socket:
        if not console_socket:
            raise UsageError("exec: a terminal (--tty or process.terminal) needs --console-socket",
                             "give --console-socket SOCKET, as create takes it")
        console = container._console({"process": process}, console_socket)
    seccomp = container._seccomp({"linux": cfg.get("linux") or {}, "process": process}, root)
    pin = join.Join(pid=record["pid"], process=None, caps=frozenset(), ambient=frozenset(), no_new_privs=False,
                    pid_start=record.get("start_time", 0), name=record["id"])
    try:
        pidfd, root = join.pin(pin)
    except Conflict as exc:
        raise Conflict(exc.message, "exec runs in a running container") from None
    try:
        cgroups = membership.of(record["pid"])
    except OSError:
        raise join.not_running(pin) from None
    if not detach:
        caps.set_child_subreaper()          # the process is reparented here when the joiner exits
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    joiner = os.fork()
    if joiner == 0:  # pragma: no cover - measured by the integration tests
        os.close(read_fd)
        _joiner(pin, pidfd, root, cgroups, process, seccomp, write_fd, console)
    os.close(write_fd)
    os.close(root)
    if pidfd >= 0:
        os.close(pidfd)
    if console is not None:
        console.close()
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(joiner, 0)
    first, _, rest = data.partition(b"\n")
    try:
        message = json.loads(first) if first.startswith(b"{") else {}
    except ValueError:
        message = {}
    if "error" in message:
        raise RuntimeFailure(message["error"], message.get("hint"))
    pid = message.get("pid", 0)
    if not pid:
        raise RuntimeFailure("exec: the process ended before it started", "run with --debug")
    if rest.startswith(b"{"):
        failed = json.loads(rest.partition(b"\n")[0])
        _reap(pid)
        raise RuntimeFailure(failed["error"], failed.get("hint"))
    if rest:
        _reap(pid)
        _, text = trampoline.failure(process["args"][0], trampoline.decode(rest))
        raise RuntimeFailure(text, "give a program the container holds in process.args")
    if pid_file:
        tmp = pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, pid_file)
    if detach:
        return 0
    return _wait(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _wait(pid: int) -> int:
    for signum in command.FORWARDED_SIGNALS + (signal.SIGWINCH,):
        signal.signal(signum, lambda n, _f: procfs.signal_quietly(pid, n))
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
        if reaped == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _send(fd: int, message: dict) -> None:  # pragma: no cover
    os.write(fd, (json.dumps(message) + "\n").encode())


def _joiner(pin: join.Join, pidfd: int, root: int, cgroups: list[str], process: dict, seccomp, report: int,
            console) -> None:  # pragma: no cover - runs in the forked joiner
    code = 1
    try:
        caps.set_dumpable(False)            # the host's python: no ptrace, no /proc/PID/fd, until the exec
        caps.set_pdeathsig(signal.SIGKILL)
        linux.join_session_keyring()        # never the caller's keyring
        membership.join(cgroups)            # host paths: before the mount namespace changes
        caps.preload()                      # what the process imports, while the host's files are in reach
        caps.last_cap()
        try:
            linux.setns(pidfd, _NAMESPACES)
        except OSError as exc:
            raise RuntimeFailure(f"exec: cannot join the container's namespaces: {exc.strerror}",
                                 "is the container still running? (Linux 5.8+ is needed)") from None
        os.fchdir(root)
        os.chroot(".")
        os.close(root)
        os.close(pidfd)
        pid = os.fork()
        if pid == 0:
            try:
                _process(process, seccomp, report, console)
            except BaseException as exc:  # noqa: BLE001 - reported to exec
                _send(report, container._describe(exc))
            os._exit(127)
        _send(report, {"pid": pid})
        code = 0
    except BaseException as exc:  # noqa: BLE001
        _send(report, container._describe(exc))
    os._exit(code)


def _process(process: dict, seccomp, report: int, console) -> None:  # pragma: no cover - in the container
    """Born in the container's PID namespace; never returns but by raising."""
    caps.set_pdeathsig(0)
    command.default_signals()
    init.limits_and_cwd(process, "exec: ", ("give an existing directory in the container as the cwd",
                                            "give a directory inside the container as the cwd"))
    init.check_capabilities(process, "exec: ")
    program = init._program(process)
    exe = trampoline.prepare()              # before the seccomp filter: it may forbid memfd_create
    if exe < 0:
        raise RuntimeFailure("minirun-oci has no exec trampoline for this machine's architecture",
                             "run it on x86_64")
    if console is not None:
        init._terminal(process, console)    # the pty master over the socket, the slave on fds 0-2
    else:
        os.setsid()
    init.become_and_exec(process, program, exe, report, seccomp)
