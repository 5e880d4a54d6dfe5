"""compare() of two synthetic snapshots ('/path' -> facts), and the text and
JSON forms `minirun diff A B` prints."""

from __future__ import annotations

import hashlib

from minirun.layer.compare import Difference, compare, compare_walks, differing, facts
from minirun.layer.tree import directory, file, symlink, whiteout


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(kind: str, **fields) -> dict:
    return {"type": kind, "mode": 0o644, "uid": 0, "gid": 0, **fields}


def f(content: bytes, **fields) -> dict:
    return entry("file", size=len(content), sha256=sha(content), **fields)


def test_identical_snapshots_have_no_differences():
    snap = {"/a": f(b"x"), "/d": entry("dir", mode=0o755, opaque=False), "/d/l": entry("symlink", target="../a")}
    assert compare(snap, dict(snap)) == []
    assert compare({}, {}) == []


def test_paths_only_on_one_side_are_named_with_their_side_and_type():
    a = {"/both": f(b"x"), "/gone": f(b"y"), "/etc/passwd": entry("char", mode=0, rdev=[0, 0])}
    b = {"/both": f(b"x"), "/new": entry("dir", opaque=False)}
    assert compare(a, b) == [
        Difference("/etc/passwd", only="A", kind="whiteout"),
        Difference("/gone", only="A", kind="file"),
        Difference("/new", only="B", kind="dir"),
    ]


def test_each_differing_field_is_reported_with_both_values_in_field_order():
    a = {"/x": f(b"abc", mode=0o644, uid=0, gid=0)}
    b = {"/x": f(b"abcde", mode=0o600, uid=1000, gid=1000)}
    (diff,) = compare(a, b)
    assert diff.path == "/x" and diff.only is None
    assert diff.fields == (("mode", 0o644, 0o600), ("uid", 0, 1000), ("gid", 0, 1000),
                           ("size", 3, 5), ("sha256", sha(b"abc"), sha(b"abcde")))


def test_same_size_new_content_differs_only_in_hash():
    assert differing(f(b"abc"), f(b"abd")) == (("sha256", sha(b"abc"), sha(b"abd")),)


def test_type_change_reports_the_facts_each_side_has():
    fields = dict((name, (x, y)) for name, x, y in differing(f(b"hi"), entry("dir", opaque=False)))
    assert fields == {"type": ("file", "dir"), "size": (2, None), "sha256": (sha(b"hi"), None),
                      "opaque": (None, False)}


def test_whiteout_status_link_target_devices_opaque_and_xattrs_are_compared():
    assert differing(entry("char", rdev=[0, 0]), f(b"")) == (
        ("type", "whiteout", "file"), ("size", None, 0), ("sha256", None, sha(b"")))
    assert differing(entry("char", rdev=[1, 3]), entry("char", rdev=(1, 5))) == (("rdev", [1, 3], [1, 5]),)
    assert differing(entry("symlink", target="a"), entry("symlink", target="b")) == (("target", "a", "b"),)
    assert differing(entry("dir", opaque=False), entry("dir", opaque=True)) == (("opaque", False, True),)
    caps = {"security.capability": "AQAAAgAgAAAAAAAAAAAAAAAAAAA="}
    assert differing(f(b""), f(b"", xattrs=caps)) == (("xattrs", None, caps),)


def test_times_nlink_and_empty_xattrs_are_not_differences():
    a = f(b"x", nlink=1, mtime=1)
    b = f(b"x", nlink=3, mtime=2, xattrs={})
    assert differing(a, b) == ()


def test_tree_snapshot_entries_compare_like_manifest_entries():
    # minirun.tree names whiteouts by type; a manifest records char 0:0: the same fact
    assert differing(whiteout(), {"type": "char", "rdev": [0, 0]}) == ()
    assert facts(whiteout(mode=0)) == {"type": "whiteout", "mode": 0}
    a = {"/d": directory(opaque=True), "/d/s": symlink("t")}
    b = {"/d": directory(opaque=True), "/d/s": symlink("u")}
    assert compare(a, b) == [Difference("/d/s", fields=(("target", "t", "u"),))]


