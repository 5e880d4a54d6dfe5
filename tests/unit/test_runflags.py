"""The light commands (`run`, `images`, `ps`, `load`) have two parsers over one
definition (cli/spec.py): the typer command and the light parser main() tries
first. Every command line the light parser accepts must give exactly what typer
gives; the ones it declines must be ones typer refuses or answers with help."""

from __future__ import annotations

import pytest
import typer.main

from minirun.cli import lightcmds as quick, runflags, light as spec, typer_app

ACCEPTED = [
    ["busybox"],
    ["busybox", "true"],
    ["--rm", "busybox", "/bin/true"],
    ["--rm", "--name", "t1", "busybox", "sh", "-c", "echo hi > /greeting"],
    ["--name=t1", "-e", "A=1", "-eB=2", "--env", "C=3", "--env=D=4", "busybox", "env"],
    ["-it", "busybox", "sh"],
    ["-dit", "--name", "bg", "busybox", "sleep", "60"],
    ["-ti", "-w/tmp", "-u", "1000:1000", "-h", "box", "busybox", "id"],
    ["-v", "/a:/b", "-v/c:/d:ro", "--volume", "/e:/f", "--tmpfs", "/run:size=1m", "busybox"],
    ["--read-only", "--privileged", "--cap-add", "NET_ADMIN", "--cap-drop=ALL", "busybox"],
    ["--security-opt", "no-new-privileges:false", "-m", "32m", "--cpus", "0.5", "--pids-limit", "64",
     "busybox"],
    ["--security-opt", "seccomp=/tmp/p.json", "--security-opt=seccomp=unconfined", "busybox"],
    ["--ulimit", "nofile=1024", "--ulimit", "nproc=10:20", "--init", "--network", "host", "busybox"],
    ["--network=bridge", "--entrypoint", "/bin/sh", "--chroot", "busybox", "-c", "echo"],
    ["--env-file", "/tmp/a.env", "--env-file=/tmp/b.env", "busybox"],
    ["--", "busybox", "--rm", "-it"],                    # after the image, flags belong to the command
    ["busybox", "--", "-x"],
    ["-e", "--rm", "busybox"],                           # a value that looks like a flag is a value
    ["--name", "a", "--name", "b", "busybox"],           # the last one wins
    ["--rm", "-", "x"],                                  # "-" is an image name, not a flag
]

DECLINED = [
    [],                        # no image
    ["--rm"],
    ["--name"],                # a value missing
    ["-e"],
    ["--bogus", "busybox"],
    ["-Z", "busybox"],
    ["-iZ", "busybox"],
    ["--rm=yes", "busybox"],   # a switch given a value
    ["--help"],
    ["--nam", "x", "busybox"],  # no abbreviations
]


OTHERS = [
    ("images", []), ("images", ["-q"]), ("images", ["-qa", "--no-trunc"]),
    ("images", ["--filter", "dangling=true", "-f", "reference=my*", "--format", "json"]),
    ("images", ["--tree"]), ("images", ["--format=json", "--all"]),
    ("ps", []), ("ps", ["-a"]), ("ps", ["-aq"]), ("ps", ["--all", "--format", "json"]),
    ("ps", ["-f", "status=exited", "--filter=name=web*"]),
    ("load", ["a.tar"]), ("load", ["a.tar", "./dir", "-q"]), ("load", ["-t", "me/x:1", "a.tar"]),
    ("load", ["--tag=x", "--quiet", "--", "-odd-name.tar"]),
    ("load", []), ("load", ["-q"]), ("load", ["-"]), ("load", ["-i", "a.tar"]), ("load", ["--input=a.tar", "-q"]),
    ("pull", ["busybox"]), ("pull", ["-q", "--platform", "linux/arm64", "host:5000/a/b:1"]),
]
OTHERS_DECLINED = [("images", ["extra"]), ("images", ["--format"]), ("ps", ["-x"]), ("load", ["-i"]),
                   ("ps", ["--help"]),
                   ("pull", []), ("pull", ["a", "b"])]


