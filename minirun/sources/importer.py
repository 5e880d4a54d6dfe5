"""Import an image from any source into the store: verify its blobs, extract
each layer once into the layer cache, then record the image and its names.

Order matters for crash safety: layers and blobs first (each appears by one
rename), the image record last, so a killed import leaves no reference to
anything incomplete.
"""

from __future__ import annotations

import os
import stat
import time
from ..lib.frozen import dataclass, field
from typing import BinaryIO, Callable

from .. import oci
from ..errors import BadImage, DigestMismatch
from ..layer import manifest
from ..layer.limits import check_size
from ..layer.unpack import unpack_blob
from ..store import ImageRecord, LayerMeta, LayerRef
from .progress import Metered, Report


@dataclass
class SourceLayer:
    media_type: str
    digest: str
    size: int
    open: Callable[[], BinaryIO]
    in_store: bool = False      # open() reads the store's own, already verified blob


@dataclass
class SourceImage:
    config_bytes: bytes
    layers: list[SourceLayer]
    refs: list[str] = field(default_factory=list)
    manifest_bytes: bytes | None = None   # None: synthesise a Docker schema 2 manifest
    origin: str = ""


@dataclass
class ImportResult:
    image_id: str
    refs: list[str]


def import_image(store, src: SourceImage, report: Report) -> ImportResult:
    config_digest = oci.sha256_digest(src.config_bytes)
    manifest = None
    if src.manifest_bytes is not None:
        manifest = oci.parse_manifest(src.manifest_bytes)
        if manifest.config.digest != config_digest:
            raise DigestMismatch(f"image config {oci.short_id(manifest.config.digest)}: content has "
                                 f"digest {config_digest}, expected {manifest.config.digest}")
    config = oci.parse_config(src.config_bytes)
    if len(config.diff_ids) != len(src.layers):
        raise BadImage(f"image {oci.short_id(config_digest)}: the config lists {len(config.diff_ids)} "
                       f"diff_ids but the manifest has {len(src.layers)} layers")
    chains = oci.chain_ids(list(config.diff_ids))
    records: list[LayerRef] = []
    for index, layer in enumerate(src.layers):
        lowers = [r.key for r in reversed(records)]
        records.append(_import_layer(store, layer, config.diff_ids[index], chains[index], lowers, report))
    store.blobs.put(src.config_bytes, what="image config")
    if src.manifest_bytes is None:
        src.manifest_bytes = _synthesise_manifest(src.config_bytes, records)
    manifest_digest = store.blobs.put(src.manifest_bytes, what="manifest")
    record = image_record(manifest_digest, manifest.media_type if manifest else oci.DOCKER_MANIFEST,
                          records, config)
    store.images.add(config_digest, record, src.refs)
    return ImportResult(config_digest, src.refs)


