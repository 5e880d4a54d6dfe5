"""Read images from the three file formats users meet, detected from content:

    OCI image layout directory   oci-layout + index.json + blobs/sha256/
    OCI archive                  the same layout inside a tar
    docker-archive               `docker save`: manifest.json + config + layer tars

Each yields SourceImage objects for importer.py. Manifests, indexes and
configs are verified against their digests here; layer blobs are verified
by the importer as they stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
from typing import BinaryIO, Iterator

from .. import oci, reference
from ..errors import BadImage, DigestMismatch, MinirunError, NotFound, UsageError
from .importer import SourceImage, SourceLayer

_CONTAINERD_NAME = "io.containerd.image.name"


class _Files:
    """Uniform read access to a directory or a tar archive by relative name."""

    def __init__(self, path: str):
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.names: dict[str, tarfile.TarInfo] = {}
        if not os.path.isdir(path):
            try:
                self.tar = tarfile.open(path, "r:*")
                for member in self.tar.getmembers():
                    self.names[_clean(member.name)] = member
            except FileNotFoundError:
                raise NotFound(f"{path}: no such file or directory") from None
            except (tarfile.TarError, EOFError, OSError) as exc:
                reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
                raise BadImage(f"{path}: not a readable tar archive or OCI layout ({reason})",
                               "check that the file is complete; load takes docker-archive, "
                               "OCI archive or OCI layout") from None

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return os.path.isfile(os.path.join(self.path, name))
        return self._resolve(name) is not None

    def open(self, name: str) -> BinaryIO:
        if self.tar is None:
            try:
                return open(os.path.join(self.path, name), "rb")
            except FileNotFoundError:
                raise BadImage(f"{self.path}: missing {name}") from None
            except OSError as exc:
                raise BadImage(f"{self.path}: cannot read {name}: {exc.strerror}") from None
        member = self._resolve(name)
        if member is None:
            raise BadImage(f"{self.path}: archive has no file {name}")
        return self.tar.extractfile(member)

    def _resolve(self, name: str, hops: int = 0) -> tarfile.TarInfo | None:
        """The regular file a name stands for; `docker save` links repeated layers
        to an earlier copy, by symlink or hard link, always inside the archive."""
        member = self.names.get(name)
        if member is None or hops > 8:
            return None
        if member.isfile():
            return member
        if member.issym():
            target = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
        elif member.islnk():
            target = _clean(member.linkname)
        else:
            return None
        if target.startswith("../") or target.startswith("/"):
            return None
        return self._resolve(target, hops + 1)

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise BadImage(f"{self.path}: {name} is larger than {limit >> 20} MiB")
        if self.tar is not None and len(data) != self._resolve(name).size:
            raise BadImage(f"{self.path}: {name} is truncated")
        return data

    def size(self, name: str) -> int:
        if self.tar is None:
            return os.path.getsize(os.path.join(self.path, name))
        return self._resolve(name).size

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _clean(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")


@contextlib.contextmanager
def open_images(path: str) -> Iterator[list[SourceImage]]:
    """Every image in the archive or layout at path (format detected from content);
    their layer streams stay readable until the context ends."""
    files = _Files(path)
    try:
        if files.exists("oci-layout") or files.exists("index.json"):
            images = list(_oci_images(files))
        elif files.exists("manifest.json"):
            images = list(_docker_images(files))
        else:
            raise BadImage(f"{path}: neither an OCI layout (no oci-layout or index.json) "
                           "nor a docker-archive (no manifest.json)")
        yield images
    finally:
        files.close()


# ---------------------------------------------------------------- OCI layout / archive

def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + oci.digest_hex(digest)


def _verified_blob(files: _Files, desc: oci.Descriptor, what: str) -> bytes:
    data = files.read(_blob_name(desc.digest))
    actual = oci.sha256_digest(data)
    if actual != desc.digest:
        raise DigestMismatch(f"{what} {oci.short_id(desc.digest)}: content has digest {actual}, "
                       f"expected {desc.digest}", "the file is corrupt or was altered")
    return data


def _oci_images(files: _Files) -> Iterator[SourceImage]:
    if files.exists("oci-layout"):
        layout = oci.load_json(files.read("oci-layout"), "oci-layout")
        version = layout.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise BadImage(f"{files.path}: unsupported OCI layout version {version!r}")
    index = oci.parse_index(files.read("index.json"), "index.json")
    if not index.manifests:
        raise BadImage(f"{files.path}: index.json lists no images")
    for desc in index.manifests:
        yield from _oci_descriptor(files, desc, desc.annotations)


def _oci_descriptor(files: _Files, desc: oci.Descriptor, annotations: dict) -> Iterator[SourceImage]:
    if desc.media_type in oci.INDEX_TYPES:
        nested = oci.parse_index(_verified_blob(files, desc, "index"), f"index {oci.short_id(desc.digest)}")
        yield from _oci_descriptor(files, _pick_platform(nested, files.path), annotations)
        return
    manifest_bytes = _verified_blob(files, desc, "manifest")
    manifest = oci.parse_manifest(manifest_bytes, f"manifest {oci.short_id(desc.digest)}")
    config_bytes = _verified_blob(files, manifest.config, "image config")
    layers = [SourceLayer(layer.media_type, layer.digest, layer.size,
                          _opener(files, _blob_name(layer.digest)))
              for layer in manifest.layers]
    for layer in manifest.layers:
        if not files.exists(_blob_name(layer.digest)):
            raise BadImage(f"{files.path}: layer blob {layer.digest} is missing")
    yield SourceImage(config_bytes, layers, _oci_refs(files.path, annotations),
                      manifest_bytes, files.path)


def _pick_platform(index: oci.Index, path: str) -> oci.Descriptor:
    host = oci.host_platform()
    images = [d for d in index.manifests if d.media_type not in oci.INDEX_TYPES]
    for desc in images:
        if desc.platform and (desc.platform.os, desc.platform.architecture) == (host.os, host.architecture):
            return desc
    if not images:
        raise BadImage(f"{path}: nested index holds no image manifest")
    return images[0]


def _oci_refs(path: str, annotations: dict) -> list[str]:
    try:
        return _oci_refs_unchecked(path, annotations)
    except UsageError as exc:
        raise BadImage(f"{path}: the image's name annotation is invalid: {exc.message}",
                       "load it with --tag REF") from None


def _oci_refs_unchecked(path: str, annotations: dict) -> list[str]:
    full = annotations.get(_CONTAINERD_NAME)
    name = annotations.get(oci.ANNOTATION_REF_NAME)
    if isinstance(full, str) and full:
        return [str(reference.parse(full))]
    if not isinstance(name, str) or not name:
        return []
    if "/" in name or ":" in name:
        return [str(reference.parse(name))]
    return [str(reference.parse(f"localhost/{_repo_from_path(path)}:{name}"))]


def _repo_from_path(path: str) -> str:
    """ch3_myapp/ or ch3_myapp.tar -> ch3_myapp, folded to a valid repository name."""
    base = os.path.basename(os.path.normpath(path))
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    base = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("._-")
    return base or "image"


# ---------------------------------------------------------------- docker-archive

def _docker_images(files: _Files) -> Iterator[SourceImage]:
    try:
        entries = json.loads(files.read("manifest.json"))
    except ValueError as exc:
        raise BadImage(f"{files.path}: manifest.json is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise BadImage(f"{files.path}: manifest.json must be a non-empty list")
    for i, entry in enumerate(entries):
        what = f"{files.path}: manifest.json entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list) \
                or not all(isinstance(x, str) for x in entry["Layers"]):
            raise BadImage(f"{what} needs a string Config and a list of Layers")
        config_name = _clean(entry["Config"])
        config_bytes = files.read(config_name)
        _check_named_digest(files, config_name, config_bytes, "image config")
        layers = [_docker_layer(files, _clean(name)) for name in entry["Layers"]]
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list):
            raise BadImage(f"{what}: RepoTags must be a list")
        try:
            refs = [str(reference.parse(tag)) for tag in tags]
        except UsageError as exc:
            raise BadImage(f"{what}: {exc.message}") from None
        yield SourceImage(config_bytes, layers, refs, None, files.path)


def _docker_layer(files: _Files, name: str) -> SourceLayer:
    """A docker-archive names layers by path, not digest: hash the file to get one."""
    if not files.exists(name):
        raise BadImage(f"{files.path}: layer file {name} is missing")
    digest = hashlib.sha256()
    with files.open(name) as f:
        head = f.read(4)
        digest.update(head)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    _check_named_digest(files, name, None, "layer", "sha256:" + digest.hexdigest())
    if head[:2] == b"\x1f\x8b":
        media_type = oci.DOCKER_LAYER_GZIP
    elif head == b"\x28\xb5\x2f\xfd":
        media_type = oci.OCI_LAYER_ZSTD
    else:
        media_type = oci.DOCKER_LAYER
    return SourceLayer(media_type, "sha256:" + digest.hexdigest(), files.size(name), _opener(files, name))


_NAMED_DIGEST = re.compile(r"(?:^|/)(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")


def _check_named_digest(files: _Files, name: str, data: bytes | None, what: str,
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


def _opener(files: _Files, name: str):
    return lambda: files.open(name)


def load_error_context(path: str, exc: MinirunError) -> MinirunError:
    if not exc.message.startswith(path):
        exc.message = f"load {path}: {exc.message}"
        exc.args = (exc.message,)
    return exc
