"""500-layer images (issue 7, item 4) without a kernel: how overlay.plan stacks
the container's own dirs over the image's layers, which short links are made,
the order of the mount calls (a recording fake of minirun.linux), and that
mounts.image_lookup answers exactly as LowerView does."""

from __future__ import annotations

import errno
import os
import random

import pytest

from minirun.linux import overlay
from minirun.errors import UsageError
from minirun.layer.lowerview import LowerView
from minirun.sandbox import mounts

BASE = "/s/containers/abc"
UPPER, WORK, INIT = BASE + "/upper", BASE + "/work", BASE + "/init"


def image(count: int, width: int = 0) -> list[str]:
    return [f"/s/layers/sha256/{i:0{max(width, 3)}x}/diff" for i in range(count)]


def test_500_layers_and_an_init_layer_stack_the_image_below():
    spec = overlay.plan(image(500), UPPER, WORK, BASE, [INIT])
    assert spec.lowers == (INIT,) and (spec.upper, spec.work) == (UPPER, WORK)
    assert spec.below is not None and spec.below.lowers == tuple(image(500))
    assert (spec.below.upper, spec.below.work, spec.below.below) == ("", "", None)


def test_stacks_that_fit_stay_flat():
    spec = overlay.plan(image(499), UPPER, WORK, BASE, [INIT])
    assert spec.below is None and spec.lowers == (INIT, *image(499))
    spec = overlay.plan(image(500), UPPER, WORK, BASE)
    assert spec.below is None and len(spec.lowers) == 500


def test_export_stacks_upper_and_init_over_500_layers():
    spec = overlay.plan(image(500), "", "", BASE, [UPPER, INIT])
    assert spec.lowers == (UPPER, INIT) and spec.upper == ""
    assert len(spec.below.lowers) == 500


def test_read_only_container_of_500_layers():
    spec = overlay.plan(image(500), "", "", BASE, [INIT])
    assert spec.lowers == (INIT,) and len(spec.below.lowers) == 500


def test_more_than_500_image_layers_are_refused_whatever_sits_on_top():
    for own in ([], [INIT]):
        with pytest.raises(UsageError) as info:
            overlay.plan(image(501), UPPER, WORK, BASE, own)
        assert "501 distinct layers" in info.value.message and "at most 500" in info.value.message
        assert "500 layers" in info.value.hint
    overlay.check_layer_count(500)


def test_short_links_of_the_nested_stack():
    spec = overlay.plan(image(500, width=64), UPPER, WORK, BASE, [INIT])
    links = overlay.short_links(spec)
    assert spec.links == () and len(spec.below.links) == 500
    assert links == dict(zip(spec.below.links, spec.below.lowers))


def test_links_are_made_only_for_the_legacy_mount(monkeypatch):
    spec = overlay.plan(image(500, width=64), UPPER, WORK, BASE, [INIT])
    assert overlay.links_to_make(spec, "new") == {}
    assert len(overlay.links_to_make(spec, "legacy")) == 500
    monkeypatch.setattr(overlay, "kernel_has_lowerdir_plus", lambda: True)
    assert overlay.links_to_make(spec, "auto") == {}
    monkeypatch.setattr(overlay, "kernel_has_lowerdir_plus", lambda: False)
    assert len(overlay.links_to_make(spec, "auto")) == 500
    short = overlay.plan(image(3), UPPER, WORK, BASE, [INIT])
    assert overlay.links_to_make(short, "legacy") == {}


class Recorder:
    def __init__(self, knows_lowerdir_plus: bool = True, fail_key: str = ""):
        self.knows, self.fail_key = knows_lowerdir_plus, fail_key
        self.calls: list[tuple] = []
        self.fds = 0

    def fsopen(self, fstype):
        self.fds += 1
        self.calls.append(("fsopen", self.fds))
        return self.fds

    def fsconfig_string(self, fd, key, value):
        self.calls.append(("fsconfig", fd, key, value))
        if (key == "lowerdir+" and not self.knows) or key == self.fail_key:
            raise OSError(errno.EINVAL, "Invalid argument")

    def fsconfig_create(self, fd):
        self.calls.append(("create", fd))

    def fsmount(self, fd, attr_flags=0):
        self.calls.append(("fsmount", fd, attr_flags))
        return 100 + fd

    def move_mount(self, fd, target):
        self.calls.append(("move_mount", fd, target))

    def fs_context_messages(self, fd):
        return ""

    def mount(self, source, target, fstype, flags=0, data=None):
        self.calls.append(("mount", target, data, os.getcwd()))

    def umount2(self, target, flags=0):
        self.calls.append(("umount2", target))


@pytest.fixture
def kernel(monkeypatch):
    def install(**kwargs) -> Recorder:
        fake = Recorder(**kwargs)
        for name in ("fsopen", "fsconfig_string", "fsconfig_create", "fsmount", "move_mount",
                     "fs_context_messages", "mount", "umount2"):
            monkeypatch.setattr(overlay.linux, name, getattr(fake, name))
        monkeypatch.setattr(overlay.os, "close", lambda fd: None)
        return fake
    return install


