"""Per-layer progress for load, pull and push, the way `docker pull` shows it.

The layers below report through one callback (sources/progress.py):
update(label, status) when a layer's step changes, update(label, status, done,
total) as its bytes move. for_output() picks how that is shown:

    LiveProgress   on a terminal: one line per layer redrawn in place by rich
                   (imported only then), with a bar, bytes done/total, the rate
                   and the time left while bytes move.
    PlainProgress  elsewhere (a pipe, a file, a log): a line per step, except the
                   steps named `unannounced` (load says only how a layer ended),
                   and, while a layer's bytes move, one line with bytes and rate
                   every PERIOD seconds, so a long layer is never a silent minute.

Either may be called from several threads at once, and for every chunk read:
update() only records; lines are printed on a change, the terminal is redrawn
by rich's own refresh thread a few times a second.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

PERIOD = 10.0           # seconds between two byte lines of one layer, off a terminal
WINDOW = 3.0            # the rate is taken over the last WINDOW seconds of samples
REFRESH = 8             # redraws per second on a terminal
BAR = 30                # bar width in characters


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


def duration(seconds: float) -> str:
    """Time left as people read it: 4s, 1m05s, 2h03m."""
    s = max(1, int(seconds + 0.5))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


class Row:
    """One layer: its step, and the bytes it has moved in that step, sampled over time."""

    __slots__ = ("status", "done", "total", "samples", "shown")

    def __init__(self, status: str, now: float):
        self.status = status
        self.done: int | None = None
        self.total: int | None = None
        self.samples: deque[tuple[float, int]] = deque()
        self.shown = now            # when a line last said something about it

    def sample(self, now: float, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        samples = self.samples
        if len(samples) > 1 and now - samples[-2][0] < 0.1:
            samples[-1] = (now, done)      # a sample per 0.1 s at most: chunks come by thousands
        else:
            samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW:
            samples.popleft()

    def rate(self) -> float | None:
        """Bytes per second over the last WINDOW seconds; None before two samples apart."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        if not rate or self.total is None or self.done is None or self.done >= self.total:
            return None
        return (self.total - self.done) / rate

    def amounts(self) -> str:
        """'12.3MB/31.4MB, 5.2MB/s, ETA 4s', as much of it as is known."""
        if self.done is None:
            return ""
        parts = [human(self.done) + (f"/{human(self.total)}" if self.total is not None else "")]
        rate, eta = self.rate(), self.eta()
        if rate is not None:
            parts.append(f"{human(rate)}/s")
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        return ", ".join(parts)


class PlainProgress:
    """Steps as lines: 'dfc72d3bb26c: Pull complete'; byte lines every `period` seconds."""

    def __init__(self, stream=None, quiet: bool = False, unannounced: tuple[str, ...] = (),
                 period: float = PERIOD):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.unannounced = frozenset(unannounced)
        self.period = period
        self._rows: dict[str, Row] = {}
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def __call__(self, label: str, status: str, current: int | None = None, total: int | None = None) -> None:
        self.update(label, status, current, total)

    def update(self, label: str, status: str, current: int | None = None, total: int | None = None) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        with self._lock:
            text = self._record(now, label, status, current, total)
            if text is None and current is not None:
                row = self._rows[label]
                if now - row.shown >= self.period:
                    text = f"{label}: {status} {row.amounts()}"
            if text is not None:
                self._rows[label].shown = now
                print(text, file=self.stream, flush=True)

    def _record(self, now: float, label: str, status: str, current: int | None,
                total: int | None) -> str | None:
        """Keep the row up to date; the line a new step deserves, if any. A step said
        again without bytes is said again (a layer that is in a second image of an
        archive "Already exists" for it too)."""
        row = self._rows.get(label)
        text = None
        if row is None or row.status != status or current is None:
            row = self._rows[label] = Row(status, now)
            if status not in self.unannounced:
                text = f"{label}: {status}"
        if current is not None:
            row.sample(now, current, total)
        return text

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


class LiveProgress(PlainProgress):
    """One line per layer redrawn in place, with a bar, rate and ETA while bytes move."""

    def __init__(self, stream=None, quiet: bool = False, unannounced: tuple[str, ...] = ()):
        super().__init__(stream, quiet, unannounced)
        from rich.console import Console
        from rich.live import Live
        self._console = Console(file=self.stream, highlight=False)
        # no redirection: a line printed meanwhile keeps its own stream (pull's progress
        # is on stderr under `run`, where stdout is the container's)
        self._live = Live(console=self._console, get_renderable=self._render,
                          refresh_per_second=REFRESH, transient=False,
                          redirect_stdout=False, redirect_stderr=False)

    def __enter__(self):
        self._live.__enter__()
        return self

    def __exit__(self, *exc):
        return self._live.__exit__(*exc)        # draws the rows a last time

    def update(self, label: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            self._record(time.monotonic(), label, status, current, total)

    def line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def _render(self):
        from rich.text import Text
        with self._lock:
            lines = [_drawn(label, row) for label, row in self._rows.items()]
        return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")


def _drawn(label: str, row: Row) -> str:
    text = f"{label}: {row.status}"
    if row.done is None:
        return text
    if row.total:
        filled = int(BAR * min(row.done, row.total) / row.total)
        text += " [" + ("=" * max(filled - 1, 0) + (">" if filled else "")).ljust(BAR) + "]"
    return text + " " + row.amounts().replace(", ", "  ")


def for_output(quiet: bool = False, stream=None, unannounced: tuple[str, ...] = ()):
    """Live bars on a terminal, plain lines elsewhere; on stream (default stdout).
    unannounced: steps that get no line of their own off a terminal."""
    stream = stream or sys.stdout
    if not quiet and stream.isatty():
        return LiveProgress(stream, unannounced=unannounced)
    return PlainProgress(stream, quiet=quiet, unannounced=unannounced)
