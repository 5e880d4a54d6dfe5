"""images.json: which images the store holds and which references name them.

    {"version": 1,
     "images": {"<image id>": {manifest, media_type, layers: [{key, diff_id, blob,
                media_type, size, unpacked_size}], created, architecture, os, variant,
                size, loaded, repositories}},
     "tags":   {"registry/repo:tag": "<image id>"}}

Each image entry is a records.ImageRecord (its layers LayerRefs), read and
written only here; in memory the whole file is a Catalog. A file without
"version" is from before records were typed and loads as version 0 (see
store/__init__.py); the next update writes it as version 1.

The image id is the digest of the image config, as in docker. The file is
replaced atomically (write to tmp/, rename) under the `images` lock, so a
reader never sees half an update and needs no lock.

Damage (store/readers.py). A file that is not a JSON object holding the objects
"images" and "tags" is damaged as a whole: every command that needs it stops
with one line naming it, and nothing is collected or written until `minirun
fsck --repair` rebuilds it from the blobs and layers. A single image record or
tag of the wrong shape is damaged alone: read() leaves it out (and says so once
on stderr), resolve() refuses it by name, updates write it back as it was, and
garbage collection keeps every layer and blob it mentions.
"""

from __future__ import annotations

import os

from ..lib import jsonio
from ..oci import reference
from ..errors import Conflict, DamagedRecord, ImageNotFound, UsageError, warn_damaged
from ..lib.names import is_hex, is_sha256_digest
from ..lib.frozen import dataclass, field, replace
from . import readers
from . import VERSION, ImageRecord


@dataclass
class Catalog:
    """images.json's sound entries: image id -> record, reference -> image id."""
    images: dict[str, ImageRecord] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def refs_of(self, image_id: str) -> list[str]:
        return sorted(ref for ref, target in self.tags.items() if target == image_id)


