"""`minirun exec`: run one more process inside a running container.

We open the container's namespaces and its root through /proc/PID, join its
PID namespace (which only our children enter), fork, and in the child join
the others, switch to its root, become its user, take its capabilities and
exec. The parent waits and returns the exit code, like `docker exec`.
"""

from __future__ import annotations

import os
import signal
from ..record import dataclass

from .. import linux
from . import process, seccomp
from .spec import ProcessSpec

# joined in this order; mnt last, because it changes what paths mean
NAMESPACES = (("ipc", linux.CLONE_NEWIPC), ("uts", linux.CLONE_NEWUTS),
              ("net", linux.CLONE_NEWNET), ("mnt", linux.CLONE_NEWNS))


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
    seccomp: object = None         # sandbox/seccomp.py Filter, None: unconfined


def run(join: Join, interactive: bool = False) -> process.Outcome:
    fds = {name: os.open(f"/proc/{join.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
           for name, _ in NAMESPACES}
    pid_ns = os.open(f"/proc/{join.pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    root = os.open(f"/proc/{join.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = process._socketpair() if join.tty else (None, None)
    linux.setns(pid_ns, linux.CLONE_NEWPID)
    child = os.fork()
    if child == 0:  # pragma: no cover - measured by integration tests
        os.close(err_r)
        _child(join, fds, root, err_w, theirs)
    linux.setns(own_pid_ns, linux.CLONE_NEWPID)
    for fd in (*fds.values(), pid_ns, root, own_pid_ns, err_w):
        os.close(fd)
    if join.cgroup is not None:
        join.cgroup.add(child)
    relay = None
    if ours is not None:
        from . import tty
        theirs.close()
        master = tty.receive_master(ours)
        ours.close()
        if master is not None:
            relay = tty.Relay(master, interactive)
            relay.start()
    started = process.Started(child, err_r)
    outcome = process.wait(started)
    if relay is not None:
        relay.finish()
    return outcome


def _child(join: Join, fds: dict, root: int, pipe: int, tty_sock=None) -> None:  # pragma: no cover
    from .. import jsonio
    from ..errors import MinirunError
    from . import caps, tty, users  # noqa: F401 - imported before the chroot hides them
    code, message = process.EXIT_SETUP, "unknown failure"
    try:
        linux.set_pdeathsig(signal.SIGKILL)
        process.default_signals()
        linux.join_session_keyring()            # issue 14.5: never the caller's keyring
        caps.preload()
        process.detach_from_our_terminal(join.tty, join.interactive)
        for name, flag in NAMESPACES:
            linux.setns(fds[name], flag)
        os.fchdir(root)
        os.chroot(".")
        if tty_sock is not None:
            process._terminal("", tty_sock)
        caps.limit_bounding(join.caps)
        if not join.no_new_privs:               # issue 14.5: needs CAP_SYS_ADMIN then: before the user switch
            seccomp.install(join.seccomp)
        env, uid = process._become(join.process)
        caps.apply(join.caps, join.ambient if uid != 0 else frozenset(), join.no_new_privs)
        if join.no_new_privs:                   # issue 14.5: as late as possible
            seccomp.install(join.seccomp)
        code, message = process._exec(join.process.argv, env, pipe)
    except MinirunError as exc:
        code, message = process.EXIT_SETUP, exc.line()
    except BaseException as exc:  # noqa: BLE001
        code, message = process.EXIT_SETUP, f"exec setup: {exc}"
    try:
        os.write(pipe, jsonio.dumps({"code": code, "message": message}).encode())
    finally:
        os._exit(code)
