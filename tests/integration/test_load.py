"""minirun load: every fixture in every format, layer sharing, naming, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

FORMATS = ("oci", "oci-archive", "docker-archive")
IMAGES = ("busybox", "myapp", "myotherapp", "whiteouts", "whiteouts-lateopq", "config", "layers200")


def fixture_diff_ids(mr, name: str) -> set[str]:
    """The diff_ids an OCI layout fixture's config lists, read straight from its blobs."""
    layout = Path(mr.fixture_path(name))
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / digest[7:]).read_text())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    return set(config["rootfs"]["diff_ids"])


def store_is_empty_of_images(mr) -> bool:
    images = mr.root / "images.json"
    return not images.exists() or json.loads(images.read_text())["images"] == {}


def layers_complete(mr) -> bool:
    base = mr.root / "layers" / "sha256"
    return all((base / key / "meta.json").is_file() and (base / key / "diff").is_dir()
               for key in os.listdir(base))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_fixture_loads_and_shared_layers_are_stored_once(mr, fmt):
    for name in IMAGES:
        out = mr.load(name, fmt=fmt)
        assert out.lines[-1] == f"Loaded image: localhost/{name}:latest"
    listed = mr.ok("images", "--format", "json").lines
    assert len(listed) == len(IMAGES)
    per_image = [fixture_diff_ids(mr, name) for name in IMAGES]
    distinct = set().union(*per_image)
    assert sum(len(ids) for ids in per_image) > len(distinct) + 6   # the fixtures do share layers
    assert sorted("sha256:" + key for key in mr.layer_dirs()) == sorted(distinct)


def test_second_image_reports_shared_layers_as_already_existing(mr):
    first = mr.load("myapp").lines
    second = mr.load("myotherapp", fmt="docker-archive").lines
    assert sum("Extracted" in line for line in first) == 3
    assert [line.split(": ", 1)[1] for line in second[:2]] == ["Already exists", "Already exists"]
    assert "Extracted" in second[2]
    # the shared layers carry the same short digest in both outputs
    assert [line.split(":")[0] for line in first[:2]] == [line.split(":")[0] for line in second[:2]]
    before = {key: (mr.root / "layers/sha256" / key).stat().st_ino for key in mr.layer_dirs()}
    mr.load("myapp", fmt="oci-archive")
    after = {key: (mr.root / "layers/sha256" / key).stat().st_ino for key in mr.layer_dirs()}
    assert before == after, "a layer in the cache must not be extracted again"


def test_multi_image_archives_load_every_image(mr):
    out = mr.ok("load", mr.fixture_path("multi", "docker-archive"))
    assert "Loaded image: localhost/myapp:latest" in out.lines
    assert "Loaded image: localhost/myotherapp:latest" in out.lines
    out = mr.ok("load", mr.fixture_path("multi", "oci-archive"))
    assert sum("Already exists" in line for line in out.lines) == 6


def test_whiteouts_become_overlay_whiteouts_in_the_cache(mr):
    from minirun.layer.tree import snapshot
    mr.load("whiteouts")
    trees = {}
    for key in mr.layer_dirs():
        trees[key] = snapshot(str(mr.root / "layers/sha256" / key / "diff"))
    delete = next(t for t in trees.values() if "/olddir" in t and t["/olddir"]["type"] == "whiteout")
    assert delete["/data/remove-me.txt"]["type"] == "whiteout"
    assert delete["/etc/hostname"]["type"] == "whiteout"
    assert not any(path.rsplit("/", 1)[-1].startswith(".wh.") for t in trees.values() for path in t)
    opaque = next(t for t in trees.values() if "/replaced/new.txt" in t)
    assert opaque["/replaced"]["opaque"] is True


def test_late_opaque_marker_still_keeps_the_layers_own_entries(mr):
    mr.load("whiteouts-lateopq")
    out = mr.ok("run", "--rm", "whiteouts-lateopq", "ls", "/replaced")
    assert out.stdout.split() == ["new.txt"]


