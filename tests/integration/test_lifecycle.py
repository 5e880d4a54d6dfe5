"""Image lifecycle against the real kernel: commit, save/load round trip,
export/import, tag/dangling, history/inspect, and prune that never takes a
layer something still uses."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import time

import pytest

from minirun.layer.tree import snapshot

# What the round trip's container does to myapp: add, change, delete, replace a dir.
WRITES = ("echo hi > /greeting; echo more >> /app/main.sh; rm /bin/vi; chmod 600 /app/main.sh; "
          "rm /etc/group; rm -rf /usr; mkdir /usr; echo fresh > /usr/only; ln -s /greeting /link; mkdir -p /d/e")


def image_view(mr, image: str) -> dict:
    """The image's merged tree (types, modes, owners, content, link targets), read
    from a read-only overlay of its cached layers: what a container starts from."""
    doc = json.loads(mr.ok("inspect", "--type", "image", image).stdout)[0]
    lowers = doc["GraphDriver"]["Data"]["LowerDir"].split(":")
    with tempfile.TemporaryDirectory(dir=mr.root / "tmp") as target:
        if len(lowers) == 1:
            tree = snapshot(lowers[0])
        else:
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir=" + ":".join(lowers),
                            target], check=True)
            try:
                tree = snapshot(target)
            finally:
                subprocess.run(["umount", target], check=True)
    for entry in tree.values():
        entry.pop("nlink", None)
    return tree


def images_json(mr) -> dict:
    return json.loads((mr.root / "images.json").read_text())


@pytest.mark.kernel
def test_commit_makes_a_layer_of_exactly_the_upper_dir(mr):
    mr.load("myapp")
    before = image_view(mr, "myapp")
    mr.ok("run", "--name", "c1", "myapp", "sh", "-c", WRITES)
    image_id = mr.ok("commit", "-m", "round trip", "c1", "myapp:v2").stdout.strip()
    after = image_view(mr, "myapp:v2")
    added = set(after) - set(before)
    gone = set(before) - set(after)
    assert added == {"/greeting", "/usr/only", "/link", "/d", "/d/e"}
    assert {"/bin/vi", "/etc/group"} <= gone
    assert [p for p in after if p.startswith("/usr/")] == ["/usr/only"]
    assert gone == {"/bin/vi", "/etc/group"} | {p for p in before if p.startswith("/usr/")}
    assert after["/app/main.sh"]["mode"] == 0o600
    assert after["/app/main.sh"]["sha256"] != before["/app/main.sh"]["sha256"]
    assert after["/link"] == {"type": "symlink", "target": "/greeting", "mode": 0o777, "uid": 0, "gid": 0}
    # the new image shares the base layers: the same cache entries, plus one
    record = images_json(mr)["images"][image_id]
    base = images_json(mr)["images"][images_json(mr)["tags"]["localhost/myapp:latest"]]
    assert [l["key"] for l in record["layers"][:-1]] == [l["key"] for l in base["layers"]]
    assert len(mr.layer_dirs()) == len(base["layers"]) + 1
    # the blob holds the OCI whiteouts and the opaque marker, and no overlay xattr
    blob = mr.root / "blobs" / "sha256" / record["layers"][-1]["blob"][7:]
    with tarfile.open(blob, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "bin/.wh.vi" in members and members["bin/.wh.vi"].size == 0
    names = list(members)
    assert names.index("usr/.wh..wh..opq") == names.index("usr") + 1
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members.values()
                   for k in m.pax_headers)
    # the container stays usable
    assert mr.ok("diff", "c1").stdout
    mr.ok("inspect", "c1")
    history = mr.ok("history", "--format", "json", "myapp:v2").stdout.splitlines()
    assert json.loads(history[0])["Comment"] == "round trip"
    assert json.loads(history[0])["ID"] == image_id


def test_round_trip_through_every_save_format(mr, tmp_path):
    mr.load("myapp")
    mr.ok("run", "--name", "c1", "myapp", "sh", "-c", WRITES)
    image_id = mr.ok("commit", "c1", "myapp:v2").stdout.strip()
    committed = image_view(mr, "myapp:v2")
    saves = {}
    for fmt in ("docker-archive", "oci-archive", "oci-dir"):
        saves[fmt] = str(tmp_path / f"save-{fmt}")
        mr.ok("save", "--format", fmt, "-o", saves[fmt], "myapp:v2")
    mr.ok("rm", "c1")
    for fmt, path in saves.items():
        ids = [i for i in images_json(mr)["images"]]
        mr.ok("rmi", "-f", *ids)
        assert mr.layer_dirs() == [], fmt
        out = mr.ok("load", path).stdout
        assert "myapp:v2" in out, (fmt, out)
        assert image_id in images_json(mr)["images"], fmt          # same config, same image id
        assert image_view(mr, "myapp:v2") == committed, fmt
        run = mr.ok("run", "--rm", "myapp:v2", "sh", "-c", "cat /greeting /usr/only; test ! -e /bin/vi")
        assert run.stdout == "hi\nfresh\n", fmt
        # its base layers are the cache entries myotherapp uses too
        loaded = mr.ok("load", mr.fixture_path("myotherapp")).stdout
        assert loaded.count("Already exists") == 2, (fmt, loaded)
        doc = images_json(mr)
        mine = [l["key"] for l in doc["images"][image_id]["layers"]]
        other = [l["key"] for l in doc["images"][doc["tags"]["localhost/myotherapp:latest"]]["layers"]]
        assert mine[:2] == other[:2]


def test_commit_is_reproducible(mr):
    mr.load("myapp")
    script = "echo same > /greeting; rm /app/main.sh; mkdir -p /a/b; echo x > /a/b/c; rm -rf /usr; mkdir /usr"
    mr.ok("run", "--name", "one", "myapp", "sh", "-c", script)
    time.sleep(1.1)                 # later file times, which the epoch must clamp
    mr.ok("run", "--name", "two", "myapp", "sh", "-c", script)
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = mr.ok("commit", "-m", "m", "one", env=env).stdout.strip()
    second = mr.ok("commit", "-m", "m", "two", env=env).stdout.strip()
    doc = images_json(mr)
    layer_one, layer_two = (doc["images"][i]["layers"][-1] for i in (first, second))
    assert layer_one["blob"] == layer_two["blob"]
    assert layer_one["diff_id"] == layer_two["diff_id"]
    assert first == second           # and with a fixed epoch, the config too
    # a different upper dir gives a different layer: the comparison above can fail
    mr.ok("run", "--name", "three", "myapp", "sh", "-c", script + "; echo extra > /extra")
    third = mr.ok("commit", "-m", "m", "three", env=env).stdout.strip()
    assert images_json(mr)["images"][third]["layers"][-1]["diff_id"] != layer_one["diff_id"]


def test_commit_refuses_a_running_container_and_bad_input(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "web", "busybox", "sleep", "30")
    mr.running_state("web")
    result = mr("commit", "web", "x:1")
    assert result.returncode == 1 and "running" in result.stderr and "minirun stop" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert mr("commit", "nosuch", "x:1").returncode == 1
    mr.ok("stop", "-t", "1", "web")
    assert mr("commit", "-c", "RUN make", "web", "x:1").returncode == 2
    assert mr("commit", "web", "Bad Ref").returncode == 2
    assert mr.ok("images", "-q").stdout.count("\n") == 1        # nothing half-made is listed
    image_id = mr.ok("commit", "-c", 'CMD ["echo", "from cmd"]', "web", "x:1").stdout.strip()
    assert mr.ok("run", "--rm", "x:1").stdout == "from cmd\n"
    assert json.loads(mr.ok("inspect", "x:1").stdout)[0]["Id"] == image_id


def test_moved_tags_leave_dangling_images_that_image_prune_removes(mr):
    mr.load("myapp")
    old = images_json(mr)["tags"]["localhost/myapp:latest"]
    mr.ok("run", "--name", "c1", "myapp", "sh", "-c", "echo v2 > /v")
    new = mr.ok("commit", "c1", "localhost/myapp:latest").stdout.strip()
    mr.ok("rm", "c1")
    dangling = mr.ok("images", "--filter", "dangling=true", "-q", "--no-trunc").stdout.split()
    assert dangling == [old]
    assert old[7:19] in mr.ok("images", "-a").stdout
    assert "<none>" in mr.ok("images").stdout
    dry = mr.ok("image", "prune", "--dry-run").stdout
    assert old[7:19] in dry and "kept: used by localhost/myapp:latest" in dry
    assert old in images_json(mr)["images"]                         # dry run removed nothing
    mr.ok("image", "prune")                                        # no terminal: no question
    assert list(images_json(mr)["images"]) == [new]
    assert mr.ok("run", "--rm", "myapp", "cat", "/v").stdout == "v2\n"
    mr.ok("tag", "myapp", "other:1")
    assert mr.ok("images", "--filter", "reference=other*", "-q", "--no-trunc").stdout.split() == [new]


def test_prune_never_removes_layers_in_use(mr):
    mr.load("myapp", "myotherapp")
    mr.ok("run", "-d", "--name", "live", "myapp", "sleep", "60")
    mr.running_state("live")
    mr.ok("run", "--name", "stopped", "myotherapp", "true")
    mr.ok("rmi", "-f", "myapp", "myotherapp")
    layers = mr.layer_dirs()
    assert len(layers) == 4
    dry = mr.ok("prune", "--dry-run", "--containers").stdout
    assert "stopped" in dry and "live" not in dry
    before = sorted(os.listdir(mr.root / "blobs" / "sha256"))
    mr.ok("prune", "-f")
    assert mr.layer_dirs() == layers                                # both containers hold theirs
    assert mr.ok("exec", "live", "cat", "/app/main.sh").stdout     # and the running one still reads
    mr.ok("prune", "-f", "--containers")
    # the stopped container went, and with it myotherapp's own layer; the running one keeps myapp's
    assert mr.ok("ps", "-a", "-q").stdout.split() == [mr.inspect("live")["Id"][:12]]
    assert len(mr.layer_dirs()) == 3
    assert sorted(os.listdir(mr.root / "blobs" / "sha256")) != before
    mr.ok("rm", "-f", "live")
    mr.ok("prune", "-f")
    assert mr.layer_dirs() == [] and os.listdir(mr.root / "blobs" / "sha256") == []


def test_export_is_the_merged_view_and_import_makes_it_an_image(mr, tmp_path):
    mr.load("whiteouts")
    mr.ok("run", "--name", "c1", "whiteouts", "sh", "-c", "echo new > /new; rm -f /bin/sync")
    out = tmp_path / "rootfs.tar"
    mr.ok("export", "c1", "-o", str(out))
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    view = image_view(mr, "whiteouts")
    expected = {p.lstrip("/") for p in view} | {"new"}
    expected.discard("bin/sync")
    assert expected <= names
    assert not any(".wh." in n for n in names)
    image_id = mr.ok("import", str(out), "flat:1", "-c", 'CMD ["cat", "/new"]').stdout.strip()
    assert mr.ok("run", "--rm", "flat:1").stdout == "new\n"
    assert json.loads(mr.ok("inspect", "flat:1").stdout)[0]["RootFS"]["Layers"].__len__() == 1
    assert images_json(mr)["tags"]["docker.io/library/flat:1"] == image_id
    # the same tar compressed (zstd, several frames) is the same layer: same diff_id
    import zstandard
    packed = tmp_path / "rootfs.tar.zst"
    data = out.read_bytes()
    half = len(data) // 2
    packed.write_bytes(zstandard.ZstdCompressor().compress(data[:half]) +
                       zstandard.ZstdCompressor().compress(data[half:]))
    zst_id = mr.ok("import", str(packed), "flat:zst").stdout.strip()
    assert json.loads(mr.ok("inspect", zst_id).stdout)[0]["RootFS"]["Layers"] == \
        json.loads(mr.ok("inspect", image_id).stdout)[0]["RootFS"]["Layers"]
    # bad input: one line, exit 1, nothing left behind
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    before = mr.layer_dirs()
    result = mr("import", str(junk), "junk:1")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert mr.layer_dirs() == before and [n for n in os.listdir(mr.root / "tmp") if "import" in n] == []


@pytest.mark.parametrize("answer, removed", [(b"n\n", False), (b"y\n", True)])
def test_prune_asks_on_a_terminal(mr, answer, removed):
    from tests.integration.test_process import run_in_pty
    mr.load("myapp")
    mr.ok("run", "--name", "c1", "myapp", "true")
    code, screen = run_in_pty(mr, "prune", "--containers", keys=[(1.0, answer)])
    assert b"Continue?" in screen
    assert (mr.ok("ps", "-a", "-q").stdout.strip() == "") == removed
    assert code == (0 if removed else 1)


@pytest.mark.parametrize("size", ["12m", "17m"])     # the copy fails / the blob fails
def test_commit_out_of_space_is_one_line_and_keeps_nothing(tmp_path, fixtures, size):
    from tests.integration.conftest import Minirun
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)], check=True)
    try:
        cli = Minirun(small / "store", fixtures)
        cli.load("busybox")
        cli.ok("run", "--name", "big", "busybox", "sh", "-c", "head -c 5000000 /dev/urandom > /big")
        def listing():
            return sorted(str(p.relative_to(small)) for sub in ("blobs", "layers", "tmp")
                          for p in (small / "store" / sub).rglob("*"))
        before = listing()
        result = cli("commit", "big", "big:1")
        assert result.returncode == 3, result.stderr
        assert "no space or no free inodes" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert listing() == before
        assert json.loads((small / "store" / "images.json").read_text())["tags"].keys() == \
            {"localhost/busybox:latest"}
        cli.ok("rm", "big")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)


@pytest.mark.kernel
def test_export_of_a_deep_image_through_the_legacy_mount(mr, tmp_path):
    """201 lower dirs overflow a page of mount options: export then mounts through
    short links of its own, as Debian 12's kernel (no lowerdir+) needs."""
    mr.load("layers200")
    mr.ok("run", "--name", "deep", "layers200", "sh", "-c", "echo top > /top")
    out = tmp_path / "deep.tar"
    mr.ok("export", "deep", "-o", str(out), env={"MINIRUN_OVERLAY_API": "legacy"})
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("top").read() == b"top\n"
    listed = mr.ok("run", "--rm", "layers200", "ls", "/layers").stdout.split()
    assert len(listed) > 150
    assert {f"layers/{name}" for name in listed} <= names      # every layer's file is in the tar


