"""Read images from the three file formats users meet, detected from content:

    OCI image layout directory   oci-layout + index.json + blobs/sha256/
    OCI archive                  the same layout inside a tar
    docker-archive               `docker save`: manifest.json + config + layer tars

Each yields SourceImage objects for importer.py. Manifests, indexes and
configs are verified against their digests and sizes, and parsed, here, for
every image before any is imported, so a malformed one leaves the store as it
was; layer blobs are verified by the importer as they stream.

Everything in an archive is untrusted: a document over its limit
(oci.MAX_MANIFEST_BYTES, oci.MAX_CONFIG_BYTES) is refused before it is read,
names from manifest.json may not be absolute or climb out with `..`, a file in
a layout dir must be a regular file (a FIFO would hang the read), indexes nest
at most MAX_INDEX_DEPTH deep, and a tar holds at most MAX_MEMBERS entries.
A docker-archive's `repositories` file is ignored, as docker ignores it when
manifest.json is there; an archive with only `repositories` (the format of
Docker before 1.10) is refused with a hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tarfile
from typing import BinaryIO, Iterator

from .. import oci
from ..oci import reference
from ..errors import BadImage, DigestMismatch, MinirunError, NotFound, UnsupportedMediaType, UsageError, named
from ..layer.limits import check_size, max_layer_bytes
from .importer import SourceImage, SourceLayer

_CONTAINERD_NAME = "io.containerd.image.name"
MAX_MEMBERS = 100_000        # a docker-archive or OCI archive holds a few files per layer
MAX_INDEX_DEPTH = 4          # index.json -> image index -> manifest is the usual depth


class _Files:
    """Uniform read access to a directory or a tar archive by relative name."""

    def __init__(self, path: str):
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.names: dict[str, tarfile.TarInfo] = {}
        if not os.path.isdir(path):
            try:
                self.tar = tarfile.open(path, "r:*")
                self._index_members()
            except FileNotFoundError:
                raise NotFound(f"{path}: no such file or directory") from None
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                # ValueError: tarfile's own, for malformed GNU sparse headers
                self.close()
                reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
                raise BadImage(f"{path}: not a readable tar archive or OCI layout ({oci.brief(reason, 100)})",
                               "check that the file is complete; load takes docker-archive, "
                               "OCI archive or OCI layout") from None
            except BaseException:
                self.close()
                raise

    def _index_members(self) -> None:
        """Each member is refused by its declared size before tarfile moves past it:
        moving past a member of a compressed archive decompresses it, and reading one
        that is sparse (in this tar) makes its holes into zeros."""
        limit = max_layer_bytes()
        for member in self.tar:
            if len(self.names) >= MAX_MEMBERS:
                raise BadImage(f"{self.path}: the archive holds more than {MAX_MEMBERS} entries",
                               "an image archive holds a few files per layer; check the file")
            check_size(member.size, f"{self.path}: archive member {named(member.name)}", limit)
            self.names[_clean(member.name)] = member

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return os.path.isfile(os.path.join(self.path, name))
        return self._resolve(name) is not None

    def open(self, name: str) -> BinaryIO:
        if self.tar is None:
            return self._open_regular(name)
        member = self._resolve(name)
        if member is None:
            raise BadImage(f"{self.path}: missing {named(name)}")
        return self.tar.extractfile(member)

    def _open_regular(self, name: str) -> BinaryIO:
        """A file of a layout dir; O_NONBLOCK so that a FIFO is refused rather than waited on."""
        try:
            fd = os.open(os.path.join(self.path, name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BadImage(f"{self.path}: missing {named(name)}") from None
        except OSError as exc:
            raise BadImage(f"{self.path}: cannot read {named(name)}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BadImage(f"{self.path}: {named(name)} is not a regular file",
                           "a layout's index.json, oci-layout and blobs are plain files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

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

    def read(self, name: str, limit: int = oci.MAX_MANIFEST_BYTES) -> bytes:
        """The whole file, refused before reading when it is over limit."""
        with self.open(name) as f:
            size = os.fstat(f.fileno()).st_size if self.tar is None else self._resolve(name).size
            if size > limit:
                raise oci.too_large(f"{self.path}: {named(name)}", size, limit)
            data = f.read(limit + 1)
        if len(data) > limit:                  # it grew while we read
            raise oci.too_large(f"{self.path}: {named(name)}", len(data), limit)
        if self.tar is not None and len(data) != size:
            raise BadImage(f"{self.path}: {named(name)} is truncated")
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


# ---------------------------------------------------------------- OCI layout / archive

def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + oci.digest_hex(digest)


def _verified_blob(files: _Files, desc: oci.Descriptor, what: str,
                   limit: int = oci.MAX_MANIFEST_BYTES) -> bytes:
    what = f"{what} {oci.short_id(desc.digest)}"
    if desc.size > limit:
        raise oci.too_large(f"{files.path}: {what}", desc.size, limit)
    data = files.read(_blob_name(desc.digest), limit)
    actual = oci.sha256_digest(data)
    if actual != desc.digest:
        raise DigestMismatch(f"{what}: content has digest {actual}, expected {desc.digest}",
                             "the file is corrupt or was altered")
    if len(data) != desc.size:
        raise BadImage(f"{what}: the blob is {len(data)} bytes but its descriptor says {desc.size}",
                       "the descriptor is wrong; write the layout again")
    return data


def _oci_images(files: _Files) -> Iterator[SourceImage]:
    if files.exists("oci-layout"):
        layout = oci.load_json(files.read("oci-layout"), "oci-layout")
        version = layout.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise BadImage(f"{files.path}: oci-layout: unsupported imageLayoutVersion {oci.brief(version)}",
                           'minirun reads OCI image layouts 1.x ({"imageLayoutVersion": "1.0.0"})')
    index = oci.parse_index(files.read("index.json"), "index.json")
    if not index.manifests:
        raise BadImage(f"{files.path}: index.json lists no images")
    for desc in index.manifests:
        yield _oci_descriptor(files, desc, desc.annotations)


def _oci_descriptor(files: _Files, desc: oci.Descriptor, annotations: dict, depth: int = 0) -> SourceImage:
    """The image a descriptor names, through nested indexes (content addressing rules
    out cycles; the depth limit bounds the chain all the same)."""
    if desc.media_type in oci.INDEX_TYPES:
        if depth >= MAX_INDEX_DEPTH:
            raise BadImage(f"{files.path}: indexes nested more than {MAX_INDEX_DEPTH} deep",
                           "point index.json at the image manifests more directly")
        nested = oci.parse_index(_verified_blob(files, desc, "index"), f"index {oci.short_id(desc.digest)}")
        return _oci_descriptor(files, _pick_platform(nested, files.path), annotations, depth + 1)
    manifest_bytes = _verified_blob(files, desc, "manifest")
    manifest = oci.parse_manifest(manifest_bytes, f"manifest {oci.short_id(desc.digest)}")
    config_bytes = _verified_blob(files, manifest.config, "image config", oci.MAX_CONFIG_BYTES)
    _check_config(config_bytes, len(manifest.layers), f"image config {oci.short_id(manifest.config.digest)}")
    for layer in manifest.layers:
        name = _blob_name(layer.digest)
        check_size(layer.size, f"{files.path}: layer blob {oci.short_id(layer.digest)}")
        if not files.exists(name):
            raise BadImage(f"{files.path}: layer blob {layer.digest} is missing")
        if files.size(name) != layer.size:
            raise BadImage(f"{files.path}: layer blob {oci.short_id(layer.digest)} is {files.size(name)} "
                           f"bytes but the manifest says {layer.size}", "the file is corrupt or was altered")
    layers = [SourceLayer(layer.media_type, layer.digest, layer.size,
                          _opener(files, _blob_name(layer.digest)))
              for layer in manifest.layers]
    return SourceImage(config_bytes, layers, _oci_refs(files.path, annotations),
                       manifest_bytes, files.path)


def _check_config(config_bytes: bytes, layers: int, what: str) -> None:
    """Parse the config now, so that no image of the archive is imported when one is malformed."""
    config = oci.parse_config(config_bytes, what)
    if len(config.diff_ids) != layers:
        raise BadImage(f"{what} lists {len(config.diff_ids)} diff_ids but the image has {layers} layers")


def _pick_platform(index: oci.Index, path: str) -> oci.Descriptor:
    """The host's image in a nested index, else its first image, else its first index."""
    host = oci.host_platform()
    images = [d for d in index.manifests if d.media_type not in oci.INDEX_TYPES]
    for desc in images:
        if desc.platform and (desc.platform.os, desc.platform.architecture) == (host.os, host.architecture):
            return desc
    if images:
        return images[0]
    if index.manifests:
        return index.manifests[0]
    raise BadImage(f"{path}: nested index holds no image manifest")


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
    what = f"{files.path}: manifest.json"
    entries = oci.parse_json(files.read("manifest.json"), what)
    if not isinstance(entries, list) or not entries:
        raise BadImage(f"{what} must be a non-empty list of images, got {oci.json_type(entries)}",
                       "write it with docker save, podman save or skopeo")
    for i, entry in enumerate(entries):
        yield _docker_image(files, entry, f"{what} entry {i}")


