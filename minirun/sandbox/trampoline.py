"""The exec trampoline: the container's command is started by a static program
of a few hundred bytes run from a sealed memfd, never by this Python process.

Why (the CVE-2019-5736 class): until its execve, the process that starts the
container's command runs this interpreter, a file of the host's. When that
command resolves to /proc/self/exe (the path itself, a symlink to it, or a
`#!/proc/self/exe` script), the kernel runs the host's interpreter inside the
container, on the image's libraries and the image's PYTHONHOME: the image's
code in a process whose /proc/self/exe is the host's python binary. Opening it
for writing then fails only while some process executes that same file
(ETXTBSY), which is luck, not a boundary. runc closed the hole by starting the
container from a sealed copy of itself (memfd, later runc-dmz). We do the
same with a program small enough to spell out below: the Python side finds the
command in the container's PATH and execs the program from a sealed memfd; the
program execs the command. What /proc/self/exe can then reach is that memfd,
which no one can write (F_SEAL_WRITE) and which dies with the process.

The program, for x86-64, is spelled out in trampoline.s beside this file; its
machine code is _CODE below. argv[0] picks the mode:

    minirun-exec PATH ARGV...   execve(PATH, ARGV, envp); fd 3 closes on that exec,
                                and a failed execve's errno is written there as
                                one byte (see decode()); exit 127
    minirun-init PATH ARGV...   run --init: the program stays as PID 1, forks the
                                command (a process group of its own, the
                                terminal's foreground one), forwards every signal
                                to it, reaps every orphan and exits as it did
    minirun-wait PATH ARGV...   exec's waiter: the same from outside the
                                container's PID namespace; the command gets a
                                session of its own, with fd 0 as its terminal

Every other argv[0] is refused: `#!/proc/self/exe` reaches the program with
another one, and it must end at once rather than exec itself in a loop. The
supervising modes hold no capability and are not dumpable, so no process the
container can see ever runs a file of the host's: PID 1 under --init is the
program too, and /proc/1/exe is the sealed memfd.

Other machines have no program here: their commands are exec'd directly, as
before (execvpe below). find() is the PATH search the program's caller does
first, since the program itself only execs one path.
"""

from __future__ import annotations

import errno
import os

from .. import linux
from ..layer.safeopen import fd_path
from .program import DEFAULT_PATH

ARGV0 = "minirun-exec"              # the modes, as trampoline.s reads argv[0]
INIT = "minirun-init"
WAIT = "minirun-wait"
REPORT_FD = 3
_BASE = 0x400000                    # where the one PT_LOAD segment is mapped
_HEADERS = 64 + 56                  # ELF header + one program header
# `as --64 trampoline.s && objcopy -O binary -j .text`, checked by tests/unit/test_trampoline.py
_CODE = bytes.fromhex(
    "4889e5488b4508488b1848b96d696e6972756e2d4839cb751d0fb6580883fb6574334531e483fb690f848100000041ff"
    "c483fb777479bf02000000488d3586030000ba5d000000b8010000000f05bf7e000000eb4abf03000000be02000000ba"
    "01000000b8480000000f05488b4d00488b7d10488d7518488d54cd10b83b0000000f05f7d850bf030000004889e6ba01"
    "000000b8010000000f05bf7f000000b8e70000000f05b83c0000000f050f0b4881ec000100004889e7b92000000031c0"
    "f348abbb01000000bf0400000031f6b89d0000000f054885c00f856b020000ffc3bf11000000488db424a800000031d2"
    "41ba08000000b80d0000000f054885c00f8544020000ffc331ff488d35a702000031d241ba08000000b80e0000000f05"
    "4885c00f8521020000ffc3bf1100000031f631d24531d24531c0b8380000000f054885c00f88000200000f846e010000"
    "4989c5ffc3c784248800000022050820488dbc2488000000488db42490000000b87e0000000f054885c00f85b5010000"
    "48c7c0ffffffff4889842490000000488984249800000048898424a0000000488dbc2488000000488db42490000000b8"
    "7d0000000f054885c00f8576010000488b842490000000480b842498000000480b8424a0000000740c48c7c0ffffffff"
    "e950010000bf03000000b8030000000f05bf0f000000488b7508b89d0000000f05488d3db00100004889e631d241ba08"
    "000000b8800000000f054883f8fc74e14885c00f8e5c0100004883f8400f875201000083f811740e4c89ef89c6b83e00"
    "00000f05ebbb48c7c7ffffffff488db42480000000ba030000004531d2b83d0000000f054885c074980f88160100004c"
    "39e875d28b84248000000089c183e17f743183f97f7521c1e80825ff00000083e81483f80277af4c89efbe12000000b8"
    "3e0000000f05eb9e8db980000000e9ecfdffffc1e8080fb6f8e9e1fdffff4889ec4585e4752731ff31f6b86d0000000f"
    "05b8270000000f055031ffbe105400004889e2b8100000000f0558eb17b8700000000f0531ffbe0e54000031d2b81000"
    "00000f05bf01000000be09000000b89d0000000f05bf02000000488d359f00000031d241ba08000000b80e0000000f05"
    "e920fdffff4989c64c89efbe09000000b83e0000000f054c89f0f7d8c68424c800000049889c24c9000000888424ca00"
    "0000bf03000000488db424c8000000ba03000000b8010000000f05bf7d000000e91afdffffbf02000000488d35940000"
    "00ba85000000b8010000000f054c89efbe09000000b83e0000000f05bf7d000000e9e9fcffff6690ffffffffffffffff"
    "00000000000000006d696e6972756e3a2074686520636f6d6d616e64206c6564206261636b20746f206d696e6972756e"
    "27732065786563207472616d706f6c696e6520282f70726f632f73656c662f6578653f293a206e6f742072756e6e696e"
    "672069740a6d696e6972756e3a2074686520636f6e7461696e6572277320696e697420636f756c64206e6f7420776169"
    "7420666f722069747320636f6d6d616e642028646f65732074686520736563636f6d702070726f66696c652072656675"
    "73652072745f73696774696d656477616974206f722077616974343f293a206b696c6c696e672069740a")