def image_record(manifest_digest: str, media_type: str, layers: list[LayerRef],
                 config: oci.ImageConfig) -> ImageRecord:
    """What images.json holds for an image (see minirun/store/index.py). Its size is
    what its layers take in the store, where a layer listed twice is kept once."""
    return ImageRecord(manifest_digest, tuple(layers), media_type=media_type, created=config.created,
                       architecture=config.architecture, os=config.os, variant=config.variant,
                       size=sum({r.key: r.unpacked_size for r in layers}.values()),
                       loaded=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _import_layer(store, layer: SourceLayer, diff_id: str, chain_id: str,
                  lowers: list[str], report) -> LayerRef:
    label = oci.short_id(layer.digest)
    compression = oci.layer_compression(layer.media_type)
    key = store.layers.lookup(diff_id, chain_id)
    if key is None:
        def on_wait(_name):
            report(label, "Waiting for another minirun to extract it")
        with store.locks.hold(f"layer-{diff_id}", on_wait=on_wait):
            key = store.layers.lookup(diff_id, chain_id)
            if key is None:
                return _extract_layer(store, layer, diff_id, chain_id, lowers, label, compression, report)
    report(label, "Already exists")
    return LayerRef(key, diff_id, layer.digest, layer.media_type, layer.size,
                    unpacked_size=store.layers.meta(key).size)


def _extract_layer(store, layer: SourceLayer, diff_id: str, chain_id: str, lowers: list[str],
                   label: str, compression: str, report) -> LayerRef:
    what = f"layer {label}"
    check_size(layer.size, f"{what}'s blob")       # before a byte of it is read or stored
    with store.staging("layer") as staged:
        diff = os.path.join(staged, "diff")
        os.mkdir(diff)
        def read(done: int) -> None:
            report(label, "Extracting", done, layer.size)
        if layer.in_store:
            with layer.open() as stream:
                report(label, "Extracting", 0, layer.size)
                result = unpack_blob(Metered(stream, read), compression, diff, expected_diff_id=diff_id,
                                     what=what, blob_size=layer.size)
            blob_digest = layer.digest
        else:
            with layer.open() as stream, store.blobs.writer(layer.digest, what) as blob:
                report(label, "Extracting", 0, layer.size)
                try:
                    result = unpack_blob(Metered(stream, read), compression, diff, blob_sink=blob,
                                         expected_diff_id=diff_id, what=what, blob_size=layer.size)
                except BadImage:
                    _blame_blob_first(stream, blob)
                    raise
                blob_digest = blob.commit()
        key = diff_id
        if result.implied_dirs:
            _borrow_dir_attrs(store, diff, result.implied_dirs, lowers)
            key = chain_id
        meta = LayerMeta(diff_id, chain_id, keyed_by="diff_id" if key == diff_id else "chain_id",
                         files=result.files, size=result.size, blob=blob_digest,
                         media_type=layer.media_type, implied_dirs=tuple(result.implied_dirs))
        manifest.remember_hashes(diff, result.content_hashes)   # no need to read the files back
        try:
            installed = store.layers.install(staged, key, meta)
        finally:
            manifest.forget_hashes(diff)
        if not installed:
            report(label, "Already exists")
        else:
            report(label, f"Extracted ({result.files} files, {result.size / 1e6:.1f} MB)")
    return LayerRef(key, diff_id, blob_digest, layer.media_type, layer.size, unpacked_size=result.size)


def _blame_blob_first(stream, blob) -> None:
    """When a layer fails to unpack, a blob that fails its digest is the real cause: say that."""
    try:
        while chunk := stream.read(1 << 20):
            blob.write(chunk)
    except OSError:
        return
    blob.check()  # raises DigestMismatch naming the blob; if it matches, the caller re-raises


def _borrow_dir_attrs(store, diff: str, implied: list[str], lowers: list[str]) -> None:
    """A directory the tar never declared takes its attributes from the layers below,
    as it would on an extracted parent rootfs. Both sides are resolved without
    following symlinks: the lower side through LowerView, which walks component by
    component, and the new side by opening each component with O_NOFOLLOW."""
    from ..layer.lowerview import LowerView
    view = LowerView([store.layers.diff_path(key) for key in lowers])
    for rel in implied:
        st = view.lookup(rel)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        fd = _open_dir_nofollow(diff, rel)
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)


def _open_dir_nofollow(root: str, rel: str) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for part in rel.split("/"):
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError as exc:
        os.close(fd)
        raise BadImage(f"directory {rel!r} of the layer is not a plain directory: {exc.strerror}") from None
    return fd


def _synthesise_manifest(config_bytes: bytes, records: list[LayerRef]) -> bytes:
    config = oci.Descriptor(oci.DOCKER_CONFIG, oci.sha256_digest(config_bytes), len(config_bytes))
    layers = tuple(oci.Descriptor(r.media_type, r.blob, r.size) for r in records)
    return oci.Manifest(oci.DOCKER_MANIFEST, config, layers).to_bytes()


