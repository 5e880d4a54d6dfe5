"""Resolve USER[:GROUP] the way docker does: numbers are taken as they are,
names are looked up in the container's own /etc/passwd and /etc/group, and
supplementary groups come from the container's /etc/group.

Both files belong to the image, or to the container itself when `exec` reads
them, so they are read with bounds: opened without blocking (a FIFO would wait
forever), used only when they are regular files (a link to /dev/zero never
ends) of at most MAX_TABLE_BYTES, and refused otherwise with one line. A file
that does not exist is an empty table, as before.

They are opened as root, with the caller's stdio still open and /proc mounted: a
table that leads through a /proc/self/fd/N-style link would reopen a file of
ours, the host file our stdin or stdout was redirected from, say. So the path is
resolved by the kernel inside the root (layer/safeopen.py's open_in_root, which
follows no such link: RESOLVE_NO_MAGICLINKS), and a table it refuses is treated
as one that cannot be opened: an empty table.
"""

from __future__ import annotations

import os
import stat

from ..lib.frozen import dataclass

from ..errors import BadImage, UsageError
from ..layer.safeopen import open_in_root

MAX_ID = 2**32 - 2          # (uid_t)-1 means "no change" to the kernel
MAX_TABLE_BYTES = 4 << 20   # /etc/passwd or /etc/group: about 50,000 users in 4 MiB
_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _number(text: str) -> int | None:
    """A decimal id in range, or None (str.isdigit alone accepts '²')."""
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None


def _read_table(root: int, path: str, fields: int) -> list[list[str]]:
    rows = [line.split(":") for line in _read_bounded(root, path).split("\n")
            if line.strip() and not line.startswith("#")]
    return [row for row in rows if len(row) >= fields]


def _read_bounded(root: int, path: str) -> str:
    """The text of path inside the directory root; "" when it cannot be opened
    (missing, as before, or through a link the kernel refuses). Anything but a
    regular file of at most MAX_TABLE_BYTES is refused, before and while reading
    (the container may grow it meanwhile)."""
    path = "/" + path.lstrip("/")
    try:
        fd = open_in_root(root, path, flags=_OPEN)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise _refuse(path, f"is {kind}, not a regular file")
        if st.st_size > MAX_TABLE_BYTES:
            raise _refuse(path, f"is {st.st_size} bytes, over minirun's limit of {MAX_TABLE_BYTES}")
        pieces, size = [], 0
        while size <= MAX_TABLE_BYTES:
            piece = os.read(fd, MAX_TABLE_BYTES + 1 - size)
            if not piece:
                break
            pieces.append(piece)
            size += len(piece)
        if size > MAX_TABLE_BYTES:
            raise _refuse(path, f"grew past minirun's limit of {MAX_TABLE_BYTES} bytes while read")
    finally:
        os.close(fd)
    return b"".join(pieces).decode("utf-8", "replace")


def _refuse(path: str, why: str) -> BadImage:
    return BadImage(f"the container's {path} {why}, so the user cannot be looked up in it",
                    f"make {path} a plain file of users (at most {MAX_TABLE_BYTES} bytes) in the image")


def resolve(spec: str, passwd_path: str = "/etc/passwd", group_path: str = "/etc/group",
            root: int = -1) -> Identity:
    """USER[:GROUP] looked up in the two tables, each resolved inside the directory
    fd root (default: our own root, the container's once we are in it)."""
    user, _, group = spec.partition(":")
    own = root < 0
    where = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if own else root
    try:
        passwd = _read_table(where, passwd_path, 7)
        groups = _read_table(where, group_path, 4)
    finally:
        if own:
            os.close(where)
    uid = _number(user)
    if uid is not None:
        entry = next((row for row in passwd if _number(row[2]) == uid), None)
    else:
        entry = next((row for row in passwd if row[0] == user), None)
        if entry is None:
            raise UsageError(f"unable to find user {user}: no matching entries in passwd file")
        uid = _number(entry[2])
        if uid is None:
            raise UsageError(f"user {user} has an invalid uid {entry[2]!r} in the image's /etc/passwd")
    gid = (_number(entry[3]) if entry else None) or 0
    if group:
        gid = _number(group)
        if gid is None:
            row = next((r for r in groups if r[0] == group), None)
            if row is None:
                raise UsageError(f"unable to find group {group}: no matching entries in group file")
            gid = _number(row[2])
            if gid is None:
                raise UsageError(f"group {group} has an invalid gid {row[2]!r} in the image's /etc/group")
    name = entry[0] if entry else None
    extra = () if group else tuple(_number(r[2]) for r in groups
                                   if name and name in r[3].split(",") and _number(r[2]) is not None)
    home = entry[5] if entry and entry[5] else "/"
    return Identity(uid, gid, tuple(dict.fromkeys((gid, *extra))), home)