def test_oci_layout_with_only_a_tag_is_named_after_its_directory(mr, tmp_path):
    layout = tmp_path / "ch3_myapp"
    shutil.copytree(mr.fixture_path("myapp"), layout)
    out = mr.ok("load", str(layout))
    assert out.lines[-1] == "Loaded image: localhost/ch3_myapp:latest"


def test_tag_option_overrides_the_archive_names(mr):
    out = mr.ok("load", "--tag", "example.com/team/app:v2", mr.fixture_path("myapp", "docker-archive"))
    assert out.lines[-1] == "Loaded image: example.com/team/app:v2"
    assert mr.ok("images", "--format", "json").lines[0].count("example.com/team/app:v2") == 1


def test_untagged_image_prints_its_id_and_id_prefixes_work(mr, tmp_path):
    layout = tmp_path / "untagged"
    shutil.copytree(mr.fixture_path("busybox"), layout)
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        desc.pop("annotations", None)
    (layout / "index.json").write_text(json.dumps(index))
    out = mr.ok("load", str(layout))
    assert out.lines[-1].startswith("Loaded image ID: sha256:")
    image_id = out.lines[-1].split()[-1]
    assert mr.ok("run", "--rm", image_id[7:19], "true").returncode == 0
    assert mr.ok("run", "--rm", image_id, "true").returncode == 0
    assert mr.ok("run", "--rm", "--pull", "never", image_id[7:10], "true").returncode == 0  # as docker
    short = mr("run", "--rm", "--pull", "never", "0" * 11, "true")
    assert short.returncode == 125 and "no such image" in short.stderr


def test_rmi_keeps_layers_another_image_uses(mr):
    mr.load("myapp", "myotherapp")
    assert len(mr.layer_dirs()) == 4
    out = mr.ok("rmi", "myapp")
    assert "Untagged: localhost/myapp:latest" in out.lines
    assert len(mr.layer_dirs()) == 3
    assert mr.ok("run", "--rm", "myotherapp").stdout.strip().endswith("hello from myotherapp")
    mr.ok("rmi", "myotherapp")
    assert mr.layer_dirs() == []
    assert os.listdir(mr.root / "blobs/sha256") == []


def test_rmi_refuses_an_image_a_container_uses(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "user", "busybox", "true")
    refused = mr("rmi", "busybox")
    assert refused.returncode == 1 and "used by container" in refused.stderr
    mr.ok("rm", "user")
    mr.ok("rmi", "busybox")


# ---------------------------------------------------------------- bad input

def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def assert_store_untouched(mr):
    assert store_is_empty_of_images(mr)
    assert mr.layer_dirs() == []
    assert os.listdir(mr.root / "tmp") == []


