"""The overlay options minirun mounts with, seen in what the kernel writes to the
upper dir (overlay.py's docstring; README "What the model costs"):

- redirect_dir=off: a directory from a lower layer that is renamed is copied up
  whole under its new name, with no redirect xattr pointing into the layers;
- metacopy=off: a chmod of a lower file copies its data up, not only its inode;
- index=off: changing one name of a hard-linked lower file copies up that name
  only; the other name keeps the old content.

Each is a behaviour the opposite setting changes, so the tests fail on a kernel
or mount that does not honour the option, whichever mount path (lowerdir+ or the
legacy option string) this kernel takes.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from .imagebuild import busybox_layer, entry, layer_tar, write_layout

pytestmark = pytest.mark.kernel

BIG = b"0123456789abcdef" * 4096             # 64 KiB: a data copy-up is plain to see


@pytest.fixture
def image(mr, tmp_path):
    applets = [entry(f"bin/{name}", tarfile.SYMTYPE, linkname="busybox", mode=0o777)
               for name in ("mv", "chmod", "rm")]
    lower = layer_tar([
        entry("data", tarfile.DIRTYPE, mode=0o755),
        entry("data/one", data=b"one\n"),
        entry("data/sub", tarfile.DIRTYPE, mode=0o755),
        entry("data/sub/two", data=b"two\n"),
        entry("big", data=BIG, mode=0o644),
        entry("linked", data=b"old\n"),
        entry("alias", tarfile.LNKTYPE, linkname="linked"),
    ])
    write_layout(tmp_path / "opts", [busybox_layer(applets), lower], config={"Cmd": ["/bin/sh"]})
    mr.ok("load", str(tmp_path / "opts"))
    return "localhost/opts:latest"


def upper_of(mr, name: str) -> Path:
    return Path(mr.inspect(name)["UpperDir"])


def xattrs(path) -> list[str]:
    return [name for name in os.listxattr(path, follow_symlinks=False) if name.startswith("trusted.overlay.")]


def test_a_renamed_lower_directory_is_copied_up_whole(mr, image):
    out = mr.ok("run", "--name", "r", image, "sh", "-c", "mv /data /moved && cat /moved/sub/two && ls /").stdout
    assert out.startswith("two\n") and "data" not in out.split()
    upper = upper_of(mr, "r")
    assert (upper / "moved" / "one").read_bytes() == b"one\n"          # the data itself, copied
    assert (upper / "moved" / "sub" / "two").read_bytes() == b"two\n"
    assert "trusted.overlay.redirect" not in xattrs(upper / "moved")
    gone = os.lstat(upper / "data")                                      # a whiteout where it was
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert sorted(mr.ok("diff", "r").lines) == sorted(
        ["D /data", "A /moved", "A /moved/one", "A /moved/sub", "A /moved/sub/two"])
    mr.ok("rm", "r")


def test_a_chmod_copies_the_data_up(mr, image):
    mr.ok("run", "--name", "c", image, "chmod", "600", "/big")
    copied = upper_of(mr, "c") / "big"
    assert stat.S_IMODE(os.lstat(copied).st_mode) == 0o600
    assert "trusted.overlay.metacopy" not in xattrs(copied)
    assert copied.read_bytes() == BIG
    mr.ok("rm", "c")


def test_writing_one_name_of_a_hard_link_leaves_the_other(mr, image):
    script = "stat -c %h /alias; echo new >> /linked; cat /linked /alias"
    out = mr.ok("run", "--name", "h", image, "sh", "-c", script).stdout
    assert out == "2\nold\nnew\nold\n"                                 # one inode with two names below
    upper = upper_of(mr, "h")
    assert (upper / "linked").read_bytes() == b"old\nnew\n"
    assert not (upper / "alias").exists()                                # not copied up with it
    mr.ok("rm", "h")
