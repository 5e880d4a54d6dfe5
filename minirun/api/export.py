"""export and import: a container's merged view as one flat tar, and a tar as
a one-layer image.

export mounts the container's view read-only in a child process that has a
mount namespace of its own: the upper dir joins the lower dirs (no upper, no
work dir), so nothing can write into the container, and a killed export
leaves no mount behind on the host. The child writes the tar (layer/pack.py,
uncompressed) straight to the destination. It is bounded as a layer is (the
tar is what `minirun import` takes back): the view's file sizes and entries
are added up from metadata first, so a sparse terabyte is refused before a
byte is written, and a smaller sparse file is written whole with its holes
given as zeros, never read (layer/pack.py).

import stores the tar as the layer blob (compressed or not, as given), works
out its diff_id, writes a config and an OCI manifest, and hands the rest to
the importer: the layer is extracted safely and cached like any other.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sys
import time
from typing import BinaryIO

from .. import linux, oci
from ..linux import overlay
from ..linux import caps
from ..oci import reference
from ..errors import NO_SPACE_ERRNOS, BadImage, Conflict, EnvironmentProblem, NotFound, UsageError
from ..lib.forked import in_child
from ..lib.fsutil import is_hole, tree_stats
from ..oci.imageconfig import apply_changes, iso_time
from ..layer import pack
from ..layer.limits import check_size, check_tree, max_layer_bytes
from .control import lower_dirs


def export(store, name: str, out: BinaryIO) -> None:
    """Write the container's merged view as a tar to `out`."""
    _epoch()                                      # refused now, not in the child that packs
    with store.locks.hold("gc", shared=True):     # prune waits until the tar is written
        _export(store, store.containers.resolve(name), out)


def _export(store, cid: str, out: BinaryIO) -> None:
    config = store.containers.config(cid)
    with store.staging("export") as staged:
        target = os.path.join(staged, "merged")
        os.mkdir(target)
        spec = read_only_view(store, cid, config, staged)
        out.flush()
        name = config.name or cid[:12]
        _in_private_namespace(lambda: _mount_and_pack(spec, target, out.fileno(), name))


def read_only_view(store, cid: str, config, staged: str) -> overlay.OverlayMount:
    """The container's merged view as a read-only overlay (its upper dir a lower dir,
    no work dir), any short links it needs made in staged: what export packs and cp
    reads from a stopped container."""
    lowers = lower_dirs(store, cid, config)
    # the container's own dirs (upper, init layer) stay apart from the image's
    # layers: overlay.plan stacks them over a 500-layer image without a 502nd lower
    own = lowers[:1] if config.init_layer else []
    lowers = lowers[len(own):]
    upper = store.containers.upper(cid)
    if os.path.isdir(upper):
        own = [upper, *own]
    if len(own) + len(lowers) < 2:            # overlay without upper needs two lower dirs
        lowers.append(_empty_dir(store))
    spec = overlay.plan(lowers, "", "", staged, own)
    for link, lower in overlay.links_to_make(spec, overlay.strategy_from_env()).items():
        os.makedirs(os.path.join(staged, "l"), exist_ok=True)
        os.symlink(lower, os.path.join(staged, link))
    return spec


def _empty_dir(store) -> str:
    path = os.path.join(store.tmp, "empty-lower")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def _mount_and_pack(spec: overlay.OverlayMount, target: str, fd: int, name: str) -> None:
    caps.set_pdeathsig(signal.SIGKILL)      # a killed export stops writing at once
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    # nodev: a node the container made (it keeps CAP_MKNOD) is packed, never opened
    overlay.mount(spec, target, overlay.strategy_from_env(), nodev=True)
    # Walk from inside the view: a running container may turn a directory into a
    # symlink mid-walk, and from in here that can only lead back into the view.
    os.chroot(target)
    os.chdir("/")

    def guard(size: int, entries: int) -> None:
        try:
            check_tree(size, entries, f"container {name}'s filesystem",
                       "remove or shrink its biggest files, or raise the limit "
                       "(`minirun import` takes no bigger tar back)")
        except Conflict as exc:          # EFBIG tells the parent it is this refusal
            raise OSError(errno.EFBIG, exc.line()) from None
    guard(*tree_stats("/")[:2])          # by the files' sizes, before a byte is written
    with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as stream:
        pack.pack("/", stream, gzip_level=None, epoch=_epoch(), guard=guard)


