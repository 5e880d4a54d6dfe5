"""Layer extraction without root: names, entry types, verification, hostile tars.

Whiteouts (char devices) and foreign owners need root and are left to the
integration tests; every entry here is owned by the current user."""

from __future__ import annotations

import io
import os
import stat

import pytest

from minirun.errors import BadImage, DigestMismatch
from minirun.layer.unpack import safe_name, unpack_blob

from .conftest import MTIME, TarBuilder, gzip_bytes, sha


def unpack(data: bytes, dest, compression: str = "none", **kwargs):
    dest.mkdir(exist_ok=True)
    return unpack_blob(io.BytesIO(data), compression, str(dest), **kwargs)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name, expected", [
    ("a", "a"),
    ("a/b", "a/b"),
    ("./a/b", "a/b"),
    ("/a/b", "a/b"),
    ("//a//b/", "a/b"),
    ("a/./b/.", "a/b"),
    ("./", ""),
    (".", ""),
    ("/", ""),
    ("", ""),
    ("...", "..."),
    ("a/..b", "a/..b"),
])
def test_safe_name_normalises(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["..", "../a", "a/../b", "a/..", "/../etc/passwd", "./../x", "a/b/../../.."])
def test_safe_name_rejects_dotdot(name):
    with pytest.raises(BadImage):
        safe_name(name)


# ---------------------------------------------------------------- entry types

def build_tree() -> bytes:
    return (TarBuilder()
            .dir("./", 0o755)
            .dir("etc/", 0o750)
            .file("etc/conf", b"key=value\n", 0o640)
            .symlink("etc/link", "conf")
            .hardlink("etc/hard", "etc/conf")
            .file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
            .file("empty", b"", 0o600)
            .bytes())


