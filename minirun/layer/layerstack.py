"""What each layer of an image adds, changes and deletes, and what the stack
wastes, computed from the layers' file manifests (manifest.py) alone: pure,
no I/O, so the numbers are unit-tested by hand.

    stack(layers)          per-layer changes + the whole stack's metrics (Stack)
    which(layers, path)    who provides a path in the merged view (Which)
    parse_bytes("20MB")    a --highest-wasted-bytes value

A layer is a LayerFiles: its id and its manifest ('/path' -> facts: type, mode,
uid, gid, size, a content hash, opaque, xattrs; a whiteout is a char 0:0), plus
`links`, the names of a file that are hard links to an earlier name of the same
layer (the manifest does not record inodes: the API finds them by lstat, and
only among the files whose size and hash are equal).

The metrics are dive's (github.com/wagoodman/dive, filetree/efficiency.go):

- Every path holds one occurrence per layer that writes it, of the bytes that
  layer stores there; a later layer deleting it (whiteout, opaque dir above
  it, or a non-directory replacing its dir) adds an occurrence of 0 bytes.
- efficiency = sum over paths of the smallest occurrence / sum of all
  occurrences (1.0 when there are no bytes at all);
- wasted bytes = the sum of every occurrence of each path that has two or more
  (the surviving copy included; a deleted file's bytes so count once);
- user wasted % = wasted / the bytes of all layers but the first (0 when the
  image has one layer).

Choices where dive's code and an overlay stack part (each documented in README):
directories count 0 bytes and are not paths here (dive visits only leaves, so
an empty dir repeated in two layers shows as a 0-byte waste there and not
here); a symlink, device or fifo counts 0 bytes (the tar header's size, as in
dive); the second name of a hard link counts 0 bytes in its layer (a tar
stores the data once, as a link entry of size 0, which is what dive reads);
a deleted directory adds a 0-byte occurrence to every file it held (dive
charges the whole dir to the dir's own path, which it then never counts as
wasted); an opaque dir deletes what the layers below held in it (dive skips
opaque markers altogether).
"""

from __future__ import annotations

from collections.abc import Iterable
from ..lib.frozen import dataclass, field

_META_FIELDS = ("type", "mode", "uid", "gid", "xattrs", "target", "rdev")


@dataclass(frozen=True)
class LayerFiles:
    layer_id: str                         # the diff_id
    entries: dict                         # manifest: '/path' -> facts, parents first
    links: dict = field(default_factory=dict)   # '/second/name' -> '/first/name' (same inode)


@dataclass(frozen=True)
class Change:
    kind: str             # "A" added, "C" changed, "D" deleted
    path: str
    type: str             # file, dir, symlink, ..., or what a D deletes
    size: int             # bytes the layer stores there; for D the bytes it hides
    note: str = ""        # "metadata only", "opaque", "hard link to /x", "replaces a dir"

    def to_json(self) -> dict:
        doc = {"Kind": self.kind, "Path": self.path, "Type": self.type, "Size": self.size}
        if self.note:
            doc["Note"] = self.note
        return doc


@dataclass(frozen=True)
class LayerReport:
    index: int
    layer_id: str
    size: int             # bytes of the files it stores (a hard-linked inode once)
    changes: tuple        # Change, in path order
    added: int
    changed: int
    deleted: int          # bytes each kind accounts for
    files: int            # entries in the layer (the root dir left out)


@dataclass(frozen=True)
class Waste:
    path: str
    count: int            # occurrences, deletions included
    total: int            # their bytes (what it adds to wasted bytes)

    def to_json(self) -> dict:
        return {"Path": self.path, "Count": self.count, "WastedBytes": self.total}


@dataclass(frozen=True)
class Stack:
    layers: tuple         # LayerReport, bottom first
    efficiency: float
    wasted_bytes: int
    user_size: int        # bytes of every layer but the first
    user_wasted: float    # wasted_bytes / user_size (a ratio, 0..)
    waste: tuple          # Waste, the most bytes first

    def metrics_json(self) -> dict:
        return {"Efficiency": round(self.efficiency, 6), "WastedBytes": self.wasted_bytes,
                "UserWastedPercent": round(self.user_wasted, 6), "UserSize": self.user_size,
                "ImageSize": sum(layer.size for layer in self.layers)}


def _size(entry: dict) -> int:
    return int(entry.get("size", 0)) if entry.get("type") == "file" else 0


