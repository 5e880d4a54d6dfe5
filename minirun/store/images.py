"""images.json: which images the store holds and which references name them.

    {"images": {"<image id>": {manifest, media_type, layers: [{key, diff_id, blob,
                media_type, size}], created, architecture, os, variant, size, loaded}},
     "tags":   {"registry/repo:tag": "<image id>"}}

The image id is the digest of the image config, as in docker. The file is
replaced atomically (write to tmp/, rename) under the `images` lock, so a
reader never sees half an update and needs no lock.
"""

from __future__ import annotations

import os

from .. import jsonio
from .. import reference
from ..errors import Conflict, ImageNotFound, UsageError


class ImageIndex:
    def __init__(self, path: str, store):
        self.path = path
        self.store = store

    def read(self) -> dict:
        try:
            with open(self.path) as f:
                doc = jsonio.load(f)
        except FileNotFoundError:
            doc = {}
        doc.setdefault("images", {})
        doc.setdefault("tags", {})
        return doc

    def _write(self, doc: dict) -> None:
        tmp = self.store.staging_file("images.json")
        with open(tmp, "w") as f:
            jsonio.dump(doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)

    def update(self) -> _Update:
        """`with index.update() as doc:` read-modify-write under the images lock;
        doc is written back when the block ends without an exception."""
        return _Update(self)

    def add(self, image_id: str, record: dict, refs: list[str]) -> list[str]:
        """Record an image and point refs at it; returns ids left dangling by moved tags."""
        with self.update() as doc:
            old = doc["images"].get(image_id) or {}
            if old.get("repositories"):
                record = dict(record, repositories=sorted(set(old["repositories"]) |
                                                          set(record.get("repositories", []))))
            doc["images"][image_id] = record
            moved = set()
            for ref in refs:
                old = doc["tags"].get(ref)
                if old and old != image_id:
                    moved.add(old)
                doc["tags"][ref] = image_id
            still_tagged = set(doc["tags"].values())
            return sorted(i for i in moved if i not in still_tagged)

    def add_repository(self, image_id: str, name: str) -> None:
        """Remember a registry/repository this image was pulled from or pushed to."""
        with self.update() as doc:
            record = doc["images"].get(image_id)
            if record is not None and name not in record.setdefault("repositories", []):
                record["repositories"].append(name)

    # ------------------------------------------------------------ look-ups

    def resolve(self, name: str, doc: dict | None = None) -> tuple[str, dict]:
        """Find an image by reference, full id or id prefix (12+ hex digits)."""
        doc = doc or self.read()
        image_id = self._find(name, doc)
        return image_id, doc["images"][image_id]

    def _find(self, name: str, doc: dict) -> str:
        images, tags = doc["images"], doc["tags"]
        if reference.is_id_prefix(name):
            body = name.removeprefix("sha256:")
            matches = [i for i in images if i[len("sha256:"):].startswith(body)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"image id prefix {name} is ambiguous ({len(matches)} images)",
                                 "give more hex digits")
        ref = reference.parse(name)      # a malformed name is a usage error, not "not found"
        for candidate in _candidates(name, ref):
            if candidate in tags:
                return tags[candidate]
            if ref.digest:
                # name@digest: an image with that manifest, known under that repository
                repo = candidate.split("@", 1)[0].rsplit(":", 1)[0] if ref.tag else candidate.split("@", 1)[0]
                found = [i for i, rec in images.items() if rec.get("manifest") == ref.digest and
                         any(t.split("@", 1)[0].rsplit(":", 1)[0] == repo or t.split("@", 1)[0] == repo
                             for t, target in tags.items() if target == i)]
                if found:
                    return found[0]
        raise ImageNotFound(f"no such image: {name}")

    def ref_for(self, name: str, doc: dict | None = None) -> str | None:
        """The stored reference a name denotes, or None when it is an id."""
        doc = doc or self.read()
        if reference.is_id_prefix(name):
            return None
        try:
            ref = reference.parse(name)
        except UsageError:
            return None
        return next((c for c in _candidates(name, ref) if c in doc["tags"]), None)

    def refs_of(self, image_id: str, doc: dict | None = None) -> list[str]:
        doc = doc or self.read()
        return sorted(ref for ref, target in doc["tags"].items() if target == image_id)

    def untag(self, ref: str) -> None:
        with self.update() as doc:
            if doc["tags"].pop(ref, None) is None:
                raise ImageNotFound(f"no such reference: {ref}")

    def remove(self, image_id: str) -> None:
        with self.update() as doc:
            doc["images"].pop(image_id, None)
            for ref in [r for r, target in doc["tags"].items() if target == image_id]:
                del doc["tags"][ref]

    def ensure_unused(self, image_id: str, containers: list[dict]) -> None:
        users = [c["name"] for c in containers if c.get("image_id") == image_id]
        if users:
            raise Conflict(f"image {image_id[7:19]} is used by container(s) {', '.join(users)}",
                           "remove them first with `minirun rm`, or use `minirun rmi -f`")


class _Update:
    """A class rather than a contextlib generator: contextlib would cost every
    `minirun run` ~3 ms to import (see store/locks.py)."""

    def __init__(self, index: ImageIndex):
        self.index, self.lock = index, index.store.locks.hold("images")

    def __enter__(self) -> dict:
        self.lock.__enter__()
        try:
            self.doc = self.index.read()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.doc

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.index._write(self.doc)
        finally:
            self.lock.__exit__(kind, value, traceback)


def _candidates(text: str, ref: reference.Reference) -> list[str]:
    """References to try for a name: as parsed, then a short name under localhost/ (as podman does)."""
    out = [str(ref)]
    first = text.split("/", 1)[0]
    qualified = "/" in text and ("." in first or ":" in first or first == "localhost")
    if not qualified:
        short = ref.repository.removeprefix("library/")
        out.append(str(reference.Reference("localhost", short, ref.tag, ref.digest)))
    return out
