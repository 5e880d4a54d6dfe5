"""cp between a container and the host (issue 17.3), and its trust boundary: a path
in the container resolves inside the container's root, whatever its symlinks say."""

from __future__ import annotations

import os
import tarfile

import pytest

from .imagebuild import busybox_layer, entry, write_layout


@pytest.fixture
def canary(tmp_path):
    """A host directory with a secret, which no cp may read or write into."""
    path = tmp_path / "canary"
    path.mkdir()
    (path / "secret").write_text("host secret\n")
    return path


@pytest.fixture
def traps(mr, tmp_path, canary):
    """An image whose symlinks point at the host's canary and at /."""
    layout = tmp_path / "traps"
    write_layout(layout, [busybox_layer([
        entry("to-canary", tarfile.SYMTYPE, linkname=str(canary)),
        entry("to-root", tarfile.SYMTYPE, linkname="/"),
        entry("up", tarfile.SYMTYPE, linkname="../../../../../../.."),
        entry("bin/sleep", tarfile.SYMTYPE, linkname="busybox"),
        entry("data", tarfile.DIRTYPE, mode=0o755),
        entry("data/inside", data=b"image file\n"),
    ])], {"Cmd": ["sh"]}, ref="traps")
    mr.ok("load", "--tag", "localhost/traps", str(layout))
    return "localhost/traps"


@pytest.mark.parametrize("running", [False, True])
def test_cp_copies_both_ways_through_the_merged_view(mr, tmp_path, running):
    mr.load("busybox")
    script = "mkdir -p /d/sub; echo hi > /d/a; ln -s /etc/passwd /d/link; echo x > /d/sub/b"
    if running:
        mr.ok("run", "-d", "--name", "c", "busybox", "sh", "-c", script + "; sleep 60")
        mr.running_state("c")
        for _ in range(100):
            if mr("exec", "c", "test", "-e", "/d/sub/b").returncode == 0:
                break
    else:
        mr.ok("run", "--name", "c", "busybox", "sh", "-c", script)
    out = tmp_path / "out"
    out.mkdir()
    mr.ok("cp", "c:/d", str(out))
    assert (out / "d" / "a").read_text() == "hi\n" and (out / "d" / "sub" / "b").read_text() == "x\n"
    assert os.readlink(out / "d" / "link") == "/etc/passwd"          # a symlink stays one
    mr.ok("cp", "c:/d/.", str(tmp_path / "contents"))
    assert sorted(os.listdir(tmp_path / "contents")) == ["a", "link", "sub"]
    (tmp_path / "in.txt").write_text("from the host\n")
    mr.ok("cp", str(tmp_path / "in.txt"), "c:/d/sub/")
    mr.ok("cp", str(tmp_path / "in.txt"), "c:/renamed.txt")
    assert "A /d/sub/in.txt" in mr.ok("diff", "c").lines and "A /renamed.txt" in mr.ok("diff", "c").lines
    upper = mr.inspect("c")["UpperDir"]
    assert open(os.path.join(upper, "renamed.txt")).read() == "from the host\n"     # copy-on-write
    mr.ok("rm", "-f", "c")


@pytest.mark.parametrize("running", [False, True])
def test_symlinks_in_the_container_never_lead_to_the_host(mr, tmp_path, canary, traps, running):
    if running:
        mr.ok("run", "-d", "--name", "t", traps, "sleep", "60")
        mr.running_state("t")
    else:
        mr.ok("run", "--name", "t", traps, "true")
    out = tmp_path / "out"
    out.mkdir()
    for src in (f"t:/to-canary/secret", f"t:/to-root{canary}/secret", f"t:/up{canary}/secret"):
        result = mr("cp", src, str(out / "got"))
        assert not (out / "got").exists() or "host secret" not in (out / "got").read_text(), src
        assert result.returncode == 1 and "no such" in result.stderr, (src, result.stderr)
    mr.ok("cp", "t:/to-root/data/inside", str(out / "inside"))         # / is the container's
    assert (out / "inside").read_text() == "image file\n"
    (tmp_path / "evil.txt").write_text("written by cp\n")
    for dest in ("t:/to-canary/", f"t:/to-root{canary}/", f"t:/up{canary}/", "t:/to-canary/new"):
        result = mr("cp", str(tmp_path / "evil.txt"), dest)
        assert result.returncode == 1 and "no such" in result.stderr, (dest, result.stderr)
    assert sorted(os.listdir(canary)) == ["secret"] and (canary / "secret").read_text() == "host secret\n"
    mr.ok("cp", str(tmp_path / "evil.txt"), "t:/to-root/data/")          # lands in the container
    assert "A /data/evil.txt" in mr.ok("diff", "t").lines
    mr.ok("rm", "-f", "t")