def test_a_file_named_like_a_whiteout_cannot_be_committed(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "sh", "-c", "mkdir /d; touch /d/.wh.x /d/ok")
    before = mr.layer_dirs()
    result = mr("commit", "c", "wh:1")
    assert result.returncode == 1 and "/d/.wh.x" in result.stderr and "whiteout" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert mr.layer_dirs() == before and "wh" not in mr.ok("images").stdout


def test_output_paths_devices_symlinks_and_bad_destinations(mr, tmp_path):
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "true")
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for args in (("export", "c"), ("save", "busybox")):
        mr.ok(*args, "-o", str(null))
        assert stat.S_ISCHR(os.lstat(null).st_mode)          # written to, not replaced
    real = tmp_path / "real.tar"
    link = tmp_path / "link.tar"
    link.symlink_to(real)
    mr.ok("export", "c", "-o", str(link))
    assert link.is_symlink() and tarfile.is_tarfile(real)     # followed, not replaced
    for dest, code in ((tmp_path / "no" / "dir.tar", 1), (tmp_path, 2)):
        result = mr("export", "c", "-o", str(dest))
        assert result.returncode == code and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for source, code in (("/etc", 2), (str(tmp_path / "missing.tar"), 1)):
        result = mr("import", source, "x:1")
        assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []


