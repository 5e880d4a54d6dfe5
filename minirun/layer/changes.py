"""Read an upper dir back as `docker diff` changes: A added, C changed, D deleted.

scan_upper() is the only part that touches the disk; changes() is a pure
function of the scanned entries and a lower-layer look-up, so it is unit-tested
without root (whiteouts are char devices, which only root can create).
"""

from __future__ import annotations

import os
import stat
from ..lib.frozen import dataclass
from collections.abc import Callable, Iterable, Iterator

from ..lib.fsutil import walk_here
from . import whiteout

KIND_CODES = {"C": 0, "A": 1, "D": 2}   # docker's API numbers for the same letters


@dataclass(frozen=True)
class UpperEntry:
    path: str            # absolute inside the container: /etc/passwd
    kind: str            # "dir", "whiteout" or "other"
    opaque: bool = False


@dataclass(frozen=True)
class Change:
    kind: str            # "A", "C" or "D"
    path: str

    def to_json(self) -> dict:
        return {"Path": self.path, "Kind": self.kind}


def scan_upper(upper: str) -> Iterator[UpperEntry]:
    """Every entry of the upper dir, parents before children, names sorted. The walk
    goes directory by directory with O_NOFOLLOW (fsutil.walk_here): no depth limit,
    and a running container swapping a dir for a symlink cannot lead it outside."""
    for rel, name, st in walk_here(upper):
        path = "/" + rel
        if stat.S_ISDIR(st.st_mode):
            yield UpperEntry(path, "dir", whiteout.is_opaque(name))
        elif whiteout.is_whiteout_stat(st):
            yield UpperEntry(path, "whiteout")
        else:
            yield UpperEntry(path, "other")


def changes(entries: Iterable[UpperEntry], in_lower: Callable[[str], bool],
            hidden: Iterable[str] = ()) -> Iterator[Change]:
    """docker-diff lines for an upper dir, as the walk finds them: a container can
    fill its upper dir with millions of long paths, and a list of them all took
    `diff` over a GB of memory.

    A whiteout is D. An entry present below is C (parents of a change are
    copied up, so they show as C), else A. Below a directory that is new or
    opaque, everything is A and whiteouts hide nothing. `hidden` names paths
    the runtime itself created (mount points), left out when they are dirs."""
    hidden = set(hidden)
    fresh: list[str] = []          # dirs whose lower content does not show through
    for entry in entries:
        if entry.kind == "dir" and entry.path in hidden:
            continue
        while fresh and not entry.path.startswith(fresh[-1] + "/"):
            fresh.pop()    # entries come parents first, so the stack holds only ancestors
        under_fresh = bool(fresh)
        if entry.kind == "whiteout":
            if not under_fresh and in_lower(entry.path):
                yield Change("D", entry.path)
            continue
        existed = not under_fresh and in_lower(entry.path)
        yield Change("C" if existed else "A", entry.path)
        if entry.kind == "dir" and (entry.opaque or not existed):
            fresh.append(entry.path)
