"""Unpack one layer blob into a directory that overlayfs can use as a lower dir.

Three levels, each testable alone:
    unpack_blob(stream, compression, dest, ...)   decompress + hash + extract
    extract.Extractor.entry(member, data)         one tar entry, safely (see extract.py
                                                  for how no symlink is ever followed)
    whiteout.classify / make_whiteout             the OCI -> overlay mapping

This module owns the stream: decompression, the diff_id hash, the tar reader, and
the byte budget that keeps a hostile tar from making us read (or tarfile hold in
memory) more than limits.py allows.

Two threads share the work (see feed.py): a reader thread reads the blob
(copying it to the blob store), decompresses it (python-isal when installed)
and hashes the diff_id; this thread parses the tar headers, makes the files and
hashes each file's data for the file manifest (contenthash.py). The C parts
(inflate, sha256, write) run without the GIL, so they overlap.
Where the time goes on a Debian minbase layer (127 MB, 6676 entries, see
benchmarks/extract.py): the reader thread ~0.33 s CPU (inflate 0.17, diff_id
0.09, the blob's copy and hash 0.07); this thread ~0.5 s (system calls to make
files ~0.25, tar headers ~0.08, the rest bookkeeping), then the file manifest ~0.1 s.

Limits, read from the environment:
    MINIRUN_MAX_LAYER_BYTES     bytes of one layer, uncompressed (default 64 GiB): file
                                data (a sparse file counts with its full size) and headers
    MINIRUN_MAX_LAYER_ENTRIES   entries in one layer (default 2,000,000)
and one fixed: the extended headers of a single entry may not pass 1 MiB.
"""

from __future__ import annotations

import gzip
import struct
import tarfile
import zlib
from ..lib.frozen import dataclass, field
from typing import BinaryIO

from ..errors import BadImage, DigestMismatch, context, named
from ..lib.fsutil import read_into
from .extract import CHUNK, Extractor, safe_name
from .feed import Feed, Producer, gzip_reader
from .limits import Limits

__all__ = ["CHUNK", "Extractor", "Tee", "UnpackResult", "decompressor", "safe_name", "unpack_blob"]

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
    # (st_dev, st_ino) -> (st_size, st_ctime_ns, sha256 hex): see manifest.remember_hashes
    content_hashes: dict = field(default_factory=dict)


class Tee:
    """Pass reads through while copying them to a sink (the blob being stored); past
    `size` bytes (the blob's declared size, when known) reading is a BadImage."""

    def __init__(self, src: BinaryIO, sink, size: int | None = None):
        self.src, self.sink, self.size = src, sink, size
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self._counted(len(data))
            if self.sink is not None:
                self.sink.write(data)
        return data

    def _counted(self, n: int) -> None:
        self.count += n
        if self.size is not None and self.count > self.size:
            raise BadImage(f"the blob is longer than the {self.size} bytes it was declared with",
                           "the file grew while it was read, or the descriptor is wrong")

    def readinto(self, buf) -> int:
        """What python-isal's gzip reader calls: no copy through a bytes object."""
        n = read_into(self.src, buf)
        if n:
            self._counted(n)
            if self.sink is not None:
                self.sink.write(memoryview(buf)[:n])
        return n


_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s12x")


class _TarInfo(tarfile.TarInfo):
    """tarfile's TarInfo with a quicker frombuf for the usual header: octal numbers,
    an unsigned checksum that matches, not an old GNU sparse entry. Anything else,
    and every error, goes to tarfile's own frombuf, so the result (or the exception)
    is always the one tarfile would give."""

    __slots__ = ()

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        try:
            return cls._quick(buf, encoding, errors)
        except (ValueError, IndexError, TypeError, struct.error, UnicodeError):
            return super().frombuf(buf, encoding, errors)

    @classmethod
    def _quick(cls, buf, encoding, errors):
        (name, mode, uid, gid, size, mtime, chksum, kind, linkname, uname, gname,
         devmajor, devminor, prefix) = _HEADER.unpack(buf)
        chksum = _octal(chksum)
        if chksum != 256 + sum(buf) - sum(buf[148:156]) or kind == tarfile.GNUTYPE_SPARSE:
            raise ValueError("not the usual header")
        obj = cls()
        obj.name = name.split(b"\0", 1)[0].decode(encoding, errors)
        obj.mode, obj.uid, obj.gid = _octal(mode), _octal(uid), _octal(gid)
        obj.size, obj.mtime = _octal(size), _octal(mtime)
        obj.chksum = chksum
        obj.type = kind
        obj.linkname = linkname.split(b"\0", 1)[0].decode(encoding, errors)
        obj.uname = uname.split(b"\0", 1)[0].decode(encoding, errors)
        obj.gname = gname.split(b"\0", 1)[0].decode(encoding, errors)
        obj.devmajor, obj.devminor = _octal(devmajor), _octal(devminor)
        prefix = prefix.split(b"\0", 1)[0].decode(encoding, errors)
        if kind == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE
        if obj.isdir():
            obj.name = obj.name.rstrip("/")
        if prefix and obj.type not in tarfile.GNU_TYPES:
            obj.name = prefix + "/" + obj.name
        return obj


