"""The store's root: where it lives, its layout, staging in tmp/, and the checks
that the filesystem under it can hold overlay upper dirs."""

from __future__ import annotations

import os
import stat

from .. import linux
from ..lib.fsutil import make_dir, remove_tree
from ..lib.names import is_hex
from ..linux.procfs import alive
from ..errors import EnvironmentProblem, shown
from .locks import Locks


# The store's own directories, in the order they are made (each one's parent first).
LAYOUT = ("blobs", "blobs/sha256", "layers", "layers/sha256", "containers", "locks", "tmp", "mnt")


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
        from .index import ImageIndex
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
        """Create the layout (cheap when it exists) and refuse a filesystem overlay cannot use,
        or a store someone other than root could have written to."""
        if not os.path.isdir(self.mount_point):           # mnt/ came last: a store with it has all
            check_ownership(self.root)                    # before anything is made in there
            _make_parents(self.root)
            try:
                os.makedirs(self.root, mode=0o700, exist_ok=True)
            except OSError:
                check_root(self.root)
                raise
            for sub in LAYOUT:
                os.makedirs(os.path.join(self.root, sub), mode=0o755, exist_ok=True)
        found = check_ownership(self.root)
        if found is not None and found.st_mode & 0o077:
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

    def partial_downloads(self) -> list[tuple[str, str, int]]:
        """(digest, path, bytes) of each blob download kept in tmp/ for a later pull
        to resume (a pull that failed, on a full disk say)."""
        out = []
        try:
            names = sorted(os.listdir(self.tmp))
        except OSError:
            return out
        for name in names:
            hex_part = name[len("download-"):]
            if name.startswith("download-") and len(hex_part) == 64 and is_hex(hex_part):
                try:
                    size = os.lstat(os.path.join(self.tmp, name)).st_size
                except OSError:
                    continue
                out.append(("sha256:" + hex_part, os.path.join(self.tmp, name), size))
        return out

    def clean_stale_tmp(self) -> None:
        """Remove staging left by minirun processes that died (the pid is in the name)."""
        try:
            names = os.listdir(self.tmp)
        except OSError:
            return                  # gone, or not a directory: the command that needs it will say
        for name in names:
            parts = name.split("-")
            if len(parts) >= 3 and parts[-2].isdigit() and not alive(int(parts[-2])):
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


def check_root(root: str) -> None:
    """Refuse a store root that exists and is not a directory (MINIRUN_ROOT=/dev/null)."""
    path = root
    try:
        while not os.path.lexists(path) and path != os.path.dirname(path):
            path = os.path.dirname(path)      # not made yet: its first ancestor that is there
        usable = os.path.isdir(path)
    except ValueError:                        # a NUL in the path
        usable = False
    if not usable:
        raise EnvironmentProblem(f"the store {shown(root)} is not a directory",
                                 "set MINIRUN_ROOT (or root in the config file) to a directory")


def open_store(root: str | None = None, create: bool = True) -> Store:
    store = Store(root or default_root())
    if not create:
        check_root(store.root)
    if create:
        store.ensure()
        store.clean_stale_tmp()       # one listdir; finishes what killed commands left in tmp/
    else:
        check_ownership(store.root)
    return store


# ---------------------------------------------------------------- who may write

# What check_ownership() looks at in the store: its directories, and the files at its
# top that say what the layers are. networks/ belongs to network/ipam.py; its name is
# all this module knows of it.
_CHECKED = (*LAYOUT, "images.json", "networks")
_MAX_LINKS = 40                   # as the kernel's ELOOP limit on one path


