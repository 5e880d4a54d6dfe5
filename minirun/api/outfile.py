"""Where save and export write their output: never a partial file, never a
device or pipe swapped for a file.

A regular destination (new or existing) is written as a temporary file beside
it and renamed into place when complete. A symlink is followed to what it
names. An existing device or FIFO (`-o /dev/stdout`, a named pipe) is written
in place: renaming a file over it would replace, say, /dev/null itself.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from typing import BinaryIO, Callable

from ..errors import EnvironmentProblem, NotFound, UsageError


def write_output(path: str, write: Callable[[BinaryIO], None], what: str) -> None:
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory", "give a file name to -o")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(target, "wb") as f:
                write(f)
        except OSError as exc:
            raise failed(what, path, exc) from None
        return
    tmp = temp_beside(target, path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise failed(what, path, exc) from None
        raise


def temp_beside(target: str, shown: str) -> str:
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise NotFound(f"cannot write {shown}: directory {directory} does not exist",
                       "create it first, or choose another path for -o")
    return os.path.join(directory, f".{os.path.basename(target)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def failed(what: str, dest: str, exc: OSError) -> EnvironmentProblem:
    where = f" ({exc.filename})" if exc.filename and exc.filename != dest else ""
    return EnvironmentProblem(f"{what} to {dest} failed: {exc.strerror or exc}{where}",
                              "check that the destination is writable and has free space")
