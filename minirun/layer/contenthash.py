"""The sha256 of every file an extraction writes, taken from the data as it goes
by, for the layer's file manifest (see manifest.remember_hashes): installing the
layer then need not read it back.

The hashing is inline. A thread of its own for big files was measured and lost
(a Debian minbase layer: 0.66-0.71 s with it, 0.64-0.68 s without): it competes
for the second core with the reader thread, which the extractor then waits on,
and hashlib already lets go of the GIL for pieces of 2 KiB and more.
"""

from __future__ import annotations

import hashlib


class ContentHashes:
    """(st_dev, st_ino) -> (st_size, st_ctime_ns, sha256 hex) of the files written."""

    def __init__(self):
        self._known: dict[tuple[int, int], tuple[int, int, object]] = {}

    @staticmethod
    def updater(size: int):
        """(hash object, function taking each piece of the file's data in order)."""
        digest = hashlib.sha256()
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
