"""`minirun fsck`: check the store against what it recorded, changing nothing.

    store        its directories and records (storecheck.py): each one that is
                 missing, of the wrong type, truncated, garbage, or replaced by
                 something else; `fsck --repair` puts these right
    layers       each cached layer's diff/ against its file manifest (recorded at
                 install): entries added, removed, or with changed facts. A layer
                 with no manifest (installed by an older minirun) is unchecked.
    blobs        each blob's sha256 against its name; a blob that is a layer's
                 own blob (meta.json "blob") is also decompressed, in the same
                 read, and its uncompressed sha256 checked against the diff_id.
    images.json  each image's manifest and config blobs are stored and each
                 layer it lists is cached; each tag names a recorded image.

Runs under the gc lock held shared: imports may go on, but no layer or blob is
collected while it is being checked. (Without it when locks/ itself is what is
damaged: that is then the first problem named.)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import zlib
from ..lib.frozen import dataclass, field

from .. import oci
from ..errors import DamagedRecord, MinirunError
from ..layer.compare import Difference, describe_fields
from ..layer.manifest import verify
from ..layer.unpack import CHUNK, decompressor, Tee


@dataclass(frozen=True)
class Problem:
    subject: str                  # "layer", "blob", "image" or "store"
    name: str                     # its diff_id, digest or image id (or a file name)
    message: str
    detail: str | None = None     # shown after the name: a layer's key, an image's tags
    path: str | None = None       # inside a layer
    fields: dict | None = None    # field -> [recorded, now]

    def line(self) -> str:
        shown = oci.short_id(self.name) if self.name.startswith("sha256:") else self.name
        detail = f" ({self.detail})" if self.detail else ""
        where = f" {self.path}" if self.path else ""
        return f"{self.subject} {shown}{detail}:{where} {self.message}"

    def to_json(self) -> dict:
        out = {"Subject": self.subject, "Name": self.name, "Message": self.message}
        for key, value in (("Detail", self.detail), ("Path", self.path), ("Fields", self.fields)):
            if value:
                out[key] = value
        return out


@dataclass
class Report:
    layers: int = 0
    blobs: int = 0
    problems: list[Problem] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)       # diff_ids of layers with no manifest
    damaged: list = field(default_factory=list)              # storecheck.Fix: what --repair puts right

    def summary(self) -> str:
        line = f"{self.layers} layers, {self.blobs} blobs checked: {len(self.problems)} problems"
        if self.unchecked:
            line += f" ({len(self.unchecked)} layers unchecked: no file manifest)"
        return line

    def lines(self) -> list[str]:
        notes = [f"layer {oci.short_id(d)}: unchecked (no file manifest: installed by an older minirun)"
                 for d in self.unchecked]
        return [p.line() for p in self.problems] + notes + [self.summary()]

    def to_json(self) -> dict:
        return {"Layers": self.layers, "Blobs": self.blobs, "Unchecked": self.unchecked,
                "Problems": [p.to_json() for p in self.problems],
                "Repairable": [{"Path": f.path, "Problem": f.problem, "Repair": f.does} for f in self.damaged]}


def check(store) -> Report:
    """Every check, under the shared gc lock; the store is only read."""
    from . import storecheck
    report = Report()
    report.damaged = storecheck.check(store)
    for fix in report.damaged:
        report.problems.append(Problem("store", fix.path, f"damaged: {fix.problem} (`minirun fsck --repair`: "
                                                          f"{fix.does})"))
    skip = {os.path.dirname(f.path) for f in report.damaged} | {f.path for f in report.damaged}
    if any(os.path.join(store.root, sub) in skip for sub in ("layers", "layers/sha256", "blobs",
                                                           "blobs/sha256", "locks")):
        return report            # the layout first: the content checks need it
    has_locks = os.path.isdir(store.locks.directory)      # a store never created has nothing to check
    with store.locks.hold("gc", shared=True) if has_locks else contextlib.nullcontext():
        metas = check_layers(store, report, skip)
        check_blobs(store, metas, report, skip)
        check_images(store, set(metas), report)
    return report


# ---------------------------------------------------------------- layers

def check_layers(store, report: Report, skip: set[str] = frozenset()) -> dict[str, dict]:
    """Each layer against its file manifest; returns key -> meta ({} when unreadable).
    Layers whose records are damaged (in skip, already named) are counted, not read."""
    metas: dict[str, dict] = {}
    for key in sorted(_listed(store.layers.list)):
        report.layers += 1
        if os.path.join(store.layers.directory, key[7:]) in skip:
            metas[key] = None                    # cached, though damaged: named by storecheck
            continue
        try:
            metas[key] = store.layers.meta(key)
        except (OSError, ValueError, MinirunError) as exc:
            report.problems.append(Problem("layer", key, f"meta.json is unreadable: {_why(exc)}"))
            metas[key] = None
            continue
        _check_layer_files(store, key, metas[key].diff_id, report)
    return metas


def _check_layer_files(store, key: str, diff_id: str, report: Report) -> None:
    detail = f"key {oci.short_id(key)}" if key != diff_id else None     # keyed by chain_id
    try:
        recorded = store.layers.file_manifest(key)
        if recorded is None:
            report.unchecked.append(diff_id)
            return
    except (OSError, ValueError) as exc:
        report.problems.append(Problem("layer", diff_id, f"file manifest is unreadable: {_why(exc)}", detail))
        return
    try:
        differences = verify(store.layers.diff_path(key), recorded)
    except OSError as exc:
        report.problems.append(Problem("layer", diff_id, f"diff/ cannot be read: {_why(exc)}", detail))
        return
    report.problems.extend(_layer_problem(diff_id, detail, d) for d in differences)


def _layer_problem(diff_id: str, detail: str | None, difference: Difference) -> Problem:
    if difference.only == "A":
        message = f"removed (a {difference.kind} at install)"
    elif difference.only == "B":
        message = f"added (a {difference.kind})"
    else:
        message = "changed: " + describe_fields(difference.fields)
    fields = {name: [a, b] for name, a, b in difference.fields} or None
    return Problem("layer", diff_id, message, detail, path=difference.path, fields=fields)


# ---------------------------------------------------------------- blobs

def check_blobs(store, metas: dict, report: Report, skip: set[str] = frozenset()) -> None:
    """Each blob against its name, and against the diff_id of the layers it was extracted
    to (metas: layer key -> LayerMeta, None when unreadable)."""
    owners: dict[str, list] = {}
    for meta in metas.values():
        if meta is not None and meta.blob and meta.media_type:
            owners.setdefault(meta.blob, []).append(meta)
    sizes, most = _recorded_sizes(store), _max_blob_bytes()
    for digest in sorted(_listed(store.blobs.list)):
        report.blobs += 1
        path = store.blobs.path(digest)
        if path in skip:
            continue
        try:
            size = os.lstat(path).st_size
            if size != sizes.get(digest, size) or size > most:
                # not read: a blob made huge (a sparse terabyte) would take hours to hash
                said = f"{sizes[digest]} are recorded for it" if digest in sizes else \
                    f"more than any blob minirun takes ({most}, MINIRUN_MAX_LAYER_BYTES)"
                report.problems.append(Problem("blob", digest, f"is {size} bytes, but {said}"))
                continue
            report.problems.extend(_check_blob(path, digest, owners.get(digest, [])))
        except OSError as exc:
            report.problems.append(Problem("blob", digest, f"cannot be read: {_why(exc)}"))


def _max_blob_bytes() -> int:
    """The most a layer may hold uncompressed (layer/limits.py): no blob is larger."""
    from ..layer.limits import DEFAULT_MAX_BYTES, Limits
    try:
        return Limits.from_env().max_bytes
    except MinirunError:
        return DEFAULT_MAX_BYTES


def _recorded_sizes(store) -> dict[str, int]:
    """digest -> the size images.json and the stored manifests record for it."""
    sizes: dict[str, int] = {}
    try:
        images = store.images.read(warn=False).images
    except (OSError, MinirunError):
        return sizes
    for record in images.values():
        for layer in record.layers:
            sizes[layer.blob] = layer.size
        try:
            manifest = oci.parse_manifest(store.blobs.read(record.manifest, oci.MAX_MANIFEST_BYTES))
        except (OSError, MinirunError):
            continue
        for desc in (manifest.config, *manifest.layers):
            sizes[desc.digest] = desc.size
    return sizes


def _check_blob(path: str, digest: str, owners: list) -> list[Problem]:
    with open(path, "rb") as f:
        if not owners:
            actual = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            return _name_problem(digest, actual)
        raw_hash, diff_id, error = _hash_layer_blob(f, owners[0].media_type)
    problems = _name_problem(digest, raw_hash)
    for meta in owners:
        label = f"layer {oci.short_id(meta.diff_id)}"
        if error:
            problems.append(Problem("blob", digest, f"{label}'s blob cannot be decompressed: {error}"))
        elif diff_id != meta.diff_id:
            problems.append(Problem("blob", digest, f"uncompressed content has sha256 {diff_id}, but it is "
                                                    f"{label}'s blob, whose diff_id is {meta.diff_id}"))
    return problems


def _name_problem(digest: str, actual: str) -> list[Problem]:
    if actual == digest:
        return []
    return [Problem("blob", digest, f"content has digest {actual}, not the one it is named by")]


class _HashSink:
    def __init__(self):
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.hash.update(data)


def _hash_layer_blob(f, media_type: str) -> tuple[str, str | None, str | None]:
    """(sha256 of the blob, sha256 of its decompressed content or None, error or None),
    reading the blob once."""
    sink = _HashSink()
    tee = Tee(f, sink)
    uncompressed = hashlib.sha256()
    error = None
    try:
        stream = decompressor(tee, oci.layer_compression(media_type))
        while chunk := stream.read(CHUNK):
            uncompressed.update(chunk)
    except MinirunError as exc:
        error = exc.message
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        error = _why(exc)
    except Exception as exc:                      # noqa: BLE001 - zstandard's own error types
        if not type(exc).__module__.startswith("zstandard"):
            raise
        error = _why(exc)
    while tee.read(CHUNK):                        # the rest of the raw bytes, for the blob's own hash
        pass
    diff_id = None if error else "sha256:" + uncompressed.hexdigest()
    return "sha256:" + sink.hash.hexdigest(), diff_id, error


# ---------------------------------------------------------------- images.json

def check_images(store, cached: set[str], report: Report) -> None:
    try:
        doc = store.images.read(warn=False)
    except DamagedRecord:
        return                                   # named by storecheck
    except (OSError, ValueError) as exc:
        report.problems.append(Problem("store", "images.json", f"is unreadable: {_why(exc)}"))
        return
    for image_id, record in sorted(doc.images.items()):
        names = ", ".join(doc.refs_of(image_id)) or "dangling"
        report.problems.extend(_image_problems(store, image_id, record, names, cached))
    for ref, image_id in sorted(doc.tags.items()):
        if image_id not in doc.images:
            report.problems.append(Problem("image", image_id, f"is named by tag {ref} but has no record"))


def _image_problems(store, image_id: str, record, names: str, cached: set[str]) -> list[Problem]:
    out = []
    wanted = [("manifest", record.manifest), ("config", image_id)]
    for what, digest in wanted:
        if not digest or not store.blobs.has(digest):
            out.append(Problem("image", image_id, f"its {what} blob {digest} is not stored", names))
    for layer in record.layers:
        if layer.key not in cached:
            diff_id = oci.short_id(layer.diff_id)
            out.append(Problem("image", image_id, f"its layer {diff_id} is not cached", names))
    return out


# ---------------------------------------------------------------- helpers

def _listed(lister) -> list[str]:
    """A sub-store's listing; a store that was never created holds nothing."""
    try:
        return lister()
    except FileNotFoundError:
        return []


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
