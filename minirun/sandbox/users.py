"""Resolve USER[:GROUP] the way docker does: numbers are taken as they are,
names are looked up in the container's own /etc/passwd and /etc/group, and
supplementary groups come from the container's /etc/group."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _read_table(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve(spec: str, passwd_path: str = "/etc/passwd", group_path: str = "/etc/group") -> Identity:
    user, _, group = spec.partition(":")
    passwd = [row for row in _read_table(passwd_path) if len(row) >= 7]
    groups = [row for row in _read_table(group_path) if len(row) >= 4]
    entry = None
    if user.isdigit():
        uid = int(user)
        entry = next((row for row in passwd if row[2] == user), None)
    else:
        entry = next((row for row in passwd if row[0] == user), None)
        if entry is None:
            raise UsageError(f"unable to find user {user}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            row = next((r for r in groups if r[0] == group), None)
            if row is None:
                raise UsageError(f"unable to find group {group}: no matching entries in group file")
            gid = int(row[2])
    name = entry[0] if entry else None
    extra = () if group else tuple(int(r[2]) for r in groups
                                   if name and name in r[3].split(",") and r[2].isdigit())
    home = entry[5] if entry and entry[5] else "/"
    return Identity(uid, gid, tuple(dict.fromkeys((gid, *extra))), home)
