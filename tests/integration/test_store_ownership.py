"""A store another user can write to is refused (issue 14, item 7).

The attack: mallory owns the store (or a directory on the way to it, or one
directory in it) and plants a layer. root's `load` then says "Already exists"
and `run` executes her file as root. Every command that opens such a store must
refuse it in one line naming the directory and the fix, before it reads anything
from it, and leave nothing behind.

The tests plant as root and then hand the files to uid 65534, as mallory's own
writes would leave them: mallory herself could not reach the pytest temp dir
(0700). What minirun sees, and must refuse, is the same.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from .conftest import Minirun
from .test_load import one_line_error

MALLORY = 65534
PLANTED = "#!/bin/sh\necho PLANTED by mallory, running as $(id -u)\n"


def chown_tree(path, uid: int = MALLORY) -> None:
    os.lchown(path, uid, uid)
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(top, name), uid, uid)


def plant(root) -> None:
    """Replace /bin/true in every stored layer that has one with mallory's script."""
    layers = root / "layers" / "sha256"
    for key in os.listdir(layers):
        true = layers / key / "diff" / "bin" / "true"
        if os.path.lexists(true):
            os.unlink(true)
            true.write_text(PLANTED)
            os.chmod(true, 0o755)


def assert_refused(result, exit_code: int, named) -> str:
    line = one_line_error(result)
    assert result.returncode == exit_code, result
    assert str(named) in line, line
    assert "chown root:root" in line or "MINIRUN_ROOT" in line, line
    assert "PLANTED" not in result.stdout + result.stderr
    return line


def test_a_store_owned_by_another_user_is_refused_and_her_layer_never_runs(mr):
    mr.load("busybox")
    plant(mr.root)
    chown_tree(mr.root)                      # mallory's store, as if she had made it
    load = mr("load", mr.fixture_path("busybox"))
    assert "Already exists" not in load.stdout
    line = assert_refused(load, 3, mr.root)
    assert "uid 65534" in line
    assert_refused(mr("run", "--rm", "busybox", "true"), 125, mr.root)
    assert_refused(mr("images"), 3, mr.root)
    assert_refused(mr("ps", "-a"), 3, mr.root)
    assert_refused(mr("history", "busybox"), 3, mr.root)
    # nothing was written: no container, no staging, no new layer
    assert os.listdir(mr.root / "containers") == [] and os.listdir(mr.root / "tmp") == []
    chown_tree(mr.root, 0)                   # for the fixture's cleanup (rm -f of what is left)


@pytest.mark.parametrize("entry", ["layers", "layers/sha256", "blobs/sha256", "containers", "tmp",
                                   "mnt", "locks"])
@pytest.mark.parametrize("how", ["chown", "chmod o+w", "chmod g+w", "chmod 1777"])
def test_one_directory_others_can_write_to_is_enough_to_refuse(mr, entry, how):
    mr.load("busybox")
    target = mr.root / entry
    if how == "chown":
        os.chown(target, MALLORY, MALLORY)
    else:
        mode = {"chmod o+w": 0o002, "chmod g+w": 0o020, "chmod 1777": 0o1777}[how]
        os.chmod(target, stat.S_IMODE(os.stat(target).st_mode) | mode)
    result = mr("run", "--rm", "busybox", "true")
    assert_refused(result, 125, target)
    assert_refused(mr("load", mr.fixture_path("busybox")), 3, target)
    os.chown(target, 0, 0)
    os.chmod(target, 0o755)
    mr.ok("run", "--rm", "busybox", "true")     # fixed as the hint says: usable again


def test_images_json_owned_by_another_user_is_refused(mr):
    mr.load("busybox")
    os.chown(mr.root / "images.json", MALLORY, MALLORY)
    assert_refused(mr("images"), 3, mr.root / "images.json")
    assert_refused(mr("run", "--rm", "busybox", "true"), 125, mr.root / "images.json")


def test_a_store_under_a_directory_another_user_owns_is_refused(tmp_path, fixtures):
    """mallory owns the parent: she can rename root's clean store away and put hers in its place."""
    home = tmp_path / "home-mallory"
    home.mkdir()
    cli = Minirun(home / "store", fixtures)
    cli.load("busybox")                             # root's own store, clean
    os.chown(home, MALLORY, MALLORY)
    try:
        line = assert_refused(cli("run", "--rm", "busybox", "true"), 125, home)
        assert "uid 65534" in line
        assert_refused(cli("images"), 3, home)
        # and a store that does not exist yet is not created there
        fresh = Minirun(home / "new-store", fixtures)
        assert_refused(fresh("load", fresh.fixture_path("busybox")), 3, home)
        assert not os.path.lexists(home / "new-store")
    finally:
        os.chown(home, 0, 0)
        shutil.rmtree(home)


def test_a_world_writable_parent_is_refused_unless_sticky(tmp_path, fixtures):
    shared = tmp_path / "shared"
    shared.mkdir()
    cli = Minirun(shared / "store", fixtures)
    try:
        os.chmod(shared, 0o1777)                    # as /tmp: others cannot rename root's store
        cli.load("busybox")
        cli.ok("run", "--rm", "busybox", "true")
        os.chmod(shared, 0o777)                     # no sticky bit: anyone can replace it
        assert_refused(cli("run", "--rm", "busybox", "true"), 125, shared)
    finally:
        shutil.rmtree(shared)


def test_a_symlink_on_the_way_that_another_user_owns_is_refused(tmp_path, fixtures):
    """A symlink in a sticky dir can be replaced by its owner: it must be root's."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    real = tmp_path / "real-store"
    real.mkdir(mode=0o700)
    link = sticky / "store"
    link.symlink_to(real)
    cli = Minirun(link, fixtures)
    try:
        cli.load("busybox")                         # root's link: fine
        cli.ok("run", "--rm", "busybox", "true")
        os.lchown(link, MALLORY, MALLORY)
        assert_refused(cli("run", "--rm", "busybox", "true"), 125, link)
    finally:
        shutil.rmtree(sticky)
        shutil.rmtree(real)


def test_a_new_store_is_root_only_and_writable_by_root_alone(mr):
    mr.load("busybox")
    assert stat.S_IMODE(os.stat(mr.root).st_mode) == 0o700
    for top, dirs, files in os.walk(mr.root):
        if top.startswith(str(mr.root / "layers" / "sha256") + "/"):
            dirs[:] = []                            # the layers' own files keep the image's modes
            continue
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            assert st.st_uid == 0 and not st.st_mode & 0o022, (top, name, oct(st.st_mode))