REFUSED = (b"minirun: the command led back to minirun's exec trampoline (/proc/self/exe?): "
           b"not running it\n")
# the supervising modes' setup steps, as their reports number them
STEPS = {1: "become non-dumpable (prctl)", 2: "reset SIGCHLD (rt_sigaction)",
         3: "block signals (rt_sigprocmask)", 4: "start the command (clone)",
         5: "drop its capabilities (capset)"}


def _le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def program() -> bytes:
    """A static ELF64 executable: the headers, then the code, mapped read+exec."""
    size = _HEADERS + len(_CODE)
    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)          # 64-bit, little-endian, SysV
    header = b"".join((ident, _le(2, 2), _le(0x3E, 2), _le(1, 4),  # ET_EXEC, x86-64, version 1
                       _le(_BASE + _HEADERS, 8), _le(64, 8), _le(0, 8),   # entry, phoff, shoff
                       _le(0, 4), _le(64, 2), _le(56, 2), _le(1, 2),       # flags, ehsize, phentsize, phnum
                       _le(0, 2), _le(0, 2), _le(0, 2)))                   # no section headers
    segment = b"".join((_le(1, 4), _le(5, 4), _le(0, 8),                    # PT_LOAD, R+X, from offset 0
                        _le(_BASE, 8), _le(_BASE, 8), _le(size, 8), _le(size, 8), _le(0x1000, 8)))
    return header + segment + _CODE


def supported() -> bool:
    return os.uname().machine == "x86_64"


