"""A layer's content as a flat map {relative path: Entry}, before it becomes a tar.

Three sources produce such maps: a readable tree under layers/, the generated
busybox layer, and the pattern-generated small layers. Everything that git
cannot carry (modes other than 0644/0755, owners) is normalised here and then
overridden from the image spec's "attrs", so the host checkout never leaks
into the output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

DIR, FILE, SYMLINK = "dir", "file", "symlink"

# Files named like this only exist so that git keeps an otherwise empty directory.
KEEP_FILE = ".keep"

# The name in a spec's "layers" list that means "generate from the host busybox".
BUSYBOX_LAYER = "busybox"


class FixtureError(Exception):
    """A problem with the inputs; build.py prints it as one line and exits 1."""


@dataclass
class Entry:
    """One tar member. Paths never start with '/' and never end with '/'."""

    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""  # symlink target, written verbatim


def dir_entry(mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(DIR, mode, uid, gid)


def file_entry(data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(FILE, mode, uid, gid, data=data)


def symlink_entry(target: str) -> Entry:
    return Entry(SYMLINK, 0o777, target=target)


def read_tree(root: str) -> dict[str, Entry]:
    """Read a layer tree from the repo.

    Modes are normalised to what git can express (dirs 0755, files 0755 when
    any exec bit is set else 0644) so that a checkout's umask cannot change
    the digest. Symlinks are stored, never followed.
    """
    if not os.path.isdir(root):
        raise FixtureError(f"layer tree {root} does not exist")
    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            if name == KEEP_FILE:
                continue
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            entries[rel] = _entry_from_disk(full)
    return entries


def _entry_from_disk(path: str) -> Entry:
    if os.path.islink(path):
        return symlink_entry(os.readlink(path))
    if os.path.isdir(path):
        return dir_entry()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
        return file_entry(data, 0o755 if os.stat(path).st_mode & 0o111 else 0o644)
    raise FixtureError(f"{path}: only files, directories and symlinks may live in a layer tree")


def apply_attrs(entries: dict[str, Entry], attrs: dict[str, dict], where: str) -> None:
    """Apply the spec's per-path mode/uid/gid overrides (git cannot store them)."""
    for path, over in attrs.items():
        entry = entries.get(path.strip("/"))
        if entry is None:
            raise FixtureError(f"{where}: attrs names {path!r}, which is not in the layer")
        if "mode" in over:
            entry.mode = int(str(over["mode"]), 8)
        entry.uid = int(over.get("uid", entry.uid))
        entry.gid = int(over.get("gid", entry.gid))


def add_parents(entries: dict[str, Entry]) -> None:
    """Give every path an explicit parent directory entry (root:root 0755 when implied)."""
    for path in list(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), dir_entry())


def generated_entries(path_pattern: str, content_pattern: str, i: int) -> dict[str, Entry]:
    """One small layer of a "generated" series: a single file whose path/content embed i."""
    path = path_pattern.format(i=i).strip("/")
    entries = {path: file_entry(content_pattern.format(i=i).encode())}
    add_parents(entries)
    return entries


# --- the busybox layer -------------------------------------------------------

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\napp:x:1000:\n"
HOSTNAME = "fixture\n"

# Directory -> (mode, uid, gid). Order is irrelevant: the tar writer sorts.
BUSYBOX_DIRS = {
    "bin": (0o755, 0, 0),
    "dev": (0o755, 0, 0),
    "etc": (0o755, 0, 0),
    "home": (0o755, 0, 0),
    "home/app": (0o755, 1000, 1000),
    "proc": (0o755, 0, 0),
    "root": (0o700, 0, 0),
    "sys": (0o755, 0, 0),
    "tmp": (0o1777, 0, 0),
    "usr": (0o755, 0, 0),
    "usr/bin": (0o755, 0, 0),
    "var": (0o755, 0, 0),
}


def find_busybox(explicit: str | None) -> str:
    """The busybox binary to embed; a missing one is a setup problem, said in one line."""
    path = explicit or shutil.which("busybox")
    if not path or not os.path.isfile(path):
        raise FixtureError(
            f"busybox not found{' at ' + explicit if explicit else ''}: "
            "run `apt-get install busybox-static` or pass --busybox PATH"
        )
    return path


def busybox_applets(busybox: str) -> list[str]:
    """Applet names from `busybox --list`, sorted, without 'busybox' itself."""
    # argv[0] must read "busybox": a copy named otherwise would look for an applet of that name.
    try:
        out = subprocess.run(["busybox", "--list"], executable=busybox, capture_output=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FixtureError(f"cannot run `{busybox} --list`: {exc}") from None
    names = {n.strip() for n in out.decode().splitlines()}
    bad = [n for n in names if "/" in n]
    if bad:
        raise FixtureError(f"`{busybox} --list` printed paths, expected applet names: {bad[:3]}")
    return sorted(n for n in names if n and n != "busybox")


def busybox_entries(busybox: str) -> dict[str, Entry]:
    """A minimal, statically linked userland: enough for `sh -c`, `id`, `ls`, `cat`."""
    with open(busybox, "rb") as f:
        binary = f.read()
    entries = {path: dir_entry(*attrs) for path, attrs in BUSYBOX_DIRS.items()}
    entries["bin/busybox"] = file_entry(binary, 0o755)
    for applet in busybox_applets(busybox):
        entries[f"bin/{applet}"] = symlink_entry("busybox")
    entries["etc/passwd"] = file_entry(PASSWD.encode())
    entries["etc/group"] = file_entry(GROUP.encode())
    entries["etc/hostname"] = file_entry(HOSTNAME.encode())
    return entries
