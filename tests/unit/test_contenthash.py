"""The content hash of file manifests (minirun.layer.contenthash): sha256 up to
64 KiB, the "pieces" hash above, checked against a plain reference written from
its definition, for streamed data, holes given as zeros, and sparse files read
with SEEK_DATA. A hole and written zeros hash alike; holes are never read."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from minirun.layer import contenthash
from minirun.layer.contenthash import PIECE, Pieces, field, file_hash, hasher


def reference(data: bytes) -> str:
    if len(data) <= PIECE:
        return hashlib.sha256(data).hexdigest()
    out = hashlib.sha256(b"minirun-pieces-1\0" + len(data).to_bytes(8, "big"))
    run = 0
    for at in range(0, len(data), PIECE):
        piece = data[at:at + PIECE]
        if piece.count(0) == len(piece):
            run += 1
            continue
        if run:
            out.update(b"Z" + run.to_bytes(8, "big"))
            run = 0
        out.update(b"D" + hashlib.sha256(piece).digest())
    if run:
        out.update(b"Z" + run.to_bytes(8, "big"))
    return out.hexdigest()


def content(size: int, extents: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(size)
    for at, data in extents:
        out[at:at + len(data)] = data
    return bytes(out)


CASES = {
    "empty": (0, []),
    "small": (100, [(0, b"x" * 100)]),
    "one piece exactly": (PIECE, [(0, os.urandom(PIECE))]),
    "one piece and a byte": (PIECE + 1, [(PIECE, b"z")]),
    "zeros only": (5 * PIECE + 7, []),
    "data between holes": (20 * PIECE + 3, [(3, b"head"), (7 * PIECE - 2, b"across a boundary"),
                                            (20 * PIECE, b"end")]),
    "zeros written as data": (3 * PIECE, [(PIECE, bytes(PIECE))]),
    "short zero tail": (4 * PIECE + 10, [(0, b"a" * PIECE)]),
}


@pytest.mark.parametrize("name", CASES)
def test_streamed_in_any_split_it_matches_the_reference(name):
    size, extents = CASES[name]
    data = content(size, extents)
    rng = random.Random(name)
    h = hasher(size)
    at = 0
    while at < size:
        step = rng.choice([1, 511, 4096, PIECE - 1, PIECE, 3 * PIECE + 5])
        h.update(data[at:at + step])
        at += step
    assert h.hexdigest() == reference(data)
    assert field(size) == ("sha256" if size <= PIECE else "pieces")


@pytest.mark.parametrize("name", CASES)
def test_holes_given_as_zeros_match_the_reference(name):
    size, extents = CASES[name]
    h, end = hasher(size), 0
    for at, data in sorted(extents):
        h.zeros(at - end)
        h.update(data)
        end = at + len(data)
    h.zeros(size - end)
    assert h.hexdigest() == reference(content(size, extents))


@pytest.mark.parametrize("name", CASES)
def test_a_sparse_file_and_a_dense_one_hash_alike(tmp_path, name):
    size, extents = CASES[name]
    sparse, dense = tmp_path / "sparse", tmp_path / "dense"
    with open(sparse, "wb") as f:
        for at, data in extents:
            f.seek(at)
            f.write(data)
        f.truncate(size)
    dense.write_bytes(content(size, extents))
    expected = reference(content(size, extents))
    for path in (sparse, dense):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert file_hash(fd, size) == expected
            assert file_hash(fd, size, plain=True) == hashlib.sha256(content(size, extents)).hexdigest()
        finally:
            os.close(fd)


def test_a_sparse_terabyte_is_hashed_without_reading_its_holes(tmp_path, monkeypatch):
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.seek(1 << 39)
        f.write(b"middle")
        f.truncate(1 << 40)
    read = []
    real = os.pread
    monkeypatch.setattr(contenthash.os, "pread", lambda fd, n, at: read.append(n) or real(fd, n, at))
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = file_hash(fd, 1 << 40)
    finally:
        os.close(fd)
    assert sum(read) <= 1 << 20
    expected = Pieces(1 << 40)
    expected.zeros(1 << 39)
    expected.update(b"middle")
    expected.zeros((1 << 40) - (1 << 39) - 6)
    assert digest == expected.hexdigest()


def test_a_file_that_shrank_reads_as_zeros_to_its_size(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a" * PIECE)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert file_hash(fd, 3 * PIECE) == reference(b"a" * PIECE + bytes(2 * PIECE))
    finally:
        os.close(fd)
