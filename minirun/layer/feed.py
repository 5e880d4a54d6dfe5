"""The uncompressed tar of one layer, produced by a reader thread and read back
by the extractor through a bounded queue.

    Producer   a thread: reads the raw blob (through a Tee, so the blob store gets
               the compressed bytes), decompresses, and hashes the uncompressed
               stream (the diff_id). Decompression, hashing and the blob's writes
               run in C and mostly without the GIL, so they overlap the extractor's
               system calls. It is at most QUEUE chunks ahead of the reader, so a
               decompression bomb costs QUEUE * CHUNK bytes of memory at most.
    Feed       what tarfile reads ("r:" mode): read, tell, and a forward seek that
               consumes what it skips. Reads stop with a BadImage past `limit`: the
               unpacker moves it to the end of each entry's data plus HEADER_BYTES,
               so the extended headers of the next entry (which tarfile reads whole
               into memory) stay small. view() hands out the data of a regular file
               as memoryviews of the chunks, without copying.

A failure in the thread (a corrupt stream, a full disk under the blob) is raised
again in the reader, at the point where it reads past the last good chunk, so
the caller sees the same exception types as with a synchronous read.
"""

from __future__ import annotations

import gzip
import hashlib
import queue
import threading
import zlib
from collections import deque

from ..errors import BadImage, named
from .limits import HEADER_BYTES

CHUNK = 1 << 20              # uncompressed bytes per chunk
QUEUE = 8                    # chunks the producer may run ahead
READ_AHEAD = 2 * 10240       # slack on the limit, as tarfile's stream mode read ahead
WINDOW = 1 << 16             # bytes kept behind the position (see block_at)

try:                         # ISA-L's inflate: about twice zlib's speed
    from isal import igzip as _igzip
    from isal.isal_zlib import error as _isal_error
except ImportError:          # pragma: no cover - depends on what is installed
    _igzip, _isal_error = None, None

_DAMAGED = "rebuild the image; this layer's tar is damaged or hostile"
_END = object()


def gzip_reader(raw, *, use_isal: bool = True):
    """A gzip stream reader: python-isal's when installed (same semantics as
    gzip.GzipFile: concatenated members, zero padding), else the standard one."""
    if use_isal and _igzip is not None:
        return _IsalReader(_igzip.IGzipFile(fileobj=raw, mode="rb"))
    return gzip.GzipFile(fileobj=raw, mode="rb")


