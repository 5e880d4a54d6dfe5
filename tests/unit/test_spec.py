"""What the container process runs: `docker run`'s rules for argv, env, cwd, user, hostname."""

from __future__ import annotations

import pytest

from minirun import oci
from minirun.errors import UsageError
from minirun.run.plan import RunOptions
from minirun.sandbox.program import DEFAULT_PATH, build, merge_env

from .conftest import json_bytes

CID = "0123456789abcdef" * 4


def image(**config) -> oci.ImageConfig:
    return oci.parse_config(json_bytes({"architecture": "amd64", "os": "linux",
                                        "rootfs": {"type": "layers", "diff_ids": []},
                                        "config": config}))


FULL = image(Env=["PATH=/img/bin", "LANG=C"], Entrypoint=["/entry.sh"], Cmd=["serve", "--port", "80"],
             WorkingDir="/srv", User="app")
BARE = image()


def run(config=FULL, host_env=None, **opts):
    return build(config, RunOptions(**opts), CID, host_env if host_env is not None else {})


def env_dict(spec) -> dict:
    out = {}
    for item in spec.env:
        key, _, value = item.partition("=")
        assert key not in out, f"{key} twice in {spec.env}"
        out[key] = value
    return out


# ---------------------------------------------------------------- argv

def test_image_defaults():
    spec = run()
    assert spec.argv == ("/entry.sh", "serve", "--port", "80")
    assert spec.cwd == "/srv"
    assert spec.user == "app"
    assert spec.hostname == CID[:12] == "0123456789ab"
    assert spec.chroot is False


def test_command_replaces_cmd_keeps_entrypoint():
    assert run(command=("status",)).argv == ("/entry.sh", "status")


def test_entrypoint_flag_replaces_entrypoint_and_drops_image_cmd():
    assert run(entrypoint="/bin/sh").argv == ("/bin/sh",)
    assert run(entrypoint="/bin/sh", command=("-c", "echo hi")).argv == ("/bin/sh", "-c", "echo hi")


def test_empty_entrypoint_flag_clears_it():
    assert run(entrypoint="", command=("ls", "-l")).argv == ("ls", "-l")
    with pytest.raises(UsageError):
        run(entrypoint="")      # image Cmd is dropped too, leaving nothing to run


def test_cmd_only_image():
    config = image(Cmd=["sh"])
    assert run(config).argv == ("sh",)
    assert run(config, command=("echo", "x")).argv == ("echo", "x")


def test_no_command_anywhere_is_a_usage_error():
    with pytest.raises(UsageError):
        run(BARE)


# ---------------------------------------------------------------- env

def test_env_overrides_and_additions():
    env = env_dict(run(env=("LANG=fr_FR", "NEW=1", "EMPTY=", "EQ=a=b")))
    assert env["LANG"] == "fr_FR"
    assert env["NEW"] == "1"
    assert env["EMPTY"] == ""
    assert env["EQ"] == "a=b"
    assert env["PATH"] == "/img/bin"


def test_bare_name_copies_host_value_or_is_dropped():
    env = env_dict(run(env=("FROM_HOST", "NOT_ON_HOST"), host_env={"FROM_HOST": "h v", "OTHER": "x"}))
    assert env["FROM_HOST"] == "h v"
    assert "NOT_ON_HOST" not in env
    assert "OTHER" not in env                 # the host env is never copied wholesale


def test_bare_name_does_not_remove_image_value():
    env = env_dict(run(env=("LANG",), host_env={}))
    assert env["LANG"] == "C"


def test_empty_name_is_a_usage_error():
    with pytest.raises(UsageError):
        run(env=("=value",))


def test_default_path_and_hostname_added_when_absent():
    spec = run(image(Cmd=["sh"]))
    env = env_dict(spec)
    assert env["PATH"] == DEFAULT_PATH == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOSTNAME"] == CID[:12]


def test_defaults_not_added_when_present():
    env = env_dict(run(env=("HOSTNAME=mine",)))
    assert env["PATH"] == "/img/bin"
    assert env["HOSTNAME"] == "mine"
    env = env_dict(run(image(Cmd=["sh"]), env=("PATH=/only",)))
    assert env["PATH"] == "/only"


def test_hostname_flag():
    spec = run(hostname="web")
    assert spec.hostname == "web"
    assert env_dict(spec)["HOSTNAME"] == "web"


def test_merge_env_keeps_image_order_then_new_names():
    assert merge_env(("A=1", "B=2"), ("C=3", "A=9"), {}) == ["A=9", "B=2", "C=3"]


def test_build_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("MINIRUN_TEST_VAR", "from-os")
    spec = build(FULL, RunOptions(env=("MINIRUN_TEST_VAR",)), CID)
    assert "MINIRUN_TEST_VAR=from-os" in spec.env


# ---------------------------------------------------------------- cwd, user

def test_workdir_flag_must_be_absolute():
    assert run(workdir="/tmp").cwd == "/tmp"
    with pytest.raises(UsageError):
        run(workdir="tmp")


def test_workdir_is_normalised():
    assert run(workdir="/a/./b/../c/").cwd == "/a/c"
    assert run(workdir="/../..").cwd == "/"


def test_image_without_workdir_runs_in_root():
    assert run(image(Cmd=["sh"])).cwd == "/"


def test_relative_image_workdir_is_made_absolute():
    assert run(image(Cmd=["sh"], WorkingDir="app")).cwd == "/app"


def test_user_defaults_and_override():
    assert run(image(Cmd=["sh"])).user == "0"
    assert run().user == "app"
    assert run(user="1000:1000").user == "1000:1000"
    assert run(user="0").user == "0"


def test_empty_user_flag_keeps_image_user():
    assert run(user="").user == "app"


def test_chroot_flag_passes_through():
    assert run(chroot=True).chroot is True
