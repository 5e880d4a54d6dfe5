"""Which kernel interface mounts the overlay, checked with a recording fake of
minirun.linux that answers as three kinds of kernel do:
- 6.8 and later know "lowerdir+" and refuse unknown keys at fsconfig;
- 6.5 to 6.7 refuse "lowerdir+" at fsconfig (EINVAL, an unknown parameter);
- before 6.5 (Debian 12's 6.1) overlayfs has no fs_context of its own: the kernel's
  legacy one takes any key at fsconfig, up to a page of them, and the create
  refuses "lowerdir+" (EINVAL). Seen in the Debian 12 VM (scripts/vm.sh)."""

from __future__ import annotations

import errno

import pytest

from minirun.linux import overlay
from minirun.errors import EnvironmentProblem


KNOWN_KEYS = {"lowerdir+", "upperdir", "workdir", "index", "redirect_dir", "metacopy", "volatile"}


class FakeKernel:
    def __init__(self, knows_lowerdir_plus: bool, legacy_context: bool = False):
        self.knows = knows_lowerdir_plus
        self.legacy = legacy_context     # before Linux 6.5 (see above)
        self.old_kernel = False          # before Linux 5.10: no volatile
        self.calls: list[tuple] = []
        self.options = 0                 # bytes in the legacy context's option string

    def fsopen(self, fstype):
        self.calls.append(("fsopen", fstype))
        self.options = 0
        return 99

    def fsconfig_string(self, fd, key, value):
        self.calls.append(("fsconfig", key, value))
        if self.legacy:
            self.options += len(key) + len(value) + 2
            if self.options > 4096 - 2:
                raise OSError(errno.EINVAL, "Invalid argument")   # "Cumulative options too large"
            return
        if (key == "lowerdir+" and not self.knows) or key not in KNOWN_KEYS:
            raise OSError(errno.EINVAL, "Invalid argument")

    def fsconfig_flag(self, fd, key):
        self.calls.append(("flag", key))
        if key == "volatile" and self.old_kernel:
            raise OSError(errno.EINVAL, "Invalid argument")

    def fsconfig_create(self, fd):
        self.calls.append(("create",))
        if self.legacy and any(c[:2] == ("fsconfig", "lowerdir+") for c in self.calls):
            raise OSError(errno.EINVAL, "Invalid argument")   # overlayfs: unrecognized mount option

    def fsmount(self, fd, attr_flags=0):
        self.calls.append(("fsmount",))
        return 100

    def move_mount(self, fd, target):
        self.calls.append(("move_mount", target))

    def fs_context_messages(self, fd):
        return "overlay: Unknown parameter 'lowerdir+'" if not self.knows else ""

    def mount(self, source, target, fstype, flags=0, data=None):
        import os
        self.calls.append(("mount", target, data, os.getcwd()))
        if self.old_kernel and data and "volatile" in data.split(","):
            raise OSError(errno.EINVAL, "Invalid argument")


@pytest.fixture
def kernel(monkeypatch):
    def install(knows: bool, legacy_context: bool = False) -> FakeKernel:
        fake = FakeKernel(knows, legacy_context)
        for name in ("fsopen", "fsconfig_string", "fsconfig_flag", "fsconfig_create", "fsmount", "move_mount",
                     "fs_context_messages", "mount"):
            monkeypatch.setattr(overlay.linux, name, getattr(fake, name))
        monkeypatch.setattr(overlay.os, "close", lambda fd: None)
        return fake
    return install


def spec(tmp_path, count: int) -> overlay.OverlayMount:
    lowers = [str(tmp_path / f"layers/sha256/{i:064x}/diff") for i in range(count)]
    return overlay.plan(lowers, str(tmp_path / "c/upper"), str(tmp_path / "c/work"), str(tmp_path))


def test_new_api_adds_one_lowerdir_per_layer_topmost_first(kernel, tmp_path):
    fake = kernel(True)
    s = spec(tmp_path, 200)
    assert overlay.mount(s, "/merged", "auto") == "new"
    lowers = [c[2] for c in fake.calls if c[:2] == ("fsconfig", "lowerdir+")]
    assert lowers == list(s.lowers)
    options = {c[1]: c[2] for c in fake.calls if c[0] == "fsconfig" and c[1] != "lowerdir+"}
    assert options["index"] == "off" and options["redirect_dir"] == "off" and options["metacopy"] == "off"
    assert ("move_mount", "/merged") in fake.calls
    assert not any(c[0] == "mount" for c in fake.calls)


