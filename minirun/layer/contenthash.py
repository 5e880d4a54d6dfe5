"""Content hashes of files, for file manifests (manifest.py) and `minirun diff A B`.

A file of up to PIECE bytes is named by its sha256 (the fact "sha256"). A bigger
one by its "pieces" hash, whose cost follows the data a file holds rather than
the size it declares, so that a sparse file of a terabyte (one `truncate`
inside a container, or one sparse tar entry) costs nothing to hash:

    the file is cut into pieces of PIECE bytes at fixed offsets (the last one may
    be shorter); each piece that is not all zeros contributes b"D" + its sha256,
    and each run of all-zero pieces b"Z" + the run's length as 8 bytes; the hash
    is the sha256 of the header b"minirun-pieces-1\\0" + the size as 8 bytes,
    then those contributions in order.

It depends on the content alone, never on where the file has holes: a piece of
written zeros and a hole are the same piece. A hole is skipped with arithmetic
(Pieces.zeros), data is hashed once, and a piece is known to be zeros by its
sha256 (against the precomputed sha256 of PIECE zeros), so no byte is looked at
twice. The readers find holes with SEEK_DATA / SEEK_HOLE (file_hash), the
extractor knows them from the tar's sparse map.

The hashing is inline. A thread of its own for big files was measured and lost
(a Debian minbase layer: 0.66-0.71 s with it, 0.64-0.68 s without): it competes
for the second core with the reader thread, which the extractor then waits on,
and hashlib already lets go of the GIL for pieces of 2 KiB and more.
"""

from __future__ import annotations

import hashlib
import os

from ..lib.fsutil import data_extent

PIECE = 1 << 16
_HEADER = b"minirun-pieces-1\0"
_ZEROS = bytes(PIECE)
_ZERO_PIECE = hashlib.sha256(_ZEROS).digest()
READ = 1 << 20


def field(size: int) -> str:
    """The manifest fact that holds the hash of a file of this size."""
    return "sha256" if size <= PIECE else "pieces"


class Pieces:
    """The pieces hash of a file of `size` bytes, given its data in order (update)
    and its holes (zeros)."""

    def __init__(self, size: int):
        self.outer = hashlib.sha256(_HEADER + size.to_bytes(8, "big"))
        self.inner = hashlib.sha256()
        self.filled = 0            # bytes of the current piece seen
        self.run = 0               # all-zero pieces not yet written to outer

    def update(self, data) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), PIECE - self.filled)
            self.inner.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == PIECE:
                self._end_piece(self.inner.digest() == _ZERO_PIECE)

    def zeros(self, n: int) -> None:
        """n zero bytes (a hole): whole pieces of them are counted, not hashed."""
        if self.filled:
            take = min(n, PIECE - self.filled)
            self.update(_ZEROS[:take])
            n -= take
        whole, n = divmod(n, PIECE)
        self.run += whole
        if n:
            self.update(_ZEROS[:n])

    def _end_piece(self, zero: bool) -> None:
        if zero:
            self.run += 1
        else:
            self._flush_run()
            self.outer.update(b"D" + self.inner.digest())
        self.inner = hashlib.sha256()
        self.filled = 0

    def _flush_run(self) -> None:
        if self.run:
            self.outer.update(b"Z" + self.run.to_bytes(8, "big"))
            self.run = 0

    def hexdigest(self) -> str:
        if self.filled:
            self._end_piece(self.inner.digest() == hashlib.sha256(_ZEROS[:self.filled]).digest())
        self._flush_run()
        return self.outer.hexdigest()     # the pieces are all in: asking again gives the same


class Plain:
    """sha256 for a small file, with the same interface as Pieces."""

    def __init__(self, size: int):
        self.hash = hashlib.sha256()

    def update(self, data) -> None:
        self.hash.update(data)

    def zeros(self, n: int) -> None:
        self.hash.update(bytes(n))      # n <= PIECE

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def hasher(size: int):
    """What hashes a file of `size` bytes for its manifest fact (see field())."""
    return Plain(size) if size <= PIECE else Pieces(size)


def file_hash(fd: int, size: int, plain: bool = False) -> str:
    """The hash of the first `size` bytes of an open regular file, reading only its
    data: holes are found with SEEK_DATA and counted as zeros. A file that shrank
    meanwhile reads as zeros to `size`; one that grew is read to `size` only.
    plain=True gives the sha256 whatever the size (a manifest of format 1)."""
    h = hashlib.sha256() if plain else hasher(size)
    add_zeros = (lambda n: _zeros_into(h, n)) if plain else h.zeros
    pos = 0
    while pos < size:
        data, end = data_extent(fd, pos, size)
        if data > pos:
            add_zeros(data - pos)
            pos = data
        while pos < end:
            chunk = os.pread(fd, min(READ, end - pos), pos)
            if not chunk:                      # shrank under us: the rest reads as zeros
                add_zeros(size - pos)
                return h.hexdigest()
            h.update(chunk)
            pos += len(chunk)
    return h.hexdigest()


def _zeros_into(h, n: int) -> None:
    while n > 0:
        take = min(n, READ)
        h.update(bytes(take))
        n -= take


class ContentHashes:
    """(st_dev, st_ino) -> (st_size, st_ctime_ns, hash) of the files an extraction
    wrote, taken from the data as it went by, so installing the layer need not
    read them back (see manifest.remember_hashes)."""

    def __init__(self):
        self._known: dict[tuple[int, int], tuple[int, int, object]] = {}

    @staticmethod
    def updater(size: int):
        """(hash object, function taking each piece of the file's data in order); for a
        small file, hashlib's own object, whose update is called without a Python frame."""
        digest = hashlib.sha256() if size <= PIECE else Pieces(size)
        return digest, digest.update

    def record(self, st, digest) -> None:
        """The file with this fstat result holds the data `digest` was given."""
        self._known[(st.st_dev, st.st_ino)] = (st.st_size, st.st_ctime_ns, digest)

    def relink(self, st) -> None:
        """A new hard link moved the ctime of a file recorded here; its data is the same."""
        known = self._known.get((st.st_dev, st.st_ino))
        if known is not None:
            self._known[(st.st_dev, st.st_ino)] = (st.st_size, st.st_ctime_ns, known[2])

    def close(self) -> None:
        """Nothing runs in the background (kept so that callers need not know)."""

    def result(self) -> dict[tuple[int, int], tuple[int, int, str]]:
        return {key: (size, ctime_ns, digest.hexdigest())
                for key, (size, ctime_ns, digest) in self._known.items()}
