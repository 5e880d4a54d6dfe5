"""The two whiteout dialects and how each maps onto the other.

OCI image layers (tar)                     overlayfs (upper or lower dir)
    DIR/.wh.NAME   (empty file)       <->      DIR/NAME   char device 0:0
    DIR/.wh..wh..opq (empty file)     <->      DIR        xattr trusted.overlay.opaque=y

An opaque marker hides what lower layers hold in DIR, wherever it stands in
the tar; entries of the same layer stay.
"""

from __future__ import annotations

import os
import stat

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


def is_whiteout_stat(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == OPAQUE_VALUE
    except OSError:
        return False


def make_whiteout(path: str) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def mark_opaque(path: str) -> None:
    os.setxattr(path, OPAQUE_XATTR, OPAQUE_VALUE, follow_symlinks=False)