def read_pty(master: int, screen: bytearray, until: bytes | None, timeout: float) -> bool:
    """Add what the terminal shows to screen until it holds `until` (None: until the
    other end is closed); False if that has not come within timeout seconds."""
    deadline = time.monotonic() + timeout
    while until is None or until not in screen:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([master], [], [], min(left, 0.5))
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:                     # EIO: the other end is closed
                chunk = b""
            if not chunk:
                return until is None
            screen += chunk
    return True


def test_prune_question_holds_no_lock_and_spares_what_was_tagged_meanwhile(mr):
    mr.load("myapp")
    old = images_json(mr)["tags"]["localhost/myapp:latest"]
    mr.ok("run", "--name", "c1", "myapp", "sh", "-c", "echo 2 > /v")
    mr.ok("commit", "c1", "localhost/myapp:latest")                # old is dangling now
    mr.ok("rm", "c1")
    # prune on a terminal, as a person types it (like test_process.run_in_pty, but the
    # answer is typed when this test says, not after a fixed delay)
    pid, master = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.environ.clear()
            os.environ.update(mr.env)
            os.execv(sys.executable, [sys.executable, "-m", "minirun", "image", "prune"])
        finally:
            os._exit(127)                       # never back into pytest in the child
    screen = bytearray()
    answered = False
    try:
        assert read_pty(master, screen, b"Continue?", 60), bytes(screen)
        # the question is up and waits for an answer: meanwhile a run and a tag, neither
        # kept waiting by a lock prune holds (a lock wait ends in 20 s with its holder named)
        during = {"MINIRUN_LOCK_TIMEOUT": "20"}
        ran = mr("run", "--rm", "myapp", "true", env=during)
        tagged = mr("tag", old, "keep:me", env=during)
        assert (ran.returncode, tagged.returncode) == (0, 0), (ran.stderr, tagged.stderr)
        os.write(master, b"y\n")
        assert read_pty(master, screen, None, 60), bytes(screen)
        answered = True
    finally:
        if not answered:                        # a failure above: prune may still be asking
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(master)
    code = os.waitstatus_to_exitcode(status)
    assert b"Continue?" in screen and code == 0, bytes(screen)
    assert old in images_json(mr)["images"]
    assert mr.ok("run", "--rm", "keep:me", "cat", "/app/main.sh").stdout
