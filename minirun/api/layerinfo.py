"""Inside an image's layers and a container's upper dir: `minirun layers IMAGE`
(--files, --ci), `minirun which`, `minirun diff --stat` and inspect's
LayerEfficiency.

The layer numbers come from the file manifests `load` wrote beside each layer
(store/layers.py files.jsonl.gz), handed to layer/layerstack.py. The disk is
touched only for what a manifest does not say: which equal files of a layer
are one inode (an lstat of those candidates only), and, for a layer installed
by an older minirun without a manifest, a walk of its dir.

diff --stat reads the upper dir itself (a running container changes it) and
compares each non-directory with what the lower layers show at its path.
"""

from __future__ import annotations

import os
import stat

from ..errors import UsageError
from ..layer import layerstack, whiteout
from ..layer.safeopen import reopen_regular
from ..lib.frozen import dataclass


def image_layers(store, name: str) -> tuple[str, list[layerstack.LayerFiles]]:
    """(image id, its layers bottom first, each with its manifest and hard links)."""
    image_id, record = store.images.resolve(name)
    out = []
    for ref in record.layers:
        diff = store.layers.diff_path(ref.key)
        try:
            entries = store.layers.file_manifest(ref.key)
        except ValueError:
            entries = None                         # damaged: `minirun fsck` says so; walk instead
        if entries is None:
            from ..layer import manifest
            entries = manifest.build(diff)
        out.append(layerstack.LayerFiles(ref.diff_id, entries, _hard_links(diff, entries)))
    return image_id, out


