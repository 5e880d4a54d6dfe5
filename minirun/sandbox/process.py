"""Start the container process and wait for it.

The parent unshares only its PID namespace (which affects its children, not
itself) and forks once: the child is PID 1 of the new namespace. The child
unshares mount, UTS and IPC namespaces, builds the root filesystem, switches
user and execs. It reports a failure before exec as one JSON message on a
close-on-exec pipe; EOF on that pipe means exec succeeded.

Exit codes follow `docker run`: the command's own, 128+N when killed by
signal N, 126 when it cannot be executed, 127 when it is not found, 125 for
minirun's own failures.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from dataclasses import dataclass

from .. import linux, overlay
from ..errors import MinirunError
from . import rootfs, users
from .spec import ProcessSpec

EXIT_SETUP = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
NAMESPACES = (  # applied in the child, in this order
    ("mount", linux.CLONE_NEWNS),
    ("uts", linux.CLONE_NEWUTS),
    ("ipc", linux.CLONE_NEWIPC),
)


@dataclass(frozen=True)
class Launch:
    process: ProcessSpec
    overlay: overlay.OverlaySpec
    merged: str
    strategy: str


@dataclass
class Started:
    pid: int
    pipe: int


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    signal: int = 0
    error: str = ""          # minirun's or exec's message when the command never ran


def start(launch: Launch) -> Started:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    linux.unshare(linux.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, measured by integration tests
        os.close(read_fd)
        _child(launch, write_fd)
    os.close(write_fd)
    return Started(pid, read_fd)


def wait(started: Started) -> Outcome:
    """Forward signals while the container runs; return how it ended."""
    previous = {}
    for signum in FORWARDED_SIGNALS:
        previous[signum] = signal.signal(signum, lambda s, _f, pid=started.pid: _forward(pid, s))
    try:
        message = _read_all(started.pipe)
        _, status = os.waitpid(started.pid, 0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if message:
        report = json.loads(message)
        return Outcome(report["code"], 0, report["message"])
    if os.WIFSIGNALED(status):
        return Outcome(128 + os.WTERMSIG(status), os.WTERMSIG(status))
    return Outcome(os.WEXITSTATUS(status))


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


# ---------------------------------------------------------------- the child

def _child(launch: Launch, pipe: int) -> None:  # pragma: no cover - see above
    """Never returns: execs the command or exits with a reported failure."""
    code, message = EXIT_SETUP, "unknown failure"
    try:
        linux.set_pdeathsig(signal.SIGKILL)
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        flags = 0
        for _name, flag in NAMESPACES:
            flags |= flag
        linux.unshare(flags)
        rootfs.setup(launch.overlay, launch.merged, launch.strategy)
        linux.sethostname(launch.process.hostname)
        rootfs.enter(launch.merged, launch.process.chroot)
        env = _become(launch.process)
        code, message = _exec(launch.process.argv, env)
    except MinirunError as exc:
        code, message = EXIT_SETUP, exc.line()
    except OSError as exc:
        code, message = EXIT_SETUP, f"container setup: {exc}"
    except BaseException as exc:  # noqa: BLE001 - the child must never fall back into the CLI
        code, message = EXIT_SETUP, f"container setup: {type(exc).__name__}: {exc}"
    try:
        os.write(pipe, json.dumps({"code": code, "message": message}).encode())
    finally:
        os._exit(code)


def _become(process: ProcessSpec) -> list[str]:
    identity = users.resolve(process.user)
    env = list(process.env)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={identity.home}")
    try:
        os.chdir(process.cwd)
    except FileNotFoundError:
        os.makedirs(process.cwd, 0o755)
        os.chdir(process.cwd)
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    # the kernel clears the parent-death signal when the uid changes: set it again,
    # or a killed minirun would leave a non-root container running unwatched
    linux.set_pdeathsig(signal.SIGKILL)
    return env


def _exec(argv: tuple[str, ...], env: list[str]) -> tuple[int, str]:
    env_map = dict(item.partition("=")[::2] for item in env)
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], list(argv), env_map)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            where = "" if "/" in argv[0] else " in $PATH"
            return EXIT_NOT_FOUND, f"exec {argv[0]}: executable file not found{where}"
        return EXIT_CANNOT_EXEC, f"exec {argv[0]}: {exc.strerror}"
    return EXIT_SETUP, "exec returned"
