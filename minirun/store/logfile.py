"""containers/<id>/container.log: what a container wrote, stdout and stderr apart.

Every container has one (unless run with --log-driver none), in the CRI format
that Kubernetes and podman's k8s-file driver use, one record a line:

    2026-12-06T01:51:29.123456789Z stdout F hello
    2026-12-06T01:51:29.123501220Z stderr P a line not ended yet

F ends a line; P says the next record of that stream goes on with it (output
without a newline yet, or a line longer than one read). The content is the
container's bytes as they came, less the newline. The file is bounded:
past --log-opt max-size it becomes container.log.1 (older ones .2, ...; at most
max-file files in all) and a new one begins, so a noisy container cannot fill
the disk. Only the runtime's relay (run/output.py) writes it, through a
descriptor of the container's directory; the container only ever holds a pipe.

A log of an older minirun (raw bytes, -d only) reads as stdout lines.
"""

from __future__ import annotations

import os
import time

from ..errors import UsageError, brief
from ..lib.frozen import dataclass

NAME = "container.log"
STREAMS = ("stdout", "stderr")
DRIVERS = ("k8s-file", "none")
DRIVER_ALIASES = {"json-file": "k8s-file", "local": "k8s-file"}   # one file format here
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3
CHUNK = 1 << 20
LINE_LIMIT = 1 << 20            # a record longer than this is not one of ours: read as it is


@dataclass(frozen=True)
class Policy:
    """Where a container's output goes: driver k8s-file keeps this log, none keeps nothing."""
    driver: str = "k8s-file"
    max_size: int = DEFAULT_MAX_SIZE
    max_files: int = DEFAULT_MAX_FILES

    @property
    def keeps(self) -> bool:
        return self.driver != "none"


def policy(driver: str | None, opts: tuple[str, ...]) -> Policy:
    """--log-driver and --log-opt KEY=VALUE (max-size, max-file), checked; UsageError
    naming the fix otherwise."""
    if driver is None and not opts:
        return Policy()
    name = DRIVER_ALIASES.get(driver or "k8s-file", driver or "k8s-file")
    if name not in DRIVERS:
        raise UsageError(f"unknown --log-driver {brief(driver)}",
                         "use k8s-file (the default; json-file and local mean it too) or none")
    max_size, max_files = DEFAULT_MAX_SIZE, DEFAULT_MAX_FILES
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key == "max-size" and sep:
            import re                   # only here: its import costs a run ~4 ms
            match = re.match(r"^(\d+)([kmg]?)b?$", value.strip(), re.IGNORECASE)
            if not match or int(match.group(1)) == 0:
                raise UsageError(f"invalid --log-opt {brief(opt)}", "give a size such as max-size=10m (k, m, g)")
            max_size = int(match.group(1)) * 1024 ** " kmg".index((match.group(2) or " ").lower())
        elif key == "max-file" and sep:
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise UsageError(f"invalid --log-opt {brief(opt)}", "give a count from 1 to 100, e.g. max-file=3")
            max_files = int(value)
        else:
            raise UsageError(f"unknown --log-opt {brief(opt)}", "use max-size=SIZE or max-file=N")
    if name == "none" and opts:
        raise UsageError("--log-opt with --log-driver none", "drop --log-opt: nothing is logged")
    return Policy(name, max_size, max_files)


