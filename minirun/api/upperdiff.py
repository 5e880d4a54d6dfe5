"""`minirun diff A B`: find two containers through the store and compare what
their runs wrote, upper dir against upper dir (minirun.layer.compare does the
comparing; minirun.layer.manifest reads each tree)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from ..errors import Conflict
from ..layer.compare import Difference, compare_walks
from ..layer.manifest import walk


def compare_containers(store, name_a: str, name_b: str) -> Iterator[Difference]:
    """Entries only in A's upper dir, only in B's, and in both with different facts,
    as the two walks go (neither tree is held whole). Bad names fail at once."""
    ids = [store.containers.resolve(name) for name in (name_a, name_b)]
    a, b = (_read(store.containers.upper(cid), name) for cid, name in zip(ids, (name_a, name_b)))
    return compare_walks(a, b)


def _read(upper: str, name: str):
    """An upper dir's entries; a container whose upper dir is gone (being removed) wrote nothing."""
    if not os.path.isdir(upper):
        return
    try:
        yield from walk(upper)
    except OSError as exc:
        hint = (f"its paths are longer than 4096 bytes; look at the upper dir itself (`minirun inspect {name}`)"
                if exc.errno == errno.ENAMETOOLONG else
                "if it is running, it may be changing its files: try again once it has stopped")
        raise Conflict(f"cannot read the upper dir of container {name}: {exc.strerror or exc}", hint) from None