def test_cp_errors_are_one_line(mr, tmp_path):
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "true")
    for args, said in ((("c:/nope", str(tmp_path / "x")), "no such file"),
                       ((str(tmp_path / "nope"), "c:/"), "no such file"),
                       (("nosuch:/etc", str(tmp_path)), "no such container"),
                       ((str(tmp_path), str(tmp_path / "y")), "one of SRC and DEST"),
                       (("c:/etc", "c:/tmp"), "one of SRC and DEST")):
        result = mr("cp", *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode in (1, 2) and len(lines) == 1 and said in lines[0], (args, result.stderr)
    mr.ok("rm", "c")


def test_cp_into_a_container_still_on_the_hosts_root_is_refused(mr, tmp_path, canary):
    """Its state says running from the fork of PID 1 on; until PID 1 has left the
    host's root, /proc/PID/root is the host's /. The window is made wide here: the
    state names a process of the host's (as exec's test does)."""
    import json
    import subprocess
    from minirun.linux.procfs import start_time
    mr.load("busybox")
    cid = mr.ok("run", "-d", "--name", "c", "busybox", "sleep", "60").stdout.strip()
    path = mr.root / "containers" / cid / "state.json"
    saved = path.read_text()
    host = subprocess.Popen(["sleep", "30"])
    (tmp_path / "evil.txt").write_text("written by cp\n")
    try:
        state = json.loads(saved)
        state.update(pid=host.pid, pid_start=start_time(host.pid))
        path.write_text(json.dumps(state))
        result = mr("cp", str(tmp_path / "evil.txt"), f"c:{canary}/")
        out = mr("cp", f"c:{canary}/secret", str(tmp_path / "got"))
    finally:
        path.write_text(saved)
        host.kill()
        host.wait()
    assert sorted(os.listdir(canary)) == ["secret"], "cp wrote on the host's root"
    assert not (tmp_path / "got").exists()
    assert "still starting" in result.stderr and "still starting" in out.stderr, (result.stderr, out.stderr)
    mr.ok("rm", "-f", "c")


def test_cp_out_keeps_hard_links_drops_setuid_and_refuses_what_docker_refuses(mr, tmp_path):
    """An outside review: 100 links to 1 MB became 101 MB on the host; a setuid-root
    shell came out setuid; DEST/ that did not exist wrote into its parent; a tree
    1,100 deep ended in a traceback."""
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "sh", "-c",
          "mkdir /hl; head -c 1048576 /dev/urandom > /hl/f0; i=1; while [ $i -lt 50 ]; do ln /hl/f0 /hl/f$i; "
          "i=$((i+1)); done; cp /bin/busybox /hl/suid; chmod 6755 /hl/suid; "
          "mkdir /deep; cd /deep; i=0; while [ $i -lt 300 ]; do mkdir d; cd d; i=$((i+1)); done")
    out = tmp_path / "out"
    mr.ok("cp", "c:/hl", str(out))
    assert os.stat(out / "f0").st_nlink == 50 and os.stat(out / "f49").st_ino == os.stat(out / "f0").st_ino
    assert os.stat(out / "suid").st_mode & 0o7777 == 0o755
    (tmp_path / "keep").write_text("ORIGINAL\n")
    result = mr("cp", "c:/hl/f0", str(tmp_path / "nodir") + "/")
    assert result.returncode == 1 and "no such directory" in result.stderr
    assert (tmp_path / "keep").read_text() == "ORIGINAL\n" and not (tmp_path / "f0").exists()
    deep = mr("cp", "c:/deep", str(tmp_path / "deep"))
    lines = deep.stderr.strip().splitlines()
    assert deep.returncode == 1 and len(lines) == 1 and "nested more than" in lines[0], deep.stderr
    mr.ok("rm", "c")
