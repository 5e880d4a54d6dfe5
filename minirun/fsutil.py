"""Filesystem helpers shared by the store and the layer code, written without
recursion: a container may build a tree deeper than Python's stack."""

from __future__ import annotations

import os
import stat


def remove_tree(path: str) -> None:
    """Remove a file or a whole tree, however deep, never following symlinks."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    stack = [path]
    while stack:
        directory = stack[-1]
        if not os.access(directory, os.W_OK | os.X_OK):
            os.chmod(directory, 0o700)     # a read-only dir from an image still gets emptied
        subdirs = []
        with os.scandir(directory) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)          # empty the children first, then come back
        else:
            os.rmdir(directory)
            stack.pop()
