"""The store's root: where it lives, its layout, staging in tmp/, and the checks
that the filesystem under it can hold overlay upper dirs."""

from __future__ import annotations

import os

from .. import linux
from ..fsutil import remove_tree
from ..errors import EnvironmentProblem
from .locks import Locks


class _once:
    """functools.cached_property, which would import functools and collections
    (~2 ms of every `minirun run`): computed on first use, then an attribute."""

    def __init__(self, make):
        self.make, self.name = make, make.__name__

    def __get__(self, store, owner=None):
        if store is None:
            return self
        value = store.__dict__[self.name] = self.make(store)
        return value


class Store:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    # Each sub-store owns one directory and builds every path inside it.
    @_once
    def blobs(self):
        from .blobs import BlobStore
        return BlobStore(os.path.join(self.root, "blobs", "sha256"), self)

    @_once
    def layers(self):
        from .layers import LayerStore
        return LayerStore(os.path.join(self.root, "layers", "sha256"), self)

    @_once
    def images(self):
        from .images import ImageIndex
        return ImageIndex(os.path.join(self.root, "images.json"), self)

    @_once
    def containers(self):
        from .containers import ContainerStore
        return ContainerStore(os.path.join(self.root, "containers"), self)

    @_once
    def locks(self) -> Locks:
        return Locks(os.path.join(self.root, "locks"))

    @property
    def tmp(self) -> str:
        return os.path.join(self.root, "tmp")

    @property
    def mount_point(self) -> str:
        """mnt/: an empty dir on the host, where each container's child mounts its
        overlay, inside its own mount namespace, before pivot_root. One for all
        containers: none of those mounts is visible outside its namespace, and a
        dir per container would cost each run a mkdir and an rmdir."""
        return os.path.join(self.root, "mnt")

    def ensure(self) -> "Store":
        """Create the layout (cheap when it exists) and refuse a filesystem overlay cannot use."""
        if not os.path.isdir(self.mount_point):           # mnt/ came last: a store with it has all
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            for sub in ("blobs/sha256", "layers/sha256", "containers", "locks", "tmp", "mnt"):
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        if os.stat(self.root).st_mode & 0o077:
            # Layers and upper dirs hold whatever images and containers put there,
            # setuid binaries included: no other user may reach them (docker's
            # CVE-2021-41091). Overlay reads lower dirs with the mounter's rights,
            # so containers never need to traverse this directory.
            os.chmod(self.root, 0o700)
        check_filesystem(self.root)
        return self

    def staging(self, kind: str, mode: int = 0o700) -> Staging:
        """`with store.staging(kind) as path:` a fresh directory under tmp/, removed
        at the end of the block unless the caller renamed it away."""
        return Staging(self.staging_file(kind), mode)

    def staging_file(self, kind: str) -> str:
        return os.path.join(self.tmp, f"{kind}-{os.getpid()}-{os.urandom(6).hex()}")

    def partial_download(self, digest: str) -> str:
        """Where a blob download in progress lives: named by digest, not pid, so a
        later pull resumes it after this one was killed."""
        return os.path.join(self.tmp, "download-" + digest.split(":", 1)[1])

    def clean_stale_tmp(self) -> None:
        """Remove staging left by minirun processes that died (the pid is in the name)."""
        try:
            names = os.listdir(self.tmp)
        except FileNotFoundError:
            return
        for name in names:
            parts = name.split("-")
            if len(parts) >= 3 and parts[-2].isdigit() and not _pid_alive(int(parts[-2])):
                try:
                    remove_tree(os.path.join(self.tmp, name))
                except OSError:
                    pass  # leftovers must never block the command that found them


class Staging:
    """A staging directory while a with-block runs (a class: see _once)."""

    def __init__(self, path: str, mode: int = 0o700):
        self.path, self.mode = path, mode

    def __enter__(self) -> str:
        make_dir(self.path, self.mode)
        return self.path

    def __exit__(self, *exc_info) -> None:
        if os.path.lexists(self.path):
            remove_tree(self.path)


def umask() -> int:
    """The process's umask, read once (reading it means setting it: os.umask)."""
    global _umask
    if _umask is None:
        _umask = os.umask(0o022)
        os.umask(_umask)
    return _umask


_umask: int | None = None


def make_dir(path: str, mode: int) -> None:
    """mkdir with exactly mode: a chmod follows only when the umask took bits away
    (each file-system call costs a run ~40 us here)."""
    os.mkdir(path, mode)
    if mode & umask():
        os.chmod(path, mode)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_filesystem(root: str) -> None:
    fs_type = linux.statfs_type(root)
    if fs_type == linux.OVERLAYFS_SUPER_MAGIC:
        raise EnvironmentProblem(
            f"the store {root} is on overlayfs, which cannot hold an overlay upper dir",
            "set MINIRUN_ROOT to a directory on ext4, xfs (ftype=1), btrfs or tmpfs")


def default_root() -> str:
    """$MINIRUN_ROOT, else `root` in the config file, else /var/lib/minirun."""
    from ..config import get
    return get("root")


def open_store(root: str | None = None, create: bool = True) -> Store:
    store = Store(root or default_root())
    if create:
        store.ensure()
        store.clean_stale_tmp()       # one listdir; finishes what killed commands left in tmp/
    return store
