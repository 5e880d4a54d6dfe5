"""The command line as a user meets it: every command's --help teaches (a summary,
an example, the exit codes), --version, and shell completion of image references
and container names for bash, zsh and fish, read from the store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# the console script: completion is keyed to the program's name (_MINIRUN_COMPLETE)
MINIRUN = os.path.join(os.path.dirname(sys.executable), "minirun")

COMMANDS = ["load", "images", "rmi", "pull", "push", "login", "logout", "run", "ps", "rm", "diff", "logs",
            "stop", "kill", "exec", "inspect", "tag", "history", "commit", "image prune", "prune", "export",
            "import", "save", "layers", "system df", "fsck", "doctor", "create", "start", "restart", "top",
            "stats", "cp", "bundle", "which"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_has_a_summary_an_example_and_the_exit_codes(mr, command):
    out = mr.ok(*command.split(), "--help").stdout
    text = " ".join(out.replace("│", " ").split())
    assert "Usage: " in text and " minirun " in text
    assert "Example:" in text, command
    assert "Exit codes" in text, command
    from typer.main import get_command
    from minirun.cli import typer_app
    group = get_command(typer_app())
    cmd = group
    for word in command.split():
        cmd = cmd.commands[word]
    summary = (cmd.help or "").strip().split("\n\n")[0]
    assert summary and "\n" not in summary and summary.endswith("."), (command, summary)


def test_version(mr):
    out = mr.ok("--version").stdout
    assert out.startswith("minirun ") and out.strip().split()[1][0].isdigit()


def complete(mr, shell: str, words: str) -> list[str]:
    env = dict(mr.env, _MINIRUN_COMPLETE=f"complete_{shell}")
    if shell == "bash":
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    else:
        env.update(_TYPER_COMPLETE_ARGS=words)
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    proc = subprocess.run([MINIRUN], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


@pytest.fixture
def store_with_things(mr):
    mr.load("busybox", "myapp")
    mr.ok("run", "--name", "alpha", "busybox", "true")
    mr.ok("run", "--name", "beta", "myapp", "true")
    return mr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_images_and_containers(store_with_things, shell):
    mr = store_with_things
    images = complete(mr, shell, "minirun run --rm my")
    assert "myapp" in images and "busybox" not in images and "alpha" not in images
    containers = complete(mr, shell, "minirun rm al")
    assert "alpha" in containers and "beta" not in containers and "myapp" not in containers
    both = complete(mr, shell, "minirun inspect ")
    assert all(name in both for name in ("alpha", "beta", "busybox", "myapp"))


def test_completion_of_an_empty_store_is_empty_not_an_error(mr):
    assert complete(mr, "bash", "minirun rm ").strip() == ""
    assert complete(mr, "bash", "minirun history ").strip() == ""


def test_the_completion_script_installs_for_each_shell(mr):
    for shell in ("bash", "zsh", "fish"):
        proc = subprocess.run([MINIRUN, "--show-completion", shell], env=mr.env,
                              capture_output=True, text=True)
        assert proc.returncode == 0 and "_MINIRUN_COMPLETE" in proc.stdout, (shell, proc.stderr)


def test_log_level_debug_shows_what_was_done_to_the_kernel(mr):
    mr.load("busybox")
    quiet = mr.ok("run", "--rm", "busybox", "true")
    assert quiet.stderr == ""
    out = mr.ok("--log-level", "debug", "run", "--rm", "--memory", "32m", "busybox", "true")
    lines = out.stderr.splitlines()
    assert lines and all(line.startswith("minirun[") and " debug: " in line for line in lines), lines
    text = "\n".join(lines)
    assert "unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET)" in text
    assert "unshare(CLONE_NEWPID)" in text
    assert "fsconfig(fd" in text and "lowerdir+=" in text and "upperdir=" in text and "index=off" in text
    assert "mounted with the new API (asked: auto)" in text
    assert "pivot_root(., .)" in text
    assert "capabilities kept: audit_write, chown" in text
    assert "cgroup v" in text and "/minirun/" in text
    legacy = mr.ok("--log-level=debug", "run", "--rm", "busybox", "true",
                   env={"MINIRUN_OVERLAY_API": "legacy"}).stderr
    assert "mount(overlay, " in legacy and "lowerdir=" in legacy and "mounted with the legacy API" in legacy
    via_env = mr.ok("images", env={"MINIRUN_LOG_LEVEL": "debug"})
    assert via_env.returncode == 0
    bad = mr("--log-level", "loud", "images")
    assert bad.returncode == 2 and "loud" in bad.stderr


def test_ps_filters_as_docker_spells_them(store_with_things):
    mr = store_with_things
    names = lambda *args: sorted(mr.ok("ps", *args, "--format", "{{.Names}}").stdout.split())  # noqa: E731
    assert names() == []                                          # nothing running
    assert names("-f", "status=exited") == ["alpha", "beta"]      # a status filter implies -a
    assert names("-a", "--filter", "name=al*") == ["alpha"]
    assert names("-a", "-f", "ancestor=myapp") == ["beta"]
    alpha = mr.inspect("alpha")["Id"]
    assert names("-a", "-f", f"id={alpha[:6]}") == ["alpha"]
    assert names("-a", "-f", "status=running") == []
    bad = mr("ps", "-f", "colour=red")
    assert bad.returncode == 2 and "unsupported filter 'colour=red'" in bad.stderr


def test_a_reader_that_goes_away_is_not_a_traceback(mr):
    mr.load("busybox")
    read_end, write_end = os.pipe()
    os.close(read_end)                       # nobody will read: the first write fails with EPIPE
    try:
        proc = subprocess.run([MINIRUN, "images"], env=mr.env, stdout=write_end, stderr=subprocess.PIPE,
                              text=True)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_debug_lines_stay_out_of_a_detached_containers_log(mr):
    mr.load("busybox")
    cid = mr.ok("--log-level", "debug", "run", "-d", "busybox", "echo", "hi").stdout.strip()
    for _ in range(100):
        if mr.inspect(cid)["State"]["Status"] == "exited":
            break
        import time
        time.sleep(0.05)
    assert mr.ok("logs", cid).stdout == "hi\n"


def test_the_log_level_variable_is_read_alike_by_every_command(mr):
    mr.load("busybox")
    for value in ("DEBUG", "bogus"):
        assert mr("ps", env={"MINIRUN_LOG_LEVEL": value}).returncode == 0
        assert mr("history", "busybox", env={"MINIRUN_LOG_LEVEL": value}).returncode == 0


def test_format_table_is_the_plain_table_everywhere(store_with_things):
    mr = store_with_things
    assert mr.ok("history", "busybox", "--format", "table").stdout == mr.ok("history", "busybox").stdout
    assert mr.ok("diff", "alpha", "--format", "table").stdout == mr.ok("diff", "alpha").stdout
    assert mr.ok("images", "--format", "table").stdout == mr.ok("images").stdout


def test_completion_with_a_broken_config_file_offers_nothing_quietly(store_with_things, tmp_path):
    mr = store_with_things
    bad = tmp_path / "bad.toml"
    bad.write_text("root = \n")
    mr.env["MINIRUN_CONFIG"] = str(bad)
    assert complete(mr, "bash", "minirun rm al").strip() == ""


@pytest.mark.kernel
def test_a_detached_container_gets_a_cgroup_and_a_foreground_one_only_with_a_limit(mr):
    mr.load("busybox")
    cid = mr.ok("run", "-d", "busybox", "sleep", "30").stdout.strip()
    try:
        paths = mr.inspect(cid)["State"]["cgroup"]["paths"]
        assert paths and all(os.path.isdir(p) and p.endswith(cid) for p in paths)
    finally:
        mr.ok("rm", "-f", cid)
    assert not any(os.path.exists(p) for p in paths)
    plain = mr.ok("--log-level", "debug", "run", "--rm", "busybox", "true").stderr
    assert "no cgroup: not -d" in plain
