"""The fast paths of layer extraction, each against the slow path it replaces:
the reader thread and its Feed, python-isal and the gzip fallback, the quick tar
header parser, and the content hashes the extractor hands to the file manifest."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirun.errors import BadImage
from minirun.layer import feed, manifest, unpack
from minirun.layer.unpack import unpack_blob

from .conftest import TarBuilder, gzip_bytes, sha


def layer(files: int = 40, size: int = 70_000) -> bytes:
    """A tar whose data spans several of the Feed's chunks."""
    builder = TarBuilder().dir("d/", 0o755)
    for i in range(files):
        builder.file(f"d/f{i}", bytes([i % 251]) * (size + i), 0o644 if i % 2 else 0o600)
    return builder.bytes()


def reference_hash(data: bytes) -> str:
    """contenthash's rule, written out plainly: sha256 up to 64 KiB, else the pieces hash."""
    from tests.unit.test_contenthash import reference
    return reference(data)


def readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "layer-reader"]


@pytest.fixture(params=["isal", "gzip"])
def gzip_impl(request, monkeypatch):
    """Run a test with python-isal's reader and with the standard gzip fallback."""
    if request.param == "gzip":
        monkeypatch.setattr(feed, "_igzip", None)
    elif feed._igzip is None:
        pytest.skip("python-isal is not installed")
    return request.param


# ---------------------------------------------------------------- decompression

def test_gzip_reader_falls_back_without_isal(monkeypatch):
    monkeypatch.setattr(feed, "_igzip", None)
    reader = feed.gzip_reader(io.BytesIO(gzip_bytes(b"abc")))
    assert isinstance(reader, gzip.GzipFile)
    assert reader.read(10) == b"abc"


def test_gzip_reader_uses_isal_when_installed():
    if feed._igzip is None:
        pytest.skip("python-isal is not installed")
    reader = feed.gzip_reader(io.BytesIO(gzip_bytes(b"abc")))
    assert not isinstance(reader, gzip.GzipFile)
    assert reader.read(10) == b"abc"


def test_both_readers_unpack_the_same_layer(tmp_path, gzip_impl, monkeypatch):
    monkeypatch.setattr(feed, "CHUNK", 1 << 16)          # many chunks, many boundaries
    data = layer()
    sink = io.BytesIO()
    dest = tmp_path / "dest"
    dest.mkdir()
    result = unpack_blob(io.BytesIO(gzip_bytes(data)), "gzip", str(dest), blob_sink=sink)
    assert result.diff_id == sha(data)
    assert sink.getvalue() == gzip_bytes(data)
    assert (dest / "d/f7").read_bytes() == bytes([7]) * 70_007
    assert readers() == []


def test_corrupt_deflate_is_bad_image_with_either_reader(tmp_path, gzip_impl):
    blob = bytearray(gzip_bytes(layer(files=4)))
    for i in range(40, 400):
        blob[i] ^= 0x5A
    (tmp_path / "dest").mkdir()
    with pytest.raises(BadImage):
        unpack_blob(io.BytesIO(bytes(blob)), "gzip", str(tmp_path / "dest"))
    assert readers() == []


def test_concatenated_gzip_members_are_one_stream(tmp_path, gzip_impl):
    data = layer(files=6)
    blob = gzip_bytes(data[:5000]) + gzip_bytes(data[5000:])
    (tmp_path / "dest").mkdir()
    assert unpack_blob(io.BytesIO(blob), "gzip", str(tmp_path / "dest")).diff_id == sha(data)


# ---------------------------------------------------------------- the reader thread

def test_failure_stops_the_reader_and_leaves_the_stream_readable(tmp_path, monkeypatch):
    """The importer reads the rest of the blob after a failure (to blame a bad blob)."""
    monkeypatch.setattr(feed, "CHUNK", 1 << 12)
    monkeypatch.setattr(feed, "QUEUE", 2)
    data = TarBuilder().file("a", b"x" * 100_000).file("../evil", b"y").bytes() + bytes(1 << 20)
    stream = io.BytesIO(data)
    sink = io.BytesIO()
    (tmp_path / "dest").mkdir()
    with pytest.raises(BadImage, match="escapes"):
        unpack_blob(stream, "none", str(tmp_path / "dest"), blob_sink=sink)
    assert readers() == []
    sink.write(stream.read())                             # what _blame_blob_first does
    assert sink.getvalue() == data


