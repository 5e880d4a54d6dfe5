"""Where the bytes go: which images and containers use each cached layer, what
sharing layers saves, the `system df` summary, and the tree of images drawn as
branches of the layers they share. Computation only; the CLI prints.

`inventory_for()` reads the documents the store keeps (images.json, each
layer's meta.json, each container's config.json and state; for `system df`
also blob sizes and upper dir sizes, the one tree walk) into an Inventory;
every other function is pure over it. Layer sizes are unpacked bytes
(LayerMeta.size), what the layer cache holds on disk.
"""

from __future__ import annotations

import os
from ..lib.frozen import dataclass, field

from ..lib import fsutil
from ..oci import short_id


@dataclass(frozen=True)
class Inventory:
    """The store's documents, as read."""
    images: object                    # images.json: a store/index.py Catalog
    layers: dict[str, object]         # layer key -> its records.LayerMeta
    containers: list                  # control.container_records: id, config, state
    blobs: dict[str, int] = field(default_factory=dict)        # digest -> bytes
    upper_sizes: dict[str, int] = field(default_factory=dict)  # container id -> upper dir bytes
    unreadable: tuple[str, ...] = ()  # container ids whose upper dir could not all be read
    downloads: dict[str, int] = field(default_factory=dict)    # partial download digest -> bytes


def inventory_for(store, sizes: bool = False) -> Inventory:
    """Read the store's documents; with sizes, also stat blobs and walk upper dirs."""
    from ..errors import DamagedRecord, warn_damaged
    from .control import container_records
    layers = {}
    for key in _listed(store.layers.list):
        try:
            layers[key] = store.layers.meta(key)
        except FileNotFoundError:
            continue                  # removed (or being removed) meanwhile
        except DamagedRecord as err:
            warn_damaged(err)         # said once; the rest is counted without it
            continue
    containers = container_records(store)
    if not sizes:
        return Inventory(store.images.read(), layers, containers)
    blobs = {}
    for digest in _listed(store.blobs.list):
        try:
            blobs[digest] = os.lstat(store.blobs.path(digest)).st_size
        except OSError:
            continue
    uppers, unreadable = {}, []
    for container in containers:
        uppers[container.id], complete = fsutil.tree_size(store.containers.upper(container.id))
        if not complete:
            unreadable.append(container.id)
    downloads = {digest: size for digest, _, size in store.partial_downloads()}
    return Inventory(store.images.read(), layers, containers, blobs, uppers, tuple(unreadable), downloads)


def _listed(lister) -> list[str]:
    try:
        return lister()
    except FileNotFoundError:        # no store yet: nothing cached
        return []


# ------------------------------------------------------------------ names

def image_names(doc) -> dict[str, tuple[str, ...]]:
    """Each image's familiar references (doc: a Catalog), sorted; () for a dangling image."""
    names: dict[str, list[str]] = {image_id: [] for image_id in doc.images}
    for ref, image_id in doc.tags.items():
        if image_id in names:
            names[image_id].append(_familiar(ref))
    return {image_id: tuple(sorted(refs)) for image_id, refs in names.items()}


def _familiar(ref: str) -> str:
    from ..errors import UsageError
    from ..oci.reference import parse
    try:
        return parse(ref).familiar()
    except UsageError:
        return ref


def _short(digest: str, no_trunc: bool) -> str:
    return digest if no_trunc else short_id(digest)


def _layer_size(inv: Inventory, layer) -> int:
    """An image's layer entry (a LayerRef) in bytes: the cached layer's size, else what
    the image recorded."""
    meta = inv.layers.get(layer.key)
    return meta.size if meta is not None else layer.unpacked_size


# ------------------------------------------------------------------ minirun layers

@dataclass(frozen=True)
class LayerUse:
    key: str                          # the cache key: the diff_id, or the chain_id (keyed_by)
    diff_id: str
    keyed_by: str
    size: int                         # unpacked bytes
    files: int
    blob: str                         # the blob the layer was extracted from
    image_ids: tuple[str, ...]
    images: tuple[str, ...]           # familiar refs; the short id of a dangling image
    containers: tuple[str, ...]       # container names


@dataclass(frozen=True)
class SharingTotals:
    layers: int                       # cached layers
    stored: int                       # bytes of every cached layer, each once
    used: int                         # bytes of the cached layers images use, each once
    copy_per_image: int               # bytes if every image kept its own copy of its layers
    unused_layers: int                # cached layers no image and no container uses
    unused: int                       # their bytes

    @property
    def saved(self) -> int:
        return self.copy_per_image - self.used

    @property
    def ratio(self) -> float | None:
        return self.copy_per_image / self.used if self.used else None


