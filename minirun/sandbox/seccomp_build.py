"""Turning a seccomp profile into a BPF program: what a run needs only when its
filter is not in the store yet (sandbox/seccomp.py), and to read a profile
file given with --security-opt. Kept apart so that a run with a cached filter
loads none of it: this module brings json, the profile parser and, through
libseccomp.py, ctypes.

    read_profile(path) -> bytes              bounded, a regular file only
    build(data, label, caps, arch, kernel) -> (program, flags, header fields)
"""

from __future__ import annotations

import os
import stat

from . import libseccomp, seccomp_profile
from .seccomp_profile import MAX_PROFILE_BYTES, ProfileError


def read_profile(path: str) -> bytes:
    """A profile file's bytes: a regular file, at most MAX_PROFILE_BYTES, opened
    without blocking (a FIFO would otherwise hang the run)."""
    hint = "give the path of a JSON profile in Docker's format, or seccomp=unconfined"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ProfileError(f"seccomp profile {path}: {exc.strerror}", hint) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProfileError(f"seccomp profile {path}: not a regular file", hint)
        data = more = os.read(fd, MAX_PROFILE_BYTES + 1)
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


def sha256(data: bytes) -> str:
    try:
        from _sha256 import sha256 as digest     # 3.11: the hash alone, without hashlib's OpenSSL (~3.5 ms)
    except ImportError:
        from hashlib import sha256 as digest
    return digest(data).hexdigest()


def build(data: bytes, label: str, caps: frozenset, arch: str, kernel: tuple[int, int]):
    """(the BPF program, the SECCOMP_FILTER_FLAG_* bits, what the cache entry records
    of libseccomp) for a container holding caps, from a profile's bytes."""
    profile = seccomp_profile.parse(data, label)
    selected = seccomp_profile.select(profile, caps, arch, kernel)
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        libseccomp.compile_filter(selected, fd)
        program = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
    return program, profile.flags, {"libseccomp": libseccomp.version(), "lib": libseccomp.loaded_from()}
