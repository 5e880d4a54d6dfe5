"""Image use cases behind the CLI: load, list, remove, tag, inspect, history.
They return data and never print."""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import oci
from ..oci import reference
from ..errors import MinirunError, UsageError
from ..lib.frozen import dataclass
from ..sources.progress import Report
from ..store import gc


@dataclass(frozen=True)
class ImageRow:
    image_id: str
    refs: tuple[str, ...]
    created: str
    size: int
    layers: int
    architecture: str


def load(store, paths: list[str], tag: str | None, report: Report) -> list[str]:
    """Load every image in each path; returns the 'Loaded image...' lines. report hears
    each layer's steps and the bytes of its blob read so far (sources/progress.py)."""
    from ..sources.archive import load_error_context, open_images, spooled
    from ..sources.importer import import_image
    if tag is not None:
        tag = str(reference.parse(tag))
    loaded: list[str] = []
    for path in paths:
        try:
            with store.locks.hold("gc", shared=True), spooled(store, path, report) as local, \
                    open_images(local, "stdin" if local != path else "") as sources:
                if tag and len(sources) != 1:
                    raise UsageError(f"--tag needs exactly one image, but {path} holds {len(sources)}")
                for src in sources:
                    if tag:
                        src.refs = [tag]
                    result = import_image(store, src, report)
                    if result.refs:
                        loaded += [f"Loaded image: {reference.parse(r).familiar()}" for r in result.refs]
                    else:
                        loaded.append(f"Loaded image ID: {result.image_id}")
        except MinirunError as exc:
            gc.collect_after_failure(store)
            raise load_error_context("stdin" if path == "-" else path, exc)
        except BaseException:
            gc.collect_after_failure(store)
            raise
    return loaded



def rows(store) -> list[ImageRow]:
    doc = store.images.read()
    by_id: dict[str, list[str]] = {}
    for ref, image_id in doc.tags.items():
        by_id.setdefault(image_id, []).append(ref)
    out = []
    for image_id, rec in doc.images.items():
        out.append(ImageRow(image_id, tuple(sorted(by_id.get(image_id, []))), rec.created,
                            rec.size, len(rec.layers), rec.architecture))
    out.sort(key=lambda r: (r.created, r.image_id), reverse=True)
    return out


def filter_rows(rows: list[ImageRow], filters: list[str]) -> list[ImageRow]:
    """`images --filter`: dangling=true|false, reference=GLOB (on the familiar
    name, with or without the tag); several filters must all hold."""
    import fnmatch
    for spec in filters:
        key, eq, value = spec.partition("=")
        if key == "dangling" and value in ("true", "false", "1", "0"):
            want = value in ("true", "1")
            rows = [r for r in rows if (not r.refs) == want]
        elif key == "reference" and eq and value:
            def matches(row: ImageRow) -> bool:
                names = [reference.parse(r).familiar() for r in row.refs]
                return any(fnmatch.fnmatch(n, value) or fnmatch.fnmatch(n.rsplit(":", 1)[0], value)
                           for n in names)
            rows = [r for r in rows if matches(r)]
        else:
            raise UsageError(f"unsupported filter {spec!r}",
                             "use dangling=true, dangling=false or reference=PATTERN")
    return rows


def remove(store, names: list[str], force: bool, report: Callable[[str], None]) -> None:
    """rmi: untag a reference that others share, else delete the image and collect its layers."""
    from .control import container_records
    with store.locks.hold("gc"):
        for name in names:
            store.images.resolve(name)       # every name must exist before anything is removed
        for name in names:
            image_id, _ = store.images.resolve(name)
            refs = store.images.refs_of(image_id)
            named_ref = store.images.ref_for(name)
            if named_ref and len(refs) > 1:
                store.images.untag(named_ref)
                report(f"Untagged: {reference.parse(named_ref).familiar()}")
                continue
            if not force:
                store.images.ensure_unused(image_id, container_records(store))
            store.images.remove(image_id)
            for ref in refs:
                report(f"Untagged: {reference.parse(ref).familiar()}")
            report(f"Deleted: {image_id}")
        layers, _blobs = gc.collect(store)
        for key in layers:
            report(f"Deleted layer: {key}")


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}"


def seconds_since(iso: str | None) -> float | None:
    """Seconds from a recorded UTC time (ISO 8601) to now; None when there is none."""
    import datetime     # not time.strptime: its first call imports _strptime, calendar and locale
    try:
        then = datetime.datetime.fromisoformat(iso[:19]).replace(tzinfo=datetime.timezone.utc).timestamp()
    except (ValueError, TypeError):
        return None
    return max(0.0, time.time() - then)


