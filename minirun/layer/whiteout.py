"""The two whiteout dialects and how each maps onto the other.

OCI image layers (tar)                     overlayfs (upper or lower dir)
    DIR/.wh.NAME   (empty file)       <->      DIR/NAME   char device 0:0
    DIR/.wh..wh..opq (empty file)     <->      DIR        xattr trusted.overlay.opaque=y

An opaque marker hides what lower layers hold in DIR, wherever it stands in
the tar; entries of the same layer stay.

Edge names are refused, never guessed at: `.wh.` (no name), `.wh..` (the
directory itself) and `.wh...` (its parent) whiteout nothing a layer may hide.
"""

from __future__ import annotations

import os
import stat

from ..errors import named

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META_PREFIX = ".wh..wh."          # aufs metadata entries, skipped on unpack
OPAQUE_XATTR = "trusted.overlay.opaque"
OPAQUE_VALUE = b"y"

# Other trusted.overlay.* attributes that the kernel writes; never taken from a tar.
OVERLAY_XATTR_PREFIX = "trusted.overlay."


def classify(basename: str) -> tuple[str, str]:
    """('opaque', '') for the opaque marker, ('whiteout', NAME) for .wh.NAME, else ('plain', basename)."""
    if basename == WH_OPAQUE:
        return "opaque", ""
    if basename.startswith(WH_PREFIX):
        return "whiteout", basename[len(WH_PREFIX):]
    return "plain", basename


def bad_target(target: str) -> str | None:
    """Why `.wh.TARGET` cannot be a whiteout, or None when it can."""
    reasons = {"": "a whiteout with no name", ".": "a whiteout of '.', the directory itself",
               "..": "a whiteout of '..', the parent directory"}
    if target in reasons:
        return reasons[target] + " (a whiteout hides one entry of its directory)"
    if "/" in target or "\0" in target:
        return f"a whiteout of the invalid name {named(target)}"
    return None


def is_whiteout_stat(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == OPAQUE_VALUE
    except OSError:
        return False


def make_whiteout(path: str, dir_fd: int | None = None) -> None:
    """A char device 0:0 at path (relative to dir_fd when given); mknod never follows
    a symlink and fails if anything is there already."""
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)


def mark_opaque(target: str | int) -> None:
    """Mark a directory, named by path (never followed if a symlink) or by an open fd."""
    if isinstance(target, int):
        os.setxattr(target, OPAQUE_XATTR, OPAQUE_VALUE)
    else:
        os.setxattr(target, OPAQUE_XATTR, OPAQUE_VALUE, follow_symlinks=False)
