"""minirun commit: a container's upper dir becomes one new layer on top of its image.

    1. copy the upper dir into tmp/ (reflink where the filesystem can), and
       drop the kernel's own trusted.overlay.* xattrs except the opaque mark;
    2. pack that copy into a gzip tar blob (reproducible, see layer/pack.py),
       which gives the diff_id;
    3. install the copy as the cached layer for that diff_id: the tar is never
       extracted again, and an identical layer already cached is reused;
    4. write a config (base config + diff_id + history entry + --change) and
       a manifest whose base layers are the base image's own blobs.

The base layers are not copied: the new image lists the same cache entries.
Only a stopped container is committed: its upper dir cannot change under the
copy, so the layer is a consistent snapshot.

The layer is bounded as a loaded one is (MINIRUN_MAX_LAYER_BYTES and _ENTRIES,
layer/limits.py): the upper dir's apparent file sizes and entries are added up
from metadata before anything is copied, so a container that ran `truncate -s 1T`
is refused at once with one line, not read for an hour. Below the limit a sparse
file keeps its holes in the cached layer (cp) and is packed whole, its holes
given as zeros without reading them (layer/pack.py).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from ..lib.frozen import dataclass, replace

from .. import oci
from ..oci import reference
from ..errors import Conflict, ImageNotFound, MinirunError, no_space
from ..oci.imageconfig import iso_time, new_config
from ..store.blobs import layer_blob
from ..lib.fsutil import tree_stats
from ..layer import pack, whiteout
from ..layer.limits import check_tree
from ..store.containers import effective_state
from ..sources.importer import image_record
from ..store import gc
from ..store import ContainerConfig, LayerMeta, LayerRef


@dataclass(frozen=True)
class CommitOptions:
    ref: str | None = None
    message: str = ""
    author: str = ""
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Committed:
    image_id: str
    diff_id: str
    reused: bool          # an identical layer was already in the cache
    dangling: list[str]   # images left without a name because the tag moved


def commit(store, name: str, opts: CommitOptions) -> Committed:
    ref = str(reference.parse(opts.ref)) if opts.ref else None
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    if effective_state(store.containers.state(cid)).running:
        raise Conflict(f"container {config.name or cid[:12]} is running",
                       f"stop it first (`minirun stop {config.name or cid[:12]}`): "
                       "minirun commits stopped containers only")
    epoch = _source_date_epoch()
    try:
        return _commit(store, cid, config, ref, opts, epoch)
    except BaseException as exc:
        # a blob or layer made before the failure is referenced by nothing: remove it
        gc.collect_after_failure(store)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space(store.root) from None
        raise


def _commit(store, cid: str, config: ContainerConfig, ref: str | None, opts: CommitOptions,
            epoch: int | None) -> Committed:
    with store.locks.hold("gc", shared=True):
        image_id = config.image_id
        try:
            _, base = store.images.resolve(image_id)
        except ImageNotFound:
            raise ImageNotFound(f"the image of container {config.name} ({image_id[7:19]}) "
                                "was removed", "commit needs its base image: load or pull it again") from None
        base_config = oci.parse_config(store.blobs.read(image_id), f"image config {oci.short_id(image_id)}").raw
        layer, reused = _commit_layer(store, cid, config, base.media_type, epoch)
        created = iso_time(epoch if epoch is not None else time.time())
        doc = new_config(base_config, layer.diff_id, created, _created_by(config),
                         opts.message, opts.author, opts.changes)
        config_bytes = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        new_id = store.blobs.put(config_bytes, what="image config")
        manifest_bytes, layers = _manifest(store, base.media_type, config_bytes, [*base.layers, layer])
        manifest_digest = store.blobs.put(manifest_bytes, what="manifest")
        record = image_record(manifest_digest, base.media_type, layers, oci.parse_config(config_bytes))
        dangling = store.images.add(new_id, record, [ref] if ref else [])
    return Committed(new_id, layer.diff_id, reused, dangling)


def _commit_layer(store, cid: str, config: ContainerConfig, manifest_type: str,
                  epoch: int | None) -> tuple[LayerRef, bool]:
    media_type = oci.layer_type_for(manifest_type, oci.OCI_LAYER_GZIP)
    name = config.name or cid[:12]

    def guard(size: int, entries: int) -> None:
        check_tree(size, entries, f"container {name}'s upper dir",
                   f"remove or shrink what it wrote (`minirun diff {name}` lists it), "
                   "or raise the limit if the layer is meant to be that big")

    with store.staging("commit") as staged:
        diff = os.path.join(staged, "diff")
        upper = store.containers.upper(cid)
        if config.read_only or not os.path.isdir(upper):
            os.mkdir(diff, 0o755)
        else:
            guard(*tree_stats(upper)[:2])         # by the files' sizes, before a byte is read
            _copy_tree(upper, diff)
        _drop_kernel_xattrs(diff)
        with store.blobs.writer(None, "committed layer") as blob:
            packed = pack.pack(diff, blob, epoch=epoch, guard=guard)
            size = blob.size
            digest = blob.commit()
        diff_id = packed.diff_id
        chain_id = oci.chain_ids([*(_diff_ids(store, config)), diff_id])[-1]
        with store.locks.hold(f"layer-{diff_id}"):
            reused = store.layers.has(diff_id)
            if not reused:
                meta = LayerMeta(diff_id, chain_id, keyed_by="diff_id", files=packed.files, size=packed.size,
                                 blob=digest, media_type=media_type, source=f"commit {cid}")
                store.layers.install(staged, diff_id, meta)
    unpacked = packed.size if not reused else store.layers.meta(diff_id).size
    return LayerRef(diff_id, diff_id, digest, media_type, size, unpacked_size=unpacked), reused


def _copy_tree(src: str, dest: str) -> None:
    """cp keeps owners, modes, times, hard links, device nodes (whiteouts) and
    xattrs (the opaque mark), and shares extents where the filesystem can."""
    proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", src, dest],
                          capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    if proc.returncode != 0:
        if "No space left" in proc.stderr or "quota" in proc.stderr:
            raise OSError(errno.ENOSPC, "no space left")
        if "File name too long" in proc.stderr:
            raise Conflict("the container holds paths longer than 4096 bytes (PATH_MAX), which "
                           "commit cannot copy yet", "shorten or remove them, or use `minirun export`")
        reason = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise MinirunError(f"cannot copy the upper dir into the store: {reason[:300]}")


def _drop_kernel_xattrs(root: str) -> None:
    """overlayfs marks upper entries (origin, impure, ...) for its own use; they
    describe this mount, not the layer. Only the opaque mark is layer content."""
    for _rel, full, _st in pack.walk(root):
        try:
            names = os.listxattr(full, follow_symlinks=False)
        except OSError:
            continue
        for name in names:
            if name.startswith(whiteout.OVERLAY_XATTR_PREFIX) and name != whiteout.OPAQUE_XATTR:
                os.removexattr(full, name, follow_symlinks=False)
            elif name == whiteout.OPAQUE_XATTR and \
                    os.getxattr(full, name, follow_symlinks=False) != whiteout.OPAQUE_VALUE:
                os.removexattr(full, name, follow_symlinks=False)


def _diff_ids(store, config: ContainerConfig) -> list[str]:
    return [store.layers.meta(key).diff_id for key in config.layers]


def _created_by(config: ContainerConfig) -> str:
    return "minirun commit: " + " ".join(config.argv)


def _manifest(store, manifest_type: str, config_bytes: bytes,
              layers: list[LayerRef]) -> tuple[bytes, list[LayerRef]]:
    """The manifest, and the layers as it names them: base layers point at blobs the
    store holds (see store/blobs.py layer_blob)."""
    descriptors, named = [], []
    for layer in layers:
        desc = layer_blob(store, layer)
        desc = oci.Descriptor(oci.layer_type_for(manifest_type, desc.media_type), desc.digest, desc.size)
        named.append(replace(layer, blob=desc.digest, media_type=desc.media_type, size=desc.size))
        descriptors.append(desc)
    docker = manifest_type == oci.DOCKER_MANIFEST
    config = oci.Descriptor(oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG,
                            oci.sha256_digest(config_bytes), len(config_bytes))
    return oci.Manifest(manifest_type, config, tuple(descriptors)).to_bytes(), named


def _source_date_epoch() -> int | None:
    from ..oci.imageconfig import source_date_epoch
    return source_date_epoch()
