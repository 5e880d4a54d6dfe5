"""The container's stdout and stderr: two pipes, copied into its log and, for a
run in the foreground, onto ours as they come; and with -i (no -t) its stdin:
a pipe our stdin is copied into.

The container holds only the pipes' ends, never the log file nor our stdin,
stdout and stderr: through /proc/self/fd its root could reopen, rewrite or
chmod whatever they name (a file our output goes to, our terminal, our
/dev/null). Without -i its stdin is its own /dev/null (sandbox/process.py
use_stdio), in a session of its own, so it has no controlling terminal to
type into with TIOCSTI. With --log-driver none the pipes stay: they are
copied onto ours and kept nowhere. Each stream keeps its pipe, so `minirun
logs` gives each back on its own stream.

When our stdout is a pipe whose reader has gone (`minirun run ... | head -1`),
the container's stdout pipe is closed too: its next write gets SIGPIPE, as it
would had it written to our pipe itself.
"""

from __future__ import annotations

import _thread         # not threading: its import costs a run ~1 ms
import errno
import os
import time

from .. import linux
from ..store import logfile

CHUNK = 65536
PIPE_SIZE = 1 << 20             # stdout's pipe with --log-driver none (splice moves up to this)


class Output:
    """Made before the container starts. With pipes, stdio() gives the fds its
    command gets as 1 and 2, started() begins the copying (a thread a pipe),
    finish() ends it after the container's end. Without (a container with a
    terminal: its output comes through the pty, sandbox/tty.py), only the log."""

    def __init__(self, directory: str, policy: logfile.Policy, tee: bool, pipes: bool = True,
                 stdin: bool = False):
        """stdin: copy ours into the container's (-i without -t; with pipes only)."""
        self.writer = logfile.Writer(directory, policy) if policy.keeps else None
        self.tee = tee
        self.readers: dict[int, str] = {}
        self.ends: tuple[int, ...] = ()
        self.feed = -1                  # the write end of the container's stdin
        if pipes:
            in_r = -1
            if stdin:
                in_r, self.feed = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if self.writer is None and tee:     # copied by splice: bigger moves, fewer wake-ups
                linux.set_pipe_size(out_w, PIPE_SIZE)
            self.readers = {out_r: "stdout", err_r: "stderr"}
            self.ends = (in_r, out_w, err_w)
        self._lock = _thread.allocate_lock()       # one writer of the log at a time
        self._done: list = []

    def stdio(self) -> tuple[int, int, int] | None:
        """The container's stdin (-1: its own /dev/null), stdout and stderr."""
        return self.ends or None

    def log(self, stream: str, data: bytes) -> None:
        with self._lock:
            if self.writer is not None:
                self.writer.write(stream, data)

    def started(self) -> None:
        """The child has its copies of the write ends: drop ours (else no EOF), and copy."""
        ends, self.ends = self.ends, ()
        for fd in ends:
            if fd >= 0:
                os.close(fd)
        for fd, stream in self.readers.items():
            done = _thread.allocate_lock()
            done.acquire()
            _thread.start_new_thread(self._copy, (fd, stream, done))
            self._done.append(done)
        if self.feed >= 0:
            feed, self.feed = self.feed, -1
            _thread.start_new_thread(_feed, (feed,))

    def _copy(self, fd: int, stream: str, done) -> None:
        """Until EOF: every holder of the pipe's write end is gone."""
        target = 1 if stream == "stdout" else 2
        show = self.tee
        try:
            if show and self.writer is None and _splice_to_eof(fd, target):
                return                          # no log to write: the kernel moved it all
            while True:
                try:
                    data = os.read(fd, CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                self.log(stream, data)
                if show:
                    try:
                        _write_all(target, data)
                    except BrokenPipeError:     # our reader left: the container's next write gets EPIPE
                        break
                    except OSError:             # our terminal hung up: the log still gets it
                        show = False
        finally:
            os.close(fd)
            done.release()

    def finish(self, grace: float | None = 2.0) -> None:
        """After the container's end: the rest of its output, then the log closed. A
        pipe something still holds open past grace (seconds, for all the pipes) is
        left to its thread. grace None: until every holder has closed it, as
        `docker exec` waits for what its command started in the background (which
        would die of SIGPIPE at its next write were the pipe closed under it)."""
        for fd in (*self.ends, self.feed):
            if fd >= 0:
                os.close(fd)
        self.ends, self.feed = (), -1
        if self._done:
            deadline = None if grace is None else time.monotonic() + grace
            for done in self._done:
                if deadline is None:
                    done.acquire()
                else:
                    done.acquire(timeout=max(0.0, deadline - time.monotonic()))
        else:
            for fd in self.readers:
                os.close(fd)
        self.readers = {}
        with self._lock:                # a thread left behind writes nothing more
            if self.writer is not None:
                self.writer.close()
            self.writer = None


def _splice_to_eof(fd: int, target: int) -> bool:
    """The pipe onto target by splice(2), with no copy through Python (--log-driver
    none writes as fast as straight to target): True once at EOF, or once target's
    reader has gone (the pipe is then closed under the container, as by the copy
    loop); False when target takes no splice (a terminal, an O_APPEND file): the
    caller copies the rest."""
    while True:
        try:
            if os.splice(fd, target, PIPE_SIZE) == 0:
                return True
        except BlockingIOError:         # a non-blocking target we were given: wait for room
            _wait(target, write=True)
        except BrokenPipeError:
            return True
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return False
            return True                 # our output failed (hung up): as the loop, stop showing


def _feed(fd: int) -> None:
    """Our stdin into the container's, until our EOF (then its EOF) or until it closes
    its end. Left blocked in a read of our stdin when the container ends first, as
    docker's; the process exits without waiting for it."""
    try:
        while True:
            try:
                data = os.read(0, CHUNK)
            except BlockingIOError:     # a non-blocking stdin we were given
                _wait(0, write=False)
                continue
            if not data:
                break
            _write_all(fd, data)
    except OSError:                     # EPIPE: its stdin is closed; or ours failed
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Everything, even to a descriptor left non-blocking by whoever gave it to us
    (a full pipe then waits, as the container's own write would have)."""
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            _wait(fd, write=True)


def _wait(fd: int, write: bool) -> None:
    """Until a descriptor left non-blocking by whoever gave it to us is ready (select
    is imported only then: no run pays for it otherwise)."""
    import select
    select.select([] if write else [fd], [fd] if write else [], [])
