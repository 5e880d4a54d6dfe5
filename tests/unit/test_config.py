"""The config file and the effective settings: env over file over default."""

from __future__ import annotations

import re

import pytest

from minirun import config
from minirun.errors import EnvironmentProblem


@pytest.fixture
def conf(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("MINIRUN_CONFIG", str(path))
    for variable, _, _ in config.SETTINGS.values():
        if variable:
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(config, "_loaded", None)

    def write(text: str):
        path.write_text(text)
        monkeypatch.setattr(config, "_loaded", None)
        return path
    return write


def test_defaults_without_a_file(conf):
    assert config.effective("root") == ("/var/lib/minirun", "default")
    assert config.get("network.default") == "none"
    assert config.get("insecure_registries") == []


def test_the_file_over_defaults_and_the_environment_over_the_file(conf, monkeypatch):
    path = conf('root = "/srv/minirun"\ninsecure_registries = ["reg.lan:5000"]\n'
                '[network]\ndefault = "bridge"\nsubnet = "10.99.0.0/16"\n')
    assert config.effective("root") == ("/srv/minirun", str(path))
    assert config.get("insecure_registries") == ["reg.lan:5000"]
    assert config.get("network.default") == "bridge"
    assert config.effective("network.bridge") == ("minirun0", "default")
    monkeypatch.setenv("MINIRUN_ROOT", "/elsewhere")
    monkeypatch.setenv("MINIRUN_INSECURE_REGISTRIES", "a:1, b")
    assert config.effective("root") == ("/elsewhere", "env MINIRUN_ROOT")
    assert config.get("insecure_registries") == ["a:1", "b"]


@pytest.mark.parametrize("text, words", [
    ("root = ", "not valid TOML"),
    ("rooot = '/x'", "unknown setting 'rooot'"),
    ("[network]\nmode = 'bridge'", "unknown setting 'network.mode'"),
    ("[proxy]\n", "unknown table [proxy]"),
    ("root = 5", "root must be a string"),
    ("insecure_registries = 'a'", "must be a list of strings"),
    ("insecure_registries = [1]", "must be a list of strings"),
    ("[network]\ndefault = 'wifi'", "network.default must be one of none, host, bridge"),
    ("root = 'relative/dir'", "absolute path"),
])
def test_a_bad_file_is_one_clear_error(conf, text, words):
    conf(text)
    with pytest.raises(EnvironmentProblem, match=re.escape(words)):
        config.get("root")


def test_the_store_root_follows_the_config(conf):
    from minirun.store.root import default_root
    conf('root = "/srv/store"\n')
    assert default_root() == "/srv/store"
