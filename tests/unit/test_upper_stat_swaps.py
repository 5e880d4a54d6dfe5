"""`minirun diff --stat` compares a copied-up file with its lower copy. A running
container can swap the file between the walk's lstat and that open: for a FIFO
(whose open would block the host command for ever) or a device node (whose open
would be the host's: the upper dir is not nodev). The comparison must open
neither, and give "changed" instead."""

from __future__ import annotations

import os
import signal
import stat

import pytest

from minirun.api import layerinfo


@pytest.fixture
def alarm():
    """An open that blocks fails the test in 5 s instead of hanging the suite."""
    def ring(_signum, _frame):
        raise TimeoutError("the comparison blocked")
    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def opened(monkeypatch) -> list:
    """The kind (S_IFMT) of each descriptor os.open gives while the test runs, O_PATH
    ones left out: those open nothing."""
    kinds: list = []
    real_open = os.open

    def watching(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if not flags & os.O_PATH:
            kinds.append(stat.S_IFMT(os.fstat(fd).st_mode))
        return fd
    monkeypatch.setattr(os, "open", watching)
    return kinds


def _pair(tmp_path):
    upper, lower = tmp_path / "upper-f", tmp_path / "lower-f"
    upper.write_bytes(b"x")
    lower.write_bytes(b"x")
    return upper, lower, os.lstat(upper), os.lstat(lower)


def test_the_same_file_compares_equal(tmp_path, alarm):
    upper, lower, ust, lst = _pair(tmp_path)
    assert layerinfo._same_content(str(upper), ust, str(lower), lst)


def test_a_file_swapped_for_a_fifo_is_changed_and_never_opened(tmp_path, alarm):
    upper, lower, ust, lst = _pair(tmp_path)
    upper.unlink()
    os.mkfifo(upper)              # the container's swap, after the walk's lstat
    assert not layerinfo._same_content(str(upper), ust, str(lower), lst)


def test_a_file_swapped_for_a_device_node_is_changed_and_never_opened(tmp_path, alarm, opened):
    upper, lower, ust, lst = _pair(tmp_path)
    upper.unlink()
    os.mknod(upper, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert not layerinfo._same_content(str(upper), ust, str(lower), lst)
    assert stat.S_IFCHR not in opened, "the device node was opened"


# `minirun diff A B` hashes files of a running container's upper dir the same way
# (layer/manifest.py): a swapped-in node or FIFO must be refused unopened.

@pytest.mark.parametrize("kind", ["fifo", "char"])
def test_diff_of_two_containers_never_opens_a_swapped_in_node(tmp_path, alarm, opened, kind):
    from minirun.layer import manifest
    path = tmp_path / "f"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with pytest.raises(FileNotFoundError):
        manifest._open_quietly(str(path))
    assert opened == [], "the node was opened"


def test_diff_of_two_containers_still_opens_a_regular_file(tmp_path):
    from minirun.layer import manifest
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = manifest._open_quietly(str(path))
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