class ImageIndex:
    def __init__(self, path: str, store):
        self.path = path
        self.store = store

    def _load(self) -> dict:
        """The JSON document as it is on disk (no images when there is none). DamagedRecord
        when it is not an object holding the objects "images" and "tags", or is of a
        version this minirun does not read."""
        try:
            doc = readers.read_json(self.path, readers.IMAGE_INDEX_LIMIT)
        except FileNotFoundError:
            return {"version": VERSION, "images": {}, "tags": {}}
        readers.check(doc, self.path, "images.json", {"images": readers.OBJECT, "tags": readers.OBJECT,
                                                      "version": readers.COUNT})
        if doc.get("version", 0) > VERSION:
            raise DamagedRecord(self.path, f"it is version {doc['version']}, written by a newer minirun "
                                           f"(this one reads up to {VERSION})", "use that minirun, or a newer one")
        doc.setdefault("images", {})
        doc.setdefault("tags", {})
        return doc

    def read(self, warn=True) -> Catalog:
        """The sound entries. Each damaged
        one is left out, and reported once on stderr (warn=True), to warn(err) when it
        is a function, or not at all."""
        sound, damaged, _ = split(self.path, self._load())
        report = warn_damaged if warn is True else warn
        for err in damaged if report else ():
            report(err)
        return sound

    def damage(self) -> tuple[list[DamagedRecord], dict]:
        """(what is damaged, the damaged entries as they are), for fsck; DamagedRecord
        when the whole file is."""
        _, damaged, raw = split(self.path, self._load())
        return damaged, raw

    def mentioned_by_damaged(self) -> set[str]:
        """Every digest a damaged entry mentions: what garbage collection must keep
        while the entry may still be repaired."""
        found: set[str] = set()
        stack: list = [self.damage()[1]]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.keys())
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str) and is_sha256_digest(value):
                found.add(value)
        return found

    def _write(self, catalog: Catalog, damaged: dict | None = None) -> None:
        """The one writer of images.json: the catalog, plus the damaged entries as
        they were (until `fsck --repair`)."""
        doc = {"version": VERSION, "images": {i: r.dump() for i, r in catalog.images.items()},
               "tags": dict(catalog.tags)}
        for section, entries in (damaged or {}).items():
            for key, entry in entries.items():
                doc[section].setdefault(key, entry)
        tmp = self.store.staging_file("images.json")
        with open(tmp, "w") as f:
            jsonio.dump(doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)

    def rewrite(self, make) -> None:
        """Replace the whole file, under the images lock, with make(doc), a Catalog: doc
        is the JSON as it is on disk, or None when it is damaged as a whole (fsck
        --repair rebuilds it)."""
        with self.store.locks.hold("images"):
            try:
                raw = self._load()
            except DamagedRecord:
                raw = None
            doc = make(raw)
            if raw is None and os.path.isdir(self.path) and not os.path.islink(self.path):
                from ..lib.fsutil import remove_tree
                remove_tree(self.path)       # a file cannot be renamed over a directory
            self._write(doc)

    def update(self) -> _Update:
        """`with index.update() as doc:` read-modify-write under the images lock;
        doc is written back when the block ends without an exception."""
        return _Update(self)

    def add(self, image_id: str, record: ImageRecord, refs: list[str]) -> list[str]:
        """Record an image and point refs at it; returns ids left dangling by moved tags."""
        with self.update() as doc:
            old = doc.images.get(image_id)
            if old is not None and old.repositories:
                record = replace(record, repositories=tuple(sorted(set(old.repositories) |
                                                                   set(record.repositories))))
            doc.images[image_id] = record
            moved = set()
            for ref in refs:
                old_id = doc.tags.get(ref)
                if old_id and old_id != image_id:
                    moved.add(old_id)
                doc.tags[ref] = image_id
            still_tagged = set(doc.tags.values())
            return sorted(i for i in moved if i not in still_tagged)

    def add_repository(self, image_id: str, name: str) -> None:
        """Remember a registry/repository this image was pulled from or pushed to."""
        with self.update() as doc:
            record = doc.images.get(image_id)
            if record is not None and name not in record.repositories:
                doc.images[image_id] = replace(record, repositories=(*record.repositories, name))

    # ------------------------------------------------------------ look-ups

    def resolve(self, name: str, doc: Catalog | None = None) -> tuple[str, ImageRecord]:
        """Find an image by reference, full id or id prefix (12+ hex digits), in doc
        (read()), or on disk: there only the entry found is checked (the run path reads
        this), DamagedRecord if it is damaged."""
        raw = self._load() if doc is None else None
        images, tags = (raw["images"], raw["tags"]) if doc is None else (doc.images, doc.tags)
        image_id = self._find(name, images, tags)
        record = images.get(image_id)
        if record is None:
            raise DamagedRecord(self.path, f"the tag for {name!r} names image {image_id[:80]!r}, "
                                           "which it holds no record of")
        if doc is not None:
            return image_id, record
        return image_id, check_record(self.path, image_id, record, raw.get("version", 0))

    def _find(self, name: str, images: dict, tags: dict) -> str:
        body = name.removeprefix("sha256:")
        if reference.is_id_prefix(name):
            found = _by_id_prefix(name, body, images)
            if found:
                return found
        ref = reference.parse(name)      # a malformed name is a usage error, not "not found"
        for candidate in _candidates(name, ref):
            if candidate in tags:
                target = tags[candidate]
                if not isinstance(target, str) or not is_sha256_digest(target):
                    raise DamagedRecord(self.path, f"the tag {candidate!r} names "
                                                   f"{readers.json_type(target)}, not an image id")
                return target
            if ref.digest:
                # name@digest: an image with that manifest, known under that repository
                repo = candidate.split("@", 1)[0].rsplit(":", 1)[0] if ref.tag else candidate.split("@", 1)[0]
                found = [i for i, rec in images.items() if _manifest_of(rec) == ref.digest and
                         any(t.split("@", 1)[0].rsplit(":", 1)[0] == repo or t.split("@", 1)[0] == repo
                             for t, target in tags.items() if target == i)]
                if found:
                    return found[0]
        if 0 < len(body) < 12 and is_hex(body, 1, 11):   # a shorter id prefix, as docker takes it
            found = _by_id_prefix(name, body, images)
            if found:
                return found
        raise ImageNotFound(f"no such image: {name}", _suggestion(name, tags))

    def ref_for(self, name: str, doc: Catalog | None = None) -> str | None:
        """The stored reference a name denotes, or None when it is an id."""
        doc = doc or self.read()
        if reference.is_id_prefix(name):
            return None
        try:
            ref = reference.parse(name)
        except UsageError:
            return None
        return next((c for c in _candidates(name, ref) if c in doc.tags), None)

    def refs_of(self, image_id: str, doc: Catalog | None = None) -> list[str]:
        return (doc or self.read()).refs_of(image_id)

    def untag(self, ref: str) -> None:
        with self.update() as doc:
            if doc.tags.pop(ref, None) is None:
                raise ImageNotFound(f"no such reference: {ref}")

    def remove(self, image_id: str) -> None:
        with self.update() as doc:
            doc.images.pop(image_id, None)
            for ref in doc.refs_of(image_id):
                del doc.tags[ref]

    def ensure_unused(self, image_id: str, containers: list) -> None:
        """containers: api/control.py's listing (each has a config)."""
        users = [c.config.name for c in containers if c.config.image_id == image_id]
        if users:
            raise Conflict(f"image {image_id[7:19]} is used by container(s) {', '.join(users)}",
                           "remove them first with `minirun rm`, or use `minirun rmi -f`")


