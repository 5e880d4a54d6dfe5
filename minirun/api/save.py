"""save: write images from the store as a docker-archive, an OCI archive or an
OCI image layout directory, the three forms `minirun load` (sources/archive.py),
podman, skopeo and umoci read.

    docker-archive   manifest.json, repositories, <config hex>.json and one
                     <diff_id hex>/layer.tar per layer, uncompressed (`docker save`)
    oci-archive      a tar of the OCI layout below
    oci-dir          oci-layout, index.json, blobs/sha256/<hex>: manifests, configs
                     and the compressed layer blobs as stored

This module owns what goes into the output; it only reads the store. Each
layer's blob comes from store/blobs.py layer_blob(), which may be another blob of the
same diff_id than the one the stored manifest names; the OCI forms then carry a
manifest rebuilt from those descriptors, and so does an image whose stored
manifest is a Docker schema 2 one (OCI media types, same digests). The config
never changes, so neither does the image id.

A file or directory appears by one rename from a temporary name beside it; a
failed save removes the temporary and leaves nothing. Entries are sorted and
their times and owners fixed, so the same store content gives the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from ..lib.frozen import dataclass, field
from typing import BinaryIO, Callable, ContextManager, Iterable

from .. import oci
from ..oci import reference
from ..errors import BadImage, Conflict, DigestMismatch, EnvironmentProblem, NotFound, UsageError
from .outfile import failed, temp_beside, write_output

FORMATS = ("docker-archive", "oci-archive", "oci-dir")
MTIME = 0              # every tar entry: the output depends on the store content only
CHUNK = 1 << 20
_CONTAINERD_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class Entry:
    """One file of the output (a directory when open is None)."""
    name: str
    size: int = 0
    open: Callable[[], ContextManager[BinaryIO]] | None = None
    path: str | None = None        # a store file holding exactly these bytes, for a fast copy


@dataclass
class SavedImage:
    image_id: str
    record: object                    # its store/__init__.py ImageRecord
    refs: list[str] = field(default_factory=list)     # full references; empty when named by id
    layers: list[tuple[object, oci.Descriptor]] = field(default_factory=list)   # (LayerRef, its blob)


# ---------------------------------------------------------------- entry points

def destination(output: str | None, fmt: str, stdout_is_terminal: bool) -> str | None:
    """Where to write: a path, or None for stdout. UsageError for what cannot work."""
    check_format(fmt)
    if output is not None and output != "-":
        if not output.strip():
            raise UsageError("-o needs a file name", "e.g. -o myapp.tar")
        return output
    if fmt == "oci-dir":
        raise UsageError("--format oci-dir writes a directory, not a stream",
                         "name the directory with -o DIR")
    if stdout_is_terminal:
        raise UsageError("refusing to write an image archive to a terminal",
                         "pass -o FILE, or redirect stdout to a file or a pipe")
    return None


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown save format {fmt!r}", "use docker-archive, oci-archive or oci-dir")


def save(store, names: list[str], fmt: str, output: str | BinaryIO) -> list[SavedImage]:
    """Write the named images in one archive (or layout dir) to output: a path or a
    binary stream. Holds the store's gc lock shared, so nothing it reads is collected."""
    check_format(fmt)
    if not names:
        raise UsageError("save needs at least one image", "e.g. minirun save myapp -o myapp.tar")
    with _gc_lock_shared(store):
        try:
            images = select(store, names)
            entries = docker_entries(store, images) if fmt == "docker-archive" else oci_entries(store, images)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot read the store {store.root}: {exc.strerror or exc}",
                                     "run as root, or as a user who may read MINIRUN_ROOT") from None
        if not isinstance(output, str):
            _to_stream(entries, output)
        elif fmt == "oci-dir":
            _to_new_dir(entries, output)
        else:
            write_output(output, lambda f: write_tar(entries, f), "save")
    return images


@contextlib.contextmanager
def _gc_lock_shared(store):
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(store.locks.hold("gc", shared=True))
    except (PermissionError, FileNotFoundError):
        # A user who may read the store but not open its lock files: blobs are
        # immutable, so the worst a concurrent rmi can do is fail this save.
        pass
    with stack:
        yield


