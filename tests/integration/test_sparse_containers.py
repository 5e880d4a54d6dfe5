"""A container cannot stall host-side commands with a sparse file (issue 14,
item 10): after `truncate -s 1T /big` inside, `diff A B` compares by data
extents (a hole costs nothing), and `commit` and `export` refuse by the files'
sizes, before reading a byte, what a layer may not hold (MINIRUN_MAX_LAYER_BYTES:
the limit `load` and `import` apply to the result). Below the limit, a sparse
file is committed and exported with its holes read as zeros, never from disk.

Each command runs with a generous timeout: a hang guard, not a timing assertion
(the old code read the whole terabyte, for minutes).
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

TiB = 1 << 40
GUARD = 60


@pytest.fixture
def holes(mr):
    """Containers a (1 TiB of holes), b (the same, a byte at the end) and c (as a)."""
    mr.load("busybox")
    big = f"truncate -s {TiB} /big"
    mr.ok("run", "--name", "a", "busybox", "sh", "-c", big)
    mr.ok("run", "--name", "b", "busybox", "sh", "-c", f"{big} && printf x | dd of=/big bs=1 seek={TiB - 1} "
          "conv=notrunc 2>/dev/null")
    mr.ok("run", "--name", "c", "busybox", "sh", "-c", big)
    return mr


def test_diff_of_two_containers_with_a_sparse_terabyte(holes):
    differences = holes("diff", "a", "b", timeout=GUARD)
    assert differences.returncode == 0, differences.stderr
    assert differences.lines == [line for line in differences.lines if line.startswith("~ /big")] != []
    assert "pieces" in differences.stdout
    same = holes("diff", "a", "c", timeout=GUARD)
    assert same.returncode == 0 and "/big" not in same.stdout, same.stdout
    assert holes.ok("diff", "a", timeout=GUARD).lines == ["A /big"]


def one_line(result, *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def store_listing(mr) -> list[str]:
    out = []
    for sub in ("blobs", "layers", "tmp"):
        base = mr.root / sub
        if base.exists():
            out += sorted(str(p.relative_to(mr.root)) for p in base.rglob("*"))
    return out


def test_commit_refuses_a_sparse_terabyte_unread(holes):
    before = store_listing(holes), holes.ok("images", "-q").stdout
    line = one_line(holes("commit", "a", "big:1", timeout=GUARD), "MINIRUN_MAX_LAYER_BYTES", str(TiB))
    assert "container a" in line
    assert (store_listing(holes), holes.ok("images", "-q").stdout) == before


def test_export_refuses_a_sparse_terabyte_unread(holes, tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "a.tar"
    one_line(holes("export", "a", "-o", str(out), timeout=GUARD), "MINIRUN_MAX_LAYER_BYTES")
    assert os.listdir(tmp_path / "out") == [], "a refused export left a file"
    piped = holes("export", "a", timeout=GUARD)
    one_line(piped, "MINIRUN_MAX_LAYER_BYTES")
    assert piped.stdout == ""


def test_export_refuses_a_running_containers_sparse_terabyte(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "live", "busybox", "sh", "-c", f"truncate -s {TiB} /big && sleep 60")
    for _ in range(100):
        if "/big" in mr.ok("diff", "live").stdout:
            break
    one_line(mr("export", "live", timeout=GUARD), "MINIRUN_MAX_LAYER_BYTES")
    mr.ok("rm", "-f", "live")


def test_a_lowered_limit_is_applied_to_commit(mr):
    """The check is the layer limit itself, not a fixed size: 8 MiB of real data
    passes the default and is refused under MINIRUN_MAX_LAYER_BYTES=4 MiB."""
    mr.load("busybox")
    mr.ok("run", "--name", "d", "busybox", "sh", "-c", "dd if=/dev/urandom of=/data bs=1M count=8 2>/dev/null")
    one_line(mr("commit", "d", "d:1", env={"MINIRUN_MAX_LAYER_BYTES": str(4 << 20)}), "MINIRUN_MAX_LAYER_BYTES")
    mr.ok("commit", "d", "d:1")


SPARSE_SCRIPT = ("printf head > /s && printf tail | dd of=/s bs=1 seek=$((256 << 20)) conv=notrunc 2>/dev/null"
                 " && printf mid | dd of=/s bs=1 seek=$((100 << 20)) conv=notrunc 2>/dev/null")


def expected_sparse() -> bytes:
    data = bytearray((256 << 20) + 4)
    data[0:4], data[100 << 20:(100 << 20) + 3], data[256 << 20:] = b"head", b"mid", b"tail"
    return bytes(data)


def test_commit_and_export_of_a_sparse_file_within_the_limit(mr, tmp_path):
    """256 MiB of holes with data at three places: committed and exported whole, as
    Docker does (a regular tar member), the holes read as zeros."""
    mr.load("busybox")
    mr.ok("run", "--name", "s", "busybox", "sh", "-c", SPARSE_SCRIPT)
    mr.ok("commit", "s", "sparse:1", timeout=GUARD)
    out = mr.ok("run", "--rm", "sparse:1", "sh", "-c", "stat -c %s /s; head -c 4 /s; tail -c 4 /s")
    assert out.stdout == f"{(256 << 20) + 4}\nheadtail"
    layers = mr.root / "layers" / "sha256"
    cached = [p / "diff" / "s" for p in layers.iterdir() if (p / "diff" / "s").exists()]
    assert len(cached) == 1 and cached[0].stat().st_blocks * 512 < 1 << 20, "the cached layer lost its holes"
    export = tmp_path / "s.tar"
    mr.ok("export", "s", "-o", str(export), timeout=GUARD)
    with tarfile.open(export) as tar:
        member = tar.getmember("s")
        assert member.isreg() and member.size == (256 << 20) + 4
        assert tar.extractfile(member).read() == expected_sparse()
    assert mr.ok("fsck").returncode == 0


def test_the_committed_layer_tar_holds_the_file_whole(mr):
    import gzip
    mr.load("busybox")
    mr.ok("run", "--name", "s", "busybox", "sh", "-c", SPARSE_SCRIPT)
    mr.ok("commit", "s", "sparse:1", timeout=GUARD)
    found = []
    for blob in (mr.root / "blobs" / "sha256").iterdir():
        raw = blob.read_bytes()
        if raw[:2] != b"\x1f\x8b":
            continue
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
            if "s" in tar.getnames():
                member = tar.getmember("s")
                assert member.size == (256 << 20) + 4 and not member.sparse
                assert tar.extractfile(member).read() == expected_sparse()
                found.append(blob.name)
    assert len(found) == 1
