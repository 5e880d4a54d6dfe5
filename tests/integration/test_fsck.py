"""`minirun fsck` on real stores: lower layers never change through a run, and
fsck names what was changed behind minirun's back (a layer's file, a blob,
images.json). Then `minirun diff A B` on two real containers' upper dirs."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

# Every kind of write, across the image's directories: each one must land in the
# upper dir and never in a layer. (chown runs before /etc/passwd is edited: busybox
# reads it to resolve names.)
WRITE_EVERYWHERE = """
set -e
chown 1000:1000 /app/main.sh
chown -h 5:5 /bin/ls
chown 7:7 /etc
echo appended >> /etc/passwd
echo overwritten > /etc/group
: > /usr/lib/runtime/v1/lib.sh
truncate -s 3 /etc/runtime.conf
chmod 700 /usr/bin/rt-info
chmod 1777 /usr
dd if=/dev/zero of=/app/main.sh bs=1 count=1 conv=notrunc 2>/dev/null
mv /usr/bin/rt-info /usr/bin/rt-info2
mv /usr/lib/runtime /usr/lib/runtime-moved
rm /usr/lib/runtime-moved/v1/info.sh /bin/cat
rm -rf /var/cache /home
mkdir -p /lib/x /usr/share/new
ln -s /etc/passwd /lib/x/link
ln /etc/group /lib/x/hard
ln /bin/busybox /lib/x/bb
mknod /lib/x/null c 1 3
mkfifo /lib/x/fifo
touch /bin/newcmd
"""

# The whiteouts image: write through whiteouts and into and over an opaque dir.
WRITE_THROUGH_WHITEOUTS = """
set -e
echo again > /replaced/old1.txt
echo more >> /replaced/new.txt
echo back > /data/remove-me.txt
rm /data/keep.txt
mkdir -p /olddir/a
chmod 777 /data
rm -rf /replaced
mkdir /replaced
"""


def layers_dir(mr) -> Path:
    return mr.root / "layers" / "sha256"


def layer_holding(mr, rel: str, kind=stat.S_ISREG) -> tuple[str, Path]:
    """(key, path) of the cached layer whose diff/ has rel, of that kind."""
    for key in mr.layer_dirs():
        path = layers_dir(mr) / key / "diff" / rel
        if os.path.lexists(path) and kind(path.lstat().st_mode):
            return key, path
    raise AssertionError(f"no layer holds {rel}")


def fsck(mr, code: int) -> list[str]:
    result = mr("fsck")
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr == ""
    return result.lines


def stat_listing(root: Path) -> dict[str, tuple]:
    """Everything under the store but locks/: what fsck must leave alone (atime aside)."""
    out = {}
    for directory, dirs, files in os.walk(root):
        if Path(directory) == root:
            dirs.remove("locks")
        for name in dirs + files:
            st = os.lstat(os.path.join(directory, name))
            out[os.path.join(directory, name)] = (st.st_ino, st.st_mode, st.st_uid, st.st_size,
                                                  st.st_mtime_ns, st.st_ctime_ns)
    return out


# ---------------------------------------------------------------- the test

def test_lower_layers_never_change_through_a_run(mr):
    mr.load("myapp", "whiteouts")
    assert fsck(mr, 0)[-1] == "6 layers, 10 blobs checked: 0 problems"
    mr.ok("run", "--name", "w1", "myapp", "sh", "-c", WRITE_EVERYWHERE)
    mr.ok("run", "--name", "w2", "whiteouts", "sh", "-c", WRITE_THROUGH_WHITEOUTS)
    mr.ok("run", "--name", "w3", "-u", "1000", "myapp", "sh", "-c", "echo x > /tmp/mine; rm -f /tmp/mine")
    written = mr.ok("diff", "w1").lines + mr.ok("diff", "w2").lines
    # the runs really wrote: the writes are in the upper dirs ...
    for line in ("C /etc/passwd", "D /bin/cat", "D /var/cache", "A /lib/x/null", "A /lib/x/bb",
                 "C /usr/lib", "A /usr/lib/runtime-moved/v1/lib.sh", "C /app/main.sh",
                 "A /data/remove-me.txt", "D /data/keep.txt", "A /olddir/a"):
        assert line in written, (line, written)
    # ... and not one byte, mode, owner or entry of a layer changed
    assert fsck(mr, 0) == ["6 layers, 10 blobs checked: 0 problems"]


# ---------------------------------------------------------------- fsck can fail

def test_fsck_names_a_layer_file_whose_content_then_mode_changed(mr):
    mr.load("myapp")
    key, path = layer_holding(mr, "app/main.sh")
    original, mode = path.read_bytes(), path.stat().st_mode & 0o7777
    path.write_bytes(original + b"# added behind minirun's back\n")
    lines = fsck(mr, 1)
    assert lines[0].startswith(f"layer {key[:12]}: /app/main.sh changed: size {len(original)}->")
    assert f"sha256 {hashlib.sha256(original).hexdigest()[:8]}..->" in lines[0]
    assert lines[-1] == "3 layers, 5 blobs checked: 1 problems"

    path.write_bytes(original)                       # same bytes again: intact (times are no fact)
    fsck(mr, 0)
    path.chmod(0o600)
    assert fsck(mr, 1)[0] == f"layer {key[:12]}: /app/main.sh changed: mode {mode:04o}->0600"
    path.chmod(mode)
    fsck(mr, 0)


def test_fsck_names_entries_added_to_and_removed_from_a_layer(mr):
    mr.load("whiteouts")
    key, whiteout = layer_holding(mr, "etc/hostname", stat.S_ISCHR)     # char 0:0, in wh-delete
    whiteout.unlink()
    (whiteout.parent / "intruder").write_text("x")
    lines = fsck(mr, 1)
    assert f"layer {key[:12]}: /etc/hostname removed (a whiteout at install)" in lines
    assert f"layer {key[:12]}: /etc/intruder added (a file)" in lines


def test_fsck_names_a_corrupt_blob(mr):
    mr.load("myapp")
    key, _ = layer_holding(mr, "app/main.sh")
    blob = json.loads((layers_dir(mr) / key / "meta.json").read_text())["blob"]
    path = mr.root / "blobs" / "sha256" / blob[7:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    lines = fsck(mr, 1)
    assert lines[0].startswith(f"blob {blob[7:19]}: content has digest sha256:")
    assert all(line.startswith(f"blob {blob[7:19]}: ") for line in lines[:-1])
    assert any(f"layer {key[:12]}" in line for line in lines[1:-1])    # its diff_id check fails too


def test_fsck_checks_images_json_against_blobs_and_layers(mr):
    mr.load("busybox")
    image_id = json.loads(mr.ok("images", "--format", "json").stdout)["ID"]
    (mr.root / "blobs" / "sha256" / image_id[7:]).unlink()
    (key,) = mr.layer_dirs()
    os.rename(layers_dir(mr) / key, mr.root / "tmp" / "away")
    lines = fsck(mr, 1)
    short = image_id[7:19]
    assert lines == [f"image {short} (localhost/busybox:latest): its config blob {image_id} is not stored",
                     f"image {short} (localhost/busybox:latest): its layer {key[:12]} is not cached",
                     "0 layers, 2 blobs checked: 2 problems"]


def test_a_layer_without_file_manifest_is_unchecked_not_corrupt(mr):
    mr.load("busybox")
    (key,) = mr.layer_dirs()
    (layers_dir(mr) / key / "files.jsonl.gz").unlink()
    assert fsck(mr, 0) == [f"layer {key[:12]}: unchecked (no file manifest: installed by an older minirun)",
                           "1 layers, 3 blobs checked: 0 problems (1 layers unchecked: no file manifest)"]


def test_fsck_changes_nothing_and_speaks_json(mr):
    mr.load("myapp")
    _, path = layer_holding(mr, "etc/runtime.conf")
    path.chmod(0o604)
    before = stat_listing(mr.root)
    result = mr("fsck", "--json")
    assert stat_listing(mr.root) == before
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert (doc["Layers"], doc["Blobs"], doc["Unchecked"]) == (3, 5, [])
    (problem,) = doc["Problems"]
    assert problem["Subject"] == "layer" and problem["Path"] == "/etc/runtime.conf"
    assert problem["Fields"] == {"mode": [0o644, 0o604]}


def test_fsck_of_an_empty_store(mr):
    assert fsck(mr, 0) == ["0 layers, 0 blobs checked: 0 problems"]
    assert not mr.root.exists()


# ---------------------------------------------------------------- diff A B

SCRIPT = "echo hi > /greeting; rm /etc/passwd; mkdir -p /data/sub; ln -s /greeting /data/link"


def test_diff_of_two_runs_of_one_command_is_empty(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "a", "busybox", "sh", "-c", SCRIPT)
    mr.ok("run", "--name", "b", "busybox", "sh", "-c", SCRIPT)
    assert mr.ok("diff", "a", "b").stdout == ""
    assert json.loads(mr.ok("diff", "a", "b", "--json").stdout) == []
    assert "A /greeting" in mr.ok("diff", "a").lines             # one container: as before


def test_diff_of_two_containers_names_what_differs(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "a", "busybox", "sh", "-c", SCRIPT)
    mr.ok("run", "--name", "c", "busybox", "sh", "-c",
          SCRIPT + "; echo hello > /greeting; chmod 600 /greeting; rm /etc/group; rmdir /data/sub;"
                   " ln -sf /etc /data/link; mkdir /only-c; chown 1:2 /only-c")
    hi, hello = (hashlib.sha256(text).hexdigest()[:8] for text in (b"hi\n", b"hello\n"))
    assert mr.ok("diff", "a", "c").lines == [
        "~ /data/link target /greeting->/etc",
        "< /data/sub",
        "> /etc/group (whiteout)",
        f"~ /greeting mode 0644->0600 size 3->6 sha256 {hi}..->{hello}..",
        "> /only-c",
    ]
    doc = json.loads(mr.ok("diff", "c", "a", "--json").stdout)
    assert {"Path": "/only-c", "Only": "A", "Type": "dir"} in doc
    assert {"Path": "/etc/group", "Only": "A", "Type": "whiteout"} in doc
    assert {"Path": "/greeting", "Differs": {"mode": [0o600, 0o644], "size": [6, 3], "sha256": [
        hashlib.sha256(b"hello\n").hexdigest(), hashlib.sha256(b"hi\n").hexdigest()]}} in doc


def test_diff_of_an_unknown_container_is_one_line(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "a", "busybox", "true")
    result = mr("diff", "a", "nope")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["Error: no such container: nope (hint: see `minirun ps -a`)"]
    assert mr("diff", "a", "a", "a").returncode == 2