class _Update:
    """A class rather than a contextlib generator: contextlib would cost every
    `minirun run` ~3 ms to import (see store/locks.py)."""

    def __init__(self, index: ImageIndex):
        self.index, self.lock = index, index.store.locks.hold("images")

    def __enter__(self) -> Catalog:
        self.lock.__enter__()
        try:
            self.doc, _, self.damaged = split(self.index.path, self.index._load())
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.doc

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.index._write(self.doc, self.damaged)       # damaged entries stay until repaired
        finally:
            self.lock.__exit__(kind, value, traceback)


def check_record(path: str, image_id: str, record: object, version: int) -> ImageRecord:
    """An image's entry, of an images.json of that version, as a record; else DamagedRecord."""
    what = f"the record of image {image_id[:80]!r}"
    if not is_sha256_digest(image_id):
        raise DamagedRecord(path, f"{what}: its id is not a digest")
    return ImageRecord.load(record, path, what, version)


def _manifest_of(entry: object) -> object:
    """The manifest digest of an entry, a record or the JSON of one (sound or not)."""
    if isinstance(entry, ImageRecord):
        return entry.manifest
    return entry.get("manifest") if isinstance(entry, dict) else None


def split(path: str, doc: dict) -> tuple[Catalog, list[DamagedRecord], dict]:
    """(the sound entries, what is wrong with each other one, the others as they are)."""
    sound = Catalog()
    damaged: list[DamagedRecord] = []
    raw: dict = {"images": {}, "tags": {}}
    version = doc.get("version", 0)
    for image_id, record in doc["images"].items():
        try:
            sound.images[image_id] = check_record(path, image_id, record, version)
        except DamagedRecord as err:
            damaged.append(err)
            raw["images"][image_id] = record
    for ref, target in doc["tags"].items():
        problem = _tag_problem(ref, target, sound.images, doc["images"])
        if problem is None:
            sound.tags[ref] = target
        else:
            if not (isinstance(target, str) and target in raw["images"]):   # else its record is said
                damaged.append(DamagedRecord(path, f"the tag {ref[:200]!r} {problem}"))
            raw["tags"][ref] = target
    return sound, damaged, raw


def _tag_problem(ref: str, target: object, sound: dict, everything: dict) -> str | None:
    if not isinstance(target, str) or not is_sha256_digest(target):
        return f"names {readers.json_type(target)}, not an image id"
    if target not in sound:
        return (f"names image {target[7:19]}, whose record is damaged" if target in everything
                else f"names image {target[7:19]}, which it holds no record of")
    try:
        if str(reference.parse(ref)) == ref:
            return None
    except UsageError:
        pass
    return "is not a reference minirun writes"


def _candidates(text: str, ref: reference.Reference) -> list[str]:
    """References to try for a name: as parsed, then a short name under localhost/ (as podman does)."""
    out = [str(ref)]
    first = text.split("/", 1)[0]
    qualified = "/" in text and ("." in first or ":" in first or first == "localhost")
    if not qualified:
        short = ref.repository.removeprefix("library/")
        out.append(str(reference.Reference("localhost", short, ref.tag, ref.digest)))
    return out


def _by_id_prefix(name: str, body: str, images: dict) -> str:
    """The one image whose id starts with body (hex digits), "" for none; more than
    one is refused."""
    matches = [i for i in images if i[len("sha256:"):].startswith(body)]
    if len(matches) > 1:
        raise UsageError(f"image id prefix {name} is ambiguous ({len(matches)} images)", "give more hex digits")
    return matches[0] if matches else ""


def _suggestion(name: str, tags: dict) -> str:
    """The hint of "no such image": the closest name the store holds, if one is close."""
    import difflib
    hint = ImageNotFound.hint
    shown = {}
    for tag in tags:
        try:
            familiar = reference.parse(tag).familiar()
        except UsageError:
            continue
        shown[familiar] = familiar
        shown.setdefault(familiar.removesuffix(":latest"), familiar.removesuffix(":latest"))
    close = difflib.get_close_matches(name, list(shown), n=1, cutoff=0.75)
    return f"did you mean {close[0]}? ({hint})" if close else hint