def _is_whiteout(entry: dict) -> bool:
    return entry.get("type") == "char" and list(entry.get("rdev") or ()) == [0, 0]


def _content(entry: dict):
    return (entry.get("size"), entry.get("sha256") or entry.get("pieces"))


def _same_meta(a: dict, b: dict) -> bool:
    return all(a.get(name) == b.get(name) for name in _META_FIELDS)


def _under(paths: Iterable[str], top: str) -> list[str]:
    prefix = top.rstrip("/") + "/"
    return [p for p in paths if p.startswith(prefix)]


class _Merged:
    """The merged view while the stack is applied bottom up: path -> (layer, facts, size)."""

    def __init__(self):
        self.files: dict[str, tuple[int, dict, int]] = {}     # non-directories
        self.dirs: dict[str, tuple[int, dict]] = {}

    def drop_under(self, top: str) -> list[tuple[str, int]]:
        """Remove everything under top; the non-dirs removed, with their bytes."""
        gone = [(p, self.files.pop(p)[2]) for p in _under(list(self.files), top)]
        for p in _under(list(self.dirs), top):
            del self.dirs[p]
        return gone


def stack(layers: list[LayerFiles]) -> Stack:
    merged = _Merged()
    occurrences: dict[str, list[int]] = {}
    reports = []
    for index, layer in enumerate(layers):
        changes, size, files = [], 0, 0
        sums = {"A": 0, "C": 0, "D": 0}

        def occur(path: str, nbytes: int) -> None:
            occurrences.setdefault(path, []).append(nbytes)

        def delete(path: str, what: str, hidden: list[tuple[str, int]], note: str = "") -> None:
            for p, _ in hidden:
                occur(p, 0)
            nbytes = sum(n for _, n in hidden)
            changes.append(Change("D", path, what, nbytes, note))
            sums["D"] += nbytes

        for path, entry in layer.entries.items():
            if path == "/":
                continue
            files += 1
            kind = entry.get("type")
            if _is_whiteout(entry):
                if path in merged.files:
                    _, old, nbytes = merged.files.pop(path)
                    delete(path, old.get("type", "file"), [(path, nbytes)])
                elif path in merged.dirs:
                    del merged.dirs[path]
                    delete(path, "dir", merged.drop_under(path))
                continue
            if kind == "dir":
                note = ""
                hidden: list[tuple[str, int]] = []
                if path in merged.files:               # a dir replaces a file
                    _, old, nbytes = merged.files.pop(path)
                    hidden = [(path, nbytes)]
                    note = "replaces a " + old.get("type", "file")
                if entry.get("opaque"):
                    hidden += merged.drop_under(path)
                    note = "opaque" + (f" (hides {len(hidden)} file(s) below)" if hidden else "")
                for p, _ in hidden:
                    occur(p, 0)
                old = merged.dirs.get(path)
                merged.dirs[path] = (index, entry)
                if old is None:
                    changes.append(Change("A", path, "dir", 0, note))
                elif note or not _same_meta(old[1], entry):
                    changes.append(Change("C", path, "dir", 0, note or "metadata only"))
                if hidden:
                    nbytes = sum(n for _, n in hidden)
                    sums["D"] += nbytes
                    changes.append(Change("D", path + "/*" if entry.get("opaque") else path,
                                          "opaque" if entry.get("opaque") else "file", nbytes,
                                          "hidden by the opaque dir" if entry.get("opaque") else "replaced by a dir"))
                continue
            nbytes = 0 if path in layer.links else _size(entry)
            size += nbytes
            note = f"hard link to {layer.links[path]}" if path in layer.links else ""
            if path in merged.dirs:                    # a non-dir replaces a dir
                del merged.dirs[path]
                for p, _ in (gone := merged.drop_under(path)):
                    occur(p, 0)
                sums["D"] += sum(n for _, n in gone)
                changes.append(Change("D", path + "/*", "dir", sum(n for _, n in gone), f"replaced by a {kind}"))
                note = note or "replaces a dir"
            old = merged.files.get(path)
            occur(path, nbytes)
            merged.files[path] = (index, entry, nbytes)
            if old is None:
                changes.append(Change("A", path, kind, nbytes, note))
                sums["A"] += nbytes
            else:
                if not note and _content(old[1]) == _content(entry) and old[1].get("type") == kind:
                    note = "metadata only" if not _same_meta(old[1], entry) else "same content"
                changes.append(Change("C", path, kind, nbytes, note))
                sums["C"] += nbytes
        reports.append(LayerReport(index, layer.layer_id, size, tuple(changes), sums["A"], sums["C"],
                                   sums["D"], files))
    return _metrics(tuple(reports), occurrences)


