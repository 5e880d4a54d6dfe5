"""Resolve USER[:GROUP] the way docker does: numbers are taken as they are,
names are looked up in the container's own /etc/passwd and /etc/group, and
supplementary groups come from the container's /etc/group."""

from __future__ import annotations

from ..record import dataclass

from ..errors import UsageError

MAX_ID = 2**32 - 2          # (uid_t)-1 means "no change" to the kernel


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


def _read_table(path: str, fields: int) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []
    return [row for row in rows if len(row) >= fields]


def resolve(spec: str, passwd_path: str = "/etc/passwd", group_path: str = "/etc/group") -> Identity:
    user, _, group = spec.partition(":")
    passwd = _read_table(passwd_path, 7)
    groups = _read_table(group_path, 4)
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