def layer_uses(inv: Inventory, no_trunc: bool = False) -> list[LayerUse]:
    """One entry per cached layer: most used first, then largest."""
    names = image_names(inv.images)
    by_image: dict[str, list[str]] = {}
    for image_id in sorted(inv.images.images, key=lambda i: (names[i] == (), names[i], i)):
        for layer in inv.images.images[image_id].layers:
            users = by_image.setdefault(layer.key, [])
            if image_id not in users:
                users.append(image_id)
    by_container: dict[str, list[str]] = {}
    for container in inv.containers:
        for key in dict.fromkeys(container.config.layers):
            by_container.setdefault(key, []).append(container.config.name or short_id(container.id))
    rows = []
    for key, meta in inv.layers.items():
        image_ids = tuple(by_image.get(key, []))
        labels = tuple(label for i in image_ids for label in names[i] or (_short(i, no_trunc),))
        rows.append(LayerUse(key, meta.diff_id, meta.keyed_by, meta.size, meta.files, meta.blob or "",
                             image_ids, labels, tuple(sorted(by_container.get(key, [])))))
    rows.sort(key=lambda r: (-len(r.image_ids) - len(r.containers), -r.size, r.diff_id, r.key))
    return rows


def sharing_totals(inv: Inventory, uses: list[LayerUse]) -> SharingTotals:
    copy_per_image, used = 0, {}
    for record in inv.images.images.values():
        for layer in record.layers:
            size = _layer_size(inv, layer)
            copy_per_image += size
            used[layer.key] = size
    idle = [u for u in uses if not u.image_ids and not u.containers]
    return SharingTotals(len(uses), sum(u.size for u in uses), sum(used.values()), copy_per_image,
                         len(idle), sum(u.size for u in idle))


# ------------------------------------------------------------------ minirun system df

@dataclass(frozen=True)
class DfRow:
    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


@dataclass(frozen=True)
class ImageUsage:
    image_id: str
    names: tuple[str, ...]
    size: int                         # its layers, each once
    shared: int                       # bytes of its layers that another image also uses
    containers: int

    @property
    def unique(self) -> int:
        return self.size - self.shared


@dataclass(frozen=True)
class ContainerUsage:
    container_id: str
    name: str
    image: str
    status: str
    size: int                         # upper dir bytes


@dataclass(frozen=True)
class DiskUsage:
    rows: list[DfRow]
    images: list[ImageUsage]
    containers: list[ContainerUsage]
    unreadable: tuple[str, ...]


def disk_usage(inv: Inventory) -> DiskUsage:
    records = inv.images.images
    used_by_containers = {c.config.image_id for c in inv.containers} & set(records)
    tagged = set(inv.images.tags.values()) & set(records)
    container_keys = {key for c in inv.containers for key in c.config.layers}
    rows = [_images_row(inv, used_by_containers, container_keys),
            _containers_row(inv),
            *_cache_rows(inv, tagged | used_by_containers, container_keys)]
    if inv.downloads:                 # kept for a pull to resume; prune removes them
        size = sum(inv.downloads.values())
        rows.append(DfRow("Partial downloads", len(inv.downloads), 0, size, size))
    return DiskUsage(rows, _image_details(inv), _container_details(inv), inv.unreadable)


def _sizes_of(inv: Inventory, image_ids) -> dict[str, int]:
    """Layer key -> bytes, over the layers of these images."""
    return {layer.key: _layer_size(inv, layer)
            for image_id in image_ids for layer in inv.images.images[image_id].layers}


def _images_row(inv: Inventory, active: set[str], container_keys: set[str]) -> DfRow:
    every = _sizes_of(inv, inv.images.images)
    kept = set(_sizes_of(inv, active)) | container_keys
    return DfRow("Images", len(inv.images.images), len(active), sum(every.values()),
                 sum(size for key, size in every.items() if key not in kept))


def _containers_row(inv: Inventory) -> DfRow:
    running = [c for c in inv.containers if c.state.status == "running"]
    total = sum(inv.upper_sizes.get(c.id, 0) for c in inv.containers)
    return DfRow("Containers", len(inv.containers), len(running), total,
                 total - sum(inv.upper_sizes.get(c.id, 0) for c in running))


def _cache_rows(inv: Inventory, kept_images: set[str], container_keys: set[str]) -> list[DfRow]:
    """What `minirun prune` keeps: the images that are tagged or that a container uses,
    their layers and the containers' layers, and the blobs those images and layers need."""
    kept_layers = set(_sizes_of(inv, kept_images)) | container_keys
    kept_blobs = set()
    for image_id in kept_images:
        record = inv.images.images[image_id]
        kept_blobs |= {image_id, record.manifest} | {layer.blob for layer in record.layers}
    kept_blobs |= {meta.blob for key, meta in inv.layers.items() if key in kept_layers}
    layer_sizes = {key: meta.size for key, meta in inv.layers.items()}
    return [_kept_row("Layer cache", layer_sizes, kept_layers), _kept_row("Blobs", inv.blobs, kept_blobs)]


