"""flock-based locks in locks/. A lock is held by an open file; the kernel drops
it when the holder exits, so a killed minirun never leaves a stale lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Iterator

from ..errors import NO_SPACE_ERRNOS, Conflict

DEFAULT_TIMEOUT = 300.0


class Locks:
    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name.replace("/", "_").replace(":", "_") + ".lock")

    @contextlib.contextmanager
    def hold(self, name: str, shared: bool = False, timeout: float = DEFAULT_TIMEOUT,
             on_wait=None) -> Iterator[None]:
        """Hold lock `name`; call on_wait(name) once if another process holds it."""
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait(name)
                self._wait(fd, mode, name, timeout)
            if not shared:
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                except OSError as exc:
                    # the holder's pid is for messages only; a full disk must not stop
                    # the clean-up that a failed command runs under this very lock
                    if exc.errno not in NO_SPACE_ERRNOS:
                        raise
            yield
        finally:
            os.close(fd)

    def _wait(self, fd: int, mode: int, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise Conflict(f"timed out after {timeout:.0f}s waiting for lock {name} "
                                   f"held by pid {holder}",
                                   "wait for that minirun process to finish, or stop it") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
