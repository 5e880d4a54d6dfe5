"""doctor's verdicts for answers this machine cannot give (no d_type, not root, few files)."""

from __future__ import annotations

import resource

from minirun.api import doctor


def test_no_d_type_fails_with_the_mkfs_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor.linux, "dirent_types", lambda path: {"d": 0, "f": 0})
    check = doctor.check_d_type(str(tmp_path))
    assert check.status == doctor.FAIL and "ftype=1" in check.fix


def test_d_type_present_is_ok(tmp_path):
    assert doctor.check_d_type(str(tmp_path / "not" / "made" / "yet")).status == doctor.OK


def test_not_root_fails(monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    check = doctor.check_root()
    assert check.status == doctor.FAIL and "sudo" in check.fix


def test_low_nofile_limits(monkeypatch):
    monkeypatch.setattr(doctor.resource, "getrlimit",
                        lambda which: (256, 512) if which == resource.RLIMIT_NOFILE else (100, 100))
    assert doctor.check_rlimits().status == doctor.FAIL
    monkeypatch.setattr(doctor.resource, "getrlimit",
                        lambda which: (256, 4096) if which == resource.RLIMIT_NOFILE else (100, 100))
    assert doctor.check_rlimits().status == doctor.WARN


def test_missing_needed_capability_fails(monkeypatch):
    everything = sum(1 << bit for bit in range(41))
    monkeypatch.setattr(doctor, "_cap_set", lambda field: everything & ~(1 << 21))
    check = doctor.check_capabilities()
    assert check.status == doctor.FAIL and "CAP_SYS_ADMIN" in check.detail
    monkeypatch.setattr(doctor, "_cap_set", lambda field: everything)
    assert doctor.check_capabilities().status == doctor.OK