def prepare() -> int:
    """The program in a sealed, close-on-exec memfd; -1 where there is no program.
    Made before the seccomp filter is loaded: a profile may forbid memfd_create."""
    if not supported():
        return -1
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create(ARGV0, flags | linux.MFD_EXEC)     # 6.3+: executable, even under memfd_noexec=1
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        fd = os.memfd_create(ARGV0, flags)                      # older kernels know no MFD_EXEC
    try:
        data = program()
        while data:
            data = data[os.write(fd, data):]
        linux.seal_memfd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def run(fd: int, path: str, argv: list[str], env: dict[str, str], report: int, mode: str = ARGV0) -> None:
    """Exec the program (fd) in mode (ARGV0, INIT or WAIT) to exec path with argv:
    report becomes fd 3, which the program closes on its exec of path. Returns
    only by raising OSError."""
    if fd == REPORT_FD:
        fd = os.dup(fd)                                         # close-on-exec, like the original
    if report != REPORT_FD:
        os.dup2(report, REPORT_FD)
    os.set_inheritable(REPORT_FD, True)
    args = [mode, path, *argv]
    try:
        os.execve(fd, args, env)                                # fexecve(3): execveat(fd, "", AT_EMPTY_PATH)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            raise
        refused = exc
    # A seccomp profile that lists execve but not execveat (older Docker-format ones,
    # hand-written allow-lists): the same sealed memfd, reached by its /proc name.
    # exec's waiter has no /proc/self (it is outside the container's PID namespace).
    try:
        os.execve(fd_path(fd), args, env)
    except OSError:
        if refused.errno == errno.EACCES:
            raise refused from None
        raise OSError(refused.errno, f"{refused.strerror} (does the seccomp profile refuse execveat? "
                                     "allow it: minirun starts commands with it)") from None


def decode(report: bytes) -> int:
    """The errno the program wrote, or 0 when report is not one of its reports."""
    return report[0] if len(report) == 1 else 0


def setup_failure(report: bytes) -> str:
    """The message for a supervising mode's failed setup step ("I", step, errno),
    or "" when report is not one. The command's own errno byte may come first."""
    at = report.find(b"I", 0, 2)
    if at < 0 or len(report) != at + 3 or report[at + 1] not in STEPS:
        return ""
    step, number = report[at + 1], report[at + 2]
    hint = "is --pids-limit too low?" if (step, number) == (4, errno.EAGAIN) else \
        "does the seccomp profile allow it?"
    return f"container setup: the init process could not {STEPS[step]}: {os.strerror(number)} ({hint})"


def failure(command: str, number: int) -> tuple[int, str]:
    """(exit code, message) for an execve the program saw fail, as docker's: 127 for a
    file that cannot be found, 126 for one that cannot be run."""
    if number in (errno.ENOENT, errno.ENOTDIR):
        return 127, (f"exec {command}: no such file or directory "
                     "(the file exists: is its ELF or #! interpreter missing from the image?)")
    return 126, f"exec {command}: {os.strerror(number)}"


def find(name: str, env: dict[str, str]) -> str:
    """The file execvp(3) would run for name, found without running it: the first
    executable regular file on the container's PATH. A match that cannot be run
    (not executable, a directory) is EACCES if nothing else matches, as there."""
    if "/" in name:
        if not name.startswith("/proc/") and not os.path.lexists(name):
            # not found, said as such (the trampoline's ENOENT would blame an interpreter);
            # /proc is left to the command's execve: exec's waiter sees another /proc/self
            raise OSError(errno.ENOENT, "not found", name)
        return name
    denied: str | None = None
    unresolved: str | None = None
    for directory in (env.get("PATH") or DEFAULT_PATH).split(":"):
        path = os.path.join(directory or ".", name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            if unresolved is None and os.path.islink(path):
                unresolved = path
            continue
        if mode & 0o170000 == 0o100000 and os.access(path, os.X_OK):
            return path
        denied = denied or path
    if denied:
        raise OSError(errno.EACCES, "permission denied", denied)
    if unresolved:
        # a symlink that resolves differently in the command's process: exec's waiter
        # is outside the container's PID namespace, where /proc/self means nothing.
        # The command's own execve decides (the trampoline refuses itself).
        return unresolved
    raise OSError(errno.ENOENT, "not found", name)


def execvpe(name: str, argv: list[str], env: dict[str, str]) -> None:
    """os.execvpe, without its lazy `import warnings`: this runs inside the container's
    root, where no Python library can be found. Searches the container's PATH like
    execvp(3): ENOENT/ENOTDIR/EACCES on one entry go on to the next; EACCES is
    reported if nothing else matched."""
    if "/" in name:
        os.execve(name, argv, env)
    found_denied: OSError | None = None
    last: OSError | None = None
    for directory in (env.get("PATH") or DEFAULT_PATH).split(":"):
        try:
            os.execve(os.path.join(directory or ".", name), argv, env)
        except OSError as exc:
            if exc.errno == errno.EACCES:
                found_denied = exc
            elif exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
            last = exc
    raise found_denied or last or OSError(errno.ENOENT, "not found", name)
