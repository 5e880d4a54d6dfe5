"""export and import: a container's merged view as one flat tar, and a tar as
a one-layer image.

export mounts the container's view read-only in a child process that has a
mount namespace of its own: the upper dir joins the lower dirs (no upper, no
work dir), so nothing can write into the container, and a killed export
leaves no mount behind on the host. The child writes the tar (layer/pack.py,
uncompressed) straight to the destination.

import stores the tar as the layer blob (compressed or not, as given), works
out its diff_id, writes a config and an OCI manifest, and hands the rest to
the importer: the layer is extracted safely and cached like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import BinaryIO

from . import linux, oci, overlay, reference
from .errors import NO_SPACE_ERRNOS, BadImage, EnvironmentProblem, NotFound, UsageError
from .forked import in_child
from .imageconfig import apply_changes, iso_time
from .layer import pack
from .runtime import lower_dirs


def export(store, name: str, out: BinaryIO) -> None:
    """Write the container's merged view as a tar to `out`."""
    _epoch()                                      # refused now, not in the child that packs
    with store.locks.hold("gc", shared=True):     # prune waits until the tar is written
        _export(store, store.containers.resolve(name), out)


def _export(store, cid: str, out: BinaryIO) -> None:
    config = store.containers.config(cid)
    lowers = lower_dirs(store, cid, config)
    # the container's own dirs (upper, init layer) stay apart from the image's
    # layers: overlay.plan stacks them over a 500-layer image without a 502nd lower
    own = lowers[:1] if config.get("init_layer") else []
    lowers = lowers[len(own):]
    upper = store.containers.upper(cid)
    if os.path.isdir(upper):
        own = [upper, *own]
    if len(own) + len(lowers) < 2:            # overlay without upper needs two lower dirs
        lowers.append(_empty_dir(store))
    with store.staging("export") as staged:
        target = os.path.join(staged, "merged")
        os.mkdir(target)
        spec = overlay.plan(lowers, "", "", staged, own)
        for link, lower in overlay.links_to_make(spec, overlay.strategy_from_env()).items():
            os.makedirs(os.path.join(staged, "l"), exist_ok=True)
            os.symlink(lower, os.path.join(staged, link))
        out.flush()
        _in_private_namespace(lambda: _mount_and_pack(spec, target, out.fileno()))


def _empty_dir(store) -> str:
    path = os.path.join(store.tmp, "empty-lower")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def _mount_and_pack(spec: overlay.OverlaySpec, target: str, fd: int) -> None:
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    overlay.mount(spec, target, overlay.strategy_from_env())
    # Walk from inside the view: a running container may turn a directory into a
    # symlink mid-walk, and from in here that can only lead back into the view.
    os.chroot(target)
    os.chdir("/")
    with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as stream:
        pack.pack("/", stream, gzip_level=None, epoch=_epoch())


def _in_private_namespace(work) -> None:
    failure = in_child(work)
    if failure is None:
        return
    if failure.errno in NO_SPACE_ERRNOS:
        raise OSError(failure.errno, failure.message)      # the CLI's one line about space
    raise EnvironmentProblem(f"export failed: {failure.message}",
                             "check that the output is writable (a closed pipe ends it too)")


def _epoch() -> int | None:
    from .imageconfig import source_date_epoch
    return source_date_epoch()


# ---------------------------------------------------------------- import

def import_tarball(store, path: str, ref: str | None, message: str = "",
                   changes: tuple[str, ...] = (), report=lambda label, status: None) -> str:
    """A root filesystem tar (plain, gzip or zstd; '-' for stdin) becomes a
    one-layer image. Returns its image id."""
    from .sources.importer import SourceImage, SourceLayer, import_image
    from .store import gc
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
    with src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
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
    from .layer.unpack import decompressor
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        stream = decompressor(raw, compression)
        try:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        except Exception as exc:  # noqa: BLE001 - gzip, zlib and zstd each raise their own
            raise BadImage(f"the {compression} data is corrupt: {exc}",
                           "give a complete tar, gzip'd tar or zstd'd tar") from None
    return "sha256:" + digest.hexdigest()