def test_extracts_files_dirs_symlinks_hardlinks(tmp_path):
    dest = tmp_path / "dest"
    unpack(build_tree(), dest)

    assert (dest / "etc/conf").read_bytes() == b"key=value\n"
    assert (dest / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (dest / "empty").read_bytes() == b""
    assert mode(dest / "etc") == 0o750
    assert mode(dest / "etc/conf") == 0o640
    assert mode(dest / "bin/tool") == 0o755
    assert mode(dest / "empty") == 0o600
    assert os.path.islink(dest / "etc/link") and os.readlink(dest / "etc/link") == "conf"
    conf, hard = os.lstat(dest / "etc/conf"), os.lstat(dest / "etc/hard")
    assert (hard.st_ino, hard.st_dev) == (conf.st_ino, conf.st_dev) and conf.st_nlink == 2
    assert sorted(os.listdir(dest)) == ["bin", "empty", "etc"]


def test_times_and_counts(tmp_path):
    dest = tmp_path / "dest"
    result = unpack(build_tree(), dest)
    assert os.lstat(dest / "etc/conf").st_mtime == MTIME
    assert os.lstat(dest / "etc").st_mtime == MTIME       # dir times are set after its children
    assert os.lstat(dest / "etc/link").st_mtime == MTIME
    # conf, link, hard, tool, empty: every non-directory entry
    assert result.files == 5
    # sizes of regular-file data only (a hard link carries none)
    assert result.size == len(b"key=value\n") + len(b"#!/bin/sh\necho hi\n")


def test_root_entry_sets_dest_attributes(tmp_path):
    dest = tmp_path / "dest"
    unpack(TarBuilder().dir("./", 0o711).file("f", b"x").bytes(), dest)
    assert mode(dest) == 0o711


def test_implied_parent_dirs_are_reported(tmp_path):
    result = unpack(TarBuilder().file("a/b/c.txt", b"c").file("top", b"t").bytes(), tmp_path / "d")
    assert result.implied_dirs == ["a", "a/b"]
    assert (tmp_path / "d/a/b/c.txt").read_bytes() == b"c"


def test_dir_entry_after_its_children_is_not_implied(tmp_path):
    result = unpack(TarBuilder().file("a/b/c", b"c").dir("a/", 0o700).bytes(), tmp_path / "d")
    assert result.implied_dirs == ["a/b"]
    assert mode(tmp_path / "d/a") == 0o700


def test_only_parents_without_entries_are_implied(tmp_path):
    result = unpack(build_tree(), tmp_path / "d")
    assert result.implied_dirs == ["bin"]   # bin/tool has no bin/ entry; etc/ has one


def test_later_entry_replaces_earlier(tmp_path):
    data = (TarBuilder()
            .file("f", b"first")
            .file("f", b"second")
            .dir("d/").file("d/x", b"x")
            .file("d", b"now a file")
            .bytes())
    unpack(data, tmp_path / "dest")
    assert (tmp_path / "dest/f").read_bytes() == b"second"
    assert (tmp_path / "dest/d").read_bytes() == b"now a file"


def test_file_replacing_symlink_is_not_written_through_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = TarBuilder().symlink("t", str(outside / "target")).file("t", b"mine").bytes()
    unpack(data, tmp_path / "dest")
    assert not (outside / "target").exists()
    assert not os.path.islink(tmp_path / "dest/t")
    assert (tmp_path / "dest/t").read_bytes() == b"mine"


# ---------------------------------------------------------------- verification and compression

def test_diff_id_of_plain_tar(tmp_path):
    data = build_tree()
    assert unpack(data, tmp_path / "d").diff_id == sha(data)


def test_correct_diff_id_passes(tmp_path):
    data = build_tree()
    result = unpack(gzip_bytes(data), tmp_path / "d", "gzip", expected_diff_id=sha(data))
    assert result.diff_id == sha(data)


def test_wrong_diff_id_raises_digest_mismatch(tmp_path):
    data = build_tree()
    with pytest.raises(DigestMismatch):
        unpack(data, tmp_path / "d", expected_diff_id=sha(data + b"\0"))


def test_gzip_layer_diff_id_is_of_uncompressed_tar(tmp_path):
    data = build_tree()
    blob = gzip_bytes(data)
    result = unpack(blob, tmp_path / "d", "gzip")
    assert result.diff_id == sha(data) != sha(blob)
    assert (tmp_path / "d/etc/conf").read_bytes() == b"key=value\n"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_blob_sink_gets_exactly_the_raw_bytes(tmp_path, compression):
    data = build_tree()
    blob = gzip_bytes(data) if compression == "gzip" else data
    sink = io.BytesIO()
    unpack(blob, tmp_path / "d", compression, blob_sink=sink)
    assert sink.getvalue() == blob


def test_blob_sink_gets_trailing_bytes_after_the_tar_end(tmp_path):
    blob = TarBuilder().file("f", b"x").bytes() + b"\0" * 4096
    sink = io.BytesIO()
    result = unpack(blob, tmp_path / "d", blob_sink=sink)
    assert sink.getvalue() == blob
    assert result.diff_id == sha(blob)


@pytest.mark.parametrize("cut", [10, 0.5, -4, -1])
def test_truncated_gzip_raises_bad_image(tmp_path, cut):
    blob = gzip_bytes(TarBuilder().file("big", os.urandom(50_000)).bytes())
    end = int(len(blob) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(blob) + cut)
    with pytest.raises(BadImage):
        unpack(blob[:end], tmp_path / "d", "gzip")


def test_corrupt_gzip_raises_bad_image(tmp_path):
    blob = bytearray(gzip_bytes(TarBuilder().file("big", bytes(range(256)) * 200).bytes()))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(BadImage):
        unpack(bytes(blob), tmp_path / "d", "gzip")


def test_plain_tar_declared_as_gzip_raises_bad_image(tmp_path):
    with pytest.raises(BadImage):
        unpack(build_tree(), tmp_path / "d", "gzip")


def test_truncated_file_data_raises_bad_image(tmp_path):
    data = TarBuilder().file("f", b"y" * 2000).bytes()
    with pytest.raises(BadImage):
        unpack(data[:1500], tmp_path / "d")


def test_unknown_compression_raises_bad_image(tmp_path):
    with pytest.raises(BadImage):
        unpack(build_tree(), tmp_path / "d", "lz4")


def test_errors_name_the_layer(tmp_path):
    with pytest.raises(BadImage, match=r"^layer 3: "):
        unpack(TarBuilder().file("../x", b"").bytes(), tmp_path / "d", what="layer 3")


# ---------------------------------------------------------------- hostile tars

def test_hardlink_to_later_entry_raises(tmp_path):
    data = TarBuilder().hardlink("a", "b").file("b", b"b").bytes()
    with pytest.raises(BadImage):
        unpack(data, tmp_path / "d")


@pytest.mark.parametrize("target", ["missing", "dir", "dir/", "../outside", "/etc/passwd"])
def test_hardlink_to_non_file_or_outside_raises(tmp_path, target):
    data = TarBuilder().dir("dir/").hardlink("h", target).bytes()
    with pytest.raises(BadImage):
        unpack(data, tmp_path / "d")
    assert not (tmp_path / "d/h").exists()


def test_hardlink_through_symlink_raises(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    data = TarBuilder().symlink("l", str(outside)).hardlink("h", "l/secret").bytes()
    with pytest.raises(BadImage):
        unpack(data, tmp_path / "d")
    assert os.lstat(outside / "secret").st_nlink == 1


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../evil", "/../evil"])
def test_dotdot_raises_and_writes_nothing_outside(tmp_path, name):
    dest = tmp_path / "dest"
    data = TarBuilder().file("a/ok", b"ok").file(name, b"evil").bytes()
    with pytest.raises(BadImage):
        unpack(data, dest)
    assert sorted(os.listdir(tmp_path)) == ["dest"]


@pytest.mark.parametrize("target_kind", ["absolute", "relative"])
def test_parent_that_is_a_symlink_raises(tmp_path, target_kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = str(outside) if target_kind == "absolute" else "../outside"
    data = TarBuilder().symlink("link", target).file("link/f", b"pwned").bytes()
    with pytest.raises(BadImage):
        unpack(data, tmp_path / "dest")
    assert os.listdir(outside) == []


def test_parent_that_is_a_file_raises(tmp_path):
    data = TarBuilder().file("a", b"").file("a/b", b"").bytes()
    with pytest.raises(BadImage):
        unpack(data, tmp_path / "d")
