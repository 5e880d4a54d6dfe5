"""docker-diff lines from an upper dir: the pure changes() and, on real
directories made without root, scan_upper() and LowerView.exists()."""

from __future__ import annotations

import pytest

from minirun.layer.changes import Change, UpperEntry, changes, scan_upper
from minirun.layer.lowerview import LowerView


def D(path):  # noqa: N802 - reads like the docker diff letter
    return UpperEntry(path, "dir")


def O(path):  # noqa: N802 - opaque dir
    return UpperEntry(path, "dir", opaque=True)


def F(path):  # noqa: N802 - file, symlink or anything else
    return UpperEntry(path, "other")


def W(path):  # noqa: N802 - whiteout
    return UpperEntry(path, "whiteout")


def diff(entries, lower=(), hidden=()):
    lower = set(lower)
    return [(c.kind, c.path) for c in changes(entries, lower.__contains__, hidden)]


def test_whiteout_of_lower_file_is_deleted_and_parent_changed():
    assert diff([D("/etc"), W("/etc/motd")], lower={"/etc", "/etc/motd"}) == [
        ("C", "/etc"), ("D", "/etc/motd")]


def test_whiteout_of_something_not_in_lower_lists_nothing():
    assert diff([W("/ghost")], lower={"/etc"}) == []


def test_new_file_is_added():
    assert diff([F("/new")], lower={"/etc"}) == [("A", "/new")]


def test_modified_file_is_changed():
    assert diff([F("/etc/passwd")], lower={"/etc/passwd"}) == [("C", "/etc/passwd")]


def test_copied_up_parents_are_changed():
    entries = [D("/usr"), D("/usr/share"), F("/usr/share/new.txt"), F("/usr/share/old.txt")]
    lower = {"/usr", "/usr/share", "/usr/share/old.txt"}
    assert diff(entries, lower) == [
        ("C", "/usr"), ("C", "/usr/share"), ("A", "/usr/share/new.txt"), ("C", "/usr/share/old.txt")]


def test_opaque_dir_is_one_change_and_its_children_added():
    entries = [O("/data"), F("/data/a"), D("/data/sub"), F("/data/sub/b")]
    # even names that exist below are new: the opaque dir hides the lower content
    lower = {"/data", "/data/a", "/data/sub", "/data/sub/b", "/data/gone"}
    assert diff(entries, lower) == [
        ("C", "/data"), ("A", "/data/a"), ("A", "/data/sub"), ("A", "/data/sub/b")]


def test_whiteouts_under_opaque_dir_are_hidden():
    entries = [O("/data"), W("/data/gone"), F("/data/kept")]
    assert diff(entries, lower={"/data", "/data/gone"}) == [("C", "/data"), ("A", "/data/kept")]


def test_opaque_dir_not_in_lower_is_added():
    assert diff([O("/fresh"), F("/fresh/x")], lower=set()) == [("A", "/fresh"), ("A", "/fresh/x")]


def test_new_dir_children_are_added_without_asking_lower():
    asked = []

    def in_lower(path):
        asked.append(path)
        return path != "/newdir"

    entries = [D("/newdir"), F("/newdir/f"), D("/newdir/sub"), F("/newdir/sub/g"), W("/newdir/w")]
    got = [(c.kind, c.path) for c in changes(entries, in_lower)]
    assert got == [("A", "/newdir"), ("A", "/newdir/f"), ("A", "/newdir/sub"), ("A", "/newdir/sub/g")]
    assert asked == ["/newdir"]


def test_siblings_after_a_fresh_dir_are_judged_again():
    # /d is opaque; /dd merely shares its prefix and /e follows it: both exist below
    entries = [O("/d"), F("/d/x"), F("/dd"), D("/e"), F("/e/y")]
    lower = {"/d", "/dd", "/e", "/e/y"}
    assert diff(entries, lower) == [
        ("C", "/d"), ("A", "/d/x"), ("C", "/dd"), ("C", "/e"), ("C", "/e/y")]


