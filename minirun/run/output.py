"""The container's stdout and stderr: two pipes, copied into its log and, for a
run in the foreground, onto ours as they come.

The container holds only the pipes' write ends, never the log file nor our
terminal: through /proc/self/fd it could chmod, chown or reopen a host file,
or type into the user's shell with TIOCSTI. Each stream keeps its pipe, so
`minirun logs` gives each back on its own stream.

When our stdout is a pipe whose reader has gone (`minirun run ... | head -1`),
the container's stdout pipe is closed too: its next write gets SIGPIPE, as it
would had it written to our pipe itself.
"""

from __future__ import annotations

import os
import select
import time

from ..store import logfile

CHUNK = 65536


class Output:
    """Made before the container starts. With pipes, stdio() gives the fds its
    command gets as 1 and 2, started() begins the copying (a thread), finish() ends
    it after the container's end. Without (a container with a terminal: its output
    comes through the pty, sandbox/tty.py), only the log's writer."""

    def __init__(self, directory: str, policy: logfile.Policy, tee: bool, pipes: bool = True):
        self.writer = logfile.Writer(directory, policy) if policy.keeps else None
        self.tee = tee
        self.readers: dict[int, str] = {}
        self.ends: tuple[int, ...] = ()
        if pipes:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            self.readers = {out_r: "stdout", err_r: "stderr"}
            self.ends = (out_w, err_w)
        self.targets = {"stdout": 1, "stderr": 2}
        self._thread = None
        self._deadline = None

    def stdio(self) -> tuple[int, int] | None:
        return self.ends or None

    def log(self, stream: str, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(stream, data)

    def started(self) -> None:
        """The child has its copies of the write ends: drop ours (else no EOF), and copy."""
        for fd in self.ends:
            os.close(fd)
        self.ends = ()
        if not self.readers:
            return
        import threading
        self._thread = threading.Thread(target=self.copy, daemon=True)
        self._thread.start()

    def copy(self) -> None:
        """Until both pipes are at EOF (every holder of a write end is gone), or a
        little after finish() if something still holds one."""
        poller = select.poll()
        for fd in self.readers:
            poller.register(fd, select.POLLIN)
        while self.readers:
            if self._deadline is not None and time.monotonic() > self._deadline:
                break
            for fd, _ in poller.poll(100):
                stream = self.readers[fd]
                try:
                    data = os.read(fd, CHUNK)
                except OSError:
                    data = b""
                if not data:
                    self._drop(poller, fd)
                    continue
                if self.writer is not None:
                    self.writer.write(stream, data)
                if self.tee and not self._show(stream, data):
                    self._drop(poller, fd)      # our reader left: the container's next write gets EPIPE
        for fd in list(self.readers):
            self._drop(poller, fd)

    def _show(self, stream: str, data: bytes) -> bool:
        target = self.targets[stream]
        try:
            while data:
                data = data[os.write(target, data):]
        except BrokenPipeError:
            return False
        except OSError:             # our terminal hung up: the log still gets it
            self.tee = False
        return True

    def _drop(self, poller, fd: int) -> None:
        poller.unregister(fd)
        del self.readers[fd]
        os.close(fd)

    def finish(self, grace: float = 2.0) -> None:
        """After the container's end: the rest of its output, then the log closed."""
        for fd in self.ends:
            os.close(fd)
        self.ends = ()
        if self._thread is not None:
            self._deadline = time.monotonic() + grace
            self._thread.join()
        else:
            for fd in list(self.readers):
                os.close(fd)
            self.readers.clear()
        if self.writer is not None:
            self.writer.close()
