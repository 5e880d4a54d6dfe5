"""The OCI whiteout naming rules."""

from __future__ import annotations

import os

import pytest

from minirun.layer import whiteout


@pytest.mark.parametrize("name, expected", [
    (".wh.foo", ("whiteout", "foo")),
    (".wh.foo.txt", ("whiteout", "foo.txt")),
    (".wh..hidden", ("whiteout", ".hidden")),
    (".wh..wh..opq", ("opaque", "")),
    ("foo", ("plain", "foo")),
    (".wh", ("plain", ".wh")),
    ("wh.foo", ("plain", "wh.foo")),
    ("x.wh.foo", ("plain", "x.wh.foo")),
    (".WH.foo", ("plain", ".WH.foo")),
    (".wh..wh..opq.x", ("whiteout", ".wh..opq.x")),
])
def test_classify(name, expected):
    assert whiteout.classify(name) == expected


def test_plain_files_and_dirs_are_not_whiteouts_or_opaque(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "d").mkdir()
    assert not whiteout.is_whiteout_stat(os.lstat(tmp_path / "f"))
    assert not whiteout.is_whiteout_stat(os.lstat(tmp_path / "d"))
    assert not whiteout.is_opaque(str(tmp_path / "d"))
    assert not whiteout.is_opaque(str(tmp_path / "missing"))
