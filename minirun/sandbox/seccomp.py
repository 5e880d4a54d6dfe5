"""The seccomp filter a container runs under (issue 14, item 5), and the store's
seccomp/ directory of compiled filters, which this module owns.

By default, seccomp_default.json: Docker's default profile in Docker's format,
written as our own data. `--security-opt seccomp=PROFILE.json` replaces it,
`seccomp=unconfined` (and --privileged, as in Docker) runs without one. Which
capability-guarded syscalls a profile allows depends on the container's final
capability set, so a filter is compiled per (profile, capabilities, host
architecture, kernel, minirun version).

Compiling takes libseccomp ~25 ms and ctypes (seccomp_build.py), so the BPF
program it exports is kept in the store, and a run only reads it back: a stat
of the default profile, one small file read and a stat of libseccomp before
the fork, one seccomp(2) in the child. A miss compiles in the parent, before
anything of the container exists, so a bad profile is refused in one line
with nothing left behind.

    seccomp/<name>.bpf    "minirun-seccomp/1 insns=N k=v ..." then N struct sock_filter
                          (8 bytes each); written to a temporary file, synced and
                          renamed, and read back only whole: a damaged entry is a miss

    for_run(store, profile, caps, privileged) -> Filter | None     before the fork
    for_exec(store, cid, config) -> Filter | None                   the container's own
    install(filter)                                                 in the child, last
"""

from __future__ import annotations

import os

from .. import __version__, linux
from ..errors import RuntimeFailure
from ..lib.frozen import dataclass

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
UNCONFINED = "unconfined"
DEFAULT_NAMES = (None, "", "builtin", "default")
# uname's machine -> the Go architecture names of Docker's includes/excludes
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64"}
MAGIC = "minirun-seccomp/1"
MAX_INSTRUCTIONS = 4096            # BPF_MAXINSNS: the kernel refuses a longer program
MAX_HEADER = 4096
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class Filter:
    name: str                # the entry in seccomp/: recorded in config.json for exec
    program: bytes           # struct sock_filter[]
    flags: int = 0           # SECCOMP_FILTER_FLAG_*


def install(filt: Filter | None) -> None:  # pragma: no cover - runs in the child
    """Load the filter on this process. From here on, every syscall it and its
    children make goes through it: call it after the last one minirun needs."""
    if filt is not None:
        linux.seccomp_set_filter(filt.program, filt.flags)


def for_run(store, profile: str | None, caps: frozenset, privileged: bool = False) -> Filter | None:
    """The filter for a new container: from the store when compiled before, else
    compiled now. profile: None (the default), "unconfined", or a file's path."""
    if privileged or profile == UNCONFINED:
        return None
    if profile in DEFAULT_NAMES:
        st = _default_profile_stat()
        tag, label, data = f"default-{st.st_size}-{st.st_mtime_ns}", "(the default)", None
    else:
        from . import seccomp_build
        data = seccomp_build.read_profile(profile)
        tag, label = "sha256-" + seccomp_build.sha256(data), profile
    name = entry_name(tag, caps)
    cached = read(store, name)
    if cached is not None and _same_library(cached[1]):
        return cached[0]
    if data is None:
        with open(DEFAULT_PROFILE, "rb") as f:
            data = f.read()
    return _compile(store, name, label, data, caps)


def for_exec(store, cid: str, config) -> Filter | None:
    """The filter the container's own process runs under. A container made before
    minirun had filters gets the default one for its capabilities."""
    name = config.seccomp
    caps = frozenset(config.capabilities)
    if name is None:
        return for_run(store, None, caps, config.privileged)
    if name == UNCONFINED:
        return None
    cached = read(store, name) if isinstance(name, str) else None
    if cached is None and isinstance(name, str) and name.startswith("default-"):
        again = for_run(store, None, caps)
        if again is not None and again.name == name:      # the same default profile: compiled anew
            return again
    if cached is None:
        raise RuntimeFailure(f"the seccomp filter container {cid[:12]} runs under (seccomp/{name}.bpf) "
                             "is missing from the store or damaged", "remove the container and run it again")
    return cached[0]


