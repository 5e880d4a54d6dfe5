"""-t: a pseudo-terminal for the container, relayed to ours.

The container's side (the pty slave) becomes its controlling terminal; our
side copies the master to stdout, and stdin to the master with -i. Our
terminal goes into raw mode, so Ctrl-C travels as a byte and the container's
line discipline turns it into SIGINT, and comes back as it was afterwards.
SIGWINCH copies our window size onto the container's terminal.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import stat
import sys
import termios
import threading
import tty

from ..errors import RuntimeFailure
from ..layer.safeopen import open_in_root

_WINSIZE = termios.TIOCGWINSZ


TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441                # _IO('T', 0x41), Linux 4.13+
_PTMX = os.makedev(5, 2)            # the multiplexer of a devpts instance


def open_in(root: str) -> tuple[int, int]:
    """(master, slave) from the container's own devpts instance, so the slave's name
    means something inside the container, as with runc. The container may have
    changed its /dev (exec, or a volume over /dev/pts), and this process is root
    with fds of the host's: so the multiplexer is opened as dev/pts/ptmx resolved
    inside root with no symlink followed (never the /dev/ptmx link, which a
    container can point at /proc/self/fd/N), checked to be a ptmx device, and the
    slave is got from the master itself (TIOCGPTPEER), not looked up by name."""
    top = os.open(root or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _open_pair(top)
    finally:
        os.close(top)


def _open_pair(top: int) -> tuple[int, int]:
    import struct
    try:
        master = open_in_root(top, "dev/pts/ptmx", follow=False,
                              flags=os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise RuntimeFailure(f"cannot open the container's terminal: /dev/pts/ptmx: {exc.strerror}",
                             "the container's /dev/pts must be its own devpts (do not mount over it)") from None
    try:
        info = os.fstat(master)
        if not stat.S_ISCHR(info.st_mode) or info.st_rdev != _PTMX:
            raise RuntimeFailure("cannot open the container's terminal: its /dev/pts/ptmx is not a pty "
                                 "multiplexer", "the container's /dev/pts must be its own devpts "
                                 "(do not mount over it)")
        os.set_blocking(master, True)
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        try:
            slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTTY):
                raise
            slave = _slave_by_name(top, master, info.st_dev)       # before Linux 4.13
    except BaseException:
        os.close(master)
        raise
    return master, slave


def _slave_by_name(top: int, master: int, devpts: int) -> int:
    """The slave as dev/pts/N inside top, no symlink followed, on the master's devpts."""
    import struct
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = open_in_root(top, f"dev/pts/{number}", follow=False, flags=os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    if os.fstat(slave).st_dev != devpts:
        os.close(slave)
        raise RuntimeFailure("cannot open the container's terminal: its /dev/pts/N is not on its devpts",
                             "the container's /dev/pts must be its own devpts (do not mount over it)")
    return slave


def become_controlling(slave: int) -> None:
    """In the container: a new session whose controlling terminal is slave, on fds 0-2."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def send_master(sock, master: int) -> None:
    import socket
    socket.send_fds(sock, [b"M"], [master])


def receive_master(sock) -> int | None:
    import socket
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        return None
    copy_window_size(fds[0])
    return fds[0]


def copy_window_size(master: int) -> None:
    """Our terminal's size (fd 0) onto master. run and exec call it in the container's
    process too, before the command runs: sized later, by the receiver only, the change
    would reach a command already running as a SIGWINCH it never asked for."""
    try:
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return          # our stdin is not a terminal (or is closed): keep the kernel's default
    fcntl.ioctl(master, termios.TIOCSWINSZ, size)


class Relay:
    """log(stream, data), when given, also gets everything the container's terminal
    shows (as stdout: a terminal has one stream); show=False copies to it alone
    (a -d container's terminal)."""

    def __init__(self, master: int, interactive: bool, log=None, show: bool = True):
        self.master = master
        self.interactive = interactive
        self.log = log
        self.show = show
        self._saved = None
        self._threads: list[threading.Thread] = []
        self._old_winch = None

    def start(self) -> None:
        stdin = sys.stdin.fileno()
        if self.interactive and os.isatty(stdin):
            self._saved = termios.tcgetattr(stdin)
            # TCSANOW, not setraw's default TCSAFLUSH: what the user typed while
            # the container was starting stays queued and reaches it
            tty.setraw(stdin, termios.TCSANOW)
        self._old_winch = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(self.master))
        out = threading.Thread(target=self._pump_out, daemon=True)
        out.start()
        self._threads.append(out)
        if self.interactive:
            threading.Thread(target=self._pump_in, daemon=True).start()

    def _pump_out(self) -> None:
        stdout = sys.stdout.fileno()
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:         # EIO: every holder of the slave has closed it
                return
            if not data:
                return
            if self.log is not None:
                self.log("stdout", data)
            if not self.show:
                continue
            try:
                os.write(stdout, data)
            except OSError:         # our terminal hung up: keep draining, drop the output
                continue

    def _pump_in(self) -> None:
        stdin = sys.stdin.fileno()
        while True:
            try:
                ready, _, _ = select.select([stdin], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(stdin, 65536)
                if not data:
                    os.write(self.master, b"\x04")     # EOF: ^D in the container's terminal
                    return
                os.write(self.master, data)
            except OSError:
                return

    def finish(self) -> None:
        for thread in self._threads:
            thread.join(timeout=2)
        if self._saved is not None:
            try:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            except termios.error:
                pass                # the terminal is gone; nothing to restore
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
        os.close(self.master)
