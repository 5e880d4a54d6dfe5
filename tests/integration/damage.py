"""Ways to damage a store, for the tests of what minirun does with a damaged one.

Every damage replaces the entry (unlink, then create) rather than writing into
it, so a store copied with hard links (`clone()`) shares no damaged inode with
its original.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

# What can happen to a record file (a JSON document the store keeps).
RECORD_DAMAGE = ("truncated", "empty", "wrong-type", "wrong-fields", "garbage", "directory",
                 "symlink-to-dev-zero", "fifo", "huge")

# What can happen to a directory of the store.
DIR_DAMAGE = ("file", "symlink-to-dev-zero", "symlink-loop")


def records(root: Path) -> list[Path]:
    """Every record file the store keeps, for the store as the tests build it."""
    found = [root / "images.json"]
    for cid in sorted(os.listdir(root / "containers")):
        found += [root / "containers" / cid / "config.json", root / "containers" / cid / "state.json"]
    for key in sorted(os.listdir(root / "layers" / "sha256")):
        found += [root / "layers" / "sha256" / key / "meta.json",
                  root / "layers" / "sha256" / key / "files.jsonl.gz"]
    if (root / "networks" / "allocations.json").exists():
        found.append(root / "networks" / "allocations.json")
    return found


def directories(root: Path) -> list[Path]:
    """The store's own directories (not the ones inside a layer or a container)."""
    return [root / sub for sub in ("blobs", "blobs/sha256", "layers", "layers/sha256", "containers",
                                   "locks", "tmp", "mnt")]


def _wrong(value, rng: random.Random):
    """A value of another JSON type than value."""
    choices = [None, True, 7, -1, 2 ** 70, 1.5, "x", "", [], ["x"], {}, {"x": 1}]
    same = {bool: bool, int: int, float: float, str: str, list: list, dict: dict, type(None): type(None)}
    return rng.choice([c for c in choices if type(c) is not same.get(type(value), type(value))])


def _wrong_fields(doc, rng: random.Random):
    """doc with every field (and every entry of its top-level objects) of another type."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            if isinstance(value, dict) and value and rng.random() < 0.5:
                out[key] = {k: _wrong(v, rng) for k, v in value.items()}
            else:
                out[key] = _wrong(value, rng)
        return out
    return _wrong(doc, rng)


def damage(path: Path, kind: str, seed: int = 0) -> None:
    """Replace the record at path with a damaged one of this kind."""
    rng = random.Random(f"{path.name}-{kind}-{seed}")
    try:
        original = path.read_bytes() if path.is_file() and not path.is_symlink() else b"{}"
    except OSError:
        original = b"{}"
    _remove(path)
    if kind == "truncated":
        path.write_bytes(original[:max(1, len(original) * rng.randint(1, 9) // 10)])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong-type":
        path.write_text(json.dumps(rng.choice([[], ["x"], "text", 42, None, True, 1.5])))
    elif kind == "wrong-fields":
        try:
            doc = json.loads(original)
        except ValueError:
            doc = {"status": "running"}
        path.write_text(json.dumps(_wrong_fields(doc, rng)))
    elif kind == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\0\xff")
    elif kind == "directory":
        path.mkdir()
        (path / "x").write_text("{}")
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:          # sparse: a terabyte that takes no space
            f.write(b"{")
            f.truncate(1 << 40)
    else:
        raise ValueError(kind)


def damage_dir(path: Path, kind: str) -> None:
    """Replace one of the store's directories."""
    _remove(path)
    if kind == "file":
        path.write_text("not a directory")
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-loop":
        path.symlink_to(path.name)
    else:
        raise ValueError(kind)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path)


def clone(src: Path, dest: Path) -> None:
    """A copy of a store whose files are hard links to the original's (cheap); damage()
    and minirun replace files rather than writing into them."""
    subprocess.run(["cp", "-a", "--link", str(src), str(dest)], check=True)
