"""Images at the kernel's overlay limit (issue 7, item 4): 500 lower layers
(fs/overlayfs OVL_MAX_STACK) run even when the container needs an init layer on
top of them, and 501 are refused with one line, leaving nothing behind.

The images are busybox (without /etc, so every run needs an init layer for
/etc/hosts, /etc/hostname and /etc/resolv.conf) plus tiny layers that each add
/layer-<i>; they are built once per session and loaded into each test's store.
"""

from __future__ import annotations

import os
import tarfile

import pytest

from .imagebuild import busybox_layer, entry, layer_tar, write_layout

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="session")
def many_layers(tmp_path_factory):
    """OCI layouts layers500 and layers501 (they share their first 500 layers)."""
    base = tmp_path_factory.mktemp("many-layers")
    tiny = [layer_tar([entry(f"layer-{i}", data=f"layer {i}\n".encode())]) for i in range(1, 501)]
    paths = {}
    for count in (500, 501):
        path = base / f"layers{count}"          # loads as localhost/layers<count>:latest
        write_layout(path, [busybox_layer()] + tiny[:count - 1], config={"Cmd": ["/bin/sh"]})
        paths[count] = str(path)
    return paths


def container_dirs(mr) -> list[str]:
    directory = mr.root / "containers"
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def test_500_layer_image_runs_and_sees_its_top_layer(mr, many_layers):
    mr.ok("load", many_layers[500])
    assert "500" in mr.ok("images").stdout
    out = mr.ok("run", "--rm", "layers500", "sh", "-c",
                "cat /layer-499 /layer-1; ls /etc; cat /etc/hostname >/dev/null && echo ok").lines
    assert out == ["layer 499", "layer 1", "hostname", "hosts", "resolv.conf", "ok"]
    # the legacy mount(2) path stacks the same way, through short links
    out = mr.ok("run", "--rm", "layers500", "cat", "/layer-499",
                env={"MINIRUN_OVERLAY_API": "legacy"}).lines
    assert out == ["layer 499"]
    out = mr.ok("run", "--rm", "--read-only", "layers500", "cat", "/layer-250").lines
    assert out == ["layer 250"]
    assert container_dirs(mr) == []


def test_diff_export_and_commit_of_a_500_layer_container(mr, many_layers, tmp_path):
    mr.ok("load", many_layers[500])
    mr.ok("run", "--name", "big", "layers500", "sh", "-c",
          "echo hi > /greeting; rm /layer-7; echo more >> /layer-499; mkdir /made")
    # only what the run wrote: nothing of the init layer (/etc and its files)
    assert sorted(mr.ok("diff", "big").lines) == ["A /greeting", "A /made", "C /layer-499", "D /layer-7"]

    out = tmp_path / "big.tar"
    mr.ok("export", "-o", str(out), "big")
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("greeting").read() == b"hi\n"
        assert tar.extractfile("layer-499").read() == b"layer 499\nmore\n"
    assert "layer-7" not in names and {"layer-1", "layer-498", "made", "bin/busybox"} <= names
    assert sum(1 for n in names if n.startswith("layer-")) == 498

    # commit makes a 501st layer: the image is stored, and run refuses it clearly
    mr.ok("commit", "big", "bigger:v1")
    result = mr("run", "--rm", "bigger:v1", "/bin/true")
    assert result.returncode == 125
    assert "501 distinct layers" in result.stderr and "at most 500" in result.stderr
    mr.ok("rm", "big")
    assert container_dirs(mr) == []


def test_501_layer_image_fails_with_one_line_and_leaves_nothing(mr, many_layers):
    mr.ok("load", many_layers[501])          # load accepts it: save and push still work on it
    for args in (("run", "--rm"), ("run", "--name", "toolong"), ("run", "-d")):
        result = mr(*args, "layers501", "/bin/true")
        assert result.returncode == 125, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(
            "Error: image has 501 distinct layers; overlayfs stacks at most 500"), result.stderr
        assert "hint: rebuild or squash the image into at most 500 layers" in result.stderr
        assert result.stdout == ""
    assert mr.ok("ps", "-a", "-q").stdout.strip() == ""
    assert container_dirs(mr) == []


def test_export_tar_reads_back_in(mr, many_layers, tmp_path):
    """The flat export of a 500-layer container imports as a 1-layer image that runs."""
    mr.ok("load", many_layers[500])
    mr.ok("run", "--name", "src", "layers500", "sh", "-c", "echo mine > /mine")
    tar_path = tmp_path / "flat.tar"
    mr.ok("export", "-o", str(tar_path), "src")
    mr.ok("import", str(tar_path), "flat:v1")
    out = mr.ok("run", "--rm", "flat:v1", "sh", "-c", "cat /mine /layer-499").lines
    assert out == ["mine", "layer 499"]
