"""snapshot() a directory and compare() it with an expectation."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from minirun.layer import tree
from minirun.layer.tree import compare, directory, file, snapshot, symlink


@pytest.fixture
def sample(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_bytes(b"hello\n")
    os.chmod(root / "a", 0o640)
    (root / "d").mkdir()
    os.chmod(root / "d", 0o750)
    (root / "d/link").symlink_to("../a")
    (root / "d/tosub").symlink_to("/")            # a link to a dir is not descended into
    os.link(root / "a", root / "h")
    return root


def expected():
    return {
        "/a": file(b"hello\n", mode=0o640, nlink=2),
        "/h": file(b"hello\n", nlink=2),
        "/d": directory(mode=0o750, opaque=False),
        "/d/link": symlink("../a"),
        "/d/tosub": symlink("/"),
    }


def test_snapshot_facts(sample):
    snap = snapshot(str(sample))
    assert sorted(snap) == ["/a", "/d", "/d/link", "/d/tosub", "/h"]
    a = snap["/a"]
    assert a["type"] == "file"
    assert a["mode"] == 0o640
    assert a["size"] == 6
    assert a["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert a["nlink"] == 2
    assert (a["uid"], a["gid"]) == (os.getuid(), os.getgid())
    assert snap["/d"] == {"type": "dir", "mode": 0o750, "uid": os.getuid(), "gid": os.getgid(),
                          "opaque": False}
    assert snap["/d/link"]["type"] == "symlink" and snap["/d/link"]["target"] == "../a"


def test_compare_matches_when_equal(sample):
    assert compare(snapshot(str(sample)), expected()) == []


def test_compare_reports_missing_and_unexpected(sample):
    want = expected()
    del want["/h"]
    want["/gone"] = file(b"x")
    problems = compare(snapshot(str(sample)), want)
    assert problems == ["missing file /gone", "unexpected file /h"]


def test_compare_reports_field_mismatches(sample):
    want = expected()
    want["/a"] = file(b"bye\n", mode=0o644, nlink=1)
    want["/d/link"] = symlink("a")
    problems = compare(snapshot(str(sample)), want)
    assert "/a: mode is '0o640', expected '0o644'" in problems
    assert "/a: size is 6, expected 4" in problems
    assert "/a: nlink is 2, expected 1" in problems
    assert any(p.startswith("/a: sha256 is ") for p in problems)
    assert "/d/link: target is '../a', expected 'a'" in problems
    assert len(problems) == 5


def test_compare_type_mismatch(sample):
    want = expected()
    want["/d"] = file()
    assert compare(snapshot(str(sample)), want) == ["/d: type is 'dir', expected 'file'"]


def test_compare_checks_only_listed_fields(sample):
    want = {path: {"type": entry["type"]} for path, entry in expected().items()}
    assert compare(snapshot(str(sample)), want) == []


def test_compare_ignore_prefixes(sample):
    want = expected()
    del want["/d"], want["/d/link"], want["/d/tosub"]
    assert compare(snapshot(str(sample)), want, ignore=("/d",)) == []
    # /d is ignored as a path prefix, not a string prefix: /dd would still count
    assert compare({"/dd": {"type": "file"}}, {}, ignore=("/d",)) == ["unexpected file /dd"]


def test_empty_dir(tmp_path):
    assert snapshot(str(tmp_path)) == {}
    assert compare({}, {}) == []


def test_main_prints_json_lines(sample, capsys):
    assert tree.main([str(sample)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == list(snapshot(str(sample)))
    assert tree.main([]) == 2
