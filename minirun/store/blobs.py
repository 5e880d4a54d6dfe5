"""blobs/sha256/<hex>: the content store. A blob is written to tmp/, its
digest checked, and only then renamed into place, so every file here is
exactly the bytes its name promises."""

from __future__ import annotations

import errno
import os
import stat
from io import BufferedReader

from ..errors import DamagedRecord, DigestMismatch, NotFound
from ..lib.fsutil import is_hole
from ..lib.names import is_hex
from .. import oci
from ..oci import digest_hex, sha256_digest, short_id
from . import readers

MAX_READ = 64 << 20           # what read() takes: configs and manifests are far smaller
BLOB_HINT = ("`minirun fsck` checks every blob; remove this one and load or pull the images "
             "that need it again")


class BlobWriter:
    """A file in tmp/ that hashes what is written and becomes a blob on commit()."""

    def __init__(self, blobs: "BlobStore", expected: str | None, what: str):
        self._blobs = blobs
        self._expected = expected
        self._what = what
        self._tmp = blobs.store.staging_file("blob")
        self._file = open(self._tmp, "wb")
        import hashlib
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        if is_hole(data):         # zeros (a sparse source's holes) stay holes: see commit()
            self._file.seek(len(data), os.SEEK_CUR)
        else:
            self._file.write(data)
        self.size += len(data)
        return len(data)

    def check(self) -> str:
        """The digest of what was written; DigestMismatch (and nothing kept) if it is not the expected one."""
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected and digest != self._expected:
            self.abort()
            raise DigestMismatch(f"{self._what} {short_id(self._expected)}: content has digest "
                                 f"{digest}, expected {self._expected}")
        return digest

    def commit(self) -> str:
        """Verify the digest and rename the blob into place; returns its digest."""
        digest = self.check()
        self._file.truncate(self.size)   # a hole at the end is not written: give it its size
        self._file.flush()
        os.fsync(self._file.fileno())    # a blob's name must never stand for fewer bytes
        self._file.close()
        os.rename(self._tmp, self._blobs.path(digest))
        return digest

    def abort(self) -> None:
        try:
            self._file.close()      # flushes what is buffered: fails on a full disk
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.abort()


class BlobStore:
    def __init__(self, directory: str, store):
        self.directory = directory
        self.store = store

    def path(self, digest: str) -> str:
        return os.path.join(self.directory, digest_hex(digest))

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.path.getsize(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None

    def read(self, digest: str, limit: int = MAX_READ) -> bytes:
        """A small blob (a config, a manifest) whole: a regular file of at most limit
        bytes (DamagedRecord otherwise: a FIFO or a device never blocks or streams)."""
        try:
            return readers.read_bytes(self.path(digest), limit, BLOB_HINT)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None

    def open(self, digest: str) -> BufferedReader:
        """A blob to stream (a layer): a regular file, opened without following a symlink."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DamagedRecord(path, "it is a symlink", BLOB_HINT) from None
            raise
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise DamagedRecord(path, f"it is {readers.file_type(mode)}, not a file", BLOB_HINT)
        return open(fd, "rb")

    def writer(self, expected: str | None = None, what: str = "blob") -> BlobWriter:
        return BlobWriter(self, expected, what)

    def put(self, data: bytes, expected: str | None = None, what: str = "blob") -> str:
        """Store bytes (skipping the write when the blob is present) and return the digest."""
        digest = sha256_digest(data)
        if expected and digest != expected:
            raise DigestMismatch(f"{what} {short_id(expected)}: content has digest {digest}, "
                                 f"expected {expected}")
        if not self.has(digest):
            with self.writer(digest, what) as w:
                w.write(data)
                w.commit()
        return digest

    def adopt(self, path: str, digest: str) -> None:
        """Rename a file in tmp/ whose digest the caller has verified into place."""
        os.rename(path, self.path(digest))

    def remove(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def list(self) -> list[str]:
        return ["sha256:" + name for name in readers.list_dir(self.directory) if is_hex(name, 64)]


def layer_blob(store, layer) -> oci.Descriptor:
    """A stored blob holding this layer of an image (a record from images.json).

    Usually the blob the image names. When the layer was already cached from
    another image ("Already exists"), that blob may never have been fetched;
    then the layer's own blob serves: same diff_id, so the same uncompressed
    tar, perhaps compressed differently. Manifests written from these
    descriptors keep the image's config, hence its id."""
    if store.blobs.has(layer.blob):
        return oci.Descriptor(layer.media_type, layer.blob, layer.size)
    try:
        meta = store.layers.meta(layer.key)
    except (FileNotFoundError, DamagedRecord):
        meta = None
    if meta is not None and meta.blob and store.blobs.has(meta.blob):
        return oci.Descriptor(meta.media_type, meta.blob, os.path.getsize(store.blobs.path(meta.blob)))
    raise NotFound(f"no blob of layer {oci.short_id(layer.diff_id)} is in the store",
                   "pull or load the image again (or run `minirun fsck`)")
