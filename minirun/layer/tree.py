"""Snapshot a directory tree and compare it with what you expected: the helper
for "compare the upper dir after a run" that tests and users share.

    from minirun.layer.tree import snapshot, compare, file, whiteout
    problems = compare(snapshot(upper), {"/greeting": file(b"hi\\n", mode=0o644),
                                         "/etc/hostname": whiteout()})
    assert not problems, problems

An expected entry lists only the fields it cares about; compare() checks those
and reports entries missing or unexpected. Fields: type, mode, uid, gid, size,
sha256, target (symlink), opaque (dir), nlink.

From a shell: `python -m minirun.tree DIR` prints the snapshot as JSON lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys

from . import whiteout as _wh

_TYPES = ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
          (stat.S_ISSOCK, "socket"))


def describe(path: str, st: os.stat_result | None = None) -> dict:
    """One entry's facts: type, mode, owner, size, content hash, link target, whiteout, opaque."""
    st = st or os.lstat(path)
    kind = next(name for test, name in _TYPES if test(st.st_mode))
    if _wh.is_whiteout_stat(st):
        kind = "whiteout"
    entry = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind == "file":
        entry["size"] = st.st_size
        entry["sha256"] = _hash_file(path)
        entry["nlink"] = st.st_nlink
    elif kind == "symlink":
        entry["target"] = os.readlink(path)
    elif kind == "dir":
        entry["opaque"] = _wh.is_opaque(path)
    elif kind in ("char", "block"):
        entry["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    return entry


def snapshot(root: str) -> dict[str, dict]:
    """Every entry under root (root itself excluded), keyed by '/relative/path'.
    Iterative, so trees deeper than Python's recursion limit work."""
    out: dict[str, dict] = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            out["/" + os.path.relpath(entry.path, root)] = describe(entry.path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return dict(sorted(out.items()))


def compare(actual: dict[str, dict], expected: dict[str, dict], ignore: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences; an empty list means the trees match."""
    problems = []
    for path in sorted(set(actual) | set(expected)):
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore):
            continue
        if path not in expected:
            problems.append(f"unexpected {actual[path]['type']} {path}")
        elif path not in actual:
            problems.append(f"missing {expected[path].get('type', 'entry')} {path}")
        else:
            for key, want in expected[path].items():
                got = actual[path].get(key)
                if got != want:
                    shown = (oct(got) if isinstance(got, int) else got, oct(want) if isinstance(want, int) else want) \
                        if key == "mode" else (got, want)
                    problems.append(f"{path}: {key} is {shown[0]!r}, expected {shown[1]!r}")
    return problems


# ---------------------------------------------------------------- expectation builders

def file(content: bytes | None = None, **fields) -> dict:
    entry = {"type": "file", **fields}
    if content is not None:
        entry["size"] = len(content)
        entry["sha256"] = hashlib.sha256(content).hexdigest()
    return entry


def directory(**fields) -> dict:
    return {"type": "dir", **fields}


def symlink(target: str, **fields) -> dict:
    return {"type": "symlink", "target": target, **fields}


def whiteout(**fields) -> dict:
    return {"type": "whiteout", **fields}


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m minirun.tree DIR", file=sys.stderr)
        return 2
    for path, entry in snapshot(argv[0]).items():
        print(json.dumps({"path": path, **entry}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
