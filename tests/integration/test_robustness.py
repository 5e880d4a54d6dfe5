"""Regressions from review: hostile layers, deep trees, odd archives, and errors
that must stay one line. Each test reproduces a defect that once existed."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile

from .imagebuild import busybox_layer, entry, layer_tar, write_layout
from .test_load import one_line_error, store_is_empty_of_images


def test_layer_cannot_chown_a_host_path_through_a_planted_symlink(mr, tmp_path):
    victim = tmp_path / "victimdir"
    victim.mkdir()
    (victim / "target").write_text("host file")
    os.chmod(victim / "target", 0o600)
    d = tarfile.TarInfo("a/target")
    d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o6777, 4242, 4242
    lower = layer_tar([entry("a", tarfile.DIRTYPE, mode=0o755), d])
    hostile = layer_tar([entry("a/target/x", data=b"x"),                  # implies a/ and a/target/
                         entry("a", tarfile.SYMTYPE, linkname=str(victim))])
    write_layout(tmp_path / "img", [busybox_layer(), lower, hostile], {"Cmd": ["sh"]})
    mr("load", str(tmp_path / "img"))
    st = os.lstat(victim / "target")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600)


def test_an_implied_parent_replaced_by_a_file_is_not_a_traceback(mr, tmp_path):
    layer = layer_tar([entry("a/b/x", data=b"x"), entry("a", data=b"now a file")])
    write_layout(tmp_path / "img", [busybox_layer(), layer], {"Cmd": ["sh"]})
    result = mr("load", str(tmp_path / "img"))
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert mr.ok("run", "--rm", "img", "cat", "/a").stdout == "now a file"


def test_the_same_layer_twice_in_one_image_runs(mr, tmp_path):
    empty = layer_tar([])
    write_layout(tmp_path / "dup", [busybox_layer(), empty, layer_tar([entry("f", data=b"1")]), empty],
                 {"Cmd": ["sh"]})
    mr.ok("load", str(tmp_path / "dup"))
    for api in ("new", "legacy"):
        out = mr.ok("run", "--rm", "dup", "cat", "/f", env={"MINIRUN_OVERLAY_API": api})
        assert out.stdout == "1"


def test_a_layer_listed_twice_counts_once_in_the_image_size(mr, tmp_path):
    """The store keeps a layer once however often an image lists it, so `images`
    and `inspect` count it once (they summed every listing)."""
    big = layer_tar([entry("big", data=os.urandom(300_000))])
    write_layout(tmp_path / "once", [busybox_layer(), big], {"Cmd": ["sh"]})
    write_layout(tmp_path / "twice", [busybox_layer(), big, big], {"Cmd": ["sh"]})
    for name in ("once", "twice"):
        mr.ok("load", str(tmp_path / name))
    sizes = {name: int(mr.ok("inspect", "--format", "{{.Size}}", name).stdout) for name in ("once", "twice")}
    assert sizes["once"] > 300_000 and sizes["twice"] == sizes["once"], sizes


def test_deep_trees_do_not_break_diff_rm_or_later_loads(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "deep", "busybox", "sh", "-c",
          "i=0; while [ $i -lt 1100 ]; do mkdir d; cd d; i=$((i+1)); done")
    lines = mr.ok("diff", "deep").lines
    assert len(lines) == 1100 and lines[0] == "A /d"
    mr.ok("rm", "deep")
    mr.ok("load", mr.fixture_path("myapp"))
    assert os.listdir(mr.root / "tmp") == []


def test_a_name_with_thousands_of_missing_parents_loads(mr, tmp_path):
    layer = layer_tar([entry("a/" * 1200 + "f", data=b"deep\n")])
    write_layout(tmp_path / "img", [busybox_layer(), layer], {"Cmd": ["sh"]})
    result = mr("load", str(tmp_path / "img"))
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr


def test_restrictive_umask_still_lets_a_non_root_user_run(mr):
    mr.load("busybox")
    out = mr.ok("run", "--rm", "-u", "65534", "busybox", "sh", "-c", "echo ok",
                preexec_fn=lambda: os.umask(0o077))
    assert out.stdout == "ok\n"


def test_failed_load_and_rmi_leave_no_orphans(mr, tmp_path):
    good = layer_tar([entry("ok", data=b"1")])
    bad = layer_tar([entry("../escape", data=b"x")])
    write_layout(tmp_path / "img", [busybox_layer(), good, bad], {"Cmd": ["sh"]})
    assert mr("load", str(tmp_path / "img")).returncode == 1
    assert store_is_empty_of_images(mr)
    assert os.listdir(mr.root / "layers/sha256") == [] and os.listdir(mr.root / "blobs/sha256") == []
    mr.load("busybox")
    result = mr("rmi", "busybox", "nosuch")
    assert result.returncode == 1
    assert len(mr.ok("images", "-q").lines) == 1, "rmi must check every name before removing any"


def test_docker_archive_with_a_symlinked_repeated_layer(mr, tmp_path):
    src = tarfile.open(mr.fixture_path("busybox", "docker-archive"))
    manifest = json.loads(src.extractfile("manifest.json").read())
    layer_name = manifest[0]["Layers"][0]
    out = tarfile.open(tmp_path / "linked.tar", "w")
    for member in src.getmembers():
        if member.name == "manifest.json":
            continue
        out.addfile(member, src.extractfile(member) if member.isfile() else None)
    link = tarfile.TarInfo("dup0/layer.tar")
    link.type, link.linkname = tarfile.SYMTYPE, f"../{layer_name}"
    d = tarfile.TarInfo("dup0")
    d.type = tarfile.DIRTYPE
    out.addfile(d)
    out.addfile(link)
    manifest[0]["Layers"] = ["dup0/layer.tar"]
    data = json.dumps(manifest).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    out.close()
    mr.ok("load", str(tmp_path / "linked.tar"))
    assert mr.ok("run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"


def test_user_errors_stay_one_line(mr, tmp_path):
    layout = tmp_path / "dirindex"
    shutil.copytree(mr.fixture_path("busybox"), layout)
    (layout / "index.json").unlink()
    (layout / "index.json").mkdir()
    r = mr("load", str(layout))
    assert r.returncode == 1 and "index.json" in one_line_error(r)

    badname = tmp_path / "badname"
    shutil.copytree(mr.fixture_path("busybox"), badname)
    index = json.loads((badname / "index.json").read_text())
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "Bad/Tag!:x"}
    (badname / "index.json").write_text(json.dumps(index))
    r = mr("load", str(badname))
    assert r.returncode == 1 and "--tag" in one_line_error(r)

    mr.load("busybox")
    r = mr("run", "--rm", "UPPER/Case", "true")
    assert r.returncode == 125 and "lowercase" in one_line_error(r)
    r = mr("rmi", "UPPER/Case")
    assert r.returncode == 2
    r = mr("run", "--rm", "--hostname", "h" * 65, "busybox", "true")
    assert r.returncode == 125 and "hostname" in one_line_error(r)


def test_other_users_cannot_reach_layers_or_upper_dirs(mr):
    """A committed (or loaded) setuid binary in a layer dir must not be an escalation
    path for local users: the store's root is 0700, and an existing 0755 one is tightened."""
    import stat
    import subprocess
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "sh", "-c", "cp /bin/busybox /suid; chmod 4755 /suid")
    mr.ok("commit", "c", "suid:1")
    assert stat.S_IMODE(os.stat(mr.root).st_mode) == 0o700
    upper = mr.inspect("c")["UpperDir"]
    for path in (upper + "/suid", str(mr.root / "layers")):
        probe = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", f"ls {path}"],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe
    os.chmod(mr.root, 0o755)
    mr.ok("run", "--rm", "busybox", "true")   # any command that writes tightens it again
    assert stat.S_IMODE(os.stat(mr.root).st_mode) == 0o700
    # containers of other users still work: overlay reads lower dirs with root's rights
    assert mr.ok("run", "--rm", "-u", "1000", "suid:1", "cat", "/etc/hostname").stdout.strip()


