"""From an ImageSpec to the three blob kinds of an image: layers, config, manifest."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass

from . import entries as ent
from .spec import ImageSpec, LayerSpec
from .tarball import Layer, build_layer, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# uname -m -> GOARCH, the naming OCI configs use.
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "i386": "386", "i686": "386", "armv7l": "arm", "armv6l": "arm"}


def host_platform() -> dict:
    machine = platform.machine().lower()
    plat = {"architecture": _GO_ARCH.get(machine, machine), "os": "linux"}
    if machine.startswith("armv"):
        plat["variant"] = machine[3:5]  # "v7" / "v6"
    return plat


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace: the same object always hashes the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class BuiltImage:
    spec: ImageSpec
    layers: list[Layer]
    config: bytes
    manifest: bytes

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)

    def blobs(self) -> dict[str, bytes]:
        """Every blob this image needs, keyed by digest (shared layers appear once)."""
        out = {self.manifest_digest: self.manifest, self.config_digest: self.config}
        for layer in self.layers:
            out[layer.digest] = layer.blob
        return out

    def manifest_descriptor(self, ref_name: str) -> dict:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": len(self.manifest),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
            "platform": host_platform(),
        }


class LayerFactory:
    """Builds each distinct LayerSpec once, so shared layers are also shared bytes."""

    def __init__(self, layers_dir: str, busybox: str | None):
        self.layers_dir = layers_dir
        self.busybox_arg = busybox
        self._cache: dict[LayerSpec, Layer] = {}

    def get(self, ls: LayerSpec) -> Layer:
        if ls not in self._cache:
            self._cache[ls] = build_layer(ls.name, self._entries(ls), ls.opaque_last)
        return self._cache[ls]

    def _entries(self, ls: LayerSpec) -> dict[str, ent.Entry]:
        if ls.source == "busybox":
            return ent.busybox_entries(ent.find_busybox(self.busybox_arg))
        if ls.source == "generated":
            return ent.generated_entries(ls.path_pattern, ls.content_pattern, ls.index)
        where = f"layer {ls.tree}"
        entries = ent.read_tree(os.path.join(self.layers_dir, ls.tree))
        if not entries:
            raise ent.FixtureError(f"{where}: the tree is empty")
        ent.apply_attrs(entries, json.loads(ls.attrs), where)
        ent.add_parents(entries)
        return entries


def _history(spec: ImageSpec, layers: list[Layer]) -> list[dict]:
    """One entry per layer, then an empty_layer entry for the config, as docker build does."""
    history = [{"created": spec.created, "created_by": f"minirun-fixture: layer {layer.name}"}
               for layer in layers]
    if spec.config:
        keys = ", ".join(sorted(spec.config))
        history.append({"created": spec.created, "created_by": f"minirun-fixture: config {keys}",
                        "empty_layer": True})
    return history


def build_image(spec: ImageSpec, factory: LayerFactory) -> BuiltImage:
    layers = [factory.get(ls) for ls in spec.layers]
    config = canonical_json({
        **host_platform(),
        "created": spec.created,
        "config": spec.config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": _history(spec, layers),
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": len(layer.blob)}
                   for layer in layers],
    })
    return BuiltImage(spec, layers, config, manifest)
