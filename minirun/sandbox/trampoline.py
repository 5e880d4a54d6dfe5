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

The program, for x86-64 (argv and envp as the kernel lays them on the stack):

    if the first 8 bytes of argv[0] != "minirun-": write(2, REFUSED); exit(126)
    fcntl(3, F_SETFD, FD_CLOEXEC)
    execve(argv[1], &argv[2], envp)
    write(3, &errno, 1); exit(127)            # execve failed

fd 3 is the setup pipe to minirun: the command never inherits it, and a failed
execve reports its errno there as one byte (see decode()). The argv[0] check
makes `#!/proc/self/exe`, which reaches the program with another argv[0], end
at once rather than exec itself in a loop.

Other machines have no program here: their commands are exec'd directly, as
before (execvpe below). find() is the PATH search the program's caller does
first, since the program itself only execs one path.
"""

from __future__ import annotations

import errno
import os

from .. import linux
from .program import DEFAULT_PATH

ARGV0 = "minirun-exec"              # must start with the 8 bytes the program checks
REPORT_FD = 3
_MAGIC = int.from_bytes(b"minirun-", "little")
_BASE = 0x400000                    # where the one PT_LOAD segment is mapped
_HEADERS = 64 + 56                  # ELF header + one program header
REFUSED = (b"minirun: the command led back to minirun's exec trampoline (/proc/self/exe?): "
           b"not running it\n")


def _code() -> bytes:
    """The machine code, instruction by instruction (checked against GNU as)."""
    tail = b"".join((                                # after the lea: rip-relative distance to REFUSED
        b"\xba" + _le(len(REFUSED), 4),                # mov edx, len(REFUSED)
        b"\xb8\x01\x00\x00\x00",                     # mov eax, 1            write
        b"\x0f\x05",                                 # syscall
        b"\xbf\x7e\x00\x00\x00",                     # mov edi, 126
        b"\xb8\x3c\x00\x00\x00",                     # mov eax, 60           exit
        b"\x0f\x05",                                 # syscall
    ))
    refuse = b"".join((
        b"\xbf\x02\x00\x00\x00",                     # mov edi, 2
        b"\x48\x8d\x35" + _le(len(tail), 4),           # lea rsi, [rip+len(tail)]  REFUSED, just after
        tail,
    ))
    body = b"".join((
        b"\xbf\x03\x00\x00\x00",                     # mov edi, 3
        b"\xbe\x02\x00\x00\x00",                     # mov esi, 2            F_SETFD
        b"\xba\x01\x00\x00\x00",                     # mov edx, 1            FD_CLOEXEC
        b"\xb8\x48\x00\x00\x00",                     # mov eax, 72           fcntl
        b"\x0f\x05",                                 # syscall
        b"\x48\x8b\x0c\x24",                         # mov rcx, [rsp]        argc
        b"\x48\x8b\x7c\x24\x10",                     # mov rdi, [rsp+16]     argv[1]
        b"\x48\x8d\x74\x24\x18",                     # lea rsi, [rsp+24]     &argv[2]
        b"\x48\x8d\x54\xcc\x10",                     # lea rdx, [rsp+rcx*8+16]  envp
        b"\xb8\x3b\x00\x00\x00",                     # mov eax, 59           execve
        b"\x0f\x05",                                 # syscall
        b"\xf7\xd8",                                 # neg eax               errno
        b"\x50",                                     # push rax
        b"\xbf\x03\x00\x00\x00",                     # mov edi, 3
        b"\x48\x89\xe6",                             # mov rsi, rsp
        b"\xba\x01\x00\x00\x00",                     # mov edx, 1
        b"\xb8\x01\x00\x00\x00",                     # mov eax, 1            write
        b"\x0f\x05",                                 # syscall
        b"\xbf\x7f\x00\x00\x00",                     # mov edi, 127
        b"\xb8\x3c\x00\x00\x00",                     # mov eax, 60           exit
        b"\x0f\x05",                                 # syscall
    ))
    check = b"".join((
        b"\x48\x8b\x44\x24\x08",                     # mov rax, [rsp+8]      argv[0]
        b"\x48\x8b\x00",                             # mov rax, [rax]        its first 8 bytes
        b"\x48\xbb" + _MAGIC.to_bytes(8, "little"),  # movabs rbx, "minirun-"
        b"\x48\x39\xd8",                             # cmp rax, rbx
        b"\x75" + bytes([len(body)]),                # jne refuse
    ))
    return check + body + refuse + REFUSED


def _le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def program() -> bytes:
    """A static ELF64 executable: the headers, then the code, mapped read+exec."""
    code = _code()
    size = _HEADERS + len(code)
    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)          # 64-bit, little-endian, SysV
    header = b"".join((ident, _le(2, 2), _le(0x3E, 2), _le(1, 4),  # ET_EXEC, x86-64, version 1
                       _le(_BASE + _HEADERS, 8), _le(64, 8), _le(0, 8),   # entry, phoff, shoff
                       _le(0, 4), _le(64, 2), _le(56, 2), _le(1, 2),       # flags, ehsize, phentsize, phnum
                       _le(0, 2), _le(0, 2), _le(0, 2)))                   # no section headers
    segment = b"".join((_le(1, 4), _le(5, 4), _le(0, 8),                    # PT_LOAD, R+X, from offset 0
                        _le(_BASE, 8), _le(_BASE, 8), _le(size, 8), _le(size, 8), _le(0x1000, 8)))
    return header + segment + code


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


def run(fd: int, path: str, argv: list[str], env: dict[str, str], report: int) -> None:
    """Exec the program (fd) to exec path with argv: report becomes fd 3, which the
    program closes on its exec of path. Returns only by raising OSError."""
    if fd == REPORT_FD:
        fd = os.dup(fd)                                         # close-on-exec, like the original
    if report != REPORT_FD:
        os.dup2(report, REPORT_FD)
    os.set_inheritable(REPORT_FD, True)
    os.execve(fd, [ARGV0, path, *argv], env)                    # fexecve(3)


def decode(report: bytes) -> int:
    """The errno the program wrote, or 0 when report is not one of its reports."""
    return report[0] if len(report) == 1 else 0


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
        return name
    denied: str | None = None
    for directory in (env.get("PATH") or DEFAULT_PATH).split(":"):
        path = os.path.join(directory or ".", name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & 0o170000 == 0o100000 and os.access(path, os.X_OK):
            return path
        denied = denied or path
    if denied:
        raise OSError(errno.EACCES, "permission denied", denied)
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