def _octal(field: bytes) -> int:
    """tarfile.nti for an octal field: digits, then NULs or spaces. Anything else
    (a NUL inside, base-256, other bytes) is a ValueError, and tarfile decides."""
    digits = field.rstrip(b"\0 ")
    return int(digits, 8) if digits else 0


def decompressor(raw, compression: str):
    """A readable stream of the uncompressed tar ("gzip", "zstd" or "none")."""
    if compression == "gzip":
        return gzip_reader(raw)
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
                expected_diff_id: str | None = None, what: str = "layer",
                blob_size: int | None = None) -> UnpackResult:
    """Extract a layer blob into dest (an empty dir), verifying the diff_id as it streams.

    blob_sink, if given, receives the raw (compressed) bytes, so a blob can be
    stored and extracted in one pass; blob_size, if given, is the most raw bytes
    read. Reading, decompressing and hashing run on a thread (feed.Producer) that
    is stopped before this returns or raises, so the caller may go on reading
    `stream` afterwards. An empty stream (a 0-byte blob, as Docker takes it) is an
    empty layer, whose diff_id is the sha256 of nothing."""
    limits = Limits.from_env()
    tee = Tee(stream, blob_sink, blob_size)
    try:
        producer = Producer(decompressor(tee, compression)).start()
    except BadImage as exc:
        raise context(what, exc)
    feed = Feed(producer)
    try:
        with Extractor(dest) as extractor:
            _extract_all(feed, extractor, limits)
            extractor.finish()
            hashes = extractor.hashes.result()
        feed.allow_trailing(limits.remaining())
        feed.drain()                      # padding after the tar's end is part of the diff_id
        producer.stop()
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
    finally:
        producer.stop()
    diff_id = "sha256:" + producer.hash.hexdigest()
    if expected_diff_id and diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content has diff_id {diff_id}, "
                             f"but the image config lists {expected_diff_id}")
    return UnpackResult(diff_id, extractor.files, extractor.size, list(extractor.implied), hashes)


def _extract_all(feed: Feed, extractor: Extractor, limits: Limits) -> None:
    """Every entry of the tar, each counted against the limits before it is written.

    tarfile reads the Feed in its seekable mode ("r:"), which reads exactly the
    headers it parses; the data of a plain regular file goes from the Feed's chunks
    straight to the file (Feed.view), a sparse one through tarfile's reader. No
    data at all is an empty layer: Docker reads a 0-byte blob so."""
    if feed.exhausted():
        return
    tar = _parse(lambda: tarfile.open(fileobj=feed, mode="r:", errorlevel=2,
                                             tarinfo=_TarInfo), "", 0)
    with tar:
        previous = ""
        while (member := _parse(tar.next, previous, tar.offset)) is not None:
            tar.members.clear()       # tarfile would keep every entry: memory a bomb could fill
            limits.charge(member, tar.offset)
            feed.allow(tar.offset, member.name)
            data = None
            if member.isreg():
                data = tar.extractfile(member) if member.sparse is not None else feed
                feed.seek(member.offset_data)
            try:
                extractor.entry(member, data)
            except _PARSE_ERRORS as exc:
                raise BadImage(f"entry {named(member.name)}: its data is truncated or corrupt: {exc}",
                               _DAMAGED) from exc
            previous = member.name
        stop = tar.offset
    # tarfile ends quietly at a header it cannot parse; only zeros may stand there
    block = feed.block_at(stop)
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
