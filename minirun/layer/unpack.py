"""Unpack one layer blob into a directory that overlayfs can use as a lower dir.

Three levels, each testable alone:
    unpack_blob(stream, compression, dest, ...)   decompress + hash + extract
    extract.Extractor.entry(member, data)         one tar entry, safely (see extract.py
                                                  for how no symlink is ever followed)
    whiteout.classify / make_whiteout             the OCI -> overlay mapping

This module owns the stream: decompression, the diff_id hash, the tar reader, and
the byte budget that keeps a hostile tar from making us read (or tarfile hold in
memory) more than limits.py allows. Limits, read from the environment:
    MINIRUN_MAX_LAYER_BYTES     bytes of one layer, uncompressed (default 64 GiB): file
                                data (a sparse file counts with its full size) and headers
    MINIRUN_MAX_LAYER_ENTRIES   entries in one layer (default 2,000,000)
and one fixed: the extended headers of a single entry may not pass 1 MiB.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from collections import deque
from ..record import dataclass, field
from typing import BinaryIO

from ..errors import BadImage, DigestMismatch, context, named
from .extract import CHUNK, Extractor, safe_name
from .limits import HEADER_BYTES, Limits

__all__ = ["CHUNK", "Extractor", "Tee", "UnpackResult", "decompressor", "safe_name", "unpack_blob"]

# how far tarfile's stream reads ahead of the header it parses
_READ_AHEAD = 2 * tarfile.RECORDSIZE
# what tarfile and the decompressors raise on bad input (tarfile is not picky)
_PARSE_ERRORS = (EOFError, tarfile.TarError, gzip.BadGzipFile, zlib.error, ValueError, IndexError,
                 OverflowError, UnicodeError)
_DAMAGED = "rebuild the image; this layer's tar is damaged or hostile"


@dataclass
class UnpackResult:
    diff_id: str
    files: int = 0
    size: int = 0
    implied_dirs: list[str] = field(default_factory=list)


class Tee:
    """Pass reads through while copying them to a sink (the blob being stored)."""

    def __init__(self, src: BinaryIO, sink):
        self.src, self.sink = src, sink

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data and self.sink is not None:
            self.sink.write(data)
        return data


class _Hasher:
    """Hash the uncompressed stream as tarfile reads it: that hash is the diff_id.

    The last WINDOW bytes read are kept, so the block where tarfile stopped can be
    looked at afterwards (see block_at). Reads stop with a BadImage past `limit`:
    unpack_blob moves it to the end of each entry's data plus HEADER_BYTES, so the
    headers of the next entry (which tarfile reads whole into memory) stay small."""

    WINDOW = 1 << 16

    def __init__(self, src):
        self.src = src
        self.hash = hashlib.sha256()
        self.position = 0                 # bytes read so far
        self.recent: deque[bytes] = deque()   # the last reads, at least WINDOW bytes of them
        self.recent_bytes = 0
        self.limit = HEADER_BYTES + _READ_AHEAD
        self.after = ""                   # the last entry seen, for the message
        self.trailing = False             # past the tar's end: the limit is the layer's budget

    def read(self, n: int = -1) -> bytes:
        if self.position > self.limit:
            raise self._over_limit()
        data = self.src.read(n)
        self.hash.update(data)
        self.position += len(data)
        self.recent.append(data)
        self.recent_bytes += len(data)
        while self.recent_bytes - len(self.recent[0]) >= self.WINDOW:
            self.recent_bytes -= len(self.recent.popleft())
        return data

    def allow(self, next_offset: int, after: str) -> None:
        """The current entry ends at next_offset: permit its data and one entry's headers."""
        self.limit = next_offset + HEADER_BYTES + _READ_AHEAD
        self.after = after

    def allow_trailing(self, remaining: int) -> None:
        """After the tar's end: permit what is left of the layer's byte budget."""
        self.limit = self.position + remaining + _READ_AHEAD
        self.trailing = True

    def _over_limit(self) -> BadImage:
        if self.trailing:
            return BadImage("the bytes after the tar's end take the layer past its "
                            "MINIRUN_MAX_LAYER_BYTES budget",
                            "raise MINIRUN_MAX_LAYER_BYTES if you trust this image")
        where = f"after entry {named(self.after)}" if self.after else "at the start of the layer"
        return BadImage(f"the tar headers {where} pass {HEADER_BYTES} bytes (a PAX, GNU long-name "
                        "or sparse-map header that big is an attack, not a file)", _DAMAGED)

    def block_at(self, offset: int) -> bytes | None:
        """The 512 bytes at offset if they were read and are still kept, else None."""
        window = b"".join(self.recent)
        start = offset - (self.position - len(window))
        if start < 0 or start >= len(window):
            return None
        return window[start:start + 512]

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def decompressor(raw, compression: str):
    """A readable stream of the uncompressed tar ("gzip", "zstd" or "none")."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "none":
        return raw
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise BadImage("zstd layers need the zstandard package",
                           "pip install zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise BadImage(f"unknown compression {compression!r}")


def unpack_blob(stream: BinaryIO, compression: str, dest: str, *, blob_sink=None,
                expected_diff_id: str | None = None, what: str = "layer") -> UnpackResult:
    """Extract a layer blob into dest (an empty dir), verifying the diff_id as it streams.

    blob_sink, if given, receives the raw (compressed) bytes, so a blob can be
    stored and extracted in one pass."""
    limits = Limits.from_env()
    tee = Tee(stream, blob_sink)
    hasher = _Hasher(decompressor(tee, compression))
    try:
        with Extractor(dest) as extractor:
            _extract_all(hasher, extractor, limits)
            extractor.finish()
        hasher.allow_trailing(limits.remaining())
        hasher.drain()                    # padding after the tar's end is part of the diff_id
        while tee.read(CHUNK):
            pass
    except BadImage as exc:
        raise context(what, exc)
    except _PARSE_ERRORS as exc:
        raise BadImage(f"{what}: truncated or corrupt layer data: {exc}") from exc
    except OSError as exc:
        raise BadImage(f"{what}: read: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("zstandard"):
            raise BadImage(f"{what}: corrupt zstd data: {exc}") from exc
        raise
    diff_id = "sha256:" + hasher.hash.hexdigest()
    if expected_diff_id and diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content has diff_id {diff_id}, "
                             f"but the image config lists {expected_diff_id}")
    return UnpackResult(diff_id, extractor.files, extractor.size, list(extractor.implied))


def _extract_all(hasher: _Hasher, extractor: Extractor, limits: Limits) -> None:
    """Every entry of the tar, each counted against the limits before it is written."""
    tar = _parse(lambda: tarfile.open(fileobj=hasher, mode="r|", errorlevel=2), "", 0)
    with tar:
        previous = ""
        while (member := _parse(tar.next, previous, tar.offset)) is not None:
            tar.members.clear()       # tarfile would keep every entry: memory a bomb could fill
            limits.charge(member, tar.offset)
            hasher.allow(tar.offset, member.name)
            data = tar.extractfile(member) if member.isreg() else None
            try:
                extractor.entry(member, data)
            except _PARSE_ERRORS as exc:
                raise BadImage(f"entry {named(member.name)}: its data is truncated or corrupt: {exc}",
                               _DAMAGED) from exc
            previous = member.name
        stop = tar.offset
    # tarfile ends quietly at a header it cannot parse; only zeros may stand there
    block = hasher.block_at(stop)
    if block and block.count(0) != len(block):
        raise BadImage(f"the tar header at byte {stop} is corrupt (an entry before it "
                       "may declare the wrong size)", _DAMAGED)


def _parse(step, previous: str, offset: int):
    """step() reads tar headers: a failure there names the last good entry."""
    try:
        return step()
    except _PARSE_ERRORS as exc:
        where = f"after entry {named(previous)}" if previous else "in its first entry"
        raise BadImage(f"the tar is truncated or corrupt {where} (byte {offset}): {exc}",
                       _DAMAGED) from exc
