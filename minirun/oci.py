"""OCI and Docker image models: media types, digests, descriptors, manifests,
indexes and configs. Pure data and parsing; no I/O happens here.

Parsers take the raw bytes of a blob and either return a frozen dataclass or
raise BadImage with a one-line message, never a traceback from a stray key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from .errors import BadImage, UnsupportedMediaType

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYOUT_VERSION = "1.0.0"

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

# Layer media type -> compression of the blob.
LAYER_COMPRESSION = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
}

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: object, what: str = "digest") -> str:
    """Return value if it is a well-formed sha256 digest, else raise BadImage."""
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise BadImage(f"invalid {what} {value!r}: expected sha256:<64 hex digits>")
    return value


def digest_hex(digest: str) -> str:
    return check_digest(digest)[len("sha256:"):]


def short_id(digest: str) -> str:
    """The 12-hex-digit form docker prints."""
    return digest.split(":", 1)[-1][:12]


def chain_ids(diff_ids: list[str]) -> list[str]:
    """chain_id(L1) = diff_id(L1); chain_id(Ln) = sha256(chain_id(Ln-1) + " " + diff_id(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out


def layer_compression(media_type: str) -> str:
    """Compression of a layer blob, or UnsupportedMediaType with the reason."""
    if media_type in LAYER_COMPRESSION:
        return LAYER_COMPRESSION[media_type]
    if media_type == DOCKER_FOREIGN_LAYER or "nondistributable" in media_type:
        raise UnsupportedMediaType(
            f"foreign (non-distributable) layer {media_type} is not supported",
            "use an image built without Windows or foreign layers")
    raise UnsupportedMediaType(f"unknown layer media type {media_type!r}",
                               "minirun handles tar, tar+gzip and tar+zstd layers")


def layer_type_for(manifest_type: str, media_type: str) -> str:
    """The same layer compression named in the manifest's own family (Docker
    schema 2 or OCI); zstd has no Docker name and keeps the OCI one."""
    compression = LAYER_COMPRESSION.get(media_type)
    if compression is None:
        return media_type
    if manifest_type == DOCKER_MANIFEST:
        return {"none": DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP}.get(compression, media_type)
    return {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    def to_bytes(self) -> bytes:
        doc = {"schemaVersion": 2, "mediaType": self.media_type,
               "config": self.config.to_json(),
               "layers": [layer.to_json() for layer in self.layers]}
        return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config that minirun acts on; `raw` keeps the rest."""
    architecture: str
    os: str
    variant: str
    created: str
    diff_ids: tuple[str, ...]
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str
    user: str
    raw: dict = field(compare=False, hash=False, repr=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


# ---------------------------------------------------------------- parsing

def load_json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadImage(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadImage(f"{what} is nested too deeply to be an image document") from None
    if not isinstance(doc, dict):
        raise BadImage(f"{what} must be a JSON object, got {type(doc).__name__}")
    return doc


def _get(doc: dict, key: str, kind: type | tuple, what: str, default=None):
    value = doc.get(key, default)
    if value is None and default is None:
        raise BadImage(f"{what} has no {key!r}")
    if not isinstance(value, kind):
        raise BadImage(f"{what}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _str_list(doc: dict, key: str, what: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadImage(f"{what}: {key!r} must be a list of strings")
    return tuple(value)


def parse_platform(doc: object, what: str) -> Platform | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise BadImage(f"{what}: platform must be an object")
    return Platform(str(doc.get("os", "")), str(doc.get("architecture", "")),
                    str(doc.get("variant", "") or ""))


def parse_descriptor(doc: object, what: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise BadImage(f"{what} must be an object")
    media_type = _get(doc, "mediaType", str, what, default="")
    digest = check_digest(doc.get("digest"), f"{what} digest")
    size = _get(doc, "size", int, what)
    if isinstance(size, bool) or size < 0:
        raise BadImage(f"{what}: size must be a non-negative integer")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise BadImage(f"{what}: annotations must be an object")
    return Descriptor(media_type, digest, size, annotations,
                      parse_platform(doc.get("platform"), what))


def media_type_of(data: bytes, what: str) -> str:
    """The mediaType a manifest or index declares, guessing from its shape if it declares none."""
    doc = load_json(data, what)
    media_type = doc.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    raise BadImage(f"{what} is neither an image manifest nor an index")


def parse_manifest(data: bytes, what: str = "manifest") -> Manifest:
    doc = load_json(data, what)
    media_type = media_type_of(data, what)
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedMediaType(f"{what} uses Docker schema 1, which is deprecated and unsupported",
                                   "rebuild or re-push the image with a current tool")
    if media_type not in MANIFEST_TYPES:
        raise UnsupportedMediaType(f"{what} has unsupported media type {media_type!r}")
    config = parse_descriptor(doc.get("config"), f"{what} config")
    layers_doc = doc.get("layers")
    if not isinstance(layers_doc, list):
        raise BadImage(f"{what}: 'layers' must be a list")
    layers = tuple(parse_descriptor(d, f"{what} layer {i}") for i, d in enumerate(layers_doc))
    for layer in layers:
        layer_compression(layer.media_type)
    return Manifest(media_type, config, layers)


def parse_index(data: bytes, what: str = "index") -> Index:
    doc = load_json(data, what)
    media_type = doc.get("mediaType") or OCI_INDEX
    if media_type not in INDEX_TYPES:
        raise UnsupportedMediaType(f"{what} has unsupported media type {media_type!r}")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise BadImage(f"{what}: 'manifests' must be a list")
    return Index(media_type, tuple(parse_descriptor(d, f"{what} entry {i}")
                                   for i, d in enumerate(entries)))


def parse_config(data: bytes, what: str = "image config") -> ImageConfig:
    doc = load_json(data, what)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict):
        raise BadImage(f"{what} has no 'rootfs'")
    diff_ids = _str_list(rootfs, "diff_ids", f"{what} rootfs")
    for diff_id in diff_ids:
        check_digest(diff_id, f"{what} diff_id")
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise BadImage(f"{what}: 'config' must be an object")
    working_dir = cfg.get("WorkingDir") or ""
    user = cfg.get("User") or ""
    if not isinstance(working_dir, str) or not isinstance(user, str):
        raise BadImage(f"{what}: WorkingDir and User must be strings")
    return ImageConfig(
        architecture=str(doc.get("architecture") or ""),
        os=str(doc.get("os") or ""),
        variant=str(doc.get("variant") or ""),
        created=str(doc.get("created") or ""),
        diff_ids=diff_ids,
        env=_str_list(cfg, "Env", what),
        entrypoint=_str_list(cfg, "Entrypoint", what),
        cmd=_str_list(cfg, "Cmd", what),
        working_dir=working_dir,
        user=user,
        raw=doc,
    )


def host_platform() -> Platform:
    """The host's platform in Go's naming, which image configs use."""
    import platform as _platform
    machine = _platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    variant = "v7" if machine == "armv7l" else ""
    return Platform("linux", arch, variant)