def typer_values(args: list[str], verb: str = "run") -> dict:
    group = typer.main.get_command(typer_app())
    with group.make_context("minirun", [verb, *args], resilient_parsing=False) as ctx:
        command = group.get_command(ctx, verb)
        with command.make_context(verb, list(args), parent=ctx) as sub:
            return dict(sub.params)


def normal(values: dict) -> dict:
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}


@pytest.mark.parametrize("args", ACCEPTED, ids=" ".join)
def test_both_parsers_agree(args):
    light = runflags.parse(list(args))
    assert light is not None, "the light parser declined a plain command line"
    theirs = normal(typer_values(args))
    theirs["command"] = theirs["command"] or []
    assert normal(light) == theirs


@pytest.mark.parametrize("args", DECLINED, ids=" ".join)
def test_what_the_light_parser_declines_typer_refuses(args):
    assert runflags.parse(list(args)) is None
    with pytest.raises(Exception) as refused:        # click's errors, vendored inside typer
        typer_values(args)
    names = {cls.__name__ for cls in type(refused.value).__mro__}
    assert names & {"UsageError", "Exit"}, type(refused.value)


@pytest.mark.parametrize("verb, args", OTHERS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_both_parsers_agree_on_the_other_light_commands(verb, args):
    light = spec.parse(quick.LIGHT[verb], list(args))
    assert light is not None, "the light parser declined a plain command line"
    assert normal(light) == normal(typer_values(args, verb))


@pytest.mark.parametrize("verb, args", OTHERS_DECLINED, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_the_other_light_commands_decline_what_typer_refuses(verb, args):
    assert spec.parse(quick.LIGHT[verb], list(args)) is None
    with pytest.raises(Exception) as refused:
        typer_values(args, verb)
    assert {cls.__name__ for cls in type(refused.value).__mro__} & {"UsageError", "Exit"}


@pytest.mark.parametrize("command", [runflags.RUN, *quick.LIGHT.values()], ids=lambda c: c.name)
def test_every_flag_is_in_the_typer_command(command):
    group = typer.main.get_command(typer_app())
    with group.make_context("minirun", [command.name]) as ctx:
        params = group.get_command(ctx, command.name).params
    names = {opt for p in params for opt in getattr(p, "opts", [])}
    assert {n for f in command.flags for n in f.names} <= names


@pytest.mark.parametrize("args, code", [(["--version"], 0), (["run", "--rm", "no-such-image"], 125),
                                        (["images", "-q"], 0), (["ps", "-a"], 0),
                                        (["load", "/nonexistent.tar"], 1)])
def test_the_light_path_never_imports_typer(tmp_path, args, code):
    import os
    import subprocess
    import sys
    env = dict(os.environ, MINIRUN_ROOT=str(tmp_path / "store"))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "minirun", *args], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == code, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "minirun.cli.light" in imported
    assert not {m for m in imported if m.split(".")[0] in ("typer", "click", "rich", "pyroute2")}


@pytest.mark.parametrize("options, expected", [
    ([], (True, None)),
    (["no-new-privileges"], (True, None)), (["no-new-privileges:false"], (False, None)),
    (["no-new-privileges=false", "no-new-privileges=true"], (True, None)),
    (["seccomp=unconfined"], (True, "unconfined")), (["seccomp:unconfined"], (True, "unconfined")),
    (["seccomp=/p/a=b:c.json", "no-new-privileges:false"], (False, "/p/a=b:c.json")),
    (["seccomp=a.json", "seccomp=unconfined"], (True, "unconfined")),      # the last one wins
])
def test_security_options(options, expected):
    assert runflags.security_options(options) == expected


@pytest.mark.parametrize("option", ["seccomp", "seccomp=", "apparmor=unconfined", "no-new-privileges:maybe"])
def test_unsupported_security_options_are_refused(option):
    from minirun.errors import UsageError
    with pytest.raises(UsageError) as refused:
        runflags.security_options([option])
    assert "seccomp=PROFILE.json|unconfined" in refused.value.line()
