"""Reproducible tar and gzip writing, and the digests that name the results.

Everything that could vary between two runs or two machines is pinned:
member order, mtime, owner names, gzip header mtime and file name. The only
remaining source of variation is the zlib version, which is fixed on one host.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass

from .entries import DIR, FILE, SYMLINK, Entry

# 2024-01-01T00:00:00Z. One constant for every member of every tar (not the
# image's "created"), so that a layer's digest depends on its content alone and
# identical layers are shared between images with different creation times.
FIXED_MTIME = 1704067200

OPAQUE_MARKER = ".wh..wh..opq"

_TAR_TYPES = {DIR: tarfile.DIRTYPE, FILE: tarfile.REGTYPE, SYMLINK: tarfile.SYMTYPE}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    """A built layer: the compressed blob plus the digests manifests and configs need."""

    name: str  # for history and log lines only
    blob: bytes  # gzip-compressed tar
    digest: str  # sha256 of blob (manifest descriptor, blob file name)
    diff_id: str  # sha256 of the uncompressed tar (config rootfs.diff_ids)


def order_paths(entries: dict[str, Entry], opaque_last: bool = False) -> list[str]:
    """Depth-first, names sorted bytewise, so every directory precedes its children.

    An opaque marker is placed right after its directory's entry (what most
    tools produce), or, with opaque_last, after everything else in that
    directory: the order an unpacker must also survive, since applying the
    marker then must not wipe what this same layer already wrote.
    """
    children: dict[str, list[str]] = {}
    for path in entries:
        parent = path.rpartition("/")[0]
        children.setdefault(parent, []).append(path)
    ordered: list[str] = []

    def visit(directory: str) -> None:
        kids = sorted(children.get(directory, []), key=lambda p: p.encode())
        markers = [k for k in kids if k.rpartition("/")[2] == OPAQUE_MARKER]
        others = [k for k in kids if k not in markers]
        if not opaque_last:
            ordered.extend(markers)
        for kid in others:
            ordered.append(kid)
            if entries[kid].kind == DIR:
                visit(kid)
        if opaque_last:
            ordered.extend(markers)

    visit("")
    return ordered


def tar_bytes(members: list[tuple[str, Entry]]) -> bytes:
    """Write members in the given order as a PAX tar with pinned metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, entry in members:
            info = tarfile.TarInfo(path)  # tarfile appends the trailing '/' of dirs
            info.type = _TAR_TYPES[entry.kind]
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            info.mtime = FIXED_MTIME
            if entry.kind == SYMLINK:
                info.linkname = entry.target
            if entry.kind == FILE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with header mtime 0 and no file name, so equal input gives equal output."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def build_layer(name: str, entries: dict[str, Entry], opaque_last: bool = False) -> Layer:
    raw = tar_bytes([(p, entries[p]) for p in order_paths(entries, opaque_last)])
    blob = gzip_bytes(raw)
    return Layer(name=name, blob=blob, digest=sha256(blob), diff_id=sha256(raw))


def archive_bytes(files: dict[str, bytes]) -> bytes:
    """A plain tar of output files (OCI archive, docker archive) with explicit parent dirs."""
    entries: dict[str, Entry] = {}
    for path, data in files.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), Entry(DIR, 0o755))
        entries[path] = Entry(FILE, 0o644, data=data)
    return tar_bytes([(p, entries[p]) for p in order_paths(entries)])
