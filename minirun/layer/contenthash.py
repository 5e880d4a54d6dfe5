"""The sha256 of every file an extraction writes, taken from the data as it goes
by, for the layer's file manifest (see manifest.remember_hashes): installing the
layer then need not read it back.

The data of a big file is hashed on a thread of its own (hashlib lets go of the
GIL for pieces of 2 KiB and more), so the extractor goes on with its system
calls meanwhile; a small file is hashed inline, where a queue would cost more
than the hash. At most QUEUE pieces wait, each a view of one of the Feed's
chunks, so the memory held is bounded.
"""

from __future__ import annotations

import hashlib
import queue
import threading

BIG = 1 << 16          # bytes from which a file's data is hashed on the thread
QUEUE = 32             # pieces waiting for the thread


class ContentHashes:
    """(st_dev, st_ino) -> (st_size, st_ctime_ns, sha256 hex) of the files written."""

    def __init__(self):
        self._known: dict[tuple[int, int], tuple[int, int, object]] = {}
        self._jobs: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def updater(self, size: int):
        """(hash object, function taking each piece of a file of this size in order)."""
        digest = hashlib.sha256()
        if size < BIG:
            return digest, digest.update
        if self._thread is None:
            self._jobs = queue.Queue(QUEUE)
            self._thread = threading.Thread(target=self._run, name="layer-hasher", daemon=True)
            self._thread.start()
        put, update = self._jobs.put, digest.update
        return digest, lambda piece: put((update, piece))

    def record(self, st, digest) -> None:
        """The file with this fstat result holds the data `digest` was given."""
        self._known[(st.st_dev, st.st_ino)] = (st.st_size, st.st_ctime_ns, digest)

    def relink(self, st) -> None:
        """A new hard link moved the ctime of a file recorded here; its data is the same."""
        known = self._known.get((st.st_dev, st.st_ino))
        if known is not None:
            self._known[(st.st_dev, st.st_ino)] = (st.st_size, st.st_ctime_ns, known[2])

    def close(self) -> None:
        """Wait for the thread (idempotent)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def result(self) -> dict[tuple[int, int], tuple[int, int, str]]:
        self.close()
        if self._failure is not None:
            raise self._failure
        return {key: (size, ctime_ns, digest.hexdigest())
                for key, (size, ctime_ns, digest) in self._known.items()}

    def _run(self) -> None:
        get = self._jobs.get
        while (job := get()) is not None:
            if self._failure is None:
                try:
                    job[0](job[1])
                except BaseException as exc:     # kept for result(); keep draining the queue
                    self._failure = exc
