"""Layer tars with one GNU sparse file, in each of GNU tar's sparse formats, built
byte by byte (tarfile cannot write them): for the hostile-layer corpus (hostile.py)."""

from __future__ import annotations

import tarfile
from typing import Callable

MTIME = 1700000000
REG = tarfile.REGTYPE


def _checksum(raw: bytearray, offset: int) -> None:
    raw[offset + 148:offset + 156] = b" " * 8
    raw[offset + 148:offset + 156] = f"{sum(raw[offset:offset + 512]):06o}\0 ".encode()


def _pax_records(records: list[tuple[str, str]]) -> bytes:
    """PAX records, keys repeated as given (GNU sparse 0.0 repeats offset/numbytes)."""
    out = b""
    for key, value in records:
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length)) + len(body) != length:
            length = len(str(length)) + len(body)
        out += str(length).encode() + body
    return out


def _header(name: str, size: int, kind: bytes = REG) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, 0o644, MTIME
    return info.tobuf(tarfile.USTAR_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def sparse_tar(fmt: str, name: str, real_size: int, segments: list[tuple[int, bytes]]) -> Callable[[], bytes]:
    """A layer tar of one sparse file in GNU format `fmt`: "0.0", "0.1" (PAX records),
    "1.0" (PAX, the map in the data) or "old" (type 'S', the map in the header).
    `segments` are (offset, data); none at all is a file of holes only (GNU tar then
    writes one empty segment at the end, as here)."""
    segments = segments or [(real_size, b"")]
    stored = b"".join(data for _, data in segments)
    spans = [(offset, len(data)) for offset, data in segments]

    def build() -> bytes:
        if fmt == "old":
            body = _old_gnu_sparse_header(name, real_size, spans, len(stored))
        elif fmt == "1.0":
            sparse_map = _padded("".join(f"{n}\n" for n in [len(spans)] + [x for s in spans for x in s]).encode())
            records = [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", name),
                       ("GNU.sparse.realsize", str(real_size))]
            pax = _pax_records(records)
            body = (_header("PaxHeaders/x", len(pax), tarfile.XHDTYPE) + _padded(pax)
                    + _header(f"GNUSparseFile.0/{name}", len(sparse_map) + len(stored)) + sparse_map)
        else:
            records = [("GNU.sparse.size", str(real_size)), ("GNU.sparse.numblocks", str(len(spans)))]
            if fmt == "0.0":
                for offset, length in spans:
                    records += [("GNU.sparse.offset", str(offset)), ("GNU.sparse.numbytes", str(length))]
            else:
                records += [("GNU.sparse.map", ",".join(str(x) for s in spans for x in s)),
                            ("GNU.sparse.name", name)]
            pax = _pax_records(records)
            body = (_header("PaxHeaders/x", len(pax), tarfile.XHDTYPE) + _padded(pax)
                    + _header(name if fmt == "0.0" else f"GNUSparseFile.0/{name}", len(stored)))
        return body + _padded(stored) + bytes(1024)
    return build


def _old_gnu_sparse_header(name: str, real_size: int, spans: list[tuple[int, int]], stored: int) -> bytes:
    """A GNU 'S' header with up to four (offset, numbytes) pairs in it, then extension
    blocks of 21 pairs each, as GNU tar writes them with --format=gnu --sparse."""
    raw = bytearray(_header(name, stored))
    raw[156:157] = b"S"
    raw[257:265] = b"ustar  \0"
    def field(n: int) -> bytes:           # 12 bytes: octal, or GNU's base-256 when it does not fit
        return f"{n:011o}\0".encode() if n < 8 ** 11 else b"\x80" + n.to_bytes(11, "big")
    for i, (offset, length) in enumerate(spans[:4]):
        raw[386 + 24 * i:398 + 24 * i], raw[398 + 24 * i:410 + 24 * i] = field(offset), field(length)
    rest = spans[4:]
    raw[482] = 1 if rest else 0
    raw[483:495] = field(real_size)
    _checksum(raw, 0)
    blocks = bytes(raw)
    while rest:
        block = bytearray(512)
        for i, (offset, length) in enumerate(rest[:21]):
            block[24 * i:24 * i + 12], block[24 * i + 12:24 * i + 24] = field(offset), field(length)
        rest = rest[21:]
        block[504] = 1 if rest else 0
        blocks += bytes(block)
    return blocks
