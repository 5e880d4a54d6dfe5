"""layers/sha256/<key>/: extracted layers, ready to be overlay lower dirs.

    <key>/diff/        the layer's files, with overlay whiteouts (char 0:0) and
                       opaque markers (trusted.overlay.opaque=y)
    <key>/meta.json    diff_id, key kind, files, size, created, source

The key is the layer's diff_id: an extracted layer does not depend on the
layers below it, so images share it even when their earlier layers differ.
The exception is a tar that omits a parent directory: extraction borrows that
directory's attributes from the layers below, so the result depends on them
and the layer is keyed by its chain_id instead (meta.json says which).

A layer directory appears by one rename() from tmp/, so it is complete or absent.
"""

from __future__ import annotations

import json
import os
import time

from ..oci import digest_hex
from .root import remove_tree


class LayerStore:
    def __init__(self, directory: str, store):
        self.directory = directory
        self.store = store

    def _dir(self, key: str) -> str:
        return os.path.join(self.directory, digest_hex(key))

    def diff_path(self, key: str) -> str:
        return os.path.join(self._dir(key), "diff")

    def has(self, key: str) -> bool:
        return os.path.isdir(self._dir(key))

    def lookup(self, diff_id: str, chain_id: str) -> str | None:
        """The key under which this layer is cached, or None."""
        for key in (diff_id, chain_id):
            if self.has(key):
                return key
        return None

    def meta(self, key: str) -> dict:
        with open(os.path.join(self._dir(key), "meta.json")) as f:
            return json.load(f)

    def install(self, staged: str, key: str, meta: dict) -> bool:
        """Rename a staged layer (a dir holding diff/) into place. False if another
        process installed the same layer first; the staged copy is then dropped."""
        meta = dict(meta, key=key, installed=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with open(os.path.join(staged, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        os.chmod(staged, 0o755)
        try:
            os.rename(staged, self._dir(key))
        except OSError as exc:
            if not self.has(key):
                raise
            del exc
            return False
        return True

    def remove(self, key: str) -> None:
        """Rename away first so the layer vanishes in one step, then delete the files."""
        if not self.has(key):
            return
        doomed = self.store.staging_file("rmlayer")
        os.rename(self._dir(key), doomed)
        remove_tree(doomed)

    def list(self) -> list[str]:
        return ["sha256:" + name for name in os.listdir(self.directory) if len(name) == 64]