def _in_private_namespace(work) -> None:
    failure = in_child(work)
    if failure is None:
        return
    if failure.errno == errno.EFBIG:
        raise Conflict(failure.message)
    if failure.errno in NO_SPACE_ERRNOS:
        raise OSError(failure.errno, failure.message)      # the CLI's one line about space
    raise EnvironmentProblem(f"export failed: {failure.message}",
                             "check that the output is writable (a closed pipe ends it too)")


def _epoch() -> int | None:
    from ..oci.imageconfig import source_date_epoch
    return source_date_epoch()


# ---------------------------------------------------------------- import

def import_tarball(store, path: str, ref: str | None, message: str = "",
                   changes: tuple[str, ...] = (), report=None) -> str:
    """A root filesystem tar (plain, gzip or zstd; '-' for stdin) becomes a
    one-layer image. Returns its image id."""
    from ..sources.importer import SourceImage, SourceLayer, import_image
    from ..sources.progress import silent
    from ..store import gc
    report = report or silent
    ref = str(reference.parse(ref)) if ref else None
    _epoch()                                      # refused before anything is read or made
    try:
        with store.locks.hold("gc", shared=True), store.staging("import") as staged:
            blob_path = os.path.join(staged, "layer")
            digest, size = _copy_in(path, blob_path)
            compression = _sniff(blob_path)
            media_type = {"none": oci.OCI_LAYER, "gzip": oci.OCI_LAYER_GZIP,
                          "zstd": oci.OCI_LAYER_ZSTD}[compression]
            config_bytes = _config(_diff_id(blob_path, compression), path, message, changes)
            manifest = oci.Manifest(oci.OCI_MANIFEST, oci.Descriptor(
                oci.OCI_CONFIG, oci.sha256_digest(config_bytes), len(config_bytes)),
                (oci.Descriptor(media_type, digest, size),))
            layer = SourceLayer(media_type, digest, size, lambda: open(blob_path, "rb"))
            src = SourceImage(config_bytes, [layer], [ref] if ref else [], manifest.to_bytes(), origin=path)
            result = import_image(store, src, report)
    except BaseException:
        gc.collect_after_failure(store)      # a layer installed before the failure goes again
        raise
    return result.image_id


def _config(diff_id: str, path: str, message: str, changes: tuple[str, ...]) -> bytes:
    created = iso_time(_epoch() if _epoch() is not None else time.time())
    shown = "-" if path == "-" else os.path.basename(path)
    entry = {"created": created, "created_by": f"minirun import {shown}"}
    if message:
        entry["comment"] = message
    config = {"created": created, "architecture": oci.host_platform().architecture, "os": "linux",
              "config": apply_changes({}, changes), "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [entry]}
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def _copy_in(path: str, dest: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file", "give the path of a root filesystem tar") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory", "import takes a tar file; make one with "
                         "`tar -C DIR -cf rootfs.tar .`") from None
    except PermissionError:
        raise EnvironmentProblem(f"{path}: permission denied", "check the file's permissions") from None
    limit = max_layer_bytes()
    with src, open(dest, "wb") as out:
        shown = "standard input" if path == "-" else path
        check_size(os.fstat(src.fileno()).st_size, shown, limit)   # a regular file says, unread
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            check_size(size, f"{shown} (read so far)", limit)   # a pipe or /dev/zero never says
            if is_hole(chunk):
                out.seek(len(chunk), os.SEEK_CUR)       # a sparse input stays sparse
            else:
                out.write(chunk)
        out.truncate(size)
    if size == 0:
        raise BadImage(f"{path}: empty input", "give a tar archive of a root filesystem")
    return "sha256:" + digest.hexdigest(), size


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def _diff_id(path: str, compression: str) -> str:
    """sha256 of the uncompressed tar, which may be no bigger than a layer (a small
    gzip can hold a huge run of zeros)."""
    from ..layer.unpack import decompressor
    digest, size, limit = hashlib.sha256(), 0, max_layer_bytes()
    with open(path, "rb") as raw:
        stream = decompressor(raw, compression)
        try:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                check_size(size, "the uncompressed tar (read so far)", limit)
        except BadImage:
            raise
        except Exception as exc:  # noqa: BLE001 - gzip, zlib and zstd each raise their own
            raise BadImage(f"the {compression} data is corrupt: {exc}",
                           "give a complete tar, gzip'd tar or zstd'd tar") from None
    return "sha256:" + digest.hexdigest()