def test_corrupt_layer_blob_is_named_and_leaves_nothing(mr, tmp_path):
    layout = tmp_path / "corrupt"
    shutil.copytree(mr.fixture_path("myapp"), layout)
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    layers = json.loads((layout / "blobs/sha256" / manifest[7:]).read_text())["layers"]
    top = layout / "blobs/sha256" / layers[-1]["digest"][7:]
    data = bytearray(top.read_bytes())
    data[len(data) // 2] ^= 0xFF
    top.write_bytes(bytes(data))
    result = mr("load", str(layout))
    assert result.returncode == 1
    line = one_line_error(result)
    assert layers[-1]["digest"][7:19] in line and "digest" in line
    assert store_is_empty_of_images(mr)
    assert os.listdir(mr.root / "tmp") == []
    assert layers_complete(mr)


def test_truncated_archive_is_a_clear_error(mr, tmp_path):
    archive = tmp_path / "cut.tar"
    data = Path(mr.fixture_path("myapp", "docker-archive")).read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    result = mr("load", str(archive))
    assert result.returncode == 1
    assert "truncated" in one_line_error(result) or "missing" in result.stderr
    assert_store_untouched(mr)


def test_unknown_media_type_is_refused(mr, tmp_path):
    layout = tmp_path / "odd"
    shutil.copytree(mr.fixture_path("busybox"), layout)
    _rewrite_manifest(layout, lambda m: m["layers"][0].update(mediaType="application/x-strange"))
    result = mr("load", str(layout))
    assert result.returncode == 1
    assert "media type" in one_line_error(result)
    assert_store_untouched(mr)


def test_not_an_archive(mr, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file" * 100)
    result = mr("load", str(junk))
    assert result.returncode == 1 and "not a readable tar archive" in one_line_error(result)
    missing = mr("load", str(tmp_path / "nope.tar"))
    assert missing.returncode == 1 and "no such file" in one_line_error(missing)


def test_killed_load_leaves_no_half_layer_and_no_reference(mr):
    proc = mr.popen("load", mr.fixture_path("layers200", "oci-archive"),
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    # wait until some layers are in, then kill in the middle of the rest
    for _ in range(40):
        line = proc.stdout.readline()
        if "Extracted" in line and _ >= 20:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store_is_empty_of_images(mr)
    assert layers_complete(mr)
    assert 0 < len(mr.layer_dirs()) < 200
    # the next load finishes the job and clears the dead process's staging
    out = mr.ok("load", mr.fixture_path("layers200", "oci-archive"))
    assert "Already exists" in out.stdout and "Extracted" in out.stdout
    assert len(mr.layer_dirs()) == 200
    assert os.listdir(mr.root / "tmp") == []


def test_not_root_is_refused_with_a_hint(mr):
    # A fresh user namespace with no mapping makes us uid 65534 while the
    # interpreter under /root stays readable.
    as_nobody = ("unshare", "--user")
    result = mr("load", mr.fixture_path("busybox"), prefix=as_nobody)
    assert result.returncode == 3
    assert "root" in one_line_error(result) and "sudo" in result.stderr
    result = mr("run", "busybox", "true", prefix=as_nobody)
    assert result.returncode == 125 and "root" in one_line_error(result)
    assert store_is_empty_of_images(mr)


def _rewrite_manifest(layout: Path, change) -> None:
    """Edit an OCI layout's manifest in place, re-hashing it into index.json."""
    import hashlib
    index = json.loads((layout / "index.json").read_text())
    old = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / old[7:]).read_text())
    change(manifest)
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    index["manifests"][0].update(digest="sha256:" + digest, size=len(data))
    (layout / "index.json").write_text(json.dumps(index))


def test_layer_omitting_a_parent_dir_borrows_it_from_below_and_is_keyed_by_chain_id(mr, tmp_path):
    import tarfile
    from minirun.oci import chain_ids
    from .imagebuild import busybox_layer, entry, layer_tar, write_layout
    base_a = busybox_layer([entry("secret", tarfile.DIRTYPE, mode=0o700)])
    base_b = busybox_layer([entry("secret", tarfile.DIRTYPE, mode=0o755)])
    orphan = layer_tar([entry("secret/file", data=b"x\n")])       # no entry for secret/
    write_layout(tmp_path / "a", [base_a, orphan], {"Cmd": ["sh"]})
    write_layout(tmp_path / "b", [base_b, orphan], {"Cmd": ["sh"]})
    mr.ok("load", str(tmp_path / "a"), str(tmp_path / "b"))
    layers = mr.root / "layers" / "sha256"
    metas = [json.loads((layers / key / "meta.json").read_text()) for key in mr.layer_dirs()]
    orphans = [m for m in metas if m["implied_dirs"]]
    assert len(orphans) == 2, "the same tar on two different bases must give two cache entries"
    assert {m["keyed_by"] for m in orphans} == {"chain_id"}
    for meta in orphans:
        assert meta["key"] == meta["chain_id"] != meta["diff_id"]
    modes = {oct((layers / m["key"][7:] / "diff" / "secret").stat().st_mode & 0o777) for m in orphans}
    assert modes == {"0o700", "0o755"}
    a = mr.ok("run", "--rm", "a", "stat", "-c", "%a", "/secret").stdout.strip()
    b = mr.ok("run", "--rm", "b", "stat", "-c", "%a", "/secret").stdout.strip()
    assert (a, b) == ("700", "755")
    # the chain_id recorded matches the definition
    diff_ids = [m["diff_id"] for m in orphans]
    assert all(m["chain_id"] in {chain_ids([other["diff_id"], m["diff_id"]])[1]
                                 for other in metas if not other["implied_dirs"]} for m in orphans)
    assert len(set(diff_ids)) == 1
