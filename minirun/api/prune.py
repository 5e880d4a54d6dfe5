"""prune and image prune: plan what goes, explain why, then remove it.

What may go, in this order, each step seeing the previous one's result:
    1. stopped containers (only when asked: --containers);
    2. dangling images (no reference points to them) that no container uses;
    3. the layers and blobs that nothing left references (store/gc.py decides).

The plan is data (Plan), made and carried out under the exclusive `gc` lock,
which `run` and every import hold shared: no layer a container or an image in
the making needs can go. --dry-run prints the same plan without removing.
The explanation follows the chain an image is made of:
reference -> manifest -> config -> diff_ids (layers).
"""

from __future__ import annotations

import json
import os
from ..lib.frozen import dataclass, field

from .. import oci
from ..oci import reference
from .control import container_records, remove as remove_container
from ..errors import DamagedRecord
from ..store import gc


@dataclass(frozen=True)
class Item:
    kind: str          # container, image, layer, blob, download
    ident: str
    reason: str
    size: int = 0


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    chains: list[list[str]] = field(default_factory=list)   # one explanation per removed image

    def of(self, kind: str) -> list[Item]:
        return [i for i in self.items if i.kind == kind]

    @property
    def reclaimed(self) -> int:
        return sum(i.size for i in self.items)


def plan(store, containers: bool, layers_and_blobs: bool = True) -> Plan:
    """What prune would remove now. Caller holds the gc lock."""
    out = Plan()
    records = container_records(store)
    if containers:
        for c in records:
            # a claimed one is being started, or its end recorded, by a minirun process
            if c.state.status == "exited" and not store.containers.claimed(c.id):
                code = "?" if c.state.exit_code is None else c.state.exit_code
                out.items.append(Item("container", c.id, f"{c.config.name}: exited ({code})",
                                      store.containers.disk_usage(c.id)))
    leaving = {i.ident for i in out.of("container")}
    staying = [c.config for c in records if c.id not in leaving]
    used_images = {c.image_id for c in staying}
    doc = store.images.read()
    tagged = set(doc.tags.values())
    images = dict(doc.images)
    for image_id in sorted(doc.images):
        if image_id in tagged or image_id in used_images:
            continue
        out.items.append(Item("image", image_id, "dangling: no reference points to it", 0))
        del images[image_id]
    if layers_and_blobs:
        _unreferenced(store, out, doc, images, staying)
        for digest, _, size in store.partial_downloads():
            out.items.append(Item("download", digest, "a partial download kept for a pull to resume", size))
    return out


def _unreferenced(store, out: Plan, doc, images: dict, staying: list) -> None:
    """doc: the Catalog; images: those that stay; staying: the configs of the containers that do."""
    used_layers, used_blobs = gc.referenced(store, images, staying)
    users = _layer_users(doc, images, staying)
    roles = _blob_roles(store, doc)
    gone_images = {i.ident for i in out.of("image")}
    for key in sorted(store.layers.list()):
        if key in used_layers:
            continue
        meta = _meta(store, key)
        was = [oci.short_id(i) for i in gone_images
               if any(layer.key == key for layer in doc.images[i].layers)]
        reason = (f"only dangling image {', '.join(was)} used it" if was
                  else "no image or container uses it")
        out.items.append(Item("layer", key, reason, meta.size if meta is not None else 0))
    for digest in sorted(store.blobs.list()):
        if digest in used_blobs:
            continue
        out.items.append(Item("blob", digest, roles.get(digest, "no image references it"),
                              store.blobs.size(digest)))
    removed_layers = {i.ident for i in out.of("layer")}
    for image_id in sorted(gone_images):
        out.chains.append(_chain(store, image_id, doc.images[image_id], removed_layers, users))


def _layer_users(doc, images: dict, containers: list) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for image_id, record in images.items():
        refs = [reference.parse(r).familiar() for r, i in doc.tags.items() if i == image_id]
        label = refs[0] if refs else oci.short_id(image_id)
        for layer in record.layers:
            names.setdefault(layer.key, []).append(label)
    for c in containers:
        for key in c.layers:
            names.setdefault(key, []).append(f"container {c.name}")
    return names


def _blob_roles(store, doc) -> dict[str, str]:
    roles: dict[str, str] = {}
    for image_id, record in doc.images.items():
        short = oci.short_id(image_id)
        roles[record.manifest] = f"manifest of image {short}"
        roles[image_id] = f"config of image {short}"
        for layer in record.layers:
            roles.setdefault(layer.blob, f"a layer blob of image {short}")
    return roles


def _chain(store, image_id: str, record, removed_layers: set[str],
           users: dict[str, list[str]]) -> list[str]:
    """image -> manifest -> config -> each diff_id, and what happens to each."""
    lines = [f"image {oci.short_id(image_id)} (dangling: no reference points to it)",
             f"  manifest {record.manifest}",
             f"  config   {image_id}"]
    try:
        diff_ids = json.loads(store.blobs.read(image_id))["rootfs"]["diff_ids"]
    except Exception:  # noqa: BLE001 - a damaged config must not hide the rest
        diff_ids = [layer.diff_id for layer in record.layers]
    for diff_id, layer in zip(diff_ids, record.layers):
        key = layer.key
        if key in removed_layers:
            fate = "removed: no other image or container uses it"
        else:
            fate = "kept: used by " + ", ".join(sorted(set(users.get(key, ["the cache"]))))
        lines.append(f"    diff_id {oci.short_id(diff_id)}  {fate}")
    return lines


def _meta(store, key: str):
    """The layer's LayerMeta, None when it cannot be read."""
    try:
        return store.layers.meta(key)
    except (OSError, ValueError, DamagedRecord):
        return None


def agreed(shown: Plan, now: Plan) -> Plan:
    """What the user agreed to (shown) that is still garbage (now)."""
    keys = {(i.kind, i.ident) for i in shown.items}
    items = [i for i in now.items if (i.kind, i.ident) in keys]
    images = {oci.short_id(i.ident) for i in items if i.kind == "image"}
    chains = [c for c in now.chains if c[0].split()[1] in images]
    return Plan(items, chains)


def execute(store, todo: Plan) -> None:
    """Remove what the plan lists. Caller holds the gc lock (exclusive)."""
    for item in todo.of("container"):
        remove_container(store, item.ident, force=False)
    for item in todo.of("image"):
        store.images.remove(item.ident)
    for item in todo.of("layer"):
        store.layers.remove(item.ident)
    for item in todo.of("blob"):
        store.blobs.remove(item.ident)
    for item in todo.of("download"):
        remove_download(store, item.ident)


def remove_download(store, digest: str) -> None:
    """A partial download, unless a pull is writing it now (it holds the blob's lock)."""
    from ..errors import MinirunError
    try:
        with store.locks.hold(f"blob-{digest[7:]}", timeout=0):
            os.unlink(store.partial_download(digest))
    except (MinirunError, FileNotFoundError):
        pass