def _hard_links(diff: str, entries: dict) -> dict[str, str]:
    """'/name' -> '/first name' for the files of one layer that share an inode. Only
    files whose size and hash equal another's can; only those are lstat'ed."""
    groups: dict[tuple, list[str]] = {}
    for path, entry in entries.items():
        if entry.get("type") == "file" and entry.get("size"):
            groups.setdefault((entry["size"], entry.get("sha256") or entry.get("pieces")), []).append(path)
    links: dict[str, str] = {}
    for paths in groups.values():
        if len(paths) < 2:
            continue
        first_of: dict[tuple[int, int], str] = {}
        for path in sorted(paths):
            try:
                st = os.lstat(diff + path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in first_of:
                links[path] = first_of[key]
            else:
                first_of[key] = path
    return links


def analyze(store, name: str) -> tuple[str, list[layerstack.LayerFiles], layerstack.Stack]:
    image_id, layers = image_layers(store, name)
    return image_id, layers, layerstack.stack(layers)


def efficiency_block(store, name: str) -> dict:
    """inspect's LayerEfficiency: the three figures of `minirun layers IMAGE`."""
    _, _, result = analyze(store, name)
    return result.metrics_json()


def which(store, name: str, path: str) -> tuple[list[layerstack.LayerFiles], layerstack.Which]:
    if not path.startswith("/"):
        raise UsageError(f"which: {path!r} is not an absolute path", "name it as the container sees it, e.g. /etc/passwd")
    _, layers = image_layers(store, name)
    return layers, layerstack.which(layers, path)


# ---------------------------------------------------------------- --ci

@dataclass(frozen=True)
class Verdict:
    rule: str
    value: str
    limit: str
    failed: bool


def ci_rules(result: layerstack.Stack, lowest_efficiency: str | None, highest_wasted: str | None,
             highest_user_wasted: str | None) -> list[Verdict]:
    """dive's three rules: efficiency below the limit fails; wasted bytes or the
    user wasted ratio at or above theirs fails. "disabled" turns one off; wasted
    bytes is off unless given (as dive)."""
    verdicts = []
    low = _ratio("--lowest-efficiency", lowest_efficiency, 0.9)
    if low is not None:
        verdicts.append(Verdict("lowest-efficiency", f"{result.efficiency:.4f}", f"{low:g}",
                                result.efficiency < low))
    if highest_wasted not in (None, "", "disabled"):
        try:
            limit = layerstack.parse_bytes(highest_wasted)
        except ValueError as exc:
            raise UsageError(f"--highest-wasted-bytes: {exc}") from None
        verdicts.append(Verdict("highest-wasted-bytes", str(result.wasted_bytes), str(limit),
                                result.wasted_bytes >= limit))
    high = _ratio("--highest-user-wasted-percent", highest_user_wasted, 0.1)
    if high is not None:
        verdicts.append(Verdict("highest-user-wasted-percent", f"{result.user_wasted:.4f}", f"{high:g}",
                                result.user_wasted >= high))
    return verdicts


def _ratio(flag: str, text: str | None, default: float) -> float | None:
    if text is None or text == "":
        return default
    if text == "disabled":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1 and flag == "--lowest-efficiency" or value < 0:
        raise UsageError(f"{flag} {text!r}: expected a ratio between 0 and 1 (e.g. 0.9), or disabled")
    return value


# ---------------------------------------------------------------- diff --stat

@dataclass(frozen=True)
class UpperItem:
    kind: str            # created, copied-up, whiteout, opaque, dir
    path: str
    type: str
    size: int            # bytes in the upper dir (a whiteout: 0)
    copied: int = 0      # copied-up: the lower file's bytes overlayfs copied
    metadata_only: bool = False
    lower_size: int = 0  # whiteout: the bytes it hides (a dir: what the lower dir held is not summed)
    origin: bool = False  # trusted.overlay.origin set (kernel's own copy-up record)

    def to_json(self) -> dict:
        return {"Kind": self.kind, "Path": self.path, "Type": self.type, "Size": self.size,
                "CopiedBytes": self.copied, "MetadataOnly": self.metadata_only,
                "HiddenBytes": self.lower_size, "Origin": self.origin}


_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
          stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def upper_stat(store, name: str):
    """Every entry of the container's upper dir, classified, as an iterator (the
    walk is never held whole: see layer/changes.py). A path a lower layer shows
    (overlayfs resolution, layer/lowerview.py) was copied up; else created.
    Under a dir that is new or opaque everything is created and whiteouts hide nothing."""
    from ..api.control import lower_dirs, unmoved
    from ..layer.lowerview import LowerView
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    upper = store.containers.upper(cid)
    if config.read_only or not os.path.isdir(upper):
        return iter(())
    view = LowerView(lower_dirs(store, cid, config))
    return unmoved(_upper_items(upper, view), name)


def _upper_items(upper: str, view):
    from ..lib.fsutil import walk_here
    fresh: list[str] = []
    for rel, name_here, st in walk_here(upper):
        path = "/" + rel
        while fresh and not path.startswith(fresh[-1] + "/"):
            fresh.pop()
        below = None if fresh else view.locate(path)
        kind = _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
        if stat.S_ISDIR(st.st_mode):
            opaque = whiteout.is_opaque(name_here)
            if opaque or below is None:
                fresh.append(path)
            yield UpperItem("opaque" if opaque and below is not None else
                            "dir" if below is not None else "created", path, "dir", 0)
            continue
        if whiteout.is_whiteout_stat(st):
            if below is not None:
                yield UpperItem("whiteout", path, _TYPES.get(stat.S_IFMT(below[0].st_mode), "?"), 0,
                                lower_size=below[0].st_size if stat.S_ISREG(below[0].st_mode) else 0)
            continue
        size = st.st_size if kind == "file" else 0
        if below is None:
            yield UpperItem("created", path, kind, size)
            continue
        lower_st, lower_path = below
        origin = _has_xattr(name_here, "trusted.overlay.origin")
        metacopy = _has_xattr(name_here, "trusted.overlay.metacopy")
        copied = 0 if metacopy or not stat.S_ISREG(lower_st.st_mode) else lower_st.st_size
        yield UpperItem("copied-up", path, kind, size, copied,
                        _same_content(name_here, st, lower_path, lower_st), origin=origin)


def _has_xattr(path: str, attr: str) -> bool:
    try:
        os.getxattr(path, attr, follow_symlinks=False)
        return True
    except OSError:
        return False


def _same_content(upper: str, ust: os.stat_result, lower: str, lst: os.stat_result) -> bool:
    """Only metadata changed: the same type and the same bytes (or link target)."""
    if stat.S_IFMT(ust.st_mode) != stat.S_IFMT(lst.st_mode):
        return False
    if stat.S_ISLNK(ust.st_mode):
        return os.readlink(upper) == os.readlink(lower)
    if not stat.S_ISREG(ust.st_mode):
        return ust.st_rdev == lst.st_rdev
    if ust.st_size != lst.st_size:
        return False
    a = _open_same(upper, ust)
    if a < 0:
        return False            # no longer the file the walk saw: a running container swapped it
    try:
        b = _open_same(lower, lst)
        if b < 0:
            return False
        try:
            while True:
                x, y = os.read(a, 1 << 20), os.read(b, 1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
        finally:
            os.close(b)
    finally:
        os.close(a)


def _open_same(path: str, seen: os.stat_result) -> int:
    """path opened for reading if it is still the regular file seen (same inode),
    else -1; checked before it is opened (layer/safeopen.py reopen_regular): a
    running container can swap a file of its upper dir for a FIFO (an open would
    hang) or a device node (whose open would be the host's driver's: the upper dir
    is not nodev)."""
    try:
        pinned = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        return reopen_regular(pinned, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, seen)
    except OSError:
        return -1
    finally:
        os.close(pinned)


class UpperTotals:
    """diff --stat's totals, counted as the items go by (add() passes each one on)."""

    KEYS = ("Created", "CreatedBytes", "CreatedDirs", "CopiedUp", "CopiedBytes", "MetadataOnly",
            "MetadataOnlyBytes", "Whiteouts", "HiddenBytes", "OpaqueDirs", "CopiedUpDirs", "UpperBytes")

    def __init__(self):
        self.totals = dict.fromkeys(self.KEYS, 0)

    def add(self, item: UpperItem) -> UpperItem:
        t = self.totals
        t["UpperBytes"] += item.size
        if item.kind == "created":
            if item.type == "dir":
                t["CreatedDirs"] += 1
            else:
                t["Created"] += 1
                t["CreatedBytes"] += item.size
        elif item.kind == "copied-up":
            t["CopiedUp"] += 1
            t["CopiedBytes"] += item.copied
            if item.metadata_only:
                t["MetadataOnly"] += 1
                t["MetadataOnlyBytes"] += item.copied
        elif item.kind == "whiteout":
            t["Whiteouts"] += 1
            t["HiddenBytes"] += item.lower_size
        elif item.kind == "opaque":
            t["OpaqueDirs"] += 1
        elif item.kind == "dir":
            t["CopiedUpDirs"] += 1
        return item
