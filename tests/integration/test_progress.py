"""Progress of load, pull and push (issue 17 §7): on a terminal a bar per layer
with bytes, rate and ETA, drawn as the bytes move; off one a line per layer, and
rich never imported. Against the real CLI, a pty, and Debian's docker-registry
on 127.0.0.1 (behind the fault proxy, slowed, where a terminal must see bytes move)."""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import struct
import subprocess
import sys
import tarfile
import termios
import threading
from pathlib import Path

import pytest

from .imagebuild import entry, layer_tar, write_layout
from .registry import DOCKER_REGISTRY, FaultProxy

MANY_FILES = 8000          # 2 kB each: a layer whose extraction takes a while
BIG_FILE = 8 << 20         # one file, incompressible: a blob of 8 MB

needs_registry = pytest.mark.skipif(DOCKER_REGISTRY is None, reason="needs docker-registry "
                                    "(apt-get install docker-registry)")


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """An OCI layout, ref "big": a layer of MANY_FILES small files, then one of one BIG_FILE."""
    rand = random.Random(17)
    many = [entry("many", tarfile.DIRTYPE, mode=0o755)]
    many += [entry(f"many/f{i}", data=rand.randbytes(2000)) for i in range(MANY_FILES)]
    path = tmp_path_factory.mktemp("progress") / "big"
    write_layout(path, [layer_tar(many), layer_tar([entry("big.bin", data=rand.randbytes(BIG_FILE))])],
                 ref="big")
    return path


def layers_of(layout: Path) -> list[tuple[str, int]]:
    """(short digest, size) of each layer blob, as the progress labels them."""
    blobs = layout / "blobs/sha256"
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((blobs / digest[7:]).read_text())
    return [(layer["digest"][7:19], layer["size"]) for layer in manifest["layers"]]


@pytest.fixture
def proxy(registry):
    p = FaultProxy(registry.address)
    yield p
    p.stop()


def on_terminal(mr, *args: str, timeout: float = 120) -> tuple[int, str]:
    """minirun ARGS with stdout and stderr on a pty of 40x120: (exit code, what it drew)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    drawn: list[bytes] = []

    def read_all():
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:               # EIO: every copy of the follower is closed
                return
            if not chunk:
                return
            drawn.append(chunk)
    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "minirun", *args], stdin=subprocess.DEVNULL,
                                stdout=follower, stderr=follower, env=dict(mr.env, TERM="xterm"))
        os.close(follower)
        follower = -1
        code = proc.wait(timeout)
        reader.join(10)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    return code, b"".join(drawn).decode(errors="replace")


def imported_modules(stderr: str) -> set[str]:
    """The modules `python -X importtime` says were imported."""
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if "|" in line}


def bars(text: str, label: str, status: str) -> list[tuple[str, str]]:
    """(done, total) of every bar drawn for label's status that has a rate and an ETA."""
    pattern = rf"{label}: {status} \[=*>? *\] ([0-9.]+[kMG]?B)/([0-9.]+[kMG]?B)  [0-9.]+[kMG]?B/s  ETA [0-9hms]+"
    return re.findall(pattern, text)


RECORD = """
import json, sys
from minirun.store import open_store
calls = []
class Recorder:
    def __call__(self, label, status, done=None, total=None):
        calls.append([label, status, done, total])
    update = __call__          # what pull and push called before they took a callback
what, name, dest = sys.argv[1:4]
if what == "load":
    from minirun.api.catalog import load
    load(open_store(), [name], None, Recorder())
elif what == "push":
    from minirun.sources.registry.push import push
    push(open_store(), name, dest, Recorder())
else:
    from minirun.sources.registry.pull import pull
    pull(open_store(), name, None, Recorder())
json.dump(calls, sys.stdout)
"""


def recorded(mr, what: str, name: str, dest: str = "") -> list[list]:
    """The calls load, push or pull make to their progress callback."""
    proc = subprocess.run([sys.executable, "-c", RECORD, what, name, dest], env=mr.env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_bytes_move(calls: list[list], label: str, status: str, total: int, then: str) -> None:
    """label's byte counts in step status climb from 0 to total through values in between
    (a bar that moves), before the step `then` is reported."""
    counts = [(i, c[2]) for i, c in enumerate(calls) if c[0] == label and c[1] == status and c[2] is not None]
    values = [done for _, done in counts]
    assert values and values == sorted(values) and values[-1] == total, (status, values[:5], values[-5:])
    assert sum(0 < v < total for v in values) >= 3, (status, values)
    assert all(c[3] == total for c in calls if c[0] == label and c[1] == status and c[2] is not None)
    finished = [i for i, c in enumerate(calls) if c[0] == label and c[1].startswith(then)]
    assert finished and finished[0] > counts[-1][0], then


# ---------------------------------------------------------------- load

def test_load_on_a_terminal_draws_each_layer_with_bytes_rate_and_eta(mr, big):
    (many, many_size), (one, _) = layers_of(big)
    code, text = on_terminal(mr, "load", str(big))
    assert code == 0, text
    moving = [(done, total) for done, total in bars(text, many, "Extracting") if done != total]
    assert moving, text
    assert {total for _, total in moving} == {f"{many_size / 1e6:.1f}MB"}, text
    assert f"{one}: Extracted (1 files, 8.4 MB)" in text and f"{many}: Extracted ({MANY_FILES} files" in text
    assert "Loaded image: localhost/big:big" in text and "Traceback" not in text


def test_load_off_a_terminal_prints_a_line_per_layer_and_never_imports_rich(mr, big):
    (many, _), (one, _) = layers_of(big)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "minirun", "load", str(big)],
                          env=mr.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"{many}: Extracted ({MANY_FILES} files, 16.0 MB)",
                                        f"{one}: Extracted (1 files, 8.4 MB)",
                                        "Loaded image: localhost/big:big"]
    assert not {m for m in imported_modules(proc.stderr) if m.split(".")[0] in ("rich", "typer", "click")}


