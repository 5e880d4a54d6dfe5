"""The hostile-layer corpus (tests/integration/hostile.py), each case loaded
through the real CLI on top of the busybox fixture's layers.

A refused case exits 1 with one line naming the entry (or the limit) and leaves
the store exactly as it was. An accepted case's layer dir is exactly what the
case expects, its extra checks hold, and where it says so a container of the
image runs and prints what it must. In every case a canary directory beside the
store, which the planted links and absolute names point at, is left exactly as
it was: contents, modes and times.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minirun.lib.fsutil import remove_tree
from minirun.layer.tree import compare, snapshot

from .hostile import CASES, REF, build_image, layer_snapshot, substitute, with_parents


def canary_state(path) -> dict:
    state = snapshot(str(path))
    for rel in [""] + list(state):
        st = os.lstat(str(path) + rel)
        state.setdefault(rel or "/", {})["times"] = (st.st_mtime_ns, st.st_ctime_ns)
    return state


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    path.mkdir()
    (path / "secret").write_text("do not touch\n")
    (path / "sub").mkdir()
    (path / "sub" / "file").write_text("x\n")
    return path


def store_files(mr) -> list[str]:
    out = []
    for sub in ("blobs", "layers", "tmp"):
        base = mr.root / sub
        if base.exists():
            out += sorted(str(p.relative_to(mr.root)) for p in base.rglob("*"))
    return out + sorted(os.listdir(mr.root))


def test_the_corpus_is_big_enough_and_covers_both_outcomes():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    assert sum(c.refused is not None for c in CASES) >= 10
    assert sum(c.expect is not None for c in CASES) >= 10
    assert all((c.refused is None) != (c.expect is None) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_layer(mr, tmp_path, canary, case):
    image = tmp_path / "image"
    build_image(image, Path(mr.fixture_path("busybox")), case, str(canary))
    mr.ok("load", mr.fixture_path("busybox"))           # something in the store to keep intact
    before_store = store_files(mr)
    before_canary = canary_state(canary)
    result = mr("load", str(image), env=case.env)
    assert canary_state(canary) == before_canary, "the canary beside the store changed"
    if case.refused is not None:
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert case.refused in lines[0], lines[0]
        assert len(lines[0]) < 600, "the error line echoes a huge name"
        assert store_files(mr) == before_store, "a refused layer left something in the store"
        return
    assert result.returncode == 0, result.stderr
    new = [d for d in mr.layer_dirs() if f"layers/sha256/{d}" not in before_store]
    assert len(new) == 1
    diff = str(mr.root / "layers" / "sha256" / new[0] / "diff")
    try:
        expect = with_parents(substitute(case.expect, str(canary)))
        problems = compare(layer_snapshot(diff), expect)
        assert not problems, problems
        for check in case.checks:
            check(diff, str(canary))
        if case.run is not None:
            argv, stdout = case.run
            out = mr.ok("run", "--rm", REF, *substitute(argv, str(canary)))
            assert out.stdout == substitute(stdout, str(canary))
        assert mr.ok("fsck").returncode == 0
    finally:
        mr("rmi", "-f", REF)
        if os.path.exists(diff):              # deep trees: pytest's own cleanup recurses
            remove_tree(os.path.dirname(diff))
    assert canary_state(canary) == before_canary, "running the image changed the canary"
