"""The store's layout and records, checked by `minirun fsck` and put right by
`minirun fsck --repair`. (fsck.py checks the content: layer files, blobs.)

What is checked, and what --repair does with each kind of damage:

    a store directory (blobs/, layers/sha256/, containers/, locks/, tmp/, mnt/, ...)
    that is missing, a file, or a symlink
        the entry is removed (a symlink only: never what it points to) and the
        directory made again, empty
    a lock file in locks/ that is not a regular file
        removed (it is made again when next needed)
    images.json that cannot be read as a whole
        rebuilt from what the store can verify: each stored image manifest whose
        config blob is stored and whose layers are all cached becomes an image
        record again. Names cannot be recovered: the images come back without
        one, and the repair says how to name each (`minirun tag ID NAME`)
    an image record or tag in images.json of the wrong shape
        the record is rebuilt the same way when it can be, else dropped with
        the tags naming it; a tag that names no image is dropped
    a container whose dir is not a directory, or whose config.json is damaged
        removed as `minirun rm -f` would (its cgroup is found by its id); what
        it wrote cannot be used without its config
    a container whose state.json is damaged (its config is sound)
        its state is written again as exited, so what it wrote can still be
        read, diffed and committed
    a layer whose dir is not a directory, or whose meta.json or file manifest
    is damaged, or whose diff/ is not a directory
        removed, so that loading or pulling its images again brings it back
    a blob that is not a regular file
        removed
    networks/allocations.json that cannot be read
        removed: the addresses it recorded are free again

Containers are never unmounted: their overlays live in their own mount
namespaces and nothing of them is mounted on the host. The repairs run under
the store's exclusive gc lock (after the layout and the locks themselves are
sound), so no import or run is half way through meanwhile.
"""

from __future__ import annotations

import os
import stat
import time

from ..errors import DamagedRecord, MinirunError, shown
from ..lib.fsutil import remove_tree
from ..lib.names import is_hex
from ..lib.frozen import dataclass, field

STORE_DIRS = ("blobs", "blobs/sha256", "layers", "layers/sha256", "containers", "locks", "tmp", "mnt")


@dataclass(frozen=True)
class Fix:
    """One problem found, and what --repair does about it."""
    path: str
    problem: str
    does: str                 # what the repair does, for its line
    key: tuple                # fixes with the same key are one action
    run: object = field(compare=False, default=None)

    def line(self) -> str:
        return f"store {shown(self.path)}: {self.problem}"


def check(store) -> list[Fix]:
    """Every damaged directory and record of the store (nothing when it was never made)."""
    if not os.path.isdir(store.root) or not any(
            os.path.lexists(os.path.join(store.root, name)) for name in STORE_DIRS + ("images.json",)):
        return []                                  # never made (or only its root): nothing is damaged
    fixes = _layout(store)
    bad = {f.path for f in fixes}
    sound = {sub: os.path.join(store.root, sub) not in bad and
             os.path.join(store.root, sub.split("/")[0]) not in bad for sub in STORE_DIRS}
    if sound["locks"]:
        fixes += _locks(store)
    fixes += _allocations(store)            # before containers: removing one frees its address
    fixes += _images_json(store)
    if sound["containers"]:
        fixes += _containers(store)
    if sound["layers/sha256"]:
        fixes += _layers(store)
    if sound["blobs/sha256"]:
        fixes += _blobs(store)
    if sound["tmp"]:
        fixes += _downloads(store)
    return fixes


def repair(store) -> list[str]:
    """Put right what check() finds; returns one line per repair."""
    done: list[str] = []
    found = check(store)
    if not found:
        return done
    _apply([f for f in found if f.key[0] in ("dir", "lock")], done)   # the lock below needs them
    with store.locks.hold("gc"):
        _apply(check(store), done)
    return done


def _apply(fixes: list[Fix], done: list[str]) -> None:
    seen: set = set()
    for fix in fixes:
        if fix.key in seen:
            continue
        seen.add(fix.key)
        lines = fix.run() or []
        done.append(f"repaired {shown(fix.path)}: {fix.problem}: {fix.does}")
        done += lines


# ---------------------------------------------------------------- layout

def _layout(store) -> list[Fix]:
    out = []
    for sub in STORE_DIRS:
        path = os.path.join(store.root, sub)
        if any(f.path == os.path.dirname(path) for f in out):
            continue                               # its parent is already named
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            problem = "missing"
        else:
            if stat.S_ISDIR(mode):
                continue
            problem = f"it is {_kind(path, mode)}, not a directory"
        out.append(Fix(path, problem, "made again as an empty directory", ("dir", path),
                       lambda path=path: _make_dir(path)))
    from ..network.ipam import directory
    networks = directory(store.root)
    if os.path.lexists(networks) and not _is_dir(networks):
        out.append(Fix(networks, f"it is {_kind(networks, os.lstat(networks).st_mode)}, not a directory",
                       "removed (it is made again when a container joins a bridge)", ("dir", networks),
                       lambda: remove_tree(networks)))
    return out


def _make_dir(path: str) -> None:
    remove_tree(path)          # a file or a symlink: only the entry itself goes
    os.makedirs(path)