def test_differences_come_sorted_by_path():
    a = {p: f(b"a") for p in ("/z", "/a/b", "/m")}
    b = {p: f(b"b") for p in ("/y", "/a/b", "/a")}
    assert [d.path for d in compare(a, b)] == ["/a", "/a/b", "/m", "/y", "/z"]


# ---------------------------------------------------------------- text and JSON

def test_lines_mark_the_side_or_list_fields_compactly():
    a = {"/only-in-a": f(b""), "/etc/group": entry("char", mode=0, rdev=[0, 0]),
         "/p": f(b"abc", mode=0o644), "/dev/x": entry("block", rdev=[8, 0]), "/d": entry("dir", opaque=False)}
    b = {"/only-in-b": entry("symlink", target="/"), "/p": f(b"hello", mode=0o600),
         "/dev/x": entry("block", rdev=[8, 1]), "/d": entry("dir", opaque=True)}
    lines = [d.line() for d in compare(a, b)]
    assert lines == [
        "~ /d opaque no->yes",
        "~ /dev/x rdev 8:0->8:1",
        "< /etc/group (whiteout)",
        "< /only-in-a",
        "> /only-in-b",
        f"~ /p mode 0644->0600 size 3->5 sha256 {sha(b'abc')[:8]}..->{sha(b'hello')[:8]}..",
    ]


def test_xattr_values_are_shown_short():
    a = {"/f": f(b"", xattrs={"user.tag": "cmVk"})}                     # "red"
    b = {"/f": f(b"", xattrs={"user.tag": "Ymx1ZQ==", "security.capability": "AQAAAgAgAAAAAAAAAAAAAAAAAAA="})}
    (diff,) = compare(a, b)
    assert diff.line() == "~ /f xattrs user.tag=red->security.capability=AQAAAgAgAAAA..,user.tag=blue"
    assert compare({"/f": f(b"", xattrs={"user.a": "eA=="})}, {"/f": f(b"")})[0].line() == \
        "~ /f xattrs user.a=x->-"


def test_json_objects_carry_only_or_differs():
    a = {"/a": f(b"1"), "/same": f(b"s"), "/w": entry("char", mode=0, rdev=[0, 0])}
    b = {"/b": entry("dir", opaque=False), "/same": f(b"s", mode=0o755)}
    assert [d.to_json() for d in compare(a, b)] == [
        {"Path": "/a", "Only": "A", "Type": "file"},
        {"Path": "/b", "Only": "B", "Type": "dir"},
        {"Path": "/same", "Differs": {"mode": [0o644, 0o755]}},
        {"Path": "/w", "Only": "A", "Type": "whiteout"},
    ]


def test_expectation_builders_from_tree_work_as_synthetic_snapshots():
    a = {"/greeting": file(b"hi\n", mode=0o644, uid=0, gid=0)}
    b = {"/greeting": file(b"hi\n", mode=0o644, uid=0, gid=0)}
    assert compare(a, b) == []
    b["/greeting"] = file(b"ho\n", mode=0o644, uid=0, gid=0)
    assert [name for name, _, _ in compare(a, b)[0].fields] == ["sha256"]


def _walk_order(tree: dict) -> list:
    """tree's entries as manifest.walk gives them: depth first, names sorted."""
    return sorted(tree.items(), key=lambda item: item[0].split("/"))


def test_compare_walks_finds_what_compare_finds_in_walk_order():
    a = {"/": directory(), "/a": directory(), "/a/b": file(b"1"), "/a-b": file(b"x"), "/c": file(b"same"),
         "/d": directory(), "/d/only-a": file(b"a")}
    b = {"/": directory(), "/a": directory(), "/a/b": file(b"2"), "/a/c": symlink("t"), "/c": file(b"same"),
         "/e": whiteout()}
    walked = list(compare_walks(_walk_order(a), _walk_order(b)))
    assert sorted(walked, key=lambda d: d.path) == compare(a, b)
    assert [d.path for d in walked] == ["/a/b", "/a/c", "/a-b", "/d", "/d/only-a", "/e"]
    assert list(compare_walks(iter(()), _walk_order(b)))[0] == Difference("/", only="B", kind="dir")
    assert list(compare_walks(_walk_order(a), _walk_order(a))) == []