def test_image_overlay_is_mounted_first_and_the_container_stacked_on_it(kernel):
    fake = kernel()
    spec = overlay.plan(image(500), UPPER, WORK, BASE, [INIT])
    assert overlay.mount(spec, "/m", "auto", nodev=True) == "new"
    moves = [c for c in fake.calls if c[0] == "move_mount"]
    assert moves == [("move_mount", 101, "/m"), ("move_mount", 102, "/m")]
    inner = [c[3] for c in fake.calls if c[:3] == ("fsconfig", 1, "lowerdir+")]
    outer = [c[3] for c in fake.calls if c[:3] == ("fsconfig", 2, "lowerdir+")]
    assert inner == image(500) and outer == [INIT, "/m"]
    assert not any(c[1] == 1 and c[2] in ("upperdir", "workdir") for c in fake.calls if c[0] == "fsconfig")
    assert ("fsconfig", 2, "upperdir", UPPER) in fake.calls
    assert all(c[2] == overlay.linux.MOUNT_ATTR_NODEV for c in fake.calls if c[0] == "fsmount")
    # the image's overlay is in place before the container's reads it
    assert fake.calls.index(("move_mount", 101, "/m")) < fake.calls.index(("fsopen", 2))


def test_legacy_nested_mount(kernel, tmp_path):
    fake = kernel(knows_lowerdir_plus=False)
    base = str(tmp_path)
    spec = overlay.plan([f"{base}/layers/{i:064x}/diff" for i in range(500)],
                        f"{base}/upper", f"{base}/work", base, [f"{base}/init"])
    assert overlay.mount(spec, "/m", "auto") == "legacy"
    (_, t1, inner, cwd1), (_, t2, outer, cwd2) = [c for c in fake.calls if c[0] == "mount"]
    assert (t1, t2) == ("/m", "/m")
    assert inner.startswith("lowerdir=l/0:l/1:") and "upperdir" not in inner and cwd1 == base
    assert outer.startswith(f"lowerdir={base}/init:/m,upperdir={base}/upper,workdir={base}/work,")


def test_a_failed_container_mount_takes_the_image_overlay_down(kernel):
    fake = kernel(fail_key="upperdir")
    spec = overlay.plan(image(500), UPPER, WORK, BASE, [INIT])
    with pytest.raises(Exception):
        overlay.mount(spec, "/m", "new")
    assert fake.calls[-1] == ("umount2", "/m")


# ------------------------------------------------------------ image_lookup

KINDS = ("dir", "file", "symlink", "missing")


def build_layers(tmp_path, seed: int, count: int) -> list[str]:
    """Random small trees over a few names, two levels deep, topmost first."""
    rng = random.Random(seed)
    names = ["etc", "proc", "a", "b"]
    out = []
    for index in range(count):
        root = tmp_path / f"s{seed}" / f"l{index}"
        root.mkdir(parents=True)
        for top in names:
            kind = rng.choice(KINDS + ("missing", "missing"))
            if kind == "dir":
                (root / top).mkdir()
                for child in ("hosts", "x"):
                    ckind = rng.choice(KINDS)
                    if ckind == "dir":
                        (root / top / child).mkdir()
                    elif ckind == "file":
                        (root / top / child).write_text("f")
                    elif ckind == "symlink":
                        (root / top / child).symlink_to("/nowhere")
            elif kind == "file":
                (root / top).write_text("f")
            elif kind == "symlink":
                (root / top).symlink_to("etc")
        out.append(str(root))
    return out


def same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and
                                         (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev))


@pytest.mark.parametrize("seed", range(40))
def test_image_lookup_answers_as_lower_view(tmp_path, seed):
    lowers = build_layers(tmp_path, seed, count=1 + seed % 7)
    view, fast = LowerView(lowers), mounts.image_lookup(lowers)
    for path in ("/etc", "/etc/hosts", "/etc/x", "/proc", "/a/hosts", "/b/x", "/nothere",
                 "/nothere/deeper", "/a/x/y", "/etc/hosts/z"):
        assert same(view.lookup(path), fast(path)), path


def test_init_entries_through_image_lookup_match_lower_view(tmp_path):
    for seed in range(20):
        lowers = build_layers(tmp_path, 100 + seed, count=5)
        points = mounts.mount_points(list(mounts.etc_mounts({"hosts": "/x"})))
        try:
            expected = mounts.init_entries(LowerView(lowers).lookup, points)
        except UsageError as exc:
            with pytest.raises(UsageError, match=exc.message.split(":")[0]):
                mounts.init_entries(mounts.image_lookup(lowers), points)
            continue
        assert mounts.init_entries(mounts.image_lookup(lowers), points) == expected


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are char devices and opaque marks trusted xattrs")
def test_image_lookup_with_whiteouts_and_opaque_dirs(tmp_path):
    from minirun.layer import whiteout
    top, mid, bottom = (tmp_path / n for n in ("top", "mid", "bottom"))
    for layer in (top, mid, bottom):
        layer.mkdir()
    (bottom / "etc").mkdir()
    (bottom / "etc" / "hosts").write_text("b")
    (bottom / "proc").mkdir()
    (bottom / "a").mkdir()
    (bottom / "a" / "x").write_text("b")
    whiteout.make_whiteout(str(mid / "proc"))             # /proc deleted in mid
    (mid / "etc").mkdir()
    os.setxattr(mid / "etc", whiteout.OPAQUE_XATTR, whiteout.OPAQUE_VALUE)   # hides bottom's etc/hosts
    (top / "a").mkdir()
    lowers = [str(top), str(mid), str(bottom)]
    view, fast = LowerView(lowers), mounts.image_lookup(lowers)
    for path in ("/proc", "/etc", "/etc/hosts", "/a", "/a/x"):
        assert same(view.lookup(path), fast(path)), path
    assert fast("/proc") is None and fast("/etc/hosts") is None and fast("/a/x") is not None
