"""store/logfile.py: the record format, rotation, the follower, docker's time words."""

from __future__ import annotations

import os

import pytest

from minirun.api import logs as api_logs
from minirun.errors import UsageError
from minirun.store import logfile

NOW = 1_800_000_000 * 10**9


def test_a_stamp_reads_back_to_the_nanosecond():
    when = 1_765_000_000_123_456_789
    assert logfile.stamp(when) == b"2025-12-06T05:46:40.123456789Z"
    assert logfile.parse_stamp(logfile.stamp(when)) == when
    assert logfile.parse_stamp(b"2025-12-06 05:46:40") is None


@pytest.mark.parametrize("text,expected", [
    ("10m", NOW - 600 * 10**9), ("1h30m", NOW - 5400 * 10**9), ("1.5s", NOW - 1_500_000_000),
    ("1765000000", 1_765_000_000 * 10**9), ("1765000000.25", 1_765_000_000_250_000_000),
    ("2025-12-06T05:46:40Z", 1_765_000_000 * 10**9),
    ("2025-12-06T05:46:40.123456789Z", 1_765_000_000_123_456_789),
    ("2025-12-06T06:46:40+01:00", 1_765_000_000 * 10**9),
    ("2025-12-06", 1_764_979_200 * 10**9),
])
def test_docker_time_words(text, expected):
    assert logfile.parse_time(text, "--since", NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "2025-13-01", "-5m"])
def test_a_time_that_is_none_of_them_is_refused(text):
    with pytest.raises(UsageError, match="--since"):
        logfile.parse_time(text, "--since", NOW)


def test_policy():
    assert logfile.policy(None, ()) == logfile.Policy("k8s-file", 10 << 20, 3)
    assert logfile.policy("local", ("max-size=2k", "max-file=1")) == logfile.Policy("k8s-file", 2048, 1)
    assert not logfile.policy("none", ()).keeps
    for driver, opts in [("gelf", ()), (None, ("max-size=",)), (None, ("max-file=0",)), (None, ("size=1m",)),
                         ("none", ("max-file=2",))]:
        with pytest.raises(UsageError):
            logfile.policy(driver, opts)


def records(directory: str) -> list[logfile.Record]:
    fd = logfile.open_dir(directory)
    try:
        follower = logfile.Follower(fd)
        got = follower.read() + follower.rest()
        follower.close()
        return got
    finally:
        os.close(fd)


def test_writer_splits_lines_and_marks_partial_ones(tmp_path):
    writer = logfile.Writer(str(tmp_path), logfile.Policy())
    writer.write("stdout", b"a\nb", when_ns=NOW)
    writer.write("stderr", b"e\n", when_ns=NOW)
    writer.write("stdout", b"c\n", when_ns=NOW)
    writer.close()
    got = [(r.stream, r.partial, r.content) for r in records(str(tmp_path))]
    assert got == [("stdout", False, b"a"), ("stdout", True, b"b"), ("stderr", False, b"e"), ("stdout", False, b"c")]
    assert (tmp_path / "container.log").read_bytes().startswith(logfile.stamp(NOW) + b" stdout F a\n")


def test_rotation_keeps_max_files_each_within_max_size(tmp_path):
    writer = logfile.Writer(str(tmp_path), logfile.Policy(max_size=200, max_files=3))
    for n in range(100):
        writer.write("stdout", b"line %d\n" % n, when_ns=NOW)
    writer.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["container.log", "container.log.1", "container.log.2"]
    assert all(os.path.getsize(tmp_path / n) <= 200 for n in names)
    contents = [r.content for r in records(str(tmp_path))]
    assert contents[-1] == b"line 99"
    assert contents == [b"line %d" % n for n in range(100 - len(contents), 100)]   # in order, no gap


def test_one_file_only(tmp_path):
    writer = logfile.Writer(str(tmp_path), logfile.Policy(max_size=100, max_files=1))
    for n in range(50):
        writer.write("stdout", b"x%d\n" % n, when_ns=NOW)
    writer.close()
    assert os.listdir(tmp_path) == ["container.log"]
    assert os.path.getsize(tmp_path / "container.log") <= 100


def test_the_follower_goes_on_across_a_rotation(tmp_path):
    writer = logfile.Writer(str(tmp_path), logfile.Policy(max_size=120, max_files=2))
    fd = logfile.open_dir(str(tmp_path))
    follower = logfile.Follower(fd)
    seen = []
    for n in range(20):
        writer.write("stdout", b"n%d\n" % n, when_ns=NOW)
        seen += [r.content for r in follower.read()]
    follower.close()
    os.close(fd)
    writer.close()
    assert seen == [b"n%d" % n for n in range(20)]


def test_an_older_raw_log_reads_as_stdout(tmp_path):
    (tmp_path / "container.log").write_bytes(b"plain line\nno end")
    got = [(r.stream, r.partial, r.content) for r in records(str(tmp_path))]
    assert got == [("stdout", False, b"plain line"), ("stdout", True, b"no end")]


def test_tail_counts_lines_not_records():
    def rec(stream, partial, content):
        return logfile.Record(NOW, stream, partial, content)
    rs = [rec("stdout", True, b"a"), rec("stderr", False, b"e1"), rec("stdout", False, b"b"),
          rec("stderr", False, b"e2"), rec("stdout", True, b"open")]
    assert [r.content for r in list(api_logs._tail(rs, 2))] == [b"e2", b"open"]
    assert [r.content for r in list(api_logs._tail(rs, 3))] == [b"a", b"b", b"e2", b"open"]
    assert list(api_logs._tail(rs, None)) == rs


def test_a_carriage_return_cannot_forge_a_record(tmp_path):
    """The review's forgery: text after a \\r read as a record of its own, of the
    stream and time the container chose."""
    writer = logfile.Writer(str(tmp_path), logfile.Policy())
    writer.write("stdout", b"innocent\r2099-01-01T00:00:00.000000000Z stderr F FORGED\n", when_ns=NOW)
    writer.write("stderr", b"progress 10%\rdone\n", when_ns=NOW)
    writer.close()
    got = [(r.when, r.stream, r.content) for r in records(str(tmp_path))]
    assert got == [(NOW, "stdout", b"innocent\r2099-01-01T00:00:00.000000000Z stderr F FORGED"),
                   (NOW, "stderr", b"progress 10%\rdone")]


def test_a_line_longer_than_max_size_goes_in_pieces(tmp_path):
    writer = logfile.Writer(str(tmp_path), logfile.Policy(max_size=1000, max_files=3))
    writer.write("stdout", b"x" * 2500 + b"\n", when_ns=NOW)
    writer.close()
    assert all(os.path.getsize(tmp_path / n) <= 1000 for n in os.listdir(tmp_path))
    got = records(str(tmp_path))
    assert b"".join(r.content for r in got) == b"x" * 2500 and not got[-1].partial


def test_a_write_cut_short_is_taken_back(tmp_path):
    """A full disk mid-record: the file keeps whole records only."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs: needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        writer = logfile.Writer(str(small), logfile.Policy())
        for n in range(2000):
            writer.write("stdout", b"%d " % n + b"y" * 100 + b"\n", when_ns=NOW)
        assert writer.failed
        writer.write("stderr", b"after\n", when_ns=NOW)
        writer.close()
        data = (small / "container.log").read_bytes()
        assert data.endswith(b"\n")
        assert all(logfile.parse_line(line + b"\n").when == NOW for line in data.split(b"\n")[:-1])
    finally:
        subprocess.run(["umount", str(small)], check=True)
