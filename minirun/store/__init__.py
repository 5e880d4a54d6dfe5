"""The on-disk store under MINIRUN_ROOT (default /var/lib/minirun).

    blobs/sha256/<hex>            blobs.py       BlobStore: content store, verified before rename
    layers/sha256/<key>/          layers.py      LayerStore: diff/ (files + whiteouts), meta.json
    images.json                   index.py       ImageIndex: references and image records
    containers/<id>/              containers.py  ContainerStore: upper/ work/ init/ l/
                                                 config.json state.json container.log
    locks/                        locks.py       flock files
    tmp/                          root.py        Store.staging: everything is built here, then renamed
    mnt/                          root.py        the shared mount point each container's child mounts on

readers.py reads every record of the store the same way (bounded, no symlinks,
no FIFOs, each field's type checked); gc.py removes what nothing refers to. Each
directory has exactly one owner module; no other module builds paths into it
(networks/ is network/ipam.py's, seccomp/ sandbox/seccomp.py's).
"""

from .root import Store, open_store

__all__ = ["Store", "open_store"]