def test_auto_falls_back_to_legacy_with_short_links_on_a_kernel_without_lowerdir_plus(kernel, tmp_path):
    fake = kernel(False)
    s = spec(tmp_path, 200)
    assert s.links, "200 long paths cannot fit in one page"
    assert overlay.mount(s, "/merged", "auto") == "legacy"
    (_, target, data, cwd), = [c for c in fake.calls if c[0] == "mount"]
    assert target == "/merged" and cwd == str(tmp_path)
    assert len(data) <= overlay.PAGE_LIMIT
    assert data.startswith("lowerdir=l/0:l/1:") and ",upperdir=upper,workdir=work," in data


def test_legacy_uses_absolute_paths_when_they_fit(kernel, tmp_path):
    fake = kernel(True)
    s = spec(tmp_path, 3)
    assert not s.links
    assert overlay.mount(s, "/merged", "legacy") == "legacy"
    (_, _, data, _), = [c for c in fake.calls if c[0] == "mount"]
    assert data.startswith("lowerdir=" + ":".join(s.lowers))
    assert not any(c[0] == "fsopen" for c in fake.calls)


def test_forcing_new_on_an_old_kernel_says_how_to_fix_it(kernel, tmp_path):
    kernel(False)
    with pytest.raises(EnvironmentProblem, match="lowerdir"):
        overlay.mount(spec(tmp_path, 2), "/merged", "new")


@pytest.mark.parametrize("knows_lowerdir_plus", [True, False])
def test_volatile_is_dropped_where_the_kernel_rejects_it(kernel, tmp_path, knows_lowerdir_plus):
    fake = kernel(knows_lowerdir_plus)
    fake.old_kernel = True
    s = overlay.plan(["/l/b", "/l/a"], str(tmp_path / "upper"), str(tmp_path / "work"), str(tmp_path),
                     volatile=True)
    used = overlay.mount(s, "/merged", "auto")
    assert used == ("new" if knows_lowerdir_plus else "legacy")
    if knows_lowerdir_plus:
        assert ("flag", "volatile") in fake.calls and ("fsmount",) in fake.calls
    else:
        mounts = [c for c in fake.calls if c[0] == "mount"]
        assert len(mounts) == 2 and "volatile" in mounts[0][2].split(",")
        assert "volatile" not in mounts[1][2].split(",")


def test_volatile_is_asked_for_where_the_kernel_knows_it(kernel, tmp_path):
    fake = kernel(False)
    s = overlay.plan(["/l/b", "/l/a"], str(tmp_path / "upper"), str(tmp_path / "work"), str(tmp_path),
                     volatile=True)
    overlay.mount(s, "/merged", "legacy")
    mounts = [c for c in fake.calls if c[0] == "mount"]
    assert len(mounts) == 1 and mounts[0][2].split(",")[-1] == "volatile"


# ---------------------------------------------------------------- before 6.5: the legacy fs_context

@pytest.mark.parametrize("layers", [3, 200])
def test_auto_falls_back_where_only_the_create_refuses_lowerdir_plus(kernel, tmp_path, layers):
    """6.1: every lowerdir+ is taken (3 layers) or the page fills up (200): legacy either way."""
    fake = kernel(False, legacy_context=True)
    s = spec(tmp_path, layers)
    assert overlay.mount(s, "/merged", "auto") == "legacy"
    (_, target, data, _), = [c for c in fake.calls if c[0] == "mount"]
    assert target == "/merged" and data.startswith("lowerdir=l/0:" if layers == 200 else "lowerdir=/")
    assert ("fsmount",) not in fake.calls


@pytest.mark.parametrize("knows, legacy, has", [(True, False, True), (False, False, False), (False, True, False)])
def test_lowerdir_plus_counts_as_known_only_where_unknown_keys_are_refused(kernel, knows, legacy, has):
    kernel(knows, legacy_context=legacy)
    assert overlay.kernel_has_lowerdir_plus() is has


def test_short_links_are_made_where_only_the_create_refuses_lowerdir_plus(kernel, tmp_path):
    kernel(False, legacy_context=True)
    assert len(overlay.links_to_make(spec(tmp_path, 200), "auto")) == 200


def test_forcing_new_where_only_the_create_refuses_lowerdir_plus_says_how_to_fix_it(kernel, tmp_path):
    kernel(False, legacy_context=True)
    with pytest.raises(EnvironmentProblem, match="lowerdir") as caught:
        overlay.mount(spec(tmp_path, 2), "/merged", "new")
    assert "MINIRUN_OVERLAY_API" in caught.value.line()