class _IsalReader:
    """IGzipFile whose bad-deflate error is zlib's, as every caller already expects."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        try:
            return self.stream.read(n)
        except _isal_error as exc:
            raise zlib.error(str(exc)) from exc

    def close(self) -> None:
        self.stream.close()


class Producer:
    """Decompress and hash `stream` on a thread, filling `chunks`."""

    def __init__(self, stream):
        self.stream = stream
        self.hash = hashlib.sha256()
        self.chunks: queue.Queue = queue.Queue(QUEUE)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="layer-reader", daemon=True)

    def start(self) -> "Producer":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            read, update = self.stream.read, self.hash.update
            while not self.stopping:
                data = read(CHUNK)
                if not data:
                    break
                update(data)
                self._put(data)
        except BaseException as exc:     # handed over and raised in the reader's thread
            self._put(exc)
            return
        self._put(_END)

    def _put(self, item) -> None:
        while not self.stopping:
            try:
                self.chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        """Stop the thread and wait for it: after this, nothing reads the stream."""
        self.stopping = True
        while self.thread.is_alive():
            try:
                while True:
                    self.chunks.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(0.05)


class Feed:
    """A forward-only file object over the producer's chunks, for tarfile."""

    def __init__(self, producer: Producer):
        self.producer = producer
        self.buf = b""                # the current chunk
        self.at = 0                   # read position inside buf
        self.base = 0                 # stream offset of buf[0]
        self.done = False
        self.recent: deque[bytes] = deque()   # chunks before buf, at least WINDOW bytes of them
        self.recent_bytes = 0
        self.limit = HEADER_BYTES + READ_AHEAD
        self.after = ""               # the last entry seen, for the message
        self.trailing = False         # past the tar's end: the limit is the layer's budget

    # ------------------------------------------------------------ file object

    def tell(self) -> int:
        return self.base + self.at

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("the layer stream is read in bounded pieces")
        self._check(n)
        if self.at + n <= len(self.buf):
            start = self.at
            self.at += n
            return self.buf[start:self.at]
        pieces = []
        while n > 0 and self._fill():
            take = min(n, len(self.buf) - self.at)
            pieces.append(self.buf[self.at:self.at + take])
            self.at += take
            n -= take
        return b"".join(pieces)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.tell()
        elif whence != 0:
            raise ValueError("the layer stream seeks from its start only")
        if offset < self.base:
            raise ValueError("the layer stream cannot seek back past its current chunk")
        if offset <= self.base + len(self.buf):
            self.at = offset - self.base
            return offset
        self._check(offset - self.tell())
        while offset > self.base + len(self.buf):
            self.at = len(self.buf)
            if not self._fill():
                return self.tell()        # past the end: later reads find nothing
        self.at = offset - self.base
        return offset

    def exhausted(self) -> bool:
        """Whether nothing is left to read at the position (at the start: an empty stream)."""
        return not self._fill()

    def view(self, n: int):
        """Up to n bytes at the position as memoryviews of the chunks (fewer at the end)."""
        self._check(n)
        while n > 0 and self._fill():
            take = min(n, len(self.buf) - self.at)
            yield memoryview(self.buf)[self.at:self.at + take]
            self.at += take
            n -= take

    # ------------------------------------------------------------ limits

    def allow(self, next_offset: int, after: str) -> None:
        """The current entry ends at next_offset: permit its data and one entry's headers."""
        self.limit = next_offset + HEADER_BYTES + READ_AHEAD
        self.after = after

    def allow_trailing(self, remaining: int) -> None:
        """After the tar's end: permit what is left of the layer's byte budget."""
        self.limit = self.tell() + remaining + READ_AHEAD
        self.trailing = True

    def drain(self) -> None:
        """Read to the end (padding after the tar's end is part of the diff_id)."""
        while True:
            self.at = len(self.buf)
            self._check(0)
            if not self._fill():
                return

    def block_at(self, offset: int) -> bytes | None:
        """The 512 bytes at offset if they were read and are still kept, else None."""
        window = b"".join(self.recent) + self.buf
        start = offset - (self.base - self.recent_bytes)
        if start < 0 or start >= len(window):
            return None
        return window[start:start + 512]

    # ------------------------------------------------------------ helpers

    def _check(self, n: int) -> None:
        if self.base + self.at + n > self.limit:
            raise self._over_limit()

    def _fill(self) -> bool:
        """Move to the next chunk when the current one is used up; False at the end."""
        if self.at < len(self.buf):
            return True
        if self.done:
            return False
        item = self.producer.chunks.get()
        if item is _END:
            self.done = True
            return False
        if isinstance(item, BaseException):
            self.done = True
            raise item
        if self.buf:
            self.recent.append(self.buf)
            self.recent_bytes += len(self.buf)
            while self.recent_bytes - len(self.recent[0]) >= WINDOW:
                self.recent_bytes -= len(self.recent.popleft())
        self.base += len(self.buf)
        self.buf, self.at = item, 0
        return True

    def _over_limit(self) -> BadImage:
        if self.trailing:
            return BadImage("the bytes after the tar's end take the layer past its "
                            "MINIRUN_MAX_LAYER_BYTES budget",
                            "raise MINIRUN_MAX_LAYER_BYTES if you trust this image")
        where = f"after entry {named(self.after)}" if self.after else "at the start of the layer"
        return BadImage(f"the tar headers {where} pass {HEADER_BYTES} bytes (a PAX, GNU long-name "
                        "or sparse-map header that big is an attack, not a file)", _DAMAGED)