def select(store, names: list[str]) -> list[SavedImage]:
    """Resolve every name first (nothing is written for a typo); an image named
    twice is saved once, under every reference it was named by."""
    from ..store.blobs import layer_blob
    doc = store.images.read()
    chosen: dict[str, SavedImage] = {}
    for name in names:
        image_id, record = store.images.resolve(name, doc)
        image = chosen.get(image_id)
        if image is None:
            image = chosen[image_id] = SavedImage(image_id, record)
        ref = store.images.ref_for(name, doc)
        if ref and ref not in image.refs:
            image.refs.append(ref)
    for image in chosen.values():
        image.layers = [(layer, layer_blob(store, layer)) for layer in image.record.layers]
    return list(chosen.values())


# ---------------------------------------------------------------- docker-archive

def docker_entries(store, images: list[SavedImage]) -> list[Entry]:
    entries: dict[str, Entry] = {}
    manifest, repositories = [], {}
    for image in images:
        config_name = oci.digest_hex(image.image_id) + ".json"
        entries[config_name] = _blob_entry(store, config_name, image.image_id, "config")
        layer_names = []
        for layer, desc in image.layers:
            hex_id = oci.digest_hex(layer.diff_id)
            name = f"{hex_id}/layer.tar"
            if name not in entries:
                entries[hex_id + "/"] = Entry(hex_id + "/")
                entries[name] = uncompressed_entry(store, name, layer.diff_id, desc)
            layer_names.append(name)
        tags = []
        for ref in map(reference.parse, image.refs):
            if not ref.tag:
                continue
            tags.append(ref.familiar())
            if layer_names:
                repo = reference.Reference(ref.registry, ref.repository).familiar()
                repositories.setdefault(repo, {})[ref.tag] = layer_names[-1].split("/", 1)[0]
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_names})
    entries["manifest.json"] = _json_entry("manifest.json", manifest)
    entries["repositories"] = _json_entry("repositories", repositories)
    return [entries[name] for name in sorted(entries)]


def uncompressed_entry(store, name: str, diff_id: str, desc: oci.Descriptor) -> Entry:
    """A layer as the tar its diff_id names. A compressed blob is read twice:
    once now to check the diff_id and learn the size a tar header needs, once
    while writing."""
    compression = oci.layer_compression(desc.media_type)
    if compression == "none" and desc.digest == diff_id:
        return _blob_entry(store, name, desc.digest, "layer")

    def open_():
        return _decompressed(store, desc.digest, compression)

    digest, size = hashlib.sha256(), 0
    what = f"layer {oci.short_id(diff_id)}"
    try:
        with open_() as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except Exception as exc:
        corrupt = (EOFError, gzip.BadGzipFile, zlib.error, ValueError)
        if not isinstance(exc, corrupt) and not type(exc).__module__.startswith("zstandard"):
            raise
        raise BadImage(f"{what}: stored blob {oci.short_id(desc.digest)} is corrupt: {exc}",
                       "load or pull the image again (or run `minirun fsck`)") from None
    if "sha256:" + digest.hexdigest() != diff_id:
        raise DigestMismatch(f"{what}: stored blob {oci.short_id(desc.digest)} uncompresses to "
                             f"sha256:{digest.hexdigest()}, not the layer's diff_id",
                             "load or pull the image again (or run `minirun fsck`)")
    return Entry(name, size, open_)


@contextlib.contextmanager
def _decompressed(store, digest: str, compression: str):
    from ..layer.unpack import decompressor
    with store.blobs.open(digest) as raw:
        stream = decompressor(raw, compression)
        try:
            yield stream
        finally:
            if stream is not raw:
                stream.close()


# ---------------------------------------------------------------- OCI layout

def oci_entries(store, images: list[SavedImage]) -> list[Entry]:
    blobs: dict[str, Entry] = {}
    index = []
    for image in images:
        manifest = oci_manifest(store, image)
        digest = oci.sha256_digest(manifest)
        blobs[digest] = Entry(_blob_name(digest), len(manifest), _bytes_opener(manifest))
        blobs[image.image_id] = _blob_entry(store, _blob_name(image.image_id), image.image_id, "config")
        for _layer, desc in image.layers:
            blobs[desc.digest] = _blob_entry(store, _blob_name(desc.digest), desc.digest, "layer")
        for ref in image.refs or [None]:
            index.append(_index_descriptor(image, digest, len(manifest), ref))
    doc = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": index}
    return [Entry("blobs/"), Entry("blobs/sha256/"),
            *sorted(blobs.values(), key=lambda e: e.name),
            _json_entry("index.json", doc),
            _json_entry("oci-layout", {"imageLayoutVersion": oci.OCI_LAYOUT_VERSION})]


