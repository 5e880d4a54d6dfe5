"""The config file through the real CLI: the store location, the default network
mode, `minirun info`, and a broken file refused in one line."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def conf(mr, tmp_path):
    path = tmp_path / "config.toml"
    mr.env["MINIRUN_CONFIG"] = str(path)
    return path


def test_info_shows_settings_with_their_source_kernel_features_and_the_store(mr, conf):
    mr.load("busybox")
    conf.write_text('[network]\nsubnet = "10.77.0.0/16"\n')
    doc = json.loads(mr.ok("info", "--format", "json").stdout)
    assert doc["ConfigFile"] == {"Path": str(conf), "Exists": True}
    assert doc["Settings"]["root"] == {"Value": str(mr.root), "Source": "env MINIRUN_ROOT"}
    assert doc["Settings"]["network.subnet"] == {"Value": "10.77.0.0/16", "Source": str(conf)}
    assert doc["Settings"]["network.default"]["Source"] == "default"
    assert doc["Kernel"]["Overlay"].startswith("ok")
    assert doc["Store"]["Images"]["Total"] == 1
    text = mr.ok("info").stdout
    assert f"network.subnet:        10.77.0.0/16   [{conf}]" in text
    assert mr.ok("info", "--format", "{{.Settings.root.Value}}").stdout.strip() == str(mr.root)


def test_the_store_location_comes_from_the_config_file(mr, conf):
    conf.write_text(f'root = "{mr.root}"\n')
    del mr.env["MINIRUN_ROOT"]
    mr.load("busybox")                       # into mr.root, found through the file
    assert (mr.root / "images.json").exists()
    assert "busybox" in mr.ok("images").stdout


def test_the_default_network_mode_comes_from_the_config_file(mr, conf):
    mr.load("busybox")
    count = "grep -c : /proc/net/dev"
    isolated = int(mr.ok("run", "--rm", "busybox", "sh", "-c", count).stdout)
    conf.write_text('[network]\ndefault = "host"\n')
    host = int(mr.ok("run", "--rm", "busybox", "sh", "-c", count).stdout)
    assert isolated == 1 and host > 1                # none: lo only; host: the host's devices
    assert int(mr.ok("run", "--rm", "--network", "none", "busybox", "sh", "-c", count).stdout) == 1


def test_a_broken_config_file_is_one_line_and_exit_3(mr, conf):
    conf.write_text("[network]\ndefault = 'wifi'\n")
    for args in (("images",), ("info",), ("run", "--rm", "busybox", "true")):
        result = mr(*args)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "network.default must be one of" in lines[0], result.stderr
        assert result.returncode == (125 if args[0] == "run" else 3)