def _docker_image(files: _Files, entry: object, what: str) -> SourceImage:
    if not isinstance(entry, dict):
        raise BadImage(f"{what} must be an object, got {oci.json_type(entry)}")
    config_name = _archive_name(entry.get("Config"), "Config", what)
    names = entry.get("Layers")
    if not isinstance(names, list):
        raise BadImage(f"{what}: 'Layers' must be a list of file names, got {oci.json_type(names)}")
    names = [_archive_name(name, f"Layers item {i}", what) for i, name in enumerate(names)]
    refs = _docker_refs(entry.get("RepoTags"), what)
    config_bytes = files.read(config_name, oci.MAX_CONFIG_BYTES)
    _check_named_digest(files, config_name, config_bytes, "image config")
    _check_config(config_bytes, len(names), f"{files.path}: image config {config_name}")
    layers = [_docker_layer(files, name) for name in names]
    return SourceImage(config_bytes, layers, refs, None, files.path)


def _archive_name(value: object, field: str, what: str) -> str:
    """A file name from manifest.json: relative, and inside the archive."""
    if value is None:
        raise BadImage(f"{what} has no {field!r}", "write it with docker save, podman save or skopeo")
    if not isinstance(value, str) or not value:
        raise BadImage(f"{what}: {field!r} must be a file name, got {oci.brief(value)}")
    if value.startswith("/") or ".." in value.split("/") or "\0" in value:
        raise BadImage(f"{what}: {field} {oci.brief(value)} points outside the archive",
                       "docker save names files relative to the archive's root")
    return _clean(value)


def _docker_refs(tags: object, what: str) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise BadImage(f"{what}: 'RepoTags' must be a list of strings")
    try:
        return [str(reference.parse(tag)) for tag in tags]
    except UsageError as exc:
        raise BadImage(f"{what}: {exc.message}", "load it with --tag REF") from None


def _docker_layer(files: _Files, name: str) -> SourceLayer:
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
