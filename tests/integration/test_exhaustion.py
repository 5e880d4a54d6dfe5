"""A store on a nearly full filesystem: out of bytes or out of inodes, a load,
pull-like import or commit stops with one line (exit 3) and leaves the store
exactly as it was (lock files aside: they are empty and reused)."""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from minirun.layer.tree import snapshot

from .conftest import Minirun
from .imagebuild import busybox_layer, entry, layer_tar, write_layout


@pytest.fixture
def small_fs(tmp_path):
    """Mount a tmpfs; yields a function that (re)mounts it with given options."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = []

    def mount(options: str) -> Path:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], check=True)
        mounted.append(mount_point)
        return mount_point
    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def store_state(root: Path) -> dict:
    state = snapshot(str(root))
    return {path: entry for path, entry in state.items() if not path.startswith("/locks")}


def big_image(path: Path, megabytes: int, files: int = 1) -> Path:
    """busybox plus a layer of incompressible data (or many small files)."""
    if files == 1:
        extra = [entry("big", data=os.urandom(megabytes * 1_000_000))]
    else:
        extra = [entry("many", tarfile.DIRTYPE, mode=0o755)] + \
                [entry(f"many/f{i}", data=b"x") for i in range(files)]
    write_layout(path, [busybox_layer(), layer_tar(extra)], config={"Cmd": ["/bin/sh"]}, ref="big")
    return path


def fill(mount_point: Path, leave_bytes: int) -> None:
    """Take the filesystem's free space down to about leave_bytes."""
    st = os.statvfs(mount_point)
    free = st.f_bavail * st.f_frsize
    with open(mount_point / "filler", "wb") as f:
        f.truncate(0)
        remaining = free - leave_bytes
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            f.write(chunk[:min(len(chunk), remaining)])
            remaining -= len(chunk)


def one_line_no_space(result) -> None:
    assert result.returncode == 3, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space or no free inodes" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_load_into_a_nearly_full_filesystem_keeps_the_store_as_it_was(small_fs, fixtures, tmp_path):
    fs = small_fs("size=24m")
    cli = Minirun(fs / "store", fixtures)
    cli.load("busybox")
    image = big_image(tmp_path / "big", megabytes=6)
    fill(fs, leave_bytes=4_000_000)                   # room for the blob or the files, not both
    before = store_state(fs / "store")
    result = cli("load", str(image))
    one_line_no_space(result)
    assert store_state(fs / "store") == before
    assert cli.ok("run", "--rm", "busybox", "echo", "still fine").stdout == "still fine\n"
    os.unlink(fs / "filler")                          # with room again, the same load works
    cli.ok("load", str(image))


def test_load_that_runs_out_of_inodes_keeps_the_store_as_it_was(small_fs, fixtures, tmp_path):
    fs = small_fs("size=64m,nr_inodes=700")
    cli = Minirun(fs / "store", fixtures)
    cli.load("busybox")                               # about 300 inodes
    image = big_image(tmp_path / "many", megabytes=0, files=600)
    before = store_state(fs / "store")
    result = cli("load", str(image))
    one_line_no_space(result)
    assert store_state(fs / "store") == before
    assert cli.ok("images", "-q").stdout.count("\n") == 1


def test_run_and_commit_on_a_full_filesystem_are_one_line(small_fs, fixtures):
    fs = small_fs("size=16m")
    cli = Minirun(fs / "store", fixtures)
    cli.load("busybox")
    cli.ok("run", "--name", "c", "busybox", "sh", "-c", "echo hi > /greeting")
    fill(fs, leave_bytes=0)
    before = store_state(fs / "store")
    one_line_no_space(cli("commit", "c", "c:1"))
    assert store_state(fs / "store") == before
    result = cli("run", "--rm", "busybox", "true")
    assert result.returncode == 125 and "no space" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    os.unlink(fs / "filler")
    cli.ok("commit", "c", "c:1")
    assert cli.ok("run", "--rm", "c:1", "cat", "/greeting").stdout == "hi\n"


@pytest.mark.parametrize("detached", [False, True])
def test_a_container_that_fills_the_disk_still_gets_its_exit_code_recorded(small_fs, fixtures, detached):
    """Its own command filled the store's filesystem: the state's last write has no
    space for a new file, so it goes over the old one in place (issue 17.5: it said
    `Exited (?)` and run exited 125)."""
    root = small_fs("size=24m")
    store = Minirun(root / "store", fixtures)
    store.load("busybox")
    script = "dd if=/dev/zero of=/big bs=1M count=100 2>/dev/null; echo filled; exit 7"
    if detached:
        store.ok("run", "-d", "--name", "filler", "busybox", "sh", "-c", script)
        deadline = time.monotonic() + 20
        while store.inspect("filler")["State"]["Status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        result = store("run", "--name", "filler", "busybox", "sh", "-c", script)
        assert (result.returncode, result.stdout) == (7, "filled\n"), result
    assert os.statvfs(root).f_bavail < 64                          # it did fill it
    state = store.inspect("filler")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 7), state
    assert "Exited (7)" in store.ok("ps", "-a").stdout
    store.ok("rm", "filler")


def test_a_pull_that_fills_the_disk_says_what_it_kept_and_every_command_accounts_for_it(
        mr, small_fs, fixtures, tmp_path):
    """The partial download stays for a later pull to resume (issue 17.5: it said "kept
    nothing", and df, prune and fsck did not see it)."""
    from .registry import Registry
    registry = Registry(tmp_path / "reg")
    try:
        mr.ok("load", str(big_image(tmp_path / "big", megabytes=8)))
        ref = f"{registry.address}/t/big:1"
        mr.ok("push", "localhost/big:big", ref)
        root = small_fs("size=24m")
        store = Minirun(root / "store", fixtures)
        store.load("busybox")
        fill(root, leave_bytes=3_000_000)
        result = store("pull", ref)
        assert result.returncode == 3, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "for a later pull to resume" in lines[0], result.stderr
        partial = [p for p in os.listdir(root / "store" / "tmp") if p.startswith("download-")]
        assert len(partial) >= 1                      # one download per layer that had begun
        assert "Partial downloads" in store.ok("system", "df").stdout
        fsck = store("fsck")
        assert fsck.returncode == 1 and "a partial download of blob" in fsck.stdout + fsck.stderr
        dry = store.ok("prune", "--dry-run").stdout
        assert "Would remove partial download of blob sha256:" + partial[0][9:] in dry, dry
        assert partial[0] in os.listdir(root / "store" / "tmp")
        store.ok("prune", "-f")
        assert not [p for p in os.listdir(root / "store" / "tmp") if p.startswith("download-")]
        assert store.ok("fsck").returncode == 0
        os.unlink(root / "filler")
        store.ok("pull", ref)
        assert store.ok("run", "--rm", ref, "ls", "/big").stdout == "/big\n"
    finally:
        registry.stop()
