"""`minirun bundle`: an OCI runtime bundle (config.json + rootfs/) made from a
stored image, for runc, crun or any OCI runtime to run; and its removal.

Layout of DIR:
    config.json        oci/runtimespec.py's document, the process from the image
                       config as `minirun run IMAGE` would start it
                       (sandbox/program.py), the user resolved to numbers in the
                       image's own /etc/passwd and /etc/group (sandbox/users.py)
    rootfs/            an overlay of the image's cached layers (the default), or
                       a plain copy of the merged tree (copy=True)
    .minirun/          minirun's: upper/ and work/ of the overlay (what the
                       container writes lands in upper/, never in the layer cache),
                       l/ (short links, only if a legacy mount needs them) and
                       bundle.json, which marks DIR as a bundle remove() may delete

The overlay is mounted in the caller's mount namespace and stays until
`umount DIR/rootfs` or remove(). While it is mounted, the image's layers are
its lower dirs: the image must stay in the store. `prune` never removes an
image that has a tag nor its layers, so a tagged image is safe; `rmi` of the
image, or a prune after it lost its tag, would remove the layers under the
mount (the store does not know about bundles). A copy has no such tie.

A failure leaves nothing: the mount is undone and what was made is removed
(a DIR that existed, empty, is left empty).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess

from .. import linux, oci
from ..errors import EnvironmentProblem, RuntimeFailure, UsageError, shown
from ..lib.fsutil import make_dir, remove_tree
from ..linux import caps, overlay
from ..oci import runtimespec

OWN = ".minirun"
MARK = "bundle.json"


def create(store, image: str, directory: str, copy: bool = False) -> dict:
    """Write the bundle; returns its config.json document. Nothing is left on failure."""
    directory = os.path.abspath(directory)
    made_dir = _check_target(directory, copy)
    made: list[str] = []
    mounted = ""
    try:
        if made_dir:
            make_dir(directory, 0o711)
        own = _mkdir(directory, OWN, 0o700, made)
        rootfs = _mkdir(directory, "rootfs", 0o755, made)
        with store.locks.hold("gc", shared=True):        # no prune between resolve and mount
            image_id, record = store.images.resolve(image)
            config = oci.parse_config(store.blobs.read(image_id))
            from ..run.plan import lower_dirs
            lowers = lower_dirs(store, record)
            if copy:
                _copy_merged(lowers, own, rootfs)
            else:
                _mount(lowers, own, rootfs)
                mounted = rootfs
        document = _document(config, rootfs)
        _write_json(os.path.join(directory, "config.json"), document)
        made.append(os.path.join(directory, "config.json"))
        _write_json(os.path.join(own, MARK), {
            "image": image, "image_id": image_id, "layers": [layer.key for layer in record.layers],
            "rootfs": "copy" if copy else "overlay"})
    except BaseException:
        if mounted:
            linux.umount2(mounted, linux.MNT_DETACH)
        if made_dir:
            remove_tree(directory)
        else:
            for path in reversed(made):
                remove_tree(path)
        raise
    return document


def remove(directory: str) -> None:
    """Unmount DIR/rootfs if minirun mounted it there, then delete DIR. Only a bundle
    minirun made (DIR/.minirun/bundle.json) is removed."""
    directory = os.path.abspath(directory)
    if not os.path.isfile(os.path.join(directory, OWN, MARK)) or os.path.islink(directory):
        raise UsageError(f"{shown(directory)} is not a bundle `minirun bundle` made (no {OWN}/{MARK})",
                         "remove other directories yourself")
    rootfs = os.path.join(directory, "rootfs")
    if _is_mount_point(rootfs):
        try:
            linux.umount2(rootfs)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise UsageError(f"{shown(rootfs)} is busy: a container still runs on it",
                                 "stop and delete it first (e.g. `runc delete -f ID`)") from None
            raise
    if _is_mount_point(rootfs):
        raise UsageError(f"{shown(rootfs)} is still a mount point (mounted twice?)",
                         f"run `umount {shown(rootfs)}` until it is not, then try again")
    remove_tree(directory)


def _check_target(directory: str, copy: bool) -> bool:
    """True when DIR must be made; a DIR that exists must be an empty directory."""
    if os.path.lexists(directory):
        if os.path.islink(directory) or not os.path.isdir(directory):
            raise UsageError(f"{shown(directory)} exists and is not a directory",
                             "give a new path or an empty directory")
        if os.listdir(directory):
            raise UsageError(f"{shown(directory)} exists and is not empty",
                             "give a new path or an empty directory")
        where = directory
        made = False
    else:
        where = os.path.dirname(directory)
        if not os.path.isdir(where):
            raise UsageError(f"the parent directory {shown(where)} does not exist", "create it first")
        made = True
    if not copy and linux.statfs_type(where) == linux.OVERLAYFS_SUPER_MAGIC:
        raise EnvironmentProblem(f"{shown(directory)} is on overlayfs, which cannot hold the "
                                 "bundle's overlay upper dir", "put the bundle elsewhere, or use --copy")
    return made


def _mkdir(parent: str, name: str, mode: int, made: list[str]) -> str:
    path = os.path.join(parent, name)
    make_dir(path, mode)
    made.append(path)
    return path


def _mount(lowers: list[str], own: str, rootfs: str) -> None:
    upper, work = os.path.join(own, "upper"), os.path.join(own, "work")
    os.mkdir(upper, 0o755)
    os.mkdir(work, 0o700)
    spec = overlay.plan(lowers, upper, work, own)
    strategy = overlay.strategy_from_env()
    links = overlay.links_to_make(spec, strategy)
    if links:
        os.mkdir(os.path.join(own, "l"), 0o700)
        for link, target in links.items():
            os.symlink(target, os.path.join(own, link))
    overlay.mount(spec, rootfs, strategy)


def _copy_merged(lowers: list[str], own: str, rootfs: str) -> None:
    """The merged tree copied into rootfs: the overlay is mounted (with a scratch
    upper dir, thrown away after) in a child's private mount namespace, so no mount
    ever shows on the host, and `cp -a` copies it as it is (owners, modes, links,
    xattrs, devices); it never follows a symlink, and rootfs is new and empty."""
    from ..lib.forked import in_child
    scratch = os.path.join(own, "copy")
    view = os.path.join(scratch, "merged")
    os.mkdir(scratch, 0o700)
    for name in ("merged", "upper", "work"):
        os.mkdir(os.path.join(scratch, name), 0o700)
    spec = overlay.plan(lowers, os.path.join(scratch, "upper"), os.path.join(scratch, "work"), scratch)
    strategy = overlay.strategy_from_env()

    def work() -> None:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        for link, target in overlay.links_to_make(spec, strategy).items():
            os.makedirs(os.path.join(scratch, "l"), 0o700, exist_ok=True)
            os.symlink(target, os.path.join(scratch, link))
        overlay.mount(spec, view, strategy, nodev=True)
        done = subprocess.run(["cp", "-a", "--", view + "/.", rootfs + "/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["cp failed"])[-1]
            raise RuntimeFailure(f"copying the image's files failed: {last[:200]}",
                                 "check the free space where the bundle goes")
    try:
        failure = in_child(work)
    finally:
        remove_tree(scratch)
    if failure is not None:
        if failure.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(failure.errno, os.strerror(failure.errno), rootfs)
        raise RuntimeFailure(failure.message, "")


def _document(config, rootfs: str) -> dict:
    """config.json for this image; the user's names looked up inside rootfs."""
    from ..run.plan import RunOptions
    from ..sandbox import program, users
    hostname = os.urandom(6).hex()           # as run names a container's host: 12 hex digits
    proc = program.build(config, RunOptions(), hostname, host_env={})
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        identity = users.resolve(proc.user, root=root)       # its tables, resolved inside rootfs
    finally:
        os.close(root)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return runtimespec.config(proc.argv, proc.env, proc.cwd, identity.uid, identity.gid,
                              identity.groups, proc.hostname, caps.DOCKER_DEFAULT, hard)


def _is_mount_point(path: str) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def _write_json(path: str, document: dict) -> None:
    with open(path, "x", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