def test_paths_longer_than_path_max_commit_export_diff_and_rm(mr, tmp_path):
    """40 nested 200-character directories: 8 kB paths, twice PATH_MAX."""
    mr.load("busybox")
    chain = "/".join(["d" * 200] * 19)        # each path given to a tool stays under PATH_MAX
    script = f"mkdir -p /a/{chain} /b/{chain} && echo deep > /b/{chain}/f && mv /b /a/{chain}/"
    mr.ok("run", "--name", "deep", "busybox", "sh", "-c", script)
    changes = mr.ok("diff", "deep").stdout.splitlines()
    assert len(changes) == 41 and changes[-1].endswith("/f") and len(changes[-1]) > 7600
    refused = mr("commit", "deep", "deep:1")                   # cp cannot copy it: said clearly
    assert refused.returncode == 1 and "PATH_MAX" in refused.stderr and len(refused.stderr) < 400
    assert len(mr.layer_dirs()) == 1
    out = tmp_path / "deep.tar"
    mr.ok("export", "deep", "-o", str(out))
    import tarfile
    with tarfile.open(out) as tar:
        assert any(name.endswith("/f") and name.count("/") == 40 for name in tar.getnames())
        assert tar.extractfile([n for n in tar.getnames() if n.endswith("/f")][0]).read() == b"deep\n"
    assert mr.ok("diff", "deep", "deep").stdout == ""
    mr.ok("fsck")
    mr.ok("run", "--name", "again", "busybox", "true")
    assert mr.ok("diff", "deep", "again").stdout.startswith("< /a")
    mr.ok("rm", "deep", "again")
    assert os.listdir(mr.root / "tmp") == [] and os.listdir(mr.root / "containers") == []
