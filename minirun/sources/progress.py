"""How load, pull and push say how far they have got, without drawing anything.

Every source reports through one callback, a `Report`:

    report(label, status)                  a layer's status changed ("Already exists")
    report(label, status, done, total)     bytes done of total (total None: unknown)

label is the layer's short digest, status docker's word for the step
("Downloading", "Pushing", "Extracting"). The CLI's cli/progress.py turns the
calls into bars (on a terminal) or lines; this layer never imports rich.
A callback may be called from several threads (parallel downloads and uploads,
the unpacker's reader thread), and for every chunk read: it must be cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from ..lib.fsutil import read_into

# report(label, status, done=None, total=None); collections.abc, not typing's Protocol:
# api/catalog.py names it, and the commands that list images import little
Report = Callable[..., None]


def silent(label: str, status: str, done: int | None = None, total: int | None = None) -> None:
    """A Report that says nothing."""


class Metered:
    """A readable stream that tells on_bytes how many bytes have been read through it
    so far, after every read: the compressed stream of a layer being loaded, or a
    blob going out to a registry. seek (an upload sent again after a 401) counts
    from the new position."""

    def __init__(self, stream, on_bytes: Callable[[int], None], start: int = 0):
        self.stream = stream
        self.on_bytes = on_bytes
        self.count = start

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            self._counted(len(data))
        return data

    def readinto(self, buf) -> int:
        n = read_into(self.stream, buf)
        if n:
            self._counted(n)
        return n

    def _counted(self, n: int) -> None:
        self.count += n
        self.on_bytes(self.count)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.count = self.stream.seek(offset, whence)
        return self.count

    def tell(self) -> int:
        return self.count
