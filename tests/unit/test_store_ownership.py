"""store.root.check_ownership: the walk from / to the store, symlinks followed by hand.
(tests/integration/test_store_ownership.py attacks it through the CLI.)"""

from __future__ import annotations

import os

import pytest

from minirun.errors import EnvironmentProblem
from minirun.store.root import check_ownership, open_store

MALLORY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def test_a_missing_store_or_one_under_a_file_is_left_to_the_command(tmp_path):
    assert check_ownership(str(tmp_path / "nope" / "store")) is None
    (tmp_path / "file").write_text("")
    assert check_ownership(str(tmp_path / "file" / "store")) is None


def test_a_relative_symlink_is_followed_to_where_it_really_leads(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "mallory").mkdir()
    open_store(str(tmp_path / "mallory" / "store"))
    (tmp_path / "a" / "link").symlink_to("../mallory/store")
    assert check_ownership(str(tmp_path / "a" / "link")) is not None
    os.chown(tmp_path / "mallory", MALLORY, MALLORY)
    with pytest.raises(EnvironmentProblem, match="mallory is owned by uid 65534"):
        check_ownership(str(tmp_path / "a" / "link"))
    with pytest.raises(EnvironmentProblem):
        open_store(str(tmp_path / "a" / "link"), create=False)


def test_a_symlinked_directory_inside_the_store_is_checked_where_it_leads(tmp_path):
    store = open_store(str(tmp_path / "store"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(os.path.join(store.root, "tmp"), elsewhere / "tmp")
    os.symlink(elsewhere / "tmp", os.path.join(store.root, "tmp"))
    check_ownership(store.root)
    os.chmod(elsewhere / "tmp", 0o777)
    with pytest.raises(EnvironmentProblem, match="store/tmp is writable by group or others"):
        check_ownership(store.root)


def test_a_symlink_loop_is_one_error(tmp_path):
    (tmp_path / "x").symlink_to("y")
    (tmp_path / "y").symlink_to("x")
    with pytest.raises(EnvironmentProblem, match="too many levels of symbolic links"):
        check_ownership(str(tmp_path / "x" / "store"))


def test_the_error_names_the_store_the_cause_and_the_fix(tmp_path):
    store = open_store(str(tmp_path / "store"))
    os.chown(os.path.join(store.root, "locks"), MALLORY, 0)
    with pytest.raises(EnvironmentProblem) as caught:
        check_ownership(store.root)
    line = caught.value.line()
    assert f"{store.root}/locks is owned by uid 65534" in line
    assert f"chown root:root {store.root}/locks && chmod go-w {store.root}/locks" in line


def test_a_store_made_under_umask_0_is_still_writable_by_root_alone(tmp_path):
    old = os.umask(0)
    try:
        store = open_store(str(tmp_path / "new" / "deeper" / "store"))
    finally:
        os.umask(old)
    for path in (tmp_path / "new", tmp_path / "new" / "deeper", store.root,
                 *(os.path.join(store.root, sub) for sub in os.listdir(store.root))):
        assert not os.stat(path).st_mode & 0o022, path
    check_ownership(store.root)
