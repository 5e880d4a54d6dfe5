"""Compare two trees, entry by entry: what only one side has, and which facts
differ for the paths both have. A pure function of two mappings
'/path' -> facts, as minirun.layer.manifest.build() and minirun.tree.snapshot()
make them, so it is tested on synthetic snapshots.

Used by `minirun diff A B` (two containers' upper dirs) and by `minirun fsck`
(a layer's recorded file manifest against its diff/ as it is now).

Compared facts: type, mode, uid, gid, size, sha256 or pieces (the content hash,
see contenthash.py), target (symlink), rdev
(devices), opaque (dirs), xattrs. An overlay whiteout (a char device 0:0) is
shown as its own type, `whiteout`. Times, nlink and inode numbers are not
facts: two runs of the same command never agree on them.
"""

from __future__ import annotations

import base64
from ..lib.frozen import dataclass
from collections.abc import Iterable, Iterator, Mapping

FIELDS = ("type", "mode", "uid", "gid", "size", "sha256", "pieces", "target", "rdev", "opaque", "xattrs")


@dataclass(frozen=True)
class Difference:
    path: str
    only: str | None = None                       # "A" or "B" when one side lacks the path
    kind: str | None = None                       # the type of that one-sided entry
    fields: tuple[tuple[str, object, object], ...] = ()   # (field, value in A, value in B)

    def to_json(self) -> dict:
        if self.only:
            return {"Path": self.path, "Only": self.only, "Type": self.kind}
        return {"Path": self.path, "Differs": {name: [a, b] for name, a, b in self.fields}}

    def line(self) -> str:
        """`< /path`, `> /path` or `~ /path mode 0644->0600 size 3->5 ...`."""
        if self.only:
            marker = "<" if self.only == "A" else ">"
            note = " (whiteout)" if self.kind == "whiteout" else ""
            return f"{marker} {self.path}{note}"
        return f"~ {self.path} {describe_fields(self.fields)}"


def compare(a: Mapping[str, dict], b: Mapping[str, dict]) -> list[Difference]:
    """Every path that is only in a, only in b, or in both with differing facts; sorted."""
    out: list[Difference] = []
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            out.append(Difference(path, only="A", kind=facts(a[path]).get("type")))
        elif path not in a:
            out.append(Difference(path, only="B", kind=facts(b[path]).get("type")))
        else:
            fields = differing(a[path], b[path])
            if fields:
                out.append(Difference(path, fields=fields))
    return out


def compare_walks(a: Iterable[tuple[str, dict]], b: Iterable[tuple[str, dict]]) -> Iterator[Difference]:
    """compare() of two trees given as walks ('/path', facts), each depth first with
    names sorted (manifest.walk), holding one entry of each at a time: a container
    can fill its upper dir with millions of long paths. The Differences come in
    that walk order (a parent, then its subtree, siblings by name)."""
    a, b = iter(a), iter(b)
    left, right = next(a, None), next(b, None)
    while left is not None or right is not None:
        if right is None or (left is not None and _walk_key(left[0]) < _walk_key(right[0])):
            yield Difference(left[0], only="A", kind=facts(left[1]).get("type"))
            left = next(a, None)
        elif left is None or _walk_key(right[0]) < _walk_key(left[0]):
            yield Difference(right[0], only="B", kind=facts(right[1]).get("type"))
            right = next(b, None)
        else:
            fields = differing(left[1], right[1])
            if fields:
                yield Difference(left[0], fields=fields)
            left, right = next(a, None), next(b, None)


def _walk_key(path: str) -> list[str]:
    """Where path comes in a depth-first walk with names sorted: by its names in turn
    (/a, /a/b, /a-b, where a plain string sort puts /a-b before /a/b)."""
    return path.split("/")


def differing(a: dict, b: dict) -> tuple[tuple[str, object, object], ...]:
    """(field, a's value, b's value) for each compared fact that differs; None = absent."""
    fa, fb = facts(a), facts(b)
    return tuple((name, fa.get(name), fb.get(name)) for name in FIELDS if fa.get(name) != fb.get(name))


def facts(entry: dict) -> dict:
    """The compared facts of one entry, with a char device 0:0 named a whiteout."""
    out = {name: entry[name] for name in FIELDS if name in entry}
    if out.get("type") == "char" and list(out.get("rdev") or ()) == [0, 0]:
        out["type"] = "whiteout"
        del out["rdev"]
    if "rdev" in out:
        out["rdev"] = list(out["rdev"])
    if not out.get("xattrs"):
        out.pop("xattrs", None)                   # no xattrs and an empty set are the same
    return out


# ---------------------------------------------------------------- text form

def describe_fields(fields) -> str:
    """'mode 0644->0600 size 3->5' for a Difference's fields."""
    return " ".join(f"{name} {show(name, a)}->{show(name, b)}" for name, a, b in fields)


def show(name: str, value) -> str:
    """One value, short: modes in octal, hashes cut to 8 hex digits, '-' for absent."""
    if value is None:
        return "-"
    if name == "mode":
        return f"{value:04o}"
    if name in ("sha256", "pieces"):
        return value[:8] + ".."
    if name == "rdev":
        return f"{value[0]}:{value[1]}"
    if name == "opaque":
        return "yes" if value else "no"
    if name == "xattrs":
        return ",".join(f"{key}={_short_xattr(val)}" for key, val in sorted(value.items())) or "-"
    return str(value)


def _short_xattr(value: str) -> str:
    """An xattr value (base64) as text when it is short and printable, else cut base64."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return value[:12]
    if len(raw) <= 16 and raw.isascii() and raw.decode().isprintable():
        return raw.decode()
    return value[:12] + (".." if len(value) > 12 else "")
