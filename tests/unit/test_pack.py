"""layer/pack.py without root: order, owners, times, links and reproducibility."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

from minirun.lib.fsutil import remove_tree
from minirun.layer import pack


def _tree(root):
    os.makedirs(os.path.join(root, "b", "deep"))
    os.makedirs(os.path.join(root, "a"))
    for rel, data in (("b/deep/f", b"deep\n"), ("a/z", b"z"), ("a/y", b"yy"), ("top", b"t")):
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    os.symlink("../top", os.path.join(root, "a/link"))
    os.link(os.path.join(root, "a/y"), os.path.join(root, "b/hard"))
    os.chmod(os.path.join(root, "top"), 0o600)
    return root


def _pack(root, **kw):
    out = io.BytesIO()
    result = pack.pack(root, out, **kw)
    return result, out.getvalue()


def test_entries_are_sorted_parents_first_with_links(tmp_path):
    result, blob = _pack(_tree(str(tmp_path / "t")))
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["a", "a/link", "a/y", "a/z", "b", "b/deep", "b/deep/f", "b/hard", "top"]
    by_name = {m.name: m for m in members}
    assert by_name["a/link"].issym() and by_name["a/link"].linkname == "../top"
    assert by_name["b/hard"].islnk() and by_name["b/hard"].linkname == "a/y"
    assert by_name["top"].mode == 0o600
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert result.files == len(members)
    assert result.size == len(b"deep\n") + 1 + 2 + 1


def test_diff_id_is_the_hash_of_the_uncompressed_tar(tmp_path):
    result, blob = _pack(_tree(str(tmp_path / "t")))
    assert result.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    plain_result, plain = _pack(str(tmp_path / "t"), gzip_level=None)
    assert plain_result.diff_id == result.diff_id
    assert plain == gzip.decompress(blob)


def test_same_content_same_digest_and_epoch_clamps_times(tmp_path):
    one, two = _tree(str(tmp_path / "one")), _tree(str(tmp_path / "two"))
    for rel, _, _ in pack.walk(two):
        os.utime(os.path.join(two, rel), (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    _, blob_one = _pack(one, epoch=1_000_000)
    _, blob_two = _pack(two, epoch=1_000_000)
    assert blob_one == blob_two
    with tarfile.open(fileobj=io.BytesIO(blob_one), mode="r:gz") as tar:
        assert {m.mtime for m in tar.getmembers()} == {1_000_000}
    # without the clamp the different times show, so the test above can fail
    assert _pack(one)[1] != _pack(two)[1]


def test_gzip_header_carries_no_name_or_time(tmp_path):
    _, blob = _pack(_tree(str(tmp_path / "t")))
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] == 0                       # FLG: no FNAME, no comment
    assert blob[4:8] == b"\x00\x00\x00\x00"   # MTIME 0


def test_user_xattrs_travel_as_pax_records(tmp_path):
    root = str(tmp_path / "t")
    os.makedirs(root)
    path = os.path.join(root, "f")
    open(path, "w").close()
    try:
        os.setxattr(path, "user.note", b"hello")
    except OSError:
        import pytest
        pytest.skip("this filesystem has no user xattrs")
    _, blob = _pack(root)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        member = tar.getmember("f")
    assert member.pax_headers.get("SCHILY.xattr.user.note") == "hello"


def test_deep_trees_do_not_recurse(tmp_path):
    root = str(tmp_path / "t")
    path = root
    os.mkdir(root)
    for _ in range(1200):           # os.makedirs itself recurses
        path = os.path.join(path, "d")
        os.mkdir(path)
    try:
        result, _ = _pack(root, gzip_level=1)
    finally:
        remove_tree(root)           # pytest's own clean-up of old tmp dirs recurses
    assert result.files == 1200


# ---------------------------------------------------------------- sparse files and limits (issue 14, item 10)

def test_a_sparse_file_is_packed_whole_without_reading_its_holes(tmp_path, monkeypatch):
    root = tmp_path / "t"
    root.mkdir()
    with open(root / "s", "wb") as f:
        f.write(b"head")
        f.seek(64 << 20)
        f.write(b"tail")
    read = []
    real = os.pread
    monkeypatch.setattr(pack.os, "pread", lambda fd, n, at: read.append(n) or real(fd, n, at))
    _, blob = _pack(str(root), gzip_level=None)
    assert sum(read) <= 2 << 20                       # the data blocks, not the 64 MiB hole
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.getmember("s")
        assert not member.sparse and member.size == (64 << 20) + 4
        data = tar.extractfile(member).read()
    assert data[:4] == b"head" and data[-4:] == b"tail" and data.count(0) == len(data) - 8


def test_file_data_reads_zeros_past_a_shrunk_end_and_for_a_non_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with pack._FileData.open(str(path), 10) as data:
        assert data.read(4) + data.read(100) == b"abc" + bytes(7)
    os.unlink(path)
    os.mkfifo(path)                                   # opened without blocking, read as zeros
    with pack._FileData.open(str(path), 5) as data:
        assert data.read(1 << 20) == bytes(5)


def test_the_guard_stops_packing_before_an_entry_past_a_limit(tmp_path):
    root = _tree(str(tmp_path / "t"))
    seen = []

    def guard(size, entries):
        seen.append((size, entries))
        if entries > 3:
            raise RuntimeError("over")
    try:
        _pack(root, guard=guard)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the guard did not stop pack")
    assert [entries for _, entries in seen] == [1, 2, 3, 4]
