"""seccomp/: compiled seccomp filters, so that a run loads a BPF program from
one small file instead of compiling a profile with libseccomp (~30 ms, and
ctypes on the run path). sandbox/seccomp.py names the entries; this module
owns the directory and the file format:

    seccomp/<name>.bpf      one text line "minirun-seccomp/1 insns=N k=v ...",
                            then the program: N struct sock_filter, 8 bytes each

An entry is written to a temporary file in the directory, synced, and renamed
into place, so a reader sees a whole entry or none. One that fails its checks
(a torn or edited file) reads as missing, and is compiled and written again.
"""

from __future__ import annotations

import os

MAGIC = "minirun-seccomp/1"
MAX_INSTRUCTIONS = 4096            # BPF_MAXINSNS: the kernel refuses a longer program
MAX_HEADER = 4096
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class FilterCache:
    def __init__(self, directory: str):
        self.directory = directory

    def path(self, name: str) -> str:
        """Names come from sandbox/seccomp.py and from containers' config.json:
        plain file names only."""
        if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
            raise ValueError(f"not a seccomp filter name: {name!r}")
        return os.path.join(self.directory, name + ".bpf")

    def read(self, name: str) -> tuple[dict, bytes] | None:
        """(the header's fields, the program), or None when the entry is missing or damaged."""
        try:
            fd = os.open(self.path(name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (OSError, ValueError):
            return None
        try:
            data = os.read(fd, MAX_HEADER + MAX_INSTRUCTIONS * 8 + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        return parse(data)

    def write(self, name: str, fields: dict, program: bytes) -> None:
        """Put an entry in place atomically (fields: short words, no spaces)."""
        check(program)
        path = self.path(name)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        header = " ".join([MAGIC, f"insns={len(program) // 8}"] + [f"{k}={v}" for k, v in fields.items()])
        if "\n" in header or len(header) >= MAX_HEADER or any(" " in f"{k}{v}" for k, v in fields.items()):
            raise ValueError(f"bad seccomp filter header {header[:80]!r}")
        tmp = os.path.join(self.directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.write(fd, header.encode() + b"\n" + program)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def names(self) -> list[str]:
        try:
            return sorted(n[:-4] for n in os.listdir(self.directory) if n.endswith(".bpf"))
        except FileNotFoundError:
            return []


def check(program: bytes) -> None:
    """A program the kernel can take: whole instructions, 1 to 4096 of them."""
    count, rest = divmod(len(program), 8)
    if rest or not 0 < count <= MAX_INSTRUCTIONS:
        raise ValueError(f"a seccomp program of {len(program)} bytes: the kernel takes whole 8-byte "
                         f"instructions, 1 to {MAX_INSTRUCTIONS} of them")


def parse(data: bytes) -> tuple[dict, bytes] | None:
    header, newline, program = data.partition(b"\n")
    if not newline or len(header) >= MAX_HEADER:
        return None
    words = header.decode("ascii", "replace").split(" ")
    if words[0] != MAGIC:
        return None
    fields = dict(word.partition("=")[::2] for word in words[1:])
    try:
        check(program)
    except ValueError:
        return None
    if fields.get("insns") != str(len(program) // 8):
        return None
    return fields, program