def test_fresh_scope_ends_after_nested_fresh_dirs():
    entries = [D("/a"), D("/a/new"), D("/a/new/deeper"), F("/a/new/deeper/f"), F("/a/old"), W("/a/gone")]
    lower = {"/a", "/a/old", "/a/gone"}
    assert diff(entries, lower) == [
        ("C", "/a"), ("A", "/a/new"), ("A", "/a/new/deeper"), ("A", "/a/new/deeper/f"),
        ("C", "/a/old"), ("D", "/a/gone")]


def test_runtime_mount_points_are_skipped():
    entries = [D("/proc"), D("/dev"), F("/dev/null-ish"), D("/sys"), F("/real")]
    hidden = ["/proc", "/sys", "/dev"]
    assert diff(entries, lower=set(), hidden=hidden) == [("A", "/dev/null-ish"), ("A", "/real")]


def test_hidden_names_only_hide_dirs():
    assert diff([F("/proc")], lower=set(), hidden=["/proc"]) == [("A", "/proc")]


def test_change_to_json_uses_docker_keys():
    assert Change("D", "/x").to_json() == {"Path": "/x", "Kind": "D"}


# ---------------------------------------------------------------- real directories

def test_scan_upper_lists_parents_first_sorted_and_never_root(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b/z").write_text("z")
    (tmp_path / "b/a").write_text("a")
    (tmp_path / "a").write_text("a")
    (tmp_path / "c").symlink_to("b")
    entries = list(scan_upper(str(tmp_path)))
    assert entries == [F("/a"), D("/b"), F("/b/a"), F("/b/z"), F("/c")]
    everything_below = {"/", "/a", "/b", "/b/a", "/b/z", "/c"}
    assert "/" not in [c.path for c in changes(entries, everything_below.__contains__)]


def test_scan_of_empty_upper_gives_no_changes(tmp_path):
    assert list(changes(scan_upper(str(tmp_path)), lambda _p: True)) == []


@pytest.fixture
def layers(tmp_path):
    """Make layer dirs from {name: {relative path: 'dir' | 'file'}}, topmost first."""
    def make(*specs):
        out = []
        for index, spec in enumerate(specs):
            root = tmp_path / f"layer{index}"
            root.mkdir()
            for rel, kind in sorted(spec.items()):
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if kind == "dir":
                    path.mkdir()
                else:
                    path.write_text(rel)
            out.append(str(root))
        return out
    return make


def test_lower_view_presence_across_layers(layers):
    view = LowerView(layers({"etc": "dir", "etc/hostname": "file"},
                            {"etc": "dir", "etc/passwd": "file", "bin": "dir", "bin/sh": "file"}))
    for path in ("/", "/etc", "/etc/hostname", "/etc/passwd", "/bin/sh", "bin/sh", "/etc/"):
        assert view.exists(path), path
    for path in ("/nope", "/etc/nope", "/bin/sh/x", "/usr/bin"):
        assert not view.exists(path), path


def test_lower_view_dir_only_in_lower_layer(layers):
    view = LowerView(layers({"top.txt": "file"}, {"var": "dir", "var/log": "dir", "var/log/x": "file"}))
    assert view.exists("/var/log/x")
    assert view.exists("/top.txt")


def test_lower_view_file_in_upper_layer_hides_lower_dir_children(layers):
    view = LowerView(layers({"a": "file"}, {"a": "dir", "a/b": "file"}))
    assert view.exists("/a")
    assert not view.exists("/a/b")


def test_lower_view_order_is_topmost_first(layers):
    top, bottom = layers({"a": "file"}, {"a": "dir", "a/b": "file"})
    assert not LowerView([top, bottom]).exists("/a/b")
    assert LowerView([bottom, top]).exists("/a/b")


def test_lower_view_non_dir_in_middle_layer_cuts_off_deeper_layers(layers):
    view = LowerView(layers({"a": "dir"}, {"a": "file"}, {"a": "dir", "a/b": "file"}))
    assert not view.exists("/a/b")


def test_lower_view_layer_without_the_dir_is_skipped(layers):
    view = LowerView(layers({"a": "dir"}, {"other": "file"}, {"a": "dir", "a/b": "file"}))
    assert view.exists("/a/b")
