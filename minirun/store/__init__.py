"""The on-disk store under MINIRUN_ROOT (default /var/lib/minirun).

    blobs/sha256/<hex>            BlobStore       content store, verified before rename
    layers/sha256/<key>/          LayerStore      diff/ (files + whiteouts), meta.json
    images.json                   ImageIndex      references and image records
    containers/<id>/              ContainerStore  upper/ work/ merged/ l/ config.json state.json
    locks/                        locks.py        flock files
    tmp/                          Store.staging   everything is built here, then renamed into place

Each directory has exactly one owner module; no other module builds paths into it.
"""

from .root import Store, open_store

__all__ = ["Store", "open_store"]
