"""Per-layer progress the way `docker pull` shows it.

On a terminal: one live line per layer with a bar while downloading (drawn
with rich, imported only then). Elsewhere: one plain line per status change,
no bars, so logs and pipes stay readable.
"""

from __future__ import annotations

import sys
import threading


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


class PlainProgress:
    """Status changes as lines: 'dfc72d3bb26c: Pull complete'."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def update(self, label: str, status: str, current: int | None = None, total: int | None = None) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._last.get(label) == status:
                return
            self._last[label] = status
            print(f"{label}: {status}", file=self.stream, flush=True)

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


class LiveProgress(PlainProgress):
    """One redrawn line per layer, with a bar while downloading."""

    def __init__(self, stream=None):
        super().__init__(stream)
        from rich.console import Console
        from rich.live import Live
        self._rows: dict[str, tuple[str, int | None, int | None]] = {}
        self._console = Console(file=self.stream)
        self._live = Live(console=self._console, refresh_per_second=8, transient=False)

    def __enter__(self):
        self._live.__enter__()
        return self

    def __exit__(self, *exc):
        self._live.update(self._render(), refresh=True)
        return self._live.__exit__(*exc)

    def update(self, label: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            self._rows[label] = (status, current, total)
        self._live.update(self._render())

    def line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def _render(self):
        from rich.text import Text
        lines = []
        with self._lock:
            rows = list(self._rows.items())
        for label, (status, current, total) in rows:
            text = f"{label}: {status}"
            if current is not None and total:
                width = 40
                filled = int(width * min(current, total) / total)
                bar = "=" * max(filled - 1, 0) + (">" if filled else "") + " " * (width - filled)
                text += f" [{bar}] {human(current)}/{human(total)}"
            lines.append(text)
        return Text("\n".join(lines))


def for_output(quiet: bool = False, stream=None):
    """Live bars on a terminal, plain lines elsewhere; on stream (default stdout)."""
    stream = stream or sys.stdout
    if not quiet and stream.isatty():
        return LiveProgress(stream)
    return PlainProgress(stream, quiet=quiet)