def test_load_quiet_on_a_terminal_draws_nothing_and_never_imports_rich(mr, big):
    leader, follower = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "minirun", "load", "-q", str(big)],
                              env=mr.env, stdout=follower, stderr=subprocess.PIPE, text=True, timeout=120)
        drawn = os.read(leader, 65536).decode()
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert drawn == "Loaded image: localhost/big:big\r\n"
    assert not {m for m in imported_modules(proc.stderr) if m.split(".")[0] in ("rich", "typer", "click")}


def test_load_reports_the_bytes_of_each_blob_as_it_reads_them(mr, big):
    calls = recorded(mr, "load", str(big))
    for label, size in layers_of(big):
        assert_bytes_move(calls, label, "Extracting", size, then="Extracted")


# ---------------------------------------------------------------- push and pull

@needs_registry
def test_push_and_pull_report_the_bytes_sent_and_received(mr, big, registry):
    mr.ok("load", str(big))
    dest = f"{registry.address}/p/big:1"
    calls = recorded(mr, "push", "localhost/big:big", dest)
    for label, size in layers_of(big):
        assert_bytes_move(calls, label, "Pushing", size, then="Pushed")
    mr.ok("rmi", "localhost/big:big")
    calls = recorded(mr, "pull", dest)
    for label, size in layers_of(big):
        assert_bytes_move(calls, label, "Downloading", size, then="Download complete")
        assert_bytes_move(calls, label, "Extracting", size, then="Pull complete")


@needs_registry
def test_push_and_pull_off_a_terminal_print_lines_per_layer_and_import_no_rich(mr, big, registry):
    mr.ok("load", str(big))
    dest = f"{registry.address}/p/big:2"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "minirun", "push", "localhost/big:big", dest],
                          env=mr.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not {m for m in imported_modules(proc.stderr) if m.split(".")[0] == "rich"}
    pushed = proc.stdout.splitlines()
    for label, _ in layers_of(big):
        assert [line.split(": ", 1)[1] for line in pushed if line.startswith(label)] == \
            ["Preparing", "Pushing", "Pushed"]
    mr.ok("rmi", "localhost/big:big")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "minirun", "pull", dest],
                          env=mr.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    for label, _ in layers_of(big):
        assert [line.split(": ", 1)[1] for line in lines if line.startswith(label)] == \
            ["Waiting", "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete"]
    assert lines[-1] == dest
    assert not {m for m in imported_modules(proc.stderr) if m.split(".")[0] in ("rich", "typer", "click")}


@needs_registry
def test_push_and_pull_on_a_terminal_draw_bars_that_move(mr, big, registry, proxy):
    """Through the proxy, slowed to ~16 MB/s each way, so the bars are drawn mid-way.
    Today's push sat at 0B/8.4MB until "Pushed"."""
    (many, _), (one, one_size) = layers_of(big)
    mr.ok("load", str(big))
    dest = f"{proxy.address}/p/big:3"
    proxy.delay_per_upload_chunk = 0.001
    code, text = on_terminal(mr, "push", "localhost/big:big", dest)
    assert code == 0, text
    moving = [done for done, total in bars(text, one, "Pushing") if done != total]
    assert moving and any(done != "0B" for done in moving), text
    assert f"{one}: Pushed" in text and f"{dest}: digest: sha256:" in text
    mr.ok("rmi", "localhost/big:big")
    proxy.delay_per_upload_chunk = 0
    proxy.delay_per_chunk = 0.001
    code, text = on_terminal(mr, "pull", dest)
    assert code == 0, text
    assert [done for done, total in bars(text, one, "Downloading") if done != total], text
    assert f"{one}: Pull complete" in text and f"{many}: Pull complete" in text
    assert f"Status: Downloaded newer image for {dest}" in text and "Traceback" not in text
