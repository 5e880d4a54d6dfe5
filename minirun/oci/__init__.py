"""Pure models, no I/O. The package module itself is the OCI and Docker image
model (so `from minirun import oci` costs a run no extra import); beside it:

    reference.py     image references: registry, repository, tag, digest
    jsondoc.py       strict JSON documents: limits, one-line errors
    imageconfig.py   image config changes (commit --change, import)

The image model: media types, digests, descriptors, manifests,
indexes and configs. Pure data and parsing; no I/O happens here.

Parsers take the raw bytes of a blob and either return a frozen dataclass or
raise BadImage with a one-line message, never a traceback from a stray key,
a wrong type, a huge number or deep nesting. The JSON is read strictly (see
parse_json): UTF-8, no NaN, no duplicate keys, at most MAX_JSON_DEPTH deep.

Limits (readers check them before reading a document whole; defined in jsondoc.py):
    MAX_MANIFEST_BYTES  4 MiB   manifests, indexes, index.json, manifest.json (as the
                                distribution spec suggests registries limit manifests)
    MAX_CONFIG_BYTES   16 MiB   image configs (what a registry pull accepts too)
"""

from __future__ import annotations

import os

from ..lib import jsonio
from ..lib.names import is_sha256_digest
from ..errors import BadImage, UnsupportedMediaType, brief
from .jsondoc import (MAX_CONFIG_BYTES, MAX_JSON_DEPTH, MAX_MANIFEST_BYTES, get_field,  # noqa: F401
                      json_type, load_json, parse_json, str_list, str_map, text_field, too_large)
from ..lib.frozen import dataclass, field

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

MAX_SIZE = 2 ** 63 - 1       # a descriptor's size is an int64

