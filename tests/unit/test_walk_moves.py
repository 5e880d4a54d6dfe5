"""The tree walks of lib/fsutil.py go back up by "..": a running container that
moves the directory a host-side walk is in (`minirun diff`, `ps -s`, `system df`)
must not lead that walk out of its upper dir. Each test moves the directory at
the moment the walk is inside it, as the container's `mv` would, with a canary
directory beside the walked tree: the walk must stop (TreeMoved, or an
incomplete size), never list, count or delete the canary."""

from __future__ import annotations

import os

import pytest

from minirun.lib import fsutil


def _layout(tmp_path):
    """tmp/upper/a/b/c/e, where the walk is when e moves to tmp/a/b/c/e (names the
    container can know and mirror): four ".." steps from there land on tmp/ where
    the walk expects upper/, whose listing it took before. upper/ has an empty
    "canary" in that listing, and tmp/ the real one, with a host file in it."""
    upper = tmp_path / "upper"
    deep = upper / "a" / "b" / "c" / "e"
    (deep / "g").mkdir(parents=True)
    (deep / "f").write_text("x")
    (upper / "canary").mkdir()
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "host-secret").write_text("secret " * 1000)
    return upper, deep, canary


def _away(tmp_path):
    return tmp_path / "a" / "b" / "c" / "e"


def test_walk_here_stops_when_the_dir_it_is_in_moves_up(tmp_path):
    upper, deep, canary = _layout(tmp_path)
    seen, stopped = [], False
    try:
        for rel, _name, _st in fsutil.walk_here(str(upper)):
            seen.append(rel)
            if rel == "a/b/c/e/g":
                os.rename(deep, _away(tmp_path))     # the container's mv, the walk in e
    except fsutil.TreeMoved:
        stopped = True
    assert not any("host-secret" in rel for rel in seen), seen
    assert stopped


def test_walk_here_goes_on_when_nothing_moves(tmp_path):
    upper, _deep, _canary = _layout(tmp_path)
    seen = [rel for rel, _name, _st in fsutil.walk_here(str(upper))]
    assert seen == ["a", "a/b", "a/b/c", "a/b/c/e", "a/b/c/e/f", "a/b/c/e/g", "canary"]


def test_tree_stats_ends_incomplete_instead_of_counting_outside(tmp_path, monkeypatch):
    upper, deep, canary = _layout(tmp_path)
    scan = fsutil._scan

    def moving_scan(fd, tally):
        names = scan(fd, tally)
        if deep.exists() and os.path.samestat(os.fstat(fd), os.stat(deep)):
            os.rename(deep, _away(tmp_path))      # the container's mv, the walk in e
        return names
    monkeypatch.setattr(fsutil, "_scan", moving_scan)
    total, entries, complete = fsutil.tree_stats(str(upper))
    assert not complete
    assert total < 6000, total                # the canary's file (7000 bytes) was never counted


def test_remove_tree_never_deletes_beside_the_tree(tmp_path, monkeypatch):
    upper, deep, canary = _layout(tmp_path)
    writable = fsutil._writable

    def moving(fd):
        writable(fd)
        if deep.exists() and os.path.samestat(os.fstat(fd), os.stat(deep / "g")):
            os.rename(deep, _away(tmp_path))      # the container's mv, the walk in e/g
    monkeypatch.setattr(fsutil, "_writable", moving)
    try:
        fsutil.remove_tree(str(upper))
    except fsutil.TreeMoved:
        pass
    assert (canary / "host-secret").exists()
    assert (upper / "canary").exists()          # it stopped, not just went somewhere else
