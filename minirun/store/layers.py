"""layers/sha256/<key>/: extracted layers, ready to be overlay lower dirs.

    <key>/diff/        the layer's files, with overlay whiteouts (char 0:0) and
                       opaque markers (trusted.overlay.opaque=y)
    <key>/meta.json    diff_id, key kind, files, size, created, source: a
                       records.LayerMeta, versioned
    <key>/files.jsonl.gz   the file manifest: every entry of diff/ as installed
                       (minirun/layer/manifest.py), which `minirun fsck` checks

The key is the layer's diff_id: an extracted layer does not depend on the
layers below it, so images share it even when their earlier layers differ.
The exception is a tar that omits a parent directory: extraction borrows that
directory's attributes from the layers below, so the result depends on them
and the layer is keyed by its chain_id instead (meta.json says which).

A layer directory appears by one rename() from tmp/, so it is complete or absent,
and its file manifest with it. Layers installed by an older minirun have none.
"""

from __future__ import annotations

import os
import time

from ..lib import jsonio
from ..lib.frozen import replace
from ..lib.names import is_hex
from ..oci import digest_hex
from . import readers
from . import LayerMeta, dump
from ..lib.fsutil import remove_tree

FILE_MANIFEST = "files.jsonl.gz"


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

    def meta_path(self, key: str) -> str:
        return os.path.join(self._dir(key), "meta.json")

    def meta(self, key: str) -> LayerMeta:
        """meta.json; FileNotFoundError when the layer is not cached, DamagedRecord when
        its meta.json is damaged (or missing from a layer dir that is there)."""
        path = self.meta_path(key)
        try:
            doc = readers.read_json(path, readers.LAYER_META_LIMIT, readers.LAYER_HINT)
        except FileNotFoundError:
            if os.path.lexists(self._dir(key)):
                from ..errors import DamagedRecord
                raise DamagedRecord(path, "it is missing", readers.LAYER_HINT) from None
            raise
        return readers.layer_meta(path, doc)

    def install(self, staged: str, key: str, meta: LayerMeta) -> bool:
        """Record meta.json and the file manifest of diff/ beside it, then rename the
        staged layer (a dir holding diff/) into place. False if another process
        installed the same layer first; the staged copy is then dropped."""
        meta = replace(meta, key=key, installed=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with open(os.path.join(staged, "meta.json"), "w") as f:
            jsonio.dump(dump(meta), f, indent=1, sort_keys=True)
        self._write_file_manifest(staged)
        os.chmod(staged, 0o755)
        try:
            os.rename(staged, self._dir(key))
        except OSError as exc:
            if not self.has(key):
                raise
            del exc
            return False
        return True

    @staticmethod
    def _write_file_manifest(staged: str) -> None:
        from ..layer import manifest
        data = manifest.encode(manifest.build(os.path.join(staged, "diff")))
        with open(os.path.join(staged, FILE_MANIFEST), "wb") as f:
            f.write(data)

    def file_manifest(self, key: str) -> dict[str, dict] | None:
        """The layer's recorded file manifest ('/path' -> facts), or None when it was
        installed without one. ValueError if the manifest is damaged."""
        from ..layer import manifest
        try:
            data = readers.read_bytes(os.path.join(self._dir(key), FILE_MANIFEST), readers.LAYER_META_LIMIT,
                                      readers.LAYER_HINT)
        except FileNotFoundError:
            return None
        return manifest.decode(data)

    def remove(self, key: str) -> None:
        """Rename away first so the layer vanishes in one step, then delete the files."""
        if not self.has(key):
            return
        doomed = self.store.staging_file("rmlayer")
        os.rename(self._dir(key), doomed)
        remove_tree(doomed)

    def list(self) -> list[str]:
        return ["sha256:" + name for name in readers.list_dir(self.directory) if is_hex(name, 64)]