def test_an_error_in_the_reader_thread_is_raised_in_the_caller(tmp_path):
    class Broken(io.RawIOBase):
        def readinto(self, buf):
            raise OSError(5, "Input/output error")
    (tmp_path / "dest").mkdir()
    with pytest.raises(BadImage, match="Input/output error"):
        unpack_blob(Broken(), "none", str(tmp_path / "dest"))
    assert readers() == []


def test_feed_refuses_reads_past_its_limit():
    producer = feed.Producer(io.BytesIO(bytes(4 * feed.HEADER_BYTES))).start()
    try:
        stream = feed.Feed(producer)
        stream.read(1000)
        with pytest.raises(BadImage, match="headers at the start"):
            stream.read(2 * feed.HEADER_BYTES)            # refused before it is read
        stream.allow(3 * feed.HEADER_BYTES, "x")
        stream.seek(2 * feed.HEADER_BYTES)
        assert stream.tell() == 2 * feed.HEADER_BYTES
        with pytest.raises(BadImage, match="after entry 'x'"):
            stream.seek(5 * feed.HEADER_BYTES)
    finally:
        producer.stop()
    assert readers() == []


def test_feed_seeks_back_within_its_chunk_only():
    producer = feed.Producer(io.BytesIO(bytes(range(256)) * 8)).start()
    try:
        stream = feed.Feed(producer)
        assert stream.read(10) == bytes(range(10))
        stream.seek(9)
        assert stream.read(2) == bytes([9, 10])
        assert stream.block_at(0)[:3] == bytes([0, 1, 2])
    finally:
        producer.stop()


# ---------------------------------------------------------------- quick tar headers

def _header(**fields) -> bytes:
    info = tarfile.TarInfo(fields.pop("name", "dir/file"))
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape")[-512:]


def _parse(cls, buf):
    try:
        info = cls.frombuf(buf, "utf-8", "surrogateescape")
    except Exception as exc:                  # noqa: BLE001 - the type is what is compared
        return type(exc)
    return {slot: getattr(info, slot) for slot in ("name", "mode", "uid", "gid", "size", "mtime", "chksum",
                                                   "type", "linkname", "uname", "gname", "devmajor",
                                                   "devminor", "_sparse_structs")
            if hasattr(info, slot)}


@pytest.mark.parametrize("buf", [
    _header(),
    _header(name="a/", type=tarfile.AREGTYPE),
    _header(name="d/", type=tarfile.DIRTYPE),
    _header(uid=8**7 + 5, gid=3),                        # base-256 number
    _header(mtime=-5),
    _header(type=tarfile.CHRTYPE, devmajor=4, devminor=64),
    _header(type=tarfile.SYMTYPE, linkname="../t\udcff"),
    bytes(512),
    b"",
    b"x" * 100,
])
def test_quick_header_parser_agrees_with_tarfile(buf):
    assert _parse(unpack._TarInfo, buf) == _parse(tarfile.TarInfo, buf)


def test_quick_header_parser_joins_ustar_prefix():
    info = tarfile.TarInfo("p/" * 60 + "name")
    buf = info.tobuf(format=tarfile.USTAR_FORMAT)
    assert unpack._TarInfo.frombuf(buf, "utf-8", "surrogateescape").name == info.name


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from([_header(), _header(type=tarfile.SYMTYPE, linkname="t"),
                             _header(name="d/", type=tarfile.DIRTYPE, mode=0o4755)]),
       edits=st.lists(st.tuples(st.integers(0, 511), st.integers(0, 255)), max_size=6),
       fix_checksum=st.booleans())
def test_quick_header_parser_agrees_on_damaged_headers(base, edits, fix_checksum):
    buf = bytearray(base)
    for at, value in edits:
        buf[at] = value
    if fix_checksum:
        buf[148:156] = b" " * 8
        buf[148:156] = b"%06o\0 " % (sum(buf) & 0o777777)
    assert _parse(unpack._TarInfo, bytes(buf)) == _parse(tarfile.TarInfo, bytes(buf))


# ---------------------------------------------------------------- known content hashes