def docker_time(iso: str | None) -> str:
    """A recorded UTC time (2026-12-06T02:18:59Z) as docker's ps and images print
    CreatedAt: 2026-12-06 02:18:59 +0000 UTC; as it is when it is not one."""
    if not iso or len(iso) < 19 or iso[10:11] != "T":
        return iso or ""
    return f"{iso[:10]} {iso[11:19]} +0000 UTC"


def human_duration(seconds: float) -> str:
    """A span as docker prints one: "Less than a second", "5 seconds", "About a
    minute", "3 minutes", "About an hour", "5 hours", then days, weeks, months, years."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole < 60:
        return "1 second" if whole == 1 else f"{whole} seconds"
    minutes = whole // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    for limit, per, unit in ((48, 1, "hours"), (24 * 14, 24, "days"), (24 * 60, 24 * 7, "weeks"),
                             (24 * 730, 24 * 30, "months")):
        if hours < limit:
            return f"{hours // per} {unit}"
    return f"{int(seconds // 3600) // (24 * 365)} years"


def human_age(iso: str) -> str:
    seconds = seconds_since(iso)
    return "unknown" if seconds is None else human_duration(seconds) + " ago"


# ---------------------------------------------------------------- inspect, history, tag

def inspect(store, name: str) -> dict:
    """An image as `docker image inspect` shows it, plus where its layers live."""
    image_id, record = store.images.resolve(name)
    config = oci.parse_config(store.blobs.read(image_id), f"image config {oci.short_id(image_id)}").raw
    refs = store.images.refs_of(image_id)
    diff_dirs = [store.layers.diff_path(layer.key) for layer in reversed(record.layers)]
    return {
        "Id": image_id,
        "RepoTags": [reference.parse(r).familiar() for r in refs],
        "RepoDigests": sorted({f"{reference.parse(r).familiar().rsplit(':', 1)[0]}@{record.manifest}"
                               for r in refs}),
        "Created": config.get("created", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Size": record.size,
        "Manifest": {"Digest": record.manifest, "MediaType": record.media_type},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in record.layers]},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(diff_dirs)}},
        "History": config.get("history") or [],
        "LayerEfficiency": _efficiency(store, image_id),
    }


def _efficiency(store, image_id: str) -> dict | None:
    """`minirun layers IMAGE`'s figures (api/layerinfo.py); None if a layer cannot be read."""
    from ..errors import MinirunError
    from .layerinfo import efficiency_block
    try:
        return efficiency_block(store, image_id)
    except (OSError, ValueError, MinirunError):     # a damaged layer: `minirun fsck` says which
        return None


@dataclass(frozen=True)
class HistoryRow:
    image_id: str        # the image's id on its top entry, else "<missing>" (as docker)
    created: str
    created_by: str
    size: int
    comment: str
    empty_layer: bool


def history(store, name: str) -> list[HistoryRow]:
    """The config's history, newest first; each non-empty entry is matched with
    its layer, in order. Without history, one row per layer."""
    image_id, record = store.images.resolve(name)
    config = oci.parse_config(store.blobs.read(image_id), f"image config {oci.short_id(image_id)}").raw
    layers = list(record.layers)
    entries = config.get("history") or [{} for _ in layers]
    rows = []
    index = 0
    for entry in entries:
        empty = bool(entry.get("empty_layer"))
        size = 0
        if not empty and index < len(layers):
            size = layers[index].unpacked_size
            index += 1
        rows.append(HistoryRow("<missing>", entry.get("created", ""), entry.get("created_by", ""),
                               size, entry.get("comment", ""), empty))
    rows.reverse()
    if rows:
        rows[0] = HistoryRow(image_id, *[getattr(rows[0], f) for f in
                                         ("created", "created_by", "size", "comment", "empty_layer")])
    return rows


def tag(store, source: str, target: str) -> list[str]:
    """Point a reference at an image; returns images the move left dangling."""
    ref = str(reference.parse(target))
    if reference.parse(target).digest:
        raise UsageError(f"cannot tag with a digest: {target}", "give a tag, e.g. myapp:v2")
    with store.locks.hold("gc", shared=True):      # prune cannot take the image meanwhile
        image_id, record = store.images.resolve(source)
        return store.images.add(image_id, record, [ref])
