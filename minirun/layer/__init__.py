"""Layer contents, safely, on any filesystem: unpack a tar into a layer dir,
pack one back, and read an upper dir as changes.

    unpack.py      decompress, hash the diff_id, count against limits.py, feed extract
    feed.py        the decompressing reader thread (gzip through isal when present, zstd)
    extract.py     one tar entry, safely; attrs.py owners, modes, xattrs, times
    safeopen.py    directory fds that never follow a symlink (openat2 or O_NOFOLLOW walks)
    whiteout.py    .wh. names <-> overlayfs whiteouts and opaque dirs
    limits.py      caps on one layer's bytes and entries
    pack.py        a directory tree -> a layer tar (commit, export)
    changes.py     an upper dir as A/C/D changes; lowerview.py what the lower layers show
    manifest.py    per-layer file manifests (fsck); contenthash.py their hashes
    compare.py     two trees' facts compared; tree.py snapshots of a tree (for tests)
"""