def _non_files(directory: str, problem, done: str, kind: str, remove) -> list[Fix]:
    """A Fix for each entry of directory that is not a regular file: problem(path, mode)
    says what it is, remove(path) takes it away."""
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            out.append(Fix(path, problem(path, mode), done, (kind, path), lambda path=path: remove(path)))
    return out


def _locks(store) -> list[Fix]:
    return _non_files(store.locks.directory, lambda path, mode: f"the lock file is {_kind(path, mode)}",
                      "removed", "lock", remove_tree)


# ---------------------------------------------------------------- images.json

def _images_json(store) -> list[Fix]:
    from ..store.index import ImageIndex
    index: ImageIndex = store.images
    try:
        damaged, _ = index.damage()
    except DamagedRecord as err:
        return [Fix(index.path, err.problem, "rebuilt from the stored manifests, configs and layers",
                    ("images", "all"), lambda: rebuild_images(store, None))]
    return [Fix(index.path, err.problem, "rebuilt from the stored manifest and config where they "
                "are sound, else dropped (with the tags naming it)", ("images", "entries"),
                lambda: rebuild_images(store, damaged_ids(store))) for err in damaged]


def damaged_ids(store) -> set[str]:
    """The ids the damaged entries of images.json are about (raw: the JSON as it is)."""
    _, raw = store.images.damage()
    images, tags = raw["images"], raw["tags"]
    return set(images) | {t for t in tags.values() if isinstance(t, str)}


def rebuild_images(store, only: set[str] | None) -> list[str]:
    """images.json made again: every image the store can verify (only=None), or the
    records of these ids, from their manifest and config blobs and cached layers."""
    from ..store.index import split
    from ..store import VERSION
    found = {image_id: record.dump() for image_id, record in recoverable(store).items()}
    lines: list[str] = []

    def make(raw: dict | None):
        """The Catalog to write, from the JSON on disk (raw) with the damaged entries
        rebuilt from found (as written: of the current version) or dropped."""
        if raw is None:
            doc = {"version": VERSION, "images": dict(found), "tags": {}}
        else:
            images, tags = dict(raw["images"]), dict(raw["tags"])
            for image_id in only or ():
                images.pop(image_id, None)
                if image_id in found:
                    images[image_id] = dict(found[image_id], version=VERSION)
            doc = {"version": raw.get("version", 0), "images": images, "tags": tags}
        sound = split(store.images.path, doc)[0]
        tagged = set(sound.tags.values())
        for image_id in sorted(sound.images):
            if (raw is None or image_id in (only or ())) and image_id not in tagged:
                lines.append(f"  image {image_id[7:19]} is back without a name: "
                             f"`minirun tag {image_id[7:19]} NAME` names it")
        for image_id in sorted((only or set()) - set(sound.images)):
            if image_id.startswith("sha256:"):
                lines.append(f"  image {image_id[7:19]} could not be rebuilt (a blob or layer of it is "
                             "missing): load or pull it again")
        return sound
    store.images.rewrite(make)
    return lines


def recoverable(store) -> dict:
    """image id -> record, for each stored manifest whose config is stored and whose
    layers are all cached (the first manifest by digest, when several name one config)."""
    from .. import oci
    from ..sources.importer import image_record
    from ..store import LayerRef
    out: dict = {}
    for digest in sorted(store.blobs.list()):
        try:
            if os.lstat(store.blobs.path(digest)).st_size > oci.MAX_MANIFEST_BYTES:
                continue
            data = store.blobs.read(digest, oci.MAX_MANIFEST_BYTES)
            if b'"layers"' not in data or b'"config"' not in data:
                continue
            manifest = oci.parse_manifest(data)
            image_id = manifest.config.digest
            if image_id in out:
                continue
            config = oci.parse_config(store.blobs.read(image_id, oci.MAX_CONFIG_BYTES))
        except (OSError, MinirunError):
            continue
        if len(config.diff_ids) != len(manifest.layers):
            continue
        layers = []
        for diff_id, chain_id, desc in zip(config.diff_ids, oci.chain_ids(list(config.diff_ids)),
                                           manifest.layers):
            key = store.layers.lookup(diff_id, chain_id)
            try:
                size = store.layers.meta(key).size if key else 0
            except (OSError, MinirunError):
                key = None
            if key is None:
                break
            layers.append(LayerRef(key, diff_id, desc.digest, desc.media_type, desc.size, unpacked_size=size))
        else:
            out[image_id] = image_record(digest, manifest.media_type, layers, config)
    return out


# ---------------------------------------------------------------- containers