def entry_name(tag: str, caps: frozenset) -> str:
    """Everything the program depends on but the library that compiled it."""
    from ..linux import caps as caps_mod
    mask = 0
    for name in caps:
        try:
            mask |= 1 << caps_mod._number(name)
        except AttributeError:           # a name python-prctl lacks (a damaged config.json)
            continue
    major, minor = kernel_version()
    version = "".join(c if c.isalnum() or c in "._" else "_" for c in __version__)
    return f"{tag}-{host_arch()}-k{major}.{minor}-c{mask:x}-v{version}"


def host_arch() -> str:
    machine = os.uname().machine
    return GO_ARCH.get(machine, machine)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) from uname's release: "6.18.44-fc-v1252" -> (6, 18)."""
    numbers = []
    for part in (release or os.uname().release).split(".")[:2]:
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        numbers.append(int(digits or 0))
    numbers += [0, 0]
    return numbers[0], numbers[1]


def _default_profile_stat() -> os.stat_result:
    try:
        return os.stat(DEFAULT_PROFILE)
    except OSError as exc:
        from ..errors import EnvironmentProblem
        raise EnvironmentProblem(f"minirun's default seccomp profile {DEFAULT_PROFILE}: {exc.strerror}",
                                 "reinstall minirun") from None


def _compile(store, name: str, label: str, data: bytes, caps: frozenset) -> Filter:
    from . import seccomp_build
    program, flags, fields = seccomp_build.build(data, label, caps, host_arch(), kernel_version())
    try:
        check(program)
    except ValueError:
        from .seccomp_profile import ProfileError
        raise ProfileError(f"seccomp profile {label}: compiles to {len(program) // 8} BPF instructions, "
                           f"more than the kernel's {MAX_INSTRUCTIONS}",
                           "allow whole groups of syscalls, with fewer argument filters") from None
    fields["lib"] = library_identity(fields.get("lib", ""))
    write(store, name, dict(fields, flags=str(flags)), program)
    return Filter(name, program, flags)


# ---------------------------------------------------------------- libseccomp's identity

def library_identity(path: str) -> str:
    """dev:ino:size:mtime:path of the file behind path (libseccomp.so.2)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    if not path or any(c.isspace() for c in path):
        return ""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{path}"


def _same_library(identity: str) -> bool:
    """An entry compiled by a libseccomp that has since been replaced is compiled
    again (a newer one may know syscalls the old one skipped). One stat; a library
    gone (or unknown) keeps the entry, which needs no library to load."""
    if identity.count(":") < 4:
        return True
    current = library_identity(identity.split(":", 4)[4])
    return not current or current == identity


# ---------------------------------------------------------------- seccomp/ in the store

def path(store, name: str) -> str:
    """Names come from entry_name() and from containers' config.json: plain file names only."""
    if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
        raise ValueError(f"not a seccomp filter name: {name!r}")
    return os.path.join(store.root, "seccomp", name + ".bpf")


def read(store, name: str) -> tuple[Filter, str] | None:
    """(the entry, the identity of the libseccomp that compiled it), or None when
    it is missing or damaged."""
    try:
        fd = os.open(path(store, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        data = os.read(fd, MAX_HEADER + MAX_INSTRUCTIONS * 8 + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    parsed = parse(data)
    if parsed is None:
        return None
    fields, program = parsed
    flags = fields.get("flags", "0")
    if not (flags.isascii() and flags.isdigit()):
        return None
    return Filter(name, program, int(flags)), fields.get("lib", "")


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
    return (fields, program) if fields.get("insns") == str(len(program) // 8) else None


def write(store, name: str, fields: dict, program: bytes) -> None:
    """Put an entry in place atomically (fields: short words, no spaces)."""
    check(program)
    target = path(store, name)
    directory = os.path.dirname(target)
    header = " ".join([MAGIC, f"insns={len(program) // 8}"] + [f"{k}={v}" for k, v in fields.items()])
    if len(header) >= MAX_HEADER or any(c.isspace() for k, v in fields.items() for c in f"{k}{v}"):
        raise ValueError(f"bad seccomp filter header {header[:80]!r}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, header.encode() + b"\n" + program)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check(program: bytes) -> None:
    """A program the kernel can take: whole instructions, 1 to 4096 of them."""
    count, rest = divmod(len(program), 8)
    if rest or not 0 < count <= MAX_INSTRUCTIONS:
        raise ValueError(f"a seccomp program of {len(program)} bytes: the kernel takes whole 8-byte "
                         f"instructions, 1 to {MAX_INSTRUCTIONS} of them")