def oci_manifest(store, image: SavedImage) -> bytes:
    """The stored manifest when it is an OCI one naming exactly the blobs saved;
    otherwise an OCI manifest built from them (same config, same image id)."""
    layers = tuple(oci.Descriptor(oci.layer_type_for(oci.OCI_MANIFEST, desc.media_type),
                                  desc.digest, desc.size) for _layer, desc in image.layers)
    try:
        stored = store.blobs.read(image.record.manifest)
    except NotFound:
        stored = None
    if stored is not None:
        parsed = oci.parse_manifest(stored)
        if parsed.media_type == oci.OCI_MANIFEST and parsed.layers == layers \
                and parsed.config.digest == image.image_id:
            return stored
    config = oci.Descriptor(oci.OCI_CONFIG, image.image_id, _blob_size(store, image.image_id, "config"))
    return oci.Manifest(oci.OCI_MANIFEST, config, layers).to_bytes()


def _index_descriptor(image: SavedImage, digest: str, size: int, ref: str | None) -> dict:
    annotations = {}
    if ref is not None:
        parsed = reference.parse(ref)
        annotations[_CONTAINERD_NAME] = ref
        if parsed.tag:
            annotations[oci.ANNOTATION_REF_NAME] = parsed.tag
    platform = None
    if image.record.os and image.record.architecture:
        platform = oci.Platform(image.record.os, image.record.architecture, image.record.variant)
    return oci.Descriptor(oci.OCI_MANIFEST, digest, size, annotations, platform).to_json()


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + oci.digest_hex(digest)


# ---------------------------------------------------------------- entries from the store

def _blob_entry(store, name: str, digest: str, what: str) -> Entry:
    return Entry(name, _blob_size(store, digest, what), lambda: store.blobs.open(digest),
                 store.blobs.path(digest))


def _blob_size(store, digest: str, what: str) -> int:
    try:
        return os.path.getsize(store.blobs.path(digest))
    except FileNotFoundError:
        raise NotFound(f"the {what} blob {oci.short_id(digest)} is not in the store",
                       "load or pull the image again (or run `minirun fsck`)") from None


def _json_entry(name: str, doc) -> Entry:
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return Entry(name, len(data), _bytes_opener(data))


def _bytes_opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


# ---------------------------------------------------------------- writers

def write_tar(entries: Iterable[Entry], out: BinaryIO) -> None:
    """A tar stream (no seeking, so stdout works): fixed times and owners."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name.rstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            if entry.open is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.mode, info.size = 0o644, entry.size
            with entry.open() as src:
                tar.addfile(info, src)


def write_dir(entries: Iterable[Entry], root: str) -> None:
    for entry in entries:
        target = os.path.join(root, entry.name)
        if entry.open is None:
            os.makedirs(target, 0o755, exist_ok=True)
        elif entry.path is not None:
            shutil.copyfile(entry.path, target)      # copy_file_range where the kernel can
        else:
            with entry.open() as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)


def _to_stream(entries: list[Entry], out: BinaryIO) -> None:
    try:
        write_tar(entries, out)
        out.flush()
    except BrokenPipeError:
        raise                    # the caller knows what its stream was
    except OSError as exc:
        raise _write_failed("stdout", exc) from None


def _to_new_dir(entries: list[Entry], path: str) -> None:
    """Build the layout in a temporary dir beside path; rename it into place when complete.
    An existing empty directory is replaced; anything else there is refused."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        raise Conflict(f"{path} exists and is not a directory", "choose another path for -o")
    if os.path.isdir(path) and os.listdir(path):
        raise Conflict(f"{path} exists and is not empty",
                       "choose a new directory for -o, or remove that one first")
    tmp = _temp_beside(path)
    from ..lib.fsutil import remove_tree
    try:
        os.mkdir(tmp, 0o755)
        write_dir(entries, tmp)
        os.rename(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            remove_tree(tmp)
        if isinstance(exc, OSError):
            raise _write_failed(path, exc) from None
        raise


def _temp_beside(path: str) -> str:
    return temp_beside(os.path.abspath(path), path)


def _write_failed(dest: str, exc: OSError) -> EnvironmentProblem:
    return failed("save", dest, exc)
