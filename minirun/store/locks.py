"""flock-based locks in locks/. A lock is held by an open file; the kernel drops
it when the holder exits, so a killed minirun never leaves a stale lock."""

from __future__ import annotations

import errno
import os
import stat
import time

from ..errors import NO_SPACE_ERRNOS, Conflict, DamagedRecord
from ..linux import LOCK_EX, LOCK_NB, LOCK_SH, flock

DEFAULT_TIMEOUT = 300.0
# no symlink followed, no FIFO waited on, never the caller's terminal
_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open(path: str, flags: int) -> int:
    """The lock file, never through a symlink: that is a damaged store (DamagedRecord)."""
    try:
        return os.open(path, _OPEN | flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _damaged(path) from None
        raise


def _damaged(path: str, what: str = "a symlink") -> DamagedRecord:
    return DamagedRecord(path, f"it is {what}, not a regular file",
                         "remove it (minirun makes it again) or run `minirun fsck --repair`")


class Locks:
    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name.replace("/", "_").replace(":", "_") + ".lock")

    def hold(self, name: str, shared: bool = False, timeout: float | None = None,
             on_wait=None) -> Held:
        """`with locks.hold(name):` holds lock `name`; on_wait(name) is called once if
        another process holds it. Gives up after `timeout` seconds (default:
        $MINIRUN_LOCK_TIMEOUT, else 300)."""
        return Held(self._path(name), name, shared, timeout, on_wait)


class Held:
    """A lock while a with-block runs. A class rather than a contextlib generator:
    contextlib imports functools and collections, ~3 ms of every `minirun run`."""

    def __init__(self, path: str, name: str, shared: bool, timeout: float | None, on_wait):
        self.path, self.name, self.shared, self.on_wait = path, name, shared, on_wait
        self.timeout = _timeout_from_env() if timeout is None else timeout
        self.fd = -1

    def __enter__(self) -> None:
        # O_NOFOLLOW and a regular file only: a lock file replaced by a symlink (a
        # damaged store) would have us create or overwrite its target, outside the
        # store, with the pid we write; a FIFO or a device would be opened
        try:
            fd = _open(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            if exc.errno != errno.EROFS or not self.shared:
                raise
            # a read-only store: readers still exclude collection by another mount of it
            try:
                fd = _open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return                        # never taken, and no one here can write
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _damaged(self.path, "something else")
        try:
            mode = LOCK_SH if self.shared else LOCK_EX
            try:
                flock(fd, mode | LOCK_NB)
            except BlockingIOError:
                if self.on_wait:
                    self.on_wait(self.name)
                _wait(fd, mode, self.name, self.timeout)
            if not self.shared:
                try:
                    # fixed width, so it covers any earlier pid without an ftruncate
                    os.pwrite(fd, f"{os.getpid():<10}\n".encode(), 0)
                except OSError as exc:
                    # the holder's pid is for messages only; a full disk must not stop
                    # the clean-up that a failed command runs under this very lock
                    if exc.errno not in NO_SPACE_ERRNOS:
                        raise
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def __exit__(self, *exc_info) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def _wait(fd: int, mode: int, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            flock(fd, mode | LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Conflict(f"timed out after {timeout:g}s waiting for lock {name}, held by "
                               f"{holders(fd)}",
                               "wait for that process to finish, or stop it; "
                               "MINIRUN_LOCK_TIMEOUT sets the wait in seconds") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _timeout_from_env() -> float:
    """$MINIRUN_LOCK_TIMEOUT seconds; the default for anything that is not a finite
    number of at least 0 (nan or 1e400 would wait for ever)."""
    value = os.environ.get("MINIRUN_LOCK_TIMEOUT", "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return seconds if 0 <= seconds < 1e9 else DEFAULT_TIMEOUT


def holders(fd: int) -> str:
    """Who holds the flock on fd's file: every pid /proc/locks lists for its inode
    (shared holders too), with its command line; else the pid an exclusive holder wrote."""
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if "->" in fields:
                    continue                      # a waiter, not a holder
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    pids.append(fields[4])
    except OSError:
        pass
    if not pids:
        written = os.pread(fd, 32, 0).decode(errors="replace").strip()
        pids = [written] if written else []
    if not pids:
        return "an unknown process"
    return ", ".join(f"pid {pid} ({_cmdline(pid)})" for pid in dict.fromkeys(pids))


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "gone"
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text[:80] or "?"
