"""Read images from the file formats users meet, detected from content:

    OCI image layout directory   oci-layout + index.json + blobs/sha256/
    OCI archive                  the same layout inside a tar (podman's oci-archive,
                                 containerd's `ctr export`, BuildKit's type=oci)
    docker-archive               `docker save`: manifest.json + config + layer tars;
                                 Docker 25+ writes an OCI layout beside it, whose
                                 index.json lists nothing ("manifests": null) for an
                                 image saved by id: manifest.json is read then
    dir                          skopeo's and podman's `dir:` / `docker-dir`: a
                                 version file, manifest.json (the image manifest
                                 itself) and every blob named by its hex digest

BuildKit's attestation manifests (platform unknown/unknown, annotated
vnd.docker.reference.type=attestation-manifest) are never taken for an image.

Each yields SourceImage objects for importer.py; the names they load under come
from archiverefs.py. Manifests, indexes and
configs are verified against their digests and sizes, and parsed, here, for
every image before any is imported, so a malformed one leaves the store as it
was; layer blobs are verified by the importer as they stream.

Everything in an archive is untrusted: a document over its limit
(oci.MAX_MANIFEST_BYTES, oci.MAX_CONFIG_BYTES) is refused before it is read,
names from manifest.json may not be absolute or climb out with `..`, a file in
a layout dir must be a regular file (a FIFO would hang the read), indexes nest
at most MAX_INDEX_DEPTH deep, and a tar holds at most archivefiles.MAX_MEMBERS
entries (archivefiles.py reads the files of either kind).
A docker-archive's `repositories` file is ignored, as docker ignores it when
manifest.json is there; an archive with only `repositories` (the format of
Docker before 1.10) is refused with a hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from typing import Iterator

from .. import oci
from ..errors import BadImage, DigestMismatch, MinirunError, UnsupportedMediaType, UsageError, named
from ..layer.limits import check_size
from . import archiverefs
from .archivefiles import ArchiveFiles, clean_name
from .importer import SourceImage, SourceLayer
from .progress import Report, silent

MAX_INDEX_DEPTH = 4          # index.json -> image index -> manifest is the usual depth
MAX_METADATA_BYTES = 64 << 20   # the configs and manifests of one archive's images, in all


STDIN = "-"


@contextlib.contextmanager
def spooled(store, path: str, report: Report = silent) -> Iterator[str]:
    """path itself; for "-", stdin copied into a file in the store's tmp/ (an archive
    is read by random access), removed again on every way out; report hears the
    bytes copied ("stdin", "Reading", bytes)."""
    if path != STDIN:
        yield path
        return
    import signal
    # named as staging (kind-PID-hex), so that a load killed outright is swept up with
    # the rest of a dead process's tmp/ files; SIGTERM and SIGHUP end it through the
    # finally below, as Ctrl-C does. The handlers come first: a SIGTERM the moment
    # the spool exists once killed the load outright and left the spool behind.
    previous = {signum: signal.signal(signum, _interrupted) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        spool = store.staging_file("stdin")
        try:
            fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:        # ENOSPC: the CLI's one line for a full disk
                while chunk := os.read(0, 1 << 20):
                    out.write(chunk)
                    report("stdin", "Reading", out.tell())
                if not out.tell():
                    raise UsageError("nothing came on stdin",
                                     "name an archive (minirun load -i busybox.tar) or pipe one in: "
                                     "minirun load < busybox.tar")
            yield spool
        finally:
            try:
                os.unlink(spool)            # its name is ours alone: made or not, it goes
            except FileNotFoundError:
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupted(signum, _frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def open_images(path: str, label: str = "") -> Iterator[list[SourceImage]]:
    """Every image in the archive or layout at path (format detected from content);
    their layer streams stay readable until the context ends. label: the name
    messages give path (a spool of stdin is "stdin")."""
    files = ArchiveFiles(path, label)
    path = files.path
    try:
        has_layout = files.exists("oci-layout") or files.exists("index.json")
        if files.exists("manifest.json") and _dir_transport(files):
            images = [_dir_image(files)]
        elif files.exists("manifest.json") and (not has_layout or _index_lists_nothing(files)):
            images = _bounded(_docker_images(files), path)
        elif has_layout:
            images = _bounded(_oci_images(files), path)
        elif files.exists("repositories"):
            raise UnsupportedMediaType(
                f"{path}: a docker-archive in the legacy format of Docker before 1.10 "
                "(a repositories file but no manifest.json) is not supported",
                "save the image again with a current docker or podman")
        else:
            raise BadImage(f"{path}: neither an OCI layout (no oci-layout or index.json) "
                           "nor a docker-archive (no manifest.json)")
        yield images
    finally:
        files.close()


def _bounded(images: Iterator[SourceImage], path: str) -> list[SourceImage]:
    """All the images, held at once (none is imported while one may be malformed), so
    their configs and manifests may take MAX_METADATA_BYTES in all: a 16 KB archive
    could list 100 configs of 16 MiB that compress to nothing (an outside review's)."""
    out, held = [], 0
    for image in images:
        held += len(image.config_bytes) + len(image.manifest_bytes or b"")
        if held > MAX_METADATA_BYTES:
            raise BadImage(f"{path}: its image configs and manifests come to more than "
                           f"{MAX_METADATA_BYTES >> 20} MiB in all", "save fewer images in one archive")
        out.append(image)
    return out


def _merge_refs(image: SourceImage, refs: list[str]) -> None:
    """A manifest listed again in one archive: the same image under more names."""
    image.refs.extend(ref for ref in refs if ref not in image.refs)


# ---------------------------------------------------------------- OCI layout / archive

def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + oci.digest_hex(digest)


def _index_lists_nothing(files: ArchiveFiles) -> bool:
    """Whether index.json's "manifests" is null or empty: what Docker 25+ writes
    beside manifest.json for an image saved by id."""
    try:
        doc = oci.load_json(files.read("index.json"), "index.json")
    except MinirunError:
        return False
    return isinstance(doc, dict) and doc.get("manifests") in (None, [])


def is_attestation(desc: oci.Descriptor) -> bool:
    """BuildKit's provenance and SBOM manifests, listed beside the images they describe."""
    if desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return desc.platform is not None and (desc.platform.os, desc.platform.architecture) == ("unknown", "unknown")


def _verified_blob(files: ArchiveFiles, desc: oci.Descriptor, what: str,
                   limit: int = oci.MAX_MANIFEST_BYTES, blob_name=_blob_name) -> bytes:
    what = f"{what} {oci.short_id(desc.digest)}"
    if desc.size > limit:
        raise oci.too_large(f"{files.path}: {what}", desc.size, limit)
    data = files.read(blob_name(desc.digest), limit)
    actual = oci.sha256_digest(data)
    if actual != desc.digest:
        raise DigestMismatch(f"{what}: content has digest {actual}, expected {desc.digest}",
                             "the file is corrupt or was altered")
    if len(data) != desc.size:
        raise BadImage(f"{what}: the blob is {len(data)} bytes but its descriptor says {desc.size}",
                       "the descriptor is wrong; write the layout again")
    return data


def _oci_images(files: ArchiveFiles) -> Iterator[SourceImage]:
    if files.exists("oci-layout"):
        layout = oci.load_json(files.read("oci-layout"), "oci-layout")
        version = layout.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise BadImage(f"{files.path}: oci-layout: unsupported imageLayoutVersion {oci.brief(version)}",
                           'minirun reads OCI image layouts 1.x ({"imageLayoutVersion": "1.0.0"})')
    index = oci.parse_index(files.read("index.json"), "index.json")
    images = [desc for desc in index.manifests if not is_attestation(desc)]
    if not images:
        raise BadImage(f"{files.path}: index.json lists no images")
    seen: dict[str, SourceImage] = {}
    for desc in images:
        if desc.digest in seen:
            _merge_refs(seen[desc.digest], archiverefs.oci_refs(files.path, desc.annotations))
            continue
        seen[desc.digest] = image = _oci_descriptor(files, desc, desc.annotations)
        yield image


def _oci_descriptor(files: ArchiveFiles, desc: oci.Descriptor, annotations: dict, depth: int = 0) -> SourceImage:
    """The image a descriptor names, through nested indexes (content addressing rules
    out cycles; the depth limit bounds the chain all the same)."""
    if desc.media_type in oci.INDEX_TYPES:
        if depth >= MAX_INDEX_DEPTH:
            raise BadImage(f"{files.path}: indexes nested more than {MAX_INDEX_DEPTH} deep",
                           "point index.json at the image manifests more directly")
        nested = oci.parse_index(_verified_blob(files, desc, "index"), f"index {oci.short_id(desc.digest)}")
        return _oci_descriptor(files, _pick_platform(nested, files.path), annotations, depth + 1)
    manifest_bytes = _verified_blob(files, desc, "manifest")
    return _manifest_image(files, manifest_bytes, f"manifest {oci.short_id(desc.digest)}",
                           archiverefs.oci_refs(files.path, annotations))


def _manifest_image(files: ArchiveFiles, manifest_bytes: bytes, what: str, refs: list[str],
                    blob_name=_blob_name, sniff: bool = False) -> SourceImage:
    """The image a verified manifest describes, its config and layers found by blob_name;
    sniff: tell each layer's compression from its first bytes, not its media type."""
    manifest = oci.parse_manifest(manifest_bytes, what)
    config_bytes = _verified_blob(files, manifest.config, "image config", oci.MAX_CONFIG_BYTES, blob_name)
    _check_config(config_bytes, len(manifest.layers), f"image config {oci.short_id(manifest.config.digest)}")
    for layer in manifest.layers:
        name = blob_name(layer.digest)
        check_size(layer.size, f"{files.path}: layer blob {oci.short_id(layer.digest)}")
        if not files.exists(name):
            raise BadImage(f"{files.path}: layer blob {layer.digest} is missing")
        if files.size(name) != layer.size:
            raise BadImage(f"{files.path}: layer blob {oci.short_id(layer.digest)} is {files.size(name)} "
                           f"bytes but the manifest says {layer.size}", "the file is corrupt or was altered")
    layers = [SourceLayer(_sniffed(files, blob_name(layer.digest)) if sniff else layer.media_type,
                          layer.digest, layer.size, _opener(files, blob_name(layer.digest)))
              for layer in manifest.layers]
    return SourceImage(config_bytes, layers, refs, manifest_bytes, files.path)


def _check_config(config_bytes: bytes, layers: int, what: str) -> None:
    """Parse the config now, so that no image of the archive is imported when one is malformed."""
    config = oci.parse_config(config_bytes, what)
    if len(config.diff_ids) != layers:
        raise BadImage(f"{what} lists {len(config.diff_ids)} diff_ids but the image has {layers} layers")


def _pick_platform(index: oci.Index, path: str) -> oci.Descriptor:
    """The host's image in a nested index, else its first image, else its first index."""
    host = oci.host_platform()
    images = [d for d in index.manifests if d.media_type not in oci.INDEX_TYPES and not is_attestation(d)]
    for desc in images:
        if desc.platform and (desc.platform.os, desc.platform.architecture) == (host.os, host.architecture):
            return desc
    if images:
        return images[0]
    nested = [d for d in index.manifests if d.media_type in oci.INDEX_TYPES]
    if nested:
        return nested[0]
    raise BadImage(f"{path}: nested index holds no image manifest")


# ---------------------------------------------------------------- dir (skopeo, podman docker-dir)

def _dir_transport(files: ArchiveFiles) -> bool:
    """containers/image's dir: format, told by its version file."""
    if not files.exists("version"):
        return False
    try:
        return files.read("version", 256).startswith(b"Directory Transport Version:")
    except MinirunError:
        return False


def _dir_image(files: ArchiveFiles) -> SourceImage:
    """manifest.json is the image manifest; each blob is a file named by its hex digest.
    The format keeps no name: the image loads untagged unless --tag names it."""
    manifest_bytes = files.read("manifest.json")
    doc = oci.load_json(manifest_bytes, f"{files.path}: manifest.json")
    if isinstance(doc, dict) and doc.get("mediaType") in oci.INDEX_TYPES:
        raise UnsupportedMediaType(f"{files.path}: a dir: copy of a multi-platform image (a manifest list)",
                                   "copy one platform: skopeo copy --override-arch ARCH SRC dir:PATH")
    # podman's docker-dir keeps layers uncompressed under a tar.gzip media type: Docker,
    # which loads it, goes by the bytes too
    return _manifest_image(files, manifest_bytes, f"{files.path}: manifest.json", [], oci.digest_hex, sniff=True)


# ---------------------------------------------------------------- docker-archive

def _docker_images(files: ArchiveFiles) -> Iterator[SourceImage]:
    what = f"{files.path}: manifest.json"
    entries = oci.parse_json(files.read("manifest.json"), what)
    if not isinstance(entries, list) or not entries:
        raise BadImage(f"{what} must be a non-empty list of images, got {oci.json_type(entries)}",
                       "write it with docker save, podman save or skopeo")
    seen: dict[str, SourceImage] = {}
    layers: dict[str, SourceLayer] = {}        # each layer file hashed once, however often named
    for i, entry in enumerate(entries):
        key = repr((entry.get("Config"), entry.get("Layers"))) if isinstance(entry, dict) else ""
        if key in seen:
            _merge_refs(seen[key], archiverefs.docker_refs(entry.get("RepoTags"), f"{what} entry {i}"))
            continue
        seen[key] = image = _docker_image(files, entry, f"{what} entry {i}", layers)
        yield image


def _docker_image(files: ArchiveFiles, entry: object, what: str, known: dict) -> SourceImage:
    if not isinstance(entry, dict):
        raise BadImage(f"{what} must be an object, got {oci.json_type(entry)}")
    config_name = _archive_name(entry.get("Config"), "Config", what)
    names = entry.get("Layers")
    if not isinstance(names, list):
        raise BadImage(f"{what}: 'Layers' must be a list of file names, got {oci.json_type(names)}")
    names = [_archive_name(name, f"Layers item {i}", what) for i, name in enumerate(names)]
    refs = archiverefs.docker_refs(entry.get("RepoTags"), what)
    config_bytes = files.read(config_name, oci.MAX_CONFIG_BYTES)
    _check_named_digest(files, config_name, config_bytes, "image config")
    _check_config(config_bytes, len(names), f"{files.path}: image config {config_name}")
    for name in names:
        if name not in known:
            known[name] = _docker_layer(files, name)
    return SourceImage(config_bytes, [known[name] for name in names], refs, None, files.path)


def _archive_name(value: object, field: str, what: str) -> str:
    """A file name from manifest.json: relative, and inside the archive."""
    if value is None:
        raise BadImage(f"{what} has no {field!r}", "write it with docker save, podman save or skopeo")
    if not isinstance(value, str) or not value:
        raise BadImage(f"{what}: {field!r} must be a file name, got {oci.brief(value)}")
    if value.startswith("/") or ".." in value.split("/") or "\0" in value:
        raise BadImage(f"{what}: {field} {oci.brief(value)} points outside the archive",
                       "docker save names files relative to the archive's root")
    return clean_name(value)


def _docker_layer(files: ArchiveFiles, name: str) -> SourceLayer:
    """A docker-archive names layers by path, not digest: hash the file to get one."""
    if not files.exists(name):
        raise BadImage(f"{files.path}: layer file {named(name)} is missing")
    check_size(files.size(name), f"{files.path}: layer file {named(name)}")
    digest = hashlib.sha256()
    with files.open(name) as f:
        head = f.read(4)
        digest.update(head)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    _check_named_digest(files, name, None, "layer", "sha256:" + digest.hexdigest())
    return SourceLayer(_media_type_of(head), "sha256:" + digest.hexdigest(), files.size(name),
                       _opener(files, name))


def _media_type_of(head: bytes) -> str:
    """A layer's media type told by its first 4 bytes, as Docker tells compression."""
    if head[:2] == b"\x1f\x8b":
        return oci.DOCKER_LAYER_GZIP
    if head == b"\x28\xb5\x2f\xfd":
        return oci.OCI_LAYER_ZSTD
    return oci.DOCKER_LAYER


def _sniffed(files: ArchiveFiles, name: str) -> str:
    if not files.exists(name):
        raise BadImage(f"{files.path}: layer blob {named(name)} is missing")
    with files.open(name) as f:
        return _media_type_of(f.read(4))


_NAMED_DIGEST = re.compile(r"(?:^|/)(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")


def _check_named_digest(files: ArchiveFiles, name: str, data: bytes | None, what: str,
                        actual: str | None = None) -> None:
    """Files named by their digest (<hex>.json, blobs/sha256/<hex>) must hash to that name."""
    match = _NAMED_DIGEST.search(name)
    if not match:
        return
    expected = "sha256:" + match.group(1)
    actual = actual or oci.sha256_digest(data or b"")
    if actual != expected:
        raise DigestMismatch(f"{what} {oci.short_id(expected)}: content has digest {actual}, "
                       f"expected {expected}", "the file is corrupt or was altered")


def _opener(files: ArchiveFiles, name: str):
    return lambda: files.open(name)


def load_error_context(path: str, exc: MinirunError) -> MinirunError:
    if not exc.message.startswith(path):
        exc.message = f"load {path}: {exc.message}"
        exc.args = (exc.message,)
    return exc
