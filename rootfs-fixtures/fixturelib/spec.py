"""Reading images/<image>.json and bundles/<bundle>.json (schema in README.md).

Specs are validated eagerly so that a typo fails the build with a message
naming the file, instead of producing a silently different image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .entries import BUSYBOX_LAYER, FixtureError

DEFAULT_CREATED = "2024-01-01T00:00:00Z"
IMAGE_KEYS = {"layers", "config", "created", "ref", "description"}
LAYER_KEYS = {"tree", "attrs", "opaque_marker"}
GENERATED_KEYS = {"count", "start", "path", "content"}


@dataclass(frozen=True)
class LayerSpec:
    """One layer to build. Equal LayerSpecs give byte-equal blobs (and are built once)."""

    source: str  # "busybox", "tree" or "generated"
    tree: str = ""  # layers/<tree> for source "tree"
    attrs: str = "{}"  # canonical JSON of {path: {mode, uid, gid}}; a str to stay hashable
    opaque_last: bool = False
    index: int = 0  # i for source "generated"
    path_pattern: str = ""
    content_pattern: str = ""

    @property
    def name(self) -> str:
        if self.source == "generated":
            return self.path_pattern.format(i=self.index)
        suffix = " (opaque markers last)" if self.opaque_last else ""
        return (self.tree or self.source) + suffix


@dataclass
class ImageSpec:
    name: str
    ref: str
    created: str
    config: dict
    layers: list[LayerSpec] = field(default_factory=list)


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise FixtureError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise FixtureError(f"{path}: expected a JSON object")
    return data


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise FixtureError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _layer_specs(item: object, where: str) -> list[LayerSpec]:
    """Expand one element of "layers": a name, a tree object, or a generated series."""
    if item == BUSYBOX_LAYER:
        return [LayerSpec(source="busybox")]
    if isinstance(item, str):
        item = {"tree": item}
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: a layer is a string or an object, got {item!r}")
    if "generated" in item:
        _check_keys(item, {"generated"}, where)
        return _generated_specs(item["generated"], where)
    _check_keys(item, LAYER_KEYS, where)
    tree = item.get("tree")
    if not isinstance(tree, str) or not tree or tree == BUSYBOX_LAYER or "/" in tree:
        raise FixtureError(f"{where}: bad or missing layer tree name {tree!r}")
    marker = item.get("opaque_marker", "first")
    if marker not in ("first", "last"):
        raise FixtureError(f"{where}: opaque_marker must be 'first' or 'last'")
    attrs = json.dumps(item.get("attrs", {}), sort_keys=True)
    return [LayerSpec(source="tree", tree=tree, attrs=attrs, opaque_last=marker == "last")]


def _generated_specs(gen: object, where: str) -> list[LayerSpec]:
    if not isinstance(gen, dict):
        raise FixtureError(f"{where}: generated must be an object")
    _check_keys(gen, GENERATED_KEYS, where)
    count, start = gen.get("count"), gen.get("start", 1)
    if not isinstance(count, int) or count < 1 or not isinstance(start, int):
        raise FixtureError(f"{where}: generated.count must be a positive integer")
    path = gen.get("path", "layers/{i}.txt")
    content = gen.get("content", "{i}\n")
    return [
        LayerSpec(source="generated", index=i, path_pattern=path, content_pattern=content)
        for i in range(start, start + count)
    ]


def load_image(path: str) -> ImageSpec:
    name = os.path.splitext(os.path.basename(path))[0]
    data = _load_json(path)
    _check_keys(data, IMAGE_KEYS, path)
    layers_in = data.get("layers")
    if not isinstance(layers_in, list) or not layers_in:
        raise FixtureError(f"{path}: 'layers' must be a non-empty list")
    layers = [ls for i, item in enumerate(layers_in) for ls in _layer_specs(item, f"{path} layers[{i}]")]
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise FixtureError(f"{path}: 'config' must be an object")
    ref = data.get("ref", f"localhost/{name}:latest")
    if ":" not in ref.rpartition("/")[2]:
        raise FixtureError(f"{path}: ref {ref!r} must end with a :tag")
    return ImageSpec(name, ref, data.get("created", DEFAULT_CREATED), config, layers)


def load_bundle(path: str) -> list[str]:
    """A bundle lists images that go together into one multi-image archive."""
    data = _load_json(path)
    _check_keys(data, {"images", "description"}, path)
    images = data.get("images")
    if not isinstance(images, list) or len(images) < 2 or not all(isinstance(i, str) for i in images):
        raise FixtureError(f"{path}: 'images' must list at least two image names")
    return images


def spec_names(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        return []
    return sorted(f[:-5] for f in os.listdir(directory) if f.endswith(".json"))