def stamp(when_ns: int) -> bytes:
    """RFC 3339 with nanoseconds, UTC: 2026-12-06T01:51:29.123456789Z."""
    seconds, nanos = divmod(when_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % nanos


def parse_stamp(text: bytes) -> int | None:
    """stamp()'s nanoseconds since the epoch, or None when text is not one."""
    import calendar
    if len(text) < 21 or text[4:5] != b"-" or text[10:11] != b"T" or text[19:20] != b"." \
            or text[-1:] != b"Z" or not text[20:-1].isdigit():
        return None
    try:
        fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
        seconds = calendar.timegm(tuple(int(f) for f in fields))
    except ValueError:
        return None
    return seconds * 1_000_000_000 + int(text[20:-1].ljust(9, b"0")[:9])


# ---------------------------------------------------------------- writing

class Writer:
    """Records into directory/container.log, opened at the first output (a run that
    prints nothing makes no file) and rotated past policy.max_size. A failed write
    (a full disk) drops that output, never the container."""

    def __init__(self, directory: str, policy: Policy):
        self.directory = directory
        self.dir_fd = -1
        self.policy = policy
        self.fd = -1
        self.size = 0
        self.failed = False

    def write(self, stream: str, data: bytes, when_ns: int | None = None) -> None:
        if not data:
            return
        head = stamp(time.time_ns() if when_ns is None else when_ns) + b" " + stream.encode() + b" "
        if data.endswith(b"\n"):
            whole, rest = data[:-1], b""
        elif b"\n" in data:
            whole, rest = data.rsplit(b"\n", 1)
        else:
            whole, rest = None, data
        blob = b""                  # in bulk: a run's copier must cost little per line
        if whole is not None:
            full = head + b"F "
            blob = full + whole.replace(b"\n", b"\n" + full) + b"\n"
        if rest:
            blob += head + b"P " + rest + b"\n"
        try:
            if self.fd < 0:
                self._open(rotate=False)
            if self.size + len(blob) <= self.policy.max_size:
                self._append(blob)
            else:
                self._rotating(self._pieces(head, data))
        except OSError:
            self.failed = True      # dropped; the file stays whole records

    def _pieces(self, head: bytes, data: bytes) -> list[bytes]:
        """data as records none longer than max_size: a longer line goes in P pieces."""
        piece = max(self.policy.max_size - len(head) - 3, 1)
        lines = data.split(b"\n")
        out = []
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if last and not line:
                break
            while len(line) > piece:
                out.append(head + b"P " + line[:piece] + b"\n")
                line = line[piece:]
            out.append(head + (b"P " if last else b"F ") + line + b"\n")
        return out

    def _rotating(self, records: list[bytes]) -> None:
        while records:
            room = self.policy.max_size - self.size
            fit = 0                 # as many records as fit; one at least into an empty file
            while fit < len(records) and (len(records[fit]) <= room or (fit == 0 and not self.size)):
                room -= len(records[fit])
                fit += 1
            if not fit:
                self._open(rotate=True)
                continue
            self._append(b"".join(records[:fit]))
            records = records[fit:]

    def _append(self, blob: bytes) -> None:
        """All of blob or none of it: a write cut short by a full disk is taken
        back, so the next record starts a line of its own."""
        before = self.size
        try:
            while blob:
                written = os.write(self.fd, blob)
                self.size += written
                blob = blob[written:]
        except OSError:
            if self.size != before:
                os.ftruncate(self.fd, before)
                self.size = before
            raise

    def _open(self, rotate: bool) -> None:
        if self.dir_fd < 0:
            self.dir_fd = open_dir(self.directory)
        if rotate:
            os.close(self.fd)
            self.fd = -1
            keep = self.policy.max_files
            for n in range(keep - 1, 0, -1):
                older = NAME if n == 1 else f"{NAME}.{n - 1}"
                try:
                    os.rename(older, f"{NAME}.{n}", src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                except FileNotFoundError:
                    pass
            if keep == 1:
                os.unlink(NAME, dir_fd=self.dir_fd)
        self.fd = os.open(NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o640, dir_fd=self.dir_fd)
        self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1


def open_dir(path: str) -> int:
    """A container's directory, for its log's files (no symlink followed)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class Record:
    when: int           # ns since the epoch; 0 for a line of an older minirun's raw log
    stream: str
    partial: bool
    content: bytes
    stamp: bytes = b""


def parse_line(line: bytes) -> Record:
    """One line of the file (with its newline, if it has one) as a Record."""
    body = line[:-1] if line.endswith(b"\n") else line
    parts = body.split(b" ", 3)
    if len(parts) >= 3 and parts[1] in (b"stdout", b"stderr") and parts[2] in (b"F", b"P"):
        when = parse_stamp(parts[0])
        if when is not None:
            return Record(when, parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) == 4 else b"",
                          parts[0])
    return Record(0, "stdout", not line.endswith(b"\n"), body)


def files(directory_fd: int) -> list[str]:
    """The log's files, oldest first: container.log.N ... container.log.1, container.log."""
    names = set(os.listdir(directory_fd))
    rotated = sorted((int(n[len(NAME) + 1:]) for n in names
                      if n.startswith(NAME + ".") and n[len(NAME) + 1:].isdigit()), reverse=True)
    return [f"{NAME}.{n}" for n in rotated] + ([NAME] if NAME in names else [])


class Follower:
    """Reads the records of a log as they come, across rotations: stream() yields
    what there is now, a MiB at a time (a line not yet ended waits for its end);
    read() is the same as a list, for what came since the last call."""

    def __init__(self, directory_fd: int):
        self.dir_fd = directory_fd
        self.pending = []
        for name in files(directory_fd):
            try:
                self.pending.append(_open(directory_fd, name))
            except FileNotFoundError:               # rotated away since listed: its next name was listed
                continue
        self.current = self.pending.pop() if self.pending and self.pending[-1][1] == NAME else None
        self.buffer = b""

    def read(self) -> list[Record]:
        return list(self.stream())

    def stream(self):
        while self.pending:                         # rotated files: complete
            f, _ = self.pending.pop(0)
            with f:
                yield from self._drain(f)
            yield from self.rest()
        if self.current is None:
            try:
                self.current = _open(self.dir_fd, NAME)
            except FileNotFoundError:
                return
        while True:
            f = self.current[0]
            yield from self._drain(f)
            if not _rotated(self.dir_fd, f):
                return
            yield from self._drain(f)               # renamed away: finish it, go on with the new one
            f.close()
            yield from self.rest()
            try:
                self.current = _open(self.dir_fd, NAME)
            except FileNotFoundError:
                self.current = None
                return

    def _drain(self, f):
        while chunk := f.read(CHUNK):
            self.buffer += chunk
            cut = self.buffer.rfind(b"\n") + 1
            if len(self.buffer) > LINE_LIMIT and not cut:
                cut = len(self.buffer)
            yield from _records(self.buffer[:cut])
            self.buffer = self.buffer[cut:]

    def rest_later(self):
        """rest(), when the records before it have been read."""
        yield from self.rest()

    def rest(self) -> list[Record]:
        """A last line without its newline (an older minirun's raw log), once the
        writer is gone."""
        rest, self.buffer = self.buffer, b""
        return _records(rest)

    def close(self) -> None:
        for f, _ in self.pending:
            f.close()
        if self.current is not None:
            self.current[0].close()


def _open(dir_fd: int, name: str):
    import stat
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        from ..errors import DamagedRecord
        os.close(fd)
        raise DamagedRecord(name, "it is not a regular file")
    return os.fdopen(fd, "rb"), name


def _rotated(dir_fd: int, f) -> bool:
    try:
        now = os.stat(NAME, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(f.fileno())
    return (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev)


def _records(blob: bytes) -> list[Record]:
    """Lines split at \\n only: a \\r the container wrote is content (splitlines()
    would cut there, and text after it would read as a record of its own)."""
    if not blob:
        return []
    lines = blob.split(b"\n")
    out = [parse_line(line + b"\n") for line in lines[:-1]]
    if lines[-1]:
        out.append(parse_line(lines[-1]))
    return out


# ---------------------------------------------------------------- docker's time words

_RELATIVE = r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|ns))+$"
_PART = r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)"
_UNIT_NS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1}


def parse_time(value: str, flag: str, now_ns: int | None = None) -> int:
    """--since/--until as docker takes them: an RFC 3339 time (2026-12-06T01:51:29Z,
    with fraction or offset, or just a date), a Unix time (1765000000[.5]), or a
    duration before now (10m, 1h30m, 45s). Nanoseconds since the epoch."""
    import re
    from datetime import datetime, timezone
    now_ns = time.time_ns() if now_ns is None else now_ns
    text = value.strip()
    if re.match(_RELATIVE, text):
        return now_ns - int(sum(float(n) * _UNIT_NS[u] for n, u in re.findall(_PART, text)))
    if re.match(r"^\d+(\.\d+)?$", text):
        whole, _, fraction = text.partition(".")
        return int(whole) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)
    iso = text[:-1] + "+00:00" if text.endswith("Z") else text
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", iso)
    nanos = 0
    if match:                               # fromisoformat stops at microseconds
        iso, nanos = match.group(1) + match.group(3), int(match.group(2).ljust(9, "0")[:9])
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise UsageError(f"invalid {flag} {brief(value)}",
                         "give a time (2026-12-06T01:51:29Z, a date, or Unix seconds) "
                         "or a duration before now (10m, 1h30m)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + nanos