def check_ownership(root: str) -> os.stat_result | None:
    """Refuse a store that someone other than root could have written to (or swapped).

    A layer is run as root: whoever can plant one in layers/ (or a record in
    images.json or containers/) runs code as root. So the store, each directory
    minirun keeps in it, and images.json must be owned by root (or by the caller,
    for a user who runs the read-only commands on a store of their own) and
    writable by no group and no other user; each directory on the way to it from
    / must be owned by root and writable by no one else unless sticky (as /tmp:
    others cannot rename what root made there), and each symlink on the way owned
    by root. Layer dirs are not looked at one by one: under a layers/sha256 only
    root can write, only root made them. A dozen lstat calls (~25 us).
    """
    trusted = (0, os.geteuid())
    found = _walk(root, trusted)
    if found is None or not stat.S_ISDIR(found.st_mode):
        return found              # not made yet, or not a directory: ensure() says so
    _check_private(root, found, trusted)
    for sub in _CHECKED:
        path = os.path.join(root, sub)
        try:
            st = os.lstat(path)
        except OSError:
            continue              # missing (made later, by root) or unreadable (reported where used)
        if stat.S_ISLNK(st.st_mode):
            try:
                leads_to_dir = stat.S_ISDIR(os.stat(path).st_mode)
            except OSError:
                leads_to_dir = False
            # a directory elsewhere (another disk) is checked where it leads
            st = _walk(path, trusted) if leads_to_dir else None
            if st is None:
                continue
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            _check_private(path, st, trusted)
        # anything else (a dangling or looping symlink, a device, a FIFO) stands where
        # a directory or images.json should be: only root could put it in the private
        # store dir, so it is damage, which the readers name and `fsck --repair` mends
    return found


def _walk(path: str, trusted: tuple) -> os.stat_result | None:
    """lstat each component of the absolute path from /, following symlinks by hand,
    and refuse a directory on the way, or a symlink, that another user could change.
    Returns the final target's lstat, or None when it cannot be reached (missing, a
    file on the way, ...): what the command then does with the path reports that."""
    todo = [part for part in reversed(path.split("/")) if part]
    current, st = "/", os.lstat("/")
    links = 0
    while todo:
        _check_parent(path, current, st, trusted)
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            st = os.lstat(current)
            continue
        candidate = os.path.join(current, name)
        try:
            st = os.lstat(candidate)
            target = os.readlink(candidate) if stat.S_ISLNK(st.st_mode) else ""
        except OSError:
            return None           # missing, not a directory, a name too long: the command says so
        if target:
            if st.st_uid not in trusted:
                raise _unsafe(path, candidate, f"is a symlink owned by uid {st.st_uid}", parent=True)
            links += 1
            if links > _MAX_LINKS:
                raise EnvironmentProblem(f"the store {path}: too many levels of symbolic links",
                                         "set MINIRUN_ROOT to the store's real path")
            todo.extend(part for part in reversed(target.split("/")) if part)
            if target.startswith("/"):
                current = "/"
            st = os.lstat(current)
            continue
        current = candidate
    return st


def _check_parent(store: str, path: str, st: os.stat_result, trusted: tuple) -> None:
    if st.st_uid not in trusted:
        raise _unsafe(store, path, f"is owned by uid {st.st_uid}", parent=True)
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _unsafe(store, path, f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o}, "
                      "no sticky bit)", parent=True)


def _check_private(path: str, st: os.stat_result, trusted: tuple) -> None:
    if st.st_uid not in trusted:
        raise _unsafe(path, path, f"is owned by uid {st.st_uid}")
    if st.st_mode & 0o022:
        raise _unsafe(path, path, f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def _unsafe(what: str, path: str, why: str, parent: bool = False) -> EnvironmentProblem:
    """The one line: which path, why, and the fix. A store is not repaired silently:
    whoever could write there may have planted something already."""
    if parent:
        return EnvironmentProblem(
            f"refusing the store {what}: {path} {why}, so another user could swap the store "
            "for one of their own",
            f"set MINIRUN_ROOT to a directory only root can write to, or `chown root:root {path} "
            f"&& chmod go-w {path}`")
    return EnvironmentProblem(
        f"refusing the store: {path} {why}, so another user could plant layers or records run as root",
        f"if only root ever wrote there, `chown root:root {path} && chmod go-w {path}`; "
        f"otherwise remove the store")


def _make_parents(root: str) -> None:
    """Make the missing directories above the store with mode 0755 (makedirs would
    give them 0777 less the umask, so 0777 under umask 0): writable by root alone."""
    parent = os.path.dirname(root)
    if os.path.isdir(parent):
        return
    _make_parents(parent)
    try:
        os.mkdir(parent, 0o755)
    except FileExistsError:
        pass