def _kept_row(kind: str, sizes: dict[str, int], kept: set) -> DfRow:
    return DfRow(kind, len(sizes), sum(1 for k in sizes if k in kept), sum(sizes.values()),
                 sum(size for k, size in sizes.items() if k not in kept))


def _image_details(inv: Inventory) -> list[ImageUsage]:
    names = image_names(inv.images)
    holders: dict[str, int] = {}
    for record in inv.images.images.values():
        for key in {layer.key for layer in record.layers}:
            holders[key] = holders.get(key, 0) + 1
    out = []
    for image_id in inv.images.images:
        sizes = _sizes_of(inv, [image_id])
        shared = sum(size for key, size in sizes.items() if holders[key] > 1)
        users = sum(1 for c in inv.containers if c.config.image_id == image_id)
        out.append(ImageUsage(image_id, names[image_id], sum(sizes.values()), shared, users))
    out.sort(key=lambda u: (u.names == (), u.names, u.image_id))
    return out


def _container_details(inv: Inventory) -> list[ContainerUsage]:
    return [ContainerUsage(c.id, c.config.name or short_id(c.id), c.config.image,
                           c.state.status, inv.upper_sizes.get(c.id, 0)) for c in inv.containers]


# ------------------------------------------------------------------ images --tree

@dataclass(frozen=True)
class StackLayer:
    key: str
    diff_id: str
    size: int


@dataclass(frozen=True)
class ImageStack:
    image_id: str
    names: tuple[str, ...]            # familiar refs; () when dangling
    layers: tuple[StackLayer, ...]    # bottom layer first


def image_stacks(inv: Inventory) -> list[ImageStack]:
    names = image_names(inv.images)
    return [ImageStack(image_id, names[image_id],
                       tuple(StackLayer(layer.key, layer.diff_id, _layer_size(inv, layer))
                             for layer in record.layers))
            for image_id, record in inv.images.images.items()]


def tree_lines_for(store, no_trunc: bool = False) -> list[str]:
    return tree_lines(image_stacks(inventory_for(store)), no_trunc)


def tree_lines(images, no_trunc: bool = False) -> list[str]:
    """Draw images as branches of the layers they share: a trie over each image's
    layer keys, bottom layer at the root. A node prints its short diff_id and size,
    and after `←` the images that end there. A node with one child is followed by
    that child in the same column, so a stack of 200 layers stays 200 lines of
    the same width; only a branch (├─ └─) indents."""
    from .catalog import human_size

    def text(node: dict) -> str:
        layer = node["layer"]
        head = "(no layers)" if layer is None else f"{_short(layer.diff_id, no_trunc)} {human_size(layer.size)}"
        return head + (f"  ← {', '.join(node['labels'])}" if node["labels"] else "")

    lines: list[str] = []
    stack = _branches(_trie(images, no_trunc), "")
    while stack:
        node, prefix, last = stack.pop()
        lines.append(prefix + ("└─ " if last else "├─ ") + text(node))
        inner = prefix + ("   " if last else "│  ")
        while len(node["children"]) == 1:
            node = next(iter(node["children"].values()))
            lines.append(inner + text(node))
        stack += _branches(list(node["children"].values()), inner)
    return lines


def _trie(images, no_trunc: bool) -> list[dict]:
    """The root nodes: {"layer", "children": {key: node}, "labels"}; images with no
    layers at all end at a last root whose layer is None."""
    roots: dict = {}
    bare: list[str] = []
    for image in sorted(images, key=lambda i: (i.names == (), i.names, i.image_id)):
        label = ", ".join(image.names) or f"<none> {_short(image.image_id, no_trunc)}"
        children, node = roots, {"layer": None, "children": {}, "labels": bare}
        for layer in image.layers:
            node = children.setdefault(layer.key, {"layer": layer, "children": {}, "labels": []})
            children = node["children"]
        node["labels"].append(label)
    return list(roots.values()) + ([{"layer": None, "children": {}, "labels": bare}] if bare else [])


def _branches(nodes: list[dict], prefix: str) -> list[tuple]:
    """Stack entries (node, prefix, is last) for these siblings, the first on top."""
    return [(node, prefix, i == len(nodes) - 1) for i, node in reversed(list(enumerate(nodes)))]
