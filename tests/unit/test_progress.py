"""cli/progress.py, the one progress display of load, pull and push, and
sources/progress.py's Metered, the stream that counts what goes through it."""

from __future__ import annotations

import io
import os
import pty
import re
import threading
import time

from minirun.cli import progress
from minirun.sources.progress import Metered


def test_rate_and_eta_come_from_the_last_seconds_of_samples():
    row = progress.Row("Downloading", 0.0)
    row.sample(0.0, 0, 100_000_000)
    assert row.rate() is None and row.eta() is None          # one sample: no rate yet
    row.sample(1.0, 10_000_000, 100_000_000)
    row.sample(2.0, 20_000_000, 100_000_000)
    assert row.rate() == 10_000_000 and row.eta() == 8.0
    assert row.amounts() == "20.0MB/100.0MB, 10.0MB/s, ETA 8s"
    for t in range(3, 10):                                   # it slows down to 1 MB/s
        row.sample(float(t), 20_000_000 + (t - 2) * 1_000_000, 100_000_000)
    assert row.rate() == 1_000_000                           # the old pace is forgotten
    assert progress.duration(row.eta()) == "1m13s"
    row.sample(10.0, 100_000_000, 100_000_000)
    assert row.eta() is None and "ETA" not in row.amounts()


def test_samples_stay_few_however_many_chunks_come():
    row = progress.Row("Pushing", 0.0)
    for i in range(100_000):
        row.sample(i * 0.0001, i * 8192, None)              # 10 s of 8 kB chunks
    assert len(row.samples) < 50
    assert round(row.rate()) == 8192 / 0.0001
    assert row.amounts().startswith("819.2MB, ")            # no total: no slash, no ETA


def test_plain_progress_prints_each_step_once_and_unannounced_steps_not_at_all():
    out = io.StringIO()
    show = progress.PlainProgress(out, unannounced=("Extracting",))
    show("aaa", "Extracting", 0, 1000)
    show("aaa", "Extracting", 500, 1000)
    show("aaa", "Extracting", 1000, 1000)
    show("aaa", "Extracted (3 files, 0.0 MB)")
    show("bbb", "Already exists")
    show("bbb", "Already exists")                       # in the archive's next image too
    show("ccc", "Downloading", 0, 10)
    show("ccc", "Downloading", 5, 10)
    assert out.getvalue() == ("aaa: Extracted (3 files, 0.0 MB)\nbbb: Already exists\nbbb: Already exists\n"
                              "ccc: Downloading\n")


class FakeClock:
    """The progress module's clock, moved on by the test alone: what is printed and
    drawn depends on the samples' times, never on how fast this machine is."""

    def __init__(self, monkeypatch, start: float = 1000.0):
        self.now = start
        # the module's own `time` only: rich's refresh thread keeps the real clock
        monkeypatch.setattr(progress, "time", self)

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_plain_progress_says_how_far_a_long_layer_has_got_every_period(monkeypatch):
    clock = FakeClock(monkeypatch)
    out = io.StringIO()
    show = progress.PlainProgress(out, unannounced=("Extracting",), period=0.2)
    began = clock.now
    done = 0
    while clock.now - began < 0.7:                      # 0.7 s of 1000-byte chunks, 64 a second
        done += 1000
        show("aaa", "Extracting", done, 10_000_000)
        clock.advance(1 / 64)                           # exact in binary: no rounding in the sums
    show("aaa", "Extracted (1 files, 0.0 MB)")
    lines = out.getvalue().splitlines()
    assert len(lines) - 1 == 3, lines                   # one line per 0.2 s (0.2, 0.4, 0.6), not per chunk
    assert all(re.fullmatch(r"aaa: Extracting [0-9.]+kB/10\.0MB, 64\.0kB/s, ETA \S+", line)
               for line in lines[:-1]), lines
    assert lines[-1] == "aaa: Extracted (1 files, 0.0 MB)"


def test_quiet_progress_prints_nothing():
    out = io.StringIO()
    show = progress.for_output(quiet=True, stream=out)
    show("aaa", "Pull complete")
    show.line("x")
    assert out.getvalue() == "" and isinstance(show, progress.PlainProgress)


def read_all(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:                 # EIO: the terminal's other end is closed
            return
        if not chunk:
            return
        into.append(chunk)


def test_on_a_terminal_each_layer_is_drawn_with_a_bar_rate_and_eta(monkeypatch):
    clock = FakeClock(monkeypatch)
    leader, follower = pty.openpty()
    drawn: list[bytes] = []
    reader = threading.Thread(target=read_all, args=(leader, drawn))
    reader.start()

    def seen() -> str:
        return b"".join(drawn).decode(errors="replace")
    try:
        with open(follower, "w", closefd=False) as stream:
            show = progress.for_output(stream=stream)
            assert isinstance(show, progress.LiveProgress)
            with show:
                show("aaa", "Downloading", 0, 4_000_000)
                for i in range(1, 31):                    # 100 kB every 1/8 s: 800 kB/s
                    clock.advance(1 / 8)
                    show("aaa", "Downloading", i * 100_000, 4_000_000)
                show._live.refresh()                      # a redraw, as rich's refresh thread does
                # and that thread does redraw by itself: a row that changes is shown
                # without anyone asking (a generous deadline: only its absence fails)
                clock.advance(1 / 8)
                show("aaa", "Downloading", 3_500_000, 4_000_000)
                deadline = time.monotonic() + 10
                while "3.5MB/4.0MB" not in seen() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert "3.5MB/4.0MB" in seen(), seen()
                show("aaa", "Pull complete")
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    text = b"".join(drawn).decode()
    # 3.0 of 4.0 MB: 22 of 30 cells; 800 kB/s over the last 3 s; 1 MB left at that pace
    assert re.search(r"aaa: Downloading \[={21}> {8}\] 3\.0MB/4\.0MB  800\.0kB/s  ETA 1s", text), text
    assert re.search(r"aaa: Downloading \[=+> +\] 3\.5MB/4\.0MB  [0-9.]+[kM]B/s  ETA [0-9]+s", text), text
    assert text.rsplit("aaa: ", 1)[1].startswith("Pull complete"), text


def test_metered_counts_reads_readintos_and_starts_again_on_seek():
    seen = []
    stream = Metered(io.BytesIO(b"x" * 10_000), seen.append)
    assert len(stream.read(4000)) == 4000
    buf = bytearray(5000)
    assert stream.readinto(buf) == 5000
    assert stream.read() == b"x" * 1000
    assert stream.read() == b""
    assert seen == [4000, 9000, 10_000] and stream.tell() == 10_000
    stream.seek(0)                              # an upload sent again after a 401
    stream.read(100)
    assert seen[-1] == 100


def test_metered_readinto_over_a_stream_without_one():
    class ReadOnly:
        def __init__(self):
            self.data = io.BytesIO(b"abcdef")

        def read(self, n=-1):
            return self.data.read(n)
    seen = []
    stream = Metered(ReadOnly(), seen.append)
    buf = bytearray(4)
    assert stream.readinto(buf) == 4 and bytes(buf) == b"abcd" and seen == [4]
