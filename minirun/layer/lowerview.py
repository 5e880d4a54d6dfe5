"""What the lower layers of a container show at a path, resolved as overlayfs
resolves it. The run path uses it (the init layer's mount points) and
layer/changes.py too (A or C in `minirun diff`); it lives apart so that a run
does not import what diff needs.
"""

from __future__ import annotations

import os
import stat

from . import whiteout


class LowerView:
    """Answers 'does this path exist in the merged lower layers?' the way overlayfs
    resolves it: topmost layer first, whiteouts hide, opaque dirs stop the search."""

    def __init__(self, lowers: list[str]):
        self.lowers = lowers              # topmost first

    def exists(self, path: str) -> bool:
        return self.lookup(path) is not None

    def lookup(self, path: str) -> os.stat_result | None:
        """The lstat of what the merged lower layers show at path, or None."""
        found = self.locate(path)
        return found[0] if found is not None else None

    def locate(self, path: str) -> tuple[os.stat_result, str] | None:
        """(lstat, the path of that entry in its layer dir) of what the merged lower
        layers show at path, or None."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return (os.lstat(self.lowers[0]), self.lowers[0]) if self.lowers else None
        layers = self.lowers
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            found = None
            for index, layer in enumerate(layers):
                full = os.path.join(layer, rel)
                try:
                    st = os.lstat(full)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if whiteout.is_whiteout_stat(st):
                    return None
                found = (index, st, full)
                break
            if found is None:
                return None
            index, st, full = found
            if depth == len(parts):
                return st, full
            if not stat.S_ISDIR(st.st_mode):
                return None
            # Deeper components come from this layer and those below it, unless
            # this dir is opaque, which hides everything further down.
            layers = layers[index:index + 1] if whiteout.is_opaque(full) else \
                self._dirs_below(layers, index, rel)
        return None

    @staticmethod
    def _dirs_below(layers: list[str], index: int, rel: str) -> list[str]:
        """This layer plus each lower one where rel is a directory, stopping at an opaque one."""
        out = [layers[index]]
        for layer in layers[index + 1:]:
            full = os.path.join(layer, rel)
            try:
                st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            out.append(layer)
            if whiteout.is_opaque(full):
                break
        return out
