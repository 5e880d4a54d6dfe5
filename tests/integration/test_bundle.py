"""`minirun bundle`: the bundle it writes runs under runc (and crun where it can
run here), with the overlay's writes kept in the bundle; refusals leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .peers import mounts_under, remove_cgroups, require


def _set_args(bundle: Path, *args: str) -> None:
    path = bundle / "config.json"
    doc = json.loads(path.read_text())
    doc["process"]["args"] = list(args)
    path.write_text(json.dumps(doc))


def _run_runtime(tool: str, state: Path, bundle: Path, cid: str) -> subprocess.CompletedProcess:
    """`tool run` in the foreground; always deleted after, with its state under the test's dir."""
    argv = [tool, "--root", str(state), "run", "--bundle", str(bundle), cid]
    if tool == "crun":
        # crun refuses cgroups in hybrid mode unless the empty v2 hierarchy is gone:
        # unmount it in a private mount namespace (PEERS.md)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh", *argv]
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run([tool, "--root", str(state), "delete", "--force", cid], capture_output=True)
        remove_cgroups(cid)


@pytest.fixture
def bundles(tmp_path):
    """A dir for bundles; every mount left under it is undone after the test."""
    base = tmp_path / "bundles"
    base.mkdir()
    yield base
    for point in sorted(mounts_under(base), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    assert not mounts_under(base)


@pytest.mark.parametrize("tool", ["runc", "crun"])
def test_bundle_runs_under_oci_runtime_and_writes_stay_in_the_bundle(mr, bundles, tmp_path, tool):
    require(tool)
    if tool == "crun":
        require("unshare")
    mr.load("busybox")
    layers_before = {name: _tree(mr.root / "layers" / "sha256" / name) for name in mr.layer_dirs()}
    bundle = bundles / "b"
    assert mr.ok("bundle", "busybox", str(bundle)).stdout.strip() == str(bundle)
    doc = json.loads((bundle / "config.json").read_text())
    assert doc["root"]["path"] == "rootfs" and doc["process"]["terminal"] is False
    assert {ns["type"] for ns in doc["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    nofile = next(r for r in doc["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE")
    import resource
    assert nofile["hard"] <= resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert mounts_under(bundle) == [str(bundle / "rootfs")]

    _set_args(bundle, "/bin/sh", "-c", "echo hi; echo written > /tmp/from-container")
    done = _run_runtime(tool, tmp_path / f"{tool}-state", bundle, f"mr-bundle-{tool}-{os.getpid()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"
    assert (bundle / ".minirun" / "upper" / "tmp" / "from-container").read_text() == "written\n"
    layers_after = {name: _tree(mr.root / "layers" / "sha256" / name) for name in mr.layer_dirs()}
    assert layers_after == layers_before                 # the layer cache is untouched

    mr.ok("bundle", "--remove", str(bundle))
    assert not bundle.exists() and not mounts_under(bundles)


def test_copy_bundle_runs_under_runc_without_a_mount(mr, bundles, tmp_path):
    require("runc")
    mr.load("busybox")
    bundle = bundles / "copied"
    mr.ok("bundle", "busybox", str(bundle), "--copy")
    assert mounts_under(bundles) == []
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    _set_args(bundle, "/bin/echo", "hi")
    done = _run_runtime("runc", tmp_path / "runc-state", bundle, f"mr-bundle-copy-{os.getpid()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"
    mr.ok("bundle", "--remove", str(bundle))
    assert not bundle.exists()


def test_refusals_are_one_line_and_leave_nothing(mr, bundles):
    mr.load("busybox")
    missing = mr("bundle", "no-such-image", str(bundles / "new"))
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1, missing.stderr
    assert "no such image" in missing.stderr
    assert not (bundles / "new").exists()

    empty = bundles / "empty"
    empty.mkdir()
    missing = mr("bundle", "no-such-image", str(empty), "--copy")
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    assert list(empty.iterdir()) == []                  # an empty DIR given stays as it was

    full = bundles / "full"
    full.mkdir()
    (full / "keep").write_text("mine")
    taken = mr("bundle", "busybox", str(full))
    assert taken.returncode == 2 and len(taken.stderr.splitlines()) == 1, taken.stderr
    assert "not empty" in taken.stderr and "Traceback" not in taken.stderr
    assert sorted(p.name for p in full.iterdir()) == ["keep"]

    other = mr("bundle", "--remove", str(full))
    assert other.returncode == 2 and "not a bundle" in other.stderr
    assert (full / "keep").read_text() == "mine"
    assert mounts_under(bundles) == []


def _tree(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(directory, name))
            out.append((os.path.relpath(os.path.join(directory, name), root), st.st_mode, st.st_size))
    return sorted(out)
