"""The seccomp filter a container runs under (issue 14, item 5).

By default, seccomp_default.json: Docker's default profile in Docker's format,
written as our own data. `--security-opt seccomp=PROFILE.json` replaces it,
`seccomp=unconfined` (and --privileged, as in Docker) runs without one. Which
capability-guarded syscalls a profile allows depends on the container's final
capability set, so a filter is compiled per (profile, capabilities, host
architecture, kernel, minirun version).

Compiling takes libseccomp (through ctypes, sandbox/libseccomp.py) ~30 ms, so
the program it exports is kept in the store (store/filters.py) and a run loads
those bytes: a stat of the default profile, one small file read, and later
one seccomp(2) in the child. Only a miss (a new profile, capability set,
minirun or libseccomp) imports ctypes and compiles, in the parent, before
anything of the container exists, so that a bad profile is refused in one
line with nothing left behind.

    for_run(store, profile, caps, privileged) -> Filter | None     before the fork
    for_exec(store, config) -> Filter | None                        the container's own
    install(filter)                                                 in the child, last
"""

from __future__ import annotations

import os

from .. import __version__, linux
from ..errors import RuntimeFailure
from ..record import dataclass

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
UNCONFINED = "unconfined"
DEFAULT_NAMES = (None, "", "builtin", "default")
# uname's machine -> the Go architecture names of Docker's includes/excludes
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64"}


@dataclass(frozen=True)
class Filter:
    name: str                # the cache entry: recorded in config.json for exec
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
        data = read_profile(profile)
        tag, label = "sha256-" + _sha256(data), profile
    name = entry_name(tag, caps)
    cached = _cached(store, name)
    if cached is not None and _same_library(cached[1]):
        return cached[0]
    if data is None:
        with open(DEFAULT_PROFILE, "rb") as f:
            data = f.read()
    return _compile(store, name, label, data, caps)


def for_exec(store, cid: str, config: dict) -> Filter | None:
    """The filter the container's own process runs under. A container made before
    minirun had filters gets the default one for its capabilities."""
    name = config.get("seccomp")
    if name is None:
        return for_run(store, None, frozenset(config.get("capabilities", [])), bool(config.get("privileged")))
    if name == UNCONFINED:
        return None
    cached = _cached(store, name) if isinstance(name, str) else None
    if cached is None and isinstance(name, str) and name.startswith("default-"):
        again = for_run(store, None, frozenset(config.get("capabilities", [])))
        if again is not None and again.name == name:      # the same default profile: compiled anew
            return again
    if cached is None:
        raise RuntimeFailure(f"the seccomp filter container {cid[:12]} runs under (seccomp/{name}.bpf) "
                             "is missing from the store or damaged",
                             "remove the container and run it again")
    return cached[0]


def _cached(store, name: str) -> tuple[Filter, str] | None:
    """(the entry as a Filter, the identity of the libseccomp that compiled it)."""
    entry = store.seccomp.read(name)
    if entry is None:
        return None
    fields, program = entry
    flags = fields.get("flags", "0")
    if not (flags.isascii() and flags.isdigit()):
        return None                      # damaged: compiled again
    return Filter(name, program, int(flags)), fields.get("lib", "")


def _default_profile_stat() -> os.stat_result:
    try:
        return os.stat(DEFAULT_PROFILE)
    except OSError as exc:
        from ..errors import EnvironmentProblem
        raise EnvironmentProblem(f"minirun's default seccomp profile {DEFAULT_PROFILE}: {exc.strerror}",
                                 "reinstall minirun") from None


def entry_name(tag: str, caps: frozenset) -> str:
    """Everything the program depends on but the library that compiled it."""
    from . import caps as caps_mod
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


def read_profile(path: str) -> bytes:
    """A profile file's bytes: a regular file, at most MAX_PROFILE_BYTES, opened
    without blocking (a FIFO would otherwise hang the run)."""
    from .seccomp_profile import MAX_PROFILE_BYTES, ProfileError
    hint = "give the path of a JSON profile in Docker's format, or seccomp=unconfined"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ProfileError(f"seccomp profile {path}: {exc.strerror}", hint) from None
    try:
        if not _is_regular(fd):
            raise ProfileError(f"seccomp profile {path}: not a regular file", hint)
        data = os.read(fd, MAX_PROFILE_BYTES + 1)
        more = data
        while more and len(data) <= MAX_PROFILE_BYTES:
            more = os.read(fd, MAX_PROFILE_BYTES + 1 - len(data))
            data += more
    except OSError as exc:
        raise ProfileError(f"seccomp profile {path}: {exc.strerror}", hint) from None
    finally:
        os.close(fd)
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"seccomp profile {path}: too big (more than {MAX_PROFILE_BYTES} bytes)",
                           "a profile lists syscalls; Docker's default is ~20 KB")
    return data


def _is_regular(fd: int) -> bool:
    import stat
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _sha256(data: bytes) -> str:
    try:
        from _sha256 import sha256     # 3.11's builtin hash, without hashlib's OpenSSL (~3.5 ms)
    except ImportError:
        from hashlib import sha256
    return sha256(data).hexdigest()


def _library_identity(path: str) -> str:
    """dev:ino:size:mtime:path of the libseccomp that compiled an entry."""
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
    path = identity.split(":", 4)[4]
    current = _library_identity(path)
    return not current or current == identity


def _compile(store, name: str, label: str, data: bytes, caps: frozenset) -> Filter:
    from . import libseccomp, seccomp_profile
    from ..store.filters import check
    profile = seccomp_profile.parse(data, label)
    selected = seccomp_profile.select(profile, caps, host_arch(), kernel_version())
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        libseccomp.compile_filter(selected, fd)
        program = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
    try:
        check(program)
    except ValueError:
        raise seccomp_profile.ProfileError(
            f"seccomp profile {label}: compiles to {len(program) // 8} BPF instructions, more than "
            f"the kernel's {libseccomp.MAX_INSTRUCTIONS}", "allow whole groups of syscalls with fewer "
            "argument filters") from None
    fields = {"flags": str(profile.flags), "libseccomp": libseccomp.version(),
              "lib": _library_identity(libseccomp.loaded_from())}
    store.seccomp.write(name, fields, program)
    return Filter(name, program, profile.flags)
