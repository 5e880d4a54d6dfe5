"""`minirun logs`: a container's log (store/logfile.py) back on stdout and stderr,
as each was written, with docker's --tail, --since, --until, --timestamps and
--follow."""

from __future__ import annotations

import collections
import itertools
import os
import time

from ..errors import Conflict, UsageError, brief
from ..lib.frozen import dataclass
from ..store import logfile


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    tail: int | None = None         # the last N lines; None: all
    since: int | None = None        # ns since the epoch
    until: int | None = None
    timestamps: bool = False


def options(follow: bool = False, tail: str = "all", since: str | None = None, until: str | None = None,
            timestamps: bool = False, now_ns: int | None = None) -> LogOptions:
    """The flags as docker takes them, checked."""
    count = None
    if tail not in ("all", "-1"):
        if not tail.isdigit():
            raise UsageError(f"invalid --tail {brief(tail)}", "give a number of lines, or all")
        count = int(tail)
    now_ns = time.time_ns() if now_ns is None else now_ns
    return LogOptions(follow, count,
                      logfile.parse_time(since, "--since", now_ns) if since else None,
                      logfile.parse_time(until, "--until", now_ns) if until else None, timestamps)


class Printer:
    """Records onto out/err (each a write(bytes) function) by their stream; with
    timestamps, each line begins with its time."""

    def __init__(self, out, err, timestamps: bool):
        self.writers = {"stdout": out, "stderr": err}
        self.timestamps = timestamps
        self.at_start = {"stdout": True, "stderr": True}

    def emit(self, record: logfile.Record) -> None:
        parts = []
        if self.timestamps and self.at_start[record.stream]:
            parts.append((record.stamp or b"-") + b" ")
        parts.append(record.content)
        if not record.partial:
            parts.append(b"\n")
        self.at_start[record.stream] = not record.partial
        self.writers[record.stream](b"".join(parts))


def show(store, name: str, opts: LogOptions, out, err) -> None:
    """Print the log of the container name; with follow, go on until it has ended
    (or --until has passed)."""
    containers = store.containers
    cid = containers.resolve(name)
    config = containers.config(cid)
    if (config.options or {}).get("log_driver") == "none":
        raise Conflict(f"container {name} was run with --log-driver none, so it keeps no log",
                       "run it again without --log-driver none")
    dir_fd = logfile.open_dir(containers.path(cid))
    follower = logfile.Follower(dir_fd)
    printer = Printer(out, err, opts.timestamps)
    try:
        # settled: until the runtime has copied the last output into the log
        running = opts.follow and containers.settled(cid).running
        records = follower.stream()
        if not running:
            records = itertools.chain(records, follower.rest_later())
        for record in _tail((r for r in records if _within(r, opts)), opts.tail):
            printer.emit(record)
        while running and not (opts.until is not None and time.time_ns() > opts.until):
            running = containers.settled(cid).running
            more = follower.read() + ([] if running else follower.rest())
            for record in more:
                if _within(record, opts):
                    printer.emit(record)
            if not more:
                time.sleep(0.1)
    finally:
        follower.close()
        os.close(dir_fd)


def _within(record: logfile.Record, opts: LogOptions) -> bool:
    return (opts.since is None or record.when >= opts.since) and \
        (opts.until is None or record.when <= opts.until)


def _tail(records, count: int | None):
    """The records of the last count lines (a line: a stream's records up to one
    that is not partial; one still open at the end counts too), keeping no more
    than those lines while it reads."""
    if count is None:
        yield from records
        return
    if count == 0:
        return
    lines: collections.deque = collections.deque(maxlen=count)
    open_lines: dict[str, list] = {}
    for index, record in enumerate(records):
        line = open_lines.setdefault(record.stream, [])
        line.append((index, record))
        if not record.partial:
            lines.append(open_lines.pop(record.stream))
    for line in sorted(open_lines.values()):
        lines.append(line)
    for _, record in sorted((item for line in lines for item in line), key=lambda item: item[0]):
        yield record
