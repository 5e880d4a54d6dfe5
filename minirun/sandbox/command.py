"""The command's last steps, in the container's process: become its user, then
exec it through the exec trampoline, or stay beside it as its supervisor
(run --init's PID 1, exec's waiter) where the trampoline cannot.

Exit codes follow `docker run`: the command's own, 128+N when killed by
signal N, 126 when it cannot be executed, 127 when it is not found, 125 for
minirun's own failures.
"""

from __future__ import annotations

import errno
import os
import _signal as signal    # the C module: `signal` wraps it in enums, and enum costs a run ~3 ms
import sys

from ..lib import jsonio
from ..linux import caps
from . import rootfs, trampoline, users
from .program import ProcessSpec

EXIT_SETUP = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)   # SIGWINCH: the tty relay resizes instead

def default_signals() -> None:
    """Python starts with SIGPIPE and SIGXFSZ ignored, and an ignored signal stays
    ignored across exec: `yes | head` in a container would then never end. The
    container's process starts with every signal at its default, as under docker."""
    for signum in (*FORWARDED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)


def forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def become(process: ProcessSpec, create_cwd: bool = True) -> tuple[list[str], int]:  # pragma: no cover
    """Into the working dir, then the user (groups, gid, uid): (the env with HOME, uid)."""
    identity = users.resolve(process.user)
    env = list(process.env)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={identity.home}")
    rootfs.enter_cwd(process.cwd, create_cwd)
    caps.keep_across_setuid()
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    # the kernel clears the parent-death signal when the uid changes: set it again,
    # or a killed minirun would leave a non-root container running unwatched
    caps.set_pdeathsig(signal.SIGKILL)
    return env, identity.uid


def exec_command(argv: tuple[str, ...], env: list[str], pipe: int = -1, exe: int = -1,
                 mode: str = trampoline.ARGV0) -> tuple[int, str]:  # pragma: no cover
    """Exec the command, through the trampoline (exe, from trampoline.prepare) when
    there is one: then this interpreter, a file of the host's, is never what the
    command's path leads to; in trampoline.INIT or WAIT mode the trampoline stays to
    supervise it. Returns (code, message) only when that failed."""
    env_map = dict(item.partition("=")[::2] for item in env)
    if pipe >= 0:
        close_fds((pipe, exe))
    sys.stdout.flush()
    try:
        if exe >= 0 and pipe >= 0:
            trampoline.run(exe, trampoline.find(argv[0], env_map), list(argv), env_map, pipe, mode)
        else:
            trampoline.execvpe(argv[0], list(argv), env_map)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            where = "" if "/" in argv[0] else " in $PATH"
            return EXIT_NOT_FOUND, f"exec {argv[0]}: executable file not found{where}"
        return EXIT_CANNOT_EXEC, f"exec {argv[0]}: {exc.strerror}"
    return EXIT_SETUP, "exec returned"


def supervise(argv: tuple[str, ...], env: list[str], pipe: int, exe: int = -1,
              own_session: bool = False) -> tuple[int, str]:  # pragma: no cover
    """What the trampoline's INIT and WAIT modes do, for machines without it: run the
    command as a child, forward signals to it, reap every orphan, exit as it did.
    An exec failure in the command's process is reported on the same pipe."""
    pid = os.fork()
    if pid == 0:
        if own_session:
            os.setsid()
            if os.isatty(0):
                import fcntl
                import termios
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        else:
            os.setpgid(0, 0)
            if os.isatty(0):
                # the command's group must own the terminal, or it stops on its first read
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                os.tcsetpgrp(0, os.getpid())
                signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        code, message = exec_command(argv, env, pipe, exe)
        os.write(pipe, jsonio.dumps({"code": code, "message": message}).encode())
        os._exit(code)
    os.close(pipe)
    caps.drop_all()          # it never execs, so the kernel would never recompute its sets
    caps.set_dumpable(False)
    caps.set_name("minirun-init")
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda s, _f: forward(pid, s))
    while True:
        try:
            reaped, status = os.wait()
        except ChildProcessError:
            os._exit(EXIT_SETUP)
        if reaped == pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            os._exit(code)


def close_fds(keep: tuple[int, ...]) -> None:  # pragma: no cover
    """Close every descriptor but stdio and keep (close_range(2): only the open ones
    cost anything). Nothing else of ours crosses into the container: an inherited
    descriptor would be a way out of it."""
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 0x7FFFFFFF)
