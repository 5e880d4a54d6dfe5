"""What `minirun doctor` asks of the kernel that takes more than one call: can
this process make a mount namespace and pivot_root in it, can it mount an
overlay with upper and work dirs. Each probe runs in a forked child, so its
namespace and mounts die with it; each returns None when it worked, else the
error it met."""

from __future__ import annotations

import os
import tempfile

from .. import linux
from ..lib.forked import in_child


def _failure(probe) -> str | None:
    failure = in_child(probe)
    return None if failure is None else failure.message


def pivot_root_fails(base: str) -> str | None:
    """pivot_root into a bind mount of a new directory under base (an existing dir)."""
    def probe() -> None:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount(new_root, new_root, None, linux.MS_BIND)
        linux.pivot_root(new_root, os.path.join(new_root, "old"))
    # made and removed here: after the pivot the child no longer sees the path
    with tempfile.TemporaryDirectory(dir=base, prefix=".doctor-") as new_root:
        os.mkdir(os.path.join(new_root, "old"))
        return _failure(probe)


def overlay_mount_fails() -> str | None:
    """An overlay of one empty lower dir, with upper and work dirs, written to once."""
    def probe() -> None:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        with tempfile.TemporaryDirectory(prefix="minirun-doctor-") as tmp:
            for sub in ("lower", "upper", "work", "merged"):
                os.mkdir(os.path.join(tmp, sub))
            linux.mount("overlay", os.path.join(tmp, "merged"), "overlay", 0,
                        f"lowerdir={tmp}/lower,upperdir={tmp}/upper,workdir={tmp}/work")
            with open(os.path.join(tmp, "merged", "probe"), "w") as f:
                f.write("x")
            linux.umount2(os.path.join(tmp, "merged"))
    return _failure(probe)