def sha256_digest(data: bytes) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: object, what: str = "digest") -> str:
    """Return value if it is a well-formed sha256 digest, else raise BadImage."""
    if not isinstance(value, str) or not is_sha256_digest(value):
        raise BadImage(f"invalid {what} {brief(value)}: expected sha256:<64 hex digits>")
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
    raise UnsupportedMediaType(f"unknown layer media type {brief(media_type)}",
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
        return jsonio.dumps(doc, separators=(",", ":")).encode()


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

def parse_platform(doc: object, what: str) -> Platform | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise BadImage(f"{what}: 'platform' must be an object, got {json_type(doc)}")
    where = f"{what} platform"
    return Platform(text_field(doc, "os", where), text_field(doc, "architecture", where),
                    text_field(doc, "variant", where))


def parse_descriptor(doc: object, what: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise BadImage(f"{what} must be an object, got {json_type(doc)}")
    media_type = get_field(doc, "mediaType", str, what, nullable=False, default="")
    digest = check_digest(get_field(doc, "digest", str, what, required=True), f"{what} digest")
    size = get_field(doc, "size", int, what, required=True, nullable=False)
    if not 0 <= size <= MAX_SIZE:
        raise BadImage(f"{what}: size {brief(size)} is out of range (0 to 2^63-1 bytes)")
    return Descriptor(media_type, digest, size, str_map(doc, "annotations", what),
                      parse_platform(doc.get("platform"), what))


def _kind(doc: dict, what: str) -> str:
    """The media type a manifest or index document declares, or guesses from its shape."""
    media_type = get_field(doc, "mediaType", str, what, nullable=False, default="")
    version = doc.get("schemaVersion")
    if type(version) is int and version == 1:
        return media_type or DOCKER_SCHEMA1
    if "schemaVersion" in doc and (type(version) is not int or version != 2):
        raise BadImage(f"{what}: schemaVersion must be 2, got {brief(version)}")
    if media_type:
        return media_type
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    raise BadImage(f"{what} is neither an image manifest nor an index")


def media_type_of(data: bytes, what: str) -> str:
    """The mediaType a manifest or index declares, guessing from its shape if it declares none."""
    return _kind(load_json(data, what), what)


def _unambiguous(doc: dict, what: str, foreign: tuple[str, ...], kind: str) -> None:
    """A document with the fields of both a manifest and an index could be read as
    either (CVE-2021-41190): refuse it, as containerd does."""
    for key in foreign:
        if key in doc:
            raise BadImage(f"{what} is an {kind} but also has {key!r}, which makes it ambiguous",
                           "an image manifest has config and layers; an index has manifests")


def parse_manifest(data: bytes, what: str = "manifest") -> Manifest:
    doc = load_json(data, what)
    media_type = _kind(doc, what)
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedMediaType(f"{what} uses Docker schema 1, which is deprecated and unsupported",
                                   "rebuild or re-push the image with a current tool")
    if media_type not in MANIFEST_TYPES:
        raise UnsupportedMediaType(f"{what} has unsupported media type {brief(media_type)}")
    _unambiguous(doc, what, ("manifests",), "image manifest")
    config = parse_descriptor(get_field(doc, "config", dict, what, required=True), f"{what} config")
    layers_doc = get_field(doc, "layers", list, what, required=True, nullable=False)
    layers = tuple(parse_descriptor(d, f"{what} layer {i}") for i, d in enumerate(layers_doc))
    for layer in layers:
        layer_compression(layer.media_type)
    return Manifest(media_type, config, layers)


def parse_index(data: bytes, what: str = "index") -> Index:
    doc = load_json(data, what)
    media_type = get_field(doc, "mediaType", str, what, nullable=False, default="") or OCI_INDEX
    if media_type not in INDEX_TYPES:
        raise UnsupportedMediaType(f"{what} has unsupported media type {brief(media_type)}")
    _kind(doc, what)
    _unambiguous(doc, what, ("config", "layers"), "index")
    entries = get_field(doc, "manifests", list, what, required=True, nullable=False)
    return Index(media_type, tuple(parse_descriptor(d, f"{what} entry {i}")
                                   for i, d in enumerate(entries)))


def parse_config(data: bytes, what: str = "image config") -> ImageConfig:
    doc = load_json(data, what, MAX_CONFIG_BYTES)
    rootfs = get_field(doc, "rootfs", dict, what, required=True)
    if get_field(rootfs, "type", str, f"{what} rootfs", default="layers") != "layers":
        raise BadImage(f"{what}: rootfs type {brief(rootfs['type'])} is not 'layers'")
    diff_ids = str_list(rootfs, "diff_ids", f"{what} rootfs")
    for diff_id in diff_ids:
        check_digest(diff_id, f"{what} diff_id")
    cfg = get_field(doc, "config", dict, what, default={})
    where = f"{what} field 'config'"
    _check_changeable(cfg, where)
    _check_history(doc, what)
    return ImageConfig(
        architecture=text_field(doc, "architecture", what),
        os=text_field(doc, "os", what),
        variant=text_field(doc, "variant", what),
        created=text_field(doc, "created", what),
        diff_ids=diff_ids,
        env=str_list(cfg, "Env", where, no_nul=True),
        entrypoint=str_list(cfg, "Entrypoint", where, no_nul=True),
        cmd=str_list(cfg, "Cmd", where, no_nul=True),
        working_dir=text_field(cfg, "WorkingDir", where, no_nul=True),
        user=text_field(cfg, "User", where, no_nul=True),
        raw=doc,
    )


def _check_changeable(cfg: dict, what: str) -> None:
    """The fields `commit -c` edits must have the types it expects."""
    str_map(cfg, "Labels", what)
    str_list(cfg, "OnBuild", what)
    for key in ("ExposedPorts", "Volumes"):
        get_field(cfg, key, dict, what)


def _check_history(doc: dict, what: str) -> None:
    """`history` shows each entry's texts: they must be strings (not null) where present."""
    for i, entry in enumerate(get_field(doc, "history", list, what, default=[])):
        where = f"{what} history entry {i}"
        if not isinstance(entry, dict):
            raise BadImage(f"{where} must be an object, got {json_type(entry)}")
        for key in ("created", "created_by", "comment", "author"):
            get_field(entry, key, str, where, nullable=False)
        get_field(entry, "empty_layer", bool, where, nullable=False)


def host_platform() -> Platform:
    """The host's platform in Go's naming, which image configs use."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    variant = "v7" if machine == "armv7l" else ""
    return Platform("linux", arch, variant)