def _metrics(reports: tuple, occurrences: dict[str, list[int]]) -> Stack:
    smallest = total = wasted = 0
    waste = []
    for path, sizes in occurrences.items():
        cumulative = sum(sizes)
        smallest += min(sizes)
        total += cumulative
        if len(sizes) >= 2:
            wasted += cumulative
            waste.append(Waste(path, len(sizes), cumulative))
    waste.sort(key=lambda w: (-w.total, w.path))
    user = sum(layer.size for layer in reports[1:])
    return Stack(reports, smallest / total if total else 1.0, wasted, user,
                 wasted / user if user else 0.0, tuple(waste))


# ---------------------------------------------------------------- which

@dataclass(frozen=True)
class Which:
    path: str
    provider: int | None          # the layer index that provides it, None when absent
    type: str = ""
    size: int = 0
    hidden: tuple = ()            # (layer index, type, size) of lower copies it hides
    deleted_by: int | None = None  # the layer whose whiteout / opaque dir / file removes it
    how: str = ""                 # "whiteout", "opaque dir /x", "whiteout of /x", "file /x"
    opaque_from: int | None = None  # for a dir: the topmost layer where it is opaque
    merges: tuple = ()            # for a dir: the layers whose content shows in it, top first


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:n]) for n in range(1, len(parts))]


def which(layers: list[LayerFiles], path: str) -> Which:
    """Resolve path as overlayfs does, top layer first."""
    path = "/" + "/".join(p for p in path.split("/") if p)
    ancestors = _ancestors(path)
    provider = None
    found: dict = {}
    hidden = []
    deleted_by, how = None, ""
    cut = False                    # something above hides the layers below
    dirs = []                      # layers whose copy of the dir shows, top first
    for index in range(len(layers) - 1, -1, -1):
        entries = layers[index].entries
        entry = entries.get(path)
        if cut:
            if entry is not None and not _is_whiteout(entry):
                hidden.append((index, entry.get("type", ""), _size(entry)))
            continue
        blocker = _blocking_ancestor(entries, ancestors, path)
        if entry is not None and not _is_whiteout(entry):
            if provider is None:
                provider, found = index, entry
            else:
                hidden.append((index, entry.get("type", ""), _size(entry)))
            if entry.get("type") == "dir" and found.get("type") == "dir":
                dirs.append(index)
            if entry.get("type") != "dir" or entry.get("opaque") or blocker is not None:
                cut = True
            continue
        if entry is not None:                     # a whiteout of path itself
            if provider is None:
                deleted_by, how = index, "whiteout"
            cut = True
            continue
        if blocker is not None:
            if provider is None:
                deleted_by, how = index, blocker
            cut = True
    if provider is None:
        return Which(path, None, hidden=tuple(hidden), deleted_by=deleted_by, how=how)
    opaque_from, merges = None, ()
    if found.get("type") == "dir":
        merges = tuple(dirs)
        if layers[dirs[-1]].entries[path].get("opaque"):
            opaque_from = dirs[-1]
    return Which(path, provider, found.get("type", ""), _size(found), tuple(hidden), None, "",
                 opaque_from, merges)


def _blocking_ancestor(entries: dict, ancestors: list[str], path: str) -> str | None:
    """How this layer hides path from the layers below through one of its parents:
    a whiteout of it, a non-dir in its place, or an opaque dir."""
    for parent in ancestors:
        entry = entries.get(parent)
        if entry is None:
            continue
        if _is_whiteout(entry):
            return f"whiteout of {parent}"
        if entry.get("type") != "dir":
            return f"{entry.get('type')} {parent}"
        if entry.get("opaque"):
            return f"opaque dir {parent}"
    return None


# ---------------------------------------------------------------- sizes

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3,
          "gb": 1000 ** 3, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def parse_bytes(text: str) -> int:
    """'20MB' -> 20000000, '1MiB' -> 1048576, '512' -> 512 (dive's units: 1000s; the
    *iB ones 1024s). ValueError naming the forms when it is none of them."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("bgikm")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if value < 0 or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: write bytes or a number with B, KB, MB, GB (or KiB, MiB, GiB)")
    return int(value * _UNITS[unit])
