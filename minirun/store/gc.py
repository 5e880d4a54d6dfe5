"""Garbage collection: remove layers and blobs that no image and no container
references. Runs under the exclusive `gc` lock; imports and container creation
hold it shared, so a layer on its way into an image is never collected.

With a damaged store it errs on the side of keeping: an images.json damaged as
a whole stops it (DamagedRecord: it cannot tell what is used), a damaged image
entry or container record keeps every digest it still mentions, and a layer
whose meta.json is damaged keeps no blob but is itself kept while used."""

from __future__ import annotations

from ..errors import DamagedRecord, warn_damaged
from ..oci import parse_manifest


def referenced(store, images: dict | None = None, containers: list | None = None,
               warn=warn_damaged) -> tuple[set[str], set[str]]:
    """(layer keys, blob digests) still in use by these images (default: all in
    images.json) and these container configs (default: every container's)."""
    layers: set[str] = set()
    blobs: set[str] = set()
    if images is None:
        images = store.images.read(warn).images
    kept = store.images.mentioned_by_damaged()
    layers |= kept
    blobs |= kept
    if containers is None:
        containers = []
        for cid in store.containers.ids():
            try:
                containers.append(store.containers.config(cid))
            except FileNotFoundError:
                continue
            except DamagedRecord as err:
                warn(err)
                kept = mentioned_digests(store.containers.path(cid, "config.json"))
                layers |= kept
                blobs |= kept
    for image_id, record in images.items():
        blobs.add(image_id)
        blobs.add(record.manifest)
        for layer in record.layers:
            layers.add(layer.key)
            blobs.add(layer.blob)
        try:
            manifest = parse_manifest(store.blobs.read(record.manifest))
            blobs.update(layer.digest for layer in manifest.layers)
        except Exception:  # noqa: BLE001 - a damaged manifest must not stop collection
            pass
    for config in containers:
        layers.update(config.layers)
    for key in layers:
        # A layer's own blob (the one it was extracted from, or packed into by
        # commit) stays while the layer does: save and push need some blob for
        # it, even after the image that brought it is gone.
        try:
            own = store.layers.meta(key).blob
        except FileNotFoundError:
            continue
        except DamagedRecord as err:
            warn(err)
            continue
        if own:
            blobs.add(own)
    return layers, blobs


def mentioned_digests(path: str) -> set[str]:
    """The digests in a damaged record's text, however little of it is left."""
    from .readers import read_bytes
    try:
        text = read_bytes(path, 64 << 20).decode("ascii", "replace")
    except (OSError, DamagedRecord):
        return set()
    found, at = set(), text.find("sha256:")
    while at >= 0:
        candidate = text[at:at + 71]
        if len(candidate) == 71 and all(c in "0123456789abcdef" for c in candidate[7:]):
            found.add(candidate)
        at = text.find("sha256:", at + 7)
    return found


def collect_after_failure(store) -> None:
    """A failed import may have installed some layers and blobs before it broke.
    Under the exclusive gc lock every other import has finished or failed too, so
    whatever no image or container references now is garbage: remove it. Not
    when images.json is damaged: nothing can be known unused then."""
    with store.locks.hold("gc"):
        try:
            collect(store, warn=lambda err: None)   # the failure is what the command reports
        except DamagedRecord:
            pass


def collect(store, warn=warn_damaged) -> tuple[list[str], list[str]]:
    """Remove unreferenced layers and blobs; returns what went. Caller holds the gc lock."""
    used_layers, used_blobs = referenced(store, warn=warn)
    gone_layers = [key for key in store.layers.list() if key not in used_layers]
    for key in gone_layers:
        store.layers.remove(key)
    gone_blobs = [d for d in store.blobs.list() if d not in used_blobs]
    for digest in gone_blobs:
        store.blobs.remove(digest)
    return gone_layers, gone_blobs
