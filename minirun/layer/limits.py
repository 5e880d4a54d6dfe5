"""Limits on one layer, against decompression bombs and huge sparse files.

Read from the environment when a layer's extraction starts:
    MINIRUN_MAX_LAYER_BYTES     bytes one layer may make us handle, uncompressed
                                (default 64 GiB): file data, where a sparse file
                                counts with its full declared size, plus the tar's
                                own headers and any data it makes us skip
    MINIRUN_MAX_LAYER_ENTRIES   entries in one layer (default 2,000,000)
and fixed:
    HEADER_BYTES                the extended headers (PAX records, GNU long names,
                                sparse maps) of one entry: 1 MiB. tarfile holds them
                                in memory before the entry is seen, so this is
                                checked as the bytes are read (see unpack._Hasher).

Each limit is checked before the entry it concerns is written, and exceeding one
is a BadImage naming the entry and the variable to raise. A malformed value is a
UsageError naming the variable.

MINIRUN_MAX_LAYER_BYTES also bounds what is declared before any byte is read
(check_size): a layer blob (its descriptor's size, or its file's, which a sparse
file makes cheap to inflate), a member of an image archive, a tar given to
`minirun import`, and the layer `minirun commit` would pack (its files' apparent
sizes), so that none of them is hashed, copied or packed at all when it is over.
A compressed blob is never bigger than its content by more than a few bytes per
MiB, so the uncompressed limit serves for it too.
"""

from __future__ import annotations

import os
import tarfile

from ..errors import BadImage, Conflict, UsageError, named

DEFAULT_MAX_BYTES = 64 << 30
DEFAULT_MAX_ENTRIES = 2_000_000
HEADER_BYTES = 1 << 20


def _from_env(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise UsageError(f"{variable}={os.environ[variable]!r} is not a positive whole number",
                         f"set {variable} to a number of {'bytes' if 'BYTES' in variable else 'entries'}, "
                         f"or unset it for the default ({default})")
    return int(raw)


class Limits:
    """What one layer has used so far, against what it may use."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.bytes = 0
        self.entries = 0

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(_from_env("MINIRUN_MAX_LAYER_BYTES", DEFAULT_MAX_BYTES),
                   _from_env("MINIRUN_MAX_LAYER_ENTRIES", DEFAULT_MAX_ENTRIES))

    def charge(self, member: tarfile.TarInfo, next_offset: int) -> None:
        """Count one entry: its headers, and the larger of the bytes it occupies in the
        tar (up to next_offset, where tarfile reads the next header) and the bytes
        extracting it writes (a sparse file's full size)."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise BadImage(f"entry {named(member.name)}: the layer has more than {self.max_entries} entries "
                           "(MINIRUN_MAX_LAYER_ENTRIES)",
                           "raise MINIRUN_MAX_LAYER_ENTRIES if you trust this image")
        headers = max(0, member.offset_data - member.offset)
        stored = max(0, next_offset - member.offset_data)
        written = member.size if member.isreg() else 0
        self.bytes += headers + max(stored, written)
        if self.bytes > self.max_bytes:
            raise BadImage(f"entry {named(member.name)}: the layer passes {self.max_bytes} bytes uncompressed "
                           "(MINIRUN_MAX_LAYER_BYTES; a sparse file counts with its full size)",
                           "raise MINIRUN_MAX_LAYER_BYTES if you trust this image")

    def remaining(self) -> int:
        return max(0, self.max_bytes - self.bytes)


def max_layer_bytes() -> int:
    """MINIRUN_MAX_LAYER_BYTES, or its default."""
    return _from_env("MINIRUN_MAX_LAYER_BYTES", DEFAULT_MAX_BYTES)


def check_size(size: int, what: str, limit: int | None = None) -> None:
    """Refuse `what` by its declared size, before reading it, when a layer may not be that big."""
    limit = max_layer_bytes() if limit is None else limit
    if size > limit:
        raise BadImage(f"{what} is {size} bytes, over the limit of {limit} bytes for one layer "
                       "(MINIRUN_MAX_LAYER_BYTES; a sparse file counts with its full size)",
                       "raise MINIRUN_MAX_LAYER_BYTES if you trust this image")


def check_tree(size: int, entries: int, what: str, hint: str) -> None:
    """Refuse to pack a tree (`what`) whose files' apparent sizes or entries are more
    than one layer may hold: the check commit and export make from metadata alone,
    before reading any data, and pack repeats as it goes."""
    max_bytes = max_layer_bytes()
    if size > max_bytes:
        raise Conflict(f"{what} holds {size} bytes of files, over the limit of {max_bytes} for one layer "
                       "(MINIRUN_MAX_LAYER_BYTES; a sparse file counts with its full size)", hint)
    max_entries = _from_env("MINIRUN_MAX_LAYER_ENTRIES", DEFAULT_MAX_ENTRIES)
    if entries > max_entries:
        raise Conflict(f"{what} holds {entries} entries, over the limit of {max_entries} for one layer "
                       "(MINIRUN_MAX_LAYER_ENTRIES)", hint)