def _containers(store) -> list[Fix]:
    out = []
    containers = store.containers
    for cid in sorted(os.listdir(containers.directory)):
        if len(cid) != 64 or not is_hex(cid, 64):
            continue
        where = containers.path(cid)
        if not _is_dir(where):
            out.append(Fix(where, f"it is {_kind(where, os.lstat(where).st_mode)}, not a container's directory",
                           "removed", ("container", cid), lambda cid=cid: _remove_container(store, cid)))
            continue
        try:
            config = containers.config(cid)
        except FileNotFoundError:
            continue
        except DamagedRecord as err:
            out.append(Fix(err.path, err.problem, "the container was removed (it cannot be used "
                           "without its config)", ("container", cid),
                           lambda cid=cid: _remove_container(store, cid)))
            continue
        missing = [sub for sub, wanted in (("upper", not config.read_only),
                                           ("work", not config.read_only),
                                           ("init", config.init_layer)) if wanted and
                   not _is_dir(containers.path(cid, sub))]
        for sub in missing:
            where = containers.path(cid, sub)
            state = "missing" if not os.path.lexists(where) else _kind(where, os.lstat(where).st_mode)
            if sub == "upper":
                out.append(Fix(where, f"the container's upper/ is {state}, not a directory",
                               "the container was removed (what it wrote is not there)", ("container", cid),
                               lambda cid=cid: _remove_container(store, cid)))
                break
            out.append(Fix(where, f"the container's {sub}/ is {state}, not a directory",
                           "made again, empty", ("subdir", where), lambda where=where: _make_dir(where)))
        if "upper" in missing:
            continue
        try:
            containers.state(cid)
        except DamagedRecord as err:
            out.append(Fix(err.path, err.problem, "the container is kept, as exited: what it wrote can "
                           "still be diffed, committed or exported", ("state", cid),
                           lambda cid=cid, path=err.path: _mark_exited(store, cid, path)))
    return out


def _remove_container(store, cid: str) -> None:
    from .control import release_leftovers
    release_leftovers(store, cid, None)
    store.containers.remove(cid)


def _mark_exited(store, cid: str, path: str) -> None:
    remove_tree(path)                  # whatever is there: a directory, a FIFO, a symlink
    store.containers.set_state(cid, status="exited", pid=0, exit_code=None, oom_killed=False,
                               finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               error="its recorded state was damaged; `minirun fsck --repair` "
                                     "marked it exited")


# ---------------------------------------------------------------- layers and blobs

def _layers(store) -> list[Fix]:
    out = []
    layers = store.layers
    for name in sorted(os.listdir(layers.directory)):
        if len(name) != 64 or not is_hex(name, 64):
            continue
        key = "sha256:" + name
        where = os.path.join(layers.directory, name)
        problem, path = _layer_problem(layers, key, where)
        if problem:
            out.append(Fix(path, problem, "the layer was removed: load or pull the images that use "
                           "it again", ("layer", key), lambda where=where: _remove_entry(store, where)))
    return out


def _layer_problem(layers, key: str, where: str) -> tuple[str | None, str]:
    if not _is_dir(where):
        return f"it is {_kind(where, os.lstat(where).st_mode)}, not a layer's directory", where
    try:
        layers.meta(key)
        layers.file_manifest(key)
    except DamagedRecord as err:
        return err.problem, err.path
    except FileNotFoundError:
        return "its meta.json is missing", layers.meta_path(key)
    except ValueError as exc:
        return f"its file manifest is damaged: {exc}", os.path.join(where, "files.jsonl.gz")
    diff = layers.diff_path(key)
    if not _is_dir(diff):
        state = "missing" if not os.path.lexists(diff) else f"{_kind(diff, os.lstat(diff).st_mode)}"
        return f"its diff/ is {state}, not a directory", diff
    return None, where


def _blobs(store) -> list[Fix]:
    return _non_files(store.blobs.directory, lambda path, mode: f"the blob is {_kind(path, mode)}, not a file",
                      "removed: load or pull the images that need it again", "blob",
                      lambda path: _remove_entry(store, path))


def _downloads(store) -> list[Fix]:
    """Partial downloads a failed pull kept (on a full disk, say): not damage, but
    space the store holds that `images` shows nowhere."""
    from .catalog import human_size
    return [Fix(path, f"a partial download of blob {digest} ({human_size(size)}), kept for a pull "
                      "to resume", "removed (a pull fetches it again)", ("download", digest),
                lambda digest=digest: _remove_download(store, digest))
            for digest, path, size in store.partial_downloads()]


def _remove_download(store, digest: str) -> None:
    from .prune import remove_download
    remove_download(store, digest)


def _allocations(store) -> list[Fix]:
    from ..network import ipam
    path = ipam.allocations_path(store.root)
    if not os.path.lexists(path) or not _is_dir(os.path.dirname(path)):
        return []
    try:
        ipam.allocations(store.root)
    except DamagedRecord as err:
        return [Fix(path, err.problem, "removed: every bridge address is free again (restart running "
                    "bridged containers)", ("allocations",), lambda: _remove_entry(store, path))]
    return []


def _remove_entry(store, path: str) -> None:
    """Rename it away (it vanishes in one step), then delete it, never following a symlink."""
    doomed = store.staging_file("damaged")
    os.rename(path, doomed)
    remove_tree(doomed)


# ---------------------------------------------------------------- helpers

def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind(path: str, mode: int) -> str:
    from ..store.readers import file_type
    if stat.S_ISLNK(mode):
        try:
            return f"a symlink to {os.readlink(path)[:80]!r}"
        except OSError:
            return "a symlink"
    return "a regular file" if stat.S_ISREG(mode) else file_type(mode)
