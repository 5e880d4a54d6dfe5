"""ROOT/.cache/seccomp/KEY.bpf: the BPF programs of linux.seccomp profiles, compiled
once per --root dir. Podman sends the same default profile with every container,
and compiling it through libseccomp (with the binding's import) cost each create
~40 ms. The entries are the sandbox's (sandbox/seccomp.py: read, write, the
libseccomp identity check): KEY hashes the profile, the capabilities it is
selected for, the architecture, the kernel and minirun's version. Container ids
cannot start with '.', so .cache is never a container's dir.
"""

from __future__ import annotations

import os

from .. import __version__
from ..lib import jsonio

LABEL = "config.json linux.seccomp"


def _sha256(data: bytes) -> str:
    try:
        from _sha256 import sha256      # the hash alone, without hashlib's OpenSSL
    except ImportError:
        from hashlib import sha256
    return sha256(data).hexdigest()


class _Store:
    """What sandbox/seccomp.py's read and write use of a store: its root."""

    def __init__(self, root: str):
        self.root = root


def compiled(root: str | None, profile: dict, held: frozenset) -> tuple[bytes, int]:
    """(BPF program, SECCOMP_FILTER_FLAG_* bits) for profile; root None: no cache."""
    from ..sandbox import seccomp        # seccomp_build (libseccomp, json, re): on a miss only
    data = jsonio.dumps(profile, sort_keys=True).encode()
    arch, kernel = seccomp.host_arch(), seccomp.kernel_version()
    if root is None:
        from ..sandbox import seccomp_build
        program, flags, _ = seccomp_build.build(data, LABEL, held, arch, kernel)
        return program, flags
    key = _sha256(data + repr((sorted(held), arch, kernel, __version__)).encode())[:40]
    os.makedirs(root, 0o700, exist_ok=True)          # as state.reserve makes it
    store = _Store(os.path.join(root, ".cache"))
    hit = seccomp.read(store, key)
    if hit is not None and seccomp._same_library(hit[1]):
        return hit[0].program, hit[0].flags
    found = seccomp._compile(store, key, LABEL, data, held)
    return found.program, found.flags