def test_extraction_records_the_hash_of_each_file(tmp_path):
    (tmp_path / "dest").mkdir()
    result = unpack_blob(io.BytesIO(layer(files=3)), "none", str(tmp_path / "dest"))
    for i in range(3):
        st_ = os.lstat(tmp_path / f"dest/d/f{i}")
        size, ctime_ns, digest = result.content_hashes[(st_.st_dev, st_.st_ino)]
        assert (size, ctime_ns) == (st_.st_size, st_.st_ctime_ns)
        assert digest == reference_hash((tmp_path / f"dest/d/f{i}").read_bytes())


def test_manifest_uses_known_hashes_only_while_the_file_is_unchanged(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    path = root / "f"
    path.write_bytes(b"old")
    st_ = os.lstat(path)
    planted = "0" * 64                 # not the real hash: shows whether the hint was used
    manifest.remember_hashes(str(root), {(st_.st_dev, st_.st_ino): (st_.st_size, st_.st_ctime_ns, planted)})
    try:
        assert manifest.build(str(root))["/f"]["sha256"] == planted
        path.write_bytes(b"new")       # same size, new ctime
        assert manifest.build(str(root))["/f"]["sha256"] == hashlib.sha256(b"new").hexdigest()
    finally:
        manifest.forget_hashes(str(root))
    assert manifest.build(str(root))["/f"]["sha256"] == hashlib.sha256(b"new").hexdigest()


def test_manifest_after_extraction_matches_one_built_from_scratch(tmp_path):
    data = (TarBuilder().file("a", b"1" * 5000).hardlink("b", "a").file("c", b"2", 0o4755)
            .file("a2", b"3").bytes())
    dest = tmp_path / "dest"
    dest.mkdir()
    result = unpack_blob(io.BytesIO(data), "none", str(dest))
    manifest.remember_hashes(str(dest), result.content_hashes)
    try:
        with_hints = manifest.build(str(dest))
    finally:
        manifest.forget_hashes(str(dest))
    assert with_hints == manifest.build(str(dest))


@settings(max_examples=500, deadline=None)
@given(field=st.one_of(st.binary(min_size=8, max_size=8),
                       st.from_regex(rb"\A[ ]{0,2}[0-7]{0,7}[\0 ]{0,3}\Z").map(lambda b: b[:8].ljust(8, b"\0"))))
def test_octal_fields_agree_with_tarfile_or_defer_to_it(field):
    try:
        expected = tarfile.nti(field)
    except tarfile.HeaderError:
        expected = None
    try:
        assert unpack._octal(field) == expected
    except ValueError:
        pass                           # deferred: tarfile's own frombuf parses this header


# ---------------------------------------------------------------- skipped chown / chmod

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_modes_are_right_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        (tmp_path / "dest").mkdir()
        data = TarBuilder().file("a", b"1", 0o644).file("b", b"2", 0o755).file("c", b"3", 0o4711).bytes()
        unpack_blob(io.BytesIO(data), "none", str(tmp_path / "dest"))
    finally:
        os.umask(old)
    modes = {name: os.lstat(tmp_path / "dest" / name).st_mode & 0o7777 for name in "abc"}
    assert modes == {"a": 0o644, "b": 0o755, "c": 0o4711}


def test_a_wrong_guess_about_new_files_is_caught_and_fixed(tmp_path, monkeypatch):
    """The extractor skips chown/chmod when it believes creation already did them;
    the fstat after it must catch a wrong belief and apply everything."""
    from minirun.layer import extract
    monkeypatch.setattr(extract, "_creation_defaults", lambda fd: (os.geteuid(), os.getegid(), 0o777))
    old = os.umask(0o077)                 # the guess (no umask) is wrong: files come out 0o600
    try:
        (tmp_path / "dest").mkdir()
        data = TarBuilder().file("a", b"1", 0o644).file("b", b"2", 0o755).bytes()
        result = unpack_blob(io.BytesIO(data), "none", str(tmp_path / "dest"))
    finally:
        os.umask(old)
    for name, mode in (("a", 0o644), ("b", 0o755)):
        st_ = os.lstat(tmp_path / "dest" / name)
        assert st_.st_mode & 0o7777 == mode
        assert result.content_hashes[(st_.st_dev, st_.st_ino)][1] == st_.st_ctime_ns
